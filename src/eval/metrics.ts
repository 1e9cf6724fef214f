/**
 * Statistics for evaluation reports: binomial intervals, paired tests, agreement, bootstrap intervals.
 * Pure functions over plain arrays; resampling is seeded so a report can be reproduced exactly.
 */
import { InputError } from "../errors.js";
import { createRng } from "../util/random.js";

/** z for a two-sided 95% interval: Φ⁻¹(0.975). */
export const Z95 = 1.959963984540054;

/**
 * A point estimate with its 95% interval, low <= value <= high: a Wilson rate, a bootstrap mean, a paired
 * difference. The one interval type of the project (the report's schema checks its files against it).
 */
export interface Interval {
  value: number;
  low: number;
  high: number;
}

/** Half-width of the Wilson score interval of a rate p from n > 0 trials (widest at p = 0.5). */
export function wilsonHalfWidth(p: number, n: number, z = Z95): number {
  const z2 = z * z;
  return (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
}

/**
 * Wilson score interval for a binomial proportion. Unlike the Wald interval it stays inside [0, 1]
 * and behaves at 0/n and n/n, which matters for safe-code rates near 0% or 100%.
 * With n = 0 nothing is known: the value is NaN and the interval is [0, 1].
 */
export function wilsonInterval(successes: number, n: number, z = Z95): Interval {
  if (!Number.isInteger(n) || n < 0)
    throw new InputError(`wilsonInterval: n must be a non-negative integer, got ${n}`);
  if (!Number.isInteger(successes) || successes < 0 || successes > n) {
    throw new InputError(`wilsonInterval: successes must be an integer in [0, ${n}], got ${successes}`);
  }
  if (n === 0) return { value: NaN, low: 0, high: 1 };
  const p = successes / n;
  const z2 = z * z;
  const center = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = wilsonHalfWidth(p, n, z);
  // At 0/n and n/n the closed form touches 0 or 1 exactly; pin those against rounding.
  const low = successes === 0 ? 0 : Math.max(0, center - half);
  const high = successes === n ? 1 : Math.min(1, center + half);
  return { value: p, low, high };
}

/**
 * Per group, the successes and n of the items in an outcome string ("1" success, "0" failure, "-" no verdict, which
 * is skipped) that `keep` lets through, grouped by `groupOf`: clusteredWilsonInterval's clusters.
 */
export function tallyByGroup(
  marks: string,
  keep: (i: number) => boolean,
  groupOf: (i: number) => string,
): { successes: number; n: number }[] {
  const byGroup = new Map<string, { successes: number; n: number }>();
  for (let i = 0; i < marks.length; i++) {
    const m = marks[i];
    if (m === "-" || !keep(i)) continue;
    const g = groupOf(i);
    const t = byGroup.get(g) ?? { successes: 0, n: 0 };
    t.n++;
    if (m === "1") t.successes++;
    byGroup.set(g, t);
  }
  return [...byGroup.values()];
}

/**
 * Wilson interval of a rate whose items come in clusters (several generated prompts per task or template), on the
 * effective sample size n / deff, where deff is the design effect of the clustering (Kish 1965):
 * deff = Var_clustered(p̂) / Var_independent(p̂), with Var_clustered = Σ_k (s_k − p̂·m_k)² / n² (the ratio
 * estimator's variance over the clusters' successes s_k and sizes m_k) and Var_independent = p̂(1 − p̂)/n. Neither
 * variance carries a small-sample factor, so the two ends are exact: clusters whose items all agree give deff = m
 * for equal sizes m, hence Wilson on the number of clusters; one item per cluster gives deff = 1, Wilson on n.
 * deff is taken at least 1 (clustering is not let narrow the interval below Wilson's on the items). At p̂ = 0 or 1
 * both variances vanish and the ratio says nothing: every cluster's items agree there, the case deff = m describes,
 * so the interval is Wilson on the number of clusters (deff = n / clusters). Until 2026-12-06 it was 1 there, Wilson
 * on the items: 40 of 40 over 10 tasks read [0.912, 1] where 36 of 40 read [0.596, 0.982], and a simulation of
 * correlated tasks (10 × 4, p 0.9, intra-task correlation 0.8) covered 72% for 95% (96% with this; an audit's,
 * against statsmodels). Chosen over a percentile bootstrap over tasks because the latter collapses to the point
 * [1, 1] at 100% and undercovers with few tasks, where Wilson keeps its width; and it is closed-form (no generator
 * to seed).
 */
export function clusteredWilsonInterval(
  clusters: readonly { successes: number; n: number }[],
  z = Z95,
): Interval & { nEffective: number; designEffect: number } {
  let n = 0;
  let y = 0;
  for (const c of clusters) {
    if (
      !Number.isInteger(c.n) ||
      c.n < 0 ||
      !Number.isInteger(c.successes) ||
      c.successes < 0 ||
      c.successes > c.n
    )
      throw new InputError(
        `clusteredWilsonInterval: a cluster needs integer 0 <= successes <= n, got ${c.successes} of ${c.n}`,
      );
    n += c.n;
    y += c.successes;
  }
  if (n === 0) return { ...wilsonInterval(0, 0, z), nEffective: 0, designEffect: 1 };
  const p = y / n;
  // 0% or 100%: Wilson on the number of (non-empty) clusters
  let deff = n / clusters.filter((c) => c.n > 0).length;
  if (p > 0 && p < 1) {
    let ss = 0;
    for (const c of clusters) ss += (c.successes - p * c.n) ** 2;
    // one item per cluster gives exactly 1 but for rounding: snap it, so that case is the items' Wilson exactly
    const ratio = ss / n / (p * (1 - p));
    deff = ratio <= 1 + 1e-9 ? 1 : ratio;
  }
  if (deff === 1) return { ...wilsonInterval(y, n, z), nEffective: n, designEffect: 1 };
  const ne = n / deff;
  const z2 = z * z;
  const center = (p + z2 / (2 * ne)) / (1 + z2 / ne);
  const half = wilsonHalfWidth(p, ne, z);
  return {
    value: p,
    low: Math.max(0, Math.min(p, center - half)),
    high: Math.min(1, Math.max(p, center + half)),
    nEffective: ne,
    designEffect: deff,
  };
}

/**
 * A paired 2×2 table: n items each scored 0 or 1 by two sides (a model and its base on the same benchmark items).
 * `firstOnly`: 1 for the first side and 0 for the second; `secondOnly` the other way round.
 */
export interface PairedTable {
  both: number;
  firstOnly: number;
  secondOnly: number;
  neither: number;
}

/**
 * 95% interval of the difference of two paired proportions, first − second = (firstOnly − secondOnly) / n, by
 * Newcombe's square-and-add ("hybrid score") method: Newcombe (1998), "Improved confidence intervals for the
 * difference between binomial proportions based on paired data", Stat. Med. 17:2635–2650, method 10. Each side's
 * proportion gets its Wilson interval (l1, u1), (l2, u2); they combine as
 *   low  = θ − √((p1 − l1)² + (u2 − p2)² − 2φ(p1 − l1)(u2 − p2))
 *   high = θ + √((p2 − l2)² + (u1 − p1)² − 2φ(p2 − l2)(u1 − p1))
 * with φ the continuity-corrected correlation of the table: A = both·neither − firstOnly·secondOnly, φ =
 * (A − n/2)/√(product of the four margins) when A > n/2, 0 when 0 ≤ A ≤ n/2, A/√(…) when A < 0, and 0 when a
 * margin is 0. Taken from Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017),
 * ch. 8, as coded in their R package contingencytables (R/Newcombe_square_and_add_CI_paired_2x2.R), whose test
 * gives (59, 6, 16, 80) → −0.0621 (−0.1186 to −0.0046); test/metrics checks that and hand-worked tables.
 * Why not mean(d) ± z·sd(d)/√n for 0/1 items: with no discordant item sd(d) is 0 and that interval is a point
 * (+0.0 [+0.0, +0.0] for two models alike on 10 items), and with few discordant items it is too narrow; this one
 * keeps the Wilson width of each side (both sides right on all 10 items: ±0.2775 around 0; the same 3 of 10
 * right on both: ±0.2002). With n = 0 nothing is known: NaN in [−1, 1].
 */
export function newcombePairedDifference(t: PairedTable, z = Z95): Interval {
  const cells = [t.both, t.firstOnly, t.secondOnly, t.neither];
  if (!cells.every((x) => Number.isInteger(x) && x >= 0))
    throw new InputError(
      `newcombePairedDifference: counts must be non-negative integers, got ${cells.join(", ")}`,
    );
  const n = t.both + t.firstOnly + t.secondOnly + t.neither;
  if (n === 0) return { value: NaN, low: -1, high: 1 };
  const first = t.both + t.firstOnly;
  const second = t.both + t.secondOnly;
  const w1 = wilsonInterval(first, n, z);
  const w2 = wilsonInterval(second, n, z);
  const p1 = w1.value;
  const p2 = w2.value;
  const margins = [first, n - first, second, n - second];
  let phi = 0;
  if (margins.every((m) => m > 0)) {
    const a = t.both * t.neither - t.firstOnly * t.secondOnly;
    const root = Math.sqrt(margins.reduce((x, y) => x * y, 1));
    phi = a > n / 2 ? (a - n / 2) / root : a >= 0 ? 0 : a / root;
  }
  const theta = (t.firstOnly - t.secondOnly) / n;
  // max(0, …): the sums are ≥ 0 for |φ| ≤ 1; guard rounding only
  const below = Math.sqrt(
    Math.max(0, (p1 - w1.low) ** 2 + (w2.high - p2) ** 2 - 2 * phi * (p1 - w1.low) * (w2.high - p2)),
  );
  const above = Math.sqrt(
    Math.max(0, (p2 - w2.low) ** 2 + (w1.high - p1) ** 2 - 2 * phi * (p2 - w2.low) * (w1.high - p1)),
  );
  return { value: theta, low: Math.max(-1, theta - below), high: Math.min(1, theta + above) };
}

/**
 * 95% interval of the difference of two independent proportions k1/n1 − k2/n2 by Newcombe's hybrid score
 * ("square-and-add") method: Newcombe (1998), "Interval estimation for the difference between independent
 * proportions: comparison of eleven methods", Stat. Med. 17:873–890, method 10. Each side gets its Wilson interval
 * (l1, u1), (l2, u2), and with θ = p1 − p2
 *   low  = θ − √((p1 − l1)² + (u2 − p2)²)
 *   high = θ + √((u1 − p1)² + (p2 − l2)²)
 * (as in R contingencytables Newcombe_hybrid_score_CI_2x2, truncated to [−1, 1] against rounding). It is
 * newcombePairedDifference with no correlation term, for two sides that cannot be paired item by item. Why not
 * θ ± z·√(se1² + se2²): a side at 0/n or n/n has se 0, so two benchmarks both at 0 of 10 would differ by
 * 0 [0, 0], and near 0 or 1 it is too narrow; this one keeps each side's Wilson width (0/10 − 0/10: ±0.2775).
 * test/metrics checks Newcombe's Table II. With n1 or n2 = 0 nothing is known: NaN in [−1, 1].
 */
export function newcombeDifference(k1: number, n1: number, k2: number, n2: number, z = Z95): Interval {
  // wilsonInterval refuses counts that are not whole or out of range
  const a = wilsonInterval(k1, n1, z);
  const b = wilsonInterval(k2, n2, z);
  if (n1 === 0 || n2 === 0) return { value: NaN, low: -1, high: 1 };
  const theta = a.value - b.value;
  return {
    value: theta,
    low: Math.max(-1, theta - Math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)),
    high: Math.min(1, theta + Math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)),
  };
}

/**
 * The utility benchmarks' headline metrics that are shares of items scored 0 or 1 (ARC's acc_norm, MMLU's acc,
 * GSM8K's exact match, greedy HumanEval's pass@1): such a figure is successes / n, and gets a binomial interval.
 */
const PROPORTION_METRICS = new Set(["acc", "acc_norm", "exact_match_strict", "pass@1"]);

/** Successes behind a utility figure when it is a share of n items scored 0 or 1; null otherwise (a loss). */
export function proportionSuccesses(u: { metric: string; value: number; n: number }): number | null {
  if (!PROPORTION_METRICS.has(u.metric) || !Number.isInteger(u.n) || u.n <= 0) return null;
  const k = Math.round(u.value * u.n);
  // pass@1 over several samples per problem is a mean of fractions, not a count: left to the normal interval
  return Math.abs(k - u.value * u.n) < 1e-6 && k >= 0 && k <= u.n ? k : null;
}

function checkPaired(a: readonly unknown[], b: readonly unknown[], fn: string): void {
  if (a.length !== b.length) {
    throw new InputError(
      `${fn}: the two arrays must be paired (same length), got ${a.length} and ${b.length}`,
    );
  }
}

export interface McNemarResult {
  /** Pairs where `a` is false and `b` is true. */
  b01: number;
  /** Pairs where `a` is true and `b` is false. */
  b10: number;
  /**
   * Exact test: min(b01, b10); chi-square test: (|b01 - b10| - 1)² / (b01 + b10), and 0 when |b01 - b10| <= 1 (the
   * correction not let overshoot, as R's mcnemar.test; statsmodels gives 1/(b01 + b10) at b01 = b10).
   */
  statistic: number;
  /** Two-sided p-value. */
  pValue: number;
  method: "exact-binomial" | "chi-square-continuity";
}

/**
 * McNemar's test on paired binary outcomes (e.g. "secure" for the same prompt under two models).
 * Uses the exact two-sided binomial test when there are fewer than 25 discordant pairs, where the
 * chi-square approximation is poor, and the continuity-corrected chi-square (1 df) otherwise.
 */
export function mcnemar(a: readonly boolean[], b: readonly boolean[]): McNemarResult {
  checkPaired(a, b, "mcnemar");
  let b01 = 0;
  let b10 = 0;
  for (let i = 0; i < a.length; i++) {
    if (!a[i] && b[i]) b01++;
    else if (a[i] && !b[i]) b10++;
  }
  const n = b01 + b10;
  if (n < 25) {
    const k = Math.min(b01, b10);
    // P(X <= k) for X ~ Binomial(n, 1/2), doubled; built term by term to stay exact for small n.
    let term = Math.pow(0.5, n);
    let cdf = 0;
    for (let i = 0; i <= k; i++) {
      cdf += term;
      term = (term * (n - i)) / (i + 1);
    }
    return { b01, b10, statistic: k, pValue: Math.min(1, 2 * cdf), method: "exact-binomial" };
  }
  const d = Math.abs(b01 - b10) - 1;
  const statistic = d > 0 ? (d * d) / n : 0;
  return { b01, b10, statistic, pValue: chiSquareSurvival(statistic, 1), method: "chi-square-continuity" };
}

export interface MatchedMcNemar extends McNemarResult {
  /** Items in both lists with a verdict in both. */
  n: number;
  /** Items left out: in one list only, or without a verdict in either. */
  excluded: number;
  /** Share of true verdicts in `base` and in `other`, over the `n` matched items. */
  baseRate: number;
  otherRate: number;
}

/**
 * McNemar's test of `other` against `base` on the items they share (matched by id) that have a verdict in both;
 * b01 counts items false in `base` and true in `other`. Null when no item has a verdict in both.
 */
export function mcnemarMatched<T extends { id: string }>(
  base: readonly T[],
  other: readonly T[],
  verdict: (item: T) => boolean | null,
): MatchedMcNemar | null {
  const otherById = new Map(other.map((it) => [it.id, it]));
  const a: boolean[] = [];
  const b: boolean[] = [];
  for (const it of base) {
    const o = otherById.get(it.id);
    if (!o) continue;
    const va = verdict(it);
    const vb = verdict(o);
    if (va === null || vb === null) continue;
    a.push(va);
    b.push(vb);
  }
  if (a.length === 0) return null;
  const ids = new Set([...base.map((it) => it.id), ...other.map((it) => it.id)]);
  const count = (xs: boolean[]) => xs.filter((x) => x).length;
  return {
    ...mcnemar(a, b),
    n: a.length,
    excluded: ids.size - a.length,
    baseRate: count(a) / a.length,
    otherRate: count(b) / b.length,
  };
}

/** P(X > x) for X ~ chi-square with `df` degrees of freedom. */
export function chiSquareSurvival(x: number, df: number): number {
  if (x <= 0) return 1;
  return regularizedGammaQ(df / 2, x / 2);
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~15 significant digits). */
function lnGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  x -= 1;
  let sum = c[0]!;
  for (let i = 1; i < 9; i++) sum += c[i]! / (x + i);
  const t = x + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** Q(a, x) = Γ(a, x) / Γ(a): series below a + 1, Lentz continued fraction above (Numerical Recipes §6.2). */
function regularizedGammaQ(a: number, x: number): number {
  const gln = lnGamma(a);
  if (x < a + 1) {
    let ap = a;
    let sum = 1 / a;
    let del = sum;
    for (let n = 0; n < 1000; n++) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * 1e-16) break;
    }
    return 1 - sum * Math.exp(-x + a * Math.log(x) - gln);
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return Math.exp(-x + a * Math.log(x) - gln) * h;
}

export interface ConfusionMatrix {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
  accuracy: number;
  /** Recall: tp / (tp + fn); NaN when there are no positives. */
  tpr: number;
  /** fp / (fp + tn); NaN when there are no negatives. */
  fpr: number;
  /** tp / (tp + fp); NaN when nothing was predicted positive. */
  precision: number;
}

/** A rate's Wilson interval with the count it is over. */
export interface CountedInterval extends Interval {
  n: number;
}

/**
 * The Wilson intervals of a confusion matrix's rates, each with its n: accuracy over every item, TPR over the
 * positives, FPR over the negatives; null where that n is 0 (nothing to estimate).
 */
export function confusionIntervals(c: Pick<ConfusionMatrix, "tp" | "fp" | "tn" | "fn">): {
  accuracy: CountedInterval | null;
  tpr: CountedInterval | null;
  fpr: CountedInterval | null;
} {
  const over = (k: number, n: number): CountedInterval | null =>
    n > 0 ? { ...wilsonInterval(k, n), n } : null;
  return {
    accuracy: over(c.tp + c.tn, c.tp + c.fp + c.tn + c.fn),
    tpr: over(c.tp, c.tp + c.fn),
    fpr: over(c.fp, c.fp + c.tn),
  };
}

/**
 * A share in [0, 1] as a percentage with one decimal, without the % sign: "62.5". A share short of 1 that would
 * round to "100.0" reads ">99.9", and one above 0 that would round to "0.0" reads "<0.1": 2,499 of 2,500, or a
 * Wilson upper bound of 0.9996, is not 100%, and one item in 2,500 is not none.
 */
export function percentDigits(x: number): string {
  const s = (100 * x).toFixed(1);
  if (s === "100.0" && x < 1) return ">99.9";
  if (s === "0.0" && x > 0) return "<0.1";
  return s;
}

/** "62.5% [48.4, 74.8]": a rate and its interval in percent, one decimal, as the CLI and the demo print rates. */
export function percentWithInterval(r: Interval): string {
  return `${percentDigits(r.value)}% [${percentDigits(r.low)}, ${percentDigits(r.high)}]`;
}

/** Confusion matrix of predictions against truth ("positive" = true). */
export function confusionMatrix(pred: readonly boolean[], truth: readonly boolean[]): ConfusionMatrix {
  checkPaired(pred, truth, "confusionMatrix");
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < pred.length; i++) {
    if (pred[i]) {
      if (truth[i]) tp++;
      else fp++;
    } else if (truth[i]) fn++;
    else tn++;
  }
  return {
    tp,
    fp,
    tn,
    fn,
    accuracy: (tp + tn) / pred.length,
    tpr: tp / (tp + fn),
    fpr: fp / (fp + tn),
    precision: tp / (tp + fp),
  };
}

/**
 * Cohen's kappa between two raters' binary labels (e.g. the LLM judge and the rule judge).
 * NaN when chance agreement is 1 (both raters constant and equal), where kappa is undefined.
 */
export function cohensKappa(a: readonly boolean[], b: readonly boolean[]): number {
  checkPaired(a, b, "cohensKappa");
  let agree = 0;
  let aYes = 0;
  let bYes = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) agree++;
    if (a[i]) aYes++;
    if (b[i]) bYes++;
  }
  return kappaOfCounts(a.length, agree, aYes, bYes);
}

/**
 * Cohen's kappa from its counts: n items, `agree` where the raters agree, `aYes` / `bYes` labelled true by each
 * (the report's task bootstrap of κ counts resampled tasks this way, report/kappa.ts). NaN as cohensKappa.
 */
export function kappaOfCounts(n: number, agree: number, aYes: number, bYes: number): number {
  if (n === 0) return NaN;
  // (po − pe) / (1 − pe) with both scaled by n²: in whole counts it is exact, so a rater who gives one verdict to
  // every item scores exactly 0, not the ±1e-16 that po − pe leaves in floating point
  const chance = aYes * bYes + (n - aYes) * (n - bYes);
  if (chance === n * n) return NaN;
  return (n * agree - chance) / (n * n - chance);
}

export interface BootstrapOptions {
  /** Resamples; 10,000 by default. */
  iterations?: number;
  seed?: number;
  /** 1 - confidence level; 0.05 by default (95% interval). */
  alpha?: number;
}

export interface BootstrapResult {
  /** The statistic on the original data. */
  mean: number;
  low: number;
  high: number;
}

function mean(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Quantile with linear interpolation between order statistics (R's type 7); `sorted` ascending. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

function resolveOptions(opts: BootstrapOptions, fn: string): Required<BootstrapOptions> {
  const iterations = opts.iterations ?? 10_000;
  const alpha = opts.alpha ?? 0.05;
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new InputError(`${fn}: iterations must be a positive integer, got ${iterations}`);
  }
  if (!(alpha > 0 && alpha < 1)) throw new InputError(`${fn}: alpha must be in (0, 1), got ${alpha}`);
  return { iterations, alpha, seed: opts.seed ?? 0 };
}

/**
 * Percentile bootstrap interval for the mean of `values`. For paired comparisons pass the per-pair
 * differences (e.g. per-prompt secure(A) - secure(B)), so the pairing is kept when resampling.
 */
export function pairedBootstrap(values: readonly number[], opts: BootstrapOptions = {}): BootstrapResult {
  const { iterations, seed, alpha } = resolveOptions(opts, "pairedBootstrap");
  const n = values.length;
  if (n === 0) return { mean: NaN, low: NaN, high: NaN };
  // each item its own unit: the cluster resampler's draws
  const sorted = clusterBootstrapDraws(
    n,
    (w) => {
      let s = 0;
      for (let i = 0; i < n; i++) if (w[i] !== 0) s += w[i]! * values[i]!;
      return s / n;
    },
    { iterations, seed },
  );
  return { mean: mean(values), low: quantile(sorted, alpha / 2), high: quantile(sorted, 1 - alpha / 2) };
}

/**
 * The project's one cluster resampler (the mean loss gap's task bootstrap below, the report's paired differences,
 * report/paired.ts): `iterations` resamples, each drawing `units` units with replacement, unit k drawn w_k times,
 * and the statistic evaluated on those weights. Returns the finite values, ascending (a resample where the
 * statistic is undefined is skipped). The draws are rng.int(units), units per resample, so with one item per unit
 * they are pairedBootstrap's with the same seed.
 */
export function clusterBootstrapDraws(
  units: number,
  statistic: (weights: Float64Array) => number,
  opts: { iterations: number; seed: number },
): number[] {
  const rng = createRng(opts.seed);
  const draws: number[] = [];
  const w = new Float64Array(units);
  for (let it = 0; it < opts.iterations; it++) {
    w.fill(0);
    for (let k = 0; k < units; k++) w[rng.int(units)]! += 1;
    const d = statistic(w);
    if (Number.isFinite(d)) draws.push(d);
  }
  return draws.sort((x, y) => x - y);
}

/**
 * Percentile bootstrap interval for the mean of `values` whose items come in clusters (`groups[i]` names item i's
 * cluster: several generated prompts per task are not independent): whole clusters are resampled with replacement
 * and the mean over the resampled items is recomputed. Clusters are numbered in order of first appearance, so with
 * one item per cluster this is pairedBootstrap over the items (same seed, same draws); with clusters of equal size
 * whose items are equal, pairedBootstrap over one item per cluster. `units`: the number of clusters.
 */
export function clusterBootstrap(
  values: readonly number[],
  groups: readonly string[],
  opts: BootstrapOptions = {},
): BootstrapResult & { units: number } {
  const { iterations, seed, alpha } = resolveOptions(opts, "clusterBootstrap");
  if (groups.length !== values.length)
    throw new InputError(
      `clusterBootstrap: ${values.length} values but ${groups.length} groups (one group per value)`,
    );
  if (values.length === 0) return { mean: NaN, low: NaN, high: NaN, units: 0 };
  const index = new Map<string, number>();
  const sums: number[] = [];
  const sizes: number[] = [];
  values.forEach((v, i) => {
    let k = index.get(groups[i]!);
    if (k === undefined) {
      k = sums.length;
      index.set(groups[i]!, k);
      sums.push(0);
      sizes.push(0);
    }
    sums[k]! += v;
    sizes[k]! += 1;
  });
  const sorted = clusterBootstrapDraws(
    sums.length,
    (w) => {
      let s = 0;
      let m = 0;
      for (let k = 0; k < w.length; k++) {
        if (w[k] === 0) continue;
        s += w[k]! * sums[k]!;
        m += w[k]! * sizes[k]!;
      }
      return s / m;
    },
    { iterations, seed },
  );
  return {
    mean: mean(values),
    low: quantile(sorted, alpha / 2),
    high: quantile(sorted, 1 - alpha / 2),
    units: sums.length,
  };
}

/**
 * Bootstrap interval for mean(a) - mean(b). Unpaired by default (each sample resampled on its own);
 * with `paired: true` the arrays must align item by item and the differences are resampled together.
 */
export function bootstrapMeanDiff(
  a: readonly number[],
  b: readonly number[],
  opts: BootstrapOptions & { paired?: boolean } = {},
): BootstrapResult {
  if (opts.paired) {
    checkPaired(a, b, "bootstrapMeanDiff");
    return pairedBootstrap(
      a.map((x, i) => x - b[i]!),
      opts,
    );
  }
  const { iterations, seed, alpha } = resolveOptions(opts, "bootstrapMeanDiff");
  if (a.length === 0 || b.length === 0) return { mean: NaN, low: NaN, high: NaN };
  const rng = createRng(seed);
  const stats = new Float64Array(iterations);
  for (let it = 0; it < iterations; it++) {
    let sa = 0;
    for (let i = 0; i < a.length; i++) sa += a[rng.int(a.length)]!;
    let sb = 0;
    for (let i = 0; i < b.length; i++) sb += b[rng.int(b.length)]!;
    stats[it] = sa / a.length - sb / b.length;
  }
  const sorted = Array.from(stats).sort((x, y) => x - y);
  return { mean: mean(a) - mean(b), low: quantile(sorted, alpha / 2), high: quantile(sorted, 1 - alpha / 2) };
}
