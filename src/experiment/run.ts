/**
 * Running an experiment: every planned cell in order, each skipped when its result file exists. A cell's stages
 * cache under runs/<name>/work/<key>/ (harden's run folder, the trained model, the safety generations), so a
 * killed run resumes inside the cell it was in. GoodVibe cells that differ only after identification share one
 * neuron map (work/identify/<key>/). When every cell is done: results.json (validated) and the report.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InterruptedError } from "../errors.js";
import { stopRequested } from "../util/stop.js";
import { writeFileAtomic } from "../io/atomic.js";
import { loadedParamCount } from "../models/load.js";
import { pairOverlap, readPairs, type SecurityPair } from "../data/pairs.js";
import type { HardenConfig } from "../config/harden.js";
import { CLUSTERS_FILE, NEURONS_FILE, RUN_FILES, planStages, runHarden } from "../recipes/harden.js";
import { silentLogger, type Logger } from "../util/log.js";
import {
  checkUtilityFiles,
  evaluateModel,
  evaluationInfo,
  evaluationProtocol,
  securityCell,
  type ModelEvaluation,
} from "../recipes/evaluate.js";
import { LlmJudge } from "../eval/judge/llm.js";
import {
  ensureJudgeTrained,
  judgeInfo,
  judgeTrainingPairs,
  measureJudgeReliability,
  overlapWithTraining,
  recordedJudgeBase,
  type JudgeTraining,
} from "../recipes/judge.js";
import { describeJudgeConvention } from "../data/prompts.js";
import { readNeuronMap } from "../method/goodvibe/neuron-map.js";
import { readClusterMap } from "../method/goodvibe/clustering.js";
import type { FoldStats } from "../method/fold.js";
import type { ScheduleRecord, TrainResult } from "../method/train.js";
import type { CheckpointingRecord } from "../method/checkpointing.js";
import {
  cellResultSchema,
  parseExperimentResults,
  type CellResult,
  type ExperimentResults,
  type JudgeInfo,
  type JudgeReliabilityEntry,
} from "../report/schema.js";
import { renderReportLogged } from "../report/render.js";
import { scheduleShortfalls, shortScheduleNote } from "../report/schedule.js";
import { mcnemarOfOutcomes } from "../report/unseen.js";
import { ZERO_COST, cellBuild, checkpointingOf, costOf, dropEmptyRates, neuronsOf } from "../recipes/cell.js";
import { outcomesOf } from "../recipes/outcomes.js";
import { describeTaskSplit, taskSplitInfo } from "./task-split.js";
import type { ShardSpec } from "../util/shard.js";
import { claimHolder, holdClaim, tryClaim, whenClaimed } from "../io/claim.js";
import { cellShare } from "./shard.js";
import { experimentDepartures } from "./departures.js";
import { plannedSchedules, shortScheduleWarnings } from "./estimate.js";
import { mixedBuilds } from "../report/builds.js";
import { withUnseen } from "../report/unseen.js";
import { canonicalJson, fileHash, modelFolderHash, sha256 } from "../io/hash.js";
import { promptsKey } from "../io/tokenizer-json.js";
import { DEFAULT_ENABLE_THINKING, thinkingKey } from "../io/chat-template.js";
import {
  EXPERIMENT_CODE_VERSION,
  cellModelLabel,
  checkInputsUnchanged,
  describeCell,
  cellFileFound,
  isCellDone,
  type ExperimentPlan,
  type PlannedCell,
} from "./plan.js";

export interface RunOptions {
  log?: Logger;
  /** stop request (Ctrl-C): checked between cells and inside every stage; the run stops at a checkpoint */
  signal?: AbortSignal;
  /** run at most this many unfinished cells, then stop as if interrupted (tests, time-boxed runs) */
  stopAfterCells?: number;
  /** called before each cell that is computed (not for cached ones) */
  onCellStart?: (cell: PlannedCell) => void;
  /** render the report after results.json (default true) */
  render?: boolean;
  /** compute only this share of the cells (shard.ts); the others are left to other workers */
  shard?: ShardSpec;
}

export interface RunSummary {
  outDir: string;
  /** cell ids computed in this call, and those found finished (cached by an earlier run or another worker) */
  ran: string[];
  skipped: string[];
  /**
   * cells of the same key as an earlier cell of this plan (the same settings under another name): they take that
   * cell's result, computed now or cached, and are neither computed nor read on their own
   */
  shared: string[];
  /** true when the run stopped before every cell was done (rerun to resume) */
  stopped: boolean;
  /** cells left to other workers (another shard's, or claimed by a worker computing them) and not yet done */
  pending?: string[];
  resultsFile?: string;
  /** when stopped with some cells done: results.partial.json, the finished cells in plan order */
  partialFile?: string;
  reportDir?: string;
  results?: ExperimentResults;
  /**
   * the finished trained cells whose training did nothing (every step at learning rate 0) or barely (fewer than
   * FEW_FULL_RATE_STEPS at the full rate), by id: report/schedule.ts, from each cell's recorded schedule
   */
  shortSchedules: { none: string[]; few: string[] };
}

/** What a finished harden stage left, enough to build the cell without rerunning it. */
interface HardenRecord {
  trainableParams: number;
  totalParams: number;
  train: Omit<TrainResult, "log">;
  fold: FoldStats;
  /** training's checkpointing as asked and used (HardenResult's; absent in records made before 2026-12-01) */
  gradientCheckpointing?: CheckpointingRecord;
  /**
   * training's schedule and what harden warned of it (HardenResult's); absent in records made before 2026-12-04,
   * whose cells then say "not recorded"
   */
  schedule?: ScheduleRecord;
}

export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model.trim() ?? "unknown CPU"} (${cpus.length} threads), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${os.platform()} ${os.release()}, Node ${process.version}`;
}

function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, "utf8")) as T;
}

/**
 * A cached cell result, or null (with a warning) when the file is not a valid cell. One filed under an alias (a key
 * earlier code gave the same inputs) is filed under the cell's key too, so that it is found by that key from now on.
 */
function readCell(cell: PlannedCell, log: Logger): CellResult | null {
  const file = cellFileFound(cell);
  if (file === null) return null;
  try {
    const r = cellResultSchema.safeParse(readJson(file));
    if (r.success) {
      if (file !== cell.cellFile) {
        writeFileAtomic(cell.cellFile, fs.readFileSync(file));
        log.info(`${cell.cellFile}: the result earlier code filed as ${path.basename(file)}`);
      }
      return r.data;
    }
    log.warn(`${file}: not a valid cell result (${r.error.issues[0]?.message}); computing it again`);
  } catch (e) {
    log.warn(`${file}: unreadable (${(e as Error).message}); computing it again`);
  }
  return null;
}

const nanAsNull = (_k: string, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v);

/** Where identification of this GoodVibe config is shared: it depends on model, data and identify settings only. */
export function identifyKey(cfg: HardenConfig): string {
  return sha256(
    canonicalJson({
      version: EXPERIMENT_CODE_VERSION,
      model: modelFolderHash(cfg.model),
      data: fileHash(cfg.data),
      languages: cfg.languages ?? null,
      // judge prompts end with the labels' shared tokens since 6038b4c (answerTokensKey); no answer's end
      ...promptsKey(cfg.model),
      // judge prompts rendered with thinking on (only where the template has the switch), as harden's identify
      // slot keys them (planStages): without it a map of the other setting would be copied into the cell and reused
      ...thinkingKey(cfg.model, cfg.enableThinking ?? DEFAULT_ENABLE_THINKING),
      identify: cfg.identify,
      dtype: cfg.dtype ?? null,
      // the seed only picks the identification pairs when they are subsampled
      seed: cfg.identify.maxPairs > 0 ? cfg.seed : null,
    }),
  );
}

/** What every part of one run shares: the plan, the caller's hooks, the data read once, the judges, the base evaluations. */
interface RunContext {
  plan: ExperimentPlan;
  spec: ExperimentPlan["spec"];
  outDir: string;
  log: Logger;
  signal?: AbortSignal;
  data: ExperimentData;
  judges: JudgePool;
  /** the base model's evaluation per base key: computed once, kept for every base cell of that key */
  baseEvals: Map<string, ModelEvaluation>;
}

/** The experiment's pairs, each file read once when first needed. */
interface ExperimentData {
  /** the held-out pairs of data.languages */
  dev(): SecurityPair[];
  /** the held-out pairs of a language run's languages */
  devOf(languages: string[]): SecurityPair[];
  /** the training pairs of data.languages */
  train(): SecurityPair[];
}

function experimentData(spec: ExperimentPlan["spec"]): ExperimentData {
  let dev: SecurityPair[] | undefined;
  let train: SecurityPair[] | undefined;
  const byLanguages = new Map<string, SecurityPair[]>();
  return {
    dev: () => (dev ??= readPairs(spec.data.dev, { languages: spec.data.languages })),
    devOf(languages) {
      const k = languages.join("\0");
      let p = byLanguages.get(k);
      if (!p) byLanguages.set(k, (p = readPairs(spec.data.dev, { languages })));
      return p;
    },
    train: () => (train ??= readPairs(spec.data.train, { languages: spec.data.languages })),
  };
}

export async function runExperiment(plan: ExperimentPlan, opts: RunOptions = {}): Promise<RunSummary> {
  const { spec, outDir } = plan;
  const log = opts.log ?? silentLogger;
  // the benchmark files' rows, before the judge and the first cell (each cell's benchmarks run after its answers)
  if (spec.eval.utility) await checkUtilityFiles(spec.eval.utility);
  fs.mkdirSync(outDir, { recursive: true });
  writePlanFile(plan);
  warnShortSchedules(plan, log);
  if (plan.taskSplit) for (const l of describeTaskSplit(plan.taskSplit)) log.info(`task split: ${l}`);
  const ctx: RunContext = {
    plan,
    spec,
    outDir,
    log,
    signal: opts.signal,
    data: experimentData(spec),
    judges: new JudgePool(),
    baseEvals: new Map(),
  };
  if (plan.judges.size > 0) {
    try {
      await prepareJudges(ctx);
    } catch (e) {
      if (e instanceof InterruptedError || opts.signal?.aborted) {
        log.warn(`stopped while preparing the judge (${(e as Error).message}); rerun to resume`);
        return { outDir, ran: [], skipped: [], shared: [], stopped: true, shortSchedules: NO_SHORT };
      }
      throw e;
    }
  }
  const cells = await runCells(ctx, opts);
  const experiment = assembleResults(ctx, withMcnemarVsBase(cells.planned, cells.results));
  // cells that trained nothing or barely, said at the end of the log as well as in each cell's own warning
  const short = shortScheduleNote(experiment.cells);
  if (short) log.warn(short);
  if (cells.stopped || cells.pending.length > 0) return stopEarly(ctx, cells, experiment);
  return publishResults(ctx, cells, experiment, opts.render ?? true);
}

/**
 * The cells still to compute whose training would do nothing or barely, said before the first (each cell's harden
 * says it again when it starts): a grid must not spend hours on cells that will only read as results.
 */
function warnShortSchedules(plan: ExperimentPlan, log: Logger): void {
  const keys = new Set<string>();
  const todo = plan.cells.filter((c) => !keys.has(c.key) && !!keys.add(c.key) && !isCellDone(c));
  const lines = shortScheduleWarnings(todo, plannedSchedules(todo));
  if (lines.length) log.warn(lines.join("\n  "));
}

/** plan.json: the cells in plan order with their keys and names, for a look before and during the run. */
function writePlanFile(plan: ExperimentPlan): void {
  writeFileAtomic(
    path.join(plan.outDir, "plan.json"),
    JSON.stringify(
      plan.cells.map((c) => ({
        id: c.id,
        key: c.key,
        model: cellModelLabel(c),
        method: c.method,
        ablation: c.ablation ?? null,
        seed: c.seed,
      })),
      null,
      2,
    ),
  );
}

// ---------------------------------------------------------------- the judge

/** The judges of a run: their folders once prepared, their reliability, and each loaded once when first asked. */
class JudgePool {
  readonly dirs = new Map<string, string>();
  readonly reliability: JudgeReliabilityEntry[] = [];
  /** held-out pairs that also appear in a judge's training pairs (the most of any judge) */
  overlap = 0;
  private readonly loaded = new Map<string, LlmJudge>();

  async judgeFor(
    key: string | null,
    convention: ExperimentPlan["convention"],
    enableThinking: boolean,
  ): Promise<LlmJudge | null> {
    if (key === null) return null;
    let judge = this.loaded.get(key);
    if (!judge) {
      judge = await LlmJudge.load(this.dirs.get(key)!, { convention, enableThinking });
      this.loaded.set(key, judge);
    }
    return judge;
  }
}

/**
 * The judges, prepared before the cells (trained once, cached in work/judges/<key>/), each one's reliability on
 * the held-out pairs measured base vs fine-tuned (§7): one judge for every cell, or one per model when
 * self-judging was asked for.
 */
async function prepareJudges(ctx: RunContext): Promise<void> {
  const { plan, spec, log, signal, data, judges } = ctx;
  for (const [key, src] of plan.judges) {
    // one worker trains and measures a judge; others sharing the folder wait, then find it cached (shard.ts)
    const release = await holdClaim(src.dir, {
      signal,
      onWait: (h) => log.info(`judge ${key}: being prepared by ${h}; waiting`),
    });
    try {
      let dir: string;
      let base: string | undefined;
      if (src.kind === "path") {
        dir = src.path;
        base = src.base ?? recordedJudgeBase(src.path);
        // refuse a judge trained under another convention now, not after the first cell
        await LlmJudge.load(dir, { convention: plan.convention, enableThinking: spec.enableThinking });
      } else {
        const training: JudgeTraining = {
          base: src.base,
          pairs: () =>
            src.data === spec.data.train
              ? data.train()
              : readPairs(src.data, { languages: spec.data.languages }),
          data: src.data,
          settings: src.settings,
          dir: src.dir,
        };
        dir = await ensureJudgeTrained(training, { convention: plan.convention, log, signal });
        base = src.base;
        judges.overlap = Math.max(
          judges.overlap,
          overlapWithTraining(data.dev(), judgeTrainingPairs(training)),
        );
      }
      judges.dirs.set(key, dir);
      judges.reliability.push(
        ...(await measureJudgeReliability({
          judgeDir: dir,
          baseDir: base,
          heldOut: data.dev(),
          convention: plan.convention,
          enableThinking: spec.enableThinking,
          ...(src.kind === "train" && src.model ? { model: src.model } : {}),
          cacheFile: path.join(src.dir, "reliability.json"),
          batchSize: spec.eval.batchSize,
          log,
          signal,
        })),
      );
    } finally {
      release();
    }
  }
}

// ---------------------------------------------------------------- one cell

/** A language run evaluates on its own languages' held-out prompts. */
function evalPairs(ctx: RunContext, cell: PlannedCell): SecurityPair[] {
  return cell.run ? ctx.data.devOf(cell.run.languages) : ctx.data.dev();
}

/** A task-held-out study spreads a prompt budget over every held-out task (the plan sets it; else languages only). */
function promptSpread(
  spec: ExperimentPlan["spec"],
): NonNullable<ExperimentPlan["spec"]["eval"]["promptSpread"]> {
  return spec.eval.promptSpread ?? "language";
}

/** One model folder evaluated under the experiment's settings, cached in the cell's work folder. */
async function evaluate(ctx: RunContext, modelDir: string, cell: PlannedCell): Promise<ModelEvaluation> {
  const e = ctx.spec.eval;
  return evaluateModel(modelDir, {
    pairs: evalPairs(ctx, cell),
    judge: await ctx.judges.judgeFor(cell.judgeKey, ctx.plan.convention, ctx.spec.enableThinking),
    maxPrompts: e.maxPrompts,
    promptFilter: e.promptFilter,
    promptSpread: promptSpread(ctx.spec),
    maxNewTokens: e.maxNewTokens,
    batchSize: e.batchSize,
    enableThinking: ctx.spec.enableThinking,
    cacheDir: cell.workDir,
    seed: e.seed,
    utility: e.utility,
    ...(e.generationConfig !== undefined ? { applyGenerationConfig: e.generationConfig } : {}),
    ...(e.codeBlocks !== undefined ? { codeBlocks: e.codeBlocks } : {}),
    log: ctx.log,
    signal: ctx.signal,
  });
}

/** The base model's evaluation: computed once per base key (by one worker), shared by the base cells of that key. */
async function baseEvaluation(ctx: RunContext, cell: PlannedCell): Promise<ModelEvaluation> {
  const have = ctx.baseEvals.get(cell.baseKey);
  if (have) return have;
  const workDir = path.join(ctx.outDir, "work", cell.baseKey);
  const file = path.join(workDir, "evaluation.json");
  // one worker evaluates it (shard.ts); others sharing the folder wait for its file
  const computed = await whenClaimed(
    workDir,
    () => fs.existsSync(file),
    async () => {
      const baseCell = ctx.plan.cells.find((c) => c.key === cell.baseKey);
      const e = await evaluate(ctx, cell.model.path, baseCell ?? { ...cell, workDir });
      writeFileAtomic(file, JSON.stringify(e, nanAsNull));
      return e;
    },
    { signal: ctx.signal, onWait: (h) => ctx.log.info(`base evaluation: being computed by ${h}; waiting`) },
  );
  const ev = computed ?? readJson<ModelEvaluation>(file);
  ctx.baseEvals.set(cell.baseKey, ev);
  return ev;
}

async function runBaseCell(ctx: RunContext, cell: PlannedCell): Promise<CellResult> {
  const ev = await baseEvaluation(ctx, cell);
  return {
    ...labels(cell),
    // the loaded text model's count, as a trained cell's (harden counts its loaded parameters): a multimodal folder's
    // vision tower, which no method trains or evaluates, is not counted
    params: { trainable: 0, total: loadedParamCount(cell.model.path) },
    cost: ZERO_COST,
    ...withOutcomes(ev, evalPairs(ctx, cell)),
  };
}

/**
 * A trained cell's harden stage, or its record when an earlier run finished it. GoodVibe cells that differ only
 * after identification share one neuron map (work/identify/<key>/).
 */
async function hardenCell(ctx: RunContext, cfg: HardenConfig, workDir: string): Promise<HardenRecord> {
  const record = path.join(workDir, "harden.json");
  if (fs.existsSync(record) && fs.existsSync(path.join(cfg.out, "config.json"))) {
    ctx.log.info(`training: reusing ${cfg.out}`);
    return readJson<HardenRecord>(record);
  }
  const shared =
    cfg.method === "goodvibe"
      ? path.join(ctx.outDir, "work", "identify", identifyKey(cfg), NEURONS_FILE)
      : null;
  const own = path.join(planStages(cfg).identify.dir, NEURONS_FILE);
  // the map travels with the record of the builds that made it (harden.ts made-by.json): without it the cell that
  // takes the map would be told it was made by an unrecorded build
  const copy = (from: string, to: string) => {
    const builds = path.join(path.dirname(from), RUN_FILES.madeBy);
    if (fs.existsSync(builds))
      writeFileAtomic(path.join(path.dirname(to), RUN_FILES.madeBy), fs.readFileSync(builds));
    writeFileAtomic(to, fs.readFileSync(from));
  };
  if (shared && fs.existsSync(shared) && !fs.existsSync(own)) {
    copy(shared, own);
    ctx.log.info(`identification: shared from ${path.dirname(shared)}`);
  }
  let r: Awaited<ReturnType<typeof runHarden>>;
  try {
    r = await runHarden(cfg, { log: ctx.log, signal: ctx.signal });
  } finally {
    // share the neuron map even when training failed or was stopped: identification itself finished
    if (shared && !fs.existsSync(shared) && fs.existsSync(own)) copy(own, shared);
  }
  const { log: _l, ...trainNoLog } = r.train;
  const hr: HardenRecord = {
    trainableParams: r.trainableParams,
    totalParams: r.totalParams,
    train: trainNoLog,
    fold: r.fold,
    ...(r.gradientCheckpointing ? { gradientCheckpointing: r.gradientCheckpointing } : {}),
    schedule: r.schedule,
  };
  writeFileAtomic(record, JSON.stringify(hr, nanAsNull, 2));
  return hr;
}

async function runTrainedCell(ctx: RunContext, cell: PlannedCell): Promise<CellResult> {
  const cfg = cell.harden!;
  const hr = await hardenCell(ctx, cfg, cell.workDir);
  // no McNemar here: a cell is reused by experiments with and without the base, so the test against the base
  // cell is counted when the results are assembled, from the two cells' outcomes (withMcnemarVsBase)
  const ev = await evaluate(ctx, cfg.out, cell);
  let neurons: CellResult["neurons"];
  let identification:
    | { flops: TrainResult["flops"]; wallSeconds: number; gradientCheckpointing?: CheckpointingRecord }
    | undefined;
  if (cfg.method === "goodvibe") {
    // the maps are published inside the hardened model's folder
    const nm = readNeuronMap(path.join(cfg.out, NEURONS_FILE));
    neurons = neuronsOf(nm, readClusterMap(path.join(cfg.out, CLUSTERS_FILE)));
    identification = {
      flops: nm.flops,
      wallSeconds: nm.wallSeconds,
      ...(nm.gradientCheckpointing ? { gradientCheckpointing: nm.gradientCheckpointing } : {}),
    };
  }
  const checkpointing = checkpointingOf(hr.gradientCheckpointing, identification?.gradientCheckpointing);
  if (!ctx.spec.keepModels) fs.rmSync(cfg.out, { recursive: true, force: true });
  return {
    ...labels(cell),
    params: { trainable: hr.trainableParams, total: hr.totalParams },
    cost: costOf(hr.train, identification),
    ...withOutcomes(ev, evalPairs(ctx, cell)),
    ...(neurons ? { neurons } : {}),
    ...(checkpointing ? { gradientCheckpointing: checkpointing } : {}),
    ...(hr.schedule ? { schedule: hr.schedule } : {}),
  };
}

/** Compute one claimed cell and file its result; null when it was interrupted (its caches keep the progress). */
async function computeCell(ctx: RunContext, cell: PlannedCell, tag: string): Promise<CellResult | null> {
  fs.mkdirSync(cell.workDir, { recursive: true });
  writeFileAtomic(path.join(cell.workDir, "inputs.json"), JSON.stringify(cell.inputs, null, 2));
  const t0 = Date.now();
  let result: CellResult;
  try {
    result = cell.method === "base" ? await runBaseCell(ctx, cell) : await runTrainedCell(ctx, cell);
    result = {
      ...result,
      build: cellBuild(
        cell.method === "base" ? { evaluated: cell.model.path } : { trainedIn: cell.harden?.dtype },
      ),
    };
  } catch (e) {
    // harden throws when training stops at a checkpoint; the caches keep the progress
    if (e instanceof InterruptedError || ctx.signal?.aborted) {
      ctx.log.warn(`${tag}: interrupted (${(e as Error).message})`);
      return null;
    }
    throw e;
  }
  const parsed = cellResultSchema.safeParse(result);
  if (!parsed.success)
    throw new Error(
      `${tag}: the cell does not fit the report schema: ${parsed.error.issues.map((x) => `${x.path.join(".")}: ${x.message}`).join("; ")}`,
    );
  // refuse to file a result under keys that no longer describe its inputs
  checkInputsUnchanged(ctx.plan);
  writeFileAtomic(cell.cellFile, JSON.stringify(result, null, 2));
  ctx.log.info(`${tag}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}

// ---------------------------------------------------------------- the cells in plan order

interface CellsOutcome {
  ran: string[];
  skipped: string[];
  shared: string[];
  /** every finished cell's result, in plan order */
  results: CellResult[];
  /** the plan cell of each of `results` */
  planned: PlannedCell[];
  stopped: boolean;
  /** cells left to other workers (another shard's, or claimed by a worker computing them) */
  pending: string[];
}

/**
 * Every planned cell in order: a finished one is read (each distinct key once), another shard's or another
 * worker's is left to it, the rest computed under an exclusive claim (shard.ts) until a stop request or
 * stopAfterCells; after a stop the cells finished further on are still collected.
 */
async function runCells(ctx: RunContext, opts: RunOptions): Promise<CellsOutcome> {
  const { plan, log } = ctx;
  const out: CellsOutcome = {
    ran: [],
    skipped: [],
    shared: [],
    results: [],
    planned: [],
    stopped: false,
    pending: [],
  };
  const done = new Map<string, CellResult>();
  const finished = (cell: PlannedCell, result: CellResult) => {
    (done.has(cell.key) ? out.shared : out.skipped).push(cell.id);
    out.results.push(relabel(result, cell));
    out.planned.push(cell);
    done.set(cell.key, result);
  };
  const share = opts.shard ? cellShare(plan.cells, opts.shard) : null;
  // the plan indexes of out.pending (cells of one key share an id)
  const pendingAt = new Set<number>();
  // this shard's cells another worker held when reached: waited for at the end (see below)
  const ownHeld: number[] = [];
  if (opts.shard)
    log.info(
      `shard ${opts.shard.index}/${opts.shard.count}: ${share!.size} of ${new Set(plan.cells.map((c) => c.key)).size} distinct cells`,
    );
  for (const [i, cell] of plan.cells.entries()) {
    const tag = `[${i + 1}/${plan.cells.length}] ${describeCell(cell)} (${cell.id})`;
    const cached = done.get(cell.key) ?? (isCellDone(cell) ? readCell(cell, log) : null);
    if (cached) {
      finished(cell, cached);
      continue;
    }
    if (share && !share.has(cell.key)) {
      out.pending.push(cell.id); // another shard's
      pendingAt.add(i);
      continue;
    }
    if (
      out.stopped ||
      (await stopRequested(ctx.signal)) ||
      (opts.stopAfterCells !== undefined && out.ran.length >= opts.stopAfterCells)
    ) {
      out.stopped = true;
      continue; // still collect the cells finished further on (results.partial.json)
    }
    // a worker sharing this folder may be computing it, or have just finished it (shard.ts)
    const release = tryClaim(cell.workDir);
    if (!release) {
      const holder = claimHolder(cell.workDir) ?? "another worker";
      if (share) ownHeld.push(i);
      log.info(
        `${tag}: being computed by ${holder}; ` +
          (share ? "this shard's: waited for once its other cells are done" : "left to it"),
      );
      out.pending.push(cell.id);
      pendingAt.add(i);
      continue;
    }
    let result: CellResult | null;
    try {
      const justFinished = isCellDone(cell) ? readCell(cell, log) : null;
      if (justFinished) {
        finished(cell, justFinished);
        continue;
      }
      log.info(`${tag}: running`);
      opts.onCellStart?.(cell);
      result = await computeCell(ctx, cell, tag);
    } finally {
      release();
    }
    if (!result) {
      out.stopped = true;
      continue;
    }
    out.ran.push(cell.id);
    out.results.push(result);
    out.planned.push(cell);
    done.set(cell.key, result);
  }
  const late = new Set<number>();
  if (!out.stopped) await waitForOwnCells(ctx, opts, ownHeld, done, out, late);
  return out.stopped || out.pending.length === 0
    ? out
    : collectFinishedSince(plan, out, pendingAt, done, late, log);
}

/**
 * A sharded worker answers for its share: a cell of it that another worker held is waited for until it is done or
 * its claim goes stale, then taken over. A scheduler's retry (a Kubernetes pod, a requeued Slurm task) runs on
 * another host than the worker that died, so the dead worker's claim stays fresh for GOODVIBE_CLAIM_STALE_SECONDS;
 * leaving the cell to it, the retry exited 0 with its share undone and the Job counted as complete. Cells computed
 * here go into `late` (their results in `done`).
 */
async function waitForOwnCells(
  ctx: RunContext,
  opts: RunOptions,
  ownHeld: readonly number[],
  done: Map<string, CellResult>,
  out: CellsOutcome,
  late: Set<number>,
): Promise<void> {
  const { plan, log } = ctx;
  for (const i of ownHeld) {
    const cell = plan.cells[i]!;
    if (done.has(cell.key)) continue;
    if (opts.stopAfterCells !== undefined && out.ran.length >= opts.stopAfterCells) {
      out.stopped = true; // --stop-after holds for a cell taken over too
      return;
    }
    const tag = `[${i + 1}/${plan.cells.length}] ${describeCell(cell)} (${cell.id})`;
    let computed: { result: CellResult | null } | null;
    try {
      computed = await whenClaimed(
        cell.workDir,
        () => isCellDone(cell),
        async () => {
          log.info(`${tag}: running (its holder is gone)`);
          opts.onCellStart?.(cell);
          return { result: await computeCell(ctx, cell, tag) };
        },
        {
          signal: ctx.signal,
          onWait: (holder) =>
            log.info(
              `${tag}: waiting for ${holder} to finish it, or for its claim to go stale ` +
                `(GOODVIBE_CLAIM_STALE_SECONDS without a heartbeat, default 600; a dead worker on this host at once)`,
            ),
        },
      );
    } catch (e) {
      if (!(e instanceof InterruptedError)) throw e;
      out.stopped = true;
      return;
    }
    if (computed === null) continue; // finished by its holder: collected with the others
    if (computed.result === null) {
      out.stopped = true;
      return;
    }
    out.ran.push(cell.id);
    done.set(cell.key, computed.result);
    late.add(i);
  }
}

/**
 * The cells left to other workers, looked at again once this worker is done with its own: those finished meanwhile
 * are collected (in plan order, as the rest), so that the worker that ends last writes results.json. Without this
 * look two runs started at once on one folder each left the cell the other held, and neither wrote it.
 */
function collectFinishedSince(
  plan: ExperimentPlan,
  out: CellsOutcome,
  pendingAt: ReadonlySet<number>,
  done: Map<string, CellResult>,
  late: ReadonlySet<number>,
  log: Logger,
): CellsOutcome {
  const results: CellResult[] = [];
  const planned: PlannedCell[] = [];
  const still: string[] = [];
  // not stopped: every cell not left to another worker has its one result in out.results, in plan order
  let mine = 0;
  for (const [i, cell] of plan.cells.entries()) {
    if (!pendingAt.has(i)) {
      results.push(out.results[mine++]!);
      planned.push(cell);
      continue;
    }
    const result = done.get(cell.key) ?? (isCellDone(cell) ? readCell(cell, log) : null);
    if (!result) {
      still.push(cell.id);
      continue;
    }
    // a cell this worker took over (waitForOwnCells) is counted as ran already
    if (!late.has(i)) (done.has(cell.key) ? out.shared : out.skipped).push(cell.id);
    done.set(cell.key, result);
    results.push(relabel(result, cell));
    planned.push(cell);
  }
  return { ...out, results, planned, pending: still };
}

// ---------------------------------------------------------------- results and report

/** results.json's content: the cells with the judge, the evaluation protocol and the task split they ran under. */
function assembleResults(ctx: RunContext, results: CellResult[]): ExperimentResults {
  const { plan, spec, data, judges } = ctx;
  const departures = experimentDepartures(spec);
  const mixed = mixedBuilds(results);
  if (mixed) ctx.log.warn(mixed);
  const { prompts, protocol } = evaluationProtocol({
    pairs: data.dev(),
    maxPrompts: spec.eval.maxPrompts,
    promptFilter: spec.eval.promptFilter,
    promptSpread: promptSpread(spec),
    maxNewTokens: spec.eval.maxNewTokens,
    codeBlocks: spec.eval.codeBlocks,
  });
  // what the hardened models may have been trained on: evaluated pairs that share a prompt or an answer's code
  // with the training pairs (real CyberNative dev: 108 of 465)
  const leak = pairOverlap(prompts, data.train());
  // over every dev pair, as the cells' outcomes are (secure preference is measured on all of them, a prompt
  // budget aside)
  const unseen = new Set(pairOverlap(data.dev(), data.train()).unseen.map((p) => p.id));
  const seenIds = data
    .dev()
    .filter((p) => !unseen.has(p.id))
    .map((p) => p.id);
  return {
    name: spec.name,
    createdAt: new Date().toISOString(),
    machine: machineDescription(),
    ...(plan.judgeMode
      ? { judge: describeJudge(plan, judges.reliability, data.dev().length, judges.overlap) }
      : {}),
    evaluation: {
      ...evaluationInfo(protocol),
      trainOverlap: { n: leak.n, pairs: leak.pairs, questions: leak.questions, code: leak.code, seenIds },
    },
    ...(departures.length ? { departures } : {}),
    ...(plan.taskSplit ? { taskSplit: taskSplitInfo(plan.taskSplit) } : {}),
    // the same measures on the evaluated pairs that share nothing with training (report/unseen.ts)
    cells: withUnseen(uniqueIds(results), seenIds),
  };
}

/** Where a run that stopped, or left cells to other workers, puts the finished cells so far. */
const PARTIAL_RESULTS = "results.partial.json";

/** A run that stopped, or left cells to other workers: the finished cells so far in results.partial.json. */
function stopEarly(ctx: RunContext, cells: CellsOutcome, experiment: ExperimentResults): RunSummary {
  const { plan, outDir, log } = ctx;
  const { ran, skipped, shared, stopped, pending, results } = cells;
  if (stopped)
    log.warn(
      `stopped with ${results.length} of ${plan.cells.length} cells done; rerun the same command to resume`,
    );
  else
    log.info(
      `${results.length} of ${plan.cells.length} cells done; ${pending.length} are other workers' (another shard's or ` +
        `being computed): once they are done, \`experiment run\` on this folder writes results.json and the report`,
    );
  // a results.json already there is an earlier complete run's (another plan, or before a stop): said, so that it
  // is not read as this run's; results.json and report/ are replaced once every cell is done
  const earlier = path.join(outDir, "results.json");
  if (fs.existsSync(earlier))
    log.warn(
      `${earlier} is an earlier complete run's results (written ${fs.statSync(earlier).mtime.toISOString()}), not ` +
        `this run's; this run's finished cells so far are in ${PARTIAL_RESULTS}`,
    );
  // the finished cells so far, for a look before the end (`goodvibe report` renders it); never results.json
  const partialFile = path.join(outDir, PARTIAL_RESULTS);
  if (results.length > 0) {
    // marked partial, with the planned cells it lacks, so that the file and its report say so (report/render.ts)
    const missing = plan.cells
      .filter((c) => !cells.planned.includes(c))
      .map((c) => {
        const { study: _study, ...names } = labels(c);
        return { label: describeCell(c), ...names };
      });
    const marked = { ...experiment, partial: { planned: plan.cells.length, missing } };
    const partial = parseExperimentResults(JSON.parse(JSON.stringify(marked)), partialFile);
    writeFileAtomic(partialFile, JSON.stringify(partial, null, 2));
  }
  return {
    outDir,
    ran,
    skipped,
    shared,
    stopped,
    pending,
    ...(results.length > 0 ? { partialFile } : {}),
    shortSchedules: shortSchedulesOf(experiment),
  };
}

/** Every cell done: results.json (validated) and the report, written by one worker of those sharing the folder. */
async function publishResults(
  ctx: RunContext,
  cells: CellsOutcome,
  experiment: ExperimentResults,
  render: boolean,
): Promise<RunSummary> {
  const { outDir, log } = ctx;
  const { ran, skipped, shared, stopped, pending } = cells;
  const resultsFile = path.join(outDir, "results.json");
  // workers finishing together: one writes the results and the report
  const releaseResults = tryClaim(path.join(outDir, "work", "results"));
  if (!releaseResults) {
    log.info("every cell is done; another worker is writing results.json and the report");
    return { outDir, ran, skipped, shared, stopped, pending, shortSchedules: shortSchedulesOf(experiment) };
  }
  const reportDir = path.join(outDir, "report");
  let checked: ExperimentResults;
  try {
    checked = parseExperimentResults(JSON.parse(JSON.stringify(experiment)), resultsFile);
    writeFileAtomic(resultsFile, JSON.stringify(checked, null, 2));
    // an earlier stop's finished cells so far: superseded by results.json, and a stale look-ahead beside it
    fs.rmSync(path.join(outDir, PARTIAL_RESULTS), { force: true });
    if (render) {
      await renderReportLogged(checked, reportDir, log, "report: ");
      log.info(`report: ${path.join(reportDir, "index.html")}`);
    }
  } finally {
    releaseResults();
  }
  return {
    outDir,
    ran,
    skipped,
    shared,
    stopped,
    resultsFile,
    reportDir,
    results: checked,
    shortSchedules: shortSchedulesOf(checked),
  };
}

const NO_SHORT: RunSummary["shortSchedules"] = { none: [], few: [] };

function shortSchedulesOf(r: ExperimentResults): RunSummary["shortSchedules"] {
  const s = scheduleShortfalls(r.cells);
  return { none: s.none.map((c) => c.id), few: s.few.map((c) => c.id) };
}

/**
 * The report parts (the rates' intervals over tasks where the pairs name them: securityCell) with the per-item
 * outcomes. No McNemar against the base: withMcnemarVsBase counts it from the cells' outcomes.
 */
function withOutcomes(
  ev: ModelEvaluation,
  pairs: readonly SecurityPair[],
): Pick<CellResult, "security" | "utility" | "outcomes"> {
  const parts = securityCell(ev, null, pairs);
  return { ...parts, security: dropEmptyRates(parts.security), outcomes: outcomesOf(ev, pairs) };
}

/**
 * Each trained cell's McNemar tests against its base cell (the plan cell of its baseKey: the same model and
 * language run) when that cell is among `results`, counted from the two cells' outcomes; none when the experiment
 * has no such cell. A cell's file never decides it (a cell computed where the base was, or was not, planned is
 * reused by an experiment of the other kind; cells filed before 2026-12-02 hold a test counted on compute): it
 * is recounted, and a recorded test is kept only where either cell lacks outcomes and the base cell is there.
 */
function withMcnemarVsBase(planned: readonly PlannedCell[], results: readonly CellResult[]): CellResult[] {
  const byKey = new Map(planned.map((c, i) => [c.key, results[i]!]));
  return results.map((r, i) => {
    const cell = planned[i]!;
    if (cell.method === "base") return r;
    const base = byKey.get(cell.baseKey);
    const { mcnemarVsBase: recorded, ...security } = r.security;
    let tests: CellResult["security"]["mcnemarVsBase"];
    if (base?.method === "base" && base.outcomes && r.outcomes) {
      const m: NonNullable<CellResult["security"]["mcnemarVsBase"]> = {};
      for (const judge of ["rule", "llm"] as const) {
        const t = mcnemarOfOutcomes(base.outcomes, r.outcomes, judge);
        if (t) m[judge] = t;
      }
      if (Object.keys(m).length) tests = m;
    } else if (base?.method === "base") tests = recorded;
    return { ...r, security: { ...security, ...(tests ? { mcnemarVsBase: tests } : {}) } };
  });
}

/** The naming fields of a cell: from the plan, never from the cache (names are not part of the key). */
function labels(
  cell: PlannedCell,
): Pick<CellResult, "id" | "model" | "method" | "ablation" | "study" | "seed"> {
  return {
    id: cell.id,
    model: cellModelLabel(cell),
    method: cell.method,
    ...(cell.ablation !== undefined ? { ablation: cell.ablation } : {}),
    ...(cell.study !== undefined ? { study: cell.study } : {}),
    seed: cell.seed,
  };
}

/**
 * Two settings with the same inputs (say a grid value equal to the default) share one computation but are two
 * rows of the report; the second gets the id "<id>-<n>" so that ids stay unique.
 */
function uniqueIds(cells: CellResult[]): CellResult[] {
  const seen = new Map<string, number>();
  return cells.map((c) => {
    const n = seen.get(c.id) ?? 0;
    seen.set(c.id, n + 1);
    return n === 0 ? c : { ...c, id: `${c.id}-${n}` };
  });
}

/** A cached result under this plan cell's names. */
function relabel(cached: CellResult, cell: PlannedCell): CellResult {
  const { id: _i, model: _m, method: _me, ablation: _a, study: _st, seed: _s, ...rest } = cached;
  return { ...labels(cell), ...rest };
}

/** The results' judge section: who judged, under which convention, and how reliably (§7). */
function describeJudge(
  plan: ExperimentPlan,
  reliability: JudgeReliabilityEntry[],
  heldOut: number,
  overlap: number,
): JudgeInfo {
  const j = plan.spec.judge!;
  let description: string;
  if (j.path !== undefined) description = `one judge for every cell and the base: the judge folder ${j.path}`;
  else {
    const t = j.train!;
    const how =
      `a ${t.method === "lora" ? "LoRA" : "full"} fine-tune on ${t.maxPairs ? `${t.maxPairs} ` : ""}labelled ` +
      `pairs of ${t.data ?? plan.spec.data.train} (${t.epochs} epoch${t.epochs > 1 ? "s" : ""}), trained once ` +
      `before the cells, never on the models' outputs`;
    description =
      plan.judgeMode === "self"
        ? `self-judging (not the paper's protocol): each model's own checkpoint, ${how}, judges that model's cells`
        : `one judge for every cell and the base: ${t.base}, ${how}`;
  }
  description += `; instruction and labels: ${describeJudgeConvention(plan.convention)}`;
  return judgeInfo({
    mode: plan.judgeMode!,
    description,
    convention: plan.convention,
    heldOut:
      `${heldOut} held-out pairs of ${plan.spec.data.dev} (${2 * heldOut} labelled samples)` +
      (overlap > 0 ? `; ${overlap} of them also appear in the judge's training pairs` : ""),
    reliability,
    outDir: plan.outDir,
  });
}
