/**
 * Keys that come from users' files (configs, YAML, --set, JSON rows, safetensors and GGUF headers) and become
 * object keys. `__proto__` assigned through `obj[key] = value` replaces the object's prototype (or, one level
 * down, Object.prototype itself); `constructor` and `prototype` lead there too (`obj.constructor.prototype`).
 * No file this project reads has a reason to use them as keys, so they are refused with the file and the
 * key path, and tables looked up by user strings are read through own properties only.
 */
import { InputError } from "../errors.js";

/** A JSON object: not null, not an array (what a parsed file's objects are checked as before their keys are read). */
export function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

/** True for a forbidden key, also as a part of a dotted key ("constructor.prototype.x" is expanded later). */
export function isForbiddenKey(key: string): boolean {
  return FORBIDDEN_KEYS.has(key) || (key.includes(".") && key.split(".").some((p) => FORBIDDEN_KEYS.has(p)));
}

/** `table[key]` when `key` is the table's own key, else undefined ("toString" is not a dtype). */
export function ownValue<T>(table: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

function keyPath(parts: readonly (string | number)[]): string {
  let s = "";
  for (const p of parts) s += typeof p === "number" ? `[${p}]` : s === "" ? p : `.${p}`;
  return s;
}

export interface KeyWalkOptions {
  /** Objects at these paths may have any keys (e.g. a tokenizer's vocabulary), but their values are checked. */
  skipKeysAt?: (path: readonly (string | number)[]) => boolean;
}

/**
 * Throw an InputError naming `where` and the key's path when any object inside `value`, at any depth, has a
 * key in FORBIDDEN_KEYS. Iterative, so deeply nested input cannot overflow the stack.
 */
export function refuseForbiddenKeys(value: unknown, where: string, opts: KeyWalkOptions = {}): void {
  const stack: { v: unknown; path: (string | number)[] }[] = [{ v: value, path: [] }];
  while (stack.length > 0) {
    const { v, path } = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--)
        if (typeof v[i] === "object" && v[i] !== null) stack.push({ v: v[i], path: [...path, i] });
      continue;
    }
    if (ArrayBuffer.isView(v) || v instanceof Map || v instanceof Set) continue;
    const skip = opts.skipKeysAt?.(path) ?? false;
    for (const k of Object.keys(v)) {
      if (!skip && isForbiddenKey(k)) {
        throw new InputError(
          `${where}: key "${k}" at ${keyPath([...path, k])} is not allowed (${[...FORBIDDEN_KEYS].join(", ")} are refused as keys everywhere)`,
        );
      }
      const child = (v as Record<string, unknown>)[k];
      if (typeof child === "object" && child !== null) stack.push({ v: child, path: [...path, k] });
    }
  }
}

/** JSON.parse, then refuse forbidden keys; a syntax error is an InputError naming `where`. */
export function parseJson(text: string, where: string, opts: KeyWalkOptions = {}): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${where}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  refuseForbiddenKeys(value, where, opts);
  return value;
}
