/**
 * Three AdamW steps of GoodVibe's cluster-shared row update, the no-cluster ablation and LoRA, against the
 * PyTorch references in test/fixtures/<family>/train_step.json.gz (see the fixture README).
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { onBothDecoderPaths } from "../models/decoder-paths.js";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { AdamW, Tensor, noGrad, torchVersion } from "../../src/tensor/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import type { AttachedMethod } from "../../src/method/attached.js";
import { attachLora } from "../../src/method/lora/model.js";
import { sftLossHead } from "../../src/method/losses.js";
import { fixtureSelections } from "./goodvibe-fixture.js";
import type { DecoderModel } from "../../src/models/decoder.js";
import { type Nested, maxAbsDiff, flat } from "../numeric.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

/**
 * Adam's first steps move each element by about lr·g/|g|: where a reference gradient is at float32 noise level
 * (|g| < 1e-7 after cancellation, e.g. -6.9e-10 in PyTorch vs -2.5e-9 here), its sign is noise and so is the
 * update. Such elements are excluded (and must be rare); all others must match within the tolerance.
 */
const atNoise = (g: number) => Math.abs(g) < 1e-7;

function maxAbsDiffWellConditioned(a: ArrayLike<number>, b: number[], refGrads: number[][]): number {
  let m = 0;
  let skipped = 0;
  for (let i = 0; i < b.length; i++) {
    if (refGrads.some((g) => atNoise(g[i]))) {
      skipped++;
      continue;
    }
    m = Math.max(m, Math.abs(a[i] - b[i]));
  }
  assert.ok(
    skipped <= Math.max(1, b.length * 0.01),
    `${skipped} of ${b.length} gradient elements at noise level`,
  );
  return m;
}
const relClose = (a: number, b: number, rtol: number) => Math.abs(a - b) <= rtol * Math.abs(b);

/**
 * U's tolerance at a step after one with a noise-level reference gradient. That element's first update is
 * lr·g/(|g| + eps), so its noise moves U by up to ~1e-3, and every later gradient with it; how far depends on the
 * noise's value, i.e. on the kernels' rounding, i.e. on the libtorch version. The fixtures were made with PyTorch
 * 1.13 (fixture README). Measured (2026-11-29, scripts/gemma3-train-step-torch.py, the fixture's gemma3 no_cluster
 * recipe restated in PyTorch, 1 thread): the noise element model.layers.1.mlp.down_proj U[505] has gradient
 * -6.92e-10 in the fixture, -2.34e-9 in PyTorch 1.13, -4.67e-9 in PyTorch 2.6 (Debian trixie's python3-torch), and
 * model.layers.1.mlp.gate_proj U[121] (gradients -2.34e-5, 2.39e-6) then lands from the fixture by 2.86e-5 / 3.17e-5
 * (steps 2 / 3) in PyTorch 1.13 but 5.76e-5 / 6.36e-5 in PyTorch 2.6 itself. The addon lands 3.02e-5 / 3.34e-5 from
 * the fixture on libtorch 1.13 (1.6e-6 / 1.8e-6 from PyTorch 1.13) and 5.27e-5 / 5.82e-5 on libtorch 2.6 (4.9e-6 /
 * 5.4e-6 from PyTorch 2.6; BENCHMARKS.md "CUDA"). So on a libtorch 2.x most of the distance is 2.x's own from a 1.13
 * fixture, not ours: the bound is 1e-4 there, 5e-5 on 1.x.
 */
const AFTER_NOISE_TOL = /^1\./.test(torchVersion()) ? 5e-5 : 1e-4;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function sftBatch(ts: any) {
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  return {
    ids: Tensor.fromArray(ids.flat(), [ids.length, ids[0].length], "int64"),
    labels: Tensor.fromArray(labels.flat(), [labels.length, labels[0].length], "int64"),
  };
}

function runSteps(model: DecoderModel, method: AttachedMethod, ts: unknown, checkpoint: boolean) {
  const batch = sftBatch(ts);
  const opt = new AdamW([...method.trainable.values()], {
    lr: 1e-2,
    betas: [0.9, 0.999],
    eps: 1e-8,
    weightDecay: 0,
  });
  const losses: number[] = [];
  const grads: Map<string, Float32Array>[] = [];
  const after: Map<string, Float32Array>[] = [];
  for (let s = 0; s < 3; s++) {
    losses.push(model.forwardBackward(batch.ids, {}, sftLossHead(model, batch.labels), checkpoint));
    grads.push(
      new Map(
        [...method.trainable].map(([n, t]) => [n, t.grad?.toFloat32Array() ?? new Float32Array(t.numel)]),
      ),
    );
    opt.step();
    opt.zeroGrad();
    after.push(new Map([...method.trainable].map(([n, t]) => [n, t.toFloat32Array()])));
  }
  const finalLoss = noGrad(() => sftLossHead(model, batch.labels)(model.hidden(batch.ids)).item());
  return { losses, grads, after, finalLoss };
}

onBothDecoderPaths(() => {
  for (const family of ["llama", "qwen2", "qwen3", "gemma3"]) {
    const dir = path.join(FIX, family);
    const ts = readFixtureJson(path.join(dir, "train_step.json.gz"));

    for (const variant of ["cluster", "no_cluster"] as const) {
      for (const checkpoint of [false, true]) {
        test(`${family} ${variant}${checkpoint ? " (gradient checkpointing)" : ""}: 3 AdamW steps match PyTorch`, () => {
          const model = loadModel(dir);
          const ref = ts[variant];
          const method = attachGoodVibe(model, fixtureSelections(ref.selection));
          assert.equal(
            [...method.trainable.values()].reduce((a, t) => a + t.numel, 0),
            ref.trainable_params,
            "trainable parameters",
          );
          const r = runSteps(model, method, ts, checkpoint);
          // a noise-level gradient element at step s perturbs its U element by ~lr, which nudges every later
          // gradient of the model slightly: later steps then get a looser (still tight) tolerance
          const noisyBefore = (s: number) =>
            ref.steps
              .slice(0, s)
              .some((st: { grad_U: Record<string, Nested> }) =>
                Object.values(st.grad_U).some((g) => flat(g).some(atNoise)),
              );
          for (let s = 0; s < 3; s++) {
            const tol = noisyBefore(s) ? AFTER_NOISE_TOL : 1e-5;
            assert.ok(
              relClose(r.losses[s], ref.steps[s].loss, 1e-5),
              `step ${s + 1} loss ${r.losses[s]} vs ${ref.steps[s].loss}`,
            );
            for (const mod of Object.keys(ref.selection)) {
              const g = maxAbsDiff(r.grads[s].get(`${mod}.U`)!, flat(ref.steps[s].grad_U[mod]));
              assert.ok(g < 1e-5, `step ${s + 1} ${mod} grad_U diff ${g}`);
              const u = maxAbsDiffWellConditioned(
                r.after[s].get(`${mod}.U`)!,
                flat(ref.steps[s].U_after[mod]),
                ref.steps
                  .slice(0, s + 1)
                  .map((st: { grad_U: Record<string, Nested> }) => flat(st.grad_U[mod])),
              );
              assert.ok(u < tol, `step ${s + 1} ${mod} U diff ${u}`);
            }
          }
          assert.ok(relClose(r.finalLoss, ref.loss_after_step3, 1e-5), `loss after step 3 ${r.finalLoss}`);
          // folding: W + ΔW equals the reference, and the folded model computes what the adapter computed
          // The fold adds U's rows to W, so it is held to U's check after step 3: the elements over a U element whose
          // reference gradient was float32 noise are left out, and the tolerance is U's (libtorch 2.11's fused
          // gemma3 no_cluster fold was 1.10e-5 from PyTorch 1.13's, over the flat 1e-5 this check had, on the H200
          // machine's CPU; BENCHMARKS "First run on a GPU")
          const folded = method.foldedWeights();
          const foldTol = noisyBefore(3) ? AFTER_NOISE_TOL : 1e-5;
          for (const [mod, w] of Object.entries(ref.folded_weights_after_step3 as Record<string, Nested>)) {
            const want = flat(w);
            const grads = ref.steps.map((st: { grad_U: Record<string, Nested> }) => flat(st.grad_U[mod]));
            const noisyU = (i: number) => grads.some((g: number[]) => atNoise(g[i]!));
            const { rows, clusters } = ref.selection[mod] as { rows: number[]; clusters: number[] };
            const inF = want.length / model.linear(mod).outFeatures;
            const skip = new Set<number>();
            rows.forEach((r, k) => {
              for (let j = 0; j < inF; j++) if (noisyU(clusters[k]! * inF + j)) skip.add(r * inF + j);
            });
            const got = folded.get(`${mod}.weight`)!.toFloat32Array();
            let d = 0;
            want.forEach((v, i) => skip.has(i) || (d = Math.max(d, Math.abs(got[i]! - v))));
            assert.ok(d < foldTol, `${mod} folded weight diff ${d} (tolerance ${foldTol})`);
          }
          const batch = sftBatch(ts);
          const withAdapter = noGrad(() => model.forward(batch.ids));
          method.detach();
          for (const [name, w] of folded) model.linear(name.replace(/\.weight$/, "")).weight = w;
          const foldedLogits = noGrad(() => model.forward(batch.ids));
          const last = (t: Tensor) => t.select(1, 15).toFloat32Array();
          assert.ok(maxAbsDiff(last(foldedLogits), flat(ref.folded_logits_last_position)) < 1e-4);
          assert.ok(maxAbsDiff(foldedLogits.toFloat32Array(), withAdapter.toFloat32Array()) < 1e-4);
        });
      }
    }

    test(`${family} LoRA: 3 AdamW steps match PyTorch and merging reproduces the merged model`, () => {
      const model = loadModel(dir);
      const ref = ts.lora;
      const init = new Map<string, Tensor>();
      for (const [mod, a] of Object.entries(ref.A_init as Record<string, number[][]>)) {
        init.set(`${mod}.lora_A`, Tensor.fromArray(a.flat(), [a.length, a[0].length]));
      }
      const method = attachLora(
        model,
        { r: ref.r, alpha: ref.lora_alpha, dropout: 0, targetModules: ["q_proj", "v_proj"] },
        init,
      );
      assert.equal(
        [...method.trainable.values()].reduce((a, t) => a + t.numel, 0),
        ref.trainable_params,
      );
      const r = runSteps(model, method, ts, false);
      for (let s = 0; s < 3; s++) {
        assert.ok(relClose(r.losses[s], ref.steps[s].loss, 1e-5), `step ${s + 1} loss`);
        for (const mod of ref.target_modules as string[]) {
          assert.ok(
            maxAbsDiff(r.grads[s].get(`${mod}.lora_A`)!, flat(ref.steps[s].grad_A[mod])) < 1e-5,
            `grad_A ${mod}`,
          );
          assert.ok(
            maxAbsDiff(r.grads[s].get(`${mod}.lora_B`)!, flat(ref.steps[s].grad_B[mod])) < 1e-5,
            `grad_B ${mod}`,
          );
          assert.ok(
            maxAbsDiff(r.after[s].get(`${mod}.lora_A`)!, flat(ref.steps[s].A_after[mod])) < 1e-5,
            `A ${mod}`,
          );
          assert.ok(
            maxAbsDiff(r.after[s].get(`${mod}.lora_B`)!, flat(ref.steps[s].B_after[mod])) < 1e-5,
            `B ${mod}`,
          );
        }
      }
      const merged = method.foldedWeights();
      for (const [mod, w] of Object.entries(ref.merged_weights_after_step3 as Record<string, Nested>)) {
        assert.ok(maxAbsDiff(merged.get(`${mod}.weight`)!.toFloat32Array(), flat(w)) < 1e-5, `merged ${mod}`);
      }
      method.detach();
      for (const [name, w] of merged) model.linear(name.replace(/\.weight$/, "")).weight = w;
      const logits = noGrad(() => model.forward(sftBatch(ts).ids))
        .select(1, 15)
        .toFloat32Array();
      assert.ok(maxAbsDiff(logits, flat(ref.merged_logits_last_position)) < 1e-4);
    });
  }
});
