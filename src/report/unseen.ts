/**
 * The security measures on the evaluated pairs the hardened models never saw: those that share neither a prompt
 * nor an answer's code with the training pairs (data/pairs.ts pairOverlap; real CyberNative dev shares one with
 * train in 108 of 465 pairs, so a rate over all of dev mixes recall of training data with generalisation).
 * Recounted from each cell's per-item outcomes, beside the full figures: rates with their own n and 95% interval,
 * and McNemar against the base model's cell on the same pairs (results.json security.unseen).
 */
import { clusteredWilsonInterval, mcnemarMatched, tallyByGroup, wilsonInterval } from "../eval/metrics.js";
import type { CellResult, ExperimentResults, Judge, Outcomes, RateWithN } from "./schema.js";
import {
  SEEDS_HOW,
  groupBySetting,
  intervalAcrossSeeds,
  nAcrossSeeds,
  seedsCell,
  type Setting,
} from "./aggregate.js";
import {
  PAIRED_HOW,
  outcomesLeftOutNotes,
  pairedColumns,
  pairedComparisons,
  rowsOf,
  settingLabel,
} from "./paired.js";
import { llmColumnLabel, unseenLeftOut } from "./judge-tables.js";
import { num, text, type Cell, type Column, type Table } from "./table.js";

type Unseen = NonNullable<CellResult["security"]["unseen"]>;

/**
 * One measure's rate over the outcome items `keep` lets through that have a verdict: Wilson over the items, or
 * over the tasks' effective n where the outcomes name their task (the interval securityCell gives the full rate).
 * Undefined when no such item has a verdict.
 */
export function subsetRate(
  outcomes: Outcomes,
  marks: string,
  keep: (i: number) => boolean,
): RateWithN | undefined {
  const tallies = tallyByGroup(marks, keep, (i) => outcomes.groups?.[i] ?? outcomes.ids[i]!);
  const n = tallies.reduce((a, t) => a + t.n, 0);
  const successes = tallies.reduce((a, t) => a + t.successes, 0);
  if (n === 0) return undefined;
  const w = outcomes.groups ? clusteredWilsonInterval(tallies) : wilsonInterval(successes, n);
  return { value: successes / n, low: w.low, high: w.high, n };
}

/**
 * McNemar's test of `other` against `base` by one judge, on the items of their outcomes matched by id that have a
 * verdict in both ("-" is none) and that `keep` keeps (as eval/safety.ts mcnemarVsBase matches the safety items;
 * b01 = base insecure, other secure); undefined when no item is left. Shared by the experiment's test on all items
 * (experiment/run.ts withMcnemarVsBase) and the one on the unseen items (unseenSecurity).
 */
export function mcnemarOfOutcomes(
  base: Outcomes,
  other: Outcomes,
  judge: Judge,
  keep: (id: string) => boolean = () => true,
): NonNullable<NonNullable<Unseen["mcnemarVsBase"]>[Judge]> | undefined {
  const bm = base[judge];
  const om = other[judge];
  if (bm === undefined || om === undefined) return undefined;
  const items = (o: Outcomes, marks: string) =>
    o.ids.map((id, i) => ({ id, secure: marks[i] === "-" || !keep(id) ? null : marks[i] === "1" }));
  const r = mcnemarMatched(items(base, bm), items(other, om), (it) => it.secure);
  if (r === null) return undefined;
  return { b01: r.b01, b10: r.b10, pValue: r.pValue, test: r.method };
}

/**
 * A cell's measures on the outcome items whose id is not in `seen`; `base`: the base model's outcomes, for McNemar
 * on those items (b01 = base insecure, this secure, as securityCell counts it).
 */
export function unseenSecurity(outcomes: Outcomes, seen: ReadonlySet<string>, base?: Outcomes): Unseen {
  const unseen = (i: number) => !seen.has(outcomes.ids[i]!);
  const out: Unseen = { n: outcomes.ids.filter((id) => !seen.has(id)).length };
  const pref = outcomes.preference && subsetRate(outcomes, outcomes.preference, unseen);
  if (pref) out.securePreference = pref;
  const safeRate: NonNullable<Unseen["safeRate"]> = {};
  const tests: NonNullable<Unseen["mcnemarVsBase"]> = {};
  for (const judge of ["rule", "llm"] as const) {
    const marks = outcomes[judge];
    if (!marks) continue;
    const r = subsetRate(outcomes, marks, unseen);
    if (r) safeRate[judge] = r;
    if (!base) continue;
    const t = mcnemarOfOutcomes(base, outcomes, judge, (id) => !seen.has(id));
    if (t) tests[judge] = t;
  }
  if (Object.keys(safeRate).length) out.safeRate = safeRate;
  if (Object.keys(tests).length) out.mcnemarVsBase = tests;
  return out;
}

/**
 * The cells with security.unseen, given the ids of the evaluated pairs that share a prompt or code with training:
 * each cell with outcomes gets it; a trained cell's McNemar pairs it with its model's base cell (the one of its
 * seed, else the first: the base is evaluated once).
 */
export function withUnseen(cells: readonly CellResult[], seenIds: readonly string[]): CellResult[] {
  const seen = new Set(seenIds);
  return cells.map((c) => {
    if (!c.outcomes) return c;
    const bases = cells.filter(
      (b) => b.method === "base" && b.ablation === undefined && b.model === c.model && b.outcomes,
    );
    const base =
      c.method === "base" ? undefined : (bases.find((b) => b.seed === c.seed) ?? bases[0])?.outcomes;
    return { ...c, security: { ...c.security, unseen: unseenSecurity(c.outcomes, seen, base) } };
  });
}

const RATE_EXTRAS = ["low", "high", "sd"] as const;

/** Whether the results hold the figures on the unseen pairs (run since 2026-12-02, cells with outcomes). */
export function hasUnseen(results: ExperimentResults): boolean {
  return (
    results.evaluation?.trainOverlap?.seenIds !== undefined && results.cells.some((c) => c.security.unseen)
  );
}

function unseenTitle(results: ExperimentResults): string {
  // which training pairs: the experiment's whole training file (run.ts), stricter than one cell's subsample of it
  return (
    "the held-out pairs that share neither a prompt nor an answer's code with any pair of the experiment's " +
    `training file (all of it, not only the pairs a cell drew from it; ${unseenLeftOut(results)})`
  );
}

/** Table 13: each setting's rates on all evaluated pairs and on the unseen ones, side by side. */
export function unseenSecurityTable(results: ExperimentResults): Table {
  const full = (s: Setting, m: Judge | "preference") =>
    intervalAcrossSeeds(
      s.cells.map((c) =>
        m === "preference" ? c.security.securePreference?.rate : c.security.safeRate?.[m]?.overall,
      ),
    );
  const fullN = (s: Setting, m: Judge | "preference") =>
    nAcrossSeeds(
      s.cells.map((c) =>
        m === "preference" ? c.security.securePreference?.n : c.security.safeRate?.[m]?.overall.n,
      ),
    );
  const part = (c: CellResult, m: Judge | "preference") =>
    m === "preference" ? c.security.unseen?.securePreference : c.security.unseen?.safeRate?.[m];
  const rows: Cell[][] = groupBySetting(results.cells, results.partial?.missing)
    .filter((s) => s.cells.some((c) => c.security.unseen))
    .map((s) => [
      text(s.model),
      text(settingLabel(s)),
      seedsCell(s),
      ...(["rule", "llm", "preference"] as const).flatMap((m) => [
        full(s, m),
        fullN(s, m),
        intervalAcrossSeeds(s.cells.map((c) => part(c, m))),
        nAcrossSeeds(s.cells.map((c) => part(c, m)?.n)),
      ]),
    ]);
  const llm = llmColumnLabel(results);
  const pair = (name: string): Column[] => [
    { header: `${name}, all`, unit: "rate", csvExtras: RATE_EXTRAS },
    { header: `n (${name}, all)`, unit: "count" },
    { header: `${name}, unseen`, unit: "rate", csvExtras: RATE_EXTRAS },
    { header: `n (${name}, unseen)`, unit: "count" },
  ];
  return {
    id: "table13-security-unseen",
    title: "Table 13. Security on the held-out pairs unseen in training",
    howToRead:
      `Each row is one setting: its safe rates and secure preference over all evaluated pairs (as Table 1) and over ${unseenTitle(results)}, ` +
      "whitespace and case aside. A pair the training pairs share a prompt or code with may show what hardening " +
      "saw rather than how it generalises; the unseen columns are the evidence on data the models never saw, " +
      "each with its own n and 95% interval (Wilson over the items, or over the tasks' effective n where the " +
      "pairs name their task, as in Table 1). " +
      SEEDS_HOW,
    columns: [
      { header: "Model" },
      { header: "Setting" },
      { header: "Seeds", unit: "count" },
      ...pair("Safe rate (rule)"),
      ...pair(`Safe rate (${llm})`),
      ...pair("Secure preference"),
    ],
    rows,
    notes: [],
    absentBecause: "no cell records per-item outcomes",
  };
}

/** Table 14: Table 10's paired tests (bootstrap and McNemar) on the unseen pairs only. */
export function unseenPairedTable(results: ExperimentResults): Table {
  const exclude = new Set(results.evaluation!.trainOverlap!.seenIds!);
  const cs = pairedComparisons(results, { exclude });
  return {
    id: "table14-paired-unseen",
    title: "Table 14. Paired tests on the held-out pairs unseen in training",
    howToRead: `As Table 10, on ${unseenTitle(results)} only. ` + PAIRED_HOW,
    columns: pairedColumns(false),
    rows: rowsOf(cs, false),
    notes: outcomesLeftOutNotes(results),
    absentBecause: "no two settings have verdicts on the same unseen pairs",
  };
}
