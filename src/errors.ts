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
