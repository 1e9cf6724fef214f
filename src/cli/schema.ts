/** The one typed schema of the hardening recipe's configuration (YAML files and --set overrides). */
import { z } from "zod";
import { DEFAULT_DTYPE, DEFAULT_IDENTIFY } from "../recipes/harden.js";
import { validateJudgeTask } from "../data/prompts.js";
import { DEFAULT_CLUSTER } from "../method/goodvibe/clustering.js";
import { DEFAULT_TRAIN } from "../method/train.js";
import { DEFAULT_LORA } from "../method/lora/config.js";

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
/**
 * Counts that size loops and buffers before any data are seen (batches, epochs, k-means restarts, LoRA rank):
 * bounded far above any real run, so a careless 1e15 is an error naming the key, not a hang or a heap abort.
 */
const bounded = (max: number) => posInt.max(max, `must be at most ${max}`);

/**
 * The judge task (instruction template with {unsafe} and {safe}, and the label mapping) as one object; its
 * default is the paper's. Checked as a whole, so a custom instruction cannot contradict the labels.
 */
export const judgeTaskSchema = z
  .object({
    instruction: z.string().min(1).default(DEFAULT_IDENTIFY.judgeTask.instruction),
    labels: z
      .object({
        unsafe: z.string().min(1).default(DEFAULT_IDENTIFY.judgeTask.labels.unsafe),
        safe: z.string().min(1).default(DEFAULT_IDENTIFY.judgeTask.labels.safe),
      })
      .strict()
      .default({ ...DEFAULT_IDENTIFY.judgeTask.labels }),
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
    maxPairs: nonNegInt.default(DEFAULT_IDENTIFY.maxPairs),
    profileSamples: nonNegInt.default(DEFAULT_IDENTIFY.profileSamples),
    maxLength: posInt.default(DEFAULT_IDENTIFY.maxLength),
    gradientCheckpointing: z.boolean().default(DEFAULT_IDENTIFY.gradientCheckpointing),
    judgeTask: judgeTaskSchema.default({
      instruction: DEFAULT_IDENTIFY.judgeTask.instruction,
      labels: { ...DEFAULT_IDENTIFY.judgeTask.labels },
    }),
    lmHead: z.boolean().default(DEFAULT_IDENTIFY.lmHead),
  })
  .strict();

export const clusterSchema = z
  .object({
    kMax: z.number().int().min(2).max(10_000, "must be at most 10000").default(DEFAULT_CLUSTER.kMax),
    threshold: z.number().default(DEFAULT_CLUSTER.threshold),
    seed: nonNegInt.default(DEFAULT_CLUSTER.seed),
    nInit: bounded(1000).default(DEFAULT_CLUSTER.nInit),
    features: z.enum(["importance", "profile", "profile-normalized"]).default(DEFAULT_CLUSTER.features),
    fallback: z.enum(["shared", "per-neuron"]).default(DEFAULT_CLUSTER.fallback),
    disabled: z.boolean().default(false),
  })
  .strict();

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
    gradientCheckpointing: z.boolean().default(DEFAULT_TRAIN.gradientCheckpointing),
    seed: nonNegInt.default(DEFAULT_TRAIN.seed),
    checkpointEvery: nonNegInt.default(DEFAULT_TRAIN.checkpointEvery),
    maxLength: posInt.default(1024),
    maxPairs: nonNegInt.default(0),
  })
  .strict();

export const loraSchema = z
  .object({
    r: bounded(4096).default(DEFAULT_LORA.r),
    alpha: z.number().positive().default(DEFAULT_LORA.alpha),
    dropout: z.number().min(0).max(1).default(DEFAULT_LORA.dropout),
    targetModules: z.array(z.string()).min(1).default(DEFAULT_LORA.targetModules),
  })
  .strict();

export const hardenSchema = z
  .object({
    model: z.string().min(1, "the model folder is required (--model)"),
    data: z.string().min(1, "the pairs dataset is required (--data)"),
    out: z.string().min(1, "the output folder is required (--out)"),
    runDir: z.string().optional(),
    languages: z.array(z.string()).optional(),
    method: z.enum(["goodvibe", "lora", "full"]).default("goodvibe"),
    dtype: z.enum(["float32", "bfloat16"]).default(DEFAULT_DTYPE),
    seed: nonNegInt.default(0),
    identify: identifySchema.default(identifySchema.parse({})),
    cluster: clusterSchema.default(clusterSchema.parse({})),
    train: trainSchema.default(trainSchema.parse({})),
    lora: loraSchema.default(loraSchema.parse({})),
  })
  .strict();

export type HardenFileConfig = z.infer<typeof hardenSchema>;
