/**
 * A model folder whose weights are missing or cut short is refused by the plan, before any cell, naming the file:
 * a shard that model.safetensors.index.json names but the folder lacks, and a model.safetensors cut short (an
 * interrupted download: its header promises more bytes than the file holds). The check reads only the index, the
 * headers and the files' sizes (io/safetensors.ts checkModelWeights), as openModelWeights would open them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { missingInputs, planExperiment } from "../../src/experiment/plan.js";
import { checkModelWeights, openModelWeights } from "../../src/io/safetensors.js";
import { InputError } from "../../src/errors.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 3 });
const work = scratchDir("gv-experiment-weights-");
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 2));
writeCorpusJsonl(devFile, made.pairs.slice(2, 4));

/** A copy of the tiny model's folder, `change`d. */
function folder(name: string, change: (dir: string) => void): string {
  const dir = path.join(work, name);
  fs.cpSync(made.dir, dir, { recursive: true });
  change(dir);
  return dir;
}

const spec = (models: { name: string; path: string }[]) =>
  parseExperimentSpec(
    { name: "w", models, data: { train: trainFile, dev: devFile }, methods: ["base"], seeds: [0] },
    "w.yaml",
  );

const single = path.join(made.dir, "model.safetensors");

test("the tiny model's own folder passes, and the check names what openModelWeights opens", () => {
  assert.ok(fs.existsSync(single));
  assert.deepEqual(checkModelWeights(made.dir), openModelWeights(made.dir).files);
  assert.deepEqual(missingInputs(spec([{ name: "ok", path: made.dir }]), "w.yaml"), []);
});

test("a shard the index names but the folder lacks: refused at plan time, naming the index and the shard", () => {
  const shard = "model-00002-of-00002.safetensors";
  const dir = folder("absent-shard", (d) => {
    const first = "model-00001-of-00002.safetensors";
    fs.renameSync(path.join(d, "model.safetensors"), path.join(d, first));
    const names = [...openModelWeights(made.dir).tensors.keys()];
    const weightMap = Object.fromEntries(names.map((n) => [n, first]));
    weightMap["extra.weight"] = shard; // the shard a failed download left out
    fs.writeFileSync(
      path.join(d, "model.safetensors.index.json"),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
  });
  const problems = missingInputs(
    spec([
      { name: "ok", path: made.dir },
      { name: "cut", path: dir },
    ]),
    "w.yaml",
  );
  assert.equal(problems.length, 1, problems.join("\n"));
  assert.match(problems[0]!, /^w\.yaml: model "cut" \(models\[1\]\.path\): /);
  assert.ok(problems[0]!.includes(path.join(dir, "model.safetensors.index.json")), problems[0]);
  assert.ok(problems[0]!.includes(`"${shard}" does not exist`), problems[0]);
  assert.throws(
    () =>
      planExperiment(spec([{ name: "cut", path: dir }]), { out: path.join(work, "out-a"), source: "w.yaml" }),
    (e: unknown) => e instanceof InputError && e.message.includes(shard),
  );
});

test("a model.safetensors cut short: refused at plan time, naming the file", () => {
  const dir = folder("truncated", (d) => {
    const f = path.join(d, "model.safetensors");
    fs.truncateSync(f, fs.statSync(f).size - 1000);
  });
  const problems = missingInputs(spec([{ name: "cut", path: dir }]), "w.yaml");
  assert.equal(problems.length, 1, problems.join("\n"));
  assert.ok(
    problems[0]!.includes(`${path.join(dir, "model.safetensors")}: not a valid safetensors file`),
    problems[0],
  );
  assert.match(problems[0]!, /run past the data section/);
  assert.throws(
    () =>
      planExperiment(spec([{ name: "cut", path: dir }]), { out: path.join(work, "out-b"), source: "w.yaml" }),
    (e: unknown) => e instanceof InputError && e.message.includes(path.join(dir, "model.safetensors")),
  );
});
