/**
 * lm_head as an identification and training target (identify.lmHead): its importances against Eq. 8 computed
 * with autograd on a full-vocabulary lm_head (an independent path: full logits, the two label columns, backward),
 * the activation variant against the full logits, training and folding of its rows, and tied models refused.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { identify, type IdentifyOptions } from "../../src/method/goodvibe/identify.js";
import { DEFAULT_CLUSTER } from "../../src/method/goodvibe/config.js";
import { clusterNeurons, selectionsOf } from "../../src/method/goodvibe/clustering.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { countParams } from "../../src/method/attached.js";
import { restrictedLogits, sftLossHead } from "../../src/method/losses.js";
import { goodvibeParams } from "../../src/method/flops.js";
import { AdamW, Tensor, crossEntropy, noGrad, withGrad } from "../../src/tensor/index.js";
import { readGoodvibeFixture } from "./goodvibe-fixture.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const DIR = path.join(FIX, "llama"); // untied lm_head
const { g, samples } = readGoodvibeFixture(DIR);
const opts = (over: Partial<IdentifyOptions> = {}): IdentifyOptions => ({
  labelTokenIds: g.label_token_ids,
  topK: 5,
  mode: "gradient",
  batchSize: 2,
  gradientCheckpointing: true,
  profileSamples: 4,
  checkpointEvery: 0,
  source: { model: "fixture", data: "fixture", prompt: "fixture", labels: { unsafe: "1", safe: "0" } },
  lmHead: true,
  ...over,
});

/** Eq. 8 for lm_head with a backward through full-vocabulary logits: mean over samples of mean_t |∂L/∂z_t|. */
function referenceGradientImportance(): Float64Array {
  const model = loadModel(DIR);
  const V = model.cfg.vocabSize;
  const sum = new Float64Array(V);
  for (const s of samples) {
    const ids = Tensor.fromArray(s.inputIds, [1, s.inputIds.length], "int64");
    const grad = withGrad(() => {
      const logits = model.forward(ids).detach().requiresGrad_(); // [1, T, V]: lm_head's output, as a hook sees it
      const last = logits
        .select(1, s.inputIds.length - 1)
        .indexSelect(1, Tensor.fromArray(g.label_token_ids, [2], "int64"));
      crossEntropy(last, Tensor.fromArray([s.label], [1], "int64"), { reduction: "sum" }).backward();
      return logits.grad!.abs().mean(1).toFloat32Array(); // [V]
    });
    for (let v = 0; v < V; v++) sum[v]! += grad[v]!;
  }
  return sum.map((x) => x / samples.length);
}

test("lm_head's gradient importances equal Eq. 8 through a full-vocabulary lm_head: two label rows, then ties", async () => {
  const model = loadModel(DIR);
  const map = await identify(model, samples, opts());
  const m = map.modules.lm_head!;
  assert.ok(m, "lm_head is a module of the neuron map");
  assert.equal(m.outFeatures, model.cfg.vocabSize);
  assert.equal(m.inFeatures, model.cfg.hiddenSize);
  const ref = referenceGradientImportance();
  const labels = [...g.label_token_ids].sort((a: number, b: number) => ref[b]! - ref[a]!);
  // the two label rows first (the larger first), then rows 0, 1, 2 ... (all zero, ties to the lower index).
  // With two classes the two rows' gradients are p - y and (1 - p) - (1 - y): equal up to rounding, so when
  // the reference has them within float32 noise of each other either order is right.
  const rest = [...Array(5).keys()].filter((i) => !labels.includes(i)).slice(0, 3);
  const [a, b] = labels;
  if (Math.abs(ref[a]! - ref[b]!) <= 1e-6 * ref[a]!) {
    assert.deepEqual([...m.indices.slice(0, 2)].sort(), [...labels].sort());
    assert.deepEqual(m.indices.slice(2), rest);
  } else {
    assert.deepEqual(m.indices, [...labels, ...rest]);
  }
  m.indices.forEach((v, i) =>
    assert.ok(
      Math.abs(m.scores[i]! - ref[v]!) <= 1e-4 * ref[v]! + 1e-12,
      `row ${v}: ${m.scores[i]} vs ${ref[v]}`,
    ),
  );
  for (let v = 0; v < ref.length; v++) if (!g.label_token_ids.includes(v)) assert.equal(ref[v], 0);
  // the seven projections are unchanged by the extra target
  const without = await identify(loadModel(DIR), samples, opts({ lmHead: false }));
  assert.equal(without.modules.lm_head, undefined);
  for (const [name, mod] of Object.entries(without.modules))
    assert.deepEqual(map.modules[name]!.indices, mod.indices);
});

test("lm_head's activation importances are the mean |logit| of every row over the sample's tokens", async () => {
  const model = loadModel(DIR);
  const map = await identify(model, samples, opts({ mode: "activation", batchSize: 3 }));
  const V = model.cfg.vocabSize;
  const sum = new Float64Array(V);
  for (const s of samples) {
    const logits = noGrad(() =>
      model
        .forward(Tensor.fromArray(s.inputIds, [1, s.inputIds.length], "int64"))
        .abs()
        .mean(1)
        .toFloat32Array(),
    );
    for (let v = 0; v < V; v++) sum[v]! += logits[v]!;
  }
  const m = map.modules.lm_head!;
  m.indices.forEach((v, i) => {
    const want = sum[v]! / samples.length;
    assert.ok(Math.abs(m.scores[i]! - want) <= 1e-4 * want, `row ${v}: ${m.scores[i]} vs ${want}`);
  });
  const order = [...sum.keys()].sort((a, b) => sum[b]! - sum[a]! || a - b).slice(0, 5);
  assert.deepEqual(m.indices, order);
});

test("lm_head's rows train, fold into lm_head.weight, and count in the parameters (Table 6)", async () => {
  const model = loadModel(DIR);
  const map = await identify(model, samples, opts());
  const clusters = clusterNeurons(map, { ...DEFAULT_CLUSTER, features: "importance" });
  const gv = attachGoodVibe(model, selectionsOf(clusters));
  const u = gv.trainable.get("lm_head.U")!;
  assert.equal(u.size(1), model.cfg.hiddenSize);
  // the trainable count is Σ update rows × input size, lm_head included (its input is the hidden size)
  const rows = Object.values(clusters.modules).reduce((a, c) => a + c.nClusters, 0);
  assert.ok(rows > 0);
  const inOf = (n: string) => model.linear(n).inFeatures;
  assert.equal(inOf("lm_head"), model.cfg.hiddenSize);
  assert.equal(
    countParams(gv.trainable.values()),
    Object.entries(clusters.modules).reduce((a, [n, c]) => a + c.nClusters * inOf(n), 0),
  );
  // without clustering: top-k rows of every module, lm_head's among them, as the shape arithmetic counts them
  const all = clusterNeurons(map, { ...DEFAULT_CLUSTER, disabled: true });
  assert.equal(
    Object.entries(all.modules).reduce((a, [n, c]) => a + c.nClusters * inOf(n), 0),
    goodvibeParams(model, { rows: 5, topK: 5, lmHead: true }),
  );

  const ids = Tensor.fromArray(samples[0]!.inputIds, [1, samples[0]!.inputIds.length], "int64");
  const labels = Tensor.fromArray(
    samples[0]!.inputIds.map((t, i) => (i < 4 ? -100 : t)),
    [1, samples[0]!.inputIds.length],
    "int64",
  );
  const opt = new AdamW([...gv.trainable.values()], { lr: 1e-2, weightDecay: 0 });
  model.forwardBackward(ids, {}, sftLossHead(model, labels), false);
  assert.ok(u.grad, "lm_head's U receives a gradient");
  opt.step();
  opt.zeroGrad();
  // the adapter's logits (full and restricted) equal those of the folded weight
  const folded = gv.foldedWeights().get("lm_head.weight")!;
  const hidden = noGrad(() => model.hidden(ids));
  const withAdapter = noGrad(() => model.logitsFrom(hidden).toFloat32Array());
  const foldedLogits = noGrad(() => hidden.linear(folded).float().toFloat32Array());
  let maxDiff = 0;
  for (let i = 0; i < withAdapter.length; i++)
    maxDiff = Math.max(maxDiff, Math.abs(withAdapter[i]! - foldedLogits[i]!));
  assert.ok(maxDiff < 1e-5, `folded vs adapter logits: ${maxDiff}`);
  const tok = Tensor.fromArray(g.label_token_ids, [2], "int64");
  const last = noGrad(() => hidden.select(1, hidden.size(1) - 1));
  const restricted = noGrad(() => restrictedLogits(model, last, tok).toFloat32Array());
  const fromFolded = noGrad(() => last.linear(folded.indexSelect(0, tok)).float().toFloat32Array());
  restricted.forEach((v, i) => assert.ok(Math.abs(v - fromFolded[i]!) < 1e-5));
  // only lm_head's selected rows moved
  const base = model.lmHead.toFloat32Array();
  const after = folded.toFloat32Array();
  const H = model.cfg.hiddenSize;
  const moved = new Set<number>();
  for (let i = 0; i < base.length; i++) if (base[i] !== after[i]) moved.add(Math.floor(i / H));
  for (const r of moved) assert.ok(clusters.modules.lm_head!.rows.includes(r), `row ${r} moved`);
  assert.ok(moved.size > 0);
});

test("a tied lm_head is refused as a target, before any work", async () => {
  const model = loadModel(path.join(FIX, "qwen2"));
  const gq = readFixtureJson(path.join(FIX, "qwen2", "goodvibe.json.gz"));
  await assert.rejects(
    identify(model, samples.slice(0, 2), { ...opts(), labelTokenIds: gq.label_token_ids }),
    /identify\.lmHead: lm_head is tied to the input embeddings/,
  );
});
