/**
 * The neuron map: identification's result (GoodVibe §3.3), the top-k rows of every linear layer by mean
 * importance — per layer, never globally — with their scores and per-sample profiles; built from the exact sums
 * of a run or of merged shards, written and read as JSON (neurons.json).
 */
import * as fs from "node:fs";
import { InputError } from "../../errors.js";
import { writeFileAtomic } from "../../io/atomic.js";
import { parseJson } from "../../util/keys.js";
import type { FlopCount } from "../flops.js";
import type { SelectionMode } from "./config.js";
import type { ModelShapeRecord } from "./model-shape.js";
import { flopsOf, type Accumulators, type Target } from "./identify-state.js";

/** What made a map: the model and data folders, the judge instruction as asked, and its label mapping. */
export interface NeuronMapSource {
  model: string;
  data: string;
  prompt: string;
  labels: { unsafe: string; safe: string };
}

/** The sums a map is built from (one run's accumulators, or merged shards'). */
type Sums = Pick<
  Accumulators,
  "done" | "secure" | "insecure" | "loss" | "flops" | "wallSeconds" | "tokens" | "paddedTokens" | "sums"
>;

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
  /** the shape of the model it was made for (checkModelShape) */
  model: ModelShapeRecord;
  /** `labels` is absent in maps made before the judge convention was recorded (they used 1 = secure) */
  source: Omit<NeuronMapSource, "labels"> & {
    labels?: NeuronMapSource["labels"];
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
