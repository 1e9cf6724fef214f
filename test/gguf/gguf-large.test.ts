/**
 * A GGUF file larger than one Node.js Buffer (buffer.constants.MAX_LENGTH, 4 GiB in Node 20): Llama-3-8B in f16 is
 * 16 GB, Qwen2.5-7B's 15 GB, any q8_0 of a 7B model 8 GB. readGguf mapped the whole file as one Buffer, which such a
 * file cannot be. Now it reads the header and maps each tensor's byte range when asked for.
 *
 * The file is sparse (a hand-assembled header, a few marker bytes, holes), so the test writes kilobytes. The
 * reference is the format itself (ggml/docs/gguf.md): the data section starts at the header's end rounded up to the
 * alignment (32), and each tensor's bytes at that plus its offset.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { ggufMeta, ggufTensorBytes, readGguf } from "../../src/io/gguf.js";
import { MAX_BUFFER_BYTES } from "../../src/io/mapfile.js";
import { tidy } from "../../src/tensor/index.js";
import { assertInputError, scratchDir, writeSparseFile } from "../io/helpers.js";

interface Info {
  name: string;
  /** ggml ne, innermost first */
  ne: number[];
  /** ggml type id: 0 F32, 30 BF16 */
  type: number;
  offset: number;
}

/** GGUF v3 bytes up to the tensor data, assembled by hand from the spec (string metadata values). */
function header(infos: Info[], strings: [string, string][]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const u64 = (v: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s: string) => {
    u64(Buffer.byteLength(s));
    parts.push(Buffer.from(s));
  };
  parts.push(Buffer.from("GGUF"));
  u32(3);
  u64(infos.length);
  u64(strings.length);
  for (const [k, v] of strings) {
    str(k);
    u32(8); // string
    str(v);
  }
  for (const t of infos) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(t.type);
    u64(t.offset);
  }
  const h = Buffer.concat(parts);
  return Buffer.concat([h, Buffer.alloc((32 - (h.length % 32)) % 32)]);
}

/** The sparse file: the header, marks at data offsets, holes to `dataLen`. Returns the data section's offset. */
function sparseGguf(
  file: string,
  infos: Info[],
  dataLen: number,
  marks: [number, Uint8Array][],
  strings: [string, string][] = [],
): number {
  const head = header(infos, [["general.architecture", "llama"], ...strings]);
  writeSparseFile(file, head, dataLen, marks);
  return head.length;
}

const big = 1200 * 1024 * 1024 * 2; // a [1200, 1048576] bf16 tensor: 2.34 GiB
const infos: Info[] = [
  { name: "token_embd.weight", ne: [1024 * 1024, 1200], type: 30, offset: 0 },
  { name: "output.weight", ne: [1024 * 1024, 1200], type: 30, offset: big },
  { name: "output_norm.weight", ne: [4], type: 0, offset: 2 * big },
];

test("a GGUF file past 4 GiB reads: header, metadata, every tensor's bytes where the format puts them, one past 2^32", () => {
  const dir = scratchDir("gv-gguf-large-");
  try {
    const file = path.join(dir, "big model.gguf");
    const c = new Float32Array([1.5, -2, 3.25, 4096]);
    const dataOffset = sparseGguf(file, infos, 2 * big + 16, [
      [0, Buffer.from([0xa0, 0xa1])],
      [big - 2, Buffer.from([0xaf, 0xae])],
      [big, Buffer.from([0xb0, 0xb1])],
      [2 * big, new Uint8Array(c.buffer)],
    ]);
    const size = fs.statSync(file).size;
    assert.ok(size > MAX_BUFFER_BYTES, `the file (${size} bytes) is larger than one Buffer`);
    assert.ok(dataOffset + 2 * big > 2 ** 32, "the last tensor starts past 2^32");

    const g = readGguf(file);
    assert.equal(ggufMeta(g, "general.architecture"), "llama");
    assert.equal(g.dataOffset, dataOffset);
    assert.deepEqual(
      g.tensors.map((t) => [t.name, t.type, t.shape, t.offset, t.nbytes]),
      [
        ["token_embd.weight", "BF16", [1200, 1024 * 1024], dataOffset, big],
        ["output.weight", "BF16", [1200, 1024 * 1024], dataOffset + big, big],
        ["output_norm.weight", "F32", [4], dataOffset + 2 * big, 16],
      ],
    );
    tidy(() => {
      // the addon maps the ranges (loaded here), so 2.34 GiB views cost no memory
      const a = ggufTensorBytes(g, "token_embd.weight");
      assert.equal(a.byteLength, big);
      assert.deepEqual([a[0], a[1], a[big - 2], a[big - 1], a[2]], [0xa0, 0xa1, 0xaf, 0xae, 0]);
      const b = ggufTensorBytes(g, "output.weight");
      assert.deepEqual([b[0], b[1], b[big - 1]], [0xb0, 0xb1, 0]);
      const n = ggufTensorBytes(g, "output_norm.weight");
      assert.deepEqual([...new Float32Array(Uint8Array.from(n).buffer)], [...c]);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a GGUF file past 4 GiB that ends before its last tensor is refused, naming the file and the tensor", () => {
  const dir = scratchDir("gv-gguf-large-");
  try {
    const file = path.join(dir, "cut.gguf");
    sparseGguf(file, infos, 2 * big + 8, []);
    assertInputError(() => readGguf(file), file, "output_norm.weight", "runs past the end of the file");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a GGUF file past 4 GiB whose header is longer than the first read still reads (the header is read on)", () => {
  const dir = scratchDir("gv-gguf-large-");
  try {
    const file = path.join(dir, "long-header.gguf");
    // a 20 MB metadata string before the tensor infos: a header longer than any first read of a few MiB
    const long = "x".repeat(20 << 20);
    const dataOffset = sparseGguf(
      file,
      infos,
      2 * big + 16,
      [[2 * big, Buffer.from([7, 8])]],
      [["a.long", long]],
    );
    assert.ok(dataOffset > 20 << 20);
    const g = readGguf(file);
    assert.equal(ggufMeta(g, "a.long"), long);
    assert.equal(g.dataOffset, dataOffset);
    assert.deepEqual(
      g.tensors.map((t) => t.offset),
      [dataOffset, dataOffset + big, dataOffset + 2 * big],
    );
    assert.deepEqual([...ggufTensorBytes(g, "output_norm.weight").subarray(0, 3)], [7, 8, 0]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
