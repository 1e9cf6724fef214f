/**
 * The machine's matmul peak through our addon: square n×n @ n×n products in bfloat16 and float32, GFLOP/s
 * (2n³ FLOPs each). The forward-backward benchmark is judged against the bf16 figure.
 *
 *   node dist/bench/matmul-peak.js [--sizes 1024,2048,3072,4096] [--threads N] [--trials 3] [--json out.json]
 */
import { benchArgs } from "./args.js";
import { Tensor, manualSeed, noGrad, tidy, type DType } from "../src/tensor/index.js";
import { applyThreads, machineInfo, median, seconds, table, writeJson } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    sizes: { type: "string", default: "1024,2048,3072,4096" },
    dtypes: { type: "string", default: "bfloat16,float32" },
    threads: { type: "string" },
    trials: { type: "string", default: "3" },
    "min-seconds": { type: "string", default: "1" },
    json: { type: "string" },
  },
});

/** GFLOP/s of one trial: enough back-to-back products to last at least minSeconds. */
function trial(a: Tensor, b: Tensor, minSeconds: number): number {
  const n = a.size(0);
  let reps = 0;
  let total = 0;
  while (total < minSeconds) {
    total += seconds(() => tidy(() => void a.matmul(b)));
    reps++;
  }
  return (2 * n ** 3 * reps) / total / 1e9;
}

function main(): void {
  const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
  const sizes = args.sizes!.split(",").map(Number);
  const dtypes = args.dtypes!.split(",") as DType[];
  const trials = Number(args.trials);
  const minSeconds = Number(args["min-seconds"]);
  manualSeed(0);
  const rows: (string | number)[][] = [];
  const results: { dtype: DType; n: number; gflops: number[]; median: number }[] = [];
  noGrad(() => {
    for (const dtype of dtypes) {
      for (const n of sizes) {
        tidy(() => {
          const a = Tensor.randn([n, n], dtype);
          const b = Tensor.randn([n, n], dtype);
          tidy(() => void a.matmul(b)); // warm-up: first call sets up kernels and buffers
          const g = Array.from({ length: trials }, () => trial(a, b, minSeconds));
          const m = median(g);
          results.push({ dtype, n, gflops: g, median: m });
          rows.push([dtype, n, m.toFixed(1), g.map((x) => x.toFixed(1)).join(" / ")]);
          console.error(`${dtype} n=${n}: ${m.toFixed(1)} GFLOP/s`);
        });
      }
    }
  });
  const peak = Object.fromEntries(
    dtypes.map((d) => [d, Math.max(...results.filter((r) => r.dtype === d).map((r) => r.median))]),
  );
  console.log(`threads: ${threads}, OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? "(auto)"}`);
  console.log(table(["dtype", "n", "median GFLOP/s", "trials"], rows));
  console.log(`peak (best median): ${dtypes.map((d) => `${d} ${peak[d].toFixed(1)}`).join(", ")} GFLOP/s`);
  writeJson(args.json, { bench: "matmul-peak", machine: machineInfo(), threads, results, peak });
}

main();
