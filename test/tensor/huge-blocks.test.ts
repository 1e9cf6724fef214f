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
 * In a fresh node (its environment plus `env`): the bytes of the mappings of at least 32 MiB advised for huge pages
 * at each point of a script that makes 40 MiB and 80 MiB float32 tensors, frees them, makes tensors of the same sizes
 * again (and one more of 40 MiB while those live), frees everything and calls releaseIdleMemory; and the values the
 * tensors hold, read back.
 */
function probe(env: Record<string, string>): {
  before: number;
  during: number;
  freed: number;
  again: number;
  oneMore: number;
  allFreed: number;
  released: number;
  afterRelease: number;
  values: number[];
} {
  const script = `
    const fs = await import("node:fs");
    const { Tensor, releaseIdleMemory, tidy } = await import(${JSON.stringify(TENSOR)});
    // bytes of the mappings of >= 32 MiB whose VmFlags carry "hg" (MADV_HUGEPAGE); counted in bytes, as the kernel
    // may merge neighbouring mappings with the same flags into one
    const advised = () => {
      let sum = 0;
      let size = 0;
      for (const line of fs.readFileSync("/proc/self/smaps", "utf8").split("\\n")) {
        const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
        if (m) size = Number(BigInt("0x" + m[2]) - BigInt("0x" + m[1]));
        else if (line.startsWith("VmFlags:") && / hg( |$)/.test(line) && size >= 32 * 2 ** 20) sum += size;
      }
      return sum;
    };
    const MiB = 2 ** 20;
    const n40 = (40 * MiB) / 4;
    const n80 = (80 * MiB) / 4;
    // the first and last two values and the mean: what the whole block holds (the views share the block: the scope
    // frees them)
    const read = (t, n) => tidy(() => [...t.narrow(0, 0, 2).toFloat32Array(), ...t.narrow(0, n - 2, 2).toFloat32Array(), t.mean().item()]);
    const out = { before: advised() };
    const a = Tensor.full([n40], 2, "float32");
    const b = Tensor.full([n80], 7, "float32");
    out.during = advised();
    const values = [...read(a, n40), ...read(b, n80)];
    // b first: a first-fit search would hand c b's 80 MiB block
    b.dispose();
    a.dispose();
    out.freed = advised();
    const c = Tensor.full([n40], 5, "float32");
    const d = Tensor.full([n80], -3, "float32");
    out.again = advised();
    const e = Tensor.full([n40], 11, "float32");
    out.oneMore = advised();
    values.push(...read(c, n40), ...read(d, n80), ...read(e, n40));
    for (const t of [c, d, e]) t.dispose();
    out.allFreed = advised();
    out.released = releaseIdleMemory();
    out.afterRelease = advised();
    console.log(JSON.stringify({ ...out, values }));
  `;
  return inFreshNode(script, env);
}

const MiB = 2 ** 20;
const VALUES = [2, 2, 2, 2, 2, 7, 7, 7, 7, 7, 5, 5, 5, 5, 5, -3, -3, -3, -3, -3, 11, 11, 11, 11, 11];

test(
  "blocks of 32 MiB or more are advised for huge pages; freed ones are kept for reuse up to 256 MiB, then released",
  {
    skip: !linux && "Linux only (madvise MADV_HUGEPAGE, /proc/self/smaps)",
  },
  () => {
    const p = probe({});
    // the two live tensors' blocks, 40 + 80 MiB (multiples of 2 MiB), are advised mappings
    assert.equal(p.during - p.before, 120 * MiB, JSON.stringify(p));
    // freed, they stay mapped; tensors of the same sizes take them, each the smallest that holds it (no new mapping),
    // a third one maps its own block
    assert.equal(p.freed - p.before, 120 * MiB, JSON.stringify(p));
    assert.equal(p.again - p.before, 120 * MiB, JSON.stringify(p));
    assert.equal(p.oneMore - p.before, 160 * MiB, JSON.stringify(p));
    // all three freed: 160 MiB kept (within 256), then handed back by releaseIdleMemory
    assert.equal(p.allFreed - p.before, 160 * MiB, JSON.stringify(p));
    assert.equal(p.released, 160 * MiB);
    assert.equal(p.afterRelease, p.before, JSON.stringify(p));
    // a reused block holds what its new tensor was filled with
    assert.deepEqual(p.values, VALUES);
  },
);

test(
  "GOODVIBE_HUGE_CACHE_MB caps the freed blocks kept (the smallest go first); 0 unmaps each at free",
  {
    skip: !linux && "Linux only (madvise MADV_HUGEPAGE, /proc/self/smaps)",
  },
  () => {
    // 100 MiB: b (80) kept, then a (40) would make 120 and the idle block is the larger: a's is unmapped; c (40)
    // takes the first 40 MiB of b's 80 MiB block, whose other 40 stay idle; d (80) maps its own; e (40) takes that
    // idle half, so no new mapping
    const capped = probe({ GOODVIBE_HUGE_CACHE_MB: "100" });
    assert.equal(capped.freed - capped.before, 80 * MiB, JSON.stringify(capped));
    assert.equal(capped.again - capped.before, 160 * MiB, JSON.stringify(capped));
    assert.equal(capped.oneMore - capped.before, 160 * MiB, JSON.stringify(capped));
    // c, d, e freed in turn: c's 40 kept; d's 80 would make 120: the smaller idle one (c's) is unmapped, d's kept;
    // e's 40 would exceed 100 again and the idle one is the larger: e's is unmapped
    assert.equal(capped.allFreed - capped.before, 80 * MiB, JSON.stringify(capped));
    assert.equal(capped.released, 80 * MiB);
    assert.deepEqual(capped.values, VALUES);
    const none = probe({ GOODVIBE_HUGE_CACHE_MB: "0" });
    assert.equal(none.during - none.before, 120 * MiB, JSON.stringify(none));
    assert.equal(none.freed, none.before, JSON.stringify(none));
    assert.equal(none.oneMore - none.before, 160 * MiB, JSON.stringify(none));
    assert.equal(none.allFreed, none.before, JSON.stringify(none));
    assert.equal(none.released, 0);
    assert.deepEqual(none.values, VALUES);
  },
);

test(
  "GOODVIBE_HUGE_BLOCKS=0 leaves large blocks to glibc: none advised, the same values",
  {
    skip: !linux && "Linux only",
  },
  () => {
    const p = probe({ GOODVIBE_HUGE_BLOCKS: "0" });
    assert.equal(p.during, p.before);
    assert.equal(p.oneMore, p.before);
    assert.equal(p.released, 0);
    assert.deepEqual(p.values, VALUES);
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
