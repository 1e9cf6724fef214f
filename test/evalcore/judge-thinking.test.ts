/**
 * The LLM judge and Qwen3's thinking switch: a trained judge records the setting its examples were rendered with
 * (only when on: a judge trained at the default writes the record it wrote before), and its prompts follow the
 * record whatever the caller asks; a plain checkpoint is asked with the caller's setting. A template without the
 * switch (the tiny model's ChatML) gives the same prompts and verdicts either way, and keys nothing.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { trainJudge } from "../../src/recipes/train-judge.js";
import { JUDGE_RECORD_FILE, LlmJudge, judgeFolderThinking } from "../../src/eval/judge/llm.js";
import { pairsToLabelledSamples } from "../../src/data/pairs.js";
import { InputError } from "../../src/errors.js";
import { makeTinyChatModel, scratchDir } from "./make-model.js";

const made = makeTinyChatModel({ seed: 3 });
const work = scratchDir();
after(() => {
  fs.rmSync(made.dir, { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
});
const pairs = made.pairs.filter((_, i) => i % 24 === 2);
const cfg = { epochs: 1, batchSize: 2, gradAccum: 1, warmupRatio: 0, gradientCheckpointing: false as const };

test("a judge trained with thinking on records it, and its prompts follow the record; at the default, no field", async () => {
  const on = path.join(work, "on");
  const off = path.join(work, "off");
  const rOn = await trainJudge({
    baseModelDir: made.dir,
    pairs,
    outDir: on,
    method: "full",
    cfg,
    enableThinking: true,
  });
  await trainJudge({ baseModelDir: made.dir, pairs, outDir: off, method: "full", cfg });
  const record = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, JUDGE_RECORD_FILE), "utf8"));
  assert.equal(record(on).enableThinking, true);
  assert.equal("enableThinking" in record(off), false);
  assert.equal(judgeFolderThinking(on), true);
  assert.equal(judgeFolderThinking(off), false);
  assert.equal(judgeFolderThinking(made.dir), undefined, "a plain checkpoint has no record");
  assert.equal(rOn.judge.enableThinking, true);
  // the record wins over the caller's setting; a plain checkpoint takes the caller's
  assert.equal((await LlmJudge.load(on, { enableThinking: false })).enableThinking, true);
  assert.equal((await LlmJudge.load(off, { enableThinking: true })).enableThinking, false);
  const plainOn = await LlmJudge.load(made.dir, { enableThinking: true });
  const plainOff = await LlmJudge.load(made.dir);
  assert.equal(plainOn.enableThinking, true);
  assert.equal(plainOff.enableThinking, false);
  // ChatML has no switch: the same prompt tokens and verdicts, and nothing keyed
  const samples = pairsToLabelledSamples(pairs);
  assert.deepEqual(
    samples.map((s) => plainOn.promptIds(s)),
    samples.map((s) => plainOff.promptIds(s)),
  );
  assert.deepEqual(plainOn.score(samples), plainOff.score(samples));
  assert.deepEqual(plainOn.thinkingKey(), {});
  // a record that is not a boolean is refused, naming the file
  fs.writeFileSync(
    path.join(off, JUDGE_RECORD_FILE),
    JSON.stringify({ ...record(off), enableThinking: "yes" }),
  );
  assert.throws(
    () => judgeFolderThinking(off),
    (e: unknown) => e instanceof InputError && e.message.includes(JUDGE_RECORD_FILE),
  );
});
