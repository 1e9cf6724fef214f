/** Shared bits of the io tests: fixture paths, scratch folders, a seeded PRNG, error assertions. */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir as tempDir } from "../scratch.js";
import assert from "node:assert/strict";
import { InputError } from "../../src/errors.js";

/** Repository root: the tests run from dist/test/io/, the sources live in test/. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const FIXTURES = path.join(REPO_ROOT, "test/fixtures");
export const FAMILIES = ["llama", "qwen2", "qwen3", "gemma3"] as const;

/** A scratch folder removed when the test process exits (test/scratch.ts). */
export function scratchDir(prefix = "gv-io-"): string {
  return tempDir(prefix);
}

/** mulberry32: small, seeded, reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Assert `fn` throws an InputError whose message contains every one of `parts`. */
export function assertInputError(fn: () => unknown, ...parts: (string | RegExp)[]): InputError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(
    caught instanceof InputError,
    `expected InputError, got ${caught instanceof Error ? caught.stack : String(caught)}`,
  );
  for (const p of parts) {
    if (typeof p === "string")
      assert.ok(
        caught.message.includes(p),
        `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(p)}`,
      );
    else assert.match(caught.message, p);
  }
  return caught;
}

export async function assertInputErrorAsync(
  fn: () => Promise<unknown>,
  ...parts: (string | RegExp)[]
): Promise<InputError> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(
    caught instanceof InputError,
    `expected InputError, got ${caught instanceof Error ? caught.stack : String(caught)}`,
  );
  for (const p of parts) {
    if (typeof p === "string")
      assert.ok(
        caught.message.includes(p),
        `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(p)}`,
      );
    else assert.match(caught.message, p);
  }
  return caught;
}

/**
 * A copy of the model folder `src` at `dir`, its weight file dated in the past (as a downloaded one is, so that a
 * write into it moves its modification time); returns the weight file's path.
 */
export function copyModelDatedInPast(src: string, dir: string): string {
  fs.cpSync(src, dir, { recursive: true });
  const weights = path.join(dir, "model.safetensors");
  const past = new Date("2024-01-01T00:00:00Z");
  fs.utimesSync(weights, past, past);
  return weights;
}

/** Overwrite 4 bytes near the end of `file` in place (the same size), as another program might: bf16 0.5 and -0.5. */
export function writeInPlace(file: string): void {
  const fd = fs.openSync(file, "r+");
  try {
    const size = fs.fstatSync(fd).size;
    fs.writeSync(fd, Buffer.from([0x00, 0x3f, 0x00, 0xbf]), 0, 4, size - 4);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A sparse file: `head`, then `dataLen` bytes of holes with each mark's bytes written at its offset into them (the
 * offset counted from the end of `head`), so a multi-GiB weight file costs only its written blocks on disk.
 */
export function writeSparseFile(
  file: string,
  head: Buffer,
  dataLen: number,
  marks: readonly [number, Uint8Array][],
): void {
  const fd = fs.openSync(file, "w");
  try {
    fs.writeSync(fd, head, 0, head.length, 0);
    fs.ftruncateSync(fd, head.length + dataLen);
    for (const [at, bytes] of marks) fs.writeSync(fd, bytes, 0, bytes.length, head.length + at);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A sparse safetensors file: the header (padded to 8 bytes as safetensors writes it), then `marks` written at data
 * offsets, the rest holes. Returns the header's length with its 8-byte size.
 */
export function writeSparseSafetensors(
  file: string,
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>,
  marks: [number, Uint8Array][] = [],
): number {
  let text = JSON.stringify(header);
  text += " ".repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(text));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(text)), 0);
  head.write(text, 8);
  const dataLen = Math.max(0, ...Object.values(header).map((e) => e.data_offsets[1]));
  writeSparseFile(file, head, dataLen, marks);
  return head.length;
}
