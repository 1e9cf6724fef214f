/**
 * YaRN and dynamic-NTK RoPE scaling, as transformers 5 computes them. References: the closed form of YaRN's
 * frequencies (the YaRN paper, arXiv 2309.00071 §3.2, as transformers implements it) worked out in float64 for the
 * settings Qwen's model cards give; transformers 5's _compute_yarn_parameters transcribed line for line into
 * test/models/yarn_reference.py and run by PyTorch (bit for bit; skipped where /usr/bin/python3 has no torch); and
 * llama.cpp's own YaRN in test/gguf/export-llamacpp.test.ts (logits of the exported model).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseModelConfig, type RopeScaling } from "../../src/io/config.js";
import { KVCache, ropeAttentionScaling, ropeInvFreq, ropeTables } from "../../src/models/layers.js";
import { loadModel, type DecoderModel } from "../../src/models/index.js";
import { Tensor } from "../../src/tensor/index.js";
import { FIXTURES, assertInputError, scratchDir } from "../io/helpers.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const PY = "/usr/bin/python3";
const hasTorch = spawnSync(PY, ["-c", "import torch"], { encoding: "utf8" }).status === 0;

// Qwen2.5-Coder-7B-Instruct's config.json (the sizes that matter here) and the rope_scaling its model card says to
// add for long inputs
const QWEN25_CODER_7B = {
  model_type: "qwen2",
  hidden_size: 3584,
  intermediate_size: 18944,
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  max_position_embeddings: 32768,
  rope_theta: 1000000.0,
  vocab_size: 152064,
};
const CARD_YARN = { factor: 4.0, original_max_position_embeddings: 32768, type: "yarn" };

function yarnOf(raw: Record<string, unknown>): Extract<RopeScaling, { type: "yarn" }> {
  const rs = parseModelConfig(raw, "config.json").ropeScaling;
  assert.equal(rs.type, "yarn");
  return rs as Extract<RopeScaling, { type: "yarn" }>;
}

test("yarn: Qwen's model-card rope_scaling, in transformers 4 and 5 spellings, resolves as transformers 5 does", () => {
  const want = {
    type: "yarn",
    factor: 4,
    originalMaxPositionEmbeddings: 32768,
    betaFast: 32,
    betaSlow: 1,
    truncate: true,
    attentionFactor: 0.1 * Math.log(4) + 1, // 1.1386…
  };
  assert.deepEqual(yarnOf({ ...QWEN25_CODER_7B, rope_scaling: CARD_YARN }), want);
  const v5 = {
    ...QWEN25_CODER_7B,
    rope_theta: undefined,
    rope_parameters: {
      rope_type: "yarn",
      rope_theta: 1e6,
      factor: 4,
      original_max_position_embeddings: 32768,
    },
  };
  assert.deepEqual(yarnOf(v5), want);
  // original_max_position_embeddings left out: max_position_embeddings (standardize_rope_params)
  assert.equal(
    yarnOf({ ...QWEN25_CODER_7B, rope_scaling: { type: "yarn", factor: 4 } }).originalMaxPositionEmbeddings,
    32768,
  );
  // a top-level original_max_position_embeddings wins over the rope parameters' (Phi-3's layout)
  assert.equal(
    yarnOf({ ...QWEN25_CODER_7B, original_max_position_embeddings: 4096, rope_scaling: CARD_YARN })
      .originalMaxPositionEmbeddings,
    4096,
  );
  // factor null: the ratio of the context lengths; 131072 / 32768 = 4
  const ratio = yarnOf({
    ...QWEN25_CODER_7B,
    max_position_embeddings: 131072,
    rope_scaling: { ...CARD_YARN, factor: null },
  });
  assert.equal(ratio.factor, 4);
  // DeepSeek's mscale / mscale_all_dim: (0.1·1·ln 40 + 1) / (0.1·0.707·ln 40 + 1); an explicit attention_factor wins
  const ds = yarnOf({
    ...QWEN25_CODER_7B,
    rope_scaling: { type: "yarn", factor: 40, mscale: 1, mscale_all_dim: 0.707 },
  });
  assert.ok(Math.abs(ds.attentionFactor - (0.1 * Math.log(40) + 1) / (0.0707 * Math.log(40) + 1)) < 1e-12);
  assert.equal(
    yarnOf({ ...QWEN25_CODER_7B, rope_scaling: { ...CARD_YARN, attention_factor: 1.25 } }).attentionFactor,
    1.25,
  );
  // beta 0 is transformers' `or 32` default
  const betas = yarnOf({
    ...QWEN25_CODER_7B,
    rope_scaling: { ...CARD_YARN, beta_fast: 0, beta_slow: 2, truncate: false },
  });
  assert.deepEqual([betas.betaFast, betas.betaSlow, betas.truncate], [32, 2, false]);
  // factor 1: no attention scaling (get_mscale(1) = 1)
  assert.equal(yarnOf({ ...QWEN25_CODER_7B, rope_scaling: { ...CARD_YARN, factor: 1 } }).attentionFactor, 1);
  // truncate null: transformers' `if truncate:` does not truncate
  assert.equal(
    yarnOf({ ...QWEN25_CODER_7B, rope_scaling: { ...CARD_YARN, truncate: null } }).truncate,
    false,
  );
});

test("yarn on Gemma3 (RoPE parameters per layer type): no top-level original_max_position_embeddings, truncate always true, as transformers 5", () => {
  const gemma = {
    model_type: "gemma3_text",
    vocab_size: 512,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 32,
    max_position_embeddings: 131072,
    original_max_position_embeddings: 32, // read only for one dict of RoPE parameters (standardize_rope_params)
    rope_theta: 1e6,
    layer_types: ["sliding_attention", "full_attention"],
    sliding_window: 8,
  };
  const yarn = { rope_type: "yarn", factor: 8, truncate: false };
  for (const cfg of [
    { ...gemma, rope_scaling: yarn },
    {
      ...gemma,
      rope_theta: undefined,
      rope_parameters: {
        full_attention: { ...yarn, rope_theta: 1e6 },
        sliding_attention: { rope_type: "default", rope_theta: 1e4 },
      },
    },
  ]) {
    const rs = yarnOf(cfg);
    assert.equal(rs.originalMaxPositionEmbeddings, 131072);
    assert.equal(rs.truncate, true);
  }
  assert.equal(
    yarnOf({ ...gemma, rope_scaling: { ...yarn, original_max_position_embeddings: 4096 } })
      .originalMaxPositionEmbeddings,
    4096,
  );
});

test("bf16 tables: cos and sin scaled in float32, then cast (transformers' order), which differs from scaling after", () => {
  const s = yarnOf({ ...QWEN25_CODER_7B, rope_scaling: CARD_YARN });
  const inv = ropeInvFreq(128, 1e6, s);
  const pos = Tensor.arange(0, 64, 1, "int64").unsqueeze(0);
  const ours = ropeTables(inv, pos, "bfloat16", s.attentionFactor);
  const f32 = ropeTables(inv, pos, "float32", s.attentionFactor);
  const late = ropeTables(inv, pos, "bfloat16", 1);
  const bits = (t: Tensor) => Array.from(t.to("float32").toFloat32Array());
  assert.deepEqual(bits(ours.cos), bits(f32.cos.to("bfloat16")));
  assert.deepEqual(bits(ours.sin), bits(f32.sin.to("bfloat16")));
  const after = bits(late.cos.mul(s.attentionFactor));
  const differ = bits(ours.cos).filter((v, i) => v !== after[i]).length;
  assert.ok(differ > 100, `only ${differ} of ${after.length} entries tell the orders apart`);
});

test("yarn and dynamic: what cannot be computed is refused by field", () => {
  assertInputError(
    () =>
      parseModelConfig(
        { ...QWEN25_CODER_7B, rope_scaling: { type: "yarn", original_max_position_embeddings: 32768 } },
        "q/config.json",
      ),
    "q/config.json",
    "rope_scaling",
    "factor",
  );
  assertInputError(
    () =>
      parseModelConfig(
        { ...QWEN25_CODER_7B, rope_scaling: { ...CARD_YARN, beta_fast: -1 } },
        "q/config.json",
      ),
    "q/config.json",
    "beta_fast",
  );
  assertInputError(
    () => parseModelConfig({ ...QWEN25_CODER_7B, rope_scaling: { type: "dynamic" } }, "q/config.json"),
    "rope_scaling",
    "factor",
  );
});

test("yarn frequencies: Qwen2.5-Coder's head_dim 128, theta 1e6, factor 4, original 32768, against the closed form", () => {
  const s = yarnOf({ ...QWEN25_CODER_7B, rope_scaling: CARD_YARN });
  const inv = ropeInvFreq(128, 1e6, s).toFloat32Array();
  assert.equal(inv.length, 64);
  // correction range: dim·ln(L / (2π·β)) / (2 ln θ) for β = 32 and 1, floored and ceiled: 23.597… → 23, 39.620… → 40
  const corr = (beta: number) => (128 * Math.log(32768 / (beta * 2 * Math.PI))) / (2 * Math.log(1e6));
  assert.deepEqual([Math.floor(corr(32)), Math.ceil(corr(1))], [23, 40]);
  for (let i = 0; i < 64; i++) {
    const base = Math.pow(1e6, -(2 * i) / 128);
    const ramp = Math.min(1, Math.max(0, (i - 23) / (40 - 23))); // 0: keep the frequency, 1: divide by the factor
    const want = (base / 4) * ramp + base * (1 - ramp);
    assert.ok(Math.abs(inv[i]! - want) <= 2e-6 * want, `inv_freq[${i}] = ${inv[i]} vs ${want}`);
  }
  // the first 24 frequencies are the model's own, the last 24 a quarter of them
  const plain = ropeInvFreq(128, 1e6, { type: "default" }).toFloat32Array();
  for (let i = 0; i <= 23; i++) assert.equal(inv[i], plain[i]);
  for (let i = 40; i < 64; i++) assert.ok(Math.abs(inv[i]! - plain[i]! / 4) <= 1e-6 * inv[i]!);
  assert.equal(ropeAttentionScaling(s), s.attentionFactor);
  assert.equal(ropeAttentionScaling({ type: "linear", factor: 8 }), 1);
});

test(
  "yarn frequencies and attention factor equal transformers 5's _compute_yarn_parameters (transcribed) bit for bit",
  { skip: hasTorch ? false : `${PY} cannot import torch` },
  () => {
    const cases: Record<string, unknown>[] = [
      { head_dim: 128, rope_theta: 1e6, max_position_embeddings: 32768, rope_scaling: CARD_YARN },
      {
        head_dim: 128,
        rope_theta: 1e6,
        max_position_embeddings: 40960,
        rope_scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 32768 },
      },
      {
        head_dim: 64,
        rope_theta: 10000,
        max_position_embeddings: 4096,
        rope_scaling: { type: "yarn", factor: 8, truncate: false },
      },
      {
        head_dim: 16,
        rope_theta: 10000,
        max_position_embeddings: 256,
        rope_scaling: { type: "yarn", factor: null, original_max_position_embeddings: 64 },
      },
      {
        head_dim: 128,
        rope_theta: 5e5,
        max_position_embeddings: 8192,
        rope_scaling: {
          type: "yarn",
          factor: 40,
          mscale: 1,
          mscale_all_dim: 0.707,
          beta_fast: 16,
          beta_slow: 2,
        },
      },
      {
        head_dim: 256,
        rope_theta: 1e6,
        max_position_embeddings: 131072,
        original_max_position_embeddings: 8192,
        rope_scaling: { type: "yarn", factor: 16, attention_factor: 1.3 },
      },
      {
        head_dim: 32,
        rope_theta: 10000,
        max_position_embeddings: 2048,
        rope_scaling: { type: "yarn", factor: 1 },
      },
      // beta 0 (the `or` default), a factor below 1, truncate null, and a zero-width ramp (low = high = 0: the
      // 0.001 guard)
      {
        head_dim: 64,
        rope_theta: 1e4,
        max_position_embeddings: 4096,
        rope_scaling: { type: "yarn", factor: 4, beta_slow: 0, beta_fast: 0 },
      },
      {
        head_dim: 64,
        rope_theta: 1e4,
        max_position_embeddings: 4096,
        rope_scaling: { type: "yarn", factor: 0.5 },
      },
      {
        head_dim: 64,
        rope_theta: 1e4,
        max_position_embeddings: 4096,
        rope_scaling: { type: "yarn", factor: 4, truncate: null },
      },
      {
        head_dim: 16,
        rope_theta: 1e4,
        max_position_embeddings: 8,
        rope_scaling: { type: "yarn", factor: 2, original_max_position_embeddings: 4 },
      },
    ];
    const py = spawnSync(PY, [path.join(ROOT, "test/models/yarn_reference.py")], {
      input: JSON.stringify(cases),
      encoding: "utf8",
    });
    assert.equal(py.status, 0, py.stderr);
    const theirs = JSON.parse(py.stdout) as { inv_freq_bits: number[]; attention_factor: number }[];
    cases.forEach((c, n) => {
      const headDim = c.head_dim as number;
      const cfg = parseModelConfig(
        {
          model_type: "llama",
          vocab_size: 32,
          hidden_size: headDim * 2,
          intermediate_size: 8,
          num_hidden_layers: 1,
          num_attention_heads: 2,
          ...c,
        },
        `case ${n}`,
      );
      const ours = new Uint32Array(
        ropeInvFreq(headDim, cfg.ropeTheta, cfg.ropeScaling).toFloat32Array().buffer,
      );
      assert.deepEqual(Array.from(ours), theirs[n]!.inv_freq_bits, `case ${n}: inv_freq`);
      assert.equal(
        ropeAttentionScaling(cfg.ropeScaling),
        theirs[n]!.attention_factor,
        `case ${n}: attention factor`,
      );
    });
  },
);

/** The qwen2 fixture's weights in a scratch folder; each call loads them (float32) under its config with `over`. */
function qwen2With(): (over: Record<string, unknown>) => DecoderModel {
  const dir = scratchDir();
  for (const f of ["config.json", "model.safetensors"])
    fs.copyFileSync(path.join(FIXTURES, "qwen2", f), path.join(dir, f));
  const cfgFile = path.join(dir, "config.json");
  const raw = JSON.parse(fs.readFileSync(cfgFile, "utf8")) as Record<string, unknown>;
  return (over) => {
    fs.writeFileSync(cfgFile, JSON.stringify({ ...raw, ...over }));
    return loadModel(dir, { dtype: "float32" });
  };
}

test("yarn through a KV cache (prefill, then one token at a time) gives the full forward's logits", () => {
  const qwen2 = qwen2With();
  const logits = (scaling: unknown, cached: boolean): Float32Array => {
    const model = qwen2({ rope_scaling: scaling });
    const ids = Array.from({ length: 24 }, (_, i) => (i * 31 + 7) % 500);
    if (!cached) return model.forward(Tensor.fromArray(ids, [1, 24], "int64")).toFloat32Array();
    const cache = new KVCache(model.cfg.numLayers);
    const rows = [
      model.forward(Tensor.fromArray(ids.slice(0, 20), [1, 20], "int64"), { cache }).toFloat32Array(),
    ];
    for (let t = 20; t < 24; t++)
      rows.push(model.forward(Tensor.fromArray([ids[t]!], [1, 1], "int64"), { cache }).toFloat32Array());
    cache.dispose();
    return Float32Array.from(rows.flatMap((r) => Array.from(r)));
  };
  const yarn = { type: "yarn", factor: 4, original_max_position_embeddings: 16 };
  const full = logits(yarn, false);
  const diff = (a: Float32Array, b: Float32Array) =>
    a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
  assert.ok(diff(full, logits(yarn, true)) < 1e-4);
  assert.ok(diff(full, logits(null, false)) > 0.1, "yarn does not move these logits: the check cannot fail");
});

test("dynamic: the default frequencies up to max_position_embeddings, and a longer sequence refused", () => {
  const qwen2 = qwen2With();
  const ids = Tensor.fromArray(
    Array.from({ length: 12 }, (_, i) => (i * 29 + 5) % 500),
    [1, 12],
    "int64",
  );
  const plain = qwen2({ max_position_embeddings: 12 }).forward(ids).toFloat32Array();
  const dynamic = qwen2({ max_position_embeddings: 12, rope_scaling: { type: "dynamic", factor: 2 } });
  assert.deepEqual(dynamic.forward(ids).toFloat32Array(), plain);
  const longer = Tensor.fromArray(
    Array.from({ length: 13 }, (_, i) => i + 3),
    [1, 13],
    "int64",
  );
  assert.throws(() => dynamic.forward(longer), /13 tokens passes max_position_embeddings \(12\)/);
});
