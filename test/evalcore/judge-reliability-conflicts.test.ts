/**
 * Judge reliability on held-out pairs that label some code both secure and insecure (real CyberNative dev: 3 pairs
 * whose two answers are the same code up to whitespace): whatever the judge says, one of the two samples counts
 * wrong, so such code is left out and counted, as judge training leaves it out (e307cb7, data/pairs.ts
 * labelConflicts). The rates are those of the remaining samples, worked by hand.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { LlmJudge, judgeReliability, type JudgeInput } from "../../src/eval/judge/llm.js";
import { measureJudgeReliability } from "../../src/recipes/judge.js";
import { PAPER_JUDGE } from "../../src/data/prompts.js";
import { pairsToLabelledSamples, type SecurityPair } from "../../src/data/pairs.js";
import { InputError } from "../../src/errors.js";
import { makeTinyChatModel, scratchDir } from "./make-model.js";

const made = makeTinyChatModel({ seed: 5 });
const work = scratchDir("gv-rel-conflicts-");
after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});

const fence = (lang: string, code: string) => "```" + lang + "\n" + code + "\n```";
const pairs: SecurityPair[] = [
  {
    id: "a",
    lang: "cpp",
    question: "q",
    chosen: fence("cpp", "safe_a();"),
    rejected: fence("cpp", "bad_a();"),
  },
  { id: "b", lang: "go", question: "q", chosen: fence("go", "safe_b()"), rejected: fence("go", "bad_b()") },
  {
    id: "c",
    lang: "java",
    question: "q",
    chosen: fence("java", "safe_c();"),
    rejected: fence("java", "bad_c();"),
  },
  // the same code under both labels, but for indentation and case: both samples left out
  {
    id: "d",
    lang: "cpp",
    question: "q",
    chosen: fence("cpp", "int f() {\n  return g();\n}"),
    rejected: fence("cpp", "int f() { RETURN g(); }"),
  },
  // its secure answer is b's insecure one: e/secure and b/insecure left out; e/insecure stays
  { id: "e", lang: "go", question: "q", chosen: fence("go", "BAD_B()"), rejected: fence("go", "bad_e()") },
];

test("judgeReliability leaves out code the pairs label both ways, counts it, and rates the rest", () => {
  const p: Record<string, number> = {
    "safe_a();": 0.1,
    "bad_a();": 0.8,
    "safe_b()": 0.6,
    "safe_c();": 0.5,
    "bad_c();": 0.3,
    "bad_e()": 0.7,
  };
  const scored: string[] = [];
  const fake = {
    score: (items: readonly JudgeInput[]) =>
      items.map((it) => {
        scored.push(it.code);
        assert.ok(it.code in p, `scored a left-out sample: ${it.code}`);
        return p[it.code]!;
      }),
  };
  const r = judgeReliability(fake, pairs);
  // 10 samples; d's two, b/insecure and e/secure left out
  assert.equal(r.conflicting, 4);
  assert.equal(r.n, 6);
  assert.deepEqual(scored.sort(), Object.keys(p).sort());
  // insecure = positive: TP bad_a, bad_e; FN bad_c; FP safe_b; TN safe_a, safe_c (0.5 counts as secure)
  assert.deepEqual([r.confusion.tp, r.confusion.fn, r.confusion.fp, r.confusion.tn], [2, 1, 1, 2]);
  assert.equal(r.accuracy, 4 / 6);
  // clean pairs: nothing left out
  assert.equal(judgeReliability(fake, pairs.slice(0, 1)).conflicting, 0);
  // nothing left to judge: a clear error, not a rate over no samples
  assert.throws(() => judgeReliability(fake, [pairs[3]!]), InputError);
});

test("measureJudgeReliability records and says how many samples it left out", async () => {
  const lines: string[] = [];
  const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), progress() {} };
  const opts = {
    judgeDir: made.dir,
    heldOut: pairs,
    convention: PAPER_JUDGE,
    cacheFile: path.join(work, "reliability.json"),
    log,
  };
  const [e] = await measureJudgeReliability(opts);
  assert.equal(e!.n, 6);
  assert.equal(e!.conflicting, 4);
  assert.ok(
    lines.some((l) => /left out 4 of 10 samples/.test(l)),
    lines.join("\n"),
  );
  // the judge's own scores on the six kept samples, the reference for its confusion counts
  const judge = await LlmJudge.load(made.dir, { convention: PAPER_JUDGE });
  const kept = pairsToLabelledSamples(pairs).filter((s) =>
    ["a/secure", "a/insecure", "b/secure", "c/secure", "c/insecure", "e/insecure"].includes(s.id),
  );
  const flagged = judge.score(kept).map((x) => x > 0.5);
  const c = e!.confusion;
  assert.equal(c.tp + c.fn, 3);
  assert.equal(c.tp, kept.filter((s, i) => !s.secure && flagged[i]).length);
  assert.equal(c.fp, kept.filter((s, i) => s.secure && flagged[i]).length);
  // cached under a key of its own: a rerun reads it back
  assert.deepEqual(await measureJudgeReliability(opts), [e]);
});
