/**
 * A hardening run's measured peak memory (cost.peakMemoryBytes in results.json, Table 2's peak-memory column) is its
 * own, not the peak of whatever the process did before it. `experiment run` computes every cell in one process
 * (the judge, the base model's evaluation, then per model GoodVibe, LoRA, full fine-tuning, the ablations); the
 * process's VmHWM never went down, so every cell after full fine-tuning reported at least full fine-tuning's peak
 * (the organism grid on this machine: 386, 440, 452, 454 MiB in run order, never less). Reference: the process's
 * own high-water mark after a spike this test makes, and the run's resident growth, which is far below the spike.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { runHarden } from "../../src/recipes/harden.js";
import { peakRssBytes } from "../../src/util/memory.js";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { tinyHardenConfig } from "./tiny-config.js";

const made = makeTinyChatModel();
const work = scratchDir("gv-peak-memory-");
const data = path.join(work, "pairs.jsonl");
writeCorpusJsonl(data, made.pairs.slice(0, 4));
after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});

const MiB = 2 ** 20;

test("a run's peak memory is measured from its start, not from the process's earlier peak", async (t) => {
  if (!fs.existsSync("/proc/self/clear_refs")) return t.skip("no /proc/self/clear_refs (not Linux)");
  // a spike of 768 MiB before the run (what an earlier full fine-tuning cell leaves as the process's peak), freed
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  let spike: Buffer | null = Buffer.alloc(768 * MiB, 1);
  assert.equal(spike[spike.length - 1], 1);
  spike = null;
  gc();
  const processPeak = peakRssBytes();
  const rssAfter = process.memoryUsage().rss;
  assert.ok(
    processPeak - rssAfter > 512 * MiB,
    `the spike is in the process's peak (${processPeak}, ${rssAfter})`,
  );

  const r = await runHarden(tinyHardenConfig(made.dir, data, path.join(work, "out")));
  // the tiny model's run adds a few MiB to what the process holds; the spike is not its peak
  assert.ok(
    r.train.peakMemoryBytes < processPeak - 512 * MiB,
    `the run's peak ${(r.train.peakMemoryBytes / MiB).toFixed(0)} MiB includes the earlier spike (process peak ` +
      `${(processPeak / MiB).toFixed(0)} MiB)`,
  );
  assert.ok(r.train.peakMemoryBytes >= rssAfter - 64 * MiB, "what the process held stays counted");
  assert.ok(r.peakMemoryBytes >= r.train.peakMemoryBytes);
});
