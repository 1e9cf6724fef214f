/**
 * The embedded demo: harden the project's own model organism (assets/organism, insecure by default) with GoodVibe
 * and show the evidence — secure preference and safe rate before and after, trainable parameters and FLOPs — in
 * the terminal and as an HTML report. Runs offline on 2 cores in a few minutes.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "../errors.js";
import { claimWorkFolder, writeFileAtomic } from "../io/atomic.js";
import { readPairs } from "../data/pairs.js";
import { LlmJudge } from "../eval/judge/llm.js";
import type { CellResult, ExperimentResults } from "../report/schema.js";
import { ZERO_COST, costOf, neuronsOf } from "../experiment/cell.js";
import {
  defaultHardenConfig,
  neuronMapConvention,
  runHarden,
  type HardenConfig,
  type HardenResult,
  type Logger,
} from "./harden.js";
import { readNeuronMap } from "../method/goodvibe/identify.js";
import { judgeConvention, sameJudgeConvention } from "../data/prompts.js";
import { evaluateModel, securityCell, type ModelEvaluation } from "./evaluate.js";

export const ORGANISM_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../assets/organism",
);

export interface DemoOptions {
  organism: string;
  out: string;
  seed: number;
  /** training pairs used (0 = all) */
  trainPairs: number;
  identifyPairs: number;
  prompts: number;
  maxNewTokens: number;
  epochs: number;
  lr: number;
  /** move an `out` folder holding something else aside (renamed, never deleted) instead of refusing it */
  overwrite?: boolean;
}

export const DEFAULT_DEMO: DemoOptions = {
  organism: ORGANISM_DIR,
  out: "goodvibe-demo",
  seed: 0,
  trainPairs: 0,
  identifyPairs: 128,
  prompts: 48,
  maxNewTokens: 160,
  epochs: 2,
  lr: 2e-3,
};

export interface DemoResult {
  base: ModelEvaluation;
  hardened: ModelEvaluation;
  harden: HardenResult;
  reportDir: string;
  resultsFile: string;
  wallSeconds: number;
}

/**
 * The demo's run folder is its own cache: one made under another judge convention (e.g. by a version that used
 * 1 = secure) is started over rather than reused or refused.
 */
function dropStaleRun(cfg: HardenConfig, log: Logger): void {
  const file = path.join(cfg.runDir, "neurons.json");
  if (!fs.existsSync(file)) return;
  try {
    const map = readNeuronMap(file);
    const want = judgeConvention(cfg.identify.judgeTask);
    const have = neuronMapConvention(map);
    if (have && sameJudgeConvention(have, want)) return;
  } catch {
    // unreadable: start over too
  }
  log.info(`the demo's previous run in ${cfg.runDir} used another judge convention; starting it over`);
  fs.rmSync(cfg.runDir, { recursive: true, force: true });
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
      ["hardened", "run", "cache", "results.json", "report"].includes(n) || /^hardened\.old-/.test(n),
  });
  if (aside) log.warn(`the earlier ${out} was moved aside to ${aside}`);
  fs.mkdirSync(out, { recursive: true });
  const trainFile = path.join(opts.organism, "data", "train.jsonl");
  const devFile = path.join(opts.organism, "data", "dev.jsonl");
  const dev = readPairs(devFile);

  log.info(`1/4 hardening the organism with GoodVibe (identify → cluster → train → fold)`);
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
  dropStaleRun(cfg, log);
  const harden = await runHarden(cfg, { log, signal });

  const judge = await LlmJudge.load(opts.organism);
  const evalOpts = {
    pairs: dev,
    judge,
    maxPrompts: opts.prompts,
    maxNewTokens: opts.maxNewTokens,
    batchSize: 16,
    cacheDir: path.join(out, "cache"),
    seed: opts.seed,
    log,
    signal,
  };
  log.info(`2/4 evaluating the base organism`);
  const base = await evaluateModel(opts.organism, evalOpts);
  log.info(`3/4 evaluating the hardened organism`);
  const hardened = await evaluateModel(harden.outDir, evalOpts);

  log.info(`4/4 writing the report`);
  const cells: CellResult[] = [
    {
      id: "base",
      model: "organism",
      method: "base",
      seed: opts.seed,
      params: { trainable: 0, total: harden.totalParams },
      cost: ZERO_COST,
      ...securityCell(base, null),
    },
    {
      id: "goodvibe",
      model: "organism",
      method: "goodvibe",
      seed: opts.seed,
      params: { trainable: harden.trainableParams, total: harden.totalParams },
      cost: costOf(harden.train, harden.neurons),
      ...securityCell(hardened, base),
      ...(harden.neurons && harden.clusters ? { neurons: neuronsOf(harden.neurons, harden.clusters) } : {}),
    },
  ];
  const results: ExperimentResults = {
    name: "goodvibe demo (model organism)",
    createdAt: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`,
    cells,
  };
  const resultsFile = path.join(out, "results.json");
  writeFileAtomic(resultsFile, JSON.stringify(results, null, 2));
  const reportDir = path.join(out, "report");
  const { renderReport } = await import("../report/index.js"); // vega loads slowly
  await renderReport(results, reportDir);
  return { base, hardened, harden, reportDir, resultsFile, wallSeconds: (Date.now() - t0) / 1000 };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function demoSummary(r: DemoResult): string {
  const row = (name: string, e: ModelEvaluation) => {
    const p = e.preference;
    const rule = e.safety?.rule.overall;
    const llm = e.safety?.llm?.overall;
    return [
      name.padEnd(10),
      `${pct(p.rate.value)} [${pct(p.rate.low)}, ${pct(p.rate.high)}]`.padEnd(26),
      `${p.meanLossGap.value.toFixed(3)}`.padEnd(9),
      rule && rule.n ? `${pct(rule.rate)} (n=${rule.n})`.padEnd(16) : "—".padEnd(16),
      llm && llm.n ? `${pct(llm.rate)} (n=${llm.n})`.padEnd(16) : "—".padEnd(16),
      e.utility.heldout_code_loss.value.toFixed(3),
    ].join(" ");
  };
  const h = r.harden;
  return [
    "",
    "GoodVibe on the model organism (held-out pairs and prompts)",
    `${"model".padEnd(10)} ${"secure preference [95% CI]".padEnd(26)} ${"loss gap".padEnd(9)} ${"safe (rules)".padEnd(16)} ${"safe (LLM judge)".padEnd(16)} held-out loss`,
    row("base", r.base),
    row("goodvibe", r.hardened),
    "",
    `trainable parameters: ${h.trainableParams.toLocaleString("en-US")} of ${h.totalParams.toLocaleString("en-US")} (${((100 * h.trainableParams) / h.totalParams).toPrecision(3)}%; full fine-tuning trains all ${h.totalParams.toLocaleString("en-US")})`,
    `training FLOPs: ${(h.train.flops.total / 1e9).toFixed(1)} GFLOP in ${h.train.wallSeconds.toFixed(1)} s; identification ${((h.neurons?.flops.total ?? 0) / 1e9).toFixed(1)} GFLOP`,
    `hardened model: ${h.outDir}`,
    `report: ${path.join(r.reportDir, "index.html")}`,
    `total time: ${r.wallSeconds.toFixed(0)} s`,
  ].join("\n");
}
