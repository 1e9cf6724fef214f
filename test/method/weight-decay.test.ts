/**
 * Weight decay as transformers' Trainer applies it (README "Defaults follow the paper": `train.weightDecay` "as
 * transformers' Trainer"): Trainer.create_optimizer puts biases and norm weights in a group with weight decay 0
 * (get_decay_parameter_names: the patterns bias, layernorm, rmsnorm, `(^|.)norm(.|$)`, `_norm(.|$)`), every other
 * tensor decays. Checked on full fine-tuning of the Qwen2 fixture (q/k/v biases, RMSNorm weights) against AdamW's
 * formula: one step at lr with weight decay wd and the same step without differ by exactly -lr·wd·p₀ on a decayed
 * tensor (torch.optim.AdamW: p ← p·(1 − lr·wd), then the same Adam step) and not at all on an exempt one.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { attachFull } from "../../src/method/full.js";
import { DEFAULT_TRAIN } from "../../src/method/train-config.js";
import { trainSft, trainerDecays, type SftExample } from "../../src/method/train.js";
import { keyedTraining } from "../../src/method/checkpointing.js";
import { readFixtureJson } from "../fixture-json.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const DIR = path.join(FIX, "qwen2");

function examples(): SftExample[] {
  const ts = readFixtureJson(path.join(DIR, "train_step.json.gz"));
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  return [{ inputIds: ids[0].slice(0, 16), labels: labels[0].slice(0, 16) }];
}

test("Trainer's decay groups by name: biases and norm weights exempt, everything else decayed", () => {
  // names of the families' checkpoints (Qwen3's q_norm, Gemma3's four layer norms, the final norm) and of the
  // trainable tensors the methods name (LoRA's A/B, a full fine-tuning master chunk `weight#row`)
  const exempt = [
    "model.layers.0.self_attn.q_proj.bias",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.post_attention_layernorm.weight",
    "model.layers.3.pre_feedforward_layernorm.weight",
    "model.layers.3.post_feedforward_layernorm.weight",
    "model.layers.0.self_attn.q_norm.weight",
    "model.layers.0.self_attn.k_norm.weight",
    "model.norm.weight",
    "model.language_model.norm.weight",
    "model.norm.weight#0",
  ];
  const decayed = [
    "model.embed_tokens.weight",
    "lm_head.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.mlp.down_proj.weight#4096",
    "model.layers.0.self_attn.q_proj.lora_A",
    "model.layers.0.self_attn.q_proj.lora_B",
    "model.normalizer.weight", // "norm" only as a whole name part
  ];
  for (const n of exempt) assert.equal(trainerDecays(n), false, n);
  for (const n of decayed) assert.equal(trainerDecays(n), true, n);
});

test("full fine-tuning: weight decay moves decayed tensors by -lr·wd·p₀ and leaves biases and norm weights as without it", async () => {
  const lr = 1e-2;
  const wd = 0.5;
  const cfg = {
    ...DEFAULT_TRAIN,
    lr,
    epochs: 1,
    warmupRatio: 0, // the one step runs at the full lr
    maxGradNorm: null,
    gradAccum: 1,
    gradientCheckpointing: false as const,
  };
  const start = new Map([...loadModel(DIR).parameters()].map(([n, t]) => [n, t.toFloat32Array()]));
  const run = async (weightDecay: number) => {
    const model = loadModel(DIR);
    const m = attachFull(model);
    const r = await trainSft(model, m, examples(), { ...cfg, weightDecay });
    assert.equal(r.steps, 1);
    return new Map([...model.parameters()].map(([n, t]) => [n, t.toFloat32Array()]));
  };
  const plain = await run(0);
  const decayedRun = await run(wd);
  const names = [...plain.keys()];
  assert.ok(
    names.some((n) => n.endsWith(".bias")) && names.some((n) => n.includes("norm")),
    "fixture has both kinds",
  );
  let nExempt = 0;
  for (const n of names) {
    const a = plain.get(n)!;
    const b = decayedRun.get(n)!;
    const p0 = start.get(n)!;
    if (!trainerDecays(n)) {
      nExempt++;
      assert.deepEqual(b, a, `${n}: exempt, so the same as without weight decay`);
      continue;
    }
    let moved = 0;
    for (let i = 0; i < a.length; i++) {
      const want = -lr * wd * p0[i]!;
      const got = b[i]! - a[i]!;
      // float32 rounding of p·(1 − lr·wd) and of the Adam step on top
      assert.ok(Math.abs(got - want) <= 2e-7 * (Math.abs(a[i]!) + 1), `${n}[${i}]: ${got} vs ${want}`);
      if (Math.abs(want) > 1e-6) moved++;
    }
    assert.ok(moved > 0, `${n}: decayed`);
  }
  // the fixture's 2 layers: q/k/v biases and two norms each, and the final norm
  assert.equal(nExempt, 2 * 5 + 1);
});

test("bf16 mixed-precision full fine-tuning: exempt tensors' masters take no decay either", async () => {
  const cfg = {
    ...DEFAULT_TRAIN,
    lr: 1e-2,
    epochs: 1,
    warmupRatio: 0,
    maxGradNorm: null,
    gradAccum: 1,
    gradientCheckpointing: false as const,
  };
  const run = async (weightDecay: number) => {
    const model = loadModel(DIR, { dtype: "bfloat16" });
    const m = attachFull(model, { chunk: 64 }); // several chunks per weight: names `weight#row`
    assert.ok([...m.trainable.keys()].some((n) => n.includes("#")));
    await trainSft(model, m, examples(), { ...cfg, weightDecay });
    return new Map([...m.mixed!.masters].map(([n, t]) => [n, t.toFloat32Array()]));
  };
  const plain = await run(0);
  const decayed = await run(0.5);
  // the fixture's biases and norm weights, by name (not by trainerDecays: this checks the optimizer's groups)
  const exempt = (n: string) => n.endsWith(".bias") || n.includes("norm");
  assert.equal([...plain.keys()].filter(exempt).length, 2 * 5 + 1);
  for (const [n, a] of plain) {
    if (exempt(n)) assert.deepEqual(decayed.get(n), a, `${n}: exempt`);
    else assert.notDeepEqual(decayed.get(n), a, `${n}: decayed`);
  }
});

test("the keys of finished work: only a weight-decayed full fine-tuning is marked (its finished work decayed biases and norms)", () => {
  const t = { ...DEFAULT_TRAIN, weightDecay: 0.1 };
  assert.equal(keyedTraining(t, null, "full").weightDecayGroups, "trainer");
  assert.equal(keyedTraining({ ...t, weightDecay: 0 }, null, "full").weightDecayGroups, undefined);
  for (const method of ["goodvibe", "lora"])
    assert.equal(keyedTraining(t, null, method).weightDecayGroups, undefined);
});
