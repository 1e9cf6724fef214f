import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  gguf,
  ggufTensorBytes,
  parseGguf,
  quantizeQ8_0,
  readGguf,
  tensorToF32,
  writeGguf,
  type GgufValue,
} from "../../src/io/gguf.js";

const tmpDir = scratchDir("gguf-test-");
process.on("exit", () => fs.rmSync(tmpDir, { recursive: true, force: true }));

test("a minimal file matches hand-assembled bytes", () => {
  const file = path.join(tmpDir, "min.gguf");
  writeGguf(file, {
    metadata: [["a", gguf.u8(7)]],
    tensors: [
      { name: "t", type: "F32", shape: [2], data: () => new Uint8Array(new Float32Array([1, -2]).buffer) },
    ],
  });
  // Built from the GGUF spec by hand, field by field.
  const expected = Buffer.concat([
    Buffer.from("GGUF", "ascii"),
    Buffer.from([3, 0, 0, 0]), // version
    Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), // tensor count
    Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), // kv count
    Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from("a"), // key
    Buffer.from([0, 0, 0, 0]),
    Buffer.from([7]), // uint8 7
    Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from("t"), // tensor name
    Buffer.from([1, 0, 0, 0]), // n_dims
    Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), // ne[0]
    Buffer.from([0, 0, 0, 0]), // F32
    Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), // offset
  ]);
  assert.equal(expected.length, 71);
  const padded = Buffer.concat([expected, Buffer.alloc(96 - 71)]); // data starts at the next multiple of 32
  const data = Buffer.from([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]); // 1.0f, -2.0f little-endian
  assert.deepEqual(fs.readFileSync(file), Buffer.concat([padded, data, Buffer.alloc(128 - 104)]));
});

test("every metadata value type round-trips", () => {
  const metadata: [string, GgufValue][] = [
    ["u8", gguf.u8(255)],
    ["i8", gguf.i8(-128)],
    ["u16", gguf.u16(65535)],
    ["i16", gguf.i16(-32768)],
    ["u32", gguf.u32(4294967295)],
    ["i32", gguf.i32(-2147483648)],
    ["f32", gguf.f32(Math.fround(0.1))],
    ["f64", gguf.f64(0.1)],
    ["u64", gguf.u64(18446744073709551615n)],
    ["i64", gguf.i64(-9223372036854775808n)],
    ["b0", gguf.bool(false)],
    ["b1", gguf.bool(true)],
    ["s", gguf.str("héllo ✅ 🦙")],
    ["empty", gguf.str("")],
    ["arr.u8", gguf.arr("uint8", [0, 1, 255])],
    ["arr.i32", gguf.arr("int32", [-1, 0, 1])],
    ["arr.f32", gguf.arr("float32", [1.5, -0.25])],
    ["arr.bool", gguf.arr("bool", [true, false, true])],
    ["arr.str", gguf.arr("string", ["a", "", "Ġthe", "<|im_end|>"])],
    ["arr.i64", gguf.arr("int64", [-5n, 5n])],
    ["arr.f64", gguf.arr("float64", [Math.PI])],
    ["arr.empty", gguf.arr("string", [])],
    ["general.alignment", gguf.u32(64)],
  ];
  const file = path.join(tmpDir, "meta.gguf");
  writeGguf(file, { metadata, tensors: [] });
  const g = readGguf(file);
  assert.equal(g.version, 3);
  assert.equal(g.alignment, 64);
  assert.deepEqual([...g.metadata.entries()], metadata);
});

test("f16 and bf16 conversions round to nearest even", () => {
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f32ToF16Bits(-2), 0xc000);
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(65520), 0x7c00); // halfway to 65536 rounds to even = overflow to inf
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // exactly half of it: ties to even (0)
  assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002); // 1.5 subnormal units: ties to even (2)
  assert.equal(f32ToF16Bits(0.1), 0x2e66);
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie between 1 and 1+2^-10 -> even
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  assert.equal(f16BitsToF32(0x3555), 0.333251953125);
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80);
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(f32ToBf16Bits(-Infinity), 0xff80);
  assert.equal(bf16BitsToF32(0x4049), 3.140625);
});

test("q8_0 matches a hand-worked block", () => {
  // amax = 63.5 -> d = 0.5 exactly (f16 0x3800), id = 2, q = roundf(2x) with halves away from zero.
  const x = new Float32Array(32);
  const expectedQ: number[] = [];
  for (let j = 0; j < 32; j++) {
    x[j] = (j - 16) * 0.75; // 2x = 1.5 * (j - 16): halves at odd j
    const v = 1.5 * (j - 16);
    expectedQ.push(v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5));
  }
  x[0] = -63.5; // the amax; q = -127
  expectedQ[0] = -127;
  x[1] = 0.25; // 2x = 0.5 -> 1 (away from zero; nearest-even would give 0)
  expectedQ[1] = 1;
  x[2] = -0.25;
  expectedQ[2] = -1;
  const q = quantizeQ8_0(x);
  assert.equal(q.length, 34);
  assert.deepEqual([q[0], q[1]], [0x00, 0x38]);
  assert.deepEqual(Array.from(new Int8Array(q.buffer, 2, 32)), expectedQ);
  assert.equal(expectedQ[3], -20); // j=3: 1.5 * -13 = -19.5 -> -20
  // An all-zero block has d = 0 and q = 0.
  assert.deepEqual(Array.from(quantizeQ8_0(new Float32Array(32))), new Array(34).fill(0));
});

test("tensor dtypes round-trip with data at aligned offsets", () => {
  const vals = new Float32Array(64);
  for (let i = 0; i < 64; i++) vals[i] = Math.fround(Math.sin(i) * 3);
  const f32 = new Uint8Array(vals.buffer.slice(0));
  const halves = new Uint16Array(64);
  const bhalves = new Uint16Array(64);
  for (let i = 0; i < 64; i++) {
    halves[i] = f32ToF16Bits(vals[i]!);
    bhalves[i] = f32ToBf16Bits(vals[i]!);
  }
  const file = path.join(tmpDir, "tensors.gguf");
  writeGguf(file, {
    metadata: [["general.architecture", gguf.str("test")]],
    tensors: [
      { name: "odd", type: "F32", shape: [3], data: () => f32.subarray(0, 12) }, // 12 bytes: forces padding
      { name: "w32", type: "F32", shape: [2, 32], data: () => [f32.subarray(0, 100), f32.subarray(100)] },
      { name: "w16", type: "F16", shape: [4, 16], data: () => new Uint8Array(halves.buffer) },
      { name: "wbf", type: "BF16", shape: [1, 4, 16], data: () => new Uint8Array(bhalves.buffer) },
      { name: "wq", type: "Q8_0", shape: [2, 32], data: () => quantizeQ8_0(vals) },
    ],
  });
  const g = readGguf(file);
  assert.deepEqual(
    g.tensors.map((t) => [t.name, t.type, t.shape, t.dims]),
    [
      ["odd", "F32", [3], [3]],
      ["w32", "F32", [2, 32], [32, 2]],
      ["w16", "F16", [4, 16], [16, 4]],
      ["wbf", "BF16", [1, 4, 16], [16, 4, 1]],
      ["wq", "Q8_0", [2, 32], [32, 2]],
    ],
  );
  for (const t of g.tensors) assert.equal((t.offset - g.dataOffset) % 32, 0);
  assert.deepEqual(
    g.tensors.map((t) => t.nbytes),
    [12, 256, 128, 128, 68],
  );
  assert.deepEqual(tensorToF32("F32", ggufTensorBytes(g, "w32")), vals);
  const w16 = tensorToF32("F16", ggufTensorBytes(g, "w16"));
  const wbf = tensorToF32("BF16", ggufTensorBytes(g, "wbf"));
  const wq = tensorToF32("Q8_0", ggufTensorBytes(g, "wq"));
  for (let i = 0; i < 64; i++) {
    assert.ok(Math.abs(w16[i]! - vals[i]!) <= Math.abs(vals[i]!) * 2 ** -11 + 2 ** -25);
    assert.ok(Math.abs(wbf[i]! - vals[i]!) <= Math.abs(vals[i]!) * 2 ** -8);
    assert.ok(Math.abs(wq[i]! - vals[i]!) <= (3 / 127) * 0.5 * 1.01); // half a quantum, amax <= 3
  }
});

test("the writer refuses a tensor whose data has the wrong size and leaves no file", () => {
  const file = path.join(tmpDir, "bad.gguf");
  assert.throws(() =>
    writeGguf(file, {
      metadata: [],
      tensors: [{ name: "t", type: "F32", shape: [4], data: () => new Uint8Array(8) }],
    }),
  );
  assert.equal(fs.existsSync(file), false);
  assert.deepEqual(
    fs.readdirSync(tmpDir).filter((f) => f.includes("bad.gguf")),
    [],
  );
});

function validFile(): Buffer {
  const file = path.join(tmpDir, "fuzz-base.gguf");
  writeGguf(file, {
    metadata: [
      ["general.architecture", gguf.str("llama")],
      ["llama.block_count", gguf.u32(2)],
      ["tokens", gguf.arr("string", ["a", "bb", "ccc"])],
      ["scores", gguf.arr("float32", [0, 1, 2])],
      ["big", gguf.u64(12345678901234n)],
    ],
    tensors: [
      { name: "a", type: "F32", shape: [2, 4], data: () => new Uint8Array(32).fill(1) },
      { name: "b", type: "Q8_0", shape: [32], data: () => new Uint8Array(34).fill(2) },
    ],
  });
  return fs.readFileSync(file);
}

test("the reader names the file and the problem on malformed input", () => {
  const good = validFile();
  const expectError = (bytes: Uint8Array, pattern: RegExp) =>
    assert.throws(
      () => parseGguf(bytes, "model.gguf"),
      (e: unknown) => e instanceof InputError && /model\.gguf/.test(e.message) && pattern.test(e.message),
    );
  const bad = (mutate: (b: Buffer) => void) => {
    const b = Buffer.from(good);
    mutate(b);
    return b;
  };
  expectError(
    bad((b) => b.write("GGUX", 0)),
    /magic/,
  );
  expectError(
    bad((b) => b.writeUInt32LE(4, 4)),
    /version/,
  );
  expectError(
    bad((b) => b.writeBigUInt64LE(1n << 40n, 8)),
    /tensor count/,
  );
  expectError(
    bad((b) => b.writeBigUInt64LE(1n << 40n, 16)),
    /metadata count/,
  );
  expectError(
    bad((b) => b.writeBigUInt64LE(1n << 50n, 24)),
    /length|past the end/,
  ); // first key length
  expectError(good.subarray(0, good.length - 31), /past the end/); // cuts into the last tensor (34 bytes + 30 padding)
  expectError(good.subarray(0, 10), /shorter/);
});

test("fuzz: mutated valid files only ever raise InputError", () => {
  const good = validFile();
  let seed = 12345;
  const rand = () => {
    // mulberry32: small, seeded, reproducible
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let rejected = 0;
  for (let iter = 0; iter < 400; iter++) {
    let b = Buffer.from(good);
    const kind = Math.floor(rand() * 4);
    const nMut = 1 + Math.floor(rand() * 4);
    for (let m = 0; m < nMut; m++) {
      const pos = Math.floor(rand() * b.length);
      if (kind === 0) b[pos] = Math.floor(rand() * 256);
      else if (kind === 1) b[pos] = b[pos]! ^ (1 << Math.floor(rand() * 8));
      else if (kind === 2) b = b.subarray(0, pos);
      else if (pos + 8 <= b.length)
        b.writeBigUInt64LE(BigInt(Math.floor(rand() * 2 ** 32)) << BigInt(Math.floor(rand() * 32)), pos);
    }
    try {
      parseGguf(b, "fuzz.gguf");
    } catch (e) {
      assert.ok(e instanceof InputError, `iteration ${iter}: ${String(e)}`);
      rejected++;
    }
  }
  assert.ok(rejected > 100, `only ${rejected} of 400 mutated files were rejected`);
});
