/**
 * `goodvibe identify` into one output twice at once (a job submitted twice, a second terminal): the second is refused
 * at once (exit 2), naming the host and pid of the run that holds the run folder, instead of identifying again
 * beside it and clashing at the end on the neuron map the first published; the first ends as a run alone would.
 * With --shard i/n the claim is per shard: shards of one job share a run folder and run at once, a second process on
 * the same shard is refused. A dead run's claim is taken over.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { makeCliFixture, runCli, showRun, startCli, type CliResult, type CliRun } from "./cli-helpers.js";

// 16 pairs (32 samples) on the tiny model: long enough to be caught holding its claim (polled every 2 ms), short
// enough that each run is mostly its start (about 2 s of CPU)
const fx = makeCliFixture({ perLanguage: 4 });
after(() => fx.cleanup());

const common = [
  ...["-m", fx.model.dir, "-d", fx.pairsFile, "--top-k", "4"],
  ...["--set", "identify.maxPairs=16", "--set", "identify.batchSize=2", "--set", "identify.profileSamples=8"],
];

/** The neuron map without its wall time: two runs of the same inputs agree on the rest. */
function readMap(file: string): Record<string, unknown> {
  const j = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  delete j.wallSeconds;
  return j;
}

/** A claim file as a run on this host with `pid` writes it (io/claim.ts). */
function plantClaim(dir: string, pid: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const body = { host: os.hostname(), pid, token: "0123456789abcdef", since: new Date().toISOString() };
  fs.writeFileSync(path.join(dir, ".claim.json"), JSON.stringify(body));
}

/** The pid of a process that has ended (a run killed earlier). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
    encoding: "utf8",
  });
  return Number(r.stdout);
}

/** Start a run, wait until `ready` (it holds its run folder), and stop it there (SIGSTOP). */
async function startAndHold(
  args: string[],
  what: string,
  ready: (stderr: string) => boolean,
): Promise<CliRun> {
  const run = startCli(args);
  let stderr = "";
  run.child.stderr!.on("data", (s: string) => (stderr += s));
  let ended: CliResult | null = null;
  void run.done.then((r) => (ended = r));
  const limit = Date.now() + 120_000;
  while (!ready(stderr)) {
    if (ended) assert.fail(`the first run ended before it ${what}:\n${showRun(ended)}`);
    assert.ok(Date.now() < limit, `the first run never ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  // held still while the second runs (as a busy machine might): alive, holding the run folder
  run.child.kill("SIGSTOP");
  return run;
}

function assertRefusedBy(r: CliResult, pid: number | undefined): void {
  assert.equal(r.code, 2, showRun(r));
  const m = /is in use by another goodvibe run \((\S+) pid (\d+) since /.exec(r.stderr);
  assert.ok(m, `the refusal names no holder:\n${r.stderr}`);
  assert.equal(m[1], os.hostname());
  assert.equal(Number(m[2]), pid);
  assert.doesNotMatch(r.stderr, /identification( shard \d+\/\d+)?: /, "the refused run identified");
}

// one run's neuron map, the reference of both tests
const alone = path.join(fx.work, "alone.json");

test("identify twice at once into one -o: the second is refused at once (exit 2, host and pid of the first); the first writes a lone run's map; a dead run's claim is taken over", async () => {
  // the lone run finds the claim of a run killed while it held the folder: it takes it over and completes (the
  // folder is `<out>.run`, where earlier versions kept identify's state: still resumed)
  plantClaim(`${alone}.run`, deadPid());
  const a = await runCli(["identify", ...common, "-o", alone]);
  assert.equal(a.code, 0, showRun(a));
  assert.ok(!fs.existsSync(path.join(`${alone}.run`, ".claim.json")), "the dead run's claim is still there");
  assert.ok(!fs.existsSync(path.join(fx.work, ".alone.json.run")), "the earlier run folder was not resumed");

  const out = path.join(fx.work, "out.json");
  const args = ["identify", ...common, "-o", out];
  const runDir = path.join(fx.work, ".out.json.run");
  // its claim is there, or (without claims) its stage slot
  const first = await startAndHold(
    args,
    `held ${runDir}`,
    () =>
      fs.existsSync(runDir) &&
      fs.readdirSync(runDir).some((n) => n === ".claim.json" || n.startsWith("identify-")),
  );
  let second: CliResult;
  try {
    second = await runCli(args);
  } finally {
    first.child.kill("SIGCONT");
  }
  const r1 = await first.done;
  assertRefusedBy(second, first.child.pid);
  assert.match(second.stderr, /--out .*out\.json/);
  assert.equal(r1.code, 0, showRun(r1));
  assert.deepEqual(readMap(out), readMap(alone));
  // the claim is given back with the run
  assert.ok(!fs.existsSync(path.join(runDir, ".claim.json")));
});

test("identify --shard: the same shard twice at once is refused, another shard of the job runs beside it in the same run folder; a dead shard's claim is taken over", async () => {
  const runDir = path.join(fx.work, "shared.run");
  const shardArgs = (i: number, n: number, out: string) => [
    ...["identify", ...common, "--shard", `${i}/${n}`, "-o", out, "--run-dir", runDir],
  ];
  const s1 = path.join(fx.work, "shards", "1");
  const s2 = path.join(fx.work, "shards", "2");
  const shard1 = path.join(runDir, "identify-shard-1-of-2");
  // shard 2's last process died holding its claim: shard 2's next run takes it over
  plantClaim(path.join(runDir, "identify-shard-2-of-2"), deadPid());
  // it holds its shard's claim, or (without claims) it has begun its share
  const first = await startAndHold(
    shardArgs(1, 2, s1),
    `held ${shard1}`,
    (stderr) =>
      fs.existsSync(path.join(shard1, ".claim.json")) || /identification shard 1\/2: a share/.test(stderr),
  );
  let same: CliResult;
  let other: CliResult;
  try {
    // a second process on shard 1 (its own output even): refused, naming the first
    same = await runCli(shardArgs(1, 2, path.join(fx.work, "shards", "1-again")));
    // shard 2 of the same job, in the same run folder, while shard 1 is held: computed
    other = await runCli(shardArgs(2, 2, s2));
  } finally {
    first.child.kill("SIGCONT");
  }
  const r1 = await first.done;
  assertRefusedBy(same, first.child.pid);
  assert.match(same.stderr, /--shard 1\/2/);
  assert.ok(!fs.existsSync(path.join(fx.work, "shards", "1-again")), "the refused shard wrote an output");
  assert.equal(other.code, 0, showRun(other));
  assert.equal(r1.code, 0, showRun(r1));

  // both shards' state is gone with them (the dead claim too), and merged they are one run's map
  assert.deepEqual(fs.readdirSync(runDir), []);
  const merged = path.join(fx.work, "merged.json");
  const m = await runCli(["identify", "merge", "-o", merged, s2, s1]);
  assert.equal(m.code, 0, showRun(m));
  if (!fs.existsSync(alone)) assert.equal((await runCli(["identify", ...common, "-o", alone])).code, 0);
  assert.deepEqual(readMap(merged), readMap(alone));
});
