/**
 * The supervised fine-tuning loop shared by GoodVibe, LoRA and full fine-tuning (torchtune-style recipe):
 * seeded shuffling per epoch, micro-batches with gradient accumulation, AdamW with warmup + cosine decay,
 * optional gradient clipping and gradient checkpointing, logs, and checkpoints that resume exactly.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { canonicalJson, sha256 } from "../io/hash.js";
import type { DecoderModel } from "../models/decoder.js";
import { writeFileAtomic, writeDirAtomic } from "../io/atomic.js";
import {
  readSafetensors,
  weightsUnchanged,
  writeSafetensors,
  type LazyTensorToWrite,
  type ModelWeights,
} from "../io/safetensors.js";
import { recordToTensor } from "../models/load.js";
import { DivergenceError, GoodVibeError, InputError } from "../errors.js";
import {
  AdamW,
  Tensor,
  buildDifferences,
  buildRecord,
  describeBuild,
  manualSeed,
  noGrad,
  sameBuild,
  sumOfSquares,
  tidy,
  type BuildRecord,
} from "../tensor/index.js";
import { createRng } from "../util/random.js";
import { countParams, type AttachedMethod } from "./attached.js";
import { IGNORE_INDEX, countAnswerTokens, sftLossHead } from "./losses.js";
import {
  estimateParams,
  sftFlops,
  trainMemoryEstimate,
  trainerFlopsEstimate,
  type FlopCount,
} from "./flops.js";
import {
  checkpointingUsedOf,
  chooseCheckpointing,
  combineCheckpointing,
  type CheckpointingUsed,
} from "./checkpointing.js";
import type { Logger } from "../util/log.js";
import { peakRssBytes } from "../util/memory.js";
import { interrupted, stopRequested } from "../util/stop.js";
import { FEW_FULL_RATE_STEPS, type TrainConfig } from "./train-config.js";
import { settingsDifferences } from "../util/differences.js";

export interface SftExample {
  inputIds: number[];
  labels: number[];
}

export interface StepLog {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  tokensPerSecond: number;
}

export interface TrainResult {
  steps: number;
  totalSteps: number;
  finished: boolean;
  finalLoss: number;
  trainableParams: number;
  /** FLOPs counted from the shapes of every step (flops.ts) */
  flops: FlopCount;
  /**
   * The estimate common trainers report (transformers' Trainer total_flos): 6 × params × tokens, params = every
   * parameter but the input embedding plus the method's own, tokens = every input token including padding.
   */
  flopsEstimate: { params: number; tokens: number; flops: number };
  wallSeconds: number;
  flopsPerSecond: number;
  peakMemoryBytes: number;
  /**
   * whether the steps recomputed the layers in the backward (train.gradientCheckpointing, "auto" decided): all of
   * them, as the checkpoint records the calls that computed them ("mixed" where a call resumed it under the other
   * choice); where the checkpoint holds no record (saved before it) and this call ran no step (stepsRun 0), what
   * this call's steps would have done: the caller keeps the record of the run that trained
   */
  gradientCheckpointing: CheckpointingUsed;
  /** the steps this call computed; the rest (steps - stepsRun) were a checkpoint's, found in runDir */
  stepsRun: number;
  log: StepLog[];
  /**
   * The builds of the tool that computed the steps (tensor/build.ts), each from the step it began at: more than one
   * when a checkpoint was resumed by another version, addon, libtorch, device or bf16 route (null: a checkpoint of
   * a version before this record). Absent without a run folder (nothing is resumed).
   */
  builds?: TrainBuild[];
}

/** A build of the tool and the first step it computed. */
export interface TrainBuild {
  fromStep: number;
  build: BuildRecord | null;
}

interface TrainState {
  /** sha256 of the canonical JSON of `inputs` */
  fingerprint: string;
  /** what made the run (trainingRunInputs); absent in checkpoints of versions before goodvibe-train/2 */
  inputs?: Record<string, unknown>;
  step: number;
  log: StepLog[];
  flops: FlopCount;
  wallSeconds: number;
  /** absent in checkpoints of versions before the record */
  builds?: TrainBuild[];
  /** whether the steps so far were checkpointed (combineCheckpointing); absent in checkpoints saved before it */
  checkpointing?: CheckpointingUsed;
}

/** lr multiplier at optimiser step `step` (0-based), as transformers' get_cosine_schedule_with_warmup. */
export function lrFactor(
  step: number,
  totalSteps: number,
  cfg: Pick<TrainConfig, "warmupRatio" | "schedule">,
): number {
  const warmup = Math.ceil(totalSteps * cfg.warmupRatio);
  if (step < warmup) return step / Math.max(1, warmup);
  if (cfg.schedule === "constant") return 1;
  const progress = (step - warmup) / Math.max(1, totalSteps - warmup);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/**
 * What the learning-rate schedule does over a planned run: its optimiser steps, how many of them warm up (the
 * first at lr 0: transformers' schedulers return 0 at step 0, and the Trainer steps the optimiser before the
 * scheduler), and the sum of the lr multipliers, in steps at the full learning rate: 0 means no step moves a
 * weight (1 step with any warm-up), and the output would be the input under a new name.
 */
export interface SchedulePlan {
  examples: number;
  steps: number;
  warmupSteps: number;
  /** Σ lrFactor over the steps */
  fullRateSteps: number;
}

export function planSchedule(
  examples: number,
  cfg: Pick<TrainConfig, "epochs" | "batchSize" | "gradAccum" | "warmupRatio" | "schedule">,
): SchedulePlan {
  const steps = cfg.epochs * Math.ceil(Math.ceil(examples / cfg.batchSize) / cfg.gradAccum);
  let fullRateSteps = 0;
  for (let s = 0; s < steps; s++) fullRateSteps += lrFactor(s, steps, cfg);
  return { examples, steps, warmupSteps: Math.ceil(steps * cfg.warmupRatio), fullRateSteps };
}

/**
 * What a user must hear about a planned run's schedule: "none" when no step moves a weight (the output is the
 * input under a new name), "few" when the steps at the full learning rate add up to fewer than FEW_FULL_RATE_STEPS
 * (the model barely changes), with the numbers and the ways out; null otherwise.
 */
export function scheduleProblem(
  p: SchedulePlan,
  cfg: Pick<TrainConfig, "epochs" | "batchSize" | "gradAccum" | "warmupRatio">,
  maxPairs: number,
): { level: "none" | "few"; message: string } | null {
  if (p.steps === 0 || p.fullRateSteps >= FEW_FULL_RATE_STEPS) return null;
  const perStep = cfg.batchSize * cfg.gradAccum;
  const plan =
    `${p.examples} training example${p.examples === 1 ? "" : "s"} × ${cfg.epochs} epoch${cfg.epochs === 1 ? "" : "s"} at ` +
    `${perStep} per optimiser step (train.batchSize ${cfg.batchSize} × train.gradAccum ${cfg.gradAccum}) make ` +
    `${p.steps} step${p.steps === 1 ? "" : "s"}, ${p.warmupSteps} of them warm-up` +
    (p.warmupSteps > 0
      ? ` (train.warmupRatio ${cfg.warmupRatio}: the learning rate rises from 0 at the first step)`
      : ` (train.warmupRatio ${cfg.warmupRatio})`);
  const fixes =
    `more examples (${maxPairs > 0 ? `train.maxPairs is ${maxPairs}; 0 takes all pairs` : "a larger pairs file"}) ` +
    `or epochs, or a smaller train.batchSize × train.gradAccum` +
    (p.warmupSteps > 0
      ? `, or --set train.warmupRatio=0 (no warm-up; the paper's is 0.1, reported as a departure)`
      : "");
  if (p.fullRateSteps === 0)
    return {
      level: "none",
      message: `${plan}: every step is at learning rate 0, so training changes no weight and the result equals the input model; use ${fixes}`,
    };
  return {
    level: "few",
    message: `${plan}: ${Number(p.fullRateSteps.toFixed(2))} steps' worth at the full learning rate, so the model will barely change; for a real run use ${fixes}`,
  };
}

/**
 * A planned run's schedule with what scheduleProblem said of it, as a run's result keeps it (harden's `schedule`,
 * an experiment cell's): `level` and `warning` absent when there was nothing to say.
 */
export interface ScheduleRecord extends SchedulePlan {
  level?: "none" | "few";
  warning?: string;
}

/** planSchedule's plan of `examples` with scheduleProblem's verdict on it, as a run keeps and reports it. */
export function scheduleRecord(
  examples: number,
  cfg: Pick<TrainConfig, "epochs" | "batchSize" | "gradAccum" | "warmupRatio" | "schedule">,
  maxPairs: number,
): ScheduleRecord {
  const plan = planSchedule(examples, cfg);
  const problem = scheduleProblem(plan, cfg, maxPairs);
  return problem ? { ...plan, level: problem.level, warning: problem.message } : plan;
}

/** The micro-batches of every epoch, as example indices: seeded shuffles, independent of where a run resumes. */
export function planBatches(
  n: number,
  cfg: Pick<TrainConfig, "epochs" | "batchSize" | "gradAccum" | "seed">,
): number[][][] {
  const steps: number[][][] = [];
  for (let e = 0; e < cfg.epochs; e++) {
    const order = createRng(cfg.seed * 1009 + e).shuffle([...Array(n).keys()]);
    const micro: number[][] = [];
    for (let i = 0; i < n; i += cfg.batchSize) micro.push(order.slice(i, i + cfg.batchSize));
    for (let i = 0; i < micro.length; i += cfg.gradAccum) steps.push(micro.slice(i, i + cfg.gradAccum));
  }
  return steps;
}

export function collate(
  examples: SftExample[],
  padId: number,
): { ids: Tensor; labels: Tensor; mask: Tensor | null } {
  const T = Math.max(...examples.map((e) => e.inputIds.length));
  const ids: number[] = [];
  const labels: number[] = [];
  const mask: number[] = [];
  let padded = false;
  for (const e of examples) {
    const pad = T - e.inputIds.length;
    if (pad) padded = true;
    ids.push(...e.inputIds, ...new Array(pad).fill(padId));
    labels.push(...e.labels, ...new Array(pad).fill(IGNORE_INDEX));
    mask.push(...new Array(e.inputIds.length).fill(1), ...new Array(pad).fill(0));
  }
  const B = examples.length;
  return {
    ids: Tensor.fromArray(ids, [B, T], "int64"),
    labels: Tensor.fromArray(labels, [B, T], "int64"),
    mask: padded ? Tensor.fromArray(mask, [B, T], "int64") : null,
  };
}

/**
 * One optimiser step after the step's backward passes: clip the global gradient norm, AdamW, drop the gradients.
 * Returns the norm before clipping.
 *
 * Clipping does not rewrite the gradients: AdamW takes the clipping coefficient and scales each gradient as it reads
 * it (native/src/train_ops.cc), so a step reads every gradient twice (norm, update) and writes none.
 *
 * In mixed precision (full fine-tuning of a bf16 model) the gradients sit on the bf16 weights. One master chunk at a
 * time (MixedPrecision), AdamW reads the chunk's rows of the bf16 gradient, updates the float32 master chunk and its
 * moments, and writes the updated chunk, rounded, into the bf16 weight's rows, in one pass; a weight's bf16 gradient
 * is freed after its last chunk. No float32 gradient is ever made: 16 bytes per parameter in all.
 */
export function optimizerStep(method: AttachedMethod, opt: AdamW, maxGradNorm: number | null): number {
  const mixed = method.mixed;
  const gradNorm = gradientNorm(mixed ? [...mixed.copies.values()] : opt.params);
  const scale = clipCoefficient(gradNorm, maxGradNorm);
  if (Number.isFinite(gradNorm)) {
    if (!mixed) opt.step(scale);
    else {
      const index = new Map(opt.params.map((p, i) => [p, i]));
      // the bf16 gradient of the weight whose chunks are being stepped (chunks of one weight are consecutive)
      let current: string | null = null;
      let g: Tensor | null = null;
      const release = (weight: string | null) => {
        g?.dispose();
        g = null;
        if (weight !== null) mixed.copies.get(weight)!.clearGrad();
      };
      for (const [name, chunk] of method.trainable) {
        const at = mixed.chunks.get(name)!;
        const weight = mixed.copies.get(at.weight)!;
        if (current !== at.weight) {
          release(current);
          current = at.weight;
          g = weight.grad;
        }
        const grad = g as Tensor | null;
        const i = index.get(chunk);
        if (!grad || i === undefined) continue;
        noGrad(() =>
          tidy(() => {
            opt.stepParam(i, grad.narrow(0, at.start, at.rows), weight.narrow(0, at.start, at.rows), scale);
          }),
        );
      }
      release(current);
    }
  }
  if (mixed) for (const w of mixed.copies.values()) w.clearGrad();
  opt.zeroGrad();
  return gradNorm;
}

/** Global L2 norm of the parameters' gradients (one read of each, summed in float64 where they live). */
export function gradientNorm(params: Tensor[]): number {
  const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
  try {
    return Math.sqrt(sumOfSquares(grads));
  } finally {
    for (const g of grads) g.dispose();
  }
}

/** The factor gradients are scaled by when their norm is above maxNorm (torch's clip_grad_norm_), else 1. */
export function clipCoefficient(norm: number, maxNorm: number | null): number {
  return maxNorm !== null && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}

/**
 * What a training run is made of beyond what trainSft sees itself: the caller's word for where the model's weights
 * came from, and settings that shape the result without showing in the model, the method or the loop's config.
 */
export interface TrainRunIdentity {
  /**
   * The starting weights' identity when the caller knows it (a model folder's content hash). Without it the loop
   * hashes the model's frozen parameters when it starts (seconds per GB of weights).
   */
  model?: string;
  /** e.g. a fixed libtorch thread count (results are bit-identical only at the same count) */
  settings?: Record<string, unknown>;
}

/** Version of the record below: a checkpoint written under another one is not resumed. */
const TRAIN_RUN_FORMAT = "goodvibe-train/2";

/** sha256 of tensors' names, dtypes, shapes and bytes, one tensor at a time (a 0.5B model: ~2 s). */
function tensorsDigest(tensors: Iterable<[string, Tensor]>): string {
  const h = createHash("sha256");
  for (const [n, t] of tensors) {
    h.update(`${n}\0${t.dtype}\0${t.shape.join(",")}\0`);
    h.update(noGrad(() => tidy(() => t.detach().contiguous().toBytes())));
  }
  return h.digest("hex").slice(0, 32);
}

/**
 * Everything that shapes a training run, as a record: a checkpoint resumes only under an equal one, and a refusal
 * names the entries that differ. Settings appear as values, contents (data, weights) as hashes. Must be called
 * before a checkpoint is loaded (it reads the starting weights).
 */
/**
 * transformers' Trainer exempts biases and norm weights from weight decay: `get_decay_parameter_names` leaves out
 * nn.LayerNorm modules' parameters and every name matching these patterns (searched in the lower-cased name). What
 * it decays here: every linear weight, the embeddings, lm_head, LoRA's A and B and GoodVibe's cluster rows; so only
 * full fine-tuning has exempt tensors (q/k/v biases, every RMSNorm weight).
 */
const NO_DECAY_PATTERNS = [/bias/, /layernorm/, /rmsnorm/, /(?:^|\.)norm(?:$|\.)/, /_norm(?:$|\.)/];

/** Whether Trainer would decay the trainable tensor of this name (a full fine-tuning chunk `name#row` by its weight's). */
export function trainerDecays(name: string): boolean {
  const n = name.replace(/#\d+$/, "").toLowerCase();
  return !NO_DECAY_PATTERNS.some((p) => p.test(n));
}

function trainingRunInputs(
  model: DecoderModel,
  method: AttachedMethod,
  examples: SftExample[],
  cfg: TrainConfig,
  identity: TrainRunIdentity,
): Record<string, unknown> {
  // checkpointing changes time and memory, not the weights (method/checkpointing.ts): a run may resume under
  // another choice; where checkpoints are written does not shape the run either
  const {
    stopAfterSteps: _ignored,
    checkpointEvery: _every,
    gradientCheckpointing: _checkpointing,
    ...train
  } = cfg;
  const data = createHash("sha256");
  for (const e of examples) data.update(JSON.stringify(e.inputIds)).update(JSON.stringify(e.labels));
  const trainable = new Set(method.trainable.values());
  const frozen = [...model.parameters()].filter(([, t]) => !trainable.has(t));
  const exempt = [...method.trainable.keys()].filter((n) => !trainerDecays(n));
  return {
    format: TRAIN_RUN_FORMAT,
    method: { name: method.name, settings: method.settings },
    dtype: model.dtype,
    mixedPrecision: method.mixed !== undefined,
    model: {
      config: model.cfg,
      weights: identity.model ?? tensorsDigest(frozen),
    },
    trainable: {
      tensors: method.trainable.size,
      shapes: sha256(canonicalJson([...method.trainable].map(([n, t]) => [n, t.shape]))),
      start: tensorsDigest(method.trainable),
    },
    train,
    // named only where it shapes the run, so that runs without weight decay keep their keys: checkpoints of a
    // weight-decayed full fine-tuning made before the exemption are refused rather than resumed under it
    ...(cfg.weightDecay > 0 && exempt.length > 0 ? { weightDecayExempt: exempt } : {}),
    data: { examples: examples.length, contents: data.digest("hex").slice(0, 32) },
    ...(identity.settings ? { settings: identity.settings } : {}),
  };
}

/** Hashed entries of trainingRunInputs, by what they stand for. */
const RUN_INPUT_NAMES: Record<string, string> = {
  "model.weights": "the model's weights",
  "trainable.shapes": "the trainable tensors",
  "trainable.start": "the trainable tensors' starting values",
  "data.contents": "the training examples",
  "method.settings.selections": "GoodVibe's selected rows and clusters",
};

const CKPT = "checkpoint";

/**
 * The fingerprint a checkpoint written before the run record left checkpointing out (it held
 * train.gradientCheckpointing, which does not shape the weights) would have now: such a checkpoint resumes under any
 * checkpointing. Null when it has no record.
 */
function legacyFingerprint(inputs: Record<string, unknown> | undefined): string | null {
  const train = inputs?.train as Record<string, unknown> | undefined;
  if (!train || !("gradientCheckpointing" in train)) return null;
  const { gradientCheckpointing: _dropped, ...rest } = train;
  return sha256(canonicalJson({ ...inputs, train: rest }));
}

function saveCheckpoint(
  runDir: string,
  method: AttachedMethod,
  opt: AdamW,
  state: TrainState,
): Promise<void> {
  return writeDirAtomic(
    path.join(runDir, CKPT),
    (tmp) => {
      const names = [...method.trainable.keys()];
      // the optimiser's state handles (views of its tensors) go with this scope; each tensor's bytes are made as
      // the writer reaches it, a few rows at a time, and dropped once written: the whole state at once would be
      // three times the trainable weights in float32 in JS memory (full fine-tuning of a 7B model: 84 GB), and
      // one whole tensor a copy of up to 2 GiB (an 8B model's embedding)
      tidy(() => {
        const tensors: LazyTensorToWrite[] = [];
        const optState = opt.getState();
        const add = (name: string, t: Tensor) =>
          tensors.push({
            name,
            dtype: "F32",
            shape: t.shape,
            bytes: () => t.bytesInParts("float32"),
          });
        names.forEach((n, i) => {
          add(`param/${n}`, method.trainable.get(n)!);
          const s = optState[i];
          if (s) {
            add(`exp_avg/${n}`, s.expAvg);
            add(`exp_avg_sq/${n}`, s.expAvgSq);
          }
        });
        const steps = Object.fromEntries(names.map((n, i) => [n, String(optState[i]?.step ?? 0)]));
        writeSafetensors(path.join(tmp, "tensors.safetensors"), tensors, {
          format: "pt",
          optimizer_steps: JSON.stringify(steps),
        });
      });
      writeFileAtomic(path.join(tmp, "state.json"), JSON.stringify(state));
    },
    { replaceOwn: true },
  );
}

function loadCheckpoint(
  runDir: string,
  method: AttachedMethod,
  opt: AdamW,
  fingerprint: string,
  inputs: Record<string, unknown>,
): TrainState | null {
  const dir = path.join(runDir, CKPT);
  if (!fs.existsSync(path.join(dir, "state.json"))) return null;
  const state = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")) as TrainState;
  if (state.fingerprint !== fingerprint && legacyFingerprint(state.inputs) !== fingerprint) {
    // never resumed, never deleted: the user decides what happens to the finished steps
    const diff = state.inputs
      ? settingsDifferences(state.inputs, inputs, RUN_INPUT_NAMES).join(", ")
      : "it was written by an earlier version of goodvibe, which did not record the run's settings";
    throw new InputError(
      `${dir}: this checkpoint (${state.step} finished steps) belongs to another training run (${diff}); ` +
        `resuming it would mix two runs. Run again with the checkpoint's settings to resume it, or delete ` +
        `${dir} to start over`,
    );
  }
  const file = readSafetensors(path.join(dir, "tensors.safetensors"));
  const steps = JSON.parse(file.metadata.optimizer_steps ?? "{}") as Record<string, string>;
  const names = [...method.trainable.keys()];
  noGrad(() => {
    for (const n of names) {
      method.trainable.get(n)!.copy_(recordToTensor(file.tensors.get(`param/${n}`)!));
      // the bf16 weights the forward uses are the masters rounded, as after every step
      const at = method.mixed?.chunks.get(n);
      if (at)
        tidy(() => {
          method.mixed!.copies.get(at.weight)!.narrow(0, at.start, at.rows).copy_(method.trainable.get(n)!);
        });
    }
  });
  opt.setState(
    names.map((n) => {
      const ea = file.tensors.get(`exp_avg/${n}`);
      const es = file.tensors.get(`exp_avg_sq/${n}`);
      return ea && es
        ? { step: Number(steps[n] ?? 0), expAvg: recordToTensor(ea), expAvgSq: recordToTensor(es) }
        : null;
    }),
  );
  return state;
}

export interface TrainHooks {
  /**
   * Before the first step this call runs (not called when every step is done): the steps finished before (0, or
   * those of the checkpoint it resumes) and where that checkpoint is (null when it starts from step 0). A progress
   * meter starts its clock here, so the first step's time counts and a resumed run can say what it kept.
   */
  onStart?: (info: { step: number; totalSteps: number; checkpoint: string | null }) => void;
  onStep?: (log: StepLog, totalSteps: number) => void;
  /**
   * Stop request (Ctrl-C), checked before every micro-batch: the loop drops the unfinished step, checkpoints the
   * finished ones (with a runDir) and throws InterruptedError; a rerun resumes exactly there.
   */
  signal?: AbortSignal;
  /**
   * A checkpoint is resumed by another build than the one that wrote its last steps (the steps already done are
   * kept, the rest computed by this build, so the result can differ in the last bits from either build's alone):
   * told the checkpoint's folder, its builds, this one, and the step where this one takes over.
   */
  onOtherBuild?: (info: { checkpoint: string; was: TrainBuild[]; now: BuildRecord; step: number }) => void;
  /** a message for the run's log (what "auto" checkpointing decided) */
  onNote?: (msg: string) => void;
  /**
   * Before each checkpoint is written (and a stage's result): throws to keep it from being written, when what it
   * was computed from changed (recipes/harden.ts: weights written in place), so that no run resumes from it.
   */
  beforeSave?: () => void;
}

/**
 * `hooks` whose beforeSave first checks that no file of `weights` (the model's, mapped) was written in place since it
 * was loaded: a result computed from mixed bytes would otherwise be kept (a stage's slot, a checkpoint) under the
 * original content's key, and a rerun on the original bytes would resume from it and publish it. `doing` names the
 * work in the refusal.
 */
export function guardSaves<H extends { beforeSave?: () => void }>(
  hooks: H,
  weights: ModelWeights,
  doing: string,
): H {
  return {
    ...hooks,
    beforeSave: () => {
      hooks.beforeSave?.();
      weightsUnchanged(weights, doing);
    },
  };
}

/** TrainHooks.onOtherBuild's warning, in words, for a run's log. */
export function otherBuildWarning(info: {
  checkpoint: string;
  was: TrainBuild[];
  now: BuildRecord;
  step: number;
}): string {
  const last = info.was[info.was.length - 1]!.build;
  return (
    `${info.checkpoint}: resuming ${info.step} finished steps computed by ${describeBuild(last)}; this is ` +
    `${describeBuild(info.now)}, which differs in ${buildDifferences(last, info.now)}: the rest is computed by ` +
    `this build, so the result can differ in the last bits from either build's alone (the steps of each are ` +
    `recorded); delete ${info.checkpoint} to train from the start with this build`
  );
}

/**
 * A training run's progress for a run's log: at the start, the meter's clock (and, resumed, which checkpoint's steps
 * are kept), then a line per step (`extra` of each step's log, e.g. its loss).
 */
export function trainProgressHooks(
  log: Logger,
  stage: string,
  extra: (l: StepLog) => string,
  /** what the resume line calls the run (default `stage`) */
  name = stage,
): Required<Pick<TrainHooks, "onStart" | "onStep">> {
  return {
    onStart: ({ step, totalSteps, checkpoint }) => {
      if (checkpoint)
        log.info(`${name}: resuming at step ${step} of ${totalSteps} (checkpoint in ${checkpoint})`);
      log.progress(stage, step, totalSteps);
    },
    onStep: (l, totalSteps) => log.progress(stage, l.step, totalSteps, extra(l)),
  };
}

/**
 * Train `method`'s tensors on SFT examples. With `runDir`, checkpoints go to runDir/checkpoint and a second call
 * with the same inputs resumes from the last one, ending with the same tensors as an uninterrupted run. "The same
 * inputs" is checked, not assumed: the checkpoint records the run (trainingRunInputs: model config and weights,
 * dtype, method and its settings, the loop's config, the examples, and `identity`), and a call that differs in
 * any of them is refused with the entries that differ; the checkpoint is left as it is.
 */
export async function trainSft(
  model: DecoderModel,
  method: AttachedMethod,
  examples: SftExample[],
  cfg: TrainConfig,
  opts: { runDir?: string; padTokenId?: number; hooks?: TrainHooks; identity?: TrainRunIdentity } = {},
): Promise<TrainResult> {
  if (examples.length === 0) throw new InputError("no training examples");
  for (const [i, e] of examples.entries()) {
    if (e.inputIds.length !== e.labels.length)
      throw new InputError(`training example ${i}: ids and labels differ in length`);
    if (countAnswerTokens(e.labels) === 0)
      throw new InputError(`training example ${i}: no answer tokens to learn`);
  }
  const params = [...method.trainable.values()];
  const names = [...method.trainable.keys()];
  const opt = new AdamW(params, {
    lr: cfg.lr,
    betas: cfg.betas,
    eps: cfg.eps,
    weightDecays: names.map((n) => (trainerDecays(n) ? cfg.weightDecay : 0)),
  });
  const plan = planBatches(examples.length, cfg);
  const totalSteps = plan.length;
  // a stop asked during the start-up (loading the model: blocking calls, through which no signal is seen) is
  // honoured before the run is hashed and its checkpoint read, which for full fine-tuning are the model's weights
  // and three float32 copies of them (seconds to minutes): nothing is computed yet, nothing is lost
  if (await stopRequested(opts.hooks?.signal)) throw interrupted("training stopped before it began");
  // the record reads the starting weights: before a checkpoint replaces them (and only when one may be written)
  const inputs = opts.runDir ? trainingRunInputs(model, method, examples, cfg, opts.identity ?? {}) : {};
  const fingerprint = sha256(canonicalJson(inputs));
  let state: TrainState = {
    fingerprint,
    inputs,
    step: 0,
    log: [],
    flops: { forward: 0, backward: 0, total: 0 },
    wallSeconds: 0,
  };
  const build = buildRecord(model.device, model.dtype);
  state.builds = [{ fromStep: 0, build }];
  if (opts.runDir) {
    const loaded = loadCheckpoint(opts.runDir, method, opt, fingerprint, inputs);
    if (loaded) {
      const was = loaded.builds ?? [{ fromStep: 0, build: null }];
      const last = was[was.length - 1]!.build;
      if (!sameBuild(last, build) && loaded.step > 0) {
        opts.hooks?.onOtherBuild?.({
          checkpoint: path.join(opts.runDir, CKPT),
          was,
          now: build,
          step: loaded.step,
        });
        loaded.builds = [...was, { fromStep: loaded.step, build }];
      } else loaded.builds = was;
      // a checkpoint whose record held the checkpointing setting goes on under this run's record (the same run)
      state = { ...loaded, fingerprint, inputs };
    }
  }
  let savedStep = state.step;
  const firstStep = state.step;
  const padId = opts.padTokenId ?? 0;
  const checkpointing = trainCheckpointing(model, method, examples, cfg, opts.hooks?.onNote);
  // the steps' choice once this call computes one: a checkpoint saved under the other choice makes them mixed
  const before = state.step > 0 ? checkpointingUsedOf(state.checkpointing) : undefined;
  const usedOnceStepped = combineCheckpointing(before, checkpointing);
  const started = Date.now();
  const wallBefore = state.wallSeconds;
  let stepsThisCall = 0;
  if (state.step < totalSteps)
    opts.hooks?.onStart?.({
      step: state.step,
      totalSteps,
      checkpoint: state.step > 0 && opts.runDir ? path.join(opts.runDir, CKPT) : null,
    });
  method.setTraining(true);
  try {
    while (state.step < totalSteps) {
      const step = state.step;
      const t0 = Date.now();
      manualSeed(cfg.seed * 100003 + step); // dropout noise depends only on the step: resume is exact
      const micro = plan[step];
      const stepTokens = micro.reduce(
        (a, m) => a + m.reduce((b, i) => b + countAnswerTokens(examples[i].labels), 0),
        0,
      );
      let loss = 0;
      const flopsBefore = { ...state.flops };
      for (const idx of micro) {
        if (await stopRequested(opts.hooks?.signal)) {
          // the step is not finished: its gradients go, parameters and optimiser are still those of `state.step`
          opt.zeroGrad();
          state.flops = flopsBefore;
          if (opts.runDir && state.step > savedStep) {
            opts.hooks?.beforeSave?.();
            await saveCheckpoint(opts.runDir, method, opt, state);
          }
          throw interrupted(
            `training stopped after step ${state.step} of ${totalSteps}` +
              (!opts.runDir
                ? " (no run folder: not resumable)"
                : state.step > 0
                  ? ` (checkpoint in ${path.join(opts.runDir, CKPT)})`
                  : ""),
          );
        }
        tidy(() => {
          const batch = collate(
            idx.map((i) => examples[i]),
            padId,
          );
          const head = sftLossHead(model, batch.labels, stepTokens);
          const l = model.forwardBackward(
            batch.ids,
            { attentionMask: batch.mask ?? undefined },
            head,
            checkpointing,
          );
          if (!Number.isFinite(l))
            throw new DivergenceError(
              `training diverged at step ${step + 1}: the loss is ${l} (examples ${idx.join(", ")}); lower train.lr (now ${cfg.lr}) or check the data`,
            );
          loss += l;
          const f = sftFlops(
            model,
            method,
            batch.ids.shape,
            countAnswerTokensBatch(batch.labels),
            checkpointing,
          );
          state.flops.forward += f.forward;
          state.flops.backward += f.backward;
          state.flops.total += f.total;
        });
      }
      opt.lr = cfg.lr * lrFactor(step, totalSteps, cfg);
      const gradNorm = optimizerStep(method, opt, cfg.maxGradNorm);
      if (!Number.isFinite(gradNorm))
        throw new DivergenceError(
          `training diverged at step ${step + 1}: the gradient norm is ${gradNorm}; lower train.lr (now ${cfg.lr}) or check the data`,
        );
      // before the step is logged or saved: a checkpoint never holds non-finite weights
      const diverged = nonFiniteTensor(method.trainable);
      if (diverged)
        throw new DivergenceError(
          `training diverged at step ${step + 1}: ${diverged} holds NaN or infinite values after the update; lower train.lr (now ${cfg.lr})`,
        );
      const secs = (Date.now() - t0) / 1000;
      const totalTokens = micro.reduce(
        (a, m) => a + m.reduce((b, i) => b + examples[i].inputIds.length, 0),
        0,
      );
      const entry: StepLog = {
        step: step + 1,
        epoch: Math.floor((step * cfg.epochs) / totalSteps) + 1,
        loss,
        lr: opt.lr,
        gradNorm,
        tokens: totalTokens,
        tokensPerSecond: totalTokens / Math.max(secs, 1e-9),
      };
      state.log.push(entry);
      state.step++;
      stepsThisCall++;
      state.checkpointing = usedOnceStepped;
      state.wallSeconds = wallBefore + (Date.now() - started) / 1000;
      opts.hooks?.onStep?.(entry, totalSteps);
      const stopNow = cfg.stopAfterSteps !== undefined && stepsThisCall >= cfg.stopAfterSteps;
      const due = cfg.checkpointEvery > 0 && state.step % cfg.checkpointEvery === 0;
      if (opts.runDir && (due || stopNow || state.step === totalSteps)) {
        opts.hooks?.beforeSave?.();
        await saveCheckpoint(opts.runDir, method, opt, state);
        savedStep = state.step;
      }
      if (stopNow && state.step < totalSteps) break;
    }
  } finally {
    method.setTraining(false);
  }
  const last = state.log[state.log.length - 1];
  const trainableParams = params.reduce((a, p) => a + p.numel, 0);
  // input tokens as the collated micro-batches hold them (padded to each micro-batch's longest example)
  let inputTokens = 0;
  for (const micro of plan.slice(0, state.step))
    for (const idx of micro)
      inputTokens += idx.length * Math.max(...idx.map((i) => examples[i].inputIds.length));
  const estParams = estimateParams(
    { total: countParams(model.parameters().values()), embedding: model.embed.numel },
    method.name,
    trainableParams,
  );
  return {
    steps: state.step,
    totalSteps,
    finished: state.step === totalSteps,
    finalLoss: last ? last.loss : NaN,
    trainableParams,
    flops: state.flops,
    flopsEstimate: {
      params: estParams,
      tokens: inputTokens,
      flops: trainerFlopsEstimate(estParams, inputTokens),
    },
    wallSeconds: state.wallSeconds,
    flopsPerSecond: state.flops.total / Math.max(state.wallSeconds, 1e-9),
    peakMemoryBytes: peakRssBytes(),
    gradientCheckpointing: checkpointingUsedOf(state.checkpointing) ?? checkpointing,
    stepsRun: state.step - firstStep,
    log: state.log,
    ...(opts.runDir ? { builds: state.builds } : {}),
  };
}

/**
 * This run's checkpointing: as configured, or by "auto"'s rule (checkpointing.ts) from the longest micro-batch
 * the run can have, batchSize examples of the longest one (examples are already cut to the stage's maxLength),
 * every position a loss position (the estimate's upper bound). Decided once per call: a resumed run decides again,
 * which changes no weight.
 */
function trainCheckpointing(
  model: DecoderModel,
  method: AttachedMethod,
  examples: SftExample[],
  cfg: TrainConfig,
  log?: (msg: string) => void,
): boolean {
  const need = () => {
    let longest = 0;
    for (const e of examples) longest = Math.max(longest, e.inputIds.length);
    const batch = Math.min(cfg.batchSize, examples.length);
    return trainMemoryEstimate(model, {
      method: method.name,
      totalParams: 0,
      trainableParams: 0,
      dtype: model.dtype,
      batch,
      time: longest,
      lossTokens: batch * longest,
      checkpointing: false,
    }).activations;
  };
  const { on, note } = chooseCheckpointing(
    cfg.gradientCheckpointing,
    need,
    model.device,
    "training",
    "set train.batchSize or train.maxLength lower",
  );
  if (note) log?.(note);
  return on;
}

/**
 * The first tensor holding a NaN or an infinity, or null; checked after every update, so it reads each tensor once
 * and allocates nothing of its size. A tensor's sum is non-finite when it holds a NaN or an infinity (NaN and ±inf
 * propagate; +inf beside -inf gives NaN) or, only then, when finite values overflow it; such a tensor alone is then
 * counted element by element. Full fine-tuning checks every weight: at Qwen2.5-0.5B's shape 0.06 s a step against
 * 0.96 s for counting each tensor's NaN/inf mask (bench/divergence-check.ts; BENCHMARKS "The divergence check after
 * each update").
 */
export function nonFiniteTensor(tensors: Map<string, Tensor>): string | null {
  const named = [...tensors];
  if (named.length === 0) return null;
  // the sums stay where the tensors are (one device) and come back together: one host sync
  const sums = noGrad(() =>
    tidy(() => Tensor.stack(named.map(([, t]) => tidy(() => t.sum().float()))).toFloat32Array()),
  );
  for (let i = 0; i < named.length; i++) {
    if (Number.isFinite(sums[i])) continue;
    const [name, t] = named[i];
    const count = noGrad(() => tidy(() => t.isfinite().logicalNot().sum().item()));
    if (count > 0) return name;
  }
  return null;
}

function countAnswerTokensBatch(labels: Tensor): number {
  return noGrad(() =>
    labels
      .narrow(1, 1, labels.size(1) - 1)
      .ne(IGNORE_INDEX)
      .sum()
      .item(),
  );
}
