import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { renderReport } from "../../src/report/render.js";
import { num, tableToCsv, tableToMarkdown, text, type Table } from "../../src/report/table.js";
import { handMadeResults, MODEL } from "./fixture.js";

/** A model name from a hand-written results file that tries everything Markdown offers (the audit's). */
const HOSTILE = "m|x\\|y <img src=x onerror=alert(1)>\n# Heading `tick` [link](javascript:alert(1))";

/**
 * A GFM table row's cells as a renderer reads them, written here from the GFM spec rather than taken from the
 * code under test: split on pipes that no backslash escapes, then undo backslash escapes and the three entities.
 */
function rowCells(line: string): string[] {
  assert.ok(line.startsWith("| ") && line.endsWith(" |"), `not a table row: ${line}`);
  const raw: string[] = [];
  let cur = "";
  for (let i = 1; i < line.length - 1; i++) {
    const ch = line[i]!;
    if (ch === "\\") {
      cur += ch + line[++i]!;
    } else if (ch === "|") {
      raw.push(cur);
      cur = "";
    } else cur += ch;
  }
  raw.push(cur);
  return raw.map((c) =>
    c.trim().replace(/\\(.)/g, "$1").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&"),
  );
}

function hostileResults() {
  const r = handMadeResults();
  r.name = `demo <b>x</b>\n## injected`;
  r.machine = "cpu | <script>alert(2)</script>";
  for (const c of r.cells) c.model = HOSTILE;
  return r;
}

test("a hostile model name stays one Markdown cell with its text, and no HTML, link, code span or heading forms", async () => {
  const dir = scratchDir("gv-report-escape-");
  try {
    const out = path.join(dir, "report");
    await renderReport(hostileResults(), out);
    const md = fs.readFileSync(path.join(out, "table1-security.md"), "utf8");
    const rows = md.split("\n").filter((l) => l.startsWith("| "));
    const header = rowCells(rows[0]!);
    assert.equal(header[0], "Model");
    const data = rows.slice(2);
    assert.ok(data.length > 0);
    for (const row of data) {
      const cells = rowCells(row);
      assert.equal(cells.length, header.length, `cells of ${row}`);
      // the name as written, its line break read as a space
      assert.equal(cells[0], HOSTILE.replace("\n", " "));
    }
    const all = fs.readFileSync(path.join(out, "tables.md"), "utf8");
    assert.ok(!/<img|<script|<b>/.test(all), "raw HTML passed into tables.md");
    assert.ok(!/(^|[^\\])\](\(|\[|:)/.test(all), "a link formed");
    // the only headings are the report's own: its title (name on one line), Notes, and the tables'
    const headings = all.split("\n").filter((l) => /^#/.test(l));
    assert.equal(headings[0], "# demo &lt;b&gt;x&lt;/b&gt; ## injected");
    assert.ok(
      headings.slice(1).every((h) => h === "## Notes" || h.startsWith("### ")),
      headings.join("\n"),
    );
    assert.ok(all.includes("on cpu \\| &lt;script&gt;alert(2)&lt;/script&gt;."));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a table's notes and title are escaped like its cells: a note's line break does not start a heading", () => {
  const table: Table = {
    id: "t",
    title: "T <i>x</i>",
    howToRead: "read",
    columns: [{ header: "Model" }],
    rows: [[text(MODEL)]],
    notes: ["first\n# x [a](javascript:alert(1))"],
    absentBecause: "",
  };
  const lines = tableToMarkdown(table).split("\n");
  assert.equal(lines[0], "### T &lt;i&gt;x&lt;/i&gt;");
  assert.ok(!lines.some((l) => l.startsWith("# ")), lines.join("\n"));
  assert.ok(lines.includes("- first # x [a\\](javascript:alert(1))"), lines.join("\n"));
});

test("CSV text cells that a spreadsheet would run as a formula are quoted as text; numbers are not touched", () => {
  const table: Table = {
    id: "t",
    title: "T",
    howToRead: "",
    columns: [{ header: "Model" }, { header: "Δ", unit: "pp" }],
    rows: [
      [text("=HYPERLINK(1)"), num(-6.3)],
      [text("+1"), num(-0.5)],
      [text("-cmd"), num(2)],
      [text("@SUM(A1)"), num(0)],
      [text("\tx"), num(1)],
      [text("plain-name"), num(1)],
    ],
    notes: [],
    absentBecause: "",
  };
  const lines = tableToCsv(table).split("\r\n");
  assert.deepEqual(lines.slice(1, 7), [
    "'=HYPERLINK(1),-6.3",
    "'+1,-0.5",
    "'-cmd,2",
    "'@SUM(A1),0",
    "'\tx,1",
    "plain-name,1",
  ]);
});
