/**
 * Clustering of each layer's security neurons (GoodVibe §3.4, §4.2): per linear layer, k-means on the selected
 * neurons' features, k chosen by silhouette in [2, kMax]. A layer whose best silhouette is below the threshold is
 * not clustered and gets the fallback: by default one update row shared by all its neurons (the reading that
 * Table 2's parameter counts support), optionally one row per neuron (§6.2's "updated independently"); README,
 * "Clusters per module", says how the two passages and Table 2 were weighed.
 */
import * as fs from "node:fs";
import { InputError } from "../../errors.js";
import { writeFileAtomic } from "../../io/atomic.js";
import type { RowSelection } from "./adapter.js";
import { chooseClusters, fallbackLabels } from "./kmeans.js";
import type { ModuleNeurons, NeuronMap } from "./neuron-map.js";
import type { ModelShapeRecord } from "./model-shape.js";
import {
  DEFAULT_CLUSTER,
  type ClusterFallback,
  type ClusterFeatures,
  type ClusterOptions,
} from "./config.js";

import { parseJson } from "../../util/keys.js";

/** How a module's selected rows are updated. */
export type ModuleUpdates = "clustered" | ClusterFallback;

export interface ModuleClusters extends RowSelection {
  silhouette: number;
  clustered: boolean;
  /** "clustered", or the fallback it got ("shared" / "per-neuron"; "per-neuron" also when clustering is disabled) */
  updates: ModuleUpdates;
  tried: { k: number; silhouette: number; inertia: number }[];
}

export interface ClusterMap {
  format: "goodvibe-cluster-map";
  version: 2;
  model: ModelShapeRecord;
  options: ClusterOptions;
  modules: Record<string, ModuleClusters>;
}

/** The points that represent a module's selected neurons (see ClusterFeatures). */
export function clusterFeatures(
  name: string,
  m: Pick<ModuleNeurons, "scores" | "profiles">,
  kind: ClusterFeatures,
): number[] | number[][] {
  if (kind === "importance") return m.scores;
  if (!m.profiles)
    throw new InputError(
      `module ${name} has no per-sample profiles, which cluster features "${kind}" need: identify with ` +
        `identify.profileSamples > 1, or cluster with features "importance"`,
    );
  if ((m.profiles[0]?.length ?? 0) < 2)
    throw new InputError(
      `module ${name}: ${m.profiles[0]?.length ?? 0} profiled sample(s) cannot show a pattern: identify with ` +
        `identify.profileSamples > 1`,
    );
  if (kind === "profile") return m.profiles;
  return m.profiles.map((p) => {
    let sq = 0;
    for (const v of p) sq += v * v;
    const norm = Math.sqrt(sq);
    return norm > 0 ? p.map((v) => v / norm) : p.slice();
  });
}

/**
 * Refuse, before any work, settings that clustering could only refuse after identification: profile features
 * without profiles. `where` names the config (file, cell) in the message.
 */
export function checkClusterSettings(
  cluster: Pick<ClusterOptions, "features" | "disabled">,
  identify: { profileSamples: number },
  where = "config",
): void {
  if (!cluster.disabled && cluster.features !== "importance" && identify.profileSamples < 2)
    throw new InputError(
      `${where}: cluster.features "${cluster.features}" needs per-sample importance profiles, but ` +
        `identify.profileSamples is ${identify.profileSamples}: set it to 2 or more (default 32), or cluster.features ` +
        `to "importance"`,
    );
}

export function clusterNeurons(map: NeuronMap, opts: ClusterOptions): ClusterMap {
  const modules: Record<string, ModuleClusters> = {};
  for (const [name, m] of Object.entries(map.modules)) {
    const n = m.indices.length;
    if (opts.disabled) {
      modules[name] = {
        rows: m.indices,
        clusters: m.indices.map((_, i) => i),
        nClusters: n,
        silhouette: NaN,
        clustered: false,
        updates: "per-neuron",
        tried: [],
      };
      continue;
    }
    if (n < 3) {
      // too few neurons for a silhouette: the fallback decides, as for a layer below the threshold
      const f = fallbackLabels(n, opts.fallback);
      modules[name] = {
        rows: m.indices,
        clusters: f.labels,
        nClusters: f.k,
        silhouette: NaN,
        clustered: false,
        updates: opts.fallback,
        tried: [],
      };
      continue;
    }
    const c = chooseClusters(clusterFeatures(name, m, opts.features), {
      kMax: opts.kMax,
      threshold: opts.threshold,
      fallback: opts.fallback,
      seed: opts.seed,
      nInit: opts.nInit,
    });
    modules[name] = {
      rows: m.indices,
      clusters: c.labels,
      nClusters: c.k,
      silhouette: c.silhouette,
      clustered: c.clustered,
      updates: c.fallback ?? "clustered",
      tried: c.tried,
    };
  }
  return { format: "goodvibe-cluster-map", version: 2, model: map.model, options: opts, modules };
}

/** Layers clustered, and layers that got each fallback: for logs and reports. */
export function clusterSummary(map: ClusterMap): {
  layers: number;
  clustered: number;
  shared: number;
  perNeuron: number;
  rows: number;
  text: string;
} {
  const mods = Object.values(map.modules);
  const count = (u: ModuleUpdates) => mods.filter((m) => m.updates === u).length;
  const s = {
    layers: mods.length,
    clustered: count("clustered"),
    shared: count("shared"),
    perNeuron: count("per-neuron"),
    rows: mods.reduce((a, m) => a + m.nClusters, 0),
  };
  const o = map.options;
  const how = o.disabled
    ? "clustering disabled (ablation): one update row per neuron"
    : `${s.clustered}/${s.layers} layers clustered (${o.features} features, silhouette threshold ${o.threshold}); ` +
      `${o.fallback === "shared" ? s.shared : s.perNeuron} below it got ` +
      (o.fallback === "shared" ? "one shared update row each" : "one update row per neuron");
  return { ...s, text: `${how}; ${s.rows} update rows in all` };
}

export function selectionsOf(map: ClusterMap): Map<string, RowSelection> {
  return new Map(
    Object.entries(map.modules).map(([n, m]) => [
      n,
      { rows: m.rows, clusters: m.clusters, nClusters: m.nClusters },
    ]),
  );
}

export function trainableParamsOf(map: ClusterMap, inFeatures: (module: string) => number): number {
  return Object.entries(map.modules).reduce((a, [n, m]) => a + m.nClusters * inFeatures(n), 0);
}

export function writeClusterMap(file: string, map: ClusterMap): void {
  // NaN silhouettes (unclustered layers) are written as null
  writeFileAtomic(
    file,
    JSON.stringify(map, (_k, v) => (typeof v === "number" && Number.isNaN(v) ? null : v)),
  );
}

export function readClusterMap(file: string): ClusterMap {
  let json: ClusterMap;
  try {
    json = parseJson(fs.readFileSync(file, "utf8"), file) as ClusterMap;
  } catch (e) {
    throw new InputError(`${file}: not a readable JSON cluster map (${(e as Error).message})`);
  }
  if (json.format !== "goodvibe-cluster-map" || !json.modules)
    throw new InputError(`${file}: not a GoodVibe cluster map`);
  const version = json.version as number;
  if (version !== 1 && version !== 2)
    throw new InputError(`${file}: cluster map version ${version} is not supported (1 or 2)`);
  if (version === 1) {
    // version 1 had no fallback choice: an unclustered layer always had one row per neuron
    json.options = { ...json.options, fallback: "per-neuron" };
    for (const m of Object.values(json.modules)) m.updates = m.clustered ? "clustered" : "per-neuron";
    json.version = 2;
  }
  for (const [name, m] of Object.entries(json.modules)) {
    if (
      m.rows.length !== m.clusters.length ||
      m.clusters.some((c) => !Number.isInteger(c) || c < 0 || c >= m.nClusters)
    )
      throw new InputError(`${file}: module ${name} has inconsistent rows/clusters`);
    if (m.silhouette === null) m.silhouette = NaN;
  }
  return json;
}
