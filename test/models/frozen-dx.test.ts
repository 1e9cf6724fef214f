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
import { spawnSync } from "node:child_process";
import {
  DecoderModel,
  FrozenDxPlan,
  frozenDxMode,
  loadModel,
  parseMemoryBudget,
  setFrozenDxBudget,
} from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import {
  Tensor,
  crossEntropy,
  f32Products,
  frozenLinearCache,
  keep,
  manualSeed,
  noGrad,
  setFusedOp,
} from "../../src/tensor/index.js";
import { lossAndLinearGrads, midModel } from "./mid-model.js";

/**
 * Transposed copies are made where bf16 products are libtorch's own (oneDNN's on AVX-512 CPUs). Where they are
 * computed in float32 (f32Products: libtorch's own accumulate in bf16 on this CPU) the copies are float32 ones
 * (test/models/f32-copies.test.ts); libtorch's own bf16 backward is then not the float32 product a transposed copy's
 * dX is, so "bit for bit" cannot hold there either.
 */
const noCopies = f32Products()
  ? "bf16 products are computed in float32 on this CPU: no transposed copies (f32-products.test.ts)"
  : false;

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const IDS = [17, 301, 5, 88, 120, 7, 450, 33, 9, 260, 71, 12, 400, 3, 99, 250];

/** Loss, every linear output's gradient, the embeddings' and every trainable tensor's, with the switches given. */
function pass(model: DecoderModel, trainable: Map<string, Tensor>, frozenDx: boolean, concat: boolean) {
  const prev = [setFusedOp("frozenDx", frozenDx), setFusedOp("concatLinear", concat)];
  model.embed.requiresGrad_();
  try {
    const out = lossAndLinearGrads(model, IDS);
    out.set("embed grad", [...model.embed.grad!.toFloat32Array()]);
    for (const [name, p] of trainable) out.set(`${name} grad`, [...p.grad!.toFloat32Array()]);
    return out;
  } finally {
    model.embed.clearGrad();
    model.embed.requiresGrad_(false);
    for (const p of trainable.values()) p.clearGrad();
    setFusedOp("frozenDx", prev[0]);
    setFusedOp("concatLinear", prev[1]);
  }
}

for (const family of ["llama", "qwen2", "qwen3", "gemma3"]) {
  test(
    `${family} (bfloat16): dX from the transposed weights equals libtorch's, bit for bit, GoodVibe rows included`,
    { skip: noCopies },
    () => {
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
    },
  );
}

// ---------------------------------------------------------------- the default: copies within a memory budget

const MiB = 1024 ** 2;
const TOKENS = Array.from({ length: 64 }, (_, t) => (t * 613 + 5) % 1024);

/** The weights the addon holds transposed copies of, by slot name, after a pass (copies dropped first). */
function copiesAfter(model: DecoderModel, lastOnly: boolean, budget: string | null) {
  frozenLinearCache(true);
  const prev = setFrozenDxBudget(budget);
  try {
    const values = lossAndLinearGrads(model, TOKENS, lastOnly);
    return {
      values,
      held: frozenLinearCache(),
      choice: model.frozenDx.choice()!,
      described: model.frozenDx.describe(),
    };
  } finally {
    setFrozenDxBudget(prev);
  }
}

const defaultSetting = process.env.GOODVIBE_FUSED
  ? "GOODVIBE_FUSED is set: the default setting is not in force"
  : noCopies;

test(
  "frozenDx by default: copies within the budget, largest products first, none over it, the same values",
  { skip: defaultSetting },
  () => {
    const model = midModel();
    assert.equal(frozenDxMode("cpu"), "auto");
    setFusedOp("frozenDx", false);
    frozenLinearCache(true);
    const want = lossAndLinearGrads(model, TOKENS);
    const wantLast = lossAndLinearGrads(model, TOKENS, true);
    assert.equal(frozenLinearCache().count, 0, "no copy while frozenDx is off");
    setFusedOp("frozenDx", null);
    try {
      const same = (got: Map<string, number[]>, ref: Map<string, number[]>, what: string) => {
        assert.deepEqual([...got.keys()], [...ref.keys()]);
        for (const [name, v] of ref) assert.deepEqual(got.get(name), v, `${name} (${what})`);
      };
      // a budget that holds everything (the default: a share of MemAvailable, far above 15.75 MiB): every product's
      // weight, lm_head included when its product has 63 rows, not when it has one
      const all = copiesAfter(model, false, null);
      same(all.values, want, "default budget");
      assert.equal(all.held.count, 9);
      assert.equal(model.frozenDx.describeHeld(), "frozenDx: 9 transposed weight copies held (15.8 MiB)");
      assert.equal(all.held.bytes, 15.75 * MiB);
      assert.ok(all.held.bytes <= all.choice.budgetBytes, "within the budget");
      assert.match(
        all.described,
        /^frozenDx: transposed weight copies allowed for 9 of 9 frozen products' weights \(15\.8 MiB in all\) within the budget .*% of .* available/,
      );
      const last = copiesAfter(model, true, null);
      same(last.values, wantLast, "one-row lm_head product");
      assert.equal(last.held.count, 8, "no copy of lm_head for a one-row product");
      assert.equal(last.held.bytes, 14.25 * MiB);
      // 6 MiB: both gate/up weights (3 MiB each), then nothing else fits
      const two = copiesAfter(model, false, "6MiB");
      same(two.values, want, "6 MiB budget");
      assert.deepEqual(two.held, { count: 2, bytes: 6 * MiB });
      assert.deepEqual(
        two.choice.chosen.map((s) => s.name),
        [0, 1].map((i) => `model.layers.${i}.mlp.gate_proj+model.layers.${i}.mlp.up_proj`),
      );
      assert.match(
        two.described,
        /2 of 9 .* \(6\.00 MiB in all\) within the budget 6\.00 MiB .*; 7 left to libtorch's backward \(9\.75 MiB: over the budget\)/,
      );
      // 4.6 MiB: one gate/up (3 MiB), then the first q/k/v (1.5 MiB); nothing after them fits in what is left
      const some = copiesAfter(model, false, "4.6MiB");
      same(some.values, want, "4.6 MiB budget");
      assert.ok(some.held.bytes <= 4.6 * MiB, `${some.held.bytes} bytes held`);
      assert.deepEqual(some.held, { count: 2, bytes: 4.5 * MiB });
      assert.deepEqual(
        some.choice.chosen.map((s) => s.name),
        [
          "model.layers.0.mlp.gate_proj+model.layers.0.mlp.up_proj",
          "model.layers.0.self_attn.q_proj+model.layers.0.self_attn.k_proj+model.layers.0.self_attn.v_proj",
        ],
      );
      // no budget, no copy
      const none = copiesAfter(model, false, "0");
      same(none.values, want, "zero budget");
      assert.deepEqual(none.held, { count: 0, bytes: 0 });
      assert.match(none.described, /0 of 9 .* \(0 bytes in all\) within the budget 0 bytes/);
    } finally {
      setFusedOp("frozenDx", null);
      frozenLinearCache(true);
    }
  },
);

test(
  "frozenDx by default: no copy of a small weight (a fixture's), however many rows",
  { skip: defaultSetting },
  () => {
    const model = loadModel(path.join(FIX, "qwen2"), { dtype: "bfloat16" });
    frozenLinearCache(true);
    const want = pass(model, new Map(), false, true);
    setFusedOp("frozenDx", null);
    try {
      const T = IDS.length;
      const ids = Tensor.fromArray(IDS, [1, T], "int64");
      const loss = model.forwardBackward(ids, {}, (h) =>
        crossEntropy(
          model.logitsFrom(h.narrow(1, 0, T - 1)).reshape([T - 1, -1]),
          ids.narrow(1, 1, T - 1).reshape([T - 1]),
        ),
      );
      assert.deepEqual(want.get("loss"), [loss]);
      assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
      assert.match(
        model.frozenDx.describe(),
        /allowed for 0 of 9 frozen products' weights \(0 bytes in all\).*; 9 not planned \(weights under 524288 elements\)/,
      );
    } finally {
      frozenLinearCache(true);
    }
  },
);

test(
  "frozenDx forced on: every frozen product without a budget set, within it when one is set",
  { skip: noCopies },
  () => {
    const model = midModel();
    setFusedOp("frozenDx", true);
    try {
      const all = copiesAfter(model, true, null);
      assert.equal(all.held.count, 9, "lm_head's one-row product too");
      assert.equal(all.choice.budgetBytes, Infinity);
      assert.match(all.described, /9 of 9 .* within the budget no limit .*forced on: each made/);
      const two = copiesAfter(model, true, "6MiB");
      assert.deepEqual(two.held, { count: 2, bytes: 6 * MiB });
    } finally {
      setFusedOp("frozenDx", null);
      frozenLinearCache(true);
    }
  },
);

test("frozenDx budgets: bytes with units or a share, anything else refused by name", () => {
  assert.deepEqual(parseMemoryBudget("0", "B"), { bytes: 0 });
  assert.deepEqual(parseMemoryBudget("1500000000", "B"), { bytes: 1500000000 });
  assert.deepEqual(parseMemoryBudget("512MiB", "B"), { bytes: 512 * MiB });
  assert.deepEqual(parseMemoryBudget(" 2 gib ", "B"), { bytes: 2 * 1024 * MiB });
  assert.deepEqual(parseMemoryBudget("1.5GB", "B"), { bytes: 1.5e9 });
  assert.deepEqual(parseMemoryBudget("25%", "B"), { share: 0.25 });
  assert.deepEqual(parseMemoryBudget("100%", "B"), { share: 1 });
  for (const bad of ["", "-1", "0%", "101%", "2 GiBs", "lots", "1e9", "NaN"])
    assert.throws(
      () => parseMemoryBudget(bad, "GOODVIBE_FROZEN_DX_BUDGET"),
      (e: Error) =>
        e.name === "InputError" &&
        e.message.startsWith(`GOODVIBE_FROZEN_DX_BUDGET=${bad}: not a memory budget`),
      bad,
    );
  assert.throws(() => setFrozenDxBudget("half"), /frozenDx budget=half: not a memory budget/);
  // a share on another device is refused (its free memory is not known), bytes are not
  const plan = new FrozenDxPlan([], "cuda");
  setFusedOp("frozenDx", true);
  const prev = setFrozenDxBudget("25%");
  try {
    assert.throws(() => plan.choice(), /a share of the available memory is known only on the CPU/);
    setFrozenDxBudget("8GiB");
    assert.equal(plan.choice()!.budgetBytes, 8 * 1024 * MiB);
  } finally {
    setFrozenDxBudget(prev);
    setFusedOp("frozenDx", null);
  }
});

test("a malformed GOODVIBE_FROZEN_DX_BUDGET loads, then is refused by name when a plan needs it", () => {
  const mod = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/models/index.js");
  const r = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const m = await import(${JSON.stringify(mod)}); console.log("loaded");` +
        ` try { new m.FrozenDxPlan([], "cpu").choice(); } catch (e) { console.log(e.name, e.message); }`,
    ],
    // libtorch's own bf16 products (GOODVIBE_F32_PRODUCTS=0): the budget is refused the same way either way
    {
      env: {
        ...process.env,
        GOODVIBE_FUSED: "",
        GOODVIBE_F32_PRODUCTS: "0",
        GOODVIBE_FROZEN_DX_BUDGET: "a lot",
      },
      encoding: "utf8",
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const [first, second] = r.stdout.trim().split("\n");
  assert.equal(first, "loaded");
  assert.match(second!, /^InputError GOODVIBE_FROZEN_DX_BUDGET=a lot: not a memory budget/);
});
