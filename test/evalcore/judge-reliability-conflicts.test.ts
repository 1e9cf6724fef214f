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
import {
  LlmJudge,
  reliabilityOfScores,
  reliabilitySamples,
  type JudgeInput,
} from "../../src/eval/judge/llm.js";
import { measureJudgeReliability } from "../../src/recipes/judge.js";
import { PAPER_JUDGE } from "../../src/data/prompts.js";
import { pairsToLabelledSamples, type SecurityPair } from "../../src/data/pairs.js";
import { InputError, InterruptedError } from "../../src/errors.js";
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

/** A held-out reliability as measureJudgeReliability and judge train compose it, with `judge` scoring at once. */
function pairsReliability(
  judge: { score(items: readonly JudgeInput[]): number[] },
  pairs: readonly SecurityPair[],
) {
  const { kept, conflicting } = reliabilitySamples(pairs);
  return { ...reliabilityOfScores(kept, judge.score(kept)), conflicting };
}

test("reliabilitySamples leaves out code the pairs label both ways and counts it; the rest is rated", () => {
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
  const r = pairsReliability(fake, pairs);
  // 10 samples; d's two, b/insecure and e/secure left out
  assert.equal(r.conflicting, 4);
  assert.equal(r.n, 6);
  assert.deepEqual(scored.sort(), Object.keys(p).sort());
  // insecure = positive: TP bad_a, bad_e; FN bad_c; FP safe_b; TN safe_a, safe_c (0.5 counts as secure)
  assert.deepEqual([r.confusion.tp, r.confusion.fn, r.confusion.fp, r.confusion.tn], [2, 1, 1, 2]);
  assert.equal(r.accuracy, 4 / 6);
  // clean pairs: nothing left out
  assert.equal(pairsReliability(fake, pairs.slice(0, 1)).conflicting, 0);
  // nothing left to judge: a clear error, not a rate over no samples
  assert.throws(() => pairsReliability(fake, [pairs[3]!]), InputError);
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

/** Counts the samples LlmJudge really scores (forward passes), whatever the caller, until restore(). */
function countScoredSamples(): { n: number; restore(): void } {
  const proto = LlmJudge.prototype as unknown as {
    scoreBatch: (p: unknown, idx: number[], out: unknown) => void;
  };
  const original = proto.scoreBatch;
  const counter = { n: 0, restore: () => void (proto.scoreBatch = original) };
  proto.scoreBatch = function (p, idx, out) {
    counter.n += idx.length;
    return original.call(this, p, idx, out);
  };
  return counter;
}

test("measureJudgeReliability stopped mid-way keeps the scored batches: the rerun scores only the rest, to the uninterrupted result; another judge reuses none", async () => {
  const scored = countScoredSamples();
  try {
    const lines: string[] = [];
    const logTo = (onProgress: (done: number) => void = () => {}) => ({
      info: (m: string) => lines.push(m),
      warn: (m: string) => lines.push(m),
      progress: (_s: string, done: number) => onProgress(done),
    });
    const base = { judgeDir: made.dir, heldOut: pairs, convention: PAPER_JUDGE, batchSize: 1 };
    // the reference: one uninterrupted run (6 kept samples, one per batch)
    const whole = await measureJudgeReliability({
      ...base,
      cacheFile: path.join(work, "whole", "reliability.json"),
      log: logTo(),
    });
    assert.equal(scored.n, 6);
    // stopped after its second batch
    const dir = path.join(work, "stopped");
    fs.mkdirSync(dir);
    const cacheFile = path.join(dir, "reliability.json");
    const stop = new AbortController();
    scored.n = 0;
    await assert.rejects(
      measureJudgeReliability({
        ...base,
        cacheFile,
        signal: stop.signal,
        log: logTo((done) => done >= 2 && stop.abort()),
      }),
      InterruptedError,
    );
    assert.equal(scored.n, 2);
    assert.equal(fs.existsSync(cacheFile), false, "no reliability written by the stopped run");
    const scoresFile = path.join(dir, "reliability-scores.jsonl");
    // another judge given those scores reuses none of them
    const other = makeTinyChatModel({ seed: 6 });
    try {
      fs.mkdirSync(path.join(work, "other"));
      fs.copyFileSync(scoresFile, path.join(work, "other", "reliability-scores.jsonl"));
      scored.n = 0;
      const [o] = await measureJudgeReliability({
        ...base,
        judgeDir: other.dir,
        cacheFile: path.join(work, "other", "reliability.json"),
        log: logTo(),
      });
      assert.equal(scored.n, 6, "another judge scored every sample itself");
      const { kept } = reliabilitySamples(pairs);
      const own = (await LlmJudge.load(other.dir, { convention: PAPER_JUDGE })).score(kept, { batchSize: 1 });
      const { tp, fp, tn, fn } = reliabilityOfScores(kept, own).confusion;
      assert.deepEqual(o!.confusion, { tp, fp, tn, fn });
    } finally {
      fs.rmSync(other.dir, { recursive: true, force: true });
    }
    // the rerun: only the 4 left scored, the same reliability as the uninterrupted run, bit for bit
    scored.n = 0;
    lines.length = 0;
    const resumed = await measureJudgeReliability({ ...base, cacheFile, log: logTo() });
    assert.equal(scored.n, 4);
    assert.ok(
      lines.some((l) => /2 of 6 samples' scores taken from an earlier run/.test(l)),
      lines.join("\n"),
    );
    assert.deepEqual(resumed, whole);
    assert.equal(fs.existsSync(scoresFile), false, "the scores are superseded by reliability.json");
  } finally {
    scored.restore();
  }
});

test("measureJudgeReliability: a judge trained again in place (its folder's files replaced) is measured anew, not given its old reliability", async () => {
  const scored = countScoredSamples();
  const dir = path.join(work, "retrained-judge");
  fs.cpSync(made.dir, dir, { recursive: true });
  const other = makeTinyChatModel({ seed: 7 });
  try {
    const opts = {
      judgeDir: dir,
      heldOut: pairs,
      convention: PAPER_JUDGE,
      cacheFile: path.join(work, "retrained", "reliability.json"),
    };
    fs.mkdirSync(path.dirname(opts.cacheFile));
    await measureJudgeReliability(opts);
    assert.equal(scored.n, 6);
    // unchanged: read back, nothing scored
    scored.n = 0;
    await measureJudgeReliability(opts);
    assert.equal(scored.n, 0);
    // "retrained": another judge's weights written over this folder's, same path, same file names
    for (const f of fs.readdirSync(other.dir).filter((f) => f.endsWith(".safetensors")))
      fs.copyFileSync(path.join(other.dir, f), path.join(dir, f));
    const [e] = await measureJudgeReliability(opts);
    assert.equal(scored.n, 6, "the retrained judge scored every sample");
    // the reference: the new weights' own scores of the kept samples
    const { kept } = reliabilitySamples(pairs);
    const own = (await LlmJudge.load(other.dir, { convention: PAPER_JUDGE })).score(kept);
    const { tp, fp, tn, fn } = reliabilityOfScores(kept, own).confusion;
    assert.deepEqual(e!.confusion, { tp, fp, tn, fn });
  } finally {
    scored.restore();
    fs.rmSync(other.dir, { recursive: true, force: true });
  }
});
