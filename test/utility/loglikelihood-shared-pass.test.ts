/**
 * The built-in engine scores log-likelihood requests whose windows run the same ids with one forward: MMLU's four
 * answers after one context run that context (the harness's input is context + continuation without its last
 * token), so one pass scores the four. Each result must be the one the harness's formula gives for its request alone.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { BuiltinUtilityModel } from "../../src/recipes/evaluate.js";
import {
  encodeLoglikelihoodPair,
  loglikelihoodWindow,
  type LoglikelihoodRequest,
} from "../../src/eval/utility/model.js";
import { evaluateMmlu, MMLU_LETTERS, mmluPrompt } from "../../src/eval/utility/mmlu.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { realTokenizerDir } from "../gguf/real-models.js";
import type { MmluItem } from "../../src/eval/utility/datasets.js";
import { Tensor, noGrad, tidy } from "../../src/tensor/index.js";
import type { DecoderModel } from "../../src/models/decoder.js";
import type { HfTokenizer } from "../../src/io/tokenizer.js";
import { InterruptedError } from "../../src/errors.js";

const made = makeTinyChatModel({ seed: 5 });
after(() => fs.rmSync(made.dir, { recursive: true, force: true }));

/** Count the model's forward passes while `f` runs. */
async function countingForwards<T>(
  model: DecoderModel,
  f: () => Promise<T>,
): Promise<{ value: T; forwards: number }> {
  const own = model.forward.bind(model);
  let forwards = 0;
  model.forward = (ids, opts) => {
    forwards++;
    return own(ids, opts);
  };
  try {
    return { value: await f(), forwards };
  } finally {
    model.forward = own;
  }
}

/** The harness's formula for one request alone (it fits the window here): its own forward, its own logits. */
function alone(
  model: DecoderModel,
  tok: HfTokenizer,
  r: LoglikelihoodRequest,
): { logprob: number; isGreedy: boolean } {
  const { context: ctx, continuation: cont } = encodeLoglikelihoodPair(tok, r.context, r.continuation);
  const inp = [...ctx, ...cont].slice(0, -1);
  return noGrad(() =>
    tidy(() => {
      const lp = model
        .forward(Tensor.fromArray(inp, [1, inp.length], "int64"))
        .narrow(1, inp.length - cont.length, cont.length)
        .logSoftmax(-1)
        .squeeze(0);
      const logprob = lp
        .gather(1, Tensor.fromArray(cont, [cont.length, 1], "int64"))
        .sum()
        .item();
      const isGreedy = lp
        .argmax(-1)
        .toIntArray()
        .every((t, i) => t === cont[i]);
      return { logprob, isGreedy };
    }),
  );
}

const items: MmluItem[] = [
  {
    subject: "computer_security",
    question: "Which call copies a string without a bound?",
    choices: ["strcpy", "strncpy", "snprintf", "strlcpy"],
    answer: 0,
  },
  {
    subject: "computer_security",
    question: "What does ASLR randomise?",
    choices: ["Passwords", "Addresses", "Ports", "Keys"],
    answer: 1,
  },
  {
    subject: "college_computer_science",
    question: "Which structure gives O(1) average lookup?",
    choices: ["List", "Tree", "Hash table", "Heap"],
    answer: 2,
  },
];

test("MMLU: one forward per distinct window, each answer's log-likelihood what it gets scored alone", async () => {
  const backend = await BuiltinBackend.load(made.dir);
  const model = backend.model;
  const tok = backend.tokenizer!;
  const asked: LoglikelihoodRequest[] = [];
  const engine = new BuiltinUtilityModel(model, tok);
  const recording = {
    loglikelihood: (reqs: LoglikelihoodRequest[], o?: { onResult?: () => void }) => {
      asked.push(...reqs);
      return engine.loglikelihood(reqs, o);
    },
    generate: engine.generate.bind(engine),
  };
  const seen: number[] = [];
  const { value: res, forwards } = await countingForwards(model, () =>
    evaluateMmlu(recording, items, { nShot: 0, onProgress: (d) => seen.push(d) }),
  );
  assert.equal(asked.length, 12);
  // the harness's input of each request (context + continuation without its last token): one pass per distinct one.
  // This tiny BPE splits some letters after "Answer:" in two; the real tokenizers (below) give one pass per item
  const inputs = new Set(
    asked.map((r) => {
      const { context, continuation } = encodeLoglikelihoodPair(tok, r.context, r.continuation);
      return [...context, ...continuation].slice(0, -1).join(",");
    }),
  );
  assert.ok(inputs.size < asked.length);
  assert.equal(forwards, inputs.size, "one pass per distinct window, not one per request");
  assert.deepEqual(seen, [0, ...Array.from({ length: 12 }, (_, i) => i + 1)], "progress: every request told");
  // each of the twelve, against its own pass: the same bits (the same ids through the same pass)
  for (const [k, it] of res.perItem.entries())
    for (let l = 0; l < 4; l++) {
      const want = alone(model, tok, asked[k * 4 + l]!);
      assert.equal(it.logprobs[l], want.logprob, `item ${k} answer ${l}`);
    }
});

test("requests with different windows get their own passes, in the order asked; duplicates share one", async () => {
  const backend = await BuiltinBackend.load(made.dir);
  const model = backend.model;
  const tok = backend.tokenizer!;
  // ARC-like: one question, answers of several tokens (different windows), one asked twice, then an MMLU-like pair
  const reqs: LoglikelihoodRequest[] = [
    { context: "Question: Which input needs escaping?\nAnswer:", continuation: " user input in SQL" },
    { context: "Question: Which input needs escaping?\nAnswer:", continuation: " a constant string" },
    { context: "Question: What checks a buffer's length?\nAnswer:", continuation: " B" },
    { context: "Question: Which input needs escaping?\nAnswer:", continuation: " user input in SQL" },
    { context: "Question: What checks a buffer's length?\nAnswer:", continuation: " C" },
  ];
  const engine = new BuiltinUtilityModel(model, tok);
  let results = 0;
  const { value: got, forwards } = await countingForwards(model, () =>
    engine.loglikelihood(reqs, { onResult: () => results++ }),
  );
  assert.equal(forwards, 3);
  assert.equal(results, reqs.length);
  for (const [i, r] of reqs.entries()) assert.deepEqual(got[i], alone(model, tok, r), `request ${i}`);
});

test("a stop between passes says how many requests were scored", async () => {
  const backend = await BuiltinBackend.load(made.dir);
  const ac = new AbortController();
  const engine = new BuiltinUtilityModel(backend.model, backend.tokenizer!, ac.signal);
  const reqs: LoglikelihoodRequest[] = [" A", " B", " C", " D"].flatMap((c) => [
    { context: "Question: one?\nAnswer:", continuation: c },
    { context: "Question: two?\nAnswer:", continuation: c },
  ]);
  let n = 0;
  await assert.rejects(
    engine.loglikelihood(reqs, {
      onResult: () => {
        if (++n === 4) ac.abort();
      },
    }),
    (e: unknown) => e instanceof InterruptedError && /after 4 of 8 requests/.test((e as Error).message),
  );
});

for (const family of ["qwen3", "llama3", "gemma3", "codellama"] as const)
  test(`with ${family}'s real tokenizer an MMLU item's four answers run one window`, async () => {
    const tok = await loadTokenizer(realTokenizerDir(family));
    for (const it of items) {
      const context = mmluPrompt(it, []);
      const windows = new Set(
        MMLU_LETTERS.map((l) => {
          const { context: ctx, continuation: cont } = encodeLoglikelihoodPair(tok, context, ` ${l}`);
          assert.equal(cont.length, 1, `" ${l}" is one token`);
          return loglikelihoodWindow(ctx, cont, 4096).input.join(",");
        }),
      );
      assert.equal(windows.size, 1);
    }
  });
