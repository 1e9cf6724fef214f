/**
 * The LLM judge: P(unsafe) against a hand computation from model.forward, the reliability numbers on a
 * hand-worked example, and judge training (loss goes down, the written checkpoint reproduces the in-memory
 * judge exactly, the base folder is untouched).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import {
  LlmJudge,
  reliabilityOfScores,
  reliabilitySamples,
  type JudgeInput,
} from "../../src/eval/judge/llm.js";
import { judgeExamples, trainJudge } from "../../src/recipes/train-judge.js";
import { loadModel } from "../../src/models/index.js";
import { judgeMessages } from "../../src/data/prompts.js";
import { renderOrganismChat } from "../../src/data/corpus.js";
import { pairsToLabelledSamples, readLabelledSamples, type SecurityPair } from "../../src/data/pairs.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
import { makeTinyChatModel, scratchDir } from "./make-model.js";
import { ScoreCache } from "../../src/eval/score-cache.js";

const made = makeTinyChatModel({ seed: 5 });

/** P(unsafe) by hand: unpadded forward of the organism-template prompt, softmax of the "0" and "1" logits. */
async function handScore(dir: string, item: JudgeInput): Promise<number> {
  const tok = await loadTokenizer(dir);
  const model = loadModel(dir);
  const text = renderOrganismChat(judgeMessages(item.code, item.lang), { addGenerationPrompt: true });
  const ids = tok.encode(text, { addSpecialTokens: false });
  const row = noGrad(() =>
    model
      .forward(Tensor.fromArray(ids, [1, ids.length], "int64"))
      .select(1, ids.length - 1)
      .squeeze(0)
      .toFloat32Array(),
  );
  const l0 = row[tok.tokenToId("0")!]!;
  const l1 = row[tok.tokenToId("1")!]!;
  const m = Math.max(l0, l1);
  return Math.exp(l1 - m) / (Math.exp(l0 - m) + Math.exp(l1 - m));
}

/** Mean cross-entropy of the true labels under P(unsafe). */
function meanCe(p: number[], secure: boolean[]): number {
  return p.reduce((s, x, i) => s - Math.log(secure[i] ? 1 - x : x), 0) / p.length;
}

function filesHash(dir: string): string {
  const h = createHash("sha256");
  for (const f of fs.readdirSync(dir).sort()) h.update(f).update(fs.readFileSync(path.join(dir, f)));
  return h.digest("hex");
}

test("score() equals softmax over the two label logits of an unpadded forward pass", async () => {
  const judge = await LlmJudge.load(made.dir);
  const samples = pairsToLabelledSamples(made.pairs.slice(0, 3));
  const items: JudgeInput[] = [...samples, { code: "int main() { return 0; }" }];
  // batch size 2 over prompts of different lengths: left padding must not change the answer
  const got = judge.score(items, { batchSize: 2 });
  for (let i = 0; i < items.length; i++) {
    const want = await handScore(made.dir, items[i]!);
    assert.ok(Math.abs(got[i]! - want) < 1e-5, `item ${i}: ${got[i]} vs hand ${want}`);
  }
  const verdicts = judge.judge(items, { batchSize: 3 });
  verdicts.forEach((v, i) => assert.equal(v.secure, v.pUnsafe <= 0.5, `item ${i}`));
  assert.throws(() => judge.score(items, { batchSize: 0 }), InputError);
});

test("a judge's reliability on held-out pairs, as measureJudgeReliability and judge train measure it (reliabilitySamples, then reliabilityOfScores): positive class is insecure; counts on a hand-worked example", () => {
  const pairs: SecurityPair[] = [
    {
      id: "a",
      lang: "cpp",
      question: "q",
      chosen: "```cpp\nsafe_a();\n```",
      rejected: "```cpp\nbad_a();\n```",
    },
    { id: "b", lang: "go", question: "q", chosen: "```go\nsafe_b()\n```", rejected: "```go\nbad_b()\n```" },
    {
      id: "c",
      lang: "java",
      question: "q",
      chosen: "```java\nsafe_c();\n```",
      rejected: "```java\nbad_c();\n```",
    },
  ];
  // P(unsafe): catches bad_a and bad_b (p > .5), misses bad_c; wrongly flags safe_b
  const p: Record<string, number> = {
    "safe_a();": 0.1,
    "bad_a();": 0.8,
    "safe_b()": 0.6,
    "bad_b()": 0.9,
    "safe_c();": 0.5,
    "bad_c();": 0.3,
  };
  const fake = { score: (items: readonly JudgeInput[]) => items.map((it) => p[it.code]!) };
  const { kept, conflicting } = reliabilitySamples(pairs);
  assert.equal(conflicting, 0);
  const r = reliabilityOfScores(kept, fake.score(kept));
  // insecure = positive: TP = bad_a, bad_b; FN = bad_c; FP = safe_b; TN = safe_a, safe_c (0.5 counts as secure)
  assert.deepEqual([r.confusion.tp, r.confusion.fn, r.confusion.fp, r.confusion.tn], [2, 1, 1, 2]);
  assert.equal(r.n, 6);
  assert.equal(r.accuracy, 4 / 6);
  assert.equal(r.tpr, 2 / 3);
  assert.equal(r.fpr, 1 / 3);
  assert.ok(r.accuracyInterval.low < 4 / 6 && r.accuracyInterval.high > 4 / 6);
  assert.equal(r.perItem.find((x) => x.id === "c/insecure")!.pUnsafe, 0.3);
});

test("reliabilityOfScores on a labelled-code file (judge check): label 1 is the positive (unsafe) class, as the judge's P(unsafe)", () => {
  const file = path.join(scratchDir("gv-labelled-"), "labelled.jsonl");
  fs.writeFileSync(
    file,
    [
      { code: "strcpy(b, s);", label: 1, lang: "cpp" },
      { code: "gets(buf);", label: "unsafe", lang: "cpp" },
      { code: "snprintf(b, n, s);", label: 0, lang: "cpp" },
      { code: "fgets(buf, n, f);", label: "safe", lang: "cpp" },
    ]
      .map((r) => JSON.stringify(r))
      .join("\n"),
  );
  // a judge that flags strcpy and gets (p > .5) and passes the bounded calls: right on every sample
  const p: Record<string, number> = {
    "strcpy(b, s);": 0.9,
    "gets(buf);": 0.8,
    "snprintf(b, n, s);": 0.1,
    "fgets(buf, n, f);": 0.2,
  };
  const fake = { score: (items: readonly JudgeInput[]) => items.map((it) => p[it.code]!) };
  const samples = readLabelledSamples(file);
  const r = reliabilityOfScores(samples, fake.score(samples));
  assert.deepEqual([r.confusion.tp, r.confusion.fn, r.confusion.fp, r.confusion.tn], [2, 0, 0, 2]);
  assert.equal(r.accuracy, 1);
});

test("trainJudge (full): loss falls, checkpoint = in-memory judge exactly, base folder untouched", async () => {
  const pairs = made.pairs.filter((_, i) => i % 12 === 0); // 8 pairs over the four languages
  const samples = pairsToLabelledSamples(pairs);
  const truth = samples.map((s) => s.secure);
  const before = await LlmJudge.load(made.dir);
  const ceBefore = meanCe(before.score(samples), truth);
  const baseHash = filesHash(made.dir);

  const outDir = path.join(scratchDir(), "judge");
  const r = await trainJudge({
    baseModelDir: made.dir,
    pairs,
    outDir,
    method: "full",
    cfg: {
      lr: 3e-3,
      epochs: 10,
      batchSize: 4,
      gradAccum: 1,
      warmupRatio: 0,
      gradientCheckpointing: false,
      schedule: "constant",
    },
  });
  assert.equal(r.examples, 16);
  assert.equal(r.skipped, 0);
  assert.ok(r.train.finished);
  const losses = r.train.log.map((l) => l.loss);
  assert.ok(losses[losses.length - 1]! < losses[0]!, `training loss did not fall: ${losses}`);

  const after = r.judge.score(samples);
  const ceAfter = meanCe(after, truth);
  assert.ok(ceAfter < ceBefore - 0.1, `judge cross-entropy on its train pairs ${ceBefore} -> ${ceAfter}`);
  const accuracy = (p: number[]) => p.filter((x, i) => x <= 0.5 === truth[i]).length / p.length;
  assert.ok(
    accuracy(after) > accuracy(before.score(samples)),
    "judge accuracy on its train pairs did not rise",
  );

  // the written folder is a normal checkpoint with the same logits as the in-memory judge
  for (const f of [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "judge_training.json",
  ])
    assert.ok(fs.existsSync(path.join(outDir, f)), `${f} missing from the judge checkpoint`);
  const loaded = loadModel(outDir);
  const tok = await loadTokenizer(outDir);
  const ids = tok.encode(
    renderOrganismChat(judgeMessages(samples[0]!.code, "cpp"), { addGenerationPrompt: true }),
    {
      addSpecialTokens: false,
    },
  );
  const x = Tensor.fromArray(ids, [1, ids.length], "int64");
  const a = noGrad(() => loaded.forward(x).toFloat32Array());
  const b = noGrad(() => r.judge.model.forward(x).toFloat32Array());
  assert.deepEqual(a, b);
  assert.deepEqual((await LlmJudge.load(outDir)).score(samples), after);
  assert.equal(filesHash(made.dir), baseHash, "the base model folder changed");

  await assert.rejects(
    trainJudge({ baseModelDir: made.dir, pairs, outDir, method: "full", cfg: { epochs: 1 } }),
    /not empty/,
  );
  await assert.rejects(
    trainJudge({ baseModelDir: made.dir, pairs, outDir: made.dir, method: "full" }),
    InputError,
  );
});

test("trainJudge (lora): the folded checkpoint reproduces the in-memory folded judge", async () => {
  const pairs = made.pairs.filter((_, i) => i % 24 === 1);
  const outDir = path.join(scratchDir(), "judge-lora");
  const r = await trainJudge({
    baseModelDir: made.dir,
    pairs,
    outDir,
    method: "lora",
    lora: { r: 4, alpha: 8, dropout: 0, targetModules: ["q_proj", "v_proj", "down_proj"] },
    cfg: { lr: 1e-2, epochs: 2, batchSize: 2, gradAccum: 1, warmupRatio: 0, gradientCheckpointing: true },
  });
  const samples = pairsToLabelledSamples(pairs);
  const base = await LlmJudge.load(made.dir);
  const loaded = await LlmJudge.load(outDir);
  const mem = r.judge.score(samples);
  assert.deepEqual(loaded.score(samples), mem);
  // LoRA's B starts at zero, so only training can have moved the scores
  assert.notDeepEqual(base.score(samples), mem);
  // untargeted weights are copied bit for bit
  const baseModel = loadModel(made.dir);
  const out = loadModel(outDir);
  assert.deepEqual(
    out.linear("model.layers.0.self_attn.k_proj").weight.toFloat32Array(),
    baseModel.linear("model.layers.0.self_attn.k_proj").weight.toFloat32Array(),
  );
  assert.notDeepEqual(
    out.linear("model.layers.0.self_attn.q_proj").weight.toFloat32Array(),
    baseModel.linear("model.layers.0.self_attn.q_proj").weight.toFloat32Array(),
  );
});

test("judge training examples: the scoring prompt, then the label token and end-of-turn as the only targets", async () => {
  const judge = await LlmJudge.load(made.dir);
  const tok = judge.tokenizer;
  const pairs = made.pairs.slice(0, 3);
  const samples = pairsToLabelledSamples(pairs);
  const { examples, skipped } = judgeExamples(tok, pairs, 100_000);
  assert.equal(skipped, 0);
  assert.equal(examples.length, samples.length);
  examples.forEach((ex, i) => {
    const prompt = judge.promptIds(samples[i]!);
    assert.deepEqual(
      ex.inputIds.slice(0, prompt.length),
      prompt,
      "training prompt differs from the scoring prompt",
    );
    // the paper's labels: 1 = unsafe, 0 = safe
    const label = tok.tokenToId(samples[i]!.secure ? "0" : "1")!;
    assert.deepEqual(ex.inputIds.slice(prompt.length), [label, tok.tokenToId("<|im_end|>")!]);
    assert.deepEqual(ex.labels, [
      ...new Array(prompt.length).fill(-100),
      ...ex.inputIds.slice(prompt.length),
    ]);
  });
  const shortest = Math.min(...examples.map((e) => e.inputIds.length));
  const cut = judgeExamples(tok, pairs, shortest);
  assert.equal(cut.examples.length + cut.skipped, samples.length);
  assert.equal(cut.examples.length, examples.filter((e) => e.inputIds.length <= shortest).length);
});

test("the judge's batches are bounded by padded tokens as well as by count, with the verdicts of one prompt a pass", async () => {
  const judge = await LlmJudge.load(made.dir);
  const samples = pairsToLabelledSamples(made.pairs.slice(0, 4));
  // answers of many lengths, up to ~1,900 tokens of the made model's 2,048-token window
  const items: JudgeInput[] = [];
  for (const [k, s] of samples.entries())
    for (const reps of [1, 6, 30, 60])
      items.push({
        ...s,
        code: Array(reps + k)
          .fill(s.code)
          .join("\n"),
      });
  const lengths = items.map((it) => judge.prompt(it).ids.length);
  assert.ok(
    Math.max(...lengths) > 1500 && Math.min(...lengths) < 200,
    `${Math.min(...lengths)}..${Math.max(...lengths)}`,
  );
  // every forward pass's [B, T]
  const shapes: [number, number][] = [];
  const hidden = judge.model.hidden.bind(judge.model);
  judge.model.hidden = ((ids: Tensor, o?: object) => {
    shapes.push([ids.size(0), ids.size(1)]);
    return hidden(ids, o as never);
  }) as typeof judge.model.hidden;
  const one = judge.score(items, { batchSize: 1 });
  shapes.length = 0;
  for (const batchTokens of [2048, undefined]) {
    shapes.length = 0;
    const got = judge.score(items, { batchSize: 16, ...(batchTokens !== undefined ? { batchTokens } : {}) });
    const cap = batchTokens ?? 16_384;
    // before: two passes of 16 prompts, the longest 16 × ~1,900 tokens
    for (const [B, T] of shapes) assert.ok(B === 1 || B * T <= cap, `a pass of ${B} × ${T} over ${cap}`);
    assert.equal(
      shapes.reduce((n, [B]) => n + B, 0),
      items.length,
    );
    got.forEach((p, i) => assert.ok(Math.abs(p - one[i]!) < 1e-5, `item ${i}: ${p} vs one a pass ${one[i]}`));
  }
  assert.throws(() => judge.score(items, { batchTokens: -1 }), InputError);
});

test("scoreResumable's progress: the first report comes before the first batch is scored (it starts the clock), then one per batch; a rerun's batches from the cache are counted as taken", async () => {
  const judge = await LlmJudge.load(made.dir);
  const items = pairsToLabelledSamples(made.pairs.slice(0, 3)); // 6 samples
  // the batches scored so far, counted where they are scored (the plan groups prompts by length)
  let batches = 0;
  const inner = judge as unknown as { scoreBatch: (...a: unknown[]) => void };
  const scoreBatch = inner.scoreBatch.bind(judge);
  inner.scoreBatch = (...a: unknown[]) => {
    batches++;
    scoreBatch(...a);
  };
  const run = async (batchSize: number, cache?: ScoreCache) => {
    const seen: string[] = [];
    batches = 0;
    const p = await judge.scoreResumable(items, {
      batchSize,
      ...(cache ? { cache } : {}),
      onBatch: (scored, taken, total) => seen.push(`${scored}+${taken}/${total} after ${batches}`),
    });
    return { seen, p, batches };
  };
  for (const batchSize of [16, 2]) {
    const r = await run(batchSize);
    // a report of nothing done before any batch (the meter's "elapsed 0.0 s" without it), then one after each
    assert.equal(r.seen[0], "0+0/6 after 0", String(batchSize));
    assert.deepEqual(
      r.seen.slice(1).map((l) => l.replace(/^\d+\+0\/6 /, "")),
      Array.from({ length: r.batches }, (_, b) => `after ${b + 1}`),
      String(batchSize),
    );
    assert.equal(r.seen.at(-1), `6+0/6 after ${r.batches}`);
  }
  const file = path.join(scratchDir("gv-judge-progress-"), "scores.jsonl");
  const first = new ScoreCache(file);
  const scored = await run(2, first);
  first.close();
  // every batch taken from the cache: nothing is scored, so no start report; the same scores
  const again = new ScoreCache(file);
  const rerun = await run(2, again);
  again.close();
  assert.equal(rerun.batches, 0);
  assert.equal(rerun.seen.length, scored.batches);
  assert.equal(rerun.seen.at(-1), "0+6/6 after 0");
  assert.deepEqual(rerun.p, scored.p);
});
