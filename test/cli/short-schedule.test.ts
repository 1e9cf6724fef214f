/**
 * `harden` on so little data that training makes one optimiser step: with the paper's warm-up (0.1, as
 * transformers' schedulers do it) that step is at learning rate 0, and the run published a "hardened" model equal
 * to its input without a word. It now says so before any work (stderr) and with the result (stdout, --json's
 * `schedule`), naming the numbers and the fixes; with the fix (no warm-up) the run trains.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 4 });
after(() => fx.cleanup());

const harden = (out: string, extra: string[] = []) => [
  "harden",
  ...["-m", fx.model.dir, "-d", fx.pairsFile, "-o", out, "--top-k", "4", "--epochs", "1"],
  ...["--set", "train.maxPairs=1", "--set", "identify.maxPairs=8", ...extra],
];

interface Out {
  schedule: {
    examples: number;
    steps: number;
    warmupSteps: number;
    fullRateSteps: number;
    level?: string;
    warning?: string;
  };
  train: { steps: number };
  fold: { rowsChanged: number };
}

test("harden whose one training step falls in the warm-up says it trains nothing, before any work and in its result, naming steps, warm-up and the fix", async () => {
  const r = await runCli(harden(path.join(fx.work, "one-step"), ["--json"]));
  assert.equal(r.code, 0, showRun(r));
  const warning =
    /warning: training: 1 training example × 1 epoch at 4 per optimiser step \(train\.batchSize 1 × train\.gradAccum 4\) make 1 step, 1 of them warm-up \(train\.warmupRatio 0\.1: the learning rate rises from 0 at the first step\): every step is at learning rate 0, so training changes no weight and the result equals the input model; use .*--set train\.warmupRatio=0/;
  assert.match(r.stderr, warning, showRun(r));
  // before any work: ahead of identification's first line
  assert.ok(r.stderr.search(warning) < r.stderr.search(/identif/i), showRun(r));
  const j = JSON.parse(r.stdout) as Out;
  assert.deepEqual(
    { ...j.schedule, warning: undefined },
    { examples: 1, steps: 1, warmupSteps: 1, fullRateSteps: 0, level: "none", warning: undefined },
  );
  assert.match(j.schedule.warning ?? "", /every step is at learning rate 0/);
  // what the warning says: nothing was folded
  assert.equal(j.fold.rowsChanged, 0);
});

test("with train.warmupRatio=0 the one step trains; the human output shows the schedule and warns that so short a run barely changes the model", async () => {
  const r = await runCli(harden(path.join(fx.work, "no-warmup"), ["--set", "train.warmupRatio=0"]));
  assert.equal(r.code, 0, showRun(r));
  assert.match(
    r.stdout,
    /^schedule: 1 optimiser steps, 0 of them warm-up, 1 steps' worth at the full learning rate$/m,
  );
  assert.match(r.stdout, /^warning: training: 1 training example .* so the model will barely change/m);
  assert.match(r.stdout, /^fold: [1-9]\d* rows changed/m, showRun(r));
});
