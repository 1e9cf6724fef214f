/**
 * The report's table of the --code loss per language (report/code-loss-table.ts): every number index.html shows
 * is results.json's, read back from the file the report was rendered from, with the interval worked out here
 * (value ± 1.96 se); names are escaped; results without per-language figures draw no table.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { renderReport, renderReportFromFile } from "../../src/report/render.js";
import type { ExperimentResults } from "../../src/report/schema.js";
import { handMadeResults } from "./fixture.js";
import { parseCsv } from "./parse.js";

const TABLE = "table12-code-loss-languages";
const NASTY = 'c<b>&"x';

/** The hand-made results, with --code figures per language on the base and GoodVibe cells (both seeds). */
function withCodeLoss(): ExperimentResults {
  const r = handMadeResults();
  let k = 0;
  for (const c of r.cells.filter((c) => (c.method === "base" || c.method === "goodvibe") && !c.ablation)) {
    k++;
    // round numbers, different per cell; python 2 documents, the other language 1 (se 0: a point interval)
    const py = { value: 1.25 + 0.1 * k, stderr: 0.375, n: 2, tokens: 4 };
    const other = { value: 1.75 - 0.05 * k, stderr: 0, n: 1, tokens: 2 };
    const value = (py.value * py.tokens + other.value * other.tokens) / (py.tokens + other.tokens);
    c.utility!.heldout_real_code_loss = {
      metric: "nll/token",
      value,
      stderr: 0.2 + 0.01 * k,
      n: 3,
      perLanguage: { python: py, [NASTY]: other },
    };
  }
  return r;
}

const unescape = (s: string) =>
  s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&");

/** The body rows of one table section of index.html, cells unescaped. */
function htmlRows(html: string, id: string): string[][] {
  const section = html.match(new RegExp(`<section id="${id}">([\\s\\S]*?)</section>`));
  assert.ok(section, `no section ${id}`);
  const body = section[1]!.match(/<tbody>([\s\S]*?)<\/tbody>/)![1]!;
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) =>
    [...m[1]!.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((d) => unescape(d[1]!)),
  );
}

test("index.html shows each cell's --code loss per language as results.json has it, with value ± 1.96 se", async () => {
  const dir = scratchDir("gv-code-loss-report-");
  const file = path.join(dir, "results.json");
  fs.writeFileSync(file, JSON.stringify(withCodeLoss()));
  const out = path.join(dir, "report");
  const { html } = await renderReportFromFile(file, out);
  // the reference: the file itself, read as JSON (not through the schema)
  const json = JSON.parse(fs.readFileSync(file, "utf8")) as ExperimentResults;
  const rows = htmlRows(html, TABLE);
  // no field here holds a comma: a quoted one (the name with a quote) only needs its quotes undone
  const parsed = parseCsv(fs.readFileSync(path.join(out, `${TABLE}.csv`), "utf8"));
  const unquote = (f: string) => (f.startsWith('"') ? f.slice(1, -1).replace(/""/g, '"') : f);
  const csv = { header: parsed.header, rows: parsed.rows.map((r) => r.map(unquote)) };
  const col = (h: string) => csv.header.indexOf(h);
  const labels: Record<string, string> = { base: "Base", goodvibe: "GoodVibe" };
  let seen = 0;
  for (const c of json.cells) {
    const u = c.utility?.heldout_real_code_loss;
    if (!u) continue;
    const figures = [
      ["all", u.value, u.stderr, u.n, 6] as const,
      ...Object.entries(u.perLanguage!).map(([l, x]) => [l, x.value, x.stderr, x.n, x.tokens] as const),
    ];
    for (const [lang, value, se, n, tokens] of figures) {
      seen++;
      const key = [c.model, labels[c.method]!, "none", String(c.seed), lang];
      const row = rows.filter((r) => key.every((k, i) => r[i] === k));
      assert.equal(row.length, 1, JSON.stringify(key));
      const z = 1.959963984540054;
      assert.deepEqual(row[0]!.slice(5), [
        "nll/token",
        `${value.toFixed(3)} [${(value - z * se).toFixed(3)}, ${(value + z * se).toFixed(3)}]`,
        se.toFixed(3),
        String(n),
        String(tokens),
      ]);
      // the CSV keeps the raw numbers: exactly the file's, and the interval's bounds
      const line = csv.rows.filter((r) => key.every((k, i) => r[i] === k));
      assert.equal(line.length, 1, JSON.stringify(key));
      assert.equal(Number(line[0]![col("Loss")]), value);
      assert.ok(Math.abs(Number(line[0]![col("Loss low")]) - (value - z * se)) < 1e-12);
      assert.ok(Math.abs(Number(line[0]![col("Loss high")]) - (value + z * se)) < 1e-12);
      assert.equal(Number(line[0]![col("se")]), se);
      assert.equal(Number(line[0]![col("n")]), n);
    }
  }
  // 4 cells × (all, python, the other language)
  assert.equal(seen, 12);
  assert.equal(rows.length, 12);
  // the language's name is escaped in the page, never raw markup
  assert.ok(html.includes("c&lt;b&gt;&amp;&quot;x"));
  assert.ok(!html.includes(NASTY));
  // one language of one document: its interval is a point, and the notes say it is not exact
  assert.match(html, /A standard error of 0 [^<]*makes the interval a point/);
  assert.ok(html.includes(`<a href="#${TABLE}">`));
  fs.rmSync(dir, { recursive: true, force: true });
});

test("results without per-language --code figures draw no table and do not name it absent", async () => {
  const dir = scratchDir("gv-code-loss-report-");
  const { html, files } = await renderReport(handMadeResults(), dir);
  assert.ok(!files.some((f) => path.basename(f).startsWith(TABLE)));
  assert.ok(!html.includes("Table 12"));
  // a cell whose figure was cached before per-language figures were kept is named in the notes
  const r = withCodeLoss();
  const old = r.cells.find((c) => c.method === "base" && c.seed === 2)!;
  delete old.utility!.heldout_real_code_loss!.perLanguage;
  const { html: html2 } = await renderReport(r, dir);
  assert.equal(htmlRows(html2, TABLE).length, 9);
  assert.match(
    html2,
    /1 cell\(s\) keep the overall loss without per-language figures[^<]*tiny-coder Base seed 2/,
  );
  fs.rmSync(dir, { recursive: true, force: true });
});
