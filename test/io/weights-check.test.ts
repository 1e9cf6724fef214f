/**
 * Config and weights checked against each other before any work (checkWeights): the expected tensor set per
 * family comes from config.json, and every missing, unexpected, wrongly shaped or non-float tensor is named in
 * one InputError, as are NaN and infinite values. The reference is transformers' module layout, written out
 * here per family independently of src/io/model-folder.ts, and the PyTorch fixtures that were saved from it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseModelConfig, type ModelConfig } from "../../src/io/config.js";
import { checkWeights, expectedTensors, inspectModelFolder } from "../../src/io/model-folder.js";
import {
  firstNonFinite,
  openModelWeights,
  writeModelWeights,
  type StDtype,
  type TensorRecord,
} from "../../src/io/safetensors.js";
import { buildModel, loadModel } from "../../src/models/load.js";
import { FAMILIES, FIXTURES, assertInputError, scratchDir } from "./helpers.js";

function fixture(family: string): {
  raw: Record<string, unknown>;
  cfg: ModelConfig;
  tensors: Map<string, TensorRecord>;
} {
  const dir = path.join(FIXTURES, family);
  const raw = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  return { raw, cfg: parseModelConfig(raw, `${family}/config.json`), tensors: openModelWeights(dir).tensors };
}

/** A copy of the records with some replaced, renamed or removed (data copied so edits stay local). */
function edited(
  tensors: Map<string, TensorRecord>,
  edit: (name: string, rec: TensorRecord) => TensorRecord | null,
): Map<string, TensorRecord> {
  const out = new Map<string, TensorRecord>();
  for (const [name, rec] of tensors) {
    const r = edit(name, { ...rec, shape: [...rec.shape], data: Buffer.from(rec.data) });
    if (r) out.set(r.name, r);
  }
  return out;
}

/** transformers' per-layer module names, by family (LlamaDecoderLayer, Qwen2/3DecoderLayer, Gemma3DecoderLayer). */
const LAYER_MODULES: Record<string, string[]> = {
  llama: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"],
  qwen2: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"],
  qwen3: [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "self_attn.q_norm",
    "self_attn.k_norm",
  ],
  gemma3: [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "self_attn.q_norm",
    "self_attn.k_norm",
    "pre_feedforward_layernorm",
    "post_feedforward_layernorm",
  ],
};

for (const family of FAMILIES) {
  test(`${family}: the expected tensor set is exactly what the PyTorch fixture holds, and it passes`, () => {
    const { cfg, tensors } = fixture(family);
    const expected = expectedTensors(cfg);
    const required = [...expected].filter(([, e]) => !e.optional).map(([n]) => n);
    assert.deepEqual(required.sort(), [...tensors.keys()].sort());
    for (const [name, rec] of tensors) assert.deepEqual(expected.get(name)!.shape, rec.shape, name);
    // independent of expectedTensors: the module names transformers gives each family
    for (const m of [
      ...LAYER_MODULES[family]!,
      "mlp.gate_proj",
      "mlp.up_proj",
      "mlp.down_proj",
      "input_layernorm",
    ])
      assert.ok(tensors.has(`model.layers.0.${m}.weight`), `${family} fixture has ${m}`);
    assert.equal(checkWeights(cfg, tensors, family).size, tensors.size);
    // the sharded and bf16 copies pass too
    inspectModelFolder(path.join(FIXTURES, family, "sharded"));
    inspectModelFolder(path.join(FIXTURES, family, "model-bf16"));
    if (family === "qwen2") assert.ok(expected.has("model.layers.0.self_attn.q_proj.bias"));
  });

  test(`${family}: config.json and weights that disagree are refused, every mismatch named at once`, () => {
    const { raw, cfg, tensors } = fixture(family);
    const where = `${family}-dir`;
    const withConfig = (change: Record<string, unknown>) => parseModelConfig({ ...raw, ...change }, "c");
    const layers = cfg.numLayers;

    // fewer layers configured than stored: the extra layers are unexpected, and the counts are said
    const fewer = {
      num_hidden_layers: layers - 1,
      ...(family === "gemma3" ? { layer_types: (raw.layer_types as string[]).slice(0, layers - 1) } : {}),
    };
    assertInputError(
      () => checkWeights(withConfig(fewer), tensors, where),
      where,
      `unexpected (`,
      `model.layers.${layers - 1}.`,
      `num_hidden_layers = ${layers - 1} but the weights have ${layers} layers`,
    );
    // more configured than stored: missing
    const more = {
      num_hidden_layers: layers * 2,
      ...(family === "gemma3"
        ? { layer_types: [...(raw.layer_types as string[]), ...(raw.layer_types as string[])] }
        : {}),
    };
    assertInputError(
      () => checkWeights(withConfig(more), tensors, where),
      "missing",
      `model.layers.${layers}.`,
      `have ${layers} layers`,
    );
    // a layer count past any model is refused before per-layer lists are built for it
    assertInputError(() => withConfig({ num_hidden_layers: 1e9 }), '"num_hidden_layers" = 1000000000');
    // sizes that do not match: vocab, hidden, intermediate, heads, head_dim
    assertInputError(
      () => checkWeights(withConfig({ vocab_size: 1e9 }), tensors, where),
      "model.embed_tokens.weight has shape [512, 64], config.json implies [1000000000, 64]",
    );
    assertInputError(
      () => checkWeights(withConfig({ intermediate_size: 96 }), tensors, where),
      "mlp.up_proj.weight",
      "[96, 64]",
    );
    assertInputError(
      () => checkWeights(withConfig({ num_key_value_heads: 4 }), tensors, where),
      "k_proj.weight",
    );
    // tied embeddings configured but an untied head stored is fine (transformers ties it); the reverse is missing
    if (cfg.tieWordEmbeddings)
      assertInputError(
        () => checkWeights(withConfig({ tie_word_embeddings: false }), tensors, where),
        "missing (1): lm_head.weight",
      );

    // tensors that do not fit the config
    const embed = "model.embed_tokens.weight";
    const transposed = edited(tensors, (n, r) =>
      n === embed ? { ...r, shape: [r.shape[1]!, r.shape[0]!] } : r,
    );
    assertInputError(
      () => checkWeights(cfg, transposed, where),
      `${embed} has shape [64, 512]`,
      "[vocab_size, hidden_size]",
    );
    const flat = edited(tensors, (n, r) => (n === embed ? { ...r, shape: [r.shape[0]! * r.shape[1]!] } : r));
    assertInputError(() => checkWeights(cfg, flat, where), `${embed} has shape [32768]`);
    const asInt = edited(tensors, (n, r) => (n.includes("mlp") ? { ...r, dtype: "I32" as StDtype } : r));
    assertInputError(() => checkWeights(cfg, asInt, where), "dtype I32", "mlp.down_proj.weight");
    const missing = edited(tensors, (n, r) => (n === "model.norm.weight" ? null : r));
    assertInputError(() => checkWeights(cfg, missing, where), "missing (1): model.norm.weight");
    const extra = edited(tensors, (n, r) =>
      n === "model.norm.weight" ? { ...r, name: "model.norm.bias" } : r,
    );
    assertInputError(
      () => checkWeights(cfg, extra, where),
      "missing (1): model.norm.weight",
      "unexpected (1): model.norm.bias",
    );
    // several problems at once: all of them in the one message
    const several = edited(transposed, (n, r) =>
      n === "model.norm.weight"
        ? null
        : n.endsWith("down_proj.weight")
          ? { ...r, dtype: "I32" as StDtype }
          : r,
    );
    const e = assertInputError(
      () => checkWeights(cfg, several, where),
      "missing (1)",
      "has shape [64, 512]",
      "dtype I32",
    );
    assert.ok(!e.message.includes("\n    at "), "no stack in the message");
  });
}

test("NaN and infinities are found in F32, BF16 and F16 data, aligned or not, and named with the tensor", () => {
  const f32 = (vals: number[]) => Buffer.from(new Float32Array(vals).buffer);
  assert.equal(firstNonFinite({ dtype: "F32", data: f32([0, 1, -3.4e38, 1e-45]) }), -1);
  assert.equal(firstNonFinite({ dtype: "F32", data: f32([0, 1, NaN]) }), 2);
  assert.equal(firstNonFinite({ dtype: "F32", data: f32([-Infinity, 1]) }), 0);
  // an unaligned view (byteOffset 1)
  const shifted = Buffer.concat([Buffer.alloc(1), f32([1, 2, 3, Infinity])]).subarray(1);
  assert.equal(firstNonFinite({ dtype: "F32", data: shifted }), 3);
  const u16 = (vals: number[]) => Buffer.from(new Uint16Array(vals).buffer);
  // bf16: 0x7f80 = +inf, 0xffc0 = NaN, 0x7f7f = largest finite; f16: 0x7c00 = +inf, 0x7bff = 65504
  assert.equal(firstNonFinite({ dtype: "BF16", data: u16([0x3f80, 0x7f7f, 0xff7f]) }), -1);
  assert.equal(firstNonFinite({ dtype: "BF16", data: u16([0x3f80, 0xffc0]) }), 1);
  assert.equal(firstNonFinite({ dtype: "F16", data: u16([0x3c00, 0x7bff]) }), -1);
  assert.equal(firstNonFinite({ dtype: "F16", data: u16([0x7c00]) }), 0);
  assert.equal(firstNonFinite({ dtype: "F64", data: Buffer.from(new Float64Array([1, NaN]).buffer) }), 1);
  assert.equal(firstNonFinite({ dtype: "I32", data: Buffer.from(new Int32Array([-1]).buffer) }), -1);

  const { cfg, tensors } = fixture("llama");
  const name = "model.layers.1.mlp.up_proj.weight";
  const bad = edited(tensors, (n, r) => {
    if (n === name) r.data.writeFloatLE(NaN, 4 * 77);
    return r;
  });
  assertInputError(() => checkWeights(cfg, bad, "llama-dir"), name, "NaN or infinite", "element 77");
  assertInputError(() => buildModel(cfg, bad, "llama-dir"), name);
});

test("multimodal Gemma3 layouts (language_model.model.*, model.language_model.*) map to the text model; the vision tower is left alone", () => {
  const { raw, tensors } = fixture("gemma3");
  const top = {
    model_type: "gemma3",
    text_config: { ...raw, model_type: "gemma3_text" },
    vision_config: { hidden_size: 8 },
  };
  const cfg = parseModelConfig(top, "mm/config.json");
  for (const [from, vision] of [
    ["language_model.model.", "vision_tower.vision_model.embeddings.patch_embedding.weight"],
    ["model.language_model.", "model.vision_tower.vision_model.post_layernorm.weight"],
  ] as const) {
    const renamed = edited(tensors, (n, r) => ({ ...r, name: n.replace(/^model\./, from) }));
    renamed.set(vision, { ...tensors.get("model.norm.weight")!, name: vision });
    renamed.set("multi_modal_projector.mm_input_projection_weight", {
      ...tensors.get("model.norm.weight")!,
      name: "multi_modal_projector.mm_input_projection_weight",
    });
    const byName = checkWeights(cfg, renamed, "mm");
    assert.deepEqual([...byName.keys()].sort(), [...tensors.keys()].sort());
    // the model built from the renamed tensors equals the one from the plain fixture
    const a = buildModel(cfg, renamed, "mm", { dtype: "float32" });
    assert.deepEqual([...a.parameters().keys()].sort(), [...tensors.keys()].sort());
  }
  // lm_head beside the text model: `language_model.lm_head.weight` in the older layout; in the newer one only the
  // top-level name (a `model.language_lm_head.weight`, the older rule applied to the newer prefix, is no head)
  const head = { ...tensors.get("model.embed_tokens.weight")! };
  for (const [from, name, ok] of [
    ["language_model.model.", "language_model.lm_head.weight", true],
    ["model.language_model.", "lm_head.weight", true],
    ["model.language_model.", "model.language_lm_head.weight", false],
  ] as const) {
    const renamed = edited(tensors, (n, r) => ({ ...r, name: n.replace(/^model\./, from) }));
    renamed.set(name, { ...head, name });
    if (ok) assert.ok(checkWeights(cfg, renamed, "mm").has("lm_head.weight"), name);
    else assertInputError(() => checkWeights(cfg, renamed, "mm"), `unexpected (1): ${name}`);
  }
  // a vision tower in a text-only family is unexpected
  const { cfg: llama, tensors: lt } = fixture("llama");
  const withVision = new Map(lt);
  withVision.set("vision_tower.x.weight", { ...lt.get("model.norm.weight")!, name: "vision_tower.x.weight" });
  assertInputError(() => checkWeights(llama, withVision, "l"), "unexpected (1): vision_tower.x.weight");
});

test("loadModel and inspectModelFolder refuse a folder whose config.json says 1 layer over 2 stored", () => {
  const dir = scratchDir("gv-weights-");
  try {
    const src = path.join(FIXTURES, "llama");
    const raw = JSON.parse(fs.readFileSync(path.join(src, "config.json"), "utf8"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...raw, num_hidden_layers: 1 }));
    writeModelWeights(dir, [...openModelWeights(src).tensors.values()]);
    assertInputError(() => loadModel(dir), dir, "num_hidden_layers = 1 but the weights have 2 layers");
    assertInputError(() => inspectModelFolder(dir), dir, "unexpected (9)");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("loading finds every non-finite value (checked by one sum, then element by element when it is not finite)", () => {
  const { cfg, tensors } = fixture("llama");
  const name = "model.layers.1.mlp.up_proj.weight";
  const withValues = (vals: [number, number][]) =>
    edited(tensors, (n, r) => {
      if (n === name) for (const [i, v] of vals) r.data.writeFloatLE(v, 4 * i);
      return r;
    });
  // +inf alone, and +inf with -inf (their sum is NaN, not inf)
  assertInputError(() => buildModel(cfg, withValues([[5, Infinity]]), "llama-dir"), name, "element 5");
  assertInputError(
    () =>
      buildModel(
        cfg,
        withValues([
          [3, Infinity],
          [9, -Infinity],
        ]),
        "llama-dir",
      ),
    name,
    "element 3",
  );
  // finite values whose sum overflows float32 load: the element-by-element check clears them
  const big = withValues([
    [0, 3e38],
    [1, 3e38],
    [2, 3e38],
  ]);
  assert.doesNotThrow(() => buildModel(cfg, big, "llama-dir"));
  assert.doesNotThrow(() => buildModel(cfg, big, "llama-dir", { dtype: "bfloat16" }));
  // a finite float32 value beyond float16's range becomes infinite when converted: refused by name
  assertInputError(
    () => buildModel(cfg, withValues([[4, 70000]]), "llama-dir", { dtype: "float16" }),
    name,
    "overflows float16",
  );
});
