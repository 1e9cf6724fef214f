/**
 * The judge's training examples on pairs that label a code both ways (real CyberNative: 19 train pairs whose
 * secure and insecure code are the same text up to whitespace): such code is left out and counted, the rest is
 * exactly what the clean pairs alone give. And a judge training interrupted resumes to the judge it would have been.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { judgeExamples, trainJudge } from "../../src/recipes/train-judge.js";
import { GoodVibeError } from "../../src/errors.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import type { SecurityPair } from "../../src/data/pairs.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 3 });

test("judgeExamples leaves out code the pairs label both secure and insecure, and counts it", async () => {
  const tok = await loadTokenizer(made.dir);
  const clean = made.pairs.slice(0, 3);
  const fence = (code: string) => "```cpp\n" + code + "\n```";
  const extra: SecurityPair[] = [
    // one pair: the same code under both labels, but for indentation and case
    {
      id: "same",
      lang: "cpp",
      question: "q1",
      chosen: fence("int f() {\n  return g();\n}"),
      rejected: fence("int f() { RETURN g(); }"),
    },
    // two pairs: one's secure code is the other's insecure code
    { id: "a", lang: "cpp", question: "q2", chosen: fence("use(a);"), rejected: fence("bad(a);") },
    { id: "b", lang: "cpp", question: "q3", chosen: fence("bad(a);"), rejected: fence("ok(b);") },
  ];
  const all = judgeExamples(tok, [...clean, extra[0]!, extra[1]!, extra[2]!], 100_000);
  // "same" gives 2 conflicting samples, "a"'s insecure and "b"'s secure sample 2 more
  assert.equal(all.conflicting, 4);
  assert.equal(all.skipped, 0);
  const expected = judgeExamples(tok, clean, 100_000).examples;
  // the clean pairs' examples, then "a"'s secure sample and "b"'s insecure one
  const kept = judgeExamples(
    tok,
    [
      { ...extra[1]!, rejected: fence("x1();") },
      { ...extra[2]!, chosen: fence("x2();") },
    ],
    100_000,
  );
  assert.deepEqual(all.examples, [...expected, kept.examples[0], kept.examples[3]]);
  assert.equal(judgeExamples(tok, clean, 100_000).conflicting, 0);
});

test("trainJudge interrupted after some steps resumes from its run folder to the uninterrupted judge, bit for bit", async () => {
  const pairs = made.pairs.filter((_, i) => i % 12 === 5).slice(0, 6);
  const cfg = {
    lr: 3e-3,
    epochs: 2,
    batchSize: 2,
    gradAccum: 1,
    warmupRatio: 0,
    gradientCheckpointing: false,
  };
  const tmp = scratchDir("gv-judge-resume-");
  const whole = await trainJudge({
    baseModelDir: made.dir,
    pairs,
    outDir: path.join(tmp, "whole"),
    method: "full",
    cfg,
  });
  const runDir = path.join(tmp, "run");
  const outDir = path.join(tmp, "resumed");
  // stopped after 2 of the 12 steps (12 samples, 2 a step, 2 epochs), checkpointed: no judge is written, the error says how to go on
  await assert.rejects(
    trainJudge({
      baseModelDir: made.dir,
      pairs,
      outDir,
      runDir,
      method: "full",
      cfg: { ...cfg, stopAfterSteps: 2, checkpointEvery: 1 },
    }),
    (e: unknown) =>
      e instanceof GoodVibeError &&
      /stopped at step 2 of 12/.test(e.message) &&
      /same runDir to resume/.test(e.message),
  );
  assert.equal(fs.existsSync(outDir), false);
  const resumed = await trainJudge({ baseModelDir: made.dir, pairs, outDir, runDir, method: "full", cfg });
  assert.equal(resumed.train.steps, whole.train.steps);
  assert.equal(resumed.train.finalLoss, whole.train.finalLoss);
  const weights = (dir: string) => fs.readFileSync(path.join(dir, "model.safetensors"));
  assert.ok(weights(outDir).equals(weights(path.join(tmp, "whole"))), "the resumed judge's weights differ");
});
