/**
 * "Did you mean" for unknown settings: a misspelt key in a config file, an experiment file or a --set
 * (`identify.topk`) is named with the nearest known key at the same level (`identify.topK`). No dependency
 * offers this (commander's suggestion helper is internal), so it is a short function here. zod is not imported
 * at run time (the schema is read through its `_zod.def`), so CLI start-up loads nothing more.
 */
import type { z } from "zod";
import { explainNull } from "./overrides.js";

/**
 * Optimal-string-alignment distance (Levenshtein plus swapping two neighbours) between two strings, compared
 * case-insensitively: "topk"/"topK" is 0, "thresold"/"threshold" 1, "kmxa"/"kMax" 1.
 */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  // d[i][j]: distance between s's first i and t's first j characters
  const d: number[][] = Array.from({ length: s.length + 1 }, (_, i) =>
    Array.from({ length: t.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= s.length; i++)
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  return d[s.length]![t.length]!;
}

/**
 * The known key nearest to `key`, or undefined when none is near: a case-insensitive match first, else the
 * smallest edit distance up to a third of the key's length (at least 1, at most 3), so short keys get only
 * one-letter slips and an unrelated key ("bogus") gets no suggestion. Ties go to the first known key.
 */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const exact = known.find((k) => k.toLowerCase() === lower);
  if (exact !== undefined) return exact;
  const limit = Math.min(3, Math.max(1, Math.floor(key.length / 3)));
  let best: string | undefined;
  let bestD = limit + 1;
  for (const k of known) {
    const dist = editDistance(key, k);
    if (dist < bestD) {
      best = k;
      bestD = dist;
    }
  }
  return best;
}

/** The parts of a zod 4 definition this walk reads (the library's own `_zod.def`, untyped here). */
interface Def {
  type: string;
  shape?: Record<string, Schema>;
  innerType?: Schema;
  in?: Schema;
  out?: Schema;
  getter?: () => Schema;
  element?: Schema;
  valueType?: Schema;
  options?: Schema[];
  left?: Schema;
  right?: Schema;
}
interface Schema {
  _zod: { def: Def };
}

/** The schemas `s` stands for once wrappers (default, optional, pipe, lazy…) are taken off; unions spread. */
function unwrap(s: Schema | undefined, out: Schema[] = [], depth = 0): Schema[] {
  if (s === undefined || depth > 32) return out;
  const def = s._zod.def;
  if (def.innerType) unwrap(def.innerType, out, depth + 1);
  else if (def.type === "pipe") {
    unwrap(def.in, out, depth + 1);
    unwrap(def.out, out, depth + 1);
  } else if (def.type === "lazy" && def.getter) unwrap(def.getter(), out, depth + 1);
  else if (def.options) for (const o of def.options) unwrap(o, out, depth + 1);
  else if (def.type === "intersection") {
    unwrap(def.left, out, depth + 1);
    unwrap(def.right, out, depth + 1);
  } else out.push(s);
  return out;
}

/** Every key an object at `path` of `schema` may have ([] when the path leads to no object schema). */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let level = unwrap(schema as unknown as Schema);
  for (const part of path) {
    const next: Schema[] = [];
    for (const s of level) {
      const def = s._zod.def;
      if (def.type === "object" && typeof part === "string" && def.shape && Object.hasOwn(def.shape, part))
        unwrap(def.shape[part], next);
      else if (def.type === "array" && typeof part === "number") unwrap(def.element, next);
      else if (def.type === "record") unwrap(def.valueType, next);
    }
    level = next;
  }
  const keys = new Set<string>();
  for (const s of level)
    if (s._zod.def.type === "object") for (const k of Object.keys(s._zod.def.shape ?? {})) keys.add(k);
  return [...keys];
}

/** A dotted name for a key path, as the other issues' paths are written: `identify.topK`, `models.0.name`. */
function dotted(path: readonly PropertyKey[]): string {
  return path.map(String).join(".");
}

/**
 * One message per unknown key of an `unrecognized_keys` issue: `unknown key "identify.topk" (did you mean
 * "identify.topK"?)`, the suggestion left out when no known key at that level is near.
 */
export function unknownKeyMessages(
  schema: z.ZodType,
  path: readonly PropertyKey[],
  keys: readonly string[],
): string[] {
  const known = knownKeysAt(schema, path);
  return keys.map((k) => {
    const near = nearestKey(k, known);
    return `unknown key "${dotted([...path, k])}"${near !== undefined ? ` (did you mean "${dotted([...path, near])}"?)` : ""}`;
  });
}

/**
 * The lines a validation error is told in, for config files, --set and experiment files alike: `path: message`
 * per issue (a null explained: explainNull), and one line per unknown key as unknownKeyMessages says it.
 */
export function issueLines(schema: z.ZodType, issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((i) =>
    i.code === "unrecognized_keys"
      ? unknownKeyMessages(schema, i.path, i.keys)
      : // zod's own "Invalid input" only: a union with a message of its own (checkpointing's 'expected true,
        // false or "auto"') says it best
        i.code === "invalid_union" && i.errors.length > 0 && i.message === "Invalid input"
        ? issueLines(schema, unionBranch(i))
        : [`${dotted(i.path) || "(top level)"}: ${valueMessage(i)}`],
  );
}

/**
 * A value not among an enum's options, with the nearest option when the value is a string near one (`methods.1:
 * "goodvibes" is not an option: expected one of "base"|"goodvibe"|"lora"|"full" (did you mean "goodvibe"?)`);
 * the input is there when the schema was run with `reportInput`. Any other issue: its message, a null explained.
 */
function valueMessage(i: z.core.$ZodIssue): string {
  if (i.code !== "invalid_value" || typeof i.input !== "string") return explainNull(i.message);
  const options = i.values.filter((v): v is string => typeof v === "string");
  const near = nearestKey(i.input, options);
  const list = i.values.map((v) => JSON.stringify(v)).join("|");
  return (
    `${JSON.stringify(i.input)} is not an option: expected one of ${list}` +
    (near !== undefined ? ` (did you mean ${JSON.stringify(near)}?)` : "")
  );
}

/**
 * The issues of the union's branch that got furthest, with the union's path in front: zod says only "Invalid
 * input" for a value no branch accepts (`method: Goodvibe` against "one method or a list of them"). A branch that
 * failed on the value's shape alone (an array where a string was given) got nowhere; among the others the one with
 * the deepest issue (the list's second item) says most; ties go to the first branch.
 */
function unionBranch(i: z.core.$ZodIssueInvalidUnion): z.core.$ZodIssue[] {
  const score = (b: readonly z.core.$ZodIssue[]) =>
    b.every((x) => x.code === "invalid_type" && x.path.length === 0)
      ? -1
      : Math.max(0, ...b.map((x) => x.path.length));
  let best = i.errors[0]!;
  for (const b of i.errors.slice(1)) if (score(b) > score(best)) best = b;
  return best.map((x) => ({ ...x, path: [...i.path, ...x.path] }));
}
