/**
 * A model folder of a family the tool cannot load, or without its tokenizer, stops an experiment before any cell
 * runs, with a message naming the experiment file, the model and its models[i].path: before, the run computed the
 * cells of every model listed before it and then stopped at the bad one's first cell, with a message naming only
 * the folder ("models/bad/config.json: model_type "mistral" is not supported").
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { expandCells, missingInputs, planExperiment } from "../../src/experiment/plan.js";
import { estimateCells } from "../../src/experiment/estimate.js";
import { InputError } from "../../src/errors.js";

const good = makeTinyChatModel({ seed: 3 });
const work = scratchDir("gv-exp-folders-");
after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(good.dir, { recursive: true, force: true });
});

/** A copy of the good model's folder, changed by `edit`. */
function variant(name: string, edit: (dir: string) => void): string {
  const dir = path.join(work, name);
  fs.cpSync(good.dir, dir, { recursive: true });
  edit(dir);
  return dir;
}

const spec = (bad: string) => {
  const train = path.join(work, "train.jsonl");
  fs.writeFileSync(train, "");
  return parseExperimentSpec(
    {
      name: "folders",
      models: [
        { name: "good", path: good.dir },
        { name: "bad", path: bad },
      ],
      data: { train, dev: train },
      methods: ["base"],
    },
    "grid.yaml",
  );
};

const refusal = (e: unknown, ...parts: string[]) => {
  assert.ok(e instanceof InputError, String(e));
  for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
  return true;
};

test("a model of an unsupported family: the run and the plan stop at once, naming file, model and models[1].path", () => {
  const mistral = variant("mistral", (dir) => {
    const file = path.join(dir, "config.json");
    const cfg = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
    fs.writeFileSync(file, JSON.stringify({ ...cfg, model_type: "mistral" }));
  });
  const s = spec(mistral);
  const out = path.join(work, "out-mistral");
  assert.throws(
    () => planExperiment(s, { out, source: "grid.yaml" }),
    (e) => refusal(e, 'grid.yaml: model "bad" (models[1].path): ', 'model_type "mistral" is not supported'),
  );
  assert.equal(fs.existsSync(out), false, "nothing written");
  // `experiment plan`'s estimates read the same config.json
  assert.throws(
    () => estimateCells(s, expandCells(s, "grid.yaml"), "grid.yaml"),
    (e) => refusal(e, 'grid.yaml: model "bad" (models[1].path): ', "mistral"),
  );
});

test("a model folder without tokenizer.json is a missing input of the plan, and the run stops before any cell", () => {
  const noTokenizer = variant("no-tokenizer", (dir) => fs.rmSync(path.join(dir, "tokenizer.json")));
  const s = spec(noTokenizer);
  const missing = missingInputs(s, "grid.yaml");
  assert.equal(missing.length, 1, missing.join("\n"));
  assert.ok(missing[0]!.startsWith('grid.yaml: model "bad": no tokenizer.json in '), missing[0]);
  assert.ok(missing[0]!.includes("(models[1].path)"), missing[0]);
  assert.throws(
    () => planExperiment(s, { out: path.join(work, "out-tok"), source: "grid.yaml" }),
    (e) => refusal(e, 'grid.yaml: model "bad": no tokenizer.json'),
  );
});
