/**
 * The rule judge on hostile model output: whatever an answer holds, judging it takes bounded time and returns a
 * verdict. Growth is asserted as a ratio of times on inputs 8x apart (linear: about 8x; the quadratic paths this
 * guards against: about 64x), never as a wall-clock threshold.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_MAX_JUDGED_CHARS,
  judgeCode,
  judgedPrefix,
  type JudgeOptions,
} from "../../src/eval/judge/rules/index.js";
import type { SafetyLanguage } from "../../src/data/languages.js";
import { evaluateSafety } from "../../src/eval/safety.js";
import type { ChatBackend } from "../../src/eval/generate/backend.js";
import type { SecurityPair } from "../../src/data/pairs.js";
import { flowOf } from "../../src/eval/judge/rules/flow.js";
import { Source } from "../../src/eval/judge/rules/source.js";

/** 8x the text may take at most this many times as long: linear is 8x, the quadratic paths 64x (the midpoint, in
 * ratio, is 23x); the margin over 8x absorbs a loaded machine's noise. */
const MAX_GROWTH = 20;

/** This process's CPU time in ms: unlike the wall clock, it does not count the time other processes hold the core. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Best of seven runs of `run` on `code`, in CPU ms. Each run gets its own text (a different comment line after it):
 * the judge keeps what it parsed of the last text it saw, and a second run on the same text would time nothing.
 */
function bestTime(run: (code: string) => unknown, code: string): number {
  let best = Infinity;
  for (let i = 0; i < 7; i++) {
    const text = `${code}\n// run ${i}`;
    const t0 = cpuMs();
    run(text);
    best = Math.min(best, cpuMs() - t0);
  }
  return best;
}

/** time(run(make(8n))) / time(run(make(n))), each the best of seven, the smaller at least 1 ms. */
function growthOf(make: (n: number) => string, n: number, run: (code: string) => unknown): number {
  run(make(n)); // warm the regular expressions and the JIT
  return bestTime(run, make(8 * n)) / Math.max(bestTime(run, make(n)), 1);
}

/** growthOf for the whole judge of one language. */
function growth(make: (n: number) => string, n: number, lang: SafetyLanguage, opts?: JudgeOptions): number {
  return growthOf(make, n, (code) => judgeCode(code, lang, opts));
}

test("judgedPrefix: whole lines up to the limit, the text itself when it fits, never half a surrogate pair", () => {
  assert.equal(judgedPrefix("abc\ndef", 7), "abc\ndef");
  assert.equal(judgedPrefix("abc\ndef\nghi", 9), "abc\ndef");
  assert.equal(judgedPrefix("abc\ndef\nghi", 8), "abc\ndef");
  assert.equal(judgedPrefix("abc\ndef\nghi", 7), "abc");
  // one line longer than the limit: cut inside it
  assert.equal(judgedPrefix("x".repeat(20), 5), "xxxxx");
  // "😀" is two UTF-16 units: the cut falls before it, not between them
  assert.equal(judgedPrefix("abcd😀efg", 5), "abcd");
  for (const s of ["a\n".repeat(50), "x".repeat(99), "ab\r\ncd\r\n".repeat(20)])
    for (const max of [1, 2, 3, 10, 37, 1000]) {
      const p = judgedPrefix(s, max);
      assert.ok(p.length <= max && s.startsWith(p), `${JSON.stringify(s.slice(0, 8))} ${max}`);
    }
});

test("code longer than the judge reads is judged on its first lines, the judgement says so, and lines keep their numbers", () => {
  const filler = "int x = 1;\n".repeat(Math.ceil(DEFAULT_MAX_JUDGED_CHARS / 11) + 10);
  const early = "void f(char* s) {\n  char buf[10];\n  strcpy(buf, s);\n}\n";
  const code = early + filler + "void g(char* s) { char b[4]; strcpy(b, s); }\n";
  const j = judgeCode(code, "cpp");
  assert.deepEqual(j.truncated, {
    judgedChars: judgedPrefix(code, DEFAULT_MAX_JUDGED_CHARS).length,
    totalChars: code.length,
  });
  assert.ok(j.truncated!.judgedChars <= DEFAULT_MAX_JUDGED_CHARS);
  const copies = j.findings.filter((f) => f.ruleId === "cpp/unbounded-copy");
  assert.deepEqual(
    copies.map((f) => f.line),
    [3],
    "the copy in the judged part is found on its line, the one past the limit is not read",
  );
  // everything read when asked, and code within the limit is judged as before
  const whole = judgeCode(code, "cpp", { maxChars: Infinity });
  assert.equal(whole.truncated, undefined);
  assert.ok(whole.findings.some((f) => f.ruleId === "cpp/unbounded-copy" && f.line > 3));
  assert.equal(judgeCode(early, "cpp").truncated, undefined);
  assert.throws(() => judgeCode(early, "cpp", { maxChars: 0 }), RangeError);
});

// Degenerate answers a looping model writes, on which rules took quadratic time (C++ at 32,000 characters:
// blank lines 6.7 s, 'x = x = ...' 15 s). Past the limit, more of them costs no more time.
const DEGENERATE: [string, SafetyLanguage, (n: number) => string][] = [
  ["blank lines", "cpp", (n) => "\n".repeat(n)],
  ["'x = x = ...'", "cpp", (n) => "x" + " = x".repeat(n / 4)],
  ["a.a.a...", "java", (n) => "a" + ".a".repeat(n / 2)],
  ["'x = x = ...'", "go", (n) => "x" + " = x".repeat(n / 4)],
  ["an unterminated raw string", "cpp", (n) => 'R"(' + "a\n".repeat(n / 2)],
];

for (const [what, lang, make] of DEGENERATE)
  test(`judging ${what} (${lang}) past the limit: 8x the text, well under 64x the time`, () => {
    const r = growth(make, DEFAULT_MAX_JUDGED_CHARS / 2, lang);
    assert.ok(r <= MAX_GROWTH, `8x input took ${r.toFixed(1)}x the time`);
  });

test("an evaluation records the answers whose code was longer than the rule judge reads", async () => {
  const long = "```cpp\n" + "int x = 1;\n".repeat(DEFAULT_MAX_JUDGED_CHARS / 8) + "```";
  const pairs: SecurityPair[] = [
    { id: "a", lang: "cpp", question: "q-long", chosen: "", rejected: "" },
    { id: "b", lang: "cpp", question: "q-short", chosen: "", rejected: "" },
  ];
  const backend: ChatBackend = {
    name: "fake",
    generateChat: async (list) =>
      list.map((m) => (m[0]!.content.includes("q-long") ? long : "```cpp\nint main() { return 0; }\n```")),
  };
  const r = await evaluateSafety(pairs, {
    backend,
    modelFingerprint: "m",
    generation: { maxNewTokens: 8 },
  });
  const byId = new Map(r.items.map((it) => [it.id, it]));
  const code = byId.get("a")!.code!;
  assert.equal(byId.get("a")!.rule!.judgedChars, judgedPrefix(code, DEFAULT_MAX_JUDGED_CHARS).length);
  assert.equal(byId.get("b")!.rule!.judgedChars, undefined);
  assert.match(
    r.note,
    new RegExp(
      `1 answers had more code than the rule judge reads \\(${DEFAULT_MAX_JUDGED_CHARS} characters\\)`,
    ),
  );
});

// Below the limit: the paths that were quadratic in a run of blank lines or a long dotted name (8x the text took
// 46x to 95x the time) and are linear now, each with the rule or layer that ran it.
const LINEAR: [string, (n: number) => string, (code: string) => unknown][] = [
  [
    "C++ functions and declarations after blank lines",
    (n) => "int a;" + "\n".repeat(n) + "void f() { }",
    (c) => flowOf(new Source(c, "cpp")),
  ],
  [
    "Java functions and declarations after blank lines",
    (n) => "int a;" + "\n".repeat(n) + "void f() { }",
    (c) => flowOf(new Source(c, "java")),
  ],
  [
    "a Go expression continued over blank lines",
    (n) => "func f() {\nx := a +" + "\n".repeat(n) + "b\n}",
    (c) => flowOf(new Source(c, "go")),
  ],
  [
    "a Swift expression continued over blank lines",
    (n) => "func f() {\nlet x = a +" + "\n".repeat(n) + "b\n}",
    (c) => flowOf(new Source(c, "swift")),
  ],
  [
    "cpp/uninitialized-pointer on blank lines",
    (n) => "\n".repeat(n),
    (c) => judgeCode(c, "cpp", { rules: ["cpp/uninitialized-pointer"], maxChars: Infinity }),
  ],
  [
    "cpp/out-of-bounds on blank lines",
    (n) => "int a;" + "\n".repeat(n) + "void f() { }",
    (c) => judgeCode(c, "cpp", { rules: ["cpp/out-of-bounds"], maxChars: Infinity }),
  ],
  [
    "java/plaintext-password on a.a.a...",
    (n) => "a" + ".a".repeat(n / 2),
    (c) => judgeCode(c, "java", { rules: ["java/plaintext-password"], maxChars: Infinity }),
  ],
  [
    "go/format-string on blank lines",
    (n) => "int a;" + "\n".repeat(n) + "void f() { }",
    (c) => judgeCode(c, "go", { rules: ["go/format-string"], maxChars: Infinity }),
  ],
  [
    "swift/retain-cycle on blank lines",
    (n) => "int a;" + "\n".repeat(n) + "void f() { }",
    (c) => judgeCode(c, "swift", { rules: ["swift/retain-cycle"], maxChars: Infinity }),
  ],
];

for (const [what, make, run] of LINEAR)
  test(`${what}: 8x the text, well under 64x the time`, () => {
    const r = growthOf(make, 32_000, run);
    assert.ok(r <= MAX_GROWTH, `8x input took ${r.toFixed(1)}x the time`);
  });

// The function headers as they were matched before only the last boundary was tried: every boundary, the first one
// (leftmost) winning. The reference for where a function starts and where its body opens.
const REFERENCE_FUNCTION_RE = {
  java: /(?:^|[;{}\n])\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|protected|static|final|synchronized|abstract|native|default)\s+)*(?:<[^>]*>\s*)?(?:[\w.<>[\],?]+(?:\s*\[\s*\])*\s+)?([A-Za-z_]\w*)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*(?:throws\s+[\w.,\s]+)?\{/g,
  cpp: /(?:^|[;{}\n])\s*(?!namespace\b)(?:template\s*<[^>]*>\s*)?(?:(?:static|inline|virtual|explicit|constexpr|extern)\s+)*(?:[\w:<>,]+[\s*&]+)*?((?:\w+::)*~?[A-Za-z_]\w*)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*(?:const\s*)?(?:noexcept\s*)?(?:override\s*)?(?::[^{;]*)?\{/g,
};

test("functions after blank lines and statement boundaries: the same headers, starts and bodies as with every boundary tried", () => {
  const tokens = [
    ";",
    "{",
    "}",
    "\n",
    "\n\n",
    " ",
    "\t",
    "\r\n",
    "int ",
    "f",
    "g(int a) ",
    "(",
    ")",
    "x",
    " = ",
    "void ",
    "public ",
    "static ",
    "@A ",
    "a.b",
    ",",
    "if (x) ",
    "return ",
    "namespace ",
    "template<T> ",
    "~S() ",
    "S::",
  ];
  let seed = 12345;
  const rnd = (k: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % k;
  const texts = ["int a;\n\n\nvoid f() { }\nint b; void g() { }\n} \n  void h() { }"];
  for (let i = 0; i < 3000; i++) {
    let t = "";
    for (let k = 1 + rnd(50); k > 0; k--) t += tokens[rnd(tokens.length)];
    texts.push(t);
  }
  for (const lang of ["cpp", "java"] as const)
    for (const text of texts) {
      const src = new Source(text, lang);
      const expected = [...src.masked.matchAll(REFERENCE_FUNCTION_RE[lang])]
        .map((m) => ({
          name: m[1]!.split("::").pop()!,
          bodyStart: m.index + m[0].length - 1,
          start: m.index + (m[0].length - m[0].trimStart().length),
        }))
        // flow.ts does not take these words for function names
        .filter(
          (f) => !["if", "for", "while", "switch", "catch", "return", "sizeof", "throw"].includes(f.name),
        );
      const found = flowOf(src)
        .functions.filter((f) => !f.name.startsWith("~") || expected.some((e) => e.bodyStart === f.bodyStart))
        .map((f) => ({ name: f.name, bodyStart: f.bodyStart, start: f.start }));
      assert.deepEqual(found, expected, `${lang} ${JSON.stringify(text)}`);
    }
});
