import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { XMLValidator } from "fast-xml-parser";
import type { TopLevelSpec } from "vega-lite";
import {
  importanceFigure,
  neuronsByLayerFigure,
  renderSvg,
  utilityDeltaFigure,
} from "../../src/report/figures.js";
import { renderReport, reportNotes } from "../../src/report/render.js";
import { parseExperimentResults, type ExperimentResults } from "../../src/report/schema.js";
import { wilsonInterval } from "../../src/eval/metrics.js";
import { formatCell } from "../../src/report/table.js";
import { handMadeResults, MODEL } from "./fixture.js";
import { cellOf, parseMarkdownTable } from "./parse.js";

function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = scratchDir("gv-report-");
  return fn(dir).finally(() => fs.rmSync(dir, { recursive: true, force: true }));
}

/** The SVG elements of an HTML page, outermost only (ours do not nest). */
function inlineSvgs(html: string): string[] {
  return html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
}

test("renderReport writes every table with rows as Markdown and CSV, three SVG figures and index.html", async () => {
  await withTempDir(async (dir) => {
    const out = path.join(dir, "report");
    const { html, files } = await renderReport(handMadeResults(), out);
    const names = files.map((f) => path.relative(out, f)).sort();
    // the fixture has no threshold/top-k/epoch study: Table 5 is named, not drawn
    const tables = [
      "table-paper-layout-cpp-java",
      "table1-security",
      "table2-cost",
      "table3-utility",
      "table4-ablations",
      "table6-judges",
      "table7-security-by-cwe",
      "table8-clusters",
    ];
    const figures = ["figure1-utility-delta", "figure2-importance-clusters", "figure3-neurons-by-layer"];
    const expected = [
      ...tables.flatMap((t) => [`${t}.md`, `${t}.csv`]),
      ...figures.map((f) => `${f}.svg`),
      "index.html",
      "tables.md",
    ].sort();
    assert.deepEqual(names, expected);
    for (const f of files) assert.ok(fs.statSync(f).size > 0, `${f} is empty`);
    assert.equal(fs.readFileSync(path.join(out, "index.html"), "utf8"), html);
    // No temp files left behind by the atomic writes; the manifest lists the report's files, itself not among them
    assert.deepEqual(fs.readdirSync(out).sort(), [".goodvibe-report.json", ...expected]);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, ".goodvibe-report.json"), "utf8"));
    assert.equal(manifest.complete, true);
    assert.deepEqual([...manifest.files].sort(), expected);

    // The combined Markdown holds the same tables as the per-table files.
    const combined = fs.readFileSync(path.join(out, "tables.md"), "utf8");
    assert.ok(combined.includes(fs.readFileSync(path.join(out, "table3-utility.md"), "utf8")));
  });
});

test("the SVG files are well-formed XML and are the ones inlined in the page", async () => {
  await withTempDir(async (dir) => {
    const { html, files } = await renderReport(handMadeResults(), dir);
    const svgFiles = files.filter((f) => f.endsWith(".svg"));
    assert.equal(svgFiles.length, 3);
    const inline = inlineSvgs(html);
    assert.equal(inline.length, 3);
    for (const f of svgFiles) {
      const svg = fs.readFileSync(f, "utf8");
      assert.equal(XMLValidator.validate(svg), true, `${f} is not well-formed XML`);
      assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      assert.ok(inline.includes(svg), `${path.basename(f)} is not inlined verbatim`);
    }
    // Text made it into the figures (Vega renders labels without node-canvas).
    const [fig1, fig2, fig3] = svgFiles.map((f) => fs.readFileSync(f, "utf8"));
    for (const label of ["GoodVibe", "LoRA", "Full FT", "gsm8k (Δ pp)"])
      assert.ok(fig1!.includes(`>${label}<`), label);
    for (const label of ["q_proj", "k_proj", "v_proj"]) assert.ok(fig2!.includes(`>${label}<`), label);
    for (const label of ["down_proj", "q_proj", "layer"]) assert.ok(fig3!.includes(`>${label}<`), label);
  });
});

test("index.html is self-contained: no external URLs, scripts or stylesheets; unique ids", async () => {
  await withTempDir(async (dir) => {
    const { html } = await renderReport(handMadeResults(), dir);
    // SVG namespace declarations are names, not fetches; nothing else may mention http(s).
    const withoutNamespaces = html.replace(/xmlns(:\w+)?="http:\/\/www\.w3\.org\/[^"]*"/g, "");
    assert.doesNotMatch(withoutNamespaces, /https?:/i);
    assert.doesNotMatch(html, /<script|<link|<iframe|<img|@import|src=/i);
    assert.doesNotMatch(html, /(href|url\()\s*["']?\/\//i);
    // Several inline SVGs share the page's id namespace: clip-path ids must not collide.
    const ids = [...html.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]);
    assert.equal(new Set(ids).size, ids.length, "duplicate ids in index.html");
    for (const ref of html.matchAll(/url\(#([^)]+)\)/g))
      assert.ok(ids.includes(ref[1]), `dangling url(#${ref[1]})`);
  });
});

test("index.html carries the experiment's name, machine and date, the tables and their notes", async () => {
  await withTempDir(async (dir) => {
    const results = handMadeResults();
    results.name = "demo <b>& friends</b>";
    const { html } = await renderReport(results, dir);
    assert.ok(html.includes("demo &lt;b&gt;&amp; friends&lt;/b&gt;"), "name is escaped");
    assert.ok(!html.includes("<b>& friends"));
    assert.ok(html.includes("test machine"));
    assert.ok(html.includes("2025-01-02T03:04:05Z"));
    // seven drawn tables (Table 5 has no rows) and the paper-layout table of C++ and Java
    assert.equal((html.match(/<table>/g) ?? []).length, 8);
    assert.equal((html.match(/How to read this\./g) ?? []).length, 8);
    // A table cell worked out by hand, as HTML.
    assert.ok(html.includes('<td class="num">75.0% ± 7.1 sd [60.0, 90.0]</td>'));
    assert.ok(html.includes('<td class="num missing">—</td>'));
    // n = 40 overall and n = 20 per language; the figure is the widest interval the tables print: the fixture's
    // are ±0.15 around the rate (fixture.ts iv), 30 pp wide where not clipped at 0 or 1
    assert.match(html, /n = 40 \([^)]*\): intervals are wide\. .*±15\.0 pp/);
    assert.match(html, /as few as n = 20 programs.*±15\.0 pp/);
  });
});

test("notes say when there is one seed and which methods are absent", () => {
  const results = handMadeResults();
  const oneSeedNoFull: ExperimentResults = {
    ...results,
    cells: results.cells.filter((c) => c.seed === 1 && c.method !== "full"),
  };
  const notes = reportNotes(oneSeedNoFull).join("\n");
  assert.match(notes, /one seed: there is no spread across seeds/);
  assert.match(notes, /tiny-coder: no run of Full FT/);
  assert.doesNotMatch(reportNotes(results).join("\n"), /no run of/);
  // two seeds: the notes say what ± and the brackets are, and that a zero spread is shown
  assert.match(
    reportNotes(results).join("\n"),
    /shown even when 0\.0\) and in brackets the 95% interval over the evaluation's items/,
  );
});

test("the wide-intervals note gives the interval the tables print, on the tasks' effective n where the pairs name their task", async () => {
  // the audit's demo: 10 of 23 programs secure over tasks with design effect 2.5, so effective n = 9.2. Wilson there
  // by hand, z = 1.959964: z² / n = 0.41755, centre (p + z²/2n) / (1 + z²/n) = 0.45399, half-width
  // z / (1 + z²/n) · √(p(1 − p)/n + z²/4n²) = 0.26973: [18.4, 72.4], ±27.0 pp (Wilson at 50% on the raw 23: ±18.9)
  const z = 1.959963984540054;
  const p = 10 / 23;
  const ne = 23 / 2.5;
  const centre = (p + (z * z) / (2 * ne)) / (1 + (z * z) / ne);
  const half = (z / (1 + (z * z) / ne)) * Math.sqrt((p * (1 - p)) / ne + (z * z) / (4 * ne * ne));
  assert.equal((half * 100).toFixed(1), "27.0");
  const rate = { value: p, low: centre - half, high: centre + half, n: 23 };
  const results = handMadeResults();
  results.cells = results.cells.filter((c) => c.method === "base" && c.seed === 1);
  const base = results.cells[0]!;
  base.security.intervals = "wilson-task-design-effect";
  base.security.safeRate = { rule: { overall: rate, perLanguage: { cpp: rate } } };
  const notes = reportNotes(results).join("\n");
  assert.match(
    notes,
    /n = 23 \(rule judge, tiny-coder Base\): intervals are wide\. .*±27\.0 pp .*\[18\.4, 72\.4\]/,
  );
  assert.doesNotMatch(notes, /18\.9/);
  // and Table 1 prints that very interval
  await withTempDir(async (dir) => {
    await renderReport(results, dir);
    const t1 = parseMarkdownTable(fs.readFileSync(path.join(dir, "table1-security.md"), "utf8"));
    assert.equal(cellOf(t1, [MODEL, "Base", "all"], "Safe rate (rule)"), "43.5% [18.4, 72.4]");
  });
});

test("a partial results file: its title, notes (Markdown and HTML) and Seeds columns say what of the plan is missing", async () => {
  // the fixture's 10 cells planned, LoRA seed 2 not done: 9 of 10, LoRA 1 of 2 seeds
  const full = handMadeResults();
  const results: ExperimentResults = {
    ...full,
    cells: full.cells.filter((c) => !(c.method === "lora" && c.seed === 2)),
    partial: {
      planned: 10,
      missing: [
        { id: "lora-main-2", label: "tiny-coder lora seed 2", model: MODEL, method: "lora", seed: 2 },
      ],
    },
  };
  // as it is read back from a file (the schema takes the mark; a file without it reads as before)
  const parsed = parseExperimentResults(JSON.parse(JSON.stringify(results)), "results.partial.json");
  parseExperimentResults(JSON.parse(JSON.stringify(full)), "results.json");
  await withTempDir(async (dir) => {
    const { html } = await renderReport(parsed, dir);
    const md = fs.readFileSync(path.join(dir, "tables.md"), "utf8");
    assert.equal(md.split("\n")[0], "# hand-made demo (partial: 9 of 10 planned cells)");
    assert.ok(html.includes("<h1>hand-made demo (partial: 9 of 10 planned cells)</h1>"));
    for (const text of [md, html]) {
      assert.match(
        text,
        /Partial results: 9 of 10 planned cells are done .*missing: tiny-coder lora seed 2 \(lora-main-2\)/,
      );
      assert.match(text, /seeds per setting: 1 of 2, 2 /);
    }
    const t1 = parseMarkdownTable(fs.readFileSync(path.join(dir, "table1-security.md"), "utf8"));
    assert.equal(cellOf(t1, [MODEL, "LoRA", "all"], "Seeds"), "1 of 2");
    assert.equal(cellOf(t1, [MODEL, "Full FT", "all"], "Seeds"), "2");
  });
  // a complete file's report says nothing of the sort
  assert.doesNotMatch(reportNotes(full).join("\n"), /Partial results| of 2/);
});

test("figure data: deltas in pp (losses raw), the lowest GoodVibe seed for neuron figures", () => {
  const results = handMadeResults();
  const values = (utilityDeltaFigure(results)!.spec as { data: { values: Record<string, unknown>[] } }).data
    .values;
  const delta = (method: string, panelStart: string) =>
    values.find((v) => v.method === method && String(v.panel).startsWith(panelStart))?.delta as
      number | undefined;
  // gsm8k: 0.32 - 0.31 = +1.0 pp; loss: 1.11 - 1.21 = -0.10; full has no gsm8k -> no bar.
  assert.ok(Math.abs(delta("GoodVibe", "gsm8k")! - 1.0) < 1e-9);
  assert.ok(Math.abs(delta("Full FT", "heldout_code_loss")! - -0.1) < 1e-9);
  assert.equal(delta("Full FT", "gsm8k"), undefined);
  assert.ok(!values.some((v) => v.method === "Base"));
  // Whiskers: Δ's 95% interval over items, as Table 3 (not ± one sd of the method alone, which left the base's
  // uncertainty out): gsm8k se 0.012 both sides -> ± 1.96·√(2·0.012²) = 3.33 pp around +1.0 pp
  const bar = (method: string, panelStart: string) =>
    values.find((v) => v.method === method && String(v.panel).startsWith(panelStart))!;
  const half = 1.959963984540054 * Math.sqrt(2 * 0.012 ** 2) * 100;
  assert.ok(Math.abs((bar("GoodVibe", "gsm8k").low as number) - (1 - half)) < 1e-9);
  assert.ok(Math.abs((bar("GoodVibe", "gsm8k").high as number) - (1 + half)) < 1e-9);
  // the caption says what the whiskers are and how many seeds each bar rests on
  const caption = utilityDeltaFigure(results)!.caption;
  assert.match(caption, /95% interval over the benchmark's items/);
  assert.match(caption, /Seeds: Base 2, GoodVibe 2, LoRA 2, Full FT 2\./);
  // one seed each: the whiskers are still drawn (they were absent: an sd needs two seeds)
  const oneSeed = { ...results, cells: results.cells.filter((c) => c.seed === 1) };
  const one = (utilityDeltaFigure(oneSeed)!.spec as { data: { values: Record<string, unknown>[] } }).data
    .values;
  assert.ok(one.every((v) => typeof v.low === "number" && typeof v.high === "number"));
  assert.match(utilityDeltaFigure(oneSeed)!.caption, /Seeds: Base 1, GoodVibe 1, LoRA 1, Full FT 1\./);

  // Layer 1 has 3 + seed neurons in the fixture: seed 1 -> 4.
  const layers = (neuronsByLayerFigure(results)!.spec as { data: { values: Record<string, unknown>[] } }).data
    .values;
  assert.deepEqual(
    layers.filter((v) => v.layer === 1),
    [{ model: MODEL, layer: 1, module: "q_proj", count: 4 }],
  );
  const fig2 = importanceFigure(results)!;
  // one run of the two GoodVibe seeds that record neurons: the caption says so (it named the seed alone)
  assert.match(fig2.caption, /GoodVibe, seed 1 \(one run of 2 seeds: Table 8 has every run's clusters\)/);
  const points = (fig2.spec as { data: { values: Record<string, unknown>[] } }).data.values;
  assert.equal(points.length, 5);
  assert.deepEqual(
    points.find((p) => p.neuron === 40),
    { model: MODEL, module: "q_proj", neuron: 40, importance: 0.2, cluster: "1" },
  );
});

test("figures without their data are left out and the page says so", async () => {
  const results = handMadeResults();
  for (const c of results.cells) {
    delete c.neurons;
    delete c.utility;
  }
  assert.equal(utilityDeltaFigure(results), undefined);
  assert.equal(importanceFigure(results), undefined);
  await withTempDir(async (dir) => {
    const { html, files } = await renderReport(results, dir);
    assert.equal(files.filter((f) => f.endsWith(".svg")).length, 0);
    assert.equal(inlineSvgs(html).length, 0);
    assert.match(html, /Figures not drawn: utility change/);
    const md = parseMarkdownTable(fs.readFileSync(path.join(dir, "table4-ablations.md"), "utf8"));
    // Model, Method, Study, Variant, Seeds, three rates each with its n, trainable params: 12, no utility column
    assert.equal(md.header.length, 12, "no utility columns without utility data");
    assert.equal(
      cellOf(md, [MODEL, "GoodVibe", "clustering"], "Safe rate (rule)"),
      "68.0% ± 2.8 sd [53.0, 83.0]",
    );
  });
});

test("renderSvg prefixes the SVG's internal ids and the references to them", async () => {
  // clip: true makes Vega emit a clipPath with an id and a url(#…) reference to it.
  const spec: TopLevelSpec = {
    data: {
      values: [
        { a: 1, b: 2 },
        { a: 3, b: 40 },
      ],
    },
    mark: { type: "bar", clip: true },
    encoding: {
      x: { field: "a", type: "quantitative" },
      y: { field: "b", type: "quantitative", scale: { domain: [0, 10] } },
    },
  };
  const svg = await renderSvg(spec, "figX");
  assert.equal(XMLValidator.validate(svg), true);
  const ids = [...svg.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]!);
  const refs = [...svg.matchAll(/url\(#([^)]+)\)/g)].map((m) => m[1]!);
  assert.ok(ids.length > 0 && refs.length > 0, "expected a clip path");
  for (const id of ids) assert.ok(id.startsWith("figX-"), id);
  for (const ref of refs) assert.ok(ids.includes(ref), `dangling url(#${ref})`);
});

test("two models: rows and figure facets per model, ratios against each model's own full fine-tuning", async () => {
  const results = handMadeResults();
  const other = handMadeResults().cells.map((c) => ({ ...c, id: `other-${c.id}`, model: "other-coder" }));
  // The other model's full fine-tuning costs twice as much: GoodVibe's ratio halves to 1.1 / 12.
  for (const c of other) if (c.method === "full") c.cost.flopsTotal = 12e12;
  results.cells.push(...other);
  await withTempDir(async (dir) => {
    const { html, files } = await renderReport(results, dir);
    for (const f of files.filter((f) => f.endsWith(".svg"))) {
      const svg = fs.readFileSync(f, "utf8");
      assert.equal(XMLValidator.validate(svg), true, f);
      assert.ok(svg.includes(">other-coder<"), `${path.basename(f)} has no panel for the second model`);
    }
    const md = parseMarkdownTable(fs.readFileSync(path.join(dir, "table2-cost.md"), "utf8"));
    assert.equal(cellOf(md, [MODEL, "GoodVibe"], "FLOPs vs full FT"), "18.3%");
    assert.equal(cellOf(md, ["other-coder", "GoodVibe"], "FLOPs vs full FT"), "9.17%");
    assert.match(html, /over 2 models/);
  });
});

test("an empty results file says there is nothing to report", async () => {
  await withTempDir(async (dir) => {
    const { html } = await renderReport(
      { name: "empty", createdAt: "2025-01-01", machine: "", cells: [] },
      dir,
    );
    assert.match(html, /no cells: there is nothing to report/);
    assert.match(html, /machine: not recorded/);
    assert.equal(inlineSvgs(html).length, 0);
  });
});

test("tables without rows are named in one line with the reason, not drawn; a rerun removes their old files", async () => {
  await withTempDir(async (dir) => {
    await renderReport(handMadeResults(), dir); // has Table 4 (a no-cluster ablation)
    assert.ok(fs.existsSync(path.join(dir, "table4-ablations.md")));
    const results = handMadeResults();
    results.cells = results.cells.filter((c) => c.ablation === undefined);
    const { html } = await renderReport(results, dir);
    for (const id of ["table4-ablations", "table5-studies"]) {
      assert.ok(!html.includes(`id="${id}"`), `${id} drawn although it has no rows`);
      assert.ok(!html.includes(`href="#${id}"`), `${id} in the contents`);
      assert.ok(!fs.existsSync(path.join(dir, `${id}.md`)), `${id}.md left behind`);
      assert.ok(!fs.existsSync(path.join(dir, `${id}.csv`)), `${id}.csv left behind`);
    }
    const line =
      "Tables not shown: Table 4 (no identification or clustering ablation was run); " +
      "Table 5 (no threshold, top-k or epoch study was run).";
    assert.ok(html.includes(line), "the page names the absent tables and why");
    const combined = fs.readFileSync(path.join(dir, "tables.md"), "utf8");
    assert.ok(combined.includes(line));
    assert.doesNotMatch(combined, /### Table [45]\./);
    assert.match(combined, /### Table 6\./);
  });
});

test("Figure 1's legend lists only the methods that have bars, each in its own colour", async () => {
  const results = handMadeResults();
  results.cells = results.cells.filter((c) => c.method === "base" || c.method === "lora");
  const fig = utilityDeltaFigure(results)!;
  const svg = await renderSvg(fig.spec, fig.id);
  assert.ok(svg.includes(">LoRA<"), "LoRA has bars and a legend entry");
  for (const absent of ["GoodVibe", "Full FT"])
    assert.ok(!svg.includes(`>${absent}<`), `the legend lists ${absent}, which has no data`);
  // LoRA keeps the colour it has when every method is drawn (#7570b3); the others' colours are unused
  assert.ok(svg.includes("#7570b3"));
  assert.ok(!svg.includes("#1b9e77") && !svg.includes("#d95f02"));
});

test("tables.md opens with the notes index.html has: the protocol, departures from the paper, the seeds by value", async () => {
  await withTempDir(async (dir) => {
    const results: ExperimentResults = {
      ...handMadeResults(),
      evaluation: {
        protocol: "6 of 144 held-out prompts (not the paper's: it answers all)",
      } as ExperimentResults["evaluation"],
      departures: [{ setting: "cluster.threshold", here: "0.1", paper: "0.05", why: "a study" }],
    };
    await renderReport(results, dir);
    const md = fs.readFileSync(path.join(dir, "tables.md"), "utf8");
    const notesAt = md.indexOf("## Notes\n");
    assert.ok(notesAt > 0 && notesAt < md.indexOf("### "), "the notes come before the first table");
    for (const n of reportNotes(results)) assert.ok(md.includes(`- ${n}\n`), `missing from tables.md: ${n}`);
    assert.match(md, /^- Safe rates: 6 of 144 held-out prompts \(not the paper's: it answers all\)\.$/m);
    assert.match(
      md,
      /^- Departs from the paper — cluster\.threshold: here 0\.1, paper 0\.05 \(a study\)\.$/m,
    );
    // the fixture's trained runs use seeds 1 and 2: named, not only counted
    const seeds = [...new Set(results.cells.filter((c) => c.method !== "base").map((c) => c.seed))].sort();
    assert.match(md, new RegExp(`seeds per setting: [0-9, ]+ \\(seeds ${seeds.join(", ")}\\)\\.$`, "m"));
  });
});

test("the notes say which of the paper's utility benchmarks were not run (ARC, GSM8K, MMLU: §4.3)", () => {
  const results = handMadeResults();
  // the fixture runs arc_challenge, gsm8k (not on full) and heldout_code_loss: MMLU is missing
  const note = reportNotes(results).find((n) => n.includes("utility benchmarks"));
  assert.equal(
    note,
    "Departs from the paper — utility benchmarks: here arc_challenge, gsm8k, heldout_code_loss, paper ARC " +
      "Challenge, GSM8K and MMLU (§4.3, its Figure 3); not run here: MMLU; heldout_code_loss is this project's " +
      "addition, not the paper's (Table 3 and Figure 1 show only what was run).",
  );
  // an organism experiment runs the held-out code loss alone: all three are said missing
  for (const c of results.cells) c.utility = { heldout_code_loss: c.utility!.heldout_code_loss! };
  assert.match(
    reportNotes(results).join("\n"),
    /not run here: ARC Challenge, GSM8K, MMLU; heldout_code_loss is this project's addition/,
  );
  // all three run: nothing to say; none run: the existing 'No run has utility results' note covers it
  for (const c of results.cells)
    c.utility = Object.fromEntries(
      ["arc_challenge", "gsm8k", "mmlu"].map((b) => [b, { metric: "acc", value: 0.5, stderr: 0.01, n: 100 }]),
    );
  assert.ok(!reportNotes(results).some((n) => n.includes("utility benchmarks")));
  for (const c of results.cells) delete c.utility;
  assert.ok(!reportNotes(results).some((n) => n.includes("utility benchmarks")));
});

test("a rate cell never shows 100.0 for a share short of 1, nor 0.0 for one above 0", () => {
  // 423 of 424 safe, and 1 of 424: Wilson [0.986763, 0.999584] and [0.000416, 0.013237]
  const cell = (k: number, n: number) => {
    const w = wilsonInterval(k, n);
    return { kind: "number" as const, value: w.value, low: w.low, high: w.high };
  };
  assert.equal(formatCell(cell(423, 424), "rate"), "99.8% [98.7, >99.9]");
  assert.equal(formatCell(cell(1, 424), "rate"), "0.2% [<0.1, 1.3]");
  assert.equal(formatCell({ kind: "number", value: 2499 / 2500 }, "rate"), ">99.9%");
  assert.equal(formatCell(cell(12, 12), "rate"), "100.0% [75.8, 100.0]");
});

test("a figure that rounds to zero reads 0, unsigned: a κ of -8e-17 and a B − A of -2e-18 (float noise around 0) as the real CyberNative report had them", () => {
  // full fine-tuning seed 2 (2026-12-02): TP 0, FP 41, TN 17, FN 0, the rule judge's verdict the same on every
  // program: κ = 2(ad − bc) / ((a + b)(b + d) + (a + c)(c + d)) = 2(0·17 − 41·0) / … = 0 exactly; results.json
  // recorded -7.85279700344623e-17 and Table 6 showed "-0.000"
  const [a, b, c, d] = [0, 41, 0, 17];
  assert.equal((2 * (a * d - b * c)) / ((a + b) * (b + d) + (a + c) * (c + d)), 0);
  assert.equal(formatCell({ kind: "number", value: -7.85279700344623e-17 }, "kappa"), "0.000");
  // Table 14, GoodVibe → no clustering, LLM judge on unseen pairs: 5/10, 10/8 and 7/4 discordant, the same 55 of
  // 150 answers secure either way (36.7% both), so B − A is 0; the CSV recorded -2.3129646346357427e-18 and the
  // table showed "-0.0 pp"
  assert.equal(5 - 10 + (10 - 8) + (7 - 4), 0);
  assert.equal(
    formatCell({ kind: "number", value: -2.3129646346357427e-18, low: -0.08, high: 0.08 }, "pp"),
    "0.0 pp [-8.0, 8.0]",
  );
  // a difference under 0.05 pp either way is no gain and no loss; from 0.05 pp on the sign is kept
  assert.equal(formatCell({ kind: "number", value: 0.0004 }, "pp"), "0.0 pp");
  assert.equal(formatCell({ kind: "number", value: -0.0004 }, "pp"), "0.0 pp");
  assert.equal(formatCell({ kind: "number", value: 0.001 }, "pp"), "+0.1 pp");
  assert.equal(formatCell({ kind: "number", value: -0.001 }, "pp"), "-0.1 pp");
  assert.equal(formatCell({ kind: "number", value: -0.0004 }, "delta"), "0.000");
  assert.equal(formatCell({ kind: "number", value: -0.0006 }, "delta"), "-0.001");
  assert.equal(formatCell({ kind: "number", value: -0.0004 }, "raw"), "0.000");
  assert.equal(formatCell({ kind: "number", value: -0.25 }, "kappa"), "-0.250");
});
