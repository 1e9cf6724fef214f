/**
 * The lifetime of frozenDx's weight copies in one process (BENCHMARKS "Lifetime of the frozen weight copies"):
 * `goodvibe harden` and then an evaluation of its output, as an experiment's cell or the demo run them, each log line
 * of both stamped with the process's RSS and peak RSS (VmHWM) when it was written; the peak at the end.
 *
 *   node dist/bench/copies-lifetime.js --model DIR --data FILE --out DIR [--languages c++] [--pairs 8]
 *     [--epochs 1] [--max-length 256] [--eval-pairs 4] [--eval-prompts 2] [--no-eval]
 *
 * --out is a scratch folder (the hardened model and the run folder go in it; removed first).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { benchArgs } from "./args.js";
import { defaultHardenConfig } from "../src/config/harden.js";
import { runHarden } from "../src/recipes/harden.js";
import { evaluateModel } from "../src/recipes/evaluate.js";
import { readPairs } from "../src/data/pairs.js";
import type { Logger } from "../src/util/log.js";
import { peakRssBytes } from "../src/util/memory.js";

const { values: a } = benchArgs(import.meta.url, {
  options: {
    model: { type: "string" },
    data: { type: "string" },
    out: { type: "string" },
    languages: { type: "string", default: "c++" },
    pairs: { type: "string", default: "8" },
    epochs: { type: "string", default: "1" },
    "max-length": { type: "string", default: "256" },
    "eval-pairs": { type: "string", default: "4" },
    "eval-prompts": { type: "string", default: "2" },
    "no-eval": { type: "boolean", default: false },
  },
});
if (!a.model || !a.data || !a.out) throw new Error("--model, --data and --out are required");

const t0 = Date.now();
const gib = (b: number) => (b / 1024 ** 3).toFixed(2);
function stamp(stage: string, msg: string): void {
  const rss = process.memoryUsage().rss;
  console.log(
    `${((Date.now() - t0) / 1000).toFixed(1).padStart(7)} s  RSS ${gib(rss)} GiB  peak ${gib(peakRssBytes())} GiB  ${stage}: ${msg}`,
  );
}
const logger = (stage: string): Logger => ({
  info: (m) => stamp(stage, m),
  warn: (m) => stamp(stage, `warning: ${m}`),
  progress: () => {},
});

fs.rmSync(a.out, { recursive: true, force: true });
fs.mkdirSync(a.out, { recursive: true });
const pairs = Number(a.pairs);
const d = defaultHardenConfig({ model: a.model, data: a.data, out: path.join(a.out, "hardened") });
const cfg = {
  ...d,
  runDir: path.join(a.out, "run"),
  languages: a.languages.split(","),
  identify: { ...d.identify, maxPairs: pairs },
  train: { ...d.train, maxPairs: pairs, epochs: Number(a.epochs), maxLength: Number(a["max-length"]) },
};
stamp("start", `harden ${a.model}`);
const r = await runHarden(cfg, { log: logger("harden") });
stamp("harden", `done; the recipe's peakMemoryBytes ${gib(r.peakMemoryBytes)} GiB`);
if (!a["no-eval"]) {
  const heldOut = readPairs(a.data, { languages: cfg.languages });
  await evaluateModel(r.outDir, {
    pairs: heldOut,
    maxPrompts: Number(a["eval-prompts"]),
    maxPreferencePairs: Number(a["eval-pairs"]),
    maxNewTokens: 8,
    batchSize: 2,
    seed: 0,
    log: logger("eval"),
  });
  stamp("eval", "done");
}
stamp("end", `peak RSS ${gib(peakRssBytes())} GiB`);
