/** Dotted-key overrides (`train.lr=2e-4`) shared by the CLI's config files and the experiment files. */
import YAML from "yaml";
import { InputError } from "../errors.js";
import { isForbiddenKey, refuseForbiddenKeys } from "./keys.js";

/** The parts of a dotted key, refused when one is empty or could reach a prototype (`__proto__.x`). */
export function splitKey(dotted: string): string[] {
  const keys = dotted.split(".");
  for (const k of keys) {
    if (k.trim() === "") throw new InputError(`key "${dotted}" has an empty part (write a.b.c)`);
    if (isForbiddenKey(k))
      throw new InputError(`key "${dotted}": "${k}" is not a setting and is not allowed`);
  }
  return keys;
}

/**
 * Set `a.b.c` in a nested object, creating (or replacing non-object) parents on the way. Only own
 * properties are followed, and prototype-reaching keys are refused, so no key can write outside `obj`.
 */
export function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = splitKey(dotted);
  refuseForbiddenKeys(value, `value of ${dotted}`);
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    const next = Object.hasOwn(cur, k) ? cur[k] : undefined;
    if (typeof next !== "object" || next === null || Array.isArray(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

/**
 * A validation message, with what a null is when it says "received null": an empty value reads as YAML null, so
 * `--set train.lr=` (or `lr:` with nothing after it in a file) gives "expected number, received null", which names
 * a null the user never wrote.
 */
export function explainNull(message: string): string {
  return /received null$/.test(message)
    ? `${message} (an empty value, null or ~, in the file or a --set, reads as null: give a value, or leave the key out for its default)`
    : message;
}

/** `key=value` with the value parsed as YAML (numbers, booleans, lists work: `train.betas=[0.9,0.95]`). */
export function parseOverride(s: string): [string, unknown] {
  const eq = s.indexOf("=");
  if (eq <= 0) throw new InputError(`--set expects key=value, got "${s}"`);
  const key = s.slice(0, eq).trim();
  splitKey(key);
  let value: unknown;
  try {
    value = YAML.parse(s.slice(eq + 1));
  } catch (e) {
    throw new InputError(`--set ${key}: the value is not valid YAML (${(e as Error).message})`, { cause: e });
  }
  refuseForbiddenKeys(value, `--set ${key}`);
  return [key, value];
}
