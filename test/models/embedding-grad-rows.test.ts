/**
 * A tied embedding that trains (full fine-tuning) gets two gradient shares, lm_head's and the lookup's. On the CPU
 * the lookup's rows are added into lm_head's share in place (decoder.ts lookupGradByRows, native addLookupGrad)
 * instead of autograd's zero [vocabulary, hidden] tensor and dense sum; the bits must be autograd's. Checked against
 * autograd itself (the switch off) on every tied fixture family, in float32 and bf16, with and without gradient
 * checkpointing, over two micro-batches (the first one's gradient set aside and added last) with repeated ids; the
 * op profile shows which path ran. And the op alone against autograd's embedding backward added to a gradient.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type DecoderModel } from "../../src/models/index.js";
import {
  Tensor,
  addLookupGrad,
  backward,
  crossEntropy,
  keep,
  manualSeed,
  noGrad,
  opProfileStart,
  opProfileStop,
  setFusedOp,
  tidy,
  withGrad,
  type DType,
} from "../../src/tensor/index.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

/** Every bit, signed zeros included. */
function bits(t: Tensor): Uint32Array {
  return new Uint32Array(t.toFloat32Array().buffer);
}

function withRows<T>(on: boolean, fn: () => T): T {
  const prev = setFusedOp("embeddingGradRows", on);
  try {
    return fn();
  } finally {
    setFusedOp("embeddingGradRows", prev);
  }
}

test("addLookupGrad: autograd's embedding backward added to the gradient there, bit for bit", () => {
  // id 3 four times, 7 and 0 three times: each row's contributions summed in order, then added once
  const ids = Tensor.fromArray([3, 7, 3, 3, 49, 0, 7, 12, 3, 0, 0, 5, 7, 1], [2, 7], "int64");
  for (const dtype of ["float32", "bfloat16"] as DType[]) {
    for (const prior of [false, true]) {
      tidy(() => {
        manualSeed(3);
        const w = keep(noGrad(() => Tensor.randn([50, 8]).to(dtype)));
        const rows = noGrad(() => Tensor.randn([2, 7, 8]).mul(0.37).to(dtype));
        const g = prior ? noGrad(() => Tensor.randn([50, 8]).mul(3).to(dtype)) : null;
        const viaAutograd = w.detach().requiresGrad_();
        const viaRows = w.detach().requiresGrad_();
        for (const leaf of [viaAutograd, viaRows]) if (g) withGrad(() => backward([leaf.mul(1)], [g]));
        withGrad(() => backward([viaAutograd.embedding(ids)], [rows]));
        addLookupGrad(viaRows, ids, rows);
        assert.deepEqual(bits(viaRows.grad!), bits(viaAutograd.grad!), `${dtype}, gradient there: ${prior}`);
        w.dispose();
      });
    }
  }
  const w = Tensor.zeros([50, 8]).requiresGrad_();
  assert.throws(() => addLookupGrad(w, ids, Tensor.zeros([2, 7, 4])), /one row of the weight's width per id/);
  assert.throws(() => addLookupGrad(w, ids, Tensor.zeros([2, 7, 8], "bfloat16")), /in its dtype/);
  assert.throws(() => addLookupGrad(w, ids.float(), Tensor.zeros([2, 7, 8])), /ids must be int64/);
  w.dispose();
  ids.dispose();
});

const BATCHES = [
  [
    [0, 0, 0, 17, 301, 5, 88, 120, 7, 450, 17, 9, 260, 17],
    [12, 400, 3, 99, 250, 18, 77, 6, 310, 44, 2, 12, 500, 61],
  ],
  [
    [5, 5, 88, 88, 301, 3, 3, 3, 41, 450, 9, 9, 1, 2],
    [7, 17, 12, 400, 18, 77, 6, 310, 44, 2, 128, 500, 61, 7],
  ],
];

/** Two micro-batches' next-token cross-entropy, the embedding's gradient summed over both; which backward ran. */
function embedGrad(
  model: DecoderModel,
  checkpoint: boolean,
): { grad: Uint32Array; rowsCalls: number; autograd: number } {
  model.embed.requiresGrad_();
  opProfileStart();
  try {
    for (const rows of BATCHES) {
      const T = rows[0].length;
      const ids = Tensor.fromArray(rows.flat(), [2, T], "int64");
      model.forwardBackward(
        ids,
        {},
        (h) => {
          const logits = model.logitsFrom(h.narrow(1, 0, T - 1));
          return crossEntropy(
            logits.reshape([2 * (T - 1), -1]),
            ids.narrow(1, 1, T - 1).reshape([2 * (T - 1)]),
          );
        },
        checkpoint,
      );
      ids.dispose();
    }
    const profile = opProfileStop();
    const calls = (name: string) => profile.filter((r) => r.name === name).reduce((n, r) => n + r.calls, 0);
    return {
      grad: bits(model.embed.grad!),
      rowsCalls: calls("js::addLookupGrad"),
      autograd: calls("EmbeddingBackward0"),
    };
  } finally {
    model.embed.clearGrad();
    model.embed.requiresGrad_(false);
  }
}

for (const family of ["qwen2", "qwen3", "gemma3"]) {
  for (const dtype of ["float32", "bfloat16"] as DType[]) {
    test(`${family} ${dtype}: a tied embedding's gradient by rows is autograd's, with and without checkpointing`, () => {
      const model = loadModel(path.join(FIX, family), { dtype });
      assert.equal(model.lmHead, model.embed, `${family}: the fixture ties its embeddings`);
      const reference = withRows(false, () => embedGrad(model, false));
      assert.equal(reference.rowsCalls, 0);
      assert.ok(reference.autograd >= 2, "autograd's embedding backward ran for each micro-batch");
      for (const checkpoint of [false, true]) {
        const got = withRows(true, () => embedGrad(model, checkpoint));
        assert.equal(
          got.rowsCalls,
          2,
          `checkpointing ${checkpoint}: the rows were added once per micro-batch`,
        );
        assert.equal(
          got.autograd,
          0,
          `checkpointing ${checkpoint}: autograd's embedding backward did not run`,
        );
        assert.deepEqual(got.grad, reference.grad, `checkpointing ${checkpoint}`);
      }
      // not a vacuous comparison: lm_head's share and the lookup's both reached the gradient
      assert.ok(reference.grad.some((b) => b !== 0));
    });
  }
}
