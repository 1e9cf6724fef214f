/**
 * frozenDx where CPU bf16 products are computed in float32 (tensor.ts f32Products; forced on here, so these tests run
 * on every CPU): the copy held is a frozen weight's float32 copy (models/frozen-dx.ts, native/src/frozen_linear.cc),
 * read by the forward and by dX instead of the per-call upcast. Checked against the per-call upcast (frozenDx off):
 * the loss, the logits, every linear output's gradient and GoodVibe's cluster updates' gradients bit
 * for bit; a weight changed in place (an in-place op, AdamW's native step through raw pointers) is never served from
 * its copy made before; the budget counts float32 bytes; other settings hold no float32 copy.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type DecoderModel,
  frozenCopyKind,
  frozenDxMode,
  setFrozenDxBudget,
} from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { attachFull } from "../../src/method/full.js";
import { optimizerStep } from "../../src/method/train.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import {
  AdamW,
  Tensor,
  crossEntropy,
  frozenLinearCache,
  keep,
  manualSeed,
  noGrad,
  setF32Products,
  setFusedOp,
} from "../../src/tensor/index.js";
import { lossAndLinearGrads, midModel, withF32Products } from "./mid-model.js";

const MiB = 1024 ** 2;
const TOKENS = Array.from({ length: 64 }, (_, t) => (t * 613 + 5) % 1024);
const defaultSetting = process.env.GOODVIBE_FUSED
  ? "GOODVIBE_FUSED is set: the default setting is not in force"
  : false;

/**
 * One pass of `model` over TOKENS with frozenDx `on` (the default: the budgeted plan) or off (W upcast on every
 * call): the logits without a graph, then the loss (at every next position, or at the last only: lm_head's product
 * has one row), every linear output's gradient and each trainable tensor's. (The embeddings need no gradient here:
 * they are the tied lm_head's weight, which would then train, and a weight that trains gets no copy.)
 */
function pass(
  model: DecoderModel,
  trainable: Map<string, Tensor>,
  on: boolean,
  lastOnly = false,
): Map<string, number[]> {
  const prev = setFusedOp("frozenDx", on ? null : false);
  try {
    const ids = Tensor.fromArray(TOKENS, [1, TOKENS.length], "int64");
    const out = new Map<string, number[]>([
      ["logits", [...noGrad(() => model.forward(ids)).toFloat32Array()]],
      ...lossAndLinearGrads(model, TOKENS, lastOnly),
    ]);
    for (const [name, p] of trainable) out.set(`${name} grad`, [...p.grad!.toFloat32Array()]);
    return out;
  } finally {
    for (const p of trainable.values()) p.clearGrad();
    setFusedOp("frozenDx", prev);
  }
}

function same(got: Map<string, number[]>, want: Map<string, number[]>, what: string) {
  assert.deepEqual([...got.keys()], [...want.keys()], what);
  for (const [name, v] of want) assert.deepEqual(got.get(name), v, `${name} (${what})`);
}

test(
  "float32 copies: the products' values are the per-call upcast's bit for bit, GoodVibe rows included; " +
    "every weight of the plan copied once, in float32 bytes",
  { skip: defaultSetting },
  () =>
    withF32Products(() => {
      const model = midModel();
      manualSeed(7);
      const sel = new Map<string, RowSelection>();
      const init = new Map<string, Tensor>();
      for (const lin of model.linears()) {
        sel.set(lin.name, { rows: [0, 2, lin.outFeatures - 1], clusters: [0, 1, 0], nClusters: 2 });
        init.set(`${lin.name}.U`, Tensor.randn([2, lin.inFeatures]).mul(0.05));
      }
      const trainable = attachGoodVibe(model, sel, init).trainable;
      assert.equal(frozenDxMode("cpu"), "auto");
      const want = pass(model, trainable, false);
      const wantLast = pass(model, trainable, false, true);
      assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 }, "no copy while frozenDx is off");
      const got = pass(model, trainable, true);
      same(got, want, "float32 copies");
      // q/k/v and gate/up as one weight each (concatLinear), o, down per layer: 8 weights, 14.25 MiB in bf16, twice
      // that in float32; lm_head none (no faster from a float32 copy)
      assert.deepEqual(frozenLinearCache(), { count: 8, bytes: 28.5 * MiB });
      assert.equal(model.frozenDx.describeHeld(), "frozenDx: 8 float32 weight copies held (28.5 MiB)");
      assert.match(
        model.frozenDx.describe(),
        /^frozenDx: float32 weight copies allowed for 8 of 9 frozen products' weights \(28\.5 MiB in all\) within the budget .*% of .* available.*first product.*; lm_head upcast per call \(no faster from a float32 copy\)$/,
      );
      same(pass(model, trainable, true, true), wantLast, "one-row lm_head product");
      assert.deepEqual(frozenLinearCache(), { count: 8, bytes: 28.5 * MiB }, "the same copies, none added");
    }),
);

test(
  "float32 copies: a weight changed in place, by an in-place op or by AdamW's native step, is never served " +
    "from its copy made before",
  { skip: defaultSetting },
  () =>
    withF32Products(() => {
      const model = midModel();
      const none = new Map<string, Tensor>();
      const before = pass(model, none, true);
      assert.equal(frozenLinearCache().count, 8);
      // an in-place update of some rows of one linear (a view of its group's concatenated weight) and of lm_head
      // (the tied embeddings)
      noGrad(() => {
        model.layers[1].mlp.up.weight.narrow(0, 3, 5).mul_(2);
        model.layers[0].attn.q.weight.narrow(0, 0, 1).zero_();
        model.head.weight.narrow(0, 40, 4).mul_(-1);
      });
      const updated = pass(model, none, false);
      assert.notDeepEqual(updated.get("loss"), before.get("loss"), "the update changes the values");
      same(pass(model, none, true), updated, "after an in-place update");
      assert.equal(frozenLinearCache().count, 8, "each stale copy replaced, not kept beside the new one");

      // full fine-tuning in mixed precision: AdamW writes the bf16 weights through raw pointers (train_ops.cc)
      const full = attachFull(model);
      const opt = new AdamW([...full.trainable.values()], { lr: 1e-2, weightDecay: 0 });
      const T = TOKENS.length;
      const ids = Tensor.fromArray(TOKENS, [1, T], "int64");
      model.forwardBackward(ids, {}, (h) =>
        crossEntropy(
          model.logitsFrom(h.narrow(1, 0, T - 1)).reshape([T - 1, -1]),
          ids.narrow(1, 1, T - 1).reshape([T - 1]),
        ),
      );
      optimizerStep(full, opt, 1.0);
      full.detach();
      const stepped = pass(model, none, false);
      assert.notDeepEqual(stepped.get("loss"), updated.get("loss"), "the step changes the values");
      same(pass(model, none, true), stepped, "after an AdamW step");
    }),
);

test(
  "float32 copies within the budget: float32 bytes counted, largest decoder weights first, the rest upcast per call",
  { skip: defaultSetting },
  () =>
    withF32Products(() => {
      const model = midModel();
      const none = new Map<string, Tensor>();
      const want = pass(model, none, false);
      const prev = setFrozenDxBudget("12MiB");
      try {
        // gate/up's 2048 x 768 is 6 MiB in float32 (3 in bf16): both layers' fill the budget
        same(pass(model, none, true), want, "12 MiB budget");
        assert.deepEqual(frozenLinearCache(), { count: 2, bytes: 12 * MiB });
        assert.match(
          model.frozenDx.describe(),
          /float32 weight copies allowed for 2 of 9 .* \(12\.0 MiB in all\) within the budget 12\.0 MiB .*; 6 left to the per-call upcast \(16\.5 MiB: over the budget\); lm_head upcast per call/,
        );
        frozenLinearCache(true);
        setFrozenDxBudget("0");
        same(pass(model, none, true), want, "zero budget");
        assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
      } finally {
        setFrozenDxBudget(prev);
      }
    }),
);

test("float32 copies only where bf16 products are computed in float32, and only of frozen weights", () => {
  assert.equal(frozenCopyKind("cuda"), "transposed");
  const prevMode = setF32Products("off");
  try {
    assert.equal(frozenCopyKind("cpu"), "transposed");
  } finally {
    setF32Products(prevMode);
  }
  withF32Products(() => {
    // a weight that requires a gradient (full fine-tuning) gets none, even with frozenDx forced on
    const lin = midModel().layers[0].mlp.down;
    const saved = lin.weight;
    const w = keep(noGrad(() => Tensor.randn([768, 1024]).mul(0.05).to("bfloat16"))).requiresGrad_();
    setFusedOp("frozenDx", true);
    try {
      lin.weight = w;
      lin
        .forward(Tensor.randn([4, 1024]).to("bfloat16"))
        .float()
        .sum()
        .backward();
      assert.ok(w.grad, "the weight got its gradient");
      assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 }, "no copy of a weight that trains");
      // the same linear frozen again: its copy is made
      w.requiresGrad_(false);
      noGrad(() => lin.forward(Tensor.randn([4, 1024]).to("bfloat16")));
      assert.deepEqual(frozenLinearCache(), { count: 1, bytes: 768 * 1024 * 4 });
    } finally {
      lin.weight = saved;
      w.clearGrad();
      w.dispose();
    }
  });
});

test(
  "a float32 model has no frozen bf16 weight to copy: none is made and the log says so instead of '0 of 0'",
  { skip: defaultSetting },
  () =>
    withF32Products(() => {
      const model = midModel("float32");
      lossAndLinearGrads(model, TOKENS);
      assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
      assert.equal(
        model.frozenDx.describe(),
        "frozenDx: no frozen bf16 weights (float32 compute or all weights train): no weight copies",
      );
    }),
);
