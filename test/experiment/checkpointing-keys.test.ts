/**
 * Gradient checkpointing does not change the weights (test/method/checkpointing.test.ts), so "auto" must not make
 * finished work look new: harden's stage slots and run key, an experiment's cells and its trained judge are keyed
 * with "auto" exactly as with `true`, the default before "auto" existed (keys made then are found again); `false`
 * keeps the keys it always had, which differ. The keys compared against are those the `true` setting gives, whose
 * inputs hold the setting as they always did.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { planStages } from "../../src/recipes/harden.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { tinyHardenConfig } from "../recipes/tiny-config.js";

const made = makeTinyChatModel({ seed: 4 });
const work = scratchDir("gv-ckpt-keys-");
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 4));
writeCorpusJsonl(devFile, made.pairs.slice(-2));

test("harden: a run with checkpointing auto has the stage slots and run key of one with true; false has its own", () => {
  const plan = (g: boolean | "auto") => {
    const cfg = tinyHardenConfig(made.dir, trainFile, path.join(work, "out"));
    return planStages({ ...cfg, train: { ...cfg.train, gradientCheckpointing: g } });
  };
  const [on, auto, off] = [plan(true), plan("auto"), plan(false)];
  assert.equal(auto.runKey, on.runKey);
  assert.equal(auto.train.dir, on.train.dir);
  assert.equal((auto.train.inputs.train as Record<string, unknown>).gradientCheckpointing, true);
  assert.notEqual(off.runKey, on.runKey);
});

test("experiment: cells and the trained judge with checkpointing auto keep the keys they had with true", () => {
  const keys = (train: boolean | "auto" | undefined, judge: boolean | "auto" | undefined) => {
    const spec = parseExperimentSpec(
      {
        name: "k",
        models: [{ name: "a", path: made.dir }],
        data: { train: trainFile, dev: devFile },
        judge: {
          train: {
            base: made.dir,
            method: "lora",
            ...(judge === undefined ? {} : { gradientCheckpointing: judge }),
          },
        },
        methods: ["base", "goodvibe", "lora"],
        defaults: train === undefined ? {} : { train: { gradientCheckpointing: train } },
      },
      "k.yaml",
    );
    const p = planExperiment(spec, { out: path.join(work, "plan") });
    return { cells: p.cells.map((c) => [c.method, c.key]), judges: [...p.judges.keys()] };
  };
  const on = keys(true, true);
  assert.deepEqual(keys("auto", "auto"), on);
  // the defaults (whatever they are now) are keyed as true or auto are
  assert.deepEqual(keys(undefined, undefined), on);
  assert.notDeepEqual(keys(true, false).judges, on.judges);
  // training without checkpointing: the trained cells have their own keys, the base cell (not trained) keeps its
  const off = keys(false, true);
  assert.deepEqual(off.judges, on.judges);
  assert.deepEqual(
    off.cells.map(([m, k], i) => [m, k === on.cells[i]![1]]),
    [
      ["base", true],
      ["goodvibe", false],
      ["lora", false],
    ],
  );
});

test("LoRA with dropout, trained checkpointed: its finished work from before the masks were kept is not reused", () => {
  // before 5d3bba2 a checkpointed pass drew new dropout masks when it recomputed a layer, so LoRA runs with dropout
  // trained under true (then the default) hold other weights than the code makes now: their keys must differ
  const plan = (method: "lora" | "goodvibe", dropout: number, g: boolean | "auto") => {
    const cfg = tinyHardenConfig(made.dir, trainFile, path.join(work, "out"));
    return planStages({
      ...cfg,
      method,
      lora: { ...cfg.lora, dropout },
      train: { ...cfg.train, gradientCheckpointing: g },
    }).train.inputs;
  };
  assert.equal(plan("lora", 0.05, true).dropoutMasks, "forward's");
  assert.equal(plan("lora", 0.05, "auto").dropoutMasks, "forward's", "auto is keyed as true");
  // the same bits before and after: no dropout, checkpointing off, or no LoRA at all
  for (const [m, d, g] of [
    ["lora", 0, true],
    ["lora", 0.05, false],
    ["goodvibe", 0.05, true],
  ] as const)
    assert.equal("dropoutMasks" in plan(m, d, g), false, `${m} dropout ${d} checkpointing ${g}`);

  // an experiment's LoRA cell carries the mark in its harden inputs; its GoodVibe and base cells do not
  const spec = parseExperimentSpec(
    {
      name: "k",
      models: [{ name: "a", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      methods: ["base", "goodvibe", "lora"],
    },
    "k.yaml",
  );
  const cells = planExperiment(spec, { out: path.join(work, "plan-dropout") }).cells;
  const mark = (m: string) => {
    const inputs = cells.find((c) => c.method === m)!.inputs as { harden?: Record<string, unknown> };
    return inputs.harden?.dropoutMasks;
  };
  assert.deepEqual(["base", "goodvibe", "lora"].map(mark), [undefined, undefined, "forward's"]);
});
