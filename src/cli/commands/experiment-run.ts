/**
 * What `goodvibe experiment run` and `experiment plan` do: loaded by experiment.ts (which registers the commands) only when one runs.
 */
import type { OptionValues } from "commander";
import { experimentDepartures } from "../../experiment/departures.js";
import { EXIT, interruptSignal, makeLogger, output, runCommand } from "../common.js";
import { experimentSource, loadExperimentSpec, type ExperimentSpec } from "../../experiment/spec.js";
import { claimWorkFolder } from "../../io/atomic.js";
import { claimHolder } from "../../io/claim.js";
import {
  cellComputation,
  cellModelLabel,
  describeCell,
  expandCells,
  isCellDone,
  missingInputs,
  experimentOutDir,
  planExperiment,
  checkCellsTopK,
} from "../../experiment/plan.js";
import {
  PLAN_TOKENIZE_PAIRS,
  cellTokens,
  estimateCells,
  plannedSchedules,
  planThroughput,
  shortScheduleWarnings,
  type CellEstimate,
  type Throughput,
} from "../../experiment/estimate.js";
import { runExperiment } from "../../experiment/run.js";
import { SCHEDULE_MARK, listed } from "../../report/schedule.js";
import { formatFlops } from "../../method/flops.js";
import { parseShard, shardFromEnvironment } from "../../util/shard.js";
import { shellCommand } from "../../util/shell.js";

export async function experimentRunCommand(
  g: OptionValues,
  file: string,
  opts: { out?: string; set: string[]; stopAfter?: number; overwrite?: boolean; shard?: string },
): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    const fromEnv = opts.shard ? null : shardFromEnvironment();
    const shard = opts.shard ? parseShard(opts.shard) : fromEnv?.shard;
    if (fromEnv) log.info(`shard ${shard!.index}/${shard!.count} from ${fromEnv.from}`);
    const spec = loadExperimentSpec(file, opts.set);
    // a cell's top-k past its model's range, from config.json: refused before the output folder is claimed
    checkCellsTopK(spec, experimentSource(file, opts.set));
    // claimed before planning: a task split is written into the folder while planning
    const aside = claimWorkFolder({
      flag: "output folder",
      path: experimentOutDir(spec, opts.out),
      kind: "folder",
      inputs: experimentInputs(spec, file),
      overwrite: opts.overwrite,
      ownEntry: (n) =>
        ["plan.json", "cells", "work", "split", "results.json", "results.partial.json", "report"].includes(n),
    });
    // messages name the file and the --set overrides laid over it: a bad value may be one of theirs
    const plan = planExperiment(spec, { out: opts.out, source: experimentSource(file, opts.set) });
    if (aside) log.warn(`the earlier ${plan.outDir} was moved aside to ${aside}`);
    const signal = interruptSignal(log);
    const r = await runExperiment(plan, {
      log,
      signal,
      stopAfterCells: opts.stopAfter,
      shard: shard && shard.count > 1 ? shard : undefined,
    });
    log.done();
    // the run that writes the results: this file into this folder with these settings, on every shard (no --shard)
    const finishCommand = shellCommand([
      ...["goodvibe", "experiment", "run", file, "-o", plan.outDir],
      ...opts.set.flatMap((s) => ["--set", s]),
    ]);
    // --stop-after is a requested, clean stop, not an interruption: exit 0 (a signal, even during such a run: 130)
    const byStopAfter = r.stopped && !signal.aborted && opts.stopAfter !== undefined;
    const lines = [
      `${plan.cells.length} cells: ${r.ran.length} computed now, ${r.skipped.length} cached` +
        (r.shared.length > 0
          ? `, ${r.shared.length} ${r.shared.length === 1 ? "shares" : "share"} another cell's result (the same settings)`
          : ""),
      r.stopped
        ? byStopAfter
          ? `stopped after ${r.ran.length} cell${r.ran.length === 1 ? "" : "s"} computed now (--stop-after ${opts.stopAfter}): rerun the same command to go on`
          : "stopped before the end: rerun the same command to resume"
        : r.pending?.length
          ? `${r.pending.length} cells are other workers': once they are done, run \`${finishCommand}\` for results.json and the report`
          : r.resultsFile
            ? `results: ${r.resultsFile}`
            : "another worker is writing results.json and the report",
      r.reportDir && !r.stopped ? `report: ${r.reportDir}/index.html` : "",
      shortSchedulesLine(r.shortSchedules),
    ].filter(Boolean);
    output(g, lines.join("\n"), {
      outDir: r.outDir,
      cells: plan.cells.length,
      ran: r.ran,
      skipped: r.skipped,
      shared: r.shared,
      stopped: r.stopped,
      ...(r.stopped ? { stoppedBy: byStopAfter ? "stop-after" : "signal" } : {}),
      shard: shard ?? null,
      pending: r.pending ?? [],
      resultsFile: r.resultsFile ?? null,
      reportDir: r.reportDir ?? null,
      shortSchedules: r.shortSchedules,
    });
    if (r.stopped && !byStopAfter) process.exitCode = EXIT.interrupted;
  });
}

/** The summary's count of finished cells whose training did nothing or barely ("" when none). */
function shortSchedulesLine(s: { none: string[]; few: string[] }): string {
  const parts = [
    s.none.length
      ? `${s.none.length} trained nothing (every step at learning rate 0: ${listed(s.none, ", ")})`
      : "",
    s.few.length ? `${s.few.length} barely trained (${listed(s.few, ", ")})` : "",
  ].filter(Boolean);
  return parts.length
    ? `warning: of the cells done, ${parts.join(" and ")}: not results of the method; the report marks them ${SCHEDULE_MARK}`
    : "";
}

export async function experimentPlanCommand(
  g: OptionValues,
  file: string,
  opts: { out?: string; set: string[] },
): Promise<void> {
  await runCommand(g, async () => {
    const spec = loadExperimentSpec(file, opts.set);
    // messages name the file and the --set overrides laid over it: a bad value may be one of theirs
    const source = experimentSource(file, opts.set);
    const settings = expandCells(spec, source);
    const throughput = planThroughput(spec);
    const missing = missingInputs(spec, source);
    const departures = experimentDepartures(spec, source);
    // a plan writes nothing: the task split is computed in memory, its files are the run's
    if (missing.length === 0) checkCellsTopK(spec, source);
    const plan = missing.length === 0 ? planExperiment(spec, { out: opts.out, source, write: false }) : null;
    // the cells' own examples, counted where the data and the model's tokenizer are at hand; their pairs those
    // each cell trains on (the plan's cells: a task split's hardening share)
    const estimates = estimateCells(
      spec,
      plan?.cells ?? settings,
      source,
      throughput,
      await cellTokens(spec, plan?.cells ?? settings, { unwritten: plan?.unwritten }),
      plan?.unwritten,
    );
    // each cell's schedule on the pairs it will train on: a task split's hardening share (the plan's cells read
    // it, unwritten), never the whole training file, whose count can hide a warning the run then gives; without
    // a plan (missing inputs) a split's cells have no schedule to show
    const schedules = plan
      ? plannedSchedules(plan.cells, plan.unwritten)
      : spec.data.taskSplit
        ? settings.map(() => null)
        : plannedSchedules(settings);
    const rows = settings.map((c, i) => {
      const p = plan?.cells[i];
      const cached = p ? isCellDone(p) : false;
      return {
        id: p?.id ?? null,
        model: cellModelLabel(c),
        method: c.method,
        ablation: c.ablation ?? null,
        seed: c.seed,
        cached,
        // a cell a live worker is computing now (its work folder's claim: io/claim.ts); a dead one's is no claim
        runningBy: p && !cached ? claimHolder(p.workDir) : null,
        estimate: estimates[i]!,
        // the run's learning-rate schedule and harden's warning on it (null: base cell, or its data missing)
        schedule: schedules[i] ?? null,
      };
    });
    // the status line counts computations: cells of one key (a grid value equal to the default) are one
    const byKey = new Map<string, (typeof rows)[number]>();
    rows.forEach((r, i) => byKey.set(plan?.cells[i]!.key ?? String(i), r));
    const keyed = [...byKey.values()];
    const done = keyed.filter((r) => r.cached).length;
    const running = keyed.filter((r) => r.runningBy !== null).length;
    const sameKey = rows.length - keyed.length;
    // cells with equal settings (a grid value equal to the default) are computed once: count them once
    const seen = new Set<string>();
    const unique = rows.filter((_, i) => {
      const k = cellComputation(settings[i]!);
      return !seen.has(k) && !!seen.add(k);
    });
    const sum = (f: (r: (typeof rows)[number]) => number) => unique.reduce((a, r) => a + f(r), 0);
    const e = spec.estimate;
    // the cells still to compute (once per computation) whose training would do nothing or barely: said now, before
    // a grid spends hours on them
    const toCompute = settings.flatMap((c, i) => (rows[i]!.cached ? [] : [i]));
    const computed = new Set<string>();
    const firstOf = toCompute.filter((i) => {
      const k = cellComputation(settings[i]!);
      return !computed.has(k) && !!computed.add(k);
    });
    const shortWarnings = shortScheduleWarnings(
      firstOf.map((i) => settings[i]!),
      firstOf.map((i) => schedules[i] ?? null),
    );
    const human = [
      plan
        ? `${plan.outDir}: ${rows.length} cells` +
          (sameKey > 0
            ? ` (${keyed.length} to compute: ${sameKey} ${sameKey === 1 ? "shares" : "share"} another cell's key)`
            : "") +
          `, ${done} cached, ${running > 0 ? `${running} running (claimed by a live worker), ` : ""}` +
          `${keyed.length - done - running} to run`
        : `${rows.length} cells; inputs missing (ids and cache status need them; \`experiment run\` stops at the first):`,
      ...missing.map((m) => `  ${m}`),
      ...describeTokens(estimates, settings.map(cellModelLabel), e),
      `FLOPs = identification + training, counted; 6·N·D = the trainer-style estimate of training (README, ` +
        `"Cost"); memory = the peak of the tensors (weights, training state, activations), where results.json's ` +
        `peak is the process's resident memory, the runtime's own (a few hundred MiB on a CPU) besides`,
      `time at ${describeThroughput(throughput)}`,
      [
        "status ",
        "id              ",
        "FLOPs       ",
        "6·N·D       ",
        "memory   ",
        "time     ",
        "trainable          ",
        "cell",
      ].join(" "),
      ...settings.map((c, i) => {
        const r = rows[i]!;
        const x = r.estimate;
        const trainable =
          x.trainable.high === 0
            ? "—"
            : x.trainable.low === x.trainable.high
              ? formatCount(x.trainable.high)
              : `${formatCount(x.trainable.low)}–${formatCount(x.trainable.high)}`;
        return [
          (r.cached ? "cached" : r.runningBy !== null ? "running" : "pending").padEnd(7),
          (r.id ?? "—").padEnd(16),
          formatFlops(x.flops.total).padEnd(12),
          formatFlops(x.trainerEstimate).padEnd(12),
          formatBytes(x.peakMemoryBytes).padEnd(9),
          formatSeconds(x.seconds).padEnd(9),
          trainable.padEnd(19),
          describeCell(c) + (r.runningBy !== null ? ` (${r.runningBy})` : ""),
        ].join(" ");
      }),
      `total over the ${unique.length} distinct cells: ${formatFlops(sum((r) => r.estimate.flops.total))}, ` +
        `${formatSeconds(sum((r) => r.estimate.seconds))} at ${formatFlops(throughput.flopsPerSecond)}/s (training and ` +
        `identification; evaluation and the judge's training not included)`,
      ...(departures.length
        ? [
            "departs from the paper (results.json and the report say so too):",
            ...departures.map((d) => `  ${d.setting}: ${d.here} (paper: ${d.paper}) — ${d.why}`),
          ]
        : []),
      ...shortWarnings.map((l, i) => (i === 0 ? `warning: ${l}` : `  ${l}`)),
    ].join("\n");
    output(g, human, { outDir: plan?.outDir ?? null, missing, cells: rows, departures, throughput });
  });
}

/**
 * What the estimates' token counts came from, in words: the cells' own examples (mean lengths and the share of
 * training tokens the loss is on), or the assumed example of `estimate` and why, by model.
 */
function describeTokens(
  estimates: CellEstimate[],
  models: string[],
  e: ExperimentSpec["estimate"],
): string[] {
  const data = new Map<
    string,
    { judge: number; samples: number; tokens: number; loss: number; ex: number; drawn: number; of: number }
  >();
  const assumed = new Map<string, Set<string>>();
  estimates.forEach((x, i) => {
    if (x.tokens.why === "not trained") return;
    const m = models[i]!;
    if (x.tokens.from === "assumed") {
      if (!assumed.has(m)) assumed.set(m, new Set());
      assumed.get(m)!.add(x.tokens.why ?? "");
      return;
    }
    const d = data.get(m) ?? { judge: 0, samples: 0, tokens: 0, loss: 0, ex: 0, drawn: 0, of: 0 };
    if (x.tokens.sampled) {
      d.drawn = Math.max(d.drawn, x.tokens.sampled.pairs);
      d.of = Math.max(d.of, x.tokens.sampled.of);
    }
    d.judge += x.tokens.identify.tokens;
    d.samples += x.tokens.identify.samples;
    d.tokens += x.tokens.train.tokens;
    d.loss += x.tokens.train.loss;
    d.ex += x.tokens.train.examples;
    data.set(m, d);
  });
  const lines: string[] = [];
  for (const [m, d] of data)
    lines.push(
      `tokens of ${m}: counted from its cells' own examples with the model's tokenizer and chat template ` +
        `(${d.samples > 0 ? `judge prompts of ${(d.judge / d.samples).toFixed(0)} tokens on average, ` : ""}` +
        `training examples of ${(d.tokens / Math.max(1, d.ex)).toFixed(0)} tokens as batched, the loss on ` +
        `${((100 * d.loss) / Math.max(1, d.tokens)).toFixed(0)}% of them` +
        (d.drawn > 0
          ? `; tokenized a seeded draw of up to ${d.drawn} of ${d.of} pairs, the rest predicted from their characters: ` +
            `a plan tokenizes at most ${PLAN_TOKENIZE_PAIRS} pairs`
          : "") +
        ")",
    );
  for (const [m, why] of assumed)
    lines.push(
      `tokens of ${m}: ASSUMED, not counted (${[...why].join("; ")}): judge prompts of ${e.judgePromptTokens} ` +
        `tokens, training examples of ${e.exampleTokens} tokens (loss on half), ${e.pairsPerLanguage} pairs per ` +
        `language where the data is absent (the experiment file's \`estimate\`)`,
    );
  return lines;
}

/** Every path an experiment reads: its output folder must lie apart from all of them. */
function experimentInputs(spec: ExperimentSpec, file: string): Record<string, string | undefined> {
  const inputs: Record<string, string | undefined> = {
    "experiment file": file,
    "data.train": spec.data.train,
    "data.dev": spec.data.dev,
  };
  for (const m of spec.models) inputs[`model ${m.name}`] = m.path;
  if (spec.judge?.path !== undefined) inputs["judge.path"] = spec.judge.path;
  if (spec.judge?.base !== undefined) inputs["judge.base"] = spec.judge.base;
  const t = spec.judge?.train;
  if (t && t.base !== "self") inputs["judge.train.base"] = t.base;
  if (t?.data !== undefined) inputs["judge.train.data"] = t.data;
  for (const [k, v] of Object.entries(spec.eval.utility ?? {}))
    if (typeof v === "string") inputs[`eval.utility.${k}`] = v;
  return inputs;
}

function formatBytes(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`;
}

function formatSeconds(s: number): string {
  if (s === 0) return "—";
  if (s < 120) return `${s.toFixed(0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function formatCount(n: number): string {
  return n >= 1e9
    ? `${(n / 1e9).toFixed(2)} B`
    : n >= 1e6
      ? `${(n / 1e6).toFixed(2)} M`
      : n.toLocaleString("en-US");
}

/** "0.3 TFLOP/s (the default for cpu ...)": the throughput a plan's times assume, and where it came from. */
function describeThroughput(t: Throughput): string {
  const rate = `${formatFlops(t.flopsPerSecond)}/s`;
  return t.from === "estimate.flopsPerSecond"
    ? `${rate} (the experiment file's estimate.flopsPerSecond)`
    : `${rate}, the default for ${t.device} (GOODVIBE_DEVICE ${t.deviceSetting === null ? "unset" : t.deviceSetting}): ` +
        (t.device === "cpu"
          ? "a little under what harden sustained on one Zen 5 thread (316–358 GFLOP/s, 60–68% of its bf16 matmul peak; BENCHMARKS)"
          : "about an eighth of an H200's measured bf16 matmul rate; not measured for this code on a GPU") +
        "; set estimate.flopsPerSecond (--set estimate.flopsPerSecond=<FLOP/s>) for your machine";
}
