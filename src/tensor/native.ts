import { createRequire } from "node:module";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { ResourceError } from "../errors.js";
import { setFileMapper } from "../io/mapfile.js";

/** An opaque handle to a libtorch tensor owned by the addon. */
export interface NativeTensor {
  dispose(): void;
  readonly disposed: boolean;
}

export interface NativeAdamWState {
  step: number;
  expAvg: NativeTensor;
  expAvgSq: NativeTensor;
}

export interface NativeAdamW {
  step(): void;
  zeroGrad(): void;
  setLr(lr: number): void;
  getState(): (NativeAdamWState | null)[];
  setState(state: (NativeAdamWState | null)[]): void;
}

type N = NativeTensor;
type NS = NativeTensor | number;

/** The addon's functions (native/src/addon.cc). The TypeScript façade in tensor.ts is the public API. */
export interface NativeAddon {
  NativeTensor: new () => NativeTensor;
  AdamW: new (params: N[], lr: number, beta1: number, beta2: number, eps: number, wd: number) => NativeAdamW;
  fromBuffer(buf: Uint8Array, dtype: string, shape: number[], device?: string): N;
  toBytes(t: N): ArrayBuffer;
  item(t: N): number;
  info(t: N): { shape: number[]; dtype: string; device: string; requiresGrad: boolean; isLeaf: boolean };
  zeros(shape: number[], dtype: string, device?: string): N;
  ones(shape: number[], dtype: string, device?: string): N;
  full(shape: number[], value: number, dtype: string, device?: string): N;
  arange(start: number, end: number, step: number, dtype: string, device?: string): N;
  randn(shape: number[], dtype: string, device?: string): N;
  rand(shape: number[], dtype: string, device?: string): N;
  manualSeed(seed: number): void;
  to(t: N, dtype: string): N;
  toDevice(t: N, device: string): N;
  contiguous(t: N): N;
  clone(t: N): N;
  detach(t: N): N;
  add(a: NS, b: NS): N;
  sub(a: NS, b: NS): N;
  mul(a: NS, b: NS): N;
  div(a: NS, b: NS): N;
  pow(a: NS, b: NS): N;
  eq(a: NS, b: NS): N;
  ne(a: NS, b: NS): N;
  lt(a: NS, b: NS): N;
  le(a: NS, b: NS): N;
  gt(a: NS, b: NS): N;
  ge(a: NS, b: NS): N;
  maximum(a: NS, b: NS): N;
  minimum(a: NS, b: NS): N;
  logicalAnd(a: N, b: N): N;
  logicalOr(a: N, b: N): N;
  logicalNot(a: N): N;
  where(c: N, a: NS, b: NS): N;
  maskedFill(t: N, mask: N, value: number): N;
  clamp(t: N, lo: number | null, hi: number | null): N;
  neg(t: N): N;
  exp(t: N): N;
  log(t: N): N;
  sqrt(t: N): N;
  rsqrt(t: N): N;
  abs(t: N): N;
  sin(t: N): N;
  cos(t: N): N;
  tanh(t: N): N;
  sigmoid(t: N): N;
  relu(t: N): N;
  silu(t: N): N;
  square(t: N): N;
  reciprocal(t: N): N;
  isnan(t: N): N;
  isfinite(t: N): N;
  gelu(t: N, approximate?: string): N;
  sum(t: N, dims?: number[] | null, keepdim?: boolean): N;
  mean(t: N, dims?: number[] | null, keepdim?: boolean): N;
  amax(t: N, dims?: number[] | null, keepdim?: boolean): N;
  amin(t: N, dims?: number[] | null, keepdim?: boolean): N;
  argmax(t: N, dim: number, keepdim: boolean): N;
  logsumexp(t: N, dims: number[], keepdim: boolean): N;
  cumsum(t: N, dim: number): N;
  softmax(t: N, dim: number, dtype?: string): N;
  logSoftmax(t: N, dim: number, dtype?: string): N;
  topk(t: N, k: number, dim: number, largest: boolean, sorted: boolean): [N, N];
  sort(t: N, dim: number, descending: boolean): [N, N];
  matmul(a: N, b: N): N;
  linear(x: N, w: N, b?: N | null): N;
  embedding(w: N, ids: N): N;
  crossEntropy(logits: N, targets: N, ignoreIndex: number, reduction: string): N;
  multinomial(probs: N, n: number, replacement: boolean): N;
  dropout(t: N, p: number, train: boolean): N;
  reshape(t: N, shape: number[]): N;
  view(t: N, shape: number[]): N;
  permute(t: N, dims: number[]): N;
  transpose(t: N, a: number, b: number): N;
  unsqueeze(t: N, dim: number): N;
  squeeze(t: N, dim?: number): N;
  expand(t: N, shape: number[]): N;
  narrow(t: N, dim: number, start: number, length: number): N;
  slice(t: N, dim: number, start: number, end: number, step: number): N;
  select(t: N, dim: number, index: number): N;
  indexSelect(t: N, dim: number, index: N): N;
  gather(t: N, dim: number, index: N): N;
  indexAdd(t: N, dim: number, index: N, src: N): N;
  indexCopy(t: N, dim: number, index: N, src: N): N;
  scatter(t: N, dim: number, index: N, src: N): N;
  cat(ts: N[], dim: number): N;
  stack(ts: N[], dim: number): N;
  split(t: N, size: number, dim: number): N[];
  splitSizes(t: N, sizes: number[], dim: number): N[];
  repeatInterleave(t: N, repeats: number, dim: number): N;
  nonzero(t: N): N;
  tril(t: N, diagonal: number): N;
  triu(t: N, diagonal: number): N;
  flip(t: N, dims: number[]): N;
  copyInPlace(dst: N, src: N): N;
  zeroInPlace(t: N): N;
  mulScalarInPlace(t: N, s: number): N;
  indexCopyInPlace(t: N, dim: number, index: N, src: N): N;
  setRequiresGrad(t: N, on: boolean): N;
  retainGrad(t: N): N;
  grad(t: N): N | null;
  clearGrad(t: N): void;
  backward(outputs: N[], grads: N[] | null, retainGraph: boolean): void;
  autogradGrad(outputs: N[], inputs: N[], grads: N[] | null, retainGraph: boolean): (N | null)[];
  setGradEnabled(on: boolean): boolean;
  isGradEnabled(): boolean;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  cudaAvailable(): boolean;
  cudaDeviceCount(): number;
  version(): string;
  mmapFile(file: string): Buffer;
}

/** How to build the addon, for every message that says it is missing or broken. */
const HOW_TO_BUILD =
  "Build it with `npx goodvibe setup addon` (in a clone of the repository: `npm run build:native`); it needs " +
  "libtorch (Debian 12 / Ubuntu: `sudo apt-get install libtorch-dev libopenblas0-pthread`, or " +
  "LIBTORCH=/path/to/libtorch) and a C++ toolchain (`sudo apt-get install build-essential python3`). " +
  "npm builds it at install unless it skipped goodvibe's install script (--ignore-scripts, or an allowScripts " +
  "policy: then `npm install-scripts approve goodvibe && npm rebuild goodvibe` also builds it).";

function locateAddon(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // where scripts/build-native.mjs puts it: src/tensor (via dist/src/tensor) -> the package root
  const built = path.resolve(here, "../../../native/build/Release/goodvibe_torch.node");
  const candidates = [
    process.env.GOODVIBE_ADDON,
    built,
    path.resolve(here, "../../native/build/Release/goodvibe_torch.node"),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) {
    throw new ResourceError(
      `goodvibe's libtorch addon is not built (no ${built}), so no tensor operation can run. ${HOW_TO_BUILD}`,
    );
  }
  return found;
}

function loadAddon(): NativeAddon {
  // Debian's OpenBLAS misdetects recent AMD cores as Haswell; SkylakeX kernels are ~1.8x faster there.
  if (!process.env.OPENBLAS_CORETYPE && process.arch === "x64") {
    try {
      const cpu = fs.readFileSync("/proc/cpuinfo", "utf8");
      if (/\bavx512f\b/.test(cpu)) process.env.OPENBLAS_CORETYPE = "SkylakeX";
    } catch {
      // not Linux: leave OpenBLAS to detect the core
    }
  }
  const require = createRequire(import.meta.url);
  const file = locateAddon();
  let addon: NativeAddon;
  try {
    addon = require(file) as NativeAddon;
  } catch (e) {
    // typically libtorch moved or was removed after the build: "libtorch.so: cannot open shared object file"
    throw new ResourceError(
      `cannot load goodvibe's libtorch addon ${file}: ${(e as Error).message}. ${HOW_TO_BUILD}`,
      {
        cause: e,
      },
    );
  }
  // libtorch's own default can be 1 on VMs (it counts physical cores); use every core we are given
  const threads = Number(process.env.GOODVIBE_THREADS ?? 0) || os.availableParallelism();
  addon.setNumThreads(Math.max(1, Math.min(threads, 4096)));
  return addon;
}

let loaded: NativeAddon | null = null;

/**
 * The addon, loaded on first use: loading libtorch takes about a second, which commands such as `--help` or
 * `report` should not pay.
 */
export const native: NativeAddon = new Proxy({} as NativeAddon, {
  get(_target, prop) {
    loaded ??= loadAddon();
    return loaded[prop as keyof NativeAddon];
  },
});

// weight files are memory-mapped through the addon (loading it on the first map)
setFileMapper((file) => native.mmapFile(file));
