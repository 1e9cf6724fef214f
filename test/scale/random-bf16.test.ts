import { test } from "node:test";
import assert from "node:assert/strict";
import { bf16Bits, constantBf16, normalQuantile, randomNormalBf16 } from "./random-bf16.js";

/** bf16 little-endian bytes to numbers (a bf16 is the top half of a float32). */
function decode(parts: Iterable<Uint8Array>): Float32Array {
  const chunks = [...parts];
  const n = chunks.reduce((a, c) => a + c.byteLength / 2, 0);
  const bits = new Uint32Array(n);
  let k = 0;
  for (const c of chunks) {
    const dv = new DataView(c.buffer, c.byteOffset, c.byteLength);
    for (let i = 0; i < c.byteLength; i += 2) bits[k++] = dv.getUint16(i, true) << 16;
  }
  return new Float32Array(bits.buffer);
}

test("normalQuantile matches the standard normal's published quantiles", () => {
  // Python 3.11 statistics.NormalDist().inv_cdf (Wichura AS241, double precision)
  const known: [number, number][] = [
    [0.5, 0],
    [0.975, 1.959963984540054],
    [0.8413447460685429, 1],
    [0.001, -3.090232306167813],
    [1e-5, -4.264890793922825],
    [0.02425, -1.9729610513118845],
  ];
  for (const [p, z] of known)
    assert.ok(Math.abs(normalQuantile(p) - z) < 1e-8, `Φ⁻¹(${p}) = ${normalQuantile(p)}`);
  assert.throws(() => normalQuantile(0), RangeError);
});

test("bf16Bits rounds float32 to nearest, ties to even, as torch does", () => {
  assert.equal(bf16Bits(1), 0x3f80);
  assert.equal(bf16Bits(0), 0);
  assert.equal(bf16Bits(-2), 0xc000);
  assert.equal(bf16Bits(0.02), 0x3ca4); // float32 0x3ca3d70a: the low half is past the tie
  assert.equal(bf16Bits(1 + 2 ** -8), 0x3f80); // a tie, kept even
  assert.equal(bf16Bits(1 + 3 * 2 ** -8), 0x3f82); // a tie, rounded up to even
  assert.deepEqual([...decode([constantBf16(3, 1)])], [1, 1, 1]);
});

test("randomNormalBf16 is seeded, split into parts without changing its values, and N(0, std²)", () => {
  const n = 1 << 20;
  const std = 0.02;
  const x = decode(randomNormalBf16(n, std, 7, 3));
  assert.equal(x.length, n);
  assert.deepEqual(decode(randomNormalBf16(n, std, 7, 3, 1000)), x, "parts of 1000 values");
  const other = decode(randomNormalBf16(1000, std, 7, 4));
  assert.ok(
    other.some((v, i) => v !== x[i]),
    "another stream gives other values",
  );
  let sum = 0;
  let sq = 0;
  let below = 0;
  let belowZ1 = 0;
  for (const v of x) {
    sum += v;
    sq += v * v;
    if (v < 0) below++;
    if (v < std * 1.959963984540054) belowZ1++;
  }
  const mean = sum / n;
  const sd = Math.sqrt(sq / n - mean * mean);
  assert.ok(Math.abs(mean) < (5 * std) / Math.sqrt(n), `mean ${mean}`);
  assert.ok(Math.abs(sd / std - 1) < 0.01, `sd ${sd}`);
  // binomial standard errors: 0.0005 and 0.00015
  assert.ok(Math.abs(below / n - 0.5) < 0.0025, `P(x < 0) ${below / n}`);
  assert.ok(Math.abs(belowZ1 / n - 0.975) < 0.001, `P(x < 1.96 std) ${belowZ1 / n}`);
});
