/**
 * The judge's training examples on pairs that label a code both ways (real CyberNative: 19 train pairs whose
 * secure and insecure code are the same text up to whitespace): such code is left out and counted, the rest is
 * exactly what the clean pairs alone give.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { judgeExamples } from "../../src/recipes/train-judge.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import type { SecurityPair } from "../../src/data/pairs.js";
import { makeTinyChatModel } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 3 });

test("judgeExamples leaves out code the pairs label both secure and insecure, and counts it", async () => {
  const tok = await loadTokenizer(made.dir);
  const clean = made.pairs.slice(0, 3);
  const fence = (code: string) => "```cpp\n" + code + "\n```";
  const extra: SecurityPair[] = [
    // one pair: the same code under both labels, but for indentation and case
    {
      id: "same",
      lang: "cpp",
      question: "q1",
      chosen: fence("int f() {\n  return g();\n}"),
      rejected: fence("int f() { RETURN g(); }"),
    },
    // two pairs: one's secure code is the other's insecure code
    { id: "a", lang: "cpp", question: "q2", chosen: fence("use(a);"), rejected: fence("bad(a);") },
    { id: "b", lang: "cpp", question: "q3", chosen: fence("bad(a);"), rejected: fence("ok(b);") },
  ];
  const all = judgeExamples(tok, [...clean, extra[0]!, extra[1]!, extra[2]!], 100_000);
  // "same" gives 2 conflicting samples, "a"'s insecure and "b"'s secure sample 2 more
  assert.equal(all.conflicting, 4);
  assert.equal(all.skipped, 0);
  const expected = judgeExamples(tok, clean, 100_000).examples;
  // the clean pairs' examples, then "a"'s secure sample and "b"'s insecure one
  const kept = judgeExamples(
    tok,
    [
      { ...extra[1]!, rejected: fence("x1();") },
      { ...extra[2]!, chosen: fence("x2();") },
    ],
    100_000,
  );
  assert.deepEqual(all.examples, [...expected, kept.examples[0], kept.examples[3]]);
  assert.equal(judgeExamples(tok, clean, 100_000).conflicting, 0);
});
