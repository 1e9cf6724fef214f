/**
 * The addon's CPU memory policy (native/src/cpu_cache.cc). Large CPU blocks on transparent huge pages: a tensor of
 * 32 MiB or more is its own 2 MiB-aligned mapping advised MADV_HUGEPAGE while it lives, unmapped when it is freed;
 * GOODVIBE_HUGE_BLOCKS=0 leaves such blocks to glibc. Checked from the process's own memory map (/proc/self/smaps:
 * the kernel lists the advice as VmFlags "hg" whatever pages it then grants), and the values against formulas.
 * glibc's heap keeps up to 256 MiB of freed memory (GOODVIBE_HEAP_TRIM_MB; a GLIBC_TUNABLES malloc setting wins):
 * checked by the resident memory after freeing 96 MiB of 4 MiB tensors. (Why: BENCHMARKS.md, "Issue 13 §1 on an
 * AMD Zen 5", the training step's page faults.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const TENSOR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/tensor/index.js");
const linux = process.platform === "linux" && fs.existsSync("/proc/self/smaps");
const glibc =
  linux &&
  Boolean(
    (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime,
  );

/** Run an ES module script in a fresh node (this environment plus `env`, one libtorch thread): its last line, parsed. */
function inFreshNode<T>(script: string, env: Record<string, string>): T {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    env: { ...process.env, GOODVIBE_THREADS: "1", ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as T;
}

/**
 * In a fresh node (its environment plus `env`): the mappings of at least 32 MiB advised for huge pages before,
 * while 40 MiB and 80 MiB float32 tensors live, and after they are disposed; and the values they hold.
 */
function probe(env: Record<string, string>): {
  before: number[];
  during: number[];
  after: number[];
  values: number[];
} {
  const script = `
    const fs = await import("node:fs");
    const { Tensor, tidy } = await import(${JSON.stringify(TENSOR)});
    // sizes (bytes) of the mappings of >= 32 MiB whose VmFlags carry "hg" (MADV_HUGEPAGE)
    const advised = () => {
      const out = [];
      let size = 0;
      for (const line of fs.readFileSync("/proc/self/smaps", "utf8").split("\\n")) {
        const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
        if (m) size = Number(BigInt("0x" + m[2]) - BigInt("0x" + m[1]));
        else if (line.startsWith("VmFlags:") && / hg( |$)/.test(line) && size >= 32 * 2 ** 20) out.push(size);
      }
      return out.sort((a, b) => a - b);
    };
    const before = advised();
    const MiB = 2 ** 20;
    const a = Tensor.full([(40 * MiB) / 4], 2, "float32");
    const b = tidy(() => a.mul(3).add(1).repeatInterleave(2, 0).reshape([4, (20 * MiB) / 4])); // 80 MiB of 7
    const during = advised();
    const n = (40 * MiB) / 4;
    const values = tidy(() => [ // (the views share the blocks: the scope frees them)
      ...a.narrow(0, 0, 2).toFloat32Array(), ...a.narrow(0, n - 2, 2).toFloat32Array(),
      ...b.narrow(0, 3, 1).narrow(1, (20 * MiB) / 4 - 1, 1).toFloat32Array(),
      b.sum().item() / (20 * MiB),
    ]);
    a.dispose();
    b.dispose();
    console.log(JSON.stringify({ before, during, after: advised(), values }));
  `;
  return inFreshNode(script, env);
}

test(
  "blocks of 32 MiB or more are advised for huge pages while they live, and unmapped when freed",
  {
    skip: !linux && "Linux only (madvise MADV_HUGEPAGE, /proc/self/smaps)",
  },
  () => {
    const p = probe({});
    // the two live tensors' blocks, 40 + 80 MiB (multiples of 2 MiB), are advised mappings (counted in bytes: the
    // kernel may merge neighbouring mappings with the same flags into one), and none is left once they are freed
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    assert.equal(
      sum(p.during) - sum(p.before),
      120 * 2 ** 20,
      `advised before ${p.before}, during ${p.during}`,
    );
    assert.equal(sum(p.after), sum(p.before), `advised before ${p.before}, after ${p.after}`);
    // 2, 2, 2, 2; 3·2 + 1 = 7; the mean of 20 Mi values of 7
    assert.deepEqual(p.values.slice(0, 5), [2, 2, 2, 2, 7]);
    assert.ok(Math.abs(p.values[5]! - 7) < 1e-3, `mean ${p.values[5]}`);
  },
);

test(
  "GOODVIBE_HUGE_BLOCKS=0 leaves large blocks to glibc: none advised, the same values",
  {
    skip: !linux && "Linux only",
  },
  () => {
    const p = probe({ GOODVIBE_HUGE_BLOCKS: "0" });
    assert.deepEqual(p.during, p.before);
    assert.deepEqual(p.values.slice(0, 5), [2, 2, 2, 2, 7]);
  },
);

/** In a fresh node: RSS growth (MiB) with 24 tensors of 4 MiB alive (written), and after they are disposed. */
function keptAfterFree(env: Record<string, string>): { alive: number; freed: number } {
  const script = `
    const { Tensor } = await import(${JSON.stringify(TENSOR)});
    const rss = () => process.memoryUsage().rss / 2 ** 20;
    Tensor.full([1024], 1, "float32").dispose(); // the addon loaded, libtorch's first allocations made
    const start = rss();
    const ts = Array.from({ length: 24 }, (_, i) => Tensor.full([2 ** 20], i, "float32"));
    const alive = rss() - start;
    for (const t of ts) t.dispose();
    console.log(JSON.stringify({ alive, freed: rss() - start }));
  `;
  return inFreshNode(script, env);
}

test(
  "glibc's heap keeps freed memory up to GOODVIBE_HEAP_TRIM_MB (256 MiB by default); 0 or GLIBC_TUNABLES leave glibc's",
  {
    skip: !glibc && "glibc only",
  },
  () => {
    const kept = keptAfterFree({ GLIBC_TUNABLES: "" });
    assert.ok(kept.alive > 90, `96 MiB of tensors alive: RSS grew by ${kept.alive} MiB`);
    assert.ok(kept.freed > 90, `kept by the heap after dispose: RSS still ${kept.freed} MiB above the start`);
    const left: Record<string, string>[] = [
      { GOODVIBE_HEAP_TRIM_MB: "0" },
      { GLIBC_TUNABLES: "glibc.malloc.trim_threshold=131072" },
    ];
    for (const env of left) {
      const given = keptAfterFree(env);
      assert.ok(given.alive > 90, `${JSON.stringify(env)}: RSS grew by ${given.alive} MiB with 96 MiB alive`);
      assert.ok(
        given.freed < 16,
        `${JSON.stringify(env)}: RSS still ${given.freed} MiB above the start after dispose`,
      );
    }
  },
);
