/**
 * Identification of security neurons (GoodVibe §3.3). The model judges each labelled sample with the judge
 * instruction (§4.1/§4.3: "1" = unsafe, "0" = safe); the loss is cross-entropy over the logits of the two label
 * tokens at the last position.
 * A neuron is an output row i of a linear layer; its importance is the mean over tokens of |∂L/∂y_i| for a sample,
 * averaged over samples (accumulated in float64). The top-k per layer — never globally — are the security neurons.
 * The activation-magnitude variant (|y_i| instead of the gradient) is the paper's identification ablation.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHash } from "node:crypto";
import type { DecoderModel } from "../../models/decoder.js";
import type { Linear } from "../../models/linear.js";
import { InputError, GoodVibeError } from "../../errors.js";
import { writeDirAtomic, writeFileAtomic, type WriteDirOptions } from "../../io/atomic.js";
import {
  readSafetensors,
  writeSafetensors,
  type SafetensorsFile,
  type TensorToWrite,
} from "../../io/safetensors.js";
import { Tensor, keep, noGrad, readBackFloat32, tidy } from "../../tensor/index.js";
import { availableMemoryBytes } from "../../util/memory.js";
import { judgeLossHead } from "../losses.js";
import { identifyFlops, identifyMemoryEstimate, type FlopCount } from "../flops.js";
import {
  LM_HEAD,
  checkLmHeadTarget,
  lmHeadActivationImportance,
  lmHeadGradientImportance,
} from "./lm-head.js";
import { interrupted, stopRequested } from "../../util/stop.js";
import { parseJson } from "../../util/keys.js";
import { ExactSums } from "../../util/exact-sum.js";
import type { ShardSpec } from "../../util/shard.js";
import { DEFAULT_BATCH_TOKENS, type IdentifyConfig, type SelectionMode } from "./config.js";

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
  source: { model: string; data: string; prompt: string; labels: { unsafe: string; safe: string } };
  /** samples done of all, after every batch (and once before the first); `extra` gives the token rate */
  onProgress?: (done: number, total: number, extra?: string) => void;
  /** messages for the user (e.g. that checkpointing was turned on) */
  log?: (msg: string) => void;
  /** stop request (Ctrl-C), checked after every batch: state is saved, then InterruptedError */
  signal?: AbortSignal;
}

export interface ModuleNeurons {
  outFeatures: number;
  inFeatures: number;
  /** selected rows, most important first (ties: lower index first) */
  indices: number[];
  scores: number[];
  stats: { mean: number; std: number; max: number; topKShare: number };
  /** [k][profileSamples] per-sample importance of each selected neuron */
  profiles?: number[][];
}

export interface NeuronMap {
  format: "goodvibe-neuron-map";
  version: 1;
  mode: SelectionMode;
  topK: number;
  model: ModelFingerprint;
  /** `labels` is absent in maps made before the judge convention was recorded (they used 1 = secure) */
  source: {
    model: string;
    data: string;
    prompt: string;
    labels?: { unsafe: string; safe: string };
    samples: number;
    secure: number;
    insecure: number;
  };
  lossMean: number;
  flops: FlopCount;
  wallSeconds: number;
  /** real tokens judged, and tokens computed with padding */
  tokens?: number;
  paddedTokens?: number;
  modules: Record<string, ModuleNeurons>;
}

export interface ModelFingerprint {
  family: string;
  hash: string;
  modules: Record<string, [number, number]>;
}

export function modelFingerprint(model: DecoderModel): ModelFingerprint {
  const modules: Record<string, [number, number]> = {};
  for (const l of model.linears()) modules[l.name] = [l.outFeatures, l.inFeatures];
  const c = model.cfg;
  const key = JSON.stringify({ f: c.family, h: c.hiddenSize, l: c.numLayers, v: c.vocabSize, modules });
  return { family: c.family, hash: createHash("sha256").update(key).digest("hex").slice(0, 16), modules };
}

/** Refuse a neuron map (or a delta) made for another model, naming the first difference. */
export function checkFingerprint(model: DecoderModel, fp: ModelFingerprint, what: string): void {
  const mine = modelFingerprint(model);
  if (mine.hash === fp.hash) return;
  for (const [name, shape] of Object.entries(fp.modules)) {
    const m = mine.modules[name];
    if (!m)
      throw new InputError(
        `${what} was made for another model: it has module ${name}, which this model lacks`,
      );
    if (m[0] !== shape[0] || m[1] !== shape[1])
      throw new InputError(`${what} was made for another model: ${name} is [${shape}] there and [${m}] here`);
  }
  throw new InputError(
    `${what} was made for another model (${fp.family}, fingerprint ${fp.hash}; this is ${mine.hash})`,
  );
}

/** Indices of the k largest values, descending, ties to the lower index (a stable order). */
export function topKIndices(values: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, Math.min(k, idx.length));
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

// ---------------------------------------------------------------- per-sample profiles on disk

const PROFILES = "identify-profiles.f32";

/** Run a write on an open file, naming the file in its error (a write to a descriptor has no path: ENOSPC would not say where). */
function onFile<T>(file: string, op: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err && typeof err.code === "string" && !err.path) {
      err.path = file;
      err.syscall ??= op;
    }
    throw e;
  }
}

/**
 * Per-sample importances of the first `count` samples (the clustering features): one float32 row per sample
 * holding every module's outputs (model.linears() order), written at its sample's slot of a file. Nothing of it
 * stays in memory, and a resumed run finds the rows of the samples it already did.
 */
class ProfileStore {
  readonly rowFloats: number;
  readonly offsets = new Map<string, number>();
  private readonly fd: number;

  constructor(
    readonly file: string,
    readonly count: number,
    linears: readonly Target[],
    fresh: boolean,
  ) {
    let n = 0;
    for (const l of linears) {
      this.offsets.set(l.name, n);
      n += l.outFeatures;
    }
    this.rowFloats = n;
    const bytes = count * n * 4;
    if (!fresh && (!fs.existsSync(file) || fs.statSync(file).size !== bytes))
      throw new InputError(
        `${file}: the per-sample profiles of the saved identification state are missing or truncated; delete ${path.dirname(file)}/${STATE} to start over`,
      );
    this.fd = fs.openSync(file, fresh ? "w+" : "r+");
    if (fresh) onFile(file, "ftruncate", () => fs.ftruncateSync(this.fd, bytes));
  }

  write(sample: number, row: Float32Array): void {
    onFile(this.file, "write", () =>
      fs.writeSync(this.fd, row, 0, row.byteLength, sample * this.rowFloats * 4),
    );
  }

  sync(): void {
    onFile(this.file, "fsync", () => fs.fsyncSync(this.fd));
  }

  readRow(sample: number, row: Float32Array): void {
    fs.readSync(this.fd, row, 0, row.byteLength, sample * this.rowFloats * 4);
  }

  /** [k][count] profiles of the selected rows of each module, read one sample row at a time. */
  read(selected: Map<string, number[]>): Map<string, number[][]> {
    return readProfileRows(this.count, this.rowFloats, this.offsets, selected, (s, row) =>
      this.readRow(s, row),
    );
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** [k][count] profiles of the selected rows of each module from `count` rows of all modules' outputs. */
function readProfileRows(
  count: number,
  rowFloats: number,
  offsets: Map<string, number>,
  selected: Map<string, number[]>,
  readRow: (sample: number, row: Float32Array) => void,
): Map<string, number[][]> {
  const out = new Map<string, number[][]>();
  for (const [name, idx] of selected)
    out.set(
      name,
      idx.map(() => new Array<number>(count)),
    );
  const row = new Float32Array(rowFloats);
  for (let s = 0; s < count; s++) {
    readRow(s, row);
    for (const [name, idx] of selected) {
      const off = offsets.get(name)!;
      const prof = out.get(name)!;
      idx.forEach((i, k) => (prof[k]![s] = row[off + i]!));
    }
  }
  return out;
}

// ---------------------------------------------------------------- resumable state

export { parseShard, type ShardSpec } from "../../util/shard.js";

interface Accumulators {
  /** 1 where the sample is in the sums */
  processed: Uint8Array;
  done: number;
  /** Σ of the batches' summed losses, exact until read (ExactSums: order-free) */
  loss: ExactSums;
  secure: number;
  insecure: number;
  /** real tokens, and tokens computed (padding included) */
  tokens: number;
  paddedTokens: number;
  /** per module, Σ over samples of each row's per-sample importance, exact until read */
  sums: Map<string, ExactSums>;
  /** forward, backward, total */
  flops: ExactSums;
  wallSeconds: number;
}

function emptyAccumulators(n: number, targets: readonly Target[]): Accumulators {
  return {
    processed: new Uint8Array(n),
    done: 0,
    loss: new ExactSums(1),
    secure: 0,
    insecure: 0,
    tokens: 0,
    paddedTokens: 0,
    sums: new Map(targets.map((l) => [l.name, new ExactSums(l.outFeatures)])),
    flops: new ExactSums(3),
    wallSeconds: 0,
  };
}

function flopsOf(acc: Accumulators): FlopCount {
  return { forward: acc.flops.value(0), backward: acc.flops.value(1), total: acc.flops.value(2) };
}

/** What has an importance per output row: a linear module, or lm_head. */
interface Target {
  name: string;
  outFeatures: number;
  inFeatures: number;
}

function fingerprintRun(model: DecoderModel, samples: IdentifySample[], opts: IdentifyOptions): string {
  const h = createHash("sha256");
  h.update(
    JSON.stringify([
      modelFingerprint(model).hash,
      opts.labelTokenIds,
      opts.mode,
      opts.profileSamples,
      // only when on, so that saved state of runs without it keeps its fingerprint
      ...(opts.lmHead ? ["lm_head"] : []),
    ]),
  );
  for (const s of samples) h.update(`${s.label}:${s.inputIds.join(",")};`);
  return h.digest("hex").slice(0, 16);
}

const STATE = "identify-state";
/** 3: exact sums (partials), batches planned over every sample */
const STATE_VERSION = 3;

function sumsTensors(prefix: string, s: ExactSums): TensorToWrite {
  const { width, data } = s.partials();
  return {
    name: prefix,
    dtype: "F64",
    shape: [s.n, width],
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

function readSums(file: SafetensorsFile, name: string, n: number, where: string): ExactSums {
  const rec = file.tensors.get(name);
  if (!rec || rec.dtype !== "F64" || rec.shape.length !== 2 || rec.shape[0] !== n)
    throw new InputError(`${where}: ${name} is missing or has the wrong shape`);
  const data = new Float64Array(
    rec.data.buffer.slice(rec.data.byteOffset, rec.data.byteOffset + rec.data.byteLength),
  );
  try {
    return ExactSums.fromPartials(n, rec.shape[1]!, data);
  } catch (e) {
    throw new InputError(`${where}: ${name} is damaged (${(e as Error).message})`);
  }
}

/** The accumulators as safetensors: `partials/<module>` [rows, width], `loss` [1, w], `flops` [3, w]. */
function accumulatorTensors(acc: Accumulators, rounded: boolean): TensorToWrite[] {
  const out: TensorToWrite[] = [sumsTensors("loss", acc.loss), sumsTensors("flops", acc.flops)];
  for (const [name, s] of acc.sums) {
    out.push(sumsTensors(`partials/${name}`, s));
    if (rounded) {
      const v = s.values();
      out.push({
        name: `sum/${name}`,
        dtype: "F64",
        shape: [s.n],
        data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
      });
    }
  }
  return out;
}

function readAccumulatorTensors(
  file: string,
  targets: readonly Target[],
): Pick<Accumulators, "loss" | "flops" | "sums"> {
  const st = readSafetensors(file);
  return {
    loss: readSums(st, "loss", 1, file),
    flops: readSums(st, "flops", 3, file),
    sums: new Map(targets.map((t) => [t.name, readSums(st, `partials/${t.name}`, t.outFeatures, file)])),
  };
}

type ScalarState = Omit<Accumulators, "sums" | "loss" | "flops" | "processed">;

function scalarsOf(acc: Accumulators): ScalarState {
  const { sums: _s, loss: _l, flops: _f, processed: _p, ...scalars } = acc;
  return scalars;
}

async function saveState(runDir: string, acc: Accumulators, fingerprint: string): Promise<void> {
  await writeDirAtomic(
    path.join(runDir, STATE),
    (tmp) => {
      writeSafetensors(path.join(tmp, "accumulators.safetensors"), accumulatorTensors(acc, false));
      writeFileAtomic(
        path.join(tmp, "state.json"),
        JSON.stringify({
          version: STATE_VERSION,
          fingerprint,
          ...scalarsOf(acc),
          processed: Buffer.from(acc.processed).toString("base64"),
        }),
      );
    },
    { replaceOwn: true },
  );
}

function loadState(
  runDir: string,
  fingerprint: string,
  n: number,
  targets: readonly Target[],
): Accumulators | null {
  const dir = path.join(runDir, STATE);
  if (!fs.existsSync(path.join(dir, "state.json"))) return null;
  const st = parseJson(
    fs.readFileSync(path.join(dir, "state.json"), "utf8"),
    path.join(dir, "state.json"),
  ) as Record<string, any>;
  if (st.version !== STATE_VERSION)
    throw new InputError(
      `${dir}: saved identification state from an older version of goodvibe; delete it to start over`,
    );
  if (st.fingerprint !== fingerprint)
    throw new InputError(
      `${dir}: saved identification state belongs to other data, model, settings or shard; delete it to start over`,
    );
  const processed = new Uint8Array(Buffer.from(st.processed, "base64"));
  if (processed.length !== n) throw new InputError(`${dir}/state.json: damaged (sample count)`);
  return {
    processed,
    done: st.done,
    secure: st.secure,
    insecure: st.insecure,
    tokens: st.tokens,
    paddedTokens: st.paddedTokens,
    wallSeconds: st.wallSeconds,
    ...readAccumulatorTensors(path.join(dir, "accumulators.safetensors"), targets),
  };
}

/** Remove what a finished run no longer needs (the accumulators and the per-sample profiles file). */
export function clearIdentifyState(runDir: string): void {
  fs.rmSync(path.join(runDir, STATE), { recursive: true, force: true });
  fs.rmSync(path.join(runDir, PROFILES), { force: true });
}

// ---------------------------------------------------------------- the run

/**
 * top-k picks k rows of every module, so k must be a whole number from 1 to the rows of the smallest module
 * (a k past it was silently capped there); refused with the valid range otherwise. Cheap: call it right after
 * loading the model, before any work.
 */
export function checkTopK(model: DecoderModel, topK: number): void {
  const smallest = model.linears().reduce((a, l) => (l.outFeatures < a.outFeatures ? l : a));
  if (!Number.isSafeInteger(topK) || topK < 1 || topK > smallest.outFeatures)
    throw new InputError(
      `identify.topK (--top-k) = ${topK} is out of range: it must be a whole number from 1 to ${smallest.outFeatures}, ` +
        `the output rows of the smallest module (${smallest.name}, ${smallest.outFeatures} of them)`,
    );
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
  return accumulate(model, samples, opts, null, (acc, targets, store) =>
    buildNeuronMap(targets, modelFingerprint(model), acc, opts, store ? (sel) => store.read(sel) : null),
  );
}

/**
 * One shard of an identification run (identify --shard i/n): the i-th of every n batches of the whole run's
 * plan, so each batch is computed exactly as in one run. Writes `outDir` (a folder, atomically): shard.json and
 * sums.safetensors with the exact partial sums per neuron (`partials/<module>`, with their float64 values in
 * `sum/<module>`; every neuron's count is the shard's sample count), and the per-sample profile rows of its
 * profile samples. mergeIdentifyShards turns a complete set into the neuron map of one run.
 */
export async function identifyShard(
  model: DecoderModel,
  samples: IdentifySample[],
  opts: IdentifyOptions,
  shard: ShardSpec,
  outDir: string,
  write: WriteDirOptions = {},
): Promise<IdentifyShardInfo> {
  if (!(shard.index >= 1 && shard.index <= shard.count))
    throw new InputError(`shard ${shard.index}/${shard.count} does not exist`);
  return accumulate(model, samples, opts, shard, async (acc, targets, store, fingerprint) => {
    const profileRows: number[] = [];
    if (store) for (let s = 0; s < store.count; s++) if (acc.processed[s]) profileRows.push(s);
    const info: IdentifyShardInfo = {
      format: SHARD_FORMAT,
      version: 1,
      shard,
      run: fingerprint,
      plan: { batchSize: opts.batchSize, batchTokens: opts.batchTokens ?? DEFAULT_BATCH_TOKENS },
      mode: opts.mode,
      topK: opts.topK,
      lmHead: opts.lmHead === true,
      profileSamples: store?.count ?? 0,
      samplesInRun: samples.length,
      model: modelFingerprint(model),
      targets: targets.map((t) => [t.name, t.outFeatures, t.inFeatures]),
      source: opts.source,
      ...scalarsOf(acc),
      processed: Buffer.from(acc.processed).toString("base64"),
      profileRows,
    };
    await writeDirAtomic(
      outDir,
      (tmp) => {
        writeSafetensors(path.join(tmp, SHARD_SUMS), accumulatorTensors(acc, true), {
          format: SHARD_FORMAT,
        });
        if (store) {
          const row = new Float32Array(store.rowFloats);
          const fd = fs.openSync(path.join(tmp, SHARD_PROFILES), "w");
          try {
            const file = path.join(tmp, SHARD_PROFILES);
            for (const s of profileRows) {
              store.readRow(s, row);
              onFile(file, "write", () => fs.writeSync(fd, row));
            }
            onFile(file, "fsync", () => fs.fsyncSync(fd));
          } finally {
            fs.closeSync(fd);
          }
        }
        writeFileAtomic(path.join(tmp, SHARD_INFO), JSON.stringify(info));
      },
      write,
    );
    return info;
  });
}

/**
 * The work itself: plan the batches over every sample (the same plan for one run and for every shard), take the
 * shard's share, skip what saved state has done, run the rest; `finish` sees the accumulators and the profile
 * store before they are closed.
 */
async function accumulate<T>(
  model: DecoderModel,
  samples: IdentifySample[],
  opts: IdentifyOptions,
  shard: ShardSpec | null,
  finish: (
    acc: Accumulators,
    targets: Target[],
    store: ProfileStore | null,
    fingerprint: string,
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
  const fingerprint = fingerprintRun(model, samples, opts);
  const stateKey = shard ? `${fingerprint}/shard-${shard.index}-of-${shard.count}` : fingerprint;
  const loaded = opts.runDir ? loadState(opts.runDir, stateKey, N, targets) : null;
  const acc: Accumulators = loaded ?? emptyAccumulators(N, targets);
  const all = planBatches(lengths, opts.batchSize, opts.batchTokens ?? DEFAULT_BATCH_TOKENS);
  const mine = shard ? all.filter((_, b) => b % shard.count === shard.index - 1) : all;
  const total = mine.reduce((a, b) => a + b.length, 0);
  const plan = mine.map((b) => b.filter((i) => !acc.processed[i])).filter((b) => b.length > 0);
  const checkpointing = chooseCheckpointing(model, plan, lengths, opts);
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
    opts.onProgress?.(acc.done, total); // starts the progress clock
    const firstOfLayer = new Set(model.layers.map((l) => l.attn.q));
    for (const indices of plan) {
      const batch = indices.map((i) => samples[i]!);
      const r = tidy(() => runBatch(model, linears, firstOfLayer, batch, opts, checkpointing));
      acc.loss.add(0, r.loss);
      const T = lengths[indices[0]!]!;
      acc.paddedTokens += indices.length * T;
      const rows = indices.map((i) => (i < profileCount ? new Float32Array(store!.rowFloats) : null));
      for (const [name, perSample] of r.importance) {
        const sum = acc.sums.get(name)!;
        const out = sum.n;
        const off = store?.offsets.get(name) ?? 0;
        indices.forEach((sample, b) => {
          const row = rows[b];
          for (let j = 0; j < out; j++) {
            const v = perSample[b * out + j]!; // a mean over the sample's tokens
            sum.add(j, v);
            if (row) row[off + j] = v;
          }
        });
      }
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
        await saveState(opts.runDir, acc, stateKey);
        sinceSave = 0;
      }
      if (stop && acc.done < total)
        throw interrupted(`identification interrupted after ${acc.done} of ${total} samples`);
    }
    return await finish(acc, targets, store, fingerprint);
  } finally {
    for (const l of linears) l.tap = null;
    store?.close();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- shards

export const SHARD_FORMAT = "goodvibe-identify-shard";
const SHARD_INFO = "shard.json";
const SHARD_SUMS = "sums.safetensors";
const SHARD_PROFILES = "profiles.f32";

/** shard.json of a shard folder: what the shard covers, its counts, and what must agree to merge. */
export interface IdentifyShardInfo extends ScalarState {
  format: typeof SHARD_FORMAT;
  version: 1;
  shard: ShardSpec;
  /** fingerprint of the whole run (model, samples, labels, mode, profile samples, lm_head): equal in every shard */
  run: string;
  /** the batch plan's settings: equal in every shard, so each batch is computed as in one run */
  plan: { batchSize: number; batchTokens: number };
  mode: SelectionMode;
  topK: number;
  lmHead: boolean;
  profileSamples: number;
  samplesInRun: number;
  model: ModelFingerprint;
  targets: [string, number, number][];
  source: IdentifyOptions["source"];
  /** base64 of one byte per sample of the run, 1 = in this shard's sums */
  processed: string;
  /** the samples whose profile rows profiles.f32 holds, in its order */
  profileRows: number[];
}

export function readIdentifyShard(dir: string): IdentifyShardInfo {
  const file = path.join(dir, SHARD_INFO);
  if (!fs.existsSync(file))
    throw new InputError(
      `${dir}: not an identification shard (no ${SHARD_INFO}; made by identify --shard i/n)`,
    );
  const info = parseJson(fs.readFileSync(file, "utf8"), file) as IdentifyShardInfo;
  if (info.format !== SHARD_FORMAT || info.version !== 1)
    throw new InputError(`${file}: not an identification shard of this version of goodvibe`);
  return info;
}

/**
 * Merge identification shards (given in any order) into the neuron map one run over all their samples makes:
 * the exact partial sums add (so the order of the shards does not matter, bit for bit), counts add, profiles
 * come from the shard that did each sample. Refused: shards of different runs, plans or settings, a shard given
 * twice, and a set that misses shards (named).
 */
export function mergeIdentifyShards(dirs: readonly string[]): NeuronMap {
  if (dirs.length === 0) throw new InputError("identify merge: no shards given");
  const infos = dirs.map((d) => readIdentifyShard(d));
  const first = infos[0]!;
  const agree = (what: string, f: (i: IdentifyShardInfo) => unknown) => {
    infos.forEach((info, k) => {
      if (JSON.stringify(f(info)) !== JSON.stringify(f(first)))
        throw new InputError(
          `identify merge: ${dirs[k]} and ${dirs[0]} are shards of different runs (${what} differs); ` +
            `every shard must come from the same model, data and identify settings`,
        );
    });
  };
  agree("model", (i) => i.model.hash);
  agree("data or settings", (i) => [i.run, i.mode, i.lmHead, i.profileSamples, i.samplesInRun]);
  agree("batch plan (identify.batchSize / identify.batchTokens)", (i) => i.plan);
  agree("top-k", (i) => i.topK);
  agree("shard count", (i) => i.shard.count);
  const seen = new Map<number, string>();
  infos.forEach((info, k) => {
    const other = seen.get(info.shard.index);
    if (other !== undefined)
      throw new InputError(
        `identify merge: shard ${info.shard.index}/${info.shard.count} is given twice (${other} and ${dirs[k]})`,
      );
    seen.set(info.shard.index, dirs[k]!);
  });
  const missing: number[] = [];
  for (let i = 1; i <= first.shard.count; i++) if (!seen.has(i)) missing.push(i);
  if (missing.length)
    throw new InputError(
      `identify merge: ${missing.length} of ${first.shard.count} shards missing (${missing.slice(0, 20).join(", ")}${missing.length > 20 ? ", ..." : ""}); every shard of the run is needed`,
    );
  const targets: Target[] = first.targets.map(([name, outFeatures, inFeatures]) => ({
    name,
    outFeatures,
    inFeatures,
  }));
  const N = first.samplesInRun;
  const acc = emptyAccumulators(N, targets);
  /** for each profile sample, which shard holds its row and where */
  const rowAt = new Map<number, [number, number]>();
  infos.forEach((info, k) => {
    const where = path.join(dirs[k]!, SHARD_SUMS);
    const part = readAccumulatorTensors(where, targets);
    const processed = Buffer.from(info.processed, "base64");
    if (processed.length !== N) throw new InputError(`${dirs[k]}/${SHARD_INFO}: damaged (sample count)`);
    processed.forEach((p, s) => {
      if (!p) return;
      if (acc.processed[s])
        throw new InputError(`identify merge: sample ${s} is in two shards (${dirs[k]} and another)`);
      acc.processed[s] = 1;
    });
    acc.loss.addAll(part.loss);
    acc.flops.addAll(part.flops);
    for (const [name, s] of part.sums) acc.sums.get(name)!.addAll(s);
    acc.done += info.done;
    acc.secure += info.secure;
    acc.insecure += info.insecure;
    acc.tokens += info.tokens;
    acc.paddedTokens += info.paddedTokens;
    acc.wallSeconds += info.wallSeconds;
    info.profileRows.forEach((s, r) => rowAt.set(s, [k, r]));
  });
  if (acc.done !== N)
    throw new InputError(
      `identify merge: the shards cover ${acc.done} of the run's ${N} samples (a shard was written before it finished?)`,
    );
  const offsets = new Map<string, number>();
  let rowFloats = 0;
  for (const t of targets) {
    offsets.set(t.name, rowFloats);
    rowFloats += t.outFeatures;
  }
  const readProfiles =
    first.profileSamples > 0
      ? (selected: Map<string, number[]>) => {
          const fds = new Map<number, number>();
          try {
            return readProfileRows(first.profileSamples, rowFloats, offsets, selected, (s, row) => {
              const at = rowAt.get(s);
              if (!at) throw new InputError(`identify merge: no shard holds the profile row of sample ${s}`);
              const [k, r] = at;
              let fd = fds.get(k);
              if (fd === undefined) fds.set(k, (fd = fs.openSync(path.join(dirs[k]!, SHARD_PROFILES), "r")));
              if (fs.readSync(fd, row, 0, row.byteLength, r * row.byteLength) !== row.byteLength)
                throw new InputError(`${dirs[k]}/${SHARD_PROFILES}: truncated`);
            });
          } finally {
            for (const fd of fds.values()) fs.closeSync(fd);
          }
        }
      : null;
  return buildNeuronMap(targets, first.model, acc, first, readProfiles);
}

/** Checkpointing as configured; "auto" turns it on when the largest batch's activations would not fit comfortably. */
function chooseCheckpointing(
  model: DecoderModel,
  plan: number[][],
  lengths: number[],
  opts: IdentifyOptions,
): boolean {
  if (opts.gradientCheckpointing !== "auto") return opts.gradientCheckpointing;
  if (opts.mode === "activation") return false;
  let need = 0;
  for (const b of plan)
    need = Math.max(
      need,
      identifyMemoryEstimate(model, {
        totalParams: 0,
        dtype: model.dtype === "float32" ? "float32" : "bfloat16",
        batch: b.length,
        time: lengths[b[0]!]!,
        checkpointing: false,
      }).activations,
    );
  const budget = availableMemoryBytes() / 2;
  if (need <= budget) return false;
  const gib = (x: number) => (x / 1024 ** 3).toFixed(1);
  opts.log?.(
    `identification: the largest batch needs about ${gib(need)} GiB of activations, more than half of the ${gib(2 * budget)} GiB available; using gradient checkpointing (set identify.batchTokens lower to avoid it)`,
  );
  return true;
}

/** per-sample mean over its real tokens of |v| : [B, T, out] → [B, out] float32 */
function perSampleMeanAbs(v: Tensor, mask: Tensor, lengths: Tensor): Tensor {
  return v.float().abs().mul(mask.unsqueeze(-1)).sum(1).div(lengths);
}

function leftPadBatch(samples: IdentifySample[]) {
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
 * per module Σ_t |∂L/∂y| per sample (or Σ_t |y| for the activation ablation). Padding positions get exactly zero
 * gradient (no real position attends to them), so only activations need the mask. With checkpointing the
 * gradients of a layer are reduced as soon as its backward is done (when the next layer down is recomputed), so
 * only one layer's are alive at a time.
 */
function runBatch(
  model: DecoderModel,
  linears: Linear[],
  firstOfLayer: Set<Linear>,
  batch: IdentifySample[],
  opts: IdentifyOptions,
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
  const outputs = new Map<string, Tensor>();
  // with checkpointing, a layer's gradients are reduced as soon as its backward is done (when the next layer
  // down is recomputed), so only one layer's are alive at a time
  const reduce = () => {
    for (const [name, y] of outputs) {
      const g = y.grad;
      if (!g) throw new Error(`no gradient reached ${name}`);
      perSample.set(name, keep(perSampleMeanAbs(g, mask, lengths)));
      g.dispose();
      y.dispose();
    }
    outputs.clear();
  };
  for (const l of linears)
    l.tap = (y, layer) => {
      if (!y.requiresGrad) return; // the graph-free forward of gradient checkpointing
      if (checkpointing && firstOfLayer.has(layer)) reduce(); // the layer above is done
      y.retainGrad();
      outputs.set(l.name, keep(y));
    };
  const loss = model.forwardBackward(ids, { attentionMask }, head, checkpointing);
  if (!Number.isFinite(loss))
    throw new GoodVibeError(
      `identification loss is ${loss} on samples ${batch.map((s) => s.id).join(", ")}`,
      1,
    );
  reduce();
  readBack();
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

function buildNeuronMap(
  targets: readonly Target[],
  model: ModelFingerprint,
  acc: Accumulators,
  opts: { mode: SelectionMode; topK: number; source: IdentifyOptions["source"] },
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

export function writeNeuronMap(file: string, map: NeuronMap): void {
  writeFileAtomic(file, JSON.stringify(map));
}

export function readNeuronMap(file: string): NeuronMap {
  let json: unknown;
  try {
    json = parseJson(fs.readFileSync(file, "utf8"), file);
  } catch (e) {
    throw new InputError(`${file}: not a readable JSON neuron map (${(e as Error).message})`);
  }
  const m = json as Partial<NeuronMap>;
  if (m.format !== "goodvibe-neuron-map" || m.version !== 1 || typeof m.modules !== "object" || !m.model)
    throw new InputError(`${file}: not a GoodVibe neuron map (format/version/modules/model missing)`);
  for (const [name, mod] of Object.entries(m.modules!)) {
    if (
      !Array.isArray(mod.indices) ||
      !mod.indices.every((i) => Number.isInteger(i) && i >= 0 && i < mod.outFeatures)
    )
      throw new InputError(`${file}: module ${name} has invalid indices`);
  }
  return m as NeuronMap;
}

/** Where security neurons sit: per layer and module type, the mean importance of the selected neurons. */
export function summarizeNeuronMap(
  map: NeuronMap,
): { layer: number; module: string; count: number; meanImportance: number; topKShare: number }[] {
  return Object.entries(map.modules).map(([name, m]) => {
    const layer = Number(/layers\.(\d+)\./.exec(name)?.[1] ?? -1);
    const module = name.split(".").slice(-1)[0];
    return {
      layer,
      module,
      count: m.indices.length,
      meanImportance: m.scores.reduce((a, b) => a + b, 0) / Math.max(1, m.scores.length),
      topKShare: m.stats.topKShare,
    };
  });
}
