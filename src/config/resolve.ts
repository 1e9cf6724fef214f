/**
 * The one place where configuration is merged: schema defaults ← config file (YAML) ← explicit flags ← --set
 * overrides, then validated by the stage's zod schema (unknown keys refused, each named). The CLI, the
 * experiment runner and library callers all resolve through here.
 */
import * as fs from "node:fs";
import YAML from "yaml";
import type { z } from "zod";
import { InputError } from "../errors.js";
import { refuseForbiddenKeys } from "../util/keys.js";
import { parseOverride, setPath } from "../util/overrides.js";
import { issueLines } from "../util/suggest.js";

/** The largest config file read (experiment files with many cells are tens of KiB). */
const MAX_CONFIG_BYTES = 16 * 2 ** 20;

/**
 * A YAML config file as a plain mapping ({} without a file); prototype-polluting keys refused. `what` names
 * the kind of file in errors ("config file", "experiment file").
 */
export function loadConfigFile(file: string | undefined, what = "config file"): Record<string, unknown> {
  if (!file) return {};
  let text: string;
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (e) {
    throw new InputError(`cannot read ${what} ${file}: ${(e as Error).message}`, { cause: e });
  }
  // a config is a few KiB: a data file given by mistake (100 MB) took 3.3 GB and 18 s before its first unknown key.
  // Read once, at start-up (Ctrl-C's default action still ends a wait): `-c <(…)` is a pipe, and welcome
  if (size > MAX_CONFIG_BYTES)
    throw new InputError(
      `${file}: ${(size / 2 ** 20).toFixed(0)} MiB is too large for a ${what} (at most ${MAX_CONFIG_BYTES / 2 ** 20} MiB): is it a data file?`,
    );
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new InputError(`cannot read ${what} ${file}: ${(e as Error).message}`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = YAML.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid YAML: ${(e as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed))
    throw new InputError(`${file}: the top level must be a mapping`);
  refuseForbiddenKeys(parsed, file);
  return parsed as Record<string, unknown>;
}

/**
 * Validate a merged mapping; the error names every offending key (`where` prefixes the message): one per line,
 * or "inline" the first five on one line (an experiment file names many cells).
 */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  merged: unknown,
  where: string,
  style: "lines" | "inline" = "lines",
): z.infer<S> {
  // the input in each issue: a misspelt option is named with the nearest one (util/suggest.ts)
  const r = schema.safeParse(merged, { reportInput: true });
  if (!r.success) {
    const msgs = issueLines(schema, r.error.issues);
    throw new InputError(
      style === "lines"
        ? `${where}:\n${msgs.map((m) => `  ${m}`).join("\n")}`
        : `${where}: ${msgs.slice(0, 5).join("; ")}`,
    );
  }
  return r.data;
}

/**
 * Lay explicit flags (dotted keys; undefined = not given) and then `--set key=value` overrides (values parsed
 * as YAML) over a file's mapping, in place: the precedence every command and the experiment runner share.
 */
export function applyOverrides(
  merged: Record<string, unknown>,
  flags: Record<string, unknown>,
  sets: readonly string[] = [],
): Record<string, unknown> {
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) setPath(merged, k, v);
  for (const s of sets) setPath(merged, ...parseOverride(s));
  return merged;
}

/**
 * Merge: schema defaults ← config file ← explicit flags (dotted keys; undefined = not given) ← --set
 * overrides; then validate.
 */
export function resolveConfig<S extends z.ZodType>(
  schema: S,
  file: string | undefined,
  flags: Record<string, unknown>,
  sets: readonly string[] = [],
): z.infer<S> {
  const merged = applyOverrides(loadConfigFile(file), flags, sets);
  // name every source a bad key may have come from: a key given by --set is not in the file
  const sources = [...(file ? [file] : []), ...sets.map((s) => `--set ${s}`)];
  return parseConfig(
    schema,
    merged,
    `invalid configuration${sources.length ? ` (${sources.join(", ")})` : ""}`,
  );
}
