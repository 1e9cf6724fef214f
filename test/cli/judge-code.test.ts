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
