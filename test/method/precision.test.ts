/**
 * bf16 mixed precision (issue 10 §5): a bf16 model trains float32 masters with float32 AdamW states. Checked
 * against AdamW's first-step formula and against properties (rounded copies, freed gradients, exact resume);
 * the float32 path stays what the PyTorch fixtures check (train_step.test.ts).
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { loadModel } from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { attachFull } from "../../src/method/full.js";
import { countParams } from "../../src/method/attached.js";
import { attachLora } from "../../src/method/lora/model.js";
import { sftLossHead } from "../../src/method/losses.js";
import { DEFAULT_TRAIN } from "../../src/method/train-config.js";
import { optimizerStep, planBatches, trainSft, type SftExample } from "../../src/method/train.js";
import { AdamW, Tensor, noGrad } from "../../src/tensor/index.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

function fixtureBatch(family: string): { ids: Tensor; labels: Tensor; examples: SftExample[] } {
  const ts = readFixtureJson(path.join(FIX, family, "train_step.json.gz"));
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  const examples: SftExample[] = [];
  for (let r = 0; r < 6; r++) {
    const i = r % 2;
    const cut = 12 + (r % 4);
    examples.push({ inputIds: ids[i]!.slice(0, cut), labels: labels[i]!.slice(0, cut) });
  }
  return {
    ids: Tensor.fromArray(ids.flat(), [ids.length, ids[0]!.length], "int64"),
    labels: Tensor.fromArray(labels.flat(), [labels.length, labels[0]!.length], "int64"),
    examples,
  };
}

/** bf16 rounding (round to nearest even) of a float32 value, independent of libtorch. */
function toBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const lsb = (u[0]! >>> 16) & 1;
  u[0] = ((u[0]! + 0x7fff + lsb) >>> 16) << 16;
  return f[0]!;
}

for (const [family, chunk] of [
  ["llama", undefined],
  ["gemma3", 1000], // masters in chunks of at most 1000 elements: many per matrix
] as const) {
  test(`${family}: full fine-tuning of a bf16 model updates float32 masters by AdamW's first-step formula${chunk ? " (chunked masters)" : ""}`, () => {
    const model = loadModel(path.join(FIX, family), { dtype: "bfloat16" });
    const full = attachFull(model, { chunk });
    if (chunk) {
      assert.ok(full.trainable.size > 3 * full.mixed!.masters.size, `${full.trainable.size} chunks`);
      for (const t of full.trainable.values())
        assert.ok(
          t.numel <=
            Math.max(
              chunk,
              t.shape.slice(1).reduce((a, b) => a * b, 1),
            ),
        );
    }
    assert.ok(full.mixed, "a bf16 model trains through float32 masters");
    const copies = full.mixed.copies;
    const masters = full.mixed.masters;
    assert.deepEqual([...masters.keys()], [...copies.keys()]);
    assert.equal(countParams(full.trainable.values()), countParams(model.parameters().values()));
    for (const [n, master] of masters) {
      assert.equal(master.dtype, "float32", n);
      assert.equal(copies.get(n)!.dtype, "bfloat16", n);
      // masters start as the checkpoint's values exactly
      assert.deepEqual(master.toFloat32Array(), copies.get(n)!.toFloat32Array(), n);
    }
    for (const t of full.trainable.values()) assert.equal(t.dtype, "float32");

    const { ids, labels } = fixtureBatch(family);
    model.forwardBackward(ids, {}, sftLossHead(model, labels), false);
    const grads = new Map<string, Float32Array>();
    const before = new Map<string, Float32Array>();
    let sq = 0;
    for (const [n, w] of copies) {
      assert.equal(w.grad?.dtype, "bfloat16", `${n}: the gradient is in the compute dtype`);
      const g = w.grad!.toFloat32Array();
      for (const v of g) sq += v * v;
      grads.set(n, g);
      before.set(n, masters.get(n)!.toFloat32Array());
    }
    const lr = 1e-3;
    const wd = 0.1;
    const maxNorm = 0.5 * Math.sqrt(sq); // clipping on: every gradient is halved (up to the 1e-6 guard)
    const opt = new AdamW([...full.trainable.values()], {
      lr,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weightDecay: wd,
    });
    const norm = optimizerStep(full, opt, maxNorm);
    assert.ok(Math.abs(norm - Math.sqrt(sq)) <= 1e-4 * Math.sqrt(sq), `${norm} vs ${Math.sqrt(sq)}`);
    const coef = maxNorm / (norm + 1e-6);

    let checked = 0;
    for (const [n, master] of masters) {
      const g = grads.get(n)!;
      const p0 = before.get(n)!;
      const p1 = master.toFloat32Array();
      const w = copies.get(n)!.toFloat32Array();
      for (let i = 0; i < p0.length; i++) {
        // torch AdamW, step 1: decay, then m̂ = g, v̂ = g², p -= lr·m̂/(√v̂ + eps)
        const gc = Math.fround(toBf16(g[i]! * coef));
        const want = p0[i]! * (1 - lr * wd) - (lr * gc) / (Math.abs(gc) + 1e-8);
        assert.ok(Math.abs(p1[i]! - want) <= 2e-7 * Math.max(1, Math.abs(want)) + 1e-9, `${n}[${i}]`);
        // the weights the forward uses are the masters rounded to bf16
        assert.equal(w[i], toBf16(p1[i]!), `${n}[${i}] copy`);
        checked++;
      }
      // gradients are freed every step: bf16 and float32 alike
      assert.equal(copies.get(n)!.grad, null, `${n} bf16 grad`);
    }
    for (const [n, chunk] of full.trainable) assert.equal(chunk.grad, null, `${n} master grad`);
    assert.equal(checked, countParams(model.parameters().values()));
    // AdamW's moments are float32 and one per master chunk
    const st = opt.getState();
    assert.equal(st.length, full.trainable.size);
    for (const s of st) {
      assert.equal(s!.step, 1);
      assert.equal(s!.expAvg.dtype, "float32");
      assert.equal(s!.expAvgSq.dtype, "float32");
    }
  });
}

test("a float32 model is its own master (the fp32 path the PyTorch fixtures check)", () => {
  const model = loadModel(path.join(FIX, "qwen2"), { dtype: "float32" });
  const full = attachFull(model);
  assert.equal(full.mixed, undefined);
  for (const [n, p] of model.parameters()) assert.equal(full.trainable.get(n), p);
});

test("adapters on a bf16 model: float32 trainable tensors, gradients in float32", () => {
  const model = loadModel(path.join(FIX, "qwen3"), { dtype: "bfloat16" });
  const lora = attachLora(model, { r: 2, alpha: 4, dropout: 0, targetModules: ["q_proj", "down_proj"] });
  const { ids, labels } = fixtureBatch("qwen3");
  model.forwardBackward(ids, {}, sftLossHead(model, labels), false);
  for (const [n, t] of lora.trainable) {
    assert.equal(t.dtype, "float32", n);
    assert.equal(t.grad?.dtype ?? "float32", "float32", n);
  }
  lora.detach();
  const gv = attachGoodVibe(
    model,
    new Map([["model.layers.0.mlp.up_proj", { rows: [1, 2, 3], clusters: [0, 0, 1], nClusters: 2 }]]),
  );
  model.forwardBackward(ids, {}, sftLossHead(model, labels), false);
  const u = gv.trainable.get("model.layers.0.mlp.up_proj.U")!;
  assert.equal(u.dtype, "float32");
  assert.equal(u.grad!.dtype, "float32");
});

test("mixed-precision full fine-tuning resumes exactly from its checkpoint", async () => {
  const dir = path.join(FIX, "qwen2");
  const { examples } = fixtureBatch("qwen2");
  const cfg = {
    ...DEFAULT_TRAIN,
    lr: 1e-3,
    epochs: 2,
    batchSize: 2,
    gradAccum: 1,
    checkpointEvery: 1,
    seed: 5,
    gradientCheckpointing: true,
  };
  const run = () => {
    const model = loadModel(dir, { dtype: "bfloat16" });
    return { model, method: attachFull(model, { chunk: 500 }) };
  };
  const a = run();
  const r1 = await trainSft(a.model, a.method, examples, cfg);
  assert.equal(r1.steps, 6);
  const runDir = scratchDir("gv-mixed-");
  const b = run();
  await trainSft(b.model, b.method, examples, { ...cfg, stopAfterSteps: 2 }, { runDir });
  const c = run();
  const r3 = await trainSft(c.model, c.method, examples, cfg, { runDir });
  assert.deepEqual(
    r3.log.map((l) => l.loss),
    r1.log.map((l) => l.loss),
  );
  for (const [n, t] of a.method.trainable)
    assert.deepEqual(c.method.trainable.get(n)!.toFloat32Array(), t.toFloat32Array(), n);
  for (const [n, w] of a.method.mixed!.copies)
    assert.deepEqual(c.method.mixed!.copies.get(n)!.toFloat32Array(), w.toFloat32Array(), `${n} (bf16)`);
  // the folded weights are the float32 masters
  const folded = a.method.foldedWeights();
  for (const [n, t] of a.method.mixed!.masters)
    assert.deepEqual(
      noGrad(() => folded.get(n)!.toFloat32Array()),
      t.toFloat32Array(),
      n,
    );
  fs.rmSync(runDir, { recursive: true, force: true });
});

test("the trainer-style FLOP estimate is 6 × (parameters without the input embedding + trainable) × input tokens", async () => {
  const model = loadModel(path.join(FIX, "llama"), { dtype: "float32" });
  const gv = attachGoodVibe(
    model,
    new Map([["model.layers.1.mlp.down_proj", { rows: [1, 5, 9], clusters: [0, 1, 0], nClusters: 2 }]]),
  );
  const { examples } = fixtureBatch("llama");
  const cfg = { ...DEFAULT_TRAIN, epochs: 1, batchSize: 4, gradAccum: 1, gradientCheckpointing: false };
  const r = await trainSft(model, gv, examples, cfg);
  // every micro-batch is padded to its longest example: tokens = Σ batch size × longest length
  let tokens = 0;
  for (const step of planBatches(examples.length, cfg))
    for (const micro of step)
      tokens += micro.length * Math.max(...micro.map((i) => examples[i]!.inputIds.length));
  assert.equal(r.flopsEstimate.tokens, tokens);
  assert.ok(tokens > examples.reduce((a, e) => a + e.inputIds.length, 0), "padding counts");
  const p = model.parameters();
  const embedding = p.get("model.embed_tokens.weight")!.numel;
  const trainable = 2 * 128; // U of down_proj: 2 clusters × 128 inputs
  assert.equal(r.trainableParams, trainable);
  assert.equal(r.flopsEstimate.params, countParams(p.values()) - embedding + trainable);
  assert.equal(r.flopsEstimate.flops, 6 * r.flopsEstimate.params * r.flopsEstimate.tokens);
});
