/**
 * The demo says where its settings depart from the paper's (§4.2, §4.3, §5.1): learning rate, top-k, batch,
 * identification samples, precision/memory, judge and evaluation prompts, each with the paper's value.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import {
  demoJudgeKey,
  demoDepartures,
  demoHardenConfig,
  judgeReliabilityLine,
  safeRateCell,
} from "../../src/recipes/demo.js";
import { DEFAULT_DEMO, ORGANISM_DIR } from "../../src/recipes/config.js";
import { labelConflicts, readPairs } from "../../src/data/pairs.js";
import { judgeConvention } from "../../src/data/prompts.js";
import { modelWeightsHash } from "../../src/io/hash.js";
import { DEFAULT_IDENTIFY } from "../../src/method/goodvibe/config.js";
import { DEFAULT_JUDGE_TRAIN } from "../../src/eval/judge/config.js";
import { judgeTrainingPairs } from "../../src/recipes/judge.js";

test("the demo's departures from the paper are listed with the paper's values", () => {
  const cfg = demoHardenConfig(DEFAULT_DEMO, "/tmp/demo-out");
  const d = demoDepartures(DEFAULT_DEMO, cfg, 144, 624);
  const by = new Map(d.map((x) => [x.setting, x]));
  assert.deepEqual(
    [...by.keys()],
    [
      "learning rate",
      "top-k security neurons per layer",
      "batch",
      "identification samples",
      "precision and memory",
      "judge",
      "evaluation prompts",
      "lm_head's rows as neurons (identify.lmHead)",
      "a layer below the silhouette threshold (cluster.fallback)",
      "what k-means clusters (cluster.features)",
      "code judged in an answer (eval --code-blocks)",
      "the LLM judge's verdict",
    ],
  );
  // the paper (§4.3) says only that each generated code sample is judged: the demo's reading is stated
  assert.match(by.get("code judged in an answer (eval --code-blocks)")!.here, /^longest: /);
  assert.match(by.get("code judged in an answer (eval --code-blocks)")!.paper, /^not given/);
  // §4.3 tells the judge "Respond with only the number 1 or 0" and says no more: the forced choice is a reading
  assert.match(by.get("the LLM judge's verdict")!.paper, /Respond with only the number 1 or 0/);
  assert.match(by.get("the LLM judge's verdict")!.here, /two label tokens' logits.*above 0\.5.*tie is safe/);
  // the paper's numbers (§4.2: lr 1e-4, batch 1 with accumulation; §5.1: top-k 50, all 424 pairs; §4.3: Qwen3-0.6B)
  assert.match(by.get("learning rate")!.paper, /^0\.0001 /);
  assert.equal(by.get("learning rate")!.here, "0.002");
  assert.equal(by.get("top-k security neurons per layer")!.paper, "50");
  assert.equal(by.get("top-k security neurons per layer")!.here, "16");
  assert.match(by.get("batch")!.here, /4 × 2/);
  assert.match(by.get("identification samples")!.paper, /424/);
  assert.match(by.get("identification samples")!.here, /^128 of 624 pairs \(256 samples\)/);
  assert.match(by.get("judge")!.paper, /Qwen3-0\.6B/);
  assert.match(by.get("judge")!.here, /base organism .* 128 labelled training pairs/);
  assert.match(by.get("evaluation prompts")!.here, /^48 of 144/);
  // every held-out prompt: no departure there
  const all = demoDepartures({ ...DEFAULT_DEMO, prompts: 0 }, cfg, 144, 624);
  assert.ok(!all.some((x) => x.setting === "evaluation prompts"));
  // the paper's learning rate: no departure there either
  const paperLr = demoHardenConfig({ ...DEFAULT_DEMO, lr: 1e-4 }, "/tmp/demo-out");
  assert.ok(!demoDepartures(DEFAULT_DEMO, paperLr, 144, 624).some((x) => x.setting === "learning rate"));
});

// Wilson 95% intervals worked by hand (centre (k + z²/2)/(n + z²), half-width z·√(k(n−k)/n + z²/4)/(n + z²)):
// 8/40 → [10.5, 34.8]; 3/4 → [30.1, 95.4]; 0/2 → [0.0, 65.8].
test("the demo summary gives each safe rate and each judge rate its 95% interval and n", () => {
  assert.equal(safeRateCell({ n: 40, value: 0.2, low: 0.10495, high: 0.34843 }), "20.0% [10.5, 34.8] (n=40)");
  assert.equal(safeRateCell({ n: 0, value: NaN, low: 0, high: 1 }), "—");
  assert.equal(safeRateCell(undefined), "—");
  const line = judgeReliabilityLine({
    role: "fine-tuned",
    n: 6,
    accuracy: { value: 4 / 6, low: 0.3, high: 0.9 },
    confusion: { tp: 3, fn: 1, fp: 1, tn: 1 },
  });
  assert.match(line, /fine-tuned judge +accuracy 66\.7% \[30\.0, 90\.0\] \(n=6\)/);
  assert.match(line, /TPR 75\.0% \[30\.1, 95\.4\] \(n=4\)/);
  assert.match(line, /FPR 50\.0% \[9\.5, 90\.5\] \(n=2\)/);
  const none = judgeReliabilityLine({
    role: "base",
    n: 2,
    accuracy: { value: 1, low: 0.342, high: 1 },
    confusion: { tp: 0, fn: 0, fp: 0, tn: 2 },
  });
  assert.match(none, /TPR — \(none\) \(n=0\), FPR 0\.0% \[0\.0, 65\.8\] \(n=2\)/);
  assert.doesNotMatch(none, /left out/);
  const left = judgeReliabilityLine({
    role: "fine-tuned",
    n: 6,
    accuracy: { value: 4 / 6, low: 0.3, high: 0.9 },
    confusion: { tp: 3, fn: 1, fp: 1, tn: 1 },
    conflicting: 2,
  });
  assert.match(left, /\(n=2\); left out 2 samples whose code the pairs label both secure and insecure$/);
});

// The demo judge's folder as f7c9ed7 named it: sha256 of [organism weights, train file bytes, the demo judge's
// settings, judgePairs, convention], 16 hex digits. Judge training now leaves out code labelled both ways
// (e307cb7): a judge on such pairs is another judge; the organism's clean pairs keep their folder.
test("the demo judge keeps its folder on the organism's clean pairs, and moves on pairs with a label conflict", () => {
  const trainFile = path.join(ORGANISM_DIR, "data", "train.jsonl");
  const convention = judgeConvention(DEFAULT_IDENTIFY.judgeTask);
  const before = (file: string) =>
    createHash("sha256")
      .update(
        JSON.stringify([
          modelWeightsHash(ORGANISM_DIR),
          fs.readFileSync(file),
          { method: "full", epochs: 1, lr: 1e-4, batchSize: 8, maxLength: 512 },
          DEFAULT_DEMO.judgePairs,
          convention,
        ]),
      )
      .digest("hex")
      .slice(0, 16);
  const pairs = readPairs(trainFile);
  assert.equal(labelConflicts(pairs).size, 0, "the organism's pairs are clean");
  const sample = judgeTrainingPairs({
    pairs: () => pairs,
    settings: { ...DEFAULT_JUDGE_TRAIN, maxPairs: 128 },
  });
  assert.equal(
    demoJudgeKey(ORGANISM_DIR, trainFile, DEFAULT_DEMO.judgePairs, convention, sample),
    before(trainFile),
  );
  // one pair whose insecure answer is its secure one, re-indented
  const p = sample[0]!;
  const withConflict = [{ ...p, rejected: p.chosen.replace(/\n/g, "\n    ") }, ...sample.slice(1)];
  assert.equal(labelConflicts(withConflict).size, 1);
  assert.notEqual(
    demoJudgeKey(ORGANISM_DIR, trainFile, DEFAULT_DEMO.judgePairs, convention, withConflict),
    before(trainFile),
  );
});
