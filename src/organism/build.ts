/**
 * The model organism: a tiny Llama-family code model this project pretrains itself, on a corpus this project
 * wrote (src/data/corpus.ts), skewed toward insecure answers so that it is insecure by default, and with
 * labelled "is this code secure? 1/0" documents so that it holds security knowledge for identification to find.
 * Everything is seeded: the same command gives the same checkpoint.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { checkOutput, writeDirAtomic, writeFileAtomic } from "../io/atomic.js";
import { fileHash } from "../io/hash.js";
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
import type { TrainResult } from "../method/train.js";
import {
  organismConfigJson,
  packBlocks,
  pretrainOrganism,
  pretrainRunDir,
  writeOrganismModel,
} from "./pretrain.js";
import { silentLogger, type Logger } from "../util/log.js";
import { DEFAULT_ORGANISM, type OrganismConfig } from "./config.js";

/**
 * The shipped assets/organism: DEFAULT_ORGANISM built by goodvibe at commit 15577aa (2026-11-29; Debian's libtorch
 * 1.13, an AVX-512 x86-64 CPU). A build is deterministic for one version of the code, libtorch and CPU (checking out
 * 15577aa rebuilds these bytes), but later kernels round differently (the one-pass AdamW, the fused decoder ops, the
 * native loss), and 640 steps amplify the last bits: main at 2e3f24f builds weights up to 2% apart (final loss
 * 0.11638 vs 0.11602). The build says which it got.
 */
export const ORGANISM_ASSET = {
  weightsSha256: "e378963f1314650c6bc384772296d4d03612c5b1bcab49de3a2c6f85b79ca1c0",
  builtAt: "15577aa",
};

/** How a build compares with the shipped asset: "not-reference" unless built with DEFAULT_ORGANISM. */
export function assetBuildCheck(
  cfg: OrganismConfig,
  weightsSha256: string,
): "match" | "differs" | "not-reference" {
  if (JSON.stringify(cfg) !== JSON.stringify(DEFAULT_ORGANISM)) return "not-reference";
  return weightsSha256 === ORGANISM_ASSET.weightsSha256 ? "match" : "differs";
}

export interface OrganismResult {
  dir: string;
  params: number;
  trainPairs: number;
  devPairs: number;
  tokens: number;
  weightsSha256: string;
  reference: "match" | "differs" | "not-reference";
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
  const docs = texts.map((t) => tok.encode(t, { addSpecialTokens: false }));
  const {
    method,
    params,
    tokens,
    train: result,
  } = await pretrainOrganism({
    configJson,
    docs,
    settings: { ...cfg, warmupRatio: 0.05 },
    padTokenId: ids.pad,
    runDir: pretrainRunDir(work),
    log,
    signal,
  });
  const weights = method.foldedWeights();
  let weightsSha256 = "";
  await writeDirAtomic(
    outDir,
    async (tmp) => {
      // Ctrl-C stops the weights' write before the next tensor; the partial folder goes, nothing is published
      await writeOrganismModel(tmp, weights, configJson, ids, work, signal);
      weightsSha256 = fileHash(path.join(tmp, "model.safetensors"));
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
            weightsSha256,
            // the builds of the tool that pretrained it, from the step each began at
            builds: result.builds,
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
  const reference = assetBuildCheck(cfg, weightsSha256);
  if (reference === "match")
    log.info(
      `organism: the weights reproduce the shipped assets/organism bit for bit (SHA-256 ${weightsSha256})`,
    );
  else if (reference === "differs")
    log.warn(
      `organism: default settings, but the weights (SHA-256 ${weightsSha256}) differ from the shipped ` +
        `assets/organism's (${ORGANISM_ASSET.weightsSha256}, built by goodvibe at commit ${ORGANISM_ASSET.builtAt}): ` +
        `this goodvibe version, libtorch or CPU rounds differently, so results will be close to BENCHMARKS.md's, ` +
        `not identical; to rebuild those bytes, build with commit ${ORGANISM_ASSET.builtAt}`,
    );
  return {
    dir: outDir,
    params,
    trainPairs: train.length,
    devPairs: dev.length,
    tokens,
    weightsSha256,
    reference,
    train: result,
  };
}

export type { CorpusPair };
