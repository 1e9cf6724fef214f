/**
 * GoodVibe's stage settings, one typed config per stage (as PEFT keeps a config.py per tuner): identification
 * (which rows are security neurons) and clustering (which of them share an update). Each default is written
 * here once; the config schema (src/config/harden.ts), the CLI's --help and the recipes all read it from here.
 */
import { z } from "zod";
import { DEFAULT_JUDGE_TASK, validateJudgeTask, type JudgeTask } from "../../data/prompts.js";
import { checkpointingSettingSchema } from "../train-config.js";

/** The file a GoodVibe run writes its update into (delta.ts), named here so that --help shows it cheaply. */
export const DELTA_FILE = "goodvibe-delta.safetensors";

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
/**
 * Counts that size loops and buffers before any data are seen (batches, k-means restarts): bounded far above
 * any real run, so a careless 1e15 is an error naming the key, not a hang or a heap abort.
 */
export const bounded = (max: number) => posInt.max(max, `must be at most ${max}`);

// ---------------------------------------------------------------- identification
/** What makes a neuron important: its output's gradient (the paper), or its activation (the ablation). */
export type SelectionMode = "gradient" | "activation";

/** Most padded tokens in one batch by default: bounds the activation memory of a batch at any dataset size. */
export const DEFAULT_BATCH_TOKENS = 2048;

/**
 * The identification stage's settings. identify() reads its own fields of this object as the recipe resolved it
 * (IdentifySettings); the rest (maxPairs, maxLength, judgeTask) shape the samples the recipe hands it.
 */
export interface IdentifyConfig {
  /** security neurons kept per linear layer (the paper's k) */
  topK: number;
  mode: SelectionMode;
  /** most samples per batch; batches are grouped by length, so they pad little */
  batchSize: number;
  /** most tokens per batch, padding included: bounds activation memory (0 = no limit) */
  batchTokens: number;
  /** use at most this many pairs (each gives a secure and an insecure sample); 0 = all */
  maxPairs: number;
  profileSamples: number;
  maxLength: number;
  /** "auto": only when the largest batch's activations would not fit in half the available memory */
  gradientCheckpointing: boolean | "auto";
  /** The judge task identification asks: instruction template and label mapping, one object (the paper's). */
  judgeTask: JudgeTask;
  /** lm_head's rows are neurons too (§4.1's "all linear layers"; Table 6's count): off by default */
  lmHead: boolean;
}

export const DEFAULT_IDENTIFY: IdentifyConfig = {
  topK: 50,
  mode: "gradient",
  batchSize: 4,
  batchTokens: DEFAULT_BATCH_TOKENS,
  maxPairs: 0,
  profileSamples: 32,
  maxLength: 1024,
  gradientCheckpointing: "auto",
  judgeTask: DEFAULT_JUDGE_TASK,
  lmHead: false,
};

/**
 * The judge task (instruction template with {unsafe} and {safe}, and the label mapping) as one object; its
 * default is the paper's. Checked as a whole, so a custom instruction cannot contradict the labels.
 */
export const judgeTaskSchema = z
  .object({
    instruction: z.string().min(1).default(DEFAULT_JUDGE_TASK.instruction),
    labels: z
      .object({
        unsafe: z.string().min(1).default(DEFAULT_JUDGE_TASK.labels.unsafe),
        safe: z.string().min(1).default(DEFAULT_JUDGE_TASK.labels.safe),
      })
      .strict()
      .default({ ...DEFAULT_JUDGE_TASK.labels }),
  })
  .strict()
  .superRefine((task, ctx) => {
    try {
      validateJudgeTask(task, "judgeTask");
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
    }
  });

export const identifySchema = z
  .object({
    topK: posInt.default(DEFAULT_IDENTIFY.topK),
    mode: z.enum(["gradient", "activation"]).default(DEFAULT_IDENTIFY.mode),
    batchSize: bounded(4096).default(DEFAULT_IDENTIFY.batchSize),
    batchTokens: nonNegInt.max(16_777_216, "must be at most 16777216").default(DEFAULT_IDENTIFY.batchTokens),
    maxPairs: nonNegInt.default(DEFAULT_IDENTIFY.maxPairs),
    profileSamples: nonNegInt.default(DEFAULT_IDENTIFY.profileSamples),
    maxLength: posInt.default(DEFAULT_IDENTIFY.maxLength),
    gradientCheckpointing: checkpointingSettingSchema.default(DEFAULT_IDENTIFY.gradientCheckpointing),
    judgeTask: judgeTaskSchema.default({
      instruction: DEFAULT_IDENTIFY.judgeTask.instruction,
      labels: { ...DEFAULT_IDENTIFY.judgeTask.labels },
    }),
    lmHead: z.boolean().default(DEFAULT_IDENTIFY.lmHead),
  })
  .strict();

// ---------------------------------------------------------------- clustering
/**
 * What each neuron is as a point:
 * - "importance": its mean importance (one number). Any one-dimensional sample splits well (two k-means groups of
 *   evenly spread numbers already score about 0.5), so thresholds like the paper's 0.01-0.1 never apply.
 * - "profile": its importances on the profiled samples (one coordinate per sample). The neurons' overall size
 *   still dominates the distances.
 * - "profile-normalized": the profile scaled to unit length: on which samples a neuron matters, not how much.
 *   Neurons without a shared pattern score low here, though not 0: the best silhouette over k = 2..8 of the
 *   organism's profiles shuffled per neuron is 0.04-0.08 at 32 profiled samples, 0.01-0.02 at 256 (BENCHMARKS
 *   "The silhouette of patternless profiles"), the range the paper's thresholds test.
 */
/**
 * What a layer gets when its neurons show no cluster structure (best silhouette below the threshold, or too few
 * neurons to compute one). "shared": one update row for all of them, the reading of the paper that Table 2's
 * parameter counts support (every GoodVibe figure there lies between one and two rows per module). "per-neuron":
 * every neuron its own row, the reading of §6.2's "updated independently".
 */
export type ClusterFallback = "shared" | "per-neuron";

export type ClusterFeatures = "importance" | "profile" | "profile-normalized";

export interface ClusterOptions {
  kMax: number;
  /** silhouette below which a layer is not clustered (it gets the fallback) */
  threshold: number;
  seed: number;
  nInit: number;
  features: ClusterFeatures;
  /** what a layer below the threshold (or with under three neurons) gets */
  fallback: ClusterFallback;
  /** ablation: skip clustering, every selected neuron its own row */
  disabled?: boolean;
}

export const DEFAULT_CLUSTER: Required<ClusterOptions> = {
  kMax: 8,
  threshold: 0.05,
  seed: 0,
  nInit: 10,
  features: "profile-normalized",
  fallback: "shared",
  disabled: false,
};

/** One of GoodVibe's settings where the paper can be read more than one way, with the reading taken here. */
export interface PaperReading {
  setting: string;
  paper: string;
  here: string;
  why: string;
}

/**
 * The points the paper leaves ambiguous or inconsistent that a GoodVibe run decides (../shared/paper README; this
 * project's README "Clusters per module: how the paper is read"), as the run's settings decide them: said in the
 * output (results.json `departures`, the report's notes, the demo's summary) and not only in the docs.
 */
export function goodvibeReadings(
  identify: Pick<IdentifyConfig, "lmHead"> & Partial<Pick<IdentifyConfig, "profileSamples">>,
  cluster: Pick<ClusterOptions, "fallback" | "disabled"> & Partial<Pick<ClusterOptions, "features">>,
): PaperReading[] {
  const out: PaperReading[] = [];
  if (!identify.lmHead)
    out.push({
      setting: "lm_head's rows as neurons (identify.lmHead)",
      paper:
        "probably on: §4.1 hooks all linear layers, and Table 6's 57.1 M without clustering counts 50 rows of lm_head",
      here: "off: the seven projections only",
      why: "a reading: the judge loss gives lm_head importance only on its two label rows (identify.lmHead true hooks it)",
    });
  if (!cluster.disabled)
    out.push({
      setting: "a layer below the silhouette threshold (cluster.fallback)",
      paper:
        "inconsistent: §4.2 skips clustering there, §6.2 updates such neurons independently, Table 2's counts need one shared row per module",
      here:
        cluster.fallback === "shared"
          ? "shared: one update row for the layer's selected neurons"
          : "per-neuron: one update row per selected neuron",
      why: `a reading: ${cluster.fallback === "shared" ? "the one Table 2's parameter counts support" : "§6.2's"} (cluster.fallback shared | per-neuron)`,
    });
  if (!cluster.disabled) {
    // which layers the threshold sends to the fallback depends on what a neuron is as a point: said beside it
    const features = cluster.features ?? DEFAULT_CLUSTER.features;
    const samples = identify.profileSamples ?? DEFAULT_IDENTIFY.profileSamples;
    out.push({
      setting: "what k-means clusters (cluster.features)",
      paper: "a feature vector derived from each neuron's gradient importance profile (§4.2); not said which",
      here:
        features === "importance"
          ? "importance: each neuron's mean importance, one number"
          : `${features}: each neuron's importances on the first ${samples} identification samples` +
            (features === "profile-normalized" ? ", scaled to unit length" : ", unscaled"),
      why:
        features === "importance"
          ? "set in the config; one-number features split with silhouettes of about 0.5 or more, so the paper's thresholds (0.01-0.1) rarely send a layer to the fallback"
          : "a reading: a pattern over samples, the paper's 'profile'; with unit length the silhouette says where neurons matter alike, the range the paper's thresholds (0.01-0.1) test (cluster.features importance | profile | profile-normalized)",
    });
  }
  return out;
}

export const clusterSchema = z
  .object({
    kMax: z.number().int().min(2).max(10_000, "must be at most 10000").default(DEFAULT_CLUSTER.kMax),
    threshold: z.number().default(DEFAULT_CLUSTER.threshold),
    seed: nonNegInt.default(DEFAULT_CLUSTER.seed),
    nInit: bounded(1000).default(DEFAULT_CLUSTER.nInit),
    features: z.enum(["importance", "profile", "profile-normalized"]).default(DEFAULT_CLUSTER.features),
    fallback: z.enum(["shared", "per-neuron"]).default(DEFAULT_CLUSTER.fallback),
    disabled: z.boolean().default(DEFAULT_CLUSTER.disabled),
  })
  .strict();
