/**
 * The built-in generation engine: left-padded batches, a KV cache, greedy or seeded temperature / top-k / top-p
 * sampling, and transformers' repetition penalty.
 */
import { Tensor, manualSeed, multinomial, noGrad, tidy, keep } from "../tensor/index.js";
import type { DecoderModel } from "./decoder.js";
import type { Device } from "../tensor/index.js";
import { KVCache } from "./layers.js";
import { stopPoint } from "../util/stop.js";
import { samplingTemperature } from "./logits-row.js";

export interface SamplingOptions {
  maxNewTokens: number;
  /** 0, undefined or below SAMPLING_EPS (logits-row.ts): greedy (argmax, first index on ties). */
  temperature?: number;
  topP?: number;
  /** Sampling only: keep the topK most likely tokens (TopKLogitsWarper); 0 or undefined: all. */
  topK?: number;
  /**
   * transformers' RepetitionPenaltyLogitsProcessor, greedy and sampled alike: every token already in the row (its
   * prompt, left padding excluded, and what it generated) has its logit divided by this when positive, multiplied
   * when negative. 1 or undefined: none.
   */
  repetitionPenalty?: number;
  seed?: number;
  eosTokenIds?: number[];
  padTokenId?: number;
  /** Called with each step's float32 logits [B, V] (tests compare them with references). */
  onStepLogits?: (logits: Tensor) => void;
  /**
   * Told of each token a row gets that is not an end-of-sequence token, in order; returning true ends that row
   * there (its other rows go on), as an end-of-sequence token would. A server stops a row at its stop string this
   * way, instead of generating to max_tokens and cutting after, and streams its text.
   */
  onToken?: (row: number, token: number) => boolean | void;
  /**
   * Prompt tokens per forward pass: a prompt longer than this is run into the KV cache a chunk at a time, with a
   * step point (`generateAsync`: a turn of the event loop) after each, before the first token is chosen, so that a
   * server answers other clients while a long prompt prefills (vLLM's chunked prefill). The logits can differ from
   * one pass's in the last bits (other matrix shapes). Undefined: the whole prompt in one pass.
   */
  prefillChunk?: number;
}

/** HF's TopPLogitsWarper: drop the tokens outside the smallest set whose probability reaches topP. */
function topPFilter(logits: Tensor, topP: number): Tensor {
  const [sorted, idx] = logits.sort(-1, false);
  const cum = sorted.softmax(-1).cumsum(-1);
  const removeSorted = cum.le(1 - topP);
  // always keep the most likely token (the last in ascending order)
  const V = logits.size(-1);
  // made on the logits' device (a CUDA model's): a host tensor here fails the first sampled token there
  const device = logits.device as Device;
  const keepLast = Tensor.arange(0, V, 1, "int64", device)
    .eq(V - 1)
    .unsqueeze(0);
  const remove = removeSorted.logicalAnd(keepLast.logicalNot());
  const removeOrig = Tensor.zeros(remove.shape, "bool", device).scatter(-1, idx, remove);
  return logits.maskedFill(removeOrig, -Infinity);
}

/**
 * transformers' RepetitionPenaltyLogitsProcessor (generation/logits_process.py, `__call__`: `score =
 * torch.gather(scores, 1, input_ids); score = torch.where(score < 0, score * self.penalty, score / self.penalty);
 * scores.scatter_(1, input_ids, score)`): each token of row b's `seen[b]` is penalised once, however often it
 * occurs. `seen[b]` holds the row's own tokens only: transformers gathers over its padded input_ids, so a batch
 * there also penalises the pad id in padded rows (an answer that depends on its batch-mates); one prompt at a time
 * it is what this does.
 */
export function applyRepetitionPenalty(logits: Tensor, seen: readonly number[][], penalty: number): Tensor {
  const width = Math.max(...seen.map((s) => s.length));
  // rows padded with their own first token: a repeated index writes the same value again
  const idx = Tensor.fromArray(
    seen.flatMap((s) => [...s, ...new Array<number>(width - s.length).fill(s[0]!)]),
    [seen.length, width],
    "int64",
    logits.device as Device, // on the logits' device (a CUDA model's): gather and scatter take no host index
  );
  const score = logits.gather(1, idx);
  return logits.scatter(1, idx, Tensor.where(score.lt(0), score.mul(penalty), score.div(penalty)));
}

/**
 * transformers' TopKLogitsWarper (generation/logits_process.py): the tokens below the k-th largest score are
 * removed (ties with it kept).
 */
function topKFilter(logits: Tensor, k: number): Tensor {
  const keepK = Math.min(k, logits.size(-1));
  const [values] = logits.topk(keepK, -1);
  return logits.maskedFill(logits.lt(values.narrow(-1, keepK - 1, 1)), -Infinity);
}

/**
 * The next token of each row, with the processors in transformers' order (generation/utils.py
 * `_get_logits_processor`; models/logits-row.ts describes the chain on one row, as the llama.cpp backend applies
 * it): the repetition penalty (a processor, greedy too), then only when sampling the warpers
 * TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper; greedy is the argmax of the processed scores.
 * `seen`: each row's tokens so far (needed with a repetition penalty).
 */
export function pickNextTokens(logits: Tensor, opts: SamplingOptions, seen?: readonly number[][]): Tensor {
  const p = opts.repetitionPenalty;
  if (p !== undefined && p !== 1) {
    if (!seen) throw new Error("pickNextTokens: a repetition penalty needs each row's tokens");
    logits = applyRepetitionPenalty(logits, seen, p);
  }
  const t = samplingTemperature(opts.temperature);
  if (!t) return logits.argmax(-1);
  let scaled = logits.div(t);
  if (opts.topK) scaled = topKFilter(scaled, opts.topK);
  if (opts.topP !== undefined && opts.topP < 1) scaled = topPFilter(scaled, opts.topP);
  return multinomial(scaled.softmax(-1), 1, false).squeeze(-1);
}

/**
 * Generate continuations of a batch of prompts (token ids, any lengths). Returns only the new tokens of each
 * prompt, cut after its first end-of-sequence token.
 */
export function generate(model: DecoderModel, prompts: number[][], opts: SamplingOptions): number[][] {
  const steps = generateSteps(model, prompts, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * `generate` with a stop point after every token (util/stop.ts): a stop request ends it within one decoding step
 * with InterruptedError (the batch is dropped; callers cache whole batches).
 */
export async function generateAsync(
  model: DecoderModel,
  prompts: number[][],
  opts: SamplingOptions & { signal?: AbortSignal },
): Promise<number[][]> {
  const steps = generateSteps(model, prompts, opts);
  try {
    for (let token = 0; ; token++) {
      const r = steps.next();
      if (r.done) return r.value;
      await stopPoint(opts.signal, `generation stopped at token ${token + 1} of a batch`);
    }
  } finally {
    steps.return([]); // frees the KV cache when stopped
  }
}

/** The decoding loop, one yield per generated token; returns the new tokens of each prompt. */
function* generateSteps(
  model: DecoderModel,
  prompts: number[][],
  opts: SamplingOptions,
): Generator<void, number[][], void> {
  if (prompts.length === 0) return [];
  if (prompts.some((p) => p.length === 0)) throw new Error("generate: every prompt needs at least one token");
  if (opts.seed !== undefined) manualSeed(opts.seed);
  const B = prompts.length;
  const maxLen = Math.max(...prompts.map((p) => p.length));
  const pad = opts.padTokenId ?? 0;
  const eos = new Set(opts.eosTokenIds ?? []);
  const padded = prompts.map((p) => [...new Array(maxLen - p.length).fill(pad), ...p]);
  const maskRows = prompts.map((p) => [
    ...new Array(maxLen - p.length).fill(0),
    ...new Array(p.length).fill(1),
  ]);
  const needMask = prompts.some((p) => p.length !== maxLen);
  const out: number[][] = prompts.map(() => []);
  const done = new Array(B).fill(false);
  // each row's distinct tokens (prompt without its left padding, then what it generates): the repetition penalty's
  const penalised = opts.repetitionPenalty !== undefined && opts.repetitionPenalty !== 1;
  const seenSets = penalised ? prompts.map((p) => new Set(p)) : null;
  // the same tokens as lists, grown as new ones arrive: handed to each step as they are (no copy per token)
  const seenLists = seenSets ? seenSets.map((s) => [...s]) : null;
  const cache = new KVCache(model.cfg.numLayers);
  let ids = keep(Tensor.fromArray(padded.flat(), [B, maxLen], "int64"));
  let mask = needMask ? keep(Tensor.fromArray(maskRows.flat(), [B, maxLen], "int64")) : null;
  try {
    const chunk = opts.prefillChunk;
    if (chunk !== undefined && (!Number.isInteger(chunk) || chunk < 1))
      throw new Error(`generate: prefillChunk must be a positive integer, got ${chunk}`);
    if (chunk !== undefined && maxLen > chunk && opts.maxNewTokens > 0) {
      // all but the last chunk go into the cache; the first step below runs the rest and picks the first token
      let start = 0;
      for (; maxLen - start > chunk; start += chunk) {
        const from = start;
        noGrad(() =>
          tidy(() => {
            model.hidden(ids.narrow(1, from, chunk), {
              attentionMask: mask ? mask.narrow(1, 0, from + chunk) : undefined,
              cache,
            });
          }),
        );
        yield;
      }
      const rest = keep(noGrad(() => ids.narrow(1, start, maxLen - start).contiguous()));
      ids.dispose();
      ids = rest;
    }
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const next = noGrad(() =>
        tidy(() => {
          const hidden = model.hidden(ids, { attentionMask: mask ?? undefined, cache });
          const last = model.logitsFrom(hidden.narrow(1, hidden.size(1) - 1, 1)).squeeze(1);
          opts.onStepLogits?.(last);
          return pickNextTokens(last, opts, seenLists ?? undefined).toIntArray();
        }),
      );
      for (let b = 0; b < B; b++) {
        if (done[b]) continue;
        out[b].push(next[b]);
        if (seenSets && !seenSets[b]!.has(next[b])) {
          seenSets[b]!.add(next[b]);
          seenLists![b]!.push(next[b]);
        }
        if (eos.has(next[b]) || opts.onToken?.(b, next[b]!) === true) done[b] = true;
      }
      if (done.every((d) => d)) break;
      ids.dispose();
      ids = keep(
        Tensor.fromArray(
          next.map((t, b) => (done[b] ? pad : t)),
          [B, 1],
          "int64",
        ),
      );
      if (mask) {
        const m = mask;
        mask = noGrad(() => keep(Tensor.cat([m, Tensor.ones([B, 1], "int64")], 1)));
        m.dispose();
      }
      yield;
    }
  } finally {
    ids.dispose();
    mask?.dispose();
    cache.dispose();
  }
  return out;
}
