/**
 * The GPU machine (DEVELOPERS.md's checklist, scripts/gpu-check.sh) receives the working tree plus .gpu-carry
 * (Node, its headers, the node_modules and dist the run loads) in at most 64 MiB, and `gpu-check.sh --prepare`
 * refuses at 63 MiB. .gpu-carry measured 24,717,749 bytes (23.6 MiB) on 2026-12-01, so the tree must stay under
 * 39 MiB or a session lent the GPU loses its first minutes shrinking the repository. This fails first.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT } from "../evalcore/make-model.js";

const MiB = 1024 * 1024;
const CARRY_BYTES = 24 * MiB; // .gpu-carry as measured, rounded up
const PREPARE_LIMIT = 63 * MiB; // scripts/gpu-check.sh --prepare's own bound

// the same list gpu-check.sh sums: tracked files and untracked ones git does not ignore
const listed = spawnSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
  cwd: REPO_ROOT,
  encoding: "buffer",
  maxBuffer: 64 * MiB,
});
const isCheckout = listed.status === 0;

test(
  "the tree the GPU run carries leaves room for .gpu-carry under gpu-check's 63 MiB",
  { skip: isCheckout ? false : "not a git checkout" },
  () => {
    const files = listed.stdout.toString("utf8").split("\0").filter(Boolean);
    let bytes = 0;
    const sizes: [string, number][] = [];
    for (const f of files) {
      const st = fs.statSync(path.join(REPO_ROOT, f), { throwIfNoEntry: false });
      if (!st?.isFile()) continue; // listed but deleted in the working tree
      bytes += st.size;
      sizes.push([f, st.size]);
    }
    const largest = sizes
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([f, s]) => `${f} ${(s / MiB).toFixed(1)} MiB`);
    assert.ok(
      bytes + CARRY_BYTES < PREPARE_LIMIT,
      `the tree is ${(bytes / MiB).toFixed(1)} MiB; with .gpu-carry's ${CARRY_BYTES / MiB} MiB it passes ` +
        `gpu-check's ${PREPARE_LIMIT / MiB} MiB. Largest: ${largest.join(", ")}`,
    );
  },
);
