/**
 * The built-in generation backend: greedy tokens against `generate` and against a plain recompute-everything
 * argmax loop written here, end-of-sequence and stop-string cuts, chat formatting, seeded sampling.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { cutAtStop } from "../../src/eval/utility/model.js";
import { generate, loadModel, type DecoderModel } from "../../src/models/index.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { renderOrganismChat } from "../../src/data/corpus.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
import { FIXTURES, makeTinyChatModel } from "./make-model.js";

/** Greedy decoding by full recomputation (no cache, no padding): the textbook definition. */
function referenceGreedy(model: DecoderModel, prompt: number[], steps: number): number[] {
  const ids = [...prompt];
  const out: number[] = [];
  noGrad(() => {
    for (let s = 0; s < steps; s++) {
      const logits = model.forward(Tensor.fromArray(ids, [1, ids.length], "int64"));
      const row = logits
        .select(1, ids.length - 1)
        .squeeze(0)
        .toFloat32Array();
      let best = 0;
      for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
      out.push(best);
      ids.push(best);
    }
  });
  return out;
}

const made = makeTinyChatModel({ seed: 3 });

test("greedy tokens on the llama fixture equal generate() and a full-recompute argmax loop", async () => {
  const model = loadModel(path.join(FIXTURES, "llama"));
  const backend = new BuiltinBackend(model, null, { eosTokenIds: [] });
  const prompt = [1, 17, 250, 33, 400, 9];
  const got = await backend.generateTokens(prompt, { maxNewTokens: 10 });
  assert.equal(got.length, 10);
  assert.deepEqual(got, generate(model, [prompt], { maxNewTokens: 10 })[0]);
  assert.deepEqual(got, referenceGreedy(model, prompt, 10));
});

test("a batch of prompts of different lengths gives what generate() gives for that batch", () => {
  const model = loadModel(path.join(FIXTURES, "llama"));
  const backend = new BuiltinBackend(model, null, { eosTokenIds: [], padTokenId: 0 });
  const prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]];
  assert.deepEqual(
    backend.generateBatch(prompts, { maxNewTokens: 6 }),
    generate(model, prompts, { maxNewTokens: 6, padTokenId: 0 }),
  );
});

test("a temperature below vLLM's 1e-5 is greedy (dividing float32 logits by 1e-40 overflowed: NaN probabilities, a throw); at 1e-5 the draw runs", async () => {
  const model = loadModel(path.join(FIXTURES, "llama"));
  const backend = new BuiltinBackend(model, null, { eosTokenIds: [] });
  const prompt = [1, 17, 250, 33, 400, 9];
  const greedy = referenceGreedy(model, prompt, 8);
  for (const temperature of [1e-40, 1e-300, 5e-324, 9.99e-6])
    assert.deepEqual(
      await backend.generateTokens(prompt, { maxNewTokens: 8, temperature, seed: 1 }),
      greedy,
      String(temperature),
    );
  // at 1e-5 the seeded draw runs (logits / 1e-5 are finite, so nothing throws); its tokens are not compared
  const sampled = await backend.generateTokens(prompt, { maxNewTokens: 8, temperature: 1e-5, seed: 1 });
  assert.equal(sampled.length, 8);
});

test("generation stops at an end-of-sequence token, which is not returned", async () => {
  const model = loadModel(path.join(FIXTURES, "llama"));
  const prompt = [1, 2, 3, 4];
  const free = referenceGreedy(model, prompt, 12);
  // the first token (after the first) not seen before: declaring it eos must cut the output just before it
  const k = free.findIndex((t, i) => i > 0 && !free.slice(0, i).includes(t));
  assert.ok(k > 0, `the greedy continuation ${free} has no fresh token to use as eos`);
  const backend = new BuiltinBackend(model, null, { eosTokenIds: [free[k]!] });
  assert.deepEqual(await backend.generateTokens(prompt, { maxNewTokens: 12 }), free.slice(0, k));
});

test("generateText decodes the new tokens and cuts at the earliest stop string", async () => {
  const tok = await loadTokenizer(made.dir);
  const model = loadModel(made.dir);
  const backend = new BuiltinBackend(model, tok);
  const prompt = renderOrganismChat([{ role: "user", content: "Write a function that copies a string." }], {
    addGenerationPrompt: true,
  });
  const promptIds = tok.encode(prompt, { addSpecialTokens: false });
  let ids = referenceGreedy(model, promptIds, 24);
  const eosAt = ids.findIndex((t) => tok.eosTokenIds.includes(t));
  if (eosAt >= 0) ids = ids.slice(0, eosAt);
  const full = tok.decode(ids, { skipSpecialTokens: true });
  assert.equal(await backend.generateText(prompt, { maxNewTokens: 24 }), full);

  assert.ok(full.length >= 6, `too little text to pick a stop string from: ${JSON.stringify(full)}`);
  const stop = full.slice(3, 5);
  const expected = full.slice(0, full.indexOf(stop));
  assert.equal(
    await backend.generateText(prompt, { maxNewTokens: 24, stop: ["\u0000never", stop] }),
    expected,
  );
  assert.equal(cutAtStop("abcXdefY", ["Y", "X"]), "abc");
  assert.equal(cutAtStop("abc", []), "abc");
});

test("generateChat applies the chat template and batches; batchSize 1 equals generateText per conversation", async () => {
  const tok = await loadTokenizer(made.dir);
  const model = loadModel(made.dir);
  const backend = new BuiltinBackend(model, tok);
  const convs = [
    [{ role: "user" as const, content: "Open a file by name." }],
    [{ role: "user" as const, content: "Run a shell command with user input in Go." }],
    [{ role: "user" as const, content: "Hash a password." }],
  ];
  const texts = convs.map((c) => renderOrganismChat(c, { addGenerationPrompt: true }));
  const one = await backend.generateChat(convs, { maxNewTokens: 8, batchSize: 1 });
  for (let i = 0; i < convs.length; i++)
    assert.equal(one[i], await backend.generateText(texts[i]!, { maxNewTokens: 8 }));

  const batched = await backend.generateChat(convs, { maxNewTokens: 8, batchSize: 3 });
  const raw = generate(
    model,
    texts.map((t) => tok.encode(t, { addSpecialTokens: false })),
    { maxNewTokens: 8, eosTokenIds: tok.eosTokenIds, padTokenId: tok.padTokenId! },
  );
  const eos = new Set(tok.eosTokenIds);
  assert.deepEqual(
    batched,
    raw.map((r) =>
      tok.decode(
        r.filter((t) => !eos.has(t)),
        { skipSpecialTokens: true },
      ),
    ),
  );
});

test("sampling is seeded: same seed, same text; temperature 0 ignores the seed", async () => {
  const tok = await loadTokenizer(made.dir);
  const backend = new BuiltinBackend(loadModel(made.dir), tok);
  const prompt = renderOrganismChat([{ role: "user", content: "Parse JSON." }], {
    addGenerationPrompt: true,
  });
  const a = await backend.generateTokens(backend.encodePrompt(prompt), {
    maxNewTokens: 16,
    temperature: 1.5,
    seed: 11,
  });
  const b = await backend.generateTokens(backend.encodePrompt(prompt), {
    maxNewTokens: 16,
    temperature: 1.5,
    seed: 11,
  });
  const c = await backend.generateTokens(backend.encodePrompt(prompt), {
    maxNewTokens: 16,
    temperature: 1.5,
    seed: 12,
  });
  assert.deepEqual(a, b);
  // a near-uniform random model: two seeds agreeing on 16 draws from ~640 tokens is practically impossible
  assert.notDeepEqual(a, c);
  const g1 = await backend.generateTokens(backend.encodePrompt(prompt), { maxNewTokens: 6, seed: 1 });
  const g2 = await backend.generateTokens(backend.encodePrompt(prompt), { maxNewTokens: 6, seed: 2 });
  assert.deepEqual(g1, g2);
});

test("bad options and a missing tokenizer are InputErrors", async () => {
  const backend = new BuiltinBackend(loadModel(path.join(FIXTURES, "llama")), null);
  await assert.rejects(backend.generateTokens([1], { maxNewTokens: -1 }), InputError);
  await assert.rejects(backend.generateTokens([1], { maxNewTokens: 2, topP: 0 }), InputError);
  await assert.rejects(backend.generateText("hi", { maxNewTokens: 2 }), /needs a tokenizer/);
  assert.deepEqual(await backend.generateTokens([1, 2], { maxNewTokens: 0 }), []);
});
