import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Tensor,
  tidy,
  noGrad,
  crossEntropy,
  grad,
  backward,
  manualSeed,
  multinomial,
  AdamW,
} from "../../src/tensor/index.js";

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs(a[i] - b[i]) <= tol, `index ${i}: ${a[i]} vs ${b[i]}`);
};

test("round-trips bytes and converts dtypes (bf16 rounds to nearest even)", () => {
  const t = Tensor.fromArray([1, 2.5, -3, 1 / 3], [2, 2]);
  assert.deepEqual(t.shape, [2, 2]);
  assert.equal(t.dtype, "float32");
  close(t.toFloat32Array(), [1, 2.5, -3, Math.fround(1 / 3)], 0);
  // 1/3 in bf16: mantissa 7 bits -> 0.333984375
  close(t.to("bfloat16").toFloat32Array(), [1, 2.5, -3, 0.333984375], 0);
  assert.deepEqual(Tensor.fromArray([3, -1, 7], [3], "int64").toIntArray(), [3, -1, 7]);
});

test("matmul and linear agree with hand-computed values", () => {
  const x = Tensor.fromArray([1, 2, 3, 4], [2, 2]);
  const w = Tensor.fromArray([1, 0, 1, 1, 2, -1], [3, 2]);
  const b = Tensor.fromArray([0.5, 0, -1], [3]);
  close(x.linear(w, b).toFloat32Array(), [1.5, 3, -1, 3.5, 7, 1]);
  close(x.matmul(x).toFloat32Array(), [7, 10, 15, 22]);
});

test("softmax, log-softmax and cross-entropy with ignore-index match the formula", () => {
  const logits = Tensor.fromArray([1, 2, 3, 0, 0, 0, 5, 1, 1], [3, 3]);
  const p = logits.softmax(-1).toFloat32Array();
  const e = [Math.exp(1), Math.exp(2), Math.exp(3)];
  const s = e[0] + e[1] + e[2];
  close(Array.from(p).slice(0, 3), [e[0] / s, e[1] / s, e[2] / s]);
  const targets = Tensor.fromArray([2, -100, 0], [3], "int64");
  const loss = crossEntropy(logits, targets).item();
  const l0 = Math.log(s) - 3;
  const l2 = Math.log(Math.exp(5) + 2 * Math.exp(1)) - 5;
  assert.ok(Math.abs(loss - (l0 + l2) / 2) < 1e-6);
});

test("autograd: gradient of sum(x^2 * w) and retain-grad on a non-leaf", () => {
  const x = Tensor.fromArray([1, -2, 3], [3]).requiresGrad_();
  const y = x.square().retainGrad();
  const z = y.mul(Tensor.fromArray([1, 2, 3], [3])).sum();
  z.backward();
  close(x.grad!.toFloat32Array(), [2, -8, 18]);
  close(y.grad!.toFloat32Array(), [1, 2, 3]);
});

test("grad() with upstream gradients and backward of several outputs", () => {
  const x = Tensor.fromArray([2, 3], [2]).requiresGrad_();
  const y = x.mul(x);
  const [g] = grad([y], [x], [Tensor.fromArray([1, 10], [2])]);
  close(g!.toFloat32Array(), [4, 60]);
  const a = x.mul(2);
  const b = x.mul(3);
  backward([a, b], [Tensor.ones([2]), Tensor.ones([2])]);
  close(x.grad!.toFloat32Array(), [5, 5]);
});

test("noGrad: results do not require grad", () => {
  const x = Tensor.fromArray([1], [1]).requiresGrad_();
  const y = noGrad(() => x.mul(2));
  assert.equal(y.requiresGrad, false);
  assert.equal(x.mul(2).requiresGrad, true);
});

test("libtorch errors become JS exceptions, never aborts", () => {
  const a = Tensor.zeros([2, 3]);
  const b = Tensor.zeros([4, 5]);
  assert.throws(() => a.matmul(b), /libtorch: .*(shape|size|mat1)/i);
  assert.throws(() => a.reshape([7]), /libtorch/);
  assert.throws(() => Tensor.fromBytes(new Uint8Array(3), "float32", [1]), /bytes/);
  assert.throws(() => a.item(), /one element/);
  assert.throws(() => a.topk(10, -1), /libtorch/);
  assert.throws(() => Tensor.zeros([2], "nope" as never), /unknown dtype/);
  // wrong argument types straight into the addon
  const addon = (a as unknown as { h: unknown }).h;
  assert.ok(addon);
  a.dispose();
  assert.throws(() => a.add(1), /after dispose/);
});

test("tidy disposes intermediates and keeps the result", () => {
  const kept = Tensor.fromArray([1, 2], [2]);
  let inner: Tensor[] = [];
  const out = tidy(() => {
    const a = kept.add(1);
    const b = a.mul(3);
    inner = [a, b];
    return b.sum();
  });
  assert.equal(inner[0].disposed, true);
  assert.equal(inner[1].disposed, true);
  assert.equal(out.disposed, false);
  assert.equal(kept.disposed, false);
  assert.equal(out.item(), 15);
});

test("handles: a step's scopes give back every handle they made; a dropped tensor's goes once it is collected", async () => {
  const { native } = await import("../../src/tensor/native.js");
  const w = Tensor.randn([8, 4]).requiresGrad_();
  const x = Tensor.randn([3, 4]);
  const before = native.liveHandles();
  for (let i = 0; i < 3; i++)
    tidy(() => {
      const loss = x.linear(w).relu().square().sum();
      loss.backward();
      return loss.item();
    });
  // the gradient is w's, made by the first backward and held by libtorch, not by a handle
  assert.equal(native.liveHandles(), before, "a tidy scope left handles behind");
  assert.equal(w.grad?.shape.join(), "8,4");
  // requiresGrad is read from libtorch each time: it changes in place
  assert.equal(x.requiresGrad, false);
  x.requiresGrad_();
  assert.equal(x.requiresGrad, true);
  // outside every scope: the collector's (FinalizationRegistry), freed once the Tensor is unreachable
  const v8 = await import("node:v8");
  const vm = await import("node:vm");
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const base = native.liveHandles();
  (() => {
    for (let i = 0; i < 10; i++) Tensor.zeros([4]);
  })();
  assert.equal(native.liveHandles(), base + 10);
  for (let i = 0; i < 20 && native.liveHandles() > base; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  // (earlier tests' dropped tensors go too; what is still referenced stays)
  assert.ok(native.liveHandles() <= base, "dropped tensors were not freed after collection");
  assert.equal(w.disposed || x.disposed, false);
  assert.ok(Math.abs(x.add(1).sum().item() - (x.sum().item() + 12)) < 1e-4);
});

test("seeded sampling is deterministic", () => {
  manualSeed(7);
  const p = Tensor.fromArray([0.1, 0.2, 0.3, 0.4], [4]);
  const a = multinomial(p, 10, true).toIntArray();
  manualSeed(7);
  const b = multinomial(p, 10, true).toIntArray();
  assert.deepEqual(a, b);
  manualSeed(7);
  const r1 = Tensor.randn([5]).toFloat32Array();
  manualSeed(7);
  close(Tensor.randn([5]).toFloat32Array(), r1, 0);
});

test("topk and stable sort order ties by index", () => {
  const [v, i] = Tensor.fromArray([3, 1, 3, 2], [4]).topk(2);
  assert.deepEqual(Array.from(v.toFloat32Array()), [3, 3]);
  assert.deepEqual(i.toIntArray().sort(), [0, 2]);
  const [, si] = Tensor.fromArray([3, 1, 3, 2], [4]).sort(-1, true);
  assert.deepEqual(si.toIntArray(), [0, 2, 3, 1]);
});

test("AdamW step follows the AdamW formula, and state round-trips", () => {
  const p = Tensor.fromArray([1, -1], [2]).requiresGrad_();
  const opt = new AdamW([p], { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 });
  p.mul(Tensor.fromArray([2, 0.5], [2]))
    .sum()
    .backward();
  opt.step();
  // step 1: m = 0.1 g, v = 0.001 g^2, mhat = g, vhat = g^2 -> p -= lr * g/|g|
  close(p.toFloat32Array(), [0.9, -1.1], 1e-6);
  const st = opt.getState()[0]!;
  assert.equal(st.step, 1);
  close(st.expAvg.toFloat32Array(), [0.2, 0.05]);
  const q = p.detach().clone().requiresGrad_();
  const opt2 = new AdamW([q], { lr: 0.1, weightDecay: 0 });
  opt2.setState([st]);
  for (const [param, o] of [
    [p, opt],
    [q, opt2],
  ] as const) {
    o.zeroGrad();
    param
      .mul(Tensor.fromArray([2, 0.5], [2]))
      .sum()
      .backward();
    o.step();
  }
  close(q.toFloat32Array(), p.toFloat32Array(), 0);
});

test("bytesInParts: whole rows of at most partBytes (a longer row alone), together toBytes of the cast", () => {
  manualSeed(7);
  const cases: { shape: number[]; dtype?: "float32" | "bfloat16"; partBytes: number }[] = [
    { shape: [10, 6], partBytes: 48 }, // 6 f32 = 24 B a row: 2 rows a part
    { shape: [10, 6], dtype: "bfloat16", partBytes: 48 }, // 12 B a row: 4 rows a part
    { shape: [7, 3, 5], partBytes: 100 }, // 60 B a row: 1 row a part
    { shape: [5, 8], partBytes: 10 }, // a row (32 B) over the limit: one row a part
    { shape: [4, 4], partBytes: 1 << 20 }, // all in one part
    { shape: [], partBytes: 1 }, // a scalar: one part
    { shape: [0, 4], partBytes: 16 }, // nothing
  ];
  noGrad(() =>
    tidy(() => {
      for (const c of cases) {
        const t = Tensor.randn(c.shape);
        const dtype = c.dtype ?? "float32";
        const whole = t.to(dtype).toBytes();
        const parts = [...t.bytesInParts(dtype, c.partBytes)];
        const rowBytes =
          c.shape.length === 0 ? whole.byteLength : whole.byteLength / Math.max(1, c.shape[0]!);
        for (const p of parts) {
          assert.ok(p.byteLength > 0, `${JSON.stringify(c)}: an empty part`);
          assert.equal(
            p.byteLength % rowBytes,
            0,
            `${JSON.stringify(c)}: a part of ${p.byteLength} B is not whole rows`,
          );
          assert.ok(
            p.byteLength <= Math.max(c.partBytes, rowBytes),
            `${JSON.stringify(c)}: a part of ${p.byteLength} B`,
          );
        }
        const joined = Buffer.concat(parts);
        assert.equal(joined.byteLength, whole.byteLength, JSON.stringify(c));
        assert.ok(joined.equals(Buffer.from(whole)), `${JSON.stringify(c)}: the parts differ from toBytes`);
      }
      // a view (a column slice) and a tensor that needs gradients give their values too
      const w = Tensor.randn([6, 8]).slice(1, 2, 7);
      assert.ok(
        Buffer.concat([...w.bytesInParts("float32", 40)]).equals(Buffer.from(w.contiguous().toBytes())),
      );
    }),
  );
});
