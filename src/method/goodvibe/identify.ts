/**
 * Identification of security neurons (GoodVibe §3.3). The model judges each labelled sample with the judge
 * instruction (§4.1/§4.3: "1" = unsafe, "0" = safe); the loss is cross-entropy over the logits of the two label
 * tokens at the last position.
 * A neuron is an output row i of a linear layer; its importance is the mean over tokens of |∂L/∂y_i| for a sample,
 * averaged over samples (accumulated in float64). The top-k per layer — never globally — are the security neurons.
 * The activation-magnitude variant (|y_i| instead of the gradient) is the paper's identification ablation.
 *
 * This file is the loop and its result: batches planned by length, each judged with one forward and backward
 * pass, per-sample importances summed exactly, the top-k rows per layer. Beside it: the sums and their
 * resumable state (identify-state.ts), the neuron map's format (neuron-map.ts), shards of a run and their merge
 * (identify-shard.ts), the model-shape check (model-shape.ts).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHash } from "node:crypto";
import type { DecoderModel } from "../../models/decoder.js";
import type { Linear } from "../../models/linear.js";
import { ModelShape, type ShapeSource } from "../../models/shapes.js";
import { loadModelConfig } from "../../io/config.js";
import { InputError, GoodVibeError } from "../../errors.js";
import { Tensor, keep, meanAbsGradHook, noGrad, readBackFloat32, tidy } from "../../tensor/index.js";
import { chooseCheckpointing, combineCheckpointing, type CheckpointingRecord } from "../checkpointing.js";
import { judgeLossHead } from "../losses.js";
import { identifyFlops, identifyMemoryEstimate } from "../flops.js";
import {
  LM_HEAD,
  checkLmHeadTarget,
  lmHeadActivationImportance,
  lmHeadGradientImportance,
} from "./lm-head.js";
import { interrupted, stopRequested } from "../../util/stop.js";
import type { ShardSpec } from "../../util/shard.js";
import type { ExactSums } from "../../util/exact-sum.js";
import { DEFAULT_BATCH_TOKENS, type IdentifyConfig } from "./config.js";
import { modelShapeRecord } from "./model-shape.js";
import type { FlopCount } from "../flops.js";
import type { SelectionMode } from "./config.js";
import type { ModelShapeRecord } from "./model-shape.js";
import type { ModuleNeurons, NeuronMap, NeuronMapSource } from "./neuron-map.js";
import {
  PROFILES,
  ProfileStore,
  emptyAccumulators,
  flopsOf,
  IDENTIFY_STATE,
  loadState,
  saveState,
  type Accumulators,
  type Target,
} from "./identify-state.js";

export interface IdentifySample {
  id: string;
  inputIds: number[];
  /** the paper's y: 1 = unsafe, 0 = safe; the class index into labelTokenIds */
  label: 0 | 1;
  lang?: string;
}

/**
 * The identification settings identify() reads, as the stage's typed config (config.ts) has them: topK, mode,
 * batchSize, batchTokens (default DEFAULT_BATCH_TOKENS; 0 = no limit), gradientCheckpointing ("auto": only when
 * the activations would not fit), profileSamples (per-sample importances of the selected neurons kept for the
 * first N samples: clustering features), lmHead (lm_head's rows are neurons too; lm-head.ts). A recipe passes
 * its whole IdentifyConfig: a new setting reaches identify() without an edit in between.
 */
export type IdentifySettings = Pick<
  IdentifyConfig,
  "topK" | "mode" | "batchSize" | "gradientCheckpointing" | "profileSamples"
> &
  Partial<Pick<IdentifyConfig, "batchTokens" | "lmHead">>;

export interface IdentifyOptions extends IdentifySettings {
  /** token ids of the safe and the unsafe label, in that order ("0" and "1" under the paper's convention) */
  labelTokenIds: [number, number];
  /** where to keep resumable state (identify-state/) */
  runDir?: string;
  /** samples between state saves */
  checkpointEvery: number;
  /** provenance written into the neuron map: the judge instruction as asked, and its label mapping */
  source: NeuronMapSource;
  /** samples done of all, after every batch (and once before the first); `extra` gives the token rate */
  onProgress?: (done: number, total: number, extra?: string) => void;
  /** messages for the user (e.g. that checkpointing was turned on) */
  log?: (msg: string) => void;
  /** stop request (Ctrl-C), checked after every batch: state is saved, then InterruptedError */
  signal?: AbortSignal;
  /** before each state save: throws to keep it from being written (method/train.ts TrainHooks.beforeSave) */
  beforeSave?: () => void;
}

// ---------------------------------------------------------------- batching without padding waste

/** Most padding a batch may carry, as a share of its tokens: a sample that would add more starts a new batch. */
const MAX_PADDING_SHARE = 0.1;

/**
 * Batches of sample indices: samples sorted by length, longest first (ties in input order), cut greedily into
 * batches of at most `maxSamples` samples and `maxTokens` padded tokens (B × the batch's longest sample;
 * 0 = no limit; a longer sample still gets a batch of its own), and with at most 10% padding. Neighbours in
 * that order differ by a few tokens, so batches of a real dataset pad very little; longest first puts the
 * largest batch, and so the memory peak, at the start, where a run that cannot fit fails at once. `todo` leaves
 * out samples already done (a resumed run).
 */
export function planBatches(
  lengths: readonly number[],
  maxSamples: number,
  maxTokens: number,
  todo: (i: number) => boolean = () => true,
): number[][] {
  const order = lengths
    .map((_, i) => i)
    .filter(todo)
    .sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const batches: number[][] = [];
  let cur: number[] = [];
  let real = 0;
  for (const i of order) {
    if (cur.length > 0) {
      const n = cur.length + 1;
      const padded = n * lengths[cur[0]!]!;
      if (
        n > maxSamples ||
        (maxTokens > 0 && padded > maxTokens) ||
        padded - (real + lengths[i]!) > MAX_PADDING_SHARE * padded
      ) {
        batches.push(cur);
        cur = [];
        real = 0;
      }
    }
    cur.push(i);
    real += lengths[i]!;
  }
  if (cur.length) batches.push(cur);
  return batches;
}

// ---------------------------------------------------------------- the run

/**
 * top-k picks k rows of every module, so k must be a whole number from 1 to the rows of the smallest module
 * (a k past it was silently capped there); refused with the valid range otherwise. `model` is a loaded model or
 * its shapes from config.json alone (models/shapes.ts ModelShape, the same linears): commands check a model
 * folder's with checkTopKOfFolder before they load it; identify() checks the loaded model's.
 */
export function checkTopK(model: Pick<ShapeSource, "linears">, topK: number): void {
  const smallest = model.linears().reduce((a, l) => (l.outFeatures < a.outFeatures ? l : a));
  if (!Number.isSafeInteger(topK) || topK < 1 || topK > smallest.outFeatures)
    throw new InputError(
      `identify.topK (--top-k) = ${topK} is out of range: it must be a whole number from 1 to ${smallest.outFeatures}, ` +
        `the output rows of the smallest module (${smallest.name}, ${smallest.outFeatures} of them)`,
    );
}

/**
 * checkTopK on a model folder's config.json (its shapes, which loading checks against the weights' headers): no
 * weight is read and the libtorch addon is not loaded, so a k out of range is refused before the model loads.
 */
export function checkTopKOfFolder(dir: string, topK: number): void {
  checkTopK(new ModelShape(loadModelConfig(dir)), topK);
}

/**
 * Run identification over `samples`. Samples are batched by length (planBatches) and every importance is a
 * per-sample sum kept exact until it is read (ExactSums), so the result equals batch 1's up to the float rounding
 * of each sample's pass, and does not depend on the order of the batches. Memory depends on the largest batch,
 * never on the number of samples (per-sample profiles go to a file). Resumable: with opts.runDir, state is saved
 * every `checkpointEvery` samples and at a stop request, and a rerun continues from there (the result equals an
 * uninterrupted run's, bit for bit: the batches are planned over every sample, done ones skipped).
 */
export async function identify(
  model: DecoderModel,
  samples: IdentifySample[],
  opts: IdentifyOptions,
): Promise<NeuronMap> {
  return accumulate(model, samples, opts, null, (acc, targets, store) => ({
    ...buildNeuronMap(targets, modelShapeRecord(model), acc, opts, store ? (sel) => store.read(sel) : null),
    ...checkpointingRecord(opts, acc),
  }));
}

/**
 * identification's checkpointing as asked and as used, for the map and a shard's record: the choice of the calls
 * that computed samples, "mixed" where they chose differently (state saved before 2026-12-01 did not keep it: then
 * the last call's, or none)
 */
export function checkpointingRecord(
  opts: Pick<IdentifyOptions, "gradientCheckpointing">,
  acc: Pick<Accumulators, "checkpointing">,
): { gradientCheckpointing?: CheckpointingRecord } {
  return acc.checkpointing === undefined
    ? {}
    : { gradientCheckpointing: { requested: opts.gradientCheckpointing, used: acc.checkpointing } };
}

/**
 * The work itself: plan the batches over every sample (the same plan for one run and for every shard), take the
 * shard's share, skip what saved state has done, run the rest; `finish` sees the accumulators and the profile
 * store before they are closed.
 */
export async function accumulate<T>(
  model: DecoderModel,
  samples: IdentifySample[],
  opts: IdentifyOptions,
  shard: ShardSpec | null,
  finish: (
    acc: Accumulators,
    targets: Target[],
    store: ProfileStore | null,
    runKey: string,
  ) => T | Promise<T>,
): Promise<T> {
  if (samples.length === 0) throw new InputError("identification needs at least one labelled sample");
  const labels = new Set(samples.map((s) => s.label));
  if (labels.size < 2)
    throw new InputError(
      `identification needs both secure and insecure samples; all ${samples.length} are ${samples[0].label === 1 ? "insecure" : "secure"}`,
    );
  for (const t of opts.labelTokenIds)
    if (t < 0 || t >= model.cfg.vocabSize)
      throw new InputError(`label token id ${t} is outside the vocabulary`);
  checkTopK(model, opts.topK);
  if (!(opts.batchSize >= 1)) throw new InputError(`batch size must be at least 1, got ${opts.batchSize}`);
  const empty = samples.find((s) => s.inputIds.length === 0);
  if (empty) throw new InputError(`identification sample ${empty.id} has no tokens`);
  const linears = model.linears();
  if (opts.lmHead) checkLmHeadTarget(model);
  // what gets an importance per output row: the seven projections of every layer, and lm_head when asked
  const targets = opts.lmHead ? [...linears, model.head] : linears;
  const N = samples.length;
  const lengths = samples.map((s) => s.inputIds.length);
  const runKey = identifyRunKey(model, samples, opts);
  const stateKey = shard ? `${runKey}/shard-${shard.index}-of-${shard.count}` : runKey;
  const loaded = opts.runDir ? loadState(opts.runDir, stateKey, N, targets) : null;
  const acc: Accumulators = loaded ?? emptyAccumulators(N, targets);
  const all = planBatches(lengths, opts.batchSize, opts.batchTokens ?? DEFAULT_BATCH_TOKENS);
  const mine = shard ? all.filter((_, b) => b % shard.count === shard.index - 1) : all;
  const total = mine.reduce((a, b) => a + b.length, 0);
  const plan = mine.map((b) => b.filter((i) => !acc.processed[i])).filter((b) => b.length > 0);
  const checkpointing = identifyCheckpointing(model, plan, lengths, opts);
  const profileCount = Math.min(opts.profileSamples, N);
  const scratch =
    profileCount > 0 && !opts.runDir ? fs.mkdtempSync(path.join(os.tmpdir(), "goodvibe-identify-")) : null;
  const wallBefore = acc.wallSeconds;
  const tokensBefore = acc.tokens;
  const started = Date.now();
  let sinceSave = 0;
  let store: ProfileStore | null = null;
  try {
    if (profileCount > 0)
      store = new ProfileStore(path.join(opts.runDir ?? scratch!, PROFILES), profileCount, targets, !loaded);
    // a rerun after Ctrl-C or a crash: say that the saved samples are kept (the progress line starts at them)
    if (loaded && opts.runDir && acc.done > 0 && acc.done < total)
      opts.log?.(
        `identification: resuming with ${acc.done} of ${total} samples done (saved in ${path.join(opts.runDir, IDENTIFY_STATE)})`,
      );
    opts.onProgress?.(acc.done, total); // starts the progress clock
    for (const indices of plan) {
      const batch = indices.map((i) => samples[i]!);
      const r = tidy(() => runBatch(model, linears, batch, opts, checkpointing));
      acc.checkpointing = combineCheckpointing(acc.done > 0 ? acc.checkpointing : undefined, checkpointing);
      acc.loss.add(0, r.loss);
      const T = lengths[indices[0]!]!;
      acc.paddedTokens += indices.length * T;
      const rows = indices.map((i) => (i < profileCount ? new Float32Array(store!.rowFloats) : null));
      addImportances(
        acc.sums,
        r.importance,
        indices.length,
        store ? { rows, offsets: store.offsets } : undefined,
      );
      indices.forEach((sample, b) => {
        if (rows[b]) store!.write(sample, rows[b]!);
        acc.processed[sample] = 1;
        if (samples[sample]!.label === 1) acc.insecure++;
        else acc.secure++;
        acc.tokens += lengths[sample]!;
        const f = identifyFlops(
          model,
          [1, lengths[sample]!],
          opts.mode === "gradient",
          opts.lmHead === true && opts.mode === "activation",
          checkpointing,
        );
        acc.flops.add(0, f.forward);
        acc.flops.add(1, f.backward);
        acc.flops.add(2, f.total);
      });
      acc.done += indices.length;
      sinceSave += indices.length;
      const seconds = (Date.now() - started) / 1000;
      acc.wallSeconds = wallBefore + seconds;
      opts.onProgress?.(
        acc.done,
        total,
        seconds > 0 ? `${Math.round((acc.tokens - tokensBefore) / seconds)} tokens/s` : undefined,
      );
      const stop = await stopRequested(opts.signal);
      if (opts.runDir && (stop || (opts.checkpointEvery > 0 && sinceSave >= opts.checkpointEvery))) {
        store?.sync();
        opts.beforeSave?.();
        await saveState(opts.runDir, acc, stateKey);
        sinceSave = 0;
      }
      if (stop && acc.done < total)
        throw interrupted(`identification interrupted after ${acc.done} of ${total} samples`);
    }
    return await finish(acc, targets, store, runKey);
  } finally {
    for (const l of linears) l.tap = null;
    store?.close();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Adds one batch's importances (runBatch's [B, out] float32 rows per module, each a mean over a sample's tokens)
 * to the run's exact per-row sums, and copies each sample's row into its profile row when it has one
 * (profile.rows[b], at the module's offset). identify()'s accumulation on the host; bench/pass.ts calls it too.
 */
export function addImportances(
  sums: ReadonlyMap<string, ExactSums>,
  importance: ReadonlyMap<string, Float32Array>,
  samples: number,
  profile?: { rows: readonly (Float32Array | null)[]; offsets: ReadonlyMap<string, number> },
): void {
  for (const [name, perSample] of importance) {
    const sum = sums.get(name)!;
    const out = sum.n;
    const off = profile?.offsets.get(name) ?? 0;
    for (let b = 0; b < samples; b++) {
      const row = profile?.rows[b];
      for (let j = 0; j < out; j++) {
        const v = perSample[b * out + j]!; // a mean over the sample's tokens
        sum.add(j, v);
        if (row) row[off + j] = v;
      }
    }
  }
}

// ---------------------------------------------------------------- the result: top-k per layer

/** The sums a map is built from (one run's accumulators, or merged shards'). */
type Sums = Pick<
  Accumulators,
  "done" | "secure" | "insecure" | "loss" | "flops" | "wallSeconds" | "tokens" | "paddedTokens" | "sums"
>;

/** Indices of the k largest values, descending, ties to the lower index (a stable order). */
export function topKIndices(values: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, Math.min(k, idx.length));
}

/**
 * The neuron map from identification's sums: per module the mean importance of every row (its exact sum over
 * the samples, divided by their count), the top-k rows by it, their scores and the layer's statistics, and the
 * selected rows' per-sample profiles when `readProfiles` gives them (the first profileSamples samples).
 */
export function buildNeuronMap(
  targets: readonly Target[],
  model: ModelShapeRecord,
  acc: Sums,
  opts: { mode: SelectionMode; topK: number; source: NeuronMapSource },
  readProfiles: ((selected: Map<string, number[]>) => Map<string, number[][]>) | null,
): NeuronMap {
  const selected = new Map<string, number[]>();
  const modules: Record<string, ModuleNeurons> = {};
  for (const l of targets) {
    const sum = acc.sums.get(l.name)!.values();
    const imp = Float64Array.from(sum, (v) => v / acc.done);
    const indices = topKIndices(imp, opts.topK);
    selected.set(l.name, indices);
    let total = 0;
    let max = 0;
    for (const v of imp) {
      total += v;
      max = Math.max(max, v);
    }
    const mean = total / imp.length;
    let v2 = 0;
    for (const v of imp) v2 += (v - mean) ** 2;
    const top = indices.reduce((a, i) => a + imp[i], 0);
    modules[l.name] = {
      outFeatures: l.outFeatures,
      inFeatures: l.inFeatures,
      indices,
      scores: indices.map((i) => imp[i]),
      stats: { mean, std: Math.sqrt(v2 / imp.length), max, topKShare: total > 0 ? top / total : 0 },
    };
  }
  if (readProfiles) for (const [name, prof] of readProfiles(selected)) modules[name]!.profiles = prof;
  return {
    format: "goodvibe-neuron-map",
    version: 1,
    mode: opts.mode,
    topK: opts.topK,
    model,
    source: { ...opts.source, samples: acc.done, secure: acc.secure, insecure: acc.insecure },
    lossMean: acc.loss.value(0) / acc.done,
    flops: flopsOf(acc),
    wallSeconds: acc.wallSeconds,
    tokens: acc.tokens,
    paddedTokens: acc.paddedTokens,
    modules,
  };
}

/**
 * The key of a whole run: the model's shape, the samples, the labels, the mode, the profile samples and
 * lm_head. Saved state and every shard of a run carry it; state of another run is refused.
 */
function identifyRunKey(model: DecoderModel, samples: IdentifySample[], opts: IdentifyOptions): string {
  const h = createHash("sha256");
  h.update(
    JSON.stringify([
      modelShapeRecord(model).hash,
      opts.labelTokenIds,
      opts.mode,
      opts.profileSamples,
      // only when on, so that saved state of runs without it keeps its key
      ...(opts.lmHead ? ["lm_head"] : []),
    ]),
  );
  for (const s of samples) h.update(`${s.label}:${s.inputIds.join(",")};`);
  return h.digest("hex").slice(0, 16);
}

/** Checkpointing as configured, or by "auto"'s rule (../checkpointing.ts) from the largest batch's activations. */
function identifyCheckpointing(
  model: DecoderModel,
  plan: number[][],
  lengths: number[],
  opts: IdentifyOptions,
): boolean {
  // the activation ablation runs no backward: nothing to checkpoint
  if (opts.gradientCheckpointing === "auto" && opts.mode === "activation") return false;
  const need = () => {
    let most = 0;
    for (const b of plan)
      most = Math.max(
        most,
        identifyMemoryEstimate(model, {
          totalParams: 0,
          dtype: model.dtype,
          batch: b.length,
          time: lengths[b[0]!]!,
          checkpointing: false,
        }).activations,
      );
    return most;
  };
  const { on, note } = chooseCheckpointing(
    opts.gradientCheckpointing,
    need,
    model.device,
    "identification",
    "set identify.batchTokens lower",
  );
  if (note && plan.length > 0) opts.log?.(note);
  return on;
}

/** per-sample mean over its real tokens of |v| : [B, T, out] → [B, out] float32 */
function perSampleMeanAbs(v: Tensor, mask: Tensor, lengths: Tensor): Tensor {
  return v.float().abs().mul(mask.unsqueeze(-1)).sum(1).div(lengths);
}

/** A batch as runBatch feeds it: left-padded ids [B, T], the real-token mask and each sample's length ([B, 1]). */
export function leftPadBatch(samples: IdentifySample[]) {
  const T = samples[0]!.inputIds.length; // the longest: batches are sorted longest first
  const B = samples.length;
  const ids = new Array<number>(B * T).fill(0);
  const mask = new Array<number>(B * T).fill(0);
  samples.forEach((s, b) => {
    const pad = T - s.inputIds.length;
    for (let t = 0; t < s.inputIds.length; t++) {
      ids[b * T + pad + t] = s.inputIds[t]!;
      mask[b * T + pad + t] = 1;
    }
  });
  return {
    ids: Tensor.fromArray(ids, [B, T], "int64"),
    mask: Tensor.fromArray(mask, [B, T], "float32"),
    padded: samples.some((s) => s.inputIds.length !== T),
    lengths: Tensor.fromArray(
      samples.map((s) => s.inputIds.length),
      [B, 1],
    ),
  };
}

/**
 * One batch: forward + backward of the judge loss (reduction "sum", so each sample's gradient is its own), and
 * per module and sample the mean over its tokens of |∂L/∂y| (or of |y| for the activation ablation). Padding
 * positions get exactly zero gradient (no real position attends to them), so only activations need the mask: the
 * gradient's mean is Σ_t float(|g|) / length over every position, reduced by a native hook on y inside the backward
 * (meanAbsGradHook, with the arithmetic of g.abs().float().sum(1).div(lengths) bit for bit) as soon as y's gradient
 * is complete, so no output gradient outlives its use (retainGrad cloned all 7 × layers of them and held them to
 * the end of the backward, or of the layer with checkpointing). Exported for the tests that compare it with that
 * op sequence.
 */
export function runBatch(
  model: DecoderModel,
  linears: Linear[],
  batch: IdentifySample[],
  opts: Pick<IdentifyOptions, "labelTokenIds" | "mode" | "lmHead">,
  checkpointing: boolean,
): { loss: number; importance: Map<string, Float32Array> } {
  const host = leftPadBatch(batch);
  // on a GPU: the batch goes to the device once; the per-sample importances come back once (readBack)
  const { ids, padded } = host;
  const mask = host.mask.onDevice(model.device);
  const lengths = host.lengths.onDevice(model.device);
  const attentionMask = padded ? mask : undefined;
  const labels = Tensor.fromArray(
    batch.map((s) => s.label),
    [batch.length],
    "int64",
  );
  // lm_head (identify.lmHead): its output gradient is that of the label tokens' logits (lm-head.ts)
  let raw: Tensor | null = null;
  const onRaw =
    opts.lmHead && opts.mode === "gradient"
      ? (r: Tensor) => {
          if (!r.requiresGrad) return;
          r.retainGrad();
          raw = keep(r);
        }
      : undefined;
  const head = judgeLossHead(model, opts.labelTokenIds, labels, "sum", onRaw);
  const importance = new Map<string, Float32Array>();
  const perSample = new Map<string, Tensor>();
  const readBack = () => {
    const names = [...perSample.keys()];
    const values = readBackFloat32([...perSample.values()]);
    names.forEach((n, i) => importance.set(n, values[i]));
    for (const t of perSample.values()) t.dispose();
  };
  if (opts.mode === "activation") {
    for (const l of linears) l.tap = (y) => perSample.set(l.name, keep(perSampleMeanAbs(y, mask, lengths)));
    const loss = noGrad(() => {
      const hidden = model.hidden(ids, { attentionMask });
      if (opts.lmHead) importance.set(LM_HEAD, lmHeadActivationImportance(model, hidden, mask, lengths));
      return head(hidden).item();
    });
    readBack();
    return { loss, importance };
  }
  // per module a [B, out] float32 block of one [B, Σ out] buffer on the device, written inside the backward by a
  // native hook on the module's output (meanAbsGradHook: the gradient is reduced as it passes y, never cloned or
  // kept); NaN until then. One buffer: one fill and one read back per batch, not one per module (a GPU launch each)
  const B = batch.length;
  const total = linears.reduce((a, l) => a + l.outFeatures, 0);
  const all = keep(Tensor.full([B, total], NaN, "float32", model.device));
  const blocks = new Map<string, { at: number; n: number; view: Tensor }>();
  let at = 0;
  for (const l of linears) {
    // views are disposed below; keep() would register each with the collector only to unregister it
    blocks.set(l.name, { at, n: l.outFeatures, view: all.narrow(1, at, l.outFeatures) });
    at += l.outFeatures;
  }
  for (const l of linears)
    l.tap = (y) => {
      if (!y.requiresGrad) return; // the graph-free forward of gradient checkpointing
      meanAbsGradHook(y, blocks.get(l.name)!.view, lengths);
    };
  let loss: number;
  try {
    loss = model.forwardBackward(ids, { attentionMask }, head, checkpointing);
  } finally {
    for (const b of blocks.values()) b.view.dispose();
  }
  if (!Number.isFinite(loss)) {
    all.dispose();
    throw new GoodVibeError(
      `identification loss is ${loss} on samples ${batch.map((s) => s.id).join(", ")}`,
      1,
    );
  }
  const [flat] = readBackFloat32([all]);
  all.dispose();
  for (const [name, { at: o, n }] of blocks) {
    const v = new Float32Array(B * n);
    for (let b = 0; b < B; b++) v.set(flat!.subarray(b * total + o, b * total + o + n), b * n);
    importance.set(name, v);
  }
  for (const l of linears)
    if (Number.isNaN(importance.get(l.name)![0]))
      throw new Error(`no gradient reached ${l.name} (or a NaN one did)`);
  if (onRaw) {
    const r = raw as Tensor | null;
    const g = r?.grad;
    if (!r || !g) throw new Error("no gradient reached lm_head");
    importance.set(
      LM_HEAD,
      lmHeadGradientImportance(
        g,
        opts.labelTokenIds,
        model.cfg.vocabSize,
        batch.map((s) => s.inputIds.length),
      ),
    );
    g.dispose();
    r.dispose();
  }
  return { loss, importance };
}
