import type { Command } from "commander";
import { collect, integer } from "../options.js";

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
    .option(
      "--stop-after <n>",
      "compute at most n cells, then stop and exit 0, results.partial.json holding the cells done (rerun to continue)",
      integer(1),
    )
    .option("--overwrite", "move an output folder holding anything else aside (renamed, never deleted)")
    .option(
      "--shard <i/n>",
      "compute only the i-th of n shares of the cells (default: from a Slurm array or a Kubernetes Indexed Job when set; 1/1 = all)",
    )
    .addHelpText(
      "after",
      `
Examples:
  goodvibe experiment run experiments/organism.yaml
  goodvibe experiment run experiments/organism.yaml --set seeds=[0] --out runs/organism-quick
  goodvibe experiment run experiments/paper.yaml -o /shared/runs/paper --shard 3/8
Ctrl-C stops at the next checkpoint; rerunning the same command resumes and skips finished cells.
Many workers may share one output folder (one per shard, or several on the same cells): each cell is computed
under a claim, and the last run on the folder writes results.json and the report. In a Slurm array
(SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT or MIN/MAX) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX
with GOODVIBE_SHARD_COUNT) the shard comes from the scheduler; see examples/slurm-array.sh, examples/k8s-indexed-job.yaml.`,
    )
    .action(async (file, opts) =>
      (await import("./experiment-run.js")).experimentRunCommand(program.opts(), file, opts),
    );

  exp
    .command("plan <file>")
    .description(
      "list the cells in run order with FLOPs, memory and time estimated from shapes, and which are finished",
    )
    .option("-o, --out <dir>", "output folder (default: the file's out, or runs/<name>)")
    .option("--set <key=value>", "override a key of the experiment file (repeatable)", collect, [])
    .addHelpText(
      "after",
      `
Examples:
  goodvibe experiment plan experiments/paper.yaml
  goodvibe experiment plan experiments/organism.yaml --set seeds=[0]
Shapes come from each model folder's config.json, or from the experiment file's models[].config while the folder
is absent; cell ids and the cache status need every input present.`,
    )
    .action(async (file, opts) =>
      (await import("./experiment-run.js")).experimentPlanCommand(program.opts(), file, opts),
    );
}
