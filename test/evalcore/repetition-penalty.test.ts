/**
 * The built-in engine (and llama.cpp) apply a model folder's generation_config.json as transformers' generate()
 * does: RepetitionPenaltyLogitsProcessor (generation/logits_process.py `__call__`: gather the scores of every token
 * in input_ids, prompt included, `torch.where(score < 0, score * penalty, score / penalty)`, scatter back: once per
 * token), added by generation/utils.py `_get_logits_processor` whatever do_sample says and before the sampling
 * warpers (temperature, TopKLogitsWarper, TopPLogitsWarper); top_k defaults to GenerationConfig's 50 when sampling.
 * References: a hand-computed example, and a decoding loop written here that recomputes the full logits of each
 * sequence alone (no KV cache, no padding) and applies the formula in float64.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeTinyChatModel, scratchDir } from "./make-model.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { loadModel } from "../../src/models/index.js";
import { applyRepetitionPenalty, generate, pickNextTokens } from "../../src/models/generate.js";
import type { DecoderModel } from "../../src/models/decoder.js";
import { argmaxRow, penaliseRow, sampleToken } from "../../src/models/logits-row.js";
import {
  generationConfigProcessors,
  greedyProcessorKey,
  sampledTopK,
  TRANSFORMERS_DEFAULT_TOP_K,
} from "../../src/eval/generate/generation-config.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { InputError } from "../../src/errors.js";

test("the penalty by hand: a seen token's positive logit is divided, a negative one multiplied, once however often seen", () => {
  const logits = Tensor.fromArray([2, -1, 0.5, -3, 1, 4, -2, 0, 3, -0.5], [2, 5], "float32");
  // row 0 saw 0, 1 (twice) and 4; row 1 saw 3 and 0 (a zero logit: score / penalty, still 0)
  const out = applyRepetitionPenalty(
    logits,
    [
      [0, 1, 1, 4],
      [3, 0],
    ],
    2,
  ).toFloat32Array();
  assert.deepEqual([...out], [1, -2, 0.5, -3, 0.5, 2, -2, 0, 1.5, -0.5]);
  // llama.cpp's row version: the same numbers
  const row = Float64Array.from([2, -1, 0.5, -3, 1]);
  penaliseRow(row, [0, 1, 1, 4], 2);
  assert.deepEqual([...row], [1, -2, 0.5, -3, 0.5]);
});

test("greedy applies the penalty (a processor, not a warper), before the sampling warpers", () => {
  // greedy: 3 / 1.1 = 2.727 < 2.9, so the seen token loses
  const l = Tensor.fromArray([3, 2.9, 0], [1, 3], "float32");
  assert.deepEqual(pickNextTokens(l, { maxNewTokens: 1 }, [[0]]).toIntArray(), [0]);
  assert.deepEqual(pickNextTokens(l, { maxNewTokens: 1, repetitionPenalty: 1.1 }, [[0]]).toIntArray(), [1]);
  assert.equal(argmaxRow(Float64Array.from([3, 2.9, 0])), 0);
  // order: penalty, then top-k. With top_k 1 after the penalty only token 1 is left (3 / 10 = 0.3 < 2.9); top-k
  // first would have kept token 0
  for (let seed = 0; seed < 5; seed++) {
    const t = pickNextTokens(l, { maxNewTokens: 1, temperature: 1, topK: 1, repetitionPenalty: 10, seed }, [
      [0],
    ]).toIntArray();
    assert.deepEqual(t, [1]);
    const row = Float64Array.from([3, 2.9, 0]);
    penaliseRow(row, [0], 10);
    assert.equal(sampleToken(row, 1, 1, seed / 5, 1), 1);
  }
  // top-k keeps ties with the k-th value (TopKLogitsWarper: `scores < topk(...)[..., -1]` removed)
  assert.equal(sampleToken([1, 5, 5, 0], 1, 1, 0.99, 1), 2);
  assert.equal(sampleToken([1, 5, 5, 0], 1, 1, 0.01, 1), 1);
});

/** The reference: one sequence, full logits recomputed every step (no cache), penalty in float64, argmax. */
function referenceGreedy(
  model: DecoderModel,
  prompt: number[],
  penalty: number,
  maxNewTokens: number,
  eos: Set<number>,
  extraSeen: number[] = [],
): number[] {
  const ids = [...prompt];
  const out: number[] = [];
  for (let s = 0; s < maxNewTokens; s++) {
    const row = noGrad(() => {
      const logits = model.forward(Tensor.fromArray(ids, [1, ids.length], "int64"));
      return Float64Array.from(
        logits
          .narrow(1, ids.length - 1, 1)
          .reshape([-1])
          .toFloat32Array(),
      );
    });
    for (const t of new Set([...ids, ...extraSeen]))
      row[t] = row[t]! < 0 ? row[t]! * penalty : row[t]! / penalty;
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
    out.push(best);
    if (eos.has(best)) break;
    ids.push(best);
  }
  return out;
}

test("greedy with the penalty equals the no-cache reference, batched with left padding (pads unpenalised) and one at a time", async () => {
  const made = makeTinyChatModel({ seed: 11 });
  const model = loadModel(made.dir);
  const tok = await (await import("../../src/io/tokenizer.js")).loadTokenizer(made.dir);
  const prompts = made.pairs.slice(0, 3).map((p) => tok.encode(p.question, { addSpecialTokens: false }));
  // lengths differ: the shorter rows are left-padded
  assert.ok(new Set(prompts.map((p) => p.length)).size > 1);
  const penalty = 5;
  const N = 10;
  const eos = new Set(tok.eosTokenIds);
  const ref = prompts.map((p) => referenceGreedy(model, p, penalty, N, eos));
  const shortest = prompts.reduce((a, b, i) => (b.length < prompts[a]!.length ? i : a), 0);
  // the pad id: the shortest row's first reference token, so a penalised pad would change its answer
  const pad = ref[shortest]![0]!;
  assert.ok(!prompts[shortest]!.includes(pad));
  assert.notDeepEqual(
    referenceGreedy(model, prompts[shortest]!, penalty, N, eos, [pad]),
    ref[shortest],
    "the check has power: penalising the pad id changes the shortest row's answer",
  );
  assert.notDeepEqual(
    prompts.map((p) => referenceGreedy(model, p, 1, N, eos)),
    ref,
    "the penalty changes the answers",
  );
  const opts = { maxNewTokens: N, repetitionPenalty: penalty, eosTokenIds: [...eos], padTokenId: pad };
  assert.deepEqual(generate(model, prompts, opts), ref, "batched (KV cache, left padding)");
  for (const [i, p] of prompts.entries())
    assert.deepEqual(generate(model, [p], opts), [ref[i]], `prompt ${i} alone`);
  // the backend takes the penalty from the folder's generation_config.json, and can be told not to
  fs.writeFileSync(
    path.join(made.dir, "generation_config.json"),
    JSON.stringify({ repetition_penalty: penalty }),
  );
  const b = await BuiltinBackend.load(made.dir);
  assert.deepEqual(b.processors, { repetitionPenalty: penalty, topK: TRANSFORMERS_DEFAULT_TOP_K });
  const dropEos = (r: number[]) => (r.length && eos.has(r[r.length - 1]!) ? r.slice(0, -1) : r);
  assert.deepEqual(b.generateBatch(prompts, { maxNewTokens: N }), ref.map(dropEos));
  const off = await BuiltinBackend.load(made.dir, { applyGenerationConfig: false });
  assert.deepEqual(
    off.generateBatch(prompts, { maxNewTokens: N }),
    prompts.map((p) => dropEos(referenceGreedy(model, p, 1, N, eos))),
  );
});

test("what is read from generation_config.json, and the answers' key: unchanged where no penalty applies", () => {
  const dir = scratchDir("gv-reppen-");
  const write = (g: unknown) => fs.writeFileSync(path.join(dir, "generation_config.json"), JSON.stringify(g));
  // absent file: top_k 50 when sampling, no penalty
  assert.deepEqual(generationConfigProcessors(dir, true), { topK: 50 });
  // Qwen2.5-Coder-7B-Instruct's
  write({ do_sample: true, repetition_penalty: 1.1, temperature: 0.7, top_p: 0.8, top_k: 20 });
  // (its sampling fields too: the defaults of a sampled call, test/backends/sampling-defaults.test.ts)
  assert.deepEqual(generationConfigProcessors(dir, true), {
    repetitionPenalty: 1.1,
    topK: 20,
    topP: 0.8,
    temperature: 0.7,
    doSample: true,
  });
  assert.deepEqual(greedyProcessorKey(generationConfigProcessors(dir, true)), { repetitionPenalty: 1.1 });
  // off: nothing applied, the key as before
  assert.deepEqual(generationConfigProcessors(dir, false), {});
  assert.deepEqual(greedyProcessorKey(generationConfigProcessors(dir, false)), {});
  // transformers' neutral values
  write({ repetition_penalty: 1.0, top_k: 0 });
  assert.deepEqual(generationConfigProcessors(dir, true), { topK: 0 });
  assert.deepEqual(greedyProcessorKey(generationConfigProcessors(dir, true)), {});
  // refused as transformers refuses them, naming the file
  write({ repetition_penalty: 0 });
  assert.throws(
    () => generationConfigProcessors(dir, true),
    (e: unknown) => {
      return (
        e instanceof InputError &&
        /generation_config\.json: repetition_penalty must be a number > 0/.test(e.message)
      );
    },
  );
  // a top_k TopKLogitsWarper refuses: refused when a sampled call takes it (test/backends/sampling-defaults.test.ts)
  write({ top_k: 2.5 });
  assert.throws(
    () => sampledTopK(generationConfigProcessors(dir, true)),
    /top_k must be a non-negative integer/,
  );
});
