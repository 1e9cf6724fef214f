/**
 * Two `goodvibe harden` runs into one output at once (a job submitted twice, a second terminal): the second must
 * be refused at once, naming the run that holds the run folder, instead of computing every stage again into the
 * same run folder beside the first and failing only at the end on the output the first published. The first ends
 * with the same folder as a run alone; once it is done, the same command finds its result.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT, scratchDir } from "../evalcore/make-model.js";
import { hashOutput, runCli, showRun, startCli } from "./cli-helpers.js";

// the organism (not the tiny fixture model, which identifies and trains faster than a poll): seconds per stage
const ORGANISM = path.join(REPO_ROOT, "assets/organism");
const work = scratchDir("gv-concurrent-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

test("harden twice at once into one --out: the second is refused at once (exit 2, naming the first); the first completes as a run alone", async () => {
  const args = (name: string) => [
    ...["harden", "-m", ORGANISM, "-d", path.join(ORGANISM, "data/train.jsonl"), "-o", path.join(work, name)],
    ...["--top-k", "4", "--epochs", "1", "--set", "identify.maxPairs=8", "--set", "train.maxPairs=16"],
    ...["--set", "train.batchSize=1", "--set", "train.gradAccum=1", "--set", "train.lr=0.01"],
  ];
  const alone = await runCli(args("alone"));
  assert.equal(alone.code, 0, showRun(alone));

  const first = startCli(args("out"));
  let firstDone = false;
  void first.done.then(() => (firstDone = true));
  const runDir = path.join(work, ".out.run");
  // the first is working in its run folder: a stage's slot is there
  const limit = Date.now() + 120_000;
  while (!(fs.existsSync(runDir) && fs.readdirSync(runDir).some((n) => /^identify-/.test(n)))) {
    if (firstDone) assert.fail(`the first run ended before it identified:\n${showRun(await first.done)}`);
    assert.ok(Date.now() < limit, "the first run never opened its run folder");
    await new Promise((r) => setTimeout(r, 20));
  }
  // held still while the second runs (as a busy machine might): it is alive and holds the run folder
  first.child.kill("SIGSTOP");
  let second;
  try {
    second = await runCli(args("out"));
  } finally {
    first.child.kill("SIGCONT");
  }
  const r1 = await first.done;
  assert.equal(second.code, 2, showRun(second));
  assert.match(second.stderr, /is in use by another goodvibe run \(.*pid \d+/);
  // its run folder is --out's own (.out.run): another --out is what gets a folder of its own
  assert.match(second.stderr, /; this run is for --out \S+out: .* or choose another --out\n/);
  assert.doesNotMatch(
    second.stderr,
    /identification: \d+ samples|training goodvibe/,
    "the second computed stages",
  );
  assert.equal(r1.code, 0, showRun(r1));
  assert.deepEqual(hashOutput(path.join(work, "out")), hashOutput(path.join(work, "alone")));

  const again = await runCli(args("out"));
  assert.equal(again.code, 0, showRun(again));
  assert.match(again.stderr, /already complete for these inputs and settings: nothing to do/);
});

test("a --run-dir shared by two outputs, in use: the refusal says to choose another --run-dir, not another --out", async () => {
  // a live run holds the folder: this test process's own claim, as io/claim.ts writes it
  const runDir = path.join(work, "shared.run");
  fs.mkdirSync(runDir);
  const claim = {
    host: os.hostname(),
    pid: process.pid,
    token: "0123456789abcdef",
    since: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(runDir, ".claim.json"), JSON.stringify(claim));
  const r = await runCli([
    ...["harden", "-m", ORGANISM, "-d", path.join(ORGANISM, "data/train.jsonl"), "-o", path.join(work, "d2")],
    ...["--run-dir", runDir, "--top-k", "4", "--epochs", "1"],
  ]);
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, new RegExp(`is in use by another goodvibe run \\(\\S+ pid ${process.pid} since `));
  assert.match(r.stderr, /; this run is for --out \S+d2: .* or choose another --run-dir\n/);
  assert.ok(!fs.existsSync(path.join(work, "d2")));
});
