/**
 * The experiment file: one YAML that names models × methods × ablations × hyper-parameter grids × seeds, the data,
 * the judge and the evaluation settings. Validated with zod; every message names the file and the field.
 *
 * Harden settings (`defaults`, an ablation's `set`, a grid's `key`) use the keys of `goodvibe harden --set`,
 * nested (`train: {epochs: 2}`) or dotted (`train.epochs: 2`), and are checked against the same schema.
 */
import * as path from "node:path";
import { z } from "zod";
import { InputError } from "../errors.js";
import { applyOverrides, loadConfigFile } from "../config/resolve.js";
import { setPath } from "../util/overrides.js";
import { issueLines } from "../util/suggest.js";
import { normalizeLanguage, unknownLanguage } from "../data/languages.js";
import { METHODS, type Method } from "../report/schema.js";
import { PROMPT_FILTERS, PROMPT_SPREADS } from "../data/prompts.js";
import { CODE_BLOCK_CHOICES, type CodeBlockChoice } from "../data/code.js";
import { experimentJudgeSchema } from "../config/judge.js";
import { DEFAULT_ENABLE_THINKING } from "../io/chat-template.js";
import { DEFAULT_EVAL_BATCH, DEFAULT_MAX_NEW_TOKENS } from "../eval/config.js";

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const TRAINED = ["goodvibe", "lora", "full"] as const;
export type TrainedMethod = (typeof TRAINED)[number];
const trainedMethods = z
  .union([z.enum(TRAINED), z.array(z.enum(TRAINED)).min(1)])
  .transform((m) => (Array.isArray(m) ? m : [m]));

const utilitySchema = z.strictObject({
  /** ARC-Challenge (figure `arc_challenge`) */
  arc: z.string().min(1).optional(),
  /** ARC-Easy (figure `arc_easy`), asked and scored as ARC-Challenge */
  arcEasy: z.string().min(1).optional(),
  gsm8k: z.string().min(1).optional(),
  gsm8kTrain: z.string().min(1).optional(),
  mmlu: z.string().min(1).optional(),
  mmluDev: z.string().min(1).optional(),
  /** JSONL of {code, lang?} not trained on: the held-out real-code loss */
  code: z.string().min(1).optional(),
  /** a seeded subsample (the experiment's seed) of at most this many items per benchmark, `code`'s documents too */
  limit: posInt.optional(),
});

const evalSchema = z.strictObject({
  /** prompts answered per model: 0 (the paper's) = every held-out prompt; N = a budget, round-robin (promptSpread) */
  maxPrompts: nonNegInt.default(0),
  /** "security-words" (opt-in, named in the report) leaves out prompts that mention security; default none */
  promptFilter: z.enum(PROMPT_FILTERS).default("none"),
  /**
   * how a budget is spread: "language", or "task" (also over each language's tasks). Absent: "task" for a
   * task-held-out study with a budget (set by the plan), else "language"
   */
  promptSpread: z.enum(PROMPT_SPREADS).optional(),
  maxNewTokens: posInt.default(DEFAULT_MAX_NEW_TOKENS),
  batchSize: posInt.default(DEFAULT_EVAL_BATCH),
  /** seed of the evaluation (bootstrap intervals); the models' training seeds are `seeds` */
  seed: nonNegInt.default(0),
  utility: utilitySchema.optional(),
  /**
   * apply each model folder's generation_config.json (its repetition_penalty) as transformers' generate() does;
   * absent: DEFAULT_APPLY_GENERATION_CONFIG (eval/config.ts). Keyed per model where it changes answers (plan.ts)
   */
  generationConfig: z.boolean().optional(),
  /**
   * which of an answer's code blocks for the prompt's language both judges read: "longest" or "all" (joined; the
   * paper does not say). Absent: DEFAULT_CODE_BLOCKS (data/code.ts). Keyed only when not the default (plan.ts)
   */
  codeBlocks: z.enum(CODE_BLOCK_CHOICES as [CodeBlockChoice, ...CodeBlockChoice[]]).optional(),
});

export const experimentSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, "use letters, digits, '.', '_' or '-' (it names the output folder)"),
  /** default runs/<name> */
  out: z.string().min(1).optional(),
  models: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        /** the Hugging Face model folder (a user fills it in; `run` stops at once when it is missing) */
        path: z.string().min(1),
        /** config.json's fields as published: what `experiment plan` estimates from while the folder is absent */
        config: z.record(z.string(), z.unknown()).optional(),
      }),
    )
    .min(1),
  /**
   * One training per group of languages, each evaluated on its own languages' held-out prompts (the paper trains
   * and evaluates each language separately). Absent: one run on data.languages. Each may run a subset of the
   * methods and of the ablations and grids (by name; default all).
   */
  languageRuns: z
    .array(
      z.strictObject({
        name: z.string().regex(/^[^\s/]+$/, "a short label without spaces or slashes (it names report rows)"),
        languages: z.array(z.string().min(1)).min(1),
        methods: z.array(z.enum(METHODS)).min(1).optional(),
        studies: z.array(z.string().min(1)).optional(),
      }),
    )
    .min(1)
    .optional(),
  /** what `experiment plan` assumes where the data or the tokenizer is not there to count */
  estimate: z
    .strictObject({
      /** training pairs per language when the data file is absent (the paper: 424 per language) */
      pairsPerLanguage: posInt.default(424),
      /** tokens of one SFT example (prompt + answer) and of one judge prompt */
      exampleTokens: posInt.default(512),
      judgePromptTokens: posInt.default(512),
      /**
       * sustained training throughput (FLOP/s) for the time column; absent: the default for the device the run
       * would use (GOODVIBE_DEVICE), estimate.ts DEFAULT_FLOPS_PER_SECOND, which the plan prints beside the time
       */
      flopsPerSecond: z.number().positive().optional(),
    })
    .default({ pairsPerLanguage: 424, exampleTokens: 512, judgePromptTokens: 512 }),
  data: z.strictObject({
    train: z.string().min(1),
    dev: z.string().min(1),
    languages: z.array(z.string().min(1)).min(1).optional(),
    /**
     * Task-held-out study (task-split.ts): harden on some tasks of each language, evaluate on the others. The
     * pairs must name their task (`task`) and CWE (`cwe`).
     */
    taskSplit: z
      .strictObject({
        /** share of each language's tasks held out */
        heldOut: z.number().gt(0).lt(1).default(0.25),
        seed: nonNegInt.default(0),
        stratify: z.enum(["class", "cwe", "none"]).default("class"),
        /** evaluate on all pairs of the held-out tasks (train and dev files) or only on their dev pairs */
        evaluate: z.enum(["all", "dev"]).default("all"),
      })
      .optional(),
  }),
  /** no judge: the safe rate is measured by the rule judge only */
  judge: experimentJudgeSchema.optional(),
  eval: evalSchema.default(evalSchema.parse({})),
  methods: z.array(z.enum(METHODS)).min(1).default(["base", "goodvibe"]),
  seeds: z.array(nonNegInt).min(1).default([0]),
  defaults: z.record(z.string(), z.unknown()).default({}),
  ablations: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        method: trainedMethods.default(["goodvibe"]),
        set: z.record(z.string(), z.unknown()),
      }),
    )
    .default([]),
  grids: z
    .array(
      z.strictObject({
        /** the label prefix: cells are named "<name>=<value>" (the report knows threshold, topk, epochs) */
        name: z.string().min(1),
        method: trainedMethods.default(["goodvibe"]),
        key: z.string().min(1),
        values: z.array(z.union([z.number(), z.string(), z.boolean()])).min(1),
      }),
    )
    .default([]),
  /** keep each trained model folder after its evaluation (off saves disk on large models) */
  keepModels: z.boolean().default(true),
  /**
   * Qwen3's thinking switch (`enable_thinking`) for every prompt of the experiment: identification's judge prompts
   * and fine-tuning examples of every cell, the judge's training and prompts, every answer generated. Off by
   * default (io/chat-template.ts); the paper does not say. A template without the switch ignores it.
   */
  enableThinking: z.boolean().default(DEFAULT_ENABLE_THINKING),
});

export type ExperimentSpec = z.infer<typeof experimentSchema>;
export type { Method };

/** `{train: {epochs: 2}, "cluster.threshold": 0.1}` → fully nested, dotted keys expanded (a deep copy). */
export function nestSettings(settings: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (typeof v === "object" && v !== null && !Array.isArray(v)) walk(v as Record<string, unknown>, key);
      else setPath(out, key, structuredClone(v));
    }
  };
  walk(settings, "");
  return out;
}

function formatIssues(source: string, issues: readonly z.core.$ZodIssue[]): string {
  const lines = issueLines(experimentSchema, issues)
    .slice(0, 8)
    .map((l) => `  ${l}`);
  return `${source}: invalid experiment file:\n${lines.join("\n")}`;
}

/** Validate parsed YAML; `source` (the file name) goes into every message. */
export function parseExperimentSpec(json: unknown, source: string): ExperimentSpec {
  // the input in each issue: a misspelt option is named with the nearest one (util/suggest.ts)
  const r = experimentSchema.safeParse(json, { reportInput: true });
  if (!r.success) throw new InputError(formatIssues(source, r.error.issues));
  const spec = r.data;
  // each name with where it is given: a second one names both places
  const dup = (what: string, names: [string, string][]) => {
    const seen = new Map<string, string>();
    for (const [n, where] of names) {
      const first = seen.get(n);
      if (first !== undefined)
        throw new InputError(`${source}: ${where}: ${what} "${n}" appears twice (first at ${first})`);
      seen.set(n, where);
    }
  };
  dup(
    "model name",
    spec.models.map((m, i) => [m.name, `models[${i}].name`]),
  );
  // one folder under two names is computed once and reported twice: most likely a path not changed in a copy
  dup(
    "model folder",
    spec.models.map((m, i) => [path.resolve(m.path), `models[${i}].path (${m.name})`]),
  );
  dup(
    "method",
    spec.methods.map((m, i) => [m, `methods[${i}]`]),
  );
  dup(
    "seed",
    spec.seeds.map((s, i) => [String(s), `seeds[${i}]`]),
  );
  // the cells' labels: ablation names and grid values ("threshold=0.1"), one namespace in the report
  const labels: [string, string][] = [
    ...spec.ablations.map((a, i): [string, string] => [a.name, `ablations[${i}].name`]),
    ...spec.grids.flatMap((g, i) =>
      g.values.map((v, j): [string, string] => [
        gridLabel(g.name, v),
        `grids[${i}] (${g.name}).values[${j}]`,
      ]),
    ),
  ];
  dup("cell label", labels);
  spec.ablations.forEach((a, i) => {
    for (const m of a.method)
      if (!spec.methods.includes(m))
        throw new InputError(
          `${source}: ablations[${i}] (${a.name}) is for method ${m}, which is not in methods [${spec.methods.join(", ")}]`,
        );
  });
  (spec.languageRuns ?? []).forEach((r, i) => {
    for (const m of r.methods ?? [])
      if (!spec.methods.includes(m))
        throw new InputError(
          `${source}: languageRuns[${i}] (${r.name}) lists method ${m}, which is not in methods [${spec.methods.join(", ")}]`,
        );
    const studies = new Set([...spec.ablations.map((a) => a.name), ...spec.grids.map((g) => g.name)]);
    for (const s of r.studies ?? [])
      if (!studies.has(s))
        throw new InputError(
          `${source}: languageRuns[${i}] (${r.name}) lists study "${s}", which is no ablation or grid name ` +
            `(${[...studies].join(", ") || "none defined"})`,
        );
  });
  dup(
    "language run",
    (spec.languageRuns ?? []).map((r, i) => [r.name, `languageRuns[${i}].name`]),
  );
  spec.grids.forEach((g, i) => {
    for (const m of g.method)
      if (!spec.methods.includes(m))
        throw new InputError(
          `${source}: grids[${i}] (${g.name}) is for method ${m}, which is not in methods [${spec.methods.join(", ")}]`,
        );
  });
  // a misspelt language would be found only when the data is read (by the plan's counts, or the first cell)
  const knownLanguages = (where: string, names: readonly string[]) =>
    names.forEach((n, j) => {
      if (normalizeLanguage(n) === null)
        throw new InputError(`${source}: ${where}[${j}]: ${unknownLanguage(n)}`);
    });
  knownLanguages("data.languages", spec.data.languages ?? []);
  (spec.languageRuns ?? []).forEach((r, i) => knownLanguages(`languageRuns[${i}].languages`, r.languages));
  // what every cell's harden config gets from the experiment itself (plan.ts hardenConfigFor): a value given in
  // defaults, an ablation or a grid would be overwritten, the cells of a grid over it being one and the same cell
  const setByExperiment = (where: string, key: string) => {
    const k = Object.keys(SET_BY_EXPERIMENT).find((r) => key === r || key.startsWith(`${r}.`));
    if (k !== undefined)
      throw new InputError(
        `${source}: ${where}: set by the experiment itself, not here: ${SET_BY_EXPERIMENT[k]}`,
      );
  };
  for (const key of leafKeys(nestSettings(spec.defaults))) setByExperiment(`defaults.${key}`, key);
  spec.ablations.forEach((a, i) => {
    for (const key of leafKeys(nestSettings(a.set)))
      setByExperiment(`ablations[${i}] (${a.name}).set.${key}`, key);
  });
  spec.grids.forEach((g, i) => setByExperiment(`grids[${i}] (${g.name}).key ${g.key}`, g.key));
  // one thinking setting for the whole experiment: it reaches the judge and every answer, not only hardening
  const thinkingAt = [
    ...(Object.keys(nestSettings(spec.defaults)).includes("enableThinking")
      ? ["defaults.enableThinking"]
      : []),
    ...spec.ablations.flatMap((a, i) =>
      Object.keys(nestSettings(a.set)).includes("enableThinking")
        ? [`ablations[${i}].set.enableThinking`]
        : [],
    ),
    ...spec.grids.flatMap((g, i) => (g.key === "enableThinking" ? [`grids[${i}].key`] : [])),
  ];
  if (thinkingAt.length > 0)
    throw new InputError(
      `${source}: ${thinkingAt[0]}: Qwen3's thinking switch is one setting of the whole experiment (it reaches ` +
        `the judge and every generated answer too): set the top-level enableThinking`,
    );
  return spec;
}

/**
 * The harden settings an experiment sets in every cell itself, with where a user sets them instead (plan.ts
 * hardenConfigFor writes them over whatever defaults, an ablation or a grid gave).
 */
const SET_BY_EXPERIMENT: Record<string, string> = {
  model: "each model's folder is models[].path",
  data: "the pairs are data.train (and data.dev)",
  out: "cells are written under the experiment's output folder (--out)",
  runDir: "cells are written under the experiment's output folder (--out)",
  method: "methods, and an ablation's or grid's method",
  seed: "seeds (each seed is a cell of its own)",
  "train.seed": "seeds (each cell trains with its seed)",
  languages: "data.languages, or languageRuns for one training per group of languages",
};

/** The dotted paths of a nested settings object's leaves (`{train: {epochs: 2}}` → `train.epochs`). */
function leafKeys(obj: Record<string, unknown>, prefix = ""): string[] {
  return Object.entries(obj).flatMap(([k, v]) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? leafKeys(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}`],
  );
}

export function gridLabel(name: string, value: unknown): string {
  return `${name}=${String(value)}`;
}

/**
 * Read an experiment YAML file and apply `--set key=value` overrides (values parsed as YAML) through the one
 * config resolver (src/config/resolve.ts), then validate.
 */
export function loadExperimentSpec(file: string, sets: readonly string[] = []): ExperimentSpec {
  return parseExperimentSpec(
    applyOverrides(loadConfigFile(file, "experiment file"), {}, sets),
    experimentSource(file, sets),
  );
}

/**
 * How messages name the experiment: the file, and the --set overrides laid over it, since a bad value may be one
 * of theirs ("organism.yaml with --set defaults.train.lr=null: defaults: invalid harden setting: ...").
 */
export function experimentSource(file: string, sets: readonly string[] = []): string {
  return sets.length ? `${file} with ${sets.map((s) => `--set ${s}`).join(", ")}` : file;
}
