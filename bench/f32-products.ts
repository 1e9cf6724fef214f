/**
 * CPU bf16 products computed in float32 (tensor.ts f32Products) against libtorch's own (GOODVIBE_F32_PRODUCTS=0), at
 * Qwen2.5-0.5B's shape with layers cut: per setting, the identification pass (bench/pass.ts: one sequence, every
 * linear output's gradient kept, loss at the last position) timed, and its accuracy against the same checkpoint in
 * float32 (the bf16 weights upcast exactly): max |bf16 - float32| / max |float32| of the logits at the last 16
 * positions and of every linear output's gradient (the worst linear). BENCHMARKS "bf16 products on AVX2 CPUs".
 *
 * --frozen-dx off,auto: per f32 mode, passes alternated between these frozenDx settings in this process (off: W upcast
 * on every call; auto: the default, float32 copies of the frozen weights within the budget; on: forced, every
 * weight), so that a load that changes during the run reaches every setting alike; the first pass of each setting
 * (copies made) is reported apart. BENCHMARKS "Float32 weight copies on AVX2 CPUs".
 *
 *   node dist/bench/f32-products.js [--layers 4] [--tokens 256] [--passes 2] [--threads N] [--modes on,off]
 *     [--frozen-dx auto] [--json f]
 */
import { benchArgs } from "./args.js";
import { loadModel, type DecoderModel } from "../src/models/index.js";
import {
  Tensor,
  bf16ProductsAccumulateF32,
  describeBf16Products,
  noGrad,
  frozenLinearCache,
  setF32Products,
  setFusedOp,
  type F32ProductsMode,
} from "../src/tensor/index.js";
import { peakRssBytes } from "../src/util/memory.js";
import { benchIds, identificationPass, tapAll } from "./pass.js";
import { applyThreads, machineInfo, median, randomModelDir, seconds, table, writeJson } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    layers: { type: "string", default: "4" },
    tokens: { type: "string", default: "256" },
    passes: { type: "string", default: "2" },
    threads: { type: "string" },
    modes: { type: "string", default: "on,off" },
    "frozen-dx": { type: "string", default: "auto" },
    json: { type: "string" },
  },
});
const layers = Number(args.layers);
const T = Number(args.tokens);
const passes = Number(args.passes);
const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
const modes = args.modes!.split(",") as F32ProductsMode[];
const dxSettings = args["frozen-dx"]!.split(",");
for (const d of dxSettings)
  if (!["off", "auto", "on"].includes(d)) throw new Error(`--frozen-dx: off, auto or on, got ${d}`);
/** frozenDx off, the default (auto: null) or forced on. */
const setFrozenDx = (d: string) => setFusedOp("frozenDx", d === "off" ? false : d === "on" ? true : null);
const dir = randomModelDir(layers);
const target = Tensor.fromArray([42], [1], "int64");

/** Logits at the last 16 positions and every linear output's gradient of one identification pass. */
function observe(model: DecoderModel, ids: Tensor): { logits: Float64Array; grads: Float64Array[] } {
  const logits = noGrad(() => model.logitsFrom(model.hidden(ids).narrow(1, T - 16, 16))).toFloat64Array();
  const kept: Tensor[] = [];
  tapAll(model, kept);
  model.forwardBackward(ids, {}, (h) =>
    model
      .logitsFrom(h.select(1, T - 1))
      .logSoftmax(-1, "float32")
      .select(1, 42)
      .neg()
      .sum(),
  );
  for (const lin of model.linears()) lin.tap = null;
  const grads = kept.map((y) => y.grad!.toFloat64Array());
  for (const y of kept) y.dispose();
  return { logits, grads };
}

function rel(a: Float64Array, b: Float64Array): number {
  let e = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return e / s;
}

const ids = benchIds(T, 151936);
const ref = observe(loadModel(dir, { dtype: "float32" }), ids);
const model = loadModel(dir);
const rows: (string | number)[][] = [];
const results: Record<string, unknown>[] = [];
const loadBefore = machineInfo().loadAverage;
for (const mode of modes) {
  setF32Products(mode);
  const times = new Map(dxSettings.map((d) => [d, [] as number[]]));
  const first = new Map<string, number>();
  const plans = new Map<string, string>();
  // each setting's first pass (copies made), then the passes alternated
  for (let p = 0; p <= passes; p++)
    for (const d of dxSettings) {
      setFrozenDx(d);
      if (p === 0) frozenLinearCache(true);
      // the full-vocabulary head and every gradient retained, as when this benchmark's figures were measured
      // (bench/pass.ts PassHead, PassGrads)
      const t = seconds(() => void identificationPass(model, ids, target, "full", "retain"));
      if (p === 0) first.set(d, t);
      else times.get(d)!.push(t);
      plans.set(d, `${model.frozenDx.describe()}; ${model.frozenDx.describeHeld()}`);
    }
  for (const d of dxSettings) {
    setFrozenDx(d);
    const got = observe(model, ids);
    const logitsErr = rel(got.logits, ref.logits);
    const gradErr = Math.max(...got.grads.map((g, i) => rel(g, ref.grads[i])));
    const ts = times.get(d)!;
    rows.push([
      mode,
      d,
      first.get(d)!.toFixed(2),
      ts.map((t) => t.toFixed(2)).join(" / "),
      median(ts).toFixed(2),
      logitsErr.toExponential(2),
      gradErr.toExponential(2),
    ]);
    results.push({
      mode,
      frozenDx: d,
      products: describeBf16Products(),
      copies: plans.get(d),
      firstSeconds: first.get(d),
      seconds: ts,
      median: median(ts),
      logitsErr,
      gradErr,
    });
  }
  setFusedOp("frozenDx", null);
}
const loadAfter = machineInfo().loadAverage;
console.log(
  `identification pass, Qwen2.5-0.5B shape, ${layers} layers, ${T} tokens, ${threads} thread(s); ` +
    `libtorch's own bf16 products accumulate in float32 here: ${bf16ProductsAccumulateF32()}; load average ` +
    `${loadBefore.join(" ")} before, ${loadAfter.join(" ")} after; peak RSS ${(peakRssBytes() / 2 ** 30).toFixed(2)} GiB ` +
    `(the float32 reference model included)`,
);
console.log(
  table(
    [
      "products",
      "frozenDx",
      "first pass s",
      "pass s (each)",
      "median",
      "logits max err / max",
      "worst grad max err / max",
    ],
    rows,
  ),
);
for (const r of results) console.log(`${r.mode} ${r.frozenDx}: ${r.products}; ${r.copies}`);
writeJson(args.json, { machine: machineInfo(), layers, tokens: T, threads, loadBefore, loadAfter, results });
