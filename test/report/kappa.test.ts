/**
 * Table 6's κ interval (src/report/kappa.ts) against independent references: κ by hand from a 2×2 table, the
 * degenerate cases that can have no interval, and the coverage of the 95% interval over many samples drawn from a
 * population whose κ is known from its cell probabilities.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { kappaWithInterval } from "../../src/report/kappa.js";
import { judgeTable } from "../../src/report/paper-tables.js";
import { tableToMarkdown } from "../../src/report/table.js";
import type { Outcomes } from "../../src/report/schema.js";
import { createRng } from "../../src/util/random.js";
import { handMadeResults, MODEL } from "./fixture.js";
import { cellOf, parseMarkdownTable } from "./parse.js";

/** Outcome strings ("1" secure, "0" insecure) from (llm insecure, rule insecure) counts, in that order. */
function outcomes(
  counts: { tp: number; fp: number; fn: number; tn: number },
  groups?: (i: number) => string,
): Outcomes {
  const llm: string[] = [];
  const rule: string[] = [];
  const add = (k: number, l: string, r: string) => {
    for (let i = 0; i < k; i++) {
      llm.push(l);
      rule.push(r);
    }
  };
  add(counts.tp, "0", "0");
  add(counts.fp, "0", "1");
  add(counts.fn, "1", "0");
  add(counts.tn, "1", "1");
  const ids = llm.map((_, i) => `p${i}`);
  return {
    ids,
    langs: ids.map(() => "cpp"),
    ...(groups ? { groups: ids.map((_, i) => groups(i)) } : {}),
    rule: rule.join(""),
    llm: llm.join(""),
  };
}

test("κ by hand from the 2×2 table, its interval holds it, and '-' items are left out", () => {
  // TP 25, FP 3, FN 2, TN 10 (n 40): po = 35/40 = 0.875; LLM insecure 28/40, rule insecure 27/40:
  // pe = 0.7·0.675 + 0.3·0.325 = 0.57; κ = (0.875 − 0.57) / 0.43 = 0.70930...
  const o = outcomes({ tp: 25, fp: 3, fn: 2, tn: 10 });
  o.ids.push("x");
  o.langs.push("cpp");
  o.rule += "-";
  o.llm += "0";
  const k = kappaWithInterval(o)!;
  assert.equal(k.n, 40);
  assert.ok(Math.abs(k.kappa - 0.305 / 0.43) < 1e-12, String(k.kappa));
  assert.ok(k.low! < k.kappa && k.kappa < k.high! && k.low! >= -1 && k.high! <= 1, `${k.low} ${k.high}`);
});

test("no interval from one task, or when a judge gives one verdict throughout (κ = 0 by construction)", () => {
  const one = kappaWithInterval(outcomes({ tp: 5, fp: 2, fn: 1, tn: 4 }, () => "t0"))!;
  assert.equal(one.units, 1);
  assert.equal(one.low, undefined);
  // the rule judge never says insecure: κ is 0 in every resample, a [0, 0] interval would read as exact
  const constant = kappaWithInterval(outcomes({ tp: 0, fp: 5, fn: 0, tn: 6 }))!;
  assert.equal(constant.kappa, 0);
  assert.equal(constant.low, undefined);
});

test("the 95% interval covers the population's κ in about 95% of samples", () => {
  // population: both insecure 0.3, only the LLM 0.1, only the rules 0.1, both secure 0.5 ->
  // po 0.8, marginals 0.4 and 0.4, pe 0.52, κ = 0.28 / 0.48
  const truth = 0.28 / 0.48;
  const rng = createRng(7);
  let covered = 0;
  const samples = 200;
  for (let s = 0; s < samples; s++) {
    const c = { tp: 0, fp: 0, fn: 0, tn: 0 };
    for (let i = 0; i < 150; i++) {
      const u = rng.next();
      if (u < 0.3) c.tp++;
      else if (u < 0.4) c.fp++;
      else if (u < 0.5) c.fn++;
      else c.tn++;
    }
    const k = kappaWithInterval(outcomes(c), { iterations: 400, seed: s })!;
    if (k.low! <= truth && truth <= k.high!) covered++;
  }
  const coverage = covered / samples;
  assert.ok(coverage >= 0.88 && coverage <= 0.99, `coverage ${coverage}`);
});

test("Table 6 gives κ its interval when the run's outcomes reproduce the recorded κ, and bare otherwise", () => {
  const r = handMadeResults();
  const cell = r.cells.find((c) => c.security.judgeAgreement)!;
  const o = outcomes({ tp: 25, fp: 3, fn: 2, tn: 10 });
  cell.outcomes = o;
  cell.security.judgeAgreement!.kappa = 0.305 / 0.43;
  const key = [MODEL, "GoodVibe", "none", "1"];
  const md = parseMarkdownTable(tableToMarkdown(judgeTable(r)));
  const k = kappaWithInterval(o)!;
  assert.equal(cellOf(md, key, "κ"), `0.709 [${k.low!.toFixed(3)}, ${k.high!.toFixed(3)}]`);
  // outcomes of other programs than the recorded κ's: the interval would not be κ's, so none is shown
  cell.security.judgeAgreement!.kappa = 0.7;
  const md2 = parseMarkdownTable(tableToMarkdown(judgeTable(r)));
  assert.equal(cellOf(md2, key, "κ"), "0.700");
});

test("κ's interval is the textbook task bootstrap (resampled programs listed out, κ on each) on random outcomes", () => {
  const rng = createRng(5);
  let compared = 0;
  for (let t = 0; t < 40; t++) {
    const n = 4 + rng.int(40);
    const K = 2 + rng.int(n - 1);
    const mark = () => Array.from({ length: n }, () => "011-"[rng.int(4)]!).join("");
    const o: Outcomes = {
      ids: Array.from({ length: n }, (_, i) => `p${i}`),
      langs: new Array<string>(n).fill("python"),
      preference: "1".repeat(n),
      rule: mark(),
      llm: mark(),
      groups: Array.from({ length: n }, () => `python:t${rng.int(K)}`),
    };
    const got = kappaWithInterval(o, { iterations: 300, seed: t });
    // reference: programs both judges judged, tasks in order of first appearance, K draws of whole tasks
    const idx = o.ids.map((_, i) => i).filter((i) => o.rule![i] !== "-" && o.llm![i] !== "-");
    const names = [...new Set(idx.map((i) => o.groups![i]!))];
    if (!got || got.low === undefined || names.length < 2) continue;
    const members = names.map((g) => idx.filter((i) => o.groups![i] === g));
    const kappa = (is: number[]) => {
      const a = is.map((i) => o.llm![i] === "0");
      const b = is.map((i) => o.rule![i] === "0");
      const po = a.filter((x, j) => x === b[j]).length / a.length;
      const pa = a.filter(Boolean).length / a.length;
      const pb = b.filter(Boolean).length / b.length;
      const pe = pa * pb + (1 - pa) * (1 - pb);
      return pe === 1 ? NaN : (po - pe) / (1 - pe);
    };
    const r = createRng(t);
    const draws: number[] = [];
    for (let it = 0; it < 300; it++) {
      const is: number[] = [];
      for (let k = 0; k < names.length; k++) is.push(...members[r.int(names.length)]!);
      const k = kappa(is);
      if (Number.isFinite(k)) draws.push(k);
    }
    draws.sort((x, y) => x - y);
    const q = (p: number) => {
      const h = (draws.length - 1) * p;
      const lo = Math.floor(h);
      return draws[lo]! + (h - lo) * (draws[Math.min(lo + 1, draws.length - 1)]! - draws[lo]!);
    };
    assert.ok(Math.abs(got.low - q(0.025)) < 1e-12 && Math.abs(got.high! - q(0.975)) < 1e-12, `trial ${t}`);
    compared++;
  }
  assert.ok(compared >= 20, `${compared} trials with an interval`);
});
