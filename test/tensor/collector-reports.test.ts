/**
 * What the addon tells V8 about tensor memory (native/src/addon.cc, ReportLedger): every live handle's bytes, told
 * when it is made and given back exactly once when it is freed (dispose, the collector, teardown), whichever way it
 * was made (outside a scope, in a scope, returned from one, kept, left by a scope that threw, a raw handle); so
 * tensors leaked to the collector push V8 to collect them and memory stays bounded. (Why scoped tensors are told
 * too: BENCHMARKS.md, "V8's collector and the tensor reports".)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { Tensor, keep, tidy } from "../../src/tensor/index.js";
import { native } from "../../src/tensor/native.js";

const TENSOR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/tensor/index.js");
const NATIVE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/tensor/native.js");
const MiB = 1024 ** 2;
/** a float32 tensor of `mib` MiB, its pages written (so they count in RSS) */
const big = (mib: number) => Tensor.full([(mib * MiB) / 4], 1, "float32");

/**
 * The ledger's reported bytes relative to `base` (native.externalReports() then), exactly; V8's own count of
 * external memory must have moved as much, within less than one tensor (other parts of node report a few KiB).
 */
function expect(base: number[], reported: number, what = ""): void {
  const [r, v] = native.externalReports().map((x, i) => x - base[i]);
  assert.equal(r, reported, what);
  assert.ok(Math.abs(v - r) < MiB / 2, `${what}: V8's count moved by ${v}, the ledger's by ${r}`);
}

test("every tensor's bytes are told to V8 while it lives and given back exactly once", () => {
  const base = native.externalReports();

  const free = [big(8), big(8)];
  expect(base, 16 * MiB, "tensors made outside any scope");
  for (const t of free) t.dispose();
  for (const t of free) t.dispose(); // a second dispose gives nothing back twice
  expect(base, 0, "after dispose");

  const kept: Tensor[] = [];
  const returned = tidy(() => {
    const a = big(8);
    const b = tidy(() => big(8).add(1)); // the inner big(8) is disposed by the inner scope
    void big(2);
    kept.push(keep(big(1)));
    expect(base, (8 + 8 + 2 + 1) * MiB, "inside a scope");
    return { a, sum: a.add(b) };
  });
  expect(base, (1 + 8 + 8) * MiB, "what the scope returned or kept");
  returned.a.dispose();
  returned.sum.dispose();
  kept[0].dispose();
  expect(base, 0, "after disposing what the scope returned");

  // a scope that throws leaves its tensors to the collector
  const leftBehind: Tensor[] = [];
  tidy(() => {
    assert.throws(() =>
      tidy(() => {
        leftBehind.push(big(4));
        throw new Error("boom");
      }),
    );
  });
  expect(base, 4 * MiB, "left by a scope that threw");
  leftBehind[0].dispose();
  expect(base, 0);

  // a raw handle, which no scope tracks
  let raw: ReturnType<typeof native.full> | null = null;
  tidy(() => {
    raw = native.full([MiB / 4], 0, "float32");
  });
  expect(base, 1 * MiB, "a raw handle");
  native.dispose(raw!);
  expect(base, 0);
});

test("tensors freed by the collector give their reports back", async () => {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const base = native.externalReports();
  (() => {
    big(8);
    tidy(() => big(8)); // returned from the outermost scope, then dropped
    tidy(() => void keep(big(8)));
  })();
  expect(base, 24 * MiB);
  for (let i = 0; i < 20 && native.externalReports()[0] !== base[0]; i++) {
    gc();
    await new Promise((r) => setImmediate(r)); // finalizers may run after the collection
  }
  expect(base, 0, "every collected handle gave its bytes back");
});

test("a worker's handles go with its env without harm to the main thread", async () => {
  // terminated inside a scope, with live handles, some held by the scope
  const code =
    `(async () => {` +
    ` const { Tensor, tidy } = await import(${JSON.stringify(pathToFileURL(TENSOR).href)});` +
    ` const { parentPort } = await import("node:worker_threads");` +
    ` globalThis.leak = [Tensor.full([1 << 20], 1, "float32")];` +
    ` tidy(() => {` +
    `  globalThis.leak.push(Tensor.full([1 << 20], 2, "float32"));` +
    `  parentPort.postMessage("in scope");` +
    `  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);` +
    ` });` +
    `})()`;
  const w = new Worker(code, { eval: true });
  await new Promise<void>((resolve, reject) => {
    w.once("message", () => resolve());
    w.once("error", reject);
  });
  await w.terminate();
  const base = native.externalReports();
  const t = big(1);
  expect(base, 1 * MiB, "the main thread's ledger is its own");
  assert.equal(t.sum().item(), (1 * MiB) / 4);
  t.dispose();
});

/** Runs `script` (with Tensor, tidy, keep, native in scope) in a fresh node; its last stdout line as JSON. */
function inChild(script: string): unknown {
  const r = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const { Tensor, tidy, keep } = await import(${JSON.stringify(TENSOR)});` +
        `const { native } = await import(${JSON.stringify(NATIVE)}); ${script}`,
    ],
    { encoding: "utf8", env: { ...process.env, GOODVIBE_THREADS: "1" } },
  );
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

test("tensors leaked to the collector are still collected: memory stays bounded", () => {
  // 96 tensors of 8 MiB (768 MiB) made and dropped without dispose, in each way a tensor escapes scope tracking,
  // each way in a fresh process: V8 collects them at ~64 MiB of reports, so the peak RSS stays far below their sum
  // (130-220 MiB measured; with no reports it grows by all 768 MiB)
  const ways: Record<string, string> = {
    outside: `Tensor.full([size], 1, "float32");`,
    returned: `tidy(() => Tensor.full([size], 1, "float32"));`,
    kept: `tidy(() => { keep(Tensor.full([size], 1, "float32")); });`,
    scopeThrew: `try { tidy(() => { Tensor.full([size], 1, "float32"); throw new Error(); }); } catch {}`,
    nestedScopeThrew: `tidy(() => { try { tidy(() => { Tensor.full([size], 1, "float32"); throw new Error(); }); } catch {} });`,
  };
  const growth: Record<string, number> = {};
  for (const [way, make] of Object.entries(ways))
    growth[way] = inChild(`
      const MiB = 1024 ** 2, n = 96, size = (8 * MiB) / 4;
      Tensor.full([4], 1, "float32").sum().item();
      const start = process.memoryUsage().rss;
      let peak = start;
      for (let i = 0; i < n; i++) {
        ${make}
        peak = Math.max(peak, process.memoryUsage().rss);
        await new Promise((r) => setImmediate(r)); // lets finalizers run, as a real loop with I/O does
      }
      console.log((peak - start) / MiB);`) as number;
  console.log(`# peak RSS growth per way, MiB: ${JSON.stringify(growth)}`);
  for (const [way, mib] of Object.entries(growth))
    assert.ok(
      mib < 384,
      `${way}: RSS grew by ${mib.toFixed(0)} MiB while 768 MiB of dropped tensors were made`,
    );
});
