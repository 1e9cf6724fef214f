import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../src/errors.js";
import { loadModelConfig, parseModelConfig, type ModelConfig } from "../../src/io/config.js";
import { FIXTURES, assertInputError, prng, scratchDir } from "./helpers.js";

const FULL = "full_attention";
const SLIDING = "sliding_attention";

// Every field, written out from the table in test/fixtures/README.md ("The four tiny models").
const FIXTURE_EXPECTED: Record<string, Omit<ModelConfig, "raw" | "modelType">> = {
  llama: {
    family: "llama",
    vocabSize: 512,
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    rmsNormEps: 1e-5,
    ropeTheta: 5e5,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    },
    maxPositionEmbeddings: 256,
    tieWordEmbeddings: false,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    normOnePlus: false,
    sandwichNorms: false,
    hiddenAct: "silu",
    embedScale: 1,
    attnScale: 0.25,
    layerTypes: [FULL, FULL],
    slidingWindow: null,
    ropeLocalTheta: null,
    finalLogitSoftcapping: null,
    attnLogitSoftcapping: null,
    torchDtype: "float32",
    bosTokenId: 1,
    eosTokenIds: [2],
    padTokenId: null,
  },
  qwen2: {
    family: "qwen2",
    vocabSize: 512,
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    rmsNormEps: 1e-6,
    ropeTheta: 1e6,
    ropeScaling: { type: "default" },
    maxPositionEmbeddings: 256,
    tieWordEmbeddings: true,
    qkvBias: true,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    normOnePlus: false,
    sandwichNorms: false,
    hiddenAct: "silu",
    embedScale: 1,
    attnScale: 0.25,
    layerTypes: [FULL, FULL],
    slidingWindow: null,
    ropeLocalTheta: null,
    finalLogitSoftcapping: null,
    attnLogitSoftcapping: null,
    torchDtype: "float32",
    bosTokenId: 1,
    eosTokenIds: [2],
    padTokenId: null,
  },
  qwen3: {
    family: "qwen3",
    vocabSize: 512,
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 32,
    rmsNormEps: 1e-6,
    ropeTheta: 1e6,
    ropeScaling: { type: "default" },
    maxPositionEmbeddings: 256,
    tieWordEmbeddings: true,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: true,
    normOnePlus: false,
    sandwichNorms: false,
    hiddenAct: "silu",
    embedScale: 1,
    attnScale: 1 / Math.sqrt(32),
    layerTypes: [FULL, FULL],
    slidingWindow: null,
    ropeLocalTheta: null,
    finalLogitSoftcapping: null,
    attnLogitSoftcapping: null,
    torchDtype: "float32",
    bosTokenId: 1,
    eosTokenIds: [2],
    padTokenId: null,
  },
  gemma3: {
    family: "gemma3",
    vocabSize: 512,
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 32,
    rmsNormEps: 1e-6,
    ropeTheta: 1e6,
    ropeScaling: { type: "linear", factor: 8 },
    maxPositionEmbeddings: 256,
    tieWordEmbeddings: true,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: true,
    normOnePlus: true,
    sandwichNorms: true,
    hiddenAct: "gelu_pytorch_tanh",
    embedScale: 8,
    attnScale: 1 / Math.sqrt(24),
    layerTypes: [SLIDING, FULL, SLIDING, FULL],
    slidingWindow: 6,
    ropeLocalTheta: 1e4,
    finalLogitSoftcapping: null,
    attnLogitSoftcapping: null,
    torchDtype: "float32",
    bosTokenId: 2,
    eosTokenIds: [1],
    padTokenId: 0,
  },
};

function assertClose(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-15 * Math.abs(expected), `${what}: ${actual} != ${expected}`);
}

function assertConfig(cfg: ModelConfig, expected: Partial<ModelConfig>): void {
  for (const [k, v] of Object.entries(expected)) {
    const got = cfg[k as keyof ModelConfig];
    if (typeof v === "number" && typeof got === "number") assertClose(got, v, k);
    else assert.deepEqual(got, v, k);
  }
}

for (const [family, expected] of Object.entries(FIXTURE_EXPECTED)) {
  test(`${family} fixture config: every field as in the fixture README`, () => {
    const cfg = loadModelConfig(path.join(FIXTURES, family));
    assert.deepEqual(Object.keys(cfg).sort(), [...Object.keys(expected), "raw", "modelType"].sort());
    assertConfig(cfg, expected);
    assert.equal(cfg.modelType, family === "gemma3" ? "gemma3_text" : family);
    assert.deepEqual(
      cfg.raw,
      JSON.parse(fs.readFileSync(path.join(FIXTURES, family, "config.json"), "utf8")),
    );
  });

  test(`${family} bf16 and sharded configs differ only in torch_dtype`, () => {
    assert.equal(loadModelConfig(path.join(FIXTURES, family, "model-bf16")).torchDtype, "bfloat16");
    assertConfig(loadModelConfig(path.join(FIXTURES, family, "model-bf16")), {
      ...expected,
      torchDtype: "bfloat16",
    });
    assertConfig(loadModelConfig(path.join(FIXTURES, family, "sharded")), expected);
  });
}

// Real-world configs, transcribed from the released checkpoints' config.json files.
const LLAMA_31_8B = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192,
    rope_type: "llama3",
  },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.43.0.dev0",
  use_cache: true,
  vocab_size: 128256,
};

const QWEN25_7B = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: "silu",
  hidden_size: 3584,
  initializer_range: 0.02,
  intermediate_size: 18944,
  max_position_embeddings: 32768,
  max_window_layers: 28,
  model_type: "qwen2",
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 131072,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.43.1",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 152064,
};

const QWEN3_8B = {
  architectures: ["Qwen3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 12288,
  max_position_embeddings: 40960,
  max_window_layers: 36,
  model_type: "qwen3",
  num_attention_heads: 32,
  num_hidden_layers: 36,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.51.0",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

const GEMMA3_1B_IT = {
  architectures: ["Gemma3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: null,
  bos_token_id: 2,
  cache_implementation: "hybrid",
  eos_token_id: [1, 106],
  final_logit_softcapping: null,
  head_dim: 256,
  hidden_activation: "gelu_pytorch_tanh",
  hidden_size: 1152,
  initializer_range: 0.02,
  intermediate_size: 6912,
  max_position_embeddings: 32768,
  model_type: "gemma3_text",
  num_attention_heads: 4,
  num_hidden_layers: 26,
  num_key_value_heads: 1,
  pad_token_id: 0,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_local_base_freq: 10000,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: 512,
  sliding_window_pattern: 6,
  torch_dtype: "bfloat16",
  transformers_version: "4.50.0.dev0",
  use_cache: true,
  vocab_size: 262144,
};

test("Llama-3.1-8B-Instruct config", () => {
  const cfg = parseModelConfig(LLAMA_31_8B, "llama31/config.json");
  assertConfig(cfg, {
    family: "llama",
    vocabSize: 128256,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 8,
    headDim: 128,
    ropeTheta: 500000,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    },
    maxPositionEmbeddings: 131072,
    tieWordEmbeddings: false,
    torchDtype: "bfloat16",
    bosTokenId: 128000,
    eosTokenIds: [128001, 128008, 128009],
    padTokenId: null,
    attnScale: 128 ** -0.5,
  });
  assert.equal(cfg.raw, LLAMA_31_8B);
  assert.equal(cfg.layerTypes.length, 32);
});

test("Qwen2.5-7B-Instruct config: biases on q/k/v only, head_dim from hidden/heads, sliding window off", () => {
  const cfg = parseModelConfig(QWEN25_7B, "qwen25/config.json");
  assertConfig(cfg, {
    family: "qwen2",
    headDim: 128,
    numKvHeads: 4,
    qkvBias: true,
    oBias: false,
    qkNorm: false,
    slidingWindow: null,
    ropeScaling: { type: "default" },
    tieWordEmbeddings: false,
    eosTokenIds: [151645],
  });
  assert.ok(cfg.layerTypes.every((t) => t === FULL));
  // use_sliding_window with no layer from max_window_layers on (28 of 28) is full attention in transformers' Qwen2Config
  // (layer_types: sliding for i >= max_window_layers); it was refused
  const noneSlides = parseModelConfig({ ...QWEN25_7B, use_sliding_window: true }, "qwen25/config.json");
  assert.ok(noneSlides.layerTypes.every((t) => t === FULL));
  assert.equal(noneSlides.slidingWindow, null);
  assertInputError(
    () =>
      parseModelConfig(
        { ...QWEN25_7B, use_sliding_window: true, max_window_layers: 4 },
        "qwen25/config.json",
      ),
    "qwen25/config.json",
    "use_sliding_window",
    "max_window_layers",
  );
});

test("Qwen3-8B config: explicit head_dim, q/k norms, nulls accepted", () => {
  const cfg = parseModelConfig(QWEN3_8B, "qwen3/config.json");
  assertConfig(cfg, {
    family: "qwen3",
    headDim: 128,
    qkNorm: true,
    qkvBias: false,
    oBias: false,
    maxPositionEmbeddings: 40960,
  });
  assertConfig(parseModelConfig({ ...QWEN3_8B, attention_bias: true }, "x"), { qkvBias: true, oBias: true });
});

test("gemma-3-1b-it config: layer types from sliding_window_pattern 6, eos list, HF defaults", () => {
  const cfg = parseModelConfig(GEMMA3_1B_IT, "gemma/config.json");
  // Layer i is full iff (i + 1) % 6 == 0: layers 5, 11, 17, 23.
  const full = cfg.layerTypes.flatMap((t, i) => (t === FULL ? [i] : []));
  assert.deepEqual(full, [5, 11, 17, 23]);
  assert.equal(cfg.layerTypes.length, 26);
  assertConfig(cfg, {
    family: "gemma3",
    headDim: 256,
    numKvHeads: 1,
    slidingWindow: 512,
    ropeLocalTheta: 10000,
    ropeTheta: 1e6,
    tieWordEmbeddings: true, // not in the file: Gemma3TextConfig's default
    embedScale: Math.sqrt(1152),
    attnScale: 1 / 16,
    eosTokenIds: [1, 106],
    padTokenId: 0,
    hiddenAct: "gelu_pytorch_tanh",
  });
  // Without sliding_window_pattern the HF default is also 6.
  const { sliding_window_pattern: _p, ...noPattern } = GEMMA3_1B_IT;
  assert.deepEqual(parseModelConfig(noPattern, "g").layerTypes, cfg.layerTypes);
  // Soft-capping is honoured when present (Gemma 2 style configs).
  assertConfig(
    parseModelConfig({ ...GEMMA3_1B_IT, final_logit_softcapping: 30, attn_logit_softcapping: 50 }, "g"),
    {
      finalLogitSoftcapping: 30,
      attnLogitSoftcapping: 50,
    },
  );
  // EmbeddingGemma's attention without the causal mask is refused, not computed as a decoder's (false or null: as before)
  assertInputError(
    () => parseModelConfig({ ...GEMMA3_1B_IT, use_bidirectional_attention: true }, "gemma/config.json"),
    "gemma/config.json",
    "use_bidirectional_attention",
  );
  for (const v of [false, null])
    assert.deepEqual(
      parseModelConfig({ ...GEMMA3_1B_IT, use_bidirectional_attention: v }, "g").layerTypes,
      cfg.layerTypes,
    );
});

test("gemma-3-4b-it multimodal config: text_config holds the model, sizes from Gemma3TextConfig defaults", () => {
  const raw = {
    architectures: ["Gemma3ForConditionalGeneration"],
    boi_token_index: 255999,
    eoi_token_index: 256000,
    eos_token_id: [1, 106],
    image_token_index: 262144,
    mm_tokens_per_image: 256,
    model_type: "gemma3",
    text_config: {
      hidden_size: 2560,
      intermediate_size: 10240,
      model_type: "gemma3_text",
      num_hidden_layers: 34,
      rope_scaling: { factor: 8.0, rope_type: "linear" },
      sliding_window: 1024,
    },
    torch_dtype: "bfloat16",
    vision_config: { model_type: "siglip_vision_model" },
  };
  const cfg = parseModelConfig(raw, "g4/config.json");
  assertConfig(cfg, {
    family: "gemma3",
    modelType: "gemma3",
    hiddenSize: 2560,
    vocabSize: 262208,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 256,
    attnScale: 1 / 16,
    ropeScaling: { type: "linear", factor: 8 },
    slidingWindow: 1024,
    torchDtype: "bfloat16",
    eosTokenIds: [1, 106],
  });
  assert.equal(cfg.layerTypes.filter((t) => t === FULL).length, 5); // 34 layers, every 6th full
  assertInputError(
    () => parseModelConfig({ ...raw, text_config: undefined }, "g4/config.json"),
    "g4/config.json",
    "text_config",
  );
});

test("transformers v5 rope_parameters are read (flat, and per layer type for Gemma3)", () => {
  const { rope_scaling: _s, rope_theta: _t, ...llamaNoRope } = LLAMA_31_8B;
  const llama = parseModelConfig(
    { ...llamaNoRope, rope_parameters: { ...LLAMA_31_8B.rope_scaling, rope_theta: 500000 } },
    "l",
  );
  assertConfig(llama, { ropeTheta: 500000, ropeScaling: LLAMA_EXPECTED_ROPE });
  const { rope_scaling: _gs, rope_theta: _gt, rope_local_base_freq: _gl, ...gemmaNoRope } = GEMMA3_1B_IT;
  const gemma = parseModelConfig(
    {
      ...gemmaNoRope,
      rope_parameters: {
        full_attention: { rope_type: "linear", factor: 8, rope_theta: 1e6 },
        sliding_attention: { rope_type: "default", rope_theta: 1e4 },
      },
    },
    "g",
  );
  assertConfig(gemma, { ropeTheta: 1e6, ropeScaling: { type: "linear", factor: 8 }, ropeLocalTheta: 1e4 });
});
const LLAMA_EXPECTED_ROPE = {
  type: "llama3",
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositionEmbeddings: 8192,
} as const;

test("defaults: num_key_value_heads = heads, tie false for llama/qwen, dtype float32, bos/eos absent", () => {
  const minimal = {
    model_type: "llama",
    vocab_size: 100,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 1,
    num_attention_heads: 4,
  };
  assertConfig(parseModelConfig(minimal, "m"), {
    numKvHeads: 4,
    headDim: 8,
    tieWordEmbeddings: false,
    torchDtype: "float32",
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    bosTokenId: null,
    eosTokenIds: [],
    hiddenAct: "silu",
  });
  assertConfig(
    parseModelConfig({ ...minimal, mlp_bias: true, attention_bias: true, tie_word_embeddings: true }, "m"),
    {
      mlpBias: true,
      qkvBias: true,
      oBias: true,
      tieWordEmbeddings: true,
    },
  );
  assertConfig(parseModelConfig({ ...minimal, model_type: "qwen2", attention_bias: true }, "m"), {
    qkvBias: true,
    oBias: false,
  });
  assertConfig(parseModelConfig({ ...minimal, dtype: "float16" }, "m"), { torchDtype: "float16" });
  // a negative id is none, as transformers loads it: Llama configs converted with transformers 4.27/4.28
  // development releases (decapoda-research's) set pad_token_id -1, and their fine-tunes carry it; it was refused
  assertConfig(parseModelConfig({ ...minimal, bos_token_id: 1, eos_token_id: 2, pad_token_id: -1 }, "m"), {
    bosTokenId: 1,
    eosTokenIds: [2],
    padTokenId: null,
  });
  assertConfig(parseModelConfig({ ...minimal, bos_token_id: -1, eos_token_id: [2, -1] }, "m"), {
    bosTokenId: null,
    eosTokenIds: [2],
  });
  assertConfig(parseModelConfig({ ...minimal, eos_token_id: -1 }, "m"), { eosTokenIds: [] });
  // a quantized checkpoint is refused by name before its weights are read
  for (const q of [{ quant_method: "fp8", fmt: "e4m3" }, { quant_method: "gptq", bits: 4 }, {}])
    assert.throws(
      () => parseModelConfig({ ...minimal, quantization_config: q }, "q/config.json"),
      (e: Error) =>
        e instanceof InputError &&
        e.message.startsWith("q/config.json: a quantized checkpoint") &&
        e.message.includes(q.quant_method ? `quant_method "${q.quant_method}"` : "(quantization_config)") &&
        e.message.includes("unquantized release"),
    );
  // not a whole number is still refused, naming the field
  assert.throws(() => parseModelConfig({ ...minimal, pad_token_id: 1.5 }, "m/config.json"), /pad_token_id/);
});

test("unsupported model types and bad values give InputErrors naming file and field", () => {
  const f = "/models/x/config.json";
  assertInputError(
    () => parseModelConfig({ ...LLAMA_31_8B, model_type: "mistral" }, f),
    f,
    "mistral",
    "not supported",
  );
  assertInputError(() => parseModelConfig({ ...LLAMA_31_8B, model_type: "gpt2" }, f), f, "gpt2");
  const { model_type: _m, ...noType } = LLAMA_31_8B;
  assertInputError(() => parseModelConfig(noType, f), f, "model_type");
  const { hidden_size: _h, ...noHidden } = LLAMA_31_8B;
  assertInputError(() => parseModelConfig(noHidden, f), f, 'missing required field "hidden_size"');
  assertInputError(
    () => parseModelConfig({ ...LLAMA_31_8B, num_attention_heads: "32" }, f),
    f,
    '"num_attention_heads"',
  );
  assertInputError(() => parseModelConfig({ ...LLAMA_31_8B, vocab_size: -5 }, f), f, '"vocab_size"');
  assertInputError(
    () => parseModelConfig({ ...LLAMA_31_8B, num_key_value_heads: 5 }, f),
    f,
    "num_key_value_heads",
  );
  assertInputError(
    () => parseModelConfig({ ...LLAMA_31_8B, hidden_act: "relu" }, f),
    f,
    "hidden_act",
    "relu",
  );
  assertInputError(
    () => parseModelConfig({ ...LLAMA_31_8B, torch_dtype: "int8" }, f),
    f,
    "torch_dtype",
    "int8",
  );
  assertInputError(
    () => parseModelConfig({ ...LLAMA_31_8B, rope_scaling: { rope_type: "longrope", factor: 4 } }, f),
    f,
    "rope_scaling",
    "longrope",
  );
  assertInputError(
    () => parseModelConfig({ ...LLAMA_31_8B, rope_scaling: { rope_type: "llama3", factor: 8 } }, f),
    f,
    "low_freq_factor",
  );
  assertInputError(
    () => parseModelConfig({ ...GEMMA3_1B_IT, layer_types: [FULL] }, f),
    f,
    "layer_types",
    "26 layers",
  );
  assertInputError(
    () => parseModelConfig({ ...GEMMA3_1B_IT, hidden_activation: "gelu" }, f),
    f,
    "hidden_activation",
  );
  assertInputError(() => parseModelConfig([], f), f);
  const dir = scratchDir();
  assertInputError(() => loadModelConfig(dir), path.join(dir, "config.json"));
  fs.writeFileSync(path.join(dir, "config.json"), "{ nope");
  assertInputError(() => loadModelConfig(dir), path.join(dir, "config.json"), "JSON");
  fs.rmSync(dir, { recursive: true });
});

test("fuzz: random edits of valid configs give a consistent config or an InputError, nothing else", () => {
  const bases: Record<string, unknown>[] = [LLAMA_31_8B, QWEN25_7B, QWEN3_8B, GEMMA3_1B_IT];
  for (const fam of Object.keys(FIXTURE_EXPECTED)) {
    bases.push(JSON.parse(fs.readFileSync(path.join(FIXTURES, fam, "config.json"), "utf8")));
  }
  const rand = prng(99);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const values: unknown[] = [
    null,
    0,
    -1,
    1.5,
    7,
    2 ** 60,
    "",
    "x",
    "silu",
    true,
    [],
    [1, "a"],
    {},
    { rope_type: "linear" },
    NaN,
  ];
  let accepted = 0;
  for (let iter = 0; iter < 500; iter++) {
    const cfg: Record<string, unknown> = structuredClone(pick(bases));
    for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) {
      const key = pick(Object.keys(cfg));
      if (rand() < 0.3) delete cfg[key];
      else cfg[key] = pick(values);
    }
    try {
      const c = parseModelConfig(cfg, "fuzz/config.json");
      accepted++;
      assert.equal(c.layerTypes.length, c.numLayers);
      assert.equal(c.numHeads % c.numKvHeads, 0);
      assert.ok(Number.isInteger(c.headDim) && c.headDim > 0);
    } catch (e) {
      if (!(e instanceof InputError))
        assert.fail(`iteration ${iter} threw ${e instanceof Error ? e.stack : String(e)}`);
      assert.ok(e.message.startsWith("fuzz/config.json: "));
    }
  }
  assert.ok(accepted > 0 && accepted < 500);
});
