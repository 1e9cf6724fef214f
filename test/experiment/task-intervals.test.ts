import { test } from "node:test";
import assert from "node:assert/strict";
import { withTaskIntervals } from "../../src/recipes/outcomes.js";
import { wilsonInterval } from "../../src/eval/metrics.js";
import { cellResultSchema, type CellResult, type Outcomes } from "../../src/report/schema.js";
import type { SecurityPair } from "../../src/data/pairs.js";

const close = (a: number, b: number, tol = 1e-4) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

// 4 tasks (templates) of 3 generated prompts each; the prompts of a task get the same verdict, 2 tasks secure:
// 6 of 12 items, but 4 independent outcomes. Wilson of 2 of 4 (z = 1.96) is [0.1500, 0.8500]; of 6 of 12, [0.2538, 0.7462].
const pairs: SecurityPair[] = Array.from({ length: 12 }, (_, i) => ({
  id: `p${i}`,
  lang: "python",
  question: "q",
  chosen: "c",
  rejected: "r",
  cwe: "CWE-89",
  task: `t${Math.floor(i / 3)}`,
}));
const marks = pairs.map((_, i) => (Math.floor(i / 3) < 2 ? "1" : "0")).join("");
const outcomes: Outcomes = {
  ids: pairs.map((p) => p.id),
  langs: pairs.map((p) => p.lang),
  groups: pairs.map((p) => `python:${p.task}`),
  preference: marks,
  rule: marks,
};
const w = wilsonInterval(6, 12);
const rate = { value: 0.5, low: w.low, high: w.high, n: 12 };
const security = (): CellResult["security"] => ({
  securePreference: {
    rate: { value: 0.5, low: w.low, high: w.high },
    meanLossGap: { value: 0.1, low: 0, high: 0.2 },
    n: 12,
    perLanguage: { python: { rate: { value: 0.5, low: w.low, high: w.high }, n: 12 } },
  },
  safeRate: {
    rule: { overall: { ...rate }, perLanguage: { python: { ...rate } }, perCwe: { "CWE-89": { ...rate } } },
  },
});

test("pairs with tasks: every rate's interval is Wilson on the tasks' effective n, and the cell says so", () => {
  close(w.low, 0.2538);
  close(w.high, 0.7462);
  const s = withTaskIntervals(security(), outcomes, pairs);
  assert.equal(s.intervals, "wilson-task-design-effect");
  const rates = [
    s.securePreference!.rate,
    s.securePreference!.perLanguage.python!.rate,
    s.safeRate!.rule!.overall,
    s.safeRate!.rule!.perLanguage.python!,
    s.safeRate!.rule!.perCwe!["CWE-89"]!,
  ];
  for (const r of rates) {
    assert.equal(r.value, 0.5);
    close(r.low, 0.15);
    close(r.high, 0.85);
  }
  assert.deepEqual(s.securePreference!.meanLossGap, { value: 0.1, low: 0, high: 0.2 });
  // what results.json holds passes its schema
  const cell = {
    id: "x",
    model: "m",
    method: "base",
    seed: 0,
    params: { trainable: 0, total: 1 },
    cost: {
      flopsForward: 0,
      flopsBackward: 0,
      flopsTotal: 0,
      wallSeconds: 0,
      flopsPerSecond: 0,
      peakMemoryBytes: 0,
    },
    security: s,
    outcomes,
  };
  assert.equal(cellResultSchema.safeParse(cell).success, true);
});

test("pairs without tasks (CyberNative) keep the items' Wilson intervals and no interval record", () => {
  const { groups: _g, ...noGroups } = outcomes;
  const before = security();
  const s = withTaskIntervals(
    before,
    noGroups,
    pairs.map(({ task: _t, ...p }) => p),
  );
  assert.equal(s.intervals, undefined);
  assert.deepEqual(s, security());
});

test("singleton tasks give the items' Wilson interval", () => {
  const singles = { ...outcomes, groups: pairs.map((p) => `python:${p.id}`) };
  const s = withTaskIntervals(security(), singles, pairs);
  assert.equal(s.intervals, "wilson-task-design-effect");
  close(s.safeRate!.rule!.overall.low, w.low, 1e-12);
  close(s.safeRate!.rule!.overall.high, w.high, 1e-12);
});

test("outcomes that do not recount the recorded rate leave the whole cell on Wilson", () => {
  const off = security();
  off.safeRate!.rule!.perCwe!["CWE-89"]!.n = 11;
  const s = withTaskIntervals(off, outcomes, pairs);
  assert.equal(s.intervals, undefined);
  assert.deepEqual(s.securePreference!.rate, { value: 0.5, low: w.low, high: w.high });
});
