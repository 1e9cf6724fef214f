/**
 * The CLI as a new user meets it: a mistyped flag, command or value exits 2 (bad input, as the README says),
 * names the flag and what it expects, and under --json prints one JSON error instead of help text; --help shows
 * each option's default taken from where the default lives; each command lists only the options it uses; and the
 * config keys a command documents take effect (train.maxPairs in `train`).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_IDENTIFY, DEFAULT_CLUSTER } from "../../src/method/goodvibe/config.js";
import { DEFAULT_TRAIN } from "../../src/method/train-config.js";
import { DEFAULT_LORA } from "../../src/method/lora/config.js";
import { CYBERNATIVE_ORGANISM, DEFAULT_ORGANISM } from "../../src/organism/config.js";
import { makeCliFixture, runCli, showRun, type CliResult } from "./cli-helpers.js";

/** Exit 2, one `error:` line naming `what`, no stack trace and no help dump. */
function assertUsageError(r: CliResult, what: RegExp): void {
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, /^error: /m, showRun(r));
  assert.match(r.stderr, what, showRun(r));
  assert.doesNotMatch(r.stderr + r.stdout, /^Usage:/m, "the whole help was printed after the error");
  assert.doesNotMatch(r.stderr, /\n\s+at /, "a stack trace reached the user");
}

/** Under --json: stdout is exactly one JSON object {error, exitCode: 2} and no help text anywhere. */
function assertJsonError(r: CliResult, what: RegExp): void {
  assert.equal(r.code, 2, showRun(r));
  const parsed = JSON.parse(r.stdout) as { error: string; exitCode: number };
  assert.equal(parsed.exitCode, 2);
  assert.match(parsed.error, what);
  assert.doesNotMatch(r.stdout + r.stderr, /Usage:|Options:/);
}

test("an unknown flag or command exits 2 with the name and a pointer to --help; as JSON under --json", async () => {
  const [flag, cmd, flagJson, cmdJson, none] = await Promise.all([
    runCli(["export", "-m", "m", "-o", "o.gguf", "--out-type", "q8_0"]),
    runCli(["hardn", "-m", "m"]),
    runCli(["--json", "export", "-m", "m", "-o", "o.gguf", "--out-type", "q8_0"]),
    runCli(["hardn", "--json"]),
    runCli([]),
  ]);
  assertUsageError(flag, /unknown option '--out-type'/);
  assert.match(flag.stderr, /goodvibe export --help/);
  assertUsageError(cmd, /unknown command 'hardn'/);
  assert.match(cmd.stderr, /Did you mean harden\?/);
  assertJsonError(flagJson, /unknown option '--out-type'/);
  assertJsonError(cmdJson, /unknown command 'hardn'/);
  // no command at all: the help, on stderr, and the bad-input code
  assert.equal(none.code, 2, showRun(none));
  assert.match(none.stderr, /^Usage: goodvibe/m);
  assert.equal(none.stdout, "");
});

test("a value of the wrong type names the flag and the type it expects, not an internal variable", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["generate", "-p", "hi", "-m", "m", "--max-new-tokens", "abc"],
      /'--max-new-tokens <n>'.*'abc'.*whole number/,
    ],
    [["eval", "-m", "m", "-d", "d", "--max-new-tokens", "12.5"], /'--max-new-tokens <n>'.*whole number/],
    [["eval", "-m", "m", "-d", "d", "--prompts", "-3"], /'--prompts <n>'.*whole number \(0 or more\)/],
    [["harden", "-m", "m", "-d", "d", "-o", "o", "--lr", "fast"], /'--lr <x>'.*'fast'.*number > 0/],
    [["harden", "-m", "m", "-d", "d", "-o", "o", "--top-k", "0"], /'--top-k <n>'.*whole number ≥ 1/],
    [["generate", "-p", "hi", "--temperature", "-1"], /'--temperature <t>'.*number ≥ 0/],
    [["serve", "-m", "m", "--port", "70000"], /'--port <n>'.*whole number from 0 to 65535/],
    [["export", "-m", "m", "-o", "o", "--format", "onnx"], /'--format <fmt>'.*choices are gguf, safetensors/],
    [
      ["harden", "-m", "m", "-d", "d", "-o", "o", "--method", "dpo"],
      /'--method <name>'.*goodvibe, lora, full/,
    ],
  ];
  const runs = await Promise.all(cases.map(([args]) => runCli(args)));
  runs.forEach((r, i) => {
    assertUsageError(r, cases[i]![1]);
    assert.doesNotMatch(r.stderr, /maxNewTokens|NaN/, "names an internal variable");
  });
  assertJsonError(
    await runCli(["--json", "generate", "-p", "hi", "--max-new-tokens", "abc"]),
    /'--max-new-tokens <n>'.*whole number/,
  );
});

/** The description of one option in a help text, continuation lines joined. */
function optionHelp(help: string, flag: string): string {
  const lines = help.split("\n");
  const i = lines.findIndex((l) => new RegExp(`^ {2}(-\\w, )?${flag}\\b`).test(l));
  assert.ok(i >= 0, `${flag} not in the help:\n${help}`);
  let text = lines[i]!;
  for (let j = i + 1; j < lines.length && /^ {6,}\S/.test(lines[j]!); j++) text += " " + lines[j]!.trim();
  return text.replace(/\s+/g, " ");
}

test("organism build --help gives each recipe's default epochs and seed (no single default: the recipe decides)", async () => {
  const r = await runCli(["organism", "build", "--help"]);
  assert.equal(r.code, 0, showRun(r));
  for (const [flag, key] of [
    ["--epochs", "epochs"],
    ["--seed", "seed"],
  ] as const)
    assert.match(
      optionHelp(r.stdout, flag),
      new RegExp(
        `default: the recipe's, ${DEFAULT_ORGANISM[key]} for corpus, ${CYBERNATIVE_ORGANISM[key]} for cybernative\\)`,
      ),
    );
});

test("--help shows each option's default from where it lives, and only the options the command uses", async () => {
  const [harden, identify, train, cluster, exp, judgeTrain] = await Promise.all(
    [["harden"], ["identify"], ["train"], ["cluster"], ["export"], ["judge", "train"]].map((c) =>
      runCli([...c, "--help"]),
    ),
  );
  for (const r of [harden, identify, train, cluster, exp, judgeTrain]) assert.equal(r.code, 0, showRun(r));
  const has = (help: string, flag: string, def: unknown) =>
    assert.match(
      optionHelp(help, flag),
      new RegExp(`default: ${String(def).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\)`),
    );
  has(harden.stdout, "--top-k", DEFAULT_IDENTIFY.topK);
  has(harden.stdout, "--epochs", DEFAULT_TRAIN.epochs);
  has(harden.stdout, "--lr", DEFAULT_TRAIN.lr);
  assert.match(optionHelp(harden.stdout, "--method"), /one of: goodvibe, lora, full; default: goodvibe\)/);
  has(identify.stdout, "--top-k", DEFAULT_IDENTIFY.topK);
  has(train.stdout, "--epochs", DEFAULT_TRAIN.epochs);
  has(cluster.stdout, "--k-max", DEFAULT_CLUSTER.kMax);
  has(cluster.stdout, "--threshold", DEFAULT_CLUSTER.threshold);
  has(cluster.stdout, "--n-init", DEFAULT_CLUSTER.nInit);
  has(judgeTrain.stdout, "--epochs", DEFAULT_TRAIN.epochs);
  has(judgeTrain.stdout, "--lr", DEFAULT_TRAIN.lr);
  assert.match(optionHelp(exp.stdout, "--outtype"), /default: f16 for gguf, bfloat16 for safetensors/);
  // the config keys the command reads, with their defaults
  assert.match(train.stdout, new RegExp(`train\\.maxPairs=0\\b`));
  assert.match(train.stdout, new RegExp(`lora\\.r=${DEFAULT_LORA.r}\\b`));
  assert.doesNotMatch(train.stdout, /identify\./);
  // train selects no neurons; identify trains nothing
  assert.doesNotMatch(train.stdout, /--top-k/);
  for (const flag of ["--method", "--epochs", "--lr"])
    assert.doesNotMatch(identify.stdout, new RegExp(`^ {2}${flag}\\b`, "m"), `identify lists ${flag}`);
  // never an empty default
  for (const r of [harden, identify, train, cluster, exp, judgeTrain])
    assert.doesNotMatch(r.stdout, /default: (""|\[\]|undefined)/);
});

const fx = makeCliFixture({ perLanguage: 3 });
after(() => fx.cleanup());

test("train honours train.maxPairs: it trains on that many pairs, not on the whole file", async () => {
  assert.equal(fx.pairs.length, 12);
  const args = (out: string, maxPairs: number) => [
    "--json",
    "train",
    "-m",
    fx.model.dir,
    "-d",
    fx.pairsFile,
    "-o",
    `${fx.work}/${out}`,
    "--method",
    "lora",
    "--epochs",
    "1",
    "--set",
    "train.gradAccum=1",
    "--set",
    `train.maxPairs=${maxPairs}`,
  ];
  const r = await runCli(args("out-3", 3));
  assert.equal(r.code, 0, showRun(r));
  const res = JSON.parse(r.stdout) as { train: { steps: number; totalSteps: number } };
  // batch 1, no accumulation, one epoch: one optimizer step per pair
  assert.equal(res.train.totalSteps, 3);
  assert.equal(res.train.steps, 3);
});
