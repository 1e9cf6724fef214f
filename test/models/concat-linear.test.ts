/**
 * One product for q/k/v and one for gate/up (models/linear.ts LinearGroup, fusedOps "concatLinear") against a
 * product per linear, on every fixture family and both dtypes: logits, the gradient of every linear output (what
 * identification reads through Linear.tap) and of the embeddings; with GoodVibe's row update (updated in place on
 * its block of the shared output) and LoRA on every linear (their trainable gradients); full fine-tuning (each
 * weight needs its own gradient, so the separate products run); weights still each linear's own values, in-place
 * updates seen by the shared product, a replaced weight honoured. The fixture tests against PyTorch (forward,
 * identify, train_step) run the shared product on their fused path (GOODVIBE_FUSED=1 forces every fused op).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, Linear, type DecoderModel } from "../../src/models/index.js";
import { LinearGroup } from "../../src/models/linear.js";
import { MLP } from "../../src/models/layers.js";
import { openModelWeights } from "../../src/io/safetensors.js";
import { recordToTensor } from "../../src/models/load.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { attachLora } from "../../src/method/lora/model.js";
import { attachFull } from "../../src/method/full.js";
import { LoraAdapter } from "../../src/method/lora/layer.js";
import { ClusterRowAdapter, type RowSelection } from "../../src/method/goodvibe/adapter.js";
import {
  Tensor,
  crossEntropy,
  keep,
  manualSeed,
  noGrad,
  setFusedOp,
  withGrad,
  type DType,
} from "../../src/tensor/index.js";
import { relDiff } from "../numeric.js";
import { tapLinears, untapLinears } from "./taps.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const FAMILIES = ["llama", "qwen2", "qwen3", "gemma3"] as const;

function withConcat<T>(on: boolean, fn: () => T): T {
  const prev = setFusedOp("concatLinear", on);
  try {
    return fn();
  } finally {
    setFusedOp("concatLinear", prev);
  }
}

const IDS = [
  [0, 0, 0, 17, 301, 5, 88, 120, 7, 450, 33, 9, 260, 71],
  [12, 400, 3, 99, 250, 18, 77, 6, 310, 44, 2, 128, 500, 61],
];

/**
 * Next-token cross-entropy on a left-padded batch; returns the logits, the gradient of every linear output (by
 * name), of the embeddings and of every tensor in `trainable`.
 */
function pass(model: DecoderModel, trainable: Map<string, Tensor> = new Map()): Map<string, Float32Array> {
  const ids = Tensor.fromArray(IDS.flat(), [2, 14], "int64");
  const maskRows = IDS.map((r, b) => r.map((_, t) => (b === 0 && t < 3 ? 0 : 1)));
  const mask = Tensor.fromArray(maskRows.flat(), [2, 14], "int64");
  const out = new Map<string, Float32Array>();
  const kept = tapLinears(model);
  const embedTrains = !model.embed.requiresGrad;
  if (embedTrains) model.embed.requiresGrad_();
  try {
    const T = 14;
    const real = noGrad(() => mask.narrow(1, 0, T - 1).mul(mask.narrow(1, 1, T - 1)));
    const targets = noGrad(() => ids.narrow(1, 1, T - 1).maskedFill(real.eq(0), -100));
    model.forwardBackward(ids, { attentionMask: mask }, (h) => {
      const logits = model.logitsFrom(h.narrow(1, 0, T - 1));
      out.set("logits", noGrad(() => logits.mul(real.unsqueeze(-1).float())).toFloat32Array());
      return crossEntropy(logits.reshape([2 * (T - 1), -1]), targets.reshape([2 * (T - 1)]));
    });
    for (const [name, y] of kept) {
      assert.ok(y.grad, `${name}: its output got no gradient`);
      out.set(`${name} grad`, noGrad(() => y.grad!.mul(mask.unsqueeze(-1).to(y.dtype))).toFloat32Array());
      y.dispose();
    }
    out.set("embed grad", model.embed.grad!.toFloat32Array());
    for (const [name, p] of trainable) {
      assert.ok(p.grad, `${name}: no gradient`);
      out.set(`${name} grad`, p.grad.toFloat32Array());
    }
  } finally {
    untapLinears(model);
    model.embed.clearGrad();
    if (embedTrains) model.embed.requiresGrad_(false);
    for (const p of trainable.values()) p.clearGrad();
  }
  return out;
}

function compare(
  a: Map<string, Float32Array>,
  b: Map<string, Float32Array>,
  tol: { logits: number; grad: number },
): string[] {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  const worst: string[] = [];
  for (const [name, x] of a) {
    const d = relDiff(x, b.get(name)!);
    const t = name === "logits" ? tol.logits : tol.grad;
    if (!(d <= t)) worst.push(`${name}: ${d.toExponential(2)} > ${t}`);
  }
  return worst;
}

// the shared product sums the same terms as each linear's own; only the matmul kernel's blocking may differ
const TOL: Record<string, { logits: number; grad: number }> = {
  float32: { logits: 1e-5, grad: 1e-4 },
  bfloat16: { logits: 0.02, grad: 0.05 },
};

for (const family of FAMILIES) {
  for (const dtype of ["float32", "bfloat16"] as DType[]) {
    test(`${family} (${dtype}): one q/k/v and one gate/up product give each linear's output and gradient`, () => {
      const model = loadModel(path.join(FIX, family), { dtype });
      const shared = withConcat(true, () => pass(model));
      const own = withConcat(false, () => pass(model));
      assert.deepEqual(compare(shared, own, TOL[dtype]), []);
    });
  }

  test(`${family}: GoodVibe's row update and LoRA on every linear train the same through the shared products`, () => {
    for (const method of ["goodvibe", "lora"] as const) {
      const model = loadModel(path.join(FIX, family), { dtype: "bfloat16" });
      manualSeed(3);
      let trainable: Map<string, Tensor>;
      if (method === "goodvibe") {
        // rows of every linear, several clusters, a non-zero U so that the update changes the outputs
        const sel = new Map<string, RowSelection>();
        const init = new Map<string, Tensor>();
        for (const lin of model.linears()) {
          const rows = [0, 3, 5, lin.outFeatures - 1];
          sel.set(lin.name, { rows, clusters: [0, 1, 0, 2], nClusters: 3 });
          init.set(`${lin.name}.U`, Tensor.randn([3, lin.inFeatures]).mul(0.05));
        }
        trainable = attachGoodVibe(model, sel, init).trainable;
      } else {
        const m = attachLora(model, {
          r: 4,
          alpha: 8,
          dropout: 0,
          targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        });
        // B = 0 at initialisation; a non-zero B so that the adapters change the outputs and A gets a gradient
        for (const lin of model.linears())
          noGrad(() => {
            const a = lin.adapter as LoraAdapter;
            a.B.copy_(Tensor.randn(a.B.shape).mul(0.05));
          });
        trainable = m.trainable;
      }
      const shared = withConcat(true, () => pass(model, trainable));
      const own = withConcat(false, () => pass(model, trainable));
      const worst = compare(shared, own, { logits: 0.02, grad: 0.05 });
      assert.deepEqual(worst, [], method);
      // the update really acts: without it the logits differ
      const bare = loadModel(path.join(FIX, family), { dtype: "bfloat16" });
      const plain = withConcat(true, () => pass(bare));
      assert.ok(relDiff(plain.get("logits")!, shared.get("logits")!) > 1e-3, `${method} changed nothing`);
    }
  });

  test(`${family}: full fine-tuning gives every grouped weight its own gradient`, () => {
    const model = loadModel(path.join(FIX, family), { dtype: "float32" });
    const m = attachFull(model);
    const grouped = model.layers.flatMap((l) => [l.attn.q, l.attn.k, l.attn.v, l.mlp.gate, l.mlp.up]);
    const weights = new Map(grouped.map((l) => [`${l.name}.weight`, l.weight]));
    const shared = withConcat(true, () => pass(model, weights));
    const own = withConcat(false, () => pass(model, weights));
    assert.deepEqual(compare(shared, own, TOL.float32), []);
    m.detach();
  });
}

test("grouped weights are views of one tensor: the checkpoint's values, in-place updates shared, replacements honoured", () => {
  const dir = path.join(FIX, "qwen2"); // q/k/v biases
  const model = loadModel(dir, { dtype: "float32" });
  const stored = openModelWeights(dir).tensors;
  const layer = model.layers[1];
  for (const lin of [layer.attn.q, layer.attn.k, layer.attn.v, layer.mlp.gate, layer.mlp.up]) {
    for (const [what, t] of [
      ["weight", lin.weight],
      ["bias", lin.bias],
    ] as const) {
      const rec = stored.get(`${lin.name}.${what}`);
      if (!rec) {
        assert.equal(t, null, `${lin.name}.${what}`);
        continue;
      }
      assert.deepEqual(t!.toFloat32Array(), recordToTensor(rec).toFloat32Array(), `${lin.name}.${what}`);
    }
  }
  const group = layer.attn.qkv;
  assert.deepEqual(group.weight!.shape, [layer.attn.q.outFeatures + 2 * layer.attn.k.outFeatures, 64]);
  assert.ok(group.bias, "q/k/v biases are concatenated too");

  const x = Tensor.randn([3, 64]);
  const outputs = (on: boolean) =>
    withConcat(on, () => noGrad(() => group.forward(x).map((y) => y.toFloat32Array())));
  // an in-place update of k's weight (a fold, AdamW) is what the shared product computes with
  noGrad(() => layer.attn.k.weight.mul_(2));
  const kOwn = noGrad(() => x.linear(layer.attn.k.weight, layer.attn.k.bias)).toFloat32Array();
  assert.ok(relDiff(outputs(true)[1], kOwn) < 1e-6);
  assert.ok(
    relDiff(
      noGrad(() => group.weight!.narrow(0, layer.attn.q.outFeatures, 32)).toFloat32Array(),
      layer.attn.k.weight.toFloat32Array(),
    ) === 0,
  );
  // a replaced weight (no longer the group's view): each linear's own product again
  const v = layer.attn.v;
  v.weight = keep(Tensor.randn([v.outFeatures, 64]));
  const vOwn = noGrad(() => x.linear(v.weight, v.bias)).toFloat32Array();
  assert.ok(relDiff(outputs(true)[2], vOwn) < 1e-6);
  assert.deepEqual(outputs(true), outputs(false));
});

test("at the 0.5B shape (bf16): gate/up through one product with GoodVibe rows, and q/k/v, match separate products", () => {
  manualSeed(7);
  const H = 896;
  const lin = (name: string, out: number, bias: boolean) =>
    new Linear(
      name,
      keep(Tensor.randn([out, H]).mul(0.03).to("bfloat16")),
      bias ? keep(Tensor.randn([out]).mul(0.1).to("bfloat16")) : null,
    );
  const mlp = new MLP(lin("gate", 4864, false), lin("up", 4864, false), lin("down", H, false), "silu");
  // down's input is 4864 wide: make it so
  mlp.down.weight = keep(Tensor.randn([H, 4864]).mul(0.02).to("bfloat16"));
  // GoodVibe rows on gate: updated in place on gate's block of the shared output
  const rows = [0, 17, 400, 4863];
  mlp.gate.adapter = new ClusterRowAdapter(
    { rows, clusters: [0, 1, 1, 0], nClusters: 2 },
    H,
    Tensor.randn([2, H]).mul(0.05),
  );
  const U = (mlp.gate.adapter as ClusterRowAdapter).U;
  const qkv = new LinearGroup([lin("q", 896, true), lin("k", 128, true), lin("v", 128, true)]);
  const run = (on: boolean) =>
    withConcat(on, () =>
      withGrad(() => {
        const x = Tensor.randn([1, 64, H]).to("bfloat16").requiresGrad_();
        const y = mlp.forward(x);
        const parts = qkv.forward(x);
        const loss = y
          .float()
          .square()
          .sum()
          .add(parts.map((p) => p.float().square().sum()).reduce((a, b) => a.add(b)));
        loss.backward();
        const dU = U.grad!.toFloat32Array();
        U.clearGrad();
        return {
          y: y.toFloat32Array(),
          q: parts[0].toFloat32Array(),
          v: parts[2].toFloat32Array(),
          dx: x.grad!.toFloat32Array(),
          dU,
        };
      }),
    );
  manualSeed(1);
  const a = run(true);
  manualSeed(1);
  const b = run(false);
  for (const k of ["y", "q", "v", "dx", "dU"] as const)
    assert.ok(relDiff(a[k], b[k]) < 0.02, `${k}: ${relDiff(a[k], b[k])}`);
});
