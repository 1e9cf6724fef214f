/**
 * safetensors reader and writer, hand-written.
 *
 * Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * (`{"__metadata__": {str: str}, name: {dtype, shape, data_offsets: [begin, end]}, ...}`), then the raw
 * little-endian tensor bytes; offsets are relative to the start of that data section.
 * Every length read from the file is checked before it is used, so a hostile file gives an InputError,
 * never a huge allocation or an out-of-range view.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { GoodVibeError, InputError, ResourceError } from "../errors.js";
import { formatBytes } from "../util/memory.js";
import { isForbiddenKey, refuseForbiddenKeys, isPlainObject } from "../util/keys.js";
import {
  partsWithStops,
  writeFileAtomic,
  writeFileAtomicAsync,
  writeFileAtomicFrom,
  type Piece,
} from "./atomic.js";
import {
  MAX_BUFFER_BYTES,
  fileStamp,
  mapFile,
  mapFileRanges,
  writtenInPlace,
  type FileStamp,
} from "./mapfile.js";

export type StDtype = "F32" | "BF16" | "F16" | "F64" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/**
 * The floating dtypes a weights file is written in, by torch's name (config.json's torch_dtype, export's --outtype for
 * a model folder or a PEFT adapter).
 */
export const FLOAT_ST_DTYPES = { float32: "F32", bfloat16: "BF16", float16: "F16" } as const satisfies Record<
  string,
  StDtype
>;
export type FloatDtypeName = keyof typeof FLOAT_ST_DTYPES;

/** Bytes per element. */
export const DTYPE_SIZE: Readonly<Record<StDtype, number>> = {
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  BF16: 2,
  F16: 2,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/**
 * The order in which the safetensors library lays tensors out: larger alignment first, so every tensor
 * starts aligned to its element size (its Rust `Dtype` enum order, reversed; ties broken by name).
 */
const DTYPE_LAYOUT_RANK: Readonly<Record<StDtype, number>> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  I16: 5,
  F16: 7,
  BF16: 8,
  I32: 9,
  F32: 11,
  F64: 12,
  I64: 13,
};

export interface TensorRecord {
  name: string;
  dtype: StDtype;
  shape: number[];
  /** Zero-copy view into the file's bytes. */
  data: Buffer;
  file: string;
}

export interface SafetensorsFile {
  file: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorRecord>;
}

export interface ModelWeights {
  dir: string;
  tensors: Map<string, TensorRecord>;
  /** The safetensors files the tensors come from. */
  files: string[];
  /** Each file's stamp, taken before it was opened (weightsUnchanged). */
  stamps: FileStamp[];
}

/** What the writers take: any tensor with its raw little-endian bytes (a TensorRecord fits). */
export interface TensorToWrite {
  name: string;
  dtype: StDtype;
  shape: number[];
  data: Uint8Array;
  /**
   * Byte ranges written instead of `data`'s at these offsets (sorted, not overlapping, inside `data`): a tensor of
   * which a few rows changed is written from the mapped input file and the new rows, without a copy of the rest.
   */
  patches?: readonly { offset: number; bytes: Uint8Array }[];
}

/**
 * A tensor whose bytes are made only when the writer reaches it, and dropped once written: a file of converted
 * tensors (an export to another dtype) then needs the memory of one tensor, not of the whole model.
 */
export interface LazyTensorToWrite {
  name: string;
  dtype: StDtype;
  shape: number[];
  /**
   * its raw little-endian bytes, exactly shape × dtype's size of them; called once, in writing order. Or its
   * consecutive parts (a generator converting a few MiB of rows at a time holds only those, and a stoppable writer
   * checks for a stop between parts).
   */
  bytes: () => Uint8Array | Iterable<Uint8Array>;
}

/** What writeSafetensors and writeModelWeights take. */
export type AnyTensorToWrite = TensorToWrite | LazyTensorToWrite;

function isLazy(t: AnyTensorToWrite): t is LazyTensorToWrite {
  return typeof (t as LazyTensorToWrite).bytes === "function";
}

/** The number of bytes `t` takes in the file (a lazy tensor's from its shape and dtype). */
function byteLengthOf(t: AnyTensorToWrite): number {
  return isLazy(t) ? Number(byteSize(t.shape, t.dtype)) : t.data.byteLength;
}

/** The safetensors library refuses headers above this (100 MB); so do we. */
export const MAX_HEADER_BYTES = 100_000_000;

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

/** The safetensors format's dtypes (safetensors/src/tensor.rs `Dtype`) that are not StDtypes. */
const OTHER_FORMAT_DTYPES = new Set([
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "U16",
  "U32",
  "U64",
  "C64",
]);

function isDtype(x: unknown): x is StDtype {
  return typeof x === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, x);
}

/** Number of elements times bytes per element, in BigInt so that hostile shapes cannot overflow silently. */
function byteSize(shape: readonly number[], dtype: StDtype): bigint {
  let n = BigInt(DTYPE_SIZE[dtype]);
  for (const d of shape) n *= BigInt(d);
  return n;
}

/**
 * A safetensors image as the parser reads it: its length, its first bytes (the header), and views of tensors'
 * byte ranges. A Buffer of the whole file serves all three; a file too large to be one Buffer (more than
 * MAX_BUFFER_BYTES: a 5 GB shard) reads its header and maps each tensor's range as a view of its own.
 */
interface SafetensorsBytes {
  length: number;
  head(bytes: number): Buffer;
  views(ranges: readonly (readonly [number, number])[]): Buffer[];
}

function wholeBuffer(buf: Buffer): SafetensorsBytes {
  return {
    length: buf.length,
    head: (bytes) => buf.subarray(0, bytes),
    views: (ranges) => ranges.map(([offset, length]) => buf.subarray(offset, offset + length)),
  };
}

/** A file larger than one Buffer: its header read (at most 8 + MAX_HEADER_BYTES bytes), its tensors mapped by range. */
function largeFile(file: string, length: number): SafetensorsBytes {
  return {
    length,
    head(bytes) {
      const buf = Buffer.alloc(Math.min(bytes, length));
      const fd = fs.openSync(file, "r");
      try {
        let done = 0;
        while (done < buf.length) {
          const n = fs.readSync(fd, buf, done, buf.length - done, done);
          if (n === 0) break;
          done += n;
        }
        return buf.subarray(0, done);
      } finally {
        fs.closeSync(fd);
      }
    },
    views: (ranges) => mapFileRanges(file, ranges),
  };
}

/** Parse and validate a safetensors file; tensor data are views into the mapped file. */
export function readSafetensors(file: string): SafetensorsFile {
  let bytes: SafetensorsBytes;
  let size = 0;
  try {
    size = fs.statSync(file).size;
    bytes = size > MAX_BUFFER_BYTES ? largeFile(file, size) : wholeBuffer(mapFile(file));
    return parseSafetensorsBytes(bytes, file);
  } catch (e) {
    // the file is fine when the machine lacks the mapper (goodvibe's addon not built): say that, not "bad file"
    if (e instanceof GoodVibeError) throw e;
    // under strict overcommit (vm.overcommit_memory 2) the kernel refuses one mapping larger than it lets a process
    // commit, MAP_NORESERVE or not (the addon's mapWholeFile): not a bad file
    if (/Cannot allocate memory/.test((e as Error).message))
      throw new ResourceError(
        `${file}: the system refused to map its ${formatBytes(size)} into memory (${(e as Error).message}): under ` +
          "strict overcommit (vm.overcommit_memory 2) one file larger than the memory this process may commit cannot " +
          "be mapped whole; split it into shards of a few GB (as checkpoints are published: save_pretrained(..., " +
          'max_shard_size="5GB")), each is mapped on its own, or use a machine with more memory',
        { cause: e },
      );
    throw new InputError(`${file}: cannot read safetensors file (${(e as Error).message})`, { cause: e });
  }
}

/** Parse a safetensors image already in memory; `file` is used in messages and in each TensorRecord. */
export function parseSafetensors(buf: Buffer, file: string): SafetensorsFile {
  return parseSafetensorsBytes(wholeBuffer(buf), file);
}

function parseSafetensorsBytes(src: SafetensorsBytes, file: string): SafetensorsFile {
  const bad = (what: string): InputError => new InputError(`${file}: not a valid safetensors file: ${what}`);
  if (src.length < 8) throw bad(`it is ${src.length} bytes long, shorter than the 8-byte header length`);
  const headerLen = src.head(8).readBigUInt64LE(0);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw bad(`header length ${headerLen} is larger than the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(headerLen);
  if (8 + n > src.length) throw bad(`header length ${n} runs past the end of the file (${src.length} bytes)`);

  let headerText: string;
  try {
    headerText = new TextDecoder("utf-8", { fatal: true }).decode(src.head(8 + n).subarray(8));
  } catch {
    throw bad("header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) throw bad("header is not a JSON object");
  // tensor names and metadata keys become object keys downstream: none may reach a prototype
  refuseForbiddenKeys(header, `${file}: not a valid safetensors file`);

  const dataStart = 8 + n;
  const dataLen = src.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Omit<TensorRecord, "data">[] = [];
  const spans: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (!isPlainObject(entry)) throw bad("__metadata__ is not an object of strings");
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") throw bad(`__metadata__["${k}"] is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const badTensor = (what: string): InputError => bad(`tensor "${name}": ${what}`);
    if (!isPlainObject(entry)) throw badTensor("entry is not an object");
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isDtype(dtype)) {
      // the format's other dtypes (its Rust Dtype enum): a valid file this tool does not read, most often a
      // quantized checkpoint's 8-bit floats or packed integers
      if (typeof dtype === "string" && OTHER_FORMAT_DTYPES.has(dtype))
        throw new InputError(
          `${file}: tensor "${name}" is stored as ${dtype}, which GoodVibe does not read (it reads ` +
            `${Object.keys(DTYPE_SIZE).join(", ")}): a quantized checkpoint? Use the model's unquantized release`,
        );
      throw badTensor(
        `unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_SIZE).join(", ")})`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw badTensor(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw badTensor(`data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const expected = byteSize(shape, dtype);
    if (BigInt(end - begin) !== expected) {
      throw badTensor(
        `data_offsets span ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${expected}`,
      );
    }
    if (end > dataLen) {
      throw badTensor(`data_offsets [${begin}, ${end}] run past the data section (${dataLen} bytes)`);
    }
    if (end - begin > MAX_BUFFER_BYTES)
      throw badTensor(
        `it is ${end - begin} bytes, more than the ${MAX_BUFFER_BYTES} bytes one Node.js buffer can hold`,
      );
    spans.push({ name, begin, end });
    entries.push({ name, dtype, shape: shape.slice(), file });
  }

  // Two tensors sharing bytes would let a write to one corrupt the other; the format forbids it.
  const sorted = [...spans].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.begin < prev.end) {
      throw bad(
        `tensors "${prev.name}" [${prev.begin}, ${prev.end}] and "${cur.name}" [${cur.begin}, ${cur.end}] overlap`,
      );
    }
  }
  // the views only once every entry is checked: a bad header maps nothing
  const views = src.views(spans.map((sp) => [dataStart + sp.begin, sp.end - sp.begin] as const));
  const tensors = new Map<string, TensorRecord>();
  entries.forEach((e, k) => tensors.set(e.name, { ...e, data: views[k]! }));
  return { file, metadata, tensors };
}

// ---------------------------------------------------------------------------------------------------------
// Writing

function checkTensorsToWrite(file: string, tensors: readonly AnyTensorToWrite[]): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === "__metadata__" || t.name.length === 0 || isForbiddenKey(t.name))
      throw new InputError(`${file}: invalid tensor name "${t.name}"`);
    if (seen.has(t.name)) throw new InputError(`${file}: tensor "${t.name}" given twice`);
    seen.add(t.name);
    if (!isDtype(t.dtype))
      throw new InputError(`${file}: tensor "${t.name}" has unknown dtype ${String(t.dtype)}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new InputError(`${file}: tensor "${t.name}" has invalid shape ${JSON.stringify(t.shape)}`);
    }
    if (!isLazy(t)) checkByteLength(file, t, t.data);
  }
}

function checkByteLength(file: string, t: AnyTensorToWrite, data: Uint8Array): void {
  const expected = byteSize(t.shape, t.dtype);
  if (BigInt(data.byteLength) !== expected) {
    throw new InputError(
      `${file}: tensor "${t.name}" has ${data.byteLength} bytes but shape ${JSON.stringify(t.shape)} of ${t.dtype} needs ${expected}`,
    );
  }
}

/** Layout order of the safetensors library: alignment descending, then name (code-point order, like Rust). */
function layoutOrder<T extends AnyTensorToWrite>(tensors: readonly T[]): T[] {
  return [...tensors].sort(
    (a, b) =>
      DTYPE_LAYOUT_RANK[b.dtype] - DTYPE_LAYOUT_RANK[a.dtype] ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}

/**
 * The header bytes (length prefix + JSON padded with spaces to a multiple of 8) for `ordered` tensors,
 * exactly as the safetensors library writes them.
 */
function encodeHeader(ordered: readonly AnyTensorToWrite[], metadata: Record<string, string> | null): Buffer {
  // Built by hand rather than from an object: JSON.stringify would move integer-like names ("0") first.
  const parts: string[] = [];
  if (metadata !== null) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let offset = 0;
  for (const t of ordered) {
    const end = offset + byteLengthOf(t);
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  let json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json]);
}

/**
 * Write a safetensors file the way the Hugging Face library does (byte-identical for the same tensors):
 * `__metadata__` first, tensors by alignment then name with consecutive offsets, header padded to 8 bytes.
 * `metadata: null` omits `__metadata__`. The file is written atomically, tensor by tensor (no big concat); a
 * lazy tensor's bytes are made as it is reached and dropped once written.
 */
export function writeSafetensors(
  file: string,
  tensors: readonly AnyTensorToWrite[],
  metadata: Record<string, string> | null = { format: "pt" },
): void {
  writeFileAtomicFrom(file, safetensorsPieces(file, tensors, metadata));
}

/**
 * writeSafetensors for a long write that Ctrl-C must end promptly (a model's weights): the same bytes, with a stop
 * check on `signal` before each tensor (and every 64 MiB); a stop removes the partial file and throws an
 * InterruptedError (exit 130).
 */
export async function writeSafetensorsAsync(
  file: string,
  tensors: readonly AnyTensorToWrite[],
  metadata: Record<string, string> | null = { format: "pt" },
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  await writeFileAtomicAsync(file, safetensorsPieces(file, tensors, metadata), opts);
}

/**
 * The bytes of a safetensors file in writing order, with a stop mark before each tensor. Checked now; each
 * tensor's bytes are made (a lazy one's) when the consumer reaches it.
 */
function safetensorsPieces(
  file: string,
  tensors: readonly AnyTensorToWrite[],
  metadata: Record<string, string> | null,
): Iterable<Piece> {
  checkTensorsToWrite(file, tensors);
  const ordered = layoutOrder(tensors);
  const header = encodeHeader(ordered, metadata);
  return (function* () {
    yield header;
    for (const [i, t] of ordered.entries()) {
      const which = `tensor ${t.name} (${i + 1} of ${ordered.length})`;
      yield { stopMark: which };
      if (!isLazy(t)) {
        for (const c of dataChunks(t)) if (c.byteLength > 0) yield c;
        continue;
      }
      const made = t.bytes();
      if (made instanceof Uint8Array) {
        checkByteLength(file, t, made);
        if (made.byteLength > 0) yield made;
        continue;
      }
      // too many bytes fail before they are written, too few after the last part
      const expected = byteLengthOf(t);
      const n = yield* partsWithStops(made, expected, which);
      if (n !== expected)
        throw new InputError(
          `${file}: tensor "${t.name}" has ${n > expected ? "at least " : ""}${n} bytes but shape ${JSON.stringify(t.shape)} of ${t.dtype} needs ${expected}`,
        );
    }
  })();
}

/** A tensor's bytes as written: `data` with its patches in place, as consecutive pieces. */
function dataChunks(t: TensorToWrite): Uint8Array[] {
  if (!t.patches?.length) return [t.data];
  const out: Uint8Array[] = [];
  let at = 0;
  for (const p of t.patches) {
    if (p.offset < at || p.offset + p.bytes.byteLength > t.data.byteLength)
      throw new Error(`tensor "${t.name}": patch at byte ${p.offset} overlaps another or runs past the data`);
    out.push(t.data.subarray(at, p.offset), p.bytes);
    at = p.offset + p.bytes.byteLength;
  }
  out.push(t.data.subarray(at));
  return out;
}

/** Hugging Face's default shard limit for save_pretrained ("5GB", decimal). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

export function shardFileName(i: number, n: number): string {
  const pad = (k: number): string => String(k).padStart(5, "0");
  return `model-${pad(i)}-of-${pad(n)}.safetensors`;
}

const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

/**
 * Write model weights into `dir`: one `model.safetensors` when they fit in `maxShardBytes`, otherwise
 * `model-0000i-of-0000n.safetensors` shards plus `model.safetensors.index.json` (as save_pretrained does).
 * Shards are filled greedily in name order; a tensor larger than the limit gets a shard of its own.
 * Weight files from an earlier write into the same folder that the new layout does not use are removed,
 * so a stale index can never shadow the new weights. Returns the written file names.
 */
export function writeModelWeights(
  dir: string,
  tensors: readonly AnyTensorToWrite[],
  opts: { maxShardBytes?: number; metadata?: Record<string, string> | null } = {},
): string[] {
  const plan = planModelWeights(dir, tensors, opts);
  for (const f of plan.files) writeSafetensors(path.join(dir, f.name), f.tensors, plan.metadata);
  return finishModelWeights(dir, plan);
}

/**
 * writeModelWeights for a long write that Ctrl-C must end promptly (an export, a fold): the same files, each
 * stopping on `signal` before a tensor (writeSafetensorsAsync). A stop leaves the shards already finished and
 * removes the one being written; callers write into a folder published only when complete (writeDirAtomic).
 */
export async function writeModelWeightsAsync(
  dir: string,
  tensors: readonly AnyTensorToWrite[],
  opts: { maxShardBytes?: number; metadata?: Record<string, string> | null; signal?: AbortSignal } = {},
): Promise<string[]> {
  const plan = planModelWeights(dir, tensors, opts);
  for (const f of plan.files)
    await writeSafetensorsAsync(path.join(dir, f.name), f.tensors, plan.metadata, { signal: opts.signal });
  return finishModelWeights(dir, plan);
}

interface WeightsPlan {
  metadata: Record<string, string> | null;
  files: { name: string; tensors: AnyTensorToWrite[] }[];
  /** model.safetensors.index.json's text when sharded */
  index: string | null;
}

/** Checked tensors split into files (see writeModelWeights); `dir` is made. */
function planModelWeights(
  dir: string,
  tensors: readonly AnyTensorToWrite[],
  opts: { maxShardBytes?: number; metadata?: Record<string, string> | null },
): WeightsPlan {
  const maxShardBytes = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(maxShardBytes > 0))
    throw new InputError(`writeModelWeights: maxShardBytes must be positive, got ${maxShardBytes}`);
  const metadata = opts.metadata === undefined ? { format: "pt" } : opts.metadata;
  checkTensorsToWrite(path.join(dir, SINGLE_FILE), tensors);
  fs.mkdirSync(dir, { recursive: true });

  const byName = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const shards: AnyTensorToWrite[][] = [];
  let current: AnyTensorToWrite[] = [];
  let currentBytes = 0;
  for (const t of byName) {
    if (current.length > 0 && currentBytes + byteLengthOf(t) > maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(t);
    currentBytes += byteLengthOf(t);
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);

  if (shards.length === 1)
    return { metadata, files: [{ name: SINGLE_FILE, tensors: shards[0]! }], index: null };
  const files = shards.map((shard, i) => ({ name: shardFileName(i + 1, shards.length), tensors: shard }));
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (const f of files)
    for (const t of f.tensors) {
      weightMap[t.name] = f.name;
      totalSize += byteLengthOf(t);
    }
  // Same layout as transformers' save_pretrained: indent 2, keys sorted, trailing newline.
  const index = { metadata: { total_size: totalSize }, weight_map: sortedObject(weightMap) };
  return { metadata, files, index: JSON.stringify(index, null, 2) + "\n" };
}

/** After the weight files: the index (when sharded), and weight files of an earlier layout removed. */
function finishModelWeights(dir: string, plan: WeightsPlan): string[] {
  const written = plan.files.map((f) => f.name);
  if (plan.index !== null) {
    writeFileAtomic(path.join(dir, INDEX_FILE), plan.index);
    written.push(INDEX_FILE);
  }
  for (const entry of fs.readdirSync(dir)) {
    const isWeightFile = entry === SINGLE_FILE || entry === INDEX_FILE || SHARD_NAME.test(entry);
    if (isWeightFile && !written.includes(entry)) fs.rmSync(path.join(dir, entry), { force: true });
  }
  return written;
}

function sortedObject(o: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(o).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) out[k] = o[k]!;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Model folders

const PICKLE_EXTENSIONS = [".bin", ".pt", ".pth", ".ckpt", ".pkl"];

function pickleRefusal(dir: string, found: string[]): InputError {
  return new InputError(
    `${dir}: only pickle checkpoints found (${found.join(", ")}). They are refused because loading a pickle ` +
      `can run arbitrary code. Convert the folder to safetensors once, in Python:\n` +
      `  from transformers import AutoModelForCausalLM\n` +
      `  model = AutoModelForCausalLM.from_pretrained("${dir}", torch_dtype="auto")\n` +
      `  model.save_pretrained("${dir}", safe_serialization=True)\n` +
      `(or, for a bare state dict: safetensors.torch.save_file(torch.load(f, weights_only=True), "model.safetensors"))`,
  );
}

/** A shard path from an index must name a regular file inside `dir` as written (no absolute path, no '..'). */
function resolveShard(dir: string, indexFile: string, shard: string): string {
  const refuse = (why: string): InputError => new InputError(`${indexFile}: shard path "${shard}" ${why}`);
  if (shard.length === 0) throw refuse("is empty");
  if (shard.includes("\0")) throw refuse("contains a NUL byte");
  if (path.isAbsolute(shard) || path.win32.isAbsolute(shard))
    throw refuse("is absolute; it must be relative to the model folder");
  if (shard.split(/[\\/]/).some((part) => part === ".."))
    throw refuse("contains '..'; it must stay inside the model folder");
  // The index's path stays inside the folder as written; a symlink there may lead anywhere, as transformers follows
  // it (utils/hub.py get_checkpoint_shard_files joins folder and name): the Hugging Face cache links every file of
  // snapshots/<rev>/ to ../../blobs/<sha256>, outside the folder a user names.
  const full = path.resolve(dir, shard);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(full);
  } catch {
    throw refuse(`does not exist (looked for ${full})`);
  }
  if (!stat.isFile()) throw refuse("is not a regular file");
  return full;
}

/**
 * The weights of a Hugging Face model folder: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json`. Pickle checkpoints (`*.bin`, `*.pt`) are refused with a conversion recipe.
 */
export function openModelWeights(dir: string): ModelWeights {
  return openWeightsWith(dir, readSafetensors);
}

/**
 * A model folder's weights checked as openModelWeights opens them (the index, every shard it names, each file's
 * header against its size: a truncated file is found here) without reading or mapping any tensor's data, so
 * without the addon: a plan checks every model before its first cell. Throws openModelWeights's InputError naming
 * the file; returns the weight files.
 */
export function checkModelWeights(dir: string): string[] {
  return openModelWeightHeaders(dir).files;
}

/**
 * openModelWeights's checks and tensor records (names, dtypes, shapes) from the headers alone: every record's data
 * is empty. What a model folder is checked against its config.json with before its weights are mapped (mapping
 * loads the libtorch addon: io/model-folder.ts checkWeightHeaders).
 */
export function openModelWeightHeaders(dir: string): ModelWeights {
  return openWeightsWith(dir, readSafetensorsHeader);
}

/**
 * A safetensors file's header, checked against the file's size; its tensors' data are empty (never read), so the
 * libtorch addon is not loaded: what a command checks before its work begins.
 */
export function readSafetensorsHeader(file: string): SafetensorsFile {
  try {
    const stat = fs.statSync(file);
    // a FIFO would block the header's read
    if (!stat.isFile()) throw new InputError(`${file}: cannot read safetensors file (not a regular file)`);
    const bytes = largeFile(file, stat.size);
    return parseSafetensorsBytes({ ...bytes, views: (ranges) => ranges.map(() => Buffer.alloc(0)) }, file);
  } catch (e) {
    if (e instanceof GoodVibeError) throw e;
    throw new InputError(`${file}: cannot read safetensors file (${(e as Error).message})`, { cause: e });
  }
}

function openWeightsWith(dir: string, readFile: (file: string) => SafetensorsFile): ModelWeights {
  const stamps: FileStamp[] = [];
  const read = (file: string): SafetensorsFile => {
    const s = fileStamp(file);
    if (s) stamps.push(s);
    return readFile(file);
  };
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch (e) {
    throw new InputError(`${dir}: cannot read model folder (${(e as Error).message})`, { cause: e });
  }
  if (entries.includes(SINGLE_FILE)) {
    const file = path.join(dir, SINGLE_FILE);
    const st = read(file);
    return { dir, tensors: st.tensors, files: [file], stamps };
  }
  if (entries.includes(INDEX_FILE))
    return { ...openShardedWeights(dir, path.join(dir, INDEX_FILE), read), stamps };

  const pickles = entries.filter((e) => PICKLE_EXTENSIONS.some((ext) => e.endsWith(ext))).sort();
  if (pickles.length > 0) throw pickleRefusal(dir, pickles);
  throw new InputError(`${dir}: no model weights found (expected ${SINGLE_FILE} or ${INDEX_FILE})`);
}

function openShardedWeights(
  dir: string,
  indexFile: string,
  read: (file: string) => SafetensorsFile,
): Omit<ModelWeights, "stamps"> {
  let index: unknown;
  try {
    index = JSON.parse(fs.readFileSync(indexFile, "utf8"));
  } catch (e) {
    throw new InputError(`${indexFile}: cannot read the shard index (${(e as Error).message})`, { cause: e });
  }
  refuseForbiddenKeys(index, indexFile);
  if (!isPlainObject(index) || !isPlainObject(index.weight_map)) {
    throw new InputError(
      `${indexFile}: "weight_map" is missing or is not an object of tensor name -> shard file`,
    );
  }
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (typeof shard !== "string")
      throw new InputError(`${indexFile}: weight_map["${name}"] is not a file name`);
    let names = byShard.get(shard);
    if (!names) byShard.set(shard, (names = []));
    names.push(name);
  }
  if (byShard.size === 0) throw new InputError(`${indexFile}: weight_map is empty`);

  const tensors = new Map<string, TensorRecord>();
  const files: string[] = [];
  for (const [shard, listed] of [...byShard].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const file = resolveShard(dir, indexFile, shard);
    const st = read(file);
    files.push(file);
    for (const name of listed) {
      if (!st.tensors.has(name))
        throw new InputError(
          `${indexFile}: tensor "${name}" is listed in ${shard} but that file does not hold it`,
        );
    }
    for (const [name, t] of st.tensors) {
      const other = tensors.get(name);
      if (other)
        throw new InputError(`${dir}: tensor "${name}" is stored twice, in ${other.file} and ${file}`);
      if (index.weight_map[name] !== shard) {
        throw new InputError(
          `${indexFile}: ${shard} holds tensor "${name}", which weight_map does not assign to it`,
        );
      }
      tensors.set(name, t);
    }
  }
  return { dir, tensors, files };
}

/**
 * Throws an InputError when a weight file of `weights` was written in place since it was opened: its tensors are
 * views of the file (mapped), so what was read from them may mix the old bytes and the new. Called before an output
 * made from them is published (`doing` says what: "the GGUF export"), so that such an output is never published.
 */
export function weightsUnchanged(weights: ModelWeights, doing: string): void {
  const changed = writtenInPlace(weights.stamps);
  if (changed.length === 0) return;
  throw new InputError(
    `${changed.join(", ")}: written in place by another program while ${doing} read it; what was read may mix ` +
      `the old bytes and the new, so nothing was published. Rerun once nothing writes into ${weights.dir}`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Values

/**
 * First index whose masked bits are all set (exponent all ones: NaN or ±inf), or -1. Monomorphic loops over
 * Int32Array (Uint32 values above 2^31 would leave V8's small-integer fast path).
 */
function firstAllOnes32(a: Int32Array, mask: number): number {
  for (let i = 0; i < a.length; i++) if ((a[i]! & mask) === mask) return i;
  return -1;
}

/** The same for 16-bit floats read two at a time (little-endian: element 2i is the low half). */
function firstAllOnesPairs(a: Int32Array, mask16: number): number {
  const lo = mask16;
  const hi = mask16 << 16; // 0x7f800000 or 0x7c000000: positive as an int32
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    if ((x & lo) === lo) return 2 * i;
    if ((x & hi) === hi) return 2 * i + 1;
  }
  return -1;
}

function firstAllOnes16(a: Uint16Array, mask: number): number {
  for (let i = 0; i < a.length; i++) if ((a[i]! & mask) === mask) return i;
  return -1;
}

/** Bytes as an aligned typed array: a view when the data are aligned, else a copy. */
function aligned<T>(d: Uint8Array, size: number, make: (b: ArrayBuffer, off: number, n: number) => T): T {
  const n = Math.floor(d.byteLength / size);
  if (d.byteOffset % size === 0) return make(d.buffer as ArrayBuffer, d.byteOffset, n);
  return make(new Uint8Array(d.subarray(0, n * size)).buffer, 0, n); // a copy (Buffer#slice would be a view)
}

/**
 * Index of the first NaN or ±Infinity among a float tensor's elements, or -1 (also for integer dtypes).
 * Reads the raw bits (exponent all ones) of the mapped bytes, converting nothing: about a second per GB.
 */
export function firstNonFinite(rec: Pick<TensorRecord, "dtype" | "data">): number {
  const d = rec.data;
  switch (rec.dtype) {
    case "F32":
      return firstAllOnes32(
        aligned(d, 4, (b, o, n) => new Int32Array(b, o, n)),
        0x7f800000,
      );
    case "BF16":
    case "F16": {
      const mask = rec.dtype === "BF16" ? 0x7f80 : 0x7c00;
      const n = d.byteLength / 2;
      if (n % 2 === 0 && d.byteOffset % 4 === 0)
        return firstAllOnesPairs(
          aligned(d, 4, (b, o, m) => new Int32Array(b, o, m)),
          mask,
        );
      return firstAllOnes16(
        aligned(d, 2, (b, o, m) => new Uint16Array(b, o, m)),
        mask,
      );
    }
    case "F64": {
      const a = aligned(d, 8, (b, o, n) => new Float64Array(b, o, n));
      for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return i;
      return -1;
    }
    default:
      return -1;
  }
}
