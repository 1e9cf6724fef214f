/**
 * The held-out real-code loss of --code (utility.heldout_real_code_loss) per language, one row per cell and
 * language: the figure results.json keeps (perLanguage, since 2026-12-01) shown as `eval` prints it, with the same
 * interval (value ± 1.96 se, eval-summary.ts utilityInterval for a loss). Table 3 shows the overall figure only.
 */
import { groupBySetting } from "./aggregate.js";
import type { CellResult, ExperimentResults } from "./schema.js";
import { METHOD_LABELS } from "./paper-tables.js";
import { methodWithMark } from "./schedule.js";
import { Z95 } from "../eval/metrics.js";
import { num, text, type Cell, type Table } from "./table.js";

/** The utility key the figure is filed under (recipes/evaluate.ts). */
export const REAL_CODE_LOSS = "heldout_real_code_loss";

/** Whether any cell keeps the per-language figures (the report draws the table only then). */
export function hasCodeLossByLanguage(results: ExperimentResults): boolean {
  return results.cells.some((c) => c.utility?.[REAL_CODE_LOSS]?.perLanguage !== undefined);
}

/** value ± 1.96 se, as eval prints a loss's interval: a language of one document has se 0 and a point interval. */
function lossCell(value: number, stderr: number): Cell {
  return num(value, { low: value - Z95 * stderr, high: value + Z95 * stderr, se: stderr });
}

export function codeLossByLanguageTable(results: ExperimentResults): Table {
  const rows: Cell[][] = [];
  const withoutLanguages: string[] = [];
  // settings in the report's order (model, method, ablation), each setting's cells by seed
  for (const s of groupBySetting(results.cells, results.partial?.missing))
    for (const c of s.cells) {
      const u = c.utility?.[REAL_CODE_LOSS];
      if (!u) continue;
      if (!u.perLanguage) {
        withoutLanguages.push(cellName(c));
        continue;
      }
      const lead = [
        text(c.model),
        text(methodWithMark(c.method, [c])),
        text(c.ablation ?? "none"),
        num(c.seed),
      ];
      rows.push([
        ...lead,
        text("all"),
        text(u.metric),
        lossCell(u.value, u.stderr),
        num(u.stderr),
        num(u.n),
        // each document has one language: the languages' tokens add up to the overall's
        num(Object.values(u.perLanguage).reduce((t, l) => t + l.tokens, 0)),
      ]);
      for (const [lang, l] of Object.entries(u.perLanguage).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        rows.push([
          ...lead,
          text(lang),
          text(u.metric),
          lossCell(l.value, l.stderr),
          num(l.stderr),
          num(l.n),
          num(l.tokens),
        ]);
    }
  const notes: string[] = [];
  if (rows.some((r) => r[6]!.kind === "number" && r[6]!.se === 0))
    notes.push(
      "A standard error of 0 (one document, or documents with the same loss per token) makes the interval a " +
        "point: it is not an exact figure.",
    );
  if (withoutLanguages.length > 0)
    notes.push(
      `${withoutLanguages.length} cell(s) keep the overall loss without per-language figures (computed before ` +
        `2026-12-01 and reused): ${withoutLanguages.join(", ")}.`,
    );
  return {
    id: "table12-code-loss-languages",
    title: "Table 12. Held-out real-code loss (--code) by language, per run",
    howToRead:
      'One row per run (model, method, ablation, seed) and language, the run\'s overall figure first ("all", ' +
      "the one Table 3 shows). Loss is the mean negative log-likelihood per scored token over the language's " +
      "documents (token-weighted), lower is better; in brackets its 95% interval, loss ± 1.96 × se, where se is " +
      "the standard error of that token-weighted mean over documents (each document's linearised share of the " +
      "ratio, as eval computes it). n counts documents with at least one scored token. Seeds are not averaged: " +
      "each row is one evaluation as results.json keeps it.",
    columns: [
      { header: "Model" },
      { header: "Method" },
      { header: "Ablation" },
      { header: "Seed", unit: "count" },
      { header: "Language" },
      { header: "Metric" },
      { header: "Loss", unit: "raw", csvExtras: ["low", "high"] },
      { header: "se", unit: "raw" },
      { header: "n", unit: "count" },
      { header: "Tokens", unit: "count" },
    ],
    rows,
    notes,
    absentBecause: "no run kept the --code loss per language",
  };
}

function cellName(c: CellResult): string {
  return `${c.model} ${METHOD_LABELS[c.method]}${c.ablation ? ` (${c.ablation})` : ""} seed ${c.seed}`;
}
