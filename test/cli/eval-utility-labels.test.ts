/**
 * What `goodvibe eval` calls its utility figures: an ARC file given as ARC-Easy (`--arc-easy`) is labelled
 * `arc_easy`, never `arc_challenge` (lm-evaluation-harness's two task names), in the JSON, the printed lines, the
 * progress and the cache; GSM8K states its shot count (`nShot`, "0-shot" in the line) and warns when it is asked
 * 0-shot, a figure from --cache included.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { balancedPairs, runCli, showRun } from "./cli-helpers.js";

const model = makeTinyChatModel({ seed: 1 });
const work = scratchDir("gv-eval-labels-");
const heldOut = path.join(work, "held.jsonl");
writeCorpusJsonl(heldOut, balancedPairs(model.pairs, 1));
const rows = (r: object[]) => r.map((x) => JSON.stringify(x)).join("\n") + "\n";
const arc = path.join(work, "arc_easy_test.jsonl");
fs.writeFileSync(
  arc,
  rows([
    {
      id: "q1",
      question: "Which is a gas?",
      choices: { text: ["ice", "steam", "rock"], label: ["A", "B", "C"] },
      answerKey: "B",
    },
    {
      id: "q2",
      question: "Which is a metal?",
      choices: { text: ["wood", "iron"], label: ["A", "B"] },
      answerKey: "B",
    },
  ]),
);
// two items each: a figure of one item has no standard error and is not cached
const gsm8k = path.join(work, "gsm8k.jsonl");
fs.writeFileSync(
  gsm8k,
  rows([
    { question: "What is 2 + 3?", answer: "2 + 3 = 5\n#### 5" },
    { question: "What is 4 + 4?", answer: "4 + 4 = 8\n#### 8" },
  ]),
);

const run = (cache: string, json: boolean, benchmark: string[]) =>
  runCli([
    ...["eval", "-m", model.dir, "-d", heldOut, "--cache", cache, ...benchmark],
    ...["--prompts", "1", "--max-new-tokens", "4", "--preference-pairs", "1"],
    ...(json ? ["--json"] : []),
  ]);

type Out = { utility: Record<string, { metric: string; nShot?: number }> };

test("eval --arc-easy labels its figure arc_easy, not arc_challenge: the JSON, the progress, the line and the cache", async () => {
  const cache = path.join(work, "cache-arc");
  const first = await run(cache, true, ["--arc-easy", arc]);
  assert.equal(first.code, 0, showRun(first));
  const out = JSON.parse(first.stdout) as Out;
  assert.deepEqual(Object.keys(out.utility).sort(), ["arc_easy", "heldout_code_loss"]);
  assert.equal(out.utility.arc_easy!.metric, "acc_norm");
  // progress in requests: 3 + 2 choices
  assert.match(first.stderr, /Z arc_easy 5\/5 \(100\.0%\)/);
  assert.doesNotMatch(first.stderr + first.stdout, /arc_challenge/);
  // from the cache under its own name
  const again = await run(cache, false, ["--arc-easy", arc]);
  assert.equal(again.code, 0, showRun(again));
  assert.match(again.stdout, /^arc_easy: acc_norm \S+ .*\(n=2; se \S+\) \(reused from --cache/m);
  assert.doesNotMatch(again.stdout, /arc_challenge/);
});

test("eval --gsm8k without --gsm8k-train says 0-shot in the JSON (nShot) and the line, and warns, reused or not", async () => {
  const cache = path.join(work, "cache-gsm8k");
  const first = await run(cache, true, ["--gsm8k", gsm8k]);
  assert.equal(first.code, 0, showRun(first));
  assert.equal((JSON.parse(first.stdout) as Out).utility.gsm8k!.nShot, 0);
  assert.match(first.stderr, /GSM8K 0-shot: .*strict match rarely fires.*--gsm8k-train/);
  const again = await run(cache, false, ["--gsm8k", gsm8k]);
  assert.equal(again.code, 0, showRun(again));
  assert.match(
    again.stdout,
    /^gsm8k: exact_match_strict \S+ .*\(n=2; 0-shot; se \S+\) \(reused from --cache/m,
  );
  assert.match(again.stderr, /GSM8K 0-shot: /);
});
