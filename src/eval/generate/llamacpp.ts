/**
 * Generation through llama.cpp (node-llama-cpp 3.x, prebuilt binaries: CPU unless `gpu`) on a GGUF file written by
 * src/io/export-gguf.ts. Nothing is ever downloaded or built: `build: "never"`, `skipDownload`.
 *
 * Defaults favour agreement with the reference implementation over speed: f32 KV cache, flash attention off,
 * and the full SWA cache (so a sequence can always be cleared and reused).
 */
import * as fs from "node:fs";
// types only: node-llama-cpp is optional and loaded on first use (llamacpp-runtime.ts says how to get it)
import type {
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaLogLevel,
  LlamaModel,
  Token,
} from "node-llama-cpp";
import { InputError } from "../../errors.js";
import { loadNodeLlamaCpp, type LlamaGpu } from "./llamacpp-runtime.js";
import type { GenerateOptions, GenerationBackend } from "./backend.js";

export interface LlamaCppBackendOptions {
  modelPath: string;
  /** Context length in tokens (prompt + generation). Default 2048, capped by nothing but memory. */
  contextSize?: number;
  threads?: number;
  /** Default true: f32 K/V cache (llama.cpp's default f16 cache differs by ~1e-3 relative). */
  f32KvCache?: boolean;
  /** Default false. */
  flashAttention?: boolean;
  /** Default "error": llama.cpp's load logs are long. */
  logLevel?: "error" | "warn" | "info" | "debug";
  /** Default: CPU. A GPU build must be installed (`goodvibe setup llamacpp --gpu cuda`). */
  gpu?: LlamaGpu;
}

const llamas = new Map<string, Promise<Llama>>();

/** One llama.cpp runtime per process and device, from the prebuilt binaries. */
function prebuiltLlama(logLevel: LlamaLogLevel, gpu: LlamaGpu | undefined): Promise<Llama> {
  const key = gpu ?? "cpu";
  let p = llamas.get(key);
  if (!p) {
    p = loadNodeLlamaCpp().then(({ getLlama }) =>
      getLlama({
        gpu: gpu ?? false,
        build: "never",
        skipDownload: true,
        usePrebuiltBinaries: true,
        progressLogs: false,
        logLevel,
      }).catch((e: Error) => {
        if (!gpu) throw e;
        throw new InputError(
          `llama.cpp's ${gpu} build cannot run here (${e.message}): it needs \`goodvibe setup llamacpp --gpu ${gpu}\` ` +
            `and a working ${gpu} GPU; without --gpu llama.cpp runs on the CPU`,
          { cause: e },
        );
      }),
    );
    p.catch(() => llamas.delete(key));
    llamas.set(key, p);
  }
  return p;
}

export class LlamaCppBackend implements GenerationBackend {
  readonly name = "llama.cpp";
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequence: LlamaContextSequence,
  ) {}

  static async open(opts: LlamaCppBackendOptions): Promise<LlamaCppBackend> {
    if (!fs.existsSync(opts.modelPath)) throw new InputError(`${opts.modelPath}: GGUF model file not found`);
    // LlamaLogLevel is a string enum: its values are these names
    const llama = await prebuiltLlama((opts.logLevel ?? "error") as LlamaLogLevel, opts.gpu);
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: opts.modelPath, gpuLayers: opts.gpu ? "max" : 0 });
    } catch (e) {
      throw new InputError(`${opts.modelPath}: llama.cpp cannot load this model (${(e as Error).message})`, {
        cause: e,
      });
    }
    const f32 = opts.f32KvCache ?? true;
    const contextSize = opts.contextSize ?? Math.min(2048, model.trainContextSize);
    const context = await model.createContext({
      contextSize,
      batchSize: contextSize,
      sequences: 1,
      flashAttention: opts.flashAttention ?? false,
      swaFullCache: true,
      threads: opts.threads,
      ...(f32
        ? { experimentalKvCacheKeyType: "F32" as const, experimentalKvCacheValueType: "F32" as const }
        : {}),
    });
    return new LlamaCppBackend(model, context, context.getSequence());
  }

  /** Calls share one sequence, so they run one at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private checkIds(ids: readonly number[], what: string): Token[] {
    const n = this.model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= n)
        throw new InputError(`${what}: token id ${id} is outside the vocabulary (0..${n - 1})`);
    }
    return ids as Token[];
  }

  private samplingOptions(opts: GenerateOptions) {
    const greedy = !opts.temperature;
    return greedy
      ? { temperature: 0 }
      : { temperature: opts.temperature, topP: opts.topP, seed: opts.seed ?? 0 };
  }

  /** Greedy (or sampled) continuation; stops at maxNewTokens or an end-of-generation token (not returned). */
  generateTokens(promptIds: number[], opts: GenerateOptions): Promise<number[]> {
    const prompt = this.checkIds(promptIds, "prompt");
    return this.serial(async () => {
      await this.sequence.clearHistory();
      const out: number[] = [];
      if (opts.maxNewTokens <= 0) return out;
      for await (const token of this.sequence.evaluate(prompt, {
        ...this.samplingOptions(opts),
        yieldEogToken: false,
      })) {
        out.push(token);
        if (out.length >= opts.maxNewTokens) break;
      }
      return out;
    });
  }

  /** Text continuation of an already chat-formatted prompt; special-token text in the prompt is parsed as such. */
  async generateText(prompt: string, opts: GenerateOptions): Promise<string> {
    let ids = this.model.tokenize(prompt, true);
    const bos = this.model.tokens.bos;
    if (this.model.tokens.shouldPrependBosToken && bos !== null && ids[0] !== bos) ids = [bos, ...ids];
    const stops = opts.stop ?? [];
    return this.serial(async () => {
      await this.sequence.clearHistory();
      const out: Token[] = [];
      let text = "";
      if (opts.maxNewTokens > 0) {
        for await (const token of this.sequence.evaluate(ids, {
          ...this.samplingOptions(opts),
          yieldEogToken: false,
        })) {
          out.push(token);
          text = this.model.detokenize(out, false);
          if (out.length >= opts.maxNewTokens || stops.some((s) => text.includes(s))) break;
        }
      }
      let cut = text.length;
      for (const s of stops) {
        const i = text.indexOf(s);
        if (i >= 0 && i < cut) cut = i;
      }
      return text.slice(0, cut);
    });
  }

  /**
   * Raw logits, one row per position of `tokens` (the scores for the token after that position). The first
   * `prefill` tokens (default: all) go in one batch, the rest one at a time through the KV cache, as in decoding.
   */
  logits(tokens: number[], opts: { prefill?: number } = {}): Promise<Float32Array[]> {
    const ids = this.checkIds(tokens, "logits");
    const nVocab = this.model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    const prefill = Math.max(1, Math.min(opts.prefill ?? ids.length, ids.length));
    return this.serial(async () => {
      await this.sequence.clearHistory();
      const rows: Float32Array[] = [];
      const chunks: Token[][] = [ids.slice(0, prefill), ...ids.slice(prefill).map((t) => [t])];
      for (const chunk of chunks) {
        const res = await this.sequence.controlledEvaluate(
          chunk.map((t) => [t, { generateNext: { logits: true } }]),
        );
        for (let i = 0; i < chunk.length; i++) {
          const logits = res[i]?.next.logits;
          if (!logits) throw new Error(`llama.cpp returned no logits for position ${rows.length}`);
          const row = new Float32Array(nVocab);
          for (const [tok, v] of logits) row[tok] = v;
          rows.push(row);
        }
      }
      return rows;
    });
  }

  async close(): Promise<void> {
    await this.queue;
    await this.context.dispose();
    await this.model.dispose();
  }
}

export function openLlamaCppBackend(opts: LlamaCppBackendOptions): Promise<LlamaCppBackend> {
  return LlamaCppBackend.open(opts);
}
