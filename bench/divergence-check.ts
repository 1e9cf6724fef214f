/**
 * The divergence check the training loop runs after every update (src/method/train.ts nonFiniteTensor) on full
 * fine-tuning's trainable tensors (every weight's float32 master), beside the check it replaced (a NaN/inf mask per
 * tensor, counted), alternated in one process (BENCHMARKS "The divergence check after each update").
 *
 *   node dist/bench/divergence-check.js [--model DIR | --layers 4] [--rounds 7] [--threads N]
 */
import { benchArgs } from "./args.js";
import { loadModel } from "../src/models/load.js";
import { attachFull } from "../src/method/full.js";
import { nonFiniteTensor } from "../src/method/train.js";
import { Tensor, noGrad, tidy } from "../src/tensor/index.js";
import { applyThreads, machineInfo, median, randomModelDir, seconds } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    model: { type: "string" },
    layers: { type: "string", default: "4" },
    rounds: { type: "string", default: "7" },
    threads: { type: "string" },
  },
});

/** The check before: one NaN/inf mask per tensor, counted. */
function maskCount(tensors: Map<string, Tensor>): string | null {
  const bad = noGrad(() =>
    tidy(() =>
      Tensor.stack(
        [...tensors.values()].map((t) => tidy(() => t.isfinite().logicalNot().sum())),
      ).toFloat32Array(),
    ),
  );
  const i = bad.findIndex((n) => n > 0);
  return i < 0 ? null : [...tensors.keys()][i];
}

const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
const model = loadModel(args.model ?? randomModelDir(Number(args.layers)), { dtype: "bfloat16" });
const method = attachFull(model);
const params = [...method.trainable.values()].reduce((a, t) => a + t.numel, 0);
const times: Record<"sum" | "mask", number[]> = { sum: [], mask: [] };
for (let r = 0; r <= Number(args.rounds); r++) {
  for (const [name, check] of [
    ["sum", nonFiniteTensor],
    ["mask", maskCount],
  ] as const) {
    let found: string | null = "";
    const s = seconds(() => {
      found = check(method.trainable);
    });
    if (found !== null) throw new Error(`${name}: found ${found} in finite weights`);
    if (r > 0) times[name].push(s); // round 0 warms up
  }
}
const { loadAverage, libtorch } = machineInfo();
console.log(
  `${model.cfg.numLayers} layers, ${method.trainable.size} trainable tensors, ${params.toLocaleString("en")} ` +
    `parameters (${[...method.trainable.values()][0]?.dtype}), threads ${threads}, libtorch ${libtorch}, load ${loadAverage}`,
);
for (const k of ["sum", "mask"] as const)
  console.log(
    `${k === "sum" ? "sum per tensor (now)  " : "mask per tensor (before)"}: median ${median(times[k]).toFixed(3)} s ` +
      `(${times[k].map((t) => t.toFixed(3)).join(" / ")})`,
  );
console.log(`before / now: ${(median(times.mask) / median(times.sum)).toFixed(1)}x`);
