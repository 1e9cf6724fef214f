/**
 * An experiment cell whose training did nothing must not read as a result. On a tiny made model (random Llama,
 * real tokenizer), one training pair at batch 1 × accumulation 1 with the paper's warm-up (0.1) and a constant
 * rate after it: 1 epoch is 1 step, the warm-up's, at learning rate 0 (trained nothing); 3 epochs are 3 steps,
 * 1 warming up, 2 steps' worth at the full rate (barely); 12 epochs, 2 warming up, 0 + 0.5 + 10 = 10.5 steps'
 * worth (trained: at least FEW_FULL_RATE_STEPS). Each cell's schedule is in results.json and harden.json, the
 * report marks the first two, the log and the summary count them; cells cached before the record read as "not
 * recorded".
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentResults } from "../../src/report/schema.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { plannedSchedules } from "../../src/experiment/estimate.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { runCli, showRun } from "../cli/cli-helpers.js";
import { parseMarkdownTable, cellOf } from "../report/parse.js";

const made = makeTinyChatModel({ seed: 5 });
const work = scratchDir("gv-short-schedule-");
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 4));
writeCorpusJsonl(devFile, made.pairs.slice(-2));

const raw = {
  name: "short",
  models: [{ name: "tiny", path: made.dir }],
  data: { train: trainFile, dev: devFile },
  eval: { maxPrompts: 2, maxNewTokens: 4, batchSize: 2 },
  methods: ["base", "goodvibe"],
  seeds: [0],
  defaults: {
    identify: { topK: 4, maxPairs: 2, maxLength: 512, batchSize: 4, gradientCheckpointing: false },
    train: {
      epochs: 1,
      maxPairs: 1,
      batchSize: 1,
      gradAccum: 1,
      warmupRatio: 0.1,
      schedule: "constant",
      lr: 0.01,
      maxLength: 512,
      gradientCheckpointing: false,
    },
  },
  grids: [{ name: "epochs", key: "train.epochs", values: [3, 12] }],
};
// JSON is YAML: the file `experiment plan` reads
const specFile = path.join(work, "short.yaml");
fs.writeFileSync(specFile, JSON.stringify(raw));
const spec = parseExperimentSpec(raw, specFile);

const silent = (warnings: string[]) => ({ info() {}, warn: (m: string) => warnings.push(m), progress() {} });

test("a cell that trained nothing, one that barely trained and one that trained: results.json, harden.json, the report, the log and the summary say which; cells cached before the record read as not recorded", async () => {
  const out = path.join(work, "run");
  // up front: `experiment plan` names the cells and gives each warning, with the fix, before anything runs
  const planned = await runCli(["experiment", "plan", specFile, "-o", out]);
  assert.equal(planned.code, 0, showRun(planned));
  const said = planned.stdout.split("\n");
  const at = said.findIndex((l) => l.startsWith("warning: "));
  assert.match(
    said[at]!,
    /^warning: of the cells to compute, 1 will train nothing \(every step at learning rate 0: the model stays its base\) and 1 will barely train; .* mark them ⚠ \(.*--set defaults\.train\.warmupRatio=0 sets one\):$/,
  );
  assert.match(
    said[at + 1]!,
    /^ {2}tiny goodvibe seed 0: 1 training example × 1 epoch .*every step is at learning rate 0.*train\.warmupRatio=0/,
  );
  assert.match(
    said[at + 2]!,
    /^ {2}tiny goodvibe \[epochs=3\] seed 0: .* make 3 steps, 1 of them warm-up.*: 2 steps' worth at the full learning rate/,
  );
  assert.equal(said.filter((l) => l.includes("[epochs=12]") && l.includes("learning rate")).length, 0);

  const plan = planExperiment(spec, { out });
  const warnings: string[] = [];
  const r = await runExperiment(plan, { log: silent(warnings) });
  // and the run says it before its first cell (here the log's first warning)
  assert.equal(warnings[0]!.split("\n")[0], said[at]!.slice("warning: ".length));
  // what the plan foresaw is what the runs recorded (one rule: method/train.ts scheduleRecord on the pairs kept)
  const foreseen = plannedSchedules(plan.cells);
  assert.equal(r.stopped, false);
  const results = parseExperimentResults(JSON.parse(fs.readFileSync(r.resultsFile!, "utf8")), "results.json");
  const [base, one, three, twelve] = results.cells;
  assert.deepEqual(foreseen, [null, one!.schedule, three!.schedule, twelve!.schedule]);
  assert.deepEqual(
    results.cells.map((c) => [c.method, c.ablation ?? null]),
    [
      ["base", null],
      ["goodvibe", null],
      ["goodvibe", "epochs=3"],
      ["goodvibe", "epochs=12"],
    ],
  );
  assert.equal(base!.schedule, undefined);
  const numbers = (c: typeof one) => {
    const { level: _l, warning: _w, ...n } = c!.schedule!;
    return n;
  };
  assert.deepEqual(numbers(one), { examples: 1, steps: 1, warmupSteps: 1, fullRateSteps: 0 });
  assert.equal(one!.schedule!.level, "none");
  assert.match(one!.schedule!.warning!, /every step is at learning rate 0/);
  assert.deepEqual(numbers(three), { examples: 1, steps: 3, warmupSteps: 1, fullRateSteps: 2 });
  assert.equal(three!.schedule!.level, "few");
  assert.deepEqual(twelve!.schedule, { examples: 1, steps: 12, warmupSteps: 2, fullRateSteps: 10.5 });
  // the cell's harden record keeps it, so a rerun that finds training done keeps it too
  const record = JSON.parse(fs.readFileSync(path.join(plan.cells[1]!.workDir, "harden.json"), "utf8"));
  assert.deepEqual(record.schedule, one!.schedule);

  // the summary and the end of the log count them, by id
  assert.deepEqual(r.shortSchedules, { none: [one!.id], few: [three!.id] });
  assert.ok(
    warnings.some((w) => /^⚠ Of 3 trained runs, 1 trained nothing \(tiny GoodVibe seed 0\)/.test(w)),
    warnings.join("\n"),
  );

  // the report: the notes open with them, every table marks them, the schedule table gives their steps
  const md = fs.readFileSync(path.join(r.reportDir!, "tables.md"), "utf8");
  assert.match(md, /## Notes\n\n- ⚠ Of 3 trained runs, 1 trained nothing \(tiny GoodVibe seed 0\)/);
  const t1 = parseMarkdownTable(fs.readFileSync(path.join(r.reportDir!, "table1-security.md"), "utf8"));
  assert.deepEqual(
    t1.rows.filter((row) => row[2] === "all").map((row) => row[1]),
    ["Base", "GoodVibe ⚠ trained nothing"],
  );
  const t5 = fs.readFileSync(path.join(r.reportDir!, "table5-studies.md"), "utf8");
  const t5rows = parseMarkdownTable(t5).rows.map((row) => row.slice(0, 4).join(" / "));
  assert.deepEqual(t5rows, [
    "epochs / default (reference) / tiny / GoodVibe ⚠ trained nothing",
    "epochs / 3 / tiny / GoodVibe ⚠ barely trained",
    "epochs / 12 / tiny / GoodVibe",
  ]);
  assert.match(t5, /⚠ trained nothing: every optimiser step was at learning rate 0/);
  const schedule = parseMarkdownTable(
    fs.readFileSync(path.join(r.reportDir!, "table-training-schedule.md"), "utf8"),
  );
  assert.equal(cellOf(schedule, ["tiny", "GoodVibe", "none"], "Training"), "⚠ trained nothing");
  assert.equal(cellOf(schedule, ["tiny", "GoodVibe", "epochs=3"], "Training"), "⚠ barely trained");
  assert.equal(cellOf(schedule, ["tiny", "GoodVibe", "epochs=12"], "Training"), "trained");
  assert.equal(cellOf(schedule, ["tiny", "GoodVibe", "epochs=12"], "Full-rate steps"), "10.500");

  // `experiment run` on the finished folder: computes nothing, and its summary counts them, by id
  const cli = await runCli(["experiment", "run", specFile, "-o", out]);
  assert.equal(cli.code, 0, showRun(cli));
  assert.match(cli.stdout, /^4 cells: 0 computed now, 4 cached/m);
  assert.ok(
    cli.stdout.includes(
      `warning: of the cells done, 1 trained nothing (every step at learning rate 0: ${one!.id}) and 1 barely ` +
        `trained (${three!.id}): not results of the method; the report marks them ⚠`,
    ),
    showRun(cli),
  );

  // cells filed before the record (no `schedule` in the cell file nor in harden.json): read, not refused, and
  // shown as not recorded; nothing is computed again
  for (const c of plan.cells.slice(1)) {
    const cellFile = JSON.parse(fs.readFileSync(c.cellFile, "utf8"));
    delete cellFile.schedule;
    fs.writeFileSync(c.cellFile, JSON.stringify(cellFile));
    const hr = path.join(c.workDir, "harden.json");
    const h = JSON.parse(fs.readFileSync(hr, "utf8"));
    delete h.schedule;
    fs.writeFileSync(hr, JSON.stringify(h));
  }
  fs.rmSync(r.resultsFile!);
  // --json: each row's schedule and verdict, cached cells' too
  const after = await runCli(["experiment", "plan", specFile, "-o", out, "--json"]);
  assert.equal(after.code, 0, showRun(after));
  const rows = (JSON.parse(after.stdout) as { cells: { schedule: { level?: string } | null }[] }).cells;
  assert.deepEqual(
    rows.map((c) => (c.schedule ? (c.schedule.level ?? "trained") : null)),
    [null, "none", "few", "trained"],
  );
  const againWarnings: string[] = [];
  const again = await runExperiment(planExperiment(spec, { out }), { log: silent(againWarnings) });
  assert.deepEqual(again.ran, []);
  // every cell done: nothing to warn of up front, and nothing recorded to warn of at the end
  assert.deepEqual(
    againWarnings.filter((w) => w.includes("⚠")),
    [],
  );
  assert.deepEqual(again.shortSchedules, { none: [], few: [] });
  assert.ok(again.results!.cells.every((c) => c.schedule === undefined));
  // no schedule table for results that record none, and the one of the earlier render is gone
  assert.ok(!fs.existsSync(path.join(again.reportDir!, "table-training-schedule.md")));
  assert.doesNotMatch(fs.readFileSync(path.join(again.reportDir!, "tables.md"), "utf8"), /⚠/);
});
