/**
 * The benchmarks' command lines: node's parseArgs, with `--help` (or `-h`) printing the benchmark's usage (the
 * comment at the top of its file, which says how to run it) and a mistyped option answered in one line naming it,
 * then that usage, with exit status 2, instead of parseArgs' stack trace. Positional arguments are parseArgs' own
 * (`allowPositionals: true`, read from `positionals`); what parseArgs cannot check (a required option, a value out
 * of range, how many positionals) the benchmark answers with benchUsageError, in the same form. No other import: a
 * benchmark that does not load the addon does not load it for this.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, type ParseArgsConfig } from "node:util";

/** The leading block comment of a source file, without its `*` margin; empty when it has none. */
export function headerComment(file: string): string {
  const text = fs.readFileSync(file, "utf8");
  const m = /^(?:#!.*\n)?\s*\/\*\*?([\s\S]*?)\*\//.exec(text);
  if (!m) return "";
  return m[1]
    .split("\n")
    .map((line) => line.replace(/^\s*\* ?/, ""))
    .join("\n")
    .trim();
}

/** parseArgs(config) for the benchmark at `moduleUrl` (its import.meta.url). */
export function benchArgs<T extends ParseArgsConfig>(
  moduleUrl: string,
  config: T,
): ReturnType<typeof parseArgs<T>> {
  const argv = config.args ?? process.argv.slice(2);
  if (argv.includes("--help") || (argv.includes("-h") && !hasShortH(config))) {
    console.log(usage(fileURLToPath(moduleUrl)));
    process.exit(0);
  }
  try {
    return parseArgs(config);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS")) throw e;
    benchUsageError(moduleUrl, (e as Error).message);
  }
}

/**
 * A command line the benchmark at `moduleUrl` cannot run with (a required option left out, a bad value, too few
 * or too many positional arguments): `message` in one line naming the benchmark, then its usage, exit status 2.
 */
export function benchUsageError(moduleUrl: string, message: string): never {
  const file = fileURLToPath(moduleUrl);
  console.error(`${benchName(file)}: ${message}\n\n${usage(file)}`);
  process.exit(2);
}

function benchName(file: string): string {
  return `bench/${path.basename(file).replace(/\.js$/, ".ts")}`;
}

function usage(file: string): string {
  return headerComment(file) || `${benchName(file)}: no usage comment`;
}

function hasShortH(config: ParseArgsConfig): boolean {
  return Object.values(config.options ?? {}).some((o) => o.short === "h");
}
