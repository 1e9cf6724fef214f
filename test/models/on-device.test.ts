/**
 * The fixtures on a device other than the host's tensors: PyTorch's logits (full and left-padded batches), the
 * identification pass (importances and top-k from goodvibe.json, through the batched read-back) and three
 * AdamW steps of GoodVibe and LoRA (train_step.json), with the model, its adapters and the optimiser state on
 * that device and the batches coming from the host. Runs on CUDA where libtorch has it (scripts/gpu-check.sh);
 * GOODVIBE_TEST_DEVICE=cpu runs the same checks on the CPU (the rehearsal of that script on a machine without a
 * GPU). Tolerances are those of the CPU fixture tests times 5: a GPU sums in another order.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { recordToTensor } from "../../src/models/load.js";
import { AdamW, Tensor, cudaAvailable, noGrad, resolveDevice, type Device } from "../../src/tensor/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { attachLora } from "../../src/method/lora/model.js";
import { sftLossHead } from "../../src/method/losses.js";
import { optimizerStep, trainSft } from "../../src/method/train.js";
import { DEFAULT_TRAIN } from "../../src/method/train-config.js";
import { attachFull } from "../../src/method/full.js";
import { identify } from "../../src/method/goodvibe/identify.js";
import { generate } from "../../src/models/generate.js";
import { fixtureSelections, readGoodvibeFixture } from "../method/goodvibe-fixture.js";
import { type Nested, maxAbsDiff, flat } from "../numeric.js";
import * as fs from "node:fs";
import * as os from "node:os";
import { foldIntoCheckpoint } from "../../src/method/fold.js";
import { readSafetensors } from "../../src/io/safetensors.js";
import type { AttachedMethod } from "../../src/method/attached.js";
import type { DecoderModel } from "../../src/models/decoder.js";
import { answerLosses } from "../../src/eval/preference.js";
import { BuiltinUtilityModel } from "../../src/recipes/evaluate.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { makeTinyChatModel } from "../evalcore/make-model.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const asked = process.env.GOODVIBE_TEST_DEVICE;
const DEVICE: Device | null = asked ? resolveDevice(asked) : cudaAvailable() ? "cuda" : null;
const skip = DEVICE === null && "no CUDA here (GOODVIBE_TEST_DEVICE=cpu rehearses these checks on the CPU)";

const relClose = (a: number, b: number, rtol: number) => Math.abs(a - b) <= rtol * Math.abs(b);

/** Values every device makes alike: a smooth pattern, not a generator's draws. */
const pattern = (n: number, scale: number) =>
  Array.from({ length: n }, (_, i) => scale * Math.sin(0.37 * i + 1));

/** Each tensor of the checkpoint `foldIntoCheckpoint` writes for `method`, as float32 values by name. */
async function foldedValues(dir: string, method: AttachedMethod): Promise<Map<string, Float32Array>> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "gv-ondevice-fold-"));
  try {
    await foldIntoCheckpoint(dir, path.join(out, "m"), method);
    return float32Tensors(path.join(out, "m", "model.safetensors"));
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

function float32Tensors(file: string): Map<string, Float32Array> {
  return new Map(
    [...readSafetensors(file).tensors].map(([name, rec]) => [
      name,
      recordToTensor(rec).float().toFloat32Array(),
    ]),
  );
}

for (const family of ["llama", "qwen2", "qwen3", "gemma3"]) {
  const dir = path.join(FIX, family);

  test(
    `${family} on ${DEVICE ?? "a GPU"}: PyTorch's logits, full and left-padded batches (float32)`,
    { skip },
    () => {
      const cases = readFixtureJson(path.join(dir, "cases.json.gz"));
      const model = loadModel(dir, { device: DEVICE!, dtype: "float32" });
      const ids = Tensor.fromArray(flat(cases.batch.input_ids), [2, 12], "int64");
      const logits = noGrad(() => model.forward(ids));
      assert.equal(logits.device.replace(/:0$/, ""), DEVICE!.replace(/:0$/, ""));
      assert.ok(maxAbsDiff(logits.toFloat32Array(), flat(cases.batch.logits)) < 5e-4);

      const lp = cases.left_padded;
      const rows = lp.input_ids as number[][];
      const [B, T] = [rows.length, rows[0].length];
      const padded = noGrad(() =>
        model.forward(Tensor.fromArray(rows.flat(), [B, T], "int64"), {
          attentionMask: Tensor.fromArray(flat(lp.attention_mask), [B, T], "int64"),
        }),
      );
      const V = padded.size(2);
      const all = padded.toFloat32Array();
      const mine: number[] = [];
      (lp.real_positions as number[][]).forEach((pos, b) =>
        pos.forEach((t) => mine.push(...all.subarray((b * T + t) * V, (b * T + t + 1) * V))),
      );
      assert.ok(maxAbsDiff(mine, flat(lp.logits_at_real_positions)) < 5e-4);
    },
  );

  test(
    `${family} on ${DEVICE ?? "a GPU"}: identification importances and top-k match PyTorch`,
    { skip },
    async () => {
      const { g, samples } = readGoodvibeFixture(dir);
      const model = loadModel(dir, { device: DEVICE!, dtype: "float32" });
      const map = await identify(model, samples, {
        labelTokenIds: g.label_token_ids,
        topK: g.k,
        mode: "gradient",
        batchSize: 4, // left-padded: the mask and lengths go to the device
        gradientCheckpointing: false,
        profileSamples: 4,
        checkpointEvery: 0,
        source: { model: "fixture", data: "fixture", prompt: "fixture", labels: { unsafe: "1", safe: "0" } },
      });
      assert.ok(relClose(map.lossMean, g.loss_mean, 5e-5), `loss ${map.lossMean} vs ${g.loss_mean}`);
      for (const name of g.module_order as string[]) {
        const ref = g.modules[name];
        const mine = map.modules[name];
        assert.deepEqual(mine.indices, ref.grad_topk, `${name} top-k`);
        ref.grad_topk.forEach((idx: number, i: number) =>
          assert.ok(relClose(mine.scores[i], ref.grad_importance[idx], 5e-4), `${name}[${idx}]`),
        );
      }
    },
  );

  test(
    `${family} on ${DEVICE ?? "a GPU"}: 3 AdamW steps of GoodVibe and LoRA match PyTorch`,
    { skip },
    () => {
      const ts = readFixtureJson(path.join(dir, "train_step.json.gz"));
      const ids = ts.sft_batch.input_ids as number[][];
      const labels = ts.sft_batch.labels as number[][];
      const shape = [ids.length, ids[0].length];
      const batchIds = Tensor.fromArray(ids.flat(), shape, "int64");
      const batchLabels = Tensor.fromArray(labels.flat(), shape, "int64");
      const opts = { lr: 1e-2, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0 };

      const gvModel = loadModel(dir, { device: DEVICE!, dtype: "float32" });
      const gv = attachGoodVibe(gvModel, fixtureSelections(ts.cluster.selection));
      for (const t of gv.trainable.values())
        assert.equal(t.device.replace(/:0$/, ""), DEVICE!.replace(/:0$/, ""));
      const gvOpt = new AdamW([...gv.trainable.values()], opts);
      for (let s = 0; s < 3; s++) {
        const loss = gvModel.forwardBackward(batchIds, {}, sftLossHead(gvModel, batchLabels));
        assert.ok(relClose(loss, ts.cluster.steps[s].loss, 5e-5), `GoodVibe step ${s + 1} loss ${loss}`);
        optimizerStep(gv, gvOpt, null); // the training loop's step: gradient norm and AdamW on the device
      }
      for (const mod of Object.keys(ts.cluster.selection)) {
        const u = gv.trainable.get(`${mod}.U`)!.toFloat32Array();
        const want = flat(ts.cluster.steps[2].U_after[mod]);
        // elements whose reference gradient is float32 noise move by ~lr either way (train_step.test.ts)
        const noisy = new Set<number>();
        for (const st of ts.cluster.steps)
          flat(st.grad_U[mod]).forEach((v, i) => Math.abs(v) < 1e-7 && noisy.add(i));
        let d = 0;
        want.forEach((w, i) => noisy.has(i) || (d = Math.max(d, Math.abs(u[i] - w))));
        assert.ok(d < 2.5e-4, `${mod} U after 3 steps: ${d}`);
      }

      const loraModel = loadModel(dir, { device: DEVICE!, dtype: "float32" });
      const init = new Map<string, Tensor>();
      for (const [mod, a] of Object.entries(ts.lora.A_init as Record<string, number[][]>))
        init.set(`${mod}.lora_A`, Tensor.fromArray(a.flat(), [a.length, a[0].length]));
      const lora = attachLora(
        loraModel,
        { r: ts.lora.r, alpha: ts.lora.lora_alpha, dropout: 0, targetModules: ["q_proj", "v_proj"] },
        init,
      );
      const loraOpt = new AdamW([...lora.trainable.values()], opts);
      for (let s = 0; s < 3; s++) {
        const loss = loraModel.forwardBackward(batchIds, {}, sftLossHead(loraModel, batchLabels));
        assert.ok(relClose(loss, ts.lora.steps[s].loss, 5e-5), `LoRA step ${s + 1} loss ${loss}`);
        optimizerStep(lora, loraOpt, null);
      }
    },
  );

  test(
    `${family} on ${DEVICE ?? "a GPU"}: training with and without gradient checkpointing agrees (LoRA with dropout, full)`,
    { skip },
    async () => {
      // the checkpointed pass sets the device's generator back before recomputing a layer (LoRA's dropout masks)
      // and adds a tied embedding's earlier gradient last; before, LoRA's weights differed by up to 1.9e-2 after
      // 4 steps here (CPU); bit for bit on the CPU (test/method/checkpointing.test.ts), a GPU's sums may differ
      const ts = readFixtureJson(path.join(dir, "train_step.json.gz"));
      const ids = ts.sft_batch.input_ids as number[][];
      const labels = ts.sft_batch.labels as number[][];
      const examples = Array.from({ length: 6 }, (_, r) => ({
        inputIds: ids[r % 2]!.slice(0, 12 + (r % 4)),
        labels: labels[r % 2]!.slice(0, 12 + (r % 4)),
      }));
      const cfg = { ...DEFAULT_TRAIN, lr: 5e-3, epochs: 2, batchSize: 2, gradAccum: 2, seed: 3 };
      for (const kind of ["lora", "full"] as const) {
        const runs = [];
        for (const gradientCheckpointing of [false, true]) {
          const model = loadModel(dir, { device: DEVICE!, dtype: "float32" });
          const method =
            kind === "lora"
              ? attachLora(model, { r: 2, alpha: 4, dropout: 0.1, targetModules: ["q_proj", "v_proj"] })
              : attachFull(model);
          const r = await trainSft(model, method, examples, { ...cfg, gradientCheckpointing });
          runs.push({
            losses: r.log.map((l) => l.loss),
            weights: [...method.trainable.values()].map((t) => t.toFloat32Array()),
          });
        }
        const [off, on] = runs as [(typeof runs)[0], (typeof runs)[0]];
        off.losses.forEach((l, i) =>
          assert.ok(relClose(on.losses[i]!, l, 1e-5), `${kind} step ${i + 1} loss`),
        );
        let d = 0;
        off.weights.forEach((w, k) => (d = Math.max(d, maxAbsDiff(on.weights[k]!, w))));
        assert.ok(d < 1e-5, `${kind}: trained weights ${d} apart`);
      }
    },
  );

  test(
    `${family} on ${DEVICE ?? "a GPU"}: bf16 full fine-tuning from the checkpoint's stored tensors (harden's masters) trains there, as on the host`,
    { skip },
    async () => {
      // harden hands attachFull the checkpoint's tensors, read on the host; masters left there failed the first
      // AdamW step on a GPU (a GPU gradient into host moments; found by a review, never run before)
      const ts = readFixtureJson(path.join(dir, "train_step.json.gz"));
      const ids = ts.sft_batch.input_ids as number[][];
      const labels = ts.sft_batch.labels as number[][];
      const examples = [0, 1].map((r) => ({
        inputIds: ids[r]!.slice(0, 14),
        labels: labels[r]!.slice(0, 14),
      }));
      const cfg = { ...DEFAULT_TRAIN, lr: 1e-3, epochs: 2, batchSize: 1, gradAccum: 1, warmupRatio: 0 };
      const stored = readSafetensors(path.join(dir, "model.safetensors")).tensors;
      const run = async (device: Device) => {
        const model = loadModel(dir, { device, dtype: "bfloat16" });
        const m = attachFull(model, {
          checkpoint: (n) => {
            const rec = stored.get(n);
            return rec ? recordToTensor(rec) : null;
          },
        });
        for (const [n, t] of m.mixed!.masters) assert.equal(t.device, model.embed.device, n);
        const r = await trainSft(model, m, examples, cfg);
        return r.log.map((l) => l.loss);
      };
      const host = await run("cpu");
      const there = await run(DEVICE!);
      assert.equal(there.length, host.length);
      // bf16 products sum in another order on a GPU
      there.forEach((l, i) => assert.ok(relClose(l, host[i]!, 2e-2), `step ${i + 1}: ${l} vs ${host[i]}`));
    },
  );

  test(
    `${family} on ${DEVICE ?? "a GPU"}: generation, greedy equal to the host's and sampled with every processor`,
    { skip },
    () => {
      // every tensor a decoding step makes must be on the logits' device: top-p's masks were made on the host,
      // which fails the first sampled token of a CUDA model (the CPU cannot show it; this runs on the GPU)
      const cases = readFixtureJson(path.join(dir, "cases.json.gz"));
      const prompts = (cases.batch.input_ids as number[][]).map((r, i) => r.slice(0, 6 + 3 * i));
      const greedy = { maxNewTokens: 6, repetitionPenalty: 1.3 };
      const host = generate(loadModel(dir, { dtype: "float32" }), prompts, greedy);
      const model = loadModel(dir, { device: DEVICE!, dtype: "float32" });
      assert.deepEqual(generate(model, prompts, greedy), host, "greedy answers on the device and the host");
      const V = model.cfg.vocabSize;
      const sampled = generate(model, prompts, {
        maxNewTokens: 6,
        temperature: 0.8,
        topK: 20,
        topP: 0.9,
        repetitionPenalty: 1.3,
      });
      assert.equal(sampled.length, prompts.length);
      for (const row of sampled) for (const t of row) assert.ok(Number.isInteger(t) && t >= 0 && t < V);
    },
  );

  test(
    `${family} on ${DEVICE ?? "a GPU"}: folding GoodVibe, LoRA and full fine-tuning into a checkpoint gives the host's`,
    { skip },
    async () => {
      // the fold reads the stored tensors on the host and the update where the model trained: on a GPU, GoodVibe's
      // row patch and every whole-tensor fold mixed the two (libtorch: "Expected all tensors to be on the same
      // device"), after a whole training run
      const ts = readFixtureJson(path.join(dir, "train_step.json.gz"));
      const attach: Record<string, (m: DecoderModel) => AttachedMethod> = {
        goodvibe: (m) => attachGoodVibe(m, fixtureSelections(ts.cluster.selection)),
        lora: (m) => attachLora(m, { r: 2, alpha: 4, dropout: 0, targetModules: ["q_proj", "v_proj"] }),
        full: (m) => attachFull(m),
      };
      for (const [kind, attachIt] of Object.entries(attach)) {
        const folded: Map<string, Float32Array>[] = [];
        for (const device of ["cpu", DEVICE!] as Device[]) {
          const model = loadModel(dir, { device, dtype: "float32" });
          const method = attachIt(model);
          // a trained state, the same on both: every trainable tensor set to a pattern (LoRA's B too, so B·A ≠ 0)
          noGrad(() => {
            for (const t of method.trainable.values()) {
              const n = t.shape.reduce((a, b) => a * b, 1);
              t.copy_(t.add(Tensor.fromArray(pattern(n, 1e-2), t.shape).onDevice(t.device as Device)));
            }
          });
          folded.push(await foldedValues(dir, method));
        }
        const [host, dev] = folded as [Map<string, Float32Array>, Map<string, Float32Array>];
        const base = float32Tensors(path.join(dir, "model.safetensors"));
        assert.deepEqual([...dev.keys()].sort(), [...host.keys()].sort());
        let changed = 0;
        for (const [name, want] of host) {
          // GoodVibe and full fine-tuning fold by elementwise float32 arithmetic: bit for bit on any device; LoRA's
          // B·A is a product, summed in another order on a GPU
          const d = maxAbsDiff(dev.get(name)!, want);
          assert.ok(
            kind === "lora" ? d < 1e-6 : d === 0,
            `${kind}: ${name} folded ${d} apart from the host's`,
          );
          if (maxAbsDiff(want, base.get(name)!) > 0) changed++;
        }
        assert.ok(changed > 0, `${kind}: the fold changed no tensor`);
      }
    },
  );
}

test(
  `on ${DEVICE ?? "a GPU"}: preference losses and log-likelihood scoring give the host's`,
  { skip },
  async (t) => {
    // the scoring passes index the model's outputs with token positions and targets: made on the host, they failed
    // on a GPU (secure preference, ARC/MMLU through the built-in engine)
    const made = makeTinyChatModel({ seed: 5 });
    t.after(() => fs.rmSync(made.dir, { recursive: true, force: true }));
    const tok = await loadTokenizer(made.dir);
    const examples = [0, 1, 2].map((k) => {
      const ids = tok.encode(`def f${k}(x):\n    return x * ${k + 2}\n`, { addSpecialTokens: true });
      return { inputIds: ids, labels: ids.map((id, i) => (i < 3 ? -100 : id)) };
    });
    const requests = [
      { context: "Question: what does 2 * 21 give?\nAnswer:", continuation: " 42" },
      { context: "def double(x):\n    return", continuation: " x * 2" },
    ];
    const results = [];
    for (const device of ["cpu", DEVICE!] as Device[]) {
      const model = loadModel(made.dir, { device, dtype: "float32" });
      results.push({
        losses: await answerLosses(model, examples, 2),
        ll: await new BuiltinUtilityModel(model, tok).loglikelihood(requests),
      });
    }
    const [host, dev] = results as [(typeof results)[0], (typeof results)[0]];
    host.losses.forEach((l, i) =>
      assert.ok(relClose(dev.losses[i]!, l, 1e-5), `preference loss ${i}: ${dev.losses[i]} vs ${l}`),
    );
    host.ll.forEach((r, i) => {
      assert.ok(relClose(dev.ll[i]!.logprob, r.logprob, 1e-5), `log-likelihood ${i}`);
      assert.equal(dev.ll[i]!.isGreedy, r.isGreedy);
    });
  },
);
