/**
 * Training checkpoints are the one long weight write that a stop request must NOT cut short: the checkpoint is
 * what a stop saves. This pins what the resumable loop (method/train.ts) already does when Ctrl-C arrives as a
 * checkpoint is being written: the write completes, the loop stops at its next stop point without writing it
 * again (InterruptedError, exit 130), nothing half-written is left, and the rerun resumes to the tensors of an
 * uninterrupted run. A checkpoint temporary left by a killed run (SIGKILL) is removed by the next save.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { InterruptedError } from "../../src/errors.js";
import { HOST_TAG } from "../../src/io/atomic.js";
import { loadModel } from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import { DEFAULT_TRAIN } from "../../src/method/train-config.js";
import { trainSft, type SftExample } from "../../src/method/train.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const DIR = path.join(FIX, "qwen2");

function examples(): SftExample[] {
  const ts = readFixtureJson(path.join(DIR, "train_step.json.gz"));
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  return Array.from({ length: 6 }, (_, r) => {
    const cut = 12 + (r % 4);
    return { inputIds: ids[r % 2]!.slice(0, cut), labels: labels[r % 2]!.slice(0, cut) };
  });
}

const cfg = {
  ...DEFAULT_TRAIN,
  lr: 5e-3,
  epochs: 2,
  batchSize: 2,
  gradAccum: 1,
  checkpointEvery: 1,
  seed: 3,
  gradientCheckpointing: false,
};

function attach(m: ReturnType<typeof loadModel>) {
  return attachGoodVibe(
    m,
    new Map<string, RowSelection>([
      ["model.layers.1.mlp.down_proj", { rows: [1, 5, 9], clusters: [0, 1, 0], nClusters: 2 }],
    ]),
  );
}

test("a stop requested as a training checkpoint is written: the checkpoint completes, training ends with exit 130 at that step, nothing half-written stays, the rerun resumes to the uninterrupted tensors", async () => {
  const full = loadModel(DIR);
  const mFull = attach(full);
  const r1 = await trainSft(full, mFull, examples(), cfg);
  assert.equal(r1.steps, 6);

  const runDir = scratchDir("gv-stopckpt-");
  // what a killed run leaves: a half-written checkpoint temporary of a dead process of this host
  const dead = spawnSync(process.execPath, ["-e", "0"]).pid!;
  const stale = path.join(runDir, `.checkpoint.tmp-${dead}-1-${HOST_TAG}`);
  fs.mkdirSync(stale);
  fs.writeFileSync(path.join(stale, "tensors.safetensors"), "partial");

  const stop = new AbortController();
  const part = loadModel(DIR);
  let steps = 0;
  await assert.rejects(
    trainSft(part, attach(part), examples(), cfg, {
      runDir,
      hooks: {
        signal: stop.signal,
        // called after step 3's update, right before its checkpoint is written (checkpointEvery 1)
        onStep: (l) => {
          steps++;
          if (l.step === 3) stop.abort(new Error("SIGINT"));
        },
      },
    }),
    (e: unknown) => {
      assert.ok(e instanceof InterruptedError, String(e));
      assert.equal(e.exitCode, 130);
      assert.match(e.message, /training stopped after step 3 of 6 \(checkpoint in /);
      return true;
    },
  );
  assert.equal(steps, 3, "training went on after the stop");
  const state = JSON.parse(fs.readFileSync(path.join(runDir, "checkpoint", "state.json"), "utf8"));
  assert.equal(state.step, 3, "the checkpoint being written when the stop came was not completed");
  assert.deepEqual(
    fs.readdirSync(runDir),
    ["checkpoint"],
    "a temporary (the dead run's or this one's) is left",
  );

  const again = loadModel(DIR);
  const mAgain = attach(again);
  const r3 = await trainSft(again, mAgain, examples(), cfg, { runDir });
  assert.equal(r3.finished, true);
  assert.deepEqual(
    r3.log.map((l) => l.loss),
    r1.log.map((l) => l.loss),
  );
  for (const [name, t] of mFull.trainable)
    assert.deepEqual(
      Array.from(mAgain.trainable.get(name)!.toFloat32Array()),
      Array.from(t.toFloat32Array()),
      name,
    );
  fs.rmSync(runDir, { recursive: true });
});
