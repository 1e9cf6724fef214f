/**
 * Running an experiment: every planned cell in order, each skipped when its result file exists. A cell's stages
 * cache under runs/<name>/work/<key>/ (harden's run folder, the trained model, the safety generations), so a
 * killed run resumes inside the cell it was in. GoodVibe cells that differ only after identification share one
 * neuron map (work/identify/<key>/). When every cell is done: results.json (validated) and the report.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InputError, InterruptedError } from "../errors.js";
import { stopRequested } from "../util/stop.js";
import { writeFileAtomic } from "../io/atomic.js";
import { openModelWeights } from "../io/safetensors.js";
import { readPairs, type SecurityPair } from "../data/pairs.js";
import { CLUSTERS_FILE, NEURONS_FILE, planStages, runHarden, type HardenConfig } from "../recipes/harden.js";
import { silentLogger, type Logger } from "../util/log.js";
import {
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
import { readNeuronMap } from "../method/goodvibe/identify.js";
import { readClusterMap } from "../method/goodvibe/clustering.js";
import type { FoldStats } from "../method/fold.js";
import type { TrainResult } from "../method/train.js";
import {
  cellResultSchema,
  parseExperimentResults,
  type CellResult,
  type ExperimentResults,
  type JudgeInfo,
  type JudgeReliabilityEntry,
} from "../report/schema.js";
import { renderReport } from "../report/render.js";
import { ZERO_COST, costOf, dropEmptyRates, neuronsOf } from "../recipes/cell.js";
import { outcomesOf } from "./outcomes.js";
import { describeTaskSplit, taskSplitInfo } from "./task-split.js";
import { cellShare, claimHolder, holdClaim, tryClaim, whenClaimed, type ShardSpec } from "./shard.js";
import {
  EXPERIMENT_CODE_VERSION,
  canonicalJson,
  cellModelLabel,
  checkInputsUnchanged,
  describeCell,
  fileHash,
  isCellDone,
  modelFolderHash,
  sha256,
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
  /** cell ids computed in this call, and those found finished */
  ran: string[];
  skipped: string[];
  /** true when the run stopped before every cell was done (rerun to resume) */
  stopped: boolean;
  /** cells left to other workers (another shard's, or claimed by a worker computing them) and not yet done */
  pending?: string[];
  resultsFile?: string;
  /** when stopped with some cells done: results.partial.json, the finished cells in plan order */
  partialFile?: string;
  reportDir?: string;
  results?: ExperimentResults;
}

/** What a finished harden stage left, enough to build the cell without rerunning it. */
interface HardenRecord {
  trainableParams: number;
  totalParams: number;
  train: Omit<TrainResult, "log">;
  fold: FoldStats;
}

export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model.trim() ?? "unknown CPU"} (${cpus.length} threads), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${os.platform()} ${os.release()}, Node ${process.version}`;
}

function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, "utf8")) as T;
}

/** A cached cell result, or null (with a warning) when the file is not a valid cell. */
function readCell(cell: PlannedCell, log: Logger): CellResult | null {
  try {
    const r = cellResultSchema.safeParse(readJson(cell.cellFile));
    if (r.success) return r.data;
    log.warn(`${cell.cellFile}: not a valid cell result (${r.error.issues[0]?.message}); computing it again`);
  } catch (e) {
    log.warn(`${cell.cellFile}: unreadable (${(e as Error).message}); computing it again`);
  }
  return null;
}

/** Parameters of a model folder, from the safetensors headers (no weights loaded). */
function countFolderParams(dir: string): number {
  let n = 0;
  for (const rec of openModelWeights(dir).tensors.values()) n += rec.shape.reduce((a, b) => a * b, 1);
  return n;
}

const nanAsNull = (_k: string, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v);

/** Where identification of this GoodVibe config is shared: it depends on model, data and identify settings only. */
function identifyKey(cfg: HardenConfig): string {
  return sha256(
    canonicalJson({
      version: EXPERIMENT_CODE_VERSION,
      model: modelFolderHash(cfg.model),
      data: fileHash(cfg.data),
      languages: cfg.languages ?? null,
      identify: cfg.identify,
      dtype: cfg.dtype ?? null,
      // the seed only picks the identification pairs when they are subsampled
      seed: cfg.identify.maxPairs > 0 ? cfg.seed : null,
    }),
  );
}

export async function runExperiment(plan: ExperimentPlan, opts: RunOptions = {}): Promise<RunSummary> {
  const log = opts.log ?? silentLogger;
  const signal = opts.signal;
  const { spec, outDir } = plan;
  fs.mkdirSync(outDir, { recursive: true });
  writeFileAtomic(
    path.join(outDir, "plan.json"),
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

  if (plan.taskSplit) for (const l of describeTaskSplit(plan.taskSplit)) log.info(`task split: ${l}`);
  let devPairs: SecurityPair[] | undefined;
  const dev = () => (devPairs ??= readPairs(spec.data.dev, { languages: spec.data.languages }));
  const devByLanguages = new Map<string, SecurityPair[]>();
  const devOf = (languages: string[]): SecurityPair[] => {
    const k = languages.join("\0");
    let p = devByLanguages.get(k);
    if (!p) devByLanguages.set(k, (p = readPairs(spec.data.dev, { languages })));
    return p;
  };
  let trainPairs: SecurityPair[] | undefined;
  const train = () => (trainPairs ??= readPairs(spec.data.train, { languages: spec.data.languages }));

  // ---- the judge: prepared before the cells (trained once, cached in work/judges/<key>/), its reliability on
  // the held-out pairs measured base vs fine-tuned (§7); one judge for every cell, or one per model when
  // self-judging was asked for
  const judgeDirs = new Map<string, string>();
  const judges = new Map<string, LlmJudge>();
  const reliability: JudgeReliabilityEntry[] = [];
  let judgeOverlap = 0;
  const prepareJudges = async () => {
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
          await LlmJudge.load(dir, { convention: plan.convention });
        } else {
          const training: JudgeTraining = {
            base: src.base,
            pairs: () =>
              src.data === spec.data.train
                ? train()
                : readPairs(src.data, { languages: spec.data.languages }),
            data: src.data,
            settings: src.settings,
            dir: src.dir,
          };
          dir = await ensureJudgeTrained(training, { convention: plan.convention, log, signal });
          base = src.base;
          judgeOverlap = Math.max(judgeOverlap, overlapWithTraining(dev(), judgeTrainingPairs(training)));
        }
        judgeDirs.set(key, dir);
        reliability.push(
          ...(await measureJudgeReliability({
            judgeDir: dir,
            baseDir: base,
            heldOut: dev(),
            convention: plan.convention,
            ...(src.kind === "train" && src.model ? { model: src.model } : {}),
            cacheFile: path.join(src.dir, "reliability.json"),
            batchSize: spec.eval.batchSize,
            log,
          })),
        );
      } finally {
        release();
      }
    }
  };
  const judgeFor = async (key: string | null): Promise<LlmJudge | null> => {
    if (key === null) return null;
    let judge = judges.get(key);
    if (!judge) {
      judge = await LlmJudge.load(judgeDirs.get(key)!, { convention: plan.convention });
      judges.set(key, judge);
    }
    return judge;
  };

  // a task-held-out study spreads a prompt budget over every held-out task (the plan sets it; else languages only)
  const promptSpread = spec.eval.promptSpread ?? "language";
  // a language run evaluates on its own languages' held-out prompts
  const evalPairs = (cell: PlannedCell): SecurityPair[] => (cell.run ? devOf(cell.run.languages) : dev());
  const evaluate = async (modelDir: string, cell: PlannedCell): Promise<ModelEvaluation> =>
    evaluateModel(modelDir, {
      pairs: evalPairs(cell),
      judge: await judgeFor(cell.judgeKey),
      maxPrompts: spec.eval.maxPrompts,
      promptFilter: spec.eval.promptFilter,
      promptSpread,
      maxNewTokens: spec.eval.maxNewTokens,
      batchSize: spec.eval.batchSize,
      cacheDir: cell.workDir,
      seed: spec.eval.seed,
      utility: spec.eval.utility,
      log,
      signal,
    });

  // ---- the base model's evaluation: computed once per model, kept for the McNemar tests of every trained cell
  const baseEvals = new Map<string, ModelEvaluation>();
  const baseEvaluation = async (cell: PlannedCell): Promise<ModelEvaluation> => {
    const have = baseEvals.get(cell.baseKey);
    if (have) return have;
    const file = path.join(outDir, "work", cell.baseKey, "evaluation.json");
    // one worker evaluates it (shard.ts); others sharing the folder wait for its file
    const computed = await whenClaimed(
      path.dirname(file),
      () => fs.existsSync(file),
      async () => {
        const baseCell = plan.cells.find((c) => c.key === cell.baseKey);
        const e = await evaluate(
          cell.model.path,
          baseCell ?? { ...cell, workDir: path.join(outDir, "work", cell.baseKey) },
        );
        writeFileAtomic(file, JSON.stringify(e, nanAsNull));
        return e;
      },
      { signal, onWait: (h) => log.info(`base evaluation: being computed by ${h}; waiting`) },
    );
    const ev = computed ?? readJson<ModelEvaluation>(file);
    baseEvals.set(cell.baseKey, ev);
    return ev;
  };

  const runBaseCell = async (cell: PlannedCell): Promise<CellResult> => {
    const ev = await baseEvaluation(cell);
    const total = countFolderParams(cell.model.path);
    return {
      ...labels(cell),
      params: { trainable: 0, total },
      cost: ZERO_COST,
      ...reportParts(ev),
      outcomes: outcomesOf(ev, evalPairs(cell)),
    };
  };

  const runTrainedCell = async (cell: PlannedCell): Promise<CellResult> => {
    const cfg = cell.harden!;
    const record = path.join(cell.workDir, "harden.json");
    let hr: HardenRecord;
    if (fs.existsSync(record) && fs.existsSync(path.join(cfg.out, "config.json"))) {
      hr = readJson<HardenRecord>(record);
      log.info(`training: reusing ${cfg.out}`);
    } else {
      const shared =
        cfg.method === "goodvibe"
          ? path.join(outDir, "work", "identify", identifyKey(cfg), NEURONS_FILE)
          : null;
      const own = path.join(planStages(cfg).identify.dir, NEURONS_FILE);
      if (shared && fs.existsSync(shared) && !fs.existsSync(own)) {
        writeFileAtomic(own, fs.readFileSync(shared));
        log.info(`identification: shared from ${path.dirname(shared)}`);
      }
      let r: Awaited<ReturnType<typeof runHarden>>;
      try {
        r = await runHarden(cfg, { log, signal });
      } finally {
        // share the neuron map even when training failed or was stopped: identification itself finished
        if (shared && !fs.existsSync(shared) && fs.existsSync(own))
          writeFileAtomic(shared, fs.readFileSync(own));
      }
      const { log: _l, ...trainNoLog } = r.train;
      hr = {
        trainableParams: r.trainableParams,
        totalParams: r.totalParams,
        train: trainNoLog,
        fold: r.fold,
      };
      writeFileAtomic(record, JSON.stringify(hr, nanAsNull, 2));
    }
    const base = spec.methods.includes("base") ? await baseEvaluation(cell) : null;
    const ev = await evaluate(cfg.out, cell);
    let neurons: CellResult["neurons"];
    let identification: { flops: TrainResult["flops"]; wallSeconds: number } | undefined;
    if (cfg.method === "goodvibe") {
      // the maps are published inside the hardened model's folder
      const nm = readNeuronMap(path.join(cfg.out, NEURONS_FILE));
      neurons = neuronsOf(nm, readClusterMap(path.join(cfg.out, CLUSTERS_FILE)));
      identification = { flops: nm.flops, wallSeconds: nm.wallSeconds };
    }
    if (!spec.keepModels) fs.rmSync(cfg.out, { recursive: true, force: true });
    return {
      ...labels(cell),
      params: { trainable: hr.trainableParams, total: hr.totalParams },
      cost: costOf(hr.train, identification),
      ...reportParts(ev, base),
      ...(neurons ? { neurons } : {}),
      outcomes: outcomesOf(ev, evalPairs(cell)),
    };
  };

  // ---- the cells
  if (plan.judges.size > 0) {
    try {
      await prepareJudges();
    } catch (e) {
      if (e instanceof InterruptedError || signal?.aborted) {
        log.warn(`stopped while preparing the judge (${(e as Error).message}); rerun to resume`);
        return { outDir, ran: [], skipped: [], stopped: true };
      }
      throw e;
    }
  }
  const ran: string[] = [];
  const skipped: string[] = [];
  const results: CellResult[] = [];
  let stopped = false;
  const done = new Map<string, CellResult>();
  const share = opts.shard ? cellShare(plan.cells, opts.shard) : null;
  if (opts.shard)
    log.info(
      `shard ${opts.shard.index}/${opts.shard.count}: ${share!.size} of ${new Set(plan.cells.map((c) => c.key)).size} distinct cells`,
    );
  const pending: string[] = [];
  for (const [i, cell] of plan.cells.entries()) {
    const tag = `[${i + 1}/${plan.cells.length}] ${describeCell(cell)} (${cell.id})`;
    const cached = done.get(cell.key) ?? (isCellDone(cell) ? readCell(cell, log) : null);
    if (cached) {
      skipped.push(cell.id);
      results.push(relabel(cached, cell));
      done.set(cell.key, cached);
      continue;
    }
    if (share && !share.has(cell.key)) {
      pending.push(cell.id); // another shard's
      continue;
    }
    if (
      stopped ||
      (await stopRequested(signal)) ||
      (opts.stopAfterCells !== undefined && ran.length >= opts.stopAfterCells)
    ) {
      stopped = true;
      continue; // still collect the cells finished further on (results.partial.json)
    }
    // a worker sharing this folder may be computing it, or have just finished it (shard.ts)
    const release = tryClaim(cell.workDir);
    if (!release) {
      log.info(`${tag}: being computed by ${claimHolder(cell.workDir) ?? "another worker"}; left to it`);
      pending.push(cell.id);
      continue;
    }
    const finished = isCellDone(cell) ? readCell(cell, log) : null;
    if (finished) {
      release();
      skipped.push(cell.id);
      results.push(relabel(finished, cell));
      done.set(cell.key, finished);
      continue;
    }
    log.info(`${tag}: running`);
    opts.onCellStart?.(cell);
    fs.mkdirSync(cell.workDir, { recursive: true });
    writeFileAtomic(path.join(cell.workDir, "inputs.json"), JSON.stringify(cell.inputs, null, 2));
    const t0 = Date.now();
    let result: CellResult;
    try {
      result = cell.method === "base" ? await runBaseCell(cell) : await runTrainedCell(cell);
    } catch (e) {
      release();
      // harden throws when training stops at a checkpoint; the caches keep the progress
      if (e instanceof InterruptedError || signal?.aborted) {
        log.warn(`${tag}: interrupted (${(e as Error).message})`);
        stopped = true;
        continue;
      }
      throw e;
    }
    const parsed = cellResultSchema.safeParse(result);
    if (!parsed.success)
      throw new Error(
        `${tag}: the cell does not fit the report schema: ${parsed.error.issues.map((x) => `${x.path.join(".")}: ${x.message}`).join("; ")}`,
      );
    // refuse to file a result under keys that no longer describe its inputs
    checkInputsUnchanged(plan);
    writeFileAtomic(cell.cellFile, JSON.stringify(result, null, 2));
    release();
    log.info(`${tag}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    ran.push(cell.id);
    results.push(result);
    done.set(cell.key, result);
  }
  const experiment: ExperimentResults = {
    name: spec.name,
    createdAt: new Date().toISOString(),
    machine: machineDescription(),
    ...(plan.judgeMode ? { judge: describeJudge(plan, reliability, dev().length, judgeOverlap) } : {}),
    evaluation: evaluationInfo(
      evaluationProtocol({
        pairs: dev(),
        maxPrompts: spec.eval.maxPrompts,
        promptFilter: spec.eval.promptFilter,
        promptSpread,
        maxNewTokens: spec.eval.maxNewTokens,
      }).protocol,
    ),
    ...(plan.taskSplit ? { taskSplit: taskSplitInfo(plan.taskSplit) } : {}),
    cells: uniqueIds(results),
  };
  if (stopped || pending.length > 0) {
    if (stopped)
      log.warn(
        `stopped with ${results.length} of ${plan.cells.length} cells done; rerun the same command to resume`,
      );
    else
      log.info(
        `${results.length} of ${plan.cells.length} cells done; ${pending.length} are other workers' (another shard's or ` +
          `being computed): once they are done, \`experiment run\` on this folder writes results.json and the report`,
      );
    // the finished cells so far, for a look before the end (`goodvibe report` renders it); never results.json
    const partialFile = path.join(outDir, "results.partial.json");
    if (results.length > 0) {
      const partial = parseExperimentResults(JSON.parse(JSON.stringify(experiment)), partialFile);
      writeFileAtomic(partialFile, JSON.stringify(partial, null, 2));
    }
    return { outDir, ran, skipped, stopped, pending, ...(results.length > 0 ? { partialFile } : {}) };
  }

  const resultsFile = path.join(outDir, "results.json");
  // workers finishing together: one writes the results and the report
  const releaseResults = tryClaim(path.join(outDir, "work", "results"));
  if (!releaseResults) {
    log.info("every cell is done; another worker is writing results.json and the report");
    return { outDir, ran, skipped, stopped, pending };
  }
  const reportDir = path.join(outDir, "report");
  let checked: ExperimentResults;
  try {
    checked = parseExperimentResults(JSON.parse(JSON.stringify(experiment)), resultsFile);
    writeFileAtomic(resultsFile, JSON.stringify(checked, null, 2));
    if (opts.render ?? true) {
      await renderReport(checked, reportDir);
      log.info(`report: ${path.join(reportDir, "index.html")}`);
    }
  } finally {
    releaseResults();
  }
  return { outDir, ran, skipped, stopped, resultsFile, reportDir, results: checked };
}

/**
 * securityCell, tolerating runs where no prompt has a verdict from both models (mcnemarVsBase refuses those,
 * e.g. when neither model wrote extractable code): the cell then has no McNemar test.
 */
function reportParts(
  ev: ModelEvaluation,
  base?: ModelEvaluation | null,
): Pick<CellResult, "security" | "utility"> {
  let parts: Pick<CellResult, "security" | "utility">;
  try {
    parts = securityCell(ev, base);
  } catch (e) {
    if (!(e instanceof InputError) || !/mcnemarVsBase/.test(e.message)) throw e;
    parts = securityCell(ev);
  }
  return { ...parts, security: dropEmptyRates(parts.security) };
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
