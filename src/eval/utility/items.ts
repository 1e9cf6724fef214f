/**
 * A benchmark's per-item scores, kept beside its headline figure so that two evaluations of the same items (a
 * fine-tuned model and its base) can be compared item by item: the paired interval of model − base, which is
 * usually much narrower than the unpaired one from both standard errors, since most items are answered alike.
 *
 * Compact on purpose (a 216-cell experiment keeps one per cell and benchmark): 0/1 scores (ARC, GSM8K, MMLU) as a
 * bitset, item i in bit i % 8 of byte ⌊i / 8⌋, base64 (MMLU's 14,042 items: 2,344 characters); real scores
 * (HumanEval's pass@k; the held-out code loss per held-out pair; the --code real-code loss per document, each its
 * linearised share of the token-weighted mean: eval/utility/code-loss.ts) as float64 little-endian, base64. `items` is a
 * hash of the items scored, in order: two sides are paired only when both hashes and counts agree, never on sets
 * that merely have the same size.
 *
 * An item can be a group of the units a figure counts in its n (`unitsPerItem`): the held-out code loss is a mean
 * over answers, two per held-out pair (n = 2·pairs), but its paired unit is the pair, whose score is the mean of
 * its two answers' losses; the pairs are what was sampled, and a pair's two answers share its question, so they
 * are not independent items. Every pair has both answers, so the mean of the pair scores is the figure's value.
 */
import { canonicalJson, sha256 } from "../../io/hash.js";
import { Z95, newcombeDifference, newcombePairedDifference, proportionSuccesses } from "../metrics.js";

export interface ItemScores {
  /** hash of the items scored, in order (itemsHash) */
  items: string;
  /** 0/1 scores, a base64 bitset (one of bits, f64) */
  bits?: string;
  /** real scores, base64 of float64 little-endian */
  f64?: string;
  /**
   * how many of the figure's n units each score stands for (default 1): the held-out code loss keeps one score
   * per held-out pair, the mean of its two answers' losses, against an n that counts answers (2)
   */
  unitsPerItem?: number;
}

/** The hash that names a list of benchmark items (their content, in order: question, choices, answer, id). */
export function itemsHash(items: readonly unknown[]): string {
  return sha256(canonicalJson(items)).slice(0, 32);
}

/**
 * Encodes scores: a bitset when every score is 0 or 1, float64 otherwise; `unitsPerItem` (> 1) when each score
 * stands for that many of the figure's n units (the held-out code loss: a pair's two answers).
 */
export function encodeScores(items: string, scores: readonly number[], unitsPerItem = 1): ItemScores {
  if (!Number.isSafeInteger(unitsPerItem) || unitsPerItem < 1)
    throw new RangeError(`encodeScores: unitsPerItem must be a whole number >= 1, got ${unitsPerItem}`);
  // a mean of several units is a real score: float64 even where it happens to be 0 or 1
  if (unitsPerItem === 1 && scores.every((s) => s === 0 || s === 1)) {
    const buf = Buffer.alloc(Math.ceil(scores.length / 8));
    scores.forEach((s, i) => {
      if (s === 1) buf[i >> 3]! |= 1 << (i & 7);
    });
    return { items, bits: buf.toString("base64") };
  }
  const buf = Buffer.alloc(8 * scores.length);
  scores.forEach((s, i) => buf.writeDoubleLE(s, 8 * i));
  return { items, f64: buf.toString("base64"), ...(unitsPerItem > 1 ? { unitsPerItem } : {}) };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The scores of a figure of n units (n / unitsPerItem of them), or a reason they cannot be read: not exactly one of
 * bits/f64, not base64, a unitsPerItem that is not a whole number >= 1 or does not divide n, bits with
 * unitsPerItem, a length that is not the count's, set bits past the last item, a score that is not finite.
 */
export function decodeScores(s: ItemScores, n: number): number[] | string {
  const text = s.bits ?? s.f64;
  if ((s.bits === undefined) === (s.f64 === undefined)) return "needs exactly one of bits and f64";
  if (typeof text !== "string" || text.length % 4 !== 0 || !BASE64.test(text)) return "is not base64";
  const per = s.unitsPerItem ?? 1;
  if (!Number.isSafeInteger(per) || per < 1) return `has unitsPerItem ${per}, not a whole number >= 1`;
  if (n % per !== 0) return `has unitsPerItem ${per}, which does not divide n = ${n}`;
  if (per > 1 && s.bits !== undefined) return "has unitsPerItem with bits (a mean of several units is f64)";
  const count = n / per;
  const buf = Buffer.from(text, "base64");
  if (s.bits !== undefined) {
    if (buf.length !== Math.ceil(n / 8)) return `has ${buf.length} bytes of bits for n = ${n} items`;
    if (n % 8 !== 0 && buf.length > 0 && buf[buf.length - 1]! >> (n % 8) !== 0)
      return `has bits set past its n = ${n} items`;
    return Array.from({ length: n }, (_, i) => (buf[i >> 3]! >> (i & 7)) & 1);
  }
  if (buf.length !== 8 * count)
    return `has ${buf.length / 8} float64 scores for ${per > 1 ? `n = ${n} units, ${per} per item (${count} items)` : `n = ${n} items`}`;
  const out = Array.from({ length: count }, (_, i) => buf.readDoubleLE(8 * i));
  return out.every(Number.isFinite) ? out : "has a score that is not finite";
}

/** A headline figure with optional per-item scores (eval/utility/cache.ts UtilityFigure, report/schema.ts). */
interface Scored {
  metric: string;
  value: number;
  n: number;
  perItem?: ItemScores;
}

/**
 * Why a figure's per-item scores do not back it, or undefined when they do: they decode to n scores whose mean is
 * the figure's value (to 1e-9; a float64 mean is exact to far better).
 */
export function perItemProblem(f: Scored): string | undefined {
  if (!f.perItem) return undefined;
  const xs = decodeScores(f.perItem, f.n);
  if (typeof xs === "string") return `perItem ${xs}`;
  if (xs.length === 0) return undefined;
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.abs(m - f.value) <= 1e-9 * Math.max(1, Math.abs(f.value))
    ? undefined
    : `perItem's mean ${m} is not the value ${f.value}`;
}

export interface PairedInterval {
  /** model − base, the difference of the two values (= the mean of the per-item differences) */
  diff: number;
  low: number;
  high: number;
  /** items paired (the held-out code loss: held-out pairs, half its figure's n of answers) */
  n: number;
  /**
   * "newcombe": every score on both sides is 0 or 1 (ARC, GSM8K, MMLU, greedy pass@1), Newcombe's square-and-add
   * interval of the paired 2×2 table (eval/metrics.ts newcombePairedDifference); "normal": real scores (pass@k
   * from several samples, the held-out code loss per pair), mean per-item difference ± Z95·sd/√n
   */
  method: "newcombe" | "normal";
  /**
   * standard error of the mean per-item difference, sd (n − 1) / √n: the normal interval's; with "newcombe" it is
   * reported only (it is 0 when no item differs, which is why that interval is not built from it)
   */
  se: number;
}

/**
 * model − base over the items both scored, with its 95% interval. Either a reason (a string) when the two cannot
 * be paired: a side without per-item scores, another metric, other items (hash) or another count, fewer than two
 * items.
 * - 0/1 scores on both sides: Newcombe's square-and-add interval for paired proportions (Newcombe 1998, method
 *   10; eval/metrics.ts newcombePairedDifference), from the counts of items both got right, only one side got
 *   right, neither. The normal form mean(d) ± Z95·sd(d)/√n collapses to a point when no item differs (sd(d) = 0:
 *   "+0.0000 [+0.0000, +0.0000]" for two models alike on 10 ARC items, read as certainty) and is too narrow with
 *   few discordant items; Newcombe's keeps the Wilson width of each side (the same 3 of 10 right on both sides:
 *   ±0.2002).
 * - real scores (HumanEval's pass@k from several samples; the held-out code loss, one score per held-out pair):
 *   mean of the per-item differences ± Z95·sd/√n (sample sd, n − 1), the same normal approximation as the
 *   benchmark's own standard error (lm-evaluation-harness's mean_stderr) and the unpaired interval it replaces,
 *   so the two differ only by the pairing. Not a bootstrap in either case: exact arithmetic, with no seed, so
 *   Table 3 / Figure 1 (which have none to give) and `eval --base` give the same bounds for the same two
 *   evaluations; cheap at MMLU's 14k items in every cell of a report; and at a held-out set's hundreds of pairs
 *   the percentile bootstrap `eval --base` used before differs from it by less than its own seed-to-seed spread
 *   (the demo's 144 pairs: [−0.00923, −0.00271] here, bootstrap lows −0.00931…−0.00919 and highs
 *   −0.00285…−0.00267 over five seeds of 10,000 resamples).
 */
export function pairedDifference(model: Scored, base: Scored): PairedInterval | string {
  if (!model.perItem || !base.perItem)
    return `${!model.perItem && !base.perItem ? "neither side keeps" : !model.perItem ? "the model does not keep" : "the base does not keep"} per-item scores`;
  if (model.metric !== base.metric) return `other metrics (${model.metric}, ${base.metric})`;
  if (
    model.perItem.items !== base.perItem.items ||
    model.n !== base.n ||
    (model.perItem.unitsPerItem ?? 1) !== (base.perItem.unitsPerItem ?? 1)
  )
    return "the two sides scored different items";
  const a = decodeScores(model.perItem, model.n);
  const b = decodeScores(base.perItem, base.n);
  if (typeof a === "string" || typeof b === "string") return `per-item scores unreadable`;
  const n = a.length;
  if (n < 2) return "fewer than two items";
  const d = a.map((x, i) => x - b[i]!);
  const m = d.reduce((s, x) => s + x, 0) / n;
  const ss = d.reduce((s, x) => s + (x - m) ** 2, 0);
  const se = Math.sqrt(ss / (n - 1)) / Math.sqrt(n);
  const diff = model.value - base.value;
  // by the scores, not the encoding: real scores that all happen to be 0 or 1 are a 0/1 table too
  const binary = (xs: number[]) => xs.every((x) => x === 0 || x === 1);
  if (binary(a) && binary(b)) {
    const t = { both: 0, firstOnly: 0, secondOnly: 0, neither: 0 };
    a.forEach((x, i) => {
      const y = b[i]!;
      if (x === 1 && y === 1) t.both++;
      else if (x === 1) t.firstOnly++;
      else if (y === 1) t.secondOnly++;
      else t.neither++;
    });
    const iv = newcombePairedDifference(t);
    return { diff, low: iv.low, high: iv.high, n, method: "newcombe", se };
  }
  return { diff, low: diff - Z95 * se, high: diff + Z95 * se, n, method: "normal", se };
}

/** model − base of two figures that cannot be paired item by item, with its 95% interval. */
export interface UnpairedInterval {
  diff: number;
  low: number;
  high: number;
  /**
   * "newcombe": both figures are shares of items scored 0 or 1 with whole counts (eval/metrics.ts
   * proportionSuccesses: ARC acc_norm, GSM8K exact match, MMLU acc, greedy pass@1), Newcombe's hybrid score
   * interval for two independent proportions (newcombeDifference); "normal": anything else (losses, pass@k from
   * several samples, a figure whose value·n is not whole), diff ± Z95·√(se_m² + se_b²)
   */
  method: "newcombe" | "normal";
}

/**
 * model − base when the two cannot be paired (pairedDifference's reason: an older --cache record or results.json
 * without per-item scores, other items). For 0/1 benchmarks, from the counts value·n (checked whole within 1e-6 by
 * proportionSuccesses, else the normal form): Newcombe's hybrid score interval (1998, method 10), since the
 * normal one from both standard errors is the point [0, 0] when both sides are at 0/n or n/n (se 0) and too narrow
 * near 0 or 1. Losses and real-valued pass@k keep diff ± Z95·√(se_m² + se_b²).
 */
export function unpairedDifference(
  model: Scored & { stderr: number },
  base: Scored & { stderr: number },
): UnpairedInterval {
  const diff = model.value - base.value;
  const k1 = model.metric === base.metric ? proportionSuccesses(model) : null;
  const k2 = k1 === null ? null : proportionSuccesses(base);
  if (k1 !== null && k2 !== null) {
    const iv = newcombeDifference(k1, model.n, k2, base.n);
    return { diff, low: iv.low, high: iv.high, method: "newcombe" };
  }
  const half = Z95 * Math.sqrt(model.stderr ** 2 + base.stderr ** 2);
  return { diff, low: diff - half, high: diff + half, method: "normal" };
}
