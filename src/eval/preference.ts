/**
 * Secure preference: does the model find the secure answer of a held-out pair more likely than the insecure one?
 * For each pair, the mean per-token negative log-likelihood of each answer given the chat-templated question
 * (answer tokens only, exactly the tokens buildSftExample labels, end-of-turn included); the pair counts as
 * "preferred" when the secure answer's loss is strictly lower.
 */
import { DEFAULT_EVAL_BATCH } from "./config.js";
import { InputError } from "../errors.js";
import type { SecurityPair } from "../data/pairs.js";
import {
  IGNORE_INDEX,
  buildSftExample,
  sftMessages,
  type ChatTokenizer,
  type SftExample,
} from "../data/prompts.js";
import type { DecoderModel } from "../models/decoder.js";
import { Tensor, noGrad, tidy } from "../tensor/index.js";
import { clusterBootstrap, pairedBootstrap, wilsonInterval, type Interval } from "./metrics.js";
import { stopPoint } from "../util/stop.js";
import { sha256 } from "../io/hash.js";
import { ScoreCache } from "./score-cache.js";

export interface PairLoss {
  id: string;
  lang: string;
  cwe?: string;
  chosenLoss: number;
  rejectedLoss: number;
}

export interface PreferenceSummary {
  n: number;
  /** Share of pairs whose secure answer has the lower loss, with its Wilson interval. */
  rate: Interval;
  /**
   * Mean of (rejected − chosen) loss, with a seeded percentile-bootstrap interval; > 0 favours secure code. The
   * bootstrap resamples pairs, or whole tasks where the pairs name their task (see `lossGapByTask`).
   */
  meanLossGap: Interval;
  /**
   * Present where meanLossGap's interval resampled whole tasks (the pairs name their task, and there are at least
   * two): the number of tasks. Absent, the bootstrap is over the pairs.
   */
  lossGapByTask?: { tasks: number };
}

export interface PreferenceResult extends PreferenceSummary {
  perLanguage: Record<string, PreferenceSummary>;
  perPair: PairLoss[];
}

export interface PreferenceOptions {
  /** Sequences per forward pass (default 8; a pair gives two). */
  batchSize?: number;
  /** Tokens per sequence; longer ones are cut (their answer loss is over the tokens that fit). Default 2048. */
  maxLength?: number;
  /** Qwen3's thinking switch in the rendered pairs (default off, io/chat-template.ts); the cache keys the tokens */
  enableThinking?: boolean;
  /** Bootstrap resamples (default 10,000) and seed (default 0). */
  iterations?: number;
  seed?: number;
  /** stop request (Ctrl-C), checked between batches: the evaluation ends with InterruptedError */
  signal?: AbortSignal;
  /** answers scored so far of all (two per pair), after each batch */
  onProgress?: (done: number, total: number) => void;
  /**
   * Keep each scored batch in this file (one per model: the caller names it by the model's weights) and take the
   * batches already there, so a stopped or killed evaluation resumes where it was (eval/score-cache.ts).
   */
  cacheFile?: string;
}

/**
 * Mean per-token NLL of the labelled tokens of each example. Examples are right-padded: under causal attention a
 * real token never sees the pads after it, and positions count from 0 either way, so no attention mask is needed.
 */
export async function answerLosses(
  model: DecoderModel,
  examples: readonly SftExample[],
  batchSize = DEFAULT_EVAL_BATCH,
  signal?: AbortSignal,
  onProgress?: (done: number, total: number) => void,
  cache?: ScoreCache,
): Promise<number[]> {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new InputError(`preference option batchSize must be a positive integer, got ${batchSize}`);
  const out: number[] = [];
  // starts the progress clock before the first batch is computed (a stage of one batch showed "elapsed 0.0 s")
  let reported = false;
  const report = () => {
    reported = true;
    onProgress?.(out.length, examples.length);
  };
  for (let start = 0; start < examples.length; start += batchSize) {
    await stopPoint(
      signal,
      `secure preference stopped after ${start} of ${examples.length} answers` +
        (cache ? ` (the scored ones are kept in ${cache.file})` : " (none kept: no cache folder)"),
    );
    const batch = examples.slice(start, start + batchSize);
    // a batch is keyed by what is scored: the same batch of a rerun is taken from the cache, bit for bit
    const key = cache ? sha256(JSON.stringify(batch.map((e) => [e.inputIds, e.labels]))) : "";
    const kept = cache?.get(key);
    if (kept && kept.length === batch.length) {
      out.push(...kept);
      report();
      continue;
    }
    if (!reported) report();
    const B = batch.length;
    const T = Math.max(...batch.map((e) => e.inputIds.length));
    const ids: number[] = [];
    // (row, position) of every scored token: logits at t - 1 predict the label at t
    const rows: number[] = [];
    const positions: number[] = [];
    const targets: number[] = [];
    batch.forEach((e, b) => {
      ids.push(...e.inputIds, ...new Array<number>(T - e.inputIds.length).fill(e.inputIds[0] ?? 0));
      for (let t = 1; t < e.labels.length; t++) {
        if (e.labels[t] === IGNORE_INDEX) continue;
        rows.push(b);
        positions.push(b * T + t - 1);
        targets.push(e.labels[t]!);
      }
    });
    const count = new Float64Array(B);
    for (const b of rows) count[b]++;
    count.forEach((c, b) => {
      if (c === 0) throw new InputError(`preference: example ${start + b} has no answer tokens to score`);
    });
    const nll = tidy(() =>
      noGrad(() => {
        const hidden = model.hidden(Tensor.fromArray(ids, [B, T], "int64"));
        const h = hidden
          .reshape([B * T, hidden.size(-1)])
          .indexSelect(0, Tensor.fromArray(positions, [positions.length], "int64", model.device));
        const logp = model.logitsFrom(h).logSoftmax(-1);
        const tgt = Tensor.fromArray(targets, [targets.length, 1], "int64", model.device);
        return logp.gather(1, tgt).squeeze(1).neg().toFloat64Array();
      }),
    );
    const sum = new Float64Array(B);
    rows.forEach((b, i) => {
      sum[b] += nll[i]!;
    });
    const losses = Array.from({ length: B }, (_, b) => sum[b]! / count[b]!);
    out.push(...losses);
    cache?.put(key, losses);
    report();
  }
  return out;
}

/**
 * `groups`: each pair's task where the pairs name one (language:task, as the report's outcomes group them), else
 * undefined. Several generated prompts of one task are not independent, so the gap's bootstrap then resamples whole
 * tasks (same resamples and seed as over pairs); with fewer than two tasks every resample would be the one task and
 * the interval a point, so it stays over the pairs.
 */
function summarise(
  losses: readonly PairLoss[],
  opts: PreferenceOptions,
  groups?: readonly string[],
): PreferenceSummary {
  const n = losses.length;
  const preferred = losses.filter((p) => p.chosenLoss < p.rejectedLoss).length;
  const w = wilsonInterval(preferred, n);
  const gaps = losses.map((p) => p.rejectedLoss - p.chosenLoss);
  const boot = { iterations: opts.iterations, seed: opts.seed ?? 0 };
  const tasks = groups ? new Set(groups).size : 0;
  const gap = tasks >= 2 ? clusterBootstrap(gaps, groups!, boot) : pairedBootstrap(gaps, boot);
  return {
    n,
    rate: w,
    meanLossGap: { value: gap.mean, low: gap.low, high: gap.high },
    ...(tasks >= 2 ? { lossGapByTask: { tasks } } : {}),
  };
}

/** Secure preference of `model` on `pairs` (held-out pairs: a training pair would measure memorisation). */
export async function securePreference(
  model: DecoderModel,
  tok: ChatTokenizer,
  pairs: readonly SecurityPair[],
  opts: PreferenceOptions = {},
): Promise<PreferenceResult> {
  if (pairs.length === 0) throw new InputError("secure preference: no pairs to evaluate on");
  const maxLength = opts.maxLength ?? 2048;
  const examples: SftExample[] = [];
  for (const p of pairs) {
    for (const answer of [p.chosen, p.rejected]) {
      try {
        examples.push(
          buildSftExample(tok, sftMessages({ question: p.question, chosen: answer }), {
            maxLength,
            enableThinking: opts.enableThinking,
          }),
        );
      } catch (e) {
        if (e instanceof InputError)
          throw new InputError(`secure preference, pair ${p.id}: ${e.message}`, { cause: e });
        throw e;
      }
    }
  }
  const cache = opts.cacheFile ? new ScoreCache(opts.cacheFile) : undefined;
  let losses: number[];
  try {
    losses = await answerLosses(
      model,
      examples,
      opts.batchSize ?? DEFAULT_EVAL_BATCH,
      opts.signal,
      opts.onProgress,
      cache,
    );
  } finally {
    cache?.close();
  }
  const perPair: PairLoss[] = pairs.map((p, i) => ({
    id: p.id,
    lang: p.lang,
    ...(p.cwe !== undefined ? { cwe: p.cwe } : {}),
    chosenLoss: losses[2 * i]!,
    rejectedLoss: losses[2 * i + 1]!,
  }));
  // the pairs' tasks, named as recipes/outcomes.ts names the outcomes' groups (a pair without one is its own)
  const groups = pairs.some((p) => p.task) ? pairs.map((p) => `${p.lang}:${p.task ?? p.id}`) : undefined;
  const perLanguage: Record<string, PreferenceSummary> = {};
  for (const lang of [...new Set(perPair.map((p) => p.lang))].sort()) {
    const keep = perPair.map((p) => p.lang === lang);
    perLanguage[lang] = summarise(
      perPair.filter((_, i) => keep[i]),
      opts,
      groups?.filter((_, i) => keep[i]),
    );
  }
  return { ...summarise(perPair, opts, groups), perLanguage, perPair };
}
