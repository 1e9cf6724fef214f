/**
 * Write the report: each table as Markdown and CSV, each figure as SVG, all tables in one Markdown
 * file, and one self-contained index.html (inline CSS and SVG, nothing fetched from anywhere).
 */
import { groupBySetting, mean, modelsInOrder, seedsText, type Setting } from "./aggregate.js";
import { buildFigures, renderSvg } from "./figures.js";
import {
  readExperimentResults,
  JUDGES,
  METHODS,
  type CellResult,
  type ExperimentResults,
  type Judge,
} from "./schema.js";
import { METHOD_LABELS, buildTables, utilityBenchmarks } from "./paper-tables.js";
import { judgeAndProtocolNotes } from "./judge-tables.js";
import { pairedTables } from "./paired.js";
import { hasUnseen, unseenPairedTable, unseenSecurityTable } from "./unseen.js";
import { taskSplitTable } from "./split-table.js";
import { codeLossByLanguageTable, hasCodeLossByLanguage } from "./code-loss-table.js";
import { buildsNote } from "./builds.js";
import { hasSchedules, scheduleTable, shortScheduleNote, withScheduleNote } from "./schedule.js";
import { logReplaced, publishReport, sayWaiting, type EarlierReport, type PublishOptions } from "./folder.js";
import type { Logger } from "../util/log.js";
import { escapeHtml, escapeMarkdown, tableToCsv, tableToHtml, tableToMarkdown } from "./table.js";
import { percentDigits, type Interval } from "../eval/metrics.js";

export interface RenderedReport {
  /** The index.html page. */
  html: string;
  /** The report's files, as paths under outDir (its manifest, written too, is `manifest`). */
  files: string[];
  /** The manifest listing `files` (folder.ts MANIFEST). */
  manifest: string;
  /** Files of an earlier render into outDir that this one does not have: removed (paths under outDir). */
  removed: string[];
  /** How that earlier render's files were known (its manifest, or the renderer's names before manifests). */
  earlier: EarlierReport;
}

/**
 * The widest 95% interval a rate's row shows, as half its width, over every setting and judge: what the tables
 * print (aggregate.ts intervalAcrossSeeds: one seed's bounds, or the seeds' bounds averaged), so that the notes'
 * figure is one a reader finds in a table. A figure from n alone (Wilson at 50% on n) understated it wherever the
 * pairs name their task: those intervals are Wilson on the tasks' effective n, smaller than n.
 */
function widestPrinted(
  settings: readonly Setting[],
  rateOf: (c: CellResult, judge: Judge) => Record<string, Interval | undefined>,
): { half: number; low: number; high: number; where: string } | undefined {
  let widest: { half: number; low: number; high: number; where: string } | undefined;
  for (const s of settings) {
    for (const judge of JUDGES) {
      const keys = [...new Set(s.cells.flatMap((c) => Object.keys(rateOf(c, judge))))];
      for (const key of keys) {
        const present = s.cells.flatMap((c) => rateOf(c, judge)[key] ?? []);
        if (present.length === 0) continue;
        const low = mean(present.map((r) => r.low));
        const high = mean(present.map((r) => r.high));
        const half = (high - low) / 2;
        if (!widest || half > widest.half + 1e-12) {
          const where = `${judge} judge, ${s.model} ${METHOD_LABELS[s.method]}${s.ablation ? ` (${s.ablation})` : ""}`;
          widest = { half, low, high, where: key === "" ? where : `${where}, ${key}` };
        }
      }
    }
  }
  return widest;
}

/** "±30.3 pp (rule judge, m Base: [15.6, 76.2])" */
function widestText(w: { half: number; low: number; high: number; where: string }): string {
  return `±${(w.half * 100).toFixed(1)} pp (${w.where}: [${percentDigits(w.low)}, ${percentDigits(w.high)}])`;
}

/** The report's title: the experiment's name, and for a partial results file how much of the plan it has. */
export function reportTitle(results: ExperimentResults): string {
  const p = results.partial;
  return p
    ? `${results.name} (partial: ${results.cells.length} of ${p.planned} planned cells)`
    : results.name;
}

/** Plain-language caveats that follow from the data: seeds, sample sizes, what is missing. */
export function reportNotes(results: ExperimentResults): string[] {
  const notes: string[] = [];
  const settings = groupBySetting(results.cells, results.partial?.missing);
  const models = modelsInOrder(results.cells);
  if (results.cells.length === 0) return ["The results file has no cells: there is nothing to report."];

  // first: results of part of the plan must not be read as the experiment's (experiment/run.ts stopEarly)
  if (results.partial) {
    const { planned, missing } = results.partial;
    notes.push(
      `Partial results: ${results.cells.length} of ${planned} planned cells are done (results.partial.json, ` +
        "written by a run that stopped or left cells to other workers); " +
        (missing.length > 0 ? `missing: ${missing.map((m) => `${m.label} (${m.id})`).join(", ")}. ` : "") +
        'Every table rests on the cells done so far; a setting missing some of its seeds shows "k of n" seeds.',
    );
  }
  // then: a run that trained nothing must not be read as a result of the method (schedule.ts)
  const short = shortScheduleNote(results.cells);
  if (short) notes.push(short);
  notes.push(...judgeAndProtocolNotes(results));
  const builds = buildsNote(results.cells);
  if (builds) notes.push(builds);
  // "1 of 2" where a partial file lacks planned seeds (aggregate.ts seedsText)
  const seedCounts = [...new Set(settings.map(seedsText))].sort((a, b) =>
    a.localeCompare(b, "en", { numeric: true }),
  );
  // the seeds themselves, so that a reader can rerun a cell: those of the trained runs (the base is evaluated once)
  const trained = results.cells.filter((c) => c.method !== "base");
  const seedValues = [...new Set((trained.length ? trained : results.cells).map((c) => c.seed))].sort(
    (a, b) => a - b,
  );
  notes.push(
    `${results.cells.length} runs in ${settings.length} settings (model × method × ablation) over ` +
      `${models.length} model${models.length > 1 ? "s" : ""}; seeds per setting: ${seedCounts.join(", ")} ` +
      `(seed${seedValues.length > 1 ? "s" : ""} ${seedValues.join(", ")}).`,
  );
  if (settings.every((s) => s.cells.length === 1)) {
    notes.push(
      "Each setting was run with one seed: there is no spread across seeds, and the intervals show " +
        "evaluation noise only, not training noise.",
    );
  } else {
    notes.push(
      "With several seeds, tables show the mean, ± the sample standard deviation across seeds (shown even when " +
        "0.0) and in brackets the 95% interval over the evaluation's items; with two seeds that spread is itself " +
        "very uncertain.",
    );
  }

  let smallest: { n: number; where: string } | undefined;
  let smallestLang: { n: number; where: string } | undefined;
  for (const c of results.cells) {
    for (const judge of JUDGES) {
      const sr = c.security.safeRate?.[judge];
      if (!sr) continue;
      const where = `${judge} judge, ${c.model} ${METHOD_LABELS[c.method]}${c.ablation ? ` (${c.ablation})` : ""}`;
      if (sr.overall.n > 0 && (!smallest || sr.overall.n < smallest.n)) smallest = { n: sr.overall.n, where };
      for (const [lang, r] of Object.entries(sr.perLanguage)) {
        if (r.n > 0 && (!smallestLang || r.n < smallestLang.n))
          smallestLang = { n: r.n, where: `${where}, ${lang}` };
      }
    }
  }
  const overallWidest = widestPrinted(settings, (c, j) => {
    const sr = c.security.safeRate?.[j];
    return sr && sr.overall.n > 0 ? { "": sr.overall } : {};
  });
  if (smallest && smallest.n < 400 && overallWidest) {
    notes.push(
      `n = ${smallest.n} (${smallest.where}): intervals are wide. The widest 95% interval of a safe rate over ` +
        `all languages in the tables is ${widestText(overallWidest)}, so smaller differences between methods ` +
        "are not resolved.",
    );
  }
  const langWidest = widestPrinted(settings, (c, j) =>
    Object.fromEntries(
      Object.entries(c.security.safeRate?.[j]?.perLanguage ?? {}).filter(([, r]) => r.n > 0),
    ),
  );
  if (smallestLang && smallestLang.n < 400 && (!smallest || smallestLang.n < smallest.n) && langWidest) {
    notes.push(
      `Per-language rows rest on as few as n = ${smallestLang.n} programs (${smallestLang.where}); their ` +
        `intervals are up to ${widestText(langWidest)}.`,
    );
  }

  for (const model of models) {
    const absent = METHODS.filter(
      (m) => !settings.some((s) => s.model === model && s.method === m && !s.ablation),
    );
    if (absent.length > 0) {
      notes.push(
        `${model}: no run of ${absent.map((m) => METHOD_LABELS[m]).join(", ")}; those rows are absent or "—".`,
      );
    }
  }
  const noSafe = results.cells.filter((c) => !c.security.safeRate).length;
  if (noSafe > 0) notes.push(`${noSafe} run(s) have no safe-rate evaluation; their safe-rate cells are "—".`);
  if (utilityBenchmarks(results.cells).length === 0) {
    notes.push("No run has utility results: Table 3 and Figure 1 are left out.");
  } else {
    const noUtility = results.cells.filter((c) => !c.utility || Object.keys(c.utility).length === 0).length;
    if (noUtility > 0) notes.push(`${noUtility} run(s) have no utility results; their cells are "—".`);
  }
  const bothJudges = results.cells.some((c) => c.security.safeRate?.rule && c.security.safeRate?.llm);
  if (bothJudges) {
    notes.push(
      "Neither judge is ground truth: the rule judge only sees the patterns it has rules for, and the LLM " +
        "judge can be wrong or inconsistent. Table 6 shows how far they agree.",
    );
  }
  notes.push("CSV files hold raw numbers (rates as fractions, not percent) and leave missing data empty.");
  return notes;
}

const CSS = `
body { font-family: Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.missing { color: #999; text-align: center; }
.scroll { overflow-x: auto; }
.how { background: #f7f9fc; border-left: 3px solid #8aa4c8; padding: 0.5em 0.8em; max-width: 60em; }
figure { margin: 1.5em 0; }
figcaption { max-width: 60em; color: #444; font-size: 14px; }
.notes li, .tnotes li { max-width: 60em; }
`;

function section(title: string, id: string, body: string): string {
  return `<section id="${escapeHtml(id)}">\n<h2>${escapeHtml(title)}</h2>\n${body}\n</section>`;
}

/**
 * Render the report into outDir (created if needed): every file is made first, then the folder gets this render's
 * files and loses an earlier render's that this one does not have, keeping anything else there (folder.ts).
 * Async because Vega renders SVG asynchronously.
 */
export async function renderReport(
  results: ExperimentResults,
  outDir: string,
  opts: PublishOptions = {},
): Promise<RenderedReport> {
  const contents = new Map<string, string>();
  const write = (name: string, data: string) => {
    contents.set(name, data);
  };

  // A table without rows is named in one line with the reason instead of being drawn empty.
  // the task split and the paired tests exist only for results that have them (a task-held-out study; cells
  // that record per-item outcomes): other reports do not list them as absent
  const allTables = [
    ...buildTables(results),
    ...(results.taskSplit ? [taskSplitTable(results)] : []),
    ...(results.cells.some((c) => c.outcomes) ? pairedTables(results) : []),
    // results that record which held-out pairs training shares a prompt or code with (since 2026-12-02)
    ...(hasUnseen(results) ? [unseenSecurityTable(results), unseenPairedTable(results)] : []),
    // the --code loss per language, for results that keep it (eval --code since 2026-12-01)
    ...(hasCodeLossByLanguage(results) ? [codeLossByLanguageTable(results)] : []),
    // every trained run's schedule, for results that record it (since 2026-12-04)
    ...(hasSchedules(results) ? [scheduleTable(results)] : []),
  ].map(withScheduleNote);
  const tables = allTables.filter((t) => t.rows.length > 0);
  const absent = allTables.filter((t) => t.rows.length === 0);
  const absentLine =
    absent.length > 0
      ? `Tables not shown: ${absent.map((t) => `${t.title.replace(/\..*$/, "")} (${t.absentBecause})`).join("; ")}.`
      : "";
  for (const t of tables) {
    write(`${t.id}.md`, tableToMarkdown(t));
    write(`${t.id}.csv`, tableToCsv(t));
  }
  // the name and machine come from the results file as anyone wrote it: escaped as the tables' text is
  const header =
    `# ${escapeMarkdown(reportTitle(results))}\n\n` +
    `Created ${escapeMarkdown(results.createdAt)} on ${escapeMarkdown(results.machine)}.\n\n`;
  // the notes index.html opens with (the protocol and its departures from the paper, seeds, sample sizes): a
  // reader of the Markdown alone needs them as much
  const notesMd = `## Notes\n\n${reportNotes(results)
    .map((n) => `- ${escapeMarkdown(n)}`)
    .join("\n")}\n\n`;
  write(
    "tables.md",
    header +
      notesMd +
      (absentLine ? `${escapeMarkdown(absentLine)}\n\n` : "") +
      tables.map(tableToMarkdown).join("\n"),
  );

  const figures = buildFigures(results);
  const svgs: string[] = [];
  for (const f of figures) {
    const svg = await renderSvg(f.spec, f.id);
    write(`${f.id}.svg`, svg);
    svgs.push(svg);
  }
  const notes = reportNotes(results);
  const tableSections = tables.map((t) =>
    section(
      t.title,
      t.id,
      [
        `<p class="how"><strong>How to read this.</strong> ${escapeHtml(t.howToRead)}</p>`,
        `<div class="scroll">${tableToHtml(t)}</div>`,
        t.notes.length > 0
          ? `<ul class="tnotes">${t.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join("")}</ul>`
          : "",
        `<p class="meta">Also as <a href="${t.id}.md">Markdown</a> and <a href="${t.id}.csv">CSV</a>.</p>`,
      ].join("\n"),
    ),
  );
  const figureSections = figures.map((f, i) =>
    section(
      f.title,
      f.id,
      `<figure>\n${svgs[i]}\n<figcaption>${escapeHtml(f.caption)}</figcaption>\n</figure>`,
    ),
  );
  const missingFigures: string[] = [];
  if (!figures.some((f) => f.id === "figure1-utility-delta"))
    missingFigures.push("utility change (no utility results for both a method and its base)");
  if (!figures.some((f) => f.id === "figure2-importance-clusters"))
    missingFigures.push("neuron importance by cluster (no GoodVibe run with importanceByModule)");
  if (!figures.some((f) => f.id === "figure3-neurons-by-layer"))
    missingFigures.push("neurons by layer (no GoodVibe run with neurons.perLayer)");
  const toc = [...tables, ...figures]
    .map((x) => `<li><a href="#${escapeHtml(x.id)}">${escapeHtml(x.title)}</a></li>`)
    .join("");

  const html = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(reportTitle(results))} — GoodVibe report</title>
<style>${CSS}</style>
</head>
<body>
<h1>${escapeHtml(reportTitle(results))}</h1>
<p class="meta">GoodVibe experiment report · created ${escapeHtml(results.createdAt)} · machine: ${escapeHtml(results.machine || "not recorded")}</p>
<h2>Notes</h2>
<ul class="notes">${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join("\n")}</ul>
${absentLine ? `<p class="meta">${escapeHtml(absentLine)}</p>` : ""}
${missingFigures.length > 0 ? `<p class="meta">Figures not drawn: ${escapeHtml(missingFigures.join("; "))}.</p>` : ""}
<h2>Contents</h2>
<ul>${toc}</ul>
${tableSections.join("\n")}
${figureSections.join("\n")}
</body>
</html>
`;
  write("index.html", html);
  const put = await publishReport(
    outDir,
    contents,
    { name: results.name, createdAt: results.createdAt },
    undefined,
    opts,
  );
  return { html, ...put };
}

/**
 * renderReport as a command runs it, saying in `log` (each line after `prefix`) that it waits for a folder another
 * render holds and what it removed of an earlier render there: the one way `goodvibe report`, `experiment run` and
 * the demo say them.
 */
export async function renderReportLogged(
  results: ExperimentResults,
  outDir: string,
  log: Logger,
  prefix = "",
): Promise<RenderedReport> {
  const r = await renderReport(results, outDir, sayWaiting(outDir, log, prefix));
  logReplaced(r, log, prefix);
  return r;
}

/** Read a results JSON file, validate it, and render its report into outDir. */
export async function renderReportFromFile(
  resultsFile: string,
  outDir: string,
  opts: PublishOptions = {},
): Promise<RenderedReport> {
  return renderReport(readExperimentResults(resultsFile), outDir, opts);
}
