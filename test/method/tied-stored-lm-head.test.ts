/**
 * A tied model (tie_word_embeddings) whose folder also stores lm_head.weight, as some checkpoints do (Qwen1.5-0.5B-Chat
 * shipped one; vLLM's loaders skip it, vllm-project/vllm#3344, #6758). The model never reads that copy, so it is not
 * counted among the loaded parameters (the count an experiment's base cell and a method cell report, and the memory
 * checks use), and a fold that changes the embedding (full fine-tuning) writes the copy with the folded embedding:
 * left as stored, a loader that fills the tied weight from lm_head.weight would undo the embedding's training.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { loadModel } from "../../src/models/index.js";
import { loadedParamCount } from "../../src/models/load.js";
import { AdamW, Tensor } from "../../src/tensor/index.js";
import { attachFull } from "../../src/method/full.js";
import { countParams } from "../../src/method/attached.js";
import { attachLora } from "../../src/method/lora/model.js";
import { sftLossHead } from "../../src/method/losses.js";
import { foldIntoCheckpoint } from "../../src/method/fold.js";
import { openModelWeights, writeModelWeights } from "../../src/io/safetensors.js";
import { InputError } from "../../src/errors.js";

const GEMMA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures/gemma3");
const ts = readFixtureJson(path.join(GEMMA, "train_step.json.gz")) as {
  sft_batch: { input_ids: number[][]; labels: number[][] };
};
const work = scratchDir("gv-tied-lm-head-");

/** The gemma3 fixture (tied) with lm_head.weight stored beside the embedding, equal to it. */
function withStoredHead(): string {
  const dir = path.join(work, "stored-head");
  if (fs.existsSync(dir)) return dir;
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(GEMMA, "config.json"), path.join(dir, "config.json"));
  const tensors = [...openModelWeights(GEMMA).tensors.values()];
  const embed = tensors.find((r) => r.name === "model.embed_tokens.weight")!;
  writeModelWeights(dir, [...tensors, { ...embed, name: "lm_head.weight" }]);
  return dir;
}

const bytesOf = (dir: string, name: string) => Buffer.from(openModelWeights(dir).tensors.get(name)!.data);

function train3(model: ReturnType<typeof loadModel>, params: Tensor[]) {
  const ids = Tensor.fromArray(ts.sft_batch.input_ids.flat(), [2, 16], "int64");
  const labels = Tensor.fromArray(ts.sft_batch.labels.flat(), [2, 16], "int64");
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0 });
  for (let s = 0; s < 3; s++) {
    model.forwardBackward(ids, {}, sftLossHead(model, labels));
    opt.step();
    opt.zeroGrad();
  }
}

test("a stored lm_head of a tied model is not among the loaded parameters", () => {
  const dir = withStoredHead();
  const loaded = countParams(loadModel(dir).parameters().values());
  assert.equal(loaded, countParams(loadModel(GEMMA).parameters().values()));
  assert.equal(loadedParamCount(dir), loaded);
  assert.equal(loadedParamCount(GEMMA), loaded);
});

test("full fine-tuning of a tied model: the stored lm_head is written as the folded embedding", async () => {
  const dir = withStoredHead();
  const model = loadModel(dir);
  const method = attachFull(model);
  train3(model, [...method.trainable.values()]);
  const out = path.join(work, "full-out");
  await foldIntoCheckpoint(dir, out, method);
  const embed = bytesOf(out, "model.embed_tokens.weight");
  assert.ok(!embed.equals(bytesOf(dir, "model.embed_tokens.weight")), "the embedding did not train");
  assert.ok(bytesOf(out, "lm_head.weight").equals(embed), "lm_head.weight is not the folded embedding");
  // the input is untouched, and the output keeps its layout: the same tensor names
  assert.ok(bytesOf(dir, "lm_head.weight").equals(bytesOf(dir, "model.embed_tokens.weight")));
  assert.deepEqual(
    [...openModelWeights(out).tensors.keys()].sort(),
    [...openModelWeights(dir).tensors.keys()].sort(),
  );
});

test("a fold that leaves the embedding alone (LoRA) copies the stored lm_head as it was", async () => {
  const dir = withStoredHead();
  const model = loadModel(dir);
  const method = attachLora(model, { r: 2, alpha: 4, dropout: 0, targetModules: ["q_proj", "v_proj"] });
  train3(model, [...method.trainable.values()]);
  const out = path.join(work, "lora-out");
  await foldIntoCheckpoint(dir, out, method);
  assert.ok(bytesOf(out, "lm_head.weight").equals(bytesOf(dir, "lm_head.weight")));
  assert.ok(bytesOf(out, "model.embed_tokens.weight").equals(bytesOf(dir, "model.embed_tokens.weight")));
});

test("a stored lm_head of a tied model that differs from the embedding is refused, naming the file and both fixes", () => {
  const dir = path.join(work, "differs");
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(GEMMA, "config.json"), path.join(dir, "config.json"));
  const tensors = [...openModelWeights(GEMMA).tensors.values()];
  const embed = tensors.find((r) => r.name === "model.embed_tokens.weight")!;
  const changed = Buffer.from(embed.data);
  changed[changed.length - 1]! ^= 1; // one bit of the last value
  writeModelWeights(dir, [...tensors, { ...embed, name: "lm_head.weight", data: changed }]);
  assert.throws(
    () => loadModel(dir),
    (e: Error) =>
      e instanceof InputError &&
      e.message.includes(path.join(dir, "model.safetensors")) &&
      /lm_head\.weight with values other than model\.embed_tokens\.weight's/.test(e.message) &&
      /"tie_word_embeddings": false/.test(e.message) &&
      /remove lm_head\.weight/.test(e.message),
  );
  // stored in another dtype with the same values: accepted
  const f16 = path.join(work, "other-dtype");
  fs.mkdirSync(f16);
  fs.copyFileSync(path.join(GEMMA, "config.json"), path.join(f16, "config.json"));
  const asF32 = new Float32Array(
    embed.data.buffer.slice(embed.data.byteOffset, embed.data.byteOffset + embed.data.byteLength),
  );
  const asF64 = Float64Array.from(asF32);
  writeModelWeights(f16, [
    ...tensors,
    { ...embed, name: "lm_head.weight", dtype: "F64", data: Buffer.from(asF64.buffer) },
  ]);
  assert.doesNotThrow(() => loadModel(f16));
});
