/**
 * What the utility benchmarks need from a model. The lead's libtorch engine and the HTTP backend
 * (src/eval/generate/http.ts) both implement it.
 */
import { InputError } from "../../errors.js";
import { allOrCancel } from "../../util/fan-out.js";

export interface LoglikelihoodRequest {
  context: string;
  continuation: string;
  /** The benchmark item it scores, for errors ("ARC Mercury_7175875", "MMLU anatomy #12"). */
  item?: string;
}

export interface LoglikelihoodResult {
  /** Sum of log p(token) over the continuation's tokens, given the context. */
  logprob: number;
  /** True when every continuation token is the argmax at its position. */
  isGreedy: boolean;
}

/**
 * A log-likelihood request's tokens as lm-evaluation-harness makes them (HFLM._encode_pair): the context's
 * trailing whitespace moves to the continuation, the whole text is tokenised once, and the continuation is what
 * follows the context's own tokens in it. Tokenising the continuation alone differs for a tokenizer that puts a
 * space before any text it is given (Llama 2 / CodeLlama: " Paris" alone is "▁", "▁Paris", after "Answer:" it is
 * "▁Paris"), which would add a token to every choice; for byte-level BPE (Qwen, Llama 3, Gemma) both are the same.
 */
export function encodeLoglikelihoodPair(
  tok: { encode(text: string, opts?: { addSpecialTokens?: boolean }): number[] },
  context: string,
  continuation: string,
): { context: number[]; continuation: number[] } {
  const kept = context.trimEnd();
  const cont = context.slice(kept.length) + continuation;
  const whole = tok.encode(kept + cont, { addSpecialTokens: true });
  const ctx = tok.encode(kept, { addSpecialTokens: true });
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/**
 * The tokens a log-likelihood request is scored on, cut as lm-evaluation-harness's HFLM._loglikelihood_tokens cuts
 * them to the model's window: `inp = (context_enc + continuation_enc)[-(max_length + 1):][:-1]`, and the
 * continuation scored by the logits at its last len(continuation) positions (`logits[inplen - contlen:inplen]`). A
 * pair longer than the window loses context tokens from the left; max_length is the model's
 * max_position_embeddings (HFLM.max_length's first choice). `input`: the ids to run; `from`: the first position whose
 * logits score the continuation. A continuation alone longer than the window cannot be scored (the harness would
 * score a part of it without saying so): refused.
 */
export function loglikelihoodWindow(
  context: readonly number[],
  continuation: readonly number[],
  maxLength: number,
): { input: number[]; from: number } {
  if (continuation.length > maxLength)
    throw new InputError(
      `a log-likelihood continuation of ${continuation.length} tokens does not fit the model's window of ${maxLength}`,
    );
  const all = [...context, ...continuation];
  const input = all.slice(-(maxLength + 1)).slice(0, -1);
  return { input, from: input.length - continuation.length };
}

export interface UtilityModel {
  /** `onResult`, where given, is called as each request's result is there (in any order): a benchmark's progress. */
  loglikelihood(
    reqs: LoglikelihoodRequest[],
    opts?: { onResult?: () => void },
  ): Promise<LoglikelihoodResult[]>;
  /**
   * Greedy decoding; the returned text is cut before the first stop sequence. `onAnswer(i, text)`, where given, is
   * told each prompt's text (as returned) as soon as it is there, so that a caller keeps it even when a later prompt
   * of the call fails (eval/utility/answers.ts).
   */
  generate(
    prompts: string[],
    opts: { maxNewTokens: number; stop: string[]; onAnswer?: (index: number, text: string) => void },
  ): Promise<string[]>;
}

/**
 * A log-likelihood benchmark's progress in requests over its calls: told at once (0 of `total`: ProgressMeter's clock
 * starts there), as each result comes (the call's `onResult`), and after each call for a model that does not tell
 * its results one by one (the count then jumps to the call's end).
 */
export function requestProgress(
  total: number,
  onProgress?: (done: number, total: number) => void,
): { callOpts: { onResult?: () => void }; called(requests: number): void } {
  let done = 0;
  let asked = 0;
  onProgress?.(0, total);
  return {
    callOpts: onProgress ? { onResult: () => onProgress(++done, total) } : {},
    called(requests) {
      asked += requests;
      if (onProgress && done < asked) onProgress((done = asked), total);
    },
  };
}

/** Result of one benchmark, in the shape every task returns. */
export interface TaskResult<P = unknown> {
  task: string;
  /** Main metrics, e.g. {acc, acc_norm} or {exact_match_strict, exact_match_flexible}. */
  metrics: Record<string, number>;
  n: number;
  /** Standard error of each metric: sample std (n-1) / sqrt(n), as lm-evaluation-harness reports. */
  stderr: Record<string, number>;
  perItem: P[];
  /** Extra breakdowns (MMLU per subject). */
  groups?: Record<string, { metrics: Record<string, number>; n: number; stderr: Record<string, number> }>;
}

/** Mean of 0/1 (or real) scores. */
export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Harness `mean_stderr`: sample standard deviation (ddof=1) divided by sqrt(n). */
export function meanStderr(xs: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const m = mean(xs);
  let ss = 0;
  for (const x of xs) ss += (x - m) * (x - m);
  return Math.sqrt(ss / (n - 1)) / Math.sqrt(n);
}

/**
 * Cut a generation before the earliest stop sequence (servers and engines may return the raw tail). The one home of
 * the rule: every engine (built-in, llama.cpp, HTTP, serve) and the utility benchmarks cut with it.
 */
export function cutAtStop(text: string, stop: readonly string[] | undefined): string {
  let end = text.length;
  for (const s of stop ?? []) {
    if (s === "") continue;
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

/** Summarise per-metric score lists into metrics + stderr. */
export function summarise(scores: Record<string, number[]>): {
  metrics: Record<string, number>;
  stderr: Record<string, number>;
} {
  const metrics: Record<string, number> = {};
  const stderr: Record<string, number> = {};
  for (const [k, xs] of Object.entries(scores)) {
    metrics[k] = mean(xs);
    stderr[k] = meanStderr(xs);
  }
  return { metrics, stderr };
}

/**
 * Something that generates one text at a time (the GenerationBackend shape of src/eval/generate),
 * optionally with log-likelihood support. `utilityModelFrom` adapts it to UtilityModel.
 */
export interface TextBackendLike {
  generateText(
    prompt: string,
    opts: { maxNewTokens: number; temperature?: number; stop?: string[]; cancelQueued?: AbortSignal },
  ): Promise<string>;
  loglikelihood?(
    reqs: LoglikelihoodRequest[],
    opts?: { onResult?: () => void },
  ): Promise<LoglikelihoodResult[]>;
}

/**
 * Wrap a one-at-a-time text backend as a UtilityModel (requests run concurrently; the backend bounds them). A call
 * that fails waits for every request of the call to end first (a stop request ends them all at once, http.ts), as
 * serverChatBackend (eval/generate/backend.ts) does: each answer is told (onAnswer, which keeps it: answers.ts) before
 * the call settles, never after, when its caller has closed the cache or the process has exited (before 2026-12-02
 * one request failing for good failed the call at once, and the answers of the others in flight were written after
 * it, or lost). The requests not yet sent, or waiting to retry, are not sent (allOrCancel's cancelQueued: before
 * 2026-12-03 every prompt of the call was still asked, and retried, after the failure).
 */
export function utilityModelFrom(backend: TextBackendLike): UtilityModel {
  const model: UtilityModel = {
    async loglikelihood(reqs, opts) {
      if (!backend.loglikelihood)
        throw new Error("this backend cannot score log-likelihoods; use a model engine or a vLLM server");
      return backend.loglikelihood(reqs, opts);
    },
    generate: (prompts, opts) =>
      allOrCancel(prompts, async (p, i, cancelQueued) => {
        const o = await backend.generateText(p, {
          maxNewTokens: opts.maxNewTokens,
          temperature: 0,
          stop: opts.stop,
          cancelQueued,
        });
        const text = cutAtStop(o, opts.stop);
        opts.onAnswer?.(i, text);
        return text;
      }),
  };
  return model;
}
