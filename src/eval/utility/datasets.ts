/**
 * Loaders for the utility benchmarks, in their Hugging Face schemas, from JSONL, gzipped JSONL or Parquet:
 *   allenai/ai2_arc   {id, question, choices: {text[], label[]}, answerKey}
 *   openai/gsm8k      {question, answer}            (final answer after "#### ")
 *   cais/mmlu         {question, subject, choices: [4], answer: 0-3}
 *   openai_humaneval  {task_id, prompt, canonical_solution, test, entry_point}
 * Every error names the file, the row (1-based, as an editor shows it for JSONL) and the field.
 */
import * as fs from "node:fs";
import { Worker } from "node:worker_threads";
import { InputError, preview, rowWhere } from "../../errors.js";
import { MAX_DATASET_BYTES_ENV, MAX_ROW_BYTES_ENV, jsonlLimits, readJsonl } from "../../data/jsonl.js";
import { formatBytes } from "../../util/memory.js";
import { refuseForbiddenKeys } from "../../util/keys.js";
import { createRng } from "../../util/random.js";

export interface ArcItem {
  id: string;
  question: string;
  choices: { text: string[]; label: string[] };
  answerKey: string;
  /** Index of answerKey in choices.label. */
  gold: number;
}

export interface Gsm8kItem {
  question: string;
  /** Full worked solution, ending in "#### N". */
  answer: string;
  /** The text after the last "#### ", trimmed. */
  finalAnswer: string;
  /**
   * The item's 0-based place in its file (set by loadGsm8k, kept through a subsample): the harness draws a test
   * question's few-shot examples by it (gsm8k.ts)
   */
  index?: number;
}

export interface MmluItem {
  question: string;
  subject: string;
  choices: [string, string, string, string];
  /** 0..3 */
  answer: number;
}

export interface HumanEvalItem {
  task_id: string;
  prompt: string;
  canonical_solution: string;
  test: string;
  entry_point: string;
}

type Row = Record<string, unknown>;

/**
 * The Parquet decoder's worker left from the last clean read, for the next one: starting a worker (a new V8 isolate
 * that loads hyparquet) costs ~150 ms of CPU, more than decoding a small file. Unref'd while idle, so it never keeps
 * the process alive. A worker that failed, timed out or crashed is terminated, never kept.
 */
let idleWorker: Worker | null = null;
let workersStarted = 0;

/** How many Parquet decoder workers this process has started (one is reused from read to read while reads succeed). */
export function parquetWorkersStarted(): number {
  return workersStarted;
}

/** Parquet decoding in a worker with a time limit: a corrupt file gives an InputError, never a hang or a crash. */
function readParquetInWorker(file: string, timeoutMs = 15_000): Promise<Row[]> {
  return new Promise((resolve, reject) => {
    let worker = idleWorker;
    idleWorker = null;
    if (worker) worker.ref();
    else {
      // not the process's own flags: a worker given `--input-type=module -e <script>` (a script run with node -e)
      // refuses to start, and every read would fail
      worker = new Worker(new URL("./parquet-worker.js", import.meta.url), { execArgv: [] });
      workersStarted++;
    }
    const w = worker;
    let settled = false;
    const finish = (fn: () => void, keep = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      w.off("message", onMessage);
      w.off("error", onError);
      w.off("exit", onExit);
      // a clean read leaves the worker as fresh as it found it; one idle worker is enough (a second, from
      // reads at the same time, ends)
      if (keep && idleWorker === null) {
        w.unref();
        idleWorker = w;
      } else void w.terminate();
      fn();
    };
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(
            new InputError(
              `${file}: Parquet decoding did not finish in ${timeoutMs / 1000} s (corrupt file?)`,
            ),
          ),
        ),
      timeoutMs,
    );
    const onMessage = (m: { rows?: Row[]; error?: string }) =>
      finish(
        () =>
          m.rows
            ? resolve(m.rows)
            : reject(new InputError(`${file}: not a readable Parquet file (${m.error ?? "unknown error"})`)),
        m.rows !== undefined,
      );
    const onError = (e: Error) =>
      finish(() =>
        reject(new InputError(`${file}: not a readable Parquet file (${e.message})`, { cause: e })),
      );
    const onExit = (code: number) =>
      finish(() => reject(new InputError(`${file}: Parquet decoder stopped (exit ${code})`)));
    w.on("message", onMessage);
    w.on("error", onError);
    w.on("exit", onExit);
    w.postMessage({ file });
  });
}

/** Read the raw rows of a .jsonl, .jsonl.gz / .json.gz, or .parquet file. */
export async function readRows(file: string): Promise<Row[]> {
  if (!fs.existsSync(file)) throw new InputError(`${file}: file not found`);
  if (file.endsWith(".parquet")) {
    const limits = jsonlLimits();
    if (fs.statSync(file).size > limits.maxDatasetBytes)
      throw new InputError(
        `${file}: the dataset is larger than ${formatBytes(limits.maxDatasetBytes)} (the dataset limit; raise it with ${MAX_DATASET_BYTES_ENV}=<bytes>)`,
      );
    const rows = await readParquetInWorker(file);
    return rows.map((r, i) => normaliseBigInts(r, i, file, limits.maxRowBytes));
  }
  const rows: Row[] = [];
  await readJsonl(file, (r) => rows.push({ ...r.value, __row: r.row }));
  return rows;
}

/** Parquet INT64 columns come back as bigint; the schemas here only hold small integers. */
function normaliseBigInts(row: Row, index: number, file: string, maxRowBytes: number): Row {
  refuseForbiddenKeys(row, rowWhere(file, index + 1));
  const out: Row = { __row: index + 1 };
  let chars = 0;
  for (const [k, v] of Object.entries(row)) {
    out[k] = typeof v === "bigint" ? Number(v) : v;
    chars +=
      typeof v === "string"
        ? v.length
        : (JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? String(x) : x))?.length ?? 0);
  }
  // the JSONL row bound, counted in characters here
  if (chars > maxRowBytes)
    throw new InputError(
      `${rowWhere(file, index + 1)}: the row is larger than ${formatBytes(maxRowBytes)} (the row limit; raise it with ${MAX_ROW_BYTES_ENV}=<bytes> if such rows are intended)`,
    );
  return out;
}

/** A row's place in messages (errors.ts rowWhere): `arc.jsonl row 2 field "answerKey"`. */
function where(file: string, row: Row, field?: string): string {
  return rowWhere(file, row.__row as number, field);
}

function str(file: string, row: Row, field: string, path: string = field): string {
  const v = row[field];
  if (typeof v !== "string") {
    throw new InputError(`${where(file, row, path)}: must be a string, got ${describe(v)}`);
  }
  return v;
}

function strArray(file: string, row: Row, v: unknown, path: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    throw new InputError(`${where(file, row, path)}: must be an array of strings, got ${describe(v)}`);
  }
  return v as string[];
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing (missing)";
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return typeof v;
}

export interface LoadOptions {
  /** Keep at most this many items (after seeded subsampling when `seed` is given, else the first ones). */
  limit?: number;
  seed?: number;
}

function applyLimit<T>(items: T[], opts: LoadOptions): T[] {
  if (opts.limit === undefined) return items;
  return opts.seed === undefined
    ? items.slice(0, opts.limit)
    : subsample(items, { limit: opts.limit, seed: opts.seed });
}

export async function loadArc(file: string, opts: LoadOptions = {}): Promise<ArcItem[]> {
  const rows = await readRows(file);
  const items = rows.map((row): ArcItem => {
    const choices = row.choices as Row | undefined;
    if (choices === null || typeof choices !== "object" || Array.isArray(choices)) {
      throw new InputError(
        `${where(file, row, "choices")}: must be an object {text, label}, got ${describe(choices)}`,
      );
    }
    const text = strArray(file, row, choices.text, "choices.text");
    const label = strArray(file, row, choices.label, "choices.label");
    if (text.length !== label.length || text.length === 0) {
      throw new InputError(
        `${where(file, row)}: fields "choices.text" (${text.length}) and "choices.label" (${label.length}) must be non-empty and of equal length`,
      );
    }
    const answerKey = str(file, row, "answerKey");
    const gold = label.indexOf(answerKey);
    if (gold < 0) {
      throw new InputError(
        `${where(file, row, "answerKey")}: "${answerKey}" is not one of the labels ${label.join(",")}`,
      );
    }
    return {
      id: str(file, row, "id"),
      question: str(file, row, "question"),
      choices: { text, label },
      answerKey,
      gold,
    };
  });
  return applyLimit(items, opts);
}

export async function loadGsm8k(file: string, opts: LoadOptions = {}): Promise<Gsm8kItem[]> {
  const rows = await readRows(file);
  const items = rows.map((row, index): Gsm8kItem => {
    const answer = str(file, row, "answer");
    const at = answer.lastIndexOf("#### ");
    if (at < 0) throw new InputError(`${where(file, row, "answer")}: no final answer after "#### "`);
    return { question: str(file, row, "question"), answer, finalAnswer: answer.slice(at + 5).trim(), index };
  });
  return applyLimit(items, opts);
}

export async function loadMmlu(file: string, opts: LoadOptions = {}): Promise<MmluItem[]> {
  const rows = await readRows(file);
  const items = rows.map((row): MmluItem => {
    const choices = strArray(file, row, row.choices, "choices");
    if (choices.length !== 4) {
      throw new InputError(`${where(file, row, "choices")}: must hold 4 strings, got ${choices.length}`);
    }
    const answer = row.answer;
    if (typeof answer !== "number" || !Number.isInteger(answer) || answer < 0 || answer > 3) {
      throw new InputError(`${where(file, row, "answer")}: must be an integer 0-3, got ${preview(answer)}`);
    }
    return {
      question: str(file, row, "question"),
      subject: str(file, row, "subject"),
      choices: choices as [string, string, string, string],
      answer,
    };
  });
  return applyLimit(items, opts);
}

export async function loadHumanEval(file: string, opts: LoadOptions = {}): Promise<HumanEvalItem[]> {
  const rows = await readRows(file);
  const items = rows.map((row): HumanEvalItem => ({
    task_id: str(file, row, "task_id"),
    prompt: str(file, row, "prompt"),
    canonical_solution: str(file, row, "canonical_solution"),
    test: str(file, row, "test"),
    entry_point: str(file, row, "entry_point"),
  }));
  return applyLimit(items, opts);
}

/**
 * A seeded subsample of `limit` items, kept in their original order (so a smaller limit with the same
 * seed is not a prefix of a larger one, but every run with the same seed and limit picks the same items).
 */
export function subsample<T>(items: readonly T[], opts: { limit: number; seed: number }): T[] {
  if (!Number.isInteger(opts.limit) || opts.limit < 0)
    throw new InputError(`--limit must be a non-negative integer, got ${opts.limit}`);
  if (opts.limit >= items.length) return items.slice();
  const rng = createRng(opts.seed);
  // Partial Fisher-Yates over the indices: the first `limit` slots are a uniform sample.
  const idx = items.map((_, i) => i);
  for (let i = 0; i < opts.limit; i++) {
    const j = i + rng.int(idx.length - i);
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx
    .slice(0, opts.limit)
    .sort((a, b) => a - b)
    .map((i) => items[i]!);
}
