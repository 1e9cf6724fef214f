/**
 * Trained runs whose training did nothing, or nearly nothing. A run's schedule and harden's verdict on it
 * (method/train.ts scheduleRecord: "none", every optimiser step at learning rate 0, the model its base under a new
 * name; "few", under FEW_FULL_RATE_STEPS steps' worth at the full rate) are kept in each cell's `schedule`. Here
 * they become what a reader sees: a mark beside the method wherever such a run is tabulated, one note per table
 * that shows one, a note atop the report and the run's log, and a table of every trained run's schedule. Without
 * them "GoodVibe = base" from a run that never trained reads as a null result of the method.
 */
import { FEW_FULL_RATE_STEPS } from "../method/train-config.js";
import { METHOD_LABELS, groupBySetting } from "./aggregate.js";
import type { CellResult, ExperimentResults } from "./schema.js";
import { MISSING, num, text, type Cell, type Table } from "./table.js";

/** What marks a run that trained nothing or barely, in any table (and how render.ts finds the tables to annotate). */
export const SCHEDULE_MARK = "⚠";

const WORDS = { none: "trained nothing", few: "barely trained" } as const;

type Shortfall = keyof typeof WORDS;

/** The run's training shortfall as its run warned of it; null for a base cell, a normal run, or none recorded. */
export function shortfallOf(c: Pick<CellResult, "schedule">): Shortfall | null {
  return c.schedule?.level ?? null;
}

/**
 * The mark after a method's label for a setting's runs (one per seed): "" when none fell short; " ⚠ trained
 * nothing" when every seed did; " ⚠ 1/2 seeds trained nothing" when some did, and so for "barely trained".
 */
export function scheduleMark(cells: readonly Pick<CellResult, "schedule">[]): string {
  const parts: string[] = [];
  for (const level of ["none", "few"] as const) {
    const k = cells.filter((c) => shortfallOf(c) === level).length;
    if (k === 0) continue;
    parts.push(k === cells.length ? WORDS[level] : `${k}/${cells.length} seeds ${WORDS[level]}`);
  }
  return parts.length ? ` ${SCHEDULE_MARK} ${parts.join(", ")}` : "";
}

/** A method's label with its mark: what the tables show in their Method column. */
export function methodWithMark(method: CellResult["method"], cells: readonly CellResult[]): string {
  return METHOD_LABELS[method] + scheduleMark(cells);
}

function runName(c: CellResult): string {
  return `${c.model} ${METHOD_LABELS[c.method]}${c.ablation ? ` (${c.ablation})` : ""} seed ${c.seed}`;
}

const MEANING: Record<Shortfall, string> = {
  none:
    "every optimiser step was at learning rate 0 (a warm-up starts at 0), so no weight changed and the model is " +
    "its base under a new name: its figures are the base model's, up to evaluation noise, not a result of the " +
    "method, and its differences from the base measure nothing",
  few:
    `its steps add up to fewer than ${FEW_FULL_RATE_STEPS} at the full learning rate, so the model barely ` +
    `changed: its figures say little about the method`,
};

/** The names a one-line note lists (a large grid's would fill a screen); the schedule table has every one. */
export const LISTED_RUNS = 8;

/** At most LISTED_RUNS of `names`, then how many more. */
export function listed(names: readonly string[], sep: string): string {
  if (names.length <= LISTED_RUNS) return names.join(sep);
  return `${names.slice(0, LISTED_RUNS).join(sep)}${sep}and ${names.length - LISTED_RUNS} more`;
}

/** Trained runs by shortfall, and those that record no schedule (trained before the record). */
export function scheduleShortfalls(cells: readonly CellResult[]): {
  none: CellResult[];
  few: CellResult[];
  notRecorded: CellResult[];
  trained: number;
} {
  const trained = cells.filter((c) => c.method !== "base");
  return {
    none: trained.filter((c) => shortfallOf(c) === "none"),
    few: trained.filter((c) => shortfallOf(c) === "few"),
    notRecorded: trained.filter((c) => !c.schedule),
    trained: trained.length,
  };
}

/**
 * One line on the runs that trained nothing or barely, for the report's notes and the run's log; null when every
 * trained run trained (or none recorded its schedule).
 */
export function shortScheduleNote(cells: readonly CellResult[]): string | null {
  const s = scheduleShortfalls(cells);
  if (s.none.length === 0 && s.few.length === 0) return null;
  const part = (level: Shortfall, runs: CellResult[]) =>
    `${runs.length} ${WORDS[level]} (${listed(runs.map(runName), "; ")}): ${MEANING[level]}`;
  const parts = [
    ...(s.none.length ? [part("none", s.none)] : []),
    ...(s.few.length ? [part("few", s.few)] : []),
  ];
  return (
    `${SCHEDULE_MARK} Of ${s.trained} trained run${s.trained === 1 ? "" : "s"}, ${parts.join(". ")}. The tables ` +
    `mark them ${SCHEDULE_MARK}; the training-schedule table gives each run's steps and the fix (more examples ` +
    `or epochs, a smaller batch, or no warm-up).`
  );
}

/** The note a table gets when it shows a marked run: what the marks it shows mean. */
function tableNote(levels: ReadonlySet<Shortfall>): string {
  const said = [...levels].map((l) => `${SCHEDULE_MARK} ${WORDS[l]}: ${MEANING[l]}`);
  return (
    `${said.join(". ")}. A comparison with such a run (a Δ vs base, a paired test, a mean over seeds that include ` +
    `it) carries the same caveat; the training-schedule table gives each run's steps.`
  );
}

function marksIn(t: Table): Set<Shortfall> {
  const found = new Set<Shortfall>();
  const strings = [
    ...t.columns.map((c) => c.header),
    ...t.rows.flatMap((r) => r.flatMap((c) => (c.kind === "text" ? [c.text] : []))),
  ];
  for (const s of strings) {
    if (!s.includes(SCHEDULE_MARK)) continue;
    for (const l of ["none", "few"] as const) if (s.includes(WORDS[l])) found.add(l);
  }
  return found;
}

/** The table with a note on the marks it shows (itself when it shows none, or is the schedule table). */
export function withScheduleNote(t: Table): Table {
  if (t.id === SCHEDULE_TABLE_ID) return t;
  const levels = marksIn(t);
  return levels.size === 0 ? t : { ...t, notes: [...t.notes, tableNote(levels)] };
}

/** Whether any cell records its schedule (the report draws the schedule table only then). */
export function hasSchedules(results: ExperimentResults): boolean {
  return results.cells.some((c) => c.schedule !== undefined);
}

export const SCHEDULE_TABLE_ID = "table-training-schedule";

/** Every trained run's schedule: examples, steps, warm-up, steps' worth at the full rate, and what it means. */
export function scheduleTable(results: ExperimentResults): Table {
  const rows: Cell[][] = [];
  for (const s of groupBySetting(results.cells, results.partial?.missing)) {
    if (s.method === "base") continue;
    for (const c of s.cells) {
      const p = c.schedule;
      const level = shortfallOf(c);
      rows.push([
        text(c.model),
        text(METHOD_LABELS[c.method]),
        text(c.ablation ?? "none"),
        num(c.seed),
        p ? num(p.examples) : MISSING,
        p ? num(p.steps) : MISSING,
        p ? num(p.warmupSteps) : MISSING,
        p ? num(p.fullRateSteps) : MISSING,
        text(!p ? "not recorded" : level ? `${SCHEDULE_MARK} ${WORDS[level]}` : "trained"),
        p?.warning ? text(p.warning) : MISSING,
      ]);
    }
  }
  return {
    id: SCHEDULE_TABLE_ID,
    title: "Training schedule of each trained run",
    howToRead:
      "One row per trained run (model, method, ablation, seed): its training examples, the optimiser steps they " +
      "make over the epochs, how many of those warm up (the learning rate rises from 0 at the first), and the sum " +
      "of the steps' learning-rate multipliers in steps at the full rate. A run whose sum is 0 trained nothing: " +
      "its model is its base under a new name. One under " +
      `${FEW_FULL_RATE_STEPS} barely trained. Both are marked ${SCHEDULE_MARK} wherever the report shows them, ` +
      "and \"Why\" gives the run's own warning with the fix (harden's settings: an experiment file sets them under " +
      'defaults, or in a grid). "not recorded": a run trained before its schedule was ' +
      "kept (2026-12-04).",
    columns: [
      { header: "Model" },
      { header: "Method" },
      { header: "Ablation" },
      { header: "Seed", unit: "count" },
      { header: "Examples", unit: "count" },
      { header: "Steps", unit: "count" },
      { header: "Warm-up steps", unit: "count" },
      { header: "Full-rate steps", unit: "raw" },
      { header: "Training" },
      { header: "Why" },
    ],
    rows,
    notes: [],
    absentBecause: "no trained run records its schedule (results made before 2026-12-04)",
  };
}
