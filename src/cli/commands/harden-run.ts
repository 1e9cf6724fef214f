/**
 * What `goodvibe harden` does: loaded by harden.ts (which registers the command) only when it runs.
 */
import type { OptionValues } from "commander";
import * as path from "node:path";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";
import { hardenConfigFrom } from "./harden-config.js";
import { runHarden, type HardenResult } from "../../recipes/harden.js";
import { describeCheckpointing } from "../../method/checkpointing.js";
import { formatFlops } from "../../method/flops.js";

export async function hardenCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    const cfg = hardenConfigFrom(opts);
    const r = await runHarden(cfg, { log, signal: interruptSignal(log) });
    log.done();
    if (r.reused) log.info(`already complete for these inputs and settings: ${path.resolve(r.outDir)}`);
    const lines = [
      `hardened model: ${path.resolve(r.outDir)}`,
      `method: ${r.method}; trainable parameters ${r.trainableParams.toLocaleString("en-US")} of ${r.totalParams.toLocaleString("en-US")} (${((100 * r.trainableParams) / r.totalParams).toPrecision(3)}%)`,
      `training: ${r.train.steps} steps, final loss ${r.train.finalLoss.toFixed(4)}, ${r.train.wallSeconds.toFixed(1)} s, ${formatFlops(r.train.flops.total)} counted (${(r.train.flopsPerSecond / 1e9).toFixed(1)} GFLOP/s)${r.train.flopsEstimate ? `; trainers' 6·N·D estimate ${formatFlops(r.train.flopsEstimate.flops)} (README, "Cost")` : ""}`,
      scheduleLine(r.schedule),
      r.neurons?.gradientCheckpointing
        ? `gradient checkpointing (identification): ${describeCheckpointing(r.neurons.gradientCheckpointing)}`
        : "",
      r.gradientCheckpointing
        ? `gradient checkpointing (training): ${describeCheckpointing(r.gradientCheckpointing)}`
        : "",
      `fold: ${r.fold.rowsChanged} rows changed in ${r.fold.tensorsChanged} tensors (${r.fold.dtype})${r.fold.rowsVanished ? `, ${r.fold.rowsVanished} vanished in rounding` : ""}`,
      r.fold.visionTensors
        ? `multimodal: the text model was trained; the vision tower and projector (${r.fold.visionTensors} tensors) are the base's, unchanged, under the same names (GGUF export writes the text model only)`
        : "",
      r.artifact ? `artifact: ${r.artifact}` : "",
    ].filter(Boolean);
    output(g, lines.join("\n"), {
      outDir: path.resolve(r.outDir),
      method: r.method,
      trainableParams: r.trainableParams,
      totalParams: r.totalParams,
      train: { ...r.train, log: undefined },
      schedule: r.schedule,
      ...(r.gradientCheckpointing ? { gradientCheckpointing: r.gradientCheckpointing } : {}),
      // identification's, as its neuron map records it (GoodVibe; absent for a map made before 2026-12-01)
      ...(r.neurons?.gradientCheckpointing
        ? { identificationGradientCheckpointing: r.neurons.gradientCheckpointing }
        : {}),
      fold: r.fold,
      artifact: r.artifact,
      peakMemoryBytes: r.peakMemoryBytes,
    });
  });
}

/** The learning-rate schedule over the run, with its warning when the run is too short to change much. */
export function scheduleLine(s: HardenResult["schedule"]): string {
  return (
    `schedule: ${s.steps} optimiser steps, ${s.warmupSteps} of them warm-up, ` +
    `${Number(s.fullRateSteps.toFixed(2))} steps' worth at the full learning rate` +
    (s.warning ? `\nwarning: training: ${s.warning}` : "")
  );
}
