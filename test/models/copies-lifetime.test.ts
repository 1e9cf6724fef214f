/**
 * How long frozenDx's weight copies live (models/frozen-dx.ts "Lifetime", native/src/frozen_linear.cc): a model's
 * release drops its copies and no other model's, a weight's copies go the moment its last handle is freed (disposed,
 * or a dropped model collected) and not while a view of it lives, and the values are the same bit for bit before and
 * after a release (a later product makes the copy again). Float32 copies, forced on as in f32-copies.test.ts, so that
 * these run on every CPU.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { frozenLinearCache, setFusedOp } from "../../src/tensor/index.js";
import { lossAndLinearGrads, midModel, withF32Products } from "./mid-model.js";

const MiB = 1024 ** 2;
const TOKENS = Array.from({ length: 64 }, (_, t) => (t * 613 + 5) % 1024);
/** midModel's copies in float32: q/k/v and gate/up as one weight each, o, down, per layer (lm_head gets none) */
const MODEL_COPIES = { count: 8, bytes: 28.5 * MiB };
const defaultSetting = process.env.GOODVIBE_FUSED
  ? "GOODVIBE_FUSED is set: the default setting is not in force"
  : false;

function same(got: Map<string, number[]>, want: Map<string, number[]>, what: string) {
  assert.deepEqual([...got.keys()], [...want.keys()], what);
  for (const [name, v] of want) assert.deepEqual(got.get(name), v, `${name} (${what})`);
}

test(
  "a model's release drops its weight copies and no other model's; the values are the same before and after",
  { skip: defaultSetting },
  () =>
    withF32Products(() => {
      // two models of the same weights (midModel seeds its own): one set of values, two sets of copies
      const a = midModel();
      const b = midModel();
      setFusedOp("frozenDx", false);
      const want = lossAndLinearGrads(a, TOKENS);
      assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
      setFusedOp("frozenDx", null);
      same(lossAndLinearGrads(a, TOKENS), want, "a, copies made");
      assert.deepEqual(frozenLinearCache(), MODEL_COPIES);
      same(lossAndLinearGrads(b, TOKENS), want, "b, copies made");
      assert.deepEqual(frozenLinearCache(), { count: 16, bytes: 57 * MiB });

      const r = a.frozenDx.release();
      // no block here reaches 32 MiB (huge blocks) and the opt-in cache is off: no idle block to hand back
      assert.deepEqual(r, {
        ...MODEL_COPIES,
        idleBytes: 0,
        text: "frozenDx: 8 weight copies released (28.5 MiB)",
      });
      assert.deepEqual(frozenLinearCache(), MODEL_COPIES, "b's stay");
      same(lossAndLinearGrads(b, TOKENS), want, "b after a's release");
      assert.deepEqual(frozenLinearCache(), MODEL_COPIES, "b's copies served, none made");
      assert.equal(a.frozenDx.release().count, 0, "nothing of a's left to release");

      same(lossAndLinearGrads(a, TOKENS), want, "a after its release: its copies made again");
      assert.deepEqual(frozenLinearCache(), { count: 16, bytes: 57 * MiB });
      a.frozenDx.release();
      b.frozenDx.release();
      assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
    }),
);

test(
  "a weight's copy goes when its last handle is freed, not while a view of its storage lives",
  { skip: defaultSetting },
  () =>
    withF32Products(() => {
      const model = midModel();
      lossAndLinearGrads(model, TOKENS);
      assert.deepEqual(frozenLinearCache(), MODEL_COPIES);
      // layer 0's q/k/v: one concatenated weight, each linear's weight a view of its rows (models/linear.ts)
      const attn = model.layers[0].attn;
      const slot = model.frozenDx.slots.find((s) => s.name.startsWith("model.layers.0.self_attn.q_proj+"))!;
      const group = slot.weight!;
      assert.equal(group.size(0), attn.q.outFeatures + attn.k.outFeatures + attn.v.outFeatures);
      for (const lin of [attn.q, attn.k, attn.v]) {
        lin.weight.dispose();
        assert.deepEqual(frozenLinearCache(), MODEL_COPIES, `${lin.name}'s view freed, the weight not`);
      }
      group.dispose();
      const qkv = group.numel * 4;
      assert.deepEqual(
        frozenLinearCache(),
        { count: 7, bytes: MODEL_COPIES.bytes - qkv },
        "the last handle freed",
      );
      // a weight of its own (o_proj): one handle
      const o = attn.o.weight;
      const oBytes = o.numel * 4;
      o.dispose();
      assert.deepEqual(frozenLinearCache(), { count: 6, bytes: MODEL_COPIES.bytes - qkv - oBytes });
    }),
);

test(
  "a dropped model's copies go when it is collected, with no product or release after it",
  { skip: defaultSetting },
  () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const mid = path.resolve(here, "mid-model.js");
    const tensor = path.resolve(here, "../../src/tensor/index.js");
    const r = spawnSync(
      process.execPath,
      [
        "--expose-gc",
        "--input-type=module",
        "-e",
        `const { midModel, lossAndLinearGrads } = await import(${JSON.stringify(mid)});` +
          ` const t = await import(${JSON.stringify(tensor)}); t.setF32Products("on");` +
          ` let m = midModel(); lossAndLinearGrads(m, ${JSON.stringify(TOKENS)});` +
          ` console.log(JSON.stringify(t.frozenLinearCache())); m = null;` +
          // the handles' finalizers run after the collection that finds them unreachable
          ` for (let i = 0; i < 4; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }` +
          ` console.log(JSON.stringify(t.frozenLinearCache()));`,
      ],
      { env: { ...process.env, GOODVIBE_FUSED: "" }, encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    const [made, after] = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(made, MODEL_COPIES);
    assert.deepEqual(after, { count: 0, bytes: 0 });
  },
);
