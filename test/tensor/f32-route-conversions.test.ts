/**
 * The float32 route's conversions (native/src/f32_products.cc widen / roundInto: bf16 widened and float32 rounded on
 * the calling thread, not by ATen's parallel copy_) give ATen's values bit for bit: the route's output equals, block by
 * block, libtorch's own float32 product of the upcast values rounded by libtorch's own conversion, for contiguous and
 * strided inputs, with and without a bias, across widths that leave a tail after the 16-lane loops; a NaN comes out as
 * 0x7fc0 (c10::BFloat16's, and the fused kernels', where ATen's AVX2 vector conversion writes 0xffff).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tensor, frozenLinear, manualSeed, noGrad, setF32Products } from "../../src/tensor/index.js";

/** Rows of W the route upcasts and multiplies at a time: 4 MiB of float32 (f32_products.cc kBlockElems). */
const blockRows = (k: number) => Math.max(64, Math.floor(2 ** 20 / k));

function withRoute<T>(fn: () => T): T {
  const prev = setF32Products("on");
  try {
    return fn();
  } finally {
    setF32Products(prev);
  }
}

const bf16 = (shape: number[], scale = 1) => noGrad(() => Tensor.randn(shape).mul(scale).to("bfloat16"));
const bits = (t: Tensor) => Buffer.from(noGrad(() => t.contiguous().toBytes()));

/** The route's forward by libtorch's own ops: per block of W's rows, x·Wᵀ (+ b) in float32, rounded by .to(). */
function reference(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  return noGrad(() => {
    const [n, k] = w.shape;
    const step = blockRows(k!);
    const xf = x.float();
    const parts: Tensor[] = [];
    for (let r0 = 0; r0 < n!; r0 += step) {
      const m = Math.min(step, n! - r0);
      parts.push(xf.linear(w.narrow(0, r0, m).float(), b ? b.narrow(0, r0, m).float() : null).to("bfloat16"));
    }
    return Tensor.cat(parts, -1);
  });
}

// [rows, in, out]: a single product (out at most one block), blocks with a shorter last one, widths off the 16 lanes
const SHAPES: [number, number, number][] = [
  [37, 896, 1152],
  [19, 896, 3000],
  [5, 4864, 700],
  [33, 37, 2049],
  [3, 17, 5],
];

test("the route's forward equals libtorch's own float32 products rounded by libtorch, block by block", () => {
  manualSeed(11);
  withRoute(() => {
    for (const [rows, k, n] of SHAPES)
      for (const variant of ["contiguous", "strided rows", "bias"] as const) {
        const w = bf16([n, k], 1 / Math.sqrt(k));
        const b = variant === "bias" ? bf16([n], 0.1) : null;
        // a column window of a wider tensor: rows apart by k + 5 elements
        const x =
          variant === "strided rows" ? noGrad(() => bf16([rows, k + 5]).narrow(1, 3, k)) : bf16([rows, k]);
        const want = bits(reference(x, w, b));
        const what = `[${rows}, ${k}] x [${n}, ${k}]ᵀ ${variant}`;
        assert.ok(bits(noGrad(() => x.linear(w, b))).equals(want), `${what}: linear`);
        // the frozen product reading W's held float32 copy (forward with a gradient: the copy is made)
        const xg = noGrad(() => x.clone()).requiresGrad_();
        assert.ok(bits(frozenLinear(xg, w, b)).equals(want), `${what}: frozenLinear`);
      }
  });
});

test("the route's dX of a single block equals libtorch's own float32 product rounded by libtorch", () => {
  manualSeed(12);
  withRoute(() => {
    for (const [rows, k, n] of SHAPES.filter(([, k, n]) => n <= blockRows(k))) {
      const w = bf16([n, k], 1 / Math.sqrt(k));
      const x = bf16([rows, k]).requiresGrad_();
      const g = bf16([rows, n]);
      x.linear(w).backward(g);
      const want = noGrad(() => g.float().matmul(w.float()).to("bfloat16"));
      assert.ok(bits(x.grad!).equals(bits(want)), `[${rows}, ${n}] x [${n}, ${k}]`);
    }
  });
});

test("a NaN product comes out as bf16 0x7fc0, forward and dX; infinities as infinities", () => {
  withRoute(() => {
    const k = 896;
    const n = 3000; // blocks of 1170 rows
    const w = bf16([n, k], 1 / Math.sqrt(k));
    const xv = noGrad(() => Tensor.randn([4, k]).toFloat32Array());
    xv[0] = NaN; // row 0: every output NaN
    xv[k] = Infinity; // row 1: ±inf or NaN where w's column 0 is 0
    const x = noGrad(() => Tensor.fromArray(xv, [4, k]).to("bfloat16")).requiresGrad_();
    const y = x.linear(w);
    const yb = new Uint16Array(Uint8Array.from(bits(y)).buffer);
    for (let j = 0; j < n; j++) assert.equal(yb[j], 0x7fc0, `y[0, ${j}]`);
    const w0 = noGrad(() => w.narrow(1, 0, 1).float().reshape([n]).toFloat32Array());
    for (let j = 0; j < n; j++) {
      const v = yb[n + j]!;
      if (w0[j] === 0) assert.equal(v, 0x7fc0, `y[1, ${j}]`);
      else assert.equal(v, w0[j]! > 0 ? 0x7f80 : 0xff80, `y[1, ${j}]`);
    }
    // rows 2 and 3 are finite
    for (let i = 2 * n; i < 4 * n; i++) assert.notEqual(yb[i]! & 0x7f80, 0x7f80, `y element ${i}`);
    const gv = new Float32Array(4 * n);
    gv[0] = NaN; // dX row 0 all NaN, the rest finite
    for (let i = 1; i < gv.length; i++) gv[i] = Math.sin(i);
    y.backward(noGrad(() => Tensor.fromArray(gv, [4, n]).to("bfloat16")));
    const gb = new Uint16Array(Uint8Array.from(bits(x.grad!)).buffer);
    for (let j = 0; j < k; j++) assert.equal(gb[j], 0x7fc0, `dX[0, ${j}]`);
    for (let i = k; i < 4 * k; i++) assert.notEqual(gb[i]! & 0x7f80, 0x7f80, `dX element ${i}`);
  });
});
