/**
 * Identification's per-sample gradient importances come from a native hook on every linear output
 * (meanAbsGradHook, inside the backward). They must be bit for bit what the earlier code computed from retained
 * gradients: y.retainGrad() on every output, then per module g.abs().float().sum(1).div(lengths) — written out
 * below as it was — on every fixture family, in float32 and bfloat16, for a left-padded batch of samples of
 * different lengths, with gradient checkpointing on and off, on both decoder paths. Any change to the arithmetic
 * (the division, the dtype |g| is taken in, the order of the sum) changes low bits of some of these values.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { onBothDecoderPaths } from "../models/decoder-paths.js";
import { loadModel } from "../../src/models/index.js";
import type { DecoderModel } from "../../src/models/decoder.js";
import { runBatch, type IdentifyOptions, type IdentifySample } from "../../src/method/goodvibe/identify.js";
import { judgeLossHead } from "../../src/method/losses.js";
import { Tensor, keep, noGrad, tidy } from "../../src/tensor/index.js";
import { readGoodvibeFixture } from "./goodvibe-fixture.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

/** identify.ts's gradient path before the hook: retained output gradients, reduced after the backward. */
function retainedGradientImportances(
  model: DecoderModel,
  batch: IdentifySample[],
  labelTokenIds: [number, number],
  checkpointing: boolean,
): { loss: number; importance: Map<string, Float32Array>; mutants: Map<string, Float32Array>[] } {
  return tidy(() => {
    const T = batch[0]!.inputIds.length;
    const B = batch.length;
    const ids = new Array<number>(B * T).fill(0);
    const mask = new Array<number>(B * T).fill(0);
    batch.forEach((s, b) => {
      const pad = T - s.inputIds.length;
      s.inputIds.forEach((id, t) => {
        ids[b * T + pad + t] = id;
        mask[b * T + pad + t] = 1;
      });
    });
    const padded = batch.some((s) => s.inputIds.length !== T);
    const lengths = Tensor.fromArray(
      batch.map((s) => s.inputIds.length),
      [B, 1],
    );
    const labels = Tensor.fromArray(
      batch.map((s) => s.label),
      [B],
      "int64",
    );
    const outputs = new Map<string, Tensor>();
    const linears = model.linears();
    for (const l of linears)
      l.tap = (y) => {
        if (!y.requiresGrad) return;
        y.retainGrad();
        outputs.set(l.name, keep(y));
      };
    try {
      const loss = model.forwardBackward(
        Tensor.fromArray(ids, [B, T], "int64"),
        { attentionMask: padded ? Tensor.fromArray(mask, [B, T]) : undefined },
        judgeLossHead(model, labelTokenIds, labels, "sum"),
        checkpointing,
      );
      const importance = new Map<string, Float32Array>();
      // what a slightly different reduction would give: times the reciprocal length, summed in the gradient's dtype
      const mutants = [new Map<string, Float32Array>(), new Map<string, Float32Array>()];
      for (const [name, y] of outputs) {
        const g = y.grad!;
        noGrad(() => {
          importance.set(name, g.abs().float().sum(1).div(lengths).toFloat32Array());
          mutants[0]!.set(name, g.abs().float().sum(1).mul(lengths.reciprocal()).toFloat32Array());
          mutants[1]!.set(name, g.abs().sum(1).float().div(lengths).toFloat32Array());
        });
        y.dispose();
      }
      return { loss, importance, mutants };
    } finally {
      for (const l of linears) l.tap = null;
    }
  });
}

function sameBits(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

onBothDecoderPaths(() => {
  for (const family of ["llama", "qwen2", "qwen3", "gemma3"])
    for (const dtype of ["float32", "bfloat16"] as const)
      test(`${family} ${dtype}: the gradient hook gives the retained gradients' importances bit for bit (padded batch, checkpointing on and off)`, () => {
        const dir = path.join(FIX, family);
        const { g, samples } = readGoodvibeFixture(dir);
        const model = loadModel(dir, { dtype });
        // a left-padded batch, longest first, as planBatches orders one
        const batch = [...samples].sort((a, b) => b.inputIds.length - a.inputIds.length).slice(0, 4);
        assert.ok(
          batch.some((s) => s.inputIds.length !== batch[0]!.inputIds.length),
          "the fixture's samples must differ in length for the batch to be padded",
        );
        const opts = { labelTokenIds: g.label_token_ids, mode: "gradient" } as IdentifyOptions;
        for (const checkpointing of [false, true]) {
          const want = retainedGradientImportances(model, batch, g.label_token_ids, checkpointing);
          const got = tidy(() => runBatch(model, model.linears(), batch, opts, checkpointing));
          assert.equal(got.loss, want.loss, `loss (checkpointing ${checkpointing})`);
          assert.deepEqual([...got.importance.keys()].sort(), [...want.importance.keys()].sort());
          for (const [name, w] of want.importance) {
            const at = sameBits(got.importance.get(name)!, w);
            assert.equal(at, -1, `${name} (checkpointing ${checkpointing}): element ${at}`);
          }
          // the importances are not all zero, and a reduction that divides differently (or, in bf16, sums in the
          // gradient's dtype) gives other bits somewhere: the comparison would see such a change
          assert.ok([...want.importance.values()].every((v) => v.some((x) => x > 0)));
          for (const [i, mutant] of want.mutants.entries())
            if (i === 0 || dtype === "bfloat16")
              assert.ok(
                [...mutant].some(([name, v]) => sameBits(v, want.importance.get(name)!) !== -1),
                `mutant ${i} gives the same bits everywhere`,
              );
        }
      });
});
