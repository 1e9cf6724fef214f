/**
 * Per-layer clustering of the selected security neurons, in float64.
 *
 * Each selected neuron (an output row of a linear layer) is a point: its importance (1-D) or its importance
 * profile across samples (d-D). Neurons of one cluster later share one row update. The k-means follows
 * scikit-learn's KMeans(init="k-means++", algorithm="lloyd") step by step (greedy k-means++ seeding, tolerance
 * scaled by the mean feature variance, relocation of empty clusters, best of nInit runs by inertia); its random
 * stream differs from numpy's, so labels match sklearn only up to renumbering, which `canonicalLabels` removes.
 */
import { createRng, type Rng } from "../../util/random.js";
import { DEFAULT_CLUSTER, type ClusterFallback } from "./config.js";

export type Points = readonly (readonly number[])[];

export interface KMeansOptions {
  nInit?: number;
  maxIter?: number;
  tol?: number;
  seed: number;
}

export interface KMeansResult {
  /** Cluster of each point, numbered 0..k-1 in seeding order (not canonical). */
  labels: number[];
  centers: number[][];
  /** Sum of squared distances of the points to their centres. */
  inertia: number;
  /** Lloyd iterations of the best run. */
  nIter: number;
}

function sqDist(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) {
    const d = a[j]! - b[j]!;
    s += d * d;
  }
  return s;
}

/** Accept 1-D features as plain numbers; check shape and finiteness. */
export function asPoints(features: Points | readonly number[]): number[][] {
  if (features.length === 0) throw new RangeError("no points to cluster");
  const points = features.map((f, i) => {
    const p = typeof f === "number" ? [f] : [...f];
    if (!p.every(Number.isFinite)) throw new RangeError(`point ${i} has a non-finite coordinate`);
    return p;
  });
  const d = points[0]!.length;
  if (d === 0) throw new RangeError("points have no coordinates");
  points.forEach((p, i) => {
    if (p.length !== d) throw new RangeError(`point ${i} has ${p.length} coordinates, point 0 has ${d}`);
  });
  return points;
}

/** Greedy k-means++ (sklearn `_kmeans_plusplus`): 2 + floor(ln k) candidates per centre, keep the best. */
function kmeansPlusPlus(points: number[][], k: number, rng: Rng): number[][] {
  const n = points.length;
  const nLocalTrials = 2 + Math.floor(Math.log(k));
  const centers = [points[rng.int(n)]!.slice()];
  let closest = points.map((p) => sqDist(p, centers[0]!));
  let pot = closest.reduce((a, b) => a + b, 0);
  for (let c = 1; c < k; c++) {
    const cumsum: number[] = [];
    let acc = 0;
    for (const d of closest) cumsum.push((acc += d));
    let bestPot = Infinity;
    let bestId = 0;
    let bestDist: number[] = closest;
    for (let t = 0; t < nLocalTrials; t++) {
      const r = rng.next() * pot;
      // searchsorted(side="left"): first index whose cumulative sum reaches r.
      let id = cumsum.findIndex((s) => s >= r);
      if (id < 0) id = n - 1;
      const dist = points.map((p, i) => Math.min(closest[i]!, sqDist(p, points[id]!)));
      const candPot = dist.reduce((a, b) => a + b, 0);
      if (candPot < bestPot) {
        bestPot = candPot;
        bestId = id;
        bestDist = dist;
      }
    }
    centers.push(points[bestId]!.slice());
    closest = bestDist;
    pot = bestPot;
  }
  return centers;
}

function nearest(
  p: readonly number[],
  centers: readonly (readonly number[])[],
): { label: number; dist: number } {
  let label = 0;
  let dist = Infinity;
  centers.forEach((c, j) => {
    const d = sqDist(p, c);
    if (d < dist) {
      dist = d;
      label = j;
    }
  });
  return { label, dist };
}

function means(points: number[][], labels: number[], k: number): { centers: number[][]; counts: number[] } {
  const d = points[0]!.length;
  const sums = Array.from({ length: k }, () => new Array<number>(d).fill(0));
  const counts = new Array<number>(k).fill(0);
  points.forEach((p, i) => {
    const s = sums[labels[i]!]!;
    for (let j = 0; j < d; j++) s[j]! += p[j]!;
    counts[labels[i]!]!++;
  });
  return { centers: sums.map((s, c) => s.map((v) => v / counts[c]!)), counts };
}

function lloyd(points: number[][], init: number[][], maxIter: number, scaledTol: number): KMeansResult {
  const k = init.length;
  let centers = init;
  let labels = new Array<number>(points.length).fill(-1);
  let strict = false;
  let iter = 0;
  for (; iter < maxIter; iter++) {
    const assigned = points.map((p) => nearest(p, centers));
    const newLabels = assigned.map((a) => a.label);
    let { centers: newCenters, counts } = means(points, newLabels, k);
    const empty = counts.flatMap((n, c) => (n === 0 ? [c] : []));
    if (empty.length > 0) {
      // sklearn: move the points farthest from their centres into the empty clusters.
      const far = assigned
        .map((a, i) => ({ i, dist: a.dist }))
        .sort((a, b) => b.dist - a.dist || a.i - b.i)
        .slice(0, empty.length);
      empty.forEach((c, e) => (newLabels[far[e]!.i] = c));
      ({ centers: newCenters, counts } = means(points, newLabels, k));
    }
    const shift = newCenters.reduce((s, c, j) => s + sqDist(c, centers[j]!), 0);
    centers = newCenters;
    if (newLabels.every((l, i) => l === labels[i])) {
      labels = newLabels;
      strict = true;
      break;
    }
    labels = newLabels;
    if (shift <= scaledTol) break;
  }
  // Not converged on labels: one more assignment so that labels match the final centres (as sklearn does).
  if (!strict) labels = points.map((p) => nearest(p, centers).label);
  const inertia = points.reduce((s, p, i) => s + sqDist(p, centers[labels[i]!]!), 0);
  return { labels, centers, inertia, nIter: Math.min(iter + 1, maxIter) };
}

/** k-means (k-means++ seeding, Lloyd iterations), best of `nInit` runs by inertia. */
export function kmeans(features: Points | readonly number[], k: number, opts: KMeansOptions): KMeansResult {
  const points = asPoints(features);
  // maxIter and tol are the algorithm's own (scikit-learn's KMeans); the number of restarts is the clustering stage's setting
  const { nInit = DEFAULT_CLUSTER.nInit, maxIter = 300, tol = 1e-4, seed } = opts;
  if (!Number.isInteger(k) || k < 1 || k > points.length) {
    throw new RangeError(`k must be an integer in [1, ${points.length}], got ${k}`);
  }
  if (!Number.isInteger(nInit) || nInit < 1)
    throw new RangeError(`nInit must be a positive integer, got ${nInit}`);
  // sklearn scales tol by the mean per-feature variance, so it is independent of the features' units.
  const d = points[0]!.length;
  let meanVar = 0;
  for (let j = 0; j < d; j++) {
    const mean = points.reduce((s, p) => s + p[j]!, 0) / points.length;
    meanVar += points.reduce((s, p) => s + (p[j]! - mean) ** 2, 0) / points.length;
  }
  const scaledTol = (meanVar / d) * tol;
  const rng = createRng(seed);
  let best: KMeansResult | null = null;
  for (let run = 0; run < nInit; run++) {
    const result = lloyd(points, kmeansPlusPlus(points, k, rng), maxIter, scaledTol);
    if (best === null || result.inertia < best.inertia) best = result;
  }
  return best!;
}

/** Map arbitrary labels to 0..m-1 by first occurrence. */
function denseLabels(labels: readonly number[]): { dense: number[]; m: number } {
  const ids = new Map<number, number>();
  const dense = labels.map((l) => {
    if (!ids.has(l)) ids.set(l, ids.size);
    return ids.get(l)!;
  });
  return { dense, m: ids.size };
}

/**
 * Silhouette of each point (sklearn `silhouette_samples`, euclidean): s = (b - a) / max(a, b), a = mean distance
 * to the other members of its cluster, b = smallest mean distance to another cluster; 0 for a point alone in
 * its cluster (and 0 where a = b = 0). Needs 2 <= number of clusters <= n - 1.
 */
export function silhouetteSamples(features: Points | readonly number[], labels: readonly number[]): number[] {
  const points = asPoints(features);
  const n = points.length;
  if (labels.length !== n) throw new RangeError(`${labels.length} labels for ${n} points`);
  const { dense, m } = denseLabels(labels);
  if (m < 2 || m > n - 1) throw new RangeError(`silhouette needs 2 to n-1 = ${n - 1} clusters, got ${m}`);
  const sizes = new Array<number>(m).fill(0);
  for (const l of dense) sizes[l]!++;
  return points.map((p, i) => {
    const own = dense[i]!;
    if (sizes[own] === 1) return 0;
    const sums = new Array<number>(m).fill(0);
    points.forEach((q, j) => {
      if (j !== i) sums[dense[j]!]! += Math.sqrt(sqDist(p, q));
    });
    const a = sums[own]! / (sizes[own]! - 1);
    let b = Infinity;
    for (let c = 0; c < m; c++) if (c !== own) b = Math.min(b, sums[c]! / sizes[c]!);
    const denom = Math.max(a, b);
    return denom === 0 ? 0 : (b - a) / denom;
  });
}

/** Mean silhouette over all points (sklearn `silhouette_score`). */
export function silhouetteScore(features: Points | readonly number[], labels: readonly number[]): number {
  const s = silhouetteSamples(features, labels);
  return s.reduce((a, b) => a + b, 0) / s.length;
}

/**
 * Renumber clusters so that cluster 0 has the largest centre, 1 the next, and so on. A centre's size is the
 * mean of its coordinates (the members' mean importance; for 1-D features simply the centre). Ties go to the
 * cluster that occurs first in `labels`. Independent of the input numbering, so runs and implementations
 * that find the same partition give the same labels.
 */
export function canonicalLabels(features: Points | readonly number[], labels: readonly number[]): number[] {
  const points = asPoints(features);
  if (labels.length !== points.length)
    throw new RangeError(`${labels.length} labels for ${points.length} points`);
  const { dense, m } = denseLabels(labels);
  const { centers } = means(points, dense, m);
  const size = centers.map((c) => c.reduce((a, b) => a + b, 0) / c.length);
  const order = [...size.keys()].sort((x, y) => size[y]! - size[x]! || x - y);
  const rank = new Array<number>(m);
  order.forEach((c, r) => (rank[c] = r));
  return dense.map((l) => rank[l]!);
}

export interface ChooseClustersOptions {
  kMax?: number;
  /** Smallest silhouette accepted as a real cluster structure. */
  threshold?: number;
  /** What a layer without cluster structure gets (default "shared"). */
  fallback?: ClusterFallback;
  seed: number;
  nInit?: number;
}

export interface ClusterChoice {
  /** Number of update rows: the clusters found, 1 for the shared fallback, n for the per-neuron fallback. */
  k: number;
  /** Canonical labels (see `canonicalLabels`); all 0 (shared) or 0..n-1 in input order (per-neuron) otherwise. */
  labels: number[];
  /** Best silhouette found (NaN when no k could be tried). */
  silhouette: number;
  clustered: boolean;
  /** The fallback applied, null when clustered. */
  fallback: ClusterFallback | null;
  tried: { k: number; silhouette: number; inertia: number }[];
}

/** The labels of a fallback: one shared row, or one row per point. */
export function fallbackLabels(n: number, fallback: ClusterFallback): { k: number; labels: number[] } {
  return fallback === "shared"
    ? { k: n > 0 ? 1 : 0, labels: new Array<number>(n).fill(0) }
    : { k: n, labels: Array.from({ length: n }, (_, i) => i) };
}

/**
 * Choose the number of clusters of one layer's selected neurons: k-means for k = 2..min(kMax, n-1), keep the
 * best silhouette (the smaller k on ties). Below `threshold`, or with fewer than 3 neurons, there is no cluster
 * structure to share updates over and the fallback decides: one shared row (default) or one row per neuron.
 */
export function chooseClusters(
  features: Points | readonly number[],
  opts: ChooseClustersOptions,
): ClusterChoice {
  const points = asPoints(features);
  const n = points.length;
  const {
    kMax = DEFAULT_CLUSTER.kMax,
    threshold = DEFAULT_CLUSTER.threshold,
    fallback = DEFAULT_CLUSTER.fallback,
    seed,
    nInit = DEFAULT_CLUSTER.nInit,
  } = opts;
  const tried: ClusterChoice["tried"] = [];
  let best: { k: number; silhouette: number; labels: number[] } | null = null;
  for (let k = 2; k <= Math.min(kMax, n - 1); k++) {
    const result = kmeans(points, k, { seed, nInit });
    // Duplicate points can leave fewer distinct clusters than k; the silhouette is undefined with one.
    const distinct = new Set(result.labels).size;
    const silhouette = distinct >= 2 ? silhouetteScore(points, result.labels) : NaN;
    tried.push({ k, silhouette, inertia: result.inertia });
    if (!Number.isNaN(silhouette) && (best === null || silhouette > best.silhouette)) {
      best = { k: distinct, silhouette, labels: result.labels };
    }
  }
  if (best === null || best.silhouette < threshold) {
    return {
      ...fallbackLabels(n, fallback),
      silhouette: best?.silhouette ?? NaN,
      clustered: false,
      fallback,
      tried,
    };
  }
  return {
    k: best.k,
    labels: canonicalLabels(points, best.labels),
    silhouette: best.silhouette,
    clustered: true,
    fallback: null,
    tried,
  };
}
