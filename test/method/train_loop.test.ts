/**
 * The shared SFT loop: the schedule against transformers' formula, and exact resume after an interruption.
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
import { attachLora } from "../../src/method/lora/model.js";
import { DEFAULT_TRAIN } from "../../src/method/train-config.js";
import {
  lrFactor,
  nonFiniteTensor,
  otherBuildWarning,
  planBatches,
  trainProgressHooks,
  trainSft,
  type SftExample,
} from "../../src/method/train.js";
import type { Logger } from "../../src/util/log.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import { Tensor, buildRecord, noGrad, setF32Products, tidy } from "../../src/tensor/index.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

test("warmup + cosine schedule equals get_cosine_schedule_with_warmup", () => {
  const total = 20;
  const warmup = 2; // ceil(20 * 0.1)
  for (let s = 0; s < total; s++) {
    const want = s < warmup ? s / warmup : 0.5 * (1 + Math.cos((Math.PI * (s - warmup)) / (total - warmup)));
    assert.ok(Math.abs(lrFactor(s, total, { warmupRatio: 0.1, schedule: "cosine" }) - want) < 1e-12);
  }
  assert.equal(lrFactor(5, 10, { warmupRatio: 0, schedule: "constant" }), 1);
});

test("batches: every example once per epoch, seeded shuffles that differ between epochs", () => {
  const plan = planBatches(10, { epochs: 2, batchSize: 3, gradAccum: 2, seed: 1 });
  const epoch = (e: number) => plan.slice(e * 2, e * 2 + 2).flat(2);
  assert.deepEqual(
    [...epoch(0)].sort((a, b) => a - b),
    [...Array(10).keys()],
  );
  assert.deepEqual(
    [...epoch(1)].sort((a, b) => a - b),
    [...Array(10).keys()],
  );
  assert.notDeepEqual(epoch(0), epoch(1));
  assert.deepEqual(planBatches(10, { epochs: 2, batchSize: 3, gradAccum: 2, seed: 1 }), plan);
});

function examples(): SftExample[] {
  const ts = readFixtureJson(path.join(FIX, "qwen2", "train_step.json.gz"));
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  const out: SftExample[] = [];
  for (let r = 0; r < 6; r++) {
    const i = r % 2;
    const cut = 12 + (r % 4);
    out.push({ inputIds: ids[i].slice(0, cut), labels: labels[i].slice(0, cut) });
  }
  return out;
}

for (const kind of ["goodvibe", "lora"] as const) {
  test(`${kind}: an interrupted run resumes from its checkpoint and ends with the same tensors`, async () => {
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
    const attach = (m: ReturnType<typeof loadModel>) =>
      kind === "goodvibe"
        ? attachGoodVibe(
            m,
            new Map<string, RowSelection>([
              ["model.layers.1.mlp.down_proj", { rows: [1, 5, 9], clusters: [0, 1, 0], nClusters: 2 }],
            ]),
          )
        : attachLora(m, { r: 2, alpha: 4, dropout: 0.1, targetModules: ["q_proj", "v_proj"] });
    const dir = path.join(FIX, "qwen2");
    const full = loadModel(dir);
    const mFull = attach(full);
    const r1 = await trainSft(full, mFull, examples(), cfg);
    assert.equal(r1.steps, 6);
    const runDir = scratchDir("gv-train-");
    const part = loadModel(dir);
    const mPart = attach(part);
    const r2 = await trainSft(part, mPart, examples(), { ...cfg, stopAfterSteps: 2 }, { runDir });
    assert.equal(r2.finished, false);
    assert.equal(r2.steps, 2);
    const again = loadModel(dir);
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
    // a checkpoint of another run is refused, naming what differs, and left as it was
    const stateFile = path.join(runDir, "checkpoint", "state.json");
    const saved = fs.readFileSync(stateFile, "utf8");
    const refused = async (why: string, run: () => Promise<unknown>, expect: RegExp): Promise<void> => {
      await assert.rejects(run(), (e: Error) => {
        assert.match(e.message, /belongs to another training run/, why);
        assert.match(e.message, expect, why);
        assert.ok(e.message.includes(`delete ${path.join(runDir, "checkpoint")} to start over`), why);
        return true;
      });
      assert.equal(fs.readFileSync(stateFile, "utf8"), saved, `${why}: the checkpoint was changed`);
    };
    await refused(
      "data",
      () => trainSft(loadModel(dir), attach(loadModel(dir)), examples().slice(1), cfg, { runDir }),
      /the training examples changed, data\.examples: 6 → 5/,
    );
    await refused(
      "lr",
      () => trainSft(loadModel(dir), attach(loadModel(dir)), examples(), { ...cfg, lr: 1e-3 }, { runDir }),
      /\(train\.lr: 0\.005 → 0\.001\)/,
    );
    await refused(
      "dtype",
      () => {
        const m = loadModel(dir, { dtype: "bfloat16" });
        return trainSft(m, attach(m), examples(), cfg, { runDir });
      },
      /dtype: "float32" → "bfloat16"/,
    );
    await refused(
      "base weights",
      () => {
        const m = loadModel(dir);
        noGrad(() => m.linear("model.layers.0.mlp.up_proj").weight.mul_(1.001));
        return trainSft(m, attach(m), examples(), cfg, { runDir });
      },
      /\(the model's weights changed\)/,
    );
    await refused(
      "a caller's setting",
      () => {
        const m = loadModel(dir);
        return trainSft(m, attach(m), examples(), cfg, { runDir, identity: { settings: { threads: 1 } } });
      },
      /settings\.threads: unset → 1/,
    );
    // the method's own settings, which the trainable tensors' shapes do not show
    const other = (m: ReturnType<typeof loadModel>) =>
      kind === "goodvibe"
        ? attachGoodVibe(
            m,
            new Map<string, RowSelection>([
              ["model.layers.1.mlp.down_proj", { rows: [1, 5, 9], clusters: [0, 0, 1], nClusters: 2 }],
            ]),
          )
        : attachLora(m, { r: 2, alpha: 8, dropout: 0.1, targetModules: ["q_proj", "v_proj"] });
    await refused(
      "method settings",
      () => {
        const m = loadModel(dir);
        return trainSft(m, other(m), examples(), cfg, { runDir });
      },
      kind === "goodvibe"
        ? /GoodVibe's selected rows and clusters changed/
        : /method\.settings\.lora\.alpha: 4 → 8/,
    );
    fs.rmSync(runDir, { recursive: true, force: true });
  });
}

test("a run says where it starts: step 0 fresh, the checkpoint's step and folder resumed, nothing when every step is done", async () => {
  const cfg = {
    ...DEFAULT_TRAIN,
    lr: 5e-3,
    epochs: 1,
    batchSize: 2,
    gradAccum: 1,
    seed: 3,
    gradientCheckpointing: false,
  };
  const attach = (m: ReturnType<typeof loadModel>) =>
    attachGoodVibe(
      m,
      new Map<string, RowSelection>([
        ["model.layers.1.mlp.down_proj", { rows: [1, 5, 9], clusters: [0, 1, 0], nClusters: 2 }],
      ]),
    );
  const dir = path.join(FIX, "qwen2");
  const runDir = scratchDir("gv-train-start-");
  const run = async (stopAfterSteps?: number) => {
    const said: string[] = [];
    const log: Logger = {
      info: (m) => said.push(`info ${m}`),
      warn: (m) => said.push(`warn ${m}`),
      progress: (stage, done, total, extra) =>
        said.push(`progress ${stage} ${done}/${total}${extra ? ` ${extra}` : ""}`),
    };
    const starts: { step: number; totalSteps: number; checkpoint: string | null }[] = [];
    const progress = trainProgressHooks(log, "train", (l) => `step ${l.step}`);
    const m = loadModel(dir);
    await trainSft(
      m,
      attach(m),
      examples(),
      { ...cfg, ...(stopAfterSteps ? { stopAfterSteps } : {}) },
      {
        runDir,
        hooks: { onStart: (i) => (starts.push(i), progress.onStart(i)), onStep: progress.onStep },
      },
    );
    return { said, starts };
  };
  // 6 examples, 2 a step: 3 steps
  const first = await run(1);
  assert.deepEqual(first.starts, [{ step: 0, totalSteps: 3, checkpoint: null }]);
  // the clock starts before the first step, so the first step's line has a rate
  assert.deepEqual(first.said, ["progress train 0/3", "progress train 1/3 step 1"]);
  const ckpt = path.join(runDir, "checkpoint");
  const second = await run();
  assert.deepEqual(second.starts, [{ step: 1, totalSteps: 3, checkpoint: ckpt }]);
  assert.deepEqual(second.said, [
    `info train: resuming at step 1 of 3 (checkpoint in ${ckpt})`,
    "progress train 1/3",
    "progress train 2/3 step 2",
    "progress train 3/3 step 3",
  ]);
  const third = await run();
  assert.deepEqual(third, { said: [], starts: [] });
});

test("a stop asked before training begins (during the start-up) is honoured before the checkpoint is read", async () => {
  const cfg = {
    ...DEFAULT_TRAIN,
    lr: 5e-3,
    epochs: 1,
    batchSize: 2,
    gradAccum: 1,
    checkpointEvery: 1,
    seed: 3,
  };
  const dir = path.join(FIX, "qwen2");
  const attach = (m: ReturnType<typeof loadModel>) =>
    attachLora(m, { r: 2, alpha: 4, dropout: 0, targetModules: ["q_proj", "v_proj"] });
  const runDir = scratchDir("gv-train-early-stop-");
  const part = loadModel(dir);
  const r = await trainSft(part, attach(part), examples(), { ...cfg, stopAfterSteps: 1 }, { runDir });
  assert.equal(r.steps, 1);
  // the checkpoint's tensors gone: reading the checkpoint would fail; a run stopped before it never reads it
  fs.rmSync(path.join(runDir, "checkpoint", "tensors.safetensors"));
  const stop = new AbortController();
  stop.abort(new Error("SIGINT")); // Ctrl-C while the model loaded
  const again = loadModel(dir);
  await assert.rejects(
    trainSft(again, attach(again), examples(), cfg, { runDir, hooks: { signal: stop.signal } }),
    (e: Error & { exitCode?: number }) =>
      e.exitCode === 130 &&
      /^training stopped before it began; rerun the same command to resume$/.test(e.message),
  );
  assert.ok(fs.existsSync(path.join(runDir, "checkpoint", "state.json")), "the checkpoint is left as it was");
});

test("NaN loss stops training with a clear error", async () => {
  const model = loadModel(path.join(FIX, "llama"));
  const m = attachGoodVibe(
    model,
    new Map([["model.layers.0.self_attn.q_proj", { rows: [0], clusters: [0], nClusters: 1 }]]),
  );
  const ex = examples().map((e) => ({ ...e }));
  await assert.rejects(
    trainSft(model, m, ex, {
      ...DEFAULT_TRAIN,
      lr: Infinity,
      epochs: 2,
      gradAccum: 1,
      batchSize: 6,
      gradientCheckpointing: false,
    }),
    /training diverged at step \d+: (the loss is (NaN|Infinity)|the gradient norm is NaN|\S+ holds NaN or infinite values)/,
  );
});

test("the divergence check names the first tensor holding a NaN or an infinity, and only such a tensor", () => {
  tidy(() => {
    const t = (values: number[], dtype: "float32" | "bfloat16" = "float32") =>
      Tensor.fromArray(values, [values.length], "float32").to(dtype); // freed when the scope ends
    const ok = t([1, -2, 3]);
    assert.equal(nonFiniteTensor(new Map()), null);
    assert.equal(nonFiniteTensor(new Map([["a", ok]])), null);
    // finite values whose sum overflows float32: not a divergence
    assert.equal(nonFiniteTensor(new Map([["big", t([3e38, 3e38, -1])]])), null);
    for (const [what, bad] of [
      ["NaN", t([1, NaN, 2])],
      ["+inf", t([1, 2, Infinity])],
      ["-inf", t([-Infinity, 0])],
      ["+inf and -inf (a NaN sum)", t([Infinity, -Infinity])],
      ["bf16 inf", t([0.5, Infinity], "bfloat16")],
    ] as const) {
      const tensors = new Map([
        ["first", ok],
        ["big", t([3e38, 3e38])],
        ["bad", bad],
        ["after", t([NaN])],
      ]);
      assert.equal(nonFiniteTensor(tensors), "bad", what);
    }
  });
});

test("an update that leaves a trainable tensor non-finite stops training at that step, naming the tensor", async () => {
  const model = loadModel(path.join(FIX, "llama"));
  const m = attachGoodVibe(
    model,
    new Map([["model.layers.0.self_attn.q_proj", { rows: [0], clusters: [0], nClusters: 1 }]]),
  );
  // lr = ∞: step 1's loss and gradient are finite, its update is not
  await assert.rejects(
    trainSft(model, m, examples(), {
      ...DEFAULT_TRAIN,
      lr: Infinity,
      warmupRatio: 0,
      epochs: 1,
      gradAccum: 1,
      batchSize: 6,
      gradientCheckpointing: false,
    }),
    /training diverged at step 1: model\.layers\.0\.self_attn\.q_proj\.U holds NaN or infinite values after the update/,
  );
});

test("a checkpoint records the builds that computed its steps; resumed by another build (bf16 route), it is said once and recorded from the step it took over", async () => {
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
  const dir = path.join(FIX, "qwen2");
  const attach = (m: ReturnType<typeof loadModel>) =>
    attachLora(m, { r: 2, alpha: 4, dropout: 0, targetModules: ["q_proj", "v_proj"] });
  const runDir = scratchDir("gv-train-builds-");
  const prev = setF32Products("on");
  try {
    const a = loadModel(dir, { dtype: "bfloat16" });
    const routeA = buildRecord("cpu", "bfloat16");
    const r1 = await trainSft(a, attach(a), examples(), { ...cfg, stopAfterSteps: 2 }, { runDir });
    assert.deepEqual(r1.builds, [{ fromStep: 0, build: routeA }]);
    const told: Parameters<typeof otherBuildWarning>[0][] = [];
    // the same build resumes: nothing to say
    const b = loadModel(dir, { dtype: "bfloat16" });
    const r2 = await trainSft(
      b,
      attach(b),
      examples(),
      { ...cfg, stopAfterSteps: 1 },
      {
        runDir,
        hooks: { onOtherBuild: (i) => told.push(i) },
      },
    );
    assert.equal(r2.steps, 3);
    assert.equal(told.length, 0);
    assert.deepEqual(r2.builds, [{ fromStep: 0, build: routeA }]);
    // another route takes over at step 3
    setF32Products("off");
    const routeB = buildRecord("cpu", "bfloat16");
    assert.notDeepEqual(routeB, routeA);
    const c = loadModel(dir, { dtype: "bfloat16" });
    const r3 = await trainSft(c, attach(c), examples(), cfg, {
      runDir,
      hooks: { onOtherBuild: (i) => told.push(i) },
    });
    assert.equal(r3.finished, true);
    assert.equal(told.length, 1);
    assert.equal(told[0]!.step, 3);
    assert.equal(told[0]!.checkpoint, path.join(runDir, "checkpoint"));
    assert.deepEqual(r3.builds, [
      { fromStep: 0, build: routeA },
      { fromStep: 3, build: routeB },
    ]);
    const text = otherBuildWarning(told[0]!);
    assert.match(
      text,
      /resuming 3 finished steps computed by .*bf16 products: float32, rounded once.*differs in bf16 products/,
    );
    assert.ok(text.includes(`delete ${path.join(runDir, "checkpoint")} to train from the start`), text);
    // a checkpoint of a version before the record: its steps are an unrecorded build's
    const stateFile = path.join(runDir, "checkpoint", "state.json");
    const state = JSON.parse(fs.readFileSync(stateFile, "utf8"));
    delete state.builds;
    fs.writeFileSync(stateFile, JSON.stringify(state));
    const d = loadModel(dir, { dtype: "bfloat16" });
    const r4 = await trainSft(d, attach(d), examples(), cfg, {
      runDir,
      hooks: { onOtherBuild: (i) => told.push(i) },
    });
    assert.equal(told.length, 2);
    assert.deepEqual(r4.builds, [
      { fromStep: 0, build: null },
      { fromStep: 6, build: routeB },
    ]);
    assert.match(otherBuildWarning(told[1]!), /an earlier goodvibe that did not record its build/);
  } finally {
    setF32Products(prev);
    fs.rmSync(runDir, { recursive: true, force: true });
  }
});
