/**
 * One supervised training step at Qwen2.5-0.5B's shape (batch 1, 256 tokens, loss on the last 128 — the
 * "answer" half) for one method per process, since peak RSS is per process:
 *   goodvibe  50 random rows per linear layer in 2–4 random clusters, bf16 compute, float32 U
 *   lora      r = 8, alpha 16, dropout 0.05 on q/k/v/o/gate/up/down, bf16 compute, float32 A/B
 *   full      every parameter; bf16 (the default, --dtype): bf16 weights and gradients, float32 masters and AdamW
 *             states, one parameter stepped at a time (optimizerStep); --dtype float32: the fp32 path
 *   frozen    no trainable tensor: the same forward + backward with frozen weights (the memory reference)
 * The step is trainSft's step written out (forwardBackward → optimizerStep: clip, AdamW, drop the gradients), so
 * each phase can be timed on its own.
 *
 *   node dist/bench/train-step.js --method goodvibe [--dtype bfloat16|float32] [--checkpointing] [--layers 24]
 *     [--steps 3] [--threads N] [--device cpu|cuda] [--selection f] [--json f] [--op-profile f]
 *
 * --selection f: GoodVibe's rows and clusters are read from f when it exists, else drawn (seed 0) and written there;
 * bench/torch_train.py --selection f reads the same file, so both sides train the same rows (side-by-side.sh).
 * --op-profile f: as many steps again with every op libtorch runs recorded (common.ts writeOpProfile), for
 * bench/op-profile.ts to set beside torch_train.py --op-profile's.
 */
import * as fs from "node:fs";
import { benchArgs } from "./args.js";
import { loadModel, type DecoderModel } from "../src/models/index.js";
import { attachGoodVibe } from "../src/method/goodvibe/model.js";
import { attachFull } from "../src/method/full.js";
import { countParams, type AttachedMethod } from "../src/method/attached.js";
import { attachLora } from "../src/method/lora/model.js";
import { DEFAULT_LORA } from "../src/method/lora/config.js";
import { IGNORE_INDEX, sftLossHead } from "../src/method/losses.js";
import { sftFlops } from "../src/method/flops.js";
import { optimizerStep } from "../src/method/train.js";
import {
  AdamW,
  Tensor,
  fusedOps,
  manualSeed,
  resolveDevice,
  synchronize,
  tidy,
} from "../src/tensor/index.js";
import { peakRssBytes } from "../src/util/memory.js";
import {
  GiB,
  applyDecoderPath,
  applyThreads,
  frozenDxSummary,
  machineInfo,
  abSettings,
  median,
  randomModelDir,
  randomSelections,
  seconds,
  sharedSelections,
  table,
  writeJson,
  writeOpProfile,
} from "./common.js";
import { benchIds } from "./pass.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    method: { type: "string", default: "goodvibe" },
    dtype: { type: "string", default: "bfloat16" },
    checkpointing: { type: "boolean", default: false },
    layers: { type: "string", default: "24" },
    // a model folder to load instead of the random Qwen2.5-0.5B-shaped one (e.g. make-random-model.js's 7b shape)
    model: { type: "string" },
    tokens: { type: "string", default: "256" },
    steps: { type: "string", default: "3" },
    "rows-per-layer": { type: "string", default: "50" },
    threads: { type: "string" },
    // every fused op of the addon / none (transformers' eager code line by line); default: the per-op defaults
    fused: { type: "boolean", default: false },
    unfused: { type: "boolean", default: false },
    // one q/k/v and one gate/up product (on) or a product per linear (off); default: the per-op default
    concat: { type: "string" },
    // a frozen bf16 weight's dX from its transposed copy (or, where bf16 products are computed in float32, its forward
    // and dX from its float32 copy): on (every frozen product), off (libtorch's linear backward / the per-call
    // upcast), auto (the default: within the memory budget, GOODVIBE_FROZEN_DX_BUDGET; models/frozen-dx.ts)
    "frozen-dx": { type: "string" },
    device: { type: "string", default: "cpu" },
    selection: { type: "string" },
    // rotate steps through settings of per-op switches in this process (A/B): --ab frozenDx (off, on), or a list,
    // --ab attention,clusterRowUpdate (all off, then each on alone)
    ab: { type: "string" },
    json: { type: "string" },
    "op-profile": { type: "string" },
  },
});

function currentRssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

/** For the frozen reference: layer 0's q_proj output becomes a leaf that needs a gradient, so backward runs. */
function frozenMethod(model: DecoderModel): AttachedMethod {
  const q0 = model.layers[0].attn.q;
  q0.tap = (y) => {
    if (!y.requiresGrad) y.requiresGrad_();
  };
  return {
    name: "goodvibe", // an adapter-style method with nothing to train: sftFlops counts no parameter gradients
    settings: {},
    trainable: new Map(),
    foldedWeights: () => new Map(),
    foldedNames: [],
    foldedWeight: (name) => {
      throw new Error(`${name}: the frozen reference folds nothing`);
    },
    detach: () => {
      q0.tap = null;
    },
    setTraining: () => {},
  };
}

function attach(model: DecoderModel, method: string): AttachedMethod {
  switch (method) {
    case "goodvibe":
      return attachGoodVibe(
        model,
        args.selection
          ? sharedSelections(model, Number(args["rows-per-layer"]), args.selection)
          : randomSelections(model, Number(args["rows-per-layer"])),
      );
    case "lora":
      return attachLora(model, DEFAULT_LORA);
    case "full":
      return attachFull(model);
    case "frozen":
      return frozenMethod(model);
    default:
      throw new Error(`--method must be goodvibe, lora, full or frozen, got ${method}`);
  }
}

function main(): void {
  const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
  applyDecoderPath(args);
  const T = Number(args.tokens);
  const steps = Number(args.steps);
  const method = args.method!;
  const checkpointing = args.checkpointing!;
  const dtype = args.dtype === "float32" ? "float32" : "bfloat16";
  const model = loadModel(args.model ?? randomModelDir(Number(args.layers)), {
    dtype,
    device: resolveDevice(args.device),
  });
  const weightBytes = [...model.parameters().values()].reduce((a, t) => a + t.nbytes, 0);
  const attached = attach(model, method);
  const params = [...attached.trainable.values()];
  const opt = params.length ? new AdamW(params, { lr: 1e-4, weightDecay: 0 }) : null;

  const ids = benchIds(T, model.cfg.vocabSize);
  const labelValues = ids.toIntArray().map((id, t) => (t < T / 2 ? IGNORE_INDEX : id));
  const labels = Tensor.fromArray(labelValues, [1, T], "int64");
  const lossTokens = T / 2; // logits at t predict labels at t + 1: targets T/2 .. T-1
  attached.setTraining(true);
  // the step, in its two timed phases: forward + backward (its loss), then clip (1.0), AdamW and the gradients
  // dropped (mixed precision steps one master at a time)
  const forwardBackward = () =>
    tidy(() => model.forwardBackward(ids, {}, sftLossHead(model, labels), checkpointing));
  const optimize = () => {
    if (opt) optimizerStep(attached, opt, 1.0);
  };

  // cpu: the process's CPU seconds in the step (user + system), the figure to read on a core other processes share
  const phases: { fwdbwd: number; optimizer: number; total: number; cpu: number }[] = [];
  const rss: number[] = [];
  let loss = NaN;
  // --ab OP[,OP…]: the steps rotate through the settings (abSettings: every listed op off, then each one on alone);
  // the first round warms each setting up. One op: even steps off, odd steps on
  const ab = args.ab ? abSettings(args.ab) : null;
  const K = ab?.length ?? 0;
  const abTimes = (ab ?? []).map(() => ({ total: [] as number[], fwdbwd: [] as number[] }));
  // with --ab, `steps` timed steps in all, rounded up so that each setting gets the same number
  const last = ab ? K * (1 + Math.ceil(steps / K)) - 1 : steps;
  for (let s = 0; s <= last; s++) {
    ab?.[s % K].apply();
    manualSeed(s);
    const p = { fwdbwd: 0, optimizer: 0, total: 0, cpu: 0 };
    const cpu0 = process.cpuUsage();
    p.total = seconds(() => {
      p.fwdbwd = seconds(() => {
        loss = forwardBackward();
        synchronize(model.device);
      });
      p.optimizer = seconds(() => {
        optimize();
        synchronize(model.device);
      });
    });
    const cpu = process.cpuUsage(cpu0);
    p.cpu = (cpu.user + cpu.system) / 1e6;
    if (ab && s >= K) {
      abTimes[s % K].total.push(p.total);
      abTimes[s % K].fwdbwd.push(p.fwdbwd);
    } else if (!ab && s > 0) phases.push(p); // step 0 warms up (oneDNN primitives, page-in, AdamW state allocation)
    // resident memory after each step: a leak shows as growth from step to step
    console.error(
      `step ${s}${ab ? ` (${ab[s % K].label})` : ""}: ${p.total.toFixed(3)} s (CPU ${p.cpu.toFixed(2)} s), loss ${loss.toFixed(4)}, ` +
        `RSS ${(currentRssBytes() / GiB).toFixed(2)} GiB, peak ${(peakRssBytes() / GiB).toFixed(2)} GiB`,
    );
    rss.push(currentRssBytes());
  }
  if (ab) {
    console.log(
      `A/B of ${args.ab} in one process: ${model.device}, ${method}, ${model.cfg.numLayers} layers, ${T} tokens, steps ` +
        `rotated through ${K} settings (load ${machineInfo().loadAverage})`,
    );
    const base = median(abTimes[0].total);
    for (const [i, setting] of ab.entries()) {
      const t = abTimes[i];
      console.log(
        `${setting.label}: median ${median(t.total).toFixed(4)} s (fwd+bwd ${median(t.fwdbwd).toFixed(4)}), ` +
          `min ${Math.min(...t.total).toFixed(4)} s, / ${ab[0].label} ${(median(t.total) / base).toFixed(3)} ` +
          `(${t.total.map((x) => x.toFixed(4)).join(" / ")})`,
      );
    }
    console.log(`peak RSS ${(peakRssBytes() / GiB).toFixed(2)} GiB, loss ${loss}`);
    if (args.ab?.includes("frozenDx")) console.log(model.frozenDx.describe());
    writeJson(args.json, {
      bench: "train-step-ab",
      machine: machineInfo(),
      device: model.device,
      method,
      dtype,
      checkpointing,
      layers: model.cfg.numLayers,
      tokens: T,
      settings: ab.map((a, i) => ({ label: a.label, ...abTimes[i] })),
    });
    return;
  }
  const med = (k: keyof (typeof phases)[0]) => median(phases.map((p) => p[k]));
  const flops = sftFlops(model, attached, [1, T], lossTokens, checkpointing);
  const peak = peakRssBytes();
  const trainable = countParams(params);
  const dx = frozenDxSummary(model);
  console.log(
    `${model.device}, ${method}, ${dtype}, checkpointing ${checkpointing ? "on" : "off"}, ${model.cfg.numLayers} layers, ${T} tokens, threads ${threads}, ` +
      `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? "(auto)"}, ${args.fused ? "fused ops" : args.unfused ? "op-by-op" : "per-op defaults"}`,
  );
  console.log(
    table(
      [
        "method",
        "dtype",
        "ckpt",
        "s/step (median)",
        "CPU s/step",
        "steps (s)",
        "fwd+bwd s",
        "clip + AdamW s",
        "GFLOP/s",
        "trainable params",
        "peak RSS",
        "peak / trainable param",
        "weights",
      ],
      [
        [
          method,
          dtype,
          checkpointing ? "on" : "off",
          med("total").toFixed(2),
          med("cpu").toFixed(2),
          phases.map((p) => p.total.toFixed(2)).join(" / "),
          med("fwdbwd").toFixed(2),
          med("optimizer").toFixed(3),
          (flops.total / med("total") / 1e9).toFixed(1),
          trainable.toLocaleString("en-US"),
          `${(peak / GiB).toFixed(2)} GiB`,
          trainable ? `${(peak / trainable).toFixed(1)} B` : "—",
          `${(weightBytes / GiB).toFixed(2)} GiB`,
        ],
      ],
    ),
  );
  console.log(`${dx.plan}; copies held: ${dx.copies}, ${(dx.copyBytes / GiB).toFixed(2)} GiB`);
  writeJson(args.json, {
    bench: "train-step",
    machine: machineInfo(),
    fused: args.fused,
    unfused: args.unfused,
    concat: fusedOps("concatLinear", model.device), // where the model ran (off by default off the CPU)
    frozenDx: dx,
    method,
    dtype,
    checkpointing,
    layers: model.cfg.numLayers,
    tokens: T,
    lossTokens,
    threads,
    loss,
    phases,
    medianSeconds: med("total"),
    medianCpuSeconds: med("cpu"),
    flops,
    trainableParams: trainable,
    peakRssBytes: peak,
    rssAfterStepBytes: rss,
    weightBytes,
  });
  if (args["op-profile"])
    writeOpProfile(
      args["op-profile"],
      `${method} training step`,
      steps,
      { device: model.device, method, dtype, checkpointing, layers: model.cfg.numLayers, tokens: T },
      () => {
        forwardBackward();
        optimize();
        synchronize(model.device);
      },
    );
}

main();
