import { createRequire } from "node:module";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { InputError, ResourceError } from "../errors.js";
import { setNativeQuantizeQ8_0 } from "../io/gguf.js";
import { MAX_BUFFER_BYTES, setFileMapper } from "../io/mapfile.js";
import { blasWaitEnv, openmpWaitEnv, otherRunnable, usableCores } from "../util/cores.js";
import type { NativeOps, NativeTensor } from "./native-ops.js";

export interface NativeAdamWState {
  step: number;
  expAvg: NativeTensor;
  expAvgSq: NativeTensor;
}

export interface NativeAdamW {
  /** every parameter with a gradient, the gradient multiplied by gradScale (default 1) */
  step(gradScale?: number): void;
  /** parameter `index` with this gradient; `copy` receives the updated values in its dtype */
  stepParam(index: number, grad: NativeTensor, copy: NativeTensor | null, gradScale: number): void;
  zeroGrad(): void;
  setLr(lr: number): void;
  getState(): (NativeAdamWState | null)[];
  setState(state: (NativeAdamWState | null)[]): void;
}

/**
 * The addon (native/src/addon.cc, fused.cc). Its ops are declared once in C++ (`OP(name, signature)`) and
 * their interface, NativeOps, is generated from the built addon (native/gen-types.mjs). The TypeScript façade
 * in tensor.ts is the public API.
 */
export interface NativeAddon extends NativeOps {
  AdamW: new (
    params: NativeTensor[],
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    wd: number,
    /** each parameter's own weight decay (overrides wd) */
    decays?: number[] | null,
  ) => NativeAdamW;
  /** name -> TypeScript signature of every op, as declared in C++ */
  opSignatures: Record<string, string>;
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

/** oneDNN primitive cache entries unless ONEDNN_PRIMITIVE_CACHE_CAPACITY says otherwise (see loadAddon). */
export const ONEDNN_CACHE_CAPACITY = 64;

let lastLocated: string | null = null;

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
  // oneDNN (libtorch's bf16 matmuls) keeps a primitive per distinct shape, 1024 by default, each with its own
  // memory, allocated between activations: with variable sequence lengths (identification, SFT, generation) the
  // process grew by hundreds of MB and fragmented the heap as new lengths came. A pass repeats the same few
  // shapes in every layer, so a small LRU cache keeps nearly every hit. Read by oneDNN at its first primitive.
  if (!process.env.ONEDNN_PRIMITIVE_CACHE_CAPACITY && !process.env.DNNL_PRIMITIVE_CACHE_CAPACITY)
    process.env.ONEDNN_PRIMITIVE_CACHE_CAPACITY = String(ONEDNN_CACHE_CAPACITY);
  const require = createRequire(import.meta.url);
  const file = locateAddon();
  lastLocated = file;
  // libgomp and OpenBLAS read how their threads wait once, when libtorch loads with the addon: choose it now
  // (util/cores.ts)
  Object.assign(process.env, openmpWaitEnv(process.env, otherRunnable()), blasWaitEnv(process.env));
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
  // libtorch's own default can be 1 on VMs (it counts physical cores) or every host core in a container whose
  // cgroup quota allows a few (then each parallel region waits on threads that are not scheduled): use the cores
  // we are really given
  addon.setNumThreads(Math.max(1, Math.min(usableCores(), 4096)));
  return addon;
}

/**
 * The switch for CPU bf16 products computed in float32 (tensor.ts f32Products): 1 / on, 0 / off, or unset / auto
 * (where the addon finds libtorch's own bf16 products inaccurate or slow: tensor.ts bf16ProductsDecision).
 */
export const F32_PRODUCTS_ENV = "GOODVIBE_F32_PRODUCTS";

/** GOODVIBE_F32_PRODUCTS as the addon's mode; anything else is refused by name. */
export function parseF32ProductsEnv(v: string | undefined): "auto" | "on" | "off" {
  const t = (v ?? "").trim().toLowerCase();
  if (t === "" || t === "auto") return "auto";
  if (t === "1" || t === "on") return "on";
  if (t === "0" || t === "off") return "off";
  throw new InputError(`${F32_PRODUCTS_ENV}=${v}: expected 1 (on), 0 (off) or auto (unset: auto)`);
}

let loaded: NativeAddon | null = null;
/** The file the addon was loaded from (set once loaded). */
let loadedFrom: string | null = null;

/** Where the loaded addon's file is (loading it if it is not loaded yet). */
export function addonFile(): string {
  void native.version(); // loads it
  return loadedFrom!;
}

function loadConfigured(): NativeAddon {
  const mode = parseF32ProductsEnv(process.env[F32_PRODUCTS_ENV]); // refused before anything loads
  const addon = loadAddon();
  addon.setF32Products(mode);
  loadedFrom = lastLocated;
  // GGUF q8_0 in SIMD from now on (the JavaScript stays for a process that never loads the addon); an addon built
  // before the op existed keeps the JavaScript
  if (typeof addon.quantizeQ8_0 === "function" && typeof addon.quantizeQ8_0Bf16 === "function")
    setNativeQuantizeQ8_0({
      f32: (src, out) => addon.quantizeQ8_0(src, out),
      bf16: (src, out) => addon.quantizeQ8_0Bf16(src, out),
    });
  return addon;
}

/**
 * The addon, loaded on first use: loading libtorch takes about a second, which commands such as `--help` or
 * `report` should not pay.
 */
export const native: NativeAddon = new Proxy({} as NativeAddon, {
  get(_target, prop) {
    loaded ??= loadConfigured();
    return loaded[prop as keyof NativeAddon];
  },
});

// weight files are memory-mapped through the addon (loading it on the first map)
setFileMapper(
  (file) => native.mmapFile(file, MAX_BUFFER_BYTES),
  (file, ranges) => native.mmapRanges(file, ranges.flat(), MAX_BUFFER_BYTES),
);
