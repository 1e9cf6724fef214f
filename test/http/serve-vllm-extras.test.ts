/**
 * vLLM's extra sampling parameters that `goodvibe serve` cannot honour are refused (400 naming the field), not
 * ignored: min_p, min_tokens, ignore_eos, and a repetition_penalty other than the one the engine applies (the folder's
 * generation_config.json, or none); their neutral values, and the applied penalty, are accepted.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { serveBuiltin } from "../../src/eval/generate/serve.js";

const made = makeTinyChatModel({ seed: 11 });
after(() => fs.rmSync(made.dir, { recursive: true, force: true }));
const loaded = await BuiltinBackend.load(made.dir);

async function post(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

test("min_p, min_tokens, ignore_eos and another repetition_penalty are refused; neutral values accepted", async () => {
  // an engine that applies the folder's repetition_penalty 1.05 (Qwen2.5 Instruct's)
  const backend = new BuiltinBackend(loaded.model, loaded.tokenizer, {
    processors: { repetitionPenalty: 1.05 },
  });
  const s = await serveBuiltin(backend, { port: 0, modelName: "made" });
  try {
    const base = { prompt: "def f(", max_tokens: 1, temperature: 0 };
    for (const [field, value] of [
      ["min_p", 0.1],
      ["min_tokens", 5],
      ["ignore_eos", true],
      ["repetition_penalty", 1.2],
      ["repetition_penalty", 1],
    ] as const) {
      const r = await post(s.url, { ...base, [field]: value });
      assert.equal(r.status, 400, `${field} ${value}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.param, field);
      assert.equal(r.json.error.code, "unsupported_parameter");
    }
    const bad = await post(s.url, { ...base, repetition_penalty: 0 });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, "invalid_value");
    const ok = await post(s.url, {
      ...base,
      min_p: 0,
      min_tokens: 0,
      ignore_eos: false,
      repetition_penalty: 1.05,
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
  } finally {
    await s.stop();
  }
});
