/**
 * Generation with the project's own libtorch decoder (src/models): a DecoderModel plus its Hugging Face tokenizer.
 * Prompts go through `generate` (left-padded batches, KV cache); greedy unless a temperature is given, with the
 * processors the model folder's generation_config.json asks for (generation-config.ts), as transformers applies them.
 *
 * A row ends at its first stop string as it is generated (text-stream.ts RowText watching each token through
 * generate's onToken hook, as `goodvibe serve` does), not after running on to maxNewTokens: the text is the whole
 * answer's cut before the stop, from the decoding steps up to it.
 */
import { DEFAULT_APPLY_GENERATION_CONFIG, DEFAULT_EVAL_BATCH } from "../config.js";
import {
  generationConfigProcessors,
  greedyProcessorKey,
  sampledTopK,
  sampledTopP,
  sampledWarpers,
  type GenerationConfigProcessors,
} from "./generation-config.js";
import { InputError } from "../../errors.js";
import type { ChatMessage, HfTokenizer } from "../../io/tokenizer.js";
import { loadTokenizer } from "../../io/tokenizer.js";
import { DEFAULT_ENABLE_THINKING } from "../../io/chat-template.js";
import { generate, loadModel, type DecoderModel, type LoadOptions } from "../../models/index.js";
import { generateAsync, type SamplingOptions } from "../../models/generate.js";
import { samplingTemperature } from "../../models/logits-row.js";
import type { ChatGenerateOptions, GenerateOptions, GenerationBackend } from "./backend.js";
import { cutAtStop } from "../utility/model.js";
import { rowTextOf } from "./text-stream.js";

export interface BuiltinBackendOptions {
  /** Token ids that end generation; default: the tokenizer's (eos and end-of-turn tokens). */
  eosTokenIds?: number[];
  /** Left-padding id; default: the tokenizer's pad token, else the first eos id, else 0 (pads are masked out). */
  padTokenId?: number;
  /**
   * The logits processors to apply (generation-config.ts generationConfigProcessors of the model's folder); default
   * none. `load` reads them from the folder unless `applyGenerationConfig` is false.
   */
  processors?: GenerationConfigProcessors;
}

export class BuiltinBackend implements GenerationBackend {
  readonly name = "builtin";
  readonly eosTokenIds: number[];
  readonly padTokenId: number;
  readonly processors: GenerationConfigProcessors;

  /** `tokenizer` may be left out for token-level use (generateTokens); the text methods need it. */
  constructor(
    readonly model: DecoderModel,
    readonly tokenizer: HfTokenizer | null = null,
    opts: BuiltinBackendOptions = {},
  ) {
    this.eosTokenIds = opts.eosTokenIds ?? tokenizer?.eosTokenIds ?? [];
    this.padTokenId = opts.padTokenId ?? tokenizer?.padTokenId ?? this.eosTokenIds[0] ?? 0;
    this.processors = opts.processors ?? {};
  }

  /**
   * What else changes its greedy answers (ChatBackend.keyFields): the repetition penalty when one is applied;
   * empty otherwise, so that answers cached before it was applied keep their keys where nothing changed.
   */
  get keyFields(): Readonly<Record<string, unknown>> {
    return greedyProcessorKey(this.processors);
  }

  /** ChatBackend.sampledKeyFields: what `sampling` applies when it samples (1 and 0: no top-p, no top-k). */
  sampledKeyFields(callTopP: number | undefined): Readonly<{ topP: number; topK: number }> {
    return sampledWarpers(callTopP, this.processors);
  }

  /**
   * Load a model folder with its tokenizer (tokenizer.json in the same folder) and, unless `applyGenerationConfig`
   * is false, the processors its generation_config.json asks for.
   */
  static async load(
    dir: string,
    opts: LoadOptions & BuiltinBackendOptions & { applyGenerationConfig?: boolean } = {},
  ): Promise<BuiltinBackend> {
    const processors =
      opts.processors ??
      generationConfigProcessors(dir, opts.applyGenerationConfig ?? DEFAULT_APPLY_GENERATION_CONFIG);
    const tokenizer = await loadTokenizer(dir);
    return new BuiltinBackend(loadModel(dir, opts), tokenizer, { ...opts, processors });
  }

  private tok(): HfTokenizer {
    if (!this.tokenizer)
      throw new InputError("builtin backend: this call needs a tokenizer, but none was given");
    return this.tokenizer;
  }

  private checkOptions(opts: GenerateOptions): void {
    if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0)
      throw new InputError(
        `generation option maxNewTokens must be a non-negative integer, got ${opts.maxNewTokens}`,
      );
    if (opts.temperature !== undefined && !(opts.temperature >= 0))
      throw new InputError(`generation option temperature must be >= 0, got ${opts.temperature}`);
    if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1))
      throw new InputError(`generation option topP must be in (0, 1], got ${opts.topP}`);
  }

  /**
   * New token ids of each prompt, end-of-sequence token dropped (as the llama.cpp backend returns them).
   * `seed` seeds the batch (sampling only); batches of generateBatch get seed + index of their first prompt.
   */
  generateBatch(prompts: number[][], opts: GenerateOptions): number[][] {
    this.checkOptions(opts);
    if (opts.maxNewTokens === 0) return prompts.map(() => []);
    return this.dropEos(generate(this.model, prompts, this.sampling(opts)));
  }

  /** generateBatch with a stop point after every token (`signal`). */
  async generateBatchAsync(
    prompts: number[][],
    opts: GenerateOptions & {
      signal?: AbortSignal;
      onToken?: SamplingOptions["onToken"];
      /** Sampling only: the top-k to apply instead of the folder's (0: none); a server's own default. */
      topK?: number;
      /** models/generate.ts SamplingOptions.prefillChunk (a server's: other clients are answered meanwhile). */
      prefillChunk?: number;
    },
  ): Promise<number[][]> {
    this.checkOptions(opts);
    if (opts.maxNewTokens === 0) return prompts.map(() => []);
    return this.dropEos(
      await generateAsync(this.model, prompts, {
        ...this.sampling(opts),
        signal: opts.signal,
        onToken: opts.onToken,
        prefillChunk: opts.prefillChunk,
      }),
    );
  }

  private sampling(opts: GenerateOptions & { topK?: number }) {
    opts = { ...opts, temperature: samplingTemperature(opts.temperature) };
    return {
      maxNewTokens: opts.maxNewTokens,
      temperature: opts.temperature,
      // the call's top_p, else the folder's (as transformers' generate() and vLLM take it); sampling only
      topP: opts.temperature ? sampledTopP(opts.topP, this.processors) : opts.topP,
      topK: opts.temperature ? (opts.topK ?? sampledTopK(this.processors)) : undefined,
      repetitionPenalty: this.processors.repetitionPenalty,
      seed: opts.temperature ? (opts.seed ?? 0) : undefined,
      eosTokenIds: this.eosTokenIds,
      padTokenId: this.padTokenId,
    };
  }

  private dropEos(out: number[][]): number[][] {
    const eos = new Set(this.eosTokenIds);
    return out.map((ids) => (ids.length > 0 && eos.has(ids[ids.length - 1]!) ? ids.slice(0, -1) : ids));
  }

  async generateTokens(promptIds: number[], opts: GenerateOptions): Promise<number[]> {
    return this.generateBatch([promptIds], opts)[0]!;
  }

  /** Decoded new text (special tokens skipped), cut before the first stop string. */
  private decodeNew(ids: number[], stop: readonly string[] | undefined): string {
    return cutAtStop(this.tok().decode(ids, { skipSpecialTokens: true }), stop);
  }

  /** The prompt is already chat-formatted (its special tokens are in the text), so none are added. */
  encodePrompt(prompt: string): number[] {
    const ids = this.tok().encode(prompt, { addSpecialTokens: false });
    if (ids.length === 0) throw new InputError("builtin backend: the prompt is empty");
    return ids;
  }

  async generateText(prompt: string, opts: GenerateOptions): Promise<string> {
    const ids = await this.generateBatchAsync([this.encodePrompt(prompt)], {
      ...opts,
      onToken: this.stopWatch(1, opts.stop),
    });
    return this.decodeNew(ids[0]!, opts.stop);
  }

  /**
   * An onToken hook that ends each of `rows` rows at its first stop string (text-stream.ts RowText, decoding as
   * decodeNew does); undefined without stop strings.
   */
  private stopWatch(rows: number, stop: readonly string[] | undefined): SamplingOptions["onToken"] {
    const stops = (stop ?? []).filter((s) => s !== "");
    if (stops.length === 0) return undefined;
    const texts = Array.from({ length: rows }, () => rowTextOf(this.tok(), stops));
    return (row, token) => texts[row]!.push(token);
  }

  /**
   * Chat-formatted prompt of a conversation, ready for the assistant's turn; `dateString`: the template variable
   * date_string a server's request may give (goodvibe serve), absent the tokenizer's own day.
   */
  chatPrompt(
    messages: readonly ChatMessage[],
    enableThinking = DEFAULT_ENABLE_THINKING,
    dateString?: string,
  ): string {
    return this.tok().applyChatTemplate(messages, {
      addGenerationPrompt: true,
      enableThinking,
      ...(dateString !== undefined ? { dateString } : {}),
    });
  }

  /**
   * Answers to several conversations: chat template with add_generation_prompt, batches of `batchSize`
   * through `generate`. With sampling, batch k is seeded with seed + (index of its first conversation), so
   * a run's samples depend only on the options and the batch layout, not on what ran before.
   */
  async generateChat(
    messagesList: readonly (readonly ChatMessage[])[],
    opts: ChatGenerateOptions,
  ): Promise<string[]> {
    const batchSize = opts.batchSize ?? DEFAULT_EVAL_BATCH;
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new InputError(`generation option batchSize must be a positive integer, got ${batchSize}`);
    const prompts = messagesList.map((m) =>
      this.encodePrompt(this.chatPrompt(m, opts.enableThinking ?? DEFAULT_ENABLE_THINKING)),
    );
    const answers: string[] = [];
    for (let start = 0; start < prompts.length; start += batchSize) {
      const batch = prompts.slice(start, start + batchSize);
      const ids = await this.generateBatchAsync(batch, {
        ...opts,
        seed: (opts.seed ?? 0) + start,
        onToken: this.stopWatch(batch.length, opts.stop),
      });
      for (const row of ids) answers.push(this.decodeNew(row, opts.stop));
    }
    return answers;
  }

  async close(): Promise<void> {
    // The model's tensors are freed by the garbage collector; nothing else is held.
  }
}
