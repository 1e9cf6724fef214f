/**
 * Prints the markdown tables of BENCHMARKS.md from the JSON files bench/run-all.sh wrote, so the numbers in
 * the document are copied by a program, not by hand.
 *
 *   node dist/bench/report.js [/tmp/goodvibe-bench/results]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { GiB, table } from "./common.js";
import { benchArgs, benchUsageError } from "./args.js";

const { positionals } = benchArgs(import.meta.url, { allowPositionals: true, options: {} });
if (positionals.length > 1)
  benchUsageError(import.meta.url, `one results folder at most, got ${positionals.length} arguments`);
const dir = positionals[0] ?? "/tmp/goodvibe-bench/results";

type Json = any;

function read(name: string): Json | null {
  const f = path.join(dir, `${name}.json`);
  return fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, "utf8")) : null;
}

/** The load average each run started at, from runs.log. */
function loads(): Map<string, string> {
  const out = new Map<string, string>();
  const f = path.join(dir, "runs.log");
  if (!fs.existsSync(f)) return out;
  for (const m of fs.readFileSync(f, "utf8").matchAll(/^== (\S+) \(load (\S+) (\S+) (\S+), (\S+)\)/gm))
    out.set(m[1], m[2]);
  return out;
}

const gib = (b: number) => `${(b / GiB).toFixed(2)} GiB`;
const load = loads();

function matmul(): void {
  const rows: (string | number)[][] = [];
  for (const [name, who, note] of [
    ["matmul-ts", "addon", "2 threads, OPENBLAS_CORETYPE=SkylakeX (set by the addon)"],
    ["matmul-ts-1thread", "addon", "1 thread"],
    ["matmul-ts-haswell", "addon", "2 threads, OPENBLAS_CORETYPE=Haswell"],
    ["matmul-torch", "PyTorch", "2 threads, OPENBLAS_CORETYPE=SkylakeX"],
    ["matmul-torch-auto-coretype", "PyTorch", "2 threads, OpenBLAS's own core detection"],
  ]) {
    const r = read(name);
    if (!r) continue;
    for (const x of r.results)
      rows.push([
        who,
        note,
        x.dtype,
        x.n,
        x.median.toFixed(1),
        x.gflops.map((g: number) => g.toFixed(1)).join(" / "),
        load.get(name) ?? "?",
      ]);
  }
  console.log(table(["run", "setting", "dtype", "n", "median GFLOP/s", "trials", "load at start"], rows));
}

function fwdbwd(): void {
  const peakBf16 = read("matmul-ts")?.peak?.bfloat16 as number | undefined;
  const rows: (string | number)[][] = [];
  for (const [name, who] of [
    ["fwdbwd-ts", "addon, 2 threads"],
    ["fwdbwd-torch", "PyTorch, 2 threads"],
    ["fwdbwd-ts-1thread", "addon, 1 thread"],
    ["fwdbwd-torch-1thread", "PyTorch, 1 thread"],
    ["fwdbwd-ts-tidy-layers", "addon, 2 threads, --tidy-layers"],
  ]) {
    const r = read(name);
    if (!r) continue;
    const ts = read("fwdbwd-ts");
    const flops = ts ? ts.flops.forward + ts.flops.backward : NaN;
    const gflops = flops / r.medianSeconds / 1e9;
    rows.push([
      who,
      r.medianSeconds.toFixed(2),
      r.secondsPerPass.map((s: number) => s.toFixed(2)).join(" / "),
      r.tokensPerSecond.toFixed(1),
      gflops.toFixed(1),
      peakBf16 ? `${((100 * gflops) / peakBf16).toFixed(0)}%` : "?",
      gib(r.peakRssBytes),
      r.loss.toFixed(4),
      `${r.gradsKept} (${r.grads ?? "retain"})`,
      load.get(name) ?? "?",
    ]);
  }
  console.log(
    table(
      [
        "run",
        "s/pass (median)",
        "passes",
        "tokens/s",
        "GFLOP/s",
        "of bf16 peak",
        "peak RSS",
        "loss",
        "linear grads (hook: reduced, retain: kept)",
        "load at start",
      ],
      rows,
    ),
  );
  const ts = read("fwdbwd-ts");
  if (ts) {
    console.log(
      `\nweights ${gib(ts.weightBytes)}, activations (estimate) ${gib(ts.activationBytesEstimate)}, ` +
        `RSS before loading ${gib(ts.rssBeforeLoadBytes)}, FLOPs/pass ${((ts.flops.forward + ts.flops.backward) / 1e9).toFixed(1)} G`,
    );
    if (ts.profile) {
      console.log(
        "\n" +
          table(
            ["forward piece (addon)", "s"],
            Object.entries(ts.profile).map(([k, v]) => [k, (v as number).toFixed(3)]),
          ),
      );
    }
  }
}

function train(): void {
  const rows: (string | number)[][] = [];
  for (const prefix of ["train-", "train-1t-"])
    for (const m of ["frozen", "goodvibe", "lora", "full", "full-fp32"])
      for (const ck of ["", "-ckpt"]) {
        const name = `${prefix}${m}${ck}`;
        const r = read(name);
        if (!r) continue;
        const med = (k: string) => {
          const xs = r.phases.map((p: Json) => p[k] as number).sort((a: number, b: number) => a - b);
          return xs[xs.length >> 1] as number;
        };
        rows.push([
          m,
          r.dtype ?? "?",
          r.threads,
          r.checkpointing ? "on" : "off",
          r.layers,
          r.medianSeconds.toFixed(2),
          r.phases.map((p: Json) => p.total.toFixed(2)).join(" / "),
          med("fwdbwd").toFixed(2),
          // older results timed clipping apart from AdamW
          (med("optimizer") + (r.phases[0]?.clip !== undefined ? med("clip") : 0)).toFixed(3),
          (r.flops.total / r.medianSeconds / 1e9).toFixed(1),
          r.trainableParams.toLocaleString("en-US"),
          gib(r.peakRssBytes),
          r.trainableParams ? (r.peakRssBytes / r.trainableParams).toFixed(1) : "—",
          gib(r.weightBytes),
          load.get(name) ?? "?",
        ]);
      }
  console.log(
    table(
      [
        "method",
        "dtype",
        "threads",
        "ckpt",
        "layers",
        "s/step (median)",
        "steps",
        "fwd+bwd s",
        "clip + AdamW s",
        "GFLOP/s",
        "trainable",
        "peak RSS",
        "peak bytes / trainable",
        "weights",
        "load at start",
      ],
      rows,
    ),
  );
}

console.log("### matmul\n");
matmul();
console.log("\n### forward-backward\n");
fwdbwd();
console.log("\n### train-step\n");
train();
