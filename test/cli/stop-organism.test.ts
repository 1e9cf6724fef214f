/**
 * Ctrl-C during the two end-to-end jobs that run for minutes: pretraining the model organism, and the demo. A real
 * signal stops them within a step (exit 130, nothing published), and the rerun resumes and ends with what an
 * uninterrupted run writes, byte for byte. The organism here is a small one (`--per-template 2 --epochs 1`) so that
 * the suite stays fast; it is also the model the demo hardens. GOODVIBE_TEST_STOP_POINT_DELAY_MS makes every stop
 * point block like a long libtorch call (see stop.test.ts).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../evalcore/make-model.js";
import { hashOutput, hashTree, runCli, showRun, signalWhenLogged } from "./cli-helpers.js";

const work = scratchDir("gv-stop-organism-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

const SLOW = { GOODVIBE_TEST_STOP_POINT_DELAY_MS: "250" };
const PROMPT_MS = 30_000;

const organismArgs = (out: string) => [
  "organism",
  "build",
  ...["-o", path.join(work, out), "--per-template", "2", "--epochs", "1"],
];
/** organism.json records the pretraining's wall time: everything else must be equal. */
const organismTree = (dir: string) => hashTree(path.join(work, dir), (rel) => rel === "organism.json");

test("organism build: SIGINT during pretraining stops within a step (exit 130, no output); the rerun resumes to the same organism, byte for byte", async () => {
  const ref = await runCli(organismArgs("org-ref"));
  assert.equal(ref.code, 0, showRun(ref));

  // after the first step (a signal before it stops before pretraining begins: method/train.ts)
  const r = await signalWhenLogged(organismArgs("org-int"), /Z pretrain \d+\//, ["SIGINT"], {
    env: SLOW,
  });
  assert.equal(r.code, 130, showRun(r));
  assert.ok(r.exitMs < PROMPT_MS, `exit ${r.exitMs} ms after the signal`);
  const m = /training stopped after step (\d+) of (\d+)/.exec(r.stderr);
  assert.ok(
    m && Number(m[1]) >= 1 && Number(m[1]) < Number(m[2]),
    `not stopped within pretraining:\n${r.stderr}`,
  );
  assert.ok(!fs.existsSync(path.join(work, "org-int")), "an organism folder appeared");

  const rerun = await runCli(organismArgs("org-int"));
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.deepEqual(organismTree("org-int"), organismTree("org-ref"));
  assert.ok(!fs.existsSync(path.join(work, "org-int.work")), "the pretraining scratch folder was left");
});

test("demo: SIGTERM while hardening stops it (exit 130, no results); the rerun resumes and writes the same results and model", async () => {
  const organism = path.join(work, "org-ref");
  if (!fs.existsSync(path.join(organism, "config.json"))) {
    const b = await runCli(organismArgs("org-ref"));
    assert.equal(b.code, 0, showRun(b));
  }
  const args = (out: string) => [
    "demo",
    ...["--organism", organism, "-o", path.join(work, out), "--prompts", "4", "--epochs", "1"],
  ];
  const ref = await runCli(args("demo-ref"));
  assert.equal(ref.code, 0, showRun(ref));
  // the demo says where it departs from the paper (issue 10 §7), in its output, its results and its report
  const departures: { setting: string; here: string; paper: string }[] = JSON.parse(
    fs.readFileSync(path.join(work, "demo-ref", "results.json"), "utf8"),
  ).departures;
  for (const s of [
    "learning rate",
    "top-k security neurons per layer",
    "batch",
    "judge",
    "evaluation prompts",
  ])
    assert.ok(
      departures.some((d) => d.setting === s),
      `no departure "${s}" in ${JSON.stringify(departures)}`,
    );
  assert.match(ref.stdout, /where this demo departs from the paper/);
  const report = fs.readFileSync(path.join(work, "demo-ref", "report", "index.html"), "utf8");
  for (const d of departures) {
    assert.ok(ref.stdout.includes(`${d.setting}: ${d.here} (paper: ${d.paper})`), `${d.setting} not printed`);
    assert.ok(report.includes(`Departs from the paper — ${d.setting}`), `${d.setting} not in the report`);
  }
  // each cell names the build that computed it, and the report says which (one here)
  const cells: { build?: { goodvibe: string }; gradientCheckpointing?: unknown }[] = JSON.parse(
    fs.readFileSync(path.join(work, "demo-ref", "results.json"), "utf8"),
  ).cells;
  assert.ok(cells.length === 2 && cells.every((c) => typeof c.build?.goodvibe === "string"));
  // the hardened cell's checkpointing as the demo sets it (off for both stages, recipes/demo.ts) and as used
  assert.equal(cells[0]!.gradientCheckpointing, undefined);
  assert.deepEqual(cells[1]!.gradientCheckpointing, {
    training: { requested: false, used: false },
    identification: { requested: false, used: false },
  });
  assert.match(report, /Every cell was computed by goodvibe /);

  const r = await signalWhenLogged(args("demo-int"), /identification: \d+ samples/, ["SIGTERM"], {
    env: SLOW,
  });
  assert.equal(r.code, 130, showRun(r));
  assert.ok(r.exitMs < PROMPT_MS, `exit ${r.exitMs} ms after the signal`);
  assert.match(r.stderr, /interrupted: identification interrupted after \d+ of \d+ samples/);
  assert.ok(!fs.existsSync(path.join(work, "demo-int", "results.json")));
  assert.ok(!fs.existsSync(path.join(work, "demo-int", "hardened")));

  const rerun = await runCli(args("demo-int"));
  assert.equal(rerun.code, 0, showRun(rerun));
  const results = (dir: string) =>
    JSON.parse(fs.readFileSync(path.join(work, dir, "results.json"), "utf8"), (k, v) =>
      ["wallSeconds", "flopsPerSecond", "peakMemoryBytes", "createdAt"].includes(k) ? 0 : v,
    );
  assert.deepEqual(results("demo-int"), results("demo-ref"));
  assert.deepEqual(
    hashOutput(path.join(work, "demo-int", "hardened")),
    hashOutput(path.join(work, "demo-ref", "hardened")),
  );
});
