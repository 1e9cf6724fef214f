/**
 * Where a transposed weight copy pays (models/frozen-dx.ts FROZEN_DX_MIN_ROWS): forward + backward of one frozen
 * bf16 linear at Qwen2.5-0.5B's shapes (lm_head [151936, 896], gate/up [9728, 896], down [896, 4864], q/k/v [1152,
 * 896], o [896, 896]) for products of M rows, dX by libtorch's linear backward (plain) or from the copy (frozenLinear),
 * alternated rep by rep in one process; 8 distinct weights per layer shape (cold caches, as in a pass), one lm_head.
 *
 *   node dist/bench/frozen-dx-rows.js [--rows 1,4,16,64,256] [--reps 7] [--threads 1]
 */
import { benchArgs } from "./args.js";
import {
  Tensor,
  frozenLinear,
  frozenLinearCache,
  manualSeed,
  noGrad,
  withGrad,
} from "../src/tensor/index.js";
import { applyThreads, machineInfo, median, seconds, table } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    rows: { type: "string", default: "1,4,16,64,256" },
    reps: { type: "string", default: "7" },
    threads: { type: "string" },
  },
});

const SHAPES: [string, number, number, number][] = [
  ["lm_head", 151936, 896, 1],
  ["gate/up", 9728, 896, 8],
  ["down", 896, 4864, 8],
  ["q/k/v", 1152, 896, 8],
  ["o", 896, 896, 8],
];

function main(): void {
  const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
  const rows = args.rows!.split(",").map(Number);
  const reps = Number(args.reps);
  manualSeed(0);
  const out: (string | number)[][] = [];
  for (const [name, o, i, count] of SHAPES) {
    const ws = noGrad(() =>
      Array.from({ length: count }, () => Tensor.randn([o, i]).mul(0.03).to("bfloat16")),
    );
    for (const M of rows) {
      const x0 = noGrad(() => Tensor.randn([M, i]).to("bfloat16"));
      const g = noGrad(() => Tensor.randn([M, o]).to("bfloat16"));
      const pass = (copy: boolean) =>
        seconds(() => {
          for (const w of ws)
            withGrad(() => {
              const x = x0.detach().requiresGrad_();
              (copy ? frozenLinear(x, w, null) : x.linear(w, null)).backward(g);
              x.grad!.dispose();
            });
        });
      pass(false); // warm-up; the copies are made here
      pass(true);
      const t: number[][] = [[], []];
      for (let r = 0; r < reps; r++) {
        t[0].push(pass(false));
        t[1].push(pass(true));
      }
      const [plain, copy] = t.map((s) => (median(s) / count) * 1e3);
      out.push([name, M, plain.toFixed(3), copy.toFixed(3), (copy / plain).toFixed(3)]);
      console.error(`${name} M=${M}: ${plain.toFixed(3)} / ${copy.toFixed(3)} ms`);
      x0.dispose();
      g.dispose();
    }
    for (const w of ws) w.dispose();
    frozenLinearCache(true);
  }
  console.log(`threads ${threads}, load ${machineInfo().loadAverage}, median of ${reps} alternated reps`);
  console.log(table(["product", "rows M", "plain ms (fwd + bwd)", "from the copy ms", "copy / plain"], out));
}

main();
