/**
 * The tensor façade over the libtorch addon. A Tensor owns one native handle; ops return new Tensors.
 * Memory: tensors made inside `tidy(fn)` are freed when fn returns (except what it returns), so long
 * loops do not grow; anything else is freed by the garbage collector (the addon reports native bytes to V8).
 */
import * as fs from "node:fs";
import { InputError, ResourceError } from "../errors.js";
import { MAX_BUFFER_BYTES } from "../io/mapfile.js";
import { holdPeakRss } from "../util/memory.js";
import { F32_PRODUCTS_ENV, native } from "./native.js";
import type { NativeTensor } from "./native-ops.js";

export type DType =
  "float32" | "bfloat16" | "float16" | "float64" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";
export type Device = "cpu" | "cuda" | `cuda:${number}`;

const ITEMSIZE: Record<DType, number> = {
  float32: 4,
  bfloat16: 2,
  float16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** What Tensor.bytesInParts makes at a time by default. */
export const BYTES_PART = 64 << 20;

export function itemSize(d: DType): number {
  return ITEMSIZE[d];
}

// ---------------------------------------------------------------- scopes
const scopes: Set<Tensor>[] = [];

/**
 * What frees a tensor nobody disposed: its handle goes back to the addon once the Tensor is collected. Only tensors
 * outside every tidy scope are registered (made there, returned from the outermost scope, or kept): a scope disposes
 * the rest itself, and a registration costs about half a microsecond, a fifth of a small op (BENCHMARKS "The addon's
 * handles").
 */
const collected = new FinalizationRegistry<NativeTensor>((h) => {
  try {
    native.dispose(h);
  } catch {
    // the addon is gone (the env's teardown frees its tensors itself)
  }
});

/** A tensor outside every scope is the collector's to free. */
function adopt(t: Tensor): void {
  if (t.adopted) return;
  t.adopted = true;
  collected.register(t, t.h, t);
}

function track(t: Tensor): void {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
  else adopt(t);
}

function collectTensors(value: unknown, out: Set<Tensor>, seen = new Set<unknown>()): void {
  if (value instanceof Tensor) {
    out.add(value);
    return;
  }
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) for (const v of value) collectTensors(v, out, seen);
  else if (value instanceof Map) for (const v of value.values()) collectTensors(v, out, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype)
    for (const v of Object.values(value as Record<string, unknown>)) collectTensors(v, out, seen);
}

/**
 * Run `fn`; dispose every tensor created inside it except those reachable from its result
 * (a Tensor, or arrays/maps/plain objects of them), which move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    // what a failed scope made may still be held by its caller: the collector's, as outside any scope
    for (const t of scope) adopt(t);
    throw e;
  } finally {
    scopes.pop();
  }
  if (result instanceof Promise) throw new Error("tidy() takes a synchronous function");
  const keepSet = new Set<Tensor>();
  collectTensors(result, keepSet);
  for (const t of scope) if (!keepSet.has(t) && !t.kept) t.dispose();
  for (const t of keepSet) if (scope.has(t)) track(t);
  return result;
}

/** Take `t` out of scope tracking: it lives until disposed or garbage-collected. */
export function keep<T extends Tensor>(t: T): T {
  t.kept = true;
  for (const s of scopes) s.delete(t);
  adopt(t);
  return t;
}

export function dispose(value: unknown): void {
  const set = new Set<Tensor>();
  collectTensors(value, set);
  for (const t of set) t.dispose();
}

// ---------------------------------------------------------------- autograd mode
export function noGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

export function withGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(true);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/** Backward through several outputs at once, with their upstream gradients (for checkpointed segments). */
export function backward(outputs: Tensor[], grads?: Tensor[] | null, retainGraph = false): void {
  native.backward(
    outputs.map((t) => t.h),
    grads ? grads.map((t) => t.h) : null,
    retainGraph,
  );
}

/** torch.autograd.grad: gradients of outputs w.r.t. inputs, null for inputs the outputs do not depend on. */
export function grad(
  outputs: Tensor[],
  inputs: Tensor[],
  gradOutputs?: Tensor[] | null,
  retainGraph = false,
): (Tensor | null)[] {
  return native
    .autogradGrad(
      outputs.map((t) => t.h),
      inputs.map((t) => t.h),
      gradOutputs ? gradOutputs.map((t) => t.h) : null,
      retainGraph,
    )
    .map((h) => (h ? new Tensor(h) : null));
}

export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/**
 * The default random generator's state on `device` (a CPU byte tensor), and setting it back: gradient
 * checkpointing recomputes a layer with the random numbers its forward drew (LoRA's dropout masks), as PyTorch's
 * checkpoint(preserve_rng_state=True) does.
 */
export function rngState(device: Device = "cpu"): Tensor {
  return new Tensor(native.rngState(device));
}

export function setRngState(state: Tensor, device: Device = "cpu"): void {
  native.setRngState(state.h, device);
}

let threadsChosen = false;

/** libtorch's CPU threads, as the caller chooses: kept over the by-size default a model's load applies. */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
  threadsChosen = true;
}

/**
 * A default thread count (models/load.ts picks one by model size): applied only where neither GOODVIBE_THREADS nor an
 * earlier setNumThreads chose, so a `--threads 1` given before the model loads is what runs.
 */
export function setDefaultNumThreads(n: number): void {
  if (threadsChosen || process.env.GOODVIBE_THREADS) return;
  native.setNumThreads(n);
}

export function getNumThreads(): number {
  return native.getNumThreads();
}

export function cudaAvailable(): boolean {
  return native.cudaAvailable();
}

export function torchVersion(): string {
  return native.version();
}

// ---------------------------------------------------------------- device and dtype policy
/**
 * What a device setting names, its spelling checked, without asking libtorch what is there: "cpu" (also unset or
 * empty), "auto", or "cuda" (cuda or cuda:N). Anything else ("CUDA", "gpu") is refused with the one message a run
 * (resolveDevice) and a plan (experiment/estimate.ts planThroughput, made where the run's GPU may not be) both give.
 */
export function deviceKind(requested: string | undefined): "cpu" | "auto" | "cuda" {
  if (!requested || requested === "cpu") return "cpu";
  if (requested === "auto") return "auto";
  if (!/^cuda(:\d+)?$/.test(requested))
    throw new InputError(`unknown device '${requested}': use cpu, cuda, cuda:N or auto`);
  return "cuda";
}

/**
 * The device a user asked for, checked: "cpu" (default), "cuda", "cuda:N", or "auto" (cuda when libtorch sees a
 * GPU, else cpu). Asking for CUDA where libtorch has none is an error that says why, before any work starts.
 * Nothing asked for: GOODVIBE_DEVICE from the environment (how every command runs on a GPU), else the CPU.
 */
export function resolveDevice(asked?: string): Device {
  const requested = asked ?? process.env.GOODVIBE_DEVICE;
  const kind = deviceKind(requested);
  if (kind === "cpu" || requested === undefined) return "cpu";
  if (kind === "auto") return native.cudaAvailable() ? "cuda" : "cpu";
  if (!native.cudaAvailable())
    throw new ResourceError(
      `device '${requested}' asked for, but CUDA is not available: the addon is built against libtorch ` +
        `${native.version()} without CUDA, or no GPU is visible (driver, CUDA_VISIBLE_DEVICES). Build it against ` +
        "a CUDA libtorch (LIBTORCH=/path/to/libtorch, or a Python torch with CUDA) or " +
        // the way back to the CPU is where it was asked for: the CLI has no --device flag, only the variable
        (asked !== undefined
          ? "ask for device 'cpu'."
          : `run on the CPU (GOODVIBE_DEVICE=cpu, or unset it; it is '${requested}').`),
    );
  const index = Number(requested.split(":")[1] ?? 0);
  const count = native.cudaDeviceCount();
  if (index >= count)
    throw new ResourceError(`device '${requested}' asked for, but only ${count} CUDA device(s) are visible`);
  return requested as Device;
}

/**
 * The compute dtype when none is asked for. On a GPU: bfloat16 (the weights and activations in bf16, float32
 * inside norms, softmax and the fused ops' accumulations, float32 master copies of whatever trains: what
 * torch.autocast(bf16) with float32 masters amounts to). On the CPU: the checkpoint's own dtype, but float32 for a
 * float16 one: libtorch 1.13's CPU kernels have no float16 products ("addmm_impl_cpu_" not implemented for 'Half':
 * a float16 Llama 2 failed its first forward), float32 holds float16 weights exactly (bfloat16 would round them),
 * and transformers 4 computes any checkpoint in float32 on the CPU by default.
 */
export function defaultComputeDtype(device: Device, checkpointDtype: DType): DType {
  if (device !== "cpu") return "bfloat16";
  return checkpointDtype === "float16" ? "float32" : checkpointDtype;
}

/** Waits until the device has finished its queued work (kernels and asynchronous copies); a no-op on the CPU. */
export function synchronize(device: Device | string): void {
  native.synchronize(device);
}

/** One row of an op profile: an op (or autograd node, or addon call `js::<op>`) with its calls and wall time. */
export interface OpProfileRow {
  /** libtorch's name (`aten::mm`, `MmBackward0`, `autograd::engine::evaluate_function: …`) or `js::<addon op>` */
  name: string;
  /** the inputs' shapes (`[1024x896, 896x3]`: empty for an input that is not a tensor or is 0-dim) when recorded */
  shapes: string;
  /** recorded in the autograd engine's backward scope (an autograd node) */
  backward: boolean;
  calls: number;
  /** wall time from the op's start to its end, what it ran inside included */
  totalNs: number;
  /** totalNs less the time of the ops it ran inside (an addon call's: argument decoding and the result's handle) */
  selfNs: number;
}

/**
 * Records every op libtorch runs until opProfileStop (forward, backward and the addon's own calls), on every thread:
 * libtorch's RecordFunction observers, in every libtorch version (native/src/op_profile.cc). For benchmarks that set
 * what the two sides of a comparison run side by side (bench/op-profile.ts); on a GPU the times are the host's
 * unless kernels are launched synchronously (CUDA_LAUNCH_BLOCKING=1). `shapes`: one row per op name and input
 * shapes (which of a model's products costs what).
 */
export function opProfileStart(opts: { shapes?: boolean } = {}): void {
  native.opProfileStart(opts.shapes ?? false);
}

/** Stops the op profile and returns its rows, largest self time first. */
export function opProfileStop(): OpProfileRow[] {
  return native.opProfileStop();
}

/**
 * Device tensors read back to the host as float32 arrays, with one transfer and one wait for all of them: on a
 * GPU they are flattened and concatenated there, copied without blocking into page-locked host memory (libtorch's
 * pinned caching allocator serves a non-blocking device-to-host copy, so the buffer is reused from call to call),
 * and the stream is synchronised once. On the CPU each tensor is read as it is (no copy through a staging buffer).
 * For per-step statistics that the host accumulates (identification's importance sums). `staged` forces (or
 * skips) the single-transfer path whatever the device (tests run it on the CPU).
 */
export function readBackFloat32(tensors: Tensor[], staged?: boolean): Float32Array[] {
  if (tensors.length === 0) return [];
  const device = tensors[0].device;
  if (!(staged ?? device !== "cpu")) return tensors.map((t) => t.toFloat32Array());
  return tidy(() => {
    const flat = Tensor.cat(tensors.map((t) => t.detach().float().reshape([-1])));
    const host = flat.toDeviceAsync("cpu");
    synchronize(device);
    const all = host.toFloat32Array();
    const out: Float32Array[] = [];
    let at = 0;
    for (const t of tensors) {
      const n = t.numel;
      out.push(all.slice(at, at + n));
      at += n;
    }
    return out;
  });
}

function sameDevice(a: string, b: string): boolean {
  const norm = (d: string) => (d === "cuda" ? "cuda:0" : d);
  return norm(a) === norm(b);
}

type Operand = Tensor | number;
const raw = (x: Operand) => (typeof x === "number" ? x : x.h);

// ---------------------------------------------------------------- the Tensor
export class Tensor {
  /** @internal */ readonly h: NativeTensor;
  /** @internal */ kept = false;
  /** @internal registered with the collector (outside every scope) */ adopted = false;
  private _shape?: number[];
  private _dtype?: DType;
  private _device?: string;

  /** @internal */
  constructor(h: NativeTensor) {
    this.h = h;
    track(this);
  }

  // ------------------------------------------------------------ creation
  static fromBytes(bytes: Uint8Array, dtype: DType, shape: number[], device?: Device): Tensor {
    return new Tensor(native.fromBuffer(bytes, dtype, shape, device));
  }
  static fromArray(
    values: ArrayLike<number> | Float32Array | Float64Array | Int32Array,
    shape: number[],
    dtype: DType = "float32",
    device?: Device,
  ): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (values.length !== n) throw new Error(`fromArray: ${values.length} values for shape [${shape}]`);
    let src: Uint8Array;
    let srcType: DType;
    if (
      dtype === "int64" ||
      dtype === "int32" ||
      dtype === "int16" ||
      dtype === "int8" ||
      dtype === "uint8" ||
      dtype === "bool"
    ) {
      const a = BigInt64Array.from(Array.from(values as ArrayLike<number>, (v) => BigInt(Math.trunc(v))));
      src = new Uint8Array(a.buffer);
      srcType = "int64";
    } else if (dtype === "float64") {
      const a = values instanceof Float64Array ? values : Float64Array.from(values as ArrayLike<number>);
      src = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      srcType = "float64";
    } else {
      const a = values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>);
      src = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      srcType = "float32";
    }
    const t = native.fromBuffer(src, srcType, shape, device);
    if (srcType === dtype) return new Tensor(t);
    const out = native.to(t, dtype);
    native.dispose(t);
    return new Tensor(out);
  }
  static scalar(v: number, dtype: DType = "float32"): Tensor {
    return new Tensor(native.full([], v, dtype));
  }
  static zeros(shape: number[], dtype: DType = "float32", device?: Device): Tensor {
    return new Tensor(native.zeros(shape, dtype, device));
  }
  static ones(shape: number[], dtype: DType = "float32", device?: Device): Tensor {
    return new Tensor(native.ones(shape, dtype, device));
  }
  static full(shape: number[], value: number, dtype: DType = "float32", device?: Device): Tensor {
    return new Tensor(native.full(shape, value, dtype, device));
  }
  static arange(start: number, end: number, step = 1, dtype: DType = "int64", device?: Device): Tensor {
    return new Tensor(native.arange(start, end, step, dtype, device));
  }
  static randn(shape: number[], dtype: DType = "float32", device?: Device): Tensor {
    return new Tensor(native.randn(shape, dtype, device));
  }
  static rand(shape: number[], dtype: DType = "float32", device?: Device): Tensor {
    return new Tensor(native.rand(shape, dtype, device));
  }
  static cat(ts: Tensor[], dim = 0): Tensor {
    return new Tensor(
      native.cat(
        ts.map((t) => t.h),
        dim,
      ),
    );
  }
  static stack(ts: Tensor[], dim = 0): Tensor {
    return new Tensor(
      native.stack(
        ts.map((t) => t.h),
        dim,
      ),
    );
  }
  static where(cond: Tensor, a: Operand, b: Operand): Tensor {
    return new Tensor(native.where(cond.h, raw(a), raw(b)));
  }

  // ------------------------------------------------------------ metadata
  get shape(): number[] {
    if (!this._shape) this.loadInfo();
    return this._shape!.slice();
  }
  get dtype(): DType {
    if (!this._dtype) this.loadInfo();
    return this._dtype!;
  }
  get device(): string {
    if (!this._device) this.loadInfo();
    return this._device!;
  }
  get rank(): number {
    return this.shape.length;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get nbytes(): number {
    return this.numel * ITEMSIZE[this.dtype];
  }
  size(dim: number): number {
    const s = this.shape;
    return s[dim < 0 ? s.length + dim : dim];
  }
  get requiresGrad(): boolean {
    return native.requiresGrad(this.h);
  }
  get isLeaf(): boolean {
    return native.info(this.h).isLeaf;
  }
  get disposed(): boolean {
    return native.disposed(this.h);
  }
  // shape, dtype and device are a handle's for its life (no op here changes them in place)
  private loadInfo(): void {
    const i = native.info(this.h);
    this._shape = i.shape;
    this._dtype = i.dtype as DType;
    this._device = i.device;
  }

  dispose(): void {
    if (this.adopted) {
      collected.unregister(this);
      this.adopted = false;
    }
    native.dispose(this.h);
  }

  // ------------------------------------------------------------ data out
  toBytes(): Uint8Array {
    return new Uint8Array(native.toBytes(this.h, MAX_BUFFER_BYTES));
  }
  /**
   * toBytes as `dtype` (default this tensor's), in consecutive parts of whole rows (dim 0) of about `partBytes`
   * each (a row more than that is one part), each cast and copied when asked for. Why: a writer of a large tensor
   * then holds one part beside it, not a second copy of the whole (an 8B model's embedding is 2 GiB in float32,
   * and a checkpoint writes it three times: weight, exp_avg, exp_avg_sq). The tensor must outlive the generator.
   */
  *bytesInParts(dtype: DType = this.dtype, partBytes: number = BYTES_PART): Generator<Uint8Array> {
    const n = this.numel;
    if (n === 0) return;
    const rows = this.rank === 0 ? 1 : this.shape[0]!;
    const step = Math.max(1, Math.floor(partBytes / ((n / rows) * ITEMSIZE[dtype])));
    if (this.rank === 0 || step >= rows) {
      yield noGrad(() => tidy(() => this.to(dtype).toBytes()));
      return;
    }
    for (let r = 0; r < rows; r += step) {
      const k = Math.min(step, rows - r);
      yield noGrad(() => tidy(() => this.narrow(0, r, k).to(dtype).toBytes()));
    }
  }
  toFloat32Array(): Float32Array {
    if (this.dtype === "float32") return new Float32Array(native.toBytes(this.h, MAX_BUFFER_BYTES));
    const t = native.to(this.h, "float32");
    try {
      return new Float32Array(native.toBytes(t, MAX_BUFFER_BYTES));
    } finally {
      native.dispose(t);
    }
  }
  toFloat64Array(): Float64Array {
    const t = native.to(this.h, "float64");
    try {
      return new Float64Array(native.toBytes(t, MAX_BUFFER_BYTES));
    } finally {
      native.dispose(t);
    }
  }
  /** Integer contents as JS numbers (exact up to 2^53). */
  toIntArray(): number[] {
    const t = native.to(this.h, "int64");
    try {
      return Array.from(new BigInt64Array(native.toBytes(t, MAX_BUFFER_BYTES)), (v) => Number(v));
    } finally {
      native.dispose(t);
    }
  }
  item(): number {
    return native.item(this.h);
  }

  // ------------------------------------------------------------ conversion
  to(dtype: DType): Tensor {
    return new Tensor(native.to(this.h, dtype));
  }
  toDevice(device: Device): Tensor {
    return new Tensor(native.toDevice(this.h, device));
  }
  /** This tensor when it is already on `device` (no copy), else a copy there. */
  onDevice(device: Device): Tensor {
    return sameDevice(this.device, device) ? this : this.toDevice(device);
  }
  /**
   * Copy to `device` without waiting for it (from pinned host memory to a GPU, or back into pinned memory): the
   * copy is ordered on the device's stream, so later device ops see it and no host round trip is forced.
   */
  toDeviceAsync(device: Device): Tensor {
    return new Tensor(native.copyToDeviceAsync(this.h, device));
  }
  /** A page-locked host copy (fast, asynchronous transfers to and from a GPU; needs a CUDA libtorch). */
  pinMemory(): Tensor {
    return new Tensor(native.pinMemory(this.h));
  }
  get isPinned(): boolean {
    return native.isPinned(this.h);
  }
  float(): Tensor {
    return this.to("float32");
  }
  contiguous(): Tensor {
    return new Tensor(native.contiguous(this.h));
  }
  clone(): Tensor {
    return new Tensor(native.clone(this.h));
  }
  detach(): Tensor {
    return new Tensor(native.detach(this.h));
  }

  // ------------------------------------------------------------ elementwise
  add(o: Operand): Tensor {
    return new Tensor(native.add(this.h, raw(o)));
  }
  sub(o: Operand): Tensor {
    return new Tensor(native.sub(this.h, raw(o)));
  }
  rsub(o: number): Tensor {
    return new Tensor(native.sub(o, this.h));
  }
  mul(o: Operand): Tensor {
    return new Tensor(native.mul(this.h, raw(o)));
  }
  div(o: Operand): Tensor {
    return new Tensor(native.div(this.h, raw(o)));
  }
  pow(o: Operand): Tensor {
    return new Tensor(native.pow(this.h, raw(o)));
  }
  eq(o: Operand): Tensor {
    return new Tensor(native.eq(this.h, raw(o)));
  }
  ne(o: Operand): Tensor {
    return new Tensor(native.ne(this.h, raw(o)));
  }
  lt(o: Operand): Tensor {
    return new Tensor(native.lt(this.h, raw(o)));
  }
  le(o: Operand): Tensor {
    return new Tensor(native.le(this.h, raw(o)));
  }
  gt(o: Operand): Tensor {
    return new Tensor(native.gt(this.h, raw(o)));
  }
  ge(o: Operand): Tensor {
    return new Tensor(native.ge(this.h, raw(o)));
  }
  maximum(o: Operand): Tensor {
    return new Tensor(native.maximum(this.h, raw(o)));
  }
  minimum(o: Operand): Tensor {
    return new Tensor(native.minimum(this.h, raw(o)));
  }
  logicalAnd(o: Tensor): Tensor {
    return new Tensor(native.logicalAnd(this.h, o.h));
  }
  logicalOr(o: Tensor): Tensor {
    return new Tensor(native.logicalOr(this.h, o.h));
  }
  logicalNot(): Tensor {
    return new Tensor(native.logicalNot(this.h));
  }
  maskedFill(mask: Tensor, value: number): Tensor {
    return new Tensor(native.maskedFill(this.h, mask.h, value));
  }
  clamp(lo: number | null, hi: number | null): Tensor {
    return new Tensor(native.clamp(this.h, lo, hi));
  }
  neg(): Tensor {
    return new Tensor(native.neg(this.h));
  }
  exp(): Tensor {
    return new Tensor(native.exp(this.h));
  }
  log(): Tensor {
    return new Tensor(native.log(this.h));
  }
  sqrt(): Tensor {
    return new Tensor(native.sqrt(this.h));
  }
  rsqrt(): Tensor {
    return new Tensor(native.rsqrt(this.h));
  }
  abs(): Tensor {
    return new Tensor(native.abs(this.h));
  }
  sin(): Tensor {
    return new Tensor(native.sin(this.h));
  }
  cos(): Tensor {
    return new Tensor(native.cos(this.h));
  }
  tanh(): Tensor {
    return new Tensor(native.tanh(this.h));
  }
  sigmoid(): Tensor {
    return new Tensor(native.sigmoid(this.h));
  }
  relu(): Tensor {
    return new Tensor(native.relu(this.h));
  }
  silu(): Tensor {
    return new Tensor(native.silu(this.h));
  }
  /** GELU; `approximate: "tanh"` is gelu_pytorch_tanh. */
  gelu(approximate: "none" | "tanh" = "none"): Tensor {
    return new Tensor(native.gelu(this.h, approximate));
  }
  square(): Tensor {
    return new Tensor(native.square(this.h));
  }
  reciprocal(): Tensor {
    return new Tensor(native.reciprocal(this.h));
  }
  isnan(): Tensor {
    return new Tensor(native.isnan(this.h));
  }
  isfinite(): Tensor {
    return new Tensor(native.isfinite(this.h));
  }

  // ------------------------------------------------------------ reductions
  sum(dims?: number | number[], keepdim = false): Tensor {
    return new Tensor(native.sum(this.h, dims === undefined ? null : [dims].flat(), keepdim));
  }
  mean(dims?: number | number[], keepdim = false): Tensor {
    return new Tensor(native.mean(this.h, dims === undefined ? null : [dims].flat(), keepdim));
  }
  amax(dims?: number | number[], keepdim = false): Tensor {
    return new Tensor(native.amax(this.h, dims === undefined ? null : [dims].flat(), keepdim));
  }
  amin(dims?: number | number[], keepdim = false): Tensor {
    return new Tensor(native.amin(this.h, dims === undefined ? null : [dims].flat(), keepdim));
  }
  argmax(dim: number, keepdim = false): Tensor {
    return new Tensor(native.argmax(this.h, dim, keepdim));
  }
  logsumexp(dims: number | number[], keepdim = false): Tensor {
    return new Tensor(native.logsumexp(this.h, [dims].flat(), keepdim));
  }
  cumsum(dim: number): Tensor {
    return new Tensor(native.cumsum(this.h, dim));
  }
  softmax(dim: number, dtype?: DType): Tensor {
    return new Tensor(native.softmax(this.h, dim, dtype));
  }
  logSoftmax(dim: number, dtype?: DType): Tensor {
    return new Tensor(native.logSoftmax(this.h, dim, dtype));
  }
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    const [v, i] = native.topk(this.h, k, dim, largest, sorted);
    return [new Tensor(v), new Tensor(i)];
  }
  /** Stable sort: ties keep their index order. */
  sort(dim = -1, descending = false): [Tensor, Tensor] {
    const [v, i] = native.sort(this.h, dim, descending);
    return [new Tensor(v), new Tensor(i)];
  }

  // ------------------------------------------------------------ linear algebra
  matmul(o: Tensor): Tensor {
    return new Tensor(native.matmul(this.h, o.h));
  }
  /** y = x Wᵀ + b, W [out, in]. */
  linear(w: Tensor, b?: Tensor | null): Tensor {
    return new Tensor(native.linear(this.h, w.h, b ? b.h : null));
  }

  // ------------------------------------------------------------ shape and indexing
  reshape(shape: number[]): Tensor {
    return new Tensor(native.reshape(this.h, shape));
  }
  view(shape: number[]): Tensor {
    return new Tensor(native.view(this.h, shape));
  }
  permute(dims: number[]): Tensor {
    return new Tensor(native.permute(this.h, dims));
  }
  transpose(a: number, b: number): Tensor {
    return new Tensor(native.transpose(this.h, a, b));
  }
  get T(): Tensor {
    return this.transpose(-2, -1);
  }
  unsqueeze(dim: number): Tensor {
    return new Tensor(native.unsqueeze(this.h, dim));
  }
  squeeze(dim?: number): Tensor {
    return new Tensor(native.squeeze(this.h, dim));
  }
  expand(shape: number[]): Tensor {
    return new Tensor(native.expand(this.h, shape));
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return new Tensor(native.narrow(this.h, dim, start, length));
  }
  slice(dim: number, start: number, end: number, step = 1): Tensor {
    return new Tensor(native.slice(this.h, dim, start, end, step));
  }
  select(dim: number, index: number): Tensor {
    return new Tensor(native.select(this.h, dim, index));
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return new Tensor(native.indexSelect(this.h, dim, index.h));
  }
  gather(dim: number, index: Tensor): Tensor {
    return new Tensor(native.gather(this.h, dim, index.h));
  }
  indexAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return new Tensor(native.indexAdd(this.h, dim, index.h, src.h));
  }
  indexCopy(dim: number, index: Tensor, src: Tensor): Tensor {
    return new Tensor(native.indexCopy(this.h, dim, index.h, src.h));
  }
  scatter(dim: number, index: Tensor, src: Tensor): Tensor {
    return new Tensor(native.scatter(this.h, dim, index.h, src.h));
  }
  split(size: number, dim = 0): Tensor[] {
    return native.split(this.h, size, dim).map((h) => new Tensor(h));
  }
  splitSizes(sizes: number[], dim = 0): Tensor[] {
    return native.splitSizes(this.h, sizes, dim).map((h) => new Tensor(h));
  }
  repeatInterleave(repeats: number, dim: number): Tensor {
    return new Tensor(native.repeatInterleave(this.h, repeats, dim));
  }
  /** Indices of the non-zero elements of a 1-D tensor, int64 [N]. */
  nonzeroIndices(): Tensor {
    if (this.rank !== 1) throw new Error(`nonzeroIndices needs a 1-D tensor, got [${this.shape}]`);
    const nz = native.nonzero(this.h);
    try {
      return new Tensor(native.squeeze(nz, 1));
    } finally {
      native.dispose(nz);
    }
  }
  tril(diagonal = 0): Tensor {
    return new Tensor(native.tril(this.h, diagonal));
  }
  triu(diagonal = 0): Tensor {
    return new Tensor(native.triu(this.h, diagonal));
  }
  flip(dims: number[]): Tensor {
    return new Tensor(native.flip(this.h, dims));
  }
  embedding(ids: Tensor): Tensor {
    return new Tensor(native.embedding(this.h, ids.h));
  }

  // ------------------------------------------------------------ in place (no autograd)
  copy_(src: Tensor): this {
    native.copyInPlace(this.h, src.h);
    return this;
  }
  mul_(s: number): this {
    native.mulScalarInPlace(this.h, s);
    return this;
  }
  zero_(): this {
    native.zeroInPlace(this.h);
    return this;
  }
  indexCopy_(dim: number, index: Tensor, src: Tensor): this {
    native.indexCopyInPlace(this.h, dim, index.h, src.h);
    return this;
  }

  // ------------------------------------------------------------ autograd
  requiresGrad_(on = true): this {
    native.setRequiresGrad(this.h, on);
    return this;
  }
  retainGrad(): this {
    native.retainGrad(this.h);
    return this;
  }
  get grad(): Tensor | null {
    const g = native.grad(this.h);
    return g ? new Tensor(g) : null;
  }
  clearGrad(): void {
    native.clearGrad(this.h);
  }
  backward(gradient?: Tensor, retainGraph = false): void {
    native.backward([this.h], gradient ? [gradient.h] : null, retainGraph);
  }

  toString(): string {
    return `Tensor(shape=[${this.shape}], dtype=${this.dtype})`;
  }
}

// ---------------------------------------------------------------- functional helpers
export function crossEntropy(
  logits: Tensor,
  targets: Tensor,
  opts: { ignoreIndex?: number; reduction?: "mean" | "sum" | "none" } = {},
): Tensor {
  return new Tensor(
    native.crossEntropy(logits.h, targets.h, opts.ignoreIndex ?? -100, opts.reduction ?? "mean"),
  );
}

/**
 * Σ over rows of the cross-entropy of logits [N, V] (bf16 or float32, no ignored targets) as a float32 scalar, with
 * softmax in float32 and the gradient written straight in the logits' dtype (native/src/train_ops.cc): the SFT loss
 * without a float32 copy of the logits and the log-softmax/NLL passes.
 */
export function crossEntropySum(logits: Tensor, targets: Tensor): Tensor {
  return new Tensor(native.crossEntropySum(logits.h, targets.h));
}

/**
 * Per sample, the mean over time of |g|: g [B, T, N] → [B, N] float32, Σ_t float(|g[b, t, j]|) / lengths[b] with
 * exactly the arithmetic of g.abs().float().sum(1).div(lengths) (native/src/grad_reduce.cc: one pass over g on the
 * CPU). lengths: B float32 values ([B] or [B, 1]) on g's device.
 */
export function meanAbsOverTime(g: Tensor, lengths: Tensor): Tensor {
  return new Tensor(native.meanAbsOverTime(g.h, lengths.h));
}

/**
 * Registers on y ([B, T, N], requires grad) a backward hook that writes meanAbsOverTime(∂L/∂y, lengths) into `out`
 * ([B, N] float32 on y's device, a buffer the caller made) when the backward reaches y, in C++, and passes the
 * gradient on unchanged. Nothing keeps the gradient (unlike retainGrad, which clones it and holds it until read);
 * the hook lives as long as y's graph. Identification's reduction of every linear output's gradient.
 */
export function meanAbsGradHook(y: Tensor, out: Tensor, lengths: Tensor): void {
  native.meanAbsGradHook(y.h, out.h, lengths.h);
}

export function multinomial(probs: Tensor, n: number, replacement = false): Tensor {
  return new Tensor(native.multinomial(probs.h, n, replacement));
}

export function dropout(x: Tensor, p: number, train: boolean): Tensor {
  return new Tensor(native.dropout(x.h, p, train));
}

// ---------------------------------------------------------------- fused decoder ops (native/src/fused.cc)
/**
 * The decoder blocks that have a fused op; "attention" is the rotary embedding and attention together;
 * "concatLinear" is one product for the linears that read the same input (q/k/v, gate/up: models/linear.ts
 * LinearGroup).
 */
export type FusedOp =
  | "rmsNorm"
  | "attention"
  | "gatedAct"
  | "clusterRowUpdate"
  | "concatLinear"
  | "frozenDx"
  | "embeddingGradRows";

/**
 * Which fused ops run by default, per op, on the CPU. Each is on where it measured faster than the op-by-op
 * sequence it replaces at Qwen2.5-0.5B's shape (bench/fused-ops.ts, 1 thread, bf16, 256 tokens; BENCHMARKS §5
 * "Vectorised fused kernels become the per-op default", 2026-11-29), forward / backward: RMSNorm 3.8x / 7.9x, rope
 * 3.2x / 3.9x, attention 2.4x / 1.07x, the gated SiLU product 3.7x / 6.9x; the identification pass 1.2 s against
 * 1.8 s op by op (PyTorch eager 1.65-1.77 s). GoodVibe's row update (50 rows in 3 clusters on one linear, forward +
 * backward, 1 thread): 0.3-0.8 ms over the bare linear at 896 outputs against 0.9-1.3 ms op by op, 0.8-1.1 against
 * 1.8-2.7 ms at 4864. One q/k/v and one gate/up product (concatLinear; 24 layers, 256 tokens, 1 thread, passes
 * alternated in one process, BENCHMARKS §5 "One product for q/k/v and one for gate/up"): the identification pass
 * 1.174 against 1.215 s, a GoodVibe step 1.61 against 1.73 s. Other devices (CUDA) run the op-by-op path by
 * default: the fused ops run their composite ATen form there, which was not measured faster.
 * frozenDx (a frozen bf16 weight's dX from a transposed copy, frozenLinear; same values bit for bit) holds a second
 * copy of each weight it serves (Qwen2.5-0.5B's shape: 0.92 GiB for all, the tied lm_head's 0.25 GiB included; a 7B
 * model's ~13 GiB) for an identification pass 0.88-1.00x and a 4-layer GoodVibe step 0.77-0.83x the time
 * (alternated in one process, 1 thread, BENCHMARKS §5 "dX from transposed weights"). By default it runs within a
 * memory budget, on the products where a copy pays (models/frozen-dx.ts); set explicitly on, it copies every frozen
 * bf16 weight, within GOODVIBE_FROZEN_DX_BUDGET only when that is set.
 * embeddingGradRows (CPU only: what it saves is a dense pass over fresh pages; not measured on a GPU, where the
 * engine's dense sum is cheap): a tied embedding that trains (full fine-tuning) gets the lookup's gradient rows
 * added into lm_head's share in place (addLookupGrad), not autograd's zero [vocabulary, hidden] tensor and dense
 * sum; the same bits. Those two took ~3 s of a 12 s full
 * fine-tuning step at Qwen2.5-0.5B's shape on a VM where fresh pages are costly (BENCHMARKS "Issue 13 §1 on the
 * Zen 4 VM: how far the CPU targets are, op by op").
 */
const FUSED_DEFAULT_CPU: Record<FusedOp, boolean> = {
  rmsNorm: true,
  attention: true,
  gatedAct: true,
  clusterRowUpdate: true,
  concatLinear: true,
  frozenDx: true,
  embeddingGradRows: true,
};

const FUSED_OPS = Object.keys(FUSED_DEFAULT_CPU) as FusedOp[];

/** The per-op switches, in the order GOODVIBE_FUSED's errors list them. */
export function fusedOpNames(): readonly FusedOp[] {
  return FUSED_OPS;
}

/**
 * GOODVIBE_FUSED=1: every fused op; 0: none (transformers' eager code op by op); unset or empty: the per-op
 * defaults; a comma-separated list of `+op` / `-op` (e.g. `+frozenDx` or `-concatLinear,+frozenDx`): those ops on or
 * off on every device, the others at their defaults. Anything else is refused by name at the first fused-op choice
 * (an InputError there, which the CLI reports, rather than an exception while modules load).
 */
export function parseFusedEnv(v: string | undefined): { all: boolean | null; perOp: Map<FusedOp, boolean> } {
  const perOp = new Map<FusedOp, boolean>();
  const text = (v ?? "").trim();
  if (text === "1") return { all: true, perOp };
  if (text === "0" || text === "") return { all: text === "0" ? false : null, perOp };
  for (const item of text.split(",").map((x) => x.trim())) {
    const sign = item[0];
    const op = item.slice(1) as FusedOp;
    if ((sign !== "+" && sign !== "-") || !FUSED_OPS.includes(op))
      throw new InputError(
        `GOODVIBE_FUSED=${v}: '${item}' is not 0, 1 or a list of +op / -op with op one of ${FUSED_OPS.join(", ")}`,
      );
    perOp.set(op, sign === "+");
  }
  return { all: null, perOp };
}

/** GOODVIBE_FUSED as read at start-up, or why it was refused (thrown at the first fused-op choice). */
const fusedEnv: ReturnType<typeof parseFusedEnv> | InputError = (() => {
  try {
    return parseFusedEnv(process.env.GOODVIBE_FUSED);
  } catch (e) {
    return e as InputError;
  }
})();
/** setFusedOps' setting, else GOODVIBE_FUSED's 0 / 1. */
let fused: boolean | null = fusedEnv instanceof InputError ? null : fusedEnv.all;
/** setFusedOp's settings, which take precedence over GOODVIBE_FUSED's list. */
const fusedPerOp = new Map<FusedOp, boolean>();

/**
 * Whether `op` runs as the addon's fused op on `device`, or op by op (transformers' eager code line by line, the
 * reference the fused ops are tested against). GOODVIBE_FUSED=0/1 or setFusedOps(false/true) decide for every
 * op; otherwise an op named in GOODVIBE_FUSED's +op/-op list or set by setFusedOp, else FUSED_DEFAULT_CPU on the
 * CPU and op by op elsewhere.
 */
export function fusedOps(op: FusedOp, device: string = "cpu"): boolean {
  if (fusedEnv instanceof InputError) throw fusedEnv;
  if (fused !== null) return fused;
  const forced = fusedPerOp.get(op) ?? fusedEnv.perOp.get(op);
  if (forced !== undefined) return forced;
  return device === "cpu" && FUSED_DEFAULT_CPU[op];
}

/**
 * Whether `op`'s setting was given (GOODVIBE_FUSED, setFusedOps, setFusedOp) rather than taken from the per-op
 * defaults (frozenDx: forced on, or the default budgeted on; models/frozen-dx.ts).
 */
export function fusedOpExplicit(op: FusedOp): boolean {
  if (fusedEnv instanceof InputError) throw fusedEnv;
  return fused !== null || fusedPerOp.has(op) || fusedEnv.perOp.has(op);
}

/**
 * One op on (true) or off (false) on every device, or back to its default or GOODVIBE_FUSED's +op/-op (null),
 * under setFusedOps / GOODVIBE_FUSED's 0 / 1 (which decide for every op when set); returns the previous setting.
 * For benchmarks and tests that compare one op's two paths with everything else unchanged.
 */
export function setFusedOp(op: FusedOp, on: boolean | null): boolean | null {
  const prev = fusedPerOp.get(op) ?? null;
  if (on === null) fusedPerOp.delete(op);
  else fusedPerOp.set(op, on);
  return prev;
}

/**
 * Every fused op on (true) or off (false) for this process, or back to the per-op defaults (null); returns the
 * previous setting.
 */
export function setFusedOps(on: boolean | null): boolean | null {
  const prev = fused;
  fused = on;
  return prev;
}

/**
 * How the fused ops run: "native" (hand-written CPU kernels for float32/bfloat16 CPU tensors, the default) or
 * "composite" (the same maths as libtorch ops, which is what CUDA and other dtypes always run).
 */
export function setKernelMode(mode: "native" | "composite"): void {
  native.setKernelMode(mode);
}

export function kernelMode(): "native" | "composite" {
  return native.kernelMode() as "native" | "composite";
}

/** RMSNorm over the last dimension, accumulated in float32: w·x/rms(x), or (1 + w)·x/rms(x) (Gemma). */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number, onePlus: boolean): Tensor {
  return new Tensor(native.rmsNorm(x.h, weight.h, eps, onePlus));
}

/**
 * Half-split rotary embedding of x [B, T, H, D] with cos/sin [B, 1, T, D]; the result is laid out
 * [B, groups, T, H / groups, D] (the query heads that share a KV head next to each other, for `attention`).
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor, groups: number): Tensor {
  return new Tensor(native.rope(x.h, cos.h, sin.h, groups));
}

/**
 * One product's output [..., Σ sizes] split along its last dimension into one block per linear (a LinearGroup's
 * product). The blocks share y's memory but are separate tensors for autograd (each may be updated in place or
 * hooked as its linear's own output); backward joins their gradients into y's (without a copy when gatedAct wrote
 * them side by side).
 */
export function splitColumns(y: Tensor, sizes: number[]): Tensor[] {
  return native.splitColumns(y.h, sizes).map((h) => new Tensor(h));
}

/**
 * Hands the pages of a memory-mapped checkpoint that only `t` views back to the kernel, once t's values have been
 * copied elsewhere and t is about to be disposed (they would otherwise stay in the process's RSS while the mapping
 * lives). Returns the bytes released; 0 for a tensor that does not view a mapping.
 */
export function releaseMappedPages(t: Tensor): number {
  return native.releaseMappedPages(t.h);
}

/**
 * y = x·Wᵀ + b for a weight and bias that need no gradient, whose backward computes dX = dY·W from Wᵀ stored
 * contiguously (the reduction dimension contiguous, the layout oneDNN's bf16 matmul runs fastest here: BENCHMARKS
 * §5, "Weights packed once for the frozen products"). The addon makes Wᵀ once per weight and keeps it while the
 * weight lives unchanged (an in-place update or a new tensor gets a fresh copy); dX equals x.linear's bit for bit
 * in the cases measured. Without a gradient to compute it is x.linear(w, b). Where CPU bf16 products are computed in
 * float32 (f32Products) the copy is W in float32 instead, read by the forward (with or without a gradient) and by
 * dX in place of the upcast x.linear makes on every call: the same values bit for bit (models/frozen-dx.ts).
 */
export function frozenLinear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  return new Tensor(native.frozenLinear(x.h, w.h, b?.h ?? null));
}

/**
 * Adds an embedding lookup's gradient `rows` (one row per id of `ids`, [..., hidden]) into `weight`'s gradient in
 * place, a zero gradient first where it has none: the bits of autograd's embedding backward added to the gradient
 * already there, without a [vocabulary, hidden] temporary (native addLookupGrad).
 */
export function addLookupGrad(weight: Tensor, ids: Tensor, rows: Tensor): void {
  native.addLookupGrad(weight.h, ids.h, rows.h);
}

/**
 * x·Wᵀ + b for a frozen weight and bias where the result's values will never be read, only its gradient: zeros of the
 * product's shape whose backward computes dX exactly as the product's own would (frozenLinear's from Wᵀ's copy with
 * `copy`, the float32 route's where CPU bf16 products take it, else x.linear's), so no product runs in the forward.
 * For a residual block's last product recomputed by gradient checkpointing (models/decoder.ts): the residual sum it
 * feeds needs no values in backward.
 */
export function frozenLinearGradOnly(x: Tensor, w: Tensor, b: Tensor | null, copy: boolean): Tensor {
  return new Tensor(native.frozenLinearGradOnly(x.h, w.h, b?.h ?? null, copy));
}

// ---------------------------------------------------------------- bf16 products (native/src/f32_products.cc)
/**
 * Whether CPU bf16 products (linear, matmul, frozenLinear, the fused attention's blocks, GoodVibe's cluster rows) are
 * computed as float32 products of the bf16 values, rounded once: what oneDNN (AVX-512 CPUs) and GPUs compute. libtorch
 * 1.13 on a CPU without AVX-512 (AMD before Zen 4, Intel before Sapphire Rapids) accumulates them in bf16 instead (a
 * [64, 4864] x [4864, 256] product off by 14% relative) at ~4 GFLOP/s against ~135 for float32 on one core (BENCHMARKS
 * "bf16 products on AVX2 CPUs"); libtorch 2.x accumulates in float32 there but can still be many times slower than
 * float32 BLAS (BENCHMARKS "libtorch 2.x on AVX2 CPUs"). By default (auto) this is on where bf16ProductsDecision()
 * says "inaccurate" or "slow"; GOODVIBE_F32_PRODUCTS=1 / 0 or setF32Products force it. Every gradient comes out in
 * its tensor's dtype; the graph holds the bf16 tensors and makes no float32 copies of its own (a frozen weight's
 * dX may read the float32 copy frozenLinear already holds).
 */
export function f32Products(): boolean {
  return native.f32Products();
}

/** Whether libtorch's own CPU bf16 product accumulates in float32 here (the addon's probe, measured once). */
export function bf16ProductsAccumulateF32(): boolean {
  return native.bf16ProductsAccumulateF32();
}

/** Why the automatic setting reroutes CPU bf16 products (inaccurate, slow) or keeps libtorch's own (fine). */
export type Bf16ProductsReason = "inaccurate" | "slow" | "fine";

/** What the automatic setting measured here, once per process (f32_products.h bf16ProductsDecision). */
export interface Bf16ProductsDecision {
  /** libtorch's own bf16 product accumulates in float32 (the probe's product is exactly 2) */
  accurate: boolean;
  /** seconds of a timed pair of products (a linear's x·Wᵀ and dY·W, [64, 1024] x [1024, 256]) by libtorch's own
   * bf16 products and by the float32 route, best of 3; null where the probe failed (not timed) */
  ownSeconds: number | null;
  f32Seconds: number | null;
  /** /proc/cpuinfo lists avx512_bf16 or amx_bf16: then "fine" whatever the times (load could flip them) */
  nativeBf16: boolean;
  reason: Bf16ProductsReason;
  /** "slow" means ownSeconds > slowRatio x f32Seconds (f32_products.h kSlowRatio), on a CPU without nativeBf16 */
  slowRatio: number;
}

export function bf16ProductsDecision(): Bf16ProductsDecision {
  const d = native.bf16ProductsDecision();
  return { ...d, reason: d.reason as Bf16ProductsReason };
}

/** The automatic setting's rule over given findings (the addon's, where it is applied): for tests and reports. */
export function decideBf16Products(
  accurate: boolean,
  ownSeconds: number,
  f32Seconds: number,
  nativeBf16 = false,
): Bf16ProductsReason {
  return native.decideBf16Products(accurate, ownSeconds, f32Seconds, nativeBf16) as Bf16ProductsReason;
}

export type F32ProductsMode = "auto" | "on" | "off";

/** Forces f32Products on / off, or back to the automatic decision (auto); returns the previous mode. */
export function setF32Products(mode: F32ProductsMode): F32ProductsMode {
  const prev = native.f32ProductsMode() as F32ProductsMode;
  native.setF32Products(mode);
  return prev;
}

/** The automatic decision's reason with what it rests on, in words. */
function bf16Finding(d: Bf16ProductsDecision): string {
  if (d.reason === "inaccurate")
    return `inaccurate: libtorch ${native.version()} accumulates bf16 products in bf16 on this CPU${noAvx512()}, at a few GFLOP/s`;
  const ms = (s: number | null) => `${((s ?? NaN) * 1e3).toFixed(2)} ms`;
  const times = `${ms(d.ownSeconds)} against ${ms(d.f32Seconds)} for float32 products`;
  const ratio = (d.ownSeconds ?? NaN) / (d.f32Seconds ?? NaN);
  return d.reason === "slow"
    ? `slow: libtorch ${native.version()}'s own accumulate in float32 on this CPU but took ${times} ` +
        `(${ratio.toFixed(1)}x, above ${d.slowRatio}x)`
    : d.nativeBf16
      ? `fine: libtorch's own accumulate in float32 on this CPU, which has bf16 dot-product instructions ` +
        `(avx512_bf16 or amx_bf16: decided by them, not by the clock; timed ${times})`
      : `fine: libtorch's own accumulate in float32 on this CPU and took ${times} (${ratio.toFixed(1)}x, ` +
        `at most ${d.slowRatio}x)`;
}

/** How CPU bf16 products are computed here and which reason decided, in words (setup check, run logs, goodvibe-stats.json). */
export function describeBf16Products(): string {
  const d = bf16ProductsDecision();
  const mode = native.f32ProductsMode();
  if (mode === "auto")
    return d.reason === "fine"
      ? `bf16 products: libtorch's own (${bf16Finding(d)})`
      : `bf16 products: computed in float32, rounded once (${bf16Finding(d)})`;
  if (mode === "on")
    return `bf16 products: computed in float32, rounded once (${F32_PRODUCTS_ENV}=1; ${bf16Finding(d)})`;
  return d.reason === "inaccurate"
    ? `bf16 products: libtorch's own, forced off (${F32_PRODUCTS_ENV}=0): ${bf16Finding(d)}, ~30x slower than ` +
        `float32 products and off by several percent at hidden sizes in the thousands`
    : `bf16 products: libtorch's own, forced off (${F32_PRODUCTS_ENV}=0; ${bf16Finding(d)})`;
}

/** describeBf16Products() for a model on `device` in `dtype`, where it applies (a CPU bf16 model), else undefined. */
export function bf16ProductsOf(device: string, dtype: DType): string | undefined {
  return device === "cpu" && dtype === "bfloat16" ? describeBf16Products() : undefined;
}

/** Why libtorch's CPU bf16 products take its fallback, where /proc/cpuinfo says (an explanation, not the test). */
function noAvx512(): string {
  try {
    const flags = /^flags\s*:(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "";
    return /\bavx512bw\b/.test(flags) ? "" : " (no AVX-512)";
  } catch {
    return "";
  }
}

/**
 * The weight copies frozenLinear holds now, transposed and float32, stale ones included (their memory is held until
 * they go; clear: drop them all first). A copy goes by itself when its weight's last handle is freed (disposed or
 * collected: native/src/frozen_linear.cc); frozenLinearRelease drops a model's when its products are over.
 */
export function frozenLinearCache(clear = false): { count: number; bytes: number } {
  const [count, bytes] = native.frozenLinearCache(clear);
  return { count, bytes };
}

/**
 * Drops the copies frozenLinear made of these weights (of any view of their storage: a group's concatenated weight
 * and its linears' rows alike) and every stale copy (of a freed weight); returns what was dropped. A later product
 * on one of these weights makes its copy again.
 */
export function frozenLinearRelease(weights: Tensor[]): { count: number; bytes: number } {
  const [count, bytes] = native.frozenLinearRelease(weights.map((w) => w.h));
  return { count, bytes };
}

/**
 * Hands back what the addon's CPU allocator keeps for the next products (native/src/cpu_cache.cc): the huge blocks
 * kept mapped for reuse (GOODVIBE_HUGE_CACHE_MB), the opt-in cache's blocks, and glibc's heap above what is in use.
 * Returns the bytes of the blocks released. For when no product runs for a while (a run's fold, the next model).
 */
export function releaseIdleMemory(): number {
  holdPeakRss(); // the RSS it lowers may be the run's peak, which VmHWM would then lose
  return native.releaseIdleMemory();
}

/** act(gate) · up in one pass (silu, or GELU with the tanh approximation). */
export function gatedAct(gate: Tensor, up: Tensor, act: "silu" | "gelu_pytorch_tanh"): Tensor {
  return new Tensor(native.gatedAct(gate.h, up.h, act));
}

export interface AttentionOptions {
  scale: number;
  /** positions already in the cache before these queries (keys = past + T) */
  past?: number;
  /** sliding window: a query sees the last `window` positions, itself included (0 / absent: no window) */
  window?: number | null;
  /** [B, past + T], 0 for padding keys */
  keyMask?: Tensor | null;
  /** Gemma 2's attention logit soft-capping (absent: none) */
  softcap?: number | null;
}

/**
 * Causal grouped-query attention without a materialised mask: q [B, G, T, R, D] (from `rope`), k and v
 * [B, G, past + T, D]; softmax in float32 over the keys each query may see. Returns [B, T, G·R·D].
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Tensor {
  return new Tensor(
    native.attention(
      q.h,
      k.h,
      v.h,
      o.scale,
      o.past ?? 0,
      o.window ?? 0,
      o.keyMask ? o.keyMask.h : null,
      o.softcap ?? 0,
    ),
  );
}

/** Σ x² over every element of the tensors, accumulated in float64 (one read of each; gradient norms). */
export function sumOfSquares(ts: Tensor[]): number {
  return native.sumOfSquares(ts.map((t) => t.h));
}

/**
 * GoodVibe's cluster-shared row update added to a linear output in place: y[..., rows[i]] += x·U[clusters[i]]
 * (U float32, multiplied in x's dtype); returns y. U's gradient is accumulated per cluster in float32.
 */
export function clusterRowUpdate(y: Tensor, x: Tensor, U: Tensor, rows: Tensor, clusters: Tensor): Tensor {
  return new Tensor(native.clusterRowUpdate(y.h, x.h, U.h, rows.h, clusters.h));
}
