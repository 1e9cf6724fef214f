/**
 * GSM8K's few-shot prompts changed on 2026-12-01 (each question's shots drawn as lm-evaluation-harness draws them,
 * eval/utility/gsm8k.ts; the first 5 train examples for all before): a cell evaluated with few-shot GSM8K before
 * holds figures of other prompts, so it must not be found again, else an experiment would set a cached base asked
 * the old way against a new cell asked the new way. Cells without few-shot GSM8K (0-shot, or no GSM8K) asked the
 * same prompts and keep the keys they had. "The key they had" is rebuilt from the inputs as the plan recorded them
 * before the change: the eval inputs were `{...eval, utility: <file hashes>}` (plus codeDocuments, not used here).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { canonicalJson, fileHash, sha256 } from "../../src/io/hash.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 5 });
const work = scratchDir("gv-gsm-keys-");
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 4));
writeCorpusJsonl(devFile, made.pairs.slice(-2));
const gsmTest = path.join(work, "gsm-test.jsonl");
const gsmTrain = path.join(work, "gsm-train.jsonl");
fs.writeFileSync(gsmTest, JSON.stringify({ question: "1+1?", answer: "#### 2" }) + "\n");
fs.writeFileSync(gsmTrain, JSON.stringify({ question: "2+2?", answer: "#### 4" }) + "\n");

function plan(utility: Record<string, string>) {
  const spec = parseExperimentSpec(
    {
      name: "g",
      models: [{ name: "a", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      methods: ["base", "goodvibe"],
      eval: { utility },
    },
    "g.yaml",
  );
  return { spec, cells: planExperiment(spec, { out: path.join(work, "plan") }).cells };
}

/** The key a cell had before 2026-12-01: its inputs with the eval inputs as the plan then made them. */
function keyBefore(cell: { inputs: unknown }, evalSpec: Record<string, unknown>): string {
  const {
    utility,
    generationConfig: _g,
    ...rest
  } = evalSpec as {
    utility: Record<string, string>;
    generationConfig?: boolean;
  };
  const files = Object.fromEntries(Object.entries(utility).map(([k, v]) => [k, fileHash(v)]));
  const inputs = { ...(cell.inputs as Record<string, unknown>), eval: { ...rest, utility: files } };
  return sha256(canonicalJson(inputs));
}

test("experiment: cells with few-shot GSM8K are keyed anew; 0-shot GSM8K cells keep their keys", () => {
  const zero = plan({ gsm8k: gsmTest });
  assert.equal(zero.cells.length, 2);
  for (const c of zero.cells)
    assert.equal(c.key, keyBefore(c, zero.spec.eval), `${c.method}: 0-shot keeps its key`);

  const few = plan({ gsm8k: gsmTest, gsm8kTrain: gsmTrain });
  // the trained cell names the base cell's key (as it is now: its own eval inputs differ either way)
  for (const c of few.cells)
    assert.notEqual(
      c.key,
      keyBefore(c, few.spec.eval),
      `${c.method}: a cell asked with the first-5 shots would be reused`,
    );
});
