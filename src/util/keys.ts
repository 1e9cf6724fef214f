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
 * key in FORBIDDEN_KEYS. Iterative, so deeply nested input cannot overflow the stack; depth-first with one
 * shared path (each entry records its depth and key), so the walk stays linear in the input however deep it
 * nests (a copied path per value made 20,000 nested arrays take 16 s).
 */
export function refuseForbiddenKeys(value: unknown, where: string, opts: KeyWalkOptions = {}): void {
  // path[0..depth) is the key path of the value being visited: every entry popped between a parent and one of
  // its children is a descendant of that parent, so it rewrites only positions at or past the child's.
  const path: (string | number)[] = [];
  const stack: { v: unknown; depth: number; key: string | number }[] = [{ v: value, depth: 0, key: "" }];
  while (stack.length > 0) {
    const { v, depth, key } = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    path.length = Math.max(0, depth - 1);
    if (depth > 0) path.push(key);
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--)
        if (typeof v[i] === "object" && v[i] !== null) stack.push({ v: v[i], depth: depth + 1, key: i });
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
      if (typeof child === "object" && child !== null) stack.push({ v: child, depth: depth + 1, key: k });
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
