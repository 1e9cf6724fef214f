import type { Command } from "commander";
import { collect, integer } from "../options.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";
import { loadExperimentSpec, type ExperimentSpec } from "../../experiment/spec.js";
import { claimWorkFolder } from "../../io/atomic.js";

/** Every path an experiment reads: its output folder must lie apart from all of them. */
function experimentInputs(spec: ExperimentSpec, file: string): Record<string, string | undefined> {
  const inputs: Record<string, string | undefined> = {
    "experiment file": file,
    "data.train": spec.data.train,
    "data.dev": spec.data.dev,
  };
  for (const m of spec.models) inputs[`model ${m.name}`] = m.path;
  if (spec.judge && "path" in spec.judge) inputs["judge.path"] = spec.judge.path;
  if (spec.judge && "train" in spec.judge) inputs["judge.train.base"] = spec.judge.train.base;
  for (const [k, v] of Object.entries(spec.eval.utility ?? {}))
    if (typeof v === "string") inputs[`eval.utility.${k}`] = v;
  return inputs;
}
import { describeCell, isCellDone, planExperiment } from "../../experiment/plan.js";
import { runExperiment } from "../../experiment/run.js";

export function registerExperiment(program: Command): void {
  const exp = program
    .command("experiment")
    .description(
      "run a grid of models × methods × ablations × seeds from one YAML file; cached per cell, resumable",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe experiment plan experiments/organism.yaml\n  goodvibe experiment run experiments/organism.yaml",
    );

  exp
    .command("run <file>")
    .description("run every cell not yet finished, then write results.json and the report")
    .option("-o, --out <dir>", "output folder (default: the file's out, or runs/<name>)")
    .option(
      "--set <key=value>",
      "override a key of the experiment file, e.g. --set eval.maxPrompts=16 (repeatable)",
      collect,
      [],
    )
    .option("--stop-after <n>", "compute at most n cells, then stop (rerun to continue)", integer(1))
    .option("--overwrite", "move an output folder holding anything else aside (renamed, never deleted)")
    .addHelpText(
      "after",
      `
Examples:
  goodvibe experiment run experiments/organism.yaml
  goodvibe experiment run experiments/organism.yaml --set seeds=[0] --out runs/organism-quick
Ctrl-C stops at the next checkpoint; rerunning the same command resumes and skips finished cells.`,
    )
    .action(
      async (
        file: string,
        opts: { out?: string; set: string[]; stopAfter?: number; overwrite?: boolean },
      ) => {
        const g = program.opts();
        const log = makeLogger(g);
        await runCommand(g, async () => {
          const spec = loadExperimentSpec(file, opts.set);
          const plan = planExperiment(spec, { out: opts.out, source: file });
          const aside = claimWorkFolder({
            flag: "output folder",
            path: plan.outDir,
            kind: "folder",
            inputs: experimentInputs(spec, file),
            overwrite: opts.overwrite,
            ownEntry: (n) =>
              ["plan.json", "cells", "work", "results.json", "results.partial.json", "report"].includes(n),
          });
          if (aside) log.warn(`the earlier ${plan.outDir} was moved aside to ${aside}`);
          const r = await runExperiment(plan, {
            log,
            signal: interruptSignal(log),
            stopAfterCells: opts.stopAfter,
          });
          log.done();
          const lines = [
            `${plan.cells.length} cells: ${r.ran.length} computed now, ${r.skipped.length} cached`,
            r.stopped
              ? "stopped before the end: rerun the same command to resume"
              : `results: ${r.resultsFile}`,
            r.reportDir && !r.stopped ? `report: ${r.reportDir}/index.html` : "",
          ].filter(Boolean);
          output(g, lines.join("\n"), {
            outDir: r.outDir,
            cells: plan.cells.length,
            ran: r.ran,
            skipped: r.skipped,
            stopped: r.stopped,
            resultsFile: r.resultsFile ?? null,
            reportDir: r.reportDir ?? null,
          });
          if (r.stopped) process.exitCode = 130;
        });
      },
    );

  exp
    .command("plan <file>")
    .description("list the cells in run order and which are already finished (reads and hashes the inputs)")
    .option("-o, --out <dir>", "output folder (default: the file's out, or runs/<name>)")
    .option("--set <key=value>", "override a key of the experiment file (repeatable)", collect, [])
    .addHelpText("after", "\nExample:\n  goodvibe experiment plan experiments/organism.yaml --set seeds=[0]")
    .action(async (file: string, opts: { out?: string; set: string[] }) => {
      const g = program.opts();
      await runCommand(g, async () => {
        const plan = planExperiment(loadExperimentSpec(file, opts.set), { out: opts.out, source: file });
        const rows = plan.cells.map((c) => ({
          id: c.id,
          model: c.model.name,
          method: c.method,
          ablation: c.ablation ?? null,
          seed: c.seed,
          cached: isCellDone(c),
        }));
        const done = rows.filter((r) => r.cached).length;
        const human = [
          `${plan.outDir}: ${rows.length} cells, ${done} cached, ${rows.length - done} to run`,
          ...plan.cells.map(
            (c, i) => `${rows[i]!.cached ? "cached " : "pending"}  ${c.id}  ${describeCell(c)}`,
          ),
        ].join("\n");
        output(g, human, { outDir: plan.outDir, cells: rows });
      });
    });
}
