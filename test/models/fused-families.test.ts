/**
 * The fused decoder path (GOODVIBE_FUSED=1) against the op-by-op path (the default: transformers' eager code line
 * by line) and against PyTorch, on every fixture family: logits, and the gradient of every linear output, of
 * every norm weight and of the embeddings through a full forward + backward. The fixture tests run every case on
 * both paths (forward.test.ts: logits, padding, KV cache, generation; method/identify.test.ts and
 * method/train_step.test.ts: gradients and optimiser steps against PyTorch), and the composite kernel mode
 * (what CUDA runs) is checked here against the same PyTorch logits.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type DecoderModel } from "../../src/models/index.js";
import {
  Tensor,
  crossEntropy,
  noGrad,
  setFusedOps,
  setKernelMode,
  type DType,
} from "../../src/tensor/index.js";
import { type Nested, relDiff, flat } from "../numeric.js";
import { tapLinears, untapLinears } from "./taps.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const FAMILIES = ["llama", "qwen2", "qwen3", "gemma3"] as const;

function withFused<T>(on: boolean, fn: () => T): T {
  const prev = setFusedOps(on);
  try {
    return fn();
  } finally {
    setFusedOps(prev);
  }
}

/**
 * Loss = cross-entropy of the logits at every position against the next token, on a left-padded batch; returns
 * the logits and the gradient of every linear output (by name), every norm weight and the embedding matrix.
 */
function pass(model: DecoderModel, ids: Tensor, mask: Tensor): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  const kept = tapLinears(model);
  const params = [
    model.embed,
    ...model.layers.flatMap((l) => l.norms.map((n) => n.weight)),
    model.norm.weight,
  ];
  for (const p of params) p.requiresGrad_();
  try {
    const [B, T] = ids.shape;
    // no loss at or onto padding positions
    const real = noGrad(() => mask.narrow(1, 0, T - 1).mul(mask.narrow(1, 1, T - 1)));
    const targets = noGrad(() => ids.narrow(1, 1, T - 1).maskedFill(real.eq(0), -100));
    model.forwardBackward(ids, { attentionMask: mask }, (h) => {
      const logits = model.logitsFrom(h.narrow(1, 0, T - 1));
      out.set("logits", logits.detach().toFloat32Array());
      return crossEntropy(logits.reshape([B * (T - 1), -1]), targets.reshape([B * (T - 1)]));
    });
    for (const [name, y] of kept) {
      // padding positions carry no gradient in either path; their forward values are not defined
      out.set(`${name} grad`, noGrad(() => y.grad!.mul(mask.unsqueeze(-1).to(y.dtype))).toFloat32Array());
      y.dispose();
    }
    out.set("embed grad", model.embed.grad!.toFloat32Array());
    model.layers.forEach((l, i) =>
      l.norms.forEach((n) => out.set(`${n.name} grad (layer ${i})`, n.weight.grad!.toFloat32Array())),
    );
    out.set("final norm grad", model.norm.weight.grad!.toFloat32Array());
  } finally {
    untapLinears(model);
    for (const p of params) {
      p.clearGrad();
      p.requiresGrad_(false);
    }
  }
  return out;
}

function batch(): { ids: Tensor; mask: Tensor } {
  const rows = [
    [0, 0, 0, 17, 301, 5, 88, 120, 7, 450, 33, 9, 260, 71],
    [12, 400, 3, 99, 250, 18, 77, 6, 310, 44, 2, 128, 500, 61],
  ];
  const mask = rows.map((r, b) => r.map((_, t) => (b === 0 && t < 3 ? 0 : 1)));
  return {
    ids: Tensor.fromArray(rows.flat(), [2, 14], "int64"),
    mask: Tensor.fromArray(mask.flat(), [2, 14], "int64"),
  };
}

const LOGITS_TOL: Record<string, number> = { float32: 1e-5, bfloat16: 0.03 };
const GRAD_TOL: Record<string, number> = { float32: 1e-4, bfloat16: 0.1 };

for (const family of FAMILIES) {
  for (const dtype of ["float32", "bfloat16"] as DType[]) {
    test(`${family} (${dtype}): fused and op-by-op paths agree on logits and every gradient`, () => {
      const model = loadModel(path.join(FIX, family), { dtype });
      const { ids, mask } = batch();
      const fused = withFused(true, () => pass(model, ids, mask));
      const eager = withFused(false, () => pass(model, ids, mask));
      assert.deepEqual([...fused.keys()], [...eager.keys()]);
      const worst: string[] = [];
      for (const [name, a] of fused) {
        // logits at padding positions are not defined (a padding query sees no key)
        const sel = (x: Float32Array) =>
          name === "logits" ? x.filter((_, i) => !(i < 13 * 512 && Math.floor(i / 512) < 3)) : x;
        const d = relDiff(sel(a), sel(eager.get(name)!));
        const tol = name === "logits" ? LOGITS_TOL[dtype] : GRAD_TOL[dtype];
        if (!(d <= tol)) worst.push(`${name}: ${d.toExponential(2)} > ${tol}`);
      }
      assert.deepEqual(worst, [], "fused vs op-by-op, relative to the largest value");
    });
  }

  test(`${family}: the composite kernels (what CUDA runs) give PyTorch's logits`, () => {
    const cases = readFixtureJson(path.join(FIX, family, "cases.json.gz"));
    const model = loadModel(path.join(FIX, family));
    const ids = Tensor.fromArray(flat(cases.batch.input_ids), [2, 12], "int64");
    setKernelMode("composite");
    let logits: Float32Array;
    try {
      logits = noGrad(() => model.forward(ids)).toFloat32Array();
    } finally {
      setKernelMode("native");
    }
    const want = flat(cases.batch.logits);
    let d = 0;
    for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(logits[i] - want[i]));
    assert.ok(d < 1e-4, `max abs diff ${d}`);
  });
}
