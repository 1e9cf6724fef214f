/**
 * Per-item utility scores (eval/utility/items.ts) against values worked by hand: the bitset's bytes, and a
 * ten-item benchmark where the paired and unpaired intervals of model − base differ.
 *
 * The ten items: base 1111100000 (0.5), model 1111110000 (0.6). Per-item differences: one 1, nine 0: mean 0.1,
 * Σ(d − 0.1)² = 9·0.01 + 0.81 = 0.9, sd² = 0.9/9 = 0.1, se = √0.1/√10 = 0.1 exactly (the normal paired interval
 * would be 0.1 ± Z95·0.1). Scores 0/1, so the paired interval is Newcombe's on the table [[5, 1], [0, 4]] (both
 * right, model only, base only, neither): [−0.143406, 0.319857], worked by hand in test/metrics. Unpaired: se_b² = (10·0.25/9)/10 = 1/36, se_m² = (6·0.16 + 4·0.36)/9/10 = 0.24/9 = 2/75, sum
 * 49/900, se = 7/30 ≈ 0.2333: 0.1 ± Z95·7/30, 2.33 times as wide.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeScores,
  encodeScores,
  itemsHash,
  pairedDifference,
  perItemProblem,
  unpairedDifference,
} from "../../src/eval/utility/items.js";
import { meanStderr } from "../../src/eval/utility/model.js";
import { LOSS_BASE, LOSS_MODEL } from "./pair-losses.js";

const Z95 = 1.959963984540054;
const BASE = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const MODEL = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0];

test("per-item scores: 0/1 as a bitset (item i in bit i % 8 of byte i/8), reals as float64", () => {
  // base: bits 0–4 of byte 0 = 0x1f, byte 1 = 0x00 -> base64 "HwA="; model: 0x3f, 0x00 -> "PwA="
  assert.deepEqual(encodeScores("h", BASE), { items: "h", bits: "HwA=" });
  assert.deepEqual(encodeScores("h", MODEL), { items: "h", bits: "PwA=" });
  assert.deepEqual(decodeScores({ items: "h", bits: "PwA=" }, 10), MODEL);
  // bit 10 set past n = 10 items (byte 1 = 0x04): refused, as are a wrong length and both encodings at once
  assert.match(String(decodeScores({ items: "h", bits: "PwQ=" }, 10)), /bits set past its n = 10/);
  assert.match(String(decodeScores({ items: "h", bits: "PwA=" }, 17)), /2 bytes of bits for n = 17/);
  assert.match(String(decodeScores({ items: "h", bits: "PwA=", f64: "" }, 10)), /exactly one/);
  const reals = [0.25, 1, 0];
  const enc = encodeScores("h", reals);
  assert.equal(enc.bits, undefined);
  assert.equal(Buffer.from(enc.f64!, "base64").readDoubleLE(0), 0.25);
  assert.deepEqual(decodeScores(enc, 3), reals);
  // the scores must give the figure's value
  assert.equal(
    perItemProblem({ metric: "acc", value: 0.6, n: 10, perItem: encodeScores("h", MODEL) }),
    undefined,
  );
  assert.match(
    String(perItemProblem({ metric: "acc", value: 0.5, n: 10, perItem: encodeScores("h", MODEL) })),
    /mean 0\.6 is not the value 0\.5/,
  );
  assert.notEqual(itemsHash([{ q: "a" }, { q: "b" }]), itemsHash([{ q: "b" }, { q: "a" }]), "order counts");
});

test("paired difference of 0/1 scores: Newcombe's interval, by hand; other items are never paired", () => {
  const fig = (xs: number[], items = "same") => ({
    metric: "acc",
    value: xs.reduce((a, b) => a + b, 0) / xs.length,
    stderr: meanStderr(xs),
    n: xs.length,
    perItem: encodeScores(items, xs),
  });
  const p = pairedDifference(fig(MODEL), fig(BASE));
  assert.ok(typeof p !== "string");
  assert.ok(Math.abs(p.diff - 0.1) < 1e-15);
  assert.ok(Math.abs(p.se - 0.1) < 1e-15, `se ${p.se}`);
  assert.equal(p.method, "newcombe");
  assert.ok(Math.abs(p.low - -0.143406) < 1e-5, `low ${p.low}`);
  assert.ok(Math.abs(p.high - 0.319857) < 1e-5, `high ${p.high}`);
  assert.equal(p.n, 10);
  // the case the normal form got wrong: the same 10 answers on both sides, d = 0 everywhere, sd 0, and the
  // normal interval the point [0, 0]; Newcombe's on [[5, 0], [0, 5]]: A = 25 > 5, φ = (25 − 5)/√(5⁴) = 0.8,
  // Wilson 5/10 [0.236593, 0.763407]: ± √(2·0.263407²·(1 − 0.8)) = ±0.166592
  const same = pairedDifference(fig(BASE), fig(BASE));
  assert.ok(typeof same !== "string");
  assert.equal(same.diff, 0);
  assert.equal(same.se, 0);
  assert.ok(Math.abs(same.low - -0.166592) < 1e-5, `low ${same.low}`);
  assert.ok(Math.abs(same.high - 0.166592) < 1e-5, `high ${same.high}`);
  // real scores (pass@k from several samples) keep the normal form: model 0.5 on every item, base 0.5 on the
  // first 9 and 0 on the last: d = 0 nine times and 0.5 once, mean 0.05, Σ(d − 0.05)² = 9·0.0025 + 0.2025 =
  // 0.225, sd² = 0.025, se = √0.025/√10 = 0.05: 0.05 ± Z95·0.05
  const real = pairedDifference(fig(Array(10).fill(0.5)), fig([...Array(9).fill(0.5), 0]));
  assert.ok(typeof real !== "string");
  assert.equal(real.method, "normal");
  assert.ok(Math.abs(real.se - 0.05) < 1e-15, `se ${real.se}`);
  assert.ok(Math.abs(real.low - (0.05 - Z95 * 0.05)) < 1e-12);
  assert.ok(Math.abs(real.high - (0.05 + Z95 * 0.05)) < 1e-12);
  // the unpaired se of the same two sides, by hand 7/30 (the file's comment)
  assert.ok(Math.abs(Math.hypot(fig(MODEL).stderr, fig(BASE).stderr) - 7 / 30) < 1e-15);
  // the same size, other items: not paired
  assert.equal(pairedDifference(fig(MODEL, "other"), fig(BASE)), "the two sides scored different items");
  const { perItem: _, ...bare } = fig(BASE);
  assert.equal(pairedDifference(fig(MODEL), bare), "the base does not keep per-item scores");
});

test("unpaired difference: Newcombe's for whole counts of a 0/1 metric, the normal form for the rest", () => {
  const fig = (metric: string, value: number, n: number, stderr: number) => ({ metric, value, n, stderr });
  // the ten hand-worked items without their scores: 6/10 − 5/10, Newcombe's [−0.289794, 0.450890] (test/metrics);
  // the normal form was 0.1 ± Z95·7/30
  const model = fig("acc_norm", 0.6, 10, meanStderr(MODEL));
  const base = fig("acc_norm", 0.5, 10, meanStderr(BASE));
  let r = unpairedDifference(model, base);
  assert.equal(r.method, "newcombe");
  assert.ok(Math.abs(r.low - -0.289794) < 1e-6 && Math.abs(r.high - 0.45089) < 1e-6, `${r.low}, ${r.high}`);
  // both at 10 of 10: a width, not [0, 0]
  r = unpairedDifference(fig("acc", 1, 10, 0), fig("acc", 1, 10, 0));
  assert.equal(r.method, "newcombe");
  assert.ok(Math.abs(r.low + 0.277533) < 1e-6 && Math.abs(r.high - 0.277533) < 1e-6, `${r.low}, ${r.high}`);
  // a loss, a pass@1 that is a mean of fractions (0.35 of 10 = 3.5), other metrics: diff ± Z95·√(se_m² + se_b²)
  for (const [a, b] of [
    [fig("nll/token", 1.25, 12, 0.03), fig("nll/token", 1.5, 12, 0.04)],
    [fig("pass@1", 0.35, 10, 0.03), fig("pass@1", 0.6, 10, 0.04)],
    [fig("acc", 0.25, 4, 0.03), fig("acc_norm", 0.5, 4, 0.04)],
  ] as const) {
    r = unpairedDifference(a, b);
    assert.equal(r.method, "normal", a.metric);
    assert.ok(Math.abs(r.diff - -0.25) < 1e-12);
    assert.ok(
      Math.abs(r.high - r.diff - Z95 * 0.05) < 1e-12 && Math.abs(r.diff - r.low - Z95 * 0.05) < 1e-12,
    );
  }
});

test("the held-out code loss per held-out pair: n/2 float64 scores, paired mean ± Z95·sd/√n, by hand", () => {
  const fig = (pairs: [number, number][], items = "pairs") => {
    const answers = pairs.flat();
    return {
      metric: "nll/token",
      value: answers.reduce((a, b) => a + b, 0) / answers.length,
      stderr: meanStderr(answers),
      n: answers.length,
      perItem: encodeScores(
        items,
        pairs.map(([c, r]) => (c + r) / 2),
        2,
      ),
    };
  };
  const base = fig(LOSS_BASE);
  const model = fig(LOSS_MODEL);
  // four float64 scores (32 bytes, 44 base64 characters) for n = 8 answers, never a bitset
  assert.equal(model.perItem.unitsPerItem, 2);
  assert.equal(model.perItem.f64!.length, 44);
  assert.deepEqual(decodeScores(base.perItem, 8), [1.2, 2.1, 0.7, 1.7]);
  assert.equal(encodeScores("h", [1, 0], 2).bits, undefined, "a mean of two answers is a real score");
  assert.equal(perItemProblem(base), undefined, "the pairs' mean is the answers' mean, the value");
  assert.match(String(decodeScores(base.perItem, 7)), /unitsPerItem 2, which does not divide n = 7/);
  assert.match(
    String(decodeScores(base.perItem, 10)),
    /4 float64 scores for n = 10 units, 2 per item \(5 items\)/,
  );
  assert.match(String(decodeScores({ ...base.perItem, unitsPerItem: 0 }, 8)), /not a whole number >= 1/);
  assert.match(
    String(decodeScores({ items: "h", bits: "Dw==", unitsPerItem: 2 }, 8)),
    /unitsPerItem with bits/,
  );

  const p = pairedDifference(model, base);
  assert.ok(typeof p !== "string", String(p));
  assert.equal(p.method, "normal");
  assert.equal(p.n, 4, "paired per pair: half the answers");
  assert.ok(Math.abs(p.diff - -0.15) < 1e-12);
  assert.ok(Math.abs(p.se - 0.0645497224) < 1e-9, `se ${p.se}`);
  assert.ok(
    Math.abs(p.low - -0.276515131) < 1e-8 && Math.abs(p.high - -0.023484869) < 1e-8,
    `${p.low}, ${p.high}`,
  );

  const u = unpairedDifference(model, base);
  assert.equal(u.method, "normal");
  assert.ok(Math.abs(u.high - u.diff - 0.5270861312) < 1e-9, `half ${u.high - u.diff}`);
  assert.ok(u.high - u.low > 4 * (p.high - p.low), "the paired interval is the narrower, here 4.2×");

  // other pairs (another hash), or the same hash grouped otherwise, are never paired
  assert.equal(
    pairedDifference(model, fig(LOSS_BASE, "other pairs")),
    "the two sides scored different items",
  );
  const perAnswer = { ...base, perItem: encodeScores("pairs", LOSS_BASE.flat()) };
  assert.equal(pairedDifference(model, perAnswer), "the two sides scored different items");
});
