/**
 * One product on a frozen bf16 weight where CPU bf16 products are computed in float32 (tensor.ts f32Products): W
 * upcast on every call (x.linear; a block of rows at a time) against W's float32 copy held in advance
 * (frozenLinear), by weight and rows, forward alone and forward + dX (median of n calls after one warm-up), at
 * Qwen2.5-0.5B's widths: gate+up and q+k+v as concatLinear joins them, down, lm_head. What models/frozen-dx.ts's
 * choice of float32 copies rests on (BENCHMARKS "Float32 weight copies on AVX2 CPUs").
 *
 *   node dist/bench/f32-weight-copies.js [--rows 1,4,16,64,256] [--threads 1] [--calls 15]
 */
import { benchArgs } from "./args.js";
import {
  Tensor,
  frozenLinear,
  frozenLinearCache,
  keep,
  manualSeed,
  noGrad,
  setF32Products,
} from "../src/tensor/index.js";
import { applyThreads, machineInfo, median, seconds, table } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    rows: { type: "string", default: "1,4,16,64,256" },
    threads: { type: "string" },
    calls: { type: "string", default: "15" },
  },
});
const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
const rowsList = args.rows!.split(",").map(Number);
const calls = Number(args.calls);
setF32Products("on");
manualSeed(1);

/** Median milliseconds of `calls` calls of fn, after one. */
function ms(fn: () => void, n: number): number {
  fn();
  return 1e3 * median(Array.from({ length: n }, () => seconds(fn)));
}

const shapes: [string, number, number][] = [
  ["gate+up", 9728, 896],
  ["down", 896, 4864],
  ["q+k+v", 1152, 896],
  ["lm_head", 151936, 896],
];
const rows: (string | number)[][] = [];
const load = machineInfo().loadAverage;
for (const [name, out, inF] of shapes) {
  const w = keep(noGrad(() => Tensor.randn([out, inF]).mul(0.02).to("bfloat16")));
  frozenLinearCache(true);
  for (const r of rowsList) {
    // lm_head's products of many rows: seconds each, and no loss takes so many rows there in identification
    const n = name === "lm_head" ? Math.max(3, calls >> 2) : calls;
    if (name === "lm_head" && r > 64) continue;
    const x = keep(noGrad(() => Tensor.randn([r, inF]).to("bfloat16")));
    const xg = keep(x.detach().requiresGrad_());
    const g = keep(noGrad(() => Tensor.randn([r, out]).to("bfloat16")));
    const fwdUpcast = ms(() => noGrad(() => x.linear(w).dispose()), n);
    const fwdHeld = ms(() => noGrad(() => frozenLinear(x, w).dispose()), n);
    const both = (f: () => Tensor) => () => {
      const y = f();
      y.backward(g);
      y.dispose();
      xg.clearGrad();
    };
    const bothUpcast = ms(
      both(() => xg.linear(w)),
      n,
    );
    const bothHeld = ms(
      both(() => frozenLinear(xg, w)),
      n,
    );
    rows.push([
      `${name} [${out}, ${inF}]`,
      r,
      fwdUpcast.toFixed(2),
      fwdHeld.toFixed(2),
      (fwdHeld / fwdUpcast).toFixed(2),
      bothUpcast.toFixed(2),
      bothHeld.toFixed(2),
      (bothHeld / bothUpcast).toFixed(2),
    ]);
    for (const t of [x, xg, g]) t.dispose();
  }
  w.dispose();
  frozenLinearCache(true);
}
console.log(
  `one product on a frozen bf16 weight, W upcast per call vs its float32 copy held, ${threads} thread(s); load ` +
    `${load.join(" ")} before, ${machineInfo().loadAverage.join(" ")} after`,
);
console.log(
  table(
    [
      "weight",
      "rows",
      "fwd upcast ms",
      "fwd held ms",
      "held / upcast",
      "fwd+dX upcast ms",
      "fwd+dX held ms",
      "held / upcast",
    ],
    rows,
  ),
);
