/**
 * eval --cache keeps GSM8K's generated answers one by one (utility-answers-*.jsonl, eval/utility/answers.ts) beside
 * the finished benchmarks (utility-*.jsonl): with the finished figure gone (a run killed before the benchmark
 * finished leaves none), a rerun takes every answer from the file, generates none (the file gains no line) and
 * reports the figure a full run reported.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { balancedPairs, makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 2 });
after(() => fx.cleanup());

const heldOut = path.join(fx.work, "held.jsonl");
writeCorpusJsonl(heldOut, balancedPairs(fx.model.pairs, 1));
const gsm8k = path.join(fx.work, "gsm8k.jsonl");
fs.writeFileSync(
  gsm8k,
  [1, 2, 3]
    .map((i) => JSON.stringify({ question: `What is ${i} + ${i}?`, answer: `#### ${2 * i}` }))
    .join("\n") + "\n",
);
const cache = path.join(fx.work, "cache");

async function evalJson(): Promise<{ utility: Record<string, unknown> }> {
  const r = await runCli([
    ...["eval", "-m", fx.model.dir, "-d", heldOut, "--cache", cache, "--gsm8k", gsm8k],
    ...["--prompts", "1", "--max-new-tokens", "4", "--preference-pairs", "2", "--json"],
  ]);
  assert.equal(r.code, 0, showRun(r));
  return JSON.parse(r.stdout) as { utility: Record<string, unknown> };
}

const inCache = (prefix: string) => fs.readdirSync(cache).filter((f) => f.startsWith(prefix));
const lines = (f: string) => fs.readFileSync(path.join(cache, f), "utf8").trim().split("\n").length;

test("GSM8K's answers are kept in --cache one by one; a rerun without the finished figure generates none", async () => {
  const first = await evalJson();
  const [answers] = inCache("utility-answers-");
  assert.ok(answers, fs.readdirSync(cache).join(", "));
  assert.equal(lines(answers), 3);
  // the finished benchmark's record gone, as a run stopped inside GSM8K leaves it
  for (const f of inCache("utility-").filter((f) => !f.startsWith("utility-answers-")))
    fs.rmSync(path.join(cache, f));
  const again = await evalJson();
  assert.equal(lines(answers), 3);
  assert.deepEqual(again.utility.gsm8k, first.utility.gsm8k);
});
