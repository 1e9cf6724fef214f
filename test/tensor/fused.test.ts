/**
 * The addon's fused decoder ops (native/src/fused.cc) against independent references, values and gradients:
 * each op written out with elementary tensor ops here (transformers' eager formulas), and the addon's own
 * composite path (libtorch ops, what CUDA runs). float32 to float32 rounding; bfloat16 to its precision.
 * The per-family checks (fixture logits and gradients from PyTorch) are in test/models/fused-families.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Tensor,
  attention,
  clusterRowUpdate,
  gatedAct,
  grad,
  kernelMode,
  manualSeed,
  noGrad,
  rmsNorm,
  rope,
  setKernelMode,
  tidy,
  withGrad,
  type DType,
} from "../../src/tensor/index.js";
import { additiveMask, applyRope, ropeInvFreq, ropeTables } from "../../src/models/layers.js";

const TOL = { float32: 2e-5 };

function maxRelDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape, "shape");
  const x = a.toFloat32Array();
  const y = b.toFloat32Array();
  let scale = 1e-6;
  for (const v of y) scale = Math.max(scale, Math.abs(v));
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m / scale;
}

function leaf(shape: number[], dtype: DType, scale = 1): Tensor {
  return noGrad(() => Tensor.randn(shape).mul(scale).to(dtype)).requiresGrad_();
}

/** Output and gradients of sum(f(inputs) * upstream) w.r.t. the inputs, computed under the given kernel mode. */
function run(
  mode: "native" | "composite" | "reference",
  inputs: Tensor[],
  f: (...xs: Tensor[]) => Tensor,
  upstream: (out: Tensor) => Tensor,
): { out: Tensor; grads: Tensor[] } {
  const prev = kernelMode();
  setKernelMode(mode === "native" ? "native" : "composite");
  try {
    return withGrad(() => {
      const xs = inputs.map((x) => x.detach().requiresGrad_(x.requiresGrad));
      const out = f(...xs);
      const loss = out.float().mul(upstream(out)).sum();
      const gs = grad(
        [loss],
        xs.filter((x) => x.requiresGrad),
      );
      return { out: out.detach(), grads: gs.map((g) => g!) };
    });
  } finally {
    setKernelMode(prev);
  }
}

/**
 * The fused op (native kernels, then the composite path) against the reference formula, output and gradients.
 * float32: within rounding. bfloat16: both the fused op and the eager bf16 reference are measured against the
 * reference in float32 on the same (bf16-valued) inputs, and the fused op must be as accurate as eager bf16
 * (within a factor 2: both round differently) or within 1e-2 of the largest value.
 */
function compare(
  what: string,
  dtype: DType,
  inputs: Tensor[],
  fused: (...xs: Tensor[]) => Tensor,
  reference: (...xs: Tensor[]) => Tensor,
  opts: { upstream?: (out: Tensor) => Tensor } = {},
): void {
  tidy(() => {
    const up = opts.upstream ?? ((out: Tensor) => noGrad(() => Tensor.randn(out.shape)));
    manualSeed(7);
    const u = noGrad(() => up(Tensor.zeros(reference(...inputs.map((x) => x.detach())).shape)));
    const upstream = () => u;
    const ref = run("reference", inputs, reference, upstream);
    const exact =
      dtype === "float32"
        ? ref
        : run(
            "reference",
            inputs.map((x) => noGrad(() => x.float()).requiresGrad_(x.requiresGrad)),
            reference,
            upstream,
          );
    const check = (label: string, got: Tensor, eager: Tensor, want: Tensor) => {
      const err = maxRelDiff(got.float(), want.float());
      const tol =
        dtype === "float32" ? TOL.float32 : Math.max(2 * maxRelDiff(eager.float(), want.float()), 1e-2);
      assert.ok(
        err <= tol,
        `${what} ${label} (${dtype}): max diff ${err.toExponential(2)} of the largest value > ${tol.toExponential(2)}`,
      );
    };
    for (const mode of ["native", "composite"] as const) {
      const got = run(mode, inputs, fused, upstream);
      check(`${mode}: output`, got.out, ref.out, exact.out);
      assert.equal(got.grads.length, ref.grads.length);
      got.grads.forEach((g, i) => check(`${mode}: gradient ${i}`, g, ref.grads[i], exact.grads[i]));
    }
  });
}

for (const dtype of ["float32", "bfloat16"] as DType[]) {
  test(`rmsNorm (w·x and Gemma's (1+w)·x) matches the eager formula, values and gradients (${dtype})`, () => {
    manualSeed(1);
    for (const onePlus of [false, true]) {
      for (const shape of [
        [2, 5, 64],
        [3, 7, 4, 32], // q/k norm over head_dim
        [1, 1, 33], // odd row length: the vector loop's tail
      ]) {
        const D = shape[shape.length - 1];
        const x = leaf(shape, dtype, 3);
        const w = noGrad(() =>
          Tensor.randn([D])
            .mul(0.2)
            .add(onePlus ? 0 : 1)
            .to(dtype),
        ).requiresGrad_();
        const eager = (xx: Tensor, ww: Tensor) => {
          const xf = xx.float();
          const n = xf.mul(xf.square().mean(-1, true).add(1e-6).rsqrt());
          return onePlus ? n.mul(ww.float().add(1)).to(xx.dtype) : ww.mul(n.to(xx.dtype));
        };
        compare(
          `rmsNorm onePlus=${onePlus} [${shape}]`,
          dtype,
          [x, w],
          (xx, ww) => rmsNorm(xx, ww, 1e-6, onePlus),
          eager,
        );
      }
    }
  });

  test(`rope matches rotate_half and lays heads out by KV group (${dtype})`, () => {
    manualSeed(2);
    const [B, T, H, D, G] = [2, 6, 6, 16, 2];
    const { cos, sin } = ropeTables(
      ropeInvFreq(D, 10000, { type: "default" }),
      Tensor.arange(3, 3 + T)
        .unsqueeze(0)
        .expand([B, T]),
      dtype,
    );
    const x = leaf([B, T, H, D], dtype);
    compare(
      "rope",
      dtype,
      [x],
      (xx) => rope(xx, cos, sin, G),
      // [B, H, T, D] -> [B, G, R, T, D] -> [B, G, T, R, D]
      (xx) =>
        applyRope(xx.transpose(1, 2), cos, sin)
          .reshape([B, G, H / G, T, D])
          .permute([0, 1, 3, 2, 4])
          .contiguous(),
    );
  });

  test(`gatedAct (SiLU and GELU-tanh gates) matches act(g)·u (${dtype})`, () => {
    manualSeed(3);
    for (const act of ["silu", "gelu_pytorch_tanh"] as const) {
      // wide range: the exp approximation's clamps and both tails of the activations
      const g = leaf([3, 5, 97], dtype, 6);
      const u = leaf([3, 5, 97], dtype);
      compare(
        `gatedAct ${act}`,
        dtype,
        [g, u],
        (gg, uu) => gatedAct(gg, uu, act),
        (gg, uu) => (act === "silu" ? gg.silu() : gg.gelu("tanh")).mul(uu),
      );
    }
  });
}

/** Eager attention as transformers writes it, from [B, G, T, R, D] queries and [B, G, S, D] keys/values. */
function eagerAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  scale: number,
  past: number,
  window: number | null,
  keyMask: Tensor | null,
  softcap: number | null,
): Tensor {
  const [B, G, T, R, D] = q.shape;
  const S = k.size(2);
  const qh = q.permute([0, 1, 3, 2, 4]).reshape([B, G * R, T, D]);
  const kh = k
    .unsqueeze(2)
    .expand([B, G, R, S, D])
    .reshape([B, G * R, S, D]);
  const vh = v
    .unsqueeze(2)
    .expand([B, G, R, S, D])
    .reshape([B, G * R, S, D]);
  let s = qh.matmul(kh.transpose(2, 3)).mul(scale);
  if (softcap) s = s.div(softcap).tanh().mul(softcap);
  const p = s
    .add(additiveMask(B, T, past, window, keyMask, q.dtype))
    .softmax(-1, "float32")
    .to(q.dtype);
  return p
    .matmul(vh)
    .transpose(1, 2)
    .reshape([B, T, G * R * D]);
}

for (const dtype of ["float32", "bfloat16"] as DType[]) {
  test(`attention: causal GQA, KV cache, sliding window, padding and soft-capping match eager attention (${dtype})`, () => {
    manualSeed(4);
    const [B, G, R, D] = [2, 2, 3, 16];
    const cases: {
      name: string;
      T: number;
      past: number;
      window: number | null;
      pad?: number[];
      softcap?: number;
    }[] = [
      { name: "causal", T: 9, past: 0, window: null },
      { name: "long (several query blocks)", T: 300, past: 0, window: null },
      { name: "after a cache of 5", T: 4, past: 5, window: null },
      { name: "one decoding step", T: 1, past: 11, window: null },
      { name: "sliding window 4", T: 12, past: 0, window: 4 },
      { name: "sliding window 3 after a cache", T: 5, past: 6, window: 3 },
      { name: "left padding", T: 8, past: 0, window: null, pad: [3, 0] },
      { name: "soft-capping", T: 7, past: 0, window: null, softcap: 5 },
    ];
    for (const c of cases) {
      const S = c.past + c.T;
      const q = leaf([B, G, c.T, R, D], dtype);
      const k = leaf([B, G, S, D], dtype);
      const v = leaf([B, G, S, D], dtype);
      const keyMask = c.pad
        ? Tensor.fromArray(
            c.pad.flatMap((p) => Array.from({ length: S }, (_, j) => (j < p ? 0 : 1))),
            [B, S],
            "int64",
          )
        : null;
      // a padding query sees no key: transformers' output there is undefined, so its gradient is 0 here
      const upstream = (out: Tensor) => {
        const r = Tensor.randn(out.shape);
        if (!keyMask) return r;
        const real = keyMask.narrow(1, c.past, c.T).unsqueeze(-1).to("float32");
        return r.mul(real);
      };
      const scale = 1 / Math.sqrt(D);
      const fused = (qq: Tensor, kk: Tensor, vv: Tensor) =>
        attention(qq, kk, vv, { scale, past: c.past, window: c.window, keyMask, softcap: c.softcap });
      const eager = (qq: Tensor, kk: Tensor, vv: Tensor) =>
        eagerAttention(qq, kk, vv, scale, c.past, c.window, keyMask, c.softcap ?? null);
      if (!keyMask) {
        compare(`attention ${c.name}`, dtype, [q, k, v], fused, eager, { upstream });
      } else {
        // compare at real query positions only (the rows a padding query produces are not defined)
        const rows = (out: Tensor) => out.mul(keyMask.narrow(1, c.past, c.T).unsqueeze(-1).to(out.dtype));
        compare(
          `attention ${c.name}`,
          dtype,
          [q, k, v],
          (a, b2, c2) => rows(fused(a, b2, c2)),
          (a, b2, c2) => rows(eager(a, b2, c2)),
          { upstream },
        );
      }
    }
  });
}

test("attention: a query that sees no key gets zeros, and no NaN reaches any gradient", () => {
  const q = leaf([1, 1, 3, 2, 8], "float32");
  const k = leaf([1, 1, 3, 8], "float32");
  const v = leaf([1, 1, 3, 8], "float32");
  const keyMask = Tensor.fromArray([0, 0, 1], [1, 3], "int64");
  const { out, grads } = run(
    "native",
    [q, k, v],
    (a, b, c) => attention(a, b, c, { scale: 0.3, keyMask }),
    (o) => Tensor.ones(o.shape),
  );
  const o = out.toFloat32Array();
  assert.ok(
    o.subarray(0, 32).every((x) => x === 0),
    "the first two queries see only padding",
  );
  for (const g of grads) assert.ok(g.toFloat32Array().every(Number.isFinite));
});

for (const dtype of ["float32", "bfloat16"] as DType[]) {
  test(`clusterRowUpdate adds x·U[c(i)] to the selected rows in place; dU per cluster, dx and dy (${dtype})`, () => {
    manualSeed(5);
    const [B, T, In, Out] = [2, 4, 24, 10];
    const rows = Tensor.fromArray([7, 2, 5, 0], [4], "int64");
    const clusters = Tensor.fromArray([0, 1, 1, 2], [4], "int64");
    const x = leaf([B, T, In], dtype);
    const W = leaf([Out, In], dtype);
    const U = leaf([3, In], "float32", 0.1);
    const eager = (xx: Tensor, ww: Tensor, uu: Tensor) =>
      xx.linear(ww).indexAdd(-1, rows, xx.linear(uu.to(xx.dtype)).indexSelect(-1, clusters));
    const fused = (xx: Tensor, ww: Tensor, uu: Tensor) =>
      clusterRowUpdate(xx.linear(ww), xx, uu, rows, clusters);
    compare("clusterRowUpdate", dtype, [x, W, U], fused, eager);
  });
}

test("fused ops refuse malformed input with an error, never a crash", () => {
  const f = (shape: number[]) => Tensor.zeros(shape);
  const cases: [string, () => unknown][] = [
    ["rmsNorm weight of the wrong size", () => rmsNorm(f([2, 8]), f([7]), 1e-6, false)],
    ["rope on 3 dims", () => rope(f([2, 3, 8]), f([1, 1, 3, 8]), f([1, 1, 3, 8]), 1)],
    ["rope heads not divisible by groups", () => rope(f([1, 3, 3, 8]), f([1, 1, 3, 8]), f([1, 1, 3, 8]), 2)],
    ["rope odd head_dim", () => rope(f([1, 3, 2, 7]), f([1, 1, 3, 7]), f([1, 1, 3, 7]), 1)],
    ["rope table of the wrong length", () => rope(f([1, 3, 2, 8]), f([1, 1, 4, 8]), f([1, 1, 4, 8]), 1)],
    ["gatedAct shapes differ", () => gatedAct(f([2, 3]), f([2, 4]), "silu")],
    ["gatedAct unknown activation", () => gatedAct(f([2, 3]), f([2, 3]), "relu" as never)],
    [
      "attention q of 4 dims",
      () => attention(f([1, 1, 2, 8]), f([1, 1, 2, 8]), f([1, 1, 2, 8]), { scale: 1 }),
    ],
    [
      "attention keys fewer than past + T",
      () => attention(f([1, 1, 3, 1, 8]), f([1, 1, 2, 8]), f([1, 1, 2, 8]), { scale: 1 }),
    ],
    [
      "attention key mask of the wrong shape",
      () =>
        attention(f([1, 1, 2, 1, 8]), f([1, 1, 2, 8]), f([1, 1, 2, 8]), {
          scale: 1,
          keyMask: Tensor.ones([1, 3], "int64"),
        }),
    ],
    [
      "clusterRowUpdate U of the wrong width",
      () =>
        clusterRowUpdate(
          f([2, 5]),
          f([2, 4]),
          f([1, 3]),
          Tensor.zeros([1], "int64"),
          Tensor.zeros([1], "int64"),
        ),
    ],
    ["unknown kernel mode", () => setKernelMode("fast" as never)],
  ];
  for (const [what, call] of cases)
    assert.throws(call, (e: unknown) => e instanceof Error && !!e.message, what);
  assert.equal(kernelMode(), "native");
});
