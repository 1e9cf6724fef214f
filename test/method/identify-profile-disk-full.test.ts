/**
 * identify's per-sample profiles (ProfileStore, the clustering features) on a disk that fills up (a small tmpfs of
 * our own; skipped where mounting is not permitted). The profile file is made sparse and filled a row at a time;
 * a write the full disk cuts short returns the bytes it wrote instead of failing, so a writer that ignores that
 * count leaves the rest of the row as zeros and says nothing: clustering would then run on wrong features.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { ProfileStore } from "../../src/method/goodvibe/identify-state.js";
import { scratchDir } from "../scratch.js";

const work = scratchDir("gv-profile-disk-");
const disk = path.join(work, "disk");
fs.mkdirSync(disk);
const mounted =
  process.platform === "linux" &&
  spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk], { encoding: "utf8" }).status === 0;
after(() => {
  if (mounted) spawnSync("umount", ["-l", disk]);
  fs.rmSync(work, { recursive: true, force: true });
});

test(
  "a profile row that finds the disk full part-way fails naming the profile file; rows written before read back whole",
  { skip: mounted ? false : "mounting a tmpfs is not permitted here (not root, or not Linux)" },
  () => {
    // one row = 40 KiB (10 pages) of a 64 KiB (16 pages) disk: the first row fits, the second finds 6 pages
    const linears = [{ name: "m", outFeatures: 10240, inFeatures: 8 }];
    const file = path.join(disk, "profiles.f32");
    const store = new ProfileStore(file, 4, linears, true);
    const rowOf = (s: number) => Float32Array.from({ length: 10240 }, (_, i) => s * 100000 + i + 1);
    store.write(0, rowOf(0));
    assert.throws(
      () => store.write(1, rowOf(1)),
      (e: NodeJS.ErrnoException) => e.code === "ENOSPC" && e.path === file,
      "a row cut short by a full disk is an error naming the file, not a row silently part zeros",
    );
    const back = new Float32Array(10240);
    store.readRow(0, back);
    assert.deepEqual(back, rowOf(0));
    store.close();
  },
);
