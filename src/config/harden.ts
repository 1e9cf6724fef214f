/**
 * The hardening recipe's configuration: one typed object built from each stage's own config (identify and
 * cluster in method/goodvibe/config.ts, train in method/train-config.ts, lora in method/lora/config.ts), so
 * every default is written once, next to the stage that uses it. `hardenConfig` is the one merge: the CLI
 * (harden, identify, train, cluster), the experiment runner and library callers resolve through it.
 */
import * as path from "node:path";
import { z } from "zod";
import type { DType } from "../tensor/index.js";
import type { MethodName } from "../method/attached.js";
import {
  clusterSchema,
  identifySchema,
  type ClusterOptions,
  type IdentifyConfig,
} from "../method/goodvibe/config.js";
import { trainSchema, type TrainStageConfig } from "../method/train-config.js";
import { loraSchema, type LoraConfig } from "../method/lora/config.js";
import { parseConfig, resolveConfig } from "./resolve.js";
import { DEFAULT_ENABLE_THINKING } from "../io/chat-template.js";

/** The paper trains in bf16 mixed precision (§4.2); `dtype: float32` trains in fp32. */
export const DEFAULT_DTYPE = "bfloat16" satisfies DType;
export const DEFAULT_METHOD: MethodName = "goodvibe";
export const DEFAULT_SEED = 0;

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
  /**
   * Qwen3's thinking switch for every prompt the run renders (identification's judge prompts, fine-tuning
   * examples); default off (io/chat-template.ts DEFAULT_ENABLE_THINKING). A template without it ignores it.
   */
  enableThinking?: boolean;
  identify: IdentifyConfig;
  cluster: ClusterOptions;
  train: TrainStageConfig;
  lora: LoraConfig;
  /** an existing non-empty output folder is moved aside (renamed, never deleted) instead of refused */
  overwrite?: boolean;
  /**
   * With overwrite: an output these same inputs and settings already completed is made again too (the finished
   * folder moved aside; the cached stages reused), as the CLI's --overwrite asks. Without it such an output is
   * returned as it is (a demo rerun into its own folder), unless another build made it.
   */
  remake?: boolean;
}

const nonNegInt = z.number().int().nonnegative();

/**
 * The training section as a harden config reads it: `train.seed` (data order, dropout) unset follows the run's
 * `seed` (completeHardenConfig), so that `--seed 1` gives another training run, not the seed-0 one again; set, it is
 * its own (the experiment runner sets both to the cell's seed).
 */
const hardenTrainSchema = trainSchema.extend({ seed: nonNegInt.optional() });

/** The schema of YAML config files and --set overrides: every section's defaults are its stage's. */
export const hardenSchema = z
  .object({
    model: z.string().min(1, "the model folder is required (--model)"),
    data: z.string().min(1, "the pairs dataset is required (--data)"),
    out: z.string().min(1, "the output folder is required (--out)"),
    runDir: z.string().optional(),
    languages: z.array(z.string()).optional(),
    method: z.enum(["goodvibe", "lora", "full"]).default(DEFAULT_METHOD),
    dtype: z.enum(["float32", "bfloat16"]).default(DEFAULT_DTYPE),
    seed: nonNegInt.default(DEFAULT_SEED),
    enableThinking: z.boolean().default(DEFAULT_ENABLE_THINKING),
    identify: identifySchema.default(identifySchema.parse({})),
    cluster: clusterSchema.default(clusterSchema.parse({})),
    train: hardenTrainSchema.default(hardenTrainSchema.parse({})),
    lora: loraSchema.default(loraSchema.parse({})),
  })
  .strict();

export type HardenFileConfig = z.infer<typeof hardenSchema>;

/**
 * The settings of one stage's command (`goodvibe cluster -c harden.yaml`): the same file as `harden` reads, with
 * the model, data and output paths not required (that command takes its own inputs).
 */
export const stageFileSchema = hardenSchema.partial({ model: true, data: true, out: true });

/** Where a run keeps its stages when not told: `.<out>.run` beside the output. */
export function defaultRunDir(out: string): string {
  return path.join(path.dirname(path.resolve(out)), `.${path.basename(out)}.run`);
}

/** How a command completes a config: the output's fate, and where its run folder goes when not set. */
export interface CompleteOptions {
  overwrite?: boolean;
  /** the run folder when neither the file, a flag nor --set names one (default: defaultRunDir) */
  runDirFor?: (out: string) => string;
}

/** A validated config file's values as the recipe's config: the run folder filled in. */
export function completeHardenConfig(c: HardenFileConfig, opts: CompleteOptions = {}): HardenConfig {
  return {
    ...c,
    train: { ...c.train, seed: c.train.seed ?? c.seed },
    runDir: c.runDir ?? (opts.runDirFor ?? defaultRunDir)(c.out),
    ...(opts.overwrite !== undefined ? { overwrite: opts.overwrite } : {}),
  };
}

/**
 * The one merge of a harden config: schema defaults ← config file ← flags (dotted keys) ← --set overrides,
 * validated, with the run folder filled in.
 */
export function resolveHardenConfig(
  file: string | undefined,
  flags: Record<string, unknown>,
  sets: readonly string[] = [],
  opts: CompleteOptions = {},
): HardenConfig {
  return completeHardenConfig(resolveConfig(hardenSchema, file, flags, sets), opts);
}

/** A harden config from a nested mapping (the experiment runner's cells); errors prefixed with `where`. */
export function hardenConfigOf(input: Record<string, unknown>, where: string): HardenConfig {
  return completeHardenConfig(parseConfig(hardenSchema, input, where, "inline"));
}

/**
 * Every default, for library callers: the model, data and output are required; whole sections given in
 * `over` replace the defaults' (`{ train: { ...d.train, epochs: 1 } }`).
 */
export function defaultHardenConfig(
  over: Partial<HardenConfig> & Pick<HardenConfig, "model" | "data" | "out">,
): HardenConfig {
  return {
    // the seed parsed with the paths: train.seed follows it unless `over` gives a train section of its own
    ...completeHardenConfig(
      hardenSchema.parse({ model: over.model, data: over.data, out: over.out, seed: over.seed }),
    ),
    ...over,
  };
}
