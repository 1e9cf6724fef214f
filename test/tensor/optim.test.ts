/**
 * AdamW (native/src/train_ops.cc: one pass per parameter) against torch.optim.AdamW's update written out in float32
 * arithmetic here, op by op (Math.fround after each, as torch rounds each elementwise op): bit for bit, over several
 * steps, with weight decay, a clipping scale, float32 and bf16 gradients, and the bf16 copy written in the same pass.
 * The sum of squares behind the gradient norm against a float64 sum. Under setKernelMode("composite") AdamW takes
 * what a GPU's parameters take (libtorch's fused kernel from 2.4 on the CPU, its composite ops before): the same
 * reference within float32 rounding.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AdamW,
  Tensor,
  kernelMode,
  noGrad,
  opProfileStart,
  opProfileStop,
  setKernelMode,
  sumOfSquares,
  torchVersion,
  type OpProfileRow,
} from "../../src/tensor/index.js";
import { createRng } from "../../src/util/random.js";

const f = Math.fround;

/** bf16 rounding (round to nearest even) of a float32 value, independent of libtorch. */
function toBf16(x: number): number {
  const a = new Float32Array([x]);
  const u = new Uint32Array(a.buffer);
  if (Number.isNaN(x)) return NaN;
  const lsb = (u[0]! >>> 16) & 1;
  u[0] = ((u[0]! + 0x7fff + lsb) >>> 16) << 16;
  return a[0]!;
}

interface Hyper {
  lr: number;
  b1: number;
  b2: number;
  eps: number;
  wd: number;
}

/** torch.optim.AdamW, one step (`step` counted from 1), float32 arithmetic; `bf16Grad`: the clip scales in bf16. */
function reference(
  p: Float32Array,
  g: ArrayLike<number>,
  m: Float32Array,
  v: Float32Array,
  step: number,
  h: Hyper,
  scale: number,
  bf16Grad: boolean,
): void {
  const bc1 = 1 - h.b1 ** step;
  const bc2 = 1 - h.b2 ** step;
  const [decay, b1, omb1, b2, omb2] = [f(1 - h.lr * h.wd), f(h.b1), f(1 - h.b1), f(h.b2), f(1 - h.b2)];
  const [bc2Sqrt, eps, negStep, sc] = [f(Math.sqrt(bc2)), f(h.eps), f(-(h.lr / bc1)), f(scale)];
  for (let i = 0; i < p.length; i++) {
    let gi = f(g[i]! * sc);
    if (bf16Grad) gi = toBf16(gi);
    const pi = h.wd !== 0 ? f(p[i]! * decay) : p[i]!; // p.mul_(1 - lr·wd)
    const mi = f(f(m[i]! * b1) + f(omb1 * gi)); // exp_avg.mul_(β1).add_(g, alpha=1-β1)
    const vi = f(f(v[i]! * b2) + f(f(omb2 * gi) * gi)); // exp_avg_sq.mul_(β2).addcmul_(g, g, value=1-β2)
    const denom = f(f(f(Math.sqrt(vi)) / bc2Sqrt) + eps); // (exp_avg_sq.sqrt() / √bc2).add_(eps)
    p[i] = f(pi + f(f(negStep * mi) / denom)); // p.addcdiv_(exp_avg, denom, value=-lr/bc1)
    m[i] = mi;
    v[i] = vi;
  }
}

/** n values over many magnitudes, zeros and exact ties included (Adam divides by |g|). */
function values(n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const r = rng.next();
    out[i] = r < 0.02 ? 0 : (rng.next() - 0.5) * 10 ** (rng.int(9) - 6);
  }
  return out;
}

function assertSame(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < got.length; i++)
    if (!Object.is(got[i], want[i])) {
      bad++;
      if (first < 0) first = i;
    }
  assert.equal(bad, 0, `${what}: ${bad} elements differ, first [${first}] ${got[first]} vs ${want[first]}`);
}

// 70,001 elements: several parallel ranges and tiles, and a tail shorter than a vector
const N = 70_001;
const H: Hyper = { lr: 3e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1 };

test("AdamW on float32 gradients equals torch's update in float32 bit for bit (3 steps, weight decay, clip scale)", () => {
  const p0 = values(N, 1);
  const param = Tensor.fromArray(Array.from(p0), [N]).requiresGrad_();
  const opt = new AdamW([param], { lr: H.lr, betas: [H.b1, H.b2], eps: H.eps, weightDecay: H.wd });
  const p = Float32Array.from(p0);
  const m = new Float32Array(N);
  const v = new Float32Array(N);
  const scales = [1, 0.37, 1];
  for (let s = 1; s <= 3; s++) {
    const g = values(N, 10 + s);
    // the gradient of Σ p·g is g exactly
    param
      .mul(Tensor.fromArray(Array.from(g), [N]))
      .sum()
      .backward();
    opt.step(scales[s - 1]);
    opt.zeroGrad();
    reference(p, g, m, v, s, H, scales[s - 1]!, false);
    assertSame(param.toFloat32Array(), p, `step ${s} p`);
    const st = opt.getState()[0]!;
    assert.equal(st.step, s);
    assertSame(st.expAvg.toFloat32Array(), m, `step ${s} exp_avg`);
    assertSame(st.expAvgSq.toFloat32Array(), v, `step ${s} exp_avg_sq`);
  }
  assert.equal(param.grad, null, "zeroGrad drops the gradient");
});

test("AdamW from a bf16 gradient scales it in bf16, updates the float32 master and writes its bf16 copy in one pass", () => {
  const p0 = values(N, 2);
  const master = Tensor.fromArray(Array.from(p0), [N]).requiresGrad_();
  const copy = noGrad(() => master.to("bfloat16"));
  const opt = new AdamW([master], { lr: H.lr, betas: [H.b1, H.b2], eps: H.eps, weightDecay: H.wd });
  const p = Float32Array.from(p0);
  const m = new Float32Array(N);
  const v = new Float32Array(N);
  for (let s = 1; s <= 3; s++) {
    const gBf16 = Tensor.fromArray(Array.from(values(N, 20 + s)), [N]).to("bfloat16");
    const scale = s === 2 ? 1 : 0.61;
    opt.stepParam(0, gBf16, copy, scale);
    reference(p, gBf16.toFloat32Array(), m, v, s, H, scale, true);
    assertSame(master.toFloat32Array(), p, `step ${s} master`);
    assertSame(copy.toFloat32Array(), p.map(toBf16), `step ${s} bf16 copy`);
    assert.equal(master.grad, null, "the master never holds a gradient");
  }
  assertSame(opt.getState()[0]!.expAvgSq.toFloat32Array(), v, "exp_avg_sq");
});

test("AdamW on a float64 parameter (the ATen path other devices and dtypes take) follows the same formula", () => {
  const p0 = Array.from(values(1000, 3));
  const param = Tensor.fromArray(p0, [1000], "float64").requiresGrad_();
  const opt = new AdamW([param], { lr: H.lr, betas: [H.b1, H.b2], eps: H.eps, weightDecay: H.wd });
  const g = Array.from(values(1000, 4));
  const p = p0.slice();
  const m = new Array<number>(1000).fill(0);
  const v = new Array<number>(1000).fill(0);
  for (let s = 1; s <= 2; s++) {
    param
      .mul(Tensor.fromArray(g, [1000], "float64"))
      .sum()
      .backward();
    opt.step(0.5);
    opt.zeroGrad();
    for (let i = 0; i < p.length; i++) {
      const gi = g[i]! * 0.5;
      p[i] = p[i]! * (1 - H.lr * H.wd);
      m[i] = H.b1 * m[i]! + (1 - H.b1) * gi;
      v[i] = H.b2 * v[i]! + (1 - H.b2) * gi * gi;
      const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - H.b2 ** s) + H.eps;
      p[i] = p[i]! - ((H.lr / (1 - H.b1 ** s)) * m[i]!) / denom;
    }
    const got = param.to("float32").toFloat32Array();
    for (let i = 0; i < p.length; i++)
      assert.ok(Math.abs(got[i]! - p[i]!) <= 1e-7 * Math.max(1e-3, Math.abs(p[i]!)), `step ${s} [${i}]`);
  }
});

/** |a − b| within n units in the last place of b (float32) and an absolute floor, for fused multiply-adds. */
function assertNear(got: Float32Array, want: Float32Array, what: string, ulps = 4, floor = 1e-9): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < got.length; i++) {
    const w = want[i]!;
    const ulp = w === 0 ? 0 : 2 ** (Math.floor(Math.log2(Math.abs(w))) - 23);
    assert.ok(
      Math.abs(got[i]! - w) <= ulps * ulp + floor,
      `${what} [${i}]: ${got[i]} vs ${w} (${Math.abs(got[i]! - w) / (ulp || 1)} ulp)`,
    );
  }
}

/** libtorch's fused AdamW has a CPU kernel from 2.4 (train_ops.cc fusedAdamwServes). */
const fusedCpuKernel = (() => {
  const [major, minor] = torchVersion().split(".").map(Number);
  return major! > 2 || (major === 2 && minor! >= 4);
})();

test("AdamW in the composite kernel mode (a GPU's path: fused kernel or ATen ops) keeps the reference within rounding", () => {
  const prev = kernelMode();
  setKernelMode("composite");
  try {
    // step(): several parameters in one call (one fused launch where libtorch has the kernel), one without a
    // gradient at a step (skipped: its step count stays), a clip scale
    const sizes = [N, 3, 1000];
    const p0 = sizes.map((n, k) => values(n, 30 + k));
    const params = p0.map((v) => Tensor.fromArray(Array.from(v), [v.length]).requiresGrad_());
    const opt = new AdamW(params, { lr: H.lr, betas: [H.b1, H.b2], eps: H.eps, weightDecay: H.wd });
    const ref = p0.map((v) => ({
      p: Float32Array.from(v),
      m: new Float32Array(v.length),
      v: new Float32Array(v.length),
      step: 0,
    }));
    const scales = [1, 0.37, 1];
    for (let s = 1; s <= 3; s++) {
      params.forEach((param, k) => {
        if (k === 1 && s === 2) return; // no gradient this step
        const g = values(sizes[k]!, 40 + 10 * s + k);
        param
          .mul(Tensor.fromArray(Array.from(g), [g.length]))
          .sum()
          .backward();
        const r = ref[k]!;
        r.step++;
        reference(r.p, g, r.m, r.v, r.step, H, scales[s - 1]!, false);
      });
      opProfileStart();
      let rows: OpProfileRow[];
      try {
        opt.step(scales[s - 1]);
      } finally {
        rows = opProfileStop();
      }
      // libtorch >= 2.4: the parameters with a gradient in one fused launch; before: the composite ops, one set each
      const fused = rows.find((r) => r.name === "aten::_fused_adamw_")?.calls ?? 0;
      const composite = rows.find((r) => r.name === "aten::addcdiv_")?.calls ?? 0;
      const withGrad = s === 2 ? 2 : 3;
      if (fusedCpuKernel) assert.deepEqual([fused, composite], [1, 0], `step ${s}: one fused call`);
      else assert.deepEqual([fused, composite], [0, withGrad], `step ${s}: the composite ops per parameter`);
      opt.zeroGrad();
      params.forEach((param, k) => assertNear(param.toFloat32Array(), ref[k]!.p, `step ${s} parameter ${k}`));
    }
    assert.deepEqual(
      opt.getState().map((st) => st?.step),
      [3, 2, 3],
    );
    params.forEach((_, k) =>
      assertNear(opt.getState()[k]!.expAvgSq.toFloat32Array(), ref[k]!.v, `exp_avg_sq ${k}`),
    );
    // stepParam(): a bf16 gradient stepping a float32 master, its bf16 copy written after
    const master = Tensor.fromArray(Array.from(values(N, 60)), [N]).requiresGrad_();
    const copy = noGrad(() => master.to("bfloat16"));
    const opt2 = new AdamW([master], { lr: H.lr, betas: [H.b1, H.b2], eps: H.eps, weightDecay: H.wd });
    const p = master.toFloat32Array();
    const m = new Float32Array(N);
    const v = new Float32Array(N);
    for (let s = 1; s <= 2; s++) {
      const gBf16 = Tensor.fromArray(Array.from(values(N, 70 + s)), [N]).to("bfloat16");
      opt2.stepParam(0, gBf16, copy, 0.61);
      reference(p, gBf16.toFloat32Array(), m, v, s, H, 0.61, true);
      assertNear(master.toFloat32Array(), p, `master step ${s}`);
      // the copy is the master rounded to bf16 (a master within rounding of the reference may round the other way)
      assertSame(copy.toFloat32Array(), master.toFloat32Array().map(toBf16), `bf16 copy step ${s}`);
    }
  } finally {
    setKernelMode(prev);
  }
});

test("AdamW refuses a gradient of another shape, by name of both shapes", () => {
  const param = Tensor.zeros([4]).requiresGrad_();
  const opt = new AdamW([param], { lr: 0.1 });
  assert.throws(
    () => opt.stepParam(0, Tensor.zeros([5]), null, 1),
    /gradient of shape \[5\] for a parameter of shape \[4\]/,
  );
  assert.throws(() => opt.stepParam(1, Tensor.zeros([4]), null, 1), /parameter index/);
});

test("sumOfSquares equals a float64 sum over float32 and bf16 tensors (and ignores empty ones)", () => {
  const a = values(200_003, 5);
  const b = Tensor.fromArray(Array.from(values(1001, 6)), [7, 143]).to("bfloat16");
  const c = Tensor.fromArray([3, 4], [2], "float64");
  let want = 0;
  for (const x of a) want += x * x;
  for (const x of b.toFloat32Array()) want += x * x;
  want += 25;
  const got = sumOfSquares([Tensor.fromArray(Array.from(a), [a.length]), b, Tensor.zeros([0]), c]);
  assert.ok(Math.abs(got - want) <= 1e-6 * want, `${got} vs ${want}`);
  // a non-contiguous view reads the values it shows
  const t = Tensor.fromArray([1, 2, 3, 4, 5, 6], [2, 3]).transpose(0, 1).narrow(0, 1, 2);
  assert.equal(sumOfSquares([t]), 4 + 25 + 9 + 36);
});
