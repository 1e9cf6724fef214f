/**
 * Runs whose training did nothing (every optimiser step at learning rate 0) or barely are marked wherever the
 * report shows them, with the reason; runs that trained, and results from before the schedule was recorded, are
 * shown as before. The schedules are set by hand on the hand-made results: GoodVibe's two seeds trained nothing
 * (1 step, 1 of it warm-up), one LoRA seed barely (3 steps' worth), the rest trained (40 steps).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { renderReport, reportNotes } from "../../src/report/render.js";
import { buildTables } from "../../src/report/paper-tables.js";
import { groupBySetting } from "../../src/report/aggregate.js";
import { settingLabel } from "../../src/report/paired.js";
import { codeLossByLanguageTable } from "../../src/report/code-loss-table.js";
import {
  listed,
  scheduleMark,
  scheduleTable,
  shortScheduleNote,
  withScheduleNote,
} from "../../src/report/schedule.js";
import {
  cellResultSchema,
  parseExperimentResults,
  type CellResult,
  type ExperimentResults,
} from "../../src/report/schema.js";
import { formatCell, tableToMarkdown } from "../../src/report/table.js";
import { handMadeResults, MODEL } from "./fixture.js";
import { cellOf, parseMarkdownTable } from "./parse.js";

const NONE =
  "1 training example × 1 epoch ... make 1 step, 1 of them warm-up: every step is at learning rate 0";
const FEW = "3 training examples × 1 epoch ... make 3 steps: 3 steps' worth at the full learning rate";
const none = {
  examples: 1,
  steps: 1,
  warmupSteps: 1,
  fullRateSteps: 0,
  level: "none",
  warning: NONE,
} as const;
const few = { examples: 3, steps: 3, warmupSteps: 0, fullRateSteps: 3, level: "few", warning: FEW } as const;
const fine = { examples: 40, steps: 40, warmupSteps: 0, fullRateSteps: 40 } as const;

function withSchedules(): ExperimentResults {
  const r = handMadeResults();
  for (const c of r.cells) {
    if (c.method === "base") continue;
    c.schedule =
      c.method === "goodvibe" && !c.ablation ? none : c.method === "lora" && c.seed === 1 ? few : fine;
  }
  // through the schema, as the report reads results.json
  return parseExperimentResults(JSON.parse(JSON.stringify(r)), "results.json");
}

/** The Method column of a table's rows, as the Markdown shows it. */
function methodColumn(t: ReturnType<typeof buildTables>[number]): string[] {
  const col = t.columns.findIndex((c) => c.header === "Method");
  return t.rows.map((r) => formatCell(r[col]!));
}

test("the schema keeps a cell's schedule; a cell from before it reads as not recorded; level without its warning is refused", () => {
  const r = withSchedules();
  assert.deepEqual(r.cells.find((c) => c.method === "goodvibe")!.schedule, none);
  assert.equal(r.cells.find((c) => c.method === "base")!.schedule, undefined);
  const old = handMadeResults().cells[2]!;
  assert.equal(cellResultSchema.safeParse(old).success, true);
  const bad = cellResultSchema.safeParse({ ...old, schedule: { ...fine, level: "none" } });
  assert.equal(bad.success, false);
});

test("the mark: every seed, some seeds, none", () => {
  const s = (x?: CellResult["schedule"]) => ({ ...(x ? { schedule: x } : {}) });
  assert.equal(scheduleMark([s(none), s(none)]), " ⚠ trained nothing");
  assert.equal(scheduleMark([s(few), s(fine)]), " ⚠ 1/2 seeds barely trained");
  assert.equal(
    scheduleMark([s(none), s(few), s(fine)]),
    " ⚠ 1/3 seeds trained nothing, 1/3 seeds barely trained",
  );
  assert.equal(scheduleMark([s(fine), s()]), "");
  assert.equal(scheduleMark([]), "");
});

test("tables mark the runs that trained nothing or barely beside the method, and note why; the others are as before", () => {
  const r = withSchedules();
  const tables = buildTables(r).map(withScheduleNote);
  const t1 = tables.find((t) => t.id === "table1-security")!;
  const methods = new Set(methodColumn(t1));
  assert.deepEqual(
    [...methods],
    ["Base", "GoodVibe ⚠ trained nothing", "LoRA ⚠ 1/2 seeds barely trained", "Full FT"],
  );
  // the note says what each mark it shows means, the cost of reading it as a result included
  const note = t1.notes.at(-1)!;
  assert.match(note, /⚠ trained nothing: every optimiser step was at learning rate 0/);
  assert.match(note, /not a result of the method/);
  assert.match(note, /⚠ barely trained: its steps add up to fewer than 10 at the full learning rate/);
  // T2 (cost), T3 (utility, its Δ vs base), T4 (the ablation's reference row is the marked GoodVibe; the ablation
  // itself trained), T6 (per run, McNemar vs base)
  for (const id of ["table2-cost", "table3-utility", "table6-judges"]) {
    const t = tables.find((x) => x.id === id)!;
    assert.ok(
      methodColumn(t).some((m) => m === "GoodVibe ⚠ trained nothing"),
      `${id}: ${methodColumn(t).join(", ")}`,
    );
    assert.match(t.notes.at(-1)!, /⚠ trained nothing/, id);
  }
  const t4 = tables.find((x) => x.id === "table4-ablations")!;
  assert.deepEqual(methodColumn(t4), ["GoodVibe ⚠ trained nothing", "GoodVibe"]);
  // the paper-layout table has a column per method: the model's cell names the runs
  const layout = tables.find((x) => x.id.startsWith("table-paper-layout"))!;
  assert.equal(
    formatCell(layout.rows[0]![0]!),
    // (the paper's column order: LoRA first)
    `${MODEL} (LoRA ⚠ 1/2 seeds barely trained; GoodVibe ⚠ trained nothing)`,
  );
  // T8 (clusters) shows identification's neurons, which do not depend on training: no mark, no note
  const t8 = tables.find((x) => x.id === "table8-clusters")!;
  assert.ok(t8.rows.length > 0);
  assert.ok(!methodColumn(t8).some((m) => m.includes("⚠")));
  assert.equal(t8.notes.length, buildTables(r).find((x) => x.id === "table8-clusters")!.notes.length);
  // a paired comparison's label carries the mark
  const gv = groupBySetting(r.cells).find((s) => s.method === "goodvibe" && !s.ablation)!;
  assert.equal(settingLabel(gv), "GoodVibe ⚠ trained nothing");
  // a per-run table (Table 12's real-code loss) marks the run
  const withLoss = withSchedules();
  for (const c of withLoss.cells)
    c.utility = {
      ...c.utility,
      heldout_real_code_loss: {
        metric: "loss",
        value: 1,
        stderr: 0.1,
        n: 4,
        perLanguage: { cpp: { value: 1, stderr: 0.1, n: 4, tokens: 100 } },
      },
    };
  const t12 = withScheduleNote(codeLossByLanguageTable(withLoss));
  assert.ok(methodColumn(t12).includes("GoodVibe ⚠ trained nothing"));
  assert.match(t12.notes.at(-1)!, /⚠ trained nothing/);
});

test("the schedule table: one row per trained run with its steps, its status and its warning", () => {
  const t = scheduleTable(withSchedules());
  assert.equal(t.rows.length, 8); // 10 runs, 2 of them base
  const md = parseMarkdownTable(tableToMarkdown(t));
  const at = (method: string, seed: string, col: string, ablation = "none") =>
    cellOf(md, [MODEL, method, ablation, seed], col);
  assert.equal(at("GoodVibe", "1", "Steps"), "1");
  assert.equal(at("GoodVibe", "1", "Warm-up steps"), "1");
  assert.equal(at("GoodVibe", "1", "Full-rate steps"), "0.000");
  assert.equal(at("GoodVibe", "1", "Training"), "⚠ trained nothing");
  assert.equal(at("GoodVibe", "1", "Why"), NONE);
  assert.equal(at("LoRA", "1", "Training"), "⚠ barely trained");
  assert.equal(at("LoRA", "2", "Training"), "trained");
  assert.equal(at("LoRA", "2", "Why"), "—");
  assert.equal(at("GoodVibe", "2", "Training", "no-cluster"), "trained");
  // a run from before the record
  const r = withSchedules();
  delete r.cells.find((c) => c.method === "full")!.schedule;
  const old = scheduleTable(r);
  const fullRow = old.rows.find((row) => formatCell(row[1]!) === "Full FT")!;
  assert.equal(formatCell(fullRow[8]!), "not recorded");
  assert.equal(formatCell(fullRow[5]!), "—");
});

test("the report: notes open with the runs that trained nothing or barely, by name and why; every table showing one has the note; results without schedules are as before", async () => {
  const dir = scratchDir("gv-schedule-report-");
  try {
    const notes = reportNotes(withSchedules());
    assert.match(
      notes[0]!,
      new RegExp(
        `^⚠ Of 8 trained runs, 2 trained nothing \\(${MODEL} GoodVibe seed 1; ${MODEL} GoodVibe seed 2\\): every optimiser step was at learning rate 0.*1 barely trained \\(${MODEL} LoRA seed 1\\)`,
      ),
    );
    await renderReport(withSchedules(), path.join(dir, "marked"));
    const md = fs.readFileSync(path.join(dir, "marked", "tables.md"), "utf8");
    assert.match(md, /## Notes\n\n- ⚠ Of 8 trained runs, 2 trained nothing/);
    assert.ok(fs.existsSync(path.join(dir, "marked", "table-training-schedule.md")));
    const html = fs.readFileSync(path.join(dir, "marked", "index.html"), "utf8");
    assert.match(html, /<td>GoodVibe ⚠ trained nothing<\/td>/);
    assert.match(html, /Training schedule of each trained run/);
    // Figure 1's caption names the marked bars
    assert.match(
      html,
      new RegExp(
        `${MODEL} GoodVibe ⚠ trained nothing; ${MODEL} LoRA ⚠ 1/2 seeds barely trained: these bars are not the method's effect on utility`,
      ),
    );

    // results without schedules (before 2026-12-04): no mark, no schedule table, the notes as they were
    await renderReport(handMadeResults(), path.join(dir, "old"));
    const oldMd = fs.readFileSync(path.join(dir, "old", "tables.md"), "utf8");
    assert.ok(!oldMd.includes("⚠"));
    assert.ok(!fs.existsSync(path.join(dir, "old", "table-training-schedule.md")));
    assert.ok(!reportNotes(handMadeResults()).some((n) => n.includes("⚠")));
    // schedules that all trained: the table is there, no mark anywhere else
    const trained = withSchedules();
    for (const c of trained.cells) if (c.schedule) c.schedule = fine;
    await renderReport(trained, path.join(dir, "trained"));
    const trainedMd = fs.readFileSync(path.join(dir, "trained", "tables.md"), "utf8");
    // (the schedule table's how-to-read names the mark)
    assert.doesNotMatch(trainedMd, /⚠ (trained nothing|barely trained|Of )/);
    assert.ok(fs.existsSync(path.join(dir, "trained", "table-training-schedule.md")));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a large grid's note names the first 8 runs and counts the rest; the schedule table lists every one", () => {
  const r = withSchedules();
  const gv = r.cells.find((c) => c.method === "goodvibe" && !c.ablation)!;
  // 12 seeds of GoodVibe that trained nothing
  const many = Array.from({ length: 12 }, (_, i) => ({ ...gv, id: `gv-${i}`, seed: 10 + i }));
  const cells = [...r.cells.filter((c) => c.method !== "goodvibe" || c.ablation), ...many];
  const note = shortScheduleNote(cells)!;
  const names = Array.from({ length: 8 }, (_, i) => `${MODEL} GoodVibe seed ${10 + i}`).join("; ");
  assert.ok(note.includes(`12 trained nothing (${names}; and 4 more): every optimiser step`), note);
  assert.equal(listed(["a", "b"], ", "), "a, b");
  assert.equal(
    scheduleTable({ ...r, cells }).rows.filter((row) => formatCell(row[8]!) === "⚠ trained nothing").length,
    12,
  );
});
