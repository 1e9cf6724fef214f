/**
 * Errors the user can act on. Every message names the file, row or field and what is wrong;
 * the CLI maps `exitCode` to the process exit status (2 = bad input, 3 = resource, 1 = internal,
 * 130 = interrupted).
 */
export class GoodVibeError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "GoodVibeError";
    this.exitCode = exitCode;
  }
}

/** Bad user input: a file, a row, a field. */
export class InputError extends GoodVibeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 2, options);
    this.name = "InputError";
  }
}

/** Not enough memory or disk, or another resource the machine lacks. */
export class ResourceError extends GoodVibeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 3, options);
    this.name = "ResourceError";
  }
}

/** A long stage stopped at a checkpoint on request (Ctrl-C, SIGTERM, an aborted signal): exit 130, rerun resumes. */
export class InterruptedError extends GoodVibeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 130, options);
    this.name = "InterruptedError";
  }
}

/**
 * Where a bad row of a dataset or log is, the one format every row reader uses (pairs, labelled code, --code
 * files, the utility benchmarks ARC/GSM8K/MMLU/HumanEval, the evaluation caches), so users and scripts grepping
 * logs see one shape: `data.jsonl row 3`, or `data.jsonl row 3 field "answer"`; the message goes on after ": ".
 * `row` is 1-based. For JSONL (gzipped or not) it is the line number as an editor shows it: blank lines count,
 * and there is no header line to skip. For parquet it is the record's 1-based index.
 */
export function rowWhere(file: string, row: number, field?: string): string {
  return field === undefined ? `${file} row ${row}` : `${file} row ${row} field "${field}"`;
}

/** A short, safe rendering of a bad value for an error message (never throws, even on deep or cyclic values). */
export function preview(value: unknown, max = 80): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = Array.isArray(value)
      ? "[array]"
      : typeof value === "object" && value !== null
        ? "{object}"
        : String(value);
  }
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Node system-error codes for a full disk or quota: the machine's resource, not a bug (exit 3). */
const NO_SPACE = new Set(["ENOSPC", "EDQUOT", "EFBIG"]);
/** Codes for a path the user gave that cannot be written (exit 2). */
const NOT_WRITABLE = new Set(["EACCES", "EROFS"]);

/**
 * Remember which file a system error was about: `fs.writeSync(fd, …)` errors carry no path, so writers
 * call this on the way out and the user's message can name the file. Returns `e`.
 */
export function withPath(e: unknown, file: string): unknown {
  if (e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string") {
    const err = e as NodeJS.ErrnoException;
    if (err.path === undefined) err.path = file;
  }
  return e;
}

/**
 * A system error the user can act on (a full disk, a read-only or forbidden output path) as a GoodVibeError
 * that names the path; null for every other error (those stay internal errors, with their stack).
 */
export function fromSystemError(e: unknown): GoodVibeError | null {
  if (!(e instanceof Error)) return null;
  const err = e as NodeJS.ErrnoException;
  const code = err.code;
  if (typeof code !== "string") return null;
  const where = err.path ? ` (${err.syscall ? `${err.syscall} ` : ""}${err.path})` : "";
  if (NO_SPACE.has(code))
    return new ResourceError(
      `no space left on the device${where}: ${code}; free some space or write somewhere else, then rerun`,
      { cause: e },
    );
  if (NOT_WRITABLE.has(code))
    return new InputError(
      `${code === "EROFS" ? "read-only file system" : "permission denied"}${where}: choose a writable location`,
      { cause: e },
    );
  return null;
}

/**
 * Training diverged: a non-finite loss, gradient or weight. The settings (the learning rate) or the data are
 * at fault, so it is bad input (exit 2); nothing diverged is written.
 */
export class DivergenceError extends GoodVibeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 2, options);
    this.name = "DivergenceError";
  }
}
