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
  pairOverlap,
  splitPairs,
  type SecurityPair,
  describePairs,
  labelConflictWarning,
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
  throwsInput(() => readPairs(file, { languages: ["swift", "java"] }), "missing: swift", "present: c++ (2)");
  // with two languages left the third was dropped without a word, and the run's stats still named it (an audit)
  throwsInput(
    () => readPairs(file, { languages: ["c++", "go", "swift"] }),
    "asked for languages [c++, go, swift]",
    "missing: swift",
  );
  throwsInput(() => readPairs(file, { languages: ["cobol"] }), 'unknown language "cobol"');
  // a row's unknown language lists the dataset's spellings (c++, c#), as the filter's message does
  throwsInput(() => readPairs(writeJsonl([row("e", "cobol")])), 'unknown language "cobol"', "c++", "c#");
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
    // the numbers as JSON strings, as a tool that quotes every field writes them
    { code: "system(cmd);", label: "1" },
    { code: "w = 3", label: "0" },
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
    [true, false, false, true, false, true, false, true],
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
  throwsInput(() => readLabelledCode(writeJsonl([{ code: "x = 1", label: "2" }])), '"label"', 'got "2"');
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
    pairs.push({ id: `r${i}`, lang: langs[i % 3]!, question: `q${i}`, chosen: `a${i};`, rejected: `b${i};` });
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

test("readPairs reads the upstream CyberNative rows: no id (named <file>:<row>), extra fields ignored", () => {
  // the Hugging Face dataset's columns: lang, vulnerability, system, question, chosen, rejected
  const upstream = (lang: string, n: number) => {
    const r = row("x", lang) as Record<string, unknown>;
    delete r["id"];
    return { ...r, question: `task ${n}`, vulnerability: "Buffer overflow can occur ...", system: "" };
  };
  const file = writeJsonl([upstream("c++", 1), "", upstream("java", 2)]);
  const base = path.basename(file);
  const pairs = readPairs(file);
  assert.deepEqual(
    pairs.map((p) => [p.id, p.lang, p.question]),
    [
      [`${base}:1`, "cpp", "task 1"],
      [`${base}:3`, "java", "task 2"],
    ],
  );
  assert.equal("vulnerability" in pairs[0]!, false);
  // an id that is there must still be a string, and ids stay unique
  throwsInput(() => readPairs(writeJsonl([row("a", "go", { id: 7 })])), '"id"', "expected a string");
  const clash = writeJsonl([upstream("go", 1)]);
  fs.appendFileSync(clash, JSON.stringify(row(`${path.basename(clash)}:1`, "go")) + "\n");
  throwsInput(() => readPairs(clash), "row 2", "duplicate id");
});

/** The test's own normalisation (not the module's): whitespace runs to one space, trimmed, lower case. */
const norm = (s: string) => s.split(/\s+/).filter(Boolean).join(" ").toLowerCase();
const fencedCode = (s: string) => /```[^\n]*\n([\s\S]*?)```/.exec(s)?.[1] ?? s;
/** Dev pairs that share a prompt or a piece of code with some train pair, by the definitions above. */
function leaked(train: readonly SecurityPair[], dev: readonly SecurityPair[]): string[] {
  const q = new Set(train.map((p) => norm(p.question)));
  const c = new Set(train.flatMap((p) => [norm(fencedCode(p.chosen)), norm(fencedCode(p.rejected))]));
  return dev
    .filter(
      (p) =>
        q.has(norm(p.question)) || c.has(norm(fencedCode(p.chosen))) || c.has(norm(fencedCode(p.rejected))),
    )
    .map((p) => p.id);
}

test("splitPairs never puts a prompt or a piece of code on both sides (duplicates after whitespace/case)", () => {
  const fence = (code: string) => "```go\n" + code + "\n```";
  const pairs: SecurityPair[] = [];
  for (let i = 0; i < 80; i++) {
    // every 4th repeats an earlier prompt with other spacing and case; every 5th reuses an earlier pair's insecure
    // code as its own secure code, reindented (the same text under the other label, as in CyberNative)
    const question = i % 4 === 3 ? `  WRITE a go  program ${i - 3}\n` : `Write a go program ${i}`;
    const chosen = i % 5 === 4 ? fence(`\tunsafe(${i - 2});`) : fence(`safe(${i});`);
    pairs.push({ id: `g${i}`, lang: "go", question, chosen, rejected: fence(`unsafe(${i});`) });
  }
  for (const seed of [1, 2, 3, 4, 5]) {
    const { train, dev } = splitPairs(pairs, { devFraction: 0.25, seed });
    assert.deepEqual(leaked(train, dev), [], `seed ${seed}`);
    assert.equal(train.length + dev.length, 80);
    // whole groups, so about a quarter: never more, and short by less than the largest group (3 pairs here)
    assert.ok(dev.length <= 20 && dev.length > 20 - 3, `seed ${seed}: ${dev.length} dev pairs`);
  }
  // a split by pair alone (the old one) leaks on this data: the check above can fail
  const byPair = { train: pairs.filter((_, i) => i % 4 !== 0), dev: pairs.filter((_, i) => i % 4 === 0) };
  assert.ok(leaked(byPair.train, byPair.dev).length > 0);
});

test("pairOverlap counts held-out pairs whose prompt or code training holds, exactly and normalised", () => {
  const p = (id: string, question: string, chosen: string, rejected: string): SecurityPair => ({
    id,
    lang: "cpp",
    question,
    chosen: "```cpp\n" + chosen + "\n```",
    rejected: "```cpp\n" + rejected + "\n```",
  });
  const training = [
    p("t1", "Copy a string", "strncpy(d, s, n);", "strcpy(d, s);"),
    p("t2", "Open a file", "f();", "g();"),
  ];
  const heldOut = [
    p("h1", "Copy a string", "a();", "b();"), // the same prompt
    p("h2", "copy  A STRING ", "c();", "d();"), // the same prompt after normalisation
    p("h3", "Sort numbers", "e();", "  strcpy(d,  s);"), // training's insecure code, respaced
    p("h4", "Parse JSON", "h();", "i();"), // nothing shared
  ];
  const o = pairOverlap(heldOut, training);
  assert.deepEqual(
    { n: o.n, questionsExact: o.questionsExact, questions: o.questions, code: o.code, pairs: o.pairs },
    { n: 4, questionsExact: 1, questions: 2, code: 1, pairs: 3 },
  );
  assert.deepEqual(
    o.unseen.map((x) => x.id),
    ["h4"],
  );
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

test(
  "real CyberNative: dev repeats train prompts and code; splitPairs of train leaves no overlap",
  { skip: !fs.existsSync(DATA) && "no ../shared/data" },
  () => {
    const train = readPairs(path.join(DATA, "train.jsonl"));
    const dev = readPairs(path.join(DATA, "dev.jsonl"));
    const o = pairOverlap(dev, train);
    // counted independently (Python over the raw files): 57 dev prompts are train prompts as they are, 58 after
    // whitespace/case normalisation
    assert.equal(o.questionsExact, 57);
    assert.equal(o.questions, 58);
    assert.ok(o.code > 0 && o.pairs >= o.questions && o.pairs === dev.length - o.unseen.length);
    for (const seed of [0, 1]) {
      const s = splitPairs(train, { devFraction: 0.1, seed });
      assert.deepEqual(leaked(s.train, s.dev), []);
      assert.ok(s.dev.length > 0.09 * train.length && s.dev.length <= 0.1 * train.length + 11);
    }
  },
);

test("a run's data line counts pairs per language; pairs labelling one code both ways are warned about, by id", () => {
  const same = "```go\nfmt.Println(x)\n```";
  const file = writeJsonl([
    row("a", "c++"),
    row("b", "go", { chosen: same, rejected: same.replace("fmt", "    fmt") }), // the same code up to whitespace
    row("c", "go"),
    row("d", "java", { chosen: "```java\nrun(y);\n```" }),
    row("e", "java", { rejected: "```java\nRUN(y);\n```" }), // e's insecure code is d's secure one (case aside)
  ]);
  const pairs = readPairs(file);
  assert.equal(describePairs(pairs), "5 pairs (c++ 1, go 2, java 2)");
  const w = labelConflictWarning(pairs, file);
  assert.ok(
    w?.startsWith(`3 of 5 pairs of ${file} label the same code both secure and insecure (e.g. b, d, e)`),
    w!,
  );
  assert.equal(labelConflictWarning(readPairs(file, { languages: ["c++"] }), file), null);
});
