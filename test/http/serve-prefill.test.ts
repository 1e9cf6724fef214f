/**
 * A long prompt does not hold `goodvibe serve`'s thread for its whole prefill: the prompt is run into the KV cache a
 * chunk at a time (models/generate.ts prefillChunk, as vLLM's chunked prefill), with a turn of the event loop after
 * each, so that a health check sent meanwhile is answered before the prompt is through. Chunked or not, the first
 * token's logits agree to float rounding and the greedy answer is the same.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { generateAsync } from "../../src/models/generate.js";
import { serveBuiltin } from "../../src/eval/generate/serve.js";
import type { Tensor } from "../../src/tensor/index.js";

const made = makeTinyChatModel({ seed: 11 });
after(() => fs.rmSync(made.dir, { recursive: true, force: true }));
const backend = await BuiltinBackend.load(made.dir);
const tok = backend.tokenizer!;
const longPrompt = (tokens: number): number[] => {
  const ids = tok.encode("def f(x):\n    return x * 2\n\n".repeat(400), { addSpecialTokens: false });
  assert.ok(ids.length >= tokens);
  return ids.slice(0, tokens);
};

test("chunked prefill: the same greedy tokens, first-step logits equal to float rounding, batches with padding too", async () => {
  const prompts = [longPrompt(700), longPrompt(300)]; // left-padded: the mask is cut per chunk
  const run = async (prefillChunk: number | undefined) => {
    const logits: number[][] = [];
    const out = await generateAsync(backend.model, prompts, {
      maxNewTokens: 6,
      padTokenId: backend.padTokenId,
      prefillChunk,
      onStepLogits: (l: Tensor) => {
        if (logits.length === 0) logits.push(Array.from(l.toFloat32Array()));
      },
    });
    return { out, first: logits[0]! };
  };
  const whole = await run(undefined);
  for (const chunk of [64, 256, 699, 700]) {
    const c = await run(chunk);
    assert.deepEqual(c.out, whole.out, `chunk ${chunk}`);
    let worst = 0;
    whole.first.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - c.first[i]!))));
    assert.ok(worst < 1e-4, `chunk ${chunk}: first-step logits differ by ${worst}`);
  }
});

test("serve: a health check sent while a long prompt prefills is answered before the prompt is through", async () => {
  // prompt tokens the model has run so far
  let ran = 0;
  const model = backend.model;
  const hidden = model.hidden.bind(model);
  (model as { hidden: typeof model.hidden }).hidden = (ids, opts) => {
    ran += ids.size(1);
    return hidden(ids, opts);
  };
  const PROMPT = 1900;
  // no end-of-sequence token: the answer is its two tokens whatever they are
  const noEos = new BuiltinBackend(model, tok, { eosTokenIds: [] });
  const s = await serveBuiltin(noEos, { port: 0, modelName: "made", prefillChunk: 64 });
  try {
    const pending = fetch(`${s.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: longPrompt(PROMPT), max_tokens: 2, temperature: 0 }),
    });
    // once the long request is running, ask for /health and note how far its prompt had got
    while (s.load().running === 0) await new Promise((r) => setImmediate(r));
    const health = await fetch(`${s.url}/health`);
    const ranWhenAnswered = ran;
    assert.equal(health.status, 200);
    assert.ok(ranWhenAnswered < PROMPT, `answered after ${ranWhenAnswered} of the ${PROMPT} prompt tokens`);
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(ran, PROMPT + 1, "the prompt once, then one token");
  } finally {
    (model as { hidden: typeof model.hidden }).hidden = hidden;
    await s.stop();
  }
});
