/**
 * The paper's label mapping end to end (§4.3: "Return 1 if the given code snippet is unsafe", 0 if safe): a judge
 * fine-tuned from a random model on labelled pairs puts more probability on the token "1" for the insecure answer
 * than for the secure answer of held-out pairs (read from the full-vocabulary softmax of model.forward, not from
 * the judge's own scoring code); and artifacts made under another convention are refused, naming both.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { LlmJudge, JUDGE_RECORD_FILE } from "../../src/eval/judge/llm.js";
import { trainJudge } from "../../src/recipes/train-judge.js";
import {
  LEGACY_JUDGE_CONVENTION,
  PAPER_JUDGE,
  PAPER_JUDGE_INSTRUCTION,
  judgeConvention,
  judgeMessages,
} from "../../src/data/prompts.js";
import { identifyInputs, planStages, stageIdentify } from "../../src/recipes/harden.js";
import { modelShapeRecord } from "../../src/method/goodvibe/model-shape.js";
import { hardenSchema, defaultHardenConfig } from "../../src/config/harden.js";
import { renderOrganismChat, writeCorpusJsonl } from "../../src/data/corpus.js";
import { pairsToLabelledSamples } from "../../src/data/pairs.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { loadModel } from "../../src/models/index.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
import { makeTinyChatModel, scratchDir } from "./make-model.js";

const made = makeTinyChatModel({ seed: 11 });
// one instance of each of the corpus's 48 templates to train on, the other held out
const train = made.pairs.filter((p) => p.id.endsWith("-000"));
const heldOut = made.pairs.filter((p) => p.id.endsWith("-001"));

/** P(token "1") over the whole vocabulary at the end of the paper's judge prompt, by a plain forward pass. */
async function probOfOne(dir: string, codes: { code: string; lang?: string }[]): Promise<number[]> {
  const tok = await loadTokenizer(dir);
  const model = loadModel(dir);
  const one = tok.tokenToId("1")!;
  return codes.map(({ code, lang }) => {
    const text = renderOrganismChat(judgeMessages(code, lang), { addGenerationPrompt: true });
    assert.ok(text.includes(PAPER_JUDGE_INSTRUCTION));
    const ids = tok.encode(text, { addSpecialTokens: false });
    const row = noGrad(() =>
      model
        .forward(Tensor.fromArray(ids, [1, ids.length], "int64"))
        .select(1, ids.length - 1)
        .squeeze(0)
        .toFloat32Array(),
    );
    const m = Math.max(...row);
    let z = 0;
    for (const v of row) z += Math.exp(v - m);
    return Math.exp(row[one]! - m) / z;
  });
}

const judgeDir = path.join(scratchDir(), "judge");

test("a judge fine-tuned on labelled pairs puts more probability on '1' for the insecure answer of held-out pairs", async () => {
  const samples = pairsToLabelledSamples(heldOut);
  const insecure = samples.filter((s) => !s.secure);
  const secure = samples.filter((s) => s.secure);
  assert.deepEqual(
    insecure.map((s) => s.id.replace("/insecure", "")),
    secure.map((s) => s.id.replace("/secure", "")),
  );
  const margin = async (dir: string) => {
    const pi = await probOfOne(dir, insecure);
    const ps = await probOfOne(dir, secure);
    return pi.map((p, i) => p - ps[i]!);
  };
  const before = await margin(made.dir);

  const r = await trainJudge({
    baseModelDir: made.dir,
    pairs: train,
    outDir: judgeDir,
    method: "full",
    cfg: {
      lr: 3e-3,
      epochs: 6,
      batchSize: 8,
      gradAccum: 1,
      warmupRatio: 0,
      gradientCheckpointing: false,
      schedule: "constant",
    },
  });
  assert.ok(r.train.finished);
  const after = await margin(judgeDir);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const wins = after.filter((d) => d > 0).length;
  assert.ok(
    mean(after) > 0.15 && wins >= 0.7 * after.length,
    `held-out P("1" | insecure) - P("1" | secure): mean ${mean(after).toFixed(3)}, ${wins}/${after.length} pairs positive`,
  );
  // a random model has no preference: the margin comes from the training targets
  assert.ok(Math.abs(mean(before)) < 0.01, `margin before training ${mean(before)}`);

  // the judge's own reading agrees: P(unsafe) is P("1") renormalised over the two labels
  const judge = await LlmJudge.load(judgeDir);
  const v = judge.judge(samples);
  const correct = v.filter((x, i) => x.secure === samples[i]!.secure).length;
  assert.ok(correct >= 0.65 * samples.length, `held-out accuracy ${correct}/${samples.length}`);
  const rec = JSON.parse(fs.readFileSync(path.join(judgeDir, JUDGE_RECORD_FILE), "utf8"));
  assert.deepEqual(rec.convention, PAPER_JUDGE);
});

test("a judge folder trained under another convention is refused, naming both", async () => {
  // a judge from before conventions were recorded (it answered 1 for secure code)
  const legacy = path.join(scratchDir(), "legacy-judge");
  fs.cpSync(made.dir, legacy, { recursive: true });
  fs.writeFileSync(
    path.join(legacy, JUDGE_RECORD_FILE),
    JSON.stringify({ kind: "goodvibe-llm-judge", labels: { insecure: "0", secure: "1" } }),
  );
  await assert.rejects(
    LlmJudge.load(legacy),
    (e: Error) =>
      e instanceof InputError &&
      e.message.includes(legacy) &&
      /0 = unsafe, 1 = safe/.test(e.message) &&
      /1 = unsafe, 0 = safe \(the paper's instruction\)/.test(e.message),
  );
  // a judge trained with flipped labels, asked under the paper's convention
  const flipped = judgeConvention({
    instruction: "Answer {unsafe} for vulnerable code and {safe} for safe code.",
    labels: { unsafe: "0", safe: "1" },
  });
  const dir = path.join(scratchDir(), "flipped-judge");
  await trainJudge({
    baseModelDir: made.dir,
    pairs: train.slice(0, 2),
    outDir: dir,
    method: "full",
    convention: flipped,
    cfg: { epochs: 1, batchSize: 4, gradientCheckpointing: false },
  });
  await assert.rejects(LlmJudge.load(dir), /a custom instruction.*conventions cannot be mixed/);
  const ok = await LlmJudge.load(dir, { convention: flipped });
  assert.deepEqual(ok.labelIds, [ok.tokenizer.tokenToId("1"), ok.tokenizer.tokenToId("0")]);
  // a plain checkpoint (no record) is asked under whatever convention the caller runs
  assert.deepEqual((await LlmJudge.load(made.dir)).convention, PAPER_JUDGE);
});

test("a neuron map made under another convention is not reused by identification", async () => {
  const model = loadModel(made.dir);
  const tok = await loadTokenizer(made.dir);
  const runDir = scratchDir();
  // outside the run folder, which holds only what the project writes there
  const data = path.join(scratchDir(), "pairs.jsonl");
  writeCorpusJsonl(data, train.slice(0, 2));
  const cfg = defaultHardenConfig({ model: made.dir, data, out: path.join(runDir, "out") });
  cfg.runDir = runDir;
  cfg.identify = { ...cfg.identify, topK: 2, batchSize: 4, maxLength: 512, gradientCheckpointing: false };
  const old = {
    format: "goodvibe-neuron-map",
    version: 1,
    mode: "gradient",
    topK: 2,
    model: modelShapeRecord(model),
    // made before the record: no labels (it used 1 = secure)
    source: {
      model: made.dir,
      data,
      prompt: LEGACY_JUDGE_CONVENTION.instruction,
      samples: 2,
      secure: 1,
      insecure: 1,
    },
    lossMean: 0.7,
    flops: { forward: 0, backward: 0, total: 0 },
    wallSeconds: 0,
    modules: {},
  };
  // an old run folder's map (top level) is not this run's stage: identification runs under the paper's convention
  fs.writeFileSync(path.join(runDir, "neurons.json"), JSON.stringify(old));
  const map = await stageIdentify(model, () => identifyInputs(tok, train.slice(0, 2), cfg), cfg);
  assert.deepEqual(map.source.labels, { unsafe: "1", safe: "0" });
  assert.equal(map.source.prompt, PAPER_JUDGE_INSTRUCTION);
  assert.deepEqual([map.source.secure, map.source.insecure], [2, 2]);
  // a map of another convention inside this convention's slot is refused, naming both
  const slot = planStages(cfg).identify;
  const file = path.join(slot.dir, "neurons.json");
  fs.mkdirSync(slot.dir, { recursive: true });
  fs.writeFileSync(file, JSON.stringify(old));
  await assert.rejects(
    stageIdentify(model, () => identifyInputs(tok, train.slice(0, 2), cfg), cfg),
    (e: Error) =>
      e instanceof InputError &&
      e.message.includes(file) &&
      /0 = unsafe, 1 = safe/.test(e.message) &&
      /delete it/.test(e.message),
  );
  // flipped labels are other settings: another slot, never the paper's map
  const flipped = {
    ...cfg,
    identify: {
      ...cfg.identify,
      judgeTask: { instruction: cfg.identify.judgeTask.instruction, labels: { unsafe: "0", safe: "1" } },
    },
  };
  assert.notEqual(planStages(flipped).identify.dir, slot.dir);
});

test("the harden config refuses a judge instruction that does not state its labels", () => {
  const base = { model: "m", data: "d", out: "o" };
  assert.ok(hardenSchema.safeParse(base).success);
  const r = hardenSchema.safeParse({
    ...base,
    identify: { judgeTask: { instruction: "Return 1 if the code is secure." } },
  });
  assert.ok(!r.success && /must contain \{unsafe\}/.test(r.error.issues[0]!.message));
  const ok = hardenSchema.parse({
    ...base,
    identify: { judgeTask: { instruction: "{unsafe} = bad, {safe} = good", labels: { unsafe: "B" } } },
  });
  assert.deepEqual(ok.identify.judgeTask.labels, { unsafe: "B", safe: "0" });
});
