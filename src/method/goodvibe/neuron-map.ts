/**
 * The neuron map: identification's result (GoodVibe §3.3), the top-k rows of every linear layer by mean
 * importance — per layer, never globally — with their scores and per-sample profiles (identify.ts builds it);
 * its format, written and read as JSON (neurons.json), and its summary.
 */
import * as fs from "node:fs";
import { InputError } from "../../errors.js";
import { writeFileAtomic } from "../../io/atomic.js";
import { parseJson } from "../../util/keys.js";
import type { FlopCount } from "../flops.js";
import type { CheckpointingRecord } from "../checkpointing.js";
import type { SelectionMode } from "./config.js";
import type { ModelShapeRecord } from "./model-shape.js";

/** What made a map: the model and data folders, the judge instruction as asked, and its label mapping. */
export interface NeuronMapSource {
  model: string;
  data: string;
  prompt: string;
  labels: { unsafe: string; safe: string };
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
  /**
   * identification's gradient checkpointing as asked (identify.gradientCheckpointing) and as the run used it ("auto"
   * decided: on or off; a resumed run's last call's choice); not part of any key. Absent in maps made before
   * 2026-12-01 and in merged shards that did not all record the same
   */
  gradientCheckpointing?: CheckpointingRecord;
  modules: Record<string, ModuleNeurons>;
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
