/**
 * frozenLinear (native/src/frozen_linear.cc): y = x·Wᵀ + b for a weight that needs no gradient, whose backward
 * computes dX from a transposed copy of W held by the addon. References: x.linear (libtorch's own product and its
 * autograd backward) on the same tensors, and a float64 product written out for the float32 case.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Tensor,
  f32Products,
  frozenLinear,
  frozenLinearCache,
  manualSeed,
  noGrad,
  withGrad,
  type DType,
} from "../../src/tensor/index.js";

/** y and dX of x.linear (reference) or frozenLinear, for upstream gradient g. */
function run(kind: "ref" | "frozen", x0: Tensor, W: Tensor, b: Tensor | null, g: Tensor) {
  return withGrad(() => {
    const x = x0.clone().requiresGrad_();
    const y = kind === "ref" ? x.linear(W, b) : frozenLinear(x, W, b);
    y.backward(g);
    return { y: y.detach(), dx: x.grad! };
  });
}

/** Where bf16 products are computed in float32 (f32-products.test.ts) frozenLinear makes no transposed copies. */
const noCopies = f32Products()
  ? "bf16 products are computed in float32 on this CPU: no transposed copies (f32-products.test.ts)"
  : false;

const same = (a: Tensor, b: Tensor, what: string) => {
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  assert.deepEqual(a.toFloat32Array(), b.toFloat32Array(), what);
};

test(
  "frozenLinear, bfloat16: output and dX equal x.linear's bit for bit at the 0.5B shape's products",
  { skip: noCopies },
  () => {
    manualSeed(3);
    frozenLinearCache(true);
    // q/k/v, o, gate/up, down of Qwen2.5-0.5B on 2 x 24 tokens, with and without a bias
    for (const [out, inF, bias] of [
      [1152, 896, true],
      [896, 896, false],
      [9728, 896, false],
      [896, 4864, false],
    ] as [number, number, boolean][]) {
      const dt: DType = "bfloat16";
      const x = Tensor.randn([2, 24, inF]).to(dt);
      const W = Tensor.randn([out, inF]).mul(0.03).to(dt);
      const b = bias ? Tensor.randn([out]).to(dt) : null;
      const g = Tensor.randn([2, 24, out]).to(dt);
      const ref = run("ref", x, W, b, g);
      const got = run("frozen", x, W, b, g);
      same(got.y, ref.y, `[${out}, ${inF}] y`);
      same(got.dx, ref.dx, `[${out}, ${inF}] dX`);
    }
    assert.equal(frozenLinearCache().count, 4, "one transposed copy per weight");
    frozenLinearCache(true);
    assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
  },
);

test("frozenLinear, float32: dX within float32 rounding of the float64 product", () => {
  manualSeed(4);
  const x = Tensor.randn([3, 7, 40]);
  const W = Tensor.randn([56, 40]);
  const b = Tensor.randn([56]);
  const g = Tensor.randn([3, 7, 56]);
  const got = run("frozen", x, W, b, g);
  same(
    got.y,
    noGrad(() => x.linear(W, b)),
    "y",
  );
  const want = noGrad(() => g.to("float64").reshape([21, 56]).matmul(W.to("float64")).reshape([3, 7, 40]));
  const err = noGrad(() => got.dx.to("float64").sub(want).abs().amax().item());
  assert.ok(err < 1e-4, `dX error ${err}`);
});

test(
  "frozenLinear: a weight updated in place gets a fresh transposed copy (no stale dX)",
  { skip: noCopies },
  () => {
    manualSeed(5);
    frozenLinearCache(true);
    const x = Tensor.randn([4, 32]).to("bfloat16");
    const W = Tensor.randn([48, 32]).to("bfloat16");
    const g = Tensor.randn([4, 48]).to("bfloat16");
    same(run("frozen", x, W, null, g).dx, run("ref", x, W, null, g).dx, "before");
    noGrad(() => W.mul_(-2)); // what a fold does to a weight: in place
    same(run("frozen", x, W, null, g).dx, run("ref", x, W, null, g).dx, "after the in-place update");
    assert.equal(frozenLinearCache().count, 1, "the stale copy was replaced, not added to");
    W.dispose();
    assert.equal(frozenLinearCache().count, 0, "a freed weight's copy is dropped");
  },
);

test("frozenLinear: no copy without a gradient to compute; a weight or bias that needs one is refused", () => {
  frozenLinearCache(true);
  const x = Tensor.randn([4, 16]);
  const W = Tensor.randn([8, 16]);
  same(
    frozenLinear(x, W, null),
    noGrad(() => x.linear(W, null)),
    "no graph",
  );
  withGrad(() => frozenLinear(x, W, null)); // x needs no gradient either
  assert.equal(frozenLinearCache().count, 0);
  const Wg = W.clone().requiresGrad_();
  assert.throws(() => withGrad(() => frozenLinear(x, Wg, null)), /must not require a gradient/);
  const bg = Tensor.zeros([8]).requiresGrad_();
  assert.throws(() => withGrad(() => frozenLinear(x, W, bg)), /must not require a gradient/);
});
