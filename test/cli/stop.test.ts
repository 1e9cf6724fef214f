/**
 * Ctrl-C and SIGTERM as a user sends them: a real signal to a CLI process in the middle of each long stage stops
 * it within a step at a consistent checkpoint with exit 130, and the rerun of the same command resumes and ends
 * with what an uninterrupted run writes.
 *
 * The stages of these tiny models take milliseconds, so the runs set GOODVIBE_TEST_STOP_POINT_DELAY_MS: every
 * stop point first blocks the thread as a long libtorch call would (a signal is then only seen if the loop yields
 * to the event loop), which makes each stage last seconds. The signal is sent once the stage's log line shows,
 * and each test checks from the files that the stage was really cut short.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { findUnder, hashOutput, makeCliFixture, runCli, showRun, signalWhenLogged } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 16 });
after(() => fx.cleanup());

/** Every stop point blocks this long: a stage of n steps lasts at least n × this. */
const SLOW = { GOODVIBE_TEST_STOP_POINT_DELAY_MS: "250" };
/** Exit within this long of the signal (a step here takes ~250 ms; the bound is for a loaded machine). */
const PROMPT_MS = 30_000;

function hardenArgs(name: string, extra: string[] = []): string[] {
  return [
    "harden",
    ...["-m", fx.model.dir, "-d", fx.pairsFile, "-o", path.join(fx.work, name)],
    ...["--top-k", "4", "--epochs", "1", "--set", "identify.maxPairs=16", "--set", "identify.batchSize=1"],
    ...["--set", "train.maxPairs=16", "--set", "train.batchSize=1", "--set", "train.gradAccum=2"],
    ...["--set", "train.lr=0.01", "--set", "train.checkpointEvery=100"],
    ...extra,
  ];
}

let reference: Map<string, string> | null = null;
async function referenceTree(): Promise<Map<string, string>> {
  if (!reference) {
    const r = await runCli(hardenArgs("ref"));
    assert.equal(r.code, 0, showRun(r));
    reference = hashOutput(path.join(fx.work, "ref"));
  }
  return reference;
}

const runDirOf = (name: string) => path.join(fx.work, `.${name}.run`);

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  test(`harden: ${sig} during identification stops within a batch (exit 130, state saved); the rerun resumes to the same output`, async () => {
    const name = `id-${sig}`;
    const r = await signalWhenLogged(hardenArgs(name), /identification: \d+ samples/, [sig], { env: SLOW });
    assert.equal(r.code, 130, showRun(r));
    assert.ok(r.exitMs < PROMPT_MS, `exit ${r.exitMs} ms after the signal`);
    assert.match(r.stderr, /interrupted: identification interrupted after \d+ of 32 samples/);
    assert.ok(!fs.existsSync(path.join(fx.work, name)), "an output folder appeared");
    const state = findUnder(runDirOf(name), /identify-state\/state\.json$/);
    assert.ok(state, "no identification state was saved at the stop");
    const done = (JSON.parse(fs.readFileSync(state, "utf8")) as { done: number }).done;
    assert.ok(done >= 1 && done < 32, `state after ${done} samples`);

    const rerun = await runCli(hardenArgs(name));
    assert.equal(rerun.code, 0, showRun(rerun));
    assert.deepEqual(hashOutput(path.join(fx.work, name)), await referenceTree());
  });
}

test("harden: SIGINT during training stops within a micro-batch at the last finished step; the rerun resumes byte-equal", async () => {
  const name = "train-int";
  const r = await signalWhenLogged(hardenArgs(name), /training goodvibe:/, ["SIGINT"], { env: SLOW });
  assert.equal(r.code, 130, showRun(r));
  assert.ok(r.exitMs < PROMPT_MS, `exit ${r.exitMs} ms after the signal`);
  assert.match(r.stderr, /interrupted: training stopped after step \d+ of 8/);
  assert.ok(!fs.existsSync(path.join(fx.work, name)), "an output folder appeared");

  const rerun = await runCli(hardenArgs(name));
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.match(rerun.stderr, /identification: reusing/);
  assert.deepEqual(hashOutput(path.join(fx.work, name)), await referenceTree());
});

test("harden: a second signal while stopping exits 130 at once; nothing is corrupted and the rerun completes", async () => {
  const name = "twice";
  const r = await signalWhenLogged(hardenArgs(name), /training goodvibe:/, ["SIGINT", "SIGTERM"], {
    env: SLOW,
    gapMs: 20,
  });
  assert.equal(r.code, 130, showRun(r));
  assert.ok(r.exitMs < PROMPT_MS, `exit ${r.exitMs} ms after the second signal`);
  assert.ok(!fs.existsSync(path.join(fx.work, name)), "an output folder appeared");
  const rerun = await runCli(hardenArgs(name));
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.deepEqual(hashOutput(path.join(fx.work, name)), await referenceTree());
});
