/**
 * CPU bf16 products accumulate in float32 and are rounded once (native/src/f32_products.cc; tensor.ts f32Products),
 * wherever libtorch runs: where its own do (oneDNN, AVX-512 CPUs) and where they do not (libtorch 1.13 on AVX2 CPUs,
 * which accumulates in bf16: rerouted). Each result is checked against the float64 product of the same bf16 values,
 * at Qwen2.5-0.5B's reduction sizes (896, 4864): within one bf16 rounding of it (2^-8 of its magnitude) plus a float32
 * accumulation allowance (2^-14 of Σ|a||b|, well above float32's, well below what a bf16 accumulator loses: at K = 4864
 * libtorch 1.13's fallback is off by ~14% of the largest value). The tests state the property, not the switch.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { spawnSync } from "node:child_process";
import {
  Tensor,
  attention,
  bf16ProductsAccumulateF32,
  clusterRowUpdate,
  describeBf16Products,
  f32Products,
  frozenLinear,
  frozenLinearCache,
  manualSeed,
  noGrad,
  setF32Products,
  torchVersion,
  withGrad,
} from "../../src/tensor/index.js";

/** A bf16 tensor of N(0, scale²) values (a leaf that requires a gradient when asked). */
function bf16(shape: number[], grad = false, scale = 1): Tensor {
  const t = noGrad(() => Tensor.randn(shape).mul(scale).to("bfloat16"));
  return grad ? t.requiresGrad_() : t;
}

/**
 * The largest |y - ref| / (2^-8 |ref| + 2^-14 Σ|a||b|) over the elements: at most 1 when y is the exact product of the
 * same inputs rounded once to bf16 (up to float32 accumulation). ref and abs in float64.
 */
function roundings(y: Tensor, ref: Tensor, abs: Tensor): number {
  assert.deepEqual(y.shape, ref.shape, "shape");
  const a = y.toFloat64Array();
  const r = ref.toFloat64Array();
  const s = abs.toFloat64Array();
  let worst = 0;
  for (let i = 0; i < a.length; i++)
    worst = Math.max(worst, Math.abs(a[i] - r[i]) / (2 ** -8 * Math.abs(r[i]) + 2 ** -14 * s[i] + 1e-30));
  return worst;
}

const f64 = (t: Tensor) => noGrad(() => t.detach().to("float64"));
const abs64 = (t: Tensor) => noGrad(() => f64(t).abs());

/** The probe's product: [16, 513] rows of 1 then 512 x 2^-9, against ones (exactly 2 accumulated in float32). */
function probeProduct(): Tensor {
  return noGrad(() => {
    const row = [1, ...new Array(512).fill(2 ** -9)];
    const a = Tensor.fromArray(new Array(16).fill(row).flat(), [16, 513]).to("bfloat16");
    return a.matmul(Tensor.ones([513, 16], "bfloat16"));
  });
}

function withMode<T>(mode: "auto" | "on" | "off", fn: () => T): T {
  const prev = setF32Products(mode);
  try {
    return fn();
  } finally {
    setF32Products(prev);
  }
}

test("bf16 products accumulate in float32: the probe's product is exactly 2 (default setting)", () => {
  const y = probeProduct().toFloat32Array();
  assert.ok(
    y.every((v) => v === 2),
    `got ${y[0]}`,
  );
  assert.match(describeBf16Products(), /^bf16 products: /);
});

test("the probe tells libtorch's own product apart; forced off, products are libtorch's own bit for bit", () => {
  withMode("off", () => {
    assert.equal(f32Products(), false);
    const own = probeProduct().toFloat32Array();
    // libtorch's own product is exactly 2 everywhere iff the probe found float32 accumulation
    assert.equal(
      own.every((v) => v === 2),
      bf16ProductsAccumulateF32(),
    );
    // linear and matmul of the transpose both run libtorch's own mm here: the same values bit for bit
    manualSeed(5);
    const x = bf16([40, 896]);
    const w = bf16([96, 896]);
    assert.deepEqual(x.linear(w).toFloat32Array(), x.matmul(w.T).toFloat32Array());
  });
});

test("the probe's answer on this CPU: libtorch 1.13 accumulates bf16 in bf16 without AVX-512, in float32 with it; 2.6 in float32 on both", (t) => {
  let flags = "";
  try {
    flags = /^flags\s*:(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "";
  } catch {
    return t.skip("no /proc/cpuinfo");
  }
  if (process.arch === "x64" && torchVersion().startsWith("2.6.")) {
    // PyTorch 2.6's own mm on an AVX2 CPU is within one bf16 rounding of the float64 product at K = 64..4864 in
    // every layout (BENCHMARKS "libtorch 2.x on AVX2 CPUs"); with AVX-512 its bf16 products run on oneDNN
    assert.equal(bf16ProductsAccumulateF32(), true);
    withMode("off", () => {
      manualSeed(26);
      const [a, b] = [bf16([64, 4864]), bf16([4864, 256])];
      const y = noGrad(() => a.matmul(b));
      const worst = roundings(y, f64(a).matmul(f64(b)), abs64(a).matmul(abs64(b)));
      assert.ok(worst <= 1, `libtorch's own [64, 4864] x [4864, 256]: ${worst} roundings`);
    });
    return;
  }
  if (!torchVersion().startsWith("1."))
    return t.skip(`libtorch ${torchVersion()}: only 1.x's and 2.6's CPU paths are known here`);
  const avx512 = ["avx512bw", "avx512vl", "avx512dq"].every((f) => new RegExp(`\\b${f}\\b`).test(flags));
  // libtorch 1.13 sends bf16 products to oneDNN exactly on CPUs with these three (mkldnn_bf16_device_check)
  assert.equal(bf16ProductsAccumulateF32(), avx512);
  assert.equal(f32Products(), !avx512);
  if (!avx512) assert.match(describeBf16Products(), /computed in float32.*accumulates bf16 products in bf16/);
});

for (const K of [896, 4864]) {
  test(`linear, bf16, K = ${K}: y, dX, dW, db within one rounding of the float64 products of the same values`, () => {
    manualSeed(K);
    const x = bf16([2, 24, K], true);
    const w = bf16([256, K], true, 0.05);
    const b = bf16([256], true);
    const g = bf16([2, 24, 256]);
    const y = withGrad(() => {
      const out = x.linear(w, b);
      out.backward(g);
      return out.detach();
    });
    for (const t of [y, x.grad!, w.grad!, b.grad!]) assert.equal(t.dtype, "bfloat16");
    const x2 = f64(x).reshape([48, K]);
    const g2 = f64(g).reshape([48, 256]);
    const ax2 = abs64(x).reshape([48, K]);
    const ag2 = abs64(g).reshape([48, 256]);
    const yRef = x2.matmul(f64(w).T).add(f64(b)).reshape([2, 24, 256]);
    const yAbs = ax2.matmul(abs64(w).T).add(abs64(b)).reshape([2, 24, 256]);
    assert.ok(roundings(y, yRef, yAbs) <= 1, `y: ${roundings(y, yRef, yAbs)} roundings`);
    const dx = roundings(
      x.grad!,
      g2.matmul(f64(w)).reshape([2, 24, K]),
      ag2.matmul(abs64(w)).reshape([2, 24, K]),
    );
    assert.ok(dx <= 1, `dX: ${dx}`);
    const dw = roundings(w.grad!, g2.T.matmul(x2), ag2.T.matmul(ax2));
    assert.ok(dw <= 1, `dW: ${dw}`);
    const db = roundings(b.grad!, g2.sum(0), ag2.sum(0));
    assert.ok(db <= 1, `db: ${db}`);
  });
}

test("frozenLinear and linear on a frozen bf16 weight, K = 4864: y and dX within one rounding", () => {
  manualSeed(11);
  const w = bf16([896, 4864], false, 0.05);
  const g = bf16([40, 896]);
  for (const f of [frozenLinear, (x: Tensor, ww: Tensor) => x.linear(ww)]) {
    const x = bf16([40, 4864], true);
    const y = withGrad(() => {
      const out = f(x, w);
      out.backward(g);
      return out.detach();
    });
    assert.ok(roundings(y, f64(x).matmul(f64(w).T), abs64(x).matmul(abs64(w).T)) <= 1, "y");
    assert.ok(roundings(x.grad!, f64(g).matmul(f64(w)), abs64(g).matmul(abs64(w))) <= 1, "dX");
    assert.equal(w.grad, null);
  }
});

test("computed in float32, frozenLinear holds W's float32 copy (no transposed one: it would buy nothing): dX from it", () => {
  withMode("on", () => {
    manualSeed(15);
    frozenLinearCache(true);
    const w = bf16([256, 896], false, 0.05);
    const x = bf16([32, 896], true);
    const g = bf16([32, 256]);
    withGrad(() => frozenLinear(x, w).backward(g));
    assert.deepEqual(frozenLinearCache(), { count: 1, bytes: 256 * 896 * 4 });
    assert.ok(roundings(x.grad!, f64(g).matmul(f64(w)), abs64(g).matmul(abs64(w))) <= 1, "dX");
    frozenLinearCache(true);
  });
});

test("matmul, bf16, K = 896 with a broadcast operand: values and gradients (summed over the batch)", () => {
  manualSeed(12);
  const a = bf16([3, 32, 896], true);
  const b = bf16([896, 128], true, 0.05);
  const g = bf16([3, 32, 128]);
  const y = withGrad(() => {
    const out = a.matmul(b);
    out.backward(g);
    return out.detach();
  });
  assert.deepEqual([a.grad!.dtype, b.grad!.dtype], ["bfloat16", "bfloat16"]);
  assert.ok(roundings(y, f64(a).matmul(f64(b)), abs64(a).matmul(abs64(b))) <= 1, "y");
  const ga = roundings(a.grad!, f64(g).matmul(f64(b).T), abs64(g).matmul(abs64(b).T));
  assert.ok(ga <= 1, `dA: ${ga}`);
  const ref = f64(a)
    .reshape([96, 896])
    .T.matmul(f64(g).reshape([96, 128]));
  const refAbs = abs64(a)
    .reshape([96, 896])
    .T.matmul(abs64(g).reshape([96, 128]));
  assert.ok(roundings(b.grad!, ref, refAbs) <= 1, `dB: ${roundings(b.grad!, ref, refAbs)}`);
});

test("GoodVibe's cluster rows on a bf16 down_proj (K = 4864): the rows' update within one rounding, dU in float32", () => {
  manualSeed(13);
  const N = 48;
  const K = 4864;
  const rowsArr = Array.from({ length: 50 }, (_, i) => i * 17);
  const clustersArr = rowsArr.map((_, i) => i % 3);
  const rows = Tensor.fromArray(rowsArr, [50], "int64");
  const clusters = Tensor.fromArray(clustersArr, [50], "int64");
  const x = bf16([N, K], true);
  const U = noGrad(() => Tensor.randn([3, K]).mul(0.05)).requiresGrad_();
  const base = noGrad(() => Tensor.zeros([N, 896], "bfloat16")).requiresGrad_();
  const g = bf16([N, 896]);
  const y = withGrad(() => {
    const out = clusterRowUpdate(base.mul(1), x, U, rows, clusters);
    out.backward(g);
    return out.detach();
  });
  const Ub = f64(noGrad(() => U.to("bfloat16")));
  const per = f64(x).matmul(Ub.T).indexSelect(1, clusters); // [N, 50]
  const perAbs = abs64(x).matmul(Ub.abs().T).indexSelect(1, clusters);
  assert.ok(roundings(y.indexSelect(1, rows), per, perAbs) <= 1, "the updated rows");
  assert.equal(
    y.abs().sum().item(),
    y.indexSelect(1, rows).abs().sum().item(),
    "only the selected rows change",
  );
  // dU = (dY at the rows summed per cluster)ᵀ · x, accumulated in float32 (float32 rounding)
  const gc = noGrad(() => Tensor.zeros([N, 3], "float64").indexAdd(1, clusters, f64(g).indexSelect(1, rows)));
  const dU = gc.T.matmul(f64(x));
  const dUAbs = gc.abs().T.matmul(abs64(x));
  const du = U.grad!.toFloat64Array();
  const r = dU.toFloat64Array();
  const s = dUAbs.toFloat64Array();
  for (let i = 0; i < du.length; i++)
    assert.ok(Math.abs(du[i] - r[i]) <= 2 ** -20 * s[i] + 1e-30, `dU[${i}]`);
  assert.equal(U.grad!.dtype, "float32");
});

/**
 * Causal attention of q [1, G, T, R, D] over k, v [1, G, T, D] in float64 from the same bf16 values: output and the
 * reference for (q, k, v)'s gradients under upstream g [1, T, G·R·D].
 */
function attentionRef(q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: number) {
  const [, G, T, R, D] = q.shape;
  return withGrad(() => {
    const qq = f64(q).requiresGrad_();
    const kk = f64(k).requiresGrad_();
    const vv = f64(v).requiresGrad_();
    const mask = new Float64Array(T * R * T);
    for (let t = 0; t < T; t++)
      for (let r = 0; r < R; r++) for (let j = t + 1; j < T; j++) mask[(t * R + r) * T + j] = -Infinity;
    const m = Tensor.fromArray(mask, [1, 1, T * R, T], "float64");
    const p = qq
      .reshape([1, G, T * R, D])
      .matmul(kk.transpose(2, 3))
      .mul(scale)
      .add(m)
      .softmax(-1);
    const o = p
      .matmul(vv)
      .reshape([1, G, T, R, D])
      .permute([0, 2, 1, 3, 4])
      .reshape([1, T, G * R * D]);
    o.backward(f64(g));
    return { o: o.detach(), dq: qq.grad!, dk: kk.grad!, dv: vv.grad! };
  });
}

test("fused attention, bf16, Qwen2.5-0.5B's heads (2 KV groups of 7 heads of 64), 256 tokens: output and gradients", () => {
  manualSeed(14);
  const [G, T, R, D] = [2, 256, 7, 64];
  const q = bf16([1, G, T, R, D], true);
  const k = bf16([1, G, T, D], true);
  const v = bf16([1, G, T, D], true);
  const g = bf16([1, T, G * R * D]);
  const scale = 1 / Math.sqrt(D);
  const o = withGrad(() => {
    const out = attention(q, k, v, { scale });
    out.backward(g);
    return out.detach();
  });
  const ref = attentionRef(q, k, v, g, scale);
  // relative to the largest reference value: scores, probabilities and the output are each rounded to bf16 once
  // (a few 2^-9), while libtorch 1.13's bf16 accumulation over D = 64 and T = 256 terms is off by ~10x that
  const rel = (a: Tensor, b: Tensor) =>
    noGrad(() => f64(a).sub(b).abs().amax().item() / b.abs().amax().item());
  const errs = {
    o: rel(o, ref.o),
    dq: rel(q.grad!, ref.dq),
    dk: rel(k.grad!, ref.dk),
    dv: rel(v.grad!, ref.dv),
  };
  for (const [name, e] of Object.entries(errs)) assert.ok(e <= 2 ** -6, `${name}: ${e} of its largest value`);
});

/**
 * In a fresh node, products routed through float32: the peak resident memory that a frozen vocabulary-sized weight's
 * dX = dY·W adds, for dY [256, 151936] in bf16 (lm_head's logits gradient at Qwen's vocabulary, reduction 64 so that W
 * is small): dY is upcast a block of columns at a time beside W's blocks, never whole (its float32 copy, 156 MB, was
 * larger than the product's own memory: BENCHMARKS "lm_head's gradient upcast a block at a time"). dX still within
 * one rounding of the float64 product.
 */
test("computed in float32, dX of a vocabulary-sized frozen weight never upcasts dY whole", (t) => {
  if (!fs.existsSync("/proc/self/clear_refs")) return t.skip("no /proc/self/clear_refs (not Linux)");
  const tensor = new URL("../../src/tensor/index.js", import.meta.url).href;
  const memory = new URL("../../src/util/memory.js", import.meta.url).href;
  const script = `
    const { Tensor, noGrad, withGrad, setF32Products, manualSeed } = await import(${JSON.stringify(tensor)});
    const { resetPeakRss, peakRssBytes } = await import(${JSON.stringify(memory)});
    setF32Products("on");
    manualSeed(16);
    const [N, V, K] = [256, 151936, 64];
    const bf16 = (shape, scale) => noGrad(() => Tensor.randn(shape).mul(scale).to("bfloat16"));
    const w = bf16([V, K], 0.05), g = bf16([N, V], 1), x = bf16([N, K], 1).requiresGrad_();
    // a first backward touches the code, threads and heap a backward needs (tens of MiB resident on a fresh
    // process); the second one is measured. A whole float32 copy of dY (>= 32 MiB) is a fresh mapping every time.
    withGrad(() => x.linear(w).backward(g));
    x.grad.zero_();
    const y = withGrad(() => x.linear(w));
    resetPeakRss();
    const before = peakRssBytes();
    withGrad(() => y.backward(g));
    const grown = peakRssBytes() - before;
    // dX against float64: within one bf16 rounding (2^-8) plus a float32 accumulation allowance (2^-14 of sum |g||w|)
    const worst = noGrad(() => {
      const f = (t) => t.detach().to("float64");
      // dX's first 32 rows (row i depends on dY's row i only): the float64 copies of all of dY would be 311 MB
      const gi = f(g.narrow(0, 0, 32)), dx = f(x.grad.narrow(0, 0, 32));
      const ref = gi.matmul(f(w)), abs = gi.abs().matmul(f(w).abs());
      return dx.sub(ref).abs().div(ref.abs().mul(2 ** -8).add(abs.mul(2 ** -14)).add(1e-30)).amax().item();
    });
    console.log(JSON.stringify({ grown, worst }));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    env: { ...process.env, GOODVIBE_THREADS: "1" },
  });
  assert.equal(r.status, 0, r.stderr);
  const { grown, worst } = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
    grown: number;
    worst: number;
  };
  const whole = 256 * 151936 * 4; // dY in float32
  t.diagnostic(
    `the backward's peak grew ${(grown / 2 ** 20).toFixed(1)} MiB; dX within ${worst.toFixed(3)} roundings`,
  );
  assert.ok(
    grown < whole / 2,
    `the backward's peak grew ${(grown / 2 ** 20).toFixed(1)} MiB (dY in float32: 148.4 MiB)`,
  );
  assert.ok(worst <= 1, `dX: ${worst} roundings`);
});
