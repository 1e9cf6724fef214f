/**
 * Gradient accumulation's semantics (§4.2: per-device batch 1 with accumulation; README "Defaults follow the paper"):
 * an optimiser step's loss is the mean NLL per answer token over every example of the step — transformers' Trainer
 * since 4.46 (num_items_in_batch) — not the mean of each micro-batch's own mean. Checked against a plain per-example
 * forward with a float64 log-softmax in JS, and as a property: batch 1 × accumulation 3 takes the same step (loss,
 * gradient norm, trained U) as one right-padded micro-batch of 3.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { DEFAULT_TRAIN } from "../../src/method/train-config.js";
import { IGNORE_INDEX } from "../../src/method/losses.js";
import { trainSft, type SftExample } from "../../src/method/train.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const DIR = path.join(FIX, "qwen2");

/** three examples of different lengths and different answer-token counts */
function examples(): SftExample[] {
  const ts = readFixtureJson(path.join(DIR, "train_step.json.gz"));
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  return [
    { inputIds: ids[0].slice(0, 16), labels: labels[0].slice(0, 16) },
    { inputIds: ids[1].slice(0, 11), labels: labels[1].slice(0, 11) },
    { inputIds: ids[0].slice(0, 13), labels: labels[0].slice(0, 13) },
  ];
}

/** Σ over answer tokens of -log p(label_t | prefix) and their count, one example alone, log-softmax in float64 */
function nll(model: ReturnType<typeof loadModel>, e: SftExample): { sum: number; n: number } {
  const logits = noGrad(() => model.forward(Tensor.fromArray(e.inputIds, [1, e.inputIds.length], "int64")));
  const V = logits.size(-1);
  const z = logits.toFloat32Array();
  let sum = 0;
  let n = 0;
  for (let t = 1; t < e.labels.length; t++) {
    if (e.labels[t] === IGNORE_INDEX) continue;
    const row = z.subarray((t - 1) * V, t * V);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let s = 0;
    for (const v of row) s += Math.exp(v - max);
    sum += max + Math.log(s) - row[e.labels[t]!]!;
    n++;
  }
  return { sum, n };
}

test("gradient accumulation: a step's loss is the mean per answer token over the whole step; batch 1 × 3 micro-batches = one batch of 3", async () => {
  const ex = examples();
  const sel = new Map<string, RowSelection>([
    ["model.layers.1.mlp.down_proj", { rows: [1, 5, 9], clusters: [0, 1, 0], nClusters: 2 }],
    ["model.layers.0.self_attn.q_proj", { rows: [2, 3], clusters: [0, 0], nClusters: 1 }],
  ]);
  const base = loadModel(DIR);
  const per = ex.map((e) => nll(base, e));
  assert.ok(new Set(per.map((p) => p.n)).size > 1, "the examples have different answer-token counts");
  const perToken = per.reduce((a, p) => a + p.sum, 0) / per.reduce((a, p) => a + p.n, 0);
  const perMicro = per.reduce((a, p) => a + p.sum / p.n, 0) / per.length;
  assert.ok(Math.abs(perToken - perMicro) > 1e-3 * perToken, "the two semantics differ on these examples");
  const cfg = {
    ...DEFAULT_TRAIN,
    lr: 1e-3,
    epochs: 1,
    warmupRatio: 0, // the step runs at the full lr: the update is the gradient's, not zero
    maxGradNorm: null,
    gradientCheckpointing: false as const,
  };
  const run = async (batchSize: number, gradAccum: number) => {
    const model = loadModel(DIR);
    const m = attachGoodVibe(model, sel);
    const r = await trainSft(model, m, ex, { ...cfg, batchSize, gradAccum });
    assert.equal(r.steps, 1);
    return { log: r.log[0]!, U: new Map([...m.trainable].map(([n, t]) => [n, t.toFloat32Array()])) };
  };
  const accumulated = await run(1, 3);
  const batched = await run(3, 1);
  assert.ok(
    Math.abs(accumulated.log.loss - perToken) <= 1e-5 * perToken,
    `accumulated loss ${accumulated.log.loss} vs per-token ${perToken} (per-micro-batch mean ${perMicro})`,
  );
  assert.ok(Math.abs(batched.log.loss - perToken) <= 1e-5 * perToken, `batched ${batched.log.loss}`);
  assert.ok(
    Math.abs(accumulated.log.gradNorm - batched.log.gradNorm) <= 1e-4 * batched.log.gradNorm,
    `gradient norm ${accumulated.log.gradNorm} vs ${batched.log.gradNorm}`,
  );
  // AdamW's first step moves each weight by lr·g/(|g|+eps): equal gradients give equal tensors up to float noise
  for (const [n, u] of batched.U) {
    const v = accumulated.U.get(n)!;
    u.forEach((x, i) =>
      assert.ok(Math.abs(v[i]! - x) <= 1e-6 + 1e-4 * Math.abs(x), `${n}[${i}] ${v[i]} vs ${x}`),
    );
  }
});
