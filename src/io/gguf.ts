/**
 * GGUF v3 (llama.cpp's model file format), written and read by hand.
 *
 * Layout (all little-endian): magic "GGUF", u32 version, u64 tensor count, u64 metadata count,
 * metadata key/value pairs, tensor infos (name, u32 n_dims, u64 dims innermost first, u32 ggml type,
 * u64 offset into the data section), padding to `general.alignment`, then the tensor data, each tensor
 * starting at an aligned offset. Reference: ggml/docs/gguf.md and ggml/src/gguf.cpp in llama.cpp.
 *
 * Shapes in this module's API are in PyTorch order (outermost first, `[rows, cols]` for a weight);
 * the file stores them reversed (ggml `ne`), which `dims` on a read tensor shows as well.
 */
import { InputError } from "../errors.js";
import * as fs from "node:fs";
import { MAX_BUFFER_BYTES, mapFile, mapFileRanges } from "./mapfile.js";
import { partsWithStops, writeFileAtomicFrom, type Piece } from "./atomic.js";
import { isForbiddenKey } from "../util/keys.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
const GGML_MAX_DIMS = 4; // ggml tensors have at most 4 dimensions

// ---------------------------------------------------------------------------------------------
// Metadata values

export type GgufScalarTypeName =
  | "uint8"
  | "int8"
  | "uint16"
  | "int16"
  | "uint32"
  | "int32"
  | "float32"
  | "bool"
  | "string"
  | "uint64"
  | "int64"
  | "float64";

/** Wire ids of the metadata value types (gguf_type in ggml). */
export const GGUF_VALUE_TYPE_IDS: Record<GgufScalarTypeName | "array", number> = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
};
const VALUE_TYPE_BY_ID = new Map<number, GgufScalarTypeName | "array">(
  Object.entries(GGUF_VALUE_TYPE_IDS).map(([k, v]) => [v, k as GgufScalarTypeName | "array"]),
);

export type GgufScalar = number | bigint | boolean | string;

/** A metadata value. 64-bit integers are bigints so that no value loses precision. */
export type GgufValue =
  | {
      type: "uint8" | "int8" | "uint16" | "int16" | "uint32" | "int32" | "float32" | "float64";
      value: number;
    }
  | { type: "uint64" | "int64"; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: GgufScalarTypeName; value: GgufScalar[] };

// Small constructors keep metadata tables readable.
export const gguf = {
  u8: (value: number): GgufValue => ({ type: "uint8", value }),
  i8: (value: number): GgufValue => ({ type: "int8", value }),
  u16: (value: number): GgufValue => ({ type: "uint16", value }),
  i16: (value: number): GgufValue => ({ type: "int16", value }),
  u32: (value: number): GgufValue => ({ type: "uint32", value }),
  i32: (value: number): GgufValue => ({ type: "int32", value }),
  u64: (value: bigint | number): GgufValue => ({ type: "uint64", value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: "int64", value: BigInt(value) }),
  f32: (value: number): GgufValue => ({ type: "float32", value }),
  f64: (value: number): GgufValue => ({ type: "float64", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  str: (value: string): GgufValue => ({ type: "string", value }),
  arr: (itemType: GgufScalarTypeName, value: GgufScalar[]): GgufValue => ({ type: "array", itemType, value }),
};

// ---------------------------------------------------------------------------------------------
// Tensor types

/** ggml tensor types this project writes; the reader also knows the sizes of the common others. */
export type GgmlType = "F32" | "F16" | "BF16" | "Q8_0";

interface GgmlTypeTraits {
  id: number;
  blockSize: number; // elements per block
  typeSize: number; // bytes per block
}

/** ggml_type ids and block layouts (ggml/include/ggml.h, gguf-py GGML_QUANT_SIZES). */
export const GGML_TYPES: Record<string, GgmlTypeTraits> = {
  F32: { id: 0, blockSize: 1, typeSize: 4 },
  F16: { id: 1, blockSize: 1, typeSize: 2 },
  Q4_0: { id: 2, blockSize: 32, typeSize: 18 },
  Q4_1: { id: 3, blockSize: 32, typeSize: 20 },
  Q5_0: { id: 6, blockSize: 32, typeSize: 22 },
  Q5_1: { id: 7, blockSize: 32, typeSize: 24 },
  Q8_0: { id: 8, blockSize: 32, typeSize: 34 },
  Q8_1: { id: 9, blockSize: 32, typeSize: 36 },
  Q2_K: { id: 10, blockSize: 256, typeSize: 84 },
  Q3_K: { id: 11, blockSize: 256, typeSize: 110 },
  Q4_K: { id: 12, blockSize: 256, typeSize: 144 },
  Q5_K: { id: 13, blockSize: 256, typeSize: 176 },
  Q6_K: { id: 14, blockSize: 256, typeSize: 210 },
  Q8_K: { id: 15, blockSize: 256, typeSize: 292 },
  I8: { id: 24, blockSize: 1, typeSize: 1 },
  I16: { id: 25, blockSize: 1, typeSize: 2 },
  I32: { id: 26, blockSize: 1, typeSize: 4 },
  I64: { id: 27, blockSize: 1, typeSize: 8 },
  F64: { id: 28, blockSize: 1, typeSize: 8 },
  BF16: { id: 30, blockSize: 1, typeSize: 2 },
};
const GGML_TYPE_BY_ID = new Map<number, string>(Object.entries(GGML_TYPES).map(([k, v]) => [v.id, k]));

/** Bytes of a tensor of `type` with PyTorch-order `shape`; the innermost dimension must fill whole blocks. */
export function ggmlTensorBytes(type: string, shape: readonly number[]): number {
  const t = GGML_TYPES[type];
  if (!t) throw new Error(`unknown ggml type ${type}`);
  const inner = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  if (inner % t.blockSize !== 0)
    throw new Error(`row of ${inner} elements is not a multiple of the ${type} block (${t.blockSize})`);
  let rows = 1;
  for (let i = 0; i < shape.length - 1; i++) rows *= shape[i]!;
  return rows * (inner / t.blockSize) * t.typeSize;
}

// ---------------------------------------------------------------------------------------------
// Number conversions (float32 -> f16 / bf16 with round-to-nearest-even, q8_0 blocks)

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
const i32Scratch = new Int32Array(f32Scratch.buffer);

/**
 * IEEE half bits of the float32 whose bits are `b` (read as an int32, which keeps V8 on small integers), round
 * to nearest even as numpy's astype(float16) and F16C do: 2^16 and above (and what rounds to it) become ±inf, a
 * NaN stays a NaN (quiet bit set, the top of its payload kept), below half the smallest subnormal becomes ±0.
 */
function halfBits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a >= 0x47800000) return a > 0x7f800000 ? sign | 0x7e00 | ((a >>> 13) & 0x3ff) : sign | 0x7c00;
  // a normal half: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even; a carry into
  // the exponent is the correct rounding (up to the next binade, or to inf from 65520 on)
  if (a >= 0x38800000) return sign | ((a - 0x37fff001 + ((a >>> 13) & 1)) >>> 13);
  // a subnormal half (or zero): the 24-bit significand shifted right by 14 to 24 places, rounded to nearest even
  const exp = a >>> 23;
  if (exp < 102) return sign; // below half the smallest subnormal
  const mant = (a & 0x7fffff) | 0x800000;
  const shift = 126 - exp;
  let h = mant >>> shift;
  const rem = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && h & 1)) h++;
  return sign | h;
}

/** bfloat16 bits of the float32 whose bits are `b` (an int32), round to nearest even; NaN stays a quiet NaN. */
function bf16Bits(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) & 0xffc0) | 0x40; // as gguf-py does
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff; // >>> reads the sum modulo 2^32
}

/** IEEE half bits of float32(x), round to nearest even (numpy astype(float16), F16C). */
export function f32ToF16Bits(x: number): number {
  f32Scratch[0] = x;
  return halfBits(i32Scratch[0]!);
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits of float32(x), round to nearest even; NaN stays a quiet NaN (as gguf-py does). */
export function f32ToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  return bf16Bits(i32Scratch[0]!);
}

export function bf16BitsToF32(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** The float32 values' bits as int32s (a view: a Float32Array is always 4-byte aligned). */
const bitsOf = (src: Float32Array) => new Int32Array(src.buffer, src.byteOffset, src.length);

export function f32ToF16Bytes(src: Float32Array): Uint8Array {
  const bits = bitsOf(src);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfBits(bits[i]!);
  return new Uint8Array(out.buffer);
}

export function f32ToBf16Bytes(src: Float32Array): Uint8Array {
  const bits = bitsOf(src);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) out[i] = bf16Bits(bits[i]!);
  return new Uint8Array(out.buffer);
}

/**
 * Q8_0 blocks of 32 values: f16 scale d then 32 int8 q, with ggml's quantize_row_q8_0_ref arithmetic
 * in float32: d = amax / 127, id = d ? 1/d : 0, q = roundf(x * id). `src.length` must be a multiple of 32
 * (blocks run along the innermost dimension, so rows must be too). A block holding inf or NaN (which a checked model
 * folder never has) gets d = inf or NaN and q = 0.
 */
export function quantizeQ8_0(src: Float32Array): Uint8Array {
  if (src.length % 32 !== 0) throw new Error(`q8_0 needs a multiple of 32 values, got ${src.length}`);
  const out = new Uint8Array((src.length / 32) * 34);
  if (nativeQ8_0) nativeQ8_0.f32(src, out);
  else quantizeQ8_0Js(src, out);
  return out;
}

/**
 * quantizeQ8_0 of bfloat16 values given as their bits: the same bytes as quantizeQ8_0 of them read into float32
 * (exact: a bfloat16 is the top half of a float32), which the addon makes without that float32 copy.
 */
export function quantizeQ8_0Bf16(bits: Uint16Array): Uint8Array {
  if (bits.length % 32 !== 0) throw new Error(`q8_0 needs a multiple of 32 values, got ${bits.length}`);
  const out = new Uint8Array((bits.length / 32) * 34);
  if (nativeQ8_0) nativeQ8_0.bf16(bits, out);
  else {
    const v = new Float32Array(bits.length);
    const wide = new Int32Array(v.buffer);
    for (let i = 0; i < bits.length; i++) wide[i] = bits[i]! << 16;
    quantizeQ8_0Js(v, out);
  }
  return out;
}

/** The addon's q8_0 of float32 values and of bfloat16 bits, each into `out` (34 bytes a block). */
export interface NativeQuantizeQ8_0 {
  f32: (src: Float32Array, out: Uint8Array) => void;
  bf16: (src: Uint16Array, out: Uint8Array) => void;
}

/**
 * The addon's q8_0 (native/src/quant.cc: the same bytes, ~1 ns a value against ~11 in JavaScript inside an
 * export; BENCHMARKS.md "GGUF export to q8_0"), set by the tensor layer when the addon loads. Only then: a small
 * checkpoint's export reads its weights without the addon, and loading libtorch (about half a second) for its few
 * million values would cost more than it saves.
 */
let nativeQ8_0: NativeQuantizeQ8_0 | null = null;

export function setNativeQuantizeQ8_0(f: NativeQuantizeQ8_0 | null): void {
  nativeQ8_0 = f;
}

/**
 * quantizeQ8_0 in JavaScript, into `out` (zeroed, 34 bytes a block); exported for the tests. amax is the largest |x|
 * as float32 bits (an integer max over an Int32Array view: non-negative floats order as their bits do), and roundf a
 * truncation (|0) of v ± 0.5, exact in double for a float32 v.
 */
export function quantizeQ8_0Js(src: Float32Array, out: Uint8Array): void {
  const nBlocks = src.length / 32;
  if (src.length % 32 !== 0 || out.length !== nBlocks * 34)
    throw new Error(`q8_0 of ${src.length} values: not a multiple of 32, or not ${nBlocks * 34} bytes out`);
  const q = new Int8Array(out.buffer, out.byteOffset, out.byteLength); // an int8 store wraps as setInt8 does
  const bits = bitsOf(src);
  for (let b = 0, s = 0, o = 0; b < nBlocks; b++, s += 32, o += 34) {
    let m = 0;
    for (let j = 0; j < 32; j++) {
      const a = bits[s + j]! & 0x7fffffff;
      m = a > m ? a : m;
    }
    if (m >= 0x7f800000) {
      out[o + 1] = m > 0x7f800000 ? 0x7e : 0x7c; // d = NaN (as halfBits of the canonical NaN) or inf, q = 0
      continue;
    }
    i32Scratch[0] = m;
    const d = Math.fround(f32Scratch[0]! / 127);
    // 1/d overflows to inf for amax < 127 * 2^-128; q is then inf*x|0 = 0, as C's cast gives on x86-64, and d's
    // f16 is 0 anyway
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const h = f32ToF16Bits(d);
    out[o] = h & 0xff; // little-endian
    out[o + 1] = h >>> 8;
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(src[s + j]! * id);
      q[o + 2 + j] = (v + (v < 0 ? -0.5 : 0.5)) | 0;
    }
  }
}

export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nBlocks = Math.floor(bytes.byteLength / 34);
  const out = new Float32Array(nBlocks * 32);
  for (let b = 0; b < nBlocks; b++) {
    const d = f16BitsToF32(view.getUint16(b * 34, true));
    for (let j = 0; j < 32; j++) out[b * 32 + j] = Math.fround(view.getInt8(b * 34 + 2 + j) * d);
  }
  return out;
}

/** Float32 values of raw F32/F16/BF16/Q8_0 tensor bytes (for checks and tests). */
export function tensorToF32(type: string, bytes: Uint8Array): Float32Array {
  const copy = (n: number) => new DataView(bytes.buffer, bytes.byteOffset, n);
  switch (type) {
    case "F32": {
      const v = copy(bytes.byteLength);
      const out = new Float32Array(bytes.byteLength / 4);
      for (let i = 0; i < out.length; i++) out[i] = v.getFloat32(i * 4, true);
      return out;
    }
    case "F16":
    case "BF16": {
      const v = copy(bytes.byteLength);
      const out = new Float32Array(bytes.byteLength / 2);
      const conv = type === "F16" ? f16BitsToF32 : bf16BitsToF32;
      for (let i = 0; i < out.length; i++) out[i] = conv(v.getUint16(i * 2, true));
      return out;
    }
    case "Q8_0":
      return dequantizeQ8_0(bytes);
    default:
      throw new Error(`no float conversion for ggml type ${type}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

export interface GgufTensorSpec {
  name: string;
  type: GgmlType;
  /** PyTorch order, outermost first. */
  shape: number[];
  /**
   * The tensor's bytes, produced only when the writer reaches this tensor so that at most one tensor is held in
   * memory; or its consecutive parts (a generator converting a few MiB of rows at a time holds only those, and a
   * stoppable writer checks for a stop between parts).
   */
  data: () => Uint8Array | Iterable<Uint8Array>;
}

export interface GgufWriteSpec {
  /** Keys in file order. `general.alignment`, when present, must be a uint32 power of two. */
  metadata: ReadonlyArray<readonly [string, GgufValue]>;
  tensors: readonly GgufTensorSpec[];
  /**
   * Called once every tensor's bytes are made, before the file is complete: what it throws ends the write with
   * nothing published (a source that changed while it was read).
   */
  finish?: () => void;
}

/** A growable byte buffer: a 262k-token vocabulary and 500k merges are a million small writes. */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  /** Room for `n` more bytes; returns the offset to write at. */
  reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      const grown = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  // reserve() may replace this.buf, so it is called before this.buf is read.
  push(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.buf.writeUInt32LE(v, at);
  }
  u64(v: bigint | number): void {
    const at = this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt(v), at);
  }
  str(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.u64(n);
    const at = this.reserve(n);
    this.buf.write(s, at, n, "utf8");
  }
  /** A fresh buffer of `size` bytes at the end, for one scalar. */
  scratch(size: number): Buffer {
    const at = this.reserve(size);
    return this.buf.subarray(at, at + size);
  }
  concat(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(sink: ByteSink, type: GgufScalarTypeName, v: GgufScalar, key: string): void {
  const check = (ok: boolean) => {
    if (!ok) throw new Error(`metadata ${key}: value ${String(v)} does not fit ${type}`);
  };
  let b: Buffer;
  switch (type) {
    case "string":
      check(typeof v === "string");
      sink.str(v as string);
      return;
    case "bool":
      check(typeof v === "boolean");
      sink.scratch(1)[0] = v ? 1 : 0;
      return;
    case "uint64":
    case "int64": {
      check(typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v)));
      b = Buffer.alloc(8);
      if (type === "uint64") b.writeBigUInt64LE(BigInt(v as bigint | number));
      else b.writeBigInt64LE(BigInt(v as bigint | number));
      sink.push(b);
      return;
    }
    default: {
      check(typeof v === "number");
      const n = v as number;
      const size = { uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, float64: 8 }[
        type
      ];
      // Validated in a scratch buffer first: Buffer's write* methods throw a RangeError on out-of-range
      // integers, which must not leave a half-written value in the sink.
      b = Buffer.alloc(size);
      if (type === "uint8") b.writeUInt8(n);
      else if (type === "int8") b.writeInt8(n);
      else if (type === "uint16") b.writeUInt16LE(n);
      else if (type === "int16") b.writeInt16LE(n);
      else if (type === "uint32") b.writeUInt32LE(n);
      else if (type === "int32") b.writeInt32LE(n);
      else if (type === "float32") b.writeFloatLE(n);
      else b.writeDoubleLE(n);
      sink.push(b);
    }
  }
}

function writeValue(sink: ByteSink, key: string, v: GgufValue): void {
  sink.u32(GGUF_VALUE_TYPE_IDS[v.type]);
  if (v.type !== "array") {
    writeScalar(sink, v.type, v.value, key);
    return;
  }
  sink.u32(GGUF_VALUE_TYPE_IDS[v.itemType]);
  sink.u64(v.value.length);
  for (const item of v.value) writeScalar(sink, v.itemType, item, key);
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

function alignmentOf(metadata: GgufWriteSpec["metadata"]): number {
  const entry = metadata.find(([k]) => k === "general.alignment");
  if (!entry) return GGUF_DEFAULT_ALIGNMENT;
  const v = entry[1];
  if (v.type !== "uint32" || v.value <= 0 || (v.value & (v.value - 1)) !== 0) {
    throw new Error("general.alignment must be a uint32 power of two");
  }
  return v.value;
}

/**
 * Write a GGUF v3 file. The header is built in memory (it is small); tensor data is produced one tensor
 * at a time and written straight to a temp file next to `file`, which is fsynced and renamed into place.
 */
export function writeGguf(file: string, spec: GgufWriteSpec): void {
  writeFileAtomicFrom(file, ggufPieces(spec));
}

/**
 * The bytes of a GGUF v3 file in writing order, with a stop mark before each tensor (for a stoppable writer:
 * io/atomic.ts publishFileAsync). The spec is checked and the header built now; each tensor's bytes are made
 * when the consumer reaches it and dropped once consumed.
 */
export function ggufPieces(spec: GgufWriteSpec): Iterable<Piece> {
  const alignment = alignmentOf(spec.metadata);
  const keys = new Set<string>();
  for (const [k] of spec.metadata) {
    if (keys.has(k)) throw new Error(`duplicate metadata key ${k}`);
    keys.add(k);
  }

  const header = new ByteSink();
  header.u32(GGUF_MAGIC);
  header.u32(GGUF_VERSION);
  header.u64(spec.tensors.length);
  header.u64(spec.metadata.length);
  for (const [k, v] of spec.metadata) {
    header.str(k);
    writeValue(header, k, v);
  }
  let offset = 0;
  const sizes: number[] = [];
  const names = new Set<string>();
  for (const t of spec.tensors) {
    if (names.has(t.name)) throw new Error(`duplicate tensor name ${t.name}`);
    names.add(t.name);
    if (t.shape.length < 1 || t.shape.length > GGML_MAX_DIMS)
      throw new Error(`tensor ${t.name}: ${t.shape.length} dims`);
    const nbytes = ggmlTensorBytes(t.type, t.shape);
    sizes.push(nbytes);
    header.str(t.name);
    header.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) header.u64(t.shape[i]!);
    header.u32(GGML_TYPES[t.type]!.id);
    header.u64(offset);
    offset = alignUp(offset + nbytes, alignment);
  }
  const headerBytes = header.concat();

  return (function* (): Generator<Piece> {
    let position = 0;
    const padding = (): Uint8Array[] => {
      const n = alignUp(position, alignment) - position;
      position += n;
      return n > 0 ? [new Uint8Array(n)] : [];
    };
    position += headerBytes.length;
    yield headerBytes;
    yield* padding();
    for (const [i, t] of spec.tensors.entries()) {
      const which = `tensor ${t.name} (${i + 1} of ${spec.tensors.length})`;
      yield { stopMark: which };
      const produced = t.data();
      const n = yield* partsWithStops(
        produced instanceof Uint8Array ? [produced] : produced,
        sizes[i]!,
        which,
      );
      if (n !== sizes[i])
        throw new Error(
          `tensor ${t.name}: got ${n > sizes[i]! ? "at least " : ""}${n} bytes, expected ${sizes[i]} for ${t.type} ${JSON.stringify(t.shape)}`,
        );
      position += n;
      yield* padding();
    }
    spec.finish?.();
  })();
}

// ---------------------------------------------------------------------------------------------
// Reader

export interface GgufTensorInfo {
  name: string;
  /** ggml type name, e.g. "F32" or "Q4_K". */
  type: string;
  typeId: number;
  /** PyTorch order, outermost first. */
  shape: number[];
  /** As stored: ggml `ne`, innermost first. */
  dims: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  nbytes: number;
}

export interface GgufFile {
  source: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
  /** The file's length in bytes. */
  size: number;
  /** The bytes [offset, offset + length) of the file: a view of the whole file's buffer, or of a mapped range. */
  range: (offset: number, length: number) => Uint8Array;
}

/** parseGguf's header read ran past the bytes it was given but not past the file: read `need` bytes and parse again. */
class NeedMoreBytes extends Error {
  constructor(readonly need: number) {
    super(`the GGUF header needs ${need} bytes`);
  }
}

/**
 * Reads the header from `bytes`, the first bytes of a file of `fileLength` bytes (all of it, or a prefix of a file
 * too large to be one Buffer): bounds are the file's, and a read past the prefix but inside the file throws
 * NeedMoreBytes.
 */
class Cursor {
  pos = 0;
  private readonly view: DataView;
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });
  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
    readonly fileLength: number = bytes.byteLength,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  fail(what: string): never {
    throw new InputError(`${this.source}: invalid GGUF file: ${what} (at byte ${this.pos})`);
  }
  get remaining(): number {
    return this.fileLength - this.pos;
  }
  need(n: number, what: string): void {
    if (n > this.remaining) this.fail(`${what} runs past the end of the file`);
    if (this.pos + n > this.bytes.byteLength) throw new NeedMoreBytes(this.pos + n);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A u64 that must be a count or size: bounded by Number.MAX_SAFE_INTEGER. */
  size(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} ${v} is too large`);
    return Number(v);
  }
  str(what: string): string {
    const n = this.size(`${what} length`);
    this.need(n, what);
    try {
      const s = this.decoder.decode(this.bytes.subarray(this.pos, this.pos + n));
      this.pos += n;
      return s;
    } catch {
      this.fail(`${what} is not valid UTF-8`);
    }
  }
  scalar(type: GgufScalarTypeName, what: string): GgufScalar {
    const v = this.view;
    const take = (n: number) => {
      this.need(n, what);
      const p = this.pos;
      this.pos += n;
      return p;
    };
    switch (type) {
      case "uint8":
        return v.getUint8(take(1));
      case "int8":
        return v.getInt8(take(1));
      case "uint16":
        return v.getUint16(take(2), true);
      case "int16":
        return v.getInt16(take(2), true);
      case "uint32":
        return v.getUint32(take(4), true);
      case "int32":
        return v.getInt32(take(4), true);
      case "float32":
        return v.getFloat32(take(4), true);
      case "float64":
        return v.getFloat64(take(8), true);
      case "uint64":
        return v.getBigUint64(take(8), true);
      case "int64":
        return v.getBigInt64(take(8), true);
      case "bool": {
        const b = v.getUint8(take(1));
        if (b > 1) this.fail(`${what}: bool byte ${b}`);
        return b === 1;
      }
      case "string":
        return this.str(what);
    }
  }
}

/** Smallest encoded size of one value of each type, to bound array counts by the bytes left. */
const MIN_SCALAR_BYTES: Record<GgufScalarTypeName, number> = {
  uint8: 1,
  int8: 1,
  bool: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  uint64: 8,
  int64: 8,
  float64: 8,
  string: 8,
};

function readValue(c: Cursor, key: string): GgufValue {
  const typeId = c.u32(`type of ${key}`);
  const type = VALUE_TYPE_BY_ID.get(typeId);
  if (type === undefined) c.fail(`metadata ${key} has unknown value type ${typeId}`);
  if (type !== "array") return { type, value: c.scalar(type, `metadata ${key}`) } as GgufValue;
  const itemId = c.u32(`item type of ${key}`);
  const itemType = VALUE_TYPE_BY_ID.get(itemId);
  if (itemType === undefined) c.fail(`metadata ${key} has unknown array item type ${itemId}`);
  if (itemType === "array") c.fail(`metadata ${key} is a nested array (not supported by ggml)`);
  const n = c.size(`length of ${key}`);
  if (n * MIN_SCALAR_BYTES[itemType] > c.remaining)
    c.fail(`array ${key} of ${n} items runs past the end of the file`);
  const value: GgufScalar[] = new Array(n);
  for (let i = 0; i < n; i++) value[i] = c.scalar(itemType, `metadata ${key}[${i}]`);
  return { type: "array", itemType, value };
}

/** Parse and validate GGUF bytes; `source` names the file in error messages. */
export function parseGguf(bytes: Uint8Array, source: string): GgufFile {
  return parseHeader(bytes, source, bytes.byteLength, (offset, length) =>
    bytes.subarray(offset, offset + length),
  );
}

/**
 * Parse the header in `head`, the first bytes of a file of `fileLength` bytes (throws NeedMoreBytes when it
 * needs more of them); `range` gives the file's bytes for the tensors.
 */
function parseHeader(
  head: Uint8Array,
  source: string,
  fileLength: number,
  range: GgufFile["range"],
): GgufFile {
  const c: Cursor = new Cursor(head, source, fileLength); // typed, so that c.fail() narrows
  if (fileLength < 24) c.fail("file is shorter than the 24-byte header");
  if (c.u32("magic") !== GGUF_MAGIC) {
    c.pos = 0;
    c.fail("bad magic (expected 'GGUF')");
  }
  const version = c.u32("version");
  // v2 has the same layout as v3 (v3 only added big-endian files, which start with a byte-swapped version).
  if (version !== 2 && version !== 3) c.fail(`unsupported version ${version}`);
  const nTensors = c.size("tensor count");
  const nKv = c.size("metadata count");
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
  if (nKv * 13 > c.remaining) c.fail(`metadata count ${nKv} is larger than the file allows`);
  if (nTensors * 32 > c.remaining) c.fail(`tensor count ${nTensors} is larger than the file allows`);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str(`metadata key ${i}`);
    if (metadata.has(key)) c.fail(`duplicate metadata key ${key}`);
    if (isForbiddenKey(key)) c.fail(`metadata key "${key}" is not allowed`);
    metadata.set(key, readValue(c, key));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al !== undefined) {
    if (al.type !== "uint32" || al.value === 0 || (al.value & (al.value - 1)) !== 0) {
      c.fail("general.alignment must be a uint32 power of two");
    }
    alignment = al.value;
  }

  const infos: Omit<GgufTensorInfo, "offset">[] = [];
  const relOffsets: number[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.str(`tensor ${i} name`);
    if (names.has(name)) c.fail(`duplicate tensor name ${name}`);
    if (isForbiddenKey(name)) c.fail(`tensor name "${name}" is not allowed`);
    names.add(name);
    const nDims = c.u32(`tensor ${name} n_dims`);
    if (nDims < 1 || nDims > GGML_MAX_DIMS)
      c.fail(`tensor ${name} has ${nDims} dimensions (1..${GGML_MAX_DIMS} allowed)`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.size(`tensor ${name} dim ${d}`));
    const typeId = c.u32(`tensor ${name} type`);
    const type = GGML_TYPE_BY_ID.get(typeId);
    if (type === undefined) c.fail(`tensor ${name} has unknown ggml type ${typeId}`);
    const traits = GGML_TYPES[type]!;
    if (dims[0]! % traits.blockSize !== 0)
      c.fail(`tensor ${name}: row of ${dims[0]} is not a multiple of the ${type} block size`);
    let elements = 1;
    for (const d of dims) {
      elements *= d;
      if (elements > Number.MAX_SAFE_INTEGER) c.fail(`tensor ${name} has too many elements`);
    }
    const nbytes = (elements / traits.blockSize) * traits.typeSize;
    const rel = c.size(`tensor ${name} offset`);
    if (rel % alignment !== 0)
      c.fail(`tensor ${name} offset ${rel} is not a multiple of the alignment ${alignment}`);
    relOffsets.push(rel);
    infos.push({ name, type, typeId, shape: [...dims].reverse(), dims, nbytes });
  }

  const dataOffset = alignUp(c.pos, alignment);
  if (nTensors > 0 && dataOffset > fileLength) c.fail("data section starts past the end of the file");
  const tensors: GgufTensorInfo[] = infos.map((t, i) => {
    const offset = dataOffset + relOffsets[i]!;
    if (offset + t.nbytes > fileLength) {
      c.pos = offset;
      c.fail(`tensor ${t.name} (${t.nbytes} bytes at offset ${offset}) runs past the end of the file`);
    }
    return { ...t, offset };
  });
  // Tensors must not overlap (llama.cpp goes further and requires them consecutive).
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!;
    if (prev.offset + prev.nbytes > byOffset[i]!.offset)
      c.fail(`tensors ${prev.name} and ${byOffset[i]!.name} overlap`);
  }
  return { source, version, metadata, tensors, alignment, dataOffset, size: fileLength, range };
}

/** The first read of a large file's header: a 262k-token vocabulary with its merges or scores is about 10 MB. */
const FIRST_HEADER_READ = 16 << 20;

/**
 * Read and validate a GGUF file (memory-mapped when the native addon provides mapping). A file larger than one
 * Buffer (MAX_BUFFER_BYTES: a 7B model in f16 is 15 GB) has its header read, as far as it goes, and each tensor's
 * byte range mapped when it is asked for.
 */
export function readGguf(file: string): GgufFile {
  const cannot = (e: unknown) =>
    new InputError(`${file}: cannot read GGUF file: ${(e as Error).message}`, { cause: e });
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (e) {
    throw cannot(e);
  }
  if (size <= MAX_BUFFER_BYTES) {
    let bytes: Buffer;
    try {
      bytes = mapFile(file);
    } catch (e) {
      throw cannot(e);
    }
    return parseGguf(bytes, file);
  }
  const range = (offset: number, length: number): Uint8Array => {
    if (length > MAX_BUFFER_BYTES)
      throw new InputError(
        `${file}: a tensor of ${length} bytes at offset ${offset} is larger than the ${MAX_BUFFER_BYTES} bytes one Node.js buffer can hold`,
      );
    return length === 0 ? new Uint8Array(0) : mapFileRanges(file, [[offset, length]])[0]!;
  };
  for (let want = FIRST_HEADER_READ; ;) {
    let head: Buffer;
    try {
      head = readHead(file, Math.min(want, size));
    } catch (e) {
      throw cannot(e);
    }
    try {
      return parseHeader(head, file, size, range);
    } catch (e) {
      if (!(e instanceof NeedMoreBytes)) throw e;
      if (head.length < Math.min(want, size))
        throw new InputError(
          `${file}: the file became shorter while its GGUF header was read (another program writes it?)`,
        );
      want = Math.max(2 * want, e.need);
    }
  }
}

/** The first `bytes` bytes of `file` (fewer if it is shorter now). */
function readHead(file: string, bytes: number): Buffer {
  const buf = Buffer.alloc(bytes);
  const fd = fs.openSync(file, "r");
  try {
    let done = 0;
    while (done < bytes) {
      const n = fs.readSync(fd, buf, done, bytes - done, done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}

/** The raw bytes of one tensor (a view into the file). */
export function ggufTensorBytes(file: GgufFile, name: string): Uint8Array {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new InputError(`${file.source}: no tensor named ${name}`);
  return file.range(t.offset, t.nbytes);
}

/** A metadata value's plain JS value (numbers, bigints, booleans, strings, or an array of them). */
export function ggufMeta(file: GgufFile, key: string): GgufScalar | GgufScalar[] | undefined {
  return file.metadata.get(key)?.value;
}
