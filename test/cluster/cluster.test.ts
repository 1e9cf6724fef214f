import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import {
  canonicalLabels,
  chooseClusters,
  kmeans,
  silhouetteSamples,
  silhouetteScore,
} from "../../src/method/goodvibe/kmeans.js";
import { DEFAULT_CLUSTER } from "../../src/method/goodvibe/config.js";
import { clusterNeurons, clusterSummary } from "../../src/method/goodvibe/clustering.js";
import type { NeuronMap } from "../../src/method/goodvibe/neuron-map.js";
import { createRng } from "../../src/util/random.js";

const FIXTURES = fileURLToPath(new URL("../../../test/fixtures/", import.meta.url));
const FAMILIES = ["llama", "qwen2", "qwen3", "gemma3"] as const;

interface SilhouetteCase {
  name: string;
  features: number[] | number[][];
  labels: number[];
  silhouette_score: number;
  silhouette_samples: number[];
}
interface KMeansReference {
  k: number;
  inertia: number;
  labels_canonical_by_center_desc: number[];
  exact_optimal_inertia: number;
  silhouette_score: number;
}
const clusterFixture = JSON.parse(fs.readFileSync(FIXTURES + "cluster.json", "utf8")) as {
  silhouette_cases: SilhouetteCase[];
  kmeans: { features_case: string; results: KMeansReference[] };
};

function assertClose(actual: number, expected: number, rtol: number, what: string): void {
  const tol = rtol * Math.max(Math.abs(expected), 1e-300);
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (rtol ${rtol})`);
}

test("silhouette score and samples equal sklearn's for every fixture case", () => {
  assert.equal(clusterFixture.silhouette_cases.length, 6);
  for (const c of clusterFixture.silhouette_cases) {
    assertClose(silhouetteScore(c.features, c.labels), c.silhouette_score, 1e-9, `${c.name} score`);
    const samples = silhouetteSamples(c.features, c.labels);
    assert.equal(samples.length, c.silhouette_samples.length);
    samples.forEach((s, i) => {
      // Samples that are exactly 0 (singletons) are compared absolutely.
      if (c.silhouette_samples[i] === 0) assert.equal(s, 0, `${c.name} sample ${i}`);
      else assertClose(s, c.silhouette_samples[i]!, 1e-9, `${c.name} sample ${i}`);
    });
  }
});

test("silhouette: hand-worked 1-D example and label-numbering invariance", () => {
  // Points 0, 1 | 4: for 0, a = 1, b = 4 -> 0.75; for 1, a = 1, b = 3 -> 2/3; 4 is alone -> 0.
  const s = silhouetteSamples([0, 1, 4], [5, 5, 9]);
  assertClose(s[0]!, 0.75, 1e-15, "s0");
  assertClose(s[1]!, 2 / 3, 1e-15, "s1");
  assert.equal(s[2], 0);
  assert.deepEqual(silhouetteSamples([0, 1, 4], [1, 1, 0]), s);
  assert.throws(() => silhouetteScore([0, 1, 4], [0, 0, 0]), RangeError);
  assert.throws(() => silhouetteScore([0, 1, 4], [0, 1, 2]), RangeError);
});

test("k-means reaches the exact optimal inertia for k = 2, 3, 4 and sklearn's canonical labels", () => {
  const features = clusterFixture.silhouette_cases.find(
    (c) => c.name === clusterFixture.kmeans.features_case,
  )!.features as number[];
  for (const ref of clusterFixture.kmeans.results) {
    for (const seed of [0, 1, 2]) {
      const result = kmeans(features, ref.k, { seed });
      assertClose(result.inertia, ref.exact_optimal_inertia, 1e-9, `k=${ref.k} seed ${seed} inertia`);
      assert.deepEqual(canonicalLabels(features, result.labels), ref.labels_canonical_by_center_desc);
      assertClose(
        silhouetteScore(features, result.labels),
        ref.silhouette_score,
        1e-9,
        `k=${ref.k} silhouette`,
      );
      assert.equal(result.centers.length, ref.k);
    }
  }
});

test("k-means result is a Lloyd fixed point: nearest-centre labels, centres are the members' means", () => {
  const points = [
    [0, 0],
    [0.2, 0.1],
    [5, 5],
    [5.1, 4.9],
    [9, 0],
    [9.2, 0.3],
    [4.8, 5.2],
  ];
  const { labels, centers, inertia } = kmeans(points, 3, { seed: 7 });
  let sum = 0;
  points.forEach((p, i) => {
    const d = centers.map((c) => (p[0]! - c[0]!) ** 2 + (p[1]! - c[1]!) ** 2);
    assert.equal(labels[i], d.indexOf(Math.min(...d)));
    sum += d[labels[i]!]!;
  });
  assertClose(inertia, sum, 1e-12, "inertia");
  for (let c = 0; c < 3; c++) {
    const members = points.filter((_, i) => labels[i] === c);
    for (let j = 0; j < 2; j++) {
      assertClose(centers[c]![j]!, members.reduce((s, p) => s + p[j]!, 0) / members.length, 1e-12, "centre");
    }
  }
  assert.deepEqual(canonicalLabels(points, labels), [2, 2, 0, 0, 1, 1, 0]);
  assert.deepEqual(kmeans(points, 3, { seed: 7 }), kmeans(points, 3, { seed: 7 }), "same seed, same result");
});

test("k-means handles duplicate points and rejects bad k", () => {
  const { labels, inertia } = kmeans([1, 1, 1, 5, 5], 2, { seed: 0 });
  assert.equal(inertia, 0);
  assert.deepEqual(canonicalLabels([1, 1, 1, 5, 5], labels), [1, 1, 1, 0, 0]);
  assert.throws(() => kmeans([1, 2], 3, { seed: 0 }), RangeError);
  assert.throws(() => kmeans([1, 2], 0, { seed: 0 }), RangeError);
  assert.throws(() => kmeans([[1, 2], [3]], 1, { seed: 0 }), RangeError);
  assert.throws(() => kmeans([1, NaN], 1, { seed: 0 }), RangeError);
});

test("canonical labels: largest mean centre first, ties by first occurrence", () => {
  assert.deepEqual(canonicalLabels([1, 9, 5, 9], [0, 1, 2, 1]), [2, 0, 1, 0]);
  // 2-D: centres (1, 3) mean 2 and (2, 2) mean 2 tie; the first-occurring cluster (label 7) is 0.
  assert.deepEqual(
    canonicalLabels(
      [
        [1, 3],
        [2, 2],
        [1, 3],
      ],
      [7, 3, 7],
    ),
    [0, 1, 0],
  );
});

test("2-means of the 5 selected rows reproduces train_step.json's clusters, every module of all 4 families", () => {
  for (const family of FAMILIES) {
    const goodvibe = readFixtureJson(`${FIXTURES}${family}/goodvibe.json.gz`) as {
      modules: Record<string, { grad_importance: number[]; grad_topk: number[] }>;
    };
    const step = readFixtureJson(`${FIXTURES}${family}/train_step.json.gz`) as {
      cluster: { selection: Record<string, { rows: number[]; clusters: number[]; n_clusters: number }> };
    };
    const selection = Object.entries(step.cluster.selection);
    assert.equal(selection.length, family === "gemma3" ? 28 : 14);
    for (const [module, sel] of selection) {
      const m = goodvibe.modules[module]!;
      assert.deepEqual(sel.rows, m.grad_topk, `${family} ${module} rows`);
      // The JSON holds shortest float32 decimals: fround gives the exact float32 importances.
      const importances = m.grad_topk.map((r) => Math.fround(m.grad_importance[r]!));
      const result = kmeans(importances, sel.n_clusters, { seed: 0 });
      assert.deepEqual(canonicalLabels(importances, result.labels), sel.clusters, `${family} ${module}`);
    }
  }
});

test("chooseClusters picks the best silhouette; below the threshold one shared row or one row per neuron", () => {
  const features = clusterFixture.silhouette_cases.find((c) => c.name === "1d_two_clusters")!
    .features as number[];
  const refs = clusterFixture.kmeans.results;
  const choice = chooseClusters(features, { seed: 0, kMax: 4 });
  assert.deepEqual(
    choice.tried.map((t) => t.k),
    [2, 3, 4],
  );
  choice.tried.forEach((t, i) => assertClose(t.silhouette, refs[i]!.silhouette_score, 1e-9, `k=${t.k}`));
  // sklearn's silhouettes: 0.602 (k=2), 0.618 (k=3), 0.644 (k=4): k = 4 wins.
  assert.equal(choice.k, 4);
  assert.equal(choice.clustered, true);
  assert.deepEqual(choice.labels, refs[2]!.labels_canonical_by_center_desc);

  // Below the threshold: one shared row (the default fallback) or one row per neuron.
  const shared = chooseClusters(features, { seed: 0, kMax: 4, threshold: 0.9 });
  assert.equal(shared.clustered, false);
  assert.equal(shared.fallback, "shared");
  assert.equal(shared.k, 1);
  assert.deepEqual(shared.labels, new Array(16).fill(0));
  assertClose(shared.silhouette, refs[2]!.silhouette_score, 1e-9, "best silhouette reported");

  const strict = chooseClusters(features, { seed: 0, kMax: 4, threshold: 0.9, fallback: "per-neuron" });
  assert.equal(strict.clustered, false);
  assert.equal(strict.fallback, "per-neuron");
  assert.equal(strict.k, 16);
  assert.deepEqual(strict.labels, [...Array(16).keys()]);
  assertClose(strict.silhouette, refs[2]!.silhouette_score, 1e-9, "best silhouette reported");

  const tiny = chooseClusters([0.3, 0.1], { seed: 0 });
  assert.equal(tiny.clustered, false);
  assert.deepEqual(tiny.labels, [0, 0]);
  assert.equal(tiny.k, 1);
  assert.deepEqual(tiny.tried, []);
  const tinyPerNeuron = chooseClusters([0.3, 0.1], { seed: 0, fallback: "per-neuron" });
  assert.deepEqual(tinyPerNeuron.labels, [0, 1]);
});

test("chooseClusters on well-separated 2-D groups finds them", () => {
  const points = [
    [10, 10],
    [10.1, 9.9],
    [0, 0],
    [0.1, 0.1],
    [5, 5],
    [5.1, 5.05],
    [0.05, -0.05],
  ];
  const choice = chooseClusters(points, { seed: 3 });
  assert.equal(choice.k, 3);
  assert.deepEqual(choice.labels, [0, 0, 2, 2, 1, 1, 2]);
  assert.ok(choice.silhouette > 0.9);
});

// ---- the silhouette threshold (issue 10 §4): it must change what a module gets

/** n neurons in two groups (alternating) of d-dimensional profiles: group centres at `sep`, unit noise. */
function twoGroupProfiles(seed: number, d: number, n: number, sep: number): number[][] {
  const rng = createRng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  const centres = [0, 1].map(() => Array.from({ length: d }, gauss));
  // importances are positive: a common level of 1 plus a small pattern
  return Array.from({ length: n }, (_, i) => centres[i % 2]!.map((c) => 1 + 0.1 * (sep * c + gauss())));
}

function neuronMapOf(profiles: Record<string, number[][]>): NeuronMap {
  const modules: NeuronMap["modules"] = {};
  for (const [name, p] of Object.entries(profiles)) {
    const scores = p.map((row) => row.reduce((a, b) => a + b, 0) / row.length);
    modules[name] = {
      outFeatures: p.length + 10,
      inFeatures: 8,
      indices: p.map((_, i) => i),
      scores,
      stats: { mean: 0, std: 0, max: 0, topKShare: 0 },
      profiles: p,
    };
  }
  return {
    format: "goodvibe-neuron-map",
    version: 1,
    mode: "gradient",
    topK: 20,
    model: { family: "llama", hash: "test", modules: {} },
    source: { model: "", data: "", prompt: "", samples: 64, secure: 32, insecure: 32 },
    lossMean: 0,
    flops: { forward: 0, backward: 0, total: 0 },
    wallSeconds: 0,
    modules,
  };
}

test("the silhouette threshold decides which modules are clustered: 0.01, 0.05 and 0.1 give different counts", () => {
  // Designed so that the three modules' best silhouettes fall in (0.01, 0.05), (0.05, 0.1) and above 0.1:
  // pure noise in 64 dimensions, a weak two-group pattern in 32, a clearer one in 16.
  const map = neuronMapOf({
    noise: twoGroupProfiles(1, 64, 20, 0),
    weak: twoGroupProfiles(1, 32, 20, 0.3),
    clear: twoGroupProfiles(1, 16, 20, 0.6),
  });
  const opts = { ...DEFAULT_CLUSTER, features: "profile" as const };
  const best = clusterNeurons(map, { ...opts, threshold: -1 }).modules;
  const sil = (m: string) => best[m]!.silhouette;
  assert.ok(sil("noise") > 0.01 && sil("noise") < 0.05, `noise: ${sil("noise")}`);
  assert.ok(sil("weak") > 0.05 && sil("weak") < 0.1, `weak: ${sil("weak")}`);
  assert.ok(sil("clear") > 0.1, `clear: ${sil("clear")}`);

  const rows = new Map<number, number>();
  for (const threshold of [0.01, 0.05, 0.1]) {
    for (const fallback of ["shared", "per-neuron"] as const) {
      const c = clusterNeurons(map, { ...opts, threshold, fallback });
      for (const [name, m] of Object.entries(c.modules)) {
        // the rule itself: a module is clustered exactly when its best silhouette reaches the threshold
        assert.equal(m.clustered, sil(name) >= threshold, `${name} at ${threshold}`);
        assert.equal(m.silhouette, sil(name));
        if (m.clustered) {
          assert.equal(m.updates, "clustered");
          assert.equal(m.nClusters, best[name]!.nClusters);
          assert.ok(m.nClusters >= 2);
        } else {
          assert.equal(m.updates, fallback);
          assert.equal(m.nClusters, fallback === "shared" ? 1 : 20);
          assert.deepEqual(m.clusters, fallback === "shared" ? new Array(20).fill(0) : [...Array(20).keys()]);
        }
      }
      if (fallback === "shared") rows.set(threshold, clusterSummary(c).rows);
      assert.equal(
        clusterSummary(c).clustered,
        { 0.01: 3, 0.05: 2, 0.1: 1 }[threshold],
        `clustered modules at ${threshold}`,
      );
    }
  }
  // one shared row replaces a module's clusters: fewer update rows as the threshold rises
  assert.ok(rows.get(0.01)! > rows.get(0.05)! && rows.get(0.05)! > rows.get(0.1)!, JSON.stringify([...rows]));
});

test("one-number features split well whatever the data, so the paper's thresholds never apply to them", () => {
  // 50 evenly spread importances, the least clustered 1-D sample there is: two groups still score about 0.5
  const even = Array.from({ length: 50 }, (_, i) => 1 + i / 49);
  const c = chooseClusters(even, { seed: 0, threshold: 0.1 });
  assert.ok(c.clustered && c.silhouette > 0.45, `${c.silhouette}`);
});

test("profile-normalized features group neurons by pattern, not by size", () => {
  // two patterns over 6 samples, each neuron a multiple of one of them (sizes spread over 100x)
  const a = [1, 0.2, 0.1, 1, 0.2, 0.1];
  const b = [0.1, 0.2, 1, 0.1, 0.2, 1];
  const sizes = [1, 3, 10, 30, 100, 2, 7, 50];
  const profiles = sizes.map((s, i) => (i % 2 === 0 ? a : b).map((v) => v * s));
  const map = neuronMapOf({ m: profiles });
  const byPattern = clusterNeurons(map, { ...DEFAULT_CLUSTER, features: "profile-normalized" }).modules.m!;
  assert.equal(byPattern.nClusters, 2);
  assert.ok(byPattern.silhouette > 0.99);
  assert.deepEqual(
    byPattern.clusters.map((c) => c === byPattern.clusters[0]),
    sizes.map((_, i) => i % 2 === 0),
  );
  // raw profiles are dominated by size: the groups follow the neurons' scale instead
  const bySize = clusterNeurons(map, { ...DEFAULT_CLUSTER, features: "profile" }).modules.m!;
  assert.notDeepEqual(
    bySize.clusters.map((c) => c === bySize.clusters[0]),
    sizes.map((_, i) => i % 2 === 0),
  );
});

test("cluster features need profiles: a clear error names the module and the setting", () => {
  const map = neuronMapOf({ "model.layers.0.mlp.up_proj": twoGroupProfiles(2, 4, 6, 1) });
  delete map.modules["model.layers.0.mlp.up_proj"]!.profiles;
  assert.throws(
    () => clusterNeurons(map, DEFAULT_CLUSTER),
    /model\.layers\.0\.mlp\.up_proj.*identify\.profileSamples/,
  );
  // importance features need none
  assert.equal(
    clusterNeurons(map, { ...DEFAULT_CLUSTER, features: "importance" }).modules["model.layers.0.mlp.up_proj"]!
      .rows.length,
    6,
  );
});

test("clustering disabled (ablation) gives one row per neuron; two neurons get the fallback", () => {
  const map = neuronMapOf({ big: twoGroupProfiles(3, 8, 10, 1), two: twoGroupProfiles(3, 8, 2, 1) });
  const off = clusterNeurons(map, { ...DEFAULT_CLUSTER, disabled: true });
  assert.equal(off.modules.big!.nClusters, 10);
  assert.equal(off.modules.big!.updates, "per-neuron");
  assert.match(clusterSummary(off).text, /disabled/);
  const on = clusterNeurons(map, DEFAULT_CLUSTER);
  assert.equal(on.modules.two!.nClusters, 1);
  assert.equal(on.modules.two!.updates, "shared");
  const perNeuron = clusterNeurons(map, { ...DEFAULT_CLUSTER, fallback: "per-neuron" });
  assert.equal(perNeuron.modules.two!.nClusters, 2);
});
