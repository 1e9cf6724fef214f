import { test } from "node:test";
import assert from "node:assert/strict";
import {
  wilsonInterval,
  newcombePairedDifference,
  newcombeDifference,
  mcnemar,
  mcnemarMatched,
  chiSquareSurvival,
  confusionMatrix,
  confusionIntervals,
  percentDigits,
  percentWithInterval,
  cohensKappa,
  kappaOfCounts,
  pairedBootstrap,
  bootstrapMeanDiff,
  quantile,
} from "../../src/eval/metrics.js";
import { InputError } from "../../src/errors.js";

const close = (actual: number, expected: number, tol: number, what = "") =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected} ± ${tol}, got ${actual}`);

/** Build paired boolean arrays from a 2x2 table: n11 both true, n10 a only, n01 b only, n00 neither. */
function pairs(n11: number, n10: number, n01: number, n00: number): [boolean[], boolean[]] {
  const a: boolean[] = [];
  const b: boolean[] = [];
  const push = (k: number, x: boolean, y: boolean) => {
    for (let i = 0; i < k; i++) {
      a.push(x);
      b.push(y);
    }
  };
  push(n11, true, true);
  push(n10, true, false);
  push(n01, false, true);
  push(n00, false, false);
  return [a, b];
}

test("Wilson interval matches Newcombe (1998), Table I, method 3", () => {
  // Newcombe, Statistics in Medicine 17:857-872, example intervals (4 decimals).
  const cases: [number, number, number, number][] = [
    [81, 263, 0.2553, 0.3662],
    [15, 148, 0.0624, 0.1605],
    [0, 20, 0.0, 0.1611],
    [1, 29, 0.0061, 0.1718],
  ];
  for (const [x, n, lo, hi] of cases) {
    const r = wilsonInterval(x, n);
    close(r.low, lo, 5e-5, `${x}/${n} low`);
    close(r.high, hi, 5e-5, `${x}/${n} high`);
    close(r.value, x / n, 1e-15);
  }
});

test("Wilson interval for 8/10 and 0/10 worked by hand", () => {
  // 8/10, z = 1.96: centre (0.8 + 1.96²/20) / (1 + 1.96²/10) = 0.99208 / 1.38416;
  // half-width (1.96 / 1.38416) * sqrt(0.8*0.2/10 + 1.96²/400).
  const centre = 0.99208 / 1.38416;
  const half = (1.96 / 1.38416) * Math.sqrt(0.016 + 3.8416 / 400);
  const r = wilsonInterval(8, 10, 1.96);
  close(r.low, centre - half, 1e-12);
  close(r.high, centre + half, 1e-12);
  close(r.low, 0.4902, 1e-4);
  close(r.high, 0.9433, 1e-4);
  // At 0 successes the upper bound reduces to z² / (n + z²).
  const z = wilsonInterval(0, 10, 1.96);
  assert.equal(z.low, 0);
  close(z.high, 3.8416 / 13.8416, 1e-12);
});

test("Newcombe's paired difference: the published contingencytables case (Fagerland et al., ch. 8)", () => {
  // Cavo et al. (2012) as paired 2×2 [[59, 6], [16, 80]]: the R package contingencytables' test of
  // Newcombe_square_and_add_CI_paired_2x2 prints "estimate = -0.0621 (95% CI -0.1186 to -0.0046)"
  const r = newcombePairedDifference({ both: 59, firstOnly: 6, secondOnly: 16, neither: 80 });
  close(r.value, -10 / 161, 1e-15, "θ");
  close(r.low, -0.1186, 5e-5, "low");
  close(r.high, -0.0046, 5e-5, "high");
});

test("Newcombe's paired difference worked by hand: φ = 0, φ > 0, and tables where no item differs", () => {
  // Bentur et al. (2009), [[1, 1], [7, 12]] (the book's other example), n = 21: p1 = 2/21, p2 = 8/21, θ = −6/21.
  // A = 1·12 − 1·7 = 5 ≤ n/2: φ = 0. Wilson 2/21 [0.026519, 0.289141], 8/21 [0.207510, 0.591213]:
  // low = θ − √((0.095238 − 0.026519)² + (0.591213 − 0.380952)²) = −0.285714 − 0.221206 = −0.506920;
  // high = θ + √((0.380952 − 0.207510)² + (0.289141 − 0.095238)²) = −0.285714 + 0.260155 = −0.025559
  let r = newcombePairedDifference({ both: 1, firstOnly: 1, secondOnly: 7, neither: 12 });
  close(r.value, -6 / 21, 1e-15);
  close(r.low, -0.50692, 1e-5, "Bentur low");
  close(r.high, -0.025559, 1e-5, "Bentur high");
  // ten items, model 1111110000 against base 1111100000 (test/utility/items): [[5, 1], [0, 4]], θ = 0.1.
  // A = 20 > 5: φ = (20 − 5)/√(6·4·5·5) = 15/√600 = 0.612372. Wilson 6/10 [0.312674, 0.831820], 5/10
  // [0.236593, 0.763407]: low = 0.1 − √(0.287326² + 0.263407² − 2φ·0.287326·0.263407) = 0.1 − √0.059246 =
  // −0.143406; high = 0.1 + √(0.263407² + 0.231820² − 2φ·0.263407·0.231820) = 0.1 + √0.048339 = 0.319857
  r = newcombePairedDifference({ both: 5, firstOnly: 1, secondOnly: 0, neither: 4 });
  close(r.low, -0.143406, 1e-5, "10 items low");
  close(r.high, 0.319857, 1e-5, "10 items high");
  // no item differs, all right: both sides 10/10, a margin is 0 so φ = 0, and each side is Wilson's 10/10,
  // low bound 10/(10 + z²) = 0.722467: θ = 0 in ±(1 − 0.722467) = ±0.277533, a width, never the point [0, 0]
  const z2 = 1.959963984540054 ** 2;
  for (const t of [
    { both: 10, firstOnly: 0, secondOnly: 0, neither: 0 },
    { both: 0, firstOnly: 0, secondOnly: 0, neither: 10 },
  ]) {
    r = newcombePairedDifference(t);
    assert.equal(r.value, 0);
    close(r.low, -(1 - 10 / (10 + z2)), 1e-12, "alike low");
    close(r.high, 1 - 10 / (10 + z2), 1e-12, "alike high");
  }
  // no item differs, 3 right of 10 on both sides: A = 21 > 5, φ = (21 − 5)/√(3·7·3·7) = 16/21; Wilson 3/10
  // [0.107791, 0.603222]: ± √(0.192209² + 0.303222² − 2·(16/21)·0.192209·0.303222) = ±√0.040077 = ±0.200193
  r = newcombePairedDifference({ both: 3, firstOnly: 0, secondOnly: 0, neither: 7 });
  assert.equal(r.value, 0);
  close(r.low, -0.200193, 1e-5, "3/10 alike low");
  close(r.high, 0.200193, 1e-5, "3/10 alike high");
  // nothing paired: nothing known; counts that are not counts are refused
  r = newcombePairedDifference({ both: 0, firstOnly: 0, secondOnly: 0, neither: 0 });
  assert.ok(Number.isNaN(r.value));
  assert.deepEqual([r.low, r.high], [-1, 1]);
  assert.throws(
    () => newcombePairedDifference({ both: 1.5, firstOnly: 0, secondOnly: 0, neither: 1 }),
    InputError,
  );
});

test("Newcombe's paired difference: inside [−1, 1], contains θ, antisymmetric when the sides swap", () => {
  for (const [a, b, c, d] of [
    [0, 10, 0, 0],
    [0, 0, 10, 0],
    [2, 5, 1, 0],
    [30, 0, 1, 2],
    [59, 6, 16, 80],
  ] as const) {
    const r = newcombePairedDifference({ both: a, firstOnly: b, secondOnly: c, neither: d });
    const s = newcombePairedDifference({ both: a, firstOnly: c, secondOnly: b, neither: d });
    assert.ok(-1 <= r.low && r.low <= r.value && r.value <= r.high && r.high <= 1, `${[a, b, c, d]}`);
    assert.ok(r.high - r.low > 0, `width at ${[a, b, c, d]}`);
    close(s.low, -r.high, 1e-12, "swap low");
    close(s.high, -r.low, 1e-12, "swap high");
  }
});

test("Newcombe's difference of independent proportions matches Newcombe (1998), Table II, method 10", () => {
  // Newcombe, "Interval estimation for the difference between independent proportions: comparison of eleven
  // methods", Stat. Med. 17:873–890, Table II, method 10 (score, no continuity correction), examples (a)–(h);
  // the same figures from the formula worked independently (Python, Wilson from scratch) to 1e-6
  for (const [k1, n1, k2, n2, low, high] of [
    [56, 70, 48, 80, 0.0524, 0.3339],
    [9, 10, 3, 10, 0.1705, 0.809],
    [6, 7, 2, 7, 0.0582, 0.8062],
    [5, 56, 0, 29, -0.0381, 0.1926],
    [0, 10, 0, 20, -0.1611, 0.2775],
    [0, 10, 0, 10, -0.2775, 0.2775],
    [10, 10, 0, 20, 0.6791, 1],
    [10, 10, 0, 10, 0.6075, 1],
  ] as const) {
    const r = newcombeDifference(k1, n1, k2, n2);
    const what = `${k1}/${n1} − ${k2}/${n2}`;
    close(r.value, k1 / n1 - k2 / n2, 1e-15, `${what} value`);
    close(r.low, low, 5e-5, `${what} low`);
    close(r.high, high, 5e-5, `${what} high`);
  }
});

test("Newcombe's difference of independent proportions worked by hand; at 0/n and n/n it keeps a width", () => {
  // 6/10 − 5/10: Wilson 6/10 = (0.312674, 0.831820), 5/10 = (0.236593, 0.763407);
  // low = 0.1 − √(0.287326² + 0.263407²) = 0.1 − 0.389794; high = 0.1 + √(0.231820² + 0.263407²) = 0.1 + 0.350890
  let r = newcombeDifference(6, 10, 5, 10);
  close(r.low, -0.289794, 1e-6, "6/10 − 5/10 low");
  close(r.high, 0.45089, 1e-6, "6/10 − 5/10 high");
  // both at 0 of 10 (and both at 10 of 10): θ ± √(0 + 0.277533²), the Wilson upper limit of 0/10, where the
  // normal interval from both standard errors (se 0 each) is the point [0, 0]
  for (const k of [0, 10]) {
    r = newcombeDifference(k, 10, k, 10);
    assert.equal(r.value, 0);
    close(r.low, -0.277533, 1e-6, `${k}/10 both low`);
    close(r.high, 0.277533, 1e-6, `${k}/10 both high`);
  }
  // inside [−1, 1], contains θ, antisymmetric when the sides swap
  for (const [k1, n1, k2, n2] of [
    [0, 3, 3, 3],
    [1, 7, 5, 9],
    [14, 14042, 14000, 14042],
  ] as const) {
    const a = newcombeDifference(k1, n1, k2, n2);
    const b = newcombeDifference(k2, n2, k1, n1);
    assert.ok(-1 <= a.low && a.low <= a.value && a.value <= a.high && a.high <= 1, `${[k1, n1, k2, n2]}`);
    close(b.low, -a.high, 1e-12, "swap low");
    close(b.high, -a.low, 1e-12, "swap high");
  }
  // nothing on a side: nothing known; counts that are not counts are refused (wilsonInterval's check)
  r = newcombeDifference(0, 0, 3, 10);
  assert.ok(Number.isNaN(r.value));
  assert.deepEqual([r.low, r.high], [-1, 1]);
  assert.throws(() => newcombeDifference(2.5, 10, 3, 10), InputError);
  assert.throws(() => newcombeDifference(11, 10, 3, 10), InputError);
});

test("Wilson interval: contains the rate, widens as n shrinks, symmetric under complement", () => {
  for (const n of [1, 5, 17, 100]) {
    for (let x = 0; x <= n; x++) {
      const r = wilsonInterval(x, n);
      assert.ok(r.low <= r.value && r.value <= r.high);
      assert.ok(r.low >= 0 && r.high <= 1);
      const c = wilsonInterval(n - x, n);
      close(r.low, 1 - c.high, 1e-12);
    }
  }
  const widths = [1000, 100, 10].map((n) => {
    const r = wilsonInterval(n / 2, n);
    return r.high - r.low;
  });
  assert.ok(widths[0]! < widths[1]! && widths[1]! < widths[2]!);
  assert.deepEqual(wilsonInterval(0, 0), { value: NaN, low: 0, high: 1 });
  assert.throws(() => wilsonInterval(11, 10), InputError);
  assert.throws(() => wilsonInterval(1.5, 10), InputError);
});

test("chi-square survival at textbook critical values", () => {
  close(chiSquareSurvival(3.841458820694124, 1), 0.05, 1e-12);
  close(chiSquareSurvival(6.634896601021214, 1), 0.01, 1e-12);
  close(chiSquareSurvival(10.827566170662733, 1), 0.001, 1e-12);
  // df = 2 has the closed form exp(-x/2).
  for (const x of [0.1, 1, 5.991464547107979, 20]) close(chiSquareSurvival(x, 2), Math.exp(-x / 2), 1e-13);
  assert.equal(chiSquareSurvival(0, 1), 1);
});

test("McNemar exact binomial for few discordant pairs", () => {
  // b01 = 6, b10 = 1: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 16/128.
  const [a, b] = pairs(10, 1, 6, 3);
  const r = mcnemar(a, b);
  assert.equal(r.method, "exact-binomial");
  assert.equal(r.b01, 6);
  assert.equal(r.b10, 1);
  assert.equal(r.statistic, 1);
  close(r.pValue, 16 / 128, 1e-15);
  // 0 vs 5: 2 / 32.
  const [c, d] = pairs(0, 5, 0, 0);
  close(mcnemar(c, d).pValue, 2 / 32, 1e-15);
  // Balanced discordance caps at 1; no discordance at all is p = 1.
  const [e, f] = pairs(3, 4, 4, 3);
  assert.equal(mcnemar(e, f).pValue, 1);
  const [g, h] = pairs(3, 0, 0, 3);
  assert.equal(mcnemar(g, h).pValue, 1);
  // 24 discordant pairs is still exact: 2 * sum_{k<=7} C(24,k) / 2^24.
  const [i, j] = pairs(0, 7, 17, 0);
  let sum = 0;
  let c24 = 1;
  for (let k = 0; k <= 7; k++) {
    sum += c24;
    c24 = (c24 * (24 - k)) / (k + 1);
  }
  const r24 = mcnemar(i, j);
  assert.equal(r24.method, "exact-binomial");
  close(r24.pValue, (2 * sum) / 2 ** 24, 1e-15);
});

test("McNemar chi-square with continuity correction (Agresti's approval ratings table)", () => {
  // Agresti, Categorical Data Analysis: 794 / 150 / 86 / 570; corrected statistic (|150-86|-1)²/236.
  const [a, b] = pairs(794, 150, 86, 570);
  const r = mcnemar(a, b);
  assert.equal(r.method, "chi-square-continuity");
  assert.equal(r.b10, 150);
  assert.equal(r.b01, 86);
  close(r.statistic, (63 * 63) / 236, 1e-12);
  // Independent p: 2 * (1 - Phi(sqrt(x))) via Abramowitz & Stegun 7.1.26 (abs error < 1.5e-7).
  const erfc = (x: number) => {
    const t = 1 / (1 + 0.3275911 * x);
    const poly =
      t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return poly * Math.exp(-x * x);
  };
  close(r.pValue, erfc(Math.sqrt(r.statistic / 2)), 3e-7);
  assert.throws(() => mcnemar([true], [true, false]), InputError);
});

test("confusion matrix on a hand-counted example", () => {
  const pred = [true, true, true, false, false, false, true, false];
  const truth = [true, false, true, true, false, false, true, false];
  const m = confusionMatrix(pred, truth);
  assert.deepEqual([m.tp, m.fp, m.tn, m.fn], [3, 1, 3, 1]);
  close(m.accuracy, 6 / 8, 1e-15);
  close(m.tpr, 3 / 4, 1e-15);
  close(m.fpr, 1 / 4, 1e-15);
  close(m.precision, 3 / 4, 1e-15);
  assert.ok(Number.isNaN(confusionMatrix([false], [false]).tpr));
});

test("Cohen's kappa: the classic 50-item example gives 0.4", () => {
  // Both yes 20, A yes/B no 5, A no/B yes 10, both no 15: po = 0.7, pe = 0.5*0.6 + 0.5*0.4 = 0.5.
  const [a, b] = pairs(20, 5, 10, 15);
  close(cohensKappa(a, b), 0.4, 1e-12);
  // Perfect agreement is 1, perfect disagreement on a balanced set is -1.
  close(cohensKappa([true, false, true], [true, false, true]), 1, 1e-15);
  close(cohensKappa([true, false], [false, true]), -1, 1e-15);
  assert.ok(Number.isNaN(cohensKappa([true, true], [true, true])));
});

test("Cohen's kappa is exactly 0 when one rater gives every item the same verdict", () => {
  // po = pe then, whatever the other rater says: κ = 0 by the formula. Each case left ±1e-16 when computed from
  // the proportions (45 items, 15 flagged by one rater, the other flagging all: -8.3e-17, printed "-0.000")
  for (const [n, flagged] of [
    [45, 15],
    [48, 31],
    [50, 33],
    [61, 4],
  ]) {
    const a = Array.from({ length: n }, (_, i) => i < flagged);
    for (const constant of [true, false]) {
      const b = new Array<boolean>(n).fill(constant);
      assert.ok(Object.is(cohensKappa(a, b), 0), `n ${n}, ${flagged} flagged, other all ${constant}`);
      assert.ok(Object.is(kappaOfCounts(n, constant ? flagged : n - flagged, flagged, constant ? n : 0), 0));
    }
  }
});

test("quantile is R type 7", () => {
  // R: quantile(c(1,2,3,4,10), c(.1,.5,.9)) = 1.4, 3.0, 7.6
  close(quantile([1, 2, 3, 4, 10], 0.1), 1.4, 1e-12);
  close(quantile([1, 2, 3, 4, 10], 0.5), 3, 1e-12);
  close(quantile([1, 2, 3, 4, 10], 0.9), 7.6, 1e-12);
});

test("bootstrap interval approaches mean ± z·sd/√n and is reproducible from its seed", () => {
  const values = Array.from({ length: 100 }, (_, i) => i);
  // Population sd of 0..99 is sqrt((100² - 1) / 12); the bootstrap resamples from that population.
  const se = Math.sqrt((100 * 100 - 1) / 12) / Math.sqrt(100);
  const r = pairedBootstrap(values, { iterations: 20000, seed: 7 });
  assert.equal(r.mean, 49.5);
  close(r.low, 49.5 - 1.96 * se, 0.35, "low");
  close(r.high, 49.5 + 1.96 * se, 0.35, "high");
  assert.deepEqual(
    pairedBootstrap(values, { iterations: 500, seed: 3 }),
    pairedBootstrap(values, { iterations: 500, seed: 3 }),
  );
  assert.notDeepEqual(
    pairedBootstrap(values, { iterations: 500, seed: 3 }),
    pairedBootstrap(values, { iterations: 500, seed: 4 }),
  );
  // A constant sample has a degenerate interval.
  assert.deepEqual(pairedBootstrap([2, 2, 2], { iterations: 50 }), { mean: 2, low: 2, high: 2 });
  // A 50% interval is inside the 95% one.
  const narrow = pairedBootstrap(values, { iterations: 5000, seed: 1, alpha: 0.5 });
  const wide = pairedBootstrap(values, { iterations: 5000, seed: 1, alpha: 0.05 });
  assert.ok(wide.low < narrow.low && narrow.high < wide.high);
  assert.throws(() => pairedBootstrap(values, { alpha: 1.5 }), InputError);
});

test("bootstrapMeanDiff: unpaired and paired", () => {
  const a = Array.from({ length: 200 }, (_, i) => (i % 4 === 0 ? 0 : 1)); // mean 0.75
  const b = Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 0 : 1)); // mean 0.5
  const r = bootstrapMeanDiff(a, b, { iterations: 20000, seed: 11 });
  close(r.mean, 0.25, 1e-12);
  // Unpaired se = sqrt(p1 q1 / n + p2 q2 / n).
  const se = Math.sqrt((0.75 * 0.25) / 200 + (0.5 * 0.5) / 200);
  close(r.low, 0.25 - 1.96 * se, 0.01, "low");
  close(r.high, 0.25 + 1.96 * se, 0.01, "high");
  // Paired: identical shifts give a zero-width interval at the shift.
  const x = [1, 5, 2, 8, 3];
  const p = bootstrapMeanDiff(
    x.map((v) => v + 2),
    x,
    { paired: true, iterations: 200 },
  );
  assert.deepEqual(p, { mean: 2, low: 2, high: 2 });
  assert.throws(() => bootstrapMeanDiff([1], [1, 2], { paired: true }), InputError);
});

test("mcnemarMatched pairs items by id, leaves out those without a verdict in both, and counts them", () => {
  const v = (id: string, ok: boolean | null) => ({ id, ok });
  const base = [v("a", false), v("b", false), v("c", true), v("d", null), v("e", true), v("only-base", true)];
  const other = [
    v("c", false),
    v("b", true),
    v("a", true),
    v("d", true),
    v("e", true),
    v("only-other", false),
  ];
  const r = mcnemarMatched(base, other, (x) => x.ok)!;
  // matched with verdicts: a (F→T), b (F→T), c (T→F), e (T→T); d has none in base; two ids are in one list only
  assert.equal(r.n, 4);
  assert.equal(r.excluded, 3);
  assert.equal(r.b01, 2);
  assert.equal(r.b10, 1);
  assert.equal(r.baseRate, 2 / 4);
  assert.equal(r.otherRate, 3 / 4);
  assert.deepEqual(
    { b01: r.b01, b10: r.b10, pValue: r.pValue },
    (({ b01, b10, pValue }) => ({ b01, b10, pValue }))(
      mcnemar([false, false, true, true], [true, true, false, true]),
    ),
  );
  assert.equal(
    mcnemarMatched([v("a", true)], [v("b", true)], (x) => x.ok),
    null,
  );
});

// Wilson bounds worked by hand (centre (k + z²/2)/(n + z²), half-width z·√(k(n−k)/n + z²/4)/(n + z²)):
// 3/4 → [0.3006, 0.9544], 1/2 → [0.0945, 0.9055], 4/6 → [0.3000, 0.9032]
test("confusionIntervals: accuracy, TPR and FPR each over its own n, none where that n is 0", () => {
  const ci = confusionIntervals({ tp: 3, fn: 1, fp: 1, tn: 1 });
  assert.equal(ci.tpr!.n, 4);
  assert.ok(Math.abs(ci.tpr!.low - 0.3006) < 1e-4 && Math.abs(ci.tpr!.high - 0.9544) < 1e-4);
  assert.equal(ci.fpr!.n, 2);
  assert.ok(Math.abs(ci.fpr!.low - 0.0945) < 1e-4 && Math.abs(ci.fpr!.high - 0.9055) < 1e-4);
  assert.equal(ci.accuracy!.n, 6);
  assert.ok(Math.abs(ci.accuracy!.value - 4 / 6) < 1e-12);
  assert.ok(Math.abs(ci.accuracy!.low - 0.3) < 1e-4 && Math.abs(ci.accuracy!.high - 0.9032) < 1e-4);
  const noPositives = confusionIntervals({ tp: 0, fn: 0, fp: 0, tn: 2 });
  assert.equal(noPositives.tpr, null);
  assert.equal(noPositives.fpr!.value, 0);
  assert.equal(percentWithInterval({ value: 0.625, low: 0.48449, high: 0.74751 }), "62.5% [48.4, 74.8]");
});

test("percentages never round a share short of 100% up to 100.0, or one above 0 down to 0.0", () => {
  // Wilson bounds of 423 and of 1 safe answer in 424 (the paper's pairs per language), by the closed form:
  // (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n) = [0.986763, 0.999584] and [0.000416, 0.013237]
  const hi = wilsonInterval(423, 424);
  const lo = wilsonInterval(1, 424);
  assert.ok(Math.abs(hi.high - 0.999584) < 1e-6 && Math.abs(lo.low - 0.000416) < 1e-6);
  assert.equal(percentWithInterval(hi), "99.8% [98.7, >99.9]");
  assert.equal(percentWithInterval(lo), "0.2% [<0.1, 1.3]");
  // 2,499 of 2,500 is 99.96%, not 100%; the ends themselves stay exact
  assert.equal(percentDigits(2499 / 2500), ">99.9");
  assert.equal(percentDigits(1 / 2500), "<0.1");
  assert.equal(percentWithInterval(wilsonInterval(10, 10)), "100.0% [72.2, 100.0]");
  assert.equal(percentWithInterval(wilsonInterval(0, 10)), "0.0% [0.0, 27.8]");
  assert.equal(percentDigits(0.9994), "99.9");
  assert.equal(percentDigits(0.0005), "0.1");
});
