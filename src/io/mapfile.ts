import * as fs from "node:fs";
import { constants as bufferConstants } from "node:buffer";

/**
 * The bytes of a file. Large weight files are memory-mapped through the native addon when it is built
 * (see src/tensor/native.ts); otherwise they are read. Either way the result is a read-only view.
 */
export type FileMapper = (file: string) => Buffer;
/** Views of byte ranges ([offset, length] each) of one file: mapped once by the addon, else read. */
export type RangeMapper = (file: string, ranges: readonly (readonly [number, number])[]) => Buffer[];

/**
 * The largest Buffer Node.js makes (4 GiB in Node 20). A file larger than that (Hugging Face shards checkpoints at
 * 5 GB: Meta-Llama-3-8B-Instruct's and gemma-3-12b-it's shards are 4.98 GB, CodeLlama-7B's first 9.98 GB) cannot be
 * one Buffer; its tensors are mapped as views of their own ranges (mapFileRanges).
 */
export const MAX_BUFFER_BYTES = bufferConstants.MAX_LENGTH;

/** The largest file fs.readFileSync reads (2 GiB - 1: ERR_FS_FILE_TOO_LARGE past it, though a Buffer may be 4 GiB). */
const READ_FILE_MAX = 2 ** 31 - 1;

/** `ranges` of `file` read into Buffers: what stands for mapping where the addon is not loaded. */
function readRanges(file: string, ranges: readonly (readonly [number, number])[]): Buffer[] {
  const fd = fs.openSync(file, "r");
  try {
    return ranges.map(([offset, length]) => {
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        // one read of at most 1 GiB: readSync takes a 32-bit length
        const n = fs.readSync(fd, buf, done, Math.min(length - done, 2 ** 30), offset + done);
        if (n === 0) throw new Error(`${file} ends before byte ${offset + length}`);
        done += n;
      }
      return buf;
    });
  } finally {
    fs.closeSync(fd);
  }
}

/** A whole file read: in parts past READ_FILE_MAX (a 2-4 GiB shard, e.g. a 7B's second of two). */
function readWhole(file: string): Buffer {
  const size = fs.statSync(file).size;
  return size <= READ_FILE_MAX ? fs.readFileSync(file) : readRanges(file, [[0, size]])[0]!;
}

let mapper: FileMapper = readWhole;
let rangeMapper: RangeMapper = readRanges;
let readBelow = 0;

export function mapFile(file: string): Buffer {
  if (readBelow > 0 && fs.statSync(file).size < readBelow) return fs.readFileSync(file);
  return mapper(file);
}

/** Views of `ranges` of `file`, each at most MAX_BUFFER_BYTES long: for a file too large to be one Buffer. */
export function mapFileRanges(file: string, ranges: readonly (readonly [number, number])[]): Buffer[] {
  return rangeMapper(file, ranges);
}

/**
 * Files under `bytes` are read rather than mapped, for a command that only reads weights (a GGUF export): mapping
 * goes through the native addon, and loading it loads libtorch (about 0.3 s here), more than reading a small
 * checkpoint takes. Larger files are still mapped, so that a model of many GB is never held in the heap. The bytes
 * are the same either way.
 */
export function readFilesBelow(bytes: number): void {
  readBelow = bytes;
}

/** Installed by the tensor layer once the native addon has loaded. */
export function setFileMapper(m: FileMapper, ranges: RangeMapper): void {
  mapper = m;
  rangeMapper = ranges;
}

/**
 * What shows that a file was written in place: its identity (device, inode), size and modification time, taken
 * when it is opened. A mapped file that another program writes into (`cp` over it, a download into it) changes
 * under the views of it, so that a long read (an export, a fold) mixes old and new bytes; a file replaced by a
 * rename is a new inode, and the views keep the old one, whole.
 */
export interface FileStamp {
  file: string;
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
}

/** `file`'s stamp now, or null when it cannot be stat'ed (its reader says why). */
export function fileStamp(file: string): FileStamp | null {
  try {
    const s = fs.statSync(file, { bigint: true });
    return { file, dev: s.dev, ino: s.ino, size: s.size, mtimeNs: s.mtimeNs };
  } catch {
    return null;
  }
}

/**
 * The files of `stamps` written in place since they were stamped (the same file, its size or modification time
 * changed), each with what changed. A file replaced (another inode) or removed is not listed: its open views still
 * show the old file whole.
 */
export function writtenInPlace(stamps: readonly FileStamp[]): string[] {
  const out: string[] = [];
  for (const s of stamps) {
    const now = fileStamp(s.file);
    if (!now || now.dev !== s.dev || now.ino !== s.ino) continue;
    if (now.size !== s.size) out.push(`${s.file} (${s.size} -> ${now.size} bytes)`);
    else if (now.mtimeNs !== s.mtimeNs) out.push(`${s.file} (modified ${mtimeText(now.mtimeNs)})`);
  }
  return out;
}

function mtimeText(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}
