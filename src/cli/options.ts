/**
 * How the CLI's options read and show their values: typed parsers whose errors name the flag and the type it
 * expects (commander prefixes "option '--x <n>' argument 'abc' is invalid."), defaults shown in every --help
 * from the place they live, and usage errors (unknown flag or command, bad value) that exit 2 like any bad input,
 * as JSON under --json.
 */
import { CommanderError, InvalidArgumentError, type Command, type Option } from "commander";
import { EXIT } from "./common.js";
import { GoodVibeError } from "../errors.js";

// ---------------------------------------------------------------- value parsers
/** A whole number ≥ min ("1e3" and "2.5" are refused: counts are typed as written). */
export function integer(min = 0, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^[+-]?\d+$/.test(v.trim()) || !Number.isSafeInteger(n))
      throw new InvalidArgumentError(`Expected a whole number${range(min, max)}.`);
    if (n < min || n > max) throw new InvalidArgumentError(`Expected a whole number${range(min, max)}.`);
    return n;
  };
}

/**
 * A library parser (one that throws InputError, e.g. util/shard.ts parseShard) as an option's: its error becomes
 * commander's, so a bad value is a usage error naming the flag, not an exception out of the parse.
 */
export function fromLibrary<T>(parse: (v: string) => T): (v: string) => T {
  return (v) => {
    try {
      return parse(v);
    } catch (e) {
      if (e instanceof GoodVibeError) throw new InvalidArgumentError(e.message);
      throw e;
    }
  };
}

/** A finite number within [min, max]; `above` makes the lower bound exclusive. */
export function number(opts: { min?: number; max?: number; above?: number } = {}): (v: string) => number {
  const want = () => {
    const parts: string[] = [];
    if (opts.above !== undefined) parts.push(`> ${opts.above}`);
    if (opts.min !== undefined) parts.push(`≥ ${opts.min}`);
    if (opts.max !== undefined) parts.push(`≤ ${opts.max}`);
    return `Expected a number${parts.length ? " " + parts.join(" and ") : ""} (e.g. 0.5 or 1e-4).`;
  };
  return (v) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(want());
    if (opts.above !== undefined && !(n > opts.above)) throw new InvalidArgumentError(want());
    if (opts.min !== undefined && n < opts.min) throw new InvalidArgumentError(want());
    if (opts.max !== undefined && n > opts.max) throw new InvalidArgumentError(want());
    return n;
  };
}

function range(min: number, max: number): string {
  if (max !== Number.MAX_SAFE_INTEGER) return ` from ${min} to ${max}`;
  return min === 0 ? " (0 or more)" : ` ≥ ${min}`;
}

/** A JSON object (e.g. a request body's extra fields); anything else, or JSON that does not parse, is refused. */
export function jsonObject(v: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (e) {
    throw new InvalidArgumentError(
      `Expected a JSON object, e.g. '{"reasoning_effort": "none"}' (${(e as Error).message}).`,
    );
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
    throw new InvalidArgumentError(
      `Expected a JSON object, e.g. '{"reasoning_effort": "none"}', not ${parsed === null ? "null" : Array.isArray(parsed) ? "an array" : typeof parsed}.`,
    );
  return parsed as Record<string, unknown>;
}

/** Comma-separated values, blanks dropped. */
/** The cache folder of `eval --cache` and `judge check --cache`, relative to the working folder. */
export const DEFAULT_CACHE_DIR = ".goodvibe-cache";

export const list = (v: string): string[] =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** A repeatable option's values in order. */
export const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

// ---------------------------------------------------------------- defaults in --help
const SHOWN_DEFAULT = Symbol("shownDefault");
type WithShownDefault = Option & { [SHOWN_DEFAULT]?: string };

/**
 * Show `value` as the option's default in --help without making commander apply it: for options whose real
 * default comes later (from a config schema, after the config file), where a commander default would override
 * the file.
 */
export function shownDefault<O extends Option>(option: O, value: unknown): O {
  (option as WithShownDefault)[SHOWN_DEFAULT] = formatDefault(value);
  return option;
}

function formatDefault(v: unknown): string | undefined {
  if (v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) return undefined;
  if (Array.isArray(v)) return v.join(",");
  return String(v);
}

/** commander's option description, with defaults written plainly and none shown where there is none. */
function describeOption(option: Option): string {
  const extra: string[] = [];
  if (option.mandatory) extra.push("required");
  if (option.argChoices) extra.push(`one of: ${option.argChoices.join(", ")}`);
  const shown = (option as WithShownDefault)[SHOWN_DEFAULT];
  // flags that take a value show their default; a plain switch's implied false is no information
  const d = shown ?? (option.required || option.optional ? formatDefault(option.defaultValue) : undefined);
  if (d !== undefined) extra.push(`default: ${option.defaultValueDescription ?? d}`);
  if (option.envVar !== undefined) extra.push(`env: ${option.envVar}`);
  return extra.length ? `${option.description} (${extra.join("; ")})` : option.description;
}

// ---------------------------------------------------------------- usage errors
/** Whether --json is among the arguments (before any "--"): decided before commander has parsed them. */
export function jsonRequested(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

/**
 * Configure the program (call before registering commands: subcommands inherit it): usage errors become
 * CommanderErrors that `parseCli` maps to exit 2, plain text on stderr with a hint to --help, or a JSON error
 * on stdout under --json.
 */
export function configureUsage(program: Command, json: boolean): void {
  program.configureHelp({ optionDescription: describeOption });
  program.exitOverride();
  // under --json the error goes out once, as JSON, from parseCli; no help text around it
  if (json) program.configureOutput({ writeErr: () => {}, outputError: () => {} });
}

/** After all commands are registered: each usage error points at the failing command's own --help. */
export function addHelpHints(cmd: Command, json: boolean, names: string[] = []): void {
  const path = [...names, cmd.name()];
  if (!json) cmd.showHelpAfterError(`(run "${path.join(" ")} --help" for usage and examples)`);
  for (const sub of cmd.commands) addHelpHints(sub, json, path);
}

/** Parse and run; a usage error exits 2 (0 for --help and --version), as JSON on stdout under --json. */
export async function parseCli(program: Command, argv: readonly string[], json: boolean): Promise<void> {
  try {
    await program.parseAsync(argv as string[]);
  } catch (e) {
    // a library error out of an option's parser not wrapped by fromLibrary: said as any bad input is, not a crash
    if (e instanceof GoodVibeError) {
      process.exitCode = e.exitCode;
      process.stderr.write(`error: ${e.message}\n`);
      if (json) process.stdout.write(JSON.stringify({ error: e.message, exitCode: e.exitCode }) + "\n");
      return;
    }
    if (!(e instanceof CommanderError)) throw e;
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0) {
      process.exitCode = EXIT.ok;
      return;
    }
    process.exitCode = EXIT.input;
    const message =
      e.code === "commander.help"
        ? "a command is required (run with --help to list them)"
        : e.message.replace(/^error: /, "");
    if (json) {
      process.stderr.write(`error: ${message}\n`);
      process.stdout.write(JSON.stringify({ error: message, exitCode: EXIT.input, code: e.code }) + "\n");
    }
  }
}
