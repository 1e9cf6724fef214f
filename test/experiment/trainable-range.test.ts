/**
 * `experiment plan`'s trainable-parameter range for a GoodVibe cell holds what the clustering can produce: the
 * reference is the clustering itself (clusterNeurons on neuron maps built so that every module gets the most rows,
 * or the fewest, it can), counted as the run counts them (trainableParamsOf). The plan said one to two rows per
 * module (the paper's Table 2 bounds) while k-means here may choose up to cluster.kMax clusters per module: the
 * organism's runs got about 3 rows per module, above the range the plan printed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { expandCells } from "../../src/experiment/plan.js";
import { estimateCells, shapeForModel } from "../../src/experiment/estimate.js";
import { goodvibeModules } from "../../src/method/flops.js";
import { clusterNeurons, trainableParamsOf } from "../../src/method/goodvibe/clustering.js";
import type { NeuronMap } from "../../src/method/goodvibe/neuron-map.js";
import type { ClusterFallback } from "../../src/method/goodvibe/config.js";

const TOPK = 16;
const KMAX = 8;

// Qwen2.5-0.5B's published shape, cut to 2 layers: no checkpoint needed
const spec = (fallback: ClusterFallback) =>
  parseExperimentSpec(
    {
      name: "t",
      models: [
        {
          name: "q",
          path: "/nonexistent/q",
          config: {
            model_type: "qwen2",
            hidden_size: 896,
            intermediate_size: 4864,
            num_attention_heads: 14,
            num_key_value_heads: 2,
            num_hidden_layers: 2,
            vocab_size: 151936,
            tie_word_embeddings: true,
          },
        },
      ],
      data: { train: "/nonexistent/train.jsonl", dev: "/nonexistent/dev.jsonl" },
      methods: ["goodvibe"],
      defaults: {
        identify: { topK: TOPK },
        cluster: { kMax: KMAX, features: "importance", threshold: 0.05, fallback },
      },
    },
    "t.yaml",
  );

/** A neuron map of every GoodVibe module of the spec's model, each module's top-k scores from `scores`. */
function neuronMap(s: ReturnType<typeof spec>, scores: number[]): NeuronMap {
  const { shape } = shapeForModel(s.models[0]!, "t.yaml");
  const modules = Object.fromEntries(
    goodvibeModules(shape).map((l) => [
      l.name,
      {
        outFeatures: l.outFeatures,
        inFeatures: l.inFeatures,
        indices: scores.map((_, i) => i),
        scores,
        stats: { mean: 0, std: 0, max: 0, topKShare: 0 },
      },
    ]),
  );
  return {
    format: "goodvibe-neuron-map",
    version: 1,
    mode: "gradient",
    topK: TOPK,
    modules,
  } as unknown as NeuronMap;
}

function rowsOf(s: ReturnType<typeof spec>, scores: number[]): { params: number; rows: number[] } {
  const map = neuronMap(s, scores);
  const cfg = expandCells(s, "t.yaml")[0]!.harden!;
  const clusters = clusterNeurons(map, { ...cfg.cluster, seed: 0 });
  const params = trainableParamsOf(clusters, (n) => map.modules[n]!.inFeatures);
  return { params, rows: Object.values(clusters.modules).map((m) => m.nClusters) };
}

test("a module clustered into kMax groups: the run's trainable parameters are the plan's upper end", () => {
  const s = spec("shared");
  // 8 pairs of equal importances: k = 8 separates them exactly (silhouette 1), the best k in [2, 8]
  const eight = Array.from({ length: TOPK }, (_, i) => 100 - 10 * Math.floor(i / 2));
  const most = rowsOf(s, eight);
  assert.ok(
    most.rows.every((k) => k === KMAX),
    `rows per module: ${most.rows.join(",")}`,
  );
  const [est] = estimateCells(s, expandCells(s, "t.yaml"), "t.yaml");
  assert.ok(most.params <= est!.trainable.high, `${most.params} > the plan's ${est!.trainable.high}`);
  assert.equal(est!.trainable.high, most.params);
  // no structure (every importance the same): below the threshold, one shared row: the plan's lower end
  const least = rowsOf(s, new Array<number>(TOPK).fill(1));
  assert.ok(least.rows.every((k) => k === 1));
  assert.equal(est!.trainable.low, least.params);
});

test("with the per-neuron fallback a module below the threshold gets top-k rows: the plan's upper end", () => {
  const s = spec("per-neuron");
  const flat = rowsOf(s, new Array<number>(TOPK).fill(1));
  assert.ok(flat.rows.every((k) => k === TOPK));
  const [est] = estimateCells(s, expandCells(s, "t.yaml"), "t.yaml");
  assert.equal(est!.trainable.high, flat.params);
  // two clusters is the fewest a module gets then
  const two = rowsOf(
    s,
    Array.from({ length: TOPK }, (_, i) => (i < TOPK / 2 ? 10 : 1)),
  );
  assert.ok(
    two.rows.every((k) => k === 2),
    two.rows.join(","),
  );
  assert.equal(est!.trainable.low, two.params);
});
