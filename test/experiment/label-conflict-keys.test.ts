/**
 * Judge training leaves out code the pairs label both secure and insecure (e307cb7), so a judge trained before on
 * such pairs is not the judge the code trains now: its key moves. A judge trained on clean pairs is the same judge
 * and keeps the key it had (the keys pinned here are those f7c9ed7's planner, before the change, gave these inputs).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl, type CorpusPair } from "../../src/data/corpus.js";
import { labelConflicts, readPairs } from "../../src/data/pairs.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 4 });
const work = scratchDir("gv-conflict-keys-");
after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(devFile, made.pairs.slice(-2));
const clean = made.pairs.slice(0, 4);
// the last pair's insecure answer is its secure one re-indented and upper-cased: one code under both labels
const last = clean[3]!;
const conflicting: CorpusPair[] = [
  ...clean.slice(0, 3),
  { ...last, rejected: last.chosen.replace(/\n/g, "\n  ").toUpperCase() },
];

function judgeKey(pairs: readonly CorpusPair[], name: string, judge: Record<string, unknown> = {}): string {
  const trainFile = path.join(work, `${name}.jsonl`);
  writeCorpusJsonl(trainFile, pairs);
  const spec = parseExperimentSpec(
    {
      name: "k",
      models: [{ name: "a", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      judge: { train: { base: made.dir, method: "lora", ...judge } },
      methods: ["base"],
    },
    "k.yaml",
  );
  const p = planExperiment(spec, { out: path.join(work, "plan"), write: false });
  assert.equal(p.judges.size, 1);
  return [...p.judges.keys()][0]!;
}

test("a judge on pairs with a label conflict gets a new key; one on clean pairs keeps its key", () => {
  const cleanKey = judgeKey(clean, "clean");
  const conflictKey = judgeKey(conflicting, "conflicting");
  // the premise: the one set is clean, the other labels one code both ways
  assert.equal(labelConflicts(readPairs(path.join(work, "clean.jsonl"))).size, 0);
  assert.equal(labelConflicts(readPairs(path.join(work, "conflicting.jsonl"))).size, 1);
  // f7c9ed7's keys for these two inputs
  assert.equal(cleanKey, "a06a61028a554a35f76e91006e63f099b90d04a1dbb6a43776f8ce317a9875aa");
  assert.notEqual(conflictKey, "5330c960dc4e69c4142b5f3d3ac9fca2fe2f42b578e5e0eb1854954ac2a8dc0c");
  // a subsample that leaves the conflicting pair out trains on clean pairs: keyed as f7c9ed7 keyed it
  assert.equal(
    judgeKey(conflicting, "conflicting", { maxPairs: 3 }),
    "463357ed2210f9e50848347897ff32985dca2fc7a19cf2ece73b705a0cff10a9",
  );
});
