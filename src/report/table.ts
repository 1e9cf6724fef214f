/**
 * A small table model rendered three ways: Markdown and HTML for people (formatted numbers, "—" for
 * missing data) and CSV for programs (raw numbers in base units, empty field for missing data).
 */

import { percentDigits } from "../eval/metrics.js";

/** How a number is shown; CSV always gets the raw number. */
export type Unit =
  | "rate" // fraction shown as a percentage: 0.625 -> 62.5%
  | "pp" // difference of fractions shown in percentage points, signed: 0.012 -> +1.2 pp
  | "share" // small fraction shown with 3 significant digits: 0.00123 -> 0.123%
  | "count" // integer with thousands separators
  | "flops" // scientific: 1.23e+15
  | "seconds"
  | "bytes" // shown in GiB
  | "raw" // 3 decimals
  | "delta" // signed, 3 decimals
  | "kappa"
  | "p";

/** A number from one run or averaged over seeds, with whatever uncertainty is known about it. */
export interface ReportedNumber {
  value: number;
  /** 95% interval over the evaluation's items (one seed: the runner's interval; several: see the table's note). */
  low?: number;
  high?: number;
  /** Sample standard deviation across seeds (two or more seeds). */
  sd?: number;
  /** Standard error reported by the benchmark (one seed). */
  se?: number;
  /**
   * Measured, not counted (wall time, throughput, peak memory): its sd across seeds is shown even when zero, as a
   * rate's is. Counts (parameters, FLOPs), exact in each seed, leave a zero spread out.
   */
  measured?: boolean;
  /** Seeds that had this number, and seeds in the setting; shown when they differ. */
  seeds?: number;
  ofSeeds?: number;
}

/** A number cell may carry its own unit when one column mixes units (rates and losses in T3). */
export type Cell =
  { kind: "text"; text: string } | { kind: "missing" } | ({ kind: "number"; unit?: Unit } & ReportedNumber);

export const MISSING: Cell = { kind: "missing" };
export const text = (s: string): Cell => ({ kind: "text", text: s });
export const num = (value: number | undefined, extra: Omit<ReportedNumber, "value"> = {}): Cell =>
  value === undefined || !Number.isFinite(value) ? MISSING : { kind: "number", value, ...extra };

export type CsvExtra = "low" | "high" | "sd" | "se";

export interface Column {
  header: string;
  unit?: Unit;
  /** Extra CSV fields for the uncertainty of this column, named "<header> <extra>". */
  csvExtras?: readonly CsvExtra[];
}

export interface Table {
  /** File stem, e.g. "table1-security". */
  id: string;
  title: string;
  /** One short paragraph for the HTML page: what the rows and columns are, what to look at. */
  howToRead: string;
  columns: Column[];
  rows: Cell[][];
  notes: string[];
  /** Why a table without rows has none, in a few words ("no ablation runs"): the report names it instead. */
  absentBecause: string;
}

export const DASH = "—";

function groupThousands(n: number): string {
  const sign = n < 0 ? "-" : "";
  const digits = Math.round(Math.abs(n)).toString();
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A figure that rounds to zero has no sign ("-0.000" from a κ of -8e-17, "+0.0 pp" from +4e-4 read "0"). */
function unsignedZero(s: string): string {
  return s.replace(/^[-+](?=0(\.0*)?$)/, "");
}

function signed(s: string, x: number): string {
  const z = unsignedZero(s);
  return /^0(\.0*)?$/.test(z) ? z : x > 0 ? `+${s}` : s;
}

/** One number in a unit, no uncertainty. */
export function formatValue(x: number, unit: Unit = "raw"): string {
  switch (unit) {
    case "rate":
      return `${percentDigits(x)}%`;
    case "pp":
      return `${signed((x * 100).toFixed(1), x)} pp`;
    case "share":
      return `${(x * 100).toPrecision(3)}%`;
    case "count":
      return groupThousands(x);
    case "flops":
      return x === 0 ? "0" : x.toExponential(2);
    case "seconds":
      return x < 10 ? `${x.toFixed(1)} s` : `${Math.round(x)} s`;
    case "bytes":
      return `${(x / 2 ** 30).toFixed(2)} GiB`;
    case "delta":
      return signed(x.toFixed(3), x);
    case "kappa":
      return unsignedZero(x.toFixed(3));
    case "p":
      return x < 0.001 ? "<0.001" : x.toFixed(3);
    case "raw":
      return unsignedZero(x.toFixed(3));
  }
}

/** The spread of a number in the same scale as formatValue, without unit suffix; "-0.0" (a rounding) reads "0.0". */
function formatSpread(x: number, unit: Unit): string {
  return formatSpreadSigned(x, unit).replace(/^-(0(\.0*)?%?)$/, "$1");
}

function formatSpreadSigned(x: number, unit: Unit): string {
  switch (unit) {
    case "rate":
      return percentDigits(x);
    case "pp":
      return (x * 100).toFixed(1);
    case "share":
      return `${(x * 100).toPrecision(2)}%`;
    case "count":
      return groupThousands(x);
    case "flops":
      return x.toExponential(1);
    case "seconds":
      return x < 10 ? x.toFixed(1) : `${Math.round(x)}`;
    case "bytes":
      return (x / 2 ** 30).toFixed(2);
    default:
      return x.toFixed(3);
  }
}

/**
 * "62.5% [55.1, 69.4]" for one seed with an interval, "62.5% ± 2.1 sd [50.3, 74.0]" across seeds with the
 * evaluations' interval, "61.2% ± 1.4 se" for a benchmark's standard error, "—" when missing.
 * A zero spread is shown ("± 0.0 sd") when the number is measured (it has an interval or a standard error, or is
 * marked `measured`: a time or a memory peak): two seeds that agree on a rate of 100.0% do not make it exact. It
 * is left out for counts (parameters and FLOPs, exact in each seed: seeds that agree agree exactly).
 */
export function formatCell(cell: Cell, unit: Unit = "raw"): string {
  if (cell.kind === "missing") return DASH;
  if (cell.kind === "text") return cell.text;
  unit = cell.unit ?? unit;
  let s = formatValue(cell.value, unit);
  const hasInterval = cell.low !== undefined && cell.high !== undefined;
  if (cell.sd !== undefined && (cell.sd > 0 || hasInterval || cell.se !== undefined || cell.measured)) {
    s += ` ± ${formatSpread(cell.sd, unit)} sd`;
  }
  if (hasInterval) {
    s += ` [${formatSpread(cell.low!, unit)}, ${formatSpread(cell.high!, unit)}]`;
  } else if (cell.se !== undefined) {
    s += ` ± ${formatSpread(cell.se, unit)} se`;
  }
  if (cell.seeds !== undefined && cell.ofSeeds !== undefined && cell.seeds < cell.ofSeeds) {
    s += ` (${cell.seeds}/${cell.ofSeeds} seeds)`;
  }
  return s;
}

/**
 * Text as literal Markdown on one line, for table cells, headers and notes (names and notes come from results
 * files, which anyone can write): backslashes first, so that a name's own "\\|" cannot unescape the pipe after it
 * and split the cell; pipes; backticks, so that no code span forms; a "]" that would close a link or a link
 * definition ("](", "][", "]:"), so that no link (a "javascript:" URL) forms, while a label such as
 * "GoodVibe [topk=10]" stays as it is; <, > and & as entities, so that no raw HTML or autolink passes (GFM renders
 * them); any line break as a space, so that text cannot end a row or start a heading.
 */
export function escapeMarkdown(s: string): string {
  return s
    .replace(/[\\|`]|\](?=[([:])/g, "\\$&")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/\r\n|[\r\n\u2028\u2029]/g, " ");
}

export function tableToMarkdown(table: Table): string {
  const header = table.columns.map((c) => escapeMarkdown(c.header));
  const align = table.columns.map((c) => (c.unit ? "---:" : "---"));
  const lines = [
    `### ${escapeMarkdown(table.title)}`,
    "",
    escapeMarkdown(table.howToRead),
    "",
    `| ${header.join(" | ")} |`,
    `| ${align.join(" | ")} |`,
  ];
  for (const row of table.rows) {
    const cells = row.map((cell, j) => escapeMarkdown(formatCell(cell, table.columns[j]!.unit)));
    lines.push(`| ${cells.join(" | ")} |`);
  }
  if (table.rows.length === 0) lines.push("", `_No rows: ${escapeMarkdown(table.absentBecause)}._`);
  if (table.notes.length > 0) lines.push("", ...table.notes.map((n) => `- ${escapeMarkdown(n)}`));
  return lines.join("\n") + "\n";
}

/** RFC 4180: quote fields that hold a comma, quote or line break; double the quotes. */
function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * A text cell a spreadsheet would run as a formula (it starts with =, +, -, @, a tab or a carriage return: OWASP's
 * CSV injection list) gets a leading apostrophe, which spreadsheets read as "text". Only text cells: numbers
 * (-6.3) are written as numbers.
 */
function csvText(s: string): string {
  return /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
}

function csvNumber(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? "" : String(x);
}

export function tableToCsv(table: Table): string {
  const header: string[] = [];
  for (const c of table.columns) {
    header.push(c.header);
    for (const extra of c.csvExtras ?? []) header.push(`${c.header} ${extra}`);
  }
  const lines = [header.map((h) => csvField(csvText(h))).join(",")];
  for (const row of table.rows) {
    const fields: string[] = [];
    row.forEach((cell, j) => {
      const col = table.columns[j]!;
      if (cell.kind === "text") fields.push(csvText(cell.text));
      else if (cell.kind === "missing") fields.push("");
      else fields.push(csvNumber(cell.value));
      for (const extra of col.csvExtras ?? [])
        fields.push(cell.kind === "number" ? csvNumber(cell[extra]) : "");
    });
    lines.push(fields.map(csvField).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

export function tableToHtml(table: Table): string {
  const head = table.columns.map((c) => `<th>${escapeHtml(c.header)}</th>`).join("");
  const body = table.rows
    .map((row) => {
      const tds = row.map((cell, j) => {
        const unit = table.columns[j]!.unit;
        const cls = [unit ? "num" : "", cell.kind === "missing" ? "missing" : ""].filter(Boolean).join(" ");
        return `<td${cls ? ` class="${cls}"` : ""}>${escapeHtml(formatCell(cell, unit))}</td>`;
      });
      return `<tr>${tds.join("")}</tr>`;
    })
    .join("\n");
  const empty =
    table.rows.length === 0
      ? `<tr><td colspan="${table.columns.length}" class="missing">No rows: ${escapeHtml(table.absentBecause)}.</td></tr>`
      : "";
  return `<table>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}${empty}\n</tbody>\n</table>`;
}
