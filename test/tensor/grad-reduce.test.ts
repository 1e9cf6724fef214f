/**
 * Identification's gradient reduction (native/src/grad_reduce.cc): meanAbsOverTime against the ATen op sequence it
 * replaces, g.abs().float().sum(1).div(lengths), bit for bit — float32 and bf16, lengths that cross each level of
 * ATen's cascaded sum (16, 256, 4096 rows), widths that are not a multiple of the vector block, strided views (a
 * slice of a larger product, a transposed gradient) — and the backward hook (meanAbsGradHook): the same values from
 * inside a backward as from the retained gradient, the gradient passed on unchanged, on a slice of a larger output
 * too, and argument errors as exceptions.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Tensor,
  backward,
  manualSeed,
  meanAbsGradHook,
  meanAbsOverTime,
  noGrad,
  tidy,
  withGrad,
} from "../../src/tensor/index.js";
import { native } from "../../src/tensor/native.js";

/** The reduction as identification computed it before the hook (identify.ts, perSampleMeanAbsGrad). */
function opSequence(g: Tensor, lengths: Tensor): Float32Array {
  return noGrad(() => g.contiguous().abs().float().sum(1).div(lengths).toFloat32Array());
}

function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++)
    if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i}: ${a[i]} vs ${b[i]} (of ${a.length})`);
}

/** Values spread over many magnitudes, signs mixed, so that the order of the additions shows in the last bits. */
function spread(shape: number[], dtype: "float32" | "bfloat16"): Tensor {
  return noGrad(() => Tensor.randn(shape).mul(Tensor.randn(shape).mul(3).exp()).to(dtype));
}

function lengthsOf(values: number[]): Tensor {
  return Tensor.fromArray(values, [values.length, 1]);
}

/** Σ_t in plain order, float32 (what a naive loop would give): the test must tell it from ATen's cascade. */
function naive(g: Tensor, lengths: number[]): Float32Array {
  const [B, T, N] = g.shape;
  const v = noGrad(() => g.float().contiguous().toFloat32Array());
  const out = new Float32Array(B * N);
  for (let b = 0; b < B; b++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let t = 0; t < T; t++) s = Math.fround(s + Math.abs(v[(b * T + t) * N + j]!));
      out[b * N + j] = Math.fround(s / lengths[b]!);
    }
  return out;
}

// The probe found width 8 on libtorch 1.13 (Debian 12) and on 2.6 (trixie chroot, scripts/libtorch2-chroot.sh,
// 2026-11-29): ATen's outer-sum order is the same in both; 16 (ATen's AVX-512 build) is tried too.
test("the CPU kernel is in use: a probe found ATen's summation order (x86-64)", (t) => {
  if (process.arch !== "x64") return t.skip("the probe's widths are x86's (8 or 16 floats)");
  assert.ok([8, 16].includes(native.meanAbsKernelWidth()), `width ${native.meanAbsKernelWidth()}`);
});

test("meanAbsOverTime equals the op sequence at two threads on identification's shapes", () => {
  manualSeed(5);
  const before = native.getNumThreads();
  native.setNumThreads(2);
  try {
    for (const [B, T, N] of [
      [4, 300, 896],
      [2, 257, 4864],
      [3, 200, 128],
      [2, 100, 1000],
    ])
      tidy(() => {
        const g = spread([B!, T!, N!], "bfloat16");
        const lengths = lengthsOf(Array.from({ length: B! }, (_, b) => T! - b));
        assertSameBits(
          meanAbsOverTime(g, lengths).toFloat32Array(),
          opSequence(g, lengths),
          `[${B}, ${T}, ${N}]`,
        );
      });
  } finally {
    native.setNumThreads(before);
  }
});

for (const dtype of ["float32", "bfloat16"] as const) {
  test(`meanAbsOverTime equals g.abs().float().sum(1).div(lengths) bit for bit (${dtype})`, () => {
    manualSeed(dtype === "float32" ? 11 : 12);
    let naiveDiffers = false;
    for (const T of [1, 2, 3, 15, 16, 17, 31, 255, 256, 257, 300, 4097])
      for (const N of [1, 5, 16, 64, 70, 130]) {
        if (T * N > 300_000) continue;
        const B = T > 1000 ? 1 : 3;
        tidy(() => {
          const g = spread([B, T, N], dtype);
          const lens = Array.from({ length: B }, (_, b) => Math.max(1, T - 3 * b));
          const lengths = lengthsOf(lens);
          const want = opSequence(g, lengths);
          assertSameBits(meanAbsOverTime(g, lengths).toFloat32Array(), want, `T ${T} N ${N}`);
          const n = naive(g, lens);
          if (n.some((v, i) => v !== want[i])) naiveDiffers = true;
        });
      }
    // the comparison is sharp: summing in plain order would not pass it
    assert.ok(
      naiveDiffers,
      "a plain left-to-right sum gave the same bits everywhere: the test cannot tell orders apart",
    );
  });

  test(`meanAbsOverTime on strided views: a slice of a larger product, a transposed gradient (${dtype})`, () => {
    manualSeed(21);
    tidy(() => {
      const lengths = lengthsOf([300, 290]);
      // q/k/v from one product: k is columns [96, 128) of [B, T, 160]
      const wide = spread([2, 300, 160], dtype);
      const k = wide.narrow(2, 96, 32);
      assertSameBits(meanAbsOverTime(k, lengths).toFloat32Array(), opSequence(k, lengths), "narrowed");
      // columns not adjacent: [B, N, T] transposed to [B, T, N]
      const t = spread([2, 70, 300], dtype).transpose(1, 2);
      assertSameBits(meanAbsOverTime(t, lengths).toFloat32Array(), opSequence(t, lengths), "transposed");
      // samples not adjacent: every other sample of a batch of 4
      const every = spread([4, 300, 70], dtype).narrow(1, 0, 300);
      const picked = Tensor.cat([every.narrow(0, 0, 1), every.narrow(0, 2, 1)], 0);
      assertSameBits(
        meanAbsOverTime(picked, lengths).toFloat32Array(),
        opSequence(picked, lengths),
        "samples apart",
      );
    });
  });

  test(`meanAbsGradHook writes the retained gradient's reduction and passes the gradient on unchanged (${dtype})`, () => {
    manualSeed(31);
    const [B, T, D, N] = [3, 37, 24, 150];
    const x0 = spread([B, T, D], dtype);
    const w = spread([N, D], dtype);
    const c = spread([B, T, N], dtype);
    const lengths = lengthsOf([37, 30, 20]);
    // without the hook: the retained gradient of y, and x's gradient
    const x1 = noGrad(() => x0.clone()).requiresGrad_();
    let retained!: Float32Array;
    withGrad(() => {
      const y = x1.linear(w);
      y.retainGrad();
      backward([y.mul(c).sum()]);
      retained = opSequence(y.grad!, lengths);
    });
    // with the hook
    const x2 = noGrad(() => x0.clone()).requiresGrad_();
    const out = Tensor.full([B, N], NaN);
    withGrad(() => {
      const y = x2.linear(w);
      meanAbsGradHook(y, out, lengths);
      backward([y.mul(c).sum()]);
    });
    assertSameBits(out.toFloat32Array(), retained, "hook vs retained gradient");
    assertSameBits(
      x2.grad!.float().toFloat32Array(),
      x1.grad!.float().toFloat32Array(),
      "gradient passed on",
    );
  });
}

test("meanAbsGradHook on slices of one larger product (concatenated q/k/v)", () => {
  manualSeed(41);
  const [B, T, D] = [2, 20, 16];
  const sizes = [32, 8, 8];
  const x = noGrad(() => Tensor.randn([B, T, D])).requiresGrad_();
  const w = Tensor.randn([48, D], "bfloat16");
  const c = Tensor.randn([B, T, 48], "bfloat16");
  const lengths = lengthsOf([20, 17]);
  const outs = sizes.map((n) => Tensor.full([B, n], NaN));
  let want!: Float32Array[];
  withGrad(() => {
    const y = x.to("bfloat16").linear(w);
    let at = 0;
    const parts = sizes.map((n) => {
      const p = y.narrow(2, at, n);
      at += n;
      return p;
    });
    parts.forEach((p, i) => meanAbsGradHook(p, outs[i]!, lengths));
    // each slice is used on its own (as q, k and v are), so each gets its own gradient
    const loss = parts.reduce((a, p, i) => a.add(p.mul(c.narrow(2, 0, sizes[i]!)).sum()), Tensor.full([], 0));
    y.retainGrad();
    backward([loss]);
    at = 0;
    want = sizes.map((n) => {
      const g = y.grad!.narrow(2, at, n);
      at += n;
      return opSequence(g, lengths);
    });
  });
  outs.forEach((o, i) => assertSameBits(o.toFloat32Array(), want[i]!, `slice ${i}`));
});

test("meanAbsGradHook and meanAbsOverTime refuse bad arguments with an exception", () => {
  const y = noGrad(() => Tensor.randn([2, 5, 7])).requiresGrad_();
  const lengths = lengthsOf([5, 4]);
  const out = Tensor.full([2, 7], NaN);
  assert.throws(() => meanAbsGradHook(y, Tensor.full([2, 6], NaN), lengths), /out must be float32 \[2, 7\]/);
  assert.throws(
    () => meanAbsGradHook(y, Tensor.full([2, 7], NaN, "bfloat16"), lengths),
    /out must be float32/,
  );
  assert.throws(() => meanAbsGradHook(y, out, lengthsOf([5, 4, 3])), /lengths must be float32 \[2\]/);
  assert.throws(
    () => meanAbsGradHook(y, out, Tensor.fromArray([5, 4], [2, 1], "int64")),
    /lengths must be float32/,
  );
  assert.throws(
    () =>
      meanAbsGradHook(
        noGrad(() => Tensor.randn([2, 5, 7])),
        out,
        lengths,
      ),
    /does not require grad/,
  );
  assert.throws(() => meanAbsGradHook(y.reshape([10, 7]), out, lengths), /\[batch, time, features\]/);
  assert.throws(
    () => meanAbsOverTime(Tensor.fromArray([1, 2], [1, 2, 1], "int64"), lengthsOf([2])),
    /floating-point/,
  );
  // nothing was registered by the failed calls: a backward through y runs and leaves out untouched
  withGrad(() => backward([y.sum()]));
  assert.ok(out.toFloat32Array().every((v) => Number.isNaN(v)));
});
