/**
 * A run too short for its warm-up: transformers' get_cosine_schedule_with_warmup returns 0 at step 0 while warming
 * up (current_step / max(1, num_warmup_steps)) and the Trainer takes ceil(warmup_ratio × steps) warm-up steps, so
 * with the paper's 0.1 a 1-step run moves no weight. planSchedule must count the steps as planBatches makes them
 * and add the multipliers up; scheduleProblem must say that a run adding up to none trains nothing, and warn about
 * one adding up to few, with the numbers and the fixes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { planBatches, planSchedule, scheduleProblem } from "../../src/method/train.js";
import { DEFAULT_TRAIN, FEW_FULL_RATE_STEPS } from "../../src/method/train-config.js";

/** transformers' _get_cosine_schedule_with_warmup_lr_lambda (num_cycles 0.5) with the Trainer's ceil warm-up. */
function hfFactor(step: number, total: number, ratio: number): number {
  const warmup = Math.ceil(total * ratio);
  if (step < warmup) return step / Math.max(1, warmup);
  const progress = (step - warmup) / Math.max(1, total - warmup);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)));
}

test("planSchedule counts planBatches' optimiser steps and sums transformers' multipliers over them", () => {
  for (const [examples, epochs, batchSize, gradAccum, warmupRatio] of [
    [1, 1, 1, 4, 0.1],
    [8, 1, 1, 4, 0.1],
    [7, 2, 2, 3, 0.1],
    [1000, 2, 1, 4, 0.1],
    [5, 3, 1, 1, 0],
    [9, 1, 1, 1, 1],
  ] as const) {
    const cfg = { ...DEFAULT_TRAIN, epochs, batchSize, gradAccum, warmupRatio };
    const p = planSchedule(examples, cfg);
    const steps = planBatches(examples, cfg).length;
    let sum = 0;
    for (let s = 0; s < steps; s++) sum += hfFactor(s, steps, warmupRatio);
    assert.equal(p.steps, steps);
    assert.equal(p.warmupSteps, Math.ceil(steps * warmupRatio));
    assert.ok(Math.abs(p.fullRateSteps - sum) < 1e-9, `${p.fullRateSteps} vs ${sum}`);
  }
});

test("one step with the paper's warm-up trains nothing: said, naming the steps, the warm-up and the fixes", () => {
  const cfg = { ...DEFAULT_TRAIN, epochs: 1 }; // batch 1 × accumulation 4: 4 examples or fewer make 1 step
  const p = planSchedule(3, cfg);
  assert.deepEqual(p, { examples: 3, steps: 1, warmupSteps: 1, fullRateSteps: 0 });
  const problem = scheduleProblem(p, cfg, 3);
  assert.equal(problem?.level, "none");
  assert.match(problem!.message, /3 training examples × 1 epoch at 4 per optimiser step/);
  assert.match(problem!.message, /make 1 step, 1 of them warm-up \(train\.warmupRatio 0\.1/);
  assert.match(problem!.message, /changes no weight and the result equals the input model/);
  assert.match(problem!.message, /train\.maxPairs is 3; 0 takes all pairs/);
  assert.match(problem!.message, /--set train\.warmupRatio=0/);
});

test("a short run that moves the weights a little is warned about; a paper-sized one is not", () => {
  const cfg = { ...DEFAULT_TRAIN, warmupRatio: 0, epochs: 1 };
  const one = scheduleProblem(planSchedule(4, cfg), cfg, 0);
  assert.equal(one?.level, "few");
  assert.match(one!.message, /1 steps' worth at the full learning rate/);
  // no warm-up: neither a rise from 0 nor the warm-up fix is named
  assert.match(one!.message, /make 1 step, 0 of them warm-up \(train\.warmupRatio 0\): 1 steps' worth/);
  assert.doesNotMatch(one!.message, /rises from 0|warmupRatio=0/);
  // the paper's schedule over 2 epochs of 1000 pairs at 4 per step: 500 steps, 50 warming up
  const paper = planSchedule(1000, DEFAULT_TRAIN);
  assert.equal(paper.steps, 500);
  assert.ok(paper.fullRateSteps >= FEW_FULL_RATE_STEPS);
  assert.equal(scheduleProblem(paper, DEFAULT_TRAIN, 0), null);
});
