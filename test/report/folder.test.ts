/**
 * The report folder after a re-render (report/folder.ts): exactly this render's files plus what is not the
 * report's. Results with the paired, unseen and schedule tables are rendered, then results without them into the
 * same folder: their files must go, a user's notes stay, index.html and tables.md name only files that exist. Also
 * a folder rendered before the manifest, a manifest of `goodvibe report` before 2026-12-04, a render stopped at
 * every step of putting it in place, a full disk (a real tmpfs), and the CLI re-rendering a folder with notes in it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { renderReport } from "../../src/report/render.js";
import { MANIFEST, publishReport, replacedMessages } from "../../src/report/folder.js";
import { parseExperimentResults, type ExperimentResults } from "../../src/report/schema.js";
import { withUnseen } from "../../src/report/unseen.js";
import { handMadeResults } from "./fixture.js";
import { runCli, showRun } from "../cli/cli-helpers.js";

const IDS = ["a", "b", "c", "d", "e", "f"];
const SEEN = ["a", "b"];

/**
 * The hand-made results with per-item outcomes (so the paired tables), the figures on the unseen pairs (Tables
 * 13, 14) and every trained run's schedule (the schedule table), through the schema as results.json is read.
 */
function richResults(): ExperimentResults {
  const r = handMadeResults();
  r.cells = r.cells.map((c, i) => ({
    ...c,
    outcomes: {
      ids: IDS,
      langs: IDS.map(() => "cpp"),
      preference: c.method === "base" ? "010010" : ["110011", "111011", "110111", "011011"][i % 4]!,
    },
    ...(c.method === "base"
      ? {}
      : { schedule: { examples: 40, steps: 40, warmupSteps: 0, fullRateSteps: 40 } }),
  }));
  r.cells = withUnseen(r.cells, SEEN);
  r.evaluation = {
    protocol: "all 6",
    promptFilter: "none",
    maxPrompts: 0,
    maxNewTokens: 8,
    trainOverlap: { n: 6, pairs: 2, questions: 1, code: 1, seenIds: SEEN },
  } as ExperimentResults["evaluation"];
  return parseExperimentResults(JSON.parse(JSON.stringify(r)), "rich results");
}

/** Only in the rich results' report (the fixture's own tables and figures are in both). */
const RICH_ONLY = [
  "table10-paired",
  "table11-paired-languages",
  "table13-security-unseen",
  "table14-paired-unseen",
  "table-training-schedule",
].flatMap((id) => [`${id}.md`, `${id}.csv`]);

/** name → bytes of every plain file in `dir` (its hidden temporaries too, so that one left behind shows). */
function snapshot(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of fs.readdirSync(dir, { withFileTypes: true }))
    m.set(e.name, e.isFile() ? fs.readFileSync(path.join(dir, e.name), "latin1") : "<folder>");
  return m;
}

function readManifest(dir: string): { complete: boolean; files: string[] } {
  return JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), "utf8"));
}

/** What index.html and tables.md link or name must exist; every report file must be linked by index.html. */
function assertListsOnlyWhatExists(dir: string): void {
  const html = fs.readFileSync(path.join(dir, "index.html"), "utf8");
  const md = fs.readFileSync(path.join(dir, "tables.md"), "utf8");
  const linked = [...html.matchAll(/href="([^"#][^"]*)"/g)].map((m) => m[1]!);
  assert.ok(linked.length > 0);
  for (const f of linked)
    assert.ok(fs.existsSync(path.join(dir, f)), `index.html links ${f}, which is not there`);
  const files = readManifest(dir).files;
  for (const f of files.filter((n) => /\.(md|csv)$/.test(n) && n !== "tables.md"))
    assert.ok(linked.includes(f), `${f} is in the folder but index.html does not link it`);
  // each table's own Markdown is in tables.md, and tables.md has no table whose file is absent
  const headings = md.match(/^### .*$/gm) ?? [];
  const tableFiles = files.filter((n) => n.endsWith(".md") && n !== "tables.md");
  assert.equal(
    headings.length,
    tableFiles.length,
    "tables.md has as many tables as the folder has table files",
  );
  for (const f of tableFiles) {
    const own = fs.readFileSync(path.join(dir, f), "utf8");
    assert.ok(md.includes(own.trim().split("\n")[0]!), `${f}'s heading is not in tables.md`);
  }
}

test("re-rendering results without the paired, unseen and schedule tables: their files go, a user's notes stay", async () => {
  const dir = scratchDir("gv-report-folder-");
  const out = path.join(dir, "report");
  const rich = await renderReport(richResults(), out);
  const richNames = rich.files.map((f) => path.basename(f));
  for (const f of RICH_ONLY) assert.ok(richNames.includes(f), `the rich results' report has no ${f}`);
  assert.deepEqual(rich.removed, []);
  assert.equal(rich.earlier.from, "none");
  // a user's files beside the report, one named like a report file but not one
  fs.writeFileSync(path.join(out, "notes.txt"), "my notes\n");
  fs.writeFileSync(path.join(out, "table13-security-unseen.md.bak"), "my copy\n");
  fs.mkdirSync(path.join(out, "drafts"));
  fs.writeFileSync(path.join(out, "drafts", "table1-security.csv"), "mine\n");

  const plain = await renderReport(handMadeResults(), out);
  const plainNames = plain.files.map((f) => path.basename(f)).sort();
  assert.equal(plain.earlier.from, "manifest");
  assert.deepEqual(plain.removed.map((f) => path.basename(f)).sort(), [...RICH_ONLY].sort());
  assert.deepEqual(
    fs.readdirSync(out).sort(),
    [...plainNames, MANIFEST, "notes.txt", "table13-security-unseen.md.bak", "drafts"].sort(),
  );
  assert.equal(fs.readFileSync(path.join(out, "notes.txt"), "utf8"), "my notes\n");
  assert.equal(fs.readFileSync(path.join(out, "table13-security-unseen.md.bak"), "utf8"), "my copy\n");
  assert.equal(fs.readFileSync(path.join(out, "drafts", "table1-security.csv"), "utf8"), "mine\n");
  assert.equal(readManifest(out).complete, true);
  assert.deepEqual(readManifest(out).files.sort(), plainNames);
  assertListsOnlyWhatExists(out);
  for (const id of [
    "table10-paired",
    "table13-security-unseen",
    "table14-paired-unseen",
    "table-training-schedule",
  ])
    assert.ok(!plain.html.includes(id), `index.html still names ${id}`);
  const said = replacedMessages(plain);
  assert.match(
    said.info!,
    /^removed 10 files of an earlier render that this one does not have: table10-paired\.md, /,
  );
  assert.match(said.info!, /, and 2 more$/);
  assert.equal(said.warning, null);

  // and back: the rich render again puts them in, removing nothing
  const again = await renderReport(richResults(), out);
  assert.deepEqual(again.removed, []);
  assertListsOnlyWhatExists(out);
});

test("a folder rendered before the manifest: the report's own names go when not rendered again, nothing else", async () => {
  const dir = scratchDir("gv-report-legacy-");
  const out = path.join(dir, "report");
  await renderReport(richResults(), out);
  // what the renderer left before 2026-12-04: the same files, no manifest
  fs.rmSync(path.join(out, MANIFEST));
  const mine = [
    "notes.txt",
    "table13-mine.csv",
    "figure4-mine.svg",
    "index.htm",
    "table-paper-layout-cpp.md.orig",
  ];
  for (const n of mine) fs.writeFileSync(path.join(out, n), `${n}\n`);
  const plain = await renderReport(handMadeResults(), out);
  assert.equal(plain.earlier.from, "legacy-names");
  assert.deepEqual(plain.removed.map((f) => path.basename(f)).sort(), [...RICH_ONLY].sort());
  assert.deepEqual(
    fs.readdirSync(out).sort(),
    [...plain.files.map((f) => path.basename(f)), MANIFEST, ...mine].sort(),
  );
  for (const n of mine) assert.equal(fs.readFileSync(path.join(out, n), "utf8"), `${n}\n`);
  assert.match(
    replacedMessages(plain).info!,
    /known by the report's own names, as the folder had no manifest$/,
  );
  assertListsOnlyWhatExists(out);

  // `goodvibe report`'s list before 2026-12-04 ({files} only, written last): read as a complete manifest
  await renderReport(richResults(), out);
  const files = readManifest(out).files;
  fs.writeFileSync(path.join(out, MANIFEST), JSON.stringify({ files }));
  const p = await renderReport(handMadeResults(), out);
  assert.equal(p.earlier.from, "manifest");
  assert.deepEqual(p.removed.map((f) => path.basename(f)).sort(), [...RICH_ONLY].sort());

  // a manifest that lists a path, or that is not JSON, never removes anything outside the report's names
  fs.writeFileSync(path.join(dir, "outside.txt"), "x");
  fs.writeFileSync(path.join(out, MANIFEST), JSON.stringify({ files: ["../outside.txt", "notes.txt/.."] }));
  await renderReport(handMadeResults(), out);
  assert.ok(fs.existsSync(path.join(dir, "outside.txt")));
  fs.writeFileSync(path.join(out, MANIFEST), "{ not json");
  const broken = await renderReport(handMadeResults(), out);
  assert.equal(broken.earlier.from, "legacy-names");
  assert.match(
    replacedMessages(broken).warning!,
    /^\.goodvibe-report\.json is not a report manifest \(.*\): the earlier/,
  );
  for (const n of mine) assert.equal(fs.readFileSync(path.join(out, n), "utf8"), `${n}\n`);
});

test("a render stopped at any step leaves the earlier render whole, or a folder that says it is not, which the next render cleans", async () => {
  const dir = scratchDir("gv-report-stop-");
  const richDir = path.join(dir, "rich");
  await renderReport(richResults(), richDir);
  fs.writeFileSync(path.join(richDir, "notes.txt"), "my notes\n");
  const before = snapshot(richDir);
  // the plain render's files, to put in place step by step
  const plainDir = path.join(dir, "plain");
  await renderReport(handMadeResults(), plainDir);
  const contents = new Map(
    readManifest(plainDir).files.map((n) => [n, fs.readFileSync(path.join(plainDir, n), "utf8")] as const),
  );
  const about = { name: "x", createdAt: "2026-12-04" };
  // every step publishReport takes, in order
  const steps: string[] = [];
  const whole = path.join(dir, "whole");
  fs.cpSync(richDir, whole, { recursive: true });
  await publishReport(whole, contents, about, (s) => steps.push(s));
  assert.ok(steps.length > contents.size + RICH_ONLY.length, steps.join("\n"));
  const after = snapshot(whole);
  after.delete(MANIFEST);

  const stop = new Error("stopped here");
  for (let k = 0; k < steps.length; k++) {
    const d = path.join(dir, `stop-${k}`);
    fs.cpSync(richDir, d, { recursive: true });
    let i = 0;
    await assert.rejects(
      publishReport(d, contents, about, () => {
        if (i++ === k) throw stop;
      }),
      (e) => e === stop,
    );
    const now = snapshot(d);
    assert.equal(now.get("notes.txt"), "my notes\n", `step ${k}`);
    if (steps[k]!.startsWith("staged ")) {
      // nothing in the folder changed yet (and no temporary is left)
      assert.deepEqual(now, before, `stopped after ${steps[k]}`);
    } else if (now.has("index.html")) {
      // index.html is the first file removed and the last put in: with it, the folder is one render, whole (the
      // earlier one before anything moved, the new one once everything has)
      const files = new Map([...now].filter(([n]) => n !== MANIFEST));
      const was = new Map([...before].filter(([n]) => n !== MANIFEST));
      if (now.get("index.html") === before.get("index.html"))
        assert.deepEqual(files, was, `the earlier render after ${steps[k]}`);
      else assert.deepEqual(files, after, `the new render after ${steps[k]}`);
    } else {
      // not whole, and it says so: no index.html, a manifest marked incomplete naming every report file there
      const m = readManifest(d);
      assert.equal(m.complete, false, `stopped after ${steps[k]}`);
      for (const n of now.keys())
        if (n !== MANIFEST && n !== "notes.txt")
          assert.ok(m.files.includes(n), `${n} unlisted after ${steps[k]}`);
    }
    // the next render leaves exactly its own files and the notes
    const next = await publishReport(d, contents, about);
    const clean = snapshot(d);
    assert.equal(readManifest(d).complete, true);
    clean.delete(MANIFEST);
    assert.deepEqual(clean, after, `the render after a stop after ${steps[k]}`);
    // the manifest said incomplete from its first rename until its last
    const midway = !steps[k]!.startsWith("staged ") && steps[k] !== "manifest: complete";
    assert.equal(next.earlier.complete, !midway, `the earlier render's state after ${steps[k]}`);
  }
});

test("a full disk while the report is made leaves the earlier render as it was and no temporary (a tmpfs)", async (t) => {
  const dir = scratchDir("gv-report-full-");
  const mnt = path.join(dir, "mnt");
  fs.mkdirSync(mnt);
  if (spawnSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt]).status !== 0)
    return t.skip("mounting a tmpfs is not permitted here");
  try {
    const out = path.join(mnt, "report");
    await renderReport(richResults(), out);
    fs.writeFileSync(path.join(out, "notes.txt"), "my notes\n");
    const before = snapshot(out);
    // all but 8 KiB of the disk taken: the new render's files (SVGs of tens of KiB) cannot all be made
    const st = fs.statfsSync(mnt);
    const filler = path.join(mnt, "filler");
    fs.writeFileSync(filler, Buffer.alloc(Math.max(0, st.bavail * st.bsize - 8192)));
    // other numbers than the earlier render's in the first tables written: a render that replaced files one by
    // one (before 2026-12-04) would leave some of them new and the rest old
    const other = handMadeResults();
    other.name = "other results";
    for (const c of other.cells) {
      const o = c.security.safeRate?.rule?.overall;
      if (o) o.value = Math.round(o.value * 900) / 1000;
    }
    await assert.rejects(renderReport(other, out), /ENOSPC|no space/i);
    assert.deepEqual(snapshot(out), before, "the earlier render changed, or a temporary was left");
    fs.rmSync(filler);
    const r = await renderReport(handMadeResults(), out);
    assert.deepEqual(r.removed.map((f) => path.basename(f)).sort(), [...RICH_ONLY].sort());
    assertListsOnlyWhatExists(out);
  } finally {
    spawnSync("umount", ["-l", mnt]);
  }
});

test("goodvibe report into an earlier report with a user's notes: rendered in place, the notes kept, the removal said", async () => {
  const dir = scratchDir("gv-report-cli-");
  const richFile = path.join(dir, "rich.json");
  const plainFile = path.join(dir, "plain.json");
  fs.writeFileSync(richFile, JSON.stringify(richResults()));
  fs.writeFileSync(plainFile, JSON.stringify(handMadeResults()));
  const out = path.join(dir, "report");
  const first = await runCli(["report", richFile, "-o", out]);
  assert.equal(first.code, 0, showRun(first));
  fs.writeFileSync(path.join(out, "notes.txt"), "my notes\n");
  const second = await runCli(["report", plainFile, "-o", out]);
  assert.equal(second.code, 0, showRun(second));
  assert.match(
    second.stderr + second.stdout,
    /removed 10 files of an earlier render that this one does not have/,
  );
  assert.equal(fs.readFileSync(path.join(out, "notes.txt"), "utf8"), "my notes\n");
  for (const f of RICH_ONLY) assert.ok(!fs.existsSync(path.join(out, f)), `${f} left behind`);
  assertListsOnlyWhatExists(out);
  // a folder that is not a report is still refused, untouched
  const other = path.join(dir, "other");
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(other, "notes.txt"), "x");
  const refused = await runCli(["report", plainFile, "-o", other]);
  assert.equal(refused.code, 2, showRun(refused));
  assert.deepEqual(fs.readdirSync(other), ["notes.txt"]);
});
