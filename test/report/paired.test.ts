/**
 * Paired tests between settings from per-item outcomes, checked against hand counts: the rates and their
 * seed-averaged difference, McNemar's discordant counts and exact p-values, items without a verdict left out,
 * seeds paired by number (the base with every seed), per-language rows, and the cluster bootstrap (an interval
 * that collapses when every task moves alike; tasks, not items, as the resampling unit).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { comparisonPairs, pairedComparisons, pairedTables } from "../../src/report/paired.js";
import { tableToCsv, tableToMarkdown } from "../../src/report/table.js";
import { groupBySetting } from "../../src/report/aggregate.js";
import { parseExperimentResults, type CellResult, type Method } from "../../src/report/schema.js";
import { handMadeResults } from "./fixture.js";

const ids = Array.from({ length: 10 }, (_, i) => `p${i}`);
const langs = ids.map((_, i) => (i < 5 ? "cpp" : "go"));

function cell(
  method: Method,
  seed: number,
  outcomes: { preference?: string; rule?: string },
  ablation?: string,
): CellResult {
  const base = handMadeResults().cells[0]!;
  return {
    ...base,
    id: `${method}-${ablation ?? ""}-${seed}`,
    method,
    seed,
    ...(ablation ? { ablation } : {}),
    outcomes: { ids, langs, ...outcomes },
  };
}

function results(cells: CellResult[]) {
  return parseExperimentResults({ name: "t", createdAt: "2026-01-01", machine: "m", cells }, "hand-made");
}

test("base against a seeded method: rates, seed-averaged difference, McNemar per seed by hand", () => {
  // base: 2 of 10 secure; goodvibe seed 0: 7 of 10 (5 gains, 0 losses); seed 1: 6 of 10 (5 gains, 1 loss)
  const r = results([
    cell("base", 0, { preference: "1100000000" }),
    cell("goodvibe", 0, { preference: "1111111000" }),
    cell("goodvibe", 1, { preference: "0111111000" }),
  ]);
  const [c] = pairedComparisons(r, { iterations: 500 }).filter((x) => x.measure === "preference");
  assert.ok(c);
  assert.equal(c.a, "Base");
  assert.equal(c.b, "GoodVibe");
  assert.equal(c.rateA, 0.2);
  assert.ok(Math.abs(c.rateB - 0.65) < 1e-12);
  assert.ok(Math.abs(c.diff - 0.45) < 1e-12); // ((0.7 - 0.2) + (0.6 - 0.2)) / 2
  assert.deepEqual(
    c.tests.map((t) => [t.seed, t.n, t.b01, t.b10]),
    [
      [0, 10, 5, 0],
      [1, 10, 5, 1],
    ],
  );
  // exact two-sided binomial: 2 × P(X ≤ 0 | n = 5) = 2/32; 2 × P(X ≤ 1 | n = 6) = 2 × 7/64
  assert.ok(Math.abs(c.tests[0]!.pValue - 2 / 32) < 1e-12);
  assert.ok(Math.abs(c.tests[1]!.pValue - 14 / 64) < 1e-12);
  assert.equal(c.unit, "items");
  assert.equal(c.units, 10);
  assert.ok(c.low! <= c.diff && c.diff <= c.high!);
});

test("items without a verdict in either cell are left out; per-language rows use that language only", () => {
  const r = results([cell("base", 0, { rule: "0-00000000" }), cell("lora", 0, { rule: "11-1100000" })]);
  const cs = pairedComparisons(r, { iterations: 200, languages: true }).filter((x) => x.measure === "rule");
  const all = cs.find((x) => x.language === "all")!;
  assert.equal(all.tests[0]!.n, 8);
  assert.equal(all.rateA, 0);
  assert.equal(all.rateB, 3 / 8);
  const cpp = cs.find((x) => x.language === "cpp")!;
  assert.equal(cpp.tests[0]!.n, 3); // p0, p3, p4
  assert.equal(cpp.rateB, 3 / 3);
  const go = cs.find((x) => x.language === "go")!;
  assert.equal(go.tests[0]!.n, 5);
  assert.equal(go.rateB, 0);
  assert.equal(go.diff, 0);
  assert.equal(go.low, 0);
  assert.equal(go.high, 0);
});

test("seeded settings pair seed with seed; a seed only one side has is not paired", () => {
  const r = results([
    cell("goodvibe", 0, { preference: "0000000000" }),
    cell("goodvibe", 1, { preference: "0000000000" }),
    cell("lora", 1, { preference: "1111100000" }),
    cell("lora", 2, { preference: "1111111111" }),
  ]);
  const c = pairedComparisons(r, { iterations: 200 }).find((x) => x.measure === "preference")!;
  assert.deepEqual(
    c.tests.map((t) => t.seed),
    [1],
  );
  assert.equal(c.diff, 0.5);
});

test("a trained setting run with one seed pairs seed with seed, not with every seed (only the base is evaluated once)", () => {
  // GoodVibe with three seeds; its no-cluster ablation with seed 0 only; LoRA with seed 5 only
  const r = results([
    cell("goodvibe", 0, { preference: "1111100000" }),
    cell("goodvibe", 1, { preference: "1111111100" }),
    cell("goodvibe", 2, { preference: "1111111111" }),
    cell("goodvibe", 0, { preference: "1100000000" }, "no-cluster"),
    cell("lora", 5, { preference: "1111111111" }),
  ]);
  const cs = pairedComparisons(r, { iterations: 200 }).filter((x) => x.measure === "preference");
  const ablation = cs.find((x) => x.b === "GoodVibe [no-cluster]")!;
  // seed 0 only: GoodVibe 5 of 10 against 2 of 10, B − A = 0.2 − 0.5; 3 losses, no gain
  assert.deepEqual(
    ablation.tests.map((t) => [t.seed, t.b01, t.b10]),
    [[0, 0, 3]],
  );
  assert.ok(Math.abs(ablation.diff - -0.3) < 1e-12);
  assert.equal(ablation.rateA, 0.5);
  // GoodVibe and LoRA share no seed: no comparison
  assert.equal(
    cs.find((x) => x.a === "GoodVibe" && x.b === "LoRA"),
    undefined,
  );
});

test("cluster bootstrap: tasks are the unit; when every task moves alike the interval is that one value", () => {
  const groups = ids.map((_, i) => `t${Math.floor(i / 2)}`); // 5 tasks of 2 instances
  const mk = (method: Method, pref: string): CellResult => {
    const c = cell(method, 0, { preference: pref });
    return { ...c, outcomes: { ...c.outcomes!, groups } };
  };
  // every task: one instance gains, one stays insecure → each task's difference is +0.5
  const r = results([mk("base", "0000000000"), mk("full", "1010101010")]);
  const c = pairedComparisons(r, { iterations: 300 }).find((x) => x.measure === "preference")!;
  assert.equal(c.unit, "tasks");
  assert.equal(c.units, 5);
  assert.equal(c.diff, 0.5);
  assert.equal(c.low, 0.5);
  assert.equal(c.high, 0.5);
  // tasks that differ: the interval opens up and holds the estimate
  const r2 = results([mk("base", "0000000000"), mk("full", "1111000000")]);
  const c2 = pairedComparisons(r2, { iterations: 2000 }).find((x) => x.measure === "preference")!;
  assert.equal(c2.diff, 0.4);
  assert.ok(c2.low! < 0.4 && c2.high! > 0.4 && c2.low! >= 0 && c2.high! <= 1);
});

test("which settings are paired: each against the base, methods with each other, GoodVibe with its ablations", () => {
  const o = { preference: "0000000000" };
  const r = results([
    cell("base", 0, o),
    cell("goodvibe", 0, o),
    cell("lora", 0, o),
    cell("full", 0, o),
    cell("goodvibe", 0, o, "no-cluster"),
    cell("goodvibe", 0, o, "topk=10"),
  ]);
  const names = comparisonPairs(groupBySetting(r.cells)).map(
    ([a, b]) => `${a.method}${a.ablation ?? ""}>${b.method}${b.ablation ?? ""}`,
  );
  assert.deepEqual(names, [
    "base>goodvibe",
    "base>goodvibeno-cluster",
    "base>goodvibetopk=10",
    "base>lora",
    "base>full",
    "goodvibe>lora",
    "goodvibe>full",
    "lora>full",
    "goodvibe>goodvibeno-cluster",
    "goodvibe>goodvibetopk=10",
  ]);
  const [overall, perLang] = pairedTables(r);
  assert.equal(overall!.rows.length, names.length); // one measure recorded
  assert.equal(perLang!.rows.length, 2 * names.length);
});

test("results without per-item outcomes give no paired rows", () => {
  assert.deepEqual(pairedComparisons(handMadeResults()), []);
});

test("a bootstrap over one task gives no interval, and under 10 tasks the table says the interval is too narrow", () => {
  // one task of 10 instances: every resample is that task, so the percentile interval is the estimate itself
  // ('+50.0 pp [50.0, 50.0]' read as exact in a real report's per-language rows); the difference stays, the
  // interval goes, and the table says why
  const one = ids.map(() => "t0");
  const mk = (method: Method, pref: string, groups: string[]): CellResult => {
    const c = cell(method, 0, { preference: pref });
    return { ...c, outcomes: { ...c.outcomes!, groups } };
  };
  const r = results([mk("base", "0000000000", one), mk("full", "1111100000", one)]);
  const c = pairedComparisons(r, { iterations: 300 }).find((x) => x.measure === "preference")!;
  assert.equal(c.units, 1);
  assert.equal(c.diff, 0.5);
  assert.equal(c.low, undefined);
  assert.equal(c.high, undefined);
  const md = tableToMarkdown(pairedTables(r)[0]!);
  const row = md.split("\n").find((l) => l.includes("| secure preference |"))!;
  assert.match(row, /\| \+50\.0 pp \| 1 task: no interval \|/);
  assert.ok(!row.includes("["), row);
  // 5 tasks (fewer than 10): the interval is kept and flagged; 10 items (no tasks named): plain
  const five = ids.map((_, i) => `t${Math.floor(i / 2)}`);
  const r5 = results([mk("base", "0000000000", five), mk("full", "1111000000", five)]);
  const row5 = tableToMarkdown(pairedTables(r5)[0]!)
    .split("\n")
    .find((l) => l.includes("| secure preference |"))!;
  assert.match(
    row5,
    /\| \+40\.0 pp \[[-\d.]+, [-\d.]+\] \| 5 tasks \(few: the interval understates the uncertainty\) \|/,
  );
  const plain = results([
    cell("base", 0, { preference: "0000000000" }),
    cell("full", 0, { preference: "1111000000" }),
  ]);
  const rowPlain = tableToMarkdown(pairedTables(plain)[0]!)
    .split("\n")
    .find((l) => l.includes("| secure preference |"))!;
  assert.match(rowPlain, /\| 10 items \|/);
});

test("the paired tables' CSV names each column once (the settings A and B, then their rates)", () => {
  const r = results([
    cell("base", 0, { preference: "0000000000" }),
    cell("full", 0, { preference: "1111000000" }),
  ]);
  for (const t of pairedTables(r)) {
    const header = tableToCsv(t).split("\r\n")[0]!.split(",");
    assert.equal(new Set(header).size, header.length, header.join(","));
  }
  const row = tableToCsv(pairedTables(r)[0]!).split("\r\n")[1]!.split(",");
  // Rate A 0/10, Rate B 4/10 by hand
  assert.deepEqual(row.slice(1, 3), ["Base", "Full FT"]);
  assert.deepEqual(row.slice(6, 8), ["0", "0.4"]);
});

test("the bootstrap's resamples and seed are named in the how-to-read, and the report's bounds follow from them", () => {
  const r = results([
    cell("base", 0, { preference: "1100000000" }),
    cell("goodvibe", 0, { preference: "1111111000" }),
  ]);
  const [t10] = pairedTables(r);
  assert.match(t10!.howToRead, /2,000 resamples, generator seed 0/);
  const byDefault = pairedComparisons(r);
  assert.deepEqual(byDefault, pairedComparisons(r, { iterations: 2000, seed: 0 }));
});

test("n (paired) is each seed's count of items both settings have a verdict for: a range where the seeds differ", () => {
  // goodvibe seed 1 has no verdict on p8 and p9 (no code): 10 items paired in seed 0, 8 in seed 1
  const r = results([
    cell("base", 0, { rule: "1100000000" }),
    cell("goodvibe", 0, { rule: "1111111000" }),
    cell("goodvibe", 1, { rule: "01111110--" }),
  ]);
  const c = pairedComparisons(r).find((x) => x.measure === "rule")!;
  assert.deepEqual(
    c.tests.map((t) => t.n),
    [10, 8],
  );
  const row = tableToMarkdown(pairedTables(r)[0]!)
    .split("\n")
    .find((l) => l.includes("| safe rate (rule) |"))!;
  // not the rounded mean 9, which no seed has; the bootstrap resamples the 10 items either seed pairs
  assert.match(row, /\| 2 \| 8–10 \|.*\| 10 items \|/);
  // one seed, or seeds that agree: the count itself
  const one = results([cell("base", 0, { rule: "1100000000" }), cell("goodvibe", 0, { rule: "111111100-" })]);
  assert.match(
    tableToMarkdown(pairedTables(one)[0]!)
      .split("\n")
      .find((l) => l.includes("| safe rate (rule) |"))!,
    /\| 1 \| 9 \|/,
  );
});

test("a seed without per-item outcomes: the row says it rests on 1 of 2 seeds and a note names the cell left out", () => {
  // goodvibe seed 1 was computed before outcomes were recorded (reused on resume): only seed 0 pairs with the base
  const noOutcomes = cell("goodvibe", 1, {});
  delete noOutcomes.outcomes;
  const r = results([
    cell("base", 0, { preference: "1100000000" }),
    cell("goodvibe", 0, { preference: "1111111000" }),
    noOutcomes,
  ]);
  const [t10] = pairedTables(r);
  const md = tableToMarkdown(t10!);
  const row = md.split("\n").find((l) => l.includes("| secure preference |"))!;
  const cells = row.slice(2, -2).split(" | ");
  const col = (h: string) => cells[t10!.columns.findIndex((c) => c.header === h)]!;
  assert.equal(col("Seeds"), "1 of 2");
  // seed 0 alone: 0.7 − 0.2 = +50.0 pp, marked as Table 1 marks a number only some seeds have
  assert.match(col("B − A"), /^\+50\.0 pp .*\(1\/2 seeds\)$/);
  assert.deepEqual(t10!.notes.length, 1);
  assert.match(
    t10!.notes[0]!,
    /^Left out: tiny-coder GoodVibe seed 1 \(goodvibe--1\), without per-item outcomes/,
  );
  // every seed with outcomes: no mark and no note
  const whole = pairedTables(
    results([
      cell("base", 0, { preference: "1100000000" }),
      cell("goodvibe", 0, { preference: "1111111000" }),
      cell("goodvibe", 1, { preference: "0111111000" }),
    ]),
  )[0]!;
  assert.deepEqual(whole.notes, []);
  assert.doesNotMatch(tableToMarkdown(whole), / of 2 |seeds\)/);
});
