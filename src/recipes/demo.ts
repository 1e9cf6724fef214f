/**
 * The embedded demo: harden the project's own model organism (assets/organism, insecure by default) with GoodVibe
 * and show the evidence — secure preference and safe rate before and after, trainable parameters and FLOPs — in
 * the terminal and as an HTML report. Runs offline on 2 cores in about a minute.
 *
 * The safe rates are judged by a separate judge, as in the paper: the base organism fine-tuned once on labelled
 * training pairs (cached beside the output), the same judge for the base and the hardened model, with its
 * reliability (base vs fine-tuned judge, §7) on the held-out pairs. Where the demo's settings depart from the
 * paper's (to run in a minute on a CPU), it says so in its output, its report and the README (demoDepartures).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { claimWorkFolder, writeFileAtomic } from "../io/atomic.js";
import { labelConflicts, readPairs, type SecurityPair } from "../data/pairs.js";
import { LlmJudge, conflictingNote } from "../eval/judge/llm.js";
import {
  confusionIntervals,
  percentWithInterval,
  type CountedInterval,
  type Interval,
} from "../eval/metrics.js";
import { ratesIntervalName } from "../report/aggregate.js";
import { DEFAULT_JUDGE_TRAIN } from "../eval/judge/config.js";
import type { CellResult, ExperimentResults, JudgeReliabilityEntry } from "../report/schema.js";
import { ZERO_COST, cellBuild, checkpointingOf, costOf, neuronsOf } from "./cell.js";
import { DEFAULT_IDENTIFY, goodvibeReadings } from "../method/goodvibe/config.js";
import { defaultHardenConfig, type HardenConfig } from "../config/harden.js";
import { runHarden, type HardenResult } from "./harden.js";
import type { Logger } from "../util/log.js";
import type { DemoOptions } from "./config.js";
import { describeJudgeConvention, judgeConvention, type JudgeConvention } from "../data/prompts.js";
import { createHash } from "node:crypto";
import { modelWeightsHash } from "../io/hash.js";
import { DEFAULT_TRAIN } from "../method/train-config.js";
import { codeBlocksReading } from "../eval/safety.js";
import { judgeVerdictReading } from "../eval/judge/llm.js";
import { DEFAULT_CODE_BLOCKS } from "../data/code.js";
import {
  ensureJudgeTrained,
  judgeTrainingPairs,
  judgeInfo,
  measureJudgeReliability,
  shownPath,
  type JudgeTraining,
} from "./judge.js";
import {
  describeProtocol,
  evaluateModel,
  evaluationInfo,
  securityCell,
  type ModelEvaluation,
} from "./evaluate.js";

/** The demo's judge: a full fine-tune of the base organism, one epoch over its labelled pairs. */
const DEMO_JUDGE = { method: "full" as const, epochs: 1, lr: 1e-4, batchSize: 8, maxLength: 512 };

type Departure = NonNullable<ExperimentResults["departures"]>[number];

/** Where the demo's settings differ from the paper's (GoodVibe §4.2, §4.3, §5.1), computed from the settings. */
export function demoDepartures(
  opts: DemoOptions,
  cfg: HardenConfig,
  devPairs: number,
  trainPairs: number,
): Departure[] {
  const out: Departure[] = [];
  const t = cfg.train;
  if (t.lr !== DEFAULT_TRAIN.lr)
    out.push({
      setting: "learning rate",
      paper: `${DEFAULT_TRAIN.lr} (AdamW, cosine, warm-up 0.1)`,
      here: `${t.lr}`,
      why: "the 0.9M-parameter organism needs a larger step to move in two short epochs",
    });
  if (cfg.identify.topK !== DEFAULT_IDENTIFY.topK)
    out.push({
      setting: "top-k security neurons per layer",
      paper: `${DEFAULT_IDENTIFY.topK}`,
      here: `${cfg.identify.topK}`,
      why: `the organism's layers have ${ORGANISM_ROWS} output rows; 50 would be a large share of them`,
    });
  if (t.batchSize !== 1)
    out.push({
      setting: "batch",
      paper: "per-device batch 1 with gradient accumulation",
      here: `micro-batches of ${t.batchSize} × ${t.gradAccum} accumulation steps`,
      why: "throughput on two CPU cores",
    });
  if (cfg.identify.maxPairs > 0 && cfg.identify.maxPairs < trainPairs)
    out.push({
      setting: "identification samples",
      paper: "all pairs of a language (424 per language)",
      here: `${cfg.identify.maxPairs} of ${trainPairs} pairs (${2 * cfg.identify.maxPairs} samples) over four languages`,
      why: "time",
    });
  // the paper's §4.2 enables checkpointing (to save memory; the weights are the same without it)
  if (t.gradientCheckpointing !== true || cfg.dtype !== "bfloat16")
    out.push({
      setting: "precision and memory",
      paper: "bf16 mixed precision with gradient checkpointing",
      here: `${cfg.dtype ?? "the organism's dtype"}, ${t.gradientCheckpointing === true ? "with gradient checkpointing" : t.gradientCheckpointing === "auto" ? "gradient checkpointing only where memory is short" : "without gradient checkpointing"}`,
      why: "a tiny model has no memory to save",
    });
  out.push({
    setting: "judge",
    paper: "Qwen3-0.6B fine-tuned on security-labelled code, the same judge for every model",
    here:
      `the base organism fully fine-tuned for ${DEMO_JUDGE.epochs} epoch on ${opts.judgePairs > 0 ? Math.min(opts.judgePairs, trainPairs) : trainPairs} ` +
      "labelled training pairs, the same judge for the base and the hardened model",
    why: "no model hub offline; the organism is the only pretrained model shipped",
  });
  if (opts.prompts > 0 && opts.prompts < devPairs)
    out.push({
      setting: "evaluation prompts",
      paper: "every held-out prompt of each language",
      here: `${opts.prompts} of ${devPairs} held-out prompts, round-robin over the four languages and their tasks`,
      why: "time (--prompts 0 answers them all)",
    });
  out.push(...goodvibeReadings(cfg.identify, cfg.cluster));
  // the demo judges as eval does by default; `goodvibe eval --code-blocks all` on its folders reads every block
  out.push(codeBlocksReading(DEFAULT_CODE_BLOCKS, "eval --code-blocks", "eval --code-blocks all"));
  out.push(judgeVerdictReading());
  return out;
}

/** Output rows of the organism's linear layers (its config), for the top-k departure. */
const ORGANISM_ROWS = "128 to 384";

export interface DemoResult {
  base: ModelEvaluation;
  hardened: ModelEvaluation;
  /** the security parts of results.json's two cells: the rates with the intervals the report gives them */
  security: { base: CellResult["security"]; hardened: CellResult["security"] };
  harden: HardenResult;
  /** the judge's folder and its reliability, base vs fine-tuned */
  judge: { dir: string; reliability: JudgeReliabilityEntry[] };
  departures: Departure[];
  reportDir: string;
  resultsFile: string;
  wallSeconds: number;
}

/**
 * The demo judge's cache folder name: a hash of the inputs it depends on (a rerun reuses it, another organism or
 * setting trains another). Pairs that label some code both ways (left out of judge training since e307cb7) add a
 * marker, so only a judge trained on such pairs is trained again; one on clean pairs keeps its folder.
 */
export function demoJudgeKey(
  organism: string,
  trainFile: string,
  judgePairs: number,
  convention: JudgeConvention,
  pairs: readonly SecurityPair[],
): string {
  return createHash("sha256")
    .update(
      JSON.stringify([
        modelWeightsHash(organism),
        fs.readFileSync(trainFile),
        DEMO_JUDGE,
        judgePairs,
        convention,
        ...(labelConflicts(pairs).size > 0 ? ["label conflicts left out"] : []),
      ]),
    )
    .digest("hex")
    .slice(0, 16);
}

/** The demo's hardening settings (its departures from the paper's are listed by demoDepartures). */
export function demoHardenConfig(opts: DemoOptions, out: string): HardenConfig {
  const trainFile = path.join(opts.organism, "data", "train.jsonl");
  const cfg = defaultHardenConfig({ model: opts.organism, data: trainFile, out: path.join(out, "hardened") });
  cfg.runDir = path.join(out, "run");
  // a hardened model of an earlier demo with other settings is the demo's own: moved aside inside its folder
  cfg.overwrite = true;
  cfg.seed = opts.seed;
  cfg.identify = {
    ...cfg.identify,
    maxPairs: opts.identifyPairs,
    batchSize: 8,
    topK: 16,
    maxLength: 512,
    gradientCheckpointing: false,
  };
  cfg.train = {
    ...cfg.train,
    maxPairs: opts.trainPairs,
    epochs: opts.epochs,
    lr: opts.lr,
    batchSize: 4,
    gradAccum: 2,
    maxLength: 512,
    gradientCheckpointing: false,
    seed: opts.seed,
    checkpointEvery: 25,
  };
  return cfg;
}

export async function runDemo(opts: DemoOptions, log: Logger, signal?: AbortSignal): Promise<DemoResult> {
  const t0 = Date.now();
  if (!fs.existsSync(path.join(opts.organism, "config.json")))
    throw new InputError(
      `the model organism is missing at ${opts.organism}; build it with \`goodvibe organism build -o ${opts.organism}\``,
    );
  const out = path.resolve(opts.out);
  const aside = claimWorkFolder({
    flag: "--out",
    path: out,
    kind: "folder",
    inputs: { "--organism": opts.organism },
    overwrite: opts.overwrite,
    ownEntry: (n) =>
      ["hardened", "run", "cache", "judge", "results.json", "report"].includes(n) ||
      /^hardened\.old-/.test(n),
  });
  if (aside) log.warn(`the earlier ${out} was moved aside to ${aside}`);
  fs.mkdirSync(out, { recursive: true });
  const trainFile = path.join(opts.organism, "data", "train.jsonl");
  const devFile = path.join(opts.organism, "data", "dev.jsonl");
  const dev = readPairs(devFile);

  log.info(`1/5 hardening the organism with GoodVibe (identify → cluster → train → fold)`);
  const cfg = demoHardenConfig(opts, out);
  const harden = await runHarden(cfg, { log, signal });

  log.info(`2/5 the judge: the base organism fine-tuned once on labelled pairs (a separate model, cached)`);
  const convention = judgeConvention(cfg.identify.judgeTask);
  const trainAll = () => readPairs(trainFile);
  const judgeTraining: JudgeTraining = {
    base: opts.organism,
    pairs: trainAll,
    data: trainFile,
    settings: {
      ...DEFAULT_JUDGE_TRAIN,
      ...DEMO_JUDGE,
      gradAccum: 1,
      gradientCheckpointing: false,
      seed: 0,
      maxPairs: opts.judgePairs,
    },
    dir: "",
  };
  // cached under the inputs it depends on: a rerun reuses it, another organism or setting trains another
  judgeTraining.dir = path.join(
    out,
    "judge",
    demoJudgeKey(opts.organism, trainFile, opts.judgePairs, convention, judgeTrainingPairs(judgeTraining)),
  );
  const judgeDir = await ensureJudgeTrained(judgeTraining, { convention, log, signal });
  const reliability = await measureJudgeReliability({
    judgeDir,
    baseDir: opts.organism,
    heldOut: dev,
    convention,
    cacheFile: path.join(judgeTraining.dir, "reliability.json"),
    batchSize: 16,
    log,
    signal,
  });
  const judge = await LlmJudge.load(judgeDir, { convention });
  const evalOpts = {
    pairs: dev,
    judge,
    maxPrompts: opts.prompts,
    // over languages and each language's tasks: 48 prompts reach all 48 tasks of the organism's dev pairs (over
    // languages alone they were each language's first 12 prompts: 15 tasks, 11 of 23 CWEs)
    promptSpread: "task" as const,
    maxNewTokens: opts.maxNewTokens,
    batchSize: 16,
    cacheDir: path.join(out, "cache"),
    seed: opts.seed,
    log,
    signal,
  };
  log.info(`3/5 evaluating the base organism`);
  const base = await evaluateModel(opts.organism, evalOpts);
  log.info(`4/5 evaluating the hardened organism`);
  const hardened = await evaluateModel(harden.outDir, evalOpts);

  log.info(`5/5 writing the report`);
  const trainCount = trainAll().length;
  const departures = demoDepartures(opts, cfg, dev.length, trainCount);
  const checkpointing = checkpointingOf(harden.gradientCheckpointing, harden.neurons?.gradientCheckpointing);
  const cells: CellResult[] = [
    {
      id: "base",
      model: "organism",
      method: "base",
      seed: opts.seed,
      params: { trainable: 0, total: harden.totalParams },
      cost: ZERO_COST,
      ...securityCell(base, null, dev),
      build: cellBuild({ evaluated: opts.organism }),
    },
    {
      id: "goodvibe",
      model: "organism",
      method: "goodvibe",
      seed: opts.seed,
      params: { trainable: harden.trainableParams, total: harden.totalParams },
      cost: costOf(harden.train, harden.neurons),
      ...securityCell(hardened, base, dev),
      ...(harden.neurons && harden.clusters ? { neurons: neuronsOf(harden.neurons, harden.clusters) } : {}),
      ...(checkpointing ? { gradientCheckpointing: checkpointing } : {}),
      // the report marks a run that trained nothing or barely (report/schedule.ts)
      schedule: harden.schedule,
      build: cellBuild({ trainedIn: cfg.dtype }),
    },
  ];
  const judgedOn = opts.judgePairs > 0 ? Math.min(opts.judgePairs, trainCount) : trainCount;
  const results: ExperimentResults = {
    name: "goodvibe demo (model organism)",
    createdAt: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`,
    judge: judgeInfo({
      mode: "independent",
      description:
        `one judge for the base and the hardened organism: the base organism fully fine-tuned on ${judgedOn} ` +
        `labelled training pairs (${shownPath(judgeDir, out)}), never on either model's answers; instruction and labels: ` +
        describeJudgeConvention(convention),
      convention,
      heldOut: `${dev.length} held-out pairs of ${devFile} (${2 * dev.length} labelled samples)`,
      reliability,
      outDir: out,
    }),
    evaluation: evaluationInfo(base.protocol),
    departures,
    cells,
  };
  const resultsFile = path.join(out, "results.json");
  writeFileAtomic(resultsFile, JSON.stringify(results, null, 2));
  const reportDir = path.join(out, "report");
  const { renderReportLogged } = await import("../report/index.js"); // vega loads slowly
  // a rerun into the same folder re-renders its report: what it removed of the earlier one is said
  await renderReportLogged(results, reportDir, log, "report: ");
  return {
    base,
    hardened,
    security: { base: cells[0]!.security, hardened: cells[1]!.security },
    harden,
    judge: { dir: judgeDir, reliability },
    departures,
    reportDir,
    resultsFile,
    wallSeconds: (Date.now() - t0) / 1000,
  };
}

/** A safe rate of the summary's table: the rate, its 95% interval and n (a results.json rate); "—" when nothing was judged. */
export function safeRateCell(r: (Interval & { n: number }) | undefined): string {
  return r && r.n ? `${percentWithInterval(r)} (n=${r.n})` : "—";
}

/**
 * A judge's line of the summary: accuracy over every sample, TPR over the insecure ones and FPR over the secure
 * ones, each with its 95% Wilson interval and n (the report's judge table gives the same), so that a rate over a
 * few samples is not read as exact.
 */
export function judgeReliabilityLine(
  x: Pick<JudgeReliabilityEntry, "role" | "n" | "accuracy" | "confusion" | "conflicting">,
): string {
  const { tp, fp, tn, fn } = x.confusion;
  const ci = confusionIntervals(x.confusion);
  const rate = (r: CountedInterval | null) => (r ? percentWithInterval(r) : "— (none)");
  return (
    `  ${(x.role === "base" ? "base organism, zero-shot" : "fine-tuned judge").padEnd(25)} ` +
    `accuracy ${percentWithInterval(x.accuracy)} (n=${x.n}), ` +
    `TPR ${rate(ci.tpr)} (n=${tp + fn}), FPR ${rate(ci.fpr)} (n=${fp + tn})` +
    conflictingNote(x.conflicting)
  );
}

export function demoSummary(r: DemoResult): string {
  // the rates as results.json holds them (securityCell: over tasks where the pairs name them), not the items' Wilson
  const row = (name: string, e: ModelEvaluation, s: CellResult["security"]) => {
    const p = e.preference;
    const noCode = e.safety ? `${e.safety.noCode}/${e.safety.n}` : "—";
    return [
      name.padEnd(10),
      percentWithInterval(s.securePreference?.rate ?? p.rate).padEnd(26),
      `${p.meanLossGap.value.toFixed(3)}`.padEnd(9),
      safeRateCell(s.safeRate?.llm?.overall).padEnd(28),
      safeRateCell(s.safeRate?.rule?.overall).padEnd(28),
      noCode.padEnd(8),
      e.utility.heldout_code_loss.value.toFixed(3),
    ].join(" ");
  };
  const h = r.harden;
  return [
    "",
    `GoodVibe on the model organism (held-out pairs; safe rates on ${describeProtocol(r.base.protocol)})`,
    `${"model".padEnd(10)} ${"secure preference [95% CI]".padEnd(26)} ${"loss gap".padEnd(9)} ${"safe (LLM judge) [95% CI]".padEnd(28)} ${"safe (rules) [95% CI]".padEnd(28)} ${"no code".padEnd(8)} held-out loss`,
    row("base", r.base, r.security.base),
    row("goodvibe", r.hardened, r.security.hardened),
    "LLM judge: every answer (whole when it has no code block); rules: answers with code only.",
    "",
    `the judge (a separate model, the same for both; positive = unsafe, on ${r.base.preference.n} held-out pairs):`,
    ...r.judge.reliability.map(judgeReliabilityLine),
    `brackets: the rates', ${ratesIntervalName(r.security.hardened)}, as results.json and the report give them; the judge's, 95% Wilson intervals over the samples counted in n`,
    "",
    `trainable parameters: ${h.trainableParams.toLocaleString("en-US")} of ${h.totalParams.toLocaleString("en-US")} (${((100 * h.trainableParams) / h.totalParams).toPrecision(3)}%; full fine-tuning trains all ${h.totalParams.toLocaleString("en-US")})`,
    `training FLOPs: ${(h.train.flops.total / 1e9).toFixed(1)} GFLOP in ${h.train.wallSeconds.toFixed(1)} s; identification ${((h.neurons?.flops.total ?? 0) / 1e9).toFixed(1)} GFLOP`,
    "",
    "where this demo departs from the paper (to run in a minute on a CPU):",
    ...r.departures.map((d) => `  ${d.setting}: ${d.here} (paper: ${d.paper}) — ${d.why}`),
    "",
    `hardened model: ${h.outDir}`,
    `report: ${path.join(r.reportDir, "index.html")}`,
    `total time: ${r.wallSeconds.toFixed(0)} s`,
  ].join("\n");
}
