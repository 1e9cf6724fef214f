/**
 * `npm test`'s runner (scripts/run-tests.mjs), on small trees of probe test files: it runs the files Node 20's own
 * `node --test <dir>` runs (the reference: Node's runner on the same tree), fails when any file fails however it
 * fails, runs files side by side (two files that each wait for the other pass only then), never two files the
 * schedule marks heavy at once, and starts the longest first. And the schedule of the real suite
 * (test/test-schedule.json) names only test files that exist.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT } from "../evalcore/make-model.js";
import { scratchDir } from "../scratch.js";

const RUNNER = path.join(REPO_ROOT, "scripts", "run-tests.mjs");

/** Write probe files (path -> source) under a new folder; returns it. */
function tree(files: Record<string, string>): string {
  const root = scratchDir("gv-run-tests-");
  for (const [f, src] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), src);
  }
  return root;
}

/** This process's environment without node:test's marker, under which a nested `node --test` runs no file. */
const ENV = { ...process.env, NODE_TEST_CONTEXT: undefined };

function runner(args: string[], cwd: string, env: NodeJS.ProcessEnv = ENV) {
  const r = spawnSync(process.execPath, [RUNNER, ...args], { cwd, env, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** A test file that appends its name to <root>/ran.log. */
const logs = (name: string) =>
  `import * as fs from "node:fs"; fs.appendFileSync(${JSON.stringify("LOG")}, ${JSON.stringify(name)} + "\\n");\n`;

function ranIn(root: string): string[] {
  const f = path.join(root, "ran.log");
  return fs.existsSync(f) ? fs.readFileSync(f, "utf8").trim().split("\n").sort() : [];
}

test("it runs the files `node --test <dir>` runs in Node 20, inside a test folder and outside one", () => {
  const names = [
    "test/a.js",
    "test/b.test.js",
    "test/sub/c.mjs",
    "test/sub/d-test.cjs",
    "test/a.d.ts",
    "test/a.js.map",
    "other/e.js",
    "other/f.test.js",
    "other/test-g.js",
    "other/test.js",
    "other/h_test.mjs",
    "other/test/i.js",
    "other/node_modules/j.test.js",
    "other/data.json",
  ];
  for (const dir of ["test", "other"]) {
    const seen: string[][] = [];
    for (const run of [
      (cwd: string) => spawnSync(process.execPath, ["--test", dir], { cwd, env: ENV, encoding: "utf8" }),
      (cwd: string) => runner([dir], cwd),
    ]) {
      const root = tree({});
      const log = path.join(root, "ran.log");
      for (const n of names) {
        fs.mkdirSync(path.dirname(path.join(root, n)), { recursive: true });
        fs.writeFileSync(path.join(root, n), logs(n).replace("LOG", log));
      }
      run(root);
      seen.push(ranIn(root));
    }
    assert.ok(seen[0]!.length >= 2, `node --test ran ${seen[0]!.join(", ")} in ${dir}/`);
    assert.deepEqual(seen[1], seen[0], `the files run from ${dir}/`);
  }
});

test("any failing file fails the run and is named: a failing test, a throw at load, a signal", () => {
  const root = tree({
    "test/ok.test.mjs": `import { test } from "node:test"; test("fine", () => {});\n`,
    "test/fails.test.mjs": `import { test } from "node:test"; import assert from "node:assert"; test("x", () => assert.equal(1, 2));\n`,
    "test/throws.test.mjs": `throw new Error("at load");\n`,
    "test/killed.test.mjs": `process.kill(process.pid, "SIGKILL");\n`,
  });
  const all = runner(["test"], root);
  assert.equal(all.code, 1, all.out);
  for (const f of ["fails", "throws", "killed"]) assert.match(all.out, new RegExp(`# FAILED ${f}\\.test`), f);
  assert.doesNotMatch(all.out, /# FAILED ok\.test/);
  assert.match(all.out, /# 4 files, 2 at a time, \d+ s; tests \d+, pass \d+, fail [1-9]/);
  // started from inside a test file (as here), the runner still runs its files
  const ok = runner(["test/ok.test.mjs"], root, process.env);
  assert.equal(ok.code, 0, ok.out);
  assert.match(ok.out, /# 1 files, .* tests 1, pass 1, fail 0/);
});

/**
 * Two files that each mark themselves running and wait (up to 20 s) for the other's mark: both pass only when the
 * runner runs them side by side. Heavy files instead fail when another heavy file is running.
 */
test("files run two at a time, except that two heavy files never run at once", () => {
  const waitsFor = (me: string, other: string) => `
import { test } from "node:test";
import * as fs from "node:fs";
test("${me} meets ${other}", async () => {
  fs.writeFileSync("${me}.running", "");
  const until = Date.now() + Number(process.env.MEET_WAIT_MS ?? 20_000);
  while (!fs.existsSync("${other}.running")) {
    if (Date.now() > until) throw new Error("${other} never ran beside ${me}");
    await new Promise((r) => setTimeout(r, 20));
  }
});
`;
  const alone = (me: string) => `
import { test } from "node:test";
import * as fs from "node:fs";
test("${me} runs with no other heavy file", async () => {
  const others = fs.readdirSync(".").filter((f) => f.endsWith(".heavy"));
  fs.writeFileSync("${me}.heavy", "");
  await new Promise((r) => setTimeout(r, 1500));
  const now = fs.readdirSync(".").filter((f) => f.endsWith(".heavy") && f !== "${me}.heavy");
  fs.rmSync("${me}.heavy");
  if (others.length + now.length > 0) throw new Error("beside " + [...others, ...now].join(", "));
});
`;
  const root = tree({
    "test/a.test.mjs": waitsFor("a", "b"),
    "test/b.test.mjs": waitsFor("b", "a"),
    "test/h1.test.mjs": alone("h1"),
    "test/h2.test.mjs": alone("h2"),
    "test/h3.test.mjs": alone("h3"),
  });
  const schedule = path.join(root, "schedule.json");
  fs.writeFileSync(schedule, JSON.stringify({ heavy: { "h1.test": "", "h2.test": "", "h3.test": "" } }));
  const marked = runner(["--schedule", schedule, "test"], root);
  assert.equal(marked.code, 0, marked.out);
  // the probe is not vacuous: unmarked, the heavy files do run side by side and say so
  const unmarked = runner(
    ["--schedule", path.join(root, "none.json"), "test/h1.test.mjs", "test/h2.test.mjs"],
    root,
  );
  assert.equal(unmarked.code, 1, unmarked.out);
  assert.match(unmarked.out, /beside h[12]\.heavy/);
  // one at a time, the two that wait for each other cannot both pass (their marks from above removed); the first
  // waits 1 s, not 20: run one at a time, the other cannot start before it has ended, however long it waited
  for (const f of ["a.running", "b.running"]) fs.rmSync(path.join(root, f));
  const serial = runner(
    ["--concurrency", "1", "--schedule", schedule, "test/a.test.mjs", "test/b.test.mjs"],
    root,
    { ...ENV, MEET_WAIT_MS: "1000" },
  );
  assert.equal(serial.code, 1, serial.out);
  assert.match(serial.out, /[ab] never ran beside [ab]/);
});

test("the longest files start first (the schedule's seconds; files it does not name count 5)", () => {
  const root = tree({});
  const log = path.join(root, "ran.log");
  const files: Record<string, string> = {};
  for (const n of ["a", "b", "c", "d"]) files[`test/${n}.test.mjs`] = logs(n).replace("LOG", log);
  for (const [f, src] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), src);
  }
  const schedule = path.join(root, "schedule.json");
  fs.writeFileSync(schedule, JSON.stringify({ seconds: { "b.test": 100, "d.test": 30, "a.test": 1 } }));
  const r = runner(["--concurrency", "1", "--schedule", schedule, "test"], root);
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(fs.readFileSync(log, "utf8").trim().split("\n"), ["b", "d", "c", "a"]);
});

test("test/test-schedule.json names only test files that exist, with a reason for each heavy one", () => {
  const s = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "test", "test-schedule.json"), "utf8")) as {
    heavy: Record<string, string>;
    seconds: Record<string, number>;
  };
  for (const k of [...Object.keys(s.heavy), ...Object.keys(s.seconds)])
    assert.ok(fs.existsSync(path.join(REPO_ROOT, "test", `${k}.ts`)), `test/${k}.ts`);
  for (const [k, why] of Object.entries(s.heavy)) assert.ok(why.length > 10, k);
  for (const [k, v] of Object.entries(s.seconds)) assert.ok(Number.isFinite(v) && v > 0, k);
});

test("a run writes each file's seconds, and --update-schedule / --schedule-from write them into the schedule", () => {
  // busy.test burns CPU for 0.6 s of its own process.cpuUsage() and writes that figure: the reference for what the
  // runner measures of it from outside (/proc); idle.test sleeps 0.6 s (wall, next to no CPU); failing.test fails
  const root = tree({
    "test/busy.test.mjs": `
import * as fs from "node:fs";
const t0 = process.cpuUsage();
const used = () => { const u = process.cpuUsage(t0); return (u.user + u.system) / 1e6; };
let x = 0;
while (used() < 0.6) x += Math.sqrt(x + 1);
fs.writeFileSync("busy.cpu", String(process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6));
`,
    "test/idle.test.mjs": `await new Promise((r) => setTimeout(r, 600));\n`,
    "test/failing.test.mjs": `import { test } from "node:test"; test("x", () => { throw new Error("no"); });\n`,
  });
  const schedule = path.join(root, "schedule.json");
  const before = {
    about: "kept",
    heavy: { "busy.test": "kept as it was" },
    seconds: { "failing.test": 42, "gone.test": 7, "idle.test": 99 },
  };
  fs.writeFileSync(schedule, JSON.stringify(before));
  const timesFile = path.join(root, "times.json");
  const r = runner(["--schedule", schedule, "--times-out", timesFile, "--update-schedule", "test"], root);
  assert.equal(r.code, 1, r.out); // failing.test fails the run
  const times = JSON.parse(fs.readFileSync(timesFile, "utf8")) as {
    files: Record<string, { wall: number; cpu: number; ok: boolean }>;
  };
  const busyCpu = Number(fs.readFileSync(path.join(root, "busy.cpu"), "utf8"));
  assert.ok(busyCpu >= 0.6, `${busyCpu}`);
  const busy = times.files["busy.test"]!;
  // the runner's figure holds the file's own CPU (plus Node's start and exit, on top)
  assert.ok(busy.cpu >= busyCpu && busy.cpu < busyCpu + 2, JSON.stringify(busy));
  assert.ok(busy.wall >= busyCpu, JSON.stringify(busy));
  const idle = times.files["idle.test"]!;
  assert.ok(idle.wall >= 0.6 && idle.cpu < 0.6, JSON.stringify(idle));
  assert.equal(times.files["failing.test"]!.ok, false);
  assert.equal(busy.ok, true);

  const written = JSON.parse(fs.readFileSync(schedule, "utf8")) as typeof before & { measured: string };
  assert.equal(written.about, "kept");
  assert.deepEqual(written.heavy, before.heavy);
  assert.match(written.measured, /^\d{4}-\d\d-\d\d: 2 of 3 files from a run 2 at a time$/);
  // measured files get their CPU seconds (one decimal), the failed one keeps its figure, a file gone is dropped;
  // longest first
  assert.deepEqual(Object.keys(written.seconds), ["failing.test", "busy.test", "idle.test"]);
  assert.equal(written.seconds["busy.test" as "idle.test"], Math.round(busy.cpu * 10) / 10);
  assert.equal(written.seconds["idle.test"], Math.max(0.1, Math.round(idle.cpu * 10) / 10));
  assert.equal(written.seconds["failing.test"], 42);

  // the same from the times file alone, without running anything (busy.cpu removed: it would be written again)
  fs.rmSync(path.join(root, "busy.cpu"));
  fs.writeFileSync(schedule, JSON.stringify(before));
  const from = runner(["--schedule", schedule, "--schedule-from", timesFile, "test"], root);
  assert.equal(from.code, 0, from.out);
  assert.equal(fs.existsSync(path.join(root, "busy.cpu")), false, "--schedule-from ran a file");
  const again = JSON.parse(fs.readFileSync(schedule, "utf8")) as typeof written;
  assert.deepEqual(again.seconds, written.seconds);
  assert.match(again.measured, /: 2 of 3 files from times\.json \(2 at a time\)$/);
  // a file that is not a times file is refused, naming it
  const bad = runner(["--schedule", schedule, "--schedule-from", schedule, "test"], root);
  assert.equal(bad.code, 2, bad.out);
  assert.match(bad.out, /schedule\.json is not a times file/);
});
