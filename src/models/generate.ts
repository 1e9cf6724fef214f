/**
 * The built-in generation engine: left-padded batches, a KV cache, greedy or seeded temperature / top-p sampling.
 */
import { Tensor, manualSeed, multinomial, noGrad, tidy, keep } from "../tensor/index.js";
import type { DecoderModel } from "./decoder.js";
import { KVCache } from "./layers.js";
import { stopPoint } from "../util/stop.js";

export interface SamplingOptions {
  maxNewTokens: number;
  /** 0 or undefined: greedy (argmax, first index on ties). */
  temperature?: number;
  topP?: number;
  seed?: number;
  eosTokenIds?: number[];
  padTokenId?: number;
  /** Called with each step's float32 logits [B, V] (tests compare them with references). */
  onStepLogits?: (logits: Tensor) => void;
}

/** HF's TopPLogitsWarper: drop the tokens outside the smallest set whose probability reaches topP. */
function topPFilter(logits: Tensor, topP: number): Tensor {
  const [sorted, idx] = logits.sort(-1, false);
  const cum = sorted.softmax(-1).cumsum(-1);
  const removeSorted = cum.le(1 - topP);
  // always keep the most likely token (the last in ascending order)
  const V = logits.size(-1);
  const keepLast = Tensor.arange(0, V, 1, "int64")
    .eq(V - 1)
    .unsqueeze(0);
  const remove = removeSorted.logicalAnd(keepLast.logicalNot());
  const removeOrig = Tensor.zeros(remove.shape, "bool").scatter(-1, idx, remove);
  return logits.maskedFill(removeOrig, -Infinity);
}

export function pickNextTokens(logits: Tensor, opts: SamplingOptions): Tensor {
  const t = opts.temperature ?? 0;
  if (!t) return logits.argmax(-1);
  let scaled = logits.div(t);
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
  const cache = new KVCache(model.cfg.numLayers);
  let ids = keep(Tensor.fromArray(padded.flat(), [B, maxLen], "int64"));
  let mask = needMask ? keep(Tensor.fromArray(maskRows.flat(), [B, maxLen], "int64")) : null;
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const next = noGrad(() =>
        tidy(() => {
          const hidden = model.hidden(ids, { attentionMask: mask ?? undefined, cache });
          const last = model.logitsFrom(hidden.narrow(1, hidden.size(1) - 1, 1)).squeeze(1);
          opts.onStepLogits?.(last);
          return pickNextTokens(last, opts).toIntArray();
        }),
      );
      for (let b = 0; b < B; b++) {
        if (done[b]) continue;
        out[b].push(next[b]);
        if (eos.has(next[b])) done[b] = true;
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
