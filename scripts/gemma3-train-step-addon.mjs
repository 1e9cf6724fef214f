// The addon's side of scripts/gemma3-train-step-torch.py: the gemma3 fixture's GoodVibe steps (as
// test/method/train_step.test.ts runs them) written as JSON in the same format, for comparing libtorch builds and
// PyTorch versions element by element.  node scripts/gemma3-train-step-addon.mjs [variant] [out.json]
import * as fs from "node:fs";
import { gunzipSync } from "node:zlib";
import { loadModel } from "../dist/src/models/index.js";
import { AdamW, Tensor, getNumThreads, setNumThreads, torchVersion } from "../dist/src/tensor/index.js";
import { attachGoodVibe } from "../dist/src/method/goodvibe/model.js";
import { sftLossHead } from "../dist/src/method/losses.js";

const variant = process.argv[2] ?? "no_cluster";
const out = process.argv[3] ?? `gemma3-${variant}-addon.json`;
const dir = "test/fixtures/gemma3";
// stored gzipped, as every fixture JSON (test/fixture-json.ts)
const ts = JSON.parse(gunzipSync(fs.readFileSync(`${dir}/train_step.json.gz`)).toString("utf8"));
const model = loadModel(dir);
setNumThreads(1);
const ref = ts[variant];
const method = attachGoodVibe(
  model,
  new Map(
    Object.entries(ref.selection).map(([n, s]) => [n, { rows: s.rows, clusters: s.clusters, nClusters: s.n_clusters }]),
  ),
);
const ids = ts.sft_batch.input_ids;
const labels = ts.sft_batch.labels;
const batchIds = Tensor.fromArray(ids.flat(), [ids.length, ids[0].length], "int64");
const batchLabels = Tensor.fromArray(labels.flat(), [labels.length, labels[0].length], "int64");
const opt = new AdamW([...method.trainable.values()], { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 });
const rows = (t, shape) => {
  const a = Array.from(t);
  return Array.from({ length: shape[0] }, (_, i) => a.slice(i * shape[1], (i + 1) * shape[1]));
};
const steps = [];
for (let s = 0; s < 3; s++) {
  const loss = model.forwardBackward(batchIds, {}, sftLossHead(model, batchLabels), false);
  const grad_U = {};
  for (const [n, t] of method.trainable) grad_U[n.replace(/\.U$/, "")] = rows(t.grad.toFloat32Array(), t.shape);
  opt.step();
  opt.zeroGrad();
  const U_after = {};
  for (const [n, t] of method.trainable) U_after[n.replace(/\.U$/, "")] = rows(t.toFloat32Array(), t.shape);
  steps.push({ loss, grad_U, U_after });
}
fs.writeFileSync(out, JSON.stringify({ torch: `libtorch ${torchVersion()} (addon)`, threads: getNumThreads(), variant, steps }));
console.log(`wrote ${out}: libtorch ${torchVersion()}, ${variant}, losses ${steps.map((s) => s.loss.toFixed(7)).join(" ")}`);
