/**
 * `goodvibe judge code FILE` takes the file's language from its extension when --lang is not given (.cpp, .h,
 * .java, .swift, .go), as its help says; an extension that names no covered language asks for --lang.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { runCli, showRun } from "./cli-helpers.js";
import { makeTinyChatModel } from "../evalcore/make-model.js";

const dir = scratchDir("gv-judge-code-");
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test("judge code: the language from the extension; none named, --lang asked for (exit 2)", async () => {
  // an unbounded copy into a fixed buffer: CWE-120 for the rule judge in C++
  const cpp = path.join(dir, "copy ü.cpp");
  fs.writeFileSync(cpp, "#include <cstring>\nvoid f(char* s) { char b[8]; strcpy(b, s); }\n");
  const r = await runCli(["judge", "code", cpp, "--json"]);
  assert.equal(r.code, 0, showRun(r));
  const out = JSON.parse(r.stdout) as { rules: { secure: boolean; findings: { cwe: string }[] } };
  assert.equal(out.rules.secure, false);
  assert.ok(
    out.rules.findings.some((f) => f.cwe === "CWE-120"),
    r.stdout,
  );
  // the same file given --lang explicitly: the same verdict
  const explicit = await runCli(["judge", "code", cpp, "--lang", "c++", "--json"]);
  assert.deepEqual(JSON.parse(explicit.stdout), out);

  const txt = path.join(dir, "snippet.txt");
  fs.copyFileSync(cpp, txt);
  const refused = await runCli(["judge", "code", txt]);
  assert.equal(refused.code, 2, showRun(refused));
  assert.match(refused.stderr, /snippet\.txt: its extension \.txt names no language .*--lang/);
  const given = await runCli(["judge", "code", txt, "--lang", "cpp", "--json"]);
  assert.deepEqual(JSON.parse(given.stdout), out);
});

// The LLM judge reads at most its window (the tiny judge's 2,048 tokens): the text output says how much of the
// file it read, as it does for the rules' character limit; a file that fits says nothing.
test("judge code --judge: a file longer than the judge's window is said to be read in part", async () => {
  const made = makeTinyChatModel({ seed: 3 });
  try {
    const lines = Array.from({ length: 400 }, (_, i) => `  strcpy(buf${i}, argv[${i % 7}]);`);
    const long = path.join(dir, "long.cpp");
    const code = lines.join("\n") + "\n";
    fs.writeFileSync(long, code);
    const json = await runCli(["judge", "code", long, "--judge", made.dir, "--json"]);
    assert.equal(json.code, 0, showRun(json));
    const n = (JSON.parse(json.stdout) as { llm: { judgedChars?: number } }).llm.judgedChars;
    assert.ok(n !== undefined && n < code.length && code[n] === "\n", json.stdout);
    const text = await runCli(["judge", "code", long, "--judge", made.dir]);
    assert.equal(text.code, 0, showRun(text));
    assert.match(
      text.stdout,
      new RegExp(
        `LLM judge: .*\\n  \\(judged the first ${n} of ${code.length} characters: the judge's prompt holds at most 2048 tokens\\)`,
      ),
    );
    const short = path.join(dir, "short.cpp");
    fs.writeFileSync(short, lines.slice(0, 3).join("\n") + "\n");
    const whole = await runCli(["judge", "code", short, "--judge", made.dir]);
    assert.equal(whole.code, 0, showRun(whole));
    assert.match(whole.stdout, /LLM judge: /);
    assert.doesNotMatch(whole.stdout, /judged the first/);
  } finally {
    fs.rmSync(made.dir, { recursive: true, force: true });
  }
});
