/**
 * Table cells of the hand-made results against numbers worked out by hand from the fixture
 * (see test/report/fixture.ts for the inputs).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ablationTable,
  clusterTable,
  costTable,
  cweTable,
  judgeTable,
  securityTable,
  studyTable,
  utilityTable,
} from "../../src/report/paper-tables.js";
import { tableToCsv, tableToMarkdown } from "../../src/report/table.js";
import type { ExperimentResults } from "../../src/report/schema.js";
import { summariseSafety, type SafetyItem } from "../../src/eval/safety.js";
import { handMadeResults, iv, MODEL } from "./fixture.js";
import { encodeScores } from "../../src/eval/utility/items.js";
import { meanStderr } from "../../src/eval/utility/model.js";
import { parseExperimentResults } from "../../src/report/schema.js";
import { cellOf, parseCsv, parseMarkdownTable } from "./parse.js";
import { LOSS_BASE, LOSS_MODEL } from "../utility/pair-losses.js";
import { CODE_DOCS, CODE_SUMS_BASE, CODE_SUMS_MODEL, CODE_TOKENS } from "../utility/code-losses.js";
import { codeLossFromSums } from "../../src/eval/utility/code-loss.js";

const results = handMadeResults();
const close = (actual: string, expected: number, tol = 1e-9) =>
  assert.ok(Math.abs(Number(actual) - expected) < tol, `expected ${expected}, got "${actual}"`);

test("T1: mean ± sd and the interval over items across two seeds, single-seed intervals, and — for missing data", () => {
  const md = parseMarkdownTable(tableToMarkdown(securityTable(results)));
  // Two seeds: ± the sd across seeds (training noise) and in brackets the 95% interval over the evaluation's items,
  // the seeds' bounds averaged (evaluation noise; the fixture's intervals are value ± 0.15, clipped to [0, 1]).
  // GoodVibe rule: seeds 0.70 [0.55, 0.85] and 0.80 [0.65, 0.95] -> mean 0.75, sd = 0.1/√2 = 0.0707, [0.60, 0.90].
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "all"], "Safe rate (rule)"), "75.0% ± 7.1 sd [60.0, 90.0]");
  // GoodVibe rule cpp: 0.60, 0.70 -> 65.0% [50.0, 80.0]; java: 0.80, 0.90 -> 85.0%, highs 0.95 and 1 (clipped) ->
  // [70.0, 97.5].
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "cpp"], "Safe rate (rule)"), "65.0% ± 7.1 sd [50.0, 80.0]");
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "java"], "Safe rate (rule)"), "85.0% ± 7.1 sd [70.0, 97.5]");
  // LoRA rule: 0.60, 0.64 -> 0.62, sd = 0.04/√2 = 0.0283, [0.47, 0.77].
  assert.equal(cellOf(md, [MODEL, "LoRA", "all"], "Safe rate (rule)"), "62.0% ± 2.8 sd [47.0, 77.0]");
  // LoRA has no rule result for java in either seed.
  assert.equal(cellOf(md, [MODEL, "LoRA", "java"], "Safe rate (rule)"), "—");
  assert.equal(cellOf(md, [MODEL, "LoRA", "java"], "n (rule)"), "—");
  // LoRA LLM judge: only seed 1 (0.65, interval ±0.15) -> its own interval, marked 1 of 2 seeds.
  assert.equal(cellOf(md, [MODEL, "LoRA", "all"], "Safe rate (LLM)"), "65.0% [50.0, 80.0] (1/2 seeds)");
  // Base LLM: both seeds 0.5. This once read "50.0%" (a zero spread was hidden, as for parameter counts), which
  // reads as an exact figure; two seeds that agree on a rate measured on 40 programs say nothing of its evaluation
  // noise, so the zero spread and the interval over items are shown.
  assert.equal(cellOf(md, [MODEL, "Base", "all"], "Safe rate (LLM)"), "50.0% ± 0.0 sd [35.0, 65.0]");
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "all"], "Secure preference"), "85.0% ± 7.1 sd [70.0, 97.5]");
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "all"], "n (rule)"), "40");
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "cpp"], "n (pairs)"), "30");
  assert.equal(cellOf(md, [MODEL, "Full FT", "all"], "Seeds"), "2");
  // The ablation is not a row of T1.
  assert.equal(md.rows.length, 4 * 3);

  const csv = parseCsv(tableToCsv(securityTable(results)));
  close(cellOf(csv, [MODEL, "GoodVibe", "all"], "Safe rate (rule)"), 0.75);
  close(cellOf(csv, [MODEL, "GoodVibe", "all"], "Safe rate (rule) sd"), 0.1 / Math.SQRT2);
  close(cellOf(csv, [MODEL, "GoodVibe", "all"], "Safe rate (rule) low"), 0.6);
  close(cellOf(csv, [MODEL, "GoodVibe", "all"], "Safe rate (rule) high"), 0.9);
  close(cellOf(csv, [MODEL, "Base", "all"], "Safe rate (LLM) sd"), 0);
  close(cellOf(csv, [MODEL, "LoRA", "all"], "Safe rate (LLM) low"), 0.5);
  close(cellOf(csv, [MODEL, "LoRA", "all"], "Safe rate (LLM) high"), 0.8);
  assert.equal(cellOf(csv, [MODEL, "LoRA", "all"], "Safe rate (LLM) sd"), "");
  assert.equal(cellOf(csv, [MODEL, "LoRA", "java"], "Safe rate (rule)"), "");
});

test("T1: a single seed shows the runner's interval", () => {
  const one: ExperimentResults = { ...results, cells: results.cells.filter((c) => c.seed === 1) };
  const md = parseMarkdownTable(tableToMarkdown(securityTable(one)));
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "all"], "Safe rate (rule)"), "70.0% [55.0, 85.0]");
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "all"], "Seeds"), "1");
});

test("T2: parameter and FLOP ratios to full fine-tuning", () => {
  const table = costTable(results);
  const md = parseMarkdownTable(tableToMarkdown(table));
  // The base model is not trained: no row.
  assert.ok(!md.rows.some((r) => r[1] === "Base"));
  // 2,000 of 1,000,000 parameters, as a share of the model and of full fine-tuning.
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "Trainable params"), "2,000");
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "Trainable share"), "0.200%");
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "Trainable vs full FT"), "0.200%");
  assert.equal(cellOf(md, [MODEL, "LoRA"], "Trainable vs full FT"), "1.00%");
  assert.equal(cellOf(md, [MODEL, "Full FT"], "Trainable vs full FT"), "100%");
  // GoodVibe FLOPs: mean(1.0e12, 1.2e12) = 1.1e12; / 6e12 = 18.33%. LoRA 3e12 / 6e12 = 50%.
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "FLOPs total"), "1.10e+12 ± 1.4e+11 sd");
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "FLOPs vs full FT"), "18.3%");
  assert.equal(cellOf(md, [MODEL, "LoRA"], "FLOPs vs full FT"), "50.0%");
  // Wall time: 100 s and 120 s -> 110 ± 14.1 s.
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "Wall time"), "110 s ± 14 sd");
  // measured numbers keep a zero spread in sight, as rates do (156b880): LoRA's two seeds both took 300 s and
  // 3e12 FLOPs (1e10 FLOP/s), every run peaked at 2 GiB; the counted FLOPs, exact, leave their zero out
  assert.equal(cellOf(md, [MODEL, "LoRA"], "Wall time"), "300 s ± 0.0 sd");
  assert.equal(cellOf(md, [MODEL, "LoRA"], "Throughput (FLOP/s)"), "1.00e+10 ± 0.0e+0 sd");
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "Peak host memory"), "2.00 GiB ± 0.00 sd");
  assert.equal(cellOf(md, [MODEL, "LoRA"], "FLOPs total"), "3.00e+12");
  assert.equal(cellOf(md, [MODEL, "LoRA"], "Trainable params"), "10,000");
  const csv = parseCsv(tableToCsv(table));
  close(cellOf(csv, [MODEL, "GoodVibe"], "FLOPs vs full FT"), 1.1 / 6);
  close(cellOf(csv, [MODEL, "GoodVibe"], "FLOPs total sd"), 0.2e12 / Math.SQRT2);
});

test("T2: the trainer-style 6·N·D beside the counted FLOPs, — for results recorded before it", () => {
  const r = handMadeResults();
  const col = "FLOPs 6·N·D (trainers' estimate)";
  assert.equal(cellOf(parseMarkdownTable(tableToMarkdown(costTable(r))), [MODEL, "GoodVibe"], col), "—");
  for (const c of r.cells) if (c.method === "goodvibe") c.cost.flopsTrainerEstimate = 3e12 + c.seed * 1e12;
  const table = costTable(r);
  // seeds 1 and 2: 4e12 and 5e12 -> 4.5e12 ± 0.71e12
  assert.equal(
    cellOf(parseMarkdownTable(tableToMarkdown(table)), [MODEL, "GoodVibe"], col),
    "4.50e+12 ± 7.1e+11 sd",
  );
  assert.match(table.howToRead, /6·N·D/);
  // the table says what ± is, that a measured zero spread is shown and why a counted one is not
  assert.match(
    table.howToRead,
    /Wall time, throughput and peak memory are measured: their spread is shown even when 0\.0/,
  );
  assert.match(
    table.howToRead,
    /Parameters and FLOPs are counted, .* a spread of zero is not shown for them/,
  );
  // and why the two differ (README, "Cost"): frozen weights' gradients, lm_head, attention, checkpointing
  for (const why of [/frozen weights/, /lm_head only where a loss is taken/, /attention/, /checkpointing/])
    assert.match(table.howToRead, why);
});

test("T2: without a full fine-tuning run the ratios are — and a note says why", () => {
  const noFull: ExperimentResults = { ...results, cells: results.cells.filter((c) => c.method !== "full") };
  const table = costTable(noFull);
  const md = parseMarkdownTable(tableToMarkdown(table));
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "FLOPs vs full FT"), "—");
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "Trainable vs full FT"), "—");
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "Trainable share"), "0.200%");
  assert.match(table.notes.join(" "), /No full fine-tuning cell for tiny-coder/);
});

test("T3: a share of items scored 0 or 1 gets its Wilson interval, not a point at 0 of n", () => {
  const r = handMadeResults();
  r.cells = r.cells.filter((c) => !c.ablation && (c.method === "base" || c.method === "goodvibe"));
  // GSM8K strict exact match on 20 items: base 0 of 20 in one evaluation (se 0), GoodVibe 3 and 5 of 20
  const gsm = (k: number) => ({
    metric: "exact_match_strict",
    value: k / 20,
    stderr: meanStderr(Array.from({ length: 20 }, (_, i) => (i < k ? 1 : 0))),
    n: 20,
  });
  r.cells = r.cells.filter((c) => c.method !== "base" || c.seed === 1);
  for (const c of r.cells) c.utility = { gsm8k: gsm(c.method === "base" ? 0 : c.seed === 1 ? 3 : 5) };
  const md = parseMarkdownTable(tableToMarkdown(utilityTable(r)));
  const value = (m: string) => cellOf(md, [MODEL, "gsm8k", "exact_match_strict", m], "Value");
  // Wilson, closed form: 0/20 [0, 0.161125]; 3/20 [0.052369, 0.360419]; 5/20 [0.111862, 0.468701]
  assert.equal(value("Base"), "0.0% [0.0, 16.1]");
  // two seeds: mean 20.0%, sd of (15%, 25%) 7.07 pp, bounds averaged [8.21, 41.46]
  assert.equal(value("GoodVibe"), "20.0% ± 7.1 sd [8.2, 41.5]");
  // the CSV keeps the one seed's se and the bounds
  const csv = parseCsv(tableToCsv(utilityTable(r)));
  const row = [MODEL, "gsm8k", "exact_match_strict", "Base"];
  assert.equal(cellOf(csv, row, "Value se"), "0");
  assert.ok(Math.abs(Number(cellOf(csv, row, "Value high")) - 0.161125) < 1e-6);
});

test("T3: utility means and deltas vs base, rates in pp and losses raw", () => {
  const table = utilityTable(results);
  const md = parseMarkdownTable(tableToMarkdown(table));
  const arc = (m: string, col: string) => cellOf(md, [MODEL, "arc_challenge", "acc_norm", m], col);
  // Two seeds: ± the sd across seeds, and the brackets the 95% interval over items, mean ± 1.96 × the seeds'
  // mean se. arc (se 0.014 everywhere): ± 1.96·0.014 = 2.74 pp.
  // arc: base mean(0.50, 0.52) = 0.51, sd 0.0141; GoodVibe mean(0.49, 0.53) = 0.51, sd 0.0283; LoRA 0.48; full 0.45.
  assert.equal(arc("Base", "Value"), "51.0% ± 1.4 sd [48.3, 53.7]");
  assert.equal(arc("Base", "Δ vs base"), "—");
  assert.equal(arc("GoodVibe", "Value"), "51.0% ± 2.8 sd [48.3, 53.7]");
  // Δ: its interval over items is Δ ± 1.96·√(0.014² + 0.014²) = ± 3.88 pp; its ± is the sd of the per-seed
  // differences (each seed against the base of the same seed): GoodVibe -0.01, +0.01 -> sd 0.0141.
  assert.equal(arc("GoodVibe", "Δ vs base"), "0.0 pp ± 1.4 sd [-3.9, 3.9]");
  // LoRA -0.03 in both seeds: the seeds agree, which is shown (± 0.0 sd), not hidden; full -0.06 in both.
  assert.equal(arc("LoRA", "Δ vs base"), "-3.0 pp ± 0.0 sd [-6.9, 0.9]");
  assert.equal(arc("Full FT", "Δ vs base"), "-6.0 pp ± 0.0 sd [-9.9, -2.1]");
  // gsm8k (se 0.012: ± 2.35 pp for a value): base 0.31; GoodVibe 0.32 -> +1.0 pp in both seeds,
  // ± 1.96·√(2·0.012²) = 3.33 pp; LoRA 0.28 in both seeds (a spread of 0.0, shown); full has none.
  const gsm = (m: string, col: string) => cellOf(md, [MODEL, "gsm8k", "exact_match", m], col);
  assert.equal(gsm("GoodVibe", "Δ vs base"), "+1.0 pp ± 0.0 sd [-2.3, 4.3]");
  assert.equal(gsm("LoRA", "Value"), "28.0% ± 0.0 sd [25.6, 30.4]");
  assert.equal(gsm("Full FT", "Value"), "—");
  assert.equal(gsm("Full FT", "Δ vs base"), "—");
  assert.equal(gsm("Full FT", "n"), "—");
  // Loss (se 0.01: ± 0.0196 for a value, ± 0.0277 for Δ): base mean(1.20, 1.22) = 1.21; GoodVibe 1.19 ->
  // -0.020 (both seeds); full 1.11 -> -0.100 (both seeds).
  const loss = (m: string, col: string) => cellOf(md, [MODEL, "heldout_code_loss", "loss", m], col);
  assert.equal(loss("GoodVibe", "Value"), "1.190 ± 0.014 sd [1.170, 1.210]");
  assert.equal(loss("GoodVibe", "Δ vs base"), "-0.020 ± 0.000 sd [-0.048, 0.008]");
  assert.equal(loss("Full FT", "Δ vs base"), "-0.100 ± 0.000 sd [-0.128, -0.072]");
  assert.equal(arc("GoodVibe", "n"), "1,172");

  // the fixture is an older results.json: no per-item utility scores, so every Δ is unpaired, the column and a
  // note say so and why; its rates are not whole counts of n (0.49 of 1,172 items), so the normal form
  assert.equal(arc("GoodVibe", "Δ interval"), "unpaired (normal)");
  assert.equal(arc("Base", "Δ interval"), "—");
  assert.ok(
    table.notes.some((n) =>
      /^Δ's interval is unpaired in 8 row\(s\), .*"unpaired \(normal\)".*: neither side keeps per-item scores \(arc_challenge GoodVibe,/.test(
        n,
      ),
    ),
    table.notes.join("\n"),
  );
  assert.ok(!table.notes.some((n) => /is paired in/.test(n)));
  const csv = parseCsv(tableToCsv(table));
  close(cellOf(csv, [MODEL, "gsm8k", "exact_match", "GoodVibe"], "Δ vs base"), 0.01);
  close(cellOf(csv, [MODEL, "heldout_code_loss", "loss", "Full FT"], "Δ vs base"), -0.1);
  assert.equal(cellOf(csv, [MODEL, "gsm8k", "exact_match", "Full FT"], "Value"), "");
  // the CSV's raw bounds against the formula
  const half = 1.959963984540054 * Math.sqrt(2 * 0.014 ** 2);
  close(cellOf(csv, [MODEL, "arc_challenge", "acc_norm", "LoRA"], "Δ vs base low"), -0.03 - half);
  close(cellOf(csv, [MODEL, "arc_challenge", "acc_norm", "LoRA"], "Δ vs base high"), -0.03 + half);
  close(cellOf(csv, [MODEL, "arc_challenge", "acc_norm", "LoRA"], "Δ vs base sd"), 0);
  close(cellOf(csv, [MODEL, "arc_challenge", "acc_norm", "GoodVibe"], "Δ vs base sd"), 0.02 / Math.SQRT2);
  close(
    cellOf(csv, [MODEL, "arc_challenge", "acc_norm", "Base"], "Value low"),
    0.51 - 1.959963984540054 * 0.014,
  );
});

test("T3: with a base evaluated once, each seed's difference is taken against that one evaluation", () => {
  // the base's seed 2 removed: GoodVibe arc 0.49, 0.53 against 0.50 -> -0.01, +0.03: Δ +1.0 pp, sd 0.0283;
  // Δ's interval from both sides' se (0.014 each): ± 3.88 pp
  const oneBase: ExperimentResults = {
    ...results,
    cells: results.cells.filter((c) => !(c.method === "base" && c.seed === 2)),
  };
  const md = parseMarkdownTable(tableToMarkdown(utilityTable(oneBase)));
  assert.equal(
    cellOf(md, [MODEL, "arc_challenge", "acc_norm", "GoodVibe"], "Δ vs base"),
    "+1.0 pp ± 2.8 sd [-2.9, 4.9]",
  );
});

/**
 * Ten ARC items by hand (test/utility/items.test.ts): base 1111100000 (0.5); GoodVibe seed 1 1111110000 (0.6),
 * seed 2 1111111000 (0.7). Scores 0/1, so paired is Newcombe's interval (eval/metrics.ts): seed 1, table
 * [[5, 1], [0, 4]]: 0.1 in [−0.143406, 0.319857] (worked in test/metrics); seed 2, [[5, 2], [0, 3]], θ = 0.2:
 * A = 15 > 5, φ = (15 − 5)/√(7·3·5·5) = 10/√525 = 0.436436; Wilson 7/10 [0.396778, 0.892209], 5/10
 * [0.236593, 0.763407]: low = 0.2 − √(0.303222² + 0.263407² − 2φ·0.303222·0.263407) = 0.2 − √0.091610 =
 * −0.102671, high = 0.2 + √(0.263407² + 0.192209² − 2φ·0.263407·0.192209) = 0.2 + √0.062135 = 0.449268.
 * Unpaired seed 1: se_b² = 1/36, se_m² = 2/75, se 7/30.
 */
function withItems(items: { base: string; gv1: string; gv2: string }, baseSeeds: number[] = [1]) {
  const scores = {
    base: [1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    gv1: [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
    gv2: [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
  };
  const arc = (xs: number[], hash: string) => ({
    metric: "acc_norm",
    value: xs.reduce((a, b) => a + b, 0) / xs.length,
    stderr: meanStderr(xs),
    n: xs.length,
    perItem: encodeScores(hash, xs),
  });
  const cells = results.cells
    .filter(
      (c) =>
        c.ablation === undefined &&
        (c.method === "goodvibe" || (c.method === "base" && baseSeeds.includes(c.seed))),
    )
    .map((c) => {
      const which = c.method === "base" ? "base" : c.seed === 1 ? "gv1" : "gv2";
      return { ...c, utility: { arc_challenge: arc(scores[which], items[which]) } };
    });
  // through the schema, as a results.json would be read
  return parseExperimentResults(JSON.parse(JSON.stringify({ ...results, cells })), "results.json");
}

test("T3: with 0/1 per-item scores of the same items, Δ's interval is paired (Newcombe's), by hand", () => {
  // one seed each: Newcombe's [-0.143406, 0.319857]
  const one: ExperimentResults = withItems({ base: "h", gv1: "h", gv2: "h" });
  one.cells = one.cells.filter((c) => c.seed === 1);
  let table = utilityTable(one);
  let md = parseMarkdownTable(tableToMarkdown(table));
  const row = [MODEL, "arc_challenge", "acc_norm", "GoodVibe"];
  assert.equal(cellOf(md, row, "Δ vs base"), "+10.0 pp [-14.3, 32.0]");
  assert.equal(cellOf(md, row, "Δ interval"), "paired (Newcombe)");
  let csv = parseCsv(tableToCsv(table));
  close(cellOf(csv, row, "Δ vs base low"), -0.143406, 1e-5);
  close(cellOf(csv, row, "Δ vs base high"), 0.319857, 1e-5);
  assert.ok(
    table.notes.some((n) =>
      /^Δ's interval is paired in 1 row: .*for 0\/1 scores \(1 row, "paired \(Newcombe\)"\) Newcombe's/.test(
        n,
      ),
    ),
    table.notes.join("\n"),
  );
  assert.ok(!table.notes.some((n) => /unpaired in/.test(n)), table.notes.join("\n"));

  // two seeds against the base's one evaluation: each seed paired, the bounds averaged (intervalAcrossSeeds):
  // low (−0.143406 − 0.102671)/2 = −0.123039, high (0.319857 + 0.449268)/2 = 0.384563; ± the sd of 0.1 and 0.2
  // = 0.0707
  table = utilityTable(withItems({ base: "h", gv1: "h", gv2: "h" }));
  md = parseMarkdownTable(tableToMarkdown(table));
  assert.equal(cellOf(md, row, "Δ vs base"), "+15.0 pp ± 7.1 sd [-12.3, 38.5]");
  csv = parseCsv(tableToCsv(table));
  close(cellOf(csv, row, "Δ vs base low"), -0.123039, 1e-5);
  close(cellOf(csv, row, "Δ vs base high"), 0.384563, 1e-5);
  assert.equal(cellOf(md, row, "Δ interval"), "paired (Newcombe)");
});

test("T3: per-item scores of other items are never paired: unpaired (Newcombe's for 0/1), and the note says why", () => {
  const one: ExperimentResults = withItems({ base: "h", gv1: "other", gv2: "h" });
  one.cells = one.cells.filter((c) => c.seed === 1);
  const table = utilityTable(one);
  const md = parseMarkdownTable(tableToMarkdown(table));
  const row = [MODEL, "arc_challenge", "acc_norm", "GoodVibe"];
  // 6/10 − 5/10 as two independent proportions, Newcombe's hybrid score interval [-0.289794, 0.450890] (worked
  // in test/metrics); the normal form 0.1 ± z·7/30 was [-35.7, 55.7]
  assert.equal(cellOf(md, row, "Δ vs base"), "+10.0 pp [-29.0, 45.1]");
  assert.equal(cellOf(md, row, "Δ interval"), "unpaired (Newcombe)");
  const csv = parseCsv(tableToCsv(table));
  close(cellOf(csv, row, "Δ vs base low"), -0.289794, 1e-6);
  close(cellOf(csv, row, "Δ vs base high"), 0.45089, 1e-6);
  assert.ok(
    table.notes.some((n) =>
      /unpaired in 1 row\(s\).*"unpaired \(Newcombe\)".*the two sides scored different items \(arc_challenge GoodVibe\)/.test(
        n,
      ),
    ),
    table.notes.join("\n"),
  );
  // one seed of two that cannot be paired makes the whole cell unpaired (never a mix): each seed against the one
  // base by Newcombe's, 6/10 − 5/10 [-0.289794, 0.450890] and 7/10 − 5/10 [-0.201655, 0.526079] (Wilson 7/10
  // = (0.396778, 0.892209): 0.2 − √(0.303222² + 0.263407²), 0.2 + √(0.192209² + 0.263407²)), bounds averaged
  const mixed = utilityTable(withItems({ base: "h", gv1: "h", gv2: "other" }));
  assert.equal(cellOf(parseMarkdownTable(tableToMarkdown(mixed)), row, "Δ interval"), "unpaired (Newcombe)");
  const mixedCsv = parseCsv(tableToCsv(mixed));
  close(cellOf(mixedCsv, row, "Δ vs base low"), (-0.289794 - 0.201655) / 2, 1e-6);
  close(cellOf(mixedCsv, row, "Δ vs base high"), (0.45089 + 0.526079) / 2, 1e-6);
});

/**
 * The held-out code loss of one base and one GoodVibe evaluation with per-pair scores (test/utility/pair-losses.ts,
 * by hand there): paired −0.15 ± 0.126515 over 4 pairs, unpaired ± 0.527086 from the answers' se; `items` names
 * each side's pairs, `keep` false strips the record, as a results.json written before it was kept.
 */
function withPairLosses(items: { base: string; gv: string }, keep = true) {
  const loss = (pairs: [number, number][], hash: string) => {
    const answers = pairs.flat();
    return {
      metric: "nll/token",
      value: answers.reduce((a, b) => a + b, 0) / answers.length,
      stderr: meanStderr(answers),
      n: answers.length,
      ...(keep
        ? {
            perItem: encodeScores(
              hash,
              pairs.map(([c, r]) => (c + r) / 2),
              2,
            ),
          }
        : {}),
    };
  };
  const cells = results.cells
    .filter(
      (c) => c.ablation === undefined && c.seed === 1 && (c.method === "goodvibe" || c.method === "base"),
    )
    .map((c) => ({
      ...c,
      utility: {
        heldout_code_loss: c.method === "base" ? loss(LOSS_BASE, items.base) : loss(LOSS_MODEL, items.gv),
      },
    }));
  return parseExperimentResults(JSON.parse(JSON.stringify({ ...results, cells })), "results.json");
}

test("T3: the held-out code loss of the same pairs is paired per pair, narrower than unpaired; old files and other pairs fall back with the reason", () => {
  const row = [MODEL, "heldout_code_loss", "nll/token", "GoodVibe"];
  const Z = 1.959963984540054;
  let table = utilityTable(withPairLosses({ base: "pairs", gv: "pairs" }));
  let md = parseMarkdownTable(tableToMarkdown(table));
  let csv = parseCsv(tableToCsv(table));
  assert.equal(cellOf(md, row, "Δ vs base"), "-0.150 [-0.277, -0.023]");
  assert.equal(cellOf(md, row, "Δ interval"), "paired (normal)");
  close(cellOf(csv, row, "Δ vs base low"), -0.15 - (Z * Math.sqrt(0.05 / 3)) / 2);
  close(cellOf(csv, row, "Δ vs base high"), -0.15 + (Z * Math.sqrt(0.05 / 3)) / 2);
  // the n column still counts answers (8), the pairing is over the 4 pairs; the note says so
  assert.equal(cellOf(md, row, "n"), "8");
  assert.ok(
    table.notes.some((n) => /paired in 1 row: .*held-out code loss per held-out pair/.test(n)),
    table.notes.join("\n"),
  );
  const pairedWidth = Number(cellOf(csv, row, "Δ vs base high")) - Number(cellOf(csv, row, "Δ vs base low"));

  // a results.json written before the record was kept: unpaired, Δ ± Z·√(se_m² + se_b²) = ± Z·√(4.05/56)
  table = utilityTable(withPairLosses({ base: "pairs", gv: "pairs" }, false));
  md = parseMarkdownTable(tableToMarkdown(table));
  csv = parseCsv(tableToCsv(table));
  assert.equal(cellOf(md, row, "Δ vs base"), "-0.150 [-0.677, 0.377]");
  assert.equal(cellOf(md, row, "Δ interval"), "unpaired (normal)");
  close(cellOf(csv, row, "Δ vs base high"), -0.15 + Z * Math.sqrt(4.05 / 56));
  assert.ok(
    table.notes.some((n) =>
      /unpaired in 1 row\(s\).*neither side keeps per-item scores \(heldout_code_loss GoodVibe\)/.test(n),
    ),
    table.notes.join("\n"),
  );
  const unpairedWidth =
    Number(cellOf(csv, row, "Δ vs base high")) - Number(cellOf(csv, row, "Δ vs base low"));
  assert.ok(pairedWidth < unpairedWidth / 4, `paired ${pairedWidth}, unpaired ${unpairedWidth}`);

  // other pairs on the two sides (another items hash): unpaired, the same interval, and the note says why
  table = utilityTable(withPairLosses({ base: "pairs", gv: "other pairs" }));
  md = parseMarkdownTable(tableToMarkdown(table));
  assert.equal(cellOf(md, row, "Δ vs base"), "-0.150 [-0.677, 0.377]");
  assert.equal(cellOf(md, row, "Δ interval"), "unpaired (normal)");
  assert.ok(
    table.notes.some((n) => /the two sides scored different items \(heldout_code_loss GoodVibe\)/.test(n)),
    table.notes.join("\n"),
  );
});

/**
 * The held-out real-code loss of --code of one base and one GoodVibe evaluation, as codeLossFromSums writes it:
 * four documents by hand (test/utility/code-losses.ts): paired −0.125 ± 0.180312 over the documents, unpaired
 * ± 0.657772; `keep` false strips the record, as a results.json written before it was kept.
 */
function withRealCodeLosses(keep = true, baseMaxLength = 1024) {
  const loss = (sums: number[], maxLength: number) => {
    const r = codeLossFromSums(CODE_DOCS, sums, CODE_TOKENS, maxLength);
    return {
      metric: "nll/token",
      value: r.value,
      stderr: r.stderr,
      n: r.n,
      ...(keep ? { perItem: r.perItem } : {}),
    };
  };
  const cells = results.cells
    .filter(
      (c) => c.ablation === undefined && c.seed === 1 && (c.method === "goodvibe" || c.method === "base"),
    )
    .map((c) => ({
      ...c,
      utility: {
        heldout_real_code_loss:
          c.method === "base" ? loss(CODE_SUMS_BASE, baseMaxLength) : loss(CODE_SUMS_MODEL, 1024),
      },
    }));
  return parseExperimentResults(JSON.parse(JSON.stringify({ ...results, cells })), "results.json");
}

test("T3: the --code real-code loss of the same documents is paired per document (the ratio's interval); old files and other cuts fall back with the reason", () => {
  const row = [MODEL, "heldout_real_code_loss", "nll/token", "GoodVibe"];
  const Z = 1.959963984540054;
  const se = Math.sqrt(0.1015625 / 3) / 2;
  let table = utilityTable(withRealCodeLosses());
  let md = parseMarkdownTable(tableToMarkdown(table));
  let csv = parseCsv(tableToCsv(table));
  assert.equal(cellOf(md, row, "Δ vs base"), "-0.125 [-0.305, 0.055]");
  assert.equal(cellOf(md, row, "Δ interval"), "paired (normal)");
  close(cellOf(csv, row, "Δ vs base low"), -0.125 - Z * se);
  close(cellOf(csv, row, "Δ vs base high"), -0.125 + Z * se);
  assert.equal(cellOf(md, row, "n"), "4");
  assert.ok(
    table.notes.some((n) => /paired in 1 row: .*--code per document/.test(n)),
    table.notes.join("\n"),
  );

  // a results.json written before the record was kept: unpaired, Δ ± Z·√(se_m² + se_b²) = ± Z·√(1.3515625/12)
  table = utilityTable(withRealCodeLosses(false));
  md = parseMarkdownTable(tableToMarkdown(table));
  csv = parseCsv(tableToCsv(table));
  assert.equal(cellOf(md, row, "Δ vs base"), "-0.125 [-0.783, 0.533]");
  assert.equal(cellOf(md, row, "Δ interval"), "unpaired (normal)");
  close(cellOf(csv, row, "Δ vs base high"), -0.125 + Z * Math.sqrt(1.3515625 / 12));
  assert.ok(
    table.notes.some((n) =>
      /unpaired in 1 row\(s\).*neither side keeps per-item scores \(heldout_real_code_loss GoodVibe\)/.test(
        n,
      ),
    ),
    table.notes.join("\n"),
  );

  // the base cut its documents into other windows (another items hash): unpaired, with the reason
  table = utilityTable(withRealCodeLosses(true, 512));
  md = parseMarkdownTable(tableToMarkdown(table));
  assert.equal(cellOf(md, row, "Δ interval"), "unpaired (normal)");
  assert.ok(
    table.notes.some((n) =>
      /the two sides scored different items \(heldout_real_code_loss GoodVibe\)/.test(n),
    ),
    table.notes.join("\n"),
  );
});

test("T3: one seed shows the benchmark's standard error; no base run leaves deltas —", () => {
  const one: ExperimentResults = { ...results, cells: results.cells.filter((c) => c.seed === 1) };
  const md = parseMarkdownTable(tableToMarkdown(utilityTable(one)));
  assert.equal(cellOf(md, [MODEL, "arc_challenge", "acc_norm", "GoodVibe"], "Value"), "49.0% ± 1.4 se");
  // 0.49 - 0.50 = -1.0 pp; one evaluation each side, se 0.014 both: ± 1.96·√(2·0.014²) = 3.88 pp → [-4.9, 2.9]
  assert.equal(
    cellOf(md, [MODEL, "arc_challenge", "acc_norm", "GoodVibe"], "Δ vs base"),
    "-1.0 pp [-4.9, 2.9]",
  );
  // a loss: 1.18 - 1.20 = -0.020, se 0.01 both: ± 0.0277 → [-0.048, 0.008]
  assert.equal(
    cellOf(md, [MODEL, "heldout_code_loss", "loss", "GoodVibe"], "Δ vs base"),
    "-0.020 [-0.048, 0.008]",
  );

  const noBase: ExperimentResults = { ...results, cells: results.cells.filter((c) => c.method !== "base") };
  const table = utilityTable(noBase);
  const md2 = parseMarkdownTable(tableToMarkdown(table));
  assert.equal(cellOf(md2, [MODEL, "arc_challenge", "acc_norm", "GoodVibe"], "Δ vs base"), "—");
  assert.match(table.notes.join(" "), /No base cell for tiny-coder/);
  assert.ok(!table.notes.some((n) => /unpaired/.test(n)), "no Δ, nothing to say of its pairing");
});

test("T4: the no-cluster ablation next to its reference run", () => {
  const md = parseMarkdownTable(tableToMarkdown(ablationTable(results)));
  assert.equal(md.rows.length, 2);
  assert.equal(md.rows[0]![2], "reference");
  assert.equal(
    cellOf(md, [MODEL, "GoodVibe", "reference"], "Safe rate (rule)"),
    "75.0% ± 7.1 sd [60.0, 90.0]",
  );
  // no-cluster rule: 0.66, 0.70 -> 0.68, sd 0.0283, [0.53, 0.83]; LLM 0.70 both seeds: a spread of 0.0 is shown
  // with the interval over items (once hidden, which read as exact).
  assert.equal(
    cellOf(md, [MODEL, "GoodVibe", "clustering"], "Safe rate (rule)"),
    "68.0% ± 2.8 sd [53.0, 83.0]",
  );
  assert.equal(
    cellOf(md, [MODEL, "GoodVibe", "clustering"], "Safe rate (LLM)"),
    "70.0% ± 0.0 sd [55.0, 85.0]",
  );
  // each rate with its n, as in Table 1 (the ablation had none): the fixture's 40 programs and pairs overall
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "clustering"], "n (rule)"), "40");
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "clustering"], "n (LLM)"), "40");
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "clustering"], "n (pairs)"), "60");
  // a parameter count is the same in every seed by construction and has no evaluation noise: no spread shown
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "clustering"], "Trainable params"), "2,000");
  // arc 0.50 and loss 1.19 in both seeds: the seeds agree (± 0.0 sd), the brackets are the interval over items:
  // arc's 586 of 1,172 a share of 0/1 items, its Wilson interval [0.471421, 0.528579]; the loss mean ± 1.96 × se 0.01
  assert.equal(cellOf(md, [MODEL, "GoodVibe", "clustering"], "arc_challenge"), "50.0% ± 0.0 sd [47.1, 52.9]");
  assert.equal(
    cellOf(md, [MODEL, "GoodVibe", "clustering"], "heldout_code_loss"),
    "1.190 ± 0.000 sd [1.170, 1.210]",
  );
});

test("T5: threshold study rows sorted numerically after a reference row; empty without studies", () => {
  assert.equal(studyTable(results).rows.length, 0);
  assert.match(tableToMarkdown(studyTable(results)), /No rows: no threshold, top-k or epoch study was run/);

  const base = results.cells.find((c) => c.method === "goodvibe" && !c.ablation && c.seed === 1)!;
  const study = (threshold: string, rule: number) => ({
    ...structuredClone(base),
    id: `thr-${threshold}`,
    ablation: `threshold=${threshold}`,
    security: { safeRate: { rule: { overall: { ...iv(rule), n: 40 }, perLanguage: {} } } },
  });
  const withStudy: ExperimentResults = {
    ...results,
    cells: [...results.cells, study("0.5", 0.5), study("0.05", 0.8), study("0.1", 0.6)],
  };
  const md = parseMarkdownTable(tableToMarkdown(studyTable(withStudy)));
  assert.deepEqual(
    md.rows.map((r) => r[1]),
    ["default (reference)", "0.05", "0.1", "0.5"],
  );
  assert.equal(cellOf(md, ["threshold", "0.1"], "Safe rate (rule)"), "60.0% [45.0, 75.0]");
  assert.equal(cellOf(md, ["threshold", "0.1"], "Safe rate (LLM)"), "—");
  assert.equal(
    cellOf(md, ["threshold", "default (reference)"], "Safe rate (rule)"),
    "75.0% ± 7.1 sd [60.0, 90.0]",
  );
  // Threshold studies are not ablations of T4.
  assert.equal(ablationTable(withStudy).rows.length, 2);
});

test("T6: confusion, agreement, kappa and McNemar per run, — where a test was not run", () => {
  const md = parseMarkdownTable(tableToMarkdown(judgeTable(results)));
  assert.equal(md.rows.length, 1);
  const key = [MODEL, "GoodVibe", "none", "1"];
  assert.equal(cellOf(md, key, "TP"), "25");
  assert.equal(cellOf(md, key, "FN"), "2");
  // (25 + 10) / 40 = 87.5%, with its 95% Wilson interval (it had none) worked by hand: p = 0.875, n = 40,
  // (p + z²/80 ± z·√(p(1−p)/40 + z²/6400)) / (1 + z²/40) = [73.9, 94.5]
  assert.equal(cellOf(md, key, "n (programs)"), "40");
  assert.equal(cellOf(md, key, "Agreement"), "87.5% [73.9, 94.5]");
  assert.equal(cellOf(md, key, "κ"), "0.700");
  assert.equal(cellOf(md, key, "McNemar rule b01"), "14");
  assert.equal(cellOf(md, key, "McNemar rule p"), "0.004");
  assert.equal(cellOf(md, key, "McNemar rule test"), "exact-binomial");
  assert.equal(cellOf(md, key, "McNemar LLM p"), "—");
});

test("T7: safe rate per CWE, ordered by CWE number, — for methods without per-CWE results", () => {
  const md = parseMarkdownTable(tableToMarkdown(cweTable(results)));
  // CWE-79 sorts before CWE-416 (by number, not as text).
  assert.deepEqual([...new Set(md.rows.map((r) => r[1]))], ["CWE-79", "CWE-416"]);
  // Base CWE-79: 0.3, 0.4 -> 35.0%, sd 0.0707, [0.20, 0.50]; GoodVibe: 0.7, 0.9 -> 80.0%, sd 0.1414, highs 0.85
  // and 1 (clipped) -> [0.65, 0.925].
  assert.equal(cellOf(md, [MODEL, "CWE-79", "Base"], "Safe rate (rule)"), "35.0% ± 7.1 sd [20.0, 50.0]");
  assert.equal(cellOf(md, [MODEL, "CWE-79", "GoodVibe"], "Safe rate (rule)"), "80.0% ± 14.1 sd [65.0, 92.5]");
  assert.equal(
    cellOf(md, [MODEL, "CWE-416", "GoodVibe"], "Safe rate (rule)"),
    "60.0% [45.0, 75.0] (1/2 seeds)",
  );
  assert.equal(cellOf(md, [MODEL, "CWE-416", "Base"], "Safe rate (rule)"), "—");
  assert.equal(cellOf(md, [MODEL, "CWE-79", "LoRA"], "Safe rate (rule)"), "—");
  assert.equal(cellOf(md, [MODEL, "CWE-79", "GoodVibe"], "Safe rate (LLM)"), "—");
  assert.equal(cellOf(md, [MODEL, "CWE-79", "GoodVibe"], "n (rule)"), "10");
});

test("T8: clusters per module with the module's neuron count from perLayer", () => {
  const md = parseMarkdownTable(tableToMarkdown(clusterTable(results)));
  assert.equal(md.rows.length, 2); // one module, two GoodVibe seeds
  const key = [MODEL, "GoodVibe", "none", "2", "model.layers.0.self_attn.q_proj"];
  assert.equal(cellOf(md, key, "Neurons"), "5");
  assert.equal(cellOf(md, key, "Clusters"), "2");
  assert.equal(cellOf(md, key, "Silhouette"), "0.600");
  assert.equal(cellOf(md, key, "Clustered"), "yes");
});

test("T6 counts insecure as positive, as the safety evaluation does, and its caption says so", () => {
  // 3 programs both judges find insecure, 2 only the LLM judge does, 1 both find secure
  const verdicts: [llmSecure: boolean, ruleSecure: boolean][] = [
    [false, false],
    [false, false],
    [false, false],
    [false, true],
    [false, true],
    [true, true],
  ];
  const items: SafetyItem[] = verdicts.map(([llm, rule], i) => ({
    id: `p${i}`,
    lang: "cpp",
    question: "q",
    answer: "a",
    code: "int main() {}",
    rule: { secure: rule, findings: [] },
    llm: { secure: llm, pUnsafe: llm ? 0.1 : 0.9 },
  }));
  const summary = summariseSafety(items, {
    modelFingerprint: "m",
    backend: "test",
    generation: { maxNewTokens: 1, temperature: 0, topP: 1, seed: 0, batchSize: 1 },
    complete: true,
    generated: items.length,
    fromCache: 0,
    hasLlm: true,
  });
  const c = summary.agreement!;
  const withAgreement = structuredClone(results);
  const cell = withAgreement.cells.find((x) => x.security.judgeAgreement)!;
  cell.security.judgeAgreement = { confusion: { ...c.confusion }, kappa: c.kappa };
  const table = judgeTable(withAgreement);
  const md = parseMarkdownTable(tableToMarkdown(table));
  const key = [MODEL, "GoodVibe", "none", "1"];
  assert.equal(cellOf(md, key, "TP"), "3", "TP = both judges find the program insecure");
  assert.equal(cellOf(md, key, "FP"), "2", "FP = only the LLM judge finds it insecure");
  assert.equal(cellOf(md, key, "TN"), "1");
  assert.match(table.howToRead, /positive = insecure/);
  assert.doesNotMatch(table.howToRead, /positive = secure/);
  // the Markdown file carries the caption too: a table shared without the page must still be readable
  assert.match(tableToMarkdown(table), /positive = insecure/);
});

test("T8: layers clustered and the fallback the others got, when the cell records them", () => {
  const r = handMadeResults();
  for (const c of r.cells)
    for (const k of c.neurons?.clusters ?? []) k.layers = { clustered: 1, shared: 3, perNeuron: 0 };
  const md = parseMarkdownTable(tableToMarkdown(clusterTable(r)));
  const key = [MODEL, "GoodVibe", "none", "2", "model.layers.0.self_attn.q_proj"];
  assert.equal(cellOf(md, key, "Clustered"), "1 of 4 layers");
  assert.equal(cellOf(md, key, "Not clustered"), "3 × one shared row");
});
