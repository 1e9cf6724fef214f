/**
 * Gradient checkpointing's "auto", one rule for identification (goodvibe/identify.ts) and training (train.ts).
 *
 * Checkpointing changes time and memory, never the numbers: a checkpointed pass recomputes each layer with the
 * random numbers its forward drew (LoRA's dropout masks) and accumulates a tied weight's gradient in the same order
 * as the pass without it (models/decoder.ts forwardBackward), so trained weights, losses and gradient norms are the
 * same bits either way (test/method/checkpointing.test.ts). The paper enables it "to reduce memory usage"; its
 * price is a second forward of every layer but the last (less o_proj's and down_proj's frozen products in pre-norm
 * layers, whose outputs only a residual sum reads). So "auto" turns it on only where the largest batch's activations
 * without it would take more than half of the memory available when the stage starts.
 *
 * Where that memory is a device's the addon cannot read (CUDA: no free-memory query), "auto" keeps checkpointing
 * on, as the paper runs it, rather than guess a GPU's free memory; true or false there decides it.
 */
import type { Device } from "../tensor/index.js";
import { availableMemoryBytes, formatBytes } from "../util/memory.js";

/** A stage's setting: always, never, or by the rule above. */
export type CheckpointingSetting = boolean | "auto";

/**
 * A stage's checkpointing as given and as done ("auto" decided on or off). Finished work's keys hold "auto" as
 * true (checkpointingKey), so records of a run say what happened through this, beside the keyed settings.
 */
export interface CheckpointingRecord {
  requested: CheckpointingSetting;
  used: CheckpointingUsed;
}

/**
 * What a stage's work was computed with: on or off throughout, or "mixed" where a run resumed another's saved
 * state (a training checkpoint, identification's sums) under the other choice, so part of it was computed each way.
 */
export type CheckpointingUsed = boolean | "mixed";

/**
 * The choice over a stage's work after a call computed more of it with `now`: `before` is the work's so far
 * (undefined when there was none, or its state was saved before it was recorded: then this call's choice is all
 * that is known).
 */
export function combineCheckpointing(before: CheckpointingUsed | undefined, now: boolean): CheckpointingUsed {
  return before === undefined || before === now ? now : "mixed";
}

/** A saved record's `used`, or undefined where it holds none or something else (a damaged or foreign file). */
export function checkpointingUsedOf(v: unknown): CheckpointingUsed | undefined {
  return typeof v === "boolean" || v === "mixed" ? v : undefined;
}

/** "auto → off", "on (as set)": a CheckpointingRecord in words, for what a command prints. */
export function describeCheckpointing(c: CheckpointingRecord): string {
  if (c.used === "mixed")
    return `on for part of the work, off for the rest (resumed under another choice; set ${c.requested} last)`;
  const used = c.used ? "on" : "off";
  if (c.requested === "auto") return `auto → ${used}`;
  return c.requested === c.used ? `${used} (as set)` : `${used} (set ${c.requested})`;
}

/**
 * The stage's choice from its setting and the activations (bytes) its largest batch would keep without
 * checkpointing (flops.ts's estimates), and, for "auto", the decision in words for the log. `stage` names the
 * stage in the message ("identification", "training"); `lower` says how to make the batches smaller.
 */
export function chooseCheckpointing(
  setting: CheckpointingSetting,
  need: () => number,
  device: Device,
  stage: string,
  lower: string,
): { on: boolean; note: string | null } {
  if (setting !== "auto") return { on: setting, note: null };
  const gib = (x: number) => formatBytes(x);
  if (device !== "cpu")
    return {
      on: true,
      note:
        `${stage}: gradient checkpointing on ("auto" on ${device}: the addon cannot read the device's free memory; ` +
        `the largest batch keeps about ${gib(need())} of activations without it; set it to false to skip the ` +
        `second forward where they fit)`,
    };
  const bytes = need();
  const available = availableMemoryBytes();
  if (bytes <= available / 2)
    return {
      on: false,
      note:
        `${stage}: gradient checkpointing off ("auto": the largest batch keeps about ${gib(bytes)} of ` +
        `activations, within half of the ${gib(available)} available; no second forward)`,
    };
  return {
    on: true,
    note:
      `${stage}: the largest batch needs about ${gib(bytes)} of activations, more than half of the ` +
      `${gib(available)} available; using gradient checkpointing (${lower} to avoid it)`,
  };
}

/**
 * The setting as keys of finished work hold it (harden's stage slots, experiment cells and judges): "auto" is
 * keyed as `true`, the default it replaced, since the weights are the same either way, so runs, cells and judges
 * finished under that default keep their keys; true and false are keyed as they always were.
 */
export function checkpointingKey(setting: CheckpointingSetting): boolean {
  return setting === "auto" ? true : setting;
}

/**
 * The mark LoRA with dropout carries in the keys of finished work (harden's train slot, experiment cells, trained
 * judges) since 5d3bba2. Before it, a checkpointed pass (checkpointing true was the default) recomputed each layer
 * with new dropout masks, so the gradient was not that of the loss the forward computed, and a LoRA run with
 * dropout trained that way holds weights the code no longer makes: it must be recomputed, not found and reused.
 * Without dropout, or with checkpointing off, the same bits come out before and after, so those keys stay.
 */
export function dropoutMasksKey(
  dropout: number,
  setting: CheckpointingSetting,
): { dropoutMasks?: "forward's" } {
  return dropout > 0 && checkpointingKey(setting) ? { dropoutMasks: "forward's" } : {};
}

/**
 * A run's training settings as the keys of finished work hold them (harden's train slot, an experiment's cells):
 * the settings with checkpointing as checkpointingKey keys it, for LoRA the dropout mark (dropoutMasksKey), and for
 * a weight-decayed full fine-tuning the mark of Trainer's decay groups (since 2026-12-06 biases and norm weights
 * are not decayed: work finished before, which decayed them, is not taken for it; no other key moves).
 */
export function keyedTraining<T extends { gradientCheckpointing: CheckpointingSetting; weightDecay: number }>(
  train: T,
  lora: { dropout: number } | null,
  method: string,
): {
  train: Omit<T, "gradientCheckpointing"> & { gradientCheckpointing: boolean };
  dropoutMasks?: "forward's";
  weightDecayGroups?: "trainer";
} {
  return {
    train: { ...train, gradientCheckpointing: checkpointingKey(train.gradientCheckpointing) },
    ...(lora ? dropoutMasksKey(lora.dropout, train.gradientCheckpointing) : {}),
    ...(method === "full" && train.weightDecay > 0 ? { weightDecayGroups: "trainer" as const } : {}),
  };
}
