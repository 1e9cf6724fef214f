/**
 * `goodvibe serve`'s encoding of a /v1/completions text prompt with a tokenizer that adds a start token (Llama 3.2's
 * real tokenizer: <|begin_of_text|>, id 128000, by its TemplateProcessing post-processor), against vLLM's rule
 * (vllm/entrypoints/openai/protocol.py: CompletionRequest.add_special_tokens, default True, "special tokens (e.g.
 * BOS) will be added to the prompt"; ChatCompletionRequest.add_special_tokens, default False, the template writing
 * its own) and against the built-in engine, which encodes GSM8K's prompts with the special tokens: `eval --url` on
 * `goodvibe serve` must answer them as the built-in engine does here. The model: Llama 3.2's real vocabulary
 * (128,256) and tokenizer, hidden size cut to 64 and one layer, random weights.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { realTokenizerDir } from "../gguf/real-models.js";
import { writeModelWeights, type TensorToWrite } from "../../src/io/safetensors.js";
import { Tensor, manualSeed, noGrad, tidy } from "../../src/tensor/index.js";
import { loadModel } from "../../src/models/load.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { HttpBackend } from "../../src/eval/generate/http.js";
import { serveBuiltin } from "../../src/eval/generate/serve.js";
import { BuiltinUtilityModel } from "../../src/recipes/evaluate.js";
import { evaluateGsm8k } from "../../src/eval/utility/gsm8k.js";
import type { Gsm8kItem } from "../../src/eval/utility/datasets.js";

const BOS = 128000;
const dir = scratchDir("gv-serve-bos-");
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const hidden = 64;
const heads = 4;
const kvHeads = 2;
const headDim = 16;
const inter = 128;
const vocab = 128256;
const config = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  attention_bias: false,
  mlp_bias: false,
  bos_token_id: BOS,
  eos_token_id: [128001, 128008, 128009],
  head_dim: headDim,
  hidden_act: "silu",
  hidden_size: hidden,
  intermediate_size: inter,
  max_position_embeddings: 4096,
  num_attention_heads: heads,
  num_hidden_layers: 1,
  num_key_value_heads: kvHeads,
  rms_norm_eps: 1e-5,
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: "float32",
  vocab_size: vocab,
};
manualSeed(3);
const shapes: [string, number[], number][] = [
  ["model.embed_tokens.weight", [vocab, hidden], 1],
  ["model.layers.0.self_attn.q_proj.weight", [heads * headDim, hidden], 0.2],
  ["model.layers.0.self_attn.k_proj.weight", [kvHeads * headDim, hidden], 0.2],
  ["model.layers.0.self_attn.v_proj.weight", [kvHeads * headDim, hidden], 0.2],
  ["model.layers.0.self_attn.o_proj.weight", [hidden, heads * headDim], 0.2],
  ["model.layers.0.mlp.gate_proj.weight", [inter, hidden], 0.2],
  ["model.layers.0.mlp.up_proj.weight", [inter, hidden], 0.2],
  ["model.layers.0.mlp.down_proj.weight", [hidden, inter], 0.2],
  ["lm_head.weight", [vocab, hidden], 0.2],
];
const tensors: TensorToWrite[] = shapes.map(([name, shape, std]) => ({
  name,
  dtype: "F32",
  shape,
  data: noGrad(() => tidy(() => Tensor.randn(shape, "float32").mul(std).toBytes())),
}));
for (const name of [
  "model.layers.0.input_layernorm.weight",
  "model.layers.0.post_attention_layernorm.weight",
  "model.norm.weight",
])
  tensors.push({
    name,
    dtype: "F32",
    shape: [hidden],
    data: noGrad(() => tidy(() => Tensor.ones([hidden], "float32").toBytes())),
  });
writeModelWeights(dir, tensors);
fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
for (const f of ["tokenizer.json", "tokenizer_config.json"])
  fs.copyFileSync(path.join(realTokenizerDir("llama3"), f), path.join(dir, f));

const model = loadModel(dir);
const tok = await loadTokenizer(dir);
const served = await serveBuiltin(new BuiltinBackend(model, tok), { port: 0, modelName: "llama" });
after(() => served.stop());

const post = async (p: string, body: object) => {
  const r = await fetch(`${served.url}${p}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ temperature: 0, max_tokens: 1, ...body }),
  });
  return { status: r.status, json: (await r.json()) as any };
};

const PROMPT = "Question: Tom has 2 apples and buys 3 more. How many apples does he have?\nAnswer:";

test("the tokenizer adds a start token (the premise of the tests below)", () => {
  const ids = tok.encode(PROMPT, { addSpecialTokens: true });
  assert.equal(ids[0], BOS);
  assert.deepEqual(ids.slice(1), tok.encode(PROMPT, { addSpecialTokens: false }));
});

test("/v1/completions encodes a text prompt as vLLM: the special tokens by default, none with add_special_tokens false; chat none by default", async () => {
  const withBos = tok.encode(PROMPT, { addSpecialTokens: true }).length;
  const r = await post("/v1/completions", { prompt: PROMPT });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.usage.prompt_tokens, withBos);
  const off = await post("/v1/completions", { prompt: PROMPT, add_special_tokens: false });
  assert.equal(off.json.usage.prompt_tokens, withBos - 1);
  const on = await post("/v1/completions", { prompt: PROMPT, add_special_tokens: true });
  assert.equal(on.json.usage.prompt_tokens, withBos);
  // token ids are taken as sent (vLLM adds nothing to them)
  const ids = tok.encode(PROMPT, { addSpecialTokens: false });
  assert.equal((await post("/v1/completions", { prompt: ids })).json.usage.prompt_tokens, ids.length);
  // chat: the template writes <|begin_of_text|>; the request adds none unless asked
  const messages = [{ role: "user", content: "Write hello world in C." }];
  const chat = await post("/v1/chat/completions", { messages });
  const chatOn = await post("/v1/chat/completions", { messages, add_special_tokens: true });
  assert.equal(chatOn.json.usage.prompt_tokens, chat.json.usage.prompt_tokens + 1);
  const bad = await post("/v1/completions", { prompt: PROMPT, add_special_tokens: "yes" });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, "add_special_tokens");
});

test("GSM8K over HTTP on goodvibe serve: the answers are the built-in engine's (with the start token), and so the scores", async () => {
  const items: Gsm8kItem[] = [1, 2, 3].map((i) => ({
    question: `Tom has ${i} apples and buys ${i + 1} more. How many apples does he have?`,
    answer: `${i} + ${i + 1} = ${2 * i + 1}\n#### ${2 * i + 1}`,
    finalAnswer: String(2 * i + 1),
  }));
  const remoteModel = new HttpBackend({
    baseUrls: served.url,
    model: "llama",
    tokenizer: tok,
    concurrency: 1,
  });
  const local = await evaluateGsm8k(new BuiltinUtilityModel(model, tok), items, {
    nShot: 0,
    maxNewTokens: 8,
  });
  const remote = await evaluateGsm8k(remoteModel.asUtilityModel(), items, { nShot: 0, maxNewTokens: 8 });
  assert.ok(local.perItem.every((x) => x.completion.length > 0));
  assert.deepEqual(
    remote.perItem.map((x) => x.completion),
    local.perItem.map((x) => x.completion),
  );
  assert.deepEqual(remote.metrics, local.metrics);
});
