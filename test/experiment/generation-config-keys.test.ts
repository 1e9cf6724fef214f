/**
 * An experiment evaluates each model as its folder's generation_config.json asks (its repetition_penalty, applied
 * as transformers does; eval.generationConfig false turns it off). Cells evaluated before it was applied were made
 * without the penalty: for a model whose folder sets one, the cells (base and trained) are keyed anew so they are
 * computed again; for every other model, or with the setting off, no key moves (the keys of a folder without the
 * file are the reference: generation_config.json is not part of the model's hash otherwise).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 5 });
const work = scratchDir("gv-genconfig-keys-");
after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 4));
writeCorpusJsonl(devFile, made.pairs.slice(-2));

function cellKeys(generationConfig?: boolean): string[] {
  const spec = parseExperimentSpec(
    {
      name: "k",
      models: [{ name: "a", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      methods: ["base", "goodvibe", "lora"],
      ...(generationConfig === undefined ? {} : { eval: { generationConfig } }),
    },
    "k.yaml",
  );
  return planExperiment(spec, { out: path.join(work, "plan"), write: false }).cells.map((c) => c.key);
}

const genFile = path.join(made.dir, "generation_config.json");

test("no penalty in the folder: the keys of a folder without generation_config.json, whatever the setting", () => {
  assert.ok(!fs.existsSync(genFile));
  const reference = cellKeys();
  assert.equal(new Set(reference).size, reference.length);
  assert.deepEqual(cellKeys(false), reference);
  assert.deepEqual(cellKeys(true), reference);
  // Llama 3.1 Instruct's file: sampling fields only
  fs.writeFileSync(genFile, JSON.stringify({ do_sample: true, temperature: 0.6, top_p: 0.9 }));
  assert.deepEqual(cellKeys(), reference);
  // Qwen2.5 Instruct's penalty: every cell (base and trained) keyed anew; with the setting off, as before
  fs.writeFileSync(genFile, JSON.stringify({ repetition_penalty: 1.05, top_k: 20 }));
  const applied = cellKeys();
  for (const [i, k] of applied.entries()) assert.notEqual(k, reference[i]);
  assert.deepEqual(cellKeys(true), applied);
  assert.deepEqual(cellKeys(false), reference);
  fs.rmSync(genFile);
});
