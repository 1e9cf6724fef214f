/**
 * The LLM judge's settings through the one resolver: one typed config (src/eval/judge/config.ts) whose defaults are
 * the training loop's own, merged defaults < config file < flag < --set for `goodvibe judge train`, unknown keys
 * refused and named, and the experiment file's `judge.train` read by the same schema (same defaults, same errors;
 * the cache key of a judge is what it was before the settings became one config).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import { judgeTrainSettings, resolveJudgeTrainConfig } from "../../src/config/judge.js";
import { DEFAULT_JUDGE_TRAIN, judgeLoopConfig, judgeTrainSchema } from "../../src/eval/judge/config.js";
import { DEFAULT_TRAIN, DEFAULT_TRAIN_DATA } from "../../src/method/train-config.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { canonicalJson, fileHash, modelFolderHash, sha256 } from "../../src/io/hash.js";
import { PAPER_JUDGE } from "../../src/data/prompts.js";
import { JUDGE_RECORD_FILE } from "../../src/eval/judge/llm.js";
import { makeCliFixture, runCli, showRun } from "../cli/cli-helpers.js";

const dir = scratchDir("gv-judge-config-");
function yamlFile(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

test("the judge's defaults are the training loop's and the training data's, written once", () => {
  const d = judgeTrainSchema.parse({});
  assert.deepEqual(d, DEFAULT_JUDGE_TRAIN);
  assert.equal(d.method, "lora");
  for (const k of ["epochs", "lr", "batchSize", "gradAccum", "gradientCheckpointing", "seed"] as const)
    assert.deepEqual(d[k], DEFAULT_TRAIN[k], k);
  assert.equal(d.maxLength, DEFAULT_TRAIN_DATA.maxLength);
  assert.equal(d.maxPairs, DEFAULT_TRAIN_DATA.maxPairs);
  // the training loop a judge gets: the loop's defaults with the judge's settings over them
  assert.deepEqual(judgeLoopConfig({ ...d, epochs: 3, lr: 0.01 }), { ...DEFAULT_TRAIN, epochs: 3, lr: 0.01 });
});

test("judge train settings: default < config file < flag < --set", () => {
  const file = yamlFile("judge.yaml", "method: full\nepochs: 3\nlr: 0.002\nmaxLength: 2048\n");
  const f = resolveJudgeTrainConfig(file, {});
  assert.equal(f.method, "full");
  assert.equal(f.epochs, 3);
  assert.equal(f.maxLength, 2048);
  assert.equal(f.batchSize, DEFAULT_JUDGE_TRAIN.batchSize, "keys the file does not name keep their default");
  const g = resolveJudgeTrainConfig(file, { epochs: 5, lr: undefined });
  assert.equal(g.epochs, 5, "a flag over the file");
  assert.equal(g.lr, 0.002, "a flag not given (undefined) leaves the file's value");
  const h = resolveJudgeTrainConfig(file, { epochs: 5 }, ["epochs=7", "gradAccum=2"]);
  assert.equal(h.epochs, 7, "--set over the flag");
  assert.equal(h.gradAccum, 2);
  assert.deepEqual(resolveJudgeTrainConfig(undefined, {}), DEFAULT_JUDGE_TRAIN);
});

test("judge train settings: unknown keys and bad values are refused, each named", () => {
  assert.throws(
    () => resolveJudgeTrainConfig(yamlFile("typo.yaml", "epoch: 2\n"), {}),
    (e: unknown) => e instanceof InputError && /epoch/.test(e.message) && /typo\.yaml/.test(e.message),
  );
  assert.throws(
    () => resolveJudgeTrainConfig(undefined, {}, ["maxLenght=10"]),
    (e: unknown) => e instanceof InputError && /maxLenght/.test(e.message),
  );
  assert.throws(
    () => resolveJudgeTrainConfig(undefined, { method: "dora" }),
    (e: unknown) => e instanceof InputError && /method/.test(e.message),
  );
  assert.throws(
    () => resolveJudgeTrainConfig(undefined, {}, ["epochs=0"]),
    (e: unknown) => e instanceof InputError && /epochs/.test(e.message),
  );
});

const fx = makeCliFixture({ perLanguage: 3 });
after(() => fx.cleanup());
const devFile = path.join(fx.work, "dev.jsonl");
fs.copyFileSync(fx.pairsFile, devFile);

function spec(train: Record<string, unknown>) {
  return parseExperimentSpec(
    {
      name: "j",
      models: [{ name: "a", path: fx.model.dir }],
      data: { train: fx.pairsFile, dev: devFile },
      judge: { train: { base: fx.model.dir, ...train } },
    },
    "j.yaml",
  );
}

test("an experiment's judge.train is the same config: same defaults, same named errors", () => {
  // the thinking switch is the experiment's (top-level enableThinking), given to the judge's settings
  const { base: _b, data: _d, ...settings } = spec({}).judge!.train!;
  const { enableThinking: _t, ...rest } = DEFAULT_JUDGE_TRAIN;
  assert.deepEqual(settings, rest);
  assert.deepEqual(judgeTrainSettings(spec({}).judge!.train!, false), DEFAULT_JUDGE_TRAIN);
  const set = spec({ method: "full", epochs: 1, lr: 0.01 }).judge!.train!;
  assert.deepEqual(
    judgeTrainSettings(set, true),
    resolveJudgeTrainConfig(undefined, { method: "full", epochs: 1, lr: 0.01, enableThinking: true }),
  );
  assert.throws(
    () => spec({ epoch: 1 }),
    (e: unknown) => e instanceof InputError && /judge\.train/.test(e.message) && /epoch/.test(e.message),
  );
  assert.throws(
    () => spec({ enableThinking: true }),
    (e: unknown) =>
      e instanceof InputError && /judge\.train/.test(e.message) && /enableThinking/.test(e.message),
  );
});

test("an experiment's judge key is the one judges had before their settings became one config", () => {
  const t = { method: "lora", epochs: 1, lr: 0.001, batchSize: 8, gradAccum: 1, maxPairs: 256 };
  const plan = planExperiment(spec(t), { out: path.join(dir, "plan") });
  // the field list of the key as it was: every setting given, maxLength at its default 1024, no seed
  const expected = sha256(
    canonicalJson({
      version: "goodvibe-experiment/3",
      convention: PAPER_JUDGE,
      base: modelFolderHash(fx.model.dir),
      train: fileHash(fx.pairsFile),
      languages: null,
      method: "lora",
      epochs: 1,
      lr: 0.001,
      maxLength: 1024,
      batchSize: 8,
      gradAccum: 1,
      maxPairs: 256,
      // the one field added since (8e07cbe): a LoRA judge with dropout (DEFAULT_LORA's 0.05) trained checkpointed
      // before 5d3bba2 drew new dropout masks in the recomputation, so such judges are retrained, not reused
      dropoutMasks: "forward's",
    }),
  );
  assert.deepEqual([...plan.judges.keys()], [expected]);
  // a setting the key did not hold before changes it only when it leaves its default
  const seeded = planExperiment(spec({ ...t, seed: 1 }), { out: path.join(dir, "plan2") });
  assert.notDeepEqual([...seeded.judges.keys()], [expected]);
});

test("goodvibe judge train resolves -c < flag < --set and trains with what it resolved", async () => {
  const file = yamlFile("cli-judge.yaml", "method: full\nepochs: 3\nbatchSize: 2\ngradAccum: 1\nlr: 0.01\n");
  const out = path.join(dir, "judge");
  const r = await runCli([
    "judge",
    "train",
    "-m",
    fx.model.dir,
    "-d",
    fx.pairsFile,
    "-o",
    out,
    "-c",
    file,
    "--epochs",
    "2",
    "--dev-fraction",
    "0.5",
    "--set",
    "epochs=1",
    "--set",
    "maxPairs=4",
    "--set",
    "gradientCheckpointing=false",
  ]);
  assert.equal(r.code, 0, showRun(r));
  const rec = JSON.parse(fs.readFileSync(path.join(out, JUDGE_RECORD_FILE), "utf8"));
  assert.equal(rec.method, "full", "the file's method");
  assert.equal(rec.train.epochs, 1, "--set over the flag over the file");
  assert.equal(rec.train.batchSize, 2);
  assert.equal(rec.train.lr, 0.01);
  assert.equal(rec.train.gradientCheckpointing, false);
  assert.equal(rec.train.warmupRatio, DEFAULT_TRAIN.warmupRatio, "the loop's default where nothing is set");
  // maxPairs reached the training pairs: two examples (secure, insecure) per pair
  assert.equal(rec.examples + rec.skipped, 8);

  const bad = await runCli([
    "judge",
    "train",
    "-m",
    fx.model.dir,
    "-d",
    fx.pairsFile,
    "-o",
    path.join(dir, "j2"),
    "--set",
    "epoch=1",
  ]);
  assert.equal(bad.code, 2, showRun(bad));
  assert.match(bad.stderr, /epoch/);
  assert.ok(!fs.existsSync(path.join(dir, "j2")));
});
