/**
 * The benchmarks' command lines: node's parseArgs, with `--help` (or `-h`) printing the benchmark's usage (the
 * comment at the top of its file, which says how to run it) and a mistyped option answered in one line naming it,
 * then that usage, with exit status 2, instead of parseArgs' stack trace. No other import: a benchmark that does
 * not load the addon does not load it for this.
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
  const file = fileURLToPath(moduleUrl);
  const name = path.basename(file).replace(/\.js$/, ".ts");
  const usage = () => headerComment(file) || `bench/${name}: no usage comment`;
  const argv = config.args ?? process.argv.slice(2);
  if (argv.includes("--help") || (argv.includes("-h") && !hasShortH(config))) {
    console.log(usage());
    process.exit(0);
  }
  try {
    return parseArgs(config);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS")) throw e;
    console.error(`bench/${name}: ${(e as Error).message}\n\n${usage()}`);
    process.exit(2);
  }
}

function hasShortH(config: ParseArgsConfig): boolean {
  return Object.values(config.options ?? {}).some((o) => o.short === "h");
}
