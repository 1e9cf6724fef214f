/**
 * The security measures on the held-out pairs that share neither a prompt nor code with training (report/unseen.ts),
 * worked by hand on outcomes built with known overlaps: rates with their own n and Wilson interval (closed form
 * below), the task-clustered interval where the pairs name their task, McNemar against the base on those pairs
 * only, the paired table on them, and old results (no seenIds) loading without the tables.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  hasUnseen,
  subsetRate,
  unseenPairedTable,
  unseenSecurity,
  unseenSecurityTable,
  withUnseen,
} from "../../src/report/unseen.js";
import { pairedComparisons } from "../../src/report/paired.js";
import { reportNotes } from "../../src/report/render.js";
import { parseExperimentResults, type CellResult, type Method } from "../../src/report/schema.js";
import { handMadeResults } from "./fixture.js";

const Z = 1.959963984540054;
/** Wilson's score interval from its textbook formula (Wilson 1927), for the hand checks. */
function wilson(k: number, n: number): [number, number] {
  const p = k / n;
  const c = (p + (Z * Z) / (2 * n)) / (1 + (Z * Z) / n);
  const h = (Z / (1 + (Z * Z) / n)) * Math.sqrt((p * (1 - p)) / n + (Z * Z) / (4 * n * n));
  return [k === 0 ? 0 : c - h, k === n ? 1 : c + h];
}
const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) < tol, `${a} vs ${b}`);

const ids = ["a", "b", "c", "d", "e", "f"];
const langs = ids.map(() => "python");
// a and b share a prompt or code with training; c..f are unseen
const seen = new Set(["a", "b"]);

test("rates on the unseen pairs: their own n and Wilson interval, McNemar against the base on them only", () => {
  const outcomes = { ids, langs, preference: "110101", rule: "1-0-11" };
  // the base lists the same pairs in another order: matched by id
  // (f, e, d, c, b, a): by id a 0, b 0, c 1, d 0, e no verdict, f 0
  const base = { ids: [...ids].reverse(), langs, rule: "0-0100" };
  const u = unseenSecurity(outcomes, seen, base);
  assert.equal(u.n, 4);
  // preference on c..f: 0,1,0,1 = 2 of 4
  assert.equal(u.securePreference!.n, 4);
  assert.equal(u.securePreference!.value, 0.5);
  const [lo, hi] = wilson(2, 4);
  close(u.securePreference!.low, lo);
  close(u.securePreference!.high, hi);
  close(lo, 0.15004, 1e-4); // by hand: centre 0.5, half-width 0.99979 × √(0.0625 + 0.060023) = 0.34996
  // rule on c..f: 0, -, 1, 1 = 2 of 3 (d has no code block)
  assert.equal(u.safeRate!.rule!.n, 3);
  close(u.safeRate!.rule!.value, 2 / 3);
  const [rlo, rhi] = wilson(2, 3);
  close(u.safeRate!.rule!.low, rlo);
  close(u.safeRate!.rule!.high, rhi);
  assert.equal(u.safeRate!.llm, undefined);
  // McNemar, base → this, on unseen pairs with both verdicts: c 1→0 (b10), e base "-" (out), f 0→1 (b01); d no
  // verdict here (out); a and b seen (out, though a is 0→1): b01 1, b10 1, exact p = 2 × P(X ≤ 1 | n = 2) = 1
  assert.deepEqual(u.mcnemarVsBase!.rule, { b01: 1, b10: 1, pValue: 1, test: "exact-binomial" });
});

test("with no pair seen, the unseen figures are the full ones; with all seen, nothing is left", () => {
  const outcomes = { ids, langs, preference: "110101" };
  const all = unseenSecurity(outcomes, new Set(), undefined);
  assert.equal(all.n, 6);
  assert.equal(all.securePreference!.value, 4 / 6);
  assert.equal(all.mcnemarVsBase, undefined);
  const none = unseenSecurity(outcomes, new Set(ids), undefined);
  assert.deepEqual(none, { n: 0 });
});

test("pairs that name their task: the interval is Wilson on the tasks' effective n (design effect by hand)", () => {
  // unseen c,d in task t1 (both secure), e,f in t2 (neither): p = 1/2, Σ(s_k − p m_k)² = 1 + 1 = 2,
  // deff = (2 / 4) / (1/4) = 2, so Wilson at p = 1/2 on n_eff = 2
  const outcomes = { ids, langs, groups: ["t0", "t0", "t1", "t1", "t2", "t2"], preference: "001100" };
  const r = subsetRate(outcomes, outcomes.preference, (i) => !seen.has(ids[i]!))!;
  assert.equal(r.n, 4);
  assert.equal(r.value, 0.5);
  const [lo, hi] = wilson(1, 2);
  close(r.low, lo);
  close(r.high, hi);
  close(lo, 0.0945, 1e-4);
});

function cell(method: Method, seed: number, outcomes: { preference?: string; rule?: string }): CellResult {
  const base = handMadeResults().cells[0]!;
  return { ...base, id: `${method}-${seed}`, method, seed, outcomes: { ids, langs, ...outcomes } };
}

test("the report's tables: rates beside the full ones, and the paired tests on the unseen pairs", () => {
  const cells = withUnseen(
    [cell("base", 0, { preference: "000000" }), cell("goodvibe", 0, { preference: "110011" })],
    ["a", "b"],
  );
  const json = {
    name: "t",
    createdAt: "2026-01-01",
    machine: "m",
    evaluation: {
      protocol: "all 6",
      promptFilter: "none",
      maxPrompts: 0,
      maxNewTokens: 8,
      trainOverlap: { n: 6, pairs: 2, questions: 1, code: 1, seenIds: ["a", "b"] },
    },
    cells,
  };
  const r = parseExperimentResults(JSON.parse(JSON.stringify(json)), "hand-made");
  assert.ok(hasUnseen(r));
  const gv = r.cells.find((c) => c.method === "goodvibe")!;
  // unseen c..f: 0,0,1,1
  assert.equal(gv.security.unseen!.securePreference!.value, 0.5);
  assert.equal(gv.security.unseen!.securePreference!.n, 4);
  const t13 = unseenSecurityTable(r);
  assert.equal(t13.rows.length, 2);
  const pref = t13.columns.findIndex((c) => c.header === "Secure preference, unseen");
  const row = t13.rows[1]!;
  assert.equal(row[pref]!.kind === "number" && row[pref]!.value, 0.5);
  // the paired test on c..f only: base 0,0,0,0 → 0,0,1,1: b01 2, b10 0, exact p = 2 × (1/2)² = 0.5; all pairs
  // give b01 4 (a, b, e, f)
  const [c] = pairedComparisons(r, { exclude: new Set(["a", "b"]) }).filter(
    (x) => x.measure === "preference",
  );
  assert.deepEqual(
    c!.tests.map((t) => [t.n, t.b01, t.b10, t.pValue]),
    [[4, 2, 0, 0.5]],
  );
  const [full] = pairedComparisons(r).filter((x) => x.measure === "preference");
  assert.equal(full!.tests[0]!.b01, 4);
  const t14 = unseenPairedTable(r);
  assert.equal(t14.rows.length, 1);
  // left out: a and b of the 6 pairs the outcomes cover; every prompt answered, so no second count
  assert.match(t14.howToRead, /; 2 of the 6 held-out pairs left out\)/);
  assert.match(
    t13.howToRead,
    /with any pair of the experiment's training file \(all of it, .*; 2 of the 6 held-out pairs left out\)/,
  );
  assert.ok(reportNotes(r).some((n) => /Tables 13 and 14 .* \(2 of the 6 held-out pairs left out\)/.test(n)));
  // a prompt budget: 4 of the 6 answered, 1 of them seen; the safe rates' n are of those 4
  const budget = JSON.parse(JSON.stringify(json));
  budget.evaluation.trainOverlap = { n: 4, pairs: 1, questions: 1, code: 0, seenIds: ["a", "b"] };
  const rb = parseExperimentResults(budget, "budget");
  assert.match(
    unseenSecurityTable(rb).howToRead,
    /; 2 of the 6 held-out pairs left out; 1 of the 4 prompts answered for the safe rates\)/,
  );
  // results written before the unseen figures: they load, and the report has no such tables
  const old = JSON.parse(JSON.stringify(json));
  delete old.evaluation.trainOverlap.seenIds;
  for (const c of old.cells) delete c.security.unseen;
  assert.equal(hasUnseen(parseExperimentResults(old, "old.json")), false);
});
