#!/usr/bin/env node
/**
 * The test suite, several test files at a time: `node scripts/run-tests.mjs [--concurrency N] [--times-out FILE]
 * [paths...]` (default: dist/test, two at a time). Each file runs as `node --test` runs it with one file (its own
 * process: the same runner, the same exit status), so what a file tests does not change; only the order does. The
 * files are the ones `node --test <dir>` picks in Node 20 (every .js/.cjs/.mjs below a folder named test, and
 * *.test.js etc. elsewhere), started longest first (test/test-schedule.json's measured wall seconds; unknown files
 * count 5 s) so the last slot does not end on a long file. Files the schedule marks `heavy` (real-width scale
 * models: GiBs of memory each) never run two at once. A file's output is printed whole when it ends.
 * Exits 1 when any file fails (a failing test, a crash, a signal).
 *
 * Each file's wall and CPU seconds (its process and the CLI children it reaped) are written to --times-out FILE, by
 * default dist/test-times.json for a whole-suite run. `--update-schedule` then writes this run's CPU seconds into
 * the schedule (files not run keep theirs, files gone are dropped), and `--schedule-from TIMES` does the same from
 * an earlier run's times file without running anything. CPU seconds, not wall: they barely move with the machine's
 * load, so a run on a busy machine still orders the files as a quiet one would.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function usage(msg) {
  process.stderr.write(
    `run-tests: ${msg}\nusage: node scripts/run-tests.mjs [--concurrency N] [--schedule FILE] [--times-out FILE] ` +
      `[--update-schedule] [paths...]\n       node scripts/run-tests.mjs [--schedule FILE] --schedule-from TIMES\n`,
  );
  process.exit(2);
}

let concurrency = 2;
let timesOut = null;
let updateSchedule = false;
let scheduleFrom = null;
let scheduleFile = path.join(ROOT, "test", "test-schedule.json");
const roots = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--concurrency") {
    concurrency = Number(argv[++i]);
    if (!Number.isInteger(concurrency) || concurrency < 1)
      usage(`--concurrency needs a whole number >= 1, not ${argv[i]}`);
  } else if (a === "--times-out") {
    timesOut = argv[++i];
    if (!timesOut) usage("--times-out needs a file");
  } else if (a === "--schedule") {
    scheduleFile = argv[++i];
    if (!scheduleFile) usage("--schedule needs a file");
  } else if (a === "--update-schedule") updateSchedule = true;
  else if (a === "--schedule-from") {
    scheduleFrom = argv[++i];
    if (!scheduleFrom) usage("--schedule-from needs a times file (--times-out of an earlier run)");
  } else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else roots.push(a);
}
const wholeSuite = roots.length === 0;
if (wholeSuite) roots.push("dist/test");
if (timesOut === null && wholeSuite && scheduleFrom === null) timesOut = path.join("dist", "test-times.json");

const TEST_NAME = /^(?:test|test-.+|.+[._-]test)\.(?:c|m)?js$/;
const JS = /\.(?:c|m)?js$/;

/** Node 20's `node --test <path>` file list: below a folder named test every script, elsewhere *.test.js and kin. */
export function testFiles(p, underTest = false) {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return [path.resolve(p)];
  const out = [];
  for (const e of fs.readdirSync(p, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (e.name === "node_modules") continue;
    const full = path.join(p, e.name);
    if (e.isDirectory()) out.push(...testFiles(full, underTest || e.name === "test"));
    else if (JS.test(e.name) && (underTest || TEST_NAME.test(e.name))) out.push(path.resolve(full));
  }
  return out;
}

/** file -> its key in the schedule: its path below the compiled test folder without the extension (scale/families.test) */
const keys = new Map();
for (const r of roots) {
  if (!fs.existsSync(r)) usage(`${r} does not exist (compile first: tsc -p .)`);
  const abs = path.resolve(r);
  const parts = abs.split(path.sep);
  const underTest = parts.includes("test");
  // keys are relative to the outermost folder named test (dist/test), else to the path given
  const base = underTest ? parts.slice(0, parts.indexOf("test") + 1).join(path.sep) : abs;
  for (const f of testFiles(r, underTest)) keys.set(f, path.relative(base, f).replace(JS, ""));
}
const files = [...keys.keys()];
const schedule = fs.existsSync(scheduleFile) ? JSON.parse(fs.readFileSync(scheduleFile, "utf8")) : {};
const keyOf = (f) => keys.get(f);
const seconds = (f) => schedule.seconds?.[keyOf(f)] ?? 5;
const heavy = new Set(Object.keys(schedule.heavy ?? {}));

/**
 * Write `measured` (schedule key -> { wall, cpu } of a run) into the schedule file: each file run gets its CPU
 * seconds (wall where /proc gave none; a failed file is left as it was), the others keep theirs, and names no
 * longer among `files` are dropped.
 */
function writeSchedule(measured, from) {
  const present = new Set(files.map(keyOf));
  const next = {};
  for (const [k, v] of Object.entries(schedule.seconds ?? {})) if (present.has(k)) next[k] = v;
  let n = 0;
  for (const [k, m] of Object.entries(measured)) {
    // a failed file's time says little (it may have stopped at its first test)
    if (!present.has(k) || m.ok === false) continue;
    const s = m.cpu ?? m.wall;
    if (typeof s !== "number" || !Number.isFinite(s)) continue;
    next[k] = Math.max(0.1, Math.round(s * 10) / 10);
    n++;
  }
  const out = {
    ...schedule,
    measured: `${new Date().toISOString().slice(0, 10)}: ${n} of ${present.size} files from ${from}`,
    seconds: Object.fromEntries(Object.entries(next).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))),
  };
  fs.writeFileSync(scheduleFile, JSON.stringify(out, null, 2) + "\n");
  process.stdout.write(
    `# schedule ${scheduleFile}: ${n} files measured, ${Object.keys(next).length} named\n`,
  );
}

if (scheduleFrom !== null) {
  const times = JSON.parse(fs.readFileSync(scheduleFrom, "utf8"));
  if (typeof times?.files !== "object" || times.files === null)
    usage(`${scheduleFrom} is not a times file (no "files": write one with --times-out)`);
  writeSchedule(times.files, `${path.basename(scheduleFrom)} (${times.concurrency} at a time)`);
  process.exit(0);
}

const queue = [...files].sort((a, b) => seconds(b) - seconds(a));

/** CPU seconds of this process's reaped children (utime + stime + their reaped children's), from /proc. */
function childCpu() {
  try {
    const stat = fs.readFileSync("/proc/self/stat", "utf8");
    // after "pid (comm) ", field 3 (state) is index 0: cutime and cstime (fields 16, 17) are 13 and 14, in ticks
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return null;
  }
}

const childEnv = { ...process.env };
delete childEnv.NODE_TEST_CONTEXT;
const running = new Map(); // file -> is it heavy
const results = [];
const t0 = Date.now();
let lastCpu = childCpu();

const canStart = (f) => !heavy.has(keyOf(f)) || ![...running.values()].includes(true);

function start(f) {
  const k = keyOf(f);
  running.set(f, heavy.has(k));
  const began = Date.now();
  const chunks = [];
  const child = spawn(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=spec", f], {
    cwd: process.cwd(),
    // a runner started from inside a test file (NODE_TEST_CONTEXT set) would otherwise run no file at all
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => chunks.push(d));
  child.stderr.on("data", (d) => chunks.push(d));
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      const cpuNow = childCpu();
      const cpu = cpuNow !== null && lastCpu !== null ? cpuNow - lastCpu : null;
      lastCpu = cpuNow;
      const wall = (Date.now() - began) / 1000;
      const text = Buffer.concat(chunks).toString("utf8");
      const count = (name) => Number(new RegExp(`^ℹ ${name} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
      const r = {
        file: k,
        ok: code === 0 && signal === null,
        code,
        signal,
        wall,
        cpu,
        tests: count("tests"),
        pass: count("pass"),
        fail: count("fail"),
        skipped: count("skipped"),
        todo: count("todo"),
        cancelled: count("cancelled"),
      };
      if (r.fail > 0 || r.cancelled > 0) r.ok = false;
      results.push(r);
      running.delete(f);
      process.stdout.write(
        `\n● ${k} (${wall.toFixed(1)} s wall${cpu === null ? "" : `, ${cpu.toFixed(1)} s CPU`}, ` +
          `${r.ok ? "ok" : `FAILED: exit ${code}${signal ? ` ${signal}` : ""}`})\n${text}`,
      );
      resolve();
    });
  });
}

await new Promise((done) => {
  const pump = () => {
    while (running.size < concurrency) {
      const i = queue.findIndex(canStart);
      if (i < 0) break;
      const [f] = queue.splice(i, 1);
      start(f).then(pump);
    }
    if (running.size === 0 && queue.length === 0) done();
  };
  pump();
});

const sum = (k) => results.reduce((a, r) => a + r[k], 0);
const failed = results.filter((r) => !r.ok);
const wall = (Date.now() - t0) / 1000;
process.stdout.write(
  `\n# ${results.length} files, ${concurrency} at a time, ${wall.toFixed(0)} s; tests ${sum("tests")}, ` +
    `pass ${sum("pass")}, fail ${sum("fail")}, skipped ${sum("skipped")}, todo ${sum("todo")}, ` +
    `cancelled ${sum("cancelled")}\n`,
);
for (const r of failed)
  process.stdout.write(`# FAILED ${r.file} (exit ${r.code}${r.signal ? ` ${r.signal}` : ""})\n`);
if (timesOut)
  fs.writeFileSync(
    timesOut,
    JSON.stringify(
      {
        concurrency,
        wall,
        files: Object.fromEntries(results.map((r) => [r.file, { wall: r.wall, cpu: r.cpu, ok: r.ok }])),
      },
      null,
      2,
    ) + "\n",
  );
if (updateSchedule)
  writeSchedule(
    Object.fromEntries(results.map((r) => [r.file, { wall: r.wall, cpu: r.cpu, ok: r.ok }])),
    `a run ${concurrency} at a time`,
  );
process.exitCode = failed.length > 0 ? 1 : 0;
