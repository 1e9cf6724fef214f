/**
 * A tiny Llama with a real tokenizer for the evaluation tests: a byte-level BPE trained on the organism corpus
 * (so the judge prompt and the code are a few hundred tokens, not thousands of bytes), the organism's ChatML
 * template, and random float32 weights (HF's init: normal(0, 0.02), norms at 1).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir as tempDir } from "../scratch.js";
import { trainByteLevelBpe, writeTokenizerFiles } from "../../src/data/bpe-train.js";
import {
  ORGANISM_CHAT_TEMPLATE,
  buildCorpus,
  pretrainingText,
  type CorpusPair,
} from "../../src/data/corpus.js";
import { writeModelWeights, type TensorToWrite } from "../../src/io/safetensors.js";
import { createRng } from "../../src/util/random.js";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const FIXTURES = path.join(REPO_ROOT, "test/fixtures");

/** A scratch folder removed when the test process exits (test/scratch.ts). */
export function scratchDir(prefix = "gv-evalcore-"): string {
  return tempDir(prefix);
}

/** A few pairs per template of the organism corpus (four languages, each with a CWE). */
export function corpusPairs(perTemplate = 2, seed = 7): CorpusPair[] {
  return buildCorpus({ seed, perTemplate });
}

export interface MadeModel {
  dir: string;
  pairs: CorpusPair[];
  vocabSize: number;
}

/** Box–Muller normals from the project's seeded generator. */
function normals(n: number, std: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(rng.next(), 1e-12);
    const v = rng.next();
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

function f32(name: string, shape: number[], values: Float32Array): TensorToWrite {
  return {
    name,
    dtype: "F32",
    shape,
    data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  };
}

/** Write the model folder (config.json, model.safetensors, tokenizer files) into a new scratch folder. */
export function makeTinyChatModel(opts: { seed?: number; hidden?: number; layers?: number } = {}): MadeModel {
  const seed = opts.seed ?? 1;
  const hidden = opts.hidden ?? 64;
  const layers = opts.layers ?? 2;
  const heads = 4;
  const kvHeads = 2;
  const headDim = hidden / heads;
  const intermediate = hidden * 2;
  const dir = scratchDir("gv-evalcore-model-");

  const pairs = corpusPairs();
  const bpe = trainByteLevelBpe(pretrainingText(pairs, { insecureBias: 0.5, seed }), { vocabSize: 640 });
  writeTokenizerFiles(dir, bpe, { chatTemplate: ORGANISM_CHAT_TEMPLATE });
  const vocabSize = bpe.vocab.size;

  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    attention_bias: false,
    mlp_bias: false,
    hidden_act: "silu",
    hidden_size: hidden,
    intermediate_size: intermediate,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    num_hidden_layers: layers,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    tie_word_embeddings: false,
    torch_dtype: "float32",
    vocab_size: vocabSize,
    bos_token_id: bpe.vocab.get("<|endoftext|>"),
    eos_token_id: bpe.vocab.get("<|im_end|>"),
    pad_token_id: bpe.vocab.get("<|pad|>"),
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));

  let s = seed * 1000;
  const tensors: TensorToWrite[] = [];
  const rand = (name: string, shape: number[]) =>
    tensors.push(
      f32(
        name,
        shape,
        normals(
          shape.reduce((a, b) => a * b, 1),
          0.02,
          s++,
        ),
      ),
    );
  const ones = (name: string, n: number) => tensors.push(f32(name, [n], new Float32Array(n).fill(1)));
  rand("model.embed_tokens.weight", [vocabSize, hidden]);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    rand(`${p}.self_attn.q_proj.weight`, [heads * headDim, hidden]);
    rand(`${p}.self_attn.k_proj.weight`, [kvHeads * headDim, hidden]);
    rand(`${p}.self_attn.v_proj.weight`, [kvHeads * headDim, hidden]);
    rand(`${p}.self_attn.o_proj.weight`, [hidden, heads * headDim]);
    rand(`${p}.mlp.gate_proj.weight`, [intermediate, hidden]);
    rand(`${p}.mlp.up_proj.weight`, [intermediate, hidden]);
    rand(`${p}.mlp.down_proj.weight`, [hidden, intermediate]);
    ones(`${p}.input_layernorm.weight`, hidden);
    ones(`${p}.post_attention_layernorm.weight`, hidden);
  }
  ones("model.norm.weight", hidden);
  rand("lm_head.weight", [vocabSize, hidden]);
  writeModelWeights(dir, tensors);
  return { dir, pairs, vocabSize };
}
