import { test } from "node:test";
import assert from "node:assert/strict";
import { evaluateArc, argmax } from "../../src/eval/utility/arc.js";
import {
  evaluateGsm8k,
  exactMatch,
  extractFlexible,
  extractStrict,
  gsm8kPrompt,
  normaliseForExactMatch,
} from "../../src/eval/utility/gsm8k.js";
import { evaluateMmlu, mmluPrompt } from "../../src/eval/utility/mmlu.js";
import { meanStderr, type LoglikelihoodRequest } from "../../src/eval/utility/model.js";
import type { ArcItem, Gsm8kItem, MmluItem } from "../../src/eval/utility/datasets.js";
import { FakeModel } from "./fake-model.js";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadGsm8k } from "../../src/eval/utility/datasets.js";

function arc(id: string, question: string, text: string[], answerKey: string): ArcItem {
  const label = text.map((_, i) => "ABCDE"[i]!);
  return { id, question, choices: { text, label }, answerKey, gold: label.indexOf(answerKey) };
}

test("ARC sends the harness prompt 'Question: q\\nAnswer:' with ' choice' continuations", async () => {
  const model = new FakeModel({ score: () => -1 });
  await evaluateArc(model, [arc("x1", "Which gas do plants absorb?", ["oxygen", "carbon dioxide"], "B")]);
  assert.deepEqual(model.llRequests, [
    { context: "Question: Which gas do plants absorb?\nAnswer:", continuation: " oxygen", item: "ARC x1" },
    {
      context: "Question: Which gas do plants absorb?\nAnswer:",
      continuation: " carbon dioxide",
      item: "ARC x1",
    },
  ]);
});

test("ARC acc and acc_norm differ when the gold answer is long", async () => {
  // Raw: -3 > -6 picks "Paris". Normalised: -3/5 = -0.6 < -6/21 = -0.286 picks the long gold answer.
  const lls: Record<string, number> = { " Paris": -3, " the capital of France": -6 };
  const model = new FakeModel({ score: (_c, cont) => lls[cont]! });
  const r = await evaluateArc(model, [arc("q", "Where?", ["Paris", "the capital of France"], "B")]);
  assert.equal(r.metrics.acc, 0);
  assert.equal(r.metrics.acc_norm, 1);
  assert.equal(r.perItem[0]!.pred, 0);
  assert.equal(r.perItem[0]!.predNorm, 1);
});

test("ARC acc_norm length: code points by default (the harness's len(str)), UTF-8 bytes on request", async () => {
  // "été" is 3 code points but 5 bytes; "abcd" is 4 of each.
  // chars: -3/3 = -1.0 vs -3.9/4 = -0.975 -> picks "abcd"; bytes: -3/5 = -0.6 vs -0.975 -> picks "été".
  const lls: Record<string, number> = { " été": -3, " abcd": -3.9 };
  const model = new FakeModel({ score: (_c, cont) => lls[cont]! });
  const items = [arc("q", "?", ["été", "abcd"], "A")];
  const chars = await evaluateArc(model, items);
  const bytes = await evaluateArc(model, items, { normLength: "bytes" });
  assert.equal(chars.perItem[0]!.predNorm, 1);
  assert.equal(bytes.perItem[0]!.predNorm, 0);
});

test("ARC over several items: accuracy, stderr = sample std / sqrt(n), batching keeps the order", async () => {
  // Gold is always the choice the fake scores highest except on item 2.
  const items = [
    arc("a", "q1", ["x", "y"], "A"),
    arc("b", "q2", ["x", "y"], "B"),
    arc("c", "q3", ["x", "y"], "A"),
    arc("d", "q4", ["x", "y"], "A"),
  ];
  const model = new FakeModel({ score: (_c, cont) => (cont === " x" ? -1 : -2) });
  const r = await evaluateArc(model, items, { batchSize: 3 });
  assert.equal(r.n, 4);
  assert.equal(r.metrics.acc, 0.75);
  // scores 1,0,1,1: sample variance 0.25, std 0.5, / sqrt(4) = 0.25
  assert.equal(r.stderr.acc, 0.25);
  assert.deepEqual(
    r.perItem.map((p) => p.id),
    ["a", "b", "c", "d"],
  );
});

test("argmax breaks ties to the first index like numpy", () => {
  assert.equal(argmax([-1, -1, -2]), 0);
  assert.equal(argmax([-3, -1, -1]), 1);
});

test("meanStderr matches the harness formula on a hand-worked example", () => {
  // [0,0,1]: mean 1/3, sample var = (1/9+1/9+4/9)/2 = 1/3, stderr = sqrt(1/3)/sqrt(3) = 1/3
  assert.ok(Math.abs(meanStderr([0, 0, 1]) - 1 / 3) < 1e-12);
});

// Expected values below were computed with Python's `re` using the harness's exact regexes and filters.
const EXTRACTION_CASES: [string, string, string, string, string][] = [
  // text, strict, flexible, strict normalised, flexible normalised
  ["She pays 18 * 2 = $36.\n#### 36", "36", "36", "36", "36"],
  ["so he earns $1,080.", "[invalid]", "$1,080.", "[invalid]", "1080"],
  ["#### -5", "-5", "-5", "-5", "-5"],
  ["I think 3 apples.\n#### 12\n\n", "12", "12", "12", "12"],
  ["#### 1,000", "1,000", "1,000", "1000", "1000"],
  ["#### 5 and later #### 7", "5", "7", "5", "7"],
  ["x is -3", "[invalid]", "-3", "[invalid]", "-3"],
  ["The total is 5.", "[invalid]", "5.", "[invalid]", "5"],
  ["Total: 7.\n", "[invalid]", "7.", "[invalid]", "7"],
  ["It costs $5.00 each", "[invalid]", "$5.00", "[invalid]", "5.00"],
  ["#### 3.5.", "3.5.", "3.5.", "3.5", "3.5"],
];

test("GSM8K strict-match and flexible-extract agree with the harness regexes on tricky strings", () => {
  for (const [text, strict, flexible, strictNorm, flexNorm] of EXTRACTION_CASES) {
    assert.equal(extractStrict(text), strict, `strict on ${JSON.stringify(text)}`);
    assert.equal(extractFlexible(text), flexible, `flexible on ${JSON.stringify(text)}`);
    assert.equal(normaliseForExactMatch(strict), strictNorm, `normalised strict on ${JSON.stringify(text)}`);
    assert.equal(
      normaliseForExactMatch(flexible),
      flexNorm,
      `normalised flexible on ${JSON.stringify(text)}`,
    );
  }
});

test("GSM8K reference normalisation keeps only the final answer", () => {
  assert.equal(normaliseForExactMatch("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"), "72");
  assert.equal(exactMatch("$1,080.", "He earns 1080 a week.\n#### 1080"), 1);
  assert.equal(exactMatch("5.00", "#### 5"), 0);
});

const TRAIN: Gsm8kItem[] = [
  { question: "What is 1+1?", answer: "1+1=2\n#### 2", finalAnswer: "2" },
  { question: "What is 2+3?", answer: "2+3=5\n#### 5", finalAnswer: "5" },
  { question: "Never used", answer: "#### 0", finalAnswer: "0" },
];

test("GSM8K few-shot prompt is the harness layout: shots as 'Question: q\\nAnswer: a' joined by blank lines", () => {
  assert.equal(
    gsm8kPrompt("What is 4+4?", TRAIN.slice(0, 2)),
    "Question: What is 1+1?\nAnswer: 1+1=2\n#### 2\n\nQuestion: What is 2+3?\nAnswer: 2+3=5\n#### 5\n\nQuestion: What is 4+4?\nAnswer:",
  );
});

test("GSM8K evaluation: first-N shots, harness stop sequences, strict vs flexible scoring, text after a stop ignored", async () => {
  const test1: Gsm8kItem = { question: "What is 4+4?", answer: "4+4=8\n#### 8", finalAnswer: "8" };
  const test2: Gsm8kItem = { question: "What is 9-2?", answer: "9-2=7\n#### 7", finalAnswer: "7" };
  const model = new FakeModel({
    // The second answer has no "####" (strict fails, flexible succeeds); a stray "#### 99" after the stop
    // sequence would flip strict-match for item 1 if the text were not cut.
    answer: (p) =>
      p.endsWith("What is 4+4?\nAnswer:") ? " 4+4=8\n#### 8\n\nQuestion: x\n#### 99" : " 9 minus 2 is 7.",
  });
  const r = await evaluateGsm8k(model, [test1, test2], {
    fewshot: TRAIN,
    nShot: 2,
    fewshotSampler: "first_n",
  });
  assert.deepEqual(model.genOpts[0]!.stop, ["Question:", "</s>", "<|im_end|>"]);
  assert.ok(!model.genPrompts[0]!.includes("Never used"));
  assert.equal(model.genPrompts[0]!.split("Question:").length - 1, 3);
  assert.deepEqual(
    r.perItem.map((p) => [p.strict, p.flexible]),
    [
      ["8", "8"],
      ["[invalid]", "7."],
    ],
  );
  assert.equal(r.metrics.exact_match_strict, 0.5);
  assert.equal(r.metrics.exact_match_flexible, 1);
  assert.equal(r.n, 2);
});

test("GSM8K refuses to run k-shot without enough train examples", async () => {
  const model = new FakeModel({ answer: () => "" });
  await assert.rejects(
    evaluateGsm8k(model, [TRAIN[0]!], { fewshot: TRAIN.slice(0, 1), nShot: 5 }),
    /needs 5 train examples/,
  );
});

function mmlu(subject: string, question: string, answer: number): MmluItem {
  return { subject, question, choices: ["w", "x", "y", "z"], answer };
}

test("MMLU prompt is the harness template with a description and first-N dev shots", () => {
  const dev = [mmlu("high_school_physics", " Dev one? ", 1), mmlu("high_school_physics", "Dev two?", 3)];
  assert.equal(
    mmluPrompt(mmlu("high_school_physics", "Test?", 0), dev),
    "The following are multiple choice questions (with answers) about high school physics.\n\n" +
      "Dev one?\nA. w\nB. x\nC. y\nD. z\nAnswer: B\n\n" +
      "Dev two?\nA. w\nB. x\nC. y\nD. z\nAnswer: D\n\n" +
      "Test?\nA. w\nB. x\nC. y\nD. z\nAnswer:",
  );
});

test("MMLU scores ' A'..' D', per-subject and overall (size-weighted) accuracy, shots only from the same subject", async () => {
  const dev = [
    ...[0, 1, 2, 3, 0, 1].map((a, i) => mmlu("anatomy", `anat dev ${i}`, a)),
    ...[0, 1, 2, 3, 0].map((a, i) => mmlu("virology", `viro dev ${i}`, a)),
  ];
  const items = [mmlu("anatomy", "A1", 2), mmlu("anatomy", "A2", 1), mmlu("virology", "V1", 2)];
  // The fake always prefers " C".
  const model = new FakeModel({ score: (_c, cont) => (cont === " C" ? -0.5 : -2) });
  const r = await evaluateMmlu(model, items, { dev });
  assert.deepEqual(
    model.llRequests.slice(0, 4).map((q) => q.continuation),
    [" A", " B", " C", " D"],
  );
  const firstCtx = model.llRequests[0]!.context;
  assert.equal(firstCtx.split("\nAnswer:").length - 1, 6); // 5 shots + the question
  assert.ok(!firstCtx.includes("viro dev"));
  assert.ok(!firstCtx.includes("anat dev 5")); // only the first 5
  assert.equal(r.groups!.anatomy!.metrics.acc, 0.5);
  assert.equal(r.groups!.virology!.metrics.acc, 1);
  assert.ok(Math.abs(r.metrics.acc! - 2 / 3) < 1e-12);
  assert.equal(r.n, 3);
});

test("MMLU names the subject whose dev split is too small", async () => {
  const model = new FakeModel({ score: () => -1 });
  await assert.rejects(
    evaluateMmlu(model, [mmlu("virology", "V", 0)], { dev: [] }),
    /subject "virology" has 0 examples/,
  );
});

// lm-evaluation-harness's gsm8k.yaml (version 3) rebuilt here from its own definition, not from gsm8k.ts: doc_to_text
// "Question: {{question}}\nAnswer:", doc_to_target "{{answer}}", target_delimiter " ", fewshot_delimiter "\n\n",
// num_fewshot 5 from the train split by the default sampler: random.Random(1234), one rnd.sample(train, 5) per
// test document in test order (api/samplers.py ContextSampler.get_context; evaluator's fewshot_random_seed 1234).
// The indices are CPython 3.11.7's: r = random.Random(1234); d = [r.sample(range(7473), 5) for _ in range(1319)].
const HARNESS_DRAWS: Record<number, number[]> = {
  0: [6374, 3610, 957, 61, 742],
  1: [7462, 6610, 4769, 286, 5501],
  700: [5324, 3221, 7264, 4627, 3647],
  1318: [220, 4179, 6064, 5599, 5541],
};
const harnessRequest = (doc: { question: string }, shots: { question: string; answer: string }[]) =>
  shots.map((s) => "Question: " + s.question + "\nAnswer:" + " " + s.answer + "\n\n").join("") +
  "Question: " +
  doc.question +
  "\nAnswer:";
const SHARED_DATA =
  process.env.GOODVIBE_DATA ??
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../shared/data");
const haveGsm = fs.existsSync(path.join(SHARED_DATA, "gsm8k/train.jsonl"));

test(
  "GSM8K prompts are byte for byte the harness's: each question's 5 shots drawn by its position, kept in a subsample",
  { skip: !haveGsm },
  async () => {
    const train = await loadGsm8k(path.join(SHARED_DATA, "gsm8k/train.jsonl"));
    const all = await loadGsm8k(path.join(SHARED_DATA, "gsm8k/test.jsonl"));
    const rawTrain = fs
      .readFileSync(path.join(SHARED_DATA, "gsm8k/train.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { question: string; answer: string });
    const expected = (p: number) =>
      harnessRequest(
        all[p]!,
        HARNESS_DRAWS[p]!.map((j) => rawTrain[j]!),
      );
    // the first two questions, as a harness run of --limit 2 asks them
    const model = new FakeModel({ answer: () => " #### 0" });
    await evaluateGsm8k(model, all.slice(0, 2), { fewshot: train });
    assert.deepEqual(model.genPrompts, [expected(0), expected(1)]);
    // a seeded subsample keeps each question's own shots (those of a full harness run)
    const picked = [all[700]!, all[1318]!];
    assert.deepEqual(
      picked.map((it) => it.index),
      [700, 1318],
    );
    const sub = new FakeModel({ answer: () => " #### 0" });
    await evaluateGsm8k(sub, picked, { fewshot: train });
    assert.deepEqual(sub.genPrompts, [expected(700), expected(1318)]);
  },
);

test("GSM8K with harness shots over a large file (200,000 questions) runs: no spread of every position into one call", async () => {
  const items: Gsm8kItem[] = Array.from({ length: 200_000 }, (_, i) => ({
    question: `q${i}`,
    answer: "#### 1",
    finalAnswer: "1",
  }));
  const model = new FakeModel({ answer: () => " #### 1" });
  const r = await evaluateGsm8k(model, items, { fewshot: TRAIN, nShot: 1, batchSize: 10_000 });
  assert.equal(r.n, 200_000);
  assert.equal(r.metrics.exact_match_strict, 1);
});

test("ARC and MMLU progress, in requests (one per choice; four an item): told at 0 before any, as each result comes where the model tells it, else after each call", async () => {
  // three choices, then two, then four: 9 requests, in calls of two items
  const items = [
    arc("a", "q1", ["x", "y", "z"], "A"),
    arc("b", "q2", ["x", "y"], "B"),
    arc("c", "q3", ["w", "x", "y", "z"], "A"),
  ];
  const telling = new FakeModel({ score: () => -1 });
  const told: string[] = [];
  const loglikelihood = telling.loglikelihood.bind(telling);
  telling.loglikelihood = async (reqs: LoglikelihoodRequest[], opts?: { onResult?: () => void }) => {
    const out = await loglikelihood(reqs);
    for (const _ of reqs) opts?.onResult?.();
    told.push(`call of ${reqs.length}`);
    return out;
  };
  const seen: string[] = [];
  await evaluateArc(telling, items, { batchSize: 2, onProgress: (d, t) => seen.push(`${d}/${t}`) });
  assert.deepEqual(told, ["call of 5", "call of 4"]);
  assert.deepEqual(seen, ["0/9", "1/9", "2/9", "3/9", "4/9", "5/9", "6/9", "7/9", "8/9", "9/9"]);
  // FakeModel does not tell its results: the count after each call
  const quiet: string[] = [];
  await evaluateArc(new FakeModel({ score: () => -1 }), items, {
    batchSize: 2,
    onProgress: (d, t) => quiet.push(`${d}/${t}`),
  });
  assert.deepEqual(quiet, ["0/9", "5/9", "9/9"]);
  const m: string[] = [];
  await evaluateMmlu(
    new FakeModel({ score: () => -1 }),
    [mmlu("anatomy", "A1", 2), mmlu("anatomy", "A2", 1)],
    {
      nShot: 0,
      batchSize: 1,
      onProgress: (d, t) => m.push(`${d}/${t}`),
    },
  );
  assert.deepEqual(m, ["0/8", "4/8", "8/8"]);
});
