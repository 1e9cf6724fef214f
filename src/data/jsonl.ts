/**
 * JSON Lines datasets read row by row with bounded memory, for every dataset reader (pairs, labelled code,
 * the utility benchmarks). The file is never held as one string (V8 caps strings at 512 MiB), a row is refused
 * as soon as it grows past the row limit (before it is held whole), and a file or a gzip stream past the
 * dataset limit is refused, so hostile or careless data gives an InputError naming the file and the row,
 * never a heap abort. Rows must be UTF-8 (another encoding is refused naming the row, not read with U+FFFD in
 * place of its bytes), and a file that is one JSON array is named as such. Both limits are settings:
 *   GOODVIBE_MAX_ROW_BYTES      largest row in bytes (default 1 MiB; real rows are at most tens of kB)
 *   GOODVIBE_MAX_DATASET_BYTES  largest dataset file, after gunzip, in bytes (default 1 GiB)
 */
import { isUtf8 } from "node:buffer";
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { InputError, rowWhere } from "../errors.js";
import { refuseForbiddenKeys } from "../util/keys.js";
import { formatBytes } from "../util/memory.js";
import { refusePipe } from "../util/input-file.js";

export const DEFAULT_MAX_ROW_BYTES = 1024 ** 2;
export const DEFAULT_MAX_DATASET_BYTES = 1024 ** 3;
export const MAX_ROW_BYTES_ENV = "GOODVIBE_MAX_ROW_BYTES";
export const MAX_DATASET_BYTES_ENV = "GOODVIBE_MAX_DATASET_BYTES";

function limitFromEnv(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v.trim() === "") return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InputError(`${name}=${JSON.stringify(v)}: expected a positive whole number of bytes`);
  return n;
}

/** How a row is named in messages: `data.jsonl row 3` by default (errors.ts rowWhere, every reader's format). */
export type RowName = (file: string, row: number) => string;
const defaultRowName: RowName = (file, row) => rowWhere(file, row);

export interface JsonlLimits {
  /** Largest row in bytes (its line, without the newline). */
  maxRowBytes: number;
  /** Largest file in bytes (after gunzip). */
  maxDatasetBytes: number;
}

/** The limits in force: GOODVIBE_MAX_ROW_BYTES / GOODVIBE_MAX_DATASET_BYTES or the defaults. */
export function jsonlLimits(): JsonlLimits {
  return {
    maxRowBytes: limitFromEnv(MAX_ROW_BYTES_ENV, DEFAULT_MAX_ROW_BYTES),
    maxDatasetBytes: limitFromEnv(MAX_DATASET_BYTES_ENV, DEFAULT_MAX_DATASET_BYTES),
  };
}

/** One parsed row: a JSON object and its 1-based line number (as an editor shows it). */
export interface JsonRow {
  row: number;
  value: Record<string, unknown>;
}

function tooBigRow(name: string, limit: number): InputError {
  return new InputError(
    `${name}: the row is larger than ${formatBytes(limit)} (the row limit; raise it with ${MAX_ROW_BYTES_ENV}=<bytes> if such rows are intended)`,
  );
}

function tooBigFile(file: string, limit: number, gz: boolean): InputError {
  return new InputError(
    `${file}: the dataset is larger than ${formatBytes(limit)}${gz ? " after decompression" : ""} (the dataset limit; raise it with ${MAX_DATASET_BYTES_ENV}=<bytes>)`,
  );
}

/** Why a row that is not UTF-8 is refused: the text would otherwise be read with U+FFFD in place of its bytes. */
function encodingError(file: string, name: string, row: number, bytes: Buffer): InputError {
  const bom16 =
    row === 1 &&
    bytes.length >= 2 &&
    ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff));
  return new InputError(
    bom16
      ? `${file}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8`
      : `${name}: not valid UTF-8 (is the file in another encoding, such as Latin-1 or UTF-16?); save it as UTF-8`,
  );
}

/**
 * Parse one line: blank → null; otherwise a JSON object without prototype-reaching keys, or an InputError.
 * `first`: no earlier row held anything, so a row that opens a JSON array is a whole-file JSON array.
 */
function parseLine(file: string, name: string, row: number, bytes: Buffer, first: boolean): JsonRow | null {
  // the Hugging Face hub's Parquet export of a dataset starts with "PAR1": named, not taken for a text encoding
  if (row === 1 && bytes.subarray(0, 4).toString("latin1") === "PAR1")
    throw new InputError(
      `${file}: a Parquet file, read here only as JSON Lines (one JSON object per line); convert it, e.g. ` +
        `\`python3 -c "import pandas as p; p.read_parquet('${file}').to_json('rows.jsonl', orient='records', lines=True, force_ascii=False)"\``,
    );
  if (!isUtf8(bytes)) throw encodingError(file, name, row, bytes);
  let text = bytes.toString("utf8");
  if (row === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === "") return null;
  if (first && text.trimStart().startsWith("["))
    throw new InputError(
      `${file}: the file is a JSON array, not JSON Lines (one JSON object per line); ` +
        `convert it, e.g. \`jq -c '.[]' ${file} > rows.jsonl\``,
    );
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    // a pretty-printed object spreads over lines: its first line alone is cut short
    const spread = text.trimStart().startsWith("{") && !text.trimEnd().endsWith("}");
    throw new InputError(
      `${name}: bad JSON (${(e as Error).message})` +
        (spread ? "; a row must hold one whole JSON object on one line (JSON Lines)" : ""),
      { cause: e },
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new InputError(
      `${name}: expected a JSON object, got ${Array.isArray(value) ? "an array" : value === null ? "null" : typeof value}`,
    );
  refuseForbiddenKeys(value, name);
  return { row, value: value as Record<string, unknown> };
}

/** Splits byte chunks into lines; a line is refused once it passes the limit, before it is held whole. */
class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private row = 0;
  private total = 0;
  private rows = 0;

  constructor(
    private readonly file: string,
    private readonly limits: JsonlLimits,
    private readonly gz: boolean,
    private readonly onRow: (r: JsonRow) => void,
    private readonly rowName: RowName,
  ) {}

  /** `chunk` must not be reused by the caller afterwards (its pieces are kept until their line ends). */
  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.total > this.limits.maxDatasetBytes)
      throw tooBigFile(this.file, this.limits.maxDatasetBytes, this.gz);
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      this.partBytes += end - start;
      if (this.partBytes > this.limits.maxRowBytes)
        throw tooBigRow(this.rowName(this.file, this.row + 1), this.limits.maxRowBytes);
      if (end > start) this.parts.push(chunk.subarray(start, end));
      if (nl < 0) return;
      this.flush();
      start = nl + 1;
    }
  }

  end(): number {
    if (this.partBytes > 0) this.flush();
    return this.row;
  }

  private flush(): void {
    this.row++;
    const line = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partBytes);
    this.parts = [];
    this.partBytes = 0;
    const r = parseLine(this.file, this.rowName(this.file, this.row), this.row, line, this.rows === 0);
    if (r) {
      this.rows++;
      this.onRow(r);
    }
  }
}

const CHUNK_BYTES = 1 << 20;

function readError(file: string, e: unknown): InputError {
  const err = e as NodeJS.ErrnoException;
  const why = err.code === "EISDIR" ? "it is a folder, not a file" : (err.message ?? String(e));
  return new InputError(`cannot read ${file}: ${why}`, { cause: e });
}

function isGzip(head: Buffer, n: number): boolean {
  return n >= 2 && head[0] === 0x1f && head[1] === 0x8b; // by content: mirrors are loose with suffixes
}

/**
 * Read a JSONL file row by row (synchronously), calling `onRow` for each non-blank row. A gzip file (by its magic
 * bytes, as readJsonl) is decompressed first, whole: zlib has no synchronous stream, and the dataset limit bounds it.
 */
export function readJsonlSync(
  file: string,
  onRow: (r: JsonRow) => void,
  opts: { limits?: JsonlLimits; rowName?: RowName } = {},
): void {
  const limits = opts.limits ?? jsonlLimits();
  refusePipe(file, "the data file");
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    throw readError(file, e);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw readError(file, Object.assign(new Error("EISDIR"), { code: "EISDIR" }));
    const head = Buffer.alloc(2);
    let gz: boolean;
    try {
      gz = isGzip(head, fs.readSync(fd, head, 0, 2, 0));
    } catch (e) {
      throw readError(file, e);
    }
    if (st.isFile() && st.size > limits.maxDatasetBytes)
      throw tooBigFile(file, limits.maxDatasetBytes, false);
    const splitter = new LineSplitter(file, limits, gz, onRow, opts.rowName ?? defaultRowName);
    if (gz) {
      let plain: Buffer;
      try {
        plain = zlib.gunzipSync(readAllSync(file, fd), { maxOutputLength: limits.maxDatasetBytes + 1 });
      } catch (e) {
        if (e instanceof InputError) throw e;
        if ((e as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE")
          throw tooBigFile(file, limits.maxDatasetBytes, true);
        throw new InputError(`${file}: corrupt gzip data (${(e as Error).message})`, { cause: e });
      }
      for (let at = 0; at < plain.length; at += CHUNK_BYTES)
        splitter.push(plain.subarray(at, at + CHUNK_BYTES));
    } else {
      for (const chunk of chunksSync(file, fd)) splitter.push(chunk);
    }
    splitter.end();
  } finally {
    fs.closeSync(fd);
  }
}

/** The whole of an open file, from its start. */
function readAllSync(file: string, fd: number): Buffer {
  return Buffer.concat([...chunksSync(file, fd)]);
}

/** An open file's bytes from its start, in chunks of at most CHUNK_BYTES (positional reads, as the head's). */
function* chunksSync(file: string, fd: number): Generator<Buffer> {
  for (let pos = 0; ;) {
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, pos);
    } catch (e) {
      throw readError(file, e);
    }
    if (n === 0) return;
    yield buf.subarray(0, n);
    pos += n;
  }
}

/** Read a JSONL file row by row, gunzipping on the fly when it starts with the gzip magic bytes. */
export async function readJsonl(
  file: string,
  onRow: (r: JsonRow) => void,
  opts: { limits?: JsonlLimits; rowName?: RowName } = {},
): Promise<void> {
  const limits = opts.limits ?? jsonlLimits();
  let fh: fs.promises.FileHandle;
  refusePipe(file, "the data file");
  try {
    fh = await fs.promises.open(file, "r");
  } catch (e) {
    throw readError(file, e);
  }
  let gz = false;
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw readError(file, Object.assign(new Error("EISDIR"), { code: "EISDIR" }));
    const magic = Buffer.alloc(2);
    const { bytesRead } = await fh.read(magic, 0, 2, 0);
    gz = isGzip(magic, bytesRead);
    if (!gz && st.isFile() && st.size > limits.maxDatasetBytes)
      throw tooBigFile(file, limits.maxDatasetBytes, false);
  } catch (e) {
    await fh.close();
    throw e;
  }
  const splitter = new LineSplitter(file, limits, gz, onRow, opts.rowName ?? defaultRowName);
  const raw = fh.createReadStream({ start: 0, highWaterMark: CHUNK_BYTES });
  const stream: NodeJS.ReadableStream = gz ? raw.pipe(zlib.createGunzip({ chunkSize: 64 * 1024 })) : raw;
  try {
    for await (const chunk of stream) splitter.push(chunk as Buffer);
  } catch (e) {
    if (e instanceof InputError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? "";
    if (gz && code.startsWith("Z_"))
      throw new InputError(`${file}: corrupt gzip data (${(e as Error).message})`, { cause: e });
    throw readError(file, e);
  } finally {
    raw.destroy();
    if (gz) (stream as zlib.Gunzip).destroy();
    await fh.close().catch(() => undefined);
  }
  splitter.end();
}
