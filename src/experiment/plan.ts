/**
 * From an experiment spec to its cells, in a stable order: per model the base cell, then per seed each trained
 * method, then per seed each method's ablations and grid values. Each cell has a content hash of everything that determines its
 * result (model and data bytes, the harden config without output paths, evaluation settings, judge, seed, code
 * version): the cache key of its result file and work folder. Names (model name, ablation label) and the output
 * folder are not part of it, so renaming or moving an experiment reuses its finished cells.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { checkModelWeights } from "../io/safetensors.js";
import { loadModelConfig, type ModelConfig } from "../io/config.js";
import { canonicalJson, fileHash, modelFolderHash, sha256 } from "../io/hash.js";
import { answerTokensKey, promptsKey } from "../io/tokenizer-json.js";
import { thinkingKey } from "../io/chat-template.js";
import { generationConfigProcessors, greedyProcessorKey } from "../eval/generate/generation-config.js";
import { DEFAULT_APPLY_GENERATION_CONFIG } from "../eval/config.js";
import { HARNESS_FEWSHOT_SEED } from "../eval/utility/gsm8k.js";
import { hardenConfigOf, type HardenConfig } from "../config/harden.js";
import type { Method } from "../report/schema.js";
import { gridLabel, nestSettings, type ExperimentSpec, type TrainedMethod } from "./spec.js";
import { setPath } from "../util/overrides.js";
import { checkClusterSettings } from "../method/goodvibe/clustering.js";
import { checkTopK } from "../method/goodvibe/identify.js";
import { ModelShape } from "../models/shapes.js";
import { judgeConvention, sameJudgeConvention, type JudgeConvention } from "../data/prompts.js";
import { computeTaskSplit, writeTaskSplit, type TaskSplitRecord } from "./task-split.js";
import { judgeTrainSettings } from "../config/judge.js";
import { DEFAULT_JUDGE_TRAIN, type JudgeTrainConfig } from "../eval/judge/config.js";
import { checkpointingKey, dropoutMasksKey, keyedTraining } from "../method/checkpointing.js";
import { DEFAULT_LORA } from "../method/lora/config.js";
import { labelConflicts, readPairs, subsamplePairs, type SecurityPair } from "../data/pairs.js";
import { DEFAULT_CODE_BLOCKS } from "../data/code.js";

/** Bump when a change in this code or the recipes changes what a cell computes: every cell reruns. */
// 2: bf16 mixed precision for every method by default; one shared row for a layer below the silhouette threshold
// 3: the paper's judge instruction and labels (1 = unsafe); cells and judges of earlier versions are not reused
export const EXPERIMENT_CODE_VERSION = "goodvibe-experiment/3";

/** A judge's checkpointing as its key leaves it out: true, the default when judge keys were made without it. */
const JUDGE_CHECKPOINTING_UNKEYED = true;

/** The setting a grid varies (its name, harden key and this cell's value). */
export interface CellStudy {
  name: string;
  key: string;
  value: number | string | boolean;
}

/** A cell before hashing: what to train and evaluate. */
export interface CellSetting {
  model: { name: string; path: string };
  /** the language run (spec.languageRuns) the cell belongs to: trained and evaluated on these languages only */
  run?: { name: string; languages: string[] };
  method: Method;
  ablation?: string;
  /** a grid's cell: which setting it varies and its value here (the report reads it, not the label) */
  study?: CellStudy;
  seed: number;
  /** null for the base model (evaluated, not trained) */
  harden: HardenConfig | null;
}

export interface PlannedCell extends CellSetting {
  /** sha256 (hex) of the canonical JSON of `inputs` */
  key: string;
  /** the id in results.json: the key's first 16 hex digits */
  id: string;
  /** what the key hashes, kept beside the work folder for inspection */
  inputs: unknown;
  /** runs/<name>/work/<key>/ (or an alias's, see `aliases`) — harden run folder, trained model, safety cache */
  workDir: string;
  /** runs/<name>/cells/<key>.json — present = finished */
  cellFile: string;
  /**
   * The keys earlier code gave this cell's inputs (legacyHardenInputs), where they differ from `key`, with their
   * result files: a result filed under one is this cell's (isCellDone, readCell). An alias's work folder is the
   * cell's `workDir` while no folder of the key itself exists, so a cell interrupted under it resumes there.
   */
  aliases: { key: string; cellFile: string }[];
  /** the key of this model's base cell (McNemar tests compare against its evaluation) */
  baseKey: string;
  /** the judge's cache key, or null without an LLM judge */
  judgeKey: string | null;
}

export interface ExperimentPlan {
  spec: ExperimentSpec;
  outDir: string;
  cells: PlannedCell[];
  /** per judge key: how to get the judge (a folder, or a training job cached under work/judges/<key>) */
  judges: Map<string, JudgeSource>;
  /**
   * "independent": one judge for every cell (the paper's protocol); "self": each model's own checkpoint
   * fine-tuned as the judge of its cells; null without an LLM judge.
   */
  judgeMode: "independent" | "self" | null;
  /** The judge instruction and labels of the whole experiment (identification and the LLM judge alike). */
  convention: JudgeConvention;
  /** the task split that made spec.data's files (data.taskSplit), as written to <out>/split/split.json */
  taskSplit?: TaskSplitRecord;
  /**
   * A plan that writes nothing (`experiment plan`): the text of each pair file it names but has not written (the
   * task split's training pairs), by absolute path, for whatever counts them (estimate.ts plannedSchedules).
   */
  unwritten?: ReadonlyMap<string, string>;
}

export type JudgeSource =
  | { kind: "path"; path: string; base?: string; dir: string }
  | {
      kind: "train";
      base: string;
      /** labelled pairs it is trained on */
      data: string;
      /** the experiment model this judge judges (self-judging only) */
      model?: string;
      /** how it is trained (the judge's typed config, defaults filled in) */
      settings: JudgeTrainConfig;
      dir: string;
    };

/** A harden config from the experiment's defaults plus a cell's overrides, validated like `harden --set`. */
export function hardenConfigFor(
  spec: ExperimentSpec,
  source: string,
  model: { path: string },
  method: TrainedMethod,
  seed: number,
  overrides: Record<string, unknown>,
  where: string,
  languages: string[] | undefined = spec.data.languages,
): HardenConfig {
  // overrides replace single leaves of the defaults (cluster.threshold), not whole sections (cluster)
  const flat = (obj: Record<string, unknown>, prefix = ""): [string, unknown][] =>
    Object.entries(obj).flatMap(([k, v]) =>
      typeof v === "object" && v !== null && !Array.isArray(v)
        ? flat(v as Record<string, unknown>, `${prefix}${k}.`)
        : [[`${prefix}${k}`, v] as [string, unknown]],
    );
  const cfgIn = nestSettings(spec.defaults);
  for (const [k, v] of flat(nestSettings(overrides))) setPath(cfgIn, k, v);
  Object.assign(cfgIn, { model: model.path, data: spec.data.train, out: "(cell)", method, seed });
  if (languages) cfgIn.languages = languages;
  cfgIn.enableThinking = spec.enableThinking;
  const c = hardenConfigOf(cfgIn, `${source}: ${where}: invalid harden setting`);
  if (method === "goodvibe") checkClusterSettings(c.cluster, c.identify, `${source}: ${where}`);
  // The seed axis drives every random choice of training: data subsample and order (and LoRA init via train.seed).
  return { ...c, runDir: "(cell)", train: { ...c.train, seed } };
}

/** Every cell of the experiment, before hashing, in run order. */
export function expandCells(spec: ExperimentSpec, source = "experiment"): CellSetting[] {
  const cells: CellSetting[] = [];
  const runs: (CellSetting["run"] | undefined)[] = spec.languageRuns
    ? spec.languageRuns.map((r) => ({ name: r.name, languages: r.languages }))
    : [undefined];
  for (const model of spec.models) {
    for (const [ri, run] of runs.entries()) {
      const lr = spec.languageRuns?.[ri];
      const methods = lr?.methods ?? spec.methods;
      const trained = methods.filter((m): m is TrainedMethod => m !== "base");
      const studies = lr?.studies ? new Set(lr.studies) : null;
      const languages = run?.languages ?? spec.data.languages;
      const where = (w: string) => (run ? `languageRuns (${run.name}) ${w}` : w);
      const runPart = run ? { run } : {};
      // The base model is not trained: one cell per model (and language run), whatever the seeds (greedy evaluation).
      if (methods.includes("base"))
        cells.push({ model, ...runPart, method: "base", seed: spec.seeds[0]!, harden: null });
      const at = (
        method: TrainedMethod,
        seed: number,
        ablation: string | undefined,
        overrides: Record<string, unknown>,
        w: string,
        study?: CellStudy,
      ) =>
        cells.push({
          model,
          ...runPart,
          method,
          ...(ablation !== undefined ? { ablation } : {}),
          ...(study ? { study } : {}),
          seed,
          harden: hardenConfigFor(spec, source, model, method, seed, overrides, where(w), languages),
        });
      // The main comparison first (every method, every seed), then the ablations and grids: a run cut short
      // still has the headline table.
      for (const seed of spec.seeds)
        for (const method of trained) at(method, seed, undefined, {}, "defaults");
      for (const seed of spec.seeds) {
        for (const method of trained) {
          spec.ablations.forEach((a, i) => {
            if (studies && !studies.has(a.name)) return;
            if (a.method.includes(method)) at(method, seed, a.name, a.set, `ablations[${i}] (${a.name})`);
          });
          spec.grids.forEach((g, i) => {
            if (!g.method.includes(method) || (studies && !studies.has(g.name))) return;
            for (const v of g.values)
              at(method, seed, gridLabel(g.name, v), { [g.key]: v }, `grids[${i}] (${g.name}=${String(v)})`, {
                name: g.name,
                key: g.key,
                value: v,
              });
          });
        }
      }
    }
  }
  return cells;
}

/** The model as results and reports name it: with the language run when there are several. */
export function cellModelLabel(c: Pick<CellSetting, "model" | "run">): string {
  return c.run ? `${c.model.name} (${c.run.name})` : c.model.name;
}

/**
 * The harden settings the cell's method reads (recipes/harden.ts), without what only says where files go (model and
 * data are hashed by content instead): GoodVibe identifies, clusters and trains; LoRA attaches adapters and trains;
 * full fine-tuning trains. Another method's section is not an input: changing defaults.identify, or a grid over it,
 * leaves LoRA's and full fine-tuning's cells as they are. When training saves its state (checkpointEvery) does not
 * change the weights; harden's own train slot leaves it out too.
 */
function hardenInputs(cfg: HardenConfig): unknown {
  // the thinking switch is the experiment's, keyed beside the model (thinkingKey), not here
  const {
    model: _m,
    data: _d,
    out: _o,
    runDir: _r,
    enableThinking: _t,
    identify,
    cluster,
    lora,
    ...rest
  } = cfg;
  const { checkpointEvery: _e, ...train } = rest.train;
  return {
    ...rest,
    ...(cfg.method === "goodvibe" ? { identify, cluster } : {}),
    ...(cfg.method === "lora" ? { lora } : {}),
    // "auto" checkpointing keyed as the default it replaced (finished cells keep their keys); LoRA's dropout mark
    ...keyedTraining(train, cfg.method === "lora" ? lora : null, cfg.method),
  };
}

/**
 * What makes two cells one computation, from their settings alone (no file read: `experiment plan` counts with it
 * where the inputs are missing): the model folder, the language run, the method and the harden settings it reads.
 */
export function cellComputation(c: CellSetting): string {
  return canonicalJson([
    c.model.path,
    c.run?.languages ?? null,
    c.method,
    c.harden && hardenInputs(c.harden),
  ]);
}

/**
 * The harden inputs as cells were keyed before 2026-12-02: every section, whatever the method, and checkpointEvery.
 * A cell's key under them is an alias of its key (PlannedCell.aliases): its result and work folder, made before,
 * are found, not computed again. Frozen: it says what the earlier code hashed.
 */
function legacyHardenInputs(cfg: HardenConfig): unknown {
  const { model: _m, data: _d, out: _o, runDir: _r, enableThinking: _t, ...rest } = cfg;
  // a weight-decayed full fine-tuning's mark makes its alias miss: such earlier cells decayed biases and norms
  return { ...rest, ...keyedTraining(rest.train, rest.method === "lora" ? rest.lora : null, rest.method) };
}

function evalInputs(spec: ExperimentSpec): unknown {
  // generationConfig is keyed per model, where a folder's penalty applies (generationConfigKey), not here
  const { utility, generationConfig: _g, codeBlocks, ...rest } = spec.eval;
  const files = utility
    ? Object.fromEntries(
        Object.entries(utility).map(([k, v]) => [k, typeof v === "string" ? fileHash(v) : v]),
      )
    : null;
  // --code's documents follow `limit` since 2026-12-01 (it was ignored there): a cell with both is keyed anew, so
  // an experiment never mixes cells of every document with cells of a subsample; any other cell keeps its key
  const codeSubsample = utility?.code !== undefined && utility.limit !== undefined;
  // GSM8K's few-shot questions take their shots as lm-evaluation-harness draws them since 2026-12-01 (before: the
  // first 5 for all; eval/utility/gsm8k.ts): a cell with them is keyed anew, so an experiment never compares a
  // cell asked one way with a base asked the other; a 0-shot GSM8K (no gsm8kTrain) keeps its key
  const gsm8kShots = utility?.gsm8k !== undefined && utility.gsm8kTrain !== undefined;
  // the judges' reading of answers with several code blocks (SafetyOptions.codeBlocks, since 2026-12-02): keyed only
  // when not the default, which every cell finished before was judged with, so those keep their keys
  const blocks = codeBlocks ?? DEFAULT_CODE_BLOCKS;
  return {
    ...rest,
    ...(blocks !== DEFAULT_CODE_BLOCKS ? { codeBlocks: blocks } : {}),
    utility: files,
    ...(codeSubsample ? { codeDocuments: "subsample of limit" } : {}),
    ...(gsm8kShots ? { gsm8kShots: `harness sampler, seed ${HARNESS_FEWSHOT_SEED}` } : {}),
  };
}

/**
 * Every input the experiment names that is not there, one message each naming the field, the model and the path:
 * model folders (config.json), data files, the judge's folder or base, utility files.
 */
export function missingInputs(spec: ExperimentSpec, source = "experiment"): string[] {
  const out: string[] = [];
  const folder = (p: string) => fs.existsSync(path.join(p, "config.json"));
  spec.models.forEach((m, i) => {
    if (!folder(m.path))
      out.push(
        `${source}: model "${m.name}": no checkpoint at ${path.resolve(m.path)} (models[${i}].path): put its ` +
          `Hugging Face folder (config.json, *.safetensors, tokenizer.json) there or correct the path`,
      );
    // every cell of the model tokenizes with it: missing, the run would stop at this model's first cell, after
    // the cells of the models before it
    else if (!fs.existsSync(path.join(m.path, "tokenizer.json")))
      out.push(
        `${source}: model "${m.name}": no tokenizer.json in ${path.resolve(m.path)} (models[${i}].path): a fast ` +
          `Hugging Face tokenizer is required; copy the checkpoint's tokenizer.json there`,
      );
    // weights missing or cut short (a shard the index names absent, an interrupted download) are found here, from
    // the index, the headers and the files' sizes, not when the model's first cell loads them
    else {
      const bad = weightsProblem(m.path);
      if (bad) out.push(`${source}: model "${m.name}" (models[${i}].path): ${bad}`);
    }
  });
  for (const k of ["train", "dev"] as const)
    if (!fs.existsSync(spec.data[k]))
      out.push(`${source}: data.${k}: no file at ${path.resolve(spec.data[k])}`);
  const j = spec.judge;
  const judgeFolder = (field: string, p: string) => {
    if (!folder(p)) return out.push(`${source}: ${field}: no model folder at ${path.resolve(p)}`);
    const bad = weightsProblem(p);
    if (bad) out.push(`${source}: ${field}: ${bad}`);
  };
  if (j?.path !== undefined) judgeFolder("judge.path", j.path);
  if (j?.base !== undefined) judgeFolder("judge.base", j.base);
  if (j?.train && j.train.base !== "self") judgeFolder("judge.train.base", j.train.base);
  if (j?.train?.data !== undefined && !fs.existsSync(j.train.data))
    out.push(`${source}: judge.train.data: no file at ${path.resolve(j.train.data)}`);
  for (const [k, v] of Object.entries(spec.eval.utility ?? {}))
    if (typeof v === "string" && !fs.existsSync(v))
      out.push(`${source}: eval.utility.${k}: no file at ${path.resolve(v)}`);
  return out;
}

/** What is wrong with a model folder's weights (checkModelWeights's message, naming the file), or null. */
function weightsProblem(dir: string): string | null {
  try {
    checkModelWeights(dir);
    return null;
  } catch (e) {
    if (e instanceof InputError) return e.message;
    throw e;
  }
}

/**
 * A model's config.json, read and checked as loading the model will (a supported family, its fields), the error
 * naming the experiment file, the model and its `models[i].path` besides the config file.
 */
export function modelConfigOf(
  model: ExperimentSpec["models"][number],
  index: number,
  source: string,
): ModelConfig {
  try {
    return loadModelConfig(model.path);
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    throw new InputError(`${source}: model "${model.name}" (models[${index}].path): ${e.message}`, {
      cause: e,
    });
  }
}

/**
 * Every GoodVibe cell's identify.topK within its model's range, read from the model's config.json (no weight is
 * read, the libtorch addon is not loaded): a cell asking past its smallest module stops `experiment run` and
 * `experiment plan` before any cell, the message naming the cell, not the run at that cell after the cells before
 * it. Not part of planExperiment: a plan's keys do not depend on it (key tests plan cells that never run).
 */
export function checkCellsTopK(spec: ExperimentSpec, source = "experiment"): void {
  // a model folder without config.json is a missing input, which planExperiment names with the others
  const shapes = new Map(
    spec.models.flatMap((m, i) =>
      fs.existsSync(path.join(m.path, "config.json"))
        ? [[m.path, new ModelShape(modelConfigOf(m, i, source))] as const]
        : [],
    ),
  );
  for (const s of expandCells(spec, source)) {
    const shape = shapes.get(s.model.path);
    if (s.method !== "goodvibe" || !s.harden || !shape) continue;
    try {
      checkTopK(shape, s.harden.identify.topK);
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      throw new InputError(`${source}: cell ${describeCell(s)}: ${e.message}`, { cause: e });
    }
  }
}

/** The experiment's output folder: --out, else the file's `out`, else runs/<name>. */
export function experimentOutDir(spec: ExperimentSpec, out?: string): string {
  return path.resolve(out ?? spec.out ?? path.join("runs", spec.name));
}

/** Expand and hash. Reads (and hashes) every model, data and utility file the experiment names. */
export function planExperiment(
  spec: ExperimentSpec,
  opts: {
    out?: string;
    source?: string;
    /** false: a task split is computed but not written into the output folder (`experiment plan`) */
    write?: boolean;
  } = {},
): ExperimentPlan {
  const source = opts.source ?? "experiment";
  // stop before any work with the first missing input named (`experiment plan` lists them all)
  const missing = missingInputs(spec, source);
  if (missing.length > 0)
    throw new InputError(
      missing[0]! +
        (missing.length > 1
          ? ` (and ${missing.length - 1} more missing input(s); \`goodvibe experiment plan\` lists them)`
          : ""),
    );
  // a model of a family this tool cannot load, or a broken config.json, stops the run before any cell, not at the
  // model's first cell after the cells of the models before it
  spec.models.forEach((m, i) => modelConfigOf(m, i, source));
  const outDir = experimentOutDir(spec, opts.out);
  let taskSplit: TaskSplitRecord | undefined;
  // content hashes of the split's files when they are planned but not written
  const planned = new Map<string, string>();
  const plannedText = new Map<string, string>();
  if (spec.data.taskSplit) {
    // the split's two pair files replace data.train and data.dev for every cell (and key them by content)
    const { taskSplit: settings, ...data } = spec.data;
    const dir = path.join(outDir, "split");
    if (opts.write === false) {
      const split = computeTaskSplit(data, settings, dir);
      taskSplit = split.record;
      planned.set(path.resolve(taskSplit.files.train), taskSplit.files.sha256.train);
      planned.set(path.resolve(taskSplit.files.dev), taskSplit.files.sha256.dev);
      plannedText.set(path.resolve(taskSplit.files.train), split.texts.train);
    } else taskSplit = writeTaskSplit(data, settings, dir);
    spec = { ...spec, data: { ...data, train: taskSplit.files.train, dev: taskSplit.files.dev } };
    // a budget spreads over the held-out tasks, else it takes the first tasks of each language (part of the key)
    if (spec.eval.maxPrompts > 0 && spec.eval.promptSpread === undefined)
      spec = { ...spec, eval: { ...spec.eval, promptSpread: "task" } };
  }
  const dataHash = (file: string): string => planned.get(path.resolve(file)) ?? fileHash(file);
  // whether the pairs a judge trains on label some code both ways (judge training leaves such code out since
  // e307cb7): only then is its key moved, so a judge trained on clean data keeps its key
  const conflicts = new Map<string, boolean>();
  const hasLabelConflicts = (file: string, maxPairs: number): boolean => {
    const k = `${dataHash(file)}\0${maxPairs}`;
    let c = conflicts.get(k);
    if (c === undefined) {
      const pairs = readPairsOf(file, plannedText.get(path.resolve(file)), spec.data.languages);
      conflicts.set(k, (c = labelConflicts(subsamplePairs(pairs, maxPairs)).size > 0));
    }
    return c;
  };
  const settings = expandCells(spec, source);
  const modelHash = new Map(spec.models.map((m) => [m.name, modelFolderHash(m.path)]));
  const data = {
    train: dataHash(spec.data.train),
    dev: dataHash(spec.data.dev),
    languages: spec.data.languages ?? null,
  };
  const evalIn = evalInputs(spec);
  // the repetition penalty a model folder's answers apply (generation_config.json), only where one is: cells
  // evaluated before it was applied are computed again for such a model alone; every other cell keeps its key
  const applyGenerationConfig = spec.eval.generationConfig ?? DEFAULT_APPLY_GENERATION_CONFIG;
  const generationConfigKey = (dir: string) =>
    greedyProcessorKey(generationConfigProcessors(dir, applyGenerationConfig));
  // one judge convention per experiment: identification of every cell and the LLM judge
  let convention: JudgeConvention | undefined;
  for (const s of settings) {
    if (!s.harden) continue;
    const c = judgeConvention(s.harden.identify.judgeTask, `${source}: identify.judgeTask`);
    if (convention && !sameJudgeConvention(convention, c))
      throw new InputError(
        `${source}: identify.judgeTask differs between cells (${describeCell(s)}); one experiment uses one ` +
          `judge instruction and label mapping, set it in defaults.identify.judgeTask`,
      );
    convention ??= c;
  }
  convention ??= judgeConvention(
    hardenConfigFor(spec, source, spec.models[0]!, "goodvibe", 0, {}, "defaults").identify.judgeTask,
    `${source}: identify.judgeTask`,
  );
  const judges = new Map<string, JudgeSource>();
  const judgeMode = !spec.judge ? null : spec.judge.train?.base === "self" ? "self" : "independent";
  const judgeKeyFor = (model: { path: string; name: string }): string | null => {
    const j = spec.judge;
    if (!j) return null;
    let key: string;
    let src: JudgeSource;
    if (j.path !== undefined) {
      key = sha256(
        canonicalJson({
          version: EXPERIMENT_CODE_VERSION,
          judge: modelFolderHash(j.path),
          convention,
          // its prompts end with the labels' shared tokens since 6038b4c (answerTokensKey); no answer's end
          ...promptsKey(j.path),
          // a plain checkpoint is asked with the experiment's thinking setting (a trained judge's record decides)
          ...thinkingKey(j.path, spec.enableThinking),
        }),
      );
      src = {
        kind: "path",
        path: j.path,
        ...(j.base ? { base: j.base } : {}),
        dir: path.join(outDir, "work", "judges", key),
      };
    } else {
      const t = j.train!;
      const self = t.base === "self";
      const base = self ? model.path : t.base;
      const judgeData = t.data ?? spec.data.train;
      const settings = judgeTrainSettings(t, spec.enableThinking);
      // all pairs (maxPairs 0), seed and checkpointing at their defaults are left out of the key, as they were
      // before these were settings: judges trained then keep their keys. Checkpointing is keyed as it was when
      // true was its default ("auto" as true: the same weights), so a judge trained then keeps its key
      const { maxPairs, seed, gradientCheckpointing: checkpointing, enableThinking, ...keyed } = settings;
      const gradientCheckpointing = checkpointingKey(checkpointing);
      const inputs = {
        version: EXPERIMENT_CODE_VERSION,
        convention,
        base: self ? modelHash.get(model.name) : modelFolderHash(base),
        train: dataHash(judgeData),
        languages: data.languages,
        // its targets: the labels as they follow the prompt since 6038b4c (answerTokensKey)
        ...answerTokensKey(base),
        // examples rendered with thinking on: only where the base's template has the switch
        ...thinkingKey(base, enableThinking),
        ...keyed,
        ...(maxPairs ? { maxPairs } : {}),
        ...(seed !== DEFAULT_JUDGE_TRAIN.seed ? { seed } : {}),
        ...(gradientCheckpointing !== JUDGE_CHECKPOINTING_UNKEYED ? { gradientCheckpointing } : {}),
        // a LoRA judge (the default, DEFAULT_LORA's dropout) trained before its masks were kept is retrained
        ...(settings.method === "lora" ? dropoutMasksKey(DEFAULT_LORA.dropout, checkpointing) : {}),
        ...(hasLabelConflicts(judgeData, maxPairs) ? { labelConflicts: "left out" } : {}),
      };
      key = sha256(canonicalJson(inputs));
      src = {
        kind: "train",
        base,
        data: judgeData,
        ...(self ? { model: model.name } : {}),
        settings,
        dir: path.join(outDir, "work", "judges", key),
      };
    }
    judges.set(key, src);
    return key;
  };

  const baseInputs = (
    model: { name: string; path: string },
    judgeKey: string | null,
    languages: string[] | null,
  ) => ({
    version: EXPERIMENT_CODE_VERSION,
    kind: "base",
    model: modelHash.get(model.name),
    // held-out losses and training read answers as they follow the prompt since 6038b4c (answerTokensKey)
    ...answerTokensKey(model.path),
    // answers generated (and held-out losses read) with thinking on: only where the template has the switch
    ...thinkingKey(model.path, spec.enableThinking),
    ...generationConfigKey(model.path),
    dev: data.dev,
    languages,
    eval: evalIn,
    judge: judgeKey,
  });
  const keyed = settings.map((s) => {
    const judgeKey = judgeKeyFor(s.model);
    const languages = s.run?.languages ?? data.languages;
    const baseKey = sha256(canonicalJson(baseInputs(s.model, judgeKey, languages)));
    const trained = (harden: unknown) => ({
      version: EXPERIMENT_CODE_VERSION,
      kind: "trained",
      model: modelHash.get(s.model.name),
      ...answerTokensKey(s.model.path),
      // the cell's judge prompts, fine-tuning examples and answers: as the base cell's
      ...thinkingKey(s.model.path, spec.enableThinking),
      // its folded model carries the base's generation_config.json
      ...generationConfigKey(s.model.path),
      data,
      harden,
      eval: evalIn,
      judge: judgeKey,
      // McNemar against the base: the base cell's inputs matter too
      base: baseKey,
      seed: s.seed,
    });
    const inputs =
      s.harden === null ? baseInputs(s.model, judgeKey, languages) : trained(hardenInputs(s.harden));
    const key = sha256(canonicalJson(inputs));
    const legacy = s.harden === null ? key : sha256(canonicalJson(trained(legacyHardenInputs(s.harden))));
    return { s, judgeKey, baseKey, inputs, key, legacy };
  });
  // every alias of a key, over all its cells (the same inputs under names that earlier code keyed apart)
  const aliasesOf = new Map<string, string[]>();
  for (const { key, legacy } of keyed) {
    const a = aliasesOf.get(key) ?? [];
    if (legacy !== key && !a.includes(legacy)) a.push(legacy);
    aliasesOf.set(key, a);
  }
  const cellFileOf = (key: string) => path.join(outDir, "cells", `${key}.json`);
  // the key's own work folder, else the first alias's that exists (a cell begun by earlier code), else its own
  const workDirOf = (key: string): string => {
    const own = path.join(outDir, "work", key);
    if (fs.existsSync(own)) return own;
    const begun = aliasesOf
      .get(key)!
      .map((a) => path.join(outDir, "work", a))
      .find((d) => fs.existsSync(d));
    return begun ?? own;
  };
  const cells: PlannedCell[] = keyed.map(({ s, judgeKey, baseKey, inputs, key }) => {
    const workDir = workDirOf(key);
    const harden = s.harden
      ? { ...s.harden, out: path.join(workDir, "model"), runDir: path.join(workDir, "run") }
      : null;
    return {
      ...s,
      harden,
      key,
      id: key.slice(0, 16),
      inputs,
      workDir,
      cellFile: cellFileOf(key),
      aliases: aliasesOf.get(key)!.map((a) => ({ key: a, cellFile: cellFileOf(a) })),
      baseKey,
      judgeKey,
    };
  });
  return {
    spec,
    outDir,
    cells,
    judges,
    judgeMode,
    convention,
    ...(taskSplit ? { taskSplit } : {}),
    ...(plannedText.size > 0 ? { unwritten: plannedText } : {}),
  };
}

/**
 * Throw when a model, data or judge folder named by the plan no longer has the content it had when the plan was
 * made: cells computed after such a change would be filed under the old content's keys.
 */
export function checkInputsUnchanged(plan: ExperimentPlan, source = "experiment"): void {
  const again = planExperiment(plan.spec, { out: plan.outDir, source });
  for (const [i, c] of plan.cells.entries()) {
    if (again.cells[i]!.key !== c.key)
      throw new InputError(
        `${source}: an input of cell ${c.id} (${describeCell(c)}) changed while the experiment ran ` +
          `(a model, data, judge or utility file was rewritten); rerun to compute the cells of the new content`,
      );
  }
}

/**
 * Whether a cell's result file exists, under its key or an alias (it is written atomically, so existing = finished).
 */
export function isCellDone(cell: PlannedCell): boolean {
  return cellFileFound(cell) !== null;
}

/** The cell's result file: its own, else the first alias's that exists, else null. */
export function cellFileFound(cell: Pick<PlannedCell, "cellFile" | "aliases">): string | null {
  return [cell.cellFile, ...cell.aliases.map((a) => a.cellFile)].find((f) => fs.existsSync(f)) ?? null;
}

/** A one-line description of a cell for logs and `experiment plan`. */
export function describeCell(c: CellSetting): string {
  return `${cellModelLabel(c)} ${c.method}${c.ablation ? ` [${c.ablation}]` : ""}${c.method === "base" ? "" : ` seed ${c.seed}`}`;
}

/** The pairs of a data file, or of its text where the file is planned but not written (a task split). */
/** The pairs of `file`, or of `text` when given (a file planned but not written), as readPairs reads them. */
export function readPairsOf(
  file: string,
  text: string | undefined,
  languages: string[] | undefined,
): SecurityPair[] {
  const opts = languages ? { languages } : {};
  if (text === undefined) return readPairs(file, opts);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gv-plan-"));
  try {
    const f = path.join(dir, path.basename(file));
    fs.writeFileSync(f, text);
    return readPairs(f, opts);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
