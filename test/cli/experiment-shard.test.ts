/**
 * An experiment over several workers sharing one output folder: two concurrent processes, one with --shard 1/2
 * and one given shard 2/2 by Slurm array variables, then a plain run that writes results.json from the cache
 * alone; and two concurrent plain runs on the same cells (each cell claimed by one of them). Either way the
 * results equal one process's, timing aside. Plus the shard arithmetic and the claims, unit by unit.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import YAML from "yaml";
import { shardFromEnvironment } from "../../src/util/shard.js";
import { cellShare } from "../../src/experiment/shard.js";
import { claimHolder, tryClaim } from "../../src/io/claim.js";
import { experimentSplit, makeCliFixture, runCli, showRun, startCli } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 4 });
after(() => fx.cleanup());

test("shards from Slurm arrays and Kubernetes Indexed Jobs", () => {
  const env = (e: Record<string, string>) => shardFromEnvironment(e)?.shard;
  assert.equal(shardFromEnvironment({}), null);
  assert.deepEqual(
    env({ SLURM_ARRAY_TASK_ID: "0", SLURM_ARRAY_TASK_COUNT: "4", SLURM_ARRAY_TASK_MIN: "0" }),
    {
      index: 1,
      count: 4,
    },
  );
  // --array=1-8: ids 1..8
  assert.deepEqual(env({ SLURM_ARRAY_TASK_ID: "8", SLURM_ARRAY_TASK_MIN: "1", SLURM_ARRAY_TASK_MAX: "8" }), {
    index: 8,
    count: 8,
  });
  // --array=0-9:3 → 0, 3, 6, 9
  assert.deepEqual(
    env({
      SLURM_ARRAY_TASK_ID: "6",
      SLURM_ARRAY_TASK_MIN: "0",
      SLURM_ARRAY_TASK_MAX: "9",
      SLURM_ARRAY_TASK_STEP: "3",
    }),
    { index: 3, count: 4 },
  );
  // --array=1,4,9: not contiguous
  assert.throws(
    () => env({ SLURM_ARRAY_TASK_ID: "9", SLURM_ARRAY_TASK_MIN: "1", SLURM_ARRAY_TASK_COUNT: "3" }),
    /contiguous/,
  );
  assert.throws(() => env({ SLURM_ARRAY_TASK_ID: "2" }), /SLURM_ARRAY_TASK_COUNT/);
  assert.deepEqual(env({ JOB_COMPLETION_INDEX: "0", GOODVIBE_SHARD_COUNT: "5" }), { index: 1, count: 5 });
  assert.throws(() => env({ JOB_COMPLETION_INDEX: "2" }), /GOODVIBE_SHARD_COUNT is not:/);
  assert.throws(
    () => env({ JOB_COMPLETION_INDEX: "0", GOODVIBE_SHARD_COUNT: "0" }),
    /GOODVIBE_SHARD_COUNT is 0, not a number of shards/,
  );
  assert.throws(() => env({ JOB_COMPLETION_INDEX: "5", GOODVIBE_SHARD_COUNT: "5" }), /not below/);
});

test("cell shares: every cell in exactly one shard, equal keys together, balanced", () => {
  const cells = Array.from({ length: 23 }, (_, i) => ({ key: `k${i % 19}` }));
  for (const n of [1, 2, 5, 19, 30]) {
    const shares = Array.from({ length: n }, (_, i) => cellShare(cells, { index: i + 1, count: n }));
    for (let k = 0; k < 19; k++) assert.equal(shares.filter((s) => s.has(`k${k}`)).length, 1);
    const sizes = shares.map((s) => s.size);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `${n}: ${sizes}`);
  }
});

test("claims: exclusive between processes, nested within one, taken over when the holder is dead or silent", () => {
  const dir = scratchDir("gv-claim-");
  try {
    const release = tryClaim(dir)!;
    assert.ok(release);
    const nested = tryClaim(dir)!;
    assert.ok(nested, "the same process may claim again");
    nested();
    assert.ok(fs.existsSync(path.join(dir, ".claim.json")), "still held by the outer claim");
    release();
    assert.ok(!fs.existsSync(path.join(dir, ".claim.json")));

    const write = (host: string, pid: number) =>
      fs.writeFileSync(
        path.join(dir, ".claim.json"),
        JSON.stringify({ host, pid, token: "t", since: new Date().toISOString() }),
      );
    // a live process of this host (the test runner's parent) holds it
    write(os.hostname(), process.ppid);
    assert.equal(tryClaim(dir), null);
    assert.match(claimHolder(dir)!, new RegExp(`pid ${process.ppid}`));
    // a dead process of this host: taken over at once
    write(os.hostname(), 2 ** 22 + 12345);
    const r2 = tryClaim(dir)!;
    assert.ok(r2);
    r2();
    // another host: its heartbeat decides
    write("some-other-host", 1);
    assert.equal(tryClaim(dir), null);
    const old = new Date(Date.now() - 3600_000);
    fs.utimesSync(path.join(dir, ".claim.json"), old, old);
    const r3 = tryClaim(dir)!;
    assert.ok(r3, "an hour without a heartbeat is stale");
    r3();
    // a claim file created but not yet written (another worker between its exclusive create and its write): held
    fs.writeFileSync(path.join(dir, ".claim.json"), "");
    assert.equal(tryClaim(dir), null, "a claim being written is not taken over");
    assert.equal(claimHolder(dir), "unknown (claim being written)");
    fs.writeFileSync(path.join(dir, ".claim.json"), '{"host":');
    assert.equal(tryClaim(dir), null, "nor one half written");
    fs.utimesSync(path.join(dir, ".claim.json"), old, old);
    const r4 = tryClaim(dir)!;
    assert.ok(r4, "an unreadable claim without a heartbeat for an hour is stale");
    r4();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("claims: a worker killed while claiming leaves a whole claim or none, and its claims are taken over at once", async () => {
  // A worker claims folder after folder in a tight loop and is SIGKILLed at some moment: every claim it left
  // must name its (now dead) process, so the next worker takes it over at once instead of waiting for it to go
  // stale. An exclusive create followed by a write leaves an empty claim when the kill falls between the two.
  const shard = new URL("../../src/io/claim.js", import.meta.url).href;
  const child = `import { tryClaim } from ${JSON.stringify(shard)};
    const root = process.argv[1];
    for (let i = 0; ; i++) tryClaim(root + "/c" + i);`;
  const root = scratchDir("gv-claim-kill-");
  try {
    let claims = 0;
    for (let round = 0; round < 12; round++) {
      const dir = path.join(root, `r${round}`);
      fs.mkdirSync(dir);
      const p = spawn(process.execPath, ["--input-type=module", "-e", child, dir], { stdio: "ignore" });
      const exited = new Promise<void>((r) => p.once("exit", () => r()));
      // kill it a few milliseconds into its loop (a varying moment each round)
      while (!fs.existsSync(path.join(dir, "c1"))) await new Promise((r) => setTimeout(r, 1));
      await new Promise((r) => setTimeout(r, round % 7));
      p.kill("SIGKILL");
      await exited;
      for (const c of fs.readdirSync(dir)) {
        const file = path.join(dir, c, ".claim.json");
        if (!fs.existsSync(file)) continue; // killed after its mkdir, before its claim
        claims++;
        const claim = JSON.parse(fs.readFileSync(file, "utf8")) as { pid: number; host: string };
        assert.equal(claim.pid, p.pid, `${file}: ${fs.readFileSync(file, "utf8")}`);
        assert.equal(claimHolder(path.join(dir, c)), null, `${file}: a dead worker's claim counts as held`);
      }
      // the last folder it claimed is taken over at once
      const last = fs.readdirSync(dir).filter((c) => fs.existsSync(path.join(dir, c, ".claim.json")));
      const release = tryClaim(path.join(dir, last[last.length - 1]!));
      assert.ok(release, "a dead worker's claim was not taken over");
      release();
    }
    assert.ok(claims >= 12, `${claims} claims over 12 rounds`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

/** Timing fields differ between runs; everything else must not. */
function results(out: string) {
  const r = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8"));
  return JSON.parse(JSON.stringify(r), (k, v) =>
    ["wallSeconds", "flopsPerSecond", "peakMemoryBytes", "createdAt", "finishedAt", "generatedAt"].includes(k)
      ? 0
      : v,
  );
}

test("two workers on one folder: --shard 1/2 and a Slurm array task, then one report; two on the same cells", async () => {
  const { train, dev } = experimentSplit(fx, "exp");
  const spec = {
    name: "tiny",
    models: [{ name: "tiny", path: fx.model.dir }],
    data: { train, dev },
    eval: { maxPrompts: 4, maxNewTokens: 8, batchSize: 4 },
    methods: ["base", "goodvibe"],
    seeds: [0],
    defaults: {
      identify: { topK: 4, maxPairs: 4, maxLength: 512, batchSize: 4, profileSamples: 0 },
      cluster: { features: "importance" },
      train: { epochs: 1, maxPairs: 4, batchSize: 2, gradAccum: 1, lr: 0.01, maxLength: 512 },
    },
    grids: [{ name: "threshold", key: "cluster.threshold", values: [0.9] }],
  };
  const file = path.join(fx.work, "tiny.yaml");
  fs.writeFileSync(file, YAML.stringify(spec));
  const run = (out: string, extra: string[] = [], env: Record<string, string> = {}) =>
    startCli(["experiment", "run", file, "-o", path.join(fx.work, out), "--json", ...extra], { env });

  const ref = await runCli(["experiment", "run", file, "-o", path.join(fx.work, "ref"), "--json"]);
  assert.equal(ref.code, 0, showRun(ref));
  assert.equal(JSON.parse(ref.stdout).cells, 3);

  // shards: 1/2 by flag, 2/2 from a Slurm array (--array=0-1, task 1), at the same time
  const [a, b] = await Promise.all([
    run("sharded", ["--shard", "1/2"]).done,
    run("sharded", [], { SLURM_ARRAY_TASK_ID: "1", SLURM_ARRAY_TASK_MIN: "0", SLURM_ARRAY_TASK_MAX: "1" })
      .done,
  ]);
  assert.equal(a.code, 0, showRun(a));
  assert.equal(b.code, 0, showRun(b));
  const sa = JSON.parse(a.stdout) as { ran: string[]; shard: unknown };
  const sb = JSON.parse(b.stdout) as { ran: string[]; shard: unknown };
  assert.deepEqual(sa.shard, { index: 1, count: 2 });
  assert.deepEqual(sb.shard, { index: 2, count: 2 });
  assert.match(b.stderr, /shard 2\/2 from SLURM_ARRAY_TASK_ID=1/);
  // distinct keys dealt round-robin: the shards' cells are disjoint and cover all three
  assert.equal(sa.ran.filter((c) => sb.ran.includes(c)).length, 0);
  assert.equal(new Set([...sa.ran, ...sb.ran]).size, 3);
  const last = await runCli(["experiment", "run", file, "-o", path.join(fx.work, "sharded"), "--json"]);
  assert.equal(last.code, 0, showRun(last));
  assert.deepEqual(JSON.parse(last.stdout).ran, [], "every cell came from the shards' cache");
  assert.deepEqual(results(path.join(fx.work, "sharded")), results(path.join(fx.work, "ref")));

  // two plain workers on the same cells: each cell computed by one of them (or harmlessly by both)
  const [c, d] = await Promise.all([run("same").done, run("same").done]);
  assert.equal(c.code, 0, showRun(c));
  assert.equal(d.code, 0, showRun(d));
  const ran = [...JSON.parse(c.stdout).ran, ...JSON.parse(d.stdout).ran] as string[];
  // a cell is claimed by the worker that starts it: the other leaves it, or finds it done
  assert.equal(ran.length, 3, `cells computed: ${ran}`);
  assert.equal(new Set(ran).size, 3, `a cell was computed twice: ${ran}`);
  if (!fs.existsSync(path.join(fx.work, "same", "results.json"))) {
    const fin = await runCli(["experiment", "run", file, "-o", path.join(fx.work, "same"), "--json"]);
    assert.equal(fin.code, 0, showRun(fin));
  }
  assert.deepEqual(results(path.join(fx.work, "same")), results(path.join(fx.work, "ref")));
  // no claim is left behind
  const claims = fs
    .readdirSync(path.join(fx.work, "same", "work"), { recursive: true })
    .filter((f) => String(f).endsWith(".claim.json"));
  assert.deepEqual(claims, []);
});

test("a sharded worker waits for its own cell held by a worker on another host, then takes it over: a retried pod completes its share", async () => {
  // a scheduler's retry runs on another host than the worker that died, whose claim stays fresh until it goes
  // stale; before, the retry left the cell "to it" and exited 0 with its share undone
  const { train, dev } = experimentSplit(fx, "retry");
  const file = path.join(fx.work, "retry.yaml");
  fs.writeFileSync(
    file,
    YAML.stringify({
      name: "retry",
      models: [{ name: "tiny", path: fx.model.dir }],
      data: { train, dev },
      eval: { maxPrompts: 4, maxNewTokens: 8, batchSize: 4 },
      methods: ["base"],
      seeds: [0],
    }),
  );
  const out = (name: string) => path.join(fx.work, name);
  const ref = await runCli(["experiment", "run", file, "-o", out("retry-ref"), "--json"]);
  assert.equal(ref.code, 0, showRun(ref));
  const [key] = fs.readdirSync(path.join(out("retry-ref"), "work"));
  assert.ok(key, "the cell's work folder");
  // the dead pod's claim: another host, heartbeat just now
  const plant = (name: string) => {
    const dir = path.join(out(name), "work", key!);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, ".claim.json"),
      JSON.stringify({ host: "goodvibe-cells-0-dead1", pid: 7, token: "t", since: new Date().toISOString() }),
    );
  };
  const env = { GOODVIBE_CLAIM_STALE_SECONDS: "3", GOODVIBE_CLAIM_POLL_MS: "200" };
  plant("retry-sharded");
  const t0 = Date.now();
  const retried = await runCli(
    ["experiment", "run", file, "-o", out("retry-sharded"), "--shard", "1/2", "--json"],
    {
      env,
    },
  );
  assert.equal(retried.code, 0, showRun(retried));
  assert.match(retried.stderr, /waiting for goodvibe-cells-0-dead1 pid 7/);
  assert.deepEqual(JSON.parse(retried.stdout).ran.length, 1, "the cell was computed here");
  assert.ok(Date.now() - t0 >= 2500, "taken over only once the claim went stale");
  assert.deepEqual(results(out("retry-sharded")), results(out("retry-ref")));
  // unsharded workers cooperate: the cell is left to its holder, as before
  plant("retry-plain");
  const plain = await runCli(["experiment", "run", file, "-o", out("retry-plain"), "--json"], { env });
  assert.equal(plain.code, 0, showRun(plain));
  assert.match(plain.stderr, /left to it/);
  assert.equal(fs.existsSync(path.join(out("retry-plain"), "results.json")), false);
});

test("the shipped Slurm script and Kubernetes manifest are well formed and agree with the shard reader", async () => {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
  const sh = path.join(root, "examples/slurm-array.sh");
  const { spawnSync } = await import("node:child_process");
  const check = spawnSync("bash", ["-n", sh]);
  assert.equal(check.status, 0, String(check.stderr));
  assert.match(fs.readFileSync(sh, "utf8"), /identify merge -o/);
  const job = YAML.parse(fs.readFileSync(path.join(root, "examples/k8s-indexed-job.yaml"), "utf8"));
  assert.equal(job.kind, "Job");
  assert.equal(job.spec.completionMode, "Indexed");
  const env = Object.fromEntries(
    (job.spec.template.spec.containers[0].env as { name: string; value: string }[]).map((e) => [
      e.name,
      e.value,
    ]),
  );
  assert.equal(Number(env.GOODVIBE_SHARD_COUNT), job.spec.completions, "GOODVIBE_SHARD_COUNT = completions");
  const lastPod = shardFromEnvironment({
    JOB_COMPLETION_INDEX: String(job.spec.completions - 1),
    GOODVIBE_SHARD_COUNT: env.GOODVIBE_SHARD_COUNT,
  });
  assert.deepEqual(lastPod?.shard, { index: job.spec.completions, count: job.spec.completions });
});
