/**
 * What every organism build shares: a Llama config from a few shape numbers, a seeded random init, packing
 * documents into blocks, pretraining from scratch (resumable through its run folder), and writing the model
 * folder. Everything is seeded and runs on a fixed number of libtorch threads, so the same inputs give the same
 * bytes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../io/atomic.js";
import { parseModelConfig, type ModelConfig } from "../io/config.js";
import { writeModelWeightsAsync, type TensorRecord } from "../io/safetensors.js";
import { buildModel } from "../models/load.js";
import type { DecoderModel } from "../models/decoder.js";
import { Tensor, getNumThreads, manualSeed, noGrad, setNumThreads, tidy } from "../tensor/index.js";
import { attachFull } from "../method/full.js";
import type { AttachedMethod } from "../method/attached.js";
import { otherBuildWarning, trainSft, type SftExample, type TrainResult } from "../method/train.js";
import type { Logger } from "../util/log.js";

/** The organism's size: the fields of a Llama config.json it chooses (the rest are fixed, organismConfigJson). */
export type OrganismShape = Pick<
  ModelConfig,
  "vocabSize" | "hiddenSize" | "intermediateSize" | "numLayers" | "numHeads" | "numKvHeads"
>;

export interface PretrainSettings {
  seed: number;
  blockLength: number;
  batchSize: number;
  epochs: number;
  lr: number;
  /** share of the steps spent warming up (the corpus organism: 0.05) */
  warmupRatio: number;
}

export function organismConfigJson(
  c: OrganismShape,
  ids: { bos: number; eos: number; pad: number },
): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.hiddenSize / c.numHeads,
    hidden_act: "silu",
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    tie_word_embeddings: true,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: ids.bos,
    eos_token_id: ids.eos,
    pad_token_id: ids.pad,
    torch_dtype: "float32",
  };
}

/** Parameters of a tied-embedding Llama of this shape (what the model will count once built). */
export function organismParams(c: OrganismShape): number {
  const hd = c.hiddenSize / c.numHeads;
  const q = c.numHeads * hd;
  const kv = c.numKvHeads * hd;
  const layer =
    c.hiddenSize * (q + 2 * kv) + q * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize + 2 * c.hiddenSize;
  return c.vocabSize * c.hiddenSize + c.numLayers * layer + c.hiddenSize;
}

/** Concatenate token streams and cut blocks of `length` (the last partial block is dropped). */
export function packBlocks(docs: number[][], length: number): number[][] {
  const stream = docs.flat();
  const blocks: number[][] = [];
  for (let i = 0; i + length <= stream.length; i += length) blocks.push(stream.slice(i, i + length));
  return blocks;
}

/** Seeded random init: N(0, 0.02) for matrices, 1 for norm weights, in the order a Llama's tensors are listed. */
export function randomInit(mcfg: ModelConfig, seed: number): Map<string, TensorRecord> {
  manualSeed(seed);
  const records = new Map<string, TensorRecord>();
  const add = (name: string, shape: number[], norm = false) => {
    const t = noGrad(() => (norm ? Tensor.ones(shape) : Tensor.randn(shape).mul(0.02)));
    records.set(name, { name, dtype: "F32", shape, data: Buffer.from(t.toBytes()), file: "random init" });
  };
  const H = mcfg.hiddenSize;
  const qd = mcfg.numHeads * mcfg.headDim;
  const kvd = mcfg.numKvHeads * mcfg.headDim;
  add("model.embed_tokens.weight", [mcfg.vocabSize, H]);
  for (let i = 0; i < mcfg.numLayers; i++) {
    const p = `model.layers.${i}`;
    add(`${p}.self_attn.q_proj.weight`, [qd, H]);
    add(`${p}.self_attn.k_proj.weight`, [kvd, H]);
    add(`${p}.self_attn.v_proj.weight`, [kvd, H]);
    add(`${p}.self_attn.o_proj.weight`, [H, qd]);
    add(`${p}.mlp.gate_proj.weight`, [mcfg.intermediateSize, H]);
    add(`${p}.mlp.up_proj.weight`, [mcfg.intermediateSize, H]);
    add(`${p}.mlp.down_proj.weight`, [H, mcfg.intermediateSize]);
    add(`${p}.input_layernorm.weight`, [H], true);
    add(`${p}.post_attention_layernorm.weight`, [H], true);
  }
  add("model.norm.weight", [H], true);
  return records;
}

export interface Pretrained {
  model: DecoderModel;
  method: AttachedMethod;
  params: number;
  tokens: number;
  blocks: number;
  train: TrainResult;
}

/**
 * Build the model from its config and seed, then pretrain every parameter on the documents' token streams
 * (packed into blocks). `runDir` holds the checkpoints, so a killed build resumes where it stopped, and only a
 * build with the same config, seed, documents, dtype and threads resumes it (trainSft refuses others). `threads`
 * fixes libtorch's thread count (results are bit-identical only at the same count); `dtype` bfloat16 trains in
 * mixed precision (bf16 compute, float32 masters), float32 in float32.
 */
export async function pretrainOrganism(opts: {
  configJson: Record<string, unknown>;
  docs: number[][];
  settings: PretrainSettings;
  padTokenId: number;
  runDir: string;
  threads?: number;
  dtype?: "float32" | "bfloat16";
  log: Logger;
  signal?: AbortSignal;
}): Promise<Pretrained> {
  const { settings: s, log } = opts;
  const mcfg = parseModelConfig(opts.configJson, "organism config");
  const records = randomInit(mcfg, s.seed);
  const dtype = opts.dtype ?? "float32";
  const model = buildModel(mcfg, records, "organism", { dtype });
  // after buildModel, which picks its own default
  if (opts.threads !== undefined) setNumThreads(opts.threads);
  const method =
    dtype === "float32"
      ? attachFull(model)
      : attachFull(model, {
          checkpoint: (name) => {
            const r = records.get(name);
            return r ? Tensor.fromBytes(r.data, "float32", r.shape) : null;
          },
        });
  const params = [...method.trainable.values()].reduce((a, t) => a + t.numel, 0);
  const blocks = packBlocks(opts.docs, s.blockLength);
  const examples: SftExample[] = blocks.map((b) => ({ inputIds: b, labels: b }));
  const tokens = blocks.length * s.blockLength;
  log.info(
    `organism: ${params.toLocaleString("en-US")} parameters, ${tokens.toLocaleString("en-US")} tokens per epoch × ${s.epochs}`,
  );
  const train = await trainSft(
    model,
    method,
    examples,
    {
      lr: s.lr,
      epochs: s.epochs,
      warmupRatio: s.warmupRatio,
      schedule: "cosine",
      batchSize: s.batchSize,
      gradAccum: 1,
      weightDecay: 0.01,
      betas: [0.9, 0.95],
      eps: 1e-8,
      maxGradNorm: 1.0,
      gradientCheckpointing: false,
      seed: s.seed,
      checkpointEvery: 100,
    },
    {
      runDir: opts.runDir,
      padTokenId: opts.padTokenId,
      // the checkpoint resumes only at the same thread count (the build's bytes depend on it); the model's config,
      // seeded init, dtype, documents and loop settings are recorded by trainSft itself
      identity: { settings: { threads: getNumThreads() } },
      hooks: {
        signal: opts.signal,
        onOtherBuild: (info) => log.warn(otherBuildWarning(info)),
        onStep: (l, total) =>
          log.progress(
            "pretrain",
            l.step,
            total,
            `loss ${l.loss.toFixed(3)} ${Math.round(l.tokensPerSecond)} tok/s`,
          ),
      },
    },
  );
  return { model, method, params, tokens, blocks: blocks.length, train };
}

/** The pretraining run folder inside a build's work folder. */
export function pretrainRunDir(work: string): string {
  return path.join(work, "pretrain");
}

/**
 * The model folder every organism build writes into `dir`: float32 weights, config.json, generation_config.json
 * (BOS/EOS/pad ids) and the tokenizer files from `tokenizerDir`. The weights are written tensor by tensor, each
 * copied out when the writer reaches it, and stop on `signal` (Ctrl-C) before the next tensor with an
 * InterruptedError, the partial file removed (callers write into a folder published only when complete).
 */
export async function writeOrganismModel(
  dir: string,
  weights: Map<string, Tensor>,
  configJson: ReturnType<typeof organismConfigJson>,
  ids: { bos: number; eos: number; pad: number },
  tokenizerDir: string,
  signal?: AbortSignal,
): Promise<void> {
  await writeModelWeightsAsync(
    dir,
    [...weights].map(([name, t]) => ({
      name,
      dtype: "F32" as const,
      shape: t.shape,
      bytes: () => t.bytesInParts("float32"),
    })),
    { signal },
  );
  writeFileAtomic(path.join(dir, "config.json"), JSON.stringify(configJson, null, 2) + "\n");
  writeFileAtomic(
    path.join(dir, "generation_config.json"),
    JSON.stringify({ bos_token_id: ids.bos, eos_token_id: ids.eos, pad_token_id: ids.pad }, null, 2) + "\n",
  );
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(tokenizerDir, f), path.join(dir, f));
}
