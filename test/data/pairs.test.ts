import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import { normalizeLanguage } from "../../src/data/languages.js";
import {
  pairsToLabelledSamples,
  readLabelledCode,
  readLabelledSamples,
  readPairs,
  splitPairs,
  type SecurityPair,
} from "../../src/data/pairs.js";

const tmp = scratchDir("goodvibe-pairs-");
let counter = 0;
function writeJsonl(lines: readonly (string | object)[]): string {
  const file = path.join(tmp, `f${counter++}.jsonl`);
  fs.writeFileSync(file, lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n") + "\n");
  return file;
}
function row(id: string, lang: string, extra: object = {}): object {
  return {
    id,
    lang,
    question: `Write a ${lang} program`,
    chosen: "```" + lang + "\nsafe_call(x);\n```",
    rejected: "```" + lang + "\nunsafe_call(x);\n```",
    ...extra,
  };
}
/** Assert an InputError whose message contains every fragment. */
function throwsInput(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `"${e.message}" lacks "${f}"`);
    return true;
  });
}

test("normalizeLanguage maps the dataset spellings", () => {
  assert.equal(normalizeLanguage("c++"), "cpp");
  assert.equal(normalizeLanguage("C#"), "csharp");
  assert.equal(normalizeLanguage(" Go "), "go");
  assert.equal(normalizeLanguage("cobol"), null);
});

test("readPairs reads rows, normalises languages, keeps cwe, skips blank lines", () => {
  const file = writeJsonl([row("a", "c++", { cwe: "CWE-120" }), "", row("b", "c#")]);
  const pairs = readPairs(file);
  assert.equal(pairs.length, 2);
  assert.deepEqual(pairs[0], {
    id: "a",
    lang: "cpp",
    question: "Write a c++ program",
    chosen: "```c++\nsafe_call(x);\n```",
    rejected: "```c++\nunsafe_call(x);\n```",
    cwe: "CWE-120",
  });
  assert.equal(pairs[1]!.lang, "csharp");
  assert.equal("cwe" in pairs[1]!, false);
});

test("readPairs errors name the file, the 1-based row and the field", () => {
  throwsInput(() => readPairs(writeJsonl([row("a", "go"), "{not json"])), "row 2", "bad JSON");
  throwsInput(() => readPairs(writeJsonl([row("a", "go"), "[1, 2]"])), "row 2", "JSON object");
  const noQuestion = { ...row("a", "go") } as Record<string, unknown>;
  delete noQuestion["question"];
  const f = writeJsonl([noQuestion]);
  throwsInput(() => readPairs(f), f, "row 1", '"question"', "missing");
  throwsInput(() => readPairs(writeJsonl([row("a", "go", { chosen: "  " })])), '"chosen"', "empty");
  throwsInput(
    () => readPairs(writeJsonl([row("a", "go", { rejected: 5 })])),
    '"rejected"',
    "expected a string",
  );
  throwsInput(() => readPairs(writeJsonl([row("a", "cobol")])), '"lang"', 'unknown language "cobol"');
  throwsInput(
    () => readPairs(writeJsonl([row("a", "go"), row("b", "go", { rejected: "I will not write that." })])),
    "row 2",
    '"rejected"',
    "no code",
  );
  throwsInput(
    () => readPairs(writeJsonl([row("a", "go"), row("a", "java")])),
    "row 2",
    'duplicate id "a"',
    "row 1",
  );
  throwsInput(() => readPairs(writeJsonl([""])), "no rows");
  throwsInput(() => readPairs(path.join(tmp, "missing.jsonl")), "cannot read");
});

test("language filter: keeps the asked languages, reports what is present", () => {
  const file = writeJsonl([row("a", "c++"), row("b", "java"), row("c", "c++"), row("d", "go")]);
  assert.deepEqual(
    readPairs(file, { languages: ["cpp", "Go"] }).map((p) => p.id),
    ["a", "c", "d"],
  );
  throwsInput(
    () => readPairs(file, { languages: ["swift"] }),
    "no rows for languages [swift]",
    file,
    "c++ (2), java (1), go (1)",
  );
  throwsInput(() => readPairs(file, { languages: ["swift", "java"] }), "only for [java]", "missing: swift");
  throwsInput(() => readPairs(file, { languages: ["cobol"] }), 'unknown language "cobol"');
  assert.equal(readPairs(file, { languages: ["java"] }).length, 1, "one language asked, one kept: fine");
});

test("readLabelledCode: the judge task's labels (1 = unsafe, 0 = safe, and the words), code extracted, optional lang and id", () => {
  const file = writeJsonl([
    { code: "```python\nx = input()\n```", label: 0, lang: "py" },
    { code: "eval(input())", label: "insecure", id: "s2" },
    { code: "gets(buf);", label: 1 },
    { code: "y = 1", label: "Secure" },
    { code: "strcpy(b, s);", label: "Unsafe" },
    { code: "z = 2", label: " safe " },
  ]);
  const samples = readLabelledCode(file);
  assert.deepEqual(samples[0], {
    id: `${path.basename(file)}:1`,
    code: "x = input()",
    secure: true,
    lang: "python",
  });
  assert.deepEqual(samples[1], { id: "s2", code: "eval(input())", secure: false });
  // README, "The judge task": 1 = unsafe, 0 = safe, as identification, judge training and the LLM judge use them
  assert.deepEqual(
    samples.map((s) => s.secure),
    [true, false, false, true, false, true],
  );
  // either schema: labelled code as it is, pairs as their two samples each
  assert.deepEqual(readLabelledSamples(file), samples);
  const pairsFile = writeJsonl([
    { id: "p1", lang: "go", question: "q", chosen: "```go\nsafe()\n```", rejected: "```go\nbad()\n```" },
  ]);
  assert.deepEqual(
    readLabelledSamples(pairsFile).map((s) => [s.id, s.code, s.secure]),
    [
      ["p1/secure", "safe()", true],
      ["p1/insecure", "bad()", false],
    ],
  );
  throwsInput(() => readLabelledCode(writeJsonl([{ code: "x = 1", label: 2 }])), "row 1", '"label"', "got 2");
  throwsInput(() => readLabelledCode(writeJsonl([{ code: "x = 1" }])), '"label"', "missing");
  throwsInput(() => readLabelledCode(writeJsonl([{ code: "no code here", label: 1 }])), '"code"', "no code");
});

test("pairsToLabelledSamples gives a secure and an insecure sample per pair", () => {
  const pair: SecurityPair = {
    id: "p",
    lang: "go",
    question: "q",
    chosen: "Use this:\n```go\nsafe()\n```",
    rejected: "unsafe()",
  };
  assert.deepEqual(pairsToLabelledSamples([pair]), [
    { id: "p/secure", lang: "go", code: "safe()", secure: true },
    { id: "p/insecure", lang: "go", code: "unsafe()", secure: false },
  ]);
});

test("splitPairs: stratified by language, seeded, disjoint, order kept", () => {
  const langs = ["cpp", "java", "go"] as const;
  const pairs: SecurityPair[] = [];
  for (let i = 0; i < 60; i++) {
    pairs.push({ id: `r${i}`, lang: langs[i % 3]!, question: "q", chosen: "a;", rejected: "b;" });
  }
  pairs.push({ id: "lonely", lang: "swift", question: "q", chosen: "a;", rejected: "b;" });
  const { train, dev } = splitPairs(pairs, { devFraction: 0.25, seed: 42 });
  for (const lang of langs) assert.equal(dev.filter((p) => p.lang === lang).length, 5, lang);
  assert.ok(
    train.some((p) => p.id === "lonely"),
    "a language with one pair stays in train",
  );
  assert.equal(train.length + dev.length, pairs.length);
  assert.equal(new Set([...train, ...dev].map((p) => p.id)).size, pairs.length);
  const position = new Map(pairs.map((p, i) => [p.id, i]));
  for (const part of [train, dev]) {
    const idx = part.map((p) => position.get(p.id)!);
    assert.deepEqual(
      idx,
      [...idx].sort((a, b) => a - b),
    );
  }
  assert.deepEqual(splitPairs(pairs, { devFraction: 0.25, seed: 42 }).dev, dev);
  assert.notDeepEqual(splitPairs(pairs, { devFraction: 0.25, seed: 43 }).dev, dev);
  throwsInput(() => splitPairs(pairs, { devFraction: 1, seed: 0 }), "devFraction");
});

// Optional: the real CyberNative data, read in place (never copied into the repository).
const DATA = path.resolve(fileURLToPath(new URL("../../../", import.meta.url)), "../shared/data/cybernative");
test(
  "real CyberNative train/dev files read cleanly",
  { skip: !fs.existsSync(DATA) && "no ../shared/data" },
  () => {
    const train = readPairs(path.join(DATA, "train.jsonl"));
    const dev = readPairs(path.join(DATA, "dev.jsonl"));
    assert.equal(train.length, 3724);
    assert.equal(dev.length, 465);
    assert.equal(new Set(train.map((p) => p.lang)).size, 11);
    const four = readPairs(path.join(DATA, "train.jsonl"), { languages: ["c++", "java", "swift", "go"] });
    assert.deepEqual([...new Set(four.map((p) => p.lang))].sort(), ["cpp", "go", "java", "swift"]);
    const samples = pairsToLabelledSamples(four);
    assert.equal(samples.length, 2 * four.length);
    assert.ok(samples.every((s) => !s.code.includes("```")));
  },
);
