/**
 * `goodvibe judge check` scores a judge resumably: Ctrl-C (a real SIGINT) stops it between batches with exit 130
 * and keeps the batches scored in its --cache folder; the rerun scores only the rest and prints what an
 * uninterrupted check prints; the scores file is removed once the check ends. The tiny judge scores a batch in
 * milliseconds, so the stopped run sets GOODVIBE_TEST_STOP_POINT_DELAY_MS (each stop point blocks as a long batch
 * would) and the signal is sent once the first batch's scores are in the file.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { findUnder, runCli, showRun, startCli } from "./cli-helpers.js";

const work = scratchDir("gv-judge-check-stop-");
const made = makeTinyChatModel({ seed: 5 });
after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});

// 20 labelled samples: batches of 8, 8, 4 (DEFAULT_JUDGE_BATCH)
const data = path.join(work, "code.jsonl");
fs.writeFileSync(
  data,
  Array.from({ length: 20 }, (_, i) =>
    JSON.stringify({ id: `s${i}`, lang: "cpp", code: `int f${i}() { return ${i}; }`, label: i % 2 }),
  ).join("\n") + "\n",
);

test("judge check: Ctrl-C keeps the scored batches in --cache; the rerun scores the rest, to the uninterrupted result", async () => {
  const args = (cache: string) => [
    "judge",
    "check",
    "--judge",
    made.dir,
    "-d",
    data,
    "--cache",
    cache,
    "--json",
  ];
  const whole = await runCli(args(path.join(work, "whole")));
  assert.equal(whole.code, 0, showRun(whole));
  assert.equal(
    fs.existsSync(path.join(work, "whole")),
    false,
    "a cache folder made for the scores is removed",
  );

  const cache = path.join(work, "cache");
  const run = startCli(args(cache), { env: { GOODVIBE_TEST_STOP_POINT_DELAY_MS: "300" } });
  let exited = false;
  void run.done.then(() => (exited = true));
  const limit = Date.now() + 120_000;
  while (!exited && !findUnder(cache, /^judge-check-.*\.jsonl$/)) {
    assert.ok(Date.now() < limit, "no scores file after 120 s");
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(exited, false, "the check ended before it could be stopped");
  run.child.kill("SIGINT");
  const stopped = await run.done;
  assert.equal(stopped.code, 130, showRun(stopped));
  assert.match(
    stopped.stderr,
    /interrupted: judge scoring stopped after 8 of 20 samples \(the scored ones are kept in /,
  );
  const scores = findUnder(cache, /^judge-check-.*\.jsonl$/)!;
  assert.equal(fs.readFileSync(scores, "utf8").trim().split("\n").length, 1, "one batch kept");

  const resumed = await runCli(args(cache));
  assert.equal(resumed.code, 0, showRun(resumed));
  assert.match(resumed.stderr, /8 of 20 samples' scores taken from an earlier run/);
  assert.deepEqual(JSON.parse(resumed.stdout), JSON.parse(whole.stdout));
  assert.equal(fs.existsSync(scores), false, "the scores file is removed once the check ends");
});

test("judge check: --cache is an output, checked before scoring: not an existing file, not inside the judge, not others' folder; eval's cache folder is shared", async () => {
  const args = (cache: string) => ["judge", "check", "--judge", made.dir, "-d", data, "--cache", cache];
  // an existing file: was a stack trace (EEXIST on mkdir) once scoring had begun
  const file = path.join(work, "a-file.jsonl");
  fs.writeFileSync(file, "x\n");
  const onFile = await runCli(args(file));
  assert.equal(onFile.code, 2, showRun(onFile));
  assert.match(onFile.stderr, /--cache .*a-file\.jsonl: exists/);
  assert.doesNotMatch(onFile.stderr, /internal error|\n\s+at /);
  assert.equal(fs.readFileSync(file, "utf8"), "x\n");
  // inside the judge folder it reads (was accepted: the scores were written into the judge)
  const inside = await runCli(args(path.join(made.dir, "cache")));
  assert.equal(inside.code, 2, showRun(inside));
  assert.match(inside.stderr, /lies inside the input --judge/);
  assert.equal(fs.existsSync(path.join(made.dir, "cache")), false);
  // a folder of someone else's files
  const theirs = path.join(work, "theirs");
  fs.mkdirSync(theirs);
  fs.writeFileSync(path.join(theirs, "notes.txt"), "mine\n");
  const occupied = await runCli(args(theirs));
  assert.equal(occupied.code, 2, showRun(occupied));
  assert.match(occupied.stderr, /"notes\.txt"/);
  // eval's files beside it are goodvibe's: the shared default folder is taken, and they stay
  const shared = path.join(work, "shared-cache");
  fs.mkdirSync(shared);
  fs.writeFileSync(path.join(shared, "preference-0123456789abcdef.jsonl"), "");
  const ok = await runCli(args(shared));
  assert.equal(ok.code, 0, showRun(ok));
  assert.deepEqual(fs.readdirSync(shared), ["preference-0123456789abcdef.jsonl"]);
});
