/**
 * Training that diverges stops with a DivergenceError (exit 2) naming the step and train.lr, and leaves no
 * checkpoint with non-finite weights; a learning rate of 1 or more is refused by the config schema. Reference:
 * a finite weight stays finite, so every trainable tensor is checked after the run instead of trusting the loop.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { DivergenceError, InputError } from "../../src/errors.js";
import { resolveConfig } from "../../src/config/resolve.js";
import { hardenSchema } from "../../src/config/harden.js";
import { loadModel } from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { attachFull } from "../../src/method/full.js";
import { attachLora } from "../../src/method/lora/model.js";
import { DEFAULT_TRAIN } from "../../src/method/train-config.js";
import { trainSft, type SftExample } from "../../src/method/train.js";
import { firstNonFinite, readSafetensors } from "../../src/io/safetensors.js";
import { noGrad } from "../../src/tensor/index.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

function examples(): SftExample[] {
  const ts = readFixtureJson(path.join(FIX, "qwen2", "train_step.json.gz"));
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  return [0, 1, 0, 1].map((i) => ({ inputIds: ids[i]!.slice(0, 14), labels: labels[i]!.slice(0, 14) }));
}

for (const kind of ["goodvibe", "lora", "full"] as const) {
  test(`${kind}: a learning rate that blows the weights up stops with a DivergenceError, not a finished run`, async () => {
    const model = loadModel(path.join(FIX, "qwen2"), { dtype: "float32" });
    const method =
      kind === "goodvibe"
        ? attachGoodVibe(
            model,
            new Map(
              model
                .linears()
                .map((l) => [l.name, { rows: [0, 1, 2, 3], clusters: [0, 0, 1, 1], nClusters: 2 }]),
            ),
          )
        : kind === "lora"
          ? attachLora(
              model,
              {
                r: 2,
                alpha: 4,
                dropout: 0,
                targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              },
              undefined,
              0,
            )
          : attachFull(model);
    const runDir = scratchDir("gv-diverge-");
    try {
      // AdamW's first step moves each weight by about lr: at 1e30 products of two weights pass float32's 3.4e38
      const cfg = { ...DEFAULT_TRAIN, lr: 1e30, epochs: 8, batchSize: 2, warmupRatio: 0, maxGradNorm: null };
      await assert.rejects(
        trainSft(model, method, examples(), cfg, { runDir }),
        (e: unknown) =>
          e instanceof DivergenceError &&
          e.exitCode === 2 &&
          /training diverged at step \d+/.test(e.message) &&
          e.message.includes("train.lr (now 1e+30)"),
      );
      // whatever checkpoint was written holds finite values only
      const ckpt = path.join(runDir, "checkpoint");
      if (fs.existsSync(ckpt))
        for (const f of fs.readdirSync(ckpt).filter((n) => n.endsWith(".safetensors")))
          for (const rec of readSafetensors(path.join(ckpt, f)).tensors.values())
            assert.equal(firstNonFinite(rec), -1, `${f}: ${rec.name} saved non-finite`);
    } finally {
      fs.rmSync(runDir, { recursive: true, force: true });
    }
    // a sane rate on the same setup finishes with finite weights (the check does not fire on healthy runs)
    const fresh = loadModel(path.join(FIX, "qwen2"), { dtype: "float32" });
    const m2 = attachFull(fresh);
    const r = await trainSft(fresh, m2, examples(), { ...DEFAULT_TRAIN, lr: 1e-3, epochs: 1, batchSize: 2 });
    assert.ok(r.finished);
    for (const [name, t] of m2.trainable)
      assert.equal(
        noGrad(() => t.isfinite().logicalNot().sum().item()),
        0,
        name,
      );
  });
}

test("train.lr of 1 or more is refused by the config schema, naming the field", () => {
  for (const lr of ["1e9", "1.5", "Infinity"]) {
    assert.throws(
      () => resolveConfig(hardenSchema, undefined, { model: "m", data: "d", out: "o" }, [`train.lr=${lr}`]),
      (e: unknown) => e instanceof InputError && /train\.lr/.test(e.message),
      lr,
    );
  }
  const ok = resolveConfig(hardenSchema, undefined, { model: "m", data: "d", out: "o" }, ["train.lr=1"]);
  assert.equal(ok.train.lr, 1);
});
