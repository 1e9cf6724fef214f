/**
 * The results file the experiment runner writes and the report reads: one JSON object with a list
 * of cells, one cell per trained/evaluated model. Validated with zod so that a hand-edited or stale
 * file fails with a message naming the file and the field, not with a NaN somewhere in a table.
 *
 * Objects are strict: an unknown key is an error, because a misspelt optional field (say
 * "safeRates") would otherwise vanish silently and show up as "—" in every table.
 */
import * as fs from "node:fs";
import { z } from "zod";
import { InputError } from "../errors.js";
import type { Interval } from "../eval/metrics.js";
import { perItemProblem } from "../eval/utility/items.js";
import { checkpointingSettingSchema } from "../method/train-config.js";
import { CODE_BLOCK_CHOICES, type CodeBlockChoice } from "../data/code.js";

const finite = z.number().refine(Number.isFinite, "must be a finite number");
const nonNegInt = z.number().int().nonnegative();
const nonNeg = finite.refine((x) => x >= 0, "must be >= 0");

/** eval/metrics.ts's Interval, field for field (a missing or extra field is a compile error here). */
const intervalShape = { value: finite, low: finite, high: finite } satisfies Record<
  keyof Interval,
  z.ZodType
>;
const ordered = [
  (i: Interval) => i.low <= i.value + 1e-12 && i.value <= i.high + 1e-12,
  { message: "interval must satisfy low <= value <= high" },
] as const;
const inUnit = [
  (i: Interval) => i.low >= 0 && i.high <= 1,
  { message: "a rate and its interval must lie in [0, 1]" },
] as const;

/** A point estimate with its 95% interval; `low <= value <= high`. */
export const intervalSchema: z.ZodType<Interval> = z.strictObject(intervalShape).refine(...ordered);

/** A rate in [0, 1] with its interval (Wilson or bootstrap). */
const rateSchema = intervalSchema.refine(...inUnit);

const rateWithNSchema = z
  .strictObject({ ...intervalShape, n: nonNegInt })
  .refine(...ordered)
  .refine(...inUnit);
export type RateWithN = z.infer<typeof rateWithNSchema>;

export const METHODS = ["base", "goodvibe", "lora", "full"] as const;
export type Method = (typeof METHODS)[number];
export const JUDGES = ["rule", "llm"] as const;
export type Judge = (typeof JUDGES)[number];

const safeRateSchema = z.strictObject({
  overall: rateWithNSchema,
  perLanguage: z.record(z.string(), rateWithNSchema),
  perCwe: z.record(z.string(), rateWithNSchema).optional(),
});

const answerCountsShape = { n: nonNegInt, noCode: nonNegInt };
const noCodeAtMostN = [
  (a: { n: number; noCode: number }) => a.noCode <= a.n,
  { message: "noCode cannot exceed n" },
] as const;
const answerCountsSchema = z.strictObject(answerCountsShape).refine(...noCodeAtMostN);

const mcnemarVsBaseSchema = z.partialRecord(
  z.enum(JUDGES),
  z.strictObject({
    b01: nonNegInt,
    b10: nonNegInt,
    pValue: finite.refine((p) => p >= 0 && p <= 1, "a p-value lies in [0, 1]"),
    test: z.string(),
  }),
);

const securitySchema = z.strictObject({
  /**
   * How the rates' intervals below were made (not the mean loss gap's): absent, the 95% Wilson interval over the
   * items (pairs, answers), as before 2026-12-01 and wherever the pairs name no task (CyberNative);
   * "wilson-task-design-effect", the pairs name their task (several prompts per task: the organism data) and
   * every rate has the Wilson interval on the effective n, n over the tasks' design effect
   * (eval/metrics.ts clusteredWilsonInterval; recipes/outcomes.ts withTaskIntervals).
   */
  intervals: z.literal("wilson-task-design-effect").optional(),
  /**
   * How securePreference.meanLossGap's interval was made: absent, a 95% percentile bootstrap over the pairs (as
   * before 2026-12-01 and wherever the pairs name no task); "bootstrap-task", the pairs name their task and the
   * bootstrap resampled whole tasks (eval/metrics.ts clusterBootstrap), since one task's prompts are not
   * independent. Resamples and seed are the same either way.
   */
  lossGapInterval: z.literal("bootstrap-task").optional(),
  /** Share of secure/insecure pairs where the model gives the secure completion the lower loss. */
  securePreference: z
    .strictObject({
      rate: rateSchema,
      meanLossGap: intervalSchema,
      n: nonNegInt,
      perLanguage: z.record(z.string(), z.strictObject({ rate: rateSchema, n: nonNegInt })),
    })
    .optional(),
  /**
   * Share of answers judged secure: by the rule judge among answers with a code block, by the LLM judge among
   * all answers (an answer without a code block is judged whole; an empty one, nothing left once reasoning is
   * removed, counts as not secure).
   */
  safeRate: z.partialRecord(z.enum(JUDGES), safeRateSchema).optional(),
  /** The answers to the evaluation prompts: how many, and how many had no code block, overall and per language. */
  answers: z
    .strictObject({
      ...answerCountsShape,
      /** answers with code in a language the rule judge does not read (since 2026-12-06; absent: none or not counted) */
      uncovered: nonNegInt.optional(),
      perLanguage: z.record(z.string(), answerCountsSchema),
    })
    .refine(...noCodeAtMostN)
    .optional(),
  /**
   * LLM judge (prediction) against the rule judge (reference) on the same programs, positive =
   * "insecure" (as src/eval/safety.ts counts it); kappa is Cohen's κ of the two verdicts, absent where it is
   * undefined: both judges gave one and the same verdict on every program (chance agreement 1). Before 2026-12-01
   * such a run recorded no judgeAgreement at all.
   */
  judgeAgreement: z
    .strictObject({
      confusion: z.strictObject({ tp: nonNegInt, fp: nonNegInt, tn: nonNegInt, fn: nonNegInt }),
      kappa: finite.refine((k) => k >= -1 && k <= 1, "Cohen's kappa lies in [-1, 1]").optional(),
    })
    .optional(),
  /** Paired test of "secure" per prompt against the base model: b01 = base insecure, this secure. */
  mcnemarVsBase: mcnemarVsBaseSchema.optional(),
  /**
   * The same measures on the evaluated pairs that share neither a prompt nor an answer's code with the training
   * pairs (evaluation.trainOverlap.seenIds lists the others; report/unseen.ts): n such pairs, each rate with its
   * own n and 95% interval (Wilson over the items; over the tasks' effective n where the pairs name their task, as
   * `intervals` says for the full rates), and McNemar against the base model's cell on those pairs. Recounted from
   * `outcomes`, so secure preference has its rate only (no mean loss gap). Absent: results written before it was
   * measured, or cells without per-item outcomes.
   */
  unseen: z
    .strictObject({
      n: nonNegInt,
      securePreference: rateWithNSchema.optional(),
      safeRate: z.partialRecord(z.enum(JUDGES), rateWithNSchema).optional(),
      mcnemarVsBase: mcnemarVsBaseSchema.optional(),
    })
    .optional(),
});

const utilitySchema = z
  .strictObject({
    /** e.g. "acc", "acc_norm", "exact_match", "loss"; names with loss/nll/perplexity are not rates. */
    metric: z.string().min(1),
    value: finite,
    stderr: nonNeg,
    n: nonNegInt,
    /**
     * the per-item scores and a hash of the items (eval/utility/items.ts), so that Table 3 pairs a method with
     * its base item by item: n of them, or n / unitsPerItem where each stands for several units of n (the
     * held-out code loss: one per held-out pair, the mean of its two answers' losses; the held-out real-code loss
     * of --code: one per document, its linearised share of the token-weighted mean, eval/utility/code-loss.ts).
     * Absent in results made before they were kept (the held-out code loss's and the real-code loss's were kept
     * later than the benchmarks'): those Δ are unpaired
     */
    perItem: z
      .strictObject({
        items: z.string().min(1),
        bits: z.string().optional(),
        f64: z.string().optional(),
        unitsPerItem: z.number().int().min(1).optional(),
      })
      .optional(),
    /** the shots before each question (GSM8K, MMLU): 5, or 0 without a few-shot source; absent before 2026-12-06 */
    nShot: z.number().int().min(0).optional(),
    /**
     * the held-out real-code loss of --code per language: each language's token-weighted mean over its own
     * documents with that ratio's standard error, computed as the overall's (eval/utility/code-loss.ts); absent
     * for the benchmarks and in results made before 2026-12-01
     */
    perLanguage: z
      .record(
        z.string(),
        z.strictObject({
          value: finite,
          stderr: nonNeg,
          n: z.number().int().min(1),
          tokens: z.number().positive(),
        }),
      )
      .optional(),
  })
  .superRefine((u, ctx) => {
    const problem = perItemProblem(u);
    if (problem) ctx.addIssue({ code: "custom", path: ["perItem"], message: problem });
  });
export type UtilityResult = z.infer<typeof utilitySchema>;

const neuronsSchema = z.strictObject({
  perLayer: z.array(
    z.strictObject({ layer: nonNegInt, module: z.string().min(1), count: nonNegInt, meanImportance: finite }),
  ),
  clusters: z.array(
    z.strictObject({
      module: z.string().min(1),
      nClusters: nonNegInt,
      silhouette: finite,
      clustered: z.boolean(),
      /** layers of this module type clustered, and those that got each fallback (one shared row / one per neuron) */
      layers: z.strictObject({ clustered: nonNegInt, shared: nonNegInt, perNeuron: nonNegInt }).optional(),
    }),
  ),
  /** Figure 4: the selected neurons of a few modules (e.g. q/k/v of one layer) with cluster ids. */
  importanceByModule: z
    .record(
      z.string(),
      z.array(z.strictObject({ neuron: nonNegInt, importance: finite, cluster: z.number().int() })),
    )
    .optional(),
});

const outcomeString = z.string().regex(/^[01-]*$/, "one character per item: 1, 0 or - (no verdict)");

/**
 * Per-item outcomes of the evaluation, for paired tests between any two cells (report/paired.ts): one character
 * per item of `ids` — 1 secure (the secure answer preferred; the answer judged secure), 0 not, - no verdict.
 * `groups` names each item's task when the pairs carry one (cluster bootstrap over tasks).
 */
export const outcomesSchema = z
  .strictObject({
    ids: z.array(z.string().min(1)),
    langs: z.array(z.string().min(1)),
    groups: z.array(z.string().min(1)).optional(),
    preference: outcomeString.optional(),
    rule: outcomeString.optional(),
    llm: outcomeString.optional(),
  })
  .refine(
    (o) =>
      o.langs.length === o.ids.length &&
      (o.groups?.length ?? o.ids.length) === o.ids.length &&
      [o.preference, o.rule, o.llm].every((x) => x === undefined || x.length === o.ids.length),
    { message: "langs, groups and every outcome string must have one entry per id" },
  );
export type Outcomes = z.infer<typeof outcomesSchema>;

/** method/checkpointing.ts's CheckpointingRecord: the setting as given (true, false, "auto") and what was used. */
const checkpointingSchema = z.strictObject({
  requested: checkpointingSettingSchema,
  /** "mixed": a run resumed saved work under the other choice (method/checkpointing.ts CheckpointingUsed) */
  used: z.union([z.boolean(), z.literal("mixed")]),
});

/**
 * A trained cell's learning-rate schedule as its run planned it (method/train.ts ScheduleRecord): optimiser steps,
 * the warm-up's, and the sum of the lr multipliers in steps at the full rate; `level` and `warning` what the run
 * warned: "none", no step moved a weight (the model is its base under a new name), "few", it barely changed.
 */
const scheduleSchema = z
  .strictObject({
    examples: nonNegInt,
    steps: nonNegInt,
    warmupSteps: nonNegInt,
    fullRateSteps: nonNeg,
    level: z.enum(["none", "few"]).optional(),
    warning: z.string().min(1).optional(),
  })
  .refine((s) => (s.level === undefined) === (s.warning === undefined), {
    message: "level and warning come together",
  });
export type ScheduleResult = z.infer<typeof scheduleSchema>;

export const cellResultSchema = z.strictObject({
  /** Content hash of the cell's inputs. */
  id: z.string().min(1),
  /** Model name or folder. */
  model: z.string().min(1),
  method: z.enum(METHODS),
  /** e.g. "no-cluster", "activation-selection", "threshold=0.1", "topk=20", "epochs=1". */
  ablation: z.string().min(1).optional(),
  /** a grid's cell: the setting it varies (grid name, harden key) and its value, as the experiment set it */
  study: z
    .strictObject({
      name: z.string().min(1),
      key: z.string().min(1),
      value: z.union([z.number(), z.string(), z.boolean()]),
    })
    .optional(),
  seed: z.number().int(),
  params: z.strictObject({ trainable: nonNegInt, total: nonNegInt }),
  cost: z.strictObject({
    flopsForward: nonNeg,
    flopsBackward: nonNeg,
    flopsTotal: nonNeg,
    wallSeconds: nonNeg,
    flopsPerSecond: nonNeg,
    peakMemoryBytes: nonNeg,
    /** training's 6 · N · D, as common trainers report it (absent in results made before it was recorded) */
    flopsTrainerEstimate: nonNeg.optional(),
  }),
  security: securitySchema,
  /** Keyed by benchmark: "arc_challenge", "arc_easy", "gsm8k", "mmlu", "heldout_code_loss", ... */
  utility: z.record(z.string(), utilitySchema).optional(),
  neurons: neuronsSchema.optional(),
  outcomes: outcomesSchema.optional(),
  /**
   * gradient checkpointing as the cell's settings asked it and as its run used it ("auto" decided on or off), for
   * training and (GoodVibe) identification: the cost's FLOPs and memory depend on it, and the cell's id holds
   * training's "auto" as true (method/checkpointing.ts keyedTraining), so the id alone does not say. Absent in results made before it was recorded, and a stage's entry
   * absent when its run recorded none (a neuron map or a cell's training made before 2026-12-01).
   */
  gradientCheckpointing: z
    .strictObject({
      training: checkpointingSchema.optional(),
      identification: checkpointingSchema.optional(),
    })
    .optional(),
  /**
   * training's schedule (trained cells): what makes a cell that trained nothing, or barely, readable as such and
   * not as the method's result. Absent: a base cell, or a cell trained before it was recorded (2026-12-04)
   */
  schedule: scheduleSchema.optional(),
  /**
   * the build of the tool that computed the cell (tensor/build.ts BuildRecord; absent in results made before the
   * record): cells of an experiment resumed after an upgrade, or sharded over machines of different CPUs, may come
   * from several, which the report says
   */
  build: z
    .strictObject({
      goodvibe: z.string(),
      commit: z.string().optional(),
      code: z.string().optional(),
      addon: z.string(),
      libtorch: z.string(),
      device: z.string(),
      bf16Products: z.string().optional(),
    })
    .optional(),
});
export type CellResult = z.infer<typeof cellResultSchema>;

const unitRate = finite.refine((x) => x >= 0 && x <= 1, "a rate lies in [0, 1]");

/** One judge's reliability on held-out labelled pairs (paper §7); positive class = unsafe. */
const judgeReliabilitySchema = z.strictObject({
  /**
   * "base": the judge's base checkpoint asked zero-shot; "fine-tuned": the judge that judged the cells, trained on
   * labelled pairs; "given": the judge folder given as is, whose training is not recorded
   */
  role: z.enum(["base", "fine-tuned", "given"]),
  /** with self-judging: the experiment model whose cells this judge judged */
  model: z.string().min(1).optional(),
  /** the model folder */
  source: z.string().min(1),
  n: nonNegInt,
  accuracy: rateSchema,
  tpr: unitRate,
  fpr: unitRate,
  confusion: z.strictObject({ tp: nonNegInt, fp: nonNegInt, tn: nonNegInt, fn: nonNegInt }),
  /** samples left out of n: their code the held-out pairs label both secure and insecure (absent: none) */
  conflicting: nonNegInt.optional(),
  /**
   * The same verdicts on the held-out samples whose code the fine-tuned judge was not trained on (its record's
   * trainingCode, whitespace and case aside: eval/judge/llm.ts trainingOverlap); the same samples for the base
   * judge's row, so that the two compare on one subset. Absent: the judge's record lists no training code (a
   * judge trained before 2026-12-02), or results written before this was measured.
   */
  unseen: z
    .strictObject({
      /** held-out samples left out: the judge was trained on their code */
      seenSamples: nonNegInt,
      /** of the held-out pairs, those with either sample's code among the judge's training code */
      seenPairs: nonNegInt,
      ofPairs: nonNegInt,
      n: nonNegInt,
      /** Wilson intervals with their n (accuracy over n, TPR over the insecure, FPR over the secure); null: n 0 */
      accuracy: rateWithNSchema.nullable(),
      tpr: rateWithNSchema.nullable(),
      fpr: rateWithNSchema.nullable(),
      confusion: z.strictObject({ tp: nonNegInt, fp: nonNegInt, tn: nonNegInt, fn: nonNegInt }),
    })
    .optional(),
});
export type JudgeReliabilityEntry = z.infer<typeof judgeReliabilitySchema>;

/** Who judged the safe rates: one independent judge (the paper's protocol) or each model its own cells. */
const judgeInfoSchema = z.strictObject({
  mode: z.enum(["independent", "self"]),
  /** plain words: what the judge is and how it was made */
  description: z.string().min(1),
  /** the instruction exactly as the judge read it, and its labels */
  convention: z.strictObject({
    instruction: z.string().min(1),
    labels: z.strictObject({ unsafe: z.string().min(1), safe: z.string().min(1) }),
  }),
  /** the held-out labelled pairs of the reliability rows, in plain words */
  heldOut: z.string().min(1),
  reliability: z.array(judgeReliabilitySchema),
});
export type JudgeInfo = z.infer<typeof judgeInfoSchema>;

/** How the safe rates were measured. */
const evaluationInfoSchema = z.strictObject({
  /** plain words, e.g. "all 144 held-out prompts, as they are; greedy, up to 160 new tokens" */
  protocol: z.string().min(1),
  /** "security-words": the opt-in filter that leaves out prompts mentioning security (not the paper's) */
  promptFilter: z.enum(["none", "security-words"]),
  /** 0 = every held-out prompt (the paper's) */
  maxPrompts: nonNegInt,
  maxNewTokens: nonNegInt,
  /**
   * which of an answer's code blocks for its language the judges read: the longest (the default) or all, joined
   * (SafetyOptions.codeBlocks). Absent: results written before 2026-12-02, all of which read the longest
   */
  codeBlocks: z.enum(CODE_BLOCK_CHOICES as [CodeBlockChoice, ...CodeBlockChoice[]]).optional(),
  /** "task": the budget was spread round-robin over each language's tasks too (absent: over languages only) */
  spread: z.literal("task").optional(),
  /** with spread "task": prompts answered per "lang/task" */
  perTask: z.record(z.string(), nonNegInt).optional(),
  /** the answered prompts' pair ids, when a budget left some out */
  promptIds: z.array(z.string()).optional(),
  /**
   * Of the n evaluated pairs, those sharing a prompt (questions) or an answer's code (code) with the training
   * pairs, or either (pairs), after whitespace and case normalisation (data/pairs.ts pairOverlap). Absent: results
   * written before it was measured.
   */
  trainOverlap: z
    .strictObject({
      n: nonNegInt,
      pairs: nonNegInt,
      questions: nonNegInt,
      code: nonNegInt,
      /**
       * the ids of the held-out pairs sharing a prompt or code with the training pairs: of every held-out pair the
       * cells' outcomes cover (secure preference is measured on all, a prompt budget aside), so `pairs` of them
       * where no budget cut the prompts; the cells' security.unseen leaves them out. Absent in results written
       * before 2026-12-02
       */
      seenIds: z.array(z.string()).optional(),
    })
    .optional(),
});
export type EvaluationInfo = z.infer<typeof evaluationInfoSchema>;
const splitTaskSchema = z.strictObject({
  task: z.string().min(1),
  cwe: z.string().min(1),
  stratum: z.string(),
});

/** A task-held-out study's split (experiment data.taskSplit): which tasks hardened, which were held out. */
export const taskSplitInfoSchema = z.strictObject({
  heldOut: finite,
  seed: nonNegInt,
  stratify: z.string().min(1),
  evaluate: z.string().min(1),
  trainPairs: nonNegInt,
  evalPairs: nonNegInt,
  languages: z.record(
    z.string(),
    z.strictObject({ hardening: z.array(splitTaskSchema), heldOut: z.array(splitTaskSchema) }),
  ),
});
export type TaskSplitInfo = z.infer<typeof taskSplitInfoSchema>;

export const experimentResultsSchema = z.strictObject({
  name: z.string().min(1),
  /** ISO 8601 date-time. */
  createdAt: z.string().min(1),
  machine: z.string(),
  /** absent in results written before the judge was recorded */
  judge: judgeInfoSchema.optional(),
  evaluation: evaluationInfoSchema.optional(),
  /** where this run's settings depart from the paper's, in plain words (the demo lists them) */
  departures: z
    .array(
      z.strictObject({ setting: z.string().min(1), paper: z.string(), here: z.string(), why: z.string() }),
    )
    .optional(),
  taskSplit: taskSplitInfoSchema.optional(),
  /**
   * results.partial.json's mark (experiment/run.ts): a run that stopped, or left cells to other workers, wrote the
   * cells done so far; `planned` cells were planned, `missing` are those without a result (their ids as in
   * plan.json, their names, and `label` as the run's log names them). Absent: results.json, which has every cell,
   * and partial files written before the mark (2026-12-06)
   */
  partial: z
    .strictObject({
      planned: nonNegInt,
      missing: z.array(
        z.strictObject({
          id: z.string().min(1),
          label: z.string().min(1),
          model: z.string().min(1),
          method: z.enum(METHODS),
          ablation: z.string().min(1).optional(),
          seed: z.number().int(),
        }),
      ),
    })
    .optional(),
  cells: z.array(cellResultSchema),
});
export type ExperimentResults = z.infer<typeof experimentResultsSchema>;
export type MissingCell = NonNullable<ExperimentResults["partial"]>["missing"][number];

function fieldName(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out === "" ? "(top level)" : out;
}

/** Validate parsed JSON as an ExperimentResults; `source` (a file name) goes into every message. */
export function parseExperimentResults(json: unknown, source: string): ExperimentResults {
  const parsed = experimentResultsSchema.safeParse(json);
  if (!parsed.success) {
    const lines = parsed.error.issues.slice(0, 5).map((issue) => {
      let field = fieldName(issue.path);
      // Name the cell by id as well as by index: the runner's logs speak of ids.
      if (
        issue.path[0] === "cells" &&
        typeof issue.path[1] === "number" &&
        json &&
        typeof json === "object"
      ) {
        const cell = (json as { cells?: unknown[] }).cells?.[issue.path[1]];
        const id = cell && typeof cell === "object" ? (cell as { id?: unknown }).id : undefined;
        if (typeof id === "string") field += ` (cell id ${id})`;
      }
      return `field "${field}": ${issue.message}`;
    });
    const more = parsed.error.issues.length > 5 ? ` (and ${parsed.error.issues.length - 5} more)` : "";
    throw new InputError(`${source}: invalid experiment results: ${lines.join("; ")}${more}`);
  }
  const results = parsed.data;
  // Two cells for the same setting and seed would be averaged as if they were two seeds.
  const byId = new Map<string, number>();
  const bySetting = new Map<string, number>();
  results.cells.forEach((cell, i) => {
    const prev = byId.get(cell.id);
    if (prev !== undefined) {
      throw new InputError(`${source}: field "cells[${i}].id": id ${cell.id} repeats cells[${prev}].id`);
    }
    byId.set(cell.id, i);
    const setting = JSON.stringify([cell.model, cell.method, cell.ablation ?? null, cell.seed]);
    const prevSetting = bySetting.get(setting);
    if (prevSetting !== undefined) {
      throw new InputError(
        `${source}: field "cells[${i}]": same model, method, ablation and seed as cells[${prevSetting}] ` +
          `(${cell.model}, ${cell.method}, ${cell.ablation ?? "no ablation"}, seed ${cell.seed})`,
      );
    }
    bySetting.set(setting, i);
  });
  return results;
}

/** Read and validate a results JSON file. */
export function readExperimentResults(file: string): ExperimentResults {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new InputError(`${file}: cannot read results file: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  return parseExperimentResults(json, file);
}
