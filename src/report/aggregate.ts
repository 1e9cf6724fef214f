/**
 * Cells of one setting (model, method, ablation) differ only by seed; the tables show one row per
 * setting with the mean across seeds, the sample standard deviation as its spread, and (for measured rates) the
 * 95% interval over the evaluation's items.
 */
import { METHODS, type CellResult, type Method, type MissingCell } from "./schema.js";
import { Z95, type Interval } from "../eval/metrics.js";
import { MISSING, type Cell } from "./table.js";

export const METHOD_LABELS: Record<Method, string> = {
  base: "Base",
  goodvibe: "GoodVibe",
  lora: "LoRA",
  full: "Full FT",
};

export interface Setting {
  model: string;
  method: Method;
  ablation?: string;
  /** Sorted by seed. */
  cells: CellResult[];
  /** a partial results file's planned seeds of this setting that have no cell yet (schema.ts `partial`) */
  missingSeeds?: number[];
}

/**
 * The report's bootstraps (Tables 10 and 11's paired differences, Table 6's κ): resamples and the seed of their generator, fixed so
 * that a report made again from the same results.json gives the same bounds; the how-to-read names both.
 */
export const BOOTSTRAP_RESAMPLES = 2000;
export const BOOTSTRAP_SEED = 0;

export function settingKey(model: string, method: Method, ablation?: string): string {
  return JSON.stringify([model, method, ablation ?? null]);
}

/** Models in the order the results file first names them. */
export function modelsInOrder(cells: readonly CellResult[]): string[] {
  return [...new Set(cells.map((c) => c.model))];
}

/**
 * Settings ordered by model (file order), method (base, goodvibe, lora, full), then ablation (none first).
 * `missing`: a partial results file's planned cells without a result, noted on the settings they belong to.
 */
export function groupBySetting(
  cells: readonly CellResult[],
  missing: readonly MissingCell[] = [],
): Setting[] {
  const byKey = new Map<string, Setting>();
  for (const cell of cells) {
    const key = settingKey(cell.model, cell.method, cell.ablation);
    let s = byKey.get(key);
    if (!s) {
      s = { model: cell.model, method: cell.method, cells: [] };
      if (cell.ablation !== undefined) s.ablation = cell.ablation;
      byKey.set(key, s);
    }
    s.cells.push(cell);
  }
  for (const m of missing) {
    const s = byKey.get(settingKey(m.model, m.method, m.ablation));
    if (s) (s.missingSeeds ??= []).push(m.seed);
  }
  const models = modelsInOrder(cells);
  const settings = [...byKey.values()];
  for (const s of settings) s.cells.sort((a, b) => a.seed - b.seed);
  settings.sort(
    (a, b) =>
      models.indexOf(a.model) - models.indexOf(b.model) ||
      METHODS.indexOf(a.method) - METHODS.indexOf(b.method) ||
      (a.ablation === undefined ? -1 : 0) - (b.ablation === undefined ? -1 : 0) ||
      (a.ablation ?? "").localeCompare(b.ablation ?? ""),
  );
  return settings;
}

export function mean(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Sample standard deviation (n - 1); needs two or more values. */
export function sampleSd(xs: readonly number[]): number {
  const m = mean(xs);
  let ss = 0;
  for (const x of xs) ss += (x - m) ** 2;
  return Math.sqrt(ss / (xs.length - 1));
}

/**
 * Which interval the rates' brackets are (recipes/outcomes.ts withTaskIntervals): Wilson over the items, or, where
 * the pairs name their task, Wilson on the tasks' effective n; and the mean loss gap's bootstrap, over the pairs or
 * (security.lossGapInterval, eval/preference.ts) over whole tasks.
 */
export const TASK_INTERVALS_HOW =
  "The rates' brackets are the 95% Wilson interval over the items counted in n where the evaluation pairs name no " +
  "task (CyberNative); where they do (several generated prompts per task, as in the organism data; results.json's " +
  'security.intervals reads "wilson-task-design-effect") they are the Wilson interval on the effective n, n divided ' +
  "by the tasks' design effect (between the number of tasks and n), since the prompts of one task are not " +
  "independent. The mean loss gap's brackets are a 95% percentile bootstrap of the mean (10,000 resamples, the " +
  "evaluation's seed): over the pairs where they name no task; where they do (results.json's security.lossGapInterval " +
  'reads "bootstrap-task"; files made before 2026-12-01 resampled pairs throughout) it resamples whole tasks, ' +
  "for the same reason. ";

/**
 * What the 95% brackets of one cell's rates are, in a few words, for the lines `goodvibe eval` and the demo print
 * (recipes/evaluate.ts securityCell chose the interval; schema.ts `security.intervals` records it).
 */
export function ratesIntervalName(s: Pick<CellResult["security"], "intervals">): string {
  return s.intervals === "wilson-task-design-effect"
    ? "95% Wilson intervals over the tasks (on n / design effect: the pairs name their task, and the pairs of one task are not independent)"
    : "95% Wilson intervals over the pairs or answers counted in n";
}

/** The same for the other tables with these rates (Tables 4, 5, 7 and the paper layout), pointing at Table 1. */
export const TASK_INTERVALS_SHORT =
  "Where the evaluation pairs name their task (the organism data), a rate's brackets are the Wilson interval on " +
  "the tasks' effective n rather than on n, as Table 1 says. ";

/** How the tables' rate cells read, for their "How to read" paragraphs (one wording for every table). */
export const SEEDS_HOW =
  "With one seed the brackets are the 95% interval of that evaluation. With several, the value is the mean over " +
  "seeds, ± the standard deviation across seeds (training noise; shown even when 0.0, since seeds that agree do " +
  "not make a rate exact) and the brackets the 95% interval over the evaluation's items, the seeds' bounds " +
  "averaged (evaluation noise; conservative, as the seeds answer the same items). The Seeds column says how many " +
  'seeds; "(1/2 seeds)" marks a number that only some seeds have.';

/**
 * One seed: its value and interval. Several: the mean, the sd of the values (training noise: how much the seeds
 * disagree) and the 95% interval over the evaluation's items, the seeds' bounds averaged (evaluation noise). The
 * averaged interval is conservative for the mean: the seeds answer the same items, so their errors are
 * correlated, and the sd of a mean of correlated errors is at most the mean of their sds. Both are shown, so that
 * seeds that agree (sd 0) do not make a rate look exact. Seeds that lack the number are left out and the cell says
 * how many seeds it rests on.
 */
export function intervalAcrossSeeds(values: readonly (Interval | undefined)[]): Cell {
  const present = values.filter((v): v is Interval => v !== undefined);
  if (present.length === 0) return MISSING;
  const seeds = { seeds: present.length, ofSeeds: values.length };
  if (present.length === 1) {
    const only = present[0]!;
    return { kind: "number", value: only.value, low: only.low, high: only.high, ...seeds };
  }
  const xs = present.map((v) => v.value);
  return {
    kind: "number",
    value: mean(xs),
    sd: sampleSd(xs),
    low: mean(present.map((v) => v.low)),
    high: mean(present.map((v) => v.high)),
    ...seeds,
  };
}

/**
 * Like intervalAcrossSeeds for plain numbers. `se` is the benchmark's standard error per seed: one seed keeps it
 * as it is; several get the 95% interval over items, mean ± 1.96 × the mean of their standard errors
 * (conservative for the same reason as intervalAcrossSeeds' averaged bounds), beside the sd across seeds.
 */
export function numberAcrossSeeds(
  values: readonly (number | undefined)[],
  se?: readonly (number | undefined)[],
): Cell {
  const idx = values.flatMap((v, i) => (v === undefined ? [] : [i]));
  if (idx.length === 0) return MISSING;
  const seeds = { seeds: idx.length, ofSeeds: values.length };
  if (idx.length === 1) {
    const i = idx[0]!;
    const cell: Cell = { kind: "number", value: values[i]!, ...seeds };
    if (se?.[i] !== undefined) cell.se = se[i];
    return cell;
  }
  const xs = idx.map((i) => values[i]!);
  const cell: Cell = { kind: "number", value: mean(xs), sd: sampleSd(xs), ...seeds };
  const ses = idx.flatMap((i) => (se?.[i] === undefined ? [] : [se[i]!]));
  if (ses.length === idx.length) {
    const half = Z95 * mean(ses);
    cell.low = cell.value - half;
    cell.high = cell.value + half;
  }
  return cell;
}

/** A setting's seeds: "2", or "1 of 2" where a partial results file lacks some of its planned seeds. */
export function seedsText(s: Pick<Setting, "cells" | "missingSeeds">): string {
  const k = s.cells.length;
  return s.missingSeeds?.length ? `${k} of ${k + s.missingSeeds.length}` : String(k);
}

/** The tables' Seeds cell: a count, or "1 of 2" as text (seedsText). */
export function seedsCell(s: Pick<Setting, "cells" | "missingSeeds">): Cell {
  return s.missingSeeds?.length
    ? { kind: "text", text: seedsText(s) }
    : { kind: "number", value: s.cells.length };
}

/** Mean of the numbers that are present, or undefined when none is. */
export function meanOfPresent(values: readonly (number | undefined)[]): number | undefined {
  const xs = values.filter((v): v is number => v !== undefined);
  return xs.length === 0 ? undefined : mean(xs);
}

/** "40" when every seed has the same n, "40–45" when they differ, "—" when none has one. */
export function nAcrossSeeds(values: readonly (number | undefined)[]): Cell {
  const xs = values.filter((v): v is number => v !== undefined);
  if (xs.length === 0) return MISSING;
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? { kind: "number", value: lo } : { kind: "text", text: `${lo}–${hi}` };
}
