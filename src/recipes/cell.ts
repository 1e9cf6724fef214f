/**
 * The parts of a report cell that come from training: parameters, cost, and where the security neurons sit.
 * Shared by the recipes that write report cells (the demo) and the experiment runner above them.
 */
import type { FlopCount } from "../method/flops.js";
import type { TrainResult } from "../method/train.js";
import type { CheckpointingRecord } from "../method/checkpointing.js";
import { summarizeNeuronMap, type NeuronMap } from "../method/goodvibe/neuron-map.js";
import type { ClusterMap } from "../method/goodvibe/clustering.js";
import type { CellResult } from "../report/schema.js";
import {
  buildRecord,
  defaultComputeDtype,
  resolveDevice,
  type BuildRecord,
  type DType,
} from "../tensor/index.js";
import { loadModelConfig } from "../io/config.js";
import { DEFAULT_DTYPE } from "../config/harden.js";

/**
 * The build that computes a cell (CellResult.build): a trained cell's in its training dtype, a base cell's in the dtype
 * its evaluation loads the checkpoint in (the route of bf16 products matters only where a model computes in bf16 on
 * a CPU).
 */
export function cellBuild(what: { trainedIn?: DType } | { evaluated: string }): BuildRecord {
  const device = resolveDevice();
  const dtype =
    "evaluated" in what
      ? defaultComputeDtype(device, loadModelConfig(what.evaluated).torchDtype)
      : (what.trainedIn ?? DEFAULT_DTYPE);
  return buildRecord(device, dtype);
}

export const ZERO_COST: CellResult["cost"] = {
  flopsForward: 0,
  flopsBackward: 0,
  flopsTotal: 0,
  wallSeconds: 0,
  flopsPerSecond: 0,
  peakMemoryBytes: 0,
};

/**
 * A cell's gradient checkpointing as asked and used per stage (the result's `gradientCheckpointing`); undefined
 * when neither stage recorded it (outputs made before the record), so such a cell's result is as it was.
 */
export function checkpointingOf(
  training: CheckpointingRecord | undefined,
  identification: CheckpointingRecord | undefined,
): CellResult["gradientCheckpointing"] {
  if (!training && !identification) return undefined;
  return { ...(training ? { training } : {}), ...(identification ? { identification } : {}) };
}

/** Training cost, plus identification for GoodVibe (its neuron map records what finding the neurons cost). */
export function costOf(
  train: Pick<TrainResult, "flops" | "wallSeconds" | "peakMemoryBytes"> &
    Partial<Pick<TrainResult, "flopsEstimate">>,
  identification?: { flops: FlopCount; wallSeconds: number },
): CellResult["cost"] {
  const f = identification?.flops ?? { forward: 0, backward: 0, total: 0 };
  const wall = train.wallSeconds + (identification?.wallSeconds ?? 0);
  const total = train.flops.total + f.total;
  return {
    flopsForward: train.flops.forward + f.forward,
    flopsBackward: train.flops.backward + f.backward,
    flopsTotal: total,
    wallSeconds: wall,
    flopsPerSecond: wall > 0 ? total / wall : 0,
    peakMemoryBytes: train.peakMemoryBytes,
    // training only: identification is no trainer step (README, "Cost")
    ...(train.flopsEstimate ? { flopsTrainerEstimate: train.flopsEstimate.flops } : {}),
  };
}

function layerOf(name: string): number {
  const m = /layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : -1;
}

function moduleOf(name: string): string {
  return name.split(".").slice(-1)[0]!;
}

/**
 * The report's `neurons` part.
 * - perLayer: one row per linear layer (summarizeNeuronMap).
 * - clusters: one row per module type (q_proj, ..., summed over layers, as the report's cluster table joins them
 *   with perLayer by module type): update rows in all, the mean silhouette over the layers that have one,
 *   whether any layer was clustered, and how many layers were clustered or got each fallback. A module type with no finite silhouette (clustering disabled, or under three
 *   neurons per layer) has no row: the schema wants a finite number and any stand-in would read as a score.
 * - importanceByModule: q/k/v of the middle layer, each selected neuron with its importance and cluster id.
 */
export function neuronsOf(neurons: NeuronMap, clusters: ClusterMap): NonNullable<CellResult["neurons"]> {
  const perLayer = summarizeNeuronMap(neurons)
    .filter((r) => r.layer >= 0 && Number.isFinite(r.meanImportance))
    .map(({ layer, module, count, meanImportance }) => ({ layer, module, count, meanImportance }));

  const byType = new Map<
    string,
    { nClusters: number; sil: number[]; clustered: boolean; layers: Record<string, number> }
  >();
  for (const [name, m] of Object.entries(clusters.modules)) {
    const t = moduleOf(name);
    const agg = byType.get(t) ?? {
      nClusters: 0,
      sil: [],
      clustered: false,
      layers: { clustered: 0, shared: 0, perNeuron: 0 },
    };
    agg.nClusters += m.nClusters;
    if (Number.isFinite(m.silhouette)) agg.sil.push(m.silhouette);
    agg.clustered ||= m.clustered;
    agg.layers[m.updates === "per-neuron" ? "perNeuron" : m.updates]! += 1;
    byType.set(t, agg);
  }
  const clusterRows = [...byType.entries()]
    .filter(([, a]) => a.sil.length > 0)
    .map(([module, a]) => ({
      module,
      nClusters: a.nClusters,
      silhouette: a.sil.reduce((x, y) => x + y, 0) / a.sil.length,
      clustered: a.clustered,
      layers: { clustered: a.layers.clustered!, shared: a.layers.shared!, perNeuron: a.layers.perNeuron! },
    }));

  const layers = [...new Set(Object.keys(neurons.modules).map(layerOf))]
    .filter((l) => l >= 0)
    .sort((a, b) => a - b);
  const mid = layers[Math.floor(layers.length / 2)];
  const importanceByModule: Record<string, { neuron: number; importance: number; cluster: number }[]> = {};
  for (const [name, m] of Object.entries(neurons.modules)) {
    if (layerOf(name) !== mid || !["q_proj", "k_proj", "v_proj"].includes(moduleOf(name))) continue;
    const c = clusters.modules[name];
    importanceByModule[`layers.${mid}.${moduleOf(name)}`] = m.indices
      .map((neuron, i) => ({ neuron, importance: m.scores[i]!, cluster: c?.clusters[i] ?? i }))
      .filter((p) => Number.isFinite(p.importance));
  }
  return { perLayer, clusters: clusterRows, importanceByModule };
}

/**
 * A judge with no verdicts (no answer had extractable code) has rate NaN, which the schema rightly refuses:
 * leave that judge out of the safe rates instead (the report shows "—").
 */
export function dropEmptyRates(security: CellResult["security"]): CellResult["security"] {
  const rates = security.safeRate;
  if (!rates) return security;
  const kept = Object.fromEntries(
    Object.entries(rates).filter(([, r]) => r !== undefined && r.overall.n > 0),
  );
  const { safeRate: _s, ...rest } = security;
  return Object.keys(kept).length > 0 ? { ...rest, safeRate: kept } : rest;
}
