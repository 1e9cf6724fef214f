/**
 * The LLM judge's settings, one typed config with each default written once (as each GoodVibe stage has its
 * own): how a judge is fine-tuned — by `goodvibe judge train`, an experiment's `judge.train` and the demo alike —
 * and how many prompts it scores per forward pass. The paper gives no training settings for its judge (§4.3, §7):
 * the judge trains with the training loop's defaults (DEFAULT_TRAIN, the paper's §4.2 settings) and the training
 * stage's data defaults (DEFAULT_TRAIN_DATA); only the method is its own (LoRA, DEFAULT_LORA).
 * src/config/judge.ts resolves it for the CLI and the experiment file.
 */
import { z } from "zod";
import {
  DEFAULT_TRAIN,
  DEFAULT_TRAIN_DATA,
  trainSchema,
  type TrainConfig,
} from "../../method/train-config.js";
import { DEFAULT_ENABLE_THINKING } from "../../io/chat-template.js";

/** Prompts the judge scores in one forward pass (LlmJudge.score, judge reliability). */
export const DEFAULT_JUDGE_BATCH = 8;
/**
 * Most padded tokens (prompts × the batch's longest) in one of the judge's forward passes: its activation memory
 * grows with them, and a prompt may be as long as DEFAULT_JUDGE_MAX_TOKENS (8,192), so a batch of long answers is
 * cut to fewer prompts (two at that length) rather than held to DEFAULT_JUDGE_BATCH of them. A longer prompt still
 * gets a pass of its own.
 */
export const DEFAULT_JUDGE_BATCH_TOKENS = 16_384;

export type JudgeMethod = "full" | "lora";

export interface JudgeTrainConfig {
  /** LoRA (with DEFAULT_LORA) or full fine-tuning */
  method: JudgeMethod;
  epochs: number;
  lr: number;
  /** examples per micro-batch, and micro-batches per optimiser step */
  batchSize: number;
  gradAccum: number;
  /** recompute activations in the backward (less memory, the same result); "auto": where they would not fit */
  gradientCheckpointing: TrainConfig["gradientCheckpointing"];
  /** the training loop's seed (example order, LoRA's initialisation; `judge train` also splits its dev share with it) */
  seed: number;
  /** train on at most this many pairs, a subsample seeded 0 (0 = all) */
  maxPairs: number;
  /** judge examples longer than this many tokens (prompt and label) are skipped and counted */
  maxLength: number;
  /**
   * Qwen3's thinking switch in its training examples (recorded in the judge folder, whose prompts then follow
   * it); io/chat-template.ts holds the default (off)
   */
  enableThinking: boolean;
}

export const DEFAULT_JUDGE_TRAIN: JudgeTrainConfig = {
  method: "lora",
  epochs: DEFAULT_TRAIN.epochs,
  lr: DEFAULT_TRAIN.lr,
  batchSize: DEFAULT_TRAIN.batchSize,
  gradAccum: DEFAULT_TRAIN.gradAccum,
  gradientCheckpointing: DEFAULT_TRAIN.gradientCheckpointing,
  seed: DEFAULT_TRAIN.seed,
  maxPairs: DEFAULT_TRAIN_DATA.maxPairs,
  maxLength: DEFAULT_TRAIN_DATA.maxLength,
  enableThinking: DEFAULT_ENABLE_THINKING,
};

/** The judge's training settings as a config file, an experiment's `judge.train` or `--set` give them. */
export const judgeTrainSchema = z
  .object({
    method: z.enum(["full", "lora"]).default(DEFAULT_JUDGE_TRAIN.method),
    // the training stage's own bounds and defaults (the values of DEFAULT_JUDGE_TRAIN above)
    ...trainSchema.pick({
      epochs: true,
      lr: true,
      batchSize: true,
      gradAccum: true,
      gradientCheckpointing: true,
      seed: true,
      maxPairs: true,
      maxLength: true,
    }).shape,
    enableThinking: z.boolean().default(DEFAULT_JUDGE_TRAIN.enableThinking),
  })
  .strict();

/** The training loop's config of a judge: the loop's defaults with the judge's loop settings over them. */
export function judgeLoopConfig(c: JudgeTrainConfig): TrainConfig {
  const { method: _m, maxPairs: _p, maxLength: _l, enableThinking: _t, ...loop } = c;
  return { ...DEFAULT_TRAIN, ...loop };
}
