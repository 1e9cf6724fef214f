/**
 * The interfaces every generation engine implements: text in (the built-in libtorch engine, llama.cpp) and
 * conversations in (the built-in engine, servers that apply the chat template themselves).
 */
import type { ChatMessage } from "../../io/tokenizer.js";
import { allOrCancel } from "../../util/fan-out.js";

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 or undefined: greedy (argmax). */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Stop when the generated text contains one of these; the text is cut before it. */
  stop?: string[];
  /**
   * A server's request (HttpBackend) is not sent, nor retried, once this fires; one in flight runs to its end: the
   * other requests of a fan-out that failed for good (allOrCancel, util/fan-out.ts), whose answers are kept.
   */
  cancelQueued?: AbortSignal;
}

export interface GenerationBackend {
  readonly name: string;
  /** New token ids after the prompt (greedy when temperature is 0/undefined). */
  generateTokens(promptIds: number[], opts: GenerateOptions): Promise<number[]>;
  /** Generated text; the prompt is already chat-formatted. */
  generateText(prompt: string, opts: GenerateOptions): Promise<string>;
  close(): Promise<void>;
}

export interface ChatGenerateOptions extends GenerateOptions {
  /** Prompts per call of `generate` (default 8). */
  batchSize?: number;
  /**
   * Qwen3's thinking switch: passed to chat templates that read it, and to a server as chat_template_kwargs;
   * default off (io/chat-template.ts DEFAULT_ENABLE_THINKING), as in the SFT examples.
   */
  enableThinking?: boolean;
  /** Stop request (Ctrl-C), checked after every token: the call ends with InterruptedError. */
  signal?: AbortSignal;
  /**
   * Told of each answer (its index in the list) as soon as it is final, before the call returns: a caller keeps
   * the answers a call obtained even when the call then fails (a server that gives up on one of 16 requests).
   * Backends that answer a batch at once may tell nothing until the end.
   */
  onAnswer?: (index: number, answer: string) => void;
}

/** Anything that answers conversations: BuiltinBackend, LlamaCppBackend, a server via `serverChatBackend`. */
export interface ChatBackend {
  readonly name: string;
  /**
   * What else about this backend changes its answers, beyond `name` (a server's extra request body): laid into
   * every cached answer's key. Absent or empty where there is nothing, so keys made before it existed still match.
   */
  readonly keyFields?: Readonly<Record<string, unknown>>;
  /**
   * The top_p and top_k a sampled call with top_p `callTopP` applies, where the engine fills them from the model
   * folder (the built-in engine: generation_config.json): laid into a sampled answer's key, so that answers sampled
   * under other values are not reused. Absent: the call's top_p is all (a server applies its own defaults).
   */
  sampledKeyFields?(callTopP: number | undefined): Readonly<{ topP: number; topK: number }>;
  /**
   * Conversations it answers at once to best effect, when more than a caller's batch (a server fleet: its requests
   * in flight): the caller gives it this many at a time (evaluateSafety: whole batches), so that a bound of 16
   * requests in flight is not held to a batch of 8.
   */
  readonly inFlight?: number;
  generateChat(
    messagesList: readonly (readonly ChatMessage[])[],
    opts: ChatGenerateOptions,
  ): Promise<string[]>;
}

/**
 * A server that applies the chat template itself (OpenAI-compatible `/v1/chat/completions`: HttpBackend over a
 * fleet of vLLM, llama-server, Ollama or `goodvibe serve`) as a ChatBackend: every conversation is one request,
 * sent all at once (the backend bounds the requests in flight and spreads them over its servers).
 */
export function serverChatBackend(server: {
  readonly name: string;
  /** HttpBackend: its extraBody, when one is given (ChatBackend.keyFields) */
  readonly keyFields?: Readonly<Record<string, unknown>>;
  /** HttpBackend: its bound on requests in flight (ChatBackend.inFlight) */
  readonly concurrency?: number;
  /** opts.enableThinking: sent as the server takes it (HttpBackend: chat_template_kwargs) */
  chat(messages: ChatMessage[], opts: GenerateOptions & { enableThinking?: boolean }): Promise<string>;
}): ChatBackend {
  return {
    name: server.name,
    ...(server.keyFields ? { keyFields: server.keyFields } : {}),
    ...(server.concurrency !== undefined ? { inFlight: server.concurrency } : {}),
    // One request failing for good cancels those not yet sent or waiting to retry (allOrCancel: before 2026-12-03
    // they were all sent, each retried, after the failure), and the call fails once those in flight have ended (a
    // stop request ends them at once): each answer obtained is told (onAnswer) as it comes, so none in flight is lost.
    generateChat: (messagesList, opts) =>
      allOrCancel(messagesList, (m, i, cancelQueued) =>
        server.chat([...m], { ...opts, seed: (opts.seed ?? 0) + i, cancelQueued }).then((answer) => {
          opts.onAnswer?.(i, answer);
          return answer;
        }),
      ),
  };
}
