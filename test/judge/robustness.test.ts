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

/** Best of `reps` runs, in ms. */
function bestTime(f: () => void, reps = 3): number {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** time(8x input) / time(input), each the best of three. */
function growth(make: (n: number) => string, n: number, lang: SafetyLanguage, opts?: JudgeOptions): number {
  const small = make(n);
  const big = make(8 * n);
  judgeCode(small + " ", lang, opts); // warm the regexes and the JIT
  return (
    bestTime(() => judgeCode(big, lang, opts)) /
    Math.max(
      bestTime(() => judgeCode(small, lang, opts)),
      0.5,
    )
  );
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
  test(`judging ${what} (${lang}) past the limit: 8x the text, at most about 8x the time`, () => {
    const r = growth(make, DEFAULT_MAX_JUDGED_CHARS / 2, lang);
    assert.ok(r <= 12, `8x input took ${r.toFixed(1)}x the time`);
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
