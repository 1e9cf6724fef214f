/**
 * What each cell of an experiment will cost, estimated from shapes before anything runs (`experiment plan`):
 * FLOPs of identification and training (the exact per-step count of method/flops.ts, on examples of the assumed
 * length), the trainer-style 6·N·D beside it, peak memory, and time at an assumed throughput (planThroughput: the
 * experiment file's estimate.flopsPerSecond, else a default for the device the run would use). Shapes come from
 * the model folder's config.json when it exists, else from the `config` the experiment file gives; pair counts
 * from the data file when it exists, else from `estimate.pairsPerLanguage`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { parseModelConfig } from "../io/config.js";
import { readPairs } from "../data/pairs.js";
import { ModelShape } from "../models/shapes.js";
import {
  estimateParams,
  goodvibeModules,
  goodvibeParams,
  identifyFlops,
  identifyMemoryEstimate,
  loraParams,
  sftFlops,
  trainMemoryEstimate,
  trainerFlopsEstimate,
  type MethodShapes,
} from "../method/flops.js";
import { DEFAULT_DTYPE, type HardenConfig } from "../config/harden.js";
import type { ExperimentSpec } from "./spec.js";
import { modelConfigOf, type CellSetting } from "./plan.js";
import { cudaAvailable, deviceKind } from "../tensor/index.js";

/**
 * Sustained training throughput (FLOP/s, as method/flops.ts counts them) assumed for the time column when the
 * experiment file gives none, by the device the run would use. Each is a planning figure, not a promise:
 * - cpu: 0.3 TFLOP/s, what `goodvibe harden`'s training sustained on one Zen 5 thread at Qwen2.5-0.5B's shape
 *   (317–334 GFLOP/s, 60–63% of that CPU's 528 GFLOP/s bf16 matmul peak; BENCHMARKS "End to end on this CPU: the
 *   planning figure"). Older or AVX2-only CPUs run bf16 slower (BENCHMARKS "bf16 products on AVX2 CPUs"); more
 *   threads, faster: set estimate.flopsPerSecond for the machine.
 * - cuda: 100 TFLOP/s, about an eighth of the 790 TFLOP/s bf16 matrix-product rate measured on an H200 (BENCHMARKS
 *   "CUDA"): fine-tuning at batch 1 with examples of a few hundred tokens keeps a GPU far from its matmul peak, and
 *   this code's training throughput on a GPU is not yet measured. The figure the default was for every device
 *   before 2026-12-01, when a CPU plan's times were about 330 times too short.
 */
export const DEFAULT_FLOPS_PER_SECOND = { cpu: 3e11, cuda: 1e14 } as const;

export interface Throughput {
  flopsPerSecond: number;
  /** the device the default is for (the run's, from GOODVIBE_DEVICE) */
  device: keyof typeof DEFAULT_FLOPS_PER_SECOND;
  /** GOODVIBE_DEVICE as set (null: unset) */
  deviceSetting: string | null;
  /** where the figure came from */
  from: "estimate.flopsPerSecond" | "default";
}

/**
 * The throughput a plan's times assume: the experiment file's estimate.flopsPerSecond, else the default for the
 * device GOODVIBE_DEVICE names (cpu when unset; cuda or cuda:N; auto: cuda when libtorch sees a GPU). A plan may be
 * made on another machine than the run's: a GPU is not required to plan for one.
 */
export function planThroughput(spec: ExperimentSpec, env: NodeJS.ProcessEnv = process.env): Throughput {
  const asked = env.GOODVIBE_DEVICE || undefined;
  // a setting the run would refuse ("CUDA") is refused here, with its message, not planned as the CPU
  const kind = deviceKind(asked);
  const device = kind === "auto" ? (cudaAvailable() ? "cuda" : "cpu") : kind;
  const given = spec.estimate.flopsPerSecond;
  const deviceSetting = asked ?? null;
  return given !== undefined
    ? { flopsPerSecond: given, device, deviceSetting, from: "estimate.flopsPerSecond" }
    : { flopsPerSecond: DEFAULT_FLOPS_PER_SECOND[device], device, deviceSetting, from: "default" };
}

export interface CellEstimate {
  /** where the shapes came from */
  shapes: "config.json" | "experiment file";
  /** training pairs of the cell's languages, and whether they were counted or assumed */
  pairs: number;
  pairsCounted: boolean;
  /** trainable parameters: a range for GoodVibe (goodvibeRowsPerModule's update rows per module), else exact */
  trainable: { low: number; high: number };
  totalParams: number;
  flops: { identify: number; train: number; total: number };
  /** 6 · N · D of training (transformers' Trainer style) */
  trainerEstimate: number;
  peakMemoryBytes: number;
  seconds: number;
}

/** The model's shapes: from its folder when there, else from the experiment file's `config`. */
export function shapeForModel(
  model: ExperimentSpec["models"][number],
  source: string,
  /** the model's place in the file's `models`, for messages */
  index = 0,
): { shape: ModelShape; from: CellEstimate["shapes"] } {
  if (fs.existsSync(path.join(model.path, "config.json")))
    return {
      shape: new ModelShape(modelConfigOf(model, index, source)),
      from: "config.json",
    };
  if (!model.config)
    throw new InputError(
      `${source}: model "${model.name}": no config.json at ${model.path} and no \`config\` in the experiment ` +
        `file to estimate from (give the fields of its published config.json)`,
    );
  return {
    shape: new ModelShape(parseModelConfig(model.config, `${source}: model "${model.name}" config`)),
    from: "experiment file",
  };
}

/** What GoodVibe, LoRA or full fine-tuning trains, as shapes (GoodVibe with `rows` rows per module). */
function methodShapes(shape: ModelShape, cfg: HardenConfig, rows: number): MethodShapes {
  if (cfg.method === "full") return { name: "full", shapes: [] };
  if (cfg.method === "lora")
    return {
      name: "lora",
      shapes: shape
        .linears()
        .filter((l) => cfg.lora.targetModules.includes(l.name.split(".").pop()!))
        .flatMap((l) => [
          [`${l.name}.lora_A`, [cfg.lora.r, l.inFeatures]] as [string, number[]],
          [`${l.name}.lora_B`, [l.outFeatures, cfg.lora.r]] as [string, number[]],
        ]),
    };
  return {
    name: "goodvibe",
    shapes: goodvibeModules(shape, cfg.identify.lmHead).map(
      (l) =>
        [`${l.name}.U`, [Math.min(rows, cfg.identify.topK, l.outFeatures), l.inFeatures]] as [
          string,
          number[],
        ],
    ),
  };
}

/**
 * The update rows a GoodVibe module can get, fewest and most, before identification and clustering have run
 * (method/goodvibe/clustering.ts): a clustered module gets k in [2, cluster.kMax] rows (k-means chooses k by
 * silhouette, and cannot make more clusters than the top-k neurons); one below the silhouette threshold gets the
 * fallback, one shared row (`shared`) or a row per neuron (`per-neuron`); clustering disabled, a row per neuron.
 * The paper's Table 2 figures lie between one and two rows per module, but this clustering may choose up to kMax:
 * the organism's 4-layer runs get about 3 (topK 16: 92 rows over 28 modules).
 */
export function goodvibeRowsPerModule(h: Pick<HardenConfig, "identify" | "cluster">): {
  low: number;
  high: number;
} {
  const k = h.identify.topK;
  if (h.cluster.disabled) return { low: k, high: k };
  const clustered = Math.min(h.cluster.kMax, k);
  // per-neuron: a clustered module has at least 2 rows (fewer neurons than that: one each), one below it k
  return h.cluster.fallback === "per-neuron" ? { low: Math.min(2, k), high: k } : { low: 1, high: clustered };
}

export function estimateCells(
  spec: ExperimentSpec,
  cells: CellSetting[],
  source = "experiment",
  throughput: Throughput = planThroughput(spec),
): CellEstimate[] {
  const shapes = new Map(spec.models.map((m, i) => [m.name, shapeForModel(m, source, i)]));
  const counts = new Map<string, number | null>();
  const pairsOf = (languages: string[] | undefined): { n: number; counted: boolean } => {
    const key = (languages ?? ["(all)"]).join("\0");
    if (!counts.has(key))
      counts.set(
        key,
        fs.existsSync(spec.data.train)
          ? readPairs(spec.data.train, languages ? { languages } : {}).length
          : null,
      );
    const n = counts.get(key);
    if (n !== null && n !== undefined) return { n, counted: true };
    return { n: spec.estimate.pairsPerLanguage * (languages?.length ?? 1), counted: false };
  };
  const e = spec.estimate;
  return cells.map((c) => {
    const { shape, from } = shapes.get(c.model.name)!;
    const total = shape.params().total;
    const languages = c.run?.languages ?? spec.data.languages;
    const pairs = pairsOf(languages);
    const zero = { identify: 0, train: 0, total: 0 };
    if (c.harden === null)
      return {
        shapes: from,
        pairs: pairs.n,
        pairsCounted: pairs.counted,
        trainable: { low: 0, high: 0 },
        totalParams: total,
        flops: zero,
        trainerEstimate: 0,
        // evaluation only: the bf16 weights (generation's KV cache is not estimated)
        peakMemoryBytes: 2 * total,
        seconds: 0,
      };
    const h = c.harden;
    const dtype = h.dtype ?? DEFAULT_DTYPE;
    const cap = (n: number, max: number) => (max > 0 ? Math.min(n, max) : n);
    // identification: every pair gives a secure and an insecure judge prompt
    let identify = 0;
    let identifyPeak = 0;
    if (h.method === "goodvibe") {
      const samples = 2 * cap(pairs.n, h.identify.maxPairs);
      identify =
        samples *
        identifyFlops(
          shape,
          [1, e.judgePromptTokens],
          h.identify.mode === "gradient",
          h.identify.lmHead && h.identify.mode === "activation",
          // "auto" as where the activations fit (the peak below likewise): no recomputation
          h.identify.gradientCheckpointing === true,
        ).total;
      identifyPeak = identifyMemoryEstimate(shape, {
        totalParams: total,
        dtype,
        // batches hold at most batchTokens tokens; "auto" checkpointing: the estimate without it (the larger)
        batch: Math.max(
          1,
          Math.min(
            h.identify.batchSize,
            h.identify.batchTokens > 0 ? Math.floor(h.identify.batchTokens / e.judgePromptTokens) : Infinity,
          ),
        ),
        time: e.judgePromptTokens,
        checkpointing: h.identify.gradientCheckpointing === true,
      }).total;
    }
    const { low: rowsLow, high: rowsHigh } = goodvibeRowsPerModule(h);
    const trainable =
      h.method === "full"
        ? { low: total, high: total }
        : h.method === "lora"
          ? { low: loraParams(shape, h.lora), high: loraParams(shape, h.lora) }
          : {
              low: goodvibeParams(shape, { rows: rowsLow, topK: h.identify.topK, lmHead: h.identify.lmHead }),
              high: goodvibeParams(shape, {
                rows: rowsHigh,
                topK: h.identify.topK,
                lmHead: h.identify.lmHead,
              }),
            };
    // training: epochs × examples of the assumed length, the loss on the answer half. "auto" checkpointing is
    // estimated as it runs where the activations fit (method/checkpointing.ts): no second forward, the peak
    // without it (the larger); where they do not fit, or on a GPU, the run adds a forward of the layers
    const checkpointing = h.train.gradientCheckpointing === true;
    const examples = cap(pairs.n, h.train.maxPairs) * h.train.epochs;
    const T = Math.min(e.exampleTokens, h.train.maxLength);
    const step = sftFlops(shape, methodShapes(shape, h, rowsHigh), [1, T], T / 2, checkpointing);
    const train = examples * step.total;
    const n = estimateParams(shape.params(), h.method, trainable.high);
    const trainPeak = trainMemoryEstimate(shape, {
      method: h.method,
      totalParams: total,
      trainableParams: trainable.high,
      dtype,
      batch: h.train.batchSize,
      time: T,
      lossTokens: (h.train.batchSize * T) / 2,
      checkpointing,
    }).total;
    return {
      shapes: from,
      pairs: pairs.n,
      pairsCounted: pairs.counted,
      trainable,
      totalParams: total,
      flops: { identify, train, total: identify + train },
      trainerEstimate: trainerFlopsEstimate(n, examples * T),
      peakMemoryBytes: Math.max(identifyPeak, trainPeak),
      seconds: (identify + train) / throughput.flopsPerSecond,
    };
  });
}
