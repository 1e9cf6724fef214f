/**
 * Generation through llama.cpp (node-llama-cpp 3.x, prebuilt binaries: CPU unless `gpu`) on a GGUF file written by
 * src/io/export-gguf.ts. Nothing is ever downloaded or built: `build: "never"`, `skipDownload`.
 *
 * Defaults favour agreement with the reference implementation over speed: f32 KV cache, flash attention off,
 * and the full SWA cache (so a sequence can always be cleared and reused). Threads follow the cores this
 * process may use (node-llama-cpp would start at least 4, twenty times slower on a 2-core machine).
 *
 * With the model's own tokenizer (`tokenizer`), prompts are rendered by our chat template code and encoded by
 * our tokenizer, exactly as the built-in engine does, and fed to llama.cpp as tokens: no chat wrapper of
 * node-llama-cpp (which drops a template's BOS) and no second tokenizer come between. Generation then stops
 * at the same end tokens as the built-in engine and is decoded by the same tokenizer.
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
import { sampledWarpers, type GenerationConfigProcessors } from "./generation-config.js";
import { InputError } from "../../errors.js";
import { loadNodeLlamaCpp, type LlamaGpu } from "./llamacpp-runtime.js";
import type { ChatMessage, HfTokenizer } from "../../io/tokenizer.js";
import { usableCores } from "../../util/cores.js";
import { createRng } from "../../util/random.js";
import { DEFAULT_ENABLE_THINKING } from "../../io/chat-template.js";
import type { GenerateOptions, GenerationBackend, ChatGenerateOptions } from "./backend.js";
import { cutAtStop } from "../utility/model.js";
// the processor chain on plain arrays (models/logits-row.ts, the description models/generate.ts follows too): no libtorch
import { argmaxRow, penaliseRow, sampleToken, samplingTemperature } from "../../models/logits-row.js";

export interface LlamaCppBackendOptions {
  modelPath: string;
  /** Context length in tokens (prompt + generation). Default 2048, capped by nothing but memory. */
  contextSize?: number;
  /** Compute threads; default: the usable cores (affinity and cgroup quota, or GOODVIBE_THREADS). */
  threads?: number;
  /**
   * The model folder's tokenizer (loadTokenizer). When given, prompts are encoded and answers decoded with it,
   * and chat prompts rendered with its chat template, so llama.cpp sees the built-in engine's prompt tokens.
   */
  tokenizer?: HfTokenizer;
  /** LoRA adapters in GGUF (llama.cpp's convert_lora_to_gguf.py layout) applied on top of the model. */
  lora?: { file: string; scale?: number }[];
  /** Default true: f32 K/V cache (llama.cpp's default f16 cache differs by ~1e-3 relative). */
  f32KvCache?: boolean;
  /** Default false. */
  flashAttention?: boolean;
  /** Default "error": llama.cpp's load logs are long. */
  logLevel?: "error" | "warn" | "info" | "debug";
  /** Default: CPU. A GPU build must be installed (`goodvibe setup llamacpp --gpu cuda`). */
  gpu?: LlamaGpu;
  /**
   * The logits processors to apply, as the built-in engine does (generation-config.ts generationConfigProcessors of
   * the model folder the GGUF was exported from); default none.
   */
  processors?: GenerationConfigProcessors;
}

const llamas = new Map<string, Promise<Llama>>();

/**
 * One llama.cpp runtime per process and device, from the prebuilt binaries. Its thread pool is sized to
 * `threads`: node-llama-cpp's own default is at least 4 threads, which oversubscribes a 2-core machine.
 */
async function prebuiltLlama(
  logLevel: LlamaLogLevel,
  gpu: LlamaGpu | undefined,
  threads: number,
): Promise<Llama> {
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
        maxThreads: threads,
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
  const llama = await p;
  if (llama.maxThreads < threads) llama.maxThreads = threads;
  return llama;
}

export class LlamaCppBackend implements GenerationBackend {
  readonly name = "llama.cpp";
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequence: LlamaContextSequence,
    readonly tokenizer: HfTokenizer | null,
    /** Compute threads the context was created with. */
    readonly threads: number,
    /** The generation_config.json processors it applies (LlamaCppBackendOptions.processors). */
    readonly processors: GenerationConfigProcessors = {},
  ) {}

  static async open(opts: LlamaCppBackendOptions): Promise<LlamaCppBackend> {
    if (!fs.existsSync(opts.modelPath)) throw new InputError(`${opts.modelPath}: GGUF model file not found`);
    const threads = opts.threads ?? usableCores();
    if (!Number.isInteger(threads) || threads < 1)
      throw new InputError(`llama.cpp threads must be a positive integer, got ${threads}`);
    // LlamaLogLevel is a string enum: its values are these names
    const llama = await prebuiltLlama((opts.logLevel ?? "error") as LlamaLogLevel, opts.gpu, threads);
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
    const context = await model
      .createContext({
        contextSize,
        batchSize: contextSize,
        sequences: 1,
        flashAttention: opts.flashAttention ?? false,
        swaFullCache: true,
        threads: { ideal: threads, min: threads },
        ...(f32
          ? { experimentalKvCacheKeyType: "F32" as const, experimentalKvCacheValueType: "F32" as const }
          : {}),
        ...(opts.lora?.length
          ? { lora: { adapters: opts.lora.map((a) => ({ filePath: a.file, scale: a.scale ?? 1 })) } }
          : {}),
      })
      .catch(async (e: unknown) => {
        await model.dispose();
        const what = opts.lora?.length ? ` with LoRA ${opts.lora.map((a) => a.file).join(", ")}` : "";
        throw new InputError(
          `${opts.modelPath}: llama.cpp cannot create a context${what} (${(e as Error).message})`,
          {
            cause: e,
          },
        );
      });
    // No vocabulary-size check against the tokenizer: Gemma 3 1B's tokenizer has an added token past the
    // model's 262,144 embeddings. Every prompt id is checked against the GGUF's vocabulary instead (checkIds).
    return new LlamaCppBackend(
      model,
      context,
      context.getSequence(),
      opts.tokenizer ?? null,
      context.currentThreads,
      opts.processors ?? {},
    );
  }

  /** Calls share one sequence, so they run one at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Tokens in the GGUF's vocabulary. */
  get vocabSize(): number {
    return this.model.fileInfo.metadata.tokenizer.ggml.tokens.length;
  }

  private checkIds(ids: readonly number[], what: string): Token[] {
    const n = this.vocabSize;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= n)
        throw new InputError(
          `${what}: token id ${id} is outside the GGUF's vocabulary (0..${n - 1})` +
            (this.tokenizer
              ? ": the prompt was encoded with the model folder's tokenizer; is that folder (-m) the model this GGUF was exported from?"
              : ""),
        );
    }
    return ids as Token[];
  }

  /**
   * Run the sequence from a clear history on `prompt` and collect up to `maxNewTokens` new tokens. With our
   * tokenizer, generation ends at its end tokens (the built-in engine's set); otherwise at llama.cpp's.
   * `done` may stop early (stop strings). End tokens are not returned.
   */
  private async run(
    prompt: Token[],
    opts: GenerateOptions,
    done: (out: number[]) => boolean = () => false,
  ): Promise<number[]> {
    await this.sequence.clearHistory();
    const out: number[] = [];
    if (opts.maxNewTokens <= 0) return out;
    opts = { ...opts, temperature: samplingTemperature(opts.temperature) };
    // The last new token is never evaluated: the prompt and all but one new token must fit. Past that,
    // node-llama-cpp would shift the context (erase its beginning) and go on: an answer to a prompt cut short,
    // unlike the built-in engine's, with no word said.
    const size = this.context.contextSize;
    if (prompt.length + opts.maxNewTokens - 1 > size)
      throw new InputError(
        `llama.cpp backend: a prompt of ${prompt.length} tokens and up to ${opts.maxNewTokens} new tokens do not ` +
          `fit its context of ${size} tokens (it would drop the prompt's beginning); open it with a contextSize of ` +
          `at least ${prompt.length + opts.maxNewTokens - 1}, or ask for fewer new tokens`,
      );
    const eos = this.tokenizer ? new Set(this.tokenizer.eosTokenIds) : null;
    // a repetition penalty, like sampling, needs the logits: llama.cpp's own penalty (penalty_repeat over its last
    // n tokens) is not transformers' (every token of prompt and answer), so the token is picked here
    if (opts.temperature || this.processors.repetitionPenalty !== undefined)
      return this.runSampled(prompt, opts, done, eos);
    for await (const token of this.sequence.evaluate(prompt, {
      temperature: 0,
      yieldEogToken: eos !== null,
    })) {
      if (eos?.has(token)) break;
      out.push(token);
      if (out.length >= opts.maxNewTokens || done(out)) break;
    }
    return out;
  }

  /**
   * Sampling as transformers and the built-in engine do it: the repetition penalty, then temperature, top-k, and
   * top-p on the tempered distribution (models/logits-row.ts, generation/utils.py `_get_logits_processor`'s order). node-llama-cpp's
   * sampler chain applies top-p before the temperature (llama/addon/AddonSampler.cpp: top_k, top_p, min_p, temp,
   * dist), another nucleus whenever both are set, so the token is drawn here from llama.cpp's logits, with the
   * project's seeded generator. Greedy with a repetition penalty: the argmax of the penalised logits.
   */
  private async runSampled(
    prompt: Token[],
    opts: GenerateOptions,
    done: (out: number[]) => boolean,
    eos: Set<number> | null,
  ): Promise<number[]> {
    const rng = createRng(opts.seed ?? 0);
    const nVocab = this.vocabSize;
    const penalty = this.processors.repetitionPenalty;
    // the call's top_p, else the folder's, as the built-in engine takes it
    const { topP, topK } = opts.temperature
      ? sampledWarpers(opts.topP, this.processors)
      : { topP: 1, topK: 0 };
    const seen = new Set<number>(prompt);
    const out: number[] = [];
    let feed: Token[] = prompt;
    for (;;) {
      const res = await this.sequence.controlledEvaluate(
        feed.map((t, i) => (i === feed.length - 1 ? [t, { generateNext: { logits: true } }] : t)),
      );
      const pairs = res[feed.length - 1]?.next.logits;
      if (!pairs) throw new Error(`llama.cpp returned no logits after ${out.length} new tokens`);
      const row = new Float64Array(nVocab).fill(-Infinity);
      for (const [tok, v] of pairs) row[tok] = v;
      if (penalty !== undefined) penaliseRow(row, seen, penalty);
      const token = (
        opts.temperature ? sampleToken(row, opts.temperature, topP, rng.next(), topK) : argmaxRow(row)
      ) as Token;
      seen.add(token);
      if (eos ? eos.has(token) : this.model.isEogToken(token)) break;
      out.push(token);
      if (out.length >= opts.maxNewTokens || done(out)) break;
      feed = [token];
    }
    return out;
  }

  /** Greedy (or sampled) continuation; stops at maxNewTokens or an end-of-generation token (not returned). */
  generateTokens(promptIds: number[], opts: GenerateOptions): Promise<number[]> {
    const prompt = this.checkIds(promptIds, "prompt");
    return this.serial(() => this.run(prompt, opts));
  }

  /**
   * Prompt tokens of an already chat-formatted text: our tokenizer's, without added special tokens (the
   * template wrote them), as the built-in engine encodes; without it, llama.cpp's tokenizer with special-token
   * text parsed and a BOS added when the GGUF asks for one and the text has none.
   */
  encodePrompt(prompt: string): number[] {
    if (this.tokenizer) {
      const ids = this.tokenizer.encode(prompt, { addSpecialTokens: false });
      if (ids.length === 0) throw new InputError("llama.cpp backend: the prompt is empty");
      return this.checkIds(ids, "prompt");
    }
    let ids = this.model.tokenize(prompt, true);
    const bos = this.model.tokens.bos;
    if (this.model.tokens.shouldPrependBosToken && bos !== null && ids[0] !== bos) ids = [bos, ...ids];
    return ids;
  }

  /** Whether the text so far contains a stop string (the whole text is decoded: tokens may split characters). */
  private hitsStop(ids: number[], stops: readonly string[]): boolean {
    if (stops.length === 0) return false;
    const text = this.decode(ids);
    return stops.some((s) => text.includes(s));
  }

  private decode(ids: number[]): string {
    return this.tokenizer
      ? this.tokenizer.decode(ids, { skipSpecialTokens: true })
      : this.model.detokenize(ids as Token[], false);
  }

  /** Text continuation of an already chat-formatted prompt, cut before the first stop string. */
  async generateText(prompt: string, opts: GenerateOptions): Promise<string> {
    const ids = this.encodePrompt(prompt) as Token[];
    const stops = (opts.stop ?? []).filter((s) => s !== "");
    return this.serial(async () => {
      const out = await this.run(ids, opts, (o) => this.hitsStop(o, stops));
      return cutAtStop(this.decode(out), stops);
    });
  }

  /** The prompt tokens of a conversation: the model's chat template rendered by our code, then encodePrompt. */
  chatPromptIds(messages: readonly ChatMessage[], enableThinking = DEFAULT_ENABLE_THINKING): number[] {
    if (!this.tokenizer)
      throw new InputError(
        "llama.cpp backend: chat needs the model folder's tokenizer (its chat template); open it with `tokenizer`",
      );
    return this.encodePrompt(
      this.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true, enableThinking }),
    );
  }

  /**
   * Answers to conversations, one at a time through the one sequence, with the model's own chat template
   * (the built-in engine's prompt tokens). Sampled answer i is seeded with seed + i.
   */
  async generateChat(
    messagesList: readonly (readonly ChatMessage[])[],
    opts: ChatGenerateOptions,
  ): Promise<string[]> {
    const out: string[] = [];
    for (const [i, messages] of messagesList.entries()) {
      const ids = this.chatPromptIds(messages, opts.enableThinking ?? DEFAULT_ENABLE_THINKING) as Token[];
      const stops = (opts.stop ?? []).filter((s) => s !== "");
      const seeded = { ...opts, seed: (opts.seed ?? 0) + i };
      out.push(
        await this.serial(async () => {
          const toks = await this.run(ids, seeded, (o) => this.hitsStop(o, stops));
          return cutAtStop(this.decode(toks), stops);
        }),
      );
    }
    return out;
  }

  /**
   * Raw logits, one row per position of `tokens` (the scores for the token after that position). The first
   * `prefill` tokens (default: all) go in one batch, the rest one at a time through the KV cache, as in decoding.
   */
  logits(tokens: number[], opts: { prefill?: number } = {}): Promise<Float32Array[]> {
    const ids = this.checkIds(tokens, "logits");
    const nVocab = this.vocabSize;
    const prefill = Math.max(1, Math.min(opts.prefill ?? ids.length, ids.length));
    if (ids.length > this.context.contextSize)
      throw new InputError(
        `llama.cpp backend: ${ids.length} tokens do not fit its context of ${this.context.contextSize} tokens`,
      );
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
