/**
 * The typed model config: a Hugging Face config.json read into the one shape the model code uses.
 *
 * Defaults follow transformers' config classes (LlamaConfig, Qwen2Config, Qwen3Config, Gemma3TextConfig)
 * for the optional keys; the size keys that identify a checkpoint (vocab, hidden, intermediate, layers,
 * heads) are required, since a silently defaulted size would load the wrong model.
 */
import * as fs from "node:fs";
import { refusePipesIn } from "../util/input-file.js";
import { namedTemplateFiles } from "./chat-template.js";
import * as path from "node:path";
import { z } from "zod";
import { InputError, preview } from "../errors.js";
import { ownValue, parseJson, refuseForbiddenKeys, isPlainObject } from "../util/keys.js";

export type Family = "llama" | "qwen2" | "qwen3" | "gemma3";
export type RopeScaling =
  | { type: "default" }
  | { type: "linear"; factor: number }
  | {
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
  | {
      // YaRN as transformers 5 computes it (_compute_yarn_parameters), which vLLM and llama.cpp also do: `factor`
      // as given, the correction range from original_max_position_embeddings (see resolveYarn)
      type: "yarn";
      factor: number;
      originalMaxPositionEmbeddings: number;
      betaFast: number;
      betaSlow: number;
      truncate: boolean;
      /** transformers' attention_scaling: cos and sin are multiplied by it */
      attentionFactor: number;
    }
  // dynamic NTK: transformers rescales only once a sequence passes max_position_embeddings; below that (the only
  // lengths the decoder accepts for it) the frequencies are the default ones
  | { type: "dynamic"; factor: number };
export type LayerType = "full_attention" | "sliding_attention";
export interface ModelConfig {
  family: Family; // from model_type: llama | qwen2 | qwen3 | gemma3_text (also "gemma3", whose text_config holds the text model)
  modelType: string; // as in the file
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number; // config.head_dim ?? hidden/heads (gemma3: ?? 256, Gemma3TextConfig's default)
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  qkNorm: boolean;
  normOnePlus: boolean;
  sandwichNorms: boolean;
  hiddenAct: "silu" | "gelu_pytorch_tanh";
  embedScale: number;
  attnScale: number;
  layerTypes: LayerType[];
  slidingWindow: number | null;
  ropeLocalTheta: number | null;
  finalLogitSoftcapping: number | null;
  attnLogitSoftcapping: number | null;
  torchDtype: "float32" | "bfloat16" | "float16";
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  raw: Record<string, unknown>; // the parsed JSON as read, to be written back unchanged except its dtype (withDtype)
}

/**
 * `raw` (a config.json) saying `dtype` for its weights: both names transformers reads, `dtype` (>= 4.56; it wins
 * when both are present) and `torch_dtype` (older releases read only this), set to the same value, and any
 * sub-config (Gemma3's text_config, vision_config) that names a dtype of its own rewritten too, so that no
 * reader finds the old dtype. Setting only `torch_dtype` left a transformers-5 file's `dtype` saying the old one.
 */
export function withDtype(raw: Record<string, unknown>, dtype: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw, torch_dtype: dtype, dtype };
  for (const [k, v] of Object.entries(raw)) {
    if (!k.endsWith("_config") || !isPlainObject(v)) continue;
    if (!("torch_dtype" in v) && !("dtype" in v)) continue;
    const sub: Record<string, unknown> = { ...v };
    if ("torch_dtype" in sub) sub.torch_dtype = dtype;
    if ("dtype" in sub) sub.dtype = dtype;
    out[k] = sub;
  }
  return out;
}

const FAMILY_OF_MODEL_TYPE: Record<string, Family> = {
  llama: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  gemma3_text: "gemma3",
  gemma3: "gemma3",
};

/** Defaults of the transformers config classes for the optional keys. */
const FAMILY_DEFAULTS: Record<
  Family,
  { rmsNormEps: number; ropeTheta: number; maxPositionEmbeddings: number; tieWordEmbeddings: boolean }
> = {
  llama: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 2048, tieWordEmbeddings: false },
  qwen2: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 32768, tieWordEmbeddings: false },
  qwen3: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 32768, tieWordEmbeddings: false },
  gemma3: { rmsNormEps: 1e-6, ropeTheta: 1_000_000, maxPositionEmbeddings: 131072, tieWordEmbeddings: true },
};

/** Gemma3TextConfig defaults for the size keys that released Gemma3 configs leave out. */
const GEMMA3_SIZE_DEFAULTS = {
  vocab_size: 262208,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
};

const posInt = z.number().int().positive();
/** Far above any released decoder (Llama 3.1 405B has 126 layers), far below what would strain memory. */
const MAX_LAYERS = 10_000;
const nonNegInt = z.number().int().nonnegative();
const posNum = z.number().positive();
// a negative id is "none": Llama configs converted with transformers 4.27/4.28 development releases (and their
// fine-tunes) carry pad_token_id -1, which transformers loads (tokenIds below drops it, as io/tokenizer.ts does)
const anyTokenId = z.number().int();
const tokenId = anyTokenId.nullable().optional();

const ropeScalingSchema = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(), // older spelling of rope_type
  factor: posNum.nullable().optional(), // null: yarn's max_position_embeddings / original_max_position_embeddings
  low_freq_factor: posNum.optional(),
  high_freq_factor: posNum.optional(),
  original_max_position_embeddings: posInt.optional(),
  rope_theta: posNum.optional(), // transformers v5 `rope_parameters` carry the theta too
  // yarn's optional keys; 0 or null beta means the default, as transformers' `get("beta_fast") or 32`
  attention_factor: posNum.nullable().optional(),
  beta_fast: z.number().nonnegative().nullable().optional(),
  beta_slow: z.number().nonnegative().nullable().optional(),
  mscale: z.number().nullable().optional(),
  mscale_all_dim: z.number().nullable().optional(),
  truncate: z.boolean().nullable().optional(),
});
type RawRopeScaling = z.infer<typeof ropeScalingSchema>;

/** The keys read from a (text) config; anything else is kept in `raw` and ignored. */
const textConfigSchema = z.looseObject({
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  // per-layer lists are built from it before the weights are seen: bounded (the largest released models have ~128)
  num_hidden_layers: posInt.max(MAX_LAYERS),
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullable().optional(),
  head_dim: posInt.nullable().optional(),
  rms_norm_eps: posNum.optional(),
  rope_theta: posNum.optional(),
  rope_scaling: ropeScalingSchema.nullable().optional(),
  rope_parameters: z.record(z.string(), z.unknown()).nullable().optional(),
  max_position_embeddings: posInt.optional(),
  // Phi-3-style top-level key; transformers 5 prefers it to the rope parameters' own for yarn (standardize_rope_params)
  original_max_position_embeddings: posInt.nullable().optional(),
  tie_word_embeddings: z.boolean().optional(),
  attention_bias: z.boolean().optional(),
  mlp_bias: z.boolean().optional(),
  hidden_act: z.string().optional(),
  hidden_activation: z.string().nullable().optional(),
  query_pre_attn_scalar: posNum.optional(),
  layer_types: z.array(z.string()).nullable().optional(),
  sliding_window_pattern: posInt.optional(),
  sliding_window: posInt.nullable().optional(),
  use_sliding_window: z.boolean().optional(),
  max_window_layers: nonNegInt.optional(),
  // EmbeddingGemma's gemma3_text: attention without the causal mask, which this decoder does not compute
  use_bidirectional_attention: z.boolean().nullable().optional(),
  rope_local_base_freq: posNum.optional(),
  final_logit_softcapping: posNum.nullable().optional(),
  attn_logit_softcapping: posNum.nullable().optional(),
  torch_dtype: z.string().nullable().optional(),
  dtype: z.string().nullable().optional(),
  bos_token_id: tokenId,
  eos_token_id: z
    .union([anyTokenId, z.array(anyTokenId)])
    .nullable()
    .optional(),
  pad_token_id: tokenId,
});
type RawTextConfig = z.infer<typeof textConfigSchema>;

function fieldName(prefix: string, p: readonly PropertyKey[]): string {
  return [prefix, ...p.map(String)].filter((s) => s.length > 0).join(".");
}

function valueAt(obj: unknown, p: readonly PropertyKey[]): unknown {
  let v = obj;
  for (const k of p) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** zod's issues as one message that names the file and each field, in the user's terms. */
function zodToInputError(source: string, prefix: string, input: unknown, error: z.ZodError): InputError {
  const lines = error.issues.slice(0, 5).map((issue) => {
    const field = fieldName(prefix, issue.path);
    const value = valueAt(input, issue.path);
    if (value === undefined && issue.code === "invalid_type") return `missing required field "${field}"`;
    return `field "${field}" = ${JSON.stringify(value)?.slice(0, 80)}: ${issue.message}`;
  });
  return new InputError(`${source}: invalid model config: ${lines.join("; ")}`);
}

function parseTorchDtype(
  source: string,
  field: string,
  v: string | null | undefined,
): ModelConfig["torchDtype"] {
  if (v === null || v === undefined) return "float32";
  // "float"/"half" are torch aliases that older exports write.
  const aliases: Record<string, ModelConfig["torchDtype"]> = {
    float32: "float32",
    float: "float32",
    bfloat16: "bfloat16",
    float16: "float16",
    half: "float16",
  };
  const dt = ownValue(aliases, v.replace(/^torch\./, ""));
  if (!dt)
    throw new InputError(
      `${source}: field "${field}" = "${v}" is not supported (use float32, bfloat16 or float16)`,
    );
  return dt;
}

/** What a scaled RoPE reads from the rest of the config: the context lengths. */
interface RopeContext {
  maxPositionEmbeddings: number;
  /** the config's own top-level original_max_position_embeddings, if any */
  originalMaxPositionEmbeddings: number | null;
  /**
   * RoPE parameters per layer type (Gemma3, whichever spelling its file uses: transformers 5 moves a v4 rope_scaling
   * into rope_parameters.full_attention). transformers 5 then reads neither the top-level
   * original_max_position_embeddings (standardize_rope_params' per-layer branch only defaults it to
   * max_position_embeddings) nor a per-layer `truncate` (_compute_yarn_parameters reads it from the outer dict,
   * which holds only the layer types: always true).
   */
  perLayerType: boolean;
}

function parseRopeScaling(
  source: string,
  field: string,
  r: RawRopeScaling | null | undefined,
  ctx: RopeContext,
): RopeScaling {
  if (r === null || r === undefined) return { type: "default" };
  const kind = r.rope_type ?? r.type ?? "default";
  const need = (key: keyof RawRopeScaling): number => {
    const v = r[key];
    if (typeof v !== "number")
      throw new InputError(`${source}: "${field}" of type ${kind} needs "${String(key)}"`);
    return v;
  };
  switch (kind) {
    case "default":
      return { type: "default" };
    case "linear":
      return { type: "linear", factor: need("factor") };
    case "dynamic":
      return { type: "dynamic", factor: need("factor") };
    case "llama3":
      return {
        type: "llama3",
        factor: need("factor"),
        lowFreqFactor: need("low_freq_factor"),
        highFreqFactor: need("high_freq_factor"),
        originalMaxPositionEmbeddings: need("original_max_position_embeddings"),
      };
    case "yarn":
      return resolveYarn(source, field, r, ctx);
    default:
      throw new InputError(
        `${source}: "${field}" type "${kind}" is not supported (supported: default, linear, dynamic, llama3, yarn)`,
      );
  }
}

/** 0.1·m·ln(s) + 1, or 1 for s <= 1: YaRN's attention temperature (transformers' get_mscale). */
export function yarnMscale(scale: number, m = 1): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/**
 * YaRN's parameters as transformers 5 resolves them (RotaryEmbeddingConfigMixin.standardize_rope_params, then
 * _compute_yarn_parameters): original_max_position_embeddings from the config's top level, else the rope
 * parameters, else max_position_embeddings (Gemma3, whose parameters are per layer type: the rope parameters', else
 * max_position_embeddings; its `truncate` is always true, see RopeContext); `factor` as given (a null factor is the ratio of the two lengths);
 * attention_factor given, else from mscale / mscale_all_dim, else 0.1·ln(factor) + 1. transformers 4.4x–4.5x
 * differed: where the rope parameters held original_max_position_embeddings they replaced `factor` by
 * max_position_embeddings / original_max_position_embeddings (1 for the snippet Qwen's model cards give, which
 * made YaRN a no-op there); vLLM and llama.cpp use `factor` as transformers 5 does.
 */
function resolveYarn(source: string, field: string, r: RawRopeScaling, ctx: RopeContext): RopeScaling {
  if (!("factor" in r))
    throw new InputError(
      `${source}: "${field}" of type yarn needs "factor" (null: the ratio of the context lengths)`,
    );
  const orig =
    ctx.originalMaxPositionEmbeddings ?? r.original_max_position_embeddings ?? ctx.maxPositionEmbeddings;
  const factor = r.factor ?? ctx.maxPositionEmbeddings / orig;
  const attentionFactor =
    r.attention_factor ??
    (r.mscale && r.mscale_all_dim
      ? yarnMscale(factor, r.mscale) / yarnMscale(factor, r.mscale_all_dim)
      : yarnMscale(factor));
  return {
    type: "yarn",
    factor,
    originalMaxPositionEmbeddings: orig,
    betaFast: r.beta_fast || 32,
    betaSlow: r.beta_slow || 1,
    // transformers' `.get("truncate", True)`, then `if truncate:` (null: no truncation)
    truncate: ctx.perLayerType || r.truncate === undefined ? true : r.truncate === true,
    attentionFactor,
  };
}

/**
 * transformers v5 moved rope_theta/rope_scaling into `rope_parameters`, per layer type for Gemma3
 * ({full_attention: {...}, sliding_attention: {...}}). Returns the global and the local parameters.
 */
function splitRopeParameters(
  source: string,
  prefix: string,
  rp: Record<string, unknown>,
): { global: RawRopeScaling; local: RawRopeScaling | null } {
  const parse = (value: unknown, field: string): RawRopeScaling => {
    const res = ropeScalingSchema.safeParse(value);
    if (!res.success) throw zodToInputError(source, field, value, res.error);
    return res.data;
  };
  if (isPlainObject(rp.full_attention) || isPlainObject(rp.sliding_attention)) {
    return {
      global: parse(rp.full_attention ?? {}, fieldName(prefix, ["rope_parameters", "full_attention"])),
      local:
        rp.sliding_attention === undefined
          ? null
          : parse(rp.sliding_attention, fieldName(prefix, ["rope_parameters", "sliding_attention"])),
    };
  }
  return { global: parse(rp, fieldName(prefix, ["rope_parameters"])), local: null };
}

function parseHiddenAct(
  source: string,
  family: Family,
  field: string,
  act: string,
): ModelConfig["hiddenAct"] {
  // ACT2FN: "swish" is nn.SiLU; "gelu_new" is the same tanh approximation as "gelu_pytorch_tanh".
  if (act === "silu" || act === "swish") return "silu";
  if (act === "gelu_pytorch_tanh" || act === "gelu_new") return "gelu_pytorch_tanh";
  throw new InputError(
    `${source}: field "${field}" = "${act}" is not supported for ${family} (supported: silu, gelu_pytorch_tanh)`,
  );
}

/** The model family named by `model_type` (own keys only: "__proto__" or "toString" name no family). */
function familyOf(source: string, raw: Record<string, unknown>): { family: Family; modelType: string } {
  const modelType = raw.model_type;
  const supported = Object.keys(FAMILY_OF_MODEL_TYPE).join(", ");
  if (typeof modelType !== "string")
    throw new InputError(`${source}: missing required field "model_type" (one of ${supported})`);
  const family = ownValue(FAMILY_OF_MODEL_TYPE, modelType);
  if (!family)
    throw new InputError(
      `${source}: model_type ${preview(modelType)} is not supported (supported: ${supported})`,
    );
  return { family, modelType };
}

/**
 * The text model's part of the config: multimodal Gemma3 keeps it in text_config (token ids and dtype may sit
 * at the top), and released Gemma3 configs leave out size keys that Gemma3TextConfig defaults.
 */
function textPart(
  source: string,
  raw: Record<string, unknown>,
  modelType: string,
  family: Family,
): { textJson: Record<string, unknown>; prefix: string } {
  let textJson: Record<string, unknown> = raw;
  let prefix = "";
  if (modelType === "gemma3") {
    if (!isPlainObject(raw.text_config))
      throw new InputError(`${source}: model_type "gemma3" needs a "text_config" object`);
    textJson = { ...raw.text_config };
    for (const k of TOP_LEVEL_KEYS_OF_GEMMA3)
      if (textJson[k] === undefined && raw[k] !== undefined) textJson[k] = raw[k];
    prefix = "text_config";
  }
  if (family === "gemma3") {
    for (const [k, v] of Object.entries(GEMMA3_SIZE_DEFAULTS))
      if (textJson[k] === undefined) textJson = { ...textJson, [k]: v };
  }
  return { textJson, prefix };
}

const TOP_LEVEL_KEYS_OF_GEMMA3 = [
  "torch_dtype",
  "dtype",
  "bos_token_id",
  "eos_token_id",
  "pad_token_id",
  "tie_word_embeddings",
] as const;

/** Heads: kv heads divide the query heads; head_dim given, Gemma3's 256, or hidden / heads. */
function resolveHeads(
  source: string,
  c: RawTextConfig,
  isGemma: boolean,
  f: (name: string) => string,
): { numHeads: number; numKvHeads: number; headDim: number } {
  const numHeads = c.num_attention_heads;
  const numKvHeads = c.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw new InputError(
      `${source}: field "${f("num_attention_heads")}" (${numHeads}) is not a multiple of "${f("num_key_value_heads")}" (${numKvHeads})`,
    );
  }
  let headDim: number;
  if (c.head_dim !== null && c.head_dim !== undefined) headDim = c.head_dim;
  else if (isGemma) headDim = 256;
  else {
    if (c.hidden_size % numHeads !== 0) {
      throw new InputError(
        `${source}: no "${f("head_dim")}" and hidden_size ${c.hidden_size} is not divisible by ${numHeads} heads`,
      );
    }
    headDim = c.hidden_size / numHeads;
  }
  if (headDim % 2 !== 0)
    throw new InputError(`${source}: field "${f("head_dim")}" = ${headDim} must be even for RoPE`);
  return { numHeads, numKvHeads, headDim };
}

/** RoPE: rope_scaling/rope_theta (transformers v4) or rope_parameters (v5); Gemma3's local theta. */
function resolveRope(
  source: string,
  c: RawTextConfig,
  family: Family,
  prefix: string,
  f: (name: string) => string,
): { ropeTheta: number; ropeScaling: RopeScaling; ropeLocalTheta: number | null } {
  const isGemma = family === "gemma3";
  const ctx: RopeContext = {
    maxPositionEmbeddings: c.max_position_embeddings ?? FAMILY_DEFAULTS[family].maxPositionEmbeddings,
    originalMaxPositionEmbeddings: isGemma ? null : (c.original_max_position_embeddings ?? null),
    perLayerType: isGemma,
  };
  let ropeTheta = c.rope_theta ?? FAMILY_DEFAULTS[family].ropeTheta;
  let ropeScaling = parseRopeScaling(source, f("rope_scaling"), c.rope_scaling, ctx);
  let ropeLocalTheta: number | null = isGemma ? (c.rope_local_base_freq ?? 10000) : null;
  if (c.rope_parameters && c.rope_scaling == null) {
    const { global, local } = splitRopeParameters(source, prefix, c.rope_parameters);
    ropeTheta = global.rope_theta ?? ropeTheta;
    ropeScaling = parseRopeScaling(source, f("rope_parameters"), global, ctx);
    if (local) {
      if (
        isGemma &&
        parseRopeScaling(source, f("rope_parameters.sliding_attention"), local, ctx).type !== "default"
      ) {
        throw new InputError(
          `${source}: scaled RoPE on sliding layers ("${f("rope_parameters.sliding_attention")}") is not supported`,
        );
      }
      if (isGemma) ropeLocalTheta = local.rope_theta ?? ropeLocalTheta;
    }
  }
  return { ropeTheta, ropeScaling, ropeLocalTheta };
}

/** Full or sliding attention per layer (only Gemma3 slides here; Qwen's optional variant is refused). */
function resolveLayerTypes(
  source: string,
  c: RawTextConfig,
  family: Family,
  f: (name: string) => string,
): { layerTypes: LayerType[]; slidingWindow: number | null } {
  const isGemma = family === "gemma3";
  // transformers' Qwen2/Qwen3 configs: layer i slides when use_sliding_window, sliding_window is set and
  // i >= max_window_layers (default 28); with no such layer (Qwen2.5-7B's 28 layers, max_window_layers 28) every
  // layer is full attention, as use_sliding_window false
  const qwenSliding =
    (family === "qwen2" || family === "qwen3") &&
    c.use_sliding_window === true &&
    c.sliding_window != null &&
    (c.max_window_layers ?? 28) < c.num_hidden_layers;
  if (qwenSliding) {
    throw new InputError(
      `${source}: field "${f("use_sliding_window")}" = true with layers from ${f("max_window_layers")} = ` +
        `${c.max_window_layers ?? 28} on sliding is not supported (Qwen sliding-window attention)`,
    );
  }
  if (isGemma && c.use_bidirectional_attention === true)
    throw new InputError(
      `${source}: field "${f("use_bidirectional_attention")}" = true (an embedding model's attention without the ` +
        `causal mask) is not supported: GoodVibe hardens decoders that generate code`,
    );
  const numLayers = c.num_hidden_layers;
  let layerTypes: LayerType[];
  if (isGemma && c.layer_types) {
    if (c.layer_types.length !== numLayers) {
      throw new InputError(
        `${source}: field "${f("layer_types")}" has ${c.layer_types.length} entries for ${numLayers} layers`,
      );
    }
    layerTypes = c.layer_types.map((t, i) => {
      if (t !== "full_attention" && t !== "sliding_attention") {
        throw new InputError(
          `${source}: field "${f("layer_types")}[${i}]" = ${preview(t)} is not full_attention or sliding_attention`,
        );
      }
      return t;
    });
  } else if (isGemma) {
    const pattern = c.sliding_window_pattern ?? 6;
    layerTypes = Array.from({ length: numLayers }, (_, i) =>
      (i + 1) % pattern === 0 ? "full_attention" : "sliding_attention",
    );
  } else {
    layerTypes = Array.from({ length: numLayers }, () => "full_attention" as const);
  }
  let slidingWindow: number | null = null;
  if (isGemma && layerTypes.includes("sliding_attention")) {
    if (c.sliding_window === null)
      throw new InputError(
        `${source}: field "${f("sliding_window")}" is null but some layers are sliding_attention`,
      );
    slidingWindow = c.sliding_window ?? 4096;
  }
  return { layerTypes, slidingWindow };
}

/** What each family's architecture fixes (transformers' modeling files), given its config's own fields. */
type FamilyTraits = Pick<
  ModelConfig,
  | "qkvBias"
  | "oBias"
  | "mlpBias"
  | "qkNorm"
  | "normOnePlus"
  | "sandwichNorms"
  | "embedScale"
  | "attnScale"
  | "finalLogitSoftcapping"
  | "attnLogitSoftcapping"
>;

/** The plain pre-norm decoder (Llama): attention_bias on q/k/v/o, scale 1/√head_dim, no norms or caps added. */
function plainDecoder(c: RawTextConfig, headDim: number): FamilyTraits {
  const attentionBias = c.attention_bias ?? false;
  return {
    qkvBias: attentionBias,
    oBias: attentionBias,
    mlpBias: false,
    qkNorm: false,
    normOnePlus: false,
    sandwichNorms: false,
    embedScale: 1,
    attnScale: headDim ** -0.5,
    finalLogitSoftcapping: null,
    attnLogitSoftcapping: null,
  };
}

const FAMILY_TRAITS: Record<Family, (c: RawTextConfig, headDim: number) => FamilyTraits> = {
  llama: (c, d) => ({ ...plainDecoder(c, d), mlpBias: c.mlp_bias ?? false }),
  // Qwen2: biases on q/k/v always, never on o
  qwen2: (c, d) => ({ ...plainDecoder(c, d), qkvBias: true, oBias: false }),
  // Qwen3: RMSNorm on each head's q and k
  qwen3: (c, d) => ({ ...plainDecoder(c, d), qkNorm: true }),
  // Gemma3: (1 + w) norms around both sublayers, √hidden embedding scale, query_pre_attn_scalar, soft caps
  gemma3: (c, d) => ({
    ...plainDecoder(c, d),
    qkNorm: true,
    normOnePlus: true,
    sandwichNorms: true,
    embedScale: Math.sqrt(c.hidden_size),
    attnScale: (c.query_pre_attn_scalar ?? 256) ** -0.5,
    finalLogitSoftcapping: c.final_logit_softcapping ?? null,
    attnLogitSoftcapping: c.attn_logit_softcapping ?? null,
  }),
};

/** The MLP activation: Gemma3's hidden_activation (or hidden_act), the others' hidden_act. */
function resolveActivation(
  source: string,
  c: RawTextConfig,
  family: Family,
  f: (name: string) => string,
): ModelConfig["hiddenAct"] {
  const isGemma = family === "gemma3";
  const field = isGemma && c.hidden_activation != null ? "hidden_activation" : "hidden_act";
  const value = isGemma
    ? (c.hidden_activation ?? c.hidden_act ?? "gelu_pytorch_tanh")
    : (c.hidden_act ?? "silu");
  return parseHiddenAct(source, family, f(field), value);
}

/** Special token ids as the model config gives them (the tokenizer may add its own). */
function tokenIds(c: RawTextConfig): Pick<ModelConfig, "bosTokenId" | "eosTokenIds" | "padTokenId"> {
  const id = (v: number | null | undefined): number | null =>
    v === null || v === undefined || v < 0 ? null : v;
  const eos = c.eos_token_id;
  return {
    bosTokenId: id(c.bos_token_id),
    eosTokenIds: (eos === null || eos === undefined ? [] : Array.isArray(eos) ? eos : [eos]).filter(
      (e) => e >= 0,
    ),
    padTokenId: id(c.pad_token_id),
  };
}

/**
 * The file's own checks: a JSON object without prototype-polluting keys, a supported model_type, and the text
 * model's keys valid (each bad field named, under text_config for multimodal Gemma3).
 */
function readTextConfig(
  json: unknown,
  source: string,
): { raw: Record<string, unknown>; family: Family; modelType: string; c: RawTextConfig; prefix: string } {
  if (!isPlainObject(json)) throw new InputError(`${source}: a model config must be a JSON object`);
  refuseForbiddenKeys(json, source);
  const { family, modelType } = familyOf(source, json);
  const { textJson, prefix } = textPart(source, json, modelType, family);
  const parsed = textConfigSchema.safeParse(textJson);
  if (!parsed.success) throw zodToInputError(source, prefix, textJson, parsed.error);
  return { raw: json, family, modelType, c: parsed.data, prefix };
}

/**
 * A quantized checkpoint (config.json's quantization_config: FP8, GPTQ, AWQ, bitsandbytes, compressed-tensors) is
 * refused by name: its weights are packed integers or 8-bit floats with scales, which neither the model nor
 * GoodVibe's row updates read, and they would otherwise be refused later as an unknown dtype or missing tensors.
 */
function requireUnquantized(source: string, raw: Record<string, unknown>): void {
  const q = raw.quantization_config;
  if (q === undefined || q === null) return;
  const method = isPlainObject(q) && typeof q.quant_method === "string" ? q.quant_method : null;
  throw new InputError(
    `${source}: a quantized checkpoint (quantization_config${method ? `, quant_method "${method}"` : ""}) is not ` +
      `supported: GoodVibe reads, trains and writes full-precision weights. Use the model's unquantized release ` +
      `(float32, bfloat16 or float16 safetensors)`,
  );
}

/**
 * Validate a parsed config.json and resolve it to a ModelConfig; `source` (the file) names errors. Each part
 * has its function: the file's checks (readTextConfig), heads, RoPE, attention per layer, what the family's
 * architecture fixes (FAMILY_TRAITS), the activation, the dtype.
 */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  const { raw, family, modelType, c, prefix } = readTextConfig(json, source);
  requireUnquantized(source, raw);
  const f = (name: string): string => fieldName(prefix, [name]);
  const defaults = FAMILY_DEFAULTS[family];
  // in this order, so that a file with several faults is told about the same one first as before
  const heads = resolveHeads(source, c, family === "gemma3", f);
  const rope = resolveRope(source, c, family, prefix, f);
  const layers = resolveLayerTypes(source, c, family, f);
  const hiddenAct = resolveActivation(source, c, family, f);
  // transformers >= 4.56 names the field `dtype` and, given both, keeps `dtype` (PreTrainedConfig.__post_init__:
  // "If both are provided, keep `dtype`"); older files have only `torch_dtype`
  const torchDtype = parseTorchDtype(
    source,
    f(c.dtype != null ? "dtype" : "torch_dtype"),
    c.dtype ?? c.torch_dtype,
  );
  return {
    family,
    modelType,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    ...heads,
    rmsNormEps: c.rms_norm_eps ?? defaults.rmsNormEps,
    maxPositionEmbeddings: c.max_position_embeddings ?? defaults.maxPositionEmbeddings,
    tieWordEmbeddings: c.tie_word_embeddings ?? defaults.tieWordEmbeddings,
    ...rope,
    ...layers,
    ...FAMILY_TRAITS[family](c, heads.headDim),
    hiddenAct,
    torchDtype,
    ...tokenIds(c),
    raw,
  };
}

/**
 * `dir` is a folder: else an error that says the folder itself is missing (or is a file), before a reader names a
 * file inside it ("no config.json", "no tokenizer.json") and sends the user to copy files into a folder that is
 * not there. Every reader of a model folder starts here (config, tokenizer, the folder's inspection).
 */
export function checkModelDir(dir: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new InputError(`${dir}: model folder does not exist`);
  }
  if (!stat.isDirectory())
    throw new InputError(`${dir}: not a folder (give the model folder, not a file in it)`);
  refusePipesIn(dir, namedTemplateFiles(dir));
  // a PEFT adapter is not a model (transformers with peft loads its base and applies it): say so, and how to merge it
  if (fs.existsSync(path.join(dir, "adapter_config.json")) && !fs.existsSync(path.join(dir, "config.json")))
    throw new InputError(
      `${dir}: a PEFT adapter folder (adapter_config.json), not a model folder: merge it into its base model ` +
        `first (goodvibe fold -m BASE --adapter ${dir} -o MERGED) and give the merged folder`,
    );
}

/** Read and validate `<dir>/config.json`. */
export function loadModelConfig(dir: string): ModelConfig {
  checkModelDir(dir);
  const file = path.join(dir, "config.json");
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new InputError(`${file}: cannot read model config (${(e as Error).message})`, { cause: e });
  }
  return parseModelConfig(parseJson(text, file), file);
}
