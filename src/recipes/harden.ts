/**
 * The hardening recipe: identify → cluster → train → fold on a model folder and a pairs dataset, each stage
 * cached in a run folder so that an interrupted run resumes where it stopped (torchtune-style recipe).
 * GoodVibe is the default method; LoRA and full fine-tuning run through the same data, loop and schedule.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { loadTokenizer, type HfTokenizer } from "../io/tokenizer.js";
import { readPairs, pairsToLabelledSamples, type SecurityPair } from "../data/pairs.js";
import {
  buildSftExample,
  judgeMessages,
  sftMessages,
  JUDGE_INSTRUCTION,
  JUDGE_LABEL_TOKENS,
} from "../data/prompts.js";
import { loadModel, recordToTensor } from "../models/load.js";
import { openModelWeights } from "../io/safetensors.js";
import type { DecoderModel } from "../models/decoder.js";
import type { DType } from "../tensor/index.js";
import { createRng } from "../util/random.js";
import {
  identify,
  readNeuronMap,
  writeNeuronMap,
  checkFingerprint,
  type IdentifySample,
  type NeuronMap,
  type SelectionMode,
} from "../method/goodvibe/identify.js";
import {
  checkClusterSettings,
  clusterNeurons,
  clusterSummary,
  readClusterMap,
  selectionsOf,
  writeClusterMap,
  DEFAULT_CLUSTER,
  type ClusterMap,
  type ClusterOptions,
} from "../method/goodvibe/clustering.js";
import {
  attachFull,
  attachGoodVibe,
  attachLora,
  type AttachedMethod,
  type MethodName,
} from "../method/method.js";
import { DEFAULT_LORA, type LoraConfig } from "../method/lora/config.js";
import {
  DEFAULT_TRAIN,
  trainSft,
  type SftExample,
  type TrainConfig,
  type TrainHooks,
  type TrainResult,
} from "../method/train.js";
import {
  DELTA_FILE,
  foldIntoCheckpoint,
  writeGoodVibeDelta,
  writePeftAdapter,
  type FoldStats,
} from "../method/fold.js";
import { countParams } from "../method/method.js";
import { peakRssBytes } from "../util/memory.js";
import { interrupted } from "../util/stop.js";

export interface IdentifyConfig {
  topK: number;
  mode: SelectionMode;
  batchSize: number;
  /** use at most this many pairs (each gives a secure and an insecure sample); 0 = all */
  maxPairs: number;
  profileSamples: number;
  maxLength: number;
  gradientCheckpointing: boolean;
  instruction: string;
}

export interface HardenConfig {
  model: string;
  data: string;
  languages?: string[];
  out: string;
  runDir: string;
  method: MethodName;
  /**
   * Compute dtype. bfloat16 (the default) is the paper's bf16 mixed precision (§4.2): the model computes in bf16
   * and every method's trainable tensors are float32 masters with float32 AdamW states. float32 computes in fp32.
   */
  dtype?: DType;
  seed: number;
  identify: IdentifyConfig;
  cluster: ClusterOptions;
  train: TrainConfig & { maxLength: number; maxPairs: number };
  lora: LoraConfig;
}

/** The paper trains in bf16 mixed precision (§4.2); `dtype: float32` trains in fp32. */
export const DEFAULT_DTYPE = "bfloat16" satisfies DType;

export const DEFAULT_IDENTIFY: IdentifyConfig = {
  topK: 50,
  mode: "gradient",
  batchSize: 4,
  maxPairs: 0,
  profileSamples: 32,
  maxLength: 1024,
  gradientCheckpointing: true,
  instruction: JUDGE_INSTRUCTION,
};

export function defaultHardenConfig(
  over: Partial<HardenConfig> & Pick<HardenConfig, "model" | "data" | "out">,
): HardenConfig {
  return {
    runDir: path.join(path.dirname(path.resolve(over.out)), `.${path.basename(over.out)}.run`),
    method: "goodvibe",
    dtype: DEFAULT_DTYPE,
    seed: 0,
    identify: { ...DEFAULT_IDENTIFY },
    cluster: { ...DEFAULT_CLUSTER },
    train: { ...DEFAULT_TRAIN, maxLength: 1024, maxPairs: 0 },
    lora: { ...DEFAULT_LORA },
    ...over,
  };
}

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  progress(stage: string, done: number, total: number, extra?: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, progress() {} };

function subsample<T>(items: T[], n: number, seed: number): T[] {
  if (!n || n >= items.length) return items;
  return createRng(seed)
    .shuffle([...items])
    .slice(0, n);
}

/** Judge-prompt token ids of one code sample, with the code shortened (from the end) to fit maxLength. */
export function judgePromptIds(
  tok: HfTokenizer,
  code: string,
  lang: string | undefined,
  maxLength: number,
  instruction: string,
): number[] {
  let text = code;
  for (let tries = 0; tries < 20; tries++) {
    const ids = tok.encode(
      // thinking off, as in LlmJudge.promptIds and the SFT examples: one prompt format for every judge use
      tok.applyChatTemplate(judgeMessages(text, lang, { instruction }), {
        addGenerationPrompt: true,
        enableThinking: false,
      }),
      {
        addSpecialTokens: false,
      },
    );
    if (ids.length <= maxLength) return ids;
    text = text.slice(0, Math.floor((text.length * maxLength) / ids.length) - 16);
  }
  throw new InputError(
    `a judge prompt cannot be made to fit ${maxLength} tokens (the instruction alone is too long?)`,
  );
}

export function labelTokenIds(tok: HfTokenizer): [number, number] {
  return [tok.singleTokenId(JUDGE_LABEL_TOKENS.insecure), tok.singleTokenId(JUDGE_LABEL_TOKENS.secure)];
}

export function identifySamples(
  tok: HfTokenizer,
  pairs: SecurityPair[],
  cfg: IdentifyConfig,
  seed: number,
): IdentifySample[] {
  const chosen = subsample(pairs, cfg.maxPairs, seed);
  return pairsToLabelledSamples(chosen).map((s) => ({
    id: s.id,
    lang: s.lang,
    label: s.secure ? 1 : 0,
    inputIds: judgePromptIds(tok, s.code, s.lang, cfg.maxLength, cfg.instruction),
  }));
}

export function sftExamples(tok: HfTokenizer, pairs: SecurityPair[], maxLength: number): SftExample[] {
  return pairs.map((p) => buildSftExample(tok, sftMessages(p), { maxLength }));
}

/** A run's training examples: at most train.maxPairs pairs (a seeded subsample), each cut to train.maxLength. */
export function trainExamples(tok: HfTokenizer, pairs: SecurityPair[], cfg: HardenConfig): SftExample[] {
  return sftExamples(tok, subsample(pairs, cfg.train.maxPairs, cfg.seed + 1), cfg.train.maxLength);
}

export interface HardenResult {
  outDir: string;
  method: MethodName;
  neurons?: NeuronMap;
  clusters?: ClusterMap;
  train: TrainResult;
  fold: FoldStats;
  trainableParams: number;
  totalParams: number;
  artifact: string;
  peakMemoryBytes: number;
}

export interface RunHooks extends TrainHooks {
  log?: Logger;
}

/** Stage 1: identification, cached as runDir/neurons.json. */
export async function stageIdentify(
  model: DecoderModel,
  tok: HfTokenizer,
  pairs: SecurityPair[],
  cfg: HardenConfig,
  hooks: RunHooks = {},
): Promise<NeuronMap> {
  const file = path.join(cfg.runDir, "neurons.json");
  const log = hooks.log ?? silentLogger;
  if (fs.existsSync(file)) {
    const map = readNeuronMap(file);
    checkFingerprint(model, map.model, file);
    log.info(`identification: reusing ${file}`);
    return map;
  }
  const samples = identifySamples(tok, pairs, cfg.identify, cfg.seed);
  log.info(
    `identification: ${samples.length} samples (${cfg.identify.mode}), top-${cfg.identify.topK} per layer`,
  );
  const map = await identify(model, samples, {
    labelTokenIds: labelTokenIds(tok),
    topK: cfg.identify.topK,
    mode: cfg.identify.mode,
    batchSize: cfg.identify.batchSize,
    gradientCheckpointing: cfg.identify.gradientCheckpointing,
    profileSamples: cfg.identify.profileSamples,
    runDir: cfg.runDir,
    checkpointEvery: Math.max(cfg.identify.batchSize, 32),
    source: {
      model: path.resolve(cfg.model),
      data: path.resolve(cfg.data),
      prompt: cfg.identify.instruction,
    },
    onProgress: (d, t) => log.progress("identify", d, t),
    signal: hooks.signal,
  });
  writeNeuronMap(file, map);
  return map;
}

/** Stage 2: clustering, cached as runDir/clusters.json. */
export function stageCluster(map: NeuronMap, cfg: HardenConfig, log: Logger = silentLogger): ClusterMap {
  const file = path.join(cfg.runDir, "clusters.json");
  if (fs.existsSync(file)) {
    const c = readClusterMap(file);
    if (JSON.stringify(c.options) === JSON.stringify(cfg.cluster)) {
      log.info(`clustering: reusing ${file}`);
      return c;
    }
  }
  const clusters = clusterNeurons(map, cfg.cluster);
  log.info(`clustering: ${clusterSummary(clusters).text}`);
  writeClusterMap(file, clusters);
  return clusters;
}

export function attachMethod(model: DecoderModel, cfg: HardenConfig, clusters?: ClusterMap): AttachedMethod {
  switch (cfg.method) {
    case "goodvibe":
      if (!clusters) throw new Error("GoodVibe needs a cluster map");
      return attachGoodVibe(model, selectionsOf(clusters));
    case "lora":
      return attachLora(model, cfg.lora, undefined, cfg.seed);
    case "full": {
      // float32 masters from the checkpoint as stored, not from the (possibly bf16) weights the model computes with
      const weights = openModelWeights(cfg.model);
      return attachFull(model, {
        checkpoint: (n) => {
          const rec = weights.tensors.get(n);
          return rec ? recordToTensor(rec) : null;
        },
      });
    }
  }
}

/** The whole recipe. The input model folder is only read; the output folder appears only when complete. */
export async function runHarden(cfg: HardenConfig, hooks: RunHooks = {}): Promise<HardenResult> {
  const log = hooks.log ?? silentLogger;
  if (cfg.method === "goodvibe") checkClusterSettings(cfg.cluster, cfg.identify);
  // load and check every input before anything is written: bad input leaves no run folder behind
  const tok = await loadTokenizer(cfg.model);
  const pairs = readPairs(cfg.data, { languages: cfg.languages });
  log.info(`data: ${pairs.length} pairs from ${cfg.data}`);
  const model = loadModel(cfg.model, { dtype: cfg.dtype ?? DEFAULT_DTYPE });
  fs.mkdirSync(cfg.runDir, { recursive: true });
  writeFileAtomic(path.join(cfg.runDir, "config.json"), JSON.stringify(cfg, null, 2));
  let neurons: NeuronMap | undefined;
  let clusters: ClusterMap | undefined;
  if (cfg.method === "goodvibe") {
    neurons = await stageIdentify(model, tok, pairs, cfg, hooks);
    clusters = stageCluster(neurons, cfg, log);
  }
  const method = attachMethod(model, cfg, clusters);
  const trainable = countParams(method.trainable.values());
  const total = countParams(model.parameters().values());
  log.info(
    `training ${cfg.method}: ${trainable.toLocaleString("en-US")} trainable parameters (${((100 * trainable) / total).toPrecision(3)}% of ${total.toLocaleString("en-US")})`,
  );
  const examples = trainExamples(tok, pairs, cfg);
  const train = await trainSft(model, method, examples, cfg.train, {
    runDir: path.join(cfg.runDir, `train-${cfg.method}`),
    padTokenId: tok.padTokenId ?? model.cfg.padTokenId ?? 0,
    hooks: {
      onStep: (l, totalSteps) => {
        hooks.onStep?.(l, totalSteps);
        log.progress("train", l.step, totalSteps, `loss ${l.loss.toFixed(4)} lr ${l.lr.toExponential(2)}`);
      },
      signal: hooks.signal,
    },
  });
  if (!train.finished) throw interrupted(`training stopped at step ${train.steps} of ${train.totalSteps}`);
  const fold = await foldIntoCheckpoint(cfg.model, cfg.out, method, { overwrite: true });
  for (const w of fold.warnings) log.warn(w);
  let artifact = "";
  if (cfg.method === "goodvibe") {
    artifact = path.join(cfg.out, DELTA_FILE);
    writeGoodVibeDelta(artifact, model, selectionsOf(clusters!), method, {
      base_model: path.resolve(cfg.model),
    });
  } else if (cfg.method === "lora") {
    artifact = path.join(cfg.out, "adapter");
    writePeftAdapter(artifact, cfg.lora, method, path.resolve(cfg.model));
  }
  const result: HardenResult = {
    outDir: cfg.out,
    method: cfg.method,
    neurons,
    clusters,
    train,
    fold,
    trainableParams: trainable,
    totalParams: total,
    artifact,
    peakMemoryBytes: peakRssBytes(),
  };
  writeFileAtomic(
    path.join(cfg.out, "goodvibe-stats.json"),
    JSON.stringify(
      {
        method: cfg.method,
        trainableParams: trainable,
        totalParams: total,
        clustersPerLayer: clusters
          ? Object.fromEntries(Object.entries(clusters.modules).map(([n, m]) => [n, m.nClusters]))
          : undefined,
        // names the reading of the paper used for layers without cluster structure (README, "Clusters per module")
        clustering: clusters
          ? { options: clusters.options, summary: clusterSummary(clusters).text }
          : undefined,
        identification: neurons
          ? { flops: neurons.flops, wallSeconds: neurons.wallSeconds, samples: neurons.source.samples }
          : undefined,
        train: { ...train, log: undefined },
        fold,
        peakMemoryBytes: result.peakMemoryBytes,
      },
      null,
      2,
    ),
  );
  return result;
}
