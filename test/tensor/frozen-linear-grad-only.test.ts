/**
 * frozenLinearGradOnly (native/src/frozen_linear.cc): a frozen product whose values are never read, only its
 * backward run (gradient checkpointing's recomputation of a layer's last product, models/decoder.ts). Its output is
 * zeros of the product's shape and its dX must be the product's own, bit for bit, in each way a frozen product's dX is
 * computed: from Wᵀ's copy (frozenLinear, `copy`), libtorch's (x.linear, no copy; bf16 and float32), and the float32
 * route's where CPU bf16 products take it (with W's float32 copy and without). References: frozenLinear and x.linear
 * on the same tensors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Tensor,
  frozenLinear,
  frozenLinearCache,
  frozenLinearGradOnly,
  manualSeed,
  noGrad,
  setF32Products,
  withGrad,
  type DType,
} from "../../src/tensor/index.js";

type Way = "copy" | "no copy";

/** y and dX of the reference product (frozenLinear with a copy, x.linear without) or of frozenLinearGradOnly. */
function run(kind: "ref" | "gradOnly", way: Way, x0: Tensor, W: Tensor, b: Tensor | null, g: Tensor) {
  return withGrad(() => {
    const x = x0.clone().requiresGrad_();
    const y =
      kind === "gradOnly"
        ? frozenLinearGradOnly(x, W, b, way === "copy")
        : way === "copy"
          ? frozenLinear(x, W, b)
          : x.linear(W, b);
    // what the layers do to a product's output: an adapter may add to it in place
    y.backward(g);
    return { y: y.detach(), dx: x.grad! };
  });
}

function withF32Products<T>(mode: "on" | "off", fn: () => T): T {
  const prev = setF32Products(mode);
  try {
    return fn();
  } finally {
    setF32Products(prev);
  }
}

const bits = (t: Tensor) => Buffer.from(t.toBytes());

/** The 0.5B shape's q/k/v (with a bias), o, down and gate/up products on 2 x 24 tokens, and a strided input. */
function check(dt: DType, way: Way, what: string): void {
  manualSeed(5);
  for (const [out, inF, bias, strided] of [
    [1152, 896, true, false],
    [896, 896, false, true],
    [896, 4864, false, false],
    [9728, 896, false, false],
  ] as [number, number, boolean, boolean][]) {
    const x = strided ? Tensor.randn([24, 2, inF]).to(dt).transpose(0, 1) : Tensor.randn([2, 24, inF]).to(dt);
    const W = Tensor.randn([out, inF]).mul(0.03).to(dt);
    const b = bias ? Tensor.randn([out]).to(dt) : null;
    const g = Tensor.randn([2, 24, out]).to(dt);
    const ref = run("ref", way, x, W, b, g);
    const got = run("gradOnly", way, x, W, b, g);
    const label = `${what}, [${out}, ${inF}]${bias ? " + b" : ""}${strided ? ", strided x" : ""}`;
    assert.deepEqual(got.y.shape, ref.y.shape, `${label}: shape`);
    assert.equal(
      noGrad(() => got.y.abs().sum().item()),
      0,
      `${label}: zeros, no product`,
    );
    assert.equal(got.dx.dtype, ref.dx.dtype, `${label}: dX dtype`);
    assert.deepEqual(got.dx.shape, ref.dx.shape, `${label}: dX shape`);
    assert.ok(bits(got.dx).equals(bits(ref.dx)), `${label}: dX bit for bit`);
  }
}

test("frozenLinearGradOnly: zeros, and dX equal to the product's own bit for bit, each way dX is computed", () => {
  frozenLinearCache(true);
  withF32Products("off", () => {
    check("bfloat16", "copy", "bf16, from Wᵀ's copy");
    check("bfloat16", "no copy", "bf16, libtorch's");
  });
  check("float32", "no copy", "float32, libtorch's");
  withF32Products("on", () => {
    check("bfloat16", "copy", "bf16 in float32, W's float32 copy");
    check("bfloat16", "no copy", "bf16 in float32, W upcast");
  });
  frozenLinearCache(true);
});

test("frozenLinearGradOnly: without a gradient to compute, zeros and no copy; a weight that trains is refused", () => {
  frozenLinearCache(true);
  const x = Tensor.randn([3, 16]).to("bfloat16");
  const W = Tensor.randn([8, 16]).to("bfloat16");
  const y = withGrad(() => frozenLinearGradOnly(x, W, null, true));
  assert.deepEqual(y.shape, [3, 8]);
  assert.equal(y.requiresGrad, false);
  assert.equal(
    noGrad(() => y.abs().sum().item()),
    0,
  );
  assert.equal(frozenLinearCache().count, 0, "no copy made");
  const trains = Tensor.randn([8, 16]).requiresGrad_();
  assert.throws(
    () => withGrad(() => frozenLinearGradOnly(Tensor.randn([3, 16]).requiresGrad_(), trains, null, false)),
    /must not require a gradient/,
  );
  assert.throws(() => frozenLinearGradOnly(Tensor.randn([3, 15]), W.float(), null, false), /against weight/);
});
