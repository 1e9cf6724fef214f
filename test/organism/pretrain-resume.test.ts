/**
 * An interrupted organism pretraining resumes only the same run: with the same settings it ends bit-identical to an
 * uninterrupted one; with another dtype, thread count, learning rate, documents or model shape it is refused, naming
 * the setting, and the checkpoint is left as it was. (A rerun with `--set threads=1 --set dtype=bfloat16` once
 * resumed a float32, 2-thread checkpoint in bfloat16 and published the mixed result.)
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import {
  organismConfigJson,
  pretrainOrganism,
  type OrganismShape,
  type PretrainSettings,
} from "../../src/organism/pretrain.js";
import { silentLogger, type Logger } from "../../src/util/log.js";
import { InterruptedError } from "../../src/errors.js";
import { createRng } from "../../src/util/random.js";

const work = scratchDir("gv-pretrain-resume-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

const SHAPE: OrganismShape = {
  vocabSize: 64,
  hiddenSize: 16,
  intermediateSize: 32,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
};
const IDS = { bos: 1, eos: 2, pad: 0 };
const SETTINGS: PretrainSettings = {
  seed: 5,
  blockLength: 16,
  batchSize: 2,
  epochs: 1,
  lr: 3e-3,
  warmupRatio: 0.05,
};
const rng = createRng(11);
const DOCS = Array.from({ length: 12 }, () => Array.from({ length: 20 }, () => 3 + rng.int(61)));

type Run = {
  docs?: number[][];
  settings?: Partial<PretrainSettings>;
  shape?: Partial<OrganismShape>;
  threads?: number;
  dtype?: "float32" | "bfloat16";
  /** abort after this many steps */
  stopAfter?: number;
};

async function pretrain(runDir: string, r: Run = {}) {
  const controller = new AbortController();
  const log: Logger = {
    ...silentLogger,
    progress: (_stage, done) => {
      if (r.stopAfter !== undefined && done >= r.stopAfter) controller.abort();
    },
  };
  const p = await pretrainOrganism({
    configJson: organismConfigJson({ ...SHAPE, ...r.shape }, IDS),
    docs: r.docs ?? DOCS,
    settings: { ...SETTINGS, ...r.settings },
    padTokenId: IDS.pad,
    runDir,
    threads: r.threads ?? 1,
    dtype: r.dtype ?? "float32",
    log,
    signal: controller.signal,
  });
  return {
    steps: p.train.steps,
    weights: new Map([...p.method.foldedWeights()].map(([n, t]) => [n, Buffer.from(t.float().toBytes())])),
  };
}

test("organism pretraining: an interrupted run resumes bit-identically with the same settings and refuses any other", async () => {
  const whole = await pretrain(path.join(work, "whole"));
  assert.equal(whole.steps, 8, "240 tokens: 15 blocks of 16 in batches of 2, one epoch");

  const runDir = path.join(work, "interrupted");
  await assert.rejects(pretrain(runDir, { stopAfter: 2 }), InterruptedError);
  const ckpt = path.join(runDir, "checkpoint");
  const stateFile = path.join(ckpt, "state.json");
  assert.equal(JSON.parse(fs.readFileSync(stateFile, "utf8")).step, 2);
  const saved = fs.readFileSync(stateFile, "utf8");

  const changed: [string, Run, RegExp][] = [
    ["dtype", { dtype: "bfloat16" }, /dtype: "float32" → "bfloat16"/],
    ["threads", { threads: 2 }, /settings\.threads: 1 → 2/],
    ["lr", { settings: { lr: 1e-3 } }, /train\.lr: 0\.003 → 0\.001/],
    ["seed", { settings: { seed: 6 } }, /train\.seed: 5 → 6/],
    ["documents", { docs: DOCS.map((d, i) => (i === 3 ? d.slice(1) : d)) }, /the training examples changed/],
    ["model config", { shape: { intermediateSize: 48 } }, /model\.config\.intermediateSize: 32 → 48/],
  ];
  for (const [what, run, expect] of changed) {
    await assert.rejects(pretrain(runDir, run), (e: Error) => {
      assert.match(e.message, new RegExp(`^${ckpt.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `), what);
      assert.match(e.message, /belongs to another training run/, what);
      assert.match(e.message, expect, `${what}: ${e.message}`);
      assert.match(e.message, /delete .* to start over/, what);
      return true;
    });
    assert.equal(fs.readFileSync(stateFile, "utf8"), saved, `${what}: the checkpoint was changed`);
  }

  const resumed = await pretrain(runDir);
  assert.equal(resumed.steps, 8);
  assert.deepEqual([...resumed.weights.keys()], [...whole.weights.keys()]);
  for (const [n, b] of whole.weights) assert.ok(resumed.weights.get(n)!.equals(b), `${n} differs`);
});
