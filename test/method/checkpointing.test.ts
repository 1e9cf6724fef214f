/**
 * Gradient checkpointing changes time and memory, never the numbers (method/checkpointing.ts): on every fixture
 * family and method, in float32 and in bf16 (mixed precision for full fine-tuning), trained weights, losses and
 * gradient norms are the same bits with it and without. Two things had made them differ, each checked here with a
 * case that exposes it: LoRA's dropout (the recomputed layer drew new masks; now it draws its forward's, as
 * PyTorch's checkpoint(preserve_rng_state=True)) and a tied embedding's gradient over several micro-batches (the
 * earlier micro-batches' share was added in another order). A run resumed under another choice ends as an
 * uninterrupted one; checkpoints written when the run record held the setting still resume. "auto"'s rule in
 * words, and what it decided is what the FLOP count counts.
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
import { attachFull } from "../../src/method/full.js";
import { DEFAULT_TRAIN, trainSchema, type TrainConfig } from "../../src/method/train-config.js";
import { judgeTrainSchema } from "../../src/eval/judge/config.js";
import { trainSft, type SftExample } from "../../src/method/train.js";
import { chooseCheckpointing, checkpointingKey } from "../../src/method/checkpointing.js";
import { canonicalJson, sha256 } from "../../src/io/hash.js";
import type { DecoderModel } from "../../src/models/decoder.js";
import type { AttachedMethod } from "../../src/method/attached.js";
import { sftFlops } from "../../src/method/flops.js";
import {
  Tensor,
  manualSeed,
  rngState,
  setF32Products,
  setFusedOp,
  setRngState,
} from "../../src/tensor/index.js";

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
        // layer 0's o_proj and down_proj: the recomputation skips their products (gradOnly) and adds the update to
        // zeros
        ["model.layers.0.self_attn.o_proj", { rows: [7], clusters: [0], nClusters: 1 }],
        ["model.layers.0.mlp.down_proj", { rows: [3, 4], clusters: [0, 1], nClusters: 2 }],
        ["model.layers.1.mlp.down_proj", { rows: [1, 5, 9], clusters: [0, 1, 0], nClusters: 2 }],
      ]),
    );
  // dropout on: the recomputed layers must draw their forward's masks
  if (kind === "lora")
    return attachLora(m, {
      r: 2,
      alpha: 4,
      dropout: 0.1,
      targetModules: ["q_proj", "v_proj", "o_proj", "down_proj"],
    });
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
        assert.equal(off.r.gradientCheckpointing, false);
        assert.equal(on.r.gradientCheckpointing, true);
        assertSameRun(off, on, `${family} ${dtype} ${kind}`);
        // the recomputation is counted where it ran, and only there: a forward of the layers more
        assert.ok(on.r.flops.forward > off.r.flops.forward, `${kind}: the second forward is counted`);
        assert.equal(on.r.flops.backward, off.r.flops.backward);
      }
    });

// the recomputation's skipped product (frozenLinearGradOnly) computes dX each way a frozen product does: from Wᵀ's
// copy (frozenDx, here forced: the fixtures' weights are below its size rule), and by the float32 route of CPUs whose
// bf16 products take it; the default runs above cover libtorch's own
for (const [what, force] of [
  [
    "frozenDx's copies",
    () => {
      const prev = setFusedOp("frozenDx", true);
      return () => setFusedOp("frozenDx", prev);
    },
  ],
  [
    "bf16 products in float32",
    () => {
      const prev = setF32Products("on");
      return () => setF32Products(prev);
    },
  ],
] as const)
  test(`qwen2 and gemma3 bfloat16 with ${what}: GoodVibe and LoRA train the same bits with checkpointing and without`, async () => {
    const restore = force();
    try {
      for (const family of ["qwen2", "gemma3"])
        for (const kind of ["goodvibe", "lora"] as const) {
          const off = await run(family, kind, "bfloat16", { ...CFG, gradientCheckpointing: false });
          const on = await run(family, kind, "bfloat16", { ...CFG, gradientCheckpointing: true });
          assertSameRun(off, on, `${family} ${kind} with ${what}`);
        }
    } finally {
      restore();
    }
  });

test("the recomputation's FLOPs: every layer but the last, without frozen o_proj's and down_proj's products in pre-norm layers", () => {
  for (const family of ["qwen2", "gemma3"])
    for (const kind of ["goodvibe", "lora", "full"] as const) {
      const model = loadModel(path.join(FIX, family), { dtype: "float32" });
      const method = attach(kind, model);
      const [T, loss] = [10, 4];
      const extra =
        sftFlops(model, method, [1, T], loss, true).forward -
        sftFlops(model, method, [1, T], loss, false).forward;
      // written out: layers 0 .. L-2 (the last keeps its graph), their linears and adapters, and attention
      const L = model.cfg.numLayers;
      const skip = family !== "gemma3" && kind !== "full";
      let want = (L - 1) * 2 * 2 * T * T * model.cfg.numHeads * model.cfg.headDim;
      for (let i = 0; i < L - 1; i++)
        for (const lin of model.linears().filter((l) => l.name.startsWith(`model.layers.${i}.`))) {
          const skipped = skip && (lin.name.endsWith("o_proj") || lin.name.endsWith("down_proj"));
          if (!skipped) want += 2 * T * lin.inFeatures * lin.outFeatures;
          // an adapter's matrices run again (full fine-tuning's trainable tensors are the weights themselves)
          if (kind !== "full")
            for (const [n, t] of method.trainable)
              if (n.startsWith(`${lin.name}.`)) want += 2 * T * t.shape[0]! * t.shape[1]!;
        }
      assert.equal(extra, want, `${family} ${kind}`);
      method.detach();
    }
});

test("a run resumed under another checkpointing choice ends as the uninterrupted run; a checkpoint that recorded the setting resumes", async () => {
  for (const kind of ["lora", "full"] as const) {
    // qwen2: tied embeddings (full fine-tuning's embedding gradient has two shares)
    const whole = await run("qwen2", kind, "float32", { ...CFG, gradientCheckpointing: true });
    for (const [first, then] of [
      [true, false],
      [false, "auto"],
    ] as const) {
      const runDir = scratchDir("gv-ckpt-");
      const part = await run(
        "qwen2",
        kind,
        "float32",
        { ...CFG, gradientCheckpointing: first, stopAfterSteps: 2 },
        {
          runDir,
        },
      );
      assert.equal(part.r.steps, 2);
      assert.equal(part.r.gradientCheckpointing, first);
      const rest = await run("qwen2", kind, "float32", { ...CFG, gradientCheckpointing: then }, { runDir });
      assert.equal(rest.r.steps, 4);
      assertSameRun(whole, rest, `${kind}: ${first} then ${then}`);
      // steps 1-2 under the first choice, 3-4 under the second ("auto": off for the fixture's few MiB): the record
      // says both where they differ, not the last call's alone
      assert.equal(
        rest.r.gradientCheckpointing,
        first === true ? "mixed" : false,
        `${kind}: ${first} then ${then}`,
      );
      assert.equal(rest.r.stepsRun, 2);
      fs.rmSync(runDir, { recursive: true, force: true });
    }
    // a checkpoint of a version whose run record held train.gradientCheckpointing (its fingerprint hashed it)
    const runDir = scratchDir("gv-ckpt-");
    await run(
      "qwen2",
      kind,
      "float32",
      { ...CFG, gradientCheckpointing: true, stopAfterSteps: 3 },
      { runDir },
    );
    const file = path.join(runDir, "checkpoint", "state.json");
    const state = JSON.parse(fs.readFileSync(file, "utf8")) as {
      fingerprint: string;
      inputs: { train: Record<string, unknown> };
    };
    assert.equal("gradientCheckpointing" in state.inputs.train, false, "the record leaves the setting out");
    state.inputs.train.gradientCheckpointing = true;
    state.fingerprint = sha256(canonicalJson(state.inputs));
    fs.writeFileSync(file, JSON.stringify(state));
    const rest = await run("qwen2", kind, "float32", { ...CFG, gradientCheckpointing: "auto" }, { runDir });
    assertSameRun(whole, rest, `${kind}: a checkpoint that recorded the setting`);
  }
});

test('"auto" in training: decided once from the longest batch, said in the log, counted as it ran', async () => {
  const notes: string[] = [];
  const auto = await run(
    "qwen2",
    "goodvibe",
    "float32",
    { ...CFG, gradientCheckpointing: "auto" },
    { hooks: { onNote: (m) => notes.push(m) } },
  );
  const off = await run("qwen2", "goodvibe", "float32", { ...CFG, gradientCheckpointing: false });
  // a 2-layer fixture's activations are a few MiB: within half of any machine's free memory
  assert.equal(auto.r.gradientCheckpointing, false);
  assert.equal(notes.length, 1);
  assert.match(
    notes[0]!,
    /^training: gradient checkpointing off \("auto": the largest batch keeps about .+ of activations, within half of the .+ available; no second forward\)$/,
  );
  assert.deepEqual(auto.r.flops, off.r.flops);
  assertSameRun(off, auto, "auto");
});

test("chooseCheckpointing: true and false as given; auto from half the available memory on the CPU, on where the addon cannot read a device's", () => {
  let asked = 0;
  const need = (bytes: number) => () => {
    asked++;
    return bytes;
  };
  assert.deepEqual(chooseCheckpointing(true, need(0), "cpu", "s", "x"), { on: true, note: null });
  assert.deepEqual(chooseCheckpointing(false, need(Infinity), "cpu", "s", "x"), { on: false, note: null });
  assert.equal(asked, 0, "a setting given is not estimated");
  const small = chooseCheckpointing("auto", need(1024), "cpu", "training", "set x lower");
  assert.equal(small.on, false);
  assert.match(small.note!, /^training: gradient checkpointing off \("auto": .*1\.00 KiB/);
  const big = chooseCheckpointing("auto", need(2 ** 60), "cpu", "training", "set x lower");
  assert.equal(big.on, true);
  assert.match(
    big.note!,
    /^training: the largest batch needs about 1\.00 EiB|^training: the largest batch needs about 1024 PiB/,
  );
  assert.match(
    big.note!,
    /more than half of the .* available; using gradient checkpointing \(set x lower to avoid it\)$/,
  );
  const gpu = chooseCheckpointing("auto", need(1024), "cuda:0", "identification", "x");
  assert.equal(gpu.on, true);
  assert.match(
    gpu.note!,
    /^identification: gradient checkpointing on \("auto" on cuda:0: the addon cannot read the device's free memory/,
  );
  // keys of finished work hold auto as true, the default it replaced
  assert.deepEqual(
    [checkpointingKey("auto"), checkpointingKey(true), checkpointingKey(false)],
    [true, true, false],
  );
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

test("train.gradientCheckpointing takes true, false or auto, in the training stage's and the judge's settings alike", () => {
  for (const schema of [trainSchema, judgeTrainSchema]) {
    for (const v of [true, false, "auto"] as const)
      assert.equal(schema.parse({ gradientCheckpointing: v }).gradientCheckpointing, v);
    assert.equal(schema.safeParse({ gradientCheckpointing: "sometimes" }).success, false);
  }
});
