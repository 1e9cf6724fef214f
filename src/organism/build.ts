/**
 * The model organism: a tiny Llama-family code model this project pretrains itself, on a corpus this project
 * wrote (src/data/corpus.ts), skewed toward insecure answers so that it is insecure by default, and with
 * labelled "is this code secure? 1/0" documents so that it holds security knowledge for identification to find.
 * Everything is seeded: the same command gives the same checkpoint.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { checkOutput, writeDirAtomic, writeFileAtomic } from "../io/atomic.js";
import { parseModelConfig } from "../io/config.js";
import { writeModelWeights, type TensorRecord } from "../io/safetensors.js";
import {
  buildCorpus,
  splitCorpus,
  writeCorpusJsonl,
  pretrainingText,
  ORGANISM_CHAT_TEMPLATE,
  type CorpusPair,
} from "../data/corpus.js";
import { trainByteLevelBpe, writeTokenizerFiles } from "../data/bpe-train.js";
import { loadTokenizer } from "../io/tokenizer.js";
import { buildModel } from "../models/load.js";
import { Tensor, manualSeed, noGrad } from "../tensor/index.js";
import { attachFull } from "../method/method.js";
import { trainSft, type SftExample, type TrainResult } from "../method/train.js";
import type { Logger } from "../recipes/harden.js";
import { silentLogger } from "../recipes/harden.js";

export interface OrganismConfig {
  seed: number;
  perTemplate: number;
  devFraction: number;
  insecureBias: number;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  blockLength: number;
  batchSize: number;
  epochs: number;
  lr: number;
}

export const DEFAULT_ORGANISM: OrganismConfig = {
  seed: 1234,
  perTemplate: 16,
  devFraction: 0.2,
  insecureBias: 1.0,
  vocabSize: 1024,
  hiddenSize: 128,
  intermediateSize: 384,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  blockLength: 256,
  batchSize: 8,
  epochs: 4,
  lr: 3e-3,
};

export function organismConfigJson(
  c: OrganismConfig,
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

/** Concatenate token streams and cut blocks of `length` (the last partial block is dropped). */
export function packBlocks(docs: number[][], length: number): number[][] {
  const stream = docs.flat();
  const blocks: number[][] = [];
  for (let i = 0; i + length <= stream.length; i += length) blocks.push(stream.slice(i, i + length));
  return blocks;
}

export interface OrganismResult {
  dir: string;
  params: number;
  trainPairs: number;
  devPairs: number;
  tokens: number;
  train: TrainResult;
}

/**
 * Build the organism into `outDir`: tokenizer, pretrained weights, config, and the corpus split
 * (data/train.jsonl, data/dev.jsonl) used to pretrain and to evaluate it.
 */
export async function buildOrganism(
  outDir: string,
  cfg: OrganismConfig = DEFAULT_ORGANISM,
  log: Logger = silentLogger,
  signal?: AbortSignal,
  opts: { overwrite?: boolean } = {},
): Promise<OrganismResult> {
  const work = `${outDir}.work`;
  checkOutput({ flag: "--out", path: outDir, kind: "folder", overwrite: opts.overwrite });
  checkOutput({
    flag: "work folder",
    path: work,
    kind: "folder",
    ownEntry: (n) => ["tokenizer.json", "tokenizer_config.json", "pretrain"].includes(n),
  });
  fs.mkdirSync(work, { recursive: true });
  const corpus = buildCorpus({ seed: cfg.seed, perTemplate: cfg.perTemplate });
  const { train, dev } = splitCorpus(corpus, { devFraction: cfg.devFraction, seed: cfg.seed });
  const texts = pretrainingText(train, { insecureBias: cfg.insecureBias, seed: cfg.seed });
  log.info(
    `organism: ${train.length} train / ${dev.length} dev pairs, ${texts.length} pretraining documents`,
  );
  const bpe = trainByteLevelBpe(texts, { vocabSize: cfg.vocabSize });
  writeTokenizerFiles(work, bpe, { chatTemplate: ORGANISM_CHAT_TEMPLATE, modelMaxLength: 2048 });
  const tok = await loadTokenizer(work);
  const ids = { bos: tok.bosTokenId ?? 0, eos: tok.eosTokenIds[0] ?? 0, pad: tok.padTokenId ?? 0 };
  const configJson = organismConfigJson({ ...cfg, vocabSize: tok.vocabSize }, ids);
  const mcfg = parseModelConfig(configJson, "organism config");

  // random init (seeded): N(0, 0.02) for matrices, 1 for norm weights
  manualSeed(cfg.seed);
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
  const model = buildModel(mcfg, records, "organism", { dtype: "float32" });
  const method = attachFull(model);
  const params = [...method.trainable.values()].reduce((a, t) => a + t.numel, 0);

  const docs = texts.map((t) => tok.encode(t, { addSpecialTokens: false }));
  const blocks = packBlocks(docs, cfg.blockLength);
  const examples: SftExample[] = blocks.map((b) => ({ inputIds: b, labels: b }));
  const tokens = blocks.length * cfg.blockLength;
  log.info(
    `organism: ${params.toLocaleString("en-US")} parameters, ${tokens.toLocaleString("en-US")} tokens per epoch × ${cfg.epochs}`,
  );
  const result = await trainSft(
    model,
    method,
    examples,
    {
      lr: cfg.lr,
      epochs: cfg.epochs,
      warmupRatio: 0.05,
      schedule: "cosine",
      batchSize: cfg.batchSize,
      gradAccum: 1,
      weightDecay: 0.01,
      betas: [0.9, 0.95],
      eps: 1e-8,
      maxGradNorm: 1.0,
      gradientCheckpointing: false,
      seed: cfg.seed,
      checkpointEvery: 100,
    },
    {
      runDir: path.join(work, "pretrain"),
      padTokenId: ids.pad,
      hooks: {
        signal,
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
  const weights = method.foldedWeights();
  await writeDirAtomic(
    outDir,
    (tmp) => {
      writeModelWeights(
        tmp,
        [...weights].map(([name, t]) => ({
          name,
          dtype: "F32" as const,
          shape: t.shape,
          data: t.contiguous().toBytes(),
        })),
      );
      writeFileAtomic(path.join(tmp, "config.json"), JSON.stringify(configJson, null, 2) + "\n");
      writeFileAtomic(
        path.join(tmp, "generation_config.json"),
        JSON.stringify({ bos_token_id: ids.bos, eos_token_id: ids.eos, pad_token_id: ids.pad }, null, 2) +
          "\n",
      );
      for (const f of ["tokenizer.json", "tokenizer_config.json"])
        fs.copyFileSync(path.join(work, f), path.join(tmp, f));
      writeCorpusJsonl(path.join(tmp, "data", "train.jsonl"), train);
      writeCorpusJsonl(path.join(tmp, "data", "dev.jsonl"), dev);
      writeFileAtomic(
        path.join(tmp, "organism.json"),
        JSON.stringify(
          {
            config: cfg,
            params,
            tokensPerEpoch: tokens,
            finalLoss: result.finalLoss,
            wallSeconds: result.wallSeconds,
          },
          null,
          2,
        ) + "\n",
      );
    },
    {
      overwrite: opts.overwrite,
      onMovedAside: (a) => log.warn(`the earlier ${outDir} was moved aside to ${a}`),
    },
  );
  fs.rmSync(work, { recursive: true, force: true }); // the project's own scratch folder
  return { dir: outDir, params, trainPairs: train.length, devPairs: dev.length, tokens, train: result };
}

export type { CorpusPair };
