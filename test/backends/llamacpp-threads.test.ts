/**
 * llama.cpp's threads follow the cores this process may use: node-llama-cpp alone starts at least 4 threads,
 * which made generation 20× slower on a 2-core machine. The count comes from CPU affinity capped by the cgroup
 * quota (GOODVIBE_THREADS or the `threads` option override it).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  blasWaitEnv,
  cgroupCpuQuota,
  openmpWaitEnv,
  otherRunnable,
  usableCores,
} from "../../src/util/cores.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { exportGguf } from "../../src/io/export-gguf.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { runCli, showRun } from "../cli/cli-helpers.js";

const tmp = scratchDir("gv-cores-");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test("cgroup CPU quota: v2 cpu.max, v1 cfs quota/period, unlimited", () => {
  const v2 = path.join(tmp, "v2");
  fs.mkdirSync(v2);
  fs.writeFileSync(path.join(v2, "cpu.max"), "150000 100000\n");
  assert.equal(cgroupCpuQuota(v2), 1.5);
  fs.writeFileSync(path.join(v2, "cpu.max"), "max 100000\n");
  assert.equal(cgroupCpuQuota(v2), null);
  const v1 = path.join(tmp, "v1");
  fs.mkdirSync(path.join(v1, "cpu"), { recursive: true });
  fs.writeFileSync(path.join(v1, "cpu", "cpu.cfs_quota_us"), "200000\n");
  fs.writeFileSync(path.join(v1, "cpu", "cpu.cfs_period_us"), "100000\n");
  assert.equal(cgroupCpuQuota(v1), 2);
  fs.writeFileSync(path.join(v1, "cpu", "cpu.cfs_quota_us"), "-1\n");
  assert.equal(cgroupCpuQuota(v1), null);
  assert.equal(cgroupCpuQuota(path.join(tmp, "none")), null);
});

test("usable cores: affinity capped by the quota, GOODVIBE_THREADS overrides", () => {
  const saved = process.env.GOODVIBE_THREADS;
  try {
    delete process.env.GOODVIBE_THREADS;
    const q = cgroupCpuQuota();
    const expected = Math.max(1, Math.min(os.availableParallelism(), q === null ? Infinity : Math.floor(q)));
    assert.equal(usableCores(), expected);
    process.env.GOODVIBE_THREADS = "3";
    assert.equal(usableCores(), 3);
  } finally {
    if (saved === undefined) delete process.env.GOODVIBE_THREADS;
    else process.env.GOODVIBE_THREADS = saved;
  }
});

test("the llama.cpp backend computes with the usable cores by default, or the threads asked for", async () => {
  const made = makeTinyChatModel({ seed: 3 });
  const gguf = path.join(scratchDir("gv-threads-"), "m.gguf");
  exportGguf(made.dir, gguf, { outtype: "f32" });
  const saved = process.env.GOODVIBE_THREADS;
  delete process.env.GOODVIBE_THREADS;
  try {
    const b = await openLlamaCppBackend({ modelPath: gguf, contextSize: 64 });
    try {
      assert.equal(b.threads, usableCores());
      assert.ok(
        b.threads <= os.availableParallelism(),
        `${b.threads} threads on ${os.availableParallelism()} cores`,
      );
    } finally {
      await b.close();
    }
    const one = await openLlamaCppBackend({ modelPath: gguf, contextSize: 64, threads: 1 });
    try {
      assert.equal(one.threads, 1);
    } finally {
      await one.close();
    }
    await assert.rejects(
      openLlamaCppBackend({ modelPath: gguf, threads: 0 }),
      /threads must be a positive integer/,
    );
  } finally {
    if (saved !== undefined) process.env.GOODVIBE_THREADS = saved;
  }
});

test("CLI: generate --threads sets the compute threads of either backend; llama.cpp defaults to the usable cores", async () => {
  const made = makeTinyChatModel({ seed: 4 });
  const gguf = path.join(scratchDir("gv-threads-cli-"), "m.gguf");
  exportGguf(made.dir, gguf, { outtype: "f32" });
  const gen = async (...extra: string[]): Promise<{ threads: number; text: string }> => {
    const r = await runCli([
      "--json",
      "generate",
      "-m",
      made.dir,
      "-p",
      "hello",
      "--max-new-tokens",
      "2",
      ...extra,
    ]);
    assert.equal(r.code, 0, showRun(r));
    return JSON.parse(r.stdout) as { threads: number; text: string };
  };
  // the child inherits this environment, GOODVIBE_THREADS included when set: the same rule applies there
  assert.equal((await gen("--backend", "llamacpp", "--gguf", gguf)).threads, usableCores());
  assert.equal((await gen("--backend", "llamacpp", "--gguf", gguf, "--threads", "1")).threads, 1);
  // the built-in engine runs a model this small on 1 thread unless asked otherwise
  assert.equal((await gen("--threads", "3")).threads, 3);
  const bad = await runCli(["generate", "-m", made.dir, "-p", "x", "--threads", "0"]);
  assert.equal(bad.code, 2, showRun(bad));
  assert.match(bad.stderr, /--threads/);
});

/** A project module's URL, quoted, for a script run by `freshProcess`. */
const srcUrl = (p: string) => JSON.stringify(new URL(`../../src/${p}`, import.meta.url).href);

/** Run an ES-module script in a fresh Node process (libtorch loads anew there) with `env`; its last line as JSON. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function freshProcess(lines: string[], env: NodeJS.ProcessEnv): any {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", lines.join("\n")], {
    env,
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

test("libtorch computes with the usable cores too: a fresh process starts with usableCores() threads, and large models keep them", () => {
  const script = [
    `const { usableCores } = await import(${srcUrl("util/cores.js")});`,
    `const { getNumThreads } = await import(${srcUrl("tensor/index.js")});`,
    `const { threadsFor } = await import(${srcUrl("models/load.js")});`,
    `console.log(JSON.stringify({ cores: usableCores(), torch: getNumThreads(), big: threadsFor(5e8), small: threadsFor(1e6) }));`,
  ];
  const env = { ...process.env };
  delete env.GOODVIBE_THREADS;
  const got = freshProcess(script, env);
  assert.equal(got.torch, got.cores);
  assert.equal(got.big, got.cores);
  assert.equal(got.small, 1);
  assert.equal(freshProcess(script, { ...env, GOODVIBE_THREADS: "3" }).torch, 3);
});

test("a thread count the program chose before loading a model is the one that computes; otherwise the model's size picks", () => {
  // a small model (under 20 M parameters) defaults to 1 thread; a benchmark's --threads given before the load must win
  const made = makeTinyChatModel({ seed: 5 });
  const script = (chosen: number | null) => [
    `const { getNumThreads, setNumThreads } = await import(${srcUrl("tensor/index.js")});`,
    `const { loadModel } = await import(${srcUrl("models/load.js")});`,
    chosen === null ? "" : `setNumThreads(${chosen});`,
    `loadModel(${JSON.stringify(made.dir)});`,
    `console.log(JSON.stringify({ torch: getNumThreads() }));`,
  ];
  const env = { ...process.env };
  delete env.GOODVIBE_THREADS;
  assert.equal(freshProcess(script(null), env).torch, 1);
  assert.equal(freshProcess(script(3), env).torch, 3);
  assert.equal(freshProcess(script(null), { ...env, GOODVIBE_THREADS: "3" }).torch, 3);
});

test("OpenBLAS, where libtorch's float32 products go, computes with the threads asked for, and no more", () => {
  const script = [
    `const { native } = await import(${srcUrl("tensor/native.js")});`,
    `const { Tensor, setNumThreads, tidy } = await import(${srcUrl("tensor/index.js")});`,
    `const { usableCores } = await import(${srcUrl("util/cores.js")});`,
    `const atLoad = native.blasThreads(); const cores = usableCores();`,
    `setNumThreads(2); const two = native.blasThreads();`,
    // two threads: one product, then the CPU time spent while this thread sleeps 300 ms (OpenBLAS's default
    // spun ~0.1 s after each product)
    `setNumThreads(2); tidy(() => Tensor.randn([512, 1024]).matmul(Tensor.randn([1024, 1024])));`,
    `const s0 = process.cpuUsage(); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);`,
    `const s1 = process.cpuUsage(s0); const idleCpu = (s1.user + s1.system) / 1e6;`,
    `setNumThreads(1); const one = native.blasThreads();`,
    // float32 products on one thread for about a second: before, OpenBLAS split each over its own pool and its
    // worker then spun for ~0.1 s, so the process used two cores' time
    `const a = Tensor.randn([512, 1024]); const b = Tensor.randn([1024, 1024]);`,
    `const c0 = process.cpuUsage(); const t0 = performance.now(); let n = 0;`,
    `while (performance.now() - t0 < 1000) { tidy(() => a.matmul(b)); n++; }`,
    `const c = process.cpuUsage(c0); const wall = (performance.now() - t0) / 1000;`,
    `console.log(JSON.stringify({ atLoad, cores, two, one, n, idleCpu, cpuPerWall: (c.user + c.system) / 1e6 / wall }));`,
  ];
  const env = { ...process.env };
  delete env.GOODVIBE_THREADS;
  delete env.OPENBLAS_NUM_THREADS;
  delete env.OPENBLAS_THREAD_TIMEOUT;
  delete env.GOTO_THREAD_TIMEOUT;
  const got = freshProcess(script, env);
  if (got.atLoad === -1) return; // libtorch's float32 products are not OpenBLAS's here (MKL): nothing to check
  assert.equal(got.atLoad, got.cores);
  assert.equal(got.two, 2);
  assert.equal(got.one, 1);
  assert.ok(got.n > 5, `only ${got.n} products in a second`);
  if (got.cores >= 2) {
    assert.ok(
      got.cpuPerWall < 1.3,
      `one thread used ${got.cpuPerWall.toFixed(2)} cores' time over its products`,
    );
    assert.ok(
      got.idleCpu < 0.03,
      `${got.idleCpu.toFixed(3)} CPU s went by while the process slept after a product`,
    );
  }
});

test("OpenMP and OpenBLAS wait policies: sleep at once when other work is runnable, spin briefly otherwise, never override the user", () => {
  assert.deepEqual(openmpWaitEnv({}, 1.2), { OMP_WAIT_POLICY: "PASSIVE" });
  assert.deepEqual(openmpWaitEnv({}, 0.5), { OMP_WAIT_POLICY: "PASSIVE" });
  assert.deepEqual(openmpWaitEnv({}, 0.2), { GOMP_SPINCOUNT: "30000" });
  assert.deepEqual(openmpWaitEnv({}, null), { GOMP_SPINCOUNT: "30000" });
  assert.deepEqual(openmpWaitEnv({ OMP_WAIT_POLICY: "ACTIVE" }, 3), {});
  assert.deepEqual(openmpWaitEnv({ GOMP_SPINCOUNT: "0" }, 0), {});
  assert.deepEqual(blasWaitEnv({}), { OPENBLAS_THREAD_TIMEOUT: "4" });
  assert.deepEqual(blasWaitEnv({ OPENBLAS_THREAD_TIMEOUT: "28" }), {});
  assert.deepEqual(blasWaitEnv({ GOTO_THREAD_TIMEOUT: "20" }), {});
  const stat = path.join(tmp, "stat");
  fs.writeFileSync(stat, "cpu  1 2 3\nprocs_running 3\nprocs_blocked 0\n");
  assert.equal(otherRunnable(3, 1, stat), 2);
  fs.writeFileSync(stat, "cpu  1 2 3\n");
  assert.equal(otherRunnable(1, 1, stat), null);
  assert.equal(otherRunnable(1, 1, path.join(tmp, "no-stat")), null);
});

test(
  "libtorch loads with threads that sleep when another process is computing, and with the user's own policy",
  { skip: !fs.existsSync("/proc/stat") },
  async () => {
    const script = [
      `const { getNumThreads } = await import(${srcUrl("tensor/index.js")});`,
      `getNumThreads();`,
      `console.log(JSON.stringify({ policy: process.env.OMP_WAIT_POLICY ?? null, spin: process.env.GOMP_SPINCOUNT ?? null }));`,
    ];
    const env = { ...process.env };
    delete env.OMP_WAIT_POLICY;
    delete env.GOMP_SPINCOUNT;
    // a competing process, busy on a core for as long as the check runs
    const hog = spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
    try {
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(freshProcess(script, env), { policy: "PASSIVE", spin: null });
    } finally {
      hog.kill();
    }
    assert.deepEqual(freshProcess(script, { ...env, OMP_WAIT_POLICY: "ACTIVE" }), {
      policy: "ACTIVE",
      spin: null,
    });
  },
);
