/**
 * A cell that shares another's key (the same settings under another name: here a grid value equal to the default,
 * so the grid's cell is the plain GoodVibe cell) takes that cell's result: the run summary counts it as shared, not as computed now and not as cached, and a
 * rerun counts the first as cached and the second again as shared. The counts add up to the plan's cells.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { DEFAULT_CLUSTER } from "../../src/method/goodvibe/config.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 3 });
const work = scratchDir("gv-experiment-shared-");
const byLang = new Map<string, typeof made.pairs>();
for (const p of made.pairs) byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), p]);
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(
  trainFile,
  [...byLang.values()].flatMap((ps) => ps.slice(0, 1)),
);
writeCorpusJsonl(
  devFile,
  [...byLang.values()].flatMap((ps) => ps.slice(-1)),
);

const spec = () =>
  parseExperimentSpec(
    {
      name: "shared",
      models: [{ name: "tiny", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      eval: { maxPrompts: 2, maxNewTokens: 4, batchSize: 2 },
      methods: ["goodvibe"],
      seeds: [0],
      defaults: {
        identify: { topK: 4, maxPairs: 2, maxLength: 256, batchSize: 2, gradientCheckpointing: false },
        train: {
          epochs: 1,
          maxPairs: 2,
          batchSize: 2,
          gradAccum: 1,
          maxLength: 256,
          gradientCheckpointing: false,
        },
      },
      grids: [{ name: "threshold", key: "cluster.threshold", values: [DEFAULT_CLUSTER.threshold] }],
    },
    "shared.yaml",
  );

test("a cell of another cell's key is counted as shared, not computed or cached", async () => {
  const out = path.join(work, "run");
  const plan = planExperiment(spec(), { out });
  assert.equal(plan.cells.length, 2);
  assert.equal(plan.cells[0]!.key, plan.cells[1]!.key, "the default's value: one key");
  const computed: string[] = [];
  const r = await runExperiment(plan, { render: false, onCellStart: (c) => computed.push(c.id) });
  assert.equal(computed.length, 1, "the shared key is computed once");
  assert.deepEqual(r.ran, [plan.cells[0]!.id]);
  assert.deepEqual(r.skipped, [], "nothing was cached before this run");
  assert.deepEqual(r.shared, [plan.cells[1]!.id]);
  assert.equal(r.results!.cells.length, 2);

  const again = await runExperiment(planExperiment(spec(), { out }), { render: false });
  assert.deepEqual(again.ran, []);
  assert.deepEqual(again.skipped, [plan.cells[0]!.id], "read from its cell file");
  assert.deepEqual(again.shared, [plan.cells[1]!.id]);
});
