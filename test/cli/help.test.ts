/**
 * `--help` of every command, found by walking the CLI's own help (so a new command is covered without editing
 * this file): each exits 0, prints its usage on stdout, and shows at least one example invocation.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { runCli, showRun } from "./cli-helpers.js";

/** Names listed under "Commands:" in a help text (continuation lines are indented deeper). */
function subcommands(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1];
  if (section === undefined) return [];
  const names: string[] = [];
  for (const line of section.split("\n").slice(1)) {
    if (line.trim() === "") break;
    const m = /^ {2}(\S+)/.exec(line);
    if (m && m[1] !== "help") names.push(m[1]!);
  }
  return names;
}

test("--help of every command exits 0 and shows an example", async () => {
  const top = await runCli(["--help"]);
  assert.equal(top.code, 0, showRun(top));
  assert.match(top.stdout, /Exit codes:/);

  const seen: string[] = [];
  const walk = async (path: string[]): Promise<void> => {
    const r = await runCli([...path, "--help"]);
    const name = path.join(" ");
    assert.equal(r.code, 0, `${name} --help\n${showRun(r)}`);
    assert.match(
      r.stdout,
      new RegExp(`^Usage: goodvibe ${name}\\b`, "m"),
      `${name} --help shows no usage line`,
    );
    assert.match(r.stdout, /^Examples?\b.*:$/m, `${name} --help shows no example`);
    assert.doesNotMatch(
      r.stdout,
      /default: (""|\[\]|undefined|NaN)/,
      `${name} --help shows an empty default`,
    );
    assert.match(
      r.stdout,
      new RegExp(`^ {2}goodvibe ${name}\\b`, "m"),
      `${name} --help: no example runs "goodvibe ${name}"`,
    );
    seen.push(name);
    await Promise.all(subcommands(r.stdout).map((sub) => walk([...path, sub])));
  };
  // in parallel: each start loads the CLI's modules (not libtorch: test/cli/lazy-start), and nothing here writes a file
  await Promise.all(subcommands(top.stdout).map((cmd) => walk([cmd])));

  // the walk must have found the commands users are told about, or the test would pass on a broken parser
  for (const expected of [
    "harden",
    "identify",
    "cluster",
    "train",
    "fold",
    "judge",
    "judge code",
    "judge train",
    "judge check",
    "eval",
    "export",
    "generate",
    "report",
    "organism",
    "organism build",
    "demo",
    "experiment",
    "experiment run",
    "experiment plan",
  ])
    assert.ok(seen.includes(expected), `"${expected}" not found in the help (found: ${seen.join(", ")})`);
});
