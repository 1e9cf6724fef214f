/**
 * What `judge train` and `judge check` print of a judge's reliability: every rate with its n and its 95% Wilson
 * interval (as the report's judge table), not bare percentages a reader takes for exact. The references are the
 * Wilson score interval worked by hand (z = 1.96): 3/4 → [30.1, 95.4], 1/2 → [9.5, 90.5], 0/2 → [0.0, 65.8],
 * 2/2 → [34.2, 100.0].
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { reliabilityText } from "../../src/cli/commands/judge-run.js";

const confusion = (tp: number, fp: number, tn: number, fn: number) => ({
  tp,
  fp,
  tn,
  fn,
  accuracy: (tp + tn) / (tp + fp + tn + fn),
  tpr: tp / (tp + fn),
  fpr: fp / (fp + tn),
  precision: tp / (tp + fp),
});

test("judge reliability: accuracy, TPR and FPR each with its n and its 95% Wilson interval", () => {
  const text = reliabilityText({ n: 4, confusion: confusion(1, 0, 2, 1) });
  assert.match(text, /accuracy 75\.0% \[30\.1, 95\.4\] of 4 samples/);
  assert.match(text, /TPR 50\.0% \[9\.5, 90\.5\] of 2 insecure/);
  assert.match(text, /FPR 0\.0% \[0\.0, 65\.8\] of 2 secure/);
  assert.match(text, /95% Wilson/);
});

test("judge reliability: a rate with no samples under it is said, not NaN%", () => {
  const text = reliabilityText({ n: 2, confusion: confusion(2, 0, 0, 0) });
  assert.match(text, /TPR 100\.0% \[34\.2, 100\.0\] of 2 insecure/);
  assert.match(text, /FPR — \(none\) of 0 secure/);
  assert.doesNotMatch(text, /NaN/);
});

test("judge reliability: samples left out for labels both ways are counted in the text, none says nothing", () => {
  const left = reliabilityText({ n: 4, confusion: confusion(1, 0, 2, 1), conflicting: 6 });
  assert.match(left, /of 4 samples/);
  assert.match(left, /left out 6 samples whose code the pairs label both secure and insecure/);
  assert.match(
    reliabilityText({ n: 4, confusion: confusion(1, 0, 2, 1), conflicting: 1 }),
    /left out 1 sample whose/,
  );
  assert.doesNotMatch(
    reliabilityText({ n: 4, confusion: confusion(1, 0, 2, 1), conflicting: 0 }),
    /left out/,
  );
});
