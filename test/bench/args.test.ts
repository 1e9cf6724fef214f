/**
 * The benchmarks' command lines (bench/args.ts): `--help` prints the benchmark's usage comment and exits 0; a
 * mistyped option is named in one line, the usage follows, exit status 2 and no stack trace; good options and
 * positional arguments parse as parseArgs parses them; a command line the benchmark itself refuses
 * (benchUsageError) is answered in the same form. And every benchmark that takes options has a usage comment that
 * says how to run it, and none reads process.argv itself.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "../evalcore/make-model.js";
import { scratchDir } from "../scratch.js";
import { headerComment } from "../../bench/args.js";

const ARGS_JS = path.join(REPO_ROOT, "dist", "bench", "args.js");

/** A probe benchmark with a usage comment, run with `argv`. */
function probe(argv: string[]) {
  return probeWith(
    [
      "const { values } = benchArgs(import.meta.url, {",
      '  options: { rows: { type: "string", default: "8" }, fast: { type: "boolean", default: false } },',
      "});",
      "console.log(JSON.stringify(values));",
    ],
    argv,
  );
}

/** A probe benchmark whose body after the import of bench/args.js is `body`, run with `argv`. */
function probeWith(body: string[], argv: string[]) {
  const dir = scratchDir("gv-bench-args-");
  const file = path.join(dir, "probe.mjs");
  fs.writeFileSync(
    file,
    [
      "/**",
      " * Probe benchmark: times nothing.",
      " *",
      " *   node probe.mjs --rows N [--fast]",
      " */",
      `import { benchArgs, benchUsageError } from ${JSON.stringify(pathToFileURL(ARGS_JS).href)};`,
      ...body,
    ].join("\n"),
  );
  const r = spawnSync(process.execPath, [file, ...argv], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("--help prints the usage comment without its margin and exits 0", () => {
  for (const flag of ["--help", "-h"]) {
    const r = probe(["--rows", "4", flag]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), "Probe benchmark: times nothing.\n\n  node probe.mjs --rows N [--fast]");
  }
});

test("a mistyped option is named in one line, the usage follows, exit 2, no stack trace", () => {
  const r = probe(["--rosw", "4"]);
  assert.equal(r.code, 2);
  assert.equal(r.out, "");
  const lines = r.err.trim().split("\n");
  assert.match(lines[0], /^bench\/probe\.mjs: Unknown option '--rosw'/);
  assert.ok(r.err.includes("node probe.mjs --rows N [--fast]"), r.err);
  assert.ok(!/\n\s+at /.test(r.err), `stack trace printed:\n${r.err}`);
  const missing = probe(["--rows"]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /Option '--rows <value>' argument missing/);
});

test("good options parse as parseArgs parses them", () => {
  const r = probe(["--rows", "16", "--fast"]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), { rows: "16", fast: true });
  assert.deepEqual(JSON.parse(probe([]).out), { rows: "8", fast: false });
});

test("positional arguments parse beside options; what the benchmark refuses is answered like a parse error", () => {
  // the form of make-random-model.js / export-convert.js: positionals, checked by the benchmark itself
  const body = [
    "const { values, positionals } = benchArgs(import.meta.url, {",
    '  allowPositionals: true, options: { fast: { type: "boolean", default: false } },',
    "});",
    'if (!positionals.length) benchUsageError(import.meta.url, "no <dir> given");',
    "console.log(JSON.stringify({ values, positionals }));",
  ];
  const ok = probeWith(body, ["out", "2", "--fast", "7b"]);
  assert.equal(ok.code, 0, ok.err);
  assert.deepEqual(JSON.parse(ok.out), { values: { fast: true }, positionals: ["out", "2", "7b"] });
  // after `--` a value that looks like an option (a negative number) is a positional
  assert.deepEqual(JSON.parse(probeWith(body, ["--", "5", "-3"]).out).positionals, ["5", "-3"]);
  const refused = probeWith(body, []);
  assert.equal(refused.code, 2);
  assert.equal(refused.out, "");
  assert.match(refused.err.trim().split("\n")[0]!, /^bench\/probe\.mjs: no <dir> given$/);
  assert.ok(refused.err.includes("node probe.mjs --rows N [--fast]"), refused.err);
  assert.ok(!/\n\s+at /.test(refused.err), `stack trace printed:\n${refused.err}`);
  const mistyped = probeWith(body, ["out", "--fsat"]);
  assert.equal(mistyped.code, 2);
  assert.match(mistyped.err, /^bench\/probe\.mjs: Unknown option '--fsat'/);
});

test("every benchmark that takes options says in its usage comment how to run it", () => {
  const dir = path.join(REPO_ROOT, "bench");
  const users = fs
    .readdirSync(dir)
    .filter(
      (f) =>
        f.endsWith(".ts") && fs.readFileSync(path.join(dir, f), "utf8").includes("benchArgs(import.meta.url"),
    );
  assert.ok(users.length >= 27, `only ${users.length} benchmarks use benchArgs`);
  for (const f of users) {
    const usage = headerComment(path.join(dir, f));
    assert.ok(
      usage.includes(`dist/bench/${f.replace(/\.ts$/, ".js")}`),
      `bench/${f}: its usage comment gives no command`,
    );
  }
  // none still calls parseArgs itself (its errors are stack traces) or reads process.argv by hand (no --help, and a
  // mistyped option silently ignored or taken for a value)
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".ts") && f !== "args.ts")) {
    const text = fs.readFileSync(path.join(dir, f), "utf8");
    assert.ok(!/= parseArgs\(\{/.test(text), `bench/${f} calls parseArgs`);
    assert.ok(!/process\.argv/.test(text), `bench/${f} reads process.argv itself`);
  }
});
