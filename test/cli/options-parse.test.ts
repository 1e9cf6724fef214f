/**
 * A library parser's error (InputError, e.g. parseShard's) out of an option: through fromLibrary it is commander's
 * usage error naming the flag; unwrapped, parseCli still says it in one line with its exit code instead of letting
 * it out of the parse as an exception (a stack trace and exit 1: `identify --shard 0/2` did that).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Command, Option } from "commander";
import { fromLibrary, parseCli } from "../../src/cli/options.js";
import { InputError } from "../../src/errors.js";

const strict = (v: string): number => {
  if (!/^\d+$/.test(v)) throw new InputError(`--n ${v}: not a count`);
  return Number(v);
};

async function run(
  wrap: boolean,
  json = false,
): Promise<{ code: number | undefined; err: string; out: string }> {
  const seen = { err: "", out: "", ran: false };
  const program = new Command()
    .exitOverride()
    .configureOutput({ writeErr: (s) => (seen.err += s), writeOut: (s) => (seen.out += s) })
    .addOption(new Option("--n <n>").argParser(wrap ? fromLibrary(strict) : strict))
    .action(() => {
      seen.ran = true;
    });
  const [errWrite, outWrite, before] = [process.stderr.write, process.stdout.write, process.exitCode];
  process.stderr.write = ((s: string) => ((seen.err += s), true)) as typeof process.stderr.write;
  process.stdout.write = ((s: string) => ((seen.out += s), true)) as typeof process.stdout.write;
  let code: number | undefined;
  try {
    await parseCli(program, ["node", "x", "--n", "abc"], json);
    code = process.exitCode as number | undefined;
  } finally {
    [process.stderr.write, process.stdout.write] = [errWrite, outWrite];
    process.exitCode = before;
  }
  assert.equal(seen.ran, false);
  return { code, err: seen.err, out: seen.out };
}

test("fromLibrary: a library parser's InputError is commander's usage error naming the flag, exit 2", async () => {
  const r = await run(true);
  assert.equal(r.code, 2);
  assert.equal(r.err, "error: option '--n <n>' argument 'abc' is invalid. --n abc: not a count\n");
});

test("parseCli: a library error out of an unwrapped parser is one line with its exit code (JSON too), not an exception", async () => {
  const r = await run(false);
  assert.equal(r.code, 2);
  assert.equal(r.err, "error: --n abc: not a count\n");
  const j = await run(false, true);
  assert.deepEqual(JSON.parse(j.out), { error: "--n abc: not a count", exitCode: 2 });
});
