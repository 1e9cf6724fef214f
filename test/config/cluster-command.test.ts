/**
 * `goodvibe cluster` resolves its settings like every stage: defaults < the config file's cluster section (a
 * whole harden config serves) < a flag < --set, validated by the same schema (unknown keys exit 2, named).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { writeNeuronMap, type NeuronMap } from "../../src/method/goodvibe/neuron-map.js";
import { readClusterMap } from "../../src/method/goodvibe/clustering.js";
import { DEFAULT_CLUSTER } from "../../src/method/goodvibe/config.js";
import { createRng } from "../../src/util/random.js";
import { runCli, showRun } from "../cli/cli-helpers.js";

const dir = scratchDir("gv-cluster-cmd-");
const neurons = path.join(dir, "neurons.json");
const rng = createRng(3);
const profiles = Array.from({ length: 12 }, () => Array.from({ length: 6 }, () => 1 + rng.next()));
const map: NeuronMap = {
  format: "goodvibe-neuron-map",
  version: 1,
  mode: "gradient",
  topK: 12,
  model: { family: "llama", hash: "test", modules: {} },
  source: { model: "", data: "", prompt: "", samples: 6, secure: 3, insecure: 3 },
  lossMean: 0,
  flops: { forward: 0, backward: 0, total: 0 },
  wallSeconds: 0,
  modules: {
    "model.layers.0.mlp.up_proj": {
      outFeatures: 32,
      inFeatures: 8,
      indices: profiles.map((_, i) => i),
      scores: profiles.map((p) => p.reduce((a, b) => a + b, 0) / p.length),
      stats: { mean: 0, std: 0, max: 0, topKShare: 0 },
      profiles,
    },
  },
};
writeNeuronMap(neurons, map);
const config = path.join(dir, "harden.yaml");
fs.writeFileSync(
  config,
  "model: ./m\ndata: ./d.jsonl\nout: ./o\ncluster:\n  kMax: 3\n  threshold: 0.2\n  features: importance\n",
);

test("goodvibe cluster: the file's cluster section, a flag over it, --set over both", async () => {
  const out = path.join(dir, "a.json");
  const r = await runCli([
    "cluster",
    "-n",
    neurons,
    "-o",
    out,
    "-c",
    config,
    "--k-max",
    "4",
    "--set",
    "cluster.nInit=2",
  ]);
  assert.equal(r.code, 0, showRun(r));
  const o = readClusterMap(out).options;
  assert.equal(o.kMax, 4, "the flag over the file");
  assert.equal(o.threshold, 0.2, "the file over the default");
  assert.equal(o.features, "importance");
  assert.equal(o.nInit, 2, "--set");
  assert.equal(o.seed, DEFAULT_CLUSTER.seed, "the default where nothing is set");
  const out2 = path.join(dir, "b.json");
  const s = await runCli([
    "cluster",
    "-n",
    neurons,
    "-o",
    out2,
    "-c",
    config,
    "--k-max",
    "4",
    "--set",
    "cluster.kMax=5",
  ]);
  assert.equal(s.code, 0, showRun(s));
  assert.equal(readClusterMap(out2).options.kMax, 5, "--set over the flag");
  // without a file: the defaults of the stage's config
  const out3 = path.join(dir, "c.json");
  const d = await runCli(["cluster", "-n", neurons, "-o", out3]);
  assert.equal(d.code, 0, showRun(d));
  assert.deepEqual(readClusterMap(out3).options, DEFAULT_CLUSTER);
});

test("goodvibe cluster: an unknown key exits 2 naming it, and writes nothing", async () => {
  const out = path.join(dir, "bad.json");
  const r = await runCli(["cluster", "-n", neurons, "-o", out, "--set", "cluster.treshold=0.1"]);
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, /treshold/);
  assert.ok(!fs.existsSync(out));
});
