/**
 * Identification against test/fixtures/<family>/goodvibe.json.gz (PyTorch): per-sample losses, gradient and
 * activation importances of every linear module, and the top-k sets; plus resume and bad-input checks.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { onBothDecoderPaths } from "../models/decoder-paths.js";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { loadModel } from "../../src/models/index.js";
import {
  identify,
  planBatches,
  type IdentifyOptions,
  type IdentifySample,
} from "../../src/method/goodvibe/identify.js";
import { DEFAULT_CLUSTER } from "../../src/method/goodvibe/config.js";
import { clusterNeurons } from "../../src/method/goodvibe/clustering.js";
import { readGoodvibeFixture } from "./goodvibe-fixture.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

function opts(
  g: { label_token_ids: [number, number]; k: number },
  over: Partial<IdentifyOptions> = {},
): IdentifyOptions {
  return {
    labelTokenIds: g.label_token_ids,
    topK: g.k,
    mode: "gradient",
    batchSize: 1,
    gradientCheckpointing: false,
    profileSamples: 4,
    checkpointEvery: 0,
    source: { model: "fixture", data: "fixture", prompt: "fixture", labels: { unsafe: "1", safe: "0" } },
    ...over,
  };
}

onBothDecoderPaths(() => {
  for (const family of ["llama", "qwen2", "qwen3", "gemma3"]) {
    const dir = path.join(FIX, family);
    const { g, samples } = readGoodvibeFixture(dir);

    for (const variant of [
      { name: "batch 1", o: {} },
      {
        name: "left-padded batch of 4, gradient checkpointing",
        o: { batchSize: 4, gradientCheckpointing: true },
      },
    ]) {
      test(`${family}: gradient importances and top-k match PyTorch (${variant.name})`, async () => {
        const model = loadModel(dir);
        const map = await identify(model, samples, opts(g, variant.o));
        assert.ok(
          Math.abs(map.lossMean - g.loss_mean) <= 1e-5 * Math.abs(g.loss_mean),
          `loss ${map.lossMean} vs ${g.loss_mean}`,
        );
        assert.deepEqual(Object.keys(map.modules), g.module_order);
        for (const name of g.module_order as string[]) {
          const ref = g.modules[name];
          const mine = map.modules[name];
          assert.deepEqual(mine.indices, ref.grad_topk, `${name} top-k`);
          ref.grad_topk.forEach((idx: number, i: number) => {
            const want = ref.grad_importance[idx];
            assert.ok(
              Math.abs(mine.scores[i] - want) <= 1e-4 * Math.abs(want) + 1e-12,
              `${name}[${idx}] ${mine.scores[i]} vs ${want}`,
            );
          });
          // per-sample profiles of the selected neurons
          mine.profiles!.forEach((row, i) =>
            row.forEach((v, s) => {
              const want = ref.grad_importance_per_sample[s][ref.grad_topk[i]];
              assert.ok(Math.abs(v - want) <= 1e-4 * Math.abs(want) + 1e-12, `${name} profile`);
            }),
          );
        }
      });
    }

    test(`${family}: activation-based selection matches PyTorch`, async () => {
      const model = loadModel(dir);
      const map = await identify(model, samples, opts(g, { mode: "activation", batchSize: 3 }));
      for (const name of g.module_order as string[]) {
        const ref = g.modules[name];
        assert.deepEqual(map.modules[name].indices, ref.act_topk, `${name} act top-k`);
        ref.act_topk.forEach((idx: number, i: number) => {
          const want = ref.act_importance[idx];
          assert.ok(Math.abs(map.modules[name].scores[i] - want) <= 1e-4 * Math.abs(want));
        });
      }
    });

    test(`${family}: 2-means on the selected importances gives the fixture's clusters`, async () => {
      const model = loadModel(dir);
      const map = await identify(model, samples, opts(g));
      const ts = readFixtureJson(path.join(dir, "train_step.json.gz"));
      // the fixture's reference clusters the selected neurons' importances (one number each) with k = 2
      const clusters = clusterNeurons(map, {
        ...DEFAULT_CLUSTER,
        features: "importance",
        kMax: 2,
        threshold: -1,
      });
      for (const [name, sel] of Object.entries(
        ts.cluster.selection as Record<string, { rows: number[]; clusters: number[] }>,
      )) {
        assert.deepEqual(clusters.modules[name].rows, sel.rows);
        assert.deepEqual(clusters.modules[name].clusters, sel.clusters, name);
      }
    });
  }
});

test("identification resumes after an interruption and ends where an uninterrupted run ends", async () => {
  const dir = path.join(FIX, "qwen3");
  const { g, samples } = readGoodvibeFixture(dir);
  const model = loadModel(dir);
  const full = await identify(model, samples, opts(g));
  const runDir = scratchDir("gv-identify-");
  // a stop request while the second batch runs (as Ctrl-C would arrive): state saved after it, then exit 130
  const stop = new AbortController();
  await assert.rejects(
    identify(
      model,
      samples,
      opts(g, {
        runDir,
        checkpointEvery: 1,
        onProgress: (d) => void (d === 2 && stop.abort()),
        signal: stop.signal,
      }),
    ),
    (e: Error & { exitCode?: number }) => /interrupted after 2 of 4/.test(e.message) && e.exitCode === 130,
  );
  // the rerun says what it kept, and its progress starts there
  const said: string[] = [];
  const reports: number[] = [];
  const resumed = await identify(
    model,
    samples,
    opts(g, { runDir, checkpointEvery: 1, log: (m) => said.push(m), onProgress: (d) => reports.push(d) }),
  );
  assert.deepEqual(
    said.filter((m) => /resuming/.test(m)),
    [`identification: resuming with 2 of 4 samples done (saved in ${path.join(runDir, "identify-state")})`],
  );
  assert.equal(reports[0], 2);
  assert.equal(reports[reports.length - 1], 4);
  for (const name of Object.keys(full.modules)) {
    assert.deepEqual(resumed.modules[name].indices, full.modules[name].indices);
    assert.deepEqual(resumed.modules[name].scores, full.modules[name].scores);
  }
  assert.equal(resumed.lossMean, full.lossMean);
  // a fresh run (no saved state) says nothing of the kind
  const fresh: string[] = [];
  await identify(model, samples, opts(g, { runDir: scratchDir("gv-identify-"), log: (m) => fresh.push(m) }));
  assert.deepEqual(
    fresh.filter((m) => /resuming/.test(m)),
    [],
  );
});

test("identification resumed under the other checkpointing choice records it as mixed; under the same, as that choice", async () => {
  const dir = path.join(FIX, "qwen3");
  const { g, samples } = readGoodvibeFixture(dir);
  const model = loadModel(dir);
  const cut = async (first: boolean, then: boolean | "auto") => {
    const runDir = scratchDir("gv-identify-ckpt-");
    const stop = new AbortController();
    await assert.rejects(
      identify(
        model,
        samples,
        opts(g, {
          runDir,
          checkpointEvery: 1,
          gradientCheckpointing: first,
          onProgress: (d) => void (d === 2 && stop.abort()),
          signal: stop.signal,
        }),
      ),
      /interrupted after 2 of 4/,
    );
    return identify(model, samples, opts(g, { runDir, checkpointEvery: 1, gradientCheckpointing: then }));
  };
  // samples 1-2 computed without checkpointing, 3-4 with it: neither "on" nor "off" says what happened
  assert.deepEqual((await cut(false, true)).gradientCheckpointing, { requested: true, used: "mixed" });
  assert.deepEqual((await cut(true, false)).gradientCheckpointing, { requested: false, used: "mixed" });
  // "auto" decides off for the fixture's kilobytes of activations: the same choice as the first call's
  assert.deepEqual((await cut(false, "auto")).gradientCheckpointing, { requested: "auto", used: false });
  assert.deepEqual((await cut(true, true)).gradientCheckpointing, { requested: true, used: true });
});

test("identification refuses one-class data and out-of-vocabulary label tokens", async () => {
  const dir = path.join(FIX, "llama");
  const model = loadModel(dir);
  const g = { label_token_ids: [48, 49] as [number, number], k: 5 };
  const same: IdentifySample[] = [
    { id: "a", inputIds: [1, 2, 3], label: 1 },
    { id: "b", inputIds: [4, 5], label: 1 },
  ];
  await assert.rejects(identify(model, same, opts(g)), /both secure and insecure/);
  await assert.rejects(identify(model, [], opts(g)), /at least one/);
  await assert.rejects(
    identify(
      model,
      [...same, { id: "c", inputIds: [1], label: 0 }],
      opts({ label_token_ids: [48, 9999], k: 5 }),
    ),
    /outside the vocabulary/,
  );
});

test("planBatches: every sample once, longest first, within the sample and token limits, little padding", () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const lengths = Array.from({ length: 300 }, () => 20 + Math.floor(rand() * 500));
  const plan = planBatches(lengths, 8, 1024);
  const flat = plan.flat();
  assert.deepEqual(
    [...flat].sort((a, b) => a - b),
    lengths.map((_, i) => i),
  );
  for (let i = 1; i < flat.length; i++) assert.ok(lengths[flat[i - 1]] >= lengths[flat[i]]);
  let padded = 0;
  for (const b of plan) {
    assert.ok(b.length >= 1 && b.length <= 8);
    const T = lengths[b[0]];
    assert.ok(b.length === 1 || b.length * T <= 1024, `batch of ${b.length} × ${T}`);
    padded += b.length * T;
  }
  const real = lengths.reduce((a, b) => a + b, 0);
  assert.ok(padded / real < 1.03, `padding ${(100 * (padded / real - 1)).toFixed(1)}%`);
  // a sample that would make a batch more than 10% padding starts a new one
  assert.deepEqual(planBatches([100, 50, 95], 4, 0), [[0, 2], [1]]);
  // a sample longer than the token limit gets a batch of its own; done samples are left out
  assert.deepEqual(planBatches([5, 3000, 5], 4, 1024), [[1], [0, 2]]);
  assert.deepEqual(
    planBatches([5, 3000, 5], 4, 1024, (i) => i !== 0),
    [[1], [2]],
  );
});

for (const mode of ["gradient", "activation"] as const) {
  test(`length-sorted batches give batch 1's importances and profiles (${mode}, varied lengths)`, async () => {
    const dir = path.join(FIX, "qwen3");
    const model = loadModel(dir);
    let seed = 3;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const samples: IdentifySample[] = Array.from({ length: 14 }, (_, i) => ({
      id: `r${i}`,
      inputIds: Array.from({ length: 3 + Math.floor(rand() * 40) }, () =>
        Math.floor(rand() * model.cfg.vocabSize),
      ),
      label: (i % 2) as 0 | 1,
    }));
    const g = { label_token_ids: [48, 49] as [number, number], k: 6 };
    const one = await identify(model, samples, opts(g, { mode, profileSamples: 9 }));
    for (const o of [
      { batchSize: 5, batchTokens: 120 },
      { batchSize: 14, batchTokens: 0, gradientCheckpointing: true },
    ]) {
      const many = await identify(model, samples, opts(g, { mode, profileSamples: 9, ...o }));
      assert.ok(Math.abs(many.lossMean - one.lossMean) <= 1e-5 * Math.abs(one.lossMean));
      assert.equal(many.tokens, one.tokens);
      assert.ok(many.paddedTokens! > many.tokens!, "the batches were padded");
      if (!o.gradientCheckpointing || mode === "activation")
        assert.deepEqual(many.flops, one.flops, "FLOPs count real tokens, not padding");
      else {
        // the backward recomputed every layer's forward but the last's (which keeps its graph), without o_proj's
        // and down_proj's products (their outputs reach only the residual sums: models/decoder.ts), counted where it
        // ran, per sample at its own length
        const { numLayers: L, numHeads, headDim } = model.cfg;
        let recompute = 0;
        for (const s of samples) {
          const T = s.inputIds.length;
          recompute += (L - 1) * 2 * 2 * T * T * numHeads * headDim;
          for (const lin of model.linears())
            if (!lin.name.startsWith(`model.layers.${L - 1}.`) && !/\.(o_proj|down_proj)$/.test(lin.name))
              recompute += 2 * T * lin.inFeatures * lin.outFeatures;
        }
        assert.equal(many.flops.forward, one.flops.forward + recompute, "FLOPs count the recomputation");
        assert.equal(many.flops.backward, one.flops.backward, "FLOPs count real tokens, not padding");
      }
      for (const [name, m] of Object.entries(one.modules)) {
        const b = many.modules[name];
        assert.deepEqual(b.indices, m.indices, `${name} top-k`);
        m.scores.forEach((v, i) => assert.ok(Math.abs(b.scores[i] - v) <= 1e-4 * v + 1e-12, `${name} score`));
        // float32 sums of differently blocked matmuls: relative 1e-4, or 1e-5 of the module's largest value
        const scale = Math.max(...m.profiles!.flat());
        m.profiles!.forEach((row, i) =>
          row.forEach((v, s) =>
            assert.ok(
              Math.abs(b.profiles![i][s] - v) <= 1e-4 * v + 1e-5 * scale,
              `${name} profile ${i},${s}: ${b.profiles![i][s]} vs ${v}`,
            ),
          ),
        );
      }
    }
  });
}
