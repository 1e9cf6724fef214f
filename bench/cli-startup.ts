/**
 * CLI start-up, side by side with a reference build: the wall time of `goodvibe --help`, `export --help`, a usage
 * error, `report` of a small results file and a GGUF `export` of the shipped organism, each run alternately by the
 * reference and this checkout (so both meet the same load), with bare `node -e 0` as the floor. Medians and ranges
 * in ms, as JSON on stdout.
 *
 *   npx tsc -p . && node dist/bench/cli-startup.js --reference /path/to/other/checkout [--runs 7]
 *
 * The reference is another checkout of goodvibe, built (`npx tsc -p .`, its addon in native/build); pin both to
 * one core (taskset) to measure what a single start costs.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { benchArgs, benchUsageError } from "./args.js";
import { handMadeResults } from "../test/report/fixture.js";

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const { values: args } = benchArgs(import.meta.url, {
  options: { reference: { type: "string" }, runs: { type: "string", default: "7" } },
});
const reference = args.reference;
if (!reference) benchUsageError(import.meta.url, "--reference <built checkout> is required");
if (!fs.existsSync(path.join(reference, "dist/src/cli/main.js")))
  benchUsageError(
    import.meta.url,
    `--reference ${reference}: no dist/src/cli/main.js there (build it: npx tsc -p .)`,
  );
const runs = Number(args.runs);

const work = fs.mkdtempSync(path.join(os.tmpdir(), "gv-cli-startup-"));
const results = path.join(work, "results.json");
fs.writeFileSync(results, JSON.stringify(handMadeResults()));
const organism = path.join(HERE, "assets/organism");

interface Case {
  name: string;
  args: (out: string) => string[];
  /** the exit code both sides must give */
  code: number;
}

const cases: Case[] = [
  { name: "--help", args: () => ["--help"], code: 0 },
  { name: "export --help", args: () => ["export", "--help"], code: 0 },
  { name: "usage error (harden --top-k abc)", args: () => ["harden", "--top-k", "abc"], code: 2 },
  { name: "report (hand-made results.json)", args: (o) => ["report", results, "-o", o], code: 0 },
  {
    name: "export organism GGUF f32",
    args: (o) => ["export", "-m", organism, "-o", `${o}.gguf`, "--outtype", "f32"],
    code: 0,
  },
];

let n = 0;
/** One run's wall time in ms; refuses a run that does not give the expected exit code. */
function time(argv: string[], code: number): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, argv, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== code)
    throw new Error(`${argv.join(" ")}: exit ${r.status}, expected ${code}\n${r.stderr}`);
  return ms;
}

function summary(xs: number[]): { median: number; min: number; max: number; runs: number[] } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  const r = (x: number) => Math.round(x);
  return { median: r(median), min: r(s[0]!), max: r(s[s.length - 1]!), runs: xs.map(r) };
}

const out: Record<string, unknown> = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  loadavg: os.loadavg(),
  reference: path.resolve(reference),
  checkout: HERE,
  runs,
};
const bare: number[] = [];
for (let i = 0; i < runs; i++) bare.push(time(["-e", "0"], 0));
out["node -e 0"] = summary(bare);
for (const c of cases) {
  const t: { reference: number[]; checkout: number[] } = { reference: [], checkout: [] };
  for (let i = 0; i < runs; i++) {
    // alternate, the reference first on even runs and second on odd ones
    const order = i % 2 === 0 ? (["reference", "checkout"] as const) : (["checkout", "reference"] as const);
    for (const side of order) {
      const root = side === "reference" ? reference : HERE;
      const o = path.join(work, `out-${n++}`);
      t[side].push(time([path.join(root, "dist/src/cli/main.js"), ...c.args(o)], c.code));
    }
  }
  out[c.name] = { reference: summary(t.reference), checkout: summary(t.checkout) };
  process.stderr.write(
    `${c.name}: reference ${summary(t.reference).median} ms, this ${summary(t.checkout).median} ms\n`,
  );
}
fs.rmSync(work, { recursive: true, force: true });
process.stdout.write(JSON.stringify(out, null, 2) + "\n");
