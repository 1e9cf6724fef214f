/**
 * fusedOps("frozenDx") (models/linear.ts → tensor.ts frozenLinear): a frozen bf16 weight's dX from its transposed
 * copy, against libtorch's linear backward, on every fixture family in bfloat16 with the one q/k/v and gate/up
 * products on and off: the loss, the gradient of every linear output (what identification reads), of the
 * embeddings, and of GoodVibe's cluster updates U on every linear. Every fixture test against PyTorch runs it too on
 * its fused path (GOODVIBE_FUSED=1 forces every fused op).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type DecoderModel } from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import {
  Tensor,
  crossEntropy,
  frozenLinearCache,
  manualSeed,
  noGrad,
  setFusedOp,
} from "../../src/tensor/index.js";
import { tapLinears, untapLinears } from "./taps.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const IDS = [17, 301, 5, 88, 120, 7, 450, 33, 9, 260, 71, 12, 400, 3, 99, 250];

/** Loss, every linear output's gradient, the embeddings' and every trainable tensor's, with the switches given. */
function pass(model: DecoderModel, trainable: Map<string, Tensor>, frozenDx: boolean, concat: boolean) {
  const prev = [setFusedOp("frozenDx", frozenDx), setFusedOp("concatLinear", concat)];
  const out = new Map<string, number[]>();
  const kept = tapLinears(model);
  model.embed.requiresGrad_();
  try {
    const T = IDS.length;
    const ids = Tensor.fromArray(IDS, [1, T], "int64");
    const loss = model.forwardBackward(ids, {}, (h) =>
      crossEntropy(
        model.logitsFrom(h.narrow(1, 0, T - 1)).reshape([T - 1, -1]),
        ids.narrow(1, 1, T - 1).reshape([T - 1]),
      ),
    );
    out.set("loss", [loss]);
    for (const [name, y] of kept) {
      out.set(`${name} grad`, [...y.grad!.toFloat32Array()]);
      y.dispose();
    }
    out.set("embed grad", [...model.embed.grad!.toFloat32Array()]);
    for (const [name, p] of trainable) out.set(`${name} grad`, [...p.grad!.toFloat32Array()]);
  } finally {
    untapLinears(model);
    model.embed.clearGrad();
    model.embed.requiresGrad_(false);
    for (const p of trainable.values()) p.clearGrad();
    setFusedOp("frozenDx", prev[0]);
    setFusedOp("concatLinear", prev[1]);
  }
  return out;
}

for (const family of ["llama", "qwen2", "qwen3", "gemma3"]) {
  test(`${family} (bfloat16): dX from the transposed weights equals libtorch's, bit for bit, GoodVibe rows included`, () => {
    const model = loadModel(path.join(FIX, family), { dtype: "bfloat16" });
    manualSeed(7);
    const sel = new Map<string, RowSelection>();
    const init = new Map<string, Tensor>();
    for (const lin of model.linears()) {
      sel.set(lin.name, { rows: [0, 2, lin.outFeatures - 1], clusters: [0, 1, 0], nClusters: 2 });
      init.set(`${lin.name}.U`, Tensor.randn([2, lin.inFeatures]).mul(0.05));
    }
    const trainable = attachGoodVibe(model, sel, init).trainable;
    frozenLinearCache(true);
    for (const concat of [true, false]) {
      const want = pass(model, trainable, false, concat);
      assert.equal(frozenLinearCache().count, 0, "no copy while the switch is off");
      const got = pass(model, trainable, true, concat);
      assert.ok(frozenLinearCache().count > 0, "the transposed copies were used");
      assert.deepEqual([...got.keys()], [...want.keys()]);
      for (const [name, v] of want) assert.deepEqual(got.get(name), v, `${name} (concat ${concat})`);
      frozenLinearCache(true);
    }
    noGrad(() => undefined);
  });
}
