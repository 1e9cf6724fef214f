/**
 * harden: a weight file written in place by another program (`cp` over it, a download into it) while the run trains
 * on it. The model's tensors are views of the mapped file (MAP_PRIVATE shows another writer's bytes on pages this
 * process has not written), so what is trained on mixes old and new bytes; and the fold opens the file again, so
 * its own check (method/fold.ts) sees only the bytes after the write, consistent with themselves. Before the run's
 * own check the output was published: the new base with an update trained on the old. Now the run refuses before
 * publishing, naming the file, and leaves no output and no temporary.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../src/errors.js";
import { identifyInputs, planStages, runHarden, stageIdentify } from "../../src/recipes/harden.js";
import { loadModelWithWeights } from "../../src/models/load.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { readPairs } from "../../src/data/pairs.js";
import { weightsUnchanged } from "../../src/io/safetensors.js";
import { silentLogger } from "../../src/util/log.js";
import { trainJudge } from "../../src/recipes/train-judge.js";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { tinyHardenConfig } from "./tiny-config.js";
import { copyModelDatedInPast, writeInPlace } from "../io/helpers.js";

const work = scratchDir("gv-harden-in-place-");
after(() => fs.rmSync(work, { recursive: true, force: true }));
const made = makeTinyChatModel({ layers: 1 });
const data = path.join(work, "pairs.jsonl");
writeCorpusJsonl(data, made.pairs.slice(0, 4));

/** A copy of the tiny model in a folder of its own, its weight file dated in the past (as a downloaded one is). */
function freshModel(name: string): { dir: string; weights: string } {
  const dir = path.join(work, name);
  return { dir, weights: copyModelDatedInPast(made.dir, dir) };
}

for (const method of ["goodvibe", "lora"] as const) {
  test(`harden (${method}): a weight file written in place during training is refused, naming it; nothing published`, async () => {
    const { dir, weights } = freshModel(`model-${method}`);
    const out = path.join(work, `out-${method}`);
    const cfg = tinyHardenConfig(dir, data, out, {
      method,
      runDir: path.join(work, `run-${method}`),
      dtype: "bfloat16",
    });
    let written = false;
    await assert.rejects(
      runHarden(cfg, {
        onStep: () => {
          if (!written) writeInPlace(weights);
          written = true;
        },
      }),
      (e: unknown) => {
        assert.ok(e instanceof InputError, `expected InputError, got ${(e as Error).stack}`);
        assert.ok(e.message.includes(weights), e.message);
        assert.match(e.message, /written in place/);
        assert.match(e.message, /nothing was published/);
        return true;
      },
    );
    assert.ok(written, "training ran a step");
    assert.equal(fs.existsSync(out), false, "no output folder");
    const left = fs.readdirSync(work).filter((e) => e.includes(`out-${method}`));
    assert.deepEqual(left, [], "no temporary beside it");
  });
}

test("harden: with nothing written into the input, the same run publishes (the check refuses only a change)", async () => {
  const { dir } = freshModel("model-untouched");
  const out = path.join(work, "out-untouched");
  await runHarden(
    tinyHardenConfig(dir, data, out, {
      method: "lora",
      runDir: path.join(work, "run-untouched"),
      dtype: "bfloat16",
    }),
  );
  assert.ok(fs.existsSync(path.join(out, "model.safetensors")));
});

test("harden: a step trained after a weight file was written in place is not checkpointed, so no rerun resumes from mixed bytes", async () => {
  const { dir, weights } = freshModel("model-ckpt");
  const runDir = path.join(work, "run-ckpt");
  const cfg = tinyHardenConfig(dir, data, path.join(work, "out-ckpt"), {
    method: "lora",
    runDir,
    dtype: "float32",
  });
  // 2 epochs of one step, a checkpoint after each; the write comes during step 2, after step 1's checkpoint
  const train = { ...cfg.train, epochs: 2, checkpointEvery: 1 };
  let steps = 0;
  await assert.rejects(
    runHarden(
      { ...cfg, train },
      {
        onStep: () => {
          if (++steps === 2) writeInPlace(weights);
        },
      },
    ),
    /written in place/,
  );
  assert.equal(steps, 2);
  // the slot's checkpoint, if any, is step 1's (computed before the write), never step 2's
  const slots = fs.readdirSync(runDir).filter((n) => n.startsWith("train-lora-"));
  assert.equal(slots.length, 1);
  const state = path.join(runDir, slots[0]!, "checkpoint", "state.json");
  assert.equal((JSON.parse(fs.readFileSync(state, "utf8")) as { step: number }).step, 1);
});

for (const name of ["config.json", "tokenizer.json", "model.safetensors"])
  test(`harden: ${name} replaced by a rename during training is refused before publishing, naming it (the output would pair the old training with the new file)`, async () => {
    const { dir } = freshModel(`model-swap-${name}`);
    const out = path.join(work, `out-swap-${name}`);
    const cfg = tinyHardenConfig(dir, data, out, {
      method: "lora",
      runDir: path.join(work, `run-swap-${name}`),
    });
    const file = path.join(dir, name);
    let swapped = false;
    await assert.rejects(
      runHarden(cfg, {
        onStep: () => {
          if (swapped) return;
          // the same bytes in a new file renamed over the old one: what a sync or an editor's save does
          fs.copyFileSync(file, `${file}.new`);
          fs.renameSync(`${file}.new`, file);
          swapped = true;
        },
      }),
      (e: unknown) => {
        assert.ok(e instanceof InputError, `expected InputError, got ${(e as Error).stack}`);
        assert.ok(e.message.includes(file), e.message);
        assert.match(e.message, /replaced, removed or written/);
        assert.match(e.message, /nothing was published/);
        return true;
      },
    );
    assert.equal(fs.existsSync(out), false, "no output folder");
  });

test("identification: a weight file written in place while it runs saves no neuron map (goodvibe identify and harden's first stage)", async () => {
  const { dir, weights: file } = freshModel("model-identify");
  const cfg = tinyHardenConfig(dir, data, path.join(work, "out-identify"), {
    runDir: path.join(work, "run-identify"),
  });
  const { model, weights } = loadModelWithWeights(dir, { dtype: "float32" });
  const tok = await loadTokenizer(dir);
  const pairs = readPairs(data);
  const slot = planStages(cfg).identify;
  let written = false;
  await assert.rejects(
    stageIdentify(
      model,
      () => identifyInputs(tok, pairs, cfg),
      cfg,
      {
        // the first batch's progress: the write lands while identification reads the weights
        log: {
          ...silentLogger,
          progress: () => {
            if (!written) writeInPlace(file);
            written = true;
          },
        },
        beforeSave: () => weightsUnchanged(weights, "identification"),
      },
      slot,
    ),
    /written in place/,
  );
  assert.ok(written);
  assert.equal(fs.existsSync(path.join(slot.dir, "neurons.json")), false, "no neuron map saved");
});

test("judge training: a config.json replaced while it trains is refused before the judge is published, naming it", async () => {
  const { dir } = freshModel("model-judge");
  const outDir = path.join(work, "judge-out");
  const file = path.join(dir, "config.json");
  let swapped = false;
  await assert.rejects(
    trainJudge({
      baseModelDir: dir,
      pairs: made.pairs.slice(0, 2),
      outDir,
      method: "lora",
      cfg: { epochs: 1, batchSize: 2, gradAccum: 1, warmupRatio: 0, gradientCheckpointing: false },
      hooks: {
        onStep: () => {
          if (swapped) return;
          fs.copyFileSync(file, `${file}.new`);
          fs.renameSync(`${file}.new`, file);
          swapped = true;
        },
      },
    }),
    (e: unknown) =>
      e instanceof InputError &&
      e.message.includes(file) &&
      /replaced, removed or written/.test(e.message) &&
      /nothing was published/.test(e.message),
  );
  assert.ok(swapped);
  assert.equal(fs.existsSync(outDir), false);
});
