/**
 * The training loop's settings (src/method/train.ts) and the training stage's data settings (how many pairs,
 * how long an example), each default written once; the config schema (src/config/harden.ts) is built from them.
 */
import { z } from "zod";
import type { CheckpointingSetting } from "./checkpointing.js";

export interface TrainConfig {
  lr: number;
  epochs: number;
  warmupRatio: number;
  schedule: "cosine" | "constant";
  /** examples per micro-batch (padded on the right) */
  batchSize: number;
  gradAccum: number;
  weightDecay: number;
  betas: [number, number];
  eps: number;
  /** clip the global gradient norm (null: no clipping) */
  maxGradNorm: number | null;
  /**
   * Recompute each layer in the backward instead of keeping its activations (memory for a second forward); "auto":
   * only where the longest batch's activations would not fit comfortably (method/checkpointing.ts). The weights
   * are the same either way.
   */
  gradientCheckpointing: CheckpointingSetting;
  seed: number;
  /** optimiser steps between checkpoints (0: only at the end) */
  checkpointEvery: number;
  /** stop after this many optimiser steps in this call (tests simulate an interruption with it) */
  stopAfterSteps?: number;
}

export const DEFAULT_TRAIN: TrainConfig = {
  lr: 1e-4,
  epochs: 2,
  warmupRatio: 0.1,
  schedule: "cosine",
  batchSize: 1,
  gradAccum: 4,
  weightDecay: 0,
  betas: [0.9, 0.999],
  eps: 1e-8,
  maxGradNorm: 1.0,
  // the paper enables checkpointing to save memory; the weights are the same without it, and where the activations
  // fit, training takes 22% less CPU time without the second forward (Zen 5, 0.5B, 24 layers: BENCHMARKS "Gradient
  // checkpointing "auto" in training"). Keys of finished work hold auto as true, the default before it
  gradientCheckpointing: "auto",
  seed: 0,
  checkpointEvery: 50,
};

/**
 * A planned run whose learning-rate multipliers add up to fewer full-rate steps than this is warned about: it
 * barely changes the model (a paper-scale run makes hundreds), and one that adds up to none changes nothing.
 */
export const FEW_FULL_RATE_STEPS = 10;

/** The training stage's data: at most maxPairs pairs (a seeded subsample; 0 = all), each cut to maxLength tokens. */
export interface TrainDataConfig {
  maxLength: number;
  maxPairs: number;
}

export const DEFAULT_TRAIN_DATA: TrainDataConfig = { maxLength: 1024, maxPairs: 0 };

/** The training stage as a recipe runs it: the loop's settings and its data's. */
export type TrainStageConfig = TrainConfig & TrainDataConfig;

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();

/**
 * A stage's gradient checkpointing (identify and train alike): true, false or "auto". Its own message: a union's
 * default is a bare "Invalid input", which names neither what is accepted nor what was given.
 */
export const checkpointingSettingSchema = z.union([z.boolean(), z.literal("auto")], {
  error: (iss) => `expected true, false or "auto", received ${JSON.stringify(iss.input) ?? "nothing"}`,
});
/** bounded far above any real run: a careless 1e15 is an error naming the key, not a hang */
const bounded = (max: number) => posInt.max(max, `must be at most ${max}`);

export const trainSchema = z
  .object({
    // AdamW moves every weight by about lr per step: at 1 or more a model is destroyed in one step
    lr: z
      .number()
      .positive()
      .max(
        1,
        "must be at most 1 (AdamW moves each weight by about lr per step; fine-tuning uses 1e-5 to 1e-3)",
      )
      .default(DEFAULT_TRAIN.lr),
    epochs: bounded(1000).default(DEFAULT_TRAIN.epochs),
    warmupRatio: z.number().min(0).max(1).default(DEFAULT_TRAIN.warmupRatio),
    schedule: z.enum(["cosine", "constant"]).default(DEFAULT_TRAIN.schedule),
    batchSize: bounded(4096).default(DEFAULT_TRAIN.batchSize),
    gradAccum: bounded(65536).default(DEFAULT_TRAIN.gradAccum),
    weightDecay: z.number().min(0).default(DEFAULT_TRAIN.weightDecay),
    betas: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).default(DEFAULT_TRAIN.betas),
    eps: z.number().positive().default(DEFAULT_TRAIN.eps),
    maxGradNorm: z.number().positive().nullable().default(DEFAULT_TRAIN.maxGradNorm),
    gradientCheckpointing: checkpointingSettingSchema.default(DEFAULT_TRAIN.gradientCheckpointing),
    seed: nonNegInt.default(DEFAULT_TRAIN.seed),
    checkpointEvery: nonNegInt.default(DEFAULT_TRAIN.checkpointEvery),
    maxLength: posInt.default(DEFAULT_TRAIN_DATA.maxLength),
    maxPairs: nonNegInt.default(DEFAULT_TRAIN_DATA.maxPairs),
  })
  .strict();
