/**
 * The CLI starts without loading what its commands compute with. `--help` of every command, `--version` and the
 * usage errors (unknown command or flag, missing argument or option, a value a parser refuses) load no model,
 * tensor, method, recipe, report or experiment code, no command's work module (commands/*-run.js), no
 * node-llama-cpp, tokenizer or chart library, and open no native addon: each command imports its work when it
 * runs. What a process loads is recorded inside it (load-recorder.ts); a command that does run is the control
 * that the record sees those loads.
 *
 * The same walk of every command's `--help` (found from the CLI's own help, so a new command is covered without
 * editing this file) also checks what it prints: each exits 0 with its usage on stdout and at least one example
 * that runs the command, and no empty default. One start per command for both checks (they were two files'
 * walks, 2 x 30 starts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT, scratchDir } from "../evalcore/make-model.js";
import { runCli, showRun, type CliResult } from "./cli-helpers.js";

const RECORDER = pathToFileURL(path.join(REPO_ROOT, "dist/test/cli/load-recorder.js")).href;

/** Settings modules hold the defaults --help shows (one home each): light by design, like these two. */
const LIGHT = ["organism/sources.js", "eval/generate/llamacpp-runtime.js"];

/** Whether a record line ("load <url>" or "dlopen <file>") is something only a running command needs. */
function heavy(entry: string): boolean {
  if (entry.startsWith("dlopen ")) return true;
  const url = entry.slice("load ".length);
  if (
    /\/node_modules\/(node-llama-cpp|@node-llama-cpp|@huggingface\/tokenizers|@huggingface\/jinja|vega|vega-lite|hyparquet)\//.test(
      url,
    )
  )
    return true;
  const rel = /\/dist\/src\/(.+)$/.exec(url)?.[1];
  if (rel === undefined) return false;
  if (/^cli\/commands\/[^/]+-run\.js$/.test(rel)) return true;
  const top = rel.split("/")[0]!;
  if (["models", "tensor", "report", "experiment"].includes(top)) return true;
  if (["method", "eval", "recipes", "organism"].includes(top))
    return !/(^|\/|-)config\.js$/.test(rel) && !LIGHT.includes(rel);
  return false;
}

const dir = scratchDir("gv-lazy-start-");
let runs = 0;

/**
 * Run the CLI with the recorder preloaded: its result and the record. The modules are what V8 reports compiling;
 * `hooks` records them through the module loader's hooks instead (the reference that list is checked against).
 */
async function recorded(args: readonly string[], hooks = false): Promise<{ r: CliResult; loaded: string[] }> {
  const file = path.join(dir, `record-${runs++}.txt`);
  const r = await runCli(args, {
    env: {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${RECORDER}`.trim(),
      GOODVIBE_LOAD_RECORD: file,
      ...(hooks ? { GOODVIBE_LOAD_RECORD_HOOKS: "1" } : {}),
    },
  });
  const loaded = fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
  return { r, loaded };
}

function assertLight(name: string, run: { r: CliResult; loaded: string[] }): void {
  // the record must have seen the CLI itself, or an empty record would pass
  assert.ok(
    run.loaded.some((l) => l.endsWith("/dist/src/cli/main.js")),
    `${name}: nothing recorded\n${showRun(run.r)}`,
  );
  const loadedHeavy = run.loaded.filter(heavy).map((l) => l.replace(/^load file:\/\/.*?\/dist\//, "dist/"));
  assert.deepEqual(loadedHeavy, [], `${name} loaded what only a running command needs`);
}

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

/** Run in batches: each run is a whole CLI start, on whatever cores the tests have. */
async function inBatches<T, R>(items: readonly T[], f: (x: T) => Promise<R>, size = 6): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size)
    out.push(...(await Promise.all(items.slice(i, i + size).map(f))));
  return out;
}

/** What every command's --help must print: its usage, an example running it, no empty default. */
function assertHelpText(name: string, r: CliResult): void {
  assert.match(
    r.stdout,
    new RegExp(`^Usage: goodvibe ${name}\\b`, "m"),
    `${name} --help shows no usage line`,
  );
  assert.match(r.stdout, /^Examples?\b.*:$/m, `${name} --help shows no example`);
  assert.doesNotMatch(r.stdout, /default: (""|\[\]|undefined|NaN)/, `${name} --help shows an empty default`);
  assert.match(
    r.stdout,
    new RegExp(`^ {2}goodvibe ${name}\\b`, "m"),
    `${name} --help: no example runs "goodvibe ${name}"`,
  );
}

test("--help of every command and --version load none of the commands' work; each help shows usage and an example", async () => {
  const top = await recorded(["--help"]);
  assert.equal(top.r.code, 0, showRun(top.r));
  assert.match(top.r.stdout, /Exit codes:/);
  assertLight("--help", top);
  const version = await recorded(["--version"]);
  assert.equal(version.r.code, 0, showRun(version.r));
  assertLight("--version", version);

  const paths: string[][] = [];
  let level = subcommands(top.r.stdout).map((c) => [c]);
  while (level.length > 0) {
    const next: string[][] = [];
    await inBatches(level, async (p) => {
      const run = await recorded([...p, "--help"]);
      const name = p.join(" ");
      assert.equal(run.r.code, 0, `${name} --help\n${showRun(run.r)}`);
      assertHelpText(name, run.r);
      assertLight(`${name} --help`, run);
      paths.push(p);
      next.push(...subcommands(run.r.stdout).map((s) => [...p, s]));
    });
    level = next;
  }
  // the walk found the commands users are told about, nested ones included, or this test would prove nothing
  for (const expected of [
    ...[
      "harden",
      "identify",
      "identify merge",
      "cluster",
      "train",
      "fold",
      "judge",
      "judge code",
      "judge train",
    ],
    ...["judge check", "eval", "export", "generate", "report", "organism", "organism build", "demo"],
    ...["experiment", "experiment run", "experiment plan", "setup llamacpp"],
  ])
    assert.ok(
      paths.some((p) => p.join(" ") === expected),
      `"${expected}" not walked (${paths.map((p) => p.join(" ")).join(", ")})`,
    );
});

test("usage errors exit 2 without loading the commands' work", async () => {
  const cases: [string, string[]][] = [
    ["unknown command", ["nosuch"]],
    ["unknown option", ["harden", "--nosuch"]],
    ["missing argument", ["report"]],
    ["missing argument of a subcommand", ["identify", "merge"]],
    ["missing required option", ["export", "-m", "model"]],
    ["bad whole number", ["harden", "--top-k", "abc"]],
    ["number out of range", ["serve", "-m", "model", "--port", "70000"]],
    ["bad choice", ["generate", "-p", "hi", "--backend", "nope"]],
    ["bad value under --json", ["--json", "eval", "-m", "m", "-d", "d", "--batch-size", "0"]],
    ["unknown option of a nested command", ["organism", "sources", "--bogus"]],
  ];
  await inBatches(cases, async ([name, args]) => {
    const run = await recorded(args);
    assert.equal(run.r.code, 2, `${name}\n${showRun(run.r)}`);
    assert.match(run.r.stderr + run.r.stdout, /error/, name);
    assertLight(name, run);
  });
});

test("a command that runs loads its work module (the record sees it); a GGUF export of a small model opens no addon", async () => {
  // the control: the same recording on a command that does its work, here a GGUF export of the shipped organism
  const out = path.join(dir, "organism.gguf");
  const exportArgs = (o: string) => ["export", "-m", path.join(REPO_ROOT, "assets/organism"), "-o", o];
  const run = await recorded([...exportArgs(out), "--outtype", "f32"]);
  assert.equal(run.r.code, 0, showRun(run.r));
  assert.ok(fs.statSync(out).size > 0);
  // V8's list holds every module the loader's hooks see loaded in the same command (the tests above read
  // only that list): the CLI, its work modules, node-llama-cpp's and the tokenizers' packages
  const viaHooks = await recorded(
    [...exportArgs(path.join(dir, "organism-hooks.gguf")), "--outtype", "f32"],
    true,
  );
  assert.equal(viaHooks.r.code, 0, showRun(viaHooks.r));
  const files = (loaded: string[]) => loaded.filter((l) => l.startsWith("load file:"));
  const atExit = new Set(files(run.loaded));
  const hooked = files(viaHooks.loaded);
  assert.ok(hooked.filter(heavy).length > 20, `the hooks recorded ${hooked.length} modules`);
  assert.deepEqual(
    hooked.filter((l) => !atExit.has(l)),
    [],
    "modules the loader's hooks saw that V8's list lacks",
  );
  const loaded = run.loaded.filter(heavy);
  assert.ok(
    loaded.some((l) => l.endsWith("/dist/src/cli/commands/export-run.js")),
    `export-run.js not recorded:\n${loaded.join("\n")}`,
  );
  // GGUF conversion is JavaScript over the weights' bytes: a checkpoint under 64 MiB (3.7 MB here) is read, not
  // mapped through the addon, so libtorch is not loaded (io/mapfile.ts readFilesBelow)
  assert.deepEqual(
    loaded.filter((l) => l.startsWith("dlopen ")),
    [],
    "a small GGUF export opened a native library",
  );
  // a safetensors export casts through libtorch: the record sees the addon open
  const cast = await recorded([
    "export",
    "-m",
    path.join(REPO_ROOT, "assets/organism"),
    "-o",
    path.join(dir, "organism-f32"),
    "--format",
    "safetensors",
    "--outtype",
    "float32",
  ]);
  assert.equal(cast.r.code, 0, showRun(cast.r));
  assert.ok(
    cast.loaded.some((l) => l.startsWith("dlopen ") && l.endsWith("goodvibe_torch.node")),
    `no addon recorded:\n${cast.loaded.filter(heavy).join("\n")}`,
  );
});
