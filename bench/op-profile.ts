/**
 * Two op profiles side by side: ours (forward-backward.js / train-step.js --op-profile) and PyTorch's
 * (torch_reference.py fwdbwd / torch_train.py --op-profile), op name by op name, per pass or step. What one side
 * runs that the other does not shows as calls on one side only; where the time goes, as self time (an op's own,
 * the ops it ran inside taken out); then the same by op and input shapes (which product costs what).
 *
 *   node dist/bench/op-profile.js OURS.json TORCH.json [--top 30] [--json f]
 *
 * Read the times with care: on a GPU they are the host's (launches) unless both sides ran with
 * CUDA_LAUNCH_BLOCKING=1, and each side's recording costs it something per op (PyTorch's profiler more than ours).
 * Our addon's calls show as js::<op>: their self time is what ran in the call outside libtorch's ops — the binding
 * (arguments, result handles), and the fused ops' hand-written CPU kernels (js::gatedAct, js::rmsNorm, ...), which are
 * not ATen ops; PyTorch's Python between ops is not recorded at all. Counts are exact on both sides.
 */
import * as fs from "node:fs";
import { benchArgs } from "./args.js";
import { table, writeJson } from "./common.js";

interface Row {
  name: string;
  /** "[1024x896, 896x3]" (profiles from 2026-12-04 19:55 on) */
  shapes?: string;
  backward: boolean;
  calls: number;
  totalNs: number;
  selfNs: number;
}

interface Profile {
  side: string;
  what: string;
  runs: number;
  wallSeconds: number;
  /** each run's seconds (ours and PyTorch's from 2026-12-04 on) */
  secondsPerRun?: number[];
  cudaLaunchBlocking: string | null;
  device?: string;
  layers?: number;
  tokens?: number;
  rows: Row[];
}

const { values: args, positionals } = benchArgs(import.meta.url, {
  allowPositionals: true,
  options: { top: { type: "string", default: "30" }, json: { type: "string" } },
});

function read(file: string): Profile {
  const p = JSON.parse(fs.readFileSync(file, "utf8")) as Profile;
  if ((p as { bench?: string }).bench !== "op-profile" || !Array.isArray(p.rows) || !(p.runs > 0))
    throw new Error(`${file}: not an op profile (bench "op-profile" with rows and runs)`);
  return p;
}

const key = (r: Pick<Row, "name" | "backward">) => `${r.backward ? "b" : "f"}${r.name}`;
const isBinding = (r: Row) => r.name.startsWith("js::");
const ms = (ns: number) => (ns / 1e6).toFixed(3);

/** Per pass or step: self time of libtorch's ops and nodes, and of the addon's calls (js::), in ns. */
function selfTotals(p: Profile): { ops: number; binding: number } {
  let ops = 0;
  let binding = 0;
  for (const r of p.rows) {
    if (isBinding(r)) binding += r.selfNs;
    else ops += r.selfNs;
  }
  return { ops: ops / p.runs, binding: binding / p.runs };
}

function main(): void {
  if (positionals.length !== 2)
    throw new Error("usage: op-profile.js OURS.json TORCH.json [--top N] [--json f]");
  const [a, b] = positionals.map(read);
  const top = Number(args.top);
  console.log(
    table(
      [
        "side",
        "what",
        "device",
        "layers",
        "tokens",
        "runs",
        "s / run (median)",
        "ops' self ms / run",
        "addon calls' own ms / run",
        "CUDA_LAUNCH_BLOCKING",
      ],
      [a, b].map((p) => {
        const t = selfTotals(p);
        return [
          p.side,
          p.what,
          p.device ?? "?",
          p.layers ?? "?",
          p.tokens ?? "?",
          p.runs,
          medianRun(p).toFixed(4),
          ms(t.ops),
          isBindingSide(p) ? ms(t.binding) : "—",
          p.cudaLaunchBlocking ?? "unset",
        ];
      }),
    ),
  );
  const entries = compare(a, b, false);
  console.log(
    `\nops by the difference in self time per run (top ${top} of ${entries.length}; ${a.side} − ${b.side}):`,
  );
  console.log(diffTable(entries.slice(0, top), true));
  const differ = entries.filter((e) => e.callsA !== e.callsB);
  differ.sort((x, y) => Math.abs(y.callsA - y.callsB) - Math.abs(x.callsA - x.callsB));
  console.log(`\nops whose calls per run differ (${differ.length} of ${entries.length}):`);
  console.log(diffTable(differ, false));
  if ([a, b].every((p) => p.rows.some((r) => r.shapes))) {
    const shaped = compare(a, b, true);
    console.log(
      `\nops with their input shapes, by the difference in self time per run (top ${top} of ${shaped.length}):`,
    );
    console.log(diffTable(shaped.slice(0, top), true));
  }
  writeJson(args.json, {
    bench: "op-profile-compare",
    sides: [a, b].map((p) => ({
      side: p.side,
      what: p.what,
      runs: p.runs,
      wallSeconds: p.wallSeconds,
      ...selfTotals(p),
    })),
    ops: entries.map(({ name, backward, callsA, callsB, selfA, selfB }) => ({
      name,
      backward,
      callsA,
      callsB,
      selfA,
      selfB,
    })),
  });
}

/** The median run's seconds where each run's are recorded (a first run can be slower), else the mean. */
function medianRun(p: Profile): number {
  const t = p.secondsPerRun;
  if (!t?.length) return p.wallSeconds / p.runs;
  const s = [...t].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Entry {
  name: string;
  shapes: string;
  backward: boolean;
  callsA: number;
  callsB: number;
  selfA: number;
  selfB: number;
}

/**
 * Both sides' rows per op (libtorch's ops and nodes; the addon's js:: calls have no counterpart), summed over input
 * shapes unless `byShape`; per run; largest difference in self time first.
 */
function compare(a: Profile, b: Profile, byShape: boolean): Entry[] {
  const byKey = new Map<string, Entry>();
  for (const [side, p] of [
    ["A", a],
    ["B", b],
  ] as const)
    for (const r of p.rows) {
      if (isBinding(r)) continue;
      const shapes = byShape ? (r.shapes ?? "") : "";
      const k = `${key(r)}\u001f${shapes}`;
      const e = byKey.get(k) ?? {
        name: r.name,
        shapes,
        backward: r.backward,
        callsA: 0,
        callsB: 0,
        selfA: 0,
        selfB: 0,
      };
      e[`calls${side}`] += r.calls / p.runs;
      e[`self${side}`] += r.selfNs / p.runs;
      byKey.set(k, e);
    }
  const entries = [...byKey.values()];
  entries.sort((x, y) => Math.abs(y.selfA - y.selfB) - Math.abs(x.selfA - x.selfB));
  return entries;
}

function diffTable(entries: Entry[], withDifference: boolean): string {
  return table(
    [
      "op",
      "calls / run (1)",
      "calls / run (2)",
      "self ms / run (1)",
      "self ms / run (2)",
      ...(withDifference ? ["difference ms"] : []),
    ],
    entries.map((e) => [
      `${e.name}${e.shapes ? ` ${e.shapes}` : ""}${e.backward ? " (backward node)" : ""}`,
      fmtCalls(e.callsA),
      fmtCalls(e.callsB),
      ms(e.selfA),
      ms(e.selfB),
      ...(withDifference ? [ms(e.selfA - e.selfB)] : []),
    ]),
  );
}

function isBindingSide(p: Profile): boolean {
  return p.rows.some(isBinding);
}

function fmtCalls(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

main();
