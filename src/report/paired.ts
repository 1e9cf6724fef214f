/**
 * Paired comparisons between settings, item by item, from the cells' per-item outcomes: every setting against the
 * base model, and the methods and GoodVibe's ablations against each other. For each measure (secure preference,
 * safe rate by the rule judge, by the LLM judge):
 * - the difference of rates (B − A) on the items both have a verdict for, averaged over the seeds they share
 *   (a seedless base pairs with every seed of the other);
 * - its 95% bootstrap interval, resampling the items' groups (the tasks, when the pairs name them: instances of
 *   one task are not independent) with replacement and recomputing the seed-averaged difference;
 * - McNemar's test per seed (exact below 25 discordant pairs), with its discordant counts.
 */
import { clusterBootstrapDraws, mcnemar, quantile } from "../eval/metrics.js";
import {
  BOOTSTRAP_RESAMPLES,
  BOOTSTRAP_SEED,
  groupBySetting,
  nAcrossSeeds,
  type Setting,
} from "./aggregate.js";
import type { CellResult, ExperimentResults, Outcomes } from "./schema.js";
import { MISSING, num, text, type Cell, type Table } from "./table.js";
import { METHOD_LABELS } from "./paper-tables.js";
import { scheduleMark } from "./schedule.js";

export const MEASURES = ["preference", "rule", "llm"] as const;
export type Measure = (typeof MEASURES)[number];
const MEASURE_LABELS: Record<Measure, string> = {
  preference: "secure preference",
  rule: "safe rate (rule)",
  llm: "safe rate (LLM)",
};

export interface SeedTest {
  seed: number;
  n: number;
  b01: number;
  b10: number;
  pValue: number;
}

export interface PairedComparison {
  model: string;
  a: string;
  b: string;
  measure: Measure;
  /** "all" or one language */
  language: string;
  /**
   * seed-averaged rates of A and B on the paired items, their difference and its bootstrap interval (absent with
   * a single unit: every resample is that unit, so the interval would have no width whatever the data)
   */
  rateA: number;
  rateB: number;
  diff: number;
  low?: number;
  high?: number;
  /** what the bootstrap resampled: "tasks" or "items", and how many */
  unit: "tasks" | "items";
  units: number;
  tests: SeedTest[];
  /**
   * the seed pairings the two settings have: more than tests' where a cell has no per-item outcomes (one from a
   * build before they were recorded, reused on resume), so that the row says it rests on fewer seeds than Table 1's
   */
  ofSeeds: number;
}

/** "GoodVibe", "GoodVibe [topk=10]" */
export function settingLabel(s: Pick<Setting, "method" | "ablation" | "cells">): string {
  // marked when its training did nothing or barely (schedule.ts): a comparison with it is not the method's
  return `${METHOD_LABELS[s.method]}${s.ablation ? ` [${s.ablation}]` : ""}${scheduleMark(s.cells)}`;
}

/** Which settings to pair: each against the base, the main methods with each other, GoodVibe with its ablations. */
export function comparisonPairs(settings: readonly Setting[]): [Setting, Setting][] {
  const pairs: [Setting, Setting][] = [];
  const base = settings.find((s) => s.method === "base" && !s.ablation);
  const main = settings.filter((s) => s.method !== "base" && !s.ablation);
  if (base) for (const s of settings) if (s !== base) pairs.push([base, s]);
  for (let i = 0; i < main.length; i++)
    for (let j = i + 1; j < main.length; j++) pairs.push([main[i]!, main[j]!]);
  for (const m of main) for (const s of settings) if (s.ablation && s.method === m.method) pairs.push([m, s]);
  return pairs;
}

interface Aligned {
  /** per seed pairing: the two verdict arrays over the same items, and each item's group */
  seeds: { seed: number; a: boolean[]; b: boolean[]; groups: string[] }[];
  /** the seed pairings of the two settings, those without outcomes included */
  pairings: number;
}

function outcomeOf(o: Outcomes, m: Measure): string | undefined {
  return o[m];
}

function align(
  a: readonly CellResult[],
  b: readonly CellResult[],
  measure: Measure,
  language: string,
  exclude?: ReadonlySet<string>,
): Aligned | null {
  // the base evaluated once (one cell: it is not trained) pairs with every seed of the other; anything else pairs
  // seed with seed. A trained setting run with one seed is not seedless: paired with every seed of a setting of
  // several it would mix seeds and label each test with its one seed
  const once = (cs: readonly CellResult[]) => cs.length === 1 && cs[0]!.method === "base";
  const pairings: [CellResult, CellResult][] = [];
  if (once(a)) for (const cb of b) pairings.push([a[0]!, cb]);
  else if (once(b)) for (const ca of a) pairings.push([ca, b[0]!]);
  else for (const ca of a) for (const cb of b) if (ca.seed === cb.seed) pairings.push([ca, cb]);
  const seeds: Aligned["seeds"] = [];
  for (const [ca, cb] of pairings) {
    const oa = ca.outcomes;
    const ob = cb.outcomes;
    const sa = oa && outcomeOf(oa, measure);
    const sb = ob && outcomeOf(ob, measure);
    if (!oa || !ob || !sa || !sb) continue;
    const idx = new Map(ob.ids.map((id, i) => [id, i]));
    const va: boolean[] = [];
    const vb: boolean[] = [];
    const groups: string[] = [];
    oa.ids.forEach((id, i) => {
      const j = idx.get(id);
      if (j === undefined || exclude?.has(id) || (language !== "all" && oa.langs[i] !== language)) return;
      const x = sa[i];
      const y = sb[j];
      if (x === "-" || y === "-") return;
      va.push(x === "1");
      vb.push(y === "1");
      groups.push(oa.groups?.[i] ?? id);
    });
    if (va.length > 0) seeds.push({ seed: cb.method === "base" ? ca.seed : cb.seed, a: va, b: vb, groups });
  }
  return seeds.length > 0 ? { seeds, pairings: pairings.length } : null;
}

const rate = (xs: readonly boolean[]) => xs.filter(Boolean).length / xs.length;

/**
 * The seed-averaged difference with a cluster-bootstrap interval. Every seed pairing sees the same resampled
 * groups (the groups are the evaluation's tasks or items, shared by the seeds).
 */
function bootstrapDiff(
  al: Aligned,
  iterations: number,
  seed: number,
): { diff: number; low: number; high: number; units: number; byGroup: boolean } {
  const names = [...new Set(al.seeds.flatMap((s) => s.groups))].sort();
  const index = new Map(names.map((g, i) => [g, i]));
  const byGroup = names.length < al.seeds[0]!.groups.length;
  // per seed pairing, per group: count, sum of a, sum of b
  const stats = al.seeds.map((s) => {
    const n = new Float64Array(names.length);
    const sa = new Float64Array(names.length);
    const sb = new Float64Array(names.length);
    s.groups.forEach((g, i) => {
      const k = index.get(g)!;
      n[k]! += 1;
      sa[k]! += s.a[i] ? 1 : 0;
      sb[k]! += s.b[i] ? 1 : 0;
    });
    return { n, sa, sb };
  });
  const diffOf = (weights: Float64Array) => {
    let total = 0;
    let counted = 0;
    for (const st of stats) {
      let n = 0;
      let da = 0;
      let db = 0;
      for (let k = 0; k < names.length; k++) {
        const w = weights[k]!;
        if (w === 0) continue;
        n += w * st.n[k]!;
        da += w * st.sa[k]!;
        db += w * st.sb[k]!;
      }
      if (n > 0) {
        total += (db - da) / n;
        counted++;
      }
    }
    return counted > 0 ? total / counted : NaN;
  };
  const ones = new Float64Array(names.length).fill(1);
  const diff = diffOf(ones);
  const draws = clusterBootstrapDraws(names.length, diffOf, { iterations, seed });
  return { diff, low: quantile(draws, 0.025), high: quantile(draws, 0.975), units: names.length, byGroup };
}

/** `exclude`: item ids left out (the held-out pairs that share a prompt or code with training: report/unseen.ts) */
export function pairedComparisons(
  results: ExperimentResults,
  opts: { iterations?: number; seed?: number; languages?: boolean; exclude?: ReadonlySet<string> } = {},
): PairedComparison[] {
  const out: PairedComparison[] = [];
  const settings = groupBySetting(results.cells, results.partial?.missing);
  const models = [...new Set(settings.map((s) => s.model))];
  for (const model of models) {
    const ms = settings.filter((s) => s.model === model);
    const langs = [...new Set(ms.flatMap((s) => s.cells.flatMap((c) => c.outcomes?.langs ?? [])))].sort();
    for (const [a, b] of comparisonPairs(ms)) {
      for (const measure of MEASURES) {
        for (const language of ["all", ...(opts.languages ? langs : [])]) {
          const al = align(a.cells, b.cells, measure, language, opts.exclude);
          if (!al) continue;
          const boot = bootstrapDiff(al, opts.iterations ?? BOOTSTRAP_RESAMPLES, opts.seed ?? BOOTSTRAP_SEED);
          out.push({
            model,
            a: settingLabel(a),
            b: settingLabel(b),
            measure,
            language,
            rateA: al.seeds.reduce((x, s) => x + rate(s.a), 0) / al.seeds.length,
            rateB: al.seeds.reduce((x, s) => x + rate(s.b), 0) / al.seeds.length,
            diff: boot.diff,
            ...(boot.units >= 2 ? { low: boot.low, high: boot.high } : {}),
            unit: boot.byGroup ? "tasks" : "items",
            units: boot.units,
            tests: al.seeds.map((s) => {
              const m = mcnemar(s.a, s.b);
              return { seed: s.seed, n: s.a.length, b01: m.b01, b10: m.b10, pValue: m.pValue };
            }),
            ofSeeds: al.pairings,
          });
        }
      }
    }
  }
  return out;
}

/**
 * Below this many tasks (or items) a percentile cluster bootstrap understates the uncertainty: its variance is
 * the plug-in variance, (k − 1)/k of the unbiased s²/k, at best, and its resamples take few distinct values (one
 * task: a single one).
 */
export const FEW_BOOTSTRAP_UNITS = 10;

/** "48 tasks", "4 tasks (few: ...)", "1 task: no interval" — what the interval rests on. */
export function bootstrapUnits(c: Pick<PairedComparison, "units" | "unit">): string {
  const what = c.units === 1 ? c.unit.replace(/s$/, "") : c.unit;
  if (c.units < 2) return `${c.units} ${what}: no interval`;
  if (c.units < FEW_BOOTSTRAP_UNITS)
    return `${c.units} ${what} (few: the interval understates the uncertainty)`;
  return `${c.units} ${what}`;
}

function testsText(tests: readonly SeedTest[]): string {
  return tests
    .map((t) => `s${t.seed}: ${t.b01}/${t.b10}, p ${t.pValue < 0.001 ? "<0.001" : t.pValue.toFixed(3)}`)
    .join("; ");
}

export function rowsOf(cs: readonly PairedComparison[], withLanguage: boolean): Cell[][] {
  return cs.map((c) => [
    text(c.model),
    text(c.a),
    text(c.b),
    text(MEASURE_LABELS[c.measure]),
    ...(withLanguage ? [text(c.language)] : []),
    // "1 of 2" where a seed had no outcomes, as Table 1's Seeds say "1 of 2" for a partial file's missing seed
    c.tests.length < c.ofSeeds ? text(`${c.tests.length} of ${c.ofSeeds}`) : num(c.tests.length),
    // each seed's paired items: a range where the seeds differ (a rounded mean would be a count no seed has)
    nAcrossSeeds(c.tests.map((t) => t.n)),
    num(c.rateA),
    num(c.rateB),
    // "(1/2 seeds)" as Table 1 marks a number only some seeds have
    num(c.diff, {
      ...(c.low === undefined ? {} : { low: c.low, high: c.high }),
      seeds: c.tests.length,
      ofSeeds: c.ofSeeds,
    }),
    text(bootstrapUnits(c)),
    c.tests.length ? text(testsText(c.tests)) : MISSING,
  ]);
}

export const PAIRED_HOW =
  "Each row pairs two settings item by item on the same evaluation items (a pair for secure preference, a " +
  "prompt's answer for the safe rates), over the seeds they share (the base, evaluated once, pairs with every " +
  "seed). n (paired): the items both have a verdict for, per seed (a range where the seeds differ; the bootstrap " +
  "below resamples every item some seed pairs, so it can count more). Rate A and " +
  "Rate B are their rates on those items, averaged over seeds; the difference is " +
  "B − A with a 95% bootstrap interval that resamples the evaluation's tasks when the pairs name them (instances " +
  "of one task are not independent), else its items " +
  `(${BOOTSTRAP_RESAMPLES.toLocaleString("en-US")} resamples, generator seed ${BOOTSTRAP_SEED}: the same bounds each time the report is made). ` +
  `Under ${FEW_BOOTSTRAP_UNITS} tasks (or items) the bootstrap ` +
  "understates the uncertainty and says so; with one there is no interval (every resample is that one). McNemar per seed: discordant counts b01/b10 (A insecure " +
  "and B secure / the reverse) and the p-value (exact binomial below 25 discordant pairs). An interval that " +
  "excludes 0 and small p-values in every seed are evidence of a difference; one seed's p below 0.05 among many " +
  "comparisons is not.";

export function pairedColumns(withLanguage: boolean) {
  return [
    { header: "Model" },
    { header: "A" },
    { header: "B" },
    { header: "Measure" },
    ...(withLanguage ? [{ header: "Language" }] : []),
    { header: "Seeds", unit: "count" as const },
    { header: "n (paired)", unit: "count" as const },
    // "Rate A", not "A" again: a CSV header read by programs must name each column once
    { header: "Rate A", unit: "rate" as const },
    { header: "Rate B", unit: "rate" as const },
    { header: "B − A", unit: "pp" as const, csvExtras: ["low", "high"] as const },
    { header: "Bootstrap over" },
    { header: "McNemar per seed (b01/b10, p)" },
  ];
}

/**
 * The note of a paired table whose results have cells without per-item outcomes: those cells are left out of
 * every pairing, so a row over fewer seeds than its settings have says "k of n" and this names what is missing.
 */
export function outcomesLeftOutNotes(results: ExperimentResults): string[] {
  const without = results.cells.filter((c) => !c.outcomes);
  if (without.length === 0) return [];
  const names = without.map(
    (c) =>
      `${c.model} ${METHOD_LABELS[c.method]}${c.ablation ? ` [${c.ablation}]` : ""}` +
      `${c.method === "base" ? "" : ` seed ${c.seed}`} (${c.id})`,
  );
  return [
    `Left out: ${names.join(", ")}, without per-item outcomes (a cell computed by a build before they were ` +
      'recorded, reused on resume): the rows pairing their settings rest on the other seeds (Seeds reads "k of ' +
      'n", B − A "(k/n seeds)"), so their rates can differ from Table 1\'s, which averages every seed.',
  ];
}

/** The report's paired-test tables: over all languages, and per language. */
export function pairedTables(results: ExperimentResults): Table[] {
  const all = pairedComparisons(results, { languages: true });
  const overall = all.filter((c) => c.language === "all");
  const perLanguage = all.filter((c) => c.language !== "all");
  const absentBecause = "no cell records per-item outcomes (results made before they were recorded)";
  return [
    {
      id: "table10-paired",
      title: "Table 10. Paired tests: each setting against the base, the methods against each other",
      howToRead: PAIRED_HOW,
      columns: pairedColumns(false),
      rows: rowsOf(overall, false),
      notes: outcomesLeftOutNotes(results),
      absentBecause,
    },
    {
      id: "table11-paired-languages",
      title: "Table 11. Paired tests per language",
      howToRead: PAIRED_HOW + " Per language the items are that language's only.",
      columns: pairedColumns(true),
      rows: rowsOf(perLanguage, true),
      notes: outcomesLeftOutNotes(results),
      absentBecause,
    },
  ];
}
