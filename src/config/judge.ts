/**
 * The LLM judge's configuration through the one resolver: `goodvibe judge train` (a YAML file of the judge's
 * training keys with -c, flags, --set) and an experiment file's `judge:` block read the judge's typed config
 * (src/eval/judge/config.ts), so both get the same defaults, bounds and named errors.
 */
import { z } from "zod";
import { judgeTrainSchema, type JudgeTrainConfig } from "../eval/judge/config.js";
import { resolveConfig } from "./resolve.js";

/**
 * The one merge of the judge's training settings: defaults ← config file ← flags (keys: method, epochs, lr,
 * seed, ...; undefined = not given) ← --set overrides, validated (unknown keys refused, each named).
 */
export function resolveJudgeTrainConfig(
  file: string | undefined,
  flags: Record<string, unknown>,
  sets: readonly string[] = [],
): JudgeTrainConfig {
  return resolveConfig(judgeTrainSchema, file, flags, sets);
}

/**
 * An experiment's `judge:` block. One judge for every cell, as in the paper (§4.3, §7): a judge folder, or a base
 * checkpoint fine-tuned once on labelled pairs before the cells (cached), with the judge's training settings.
 * `train.base: self` fine-tunes each experiment model as the judge of its own cells instead: self-judging, not
 * the paper's protocol, labelled so in every table.
 */
export const experimentJudgeSchema = z
  .strictObject({
    /** a judge folder, used as is */
    path: z.string().min(1).optional(),
    /** with path: the judge's base checkpoint, for the reliability comparison (default: the one it records) */
    base: z.string().min(1).optional(),
    /** a base checkpoint fine-tuned once on labelled pairs before the cells */
    // the thinking switch is the experiment's own (top-level enableThinking), not the judge's alone
    train: judgeTrainSchema
      .omit({ enableThinking: true })
      .extend({
        base: z
          .string({
            error: (i) =>
              i.input === undefined
                ? "required: the judge's base checkpoint (a model folder), or `self` for each model to judge its own cells (not the paper's protocol)"
                : "must be a model folder or `self`",
          })
          .min(1),
        /** labelled pairs the judge is trained on; default data.train */
        data: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
  })
  .superRefine((j, ctx) => {
    if ((j.path === undefined) === (j.train === undefined))
      ctx.addIssue({
        code: "custom",
        message:
          "give either `path` (a judge folder) or `train` (a base checkpoint to fine-tune once), not both",
      });
    if (j.base !== undefined && j.path === undefined)
      ctx.addIssue({
        code: "custom",
        path: ["base"],
        message: "only with `path` (train.base names a trained judge's base)",
      });
  });

export type ExperimentJudge = z.infer<typeof experimentJudgeSchema>;

/**
 * The judge's training settings of an experiment's `judge.train` (its base and data are where, not how), with the
 * experiment's thinking setting.
 */
export function judgeTrainSettings(
  t: NonNullable<ExperimentJudge["train"]>,
  enableThinking: boolean,
): JudgeTrainConfig {
  const { base: _b, data: _d, ...settings } = t;
  return { ...settings, enableThinking };
}
