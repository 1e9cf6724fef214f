/**
 * The runner end to end on a tiny made model (random Llama with a real tokenizer): plan, run, results.json that
 * the report schema accepts, a rerun that computes nothing, an interrupted run that resumes to the same results,
 * and cell ids that follow the inputs (not names or the output folder).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentResults, type CellResult } from "../../src/report/schema.js";
import { parseExperimentSpec, type ExperimentSpec } from "../../src/experiment/spec.js";
import { describeCell, isCellDone, planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { buildRecord } from "../../src/tensor/index.js";
import { buildsNote } from "../../src/report/builds.js";
import { groupBySetting } from "../../src/report/aggregate.js";
import { utilityDeltaInterval } from "../../src/report/paper-tables.js";
import { InputError } from "../../src/errors.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 3 });
const work = scratchDir("gv-experiment-");
// one pair per template and language: 12 training pairs, 4 dev pairs (one per language)
const byLang = new Map<string, typeof made.pairs>();
for (const p of made.pairs) byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), p]);
const trainPairs = [...byLang.values()].flatMap((ps) => ps.slice(0, 3));
const devPairs = [...byLang.values()].flatMap((ps) => ps.slice(-1));
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, trainPairs);
writeCorpusJsonl(devFile, devPairs);

function spec(over: Record<string, unknown> = {}): ExperimentSpec {
  return parseExperimentSpec(
    {
      name: "tiny",
      models: [{ name: "tiny", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      // the untrained model as its own LLM judge: exercises the judge path at no training cost
      judge: { path: made.dir },
      eval: { maxPrompts: 4, maxNewTokens: 12, batchSize: 4 },
      methods: ["base", "goodvibe"],
      seeds: [0],
      defaults: {
        identify: {
          topK: 4,
          maxPairs: 4,
          maxLength: 512,
          batchSize: 4,
          gradientCheckpointing: false,
        },
        train: {
          epochs: 1,
          maxPairs: 4,
          batchSize: 2,
          gradAccum: 1,
          lr: 0.01,
          maxLength: 512,
          gradientCheckpointing: false,
        },
      },
      grids: [{ name: "threshold", key: "cluster.threshold", values: [0.9] }],
      ...over,
    },
    "tiny.yaml",
  );
}

/** Timing fields differ between runs; everything else must not. */
function withoutTiming(cells: readonly CellResult[]): unknown[] {
  return cells.map((c) => ({
    ...c,
    cost: { ...c.cost, wallSeconds: 0, flopsPerSecond: 0, peakMemoryBytes: 0 },
  }));
}

function mtimes(dir: string): Map<string, number> {
  return new Map(fs.readdirSync(dir).map((f) => [f, fs.statSync(path.join(dir, f)).mtimeMs]));
}

test("ids: follow the inputs, not the output folder or the names", () => {
  const a = planExperiment(spec(), { out: path.join(work, "ids-a") });
  const b = planExperiment(spec(), { out: path.join(work, "ids-b") });
  assert.deepEqual(
    a.cells.map((c) => c.id),
    b.cells.map((c) => c.id),
  );
  assert.equal(new Set(a.cells.map((c) => c.key)).size, 3);
  assert.ok(a.cells.every((c) => /^[0-9a-f]{64}$/.test(c.key) && c.id === c.key.slice(0, 16)));
  const renamed = planExperiment(spec({ models: [{ name: "other-name", path: made.dir }] }), {
    out: path.join(work, "ids-a"),
  });
  assert.deepEqual(
    renamed.cells.map((c) => c.id),
    a.cells.map((c) => c.id),
  );

  // a training setting: every trained cell changes, the base does not
  const lr = planExperiment(
    spec({ defaults: { ...spec().defaults, train: { ...(spec().defaults.train as object), lr: 0.02 } } }),
    { out: path.join(work, "ids-a") },
  );
  assert.equal(lr.cells[0]!.id, a.cells[0]!.id);
  for (let i = 1; i < 3; i++) assert.notEqual(lr.cells[i]!.id, a.cells[i]!.id);
  // an evaluation setting or the data: every cell changes
  const ev = planExperiment(spec({ eval: { maxPrompts: 3, maxNewTokens: 12, batchSize: 4 } }), {
    out: path.join(work, "ids-a"),
  });
  for (let i = 0; i < 3; i++) assert.notEqual(ev.cells[i]!.id, a.cells[i]!.id);
  const dev2 = path.join(work, "dev2.jsonl");
  writeCorpusJsonl(dev2, devPairs.slice(1));
  const data = planExperiment(spec({ data: { train: trainFile, dev: dev2 } }), {
    out: path.join(work, "ids-a"),
  });
  for (let i = 0; i < 3; i++) assert.notEqual(data.cells[i]!.id, a.cells[i]!.id);
  // the seed
  const seed = planExperiment(spec({ seeds: [1] }), { out: path.join(work, "ids-a") });
  assert.equal(seed.cells[0]!.id, a.cells[0]!.id);
  assert.notEqual(seed.cells[1]!.id, a.cells[1]!.id);
});

test("run: plan, results.json in the report schema, a rerun computes nothing, an interrupted run resumes to the same results", async () => {
  const outA = path.join(work, "run-a");
  const outB = path.join(work, "run-b");

  const plan = planExperiment(spec(), { out: outB });
  assert.deepEqual(
    plan.cells.map((c) => [c.method, c.ablation ?? null, isCellDone(c)]),
    [
      ["base", null, false],
      ["goodvibe", null, false],
      ["goodvibe", "threshold=0.9", false],
    ],
  );

  // uninterrupted
  const started: string[] = [];
  const warnings: string[] = [];
  const full = await runExperiment(plan, {
    onCellStart: (c) => started.push(c.id),
    log: { info() {}, warn: (m) => warnings.push(m), progress() {} },
  });
  assert.equal(full.stopped, false);
  // the neuron map shared between cells comes with the record of the build that made it (this one): no warning
  // of a stage made by another build
  assert.deepEqual(
    warnings.filter((w) => /computed by|begun by|did not record its build/.test(w)),
    [],
  );
  assert.deepEqual(
    started,
    plan.cells.map((c) => c.id),
  );
  const json = JSON.parse(fs.readFileSync(full.resultsFile!, "utf8"));
  const results = parseExperimentResults(json, full.resultsFile!);
  assert.equal(results.cells.length, 3);
  // the file's settings that depart from the paper's are in results.json (and so in the report's notes)
  assert.ok(
    results.departures?.some(
      (d) => d.setting.endsWith("(identify.topK)") && d.paper === "50" && d.here === "4",
    ),
    JSON.stringify(results.departures),
  );
  assert.ok(fs.existsSync(path.join(full.reportDir!, "index.html")));
  assert.ok(plan.cells.every(isCellDone));

  const [base, gv, gvGrid] = results.cells;
  assert.equal(base!.method, "base");
  assert.deepEqual(base!.cost, {
    flopsForward: 0,
    flopsBackward: 0,
    flopsTotal: 0,
    wallSeconds: 0,
    flopsPerSecond: 0,
    peakMemoryBytes: 0,
  });
  assert.equal(base!.params.trainable, 0);
  // total parameters of the made model, counted by hand from its shapes
  const h = 64;
  const v = made.vocabSize;
  const perLayer = h * h + 2 * (h / 2) * h + h * h + 3 * (2 * h * h) + 2 * h;
  assert.equal(base!.params.total, 2 * v * h + 2 * perLayer + h);
  assert.equal(gv!.params.total, base!.params.total);
  assert.equal(gv!.ablation, undefined);
  assert.equal(gvGrid!.ablation, "threshold=0.9");
  for (const c of [gv!, gvGrid!]) {
    assert.ok(c.params.trainable > 0 && c.params.trainable < c.params.total);
    // GoodVibe's cost counts identification and training, both forward and backward
    assert.ok(c.cost.flopsTotal > 0);
    assert.ok(
      Math.abs(c.cost.flopsForward + c.cost.flopsBackward - c.cost.flopsTotal) <= 1e-6 * c.cost.flopsTotal,
    );
    // top-4 neurons in each of the 2 layers × 7 linear modules
    assert.equal(c.neurons!.perLayer.length, 14);
    assert.ok(c.neurons!.perLayer.every((r) => r.count === 4));
    // the middle layer's q/k/v (layer 1 of 0..1), each with its 4 neurons
    assert.deepEqual(Object.keys(c.neurons!.importanceByModule!).sort(), [
      "layers.1.k_proj",
      "layers.1.q_proj",
      "layers.1.v_proj",
    ]);
  }
  // gradient checkpointing as the file asked it (false for both stages, defaults above) and as the runs used it;
  // a base cell trains nothing and records none
  assert.equal(base!.gradientCheckpointing, undefined);
  for (const c of [gv!, gvGrid!])
    assert.deepEqual(c.gradientCheckpointing, {
      training: { requested: false, used: false },
      identification: { requested: false, used: false },
    });
  // one identification shared by the two GoodVibe cells (they differ only in clustering)
  assert.equal(fs.readdirSync(path.join(outB, "work", "identify")).length, 1);
  assert.deepEqual(gv!.neurons!.perLayer, gvGrid!.neurons!.perLayer);
  // silhouette 0.9 is out of reach for 4 neurons: no layer is clustered, each shares one update row (the default
  // fallback), so the cell trains one row per module: the sum of the 14 modules' input sizes
  assert.ok(gvGrid!.neurons!.clusters.every((k) => !k.clustered && k.layers!.shared === 2));
  // (hidden 64, intermediate 128: q/k/v/o/gate/up read 64 features, down_proj 128; 2 layers)
  const oneRowEach = 2 * (6 * 64 + 128);
  assert.equal(gvGrid!.params.trainable, oneRowEach);
  assert.ok(gvGrid!.params.trainable <= gv!.params.trainable);
  // secure preference on every dev pair; a random model writes no code block, so the rule judge has no verdict
  // (its rate, NaN, is left out rather than failing the schema) and the LLM judge judges every whole answer
  assert.equal(base!.security.securePreference!.n, devPairs.length);
  assert.equal(base!.security.safeRate!.rule, undefined);
  assert.equal(base!.security.safeRate!.llm!.overall.n, devPairs.length);
  assert.deepEqual(
    [base!.security.answers!.n, base!.security.answers!.noCode],
    [devPairs.length, devPairs.length],
  );
  // one judge, given as a folder, for every cell; its reliability on the held-out pairs; the protocol
  assert.equal(results.judge!.mode, "independent");
  assert.match(results.judge!.description, /one judge for every cell and the base/);
  assert.deepEqual(
    results.judge!.reliability.map((r) => [r.role, r.source, r.n]),
    [["given", made.dir, 2 * devPairs.length]],
  );
  assert.deepEqual(results.judge!.convention.labels, { unsafe: "1", safe: "0" });
  assert.match(results.evaluation!.protocol, /^all 4 held-out prompts, as they are/);
  assert.equal(results.evaluation!.promptFilter, "none");
  assert.equal(base!.utility!.heldout_code_loss!.n, 2 * devPairs.length);
  // the held-out loss keeps one float64 per dev pair, under one hash on every cell (the same pairs), so Table 3
  // and Figure 1 pair its Δ vs base per pair
  const held = (c: CellResult) => c.utility!.heldout_code_loss!.perItem!;
  assert.equal(held(base!).unitsPerItem, 2);
  assert.equal(Buffer.from(held(base!).f64!, "base64").length, 8 * devPairs.length);
  assert.equal(held(gv!).items, held(base!).items);
  const settings = groupBySetting(results.cells);
  const delta = utilityDeltaInterval(
    settings.find((x) => x.method === "goodvibe" && x.ablation === undefined)!,
    settings.find((x) => x.method === "base"),
    "heldout_code_loss",
  );
  assert.equal(delta.paired, true, delta.unpairedBecause);
  assert.deepEqual(delta.pairedBy, ["normal"]);

  // a rerun computes nothing and touches no cell file
  const cellsDir = path.join(outB, "cells");
  const before = mtimes(cellsDir);
  const again: string[] = [];
  const rerun = await runExperiment(planExperiment(spec(), { out: outB }), {
    onCellStart: (c) => again.push(c.id),
  });
  assert.deepEqual(again, []);
  assert.deepEqual(rerun.ran, []);
  assert.equal(rerun.skipped.length, 3);
  assert.deepEqual(mtimes(cellsDir), before);
  assert.deepEqual(withoutTiming(rerun.results!.cells), withoutTiming(results.cells));

  // each cell records the build that computed it: this one, the float32 base without a bf16 route, the bf16 cells
  // with this process's route; the report names it once
  const now = buildRecord("cpu", "bfloat16");
  for (const c of results.cells)
    assert.deepEqual(c.build, c.method === "base" ? buildRecord("cpu", "float32") : now, c.id);
  assert.match(buildsNote(results.cells)!, /^Every cell was computed by goodvibe /);
  // a cell of another build (an experiment resumed after an upgrade: its earlier cells are reused as they are) is
  // reused, and the run and the report say so
  const cellFile = plan.cells.find((c) => c.id === gvGrid!.id)!.cellFile;
  const older = JSON.parse(fs.readFileSync(cellFile, "utf8"));
  fs.writeFileSync(cellFile, JSON.stringify({ ...older, build: { ...now, goodvibe: "0.0.9" } }));
  const told: string[] = [];
  const mixed = await runExperiment(planExperiment(spec(), { out: outB }), {
    log: { info() {}, warn: (m) => told.push(m), progress() {} },
  });
  assert.deepEqual(mixed.ran, []);
  assert.ok(
    told.some((m) => /computed by more than one build of goodvibe.*1 cell by goodvibe 0\.0\.9/.test(m)),
    told.join("\n"),
  );
  assert.match(
    fs.readFileSync(path.join(mixed.reportDir!, "tables.md"), "utf8"),
    /^- Builds: the cells were computed by more than one build/m,
  );
  fs.writeFileSync(cellFile, JSON.stringify(older));

  // interrupted after the first cell, then resumed: the same results as the uninterrupted run
  const first = await runExperiment(planExperiment(spec(), { out: outA }), {
    stopAfterCells: 1,
    render: false,
  });
  assert.equal(first.stopped, true);
  assert.equal(first.ran.length, 1);
  assert.equal(first.resultsFile, undefined);
  assert.ok(!fs.existsSync(path.join(outA, "results.json")));
  const partial = parseExperimentResults(
    JSON.parse(fs.readFileSync(first.partialFile!, "utf8")),
    first.partialFile!,
  );
  assert.deepEqual(withoutTiming(partial.cells), withoutTiming(results.cells.slice(0, 1)));
  // the file says it is partial and which planned cells it lacks, by id and as the log names them
  assert.equal(partial.partial?.planned, plan.cells.length);
  assert.deepEqual(
    partial.partial?.missing.map((m) => [m.id, m.label, m.method, m.seed]),
    plan.cells.slice(1).map((c) => [c.id, describeCell(c), c.method, c.seed]),
  );
  const resumed = await runExperiment(planExperiment(spec(), { out: outA }), { render: false });
  assert.equal(resumed.stopped, false);
  assert.deepEqual(resumed.skipped, [plan.cells[0]!.id]);
  assert.deepEqual(
    resumed.ran,
    plan.cells.slice(1).map((c) => c.id),
  );
  assert.deepEqual(withoutTiming(resumed.results!.cells), withoutTiming(results.cells));
  // results.json supersedes the stop's partial results: none is left beside it to be read by mistake
  assert.ok(fs.existsSync(path.join(outA, "results.json")));
  assert.ok(!fs.existsSync(first.partialFile!), "results.partial.json is left beside results.json");

  // a stop request inside the GoodVibe cell (Ctrl-C while it identifies or trains): the cell stops at a
  // checkpoint, nothing is written as finished, and the rerun completes it to the same results
  const outD = path.join(work, "run-d");
  const stop = new AbortController();
  const inCell = await runExperiment(planExperiment(spec(), { out: outD }), {
    signal: stop.signal,
    onCellStart: (c) => c.method === "goodvibe" && stop.abort(),
    render: false,
  });
  assert.equal(inCell.stopped, true);
  assert.deepEqual(inCell.ran, [plan.cells[0]!.id]);
  assert.ok(!isCellDone(planExperiment(spec(), { out: outD }).cells[1]!));
  const afterStop = await runExperiment(planExperiment(spec(), { out: outD }), { render: false });
  assert.deepEqual(
    afterStop.ran,
    plan.cells.slice(1).map((c) => c.id),
  );
  assert.deepEqual(withoutTiming(afterStop.results!.cells), withoutTiming(results.cells));

  // a stop request between cells: nothing more is computed
  const outC = path.join(work, "run-c");
  const stoppedNow = await runExperiment(planExperiment(spec(), { out: outC }), {
    signal: AbortSignal.abort(),
    render: false,
  });
  assert.equal(stoppedNow.stopped, true);
  assert.deepEqual(stoppedNow.ran, []);
});

test("a cell records checkpointing 'auto' as asked and as decided, which its id does not say for training", async () => {
  const auto = (g: boolean | "auto", t: boolean | "auto" = g) =>
    spec({
      methods: ["goodvibe"],
      grids: [],
      defaults: {
        identify: { topK: 4, maxPairs: 4, maxLength: 512, batchSize: 4, gradientCheckpointing: g },
        train: {
          epochs: 1,
          maxPairs: 4,
          batchSize: 2,
          gradAccum: 1,
          lr: 0.01,
          maxLength: 512,
          gradientCheckpointing: t,
        },
      },
    });
  const out = path.join(work, "run-auto");
  const plan = planExperiment(auto("auto"), { out });
  // training's "auto" is keyed as true (method/checkpointing.ts keyedTraining): the cell's id is that of training
  // asked true, so only the record says what was asked
  assert.equal(plan.cells[0]!.id, planExperiment(auto("auto", true), { out }).cells[0]!.id);
  assert.notEqual(plan.cells[0]!.id, planExperiment(auto("auto", false), { out }).cells[0]!.id);
  const r = await runExperiment(plan, { render: false });
  const [cell] = parseExperimentResults(
    JSON.parse(fs.readFileSync(r.resultsFile!, "utf8")),
    r.resultsFile!,
  ).cells;
  // a 2-layer, 64-wide model's activations are far below any memory bound: "auto" decides off for both stages
  assert.deepEqual(cell!.gradientCheckpointing, {
    training: { requested: "auto", used: false },
    identification: { requested: "auto", used: false },
  });
  // the cell's training record (harden.json) keeps it: the cell file removed, the rerun reuses the trained model
  // and files the same record
  fs.rmSync(plan.cells[0]!.cellFile);
  const again = await runExperiment(planExperiment(auto("auto"), { out }), { render: false });
  assert.deepEqual(again.results!.cells[0]!.gradientCheckpointing, cell!.gradientCheckpointing);
});

test("an input rewritten during the run: the cell is not filed under the old keys", async () => {
  const dev3 = path.join(work, "dev3.jsonl");
  writeCorpusJsonl(dev3, devPairs);
  const plan = planExperiment(spec({ data: { train: trainFile, dev: dev3 } }), {
    out: path.join(work, "run-e"),
  });
  await assert.rejects(
    runExperiment(plan, {
      // the dev set is rebuilt while the base cell runs
      onCellStart: () => writeCorpusJsonl(dev3, devPairs.slice(1)),
      render: false,
    }),
    (e: unknown) => e instanceof InputError && /changed while the experiment ran/.test(e.message),
  );
  assert.ok(!isCellDone(plan.cells[0]!));
});

test("a cell left to another worker that finishes while this one computes: the last worker to end writes results.json", async () => {
  // two `experiment run`s started at once on one folder: each leaves the cell the other holds, and the one that
  // ends last must see that the other's cell is done by then, or nobody writes results.json
  const ref = await runExperiment(planExperiment(spec(), { out: path.join(work, "workers-ref") }));
  const refPlan = planExperiment(spec(), { out: path.join(work, "workers-ref") });
  const plan = planExperiment(spec(), { out: path.join(work, "workers") });
  const [, other, last] = plan.cells;
  // the other worker: alive (this test's parent process), holding the second cell
  fs.mkdirSync(other!.workDir, { recursive: true });
  const claim = path.join(other!.workDir, ".claim.json");
  fs.writeFileSync(
    claim,
    JSON.stringify({
      host: os.hostname(),
      pid: process.ppid,
      token: "0123456789abcdef",
      since: new Date().toISOString(),
    }),
  );
  const started: string[] = [];
  const summary = await runExperiment(plan, {
    onCellStart: (c) => {
      started.push(c.id);
      // ... and finishing it while this worker computes the last cell: its cell file, then its claim released
      if (c.id === last!.id) {
        fs.mkdirSync(path.dirname(other!.cellFile), { recursive: true });
        fs.copyFileSync(refPlan.cells[1]!.cellFile, other!.cellFile);
        fs.rmSync(claim);
      }
    },
  });
  assert.deepEqual(started, [plan.cells[0]!.id, last!.id], "the held cell was left to its worker");
  assert.equal(summary.stopped, false);
  assert.deepEqual(summary.pending ?? [], []);
  assert.ok(summary.resultsFile, "no results.json: the finished cell of the other worker was not seen");
  const results = parseExperimentResults(
    JSON.parse(fs.readFileSync(summary.resultsFile, "utf8")),
    "results.json",
  );
  const refResults = parseExperimentResults(
    JSON.parse(fs.readFileSync(ref.resultsFile!, "utf8")),
    "results.json",
  );
  // every cell, in plan order, as one worker alone makes them
  assert.deepEqual(
    results.cells.map((c) => c.id),
    plan.cells.map((c) => c.id),
  );
  assert.deepEqual(withoutTiming(results.cells), withoutTiming(refResults.cells));
  assert.ok(!fs.existsSync(path.join(plan.outDir, "results.partial.json")));
});
