/**
 * Gradient checkpointing changes time and memory, never the numbers: on every fixture family and method, in float32
 * and in bf16 (mixed precision for full fine-tuning), trained weights, losses and gradient norms are the same bits
 * with it and without. Two things had made them differ, each checked here with a
 * case that exposes it: LoRA's dropout (the recomputed layer drew new masks; now it draws its forward's, as
 * PyTorch's checkpoint(preserve_rng_state=True)) and a tied embedding's gradient over several micro-batches (the
 * earlier micro-batches' share was added in another order).
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { attachLora } from "../../src/method/lora/model.js";
import { attachFull } from "../../src/method/full.js";
import { DEFAULT_TRAIN, type TrainConfig } from "../../src/method/train-config.js";
import { trainSft, type SftExample } from "../../src/method/train.js";
import type { DecoderModel } from "../../src/models/decoder.js";
import type { AttachedMethod } from "../../src/method/attached.js";
import { Tensor, manualSeed, rngState, setRngState } from "../../src/tensor/index.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

function examples(family: string): SftExample[] {
  const ts = readFixtureJson(path.join(FIX, family, "train_step.json.gz"));
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  const out: SftExample[] = [];
  for (let r = 0; r < 6; r++) {
    const i = r % 2;
    const cut = 12 + (r % 4);
    out.push({ inputIds: ids[i]!.slice(0, cut), labels: labels[i]!.slice(0, cut) });
  }
  return out;
}

type Kind = "goodvibe" | "lora" | "full";
function attach(kind: Kind, m: DecoderModel): AttachedMethod {
  if (kind === "goodvibe")
    return attachGoodVibe(
      m,
      new Map([
        ["model.layers.0.self_attn.q_proj", { rows: [0, 2], clusters: [0, 0], nClusters: 1 }],
        ["model.layers.1.mlp.down_proj", { rows: [1, 5, 9], clusters: [0, 1, 0], nClusters: 2 }],
      ]),
    );
  // dropout on: the recomputed layers must draw their forward's masks
  if (kind === "lora")
    return attachLora(m, { r: 2, alpha: 4, dropout: 0.1, targetModules: ["q_proj", "v_proj"] });
  return attachFull(m);
}

// micro-batches of 2, 2 per step (the last of an epoch alone), 2 epochs: 4 steps; a tied embedding's gradient sums over micro-batches
const CFG: TrainConfig = {
  ...DEFAULT_TRAIN,
  lr: 5e-3,
  epochs: 2,
  batchSize: 2,
  gradAccum: 2,
  seed: 3,
  checkpointEvery: 1,
};

async function run(
  family: string,
  kind: Kind,
  dtype: "float32" | "bfloat16",
  cfg: TrainConfig,
  opts: Parameters<typeof trainSft>[4] = {},
) {
  const model = loadModel(path.join(FIX, family), { dtype });
  const method = attach(kind, model);
  const r = await trainSft(model, method, examples(family), cfg, opts);
  const weights = new Map([...method.trainable].map(([n, t]) => [n, Buffer.from(t.float().toBytes())]));
  return { r, weights };
}

function assertSameRun(
  a: Awaited<ReturnType<typeof run>>,
  b: Awaited<ReturnType<typeof run>>,
  what: string,
): void {
  assert.deepEqual(
    b.r.log.map((l) => [l.loss, l.gradNorm]),
    a.r.log.map((l) => [l.loss, l.gradNorm]),
    `${what}: losses and gradient norms`,
  );
  assert.equal(b.weights.size, a.weights.size);
  for (const [n, w] of a.weights) assert.ok(w.equals(b.weights.get(n)!), `${what}: ${n} differs`);
}

for (const family of ["qwen2", "llama", "gemma3", "qwen3"])
  for (const dtype of ["float32", "bfloat16"] as const)
    test(`${family} ${dtype}: GoodVibe, LoRA (dropout 0.1) and full fine-tuning train the same bits with checkpointing and without`, async () => {
      for (const kind of ["goodvibe", "lora", "full"] as const) {
        const off = await run(family, kind, dtype, { ...CFG, gradientCheckpointing: false });
        const on = await run(family, kind, dtype, { ...CFG, gradientCheckpointing: true });
        assert.equal(off.r.steps, 4);
        assertSameRun(off, on, `${family} ${dtype} ${kind}`);
        // the recomputation is counted where it ran, and only there: a forward of the layers more
        assert.ok(on.r.flops.forward > off.r.flops.forward, `${kind}: the second forward is counted`);
        assert.equal(on.r.flops.backward, off.r.flops.backward);
      }
    });

test("the generator's state: read, set back, the same numbers drawn; a state of the wrong size or dtype is refused", () => {
  manualSeed(11);
  const s = rngState();
  const a = Tensor.rand([8]).toFloat32Array();
  setRngState(s);
  assert.deepEqual(Tensor.rand([8]).toFloat32Array(), a);
  assert.throws(() => setRngState(Tensor.zeros([3], "uint8")), /RNG state|size/);
  assert.throws(() => setRngState(Tensor.zeros([s.numel], "float32")), /ByteTensor/);
});
