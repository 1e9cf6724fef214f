/**
 * The GGUF writer's number conversions are exact, checked against references that share no code with them:
 * - f32 -> f16: every f16 boundary (each half, the midpoint to the next one, one float32 ulp either side, both
 *   signs: 380,948 patterns) against numpy's astype(float16) (test/gguf/f16_reference.py printed the hash of its
 *   answers) and against rounding by definition (the nearest half, ties to the even one, found by search among
 *   all halves as numbers); 2^21 random float32 bit patterns against the definition and against libtorch;
 * - f32 -> bf16: boundaries and random patterns against the definition and libtorch;
 * - q8_0: against ggml's own C (test/gguf/q8_0_reference.c: quantize_row_q8_0_ref and ggml's fp32 -> fp16, copied
 *   as they are, compiled with gcc) on random blocks at every float32 scale, exact ties and their float32
 *   neighbours at 20 scales, and the f16 scale's boundaries (the sha256 of its output), and against the reference
 *   arithmetic as this project first wrote it (DataView, element by element), kept below, on random and edge blocks
 *   and on non-finite values.
 * NaN keeps the rule the writers have always had (quiet bit set, top of the payload kept); numpy and libtorch differ
 * there (a GGUF export never sees one: the model folder check refuses non-finite weights).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToBf16Bytes,
  f32ToF16Bits,
  f32ToF16Bytes,
  quantizeQ8_0,
  quantizeQ8_0Bf16,
  quantizeQ8_0Js,
  setNativeQuantizeQ8_0,
} from "../../src/io/gguf.js";
import { Tensor, noGrad, tidy } from "../../src/tensor/index.js";
import { native } from "../../src/tensor/native.js";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number): number => ((f32[0] = x), u32[0]!);
const valueOf = (b: number): number => ((u32[0] = b), f32[0]!);

/** The boundary patterns of test/gguf/f16_reference.py, in its order. */
function f16Boundaries(): Uint32Array {
  const out: number[] = [];
  const add = (b: number, filter: boolean) => {
    if (filter && !(b >= 0 && b < 0x7f800000)) return;
    out.push(b, (b | 0x80000000) >>> 0);
  };
  for (let h = 0; h < 0x7c00; h++) {
    const v = f16BitsToF32(h);
    const next = h < 0x7bff ? f16BitsToF32(h + 1) : 65520;
    const b = bitsOf(v);
    const m = bitsOf((v + next) / 2);
    for (const c of [b - 1, b, b + 1, m - 1, m, m + 1]) add(c, true);
  }
  for (const e of [
    0x7f800000, 0x7f7fffff, 1, 0x007fffff, 0x00800000, 0x33000000, 0x33000001, 0x32ffffff, 0x477fe000,
    0x477ff000, 0x47800000,
  ])
    add(e, false);
  return Uint32Array.from(out);
}

const sha = (a: ArrayBufferView) =>
  createHash("sha256")
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest("hex");

/** All finite non-negative halves as numbers, ascending (bits 0..0x7bff are already in order). */
const HALVES = Float64Array.from({ length: 0x7c00 }, (_, h) => f16BitsToF32(h));

/** f16 bits of float32 bits `b` by definition: the nearest half, ties to the even one, from 65520 on ±inf. */
function f16ByDefinition(b: number): number {
  const x = valueOf(b);
  const sign = b >>> 31 ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = HALVES.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (HALVES[mid]! <= a) lo = mid;
    else hi = mid - 1;
  }
  if (lo === HALVES.length - 1) return sign | lo;
  const dLo = a - HALVES[lo]!;
  const dHi = HALVES[lo + 1]! - a;
  return sign | (dLo < dHi || (dLo === dHi && lo % 2 === 0) ? lo : lo + 1);
}

/** bf16 bits of float32 bits `b` by definition: the nearer of the two bf16 neighbours, ties to even. */
function bf16ByDefinition(b: number): number {
  if ((b & 0xffff) === 0) return b >>> 16; // a bf16 already (±inf included)
  const x = valueOf(b);
  const lo = (b & 0xffff0000) >>> 0; // towards zero
  const hi = lo + 0x10000; // away from zero (may be ±inf: still a float32)
  const dLo = Math.abs(x - valueOf(lo));
  // ±inf stands for ±2^128 here, the value IEEE rounding gives the step past the largest finite one
  const vHi = (hi & 0x7fffffff) === 0x7f800000 ? Math.sign(x) * 2 ** 128 : valueOf(hi);
  const dHi = Math.abs(vHi - x);
  return (dLo < dHi || (dLo === dHi && ((lo >>> 16) & 1) === 0) ? lo : hi) >>> 16;
}

/** Seeded xorshift32 float32 bit patterns that are not NaN. */
function randomPatterns(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n;) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    if ((s & 0x7fffffff) <= 0x7f800000) out[i++] = s;
  }
  return out;
}

const asF32 = (bits: Uint32Array) => new Float32Array(bits.buffer, bits.byteOffset, bits.length);

function libtorch(bits: Uint32Array, dtype: "float16" | "bfloat16"): Uint16Array {
  const bytes = noGrad(() =>
    tidy(() =>
      Tensor.fromBytes(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength), "float32", [
        bits.length,
      ])
        .to(dtype)
        .toBytes(),
    ),
  );
  return new Uint16Array(Uint8Array.from(bytes).buffer);
}

function firstDifference(got: Uint16Array, want: (i: number) => number, pats: Uint32Array): string | null {
  for (let i = 0; i < got.length; i++)
    if (got[i] !== want(i))
      return `float32 0x${pats[i]!.toString(16)}: got 0x${got[i]!.toString(16)}, expected 0x${want(i).toString(16)}`;
  return null;
}

test("f32 -> f16 at every f16 boundary equals numpy's astype(float16) and rounding by definition", () => {
  const pats = f16Boundaries();
  assert.equal(pats.length, 380948);
  // the same patterns as f16_reference.py's
  assert.equal(sha(pats), "a98c3296051c3e9983f66a35bcdaf2be5aaa6a1d10b1793a9534eb77c65e6c7b");
  const got = new Uint16Array(f32ToF16Bytes(asF32(pats)).buffer);
  assert.equal(
    firstDifference(got, (i) => f16ByDefinition(pats[i]!), pats),
    null,
  );
  assert.equal(
    sha(got),
    "c539f2ad4d2ac3a4b4f7e2d29b8813397b4b58d8450e755a77618604c6a29870",
    "numpy's answers",
  );
  // the one-value form agrees with the array form
  for (let i = 0; i < pats.length; i += 97) assert.equal(f32ToF16Bits(valueOf(pats[i]!)), got[i]);
});

test("f32 -> f16 of 2^21 random float32 patterns equals rounding by definition and libtorch's", () => {
  const pats = randomPatterns(1 << 21, 0x9e3779b9);
  const got = new Uint16Array(f32ToF16Bytes(asF32(pats)).buffer);
  assert.equal(
    firstDifference(got, (i) => f16ByDefinition(pats[i]!), pats),
    null,
  );
  const torch = libtorch(pats, "float16");
  assert.equal(
    firstDifference(got, (i) => torch[i]!, pats),
    null,
  );
});

test("f32 -> bf16 at bf16 values and midpoints across every exponent and on 2^21 random patterns equals rounding by definition and libtorch's", () => {
  // each bf16 exponent's edges and midpoints: patterns near multiples of 0x8000 (a bf16 or a midpoint), ±1
  const edges: number[] = [];
  for (let b = 0; b < 0x7f800000; b += 0x8000 * 37)
    for (const d of [-1, 0, 1]) if (b + d >= 0) edges.push(b + d);
  for (const b of [0x7f7f8000, 0x7f7f7fff, 0x7f7fffff, 0x7f800000, 0x00008000, 0x00018000, 1]) edges.push(b);
  const all = Uint32Array.from([...edges, ...edges.map((b) => (b | 0x80000000) >>> 0)]);
  for (const pats of [all, randomPatterns(1 << 21, 12345)]) {
    const got = new Uint16Array(f32ToBf16Bytes(asF32(pats)).buffer);
    assert.equal(
      firstDifference(got, (i) => bf16ByDefinition(pats[i]!), pats),
      null,
    );
    const torch = libtorch(pats, "bfloat16");
    assert.equal(
      firstDifference(got, (i) => torch[i]!, pats),
      null,
    );
    for (let i = 0; i < pats.length; i += 101) assert.equal(f32ToBf16Bits(valueOf(pats[i]!)), got[i]);
  }
});

test("NaN keeps the writers' rule: quiet bit set, sign and the top of the payload kept", () => {
  for (const [b, h, bf] of [
    [0x7fc00000, 0x7e00, 0x7fc0],
    [0x7f800001, 0x7e00, 0x7fc0],
    [0xffffe000, 0xffff, 0xffc0],
    [0x7fa02000, 0x7f01, 0x7fc0],
  ] as const) {
    const x = new Float32Array(new Uint32Array([b]).buffer);
    assert.equal(new Uint16Array(f32ToF16Bytes(x).buffer)[0], h, `f16 of 0x${b.toString(16)}`);
    assert.equal(new Uint16Array(f32ToBf16Bytes(x).buffer)[0], bf, `bf16 of 0x${b.toString(16)}`);
  }
});

// ggml's quantize_row_q8_0_ref as this project first wrote it: DataView, float32 arithmetic by Math.fround.
function q8Reference(src: Float32Array): Uint8Array {
  const nBlocks = src.length / 32;
  const out = new Uint8Array(nBlocks * 34);
  const view = new DataView(out.buffer);
  const roundf = (v: number) => (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5));
  for (let b = 0; b < nBlocks; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[b * 32 + j]!));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    view.setUint16(b * 34, f16ByDefinition(bitsOf(d)), true);
    for (let j = 0; j < 32; j++) view.setInt8(b * 34 + 2 + j, roundf(Math.fround(src[b * 32 + j]! * id)));
  }
  return out;
}

/**
 * Every q8_0 path: the JavaScript, the addon's (native/src/quant.cc), and quantizeQ8_0 as the exporter calls it (the
 * addon's once the addon has loaded, as it has here).
 */
const Q8_PATHS: [string, (v: Float32Array) => Uint8Array][] = [
  [
    "JavaScript",
    (v) => {
      const out = new Uint8Array((v.length / 32) * 34);
      quantizeQ8_0Js(v, out);
      return out;
    },
  ],
  [
    "addon",
    (v) => {
      const out = new Uint8Array((v.length / 32) * 34);
      native.quantizeQ8_0(v, out);
      return out;
    },
  ],
  ["quantizeQ8_0", quantizeQ8_0],
];

test("q8_0 equals ggml's reference arithmetic on random blocks at every scale, and on edge blocks", () => {
  const n = 32 * 65536;
  const v = new Float32Array(n);
  let s = 7;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  for (let b = 0; b < n / 32; b++) {
    const scale = 2 ** (Math.floor(rnd() * 60) - 40); // 2^-40 .. 2^19: subnormal and overflowing scales included
    for (let j = 0; j < 32; j++) v[b * 32 + j] = (rnd() * 2 - 1) * scale;
  }
  // edge blocks: all zero, one value, exact halves of q, the largest float32, a tiny amax
  v.fill(0, 0, 32);
  v.fill(0, 32, 64);
  v[40] = -3;
  for (let j = 0; j < 32; j++) v[64 + j] = (j - 16) * 0.75;
  v[96] = 3.4028234663852886e38;
  v[128] = 1e-45;
  const want = q8Reference(v);
  for (const [name, q8] of Q8_PATHS) assert.deepEqual(q8(v), want, name);
});

/**
 * The blocks of test/gguf/q8_0_reference.c's main(), made the same way (its generator written again here): 16,384
 * random blocks at scales 2^-140..2^119; for d = 2^e (amax ±127 * 2^e) at 20 scales e, every tie t + 0.5
 * (t = -127..126) exactly and one float32 ulp toward and away from zero; each boundary of the f16 scale (the largest
 * half, to inf, f16-subnormal d, the tie to 0 at 2^-25 and one ulp above) and float32's extremes as ±amax; all-zero,
 * all -0, and one -3 among zeros.
 */
function q8Blocks(): Float32Array {
  let s = 7;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const out: number[] = [];
  for (let b = 0; b < 16384; b++) {
    const scale = 2 ** (Math.floor(rnd() * 260) - 140);
    for (let j = 0; j < 32; j++) out.push(Math.fround((rnd() * 2 - 1) * scale));
  }
  // nextafterf(x, toward zero (-1) or away from it (+1)): the float32 magnitude one ulp down or up
  const nudged = (x: number, nudge: number) => {
    const sign = x < 0 ? -1 : 1;
    return sign * valueOf(bitsOf(Math.abs(x)) + nudge);
  };
  const exps = [
    -130, -127, -126, -100, -40, -26, -25, -24, -20, -15, -14, -1, 0, 1, 10, 15, 16, 17, 100, 120,
  ];
  for (const e of exps)
    for (let nudge = -1; nudge <= 1; nudge++)
      for (let sign = 1; sign >= -1; sign -= 2)
        for (let b = 0, t = -127; b < 8; b++) {
          out.push(Math.fround(sign * 127 * 2 ** e));
          for (let j = 1; j < 32; j++, t = t === 126 ? -127 : t + 1) {
            const x = Math.fround((t + 0.5) * 2 ** e);
            out.push(nudge === 0 ? x : nudged(x, nudge));
          }
        }
  const amaxes = [
    65504 * 127,
    8321039,
    65520 * 127,
    2 ** -14 * 127,
    2 ** -24 * 127,
    2 ** -25 * 127,
    Math.fround((1 + 2 ** -23) * 2 ** -25 * 127),
    3.4028234663852886e38,
    2 ** -149,
    2 ** -126,
    1,
    0.5,
  ];
  for (const a of amaxes)
    for (let sign = 1; sign >= -1; sign -= 2) {
      out.push(sign * a);
      for (let j = 1; j < 32; j++) out.push(Math.fround(a * ((j - 16) / 16.5)));
    }
  for (let j = 0; j < 32; j++) out.push(0);
  for (let j = 0; j < 32; j++) out.push(-0);
  for (let j = 0; j < 32; j++) out.push(j === 8 ? -3 : 0);
  return Float32Array.from(out);
}

test("q8_0 equals ggml's quantize_row_q8_0_ref (its C, compiled) on ties, f16 scale boundaries and every scale", () => {
  const v = q8Blocks();
  assert.equal(v.length, 32 * (16384 + 20 * 2 * 8 * 3 + 12 * 2 + 3));
  for (const [name, q8] of Q8_PATHS) {
    const q = q8(v);
    // test/gguf/q8_0_reference.c's output: these values (little-endian float32), then their blocks; gcc 12.2 on
    // x86-64, -O0, -O2, -O2 -mf16c (its portable f16 conversion and F16C agreeing) and -O3 -march=native all print it
    const h = createHash("sha256")
      .update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))
      .update(q)
      .digest("hex");
    assert.equal(h, "9a56994f8a3a71b517b2b5466c297105de4c4f1749f02f68efea70636e00e0f1", name);
  }
});

for (const [name, q8] of Q8_PATHS)
  test(`q8_0's scale at f16's edges, and blocks holding inf or NaN (${name})`, () => {
    const block = (amax: number) => {
      const x = new Float32Array(32);
      x[0] = amax;
      x[1] = -amax / 2; // q = roundf(-63.5) = -64: away from zero
      return q8(x);
    };
    const d = (q: Uint8Array) => q[0]! | (q[1]! << 8);
    assert.equal(d(block(65504 * 127)), 0x7bff); // d = 65504, the largest half
    assert.equal(d(block(65520 * 127)), 0x7c00); // d = 65520 rounds to inf, as ggml's conversion gives
    assert.equal(d(block(2 ** -20 * 127)), 0x0010); // d = 2^-20: a subnormal half
    assert.equal(d(block(2 ** -25 * 127)), 0x0000); // d = 2^-25: the tie between 0 and 2^-24 goes to 0 (even)
    for (const amax of [65520 * 127, 2 ** -20 * 127, 2 ** -25 * 127])
      assert.deepEqual([...new Int8Array(block(amax).buffer, 2, 2)], [127, -64]);
    // a checked model folder holds no inf or NaN; a block with one gets d = inf or NaN and q = 0
    for (const [bad, h] of [
      [Infinity, 0x7c00],
      [-Infinity, 0x7c00],
      [NaN, 0x7e00],
    ] as const) {
      const x = new Float32Array(64).fill(0.5);
      x[37] = bad;
      const q = q8(x);
      assert.equal(d(q.subarray(34)), h, `${bad}`);
      assert.deepEqual([...q.subarray(36)], new Array(32).fill(0), `${bad}`);
      assert.deepEqual([...q.subarray(2, 34)], new Array(32).fill(127)); // the block beside it as usual
    }
  });

test("q8_0 of bfloat16 bits equals q8_0 of their float32 values: every bf16 pattern, and q8Blocks' ties cut to bf16", () => {
  // every bf16 pattern (NaN and inf included) four times over, in four orders, then q8Blocks' values' top halves
  const n = 65536;
  const all = new Uint16Array(4 * n);
  for (let k = 0; k < 4; k++)
    for (let i = 0; i < n; i++) all[k * n + i] = (i * [1, 40503, 12345, 65521][k]!) & 0xffff;
  const f = q8Blocks();
  const fromBlocks = new Uint16Array(f.length);
  const fbits = new Uint32Array(f.buffer);
  for (let i = 0; i < f.length; i++) fromBlocks[i] = fbits[i]! >>> 16;
  for (const bits of [all, fromBlocks]) {
    const v = new Float32Array(bits.length);
    const wide = new Uint32Array(v.buffer);
    for (let i = 0; i < bits.length; i++) wide[i] = bits[i]! << 16;
    const want = new Uint8Array((bits.length / 32) * 34);
    quantizeQ8_0Js(v, want);
    const viaAddon = new Uint8Array(want.length);
    native.quantizeQ8_0Bf16(bits, viaAddon);
    assert.deepEqual(viaAddon, want, "addon");
    assert.deepEqual(quantizeQ8_0Bf16(bits), want, "quantizeQ8_0Bf16 (the addon's, installed)");
    setNativeQuantizeQ8_0(null); // quantizeQ8_0Bf16's JavaScript, as in a process that never loads the addon
    try {
      assert.deepEqual(quantizeQ8_0Bf16(bits), want, "quantizeQ8_0Bf16 (JavaScript)");
    } finally {
      setNativeQuantizeQ8_0({
        f32: (src, out) => native.quantizeQ8_0(src, out),
        bf16: (src, out) => native.quantizeQ8_0Bf16(src, out),
      });
    }
  }
});

test("q8_0 refuses a length that is not whole blocks, and the addon's op an output of the wrong size or type", () => {
  assert.throws(() => quantizeQ8_0(new Float32Array(33)), /multiple of 32 values, got 33/);
  assert.throws(() => quantizeQ8_0Js(new Float32Array(32), new Uint8Array(33)), /not 34 bytes out/);
  assert.throws(
    () => native.quantizeQ8_0(new Float32Array(31), new Uint8Array(0)),
    /multiple of 32 values, got 31/,
  );
  assert.throws(() => native.quantizeQ8_0(new Float32Array(32), new Uint8Array(33)), /34 bytes, out has 33/);
  const bad = new Float64Array(32) as unknown as Float32Array;
  assert.throws(() => native.quantizeQ8_0(bad, new Uint8Array(34)), /Float32Array/);
  assert.throws(() => quantizeQ8_0Bf16(new Uint16Array(48)), /multiple of 32 values, got 48/);
  assert.throws(
    () => native.quantizeQ8_0Bf16(new Uint16Array(32), new Uint8Array(35)),
    /34 bytes, out has 35/,
  );
  const f32 = new Float32Array(32) as unknown as Uint16Array;
  assert.throws(() => native.quantizeQ8_0Bf16(f32, new Uint8Array(34)), /Uint16Array/);
});
