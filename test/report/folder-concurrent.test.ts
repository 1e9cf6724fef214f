/**
 * Two renders into one report folder at once (report/folder.ts under io/claim.ts): real processes, started together,
 * each slowed at every step of putting its report in place so that, unkept apart, their renames and removals would
 * interleave. Both must finish, one after the other, and leave one complete render with nothing of the other. Also
 * a claim left by a killed render (taken over at once), a live holder that never lets go (a bounded wait, then exit
 * 3 naming the folder and the holder), and `goodvibe report` into a new folder whose first render is in progress.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { renderReport } from "../../src/report/render.js";
import { MANIFEST } from "../../src/report/folder.js";
import { parseExperimentResults, type ExperimentResults } from "../../src/report/schema.js";
import { handMadeResults } from "./fixture.js";
import { runCli, showRun, startCli } from "../cli/cli-helpers.js";

const FOLDER_JS = new URL("../../src/report/folder.js", import.meta.url).href;
const CLAIM_JS = new URL("../../src/io/claim.js", import.meta.url).href;
const CLAIM = ".claim.json";

/** Results with per-item outcomes: their report has the paired tables, which the plain results' has not. */
function pairedResults(): ExperimentResults {
  const r = handMadeResults();
  const ids = ["a", "b", "c", "d", "e", "f"];
  r.name = "paired";
  r.cells = r.cells.map((c, i) => ({
    ...c,
    outcomes: {
      ids,
      langs: ids.map(() => "cpp"),
      preference: c.method === "base" ? "010010" : ["110011", "111011", "110111", "011011"][i % 4]!,
    },
  }));
  return parseExperimentResults(JSON.parse(JSON.stringify(r)), "paired results");
}

function plainResults(): ExperimentResults {
  const r = handMadeResults();
  r.name = "plain";
  return r;
}

/** A render's files (name → text), as renderReport makes them: rendered into a folder of its own and read back. */
async function renderedFiles(results: ExperimentResults): Promise<Record<string, string>> {
  const dir = scratchDir("gv-report-alone-");
  const r = await renderReport(results, dir);
  return Object.fromEntries(r.files.map((f) => [path.basename(f), fs.readFileSync(f, "utf8")]));
}

/**
 * A process that puts `files` in place into `out` with publishReport once `go` exists, blocking `stepMs` at every
 * step (as a slow disk would); prints {first, last}: when its first and last step were done (epoch ms).
 */
function publisher(filesJson: string, out: string, go: string, name: string, stepMs: number): ChildProcess {
  const script =
    `const { publishReport } = await import(${JSON.stringify(FOLDER_JS)}); const fs = await import("node:fs"); ` +
    `const files = new Map(Object.entries(JSON.parse(fs.readFileSync(${JSON.stringify(filesJson)}, "utf8")))); ` +
    `const block = new Int32Array(new SharedArrayBuffer(4)); ` +
    `while (!fs.existsSync(${JSON.stringify(go)})) Atomics.wait(block, 0, 0, 5); ` +
    `let first = 0, last = 0; ` +
    `await publishReport(${JSON.stringify(out)}, files, { name: ${JSON.stringify(name)}, createdAt: "2026-12-04" }, ` +
    `() => { Atomics.wait(block, 0, 0, ${stepMs}); last = Date.now(); if (!first) first = last; }); ` +
    `console.log(JSON.stringify({ first, last }));`;
  return spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GOODVIBE_CLAIM_POLL_MS: "20" },
  });
}

function finished(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** A process holding the claim of `dir` (as a render putting its report in place does) until killed. */
async function liveHolder(dir: string): Promise<ChildProcess> {
  const holder = spawn(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const { tryClaim } = await import(${JSON.stringify(CLAIM_JS)}); ` +
        `if (!tryClaim(${JSON.stringify(dir)})) process.exit(3); console.log("held"); setInterval(() => {}, 1000);`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.once("data", () => resolve());
    holder.once("exit", (code) => reject(new Error(`the holder exited ${code}`)));
  });
  return holder;
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

/** The folder's report: its manifest's name and files, and each file's text; what else is there. */
function reportIn(dir: string): {
  name: string;
  complete: boolean;
  files: Record<string, string>;
  others: string[];
} {
  const m = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), "utf8")) as {
    complete: boolean;
    files: string[];
    results: { name: string };
  };
  const files = Object.fromEntries(m.files.map((f) => [f, fs.readFileSync(path.join(dir, f), "utf8")]));
  const others = fs.readdirSync(dir).filter((n) => n !== MANIFEST && !m.files.includes(n));
  return { name: m.results.name, complete: m.complete, files, others };
}

test("two processes rendering into one folder at once: both finish, one after the other, and the folder is one whole render", async () => {
  const dir = scratchDir("gv-report-two-");
  const paired = await renderedFiles(pairedResults());
  const plain = await renderedFiles(plainResults());
  // the paired render has files the plain one has not: left behind, they would show a mix
  const pairedOnly = Object.keys(paired).filter((n) => !(n in plain));
  assert.ok(pairedOnly.length >= 4, `paired-only files: ${pairedOnly.join(", ")}`);
  fs.writeFileSync(path.join(dir, "paired.json"), JSON.stringify(paired));
  fs.writeFileSync(path.join(dir, "plain.json"), JSON.stringify(plain));
  const out = path.join(dir, "report");
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, "notes.txt"), "my notes\n");
  const go = path.join(dir, "go");
  // 25 and 40 ms a step, about 2 × 30 steps each: a second or two each, in which the other starts. Unkept apart,
  // the plain render, slower, would finish last and leave the paired render's own files beside its own
  const a = publisher(path.join(dir, "paired.json"), out, go, "paired", 25);
  const b = publisher(path.join(dir, "plain.json"), out, go, "plain", 40);
  const runs = [finished(a), finished(b)];
  await new Promise((r) => setTimeout(r, 1500)); // both loaded and polling for `go`
  fs.writeFileSync(go, "");
  const [ra, rb] = await Promise.all(runs);
  assert.equal(ra!.code, 0, ra!.stderr);
  assert.equal(rb!.code, 0, rb!.stderr);
  const ta = JSON.parse(ra!.stdout) as { first: number; last: number };
  const tb = JSON.parse(rb!.stdout) as { first: number; last: number };
  assert.ok(
    ta.last < tb.first || tb.last < ta.first,
    `the two renders' steps interleaved: paired ${ta.first}-${ta.last}, plain ${tb.first}-${tb.last}`,
  );
  const got = reportIn(out);
  const lastWas = ta.last > tb.last ? "paired" : "plain";
  assert.equal(got.name, lastWas, "the manifest names the render that finished last");
  assert.equal(got.complete, true);
  assert.deepEqual(got.files, lastWas === "paired" ? paired : plain, "every file is the last render's");
  // nothing of the other render, no claim, no temporary: only the user's notes beside the report
  assert.deepEqual(got.others, ["notes.txt"]);
  assert.equal(fs.readFileSync(path.join(out, "notes.txt"), "utf8"), "my notes\n");
});

test("a claim left by a killed render is taken over at once: the render finishes and leaves no claim", async () => {
  const dir = scratchDir("gv-report-killed-");
  const out = path.join(dir, "report");
  await renderReport(plainResults(), out);
  const holder = await liveHolder(out);
  await killed(holder);
  assert.ok(fs.existsSync(path.join(out, CLAIM)), "the killed holder's claim is still there");
  const before = process.env.GOODVIBE_REPORT_WAIT_SECONDS;
  process.env.GOODVIBE_REPORT_WAIT_SECONDS = "0"; // no waiting: only a taken-over claim lets it through
  try {
    const r = await renderReport(pairedResults(), out);
    assert.equal(r.earlier.from, "manifest");
  } finally {
    if (before === undefined) delete process.env.GOODVIBE_REPORT_WAIT_SECONDS;
    else process.env.GOODVIBE_REPORT_WAIT_SECONDS = before;
  }
  const got = reportIn(out);
  assert.equal(got.name, "paired");
  assert.deepEqual(got.files, await renderedFiles(pairedResults()));
  assert.deepEqual(got.others, []);
});

test("goodvibe report while a live render holds the folder: waits a bounded time, then exits 3 naming the folder and the holder, the folder untouched", async () => {
  const dir = scratchDir("gv-report-held-");
  const out = path.join(dir, "report");
  await renderReport(plainResults(), out);
  const resultsFile = path.join(dir, "paired.json");
  fs.writeFileSync(resultsFile, JSON.stringify(pairedResults()));
  const before = new Map(fs.readdirSync(out).map((n) => [n, fs.readFileSync(path.join(out, n), "utf8")]));
  const holder = await liveHolder(out);
  try {
    const claim = fs.readFileSync(path.join(out, CLAIM), "utf8");
    const started = Date.now();
    const r = await runCli(["report", resultsFile, "-o", out], {
      env: { GOODVIBE_REPORT_WAIT_SECONDS: "2", GOODVIBE_CLAIM_POLL_MS: "100" },
    });
    assert.equal(r.code, 3, showRun(r));
    assert.ok(Date.now() - started >= 2000, "it gave up before its wait was over");
    const msg = r.stderr + r.stdout;
    assert.ok(msg.includes(out), showRun(r));
    assert.match(
      msg,
      new RegExp(`another render is putting its report in place there \\(.* pid ${holder.pid} since `),
    );
    assert.match(msg, /GOODVIBE_REPORT_WAIT_SECONDS/);
    // the holder's claim stands and the folder is as it was
    assert.equal(fs.readFileSync(path.join(out, CLAIM), "utf8"), claim);
    const after = new Map(fs.readdirSync(out).map((n) => [n, fs.readFileSync(path.join(out, n), "utf8")]));
    assert.deepEqual(after, new Map([...before, [CLAIM, claim]]));
  } finally {
    await killed(holder);
  }
});

test("goodvibe report into a new folder whose first render is being put in place: waits for it, then renders", async () => {
  const dir = scratchDir("gv-report-first-");
  const out = path.join(dir, "report");
  const resultsFile = path.join(dir, "paired.json");
  fs.writeFileSync(resultsFile, JSON.stringify(pairedResults()));
  // the folder holds only the claim of the render in progress (its temporaries aside): not someone else's folder
  const holder = await liveHolder(out);
  const run = startCli(["report", resultsFile, "-o", out], {
    env: { GOODVIBE_REPORT_WAIT_SECONDS: "60", GOODVIBE_CLAIM_POLL_MS: "100" },
  });
  let said = "";
  run.child.stderr!.on("data", (t: string) => (said += t));
  try {
    // let go once the CLI says it waits for it
    const until = Date.now() + 60_000;
    while (!/waiting/.test(said) && run.child.exitCode === null && Date.now() < until)
      await new Promise((r) => setTimeout(r, 100));
  } finally {
    await killed(holder);
  }
  const r = await run.done;
  assert.equal(r.code, 0, showRun(r));
  assert.match(
    r.stderr + r.stdout,
    /another render is being put in place there \(.* pid \d+ since .*\); waiting/,
  );
  const got = reportIn(out);
  assert.equal(got.name, "paired");
  assert.deepEqual(got.others, []);
});

test("experiment run whose report folder another render holds: says it waits, then renders when it is let go", async () => {
  const { makeTinyChatModel } = await import("../evalcore/make-model.js");
  const { writeCorpusJsonl } = await import("../../src/data/corpus.js");
  const { parseExperimentSpec } = await import("../../src/experiment/spec.js");
  const { planExperiment } = await import("../../src/experiment/plan.js");
  const { runExperiment } = await import("../../src/experiment/run.js");
  const made = makeTinyChatModel({ seed: 6 });
  const work = scratchDir("gv-report-run-wait-");
  const trainFile = path.join(work, "train.jsonl");
  const devFile = path.join(work, "dev.jsonl");
  writeCorpusJsonl(trainFile, made.pairs.slice(0, 2));
  writeCorpusJsonl(devFile, made.pairs.slice(-2));
  const raw = {
    name: "wait",
    models: [{ name: "tiny", path: made.dir }],
    data: { train: trainFile, dev: devFile },
    eval: { maxPrompts: 2, maxNewTokens: 2, batchSize: 2 },
    methods: ["base"],
    seeds: [0],
  };
  const out = path.join(work, "run");
  const reportDir = path.join(out, "report");
  const holder = await liveHolder(reportDir);
  const said: string[] = [];
  const saved = { wait: process.env.GOODVIBE_REPORT_WAIT_SECONDS, poll: process.env.GOODVIBE_CLAIM_POLL_MS };
  process.env.GOODVIBE_REPORT_WAIT_SECONDS = "60";
  process.env.GOODVIBE_CLAIM_POLL_MS = "100";
  try {
    const log = {
      info: (m: string) => {
        said.push(m);
        // let go once the run says it waits for the folder
        if (/another render is being put in place there/.test(m)) void killed(holder);
      },
      warn: (m: string) => said.push(m),
      progress() {},
    };
    const r = await runExperiment(
      planExperiment(parseExperimentSpec(raw, path.join(work, "wait.yaml")), { out }),
      {
        log,
      },
    );
    assert.equal(r.stopped, false);
  } finally {
    await killed(holder);
    for (const [k, v] of [
      ["GOODVIBE_REPORT_WAIT_SECONDS", saved.wait],
      ["GOODVIBE_CLAIM_POLL_MS", saved.poll],
    ] as const)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
  const waiting = said.find((m) => m.includes("another render is being put in place there"));
  assert.ok(waiting, said.join("\n"));
  assert.match(
    waiting,
    /^report: .*report: another render is being put in place there \(.* pid \d+ since .*\); waiting up to 60 s$/,
  );
  assert.equal(reportIn(reportDir).name, "wait");
});
