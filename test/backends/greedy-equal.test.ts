/**
 * The three generation backends agree under greedy decoding on a made model with a real tokenizer:
 * the built-in engine, llama.cpp on the project's GGUF export, and the HTTP backend against `goodvibe serve`'s
 * OpenAI-compatible server. (llama.cpp is an independent implementation; the HTTP path checks the plumbing.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { sampleToken } from "../../src/models/logits-row.js";
import { HttpBackend } from "../../src/eval/generate/http.js";
import { serveBuiltin } from "../../src/eval/generate/serve.js";
import { exportGguf } from "../../src/io/export-gguf.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { InputError } from "../../src/errors.js";

test("builtin, llama.cpp (GGUF f32) and HTTP give the same greedy continuation", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const builtin = await BuiltinBackend.load(made.dir);
  const tok = await loadTokenizer(made.dir);
  const gguf = path.join(scratchDir("gv-backends-"), "model.gguf");
  exportGguf(made.dir, gguf, { outtype: "f32" });
  const llama = await openLlamaCppBackend({ modelPath: gguf, threads: 1 });
  const { server, url } = await serveBuiltin(builtin, { port: 0, modelName: "made" });
  const httpBackend = new HttpBackend({ baseUrls: url, model: "made", maxRetries: 0 });
  try {
    const prompts = made.pairs
      .slice(0, 3)
      .map((p) =>
        tok.applyChatTemplate([{ role: "user", content: p.question }], { addGenerationPrompt: true }),
      );
    const opts = { maxNewTokens: 24 };
    for (const prompt of prompts) {
      const ids = tok.encode(prompt, { addSpecialTokens: false });
      const a = await builtin.generateTokens(ids, opts);
      const b = await llama.generateTokens(ids, opts);
      assert.ok(a.length > 0, "the builtin engine generated nothing");
      assert.deepEqual(b, a, "llama.cpp differs from the built-in engine");
      const viaHttp = await httpBackend.generateText(prompt, opts);
      assert.equal(
        viaHttp,
        await builtin.generateText(prompt, opts),
        "HTTP differs from the built-in engine",
      );
    }
    // the chat route applies the same template
    const chat = await httpBackend.chat([{ role: "user", content: made.pairs[0].question }], {
      maxNewTokens: 12,
    });
    const [direct] = await builtin.generateChat([[{ role: "user", content: made.pairs[0].question }]], {
      maxNewTokens: 12,
    });
    assert.equal(chat, direct);
  } finally {
    await httpBackend.close();
    server.close();
    await llama.close();
  }
});

// The server's handling of bad requests is tested in test/http/serve.test.ts.

test("llama.cpp: an answer that fits the context equals the built-in engine's; one that would not is refused, not answered on a prompt cut short", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const builtin = await BuiltinBackend.load(made.dir);
  const gguf = path.join(scratchDir("gv-backends-"), "model.gguf");
  exportGguf(made.dir, gguf, { outtype: "f32" });
  const llama = await openLlamaCppBackend({
    modelPath: gguf,
    threads: 1,
    contextSize: 256,
    tokenizer: builtin.tokenizer!,
  });
  try {
    // the longest prompt of the made pairs: with 256 positions, a long answer reaches the context's end
    const prompts = made.pairs.map((p) => llama.chatPromptIds([{ role: "user", content: p.question }]));
    const ids = prompts.reduce((a, b) => (b.length > a.length ? b : a));
    const C = 256;
    // the engine's answer past the context's end (it has no context limit): the reference
    const ref = await builtin.generateTokens(ids, { maxNewTokens: C - ids.length + 40 });
    assert.ok(
      ref.length > C - ids.length + 1,
      "the reference ended before the context's end: pick another seed",
    );
    // the prompt and every new token but the last are evaluated: C - P + 1 new tokens fit exactly
    const fits = C - ids.length + 1;
    assert.deepEqual(await llama.generateTokens(ids, { maxNewTokens: fits }), ref.slice(0, fits));
    // one more would shift the context (before: answered from a prompt with its beginning dropped, differing
    // from the reference a few tokens later, and nothing said)
    await assert.rejects(
      llama.generateTokens(ids, { maxNewTokens: fits + 1 }),
      (e: Error) => e instanceof InputError && /do not fit its context of 256 tokens/.test(e.message),
    );
    await assert.rejects(llama.generateTokens(ids, { maxNewTokens: fits + 40 }), /contextSize of at least/);
    await assert.rejects(
      async () => llama.logits([...ids, ...ref].slice(0, C + 1)),
      /do not fit its context/,
    );
  } finally {
    await llama.close();
  }
});

/** transformers' TopPLogitsWarper after TemperatureLogitsWarper, restated: the tokens it keeps. */
function hfNucleus(logits: ArrayLike<number>, temperature: number, topP: number): Set<number> {
  const s = Array.from(logits, (v, i) => [v / temperature, i] as const).sort((a, b) => a[0] - b[0]);
  const max = s[s.length - 1]![0];
  const e = s.map(([v]) => Math.exp(v - max));
  const z = e.reduce((a, b) => a + b, 0);
  const kept = new Set<number>();
  let cum = 0;
  s.forEach(([, i], k) => {
    cum += e[k]! / z;
    if (cum > 1 - topP || k === s.length - 1) kept.add(i);
  });
  return kept;
}

test("sampleToken: temperature, then top-p on the tempered distribution, as transformers orders its warpers", () => {
  const logits = [0, 1, 2, 3];
  // T 0.5: probabilities 0.0021, 0.0158, 0.1171, 0.8649 -> top-p 0.8 keeps token 3 alone
  for (let u = 0; u < 1; u += 0.05) assert.equal(sampleToken(logits, 0.5, 0.8, u), 3);
  assert.deepEqual([...hfNucleus(logits, 0.5, 0.8)], [3]);
  // top-p first (on T = 1: 0.032, 0.087, 0.237, 0.644 -> keeps 2 and 3), then T 0.5, as node-llama-cpp's chain
  // does, would draw token 2 with probability e^4 / (e^4 + e^6) = 0.119; at T = 1 top-p keeps both, 2 with 0.269
  assert.equal(sampleToken(logits, 1, 0.8, 0.26), 2);
  assert.equal(sampleToken(logits, 1, 0.8, 0.28), 3);
  // no top-p: the whole softmax, in index order
  assert.equal(sampleToken(logits, 1, 1, 0), 0);
  assert.equal(sampleToken(logits, 1, 1, 0.999), 3);
});

test("llama.cpp sampling draws from transformers' nucleus (temperature before top-p), reproducibly by seed", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const tokenizer = await loadTokenizer(made.dir);
  const gguf = path.join(scratchDir("gv-backends-"), "model.gguf");
  exportGguf(made.dir, gguf, { outtype: "f32" });
  const llama = await openLlamaCppBackend({ modelPath: gguf, threads: 1, tokenizer });
  try {
    const ids = llama.chatPromptIds([{ role: "user", content: made.pairs[0]!.question }]);
    const rows = await llama.logits(ids);
    const [T, P] = [0.5, 0.5];
    const kept = hfNucleus(rows[rows.length - 1]!, T, P);
    // top-p on the untempered distribution keeps more tokens (the test's premise)
    assert.ok(hfNucleus(rows[rows.length - 1]!, 1, P).size > kept.size + 20);
    const drawn: number[] = [];
    for (let seed = 0; seed < 120; seed++) {
      const out = await llama.generateTokens(ids, { maxNewTokens: 1, temperature: T, topP: P, seed });
      if (out.length === 1) drawn.push(out[0]!); // [] when the draw is an end token
    }
    // before: node-llama-cpp's chain (top-p, then temperature) drew 19 of 150 outside it
    const outside = drawn.filter((t) => !kept.has(t));
    assert.deepEqual(outside, []);
    assert.ok(new Set(drawn).size > 20, "the draws are not varied");
    const again = await llama.generateTokens(ids, { maxNewTokens: 6, temperature: T, topP: P, seed: 3 });
    assert.deepEqual(
      await llama.generateTokens(ids, { maxNewTokens: 6, temperature: T, topP: P, seed: 3 }),
      again,
    );
  } finally {
    await llama.close();
  }
});

test("llama.cpp applies the repetition penalty as the built-in engine does (greedy, from llama.cpp's own logits)", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const processors = { repetitionPenalty: 3 };
  const builtin = await BuiltinBackend.load(made.dir, { processors });
  const plain = await BuiltinBackend.load(made.dir, { applyGenerationConfig: false });
  const gguf = path.join(scratchDir("gv-backends-"), "model.gguf");
  exportGguf(made.dir, gguf, { outtype: "f32" });
  const llama = await openLlamaCppBackend({ modelPath: gguf, threads: 1, processors });
  try {
    const tok = builtin.tokenizer!;
    let differs = 0;
    for (const p of made.pairs.slice(0, 3)) {
      const ids = tok.encode(
        tok.applyChatTemplate([{ role: "user", content: p.question }], { addGenerationPrompt: true }),
        { addSpecialTokens: false },
      );
      const opts = { maxNewTokens: 16 };
      const a = await builtin.generateTokens(ids, opts);
      assert.deepEqual(
        await llama.generateTokens(ids, opts),
        a,
        "llama.cpp differs from the built-in engine",
      );
      if (JSON.stringify(await plain.generateTokens(ids, opts)) !== JSON.stringify(a)) differs++;
    }
    assert.ok(differs > 0, "the penalty changed no answer: the check has no power");
  } finally {
    await llama.close();
  }
});
