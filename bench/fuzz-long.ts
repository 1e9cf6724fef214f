/**
 * Long-running dataset-reader fuzz: the generators of test/robustness/dataset-fuzz.test.ts, round-robin over
 * every reader, for N minutes. Not part of the test suite.
 *
 *   node dist/bench/fuzz-long.js [minutes=5] [seed=1]
 *   node dist/bench/fuzz-long.js -- 5 -3      (a negative seed: after `--`, so it is not read as an option)
 *
 * Prints each contract violation (a throw other than InputError, or an item that breaks the reader's schema)
 * with the (seed, index) that regenerates it via makeCase, keeps the first failing file of each kind under
 * $GOODVIBE_FUZZ_KEEP (default: a temp folder), and exits 1 when there was any. A case that runs longer than
 * 10 s is reported as a suspected hang.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TARGETS, makeCase, runCase } from "../test/robustness/fuzz-generators.js";
import { benchArgs, benchUsageError } from "./args.js";

const { positionals } = benchArgs(import.meta.url, { allowPositionals: true, options: {} });
if (positionals.length > 2)
  benchUsageError(import.meta.url, `at most two arguments (minutes, seed), got ${positionals.length}`);
const minutes = Number(positionals[0] ?? 5);
const seed = Number(positionals[1] ?? 1);
if (!(minutes > 0)) benchUsageError(import.meta.url, `minutes: a number > 0, got ${positionals[0]}`);
if (!Number.isInteger(seed)) benchUsageError(import.meta.url, `seed: an integer, got ${positionals[1]}`);

const work = fs.mkdtempSync(path.join(os.tmpdir(), "gv-fuzz-long-"));
const keep = process.env.GOODVIBE_FUZZ_KEEP ?? fs.mkdtempSync(path.join(os.tmpdir(), "gv-fuzz-failures-"));
fs.mkdirSync(keep, { recursive: true });

// A reader that abandons a rejected promise (hyparquet's sibling column reads) would end this run; count it
// as a violation of the case being run instead.
let current = "";
let unhandled = 0;
process.on("unhandledRejection", (e) => {
  unhandled++;
  if (unhandled <= 5)
    console.log(`FAIL unhandled rejection during or after ${current}: ${(e as Error).message}`);
});

// A case that never settles (a reader awaiting forever) leaves the loop idle: say which one on Ctrl-C/kill.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.log(`HANG? interrupted while running ${current}`);
    process.exit(1);
  });
}

const deadline = Date.now() + minutes * 60_000;
const SLOW_MS = 10_000;
let cases = 0;
let failures = 0;
const firstOfKind = new Set<string>();
const outcomes = new Map<string, number>();

for (let i = 0; Date.now() < deadline; i++) {
  for (const target of TARGETS) {
    const c = makeCase(seed, i, target);
    // One file name per reader, overwritten each round: a Parquet read still in flight after the loader
    // rejected must not find its file deleted.
    const label = target.name;
    current = `seed=${seed} index=${i} ${target.name} (${c.mutation})`;
    const started = Date.now();
    try {
      const { kind } = await runCase(work, target, c, label);
      const key = `${target.name}/${kind}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    } catch (e) {
      failures++;
      const message = (e as Error).message;
      // Group by target, mutation and the first words of the error, so one bug is kept once.
      const kind = `${target.name}|${c.mutation}|${message.replace(/^.*?: /, "").slice(0, 60)}`;
      if (!firstOfKind.has(kind)) {
        firstOfKind.add(kind);
        const kept = path.join(keep, `${label}-${i}${c.suffix}`);
        fs.writeFileSync(kept, c.bytes);
        console.log(`FAIL seed=${seed} index=${i} ${message.slice(0, 300)}\n     file: ${kept}`);
      }
    }
    const took = Date.now() - started;
    if (took > SLOW_MS)
      console.log(`SLOW seed=${seed} index=${i} ${target.name} (${c.mutation}): ${took} ms`);
    cases++;
  }
}

fs.rmSync(work, { recursive: true, force: true });
console.log(
  `${cases} cases in ${minutes} min, ${failures} contract violations (${firstOfKind.size} distinct)`,
);
console.log(`outcomes: ${[...outcomes].map(([k, n]) => `${k}=${n}`).join(" ")}`);
process.exit(failures > 0 ? 1 : 0);
