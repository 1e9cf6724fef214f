/**
 * The hardening recipe called directly (no CLI subprocess): the stages land in their run-folder slots under the
 * names of RUN_FILES, the settings reach the stages (identify.topK, train.maxPairs), the output records its
 * provenance, a rerun reuses the finished output, and `goodvibe train`'s path (runTrain on a given cluster map)
 * computes what `harden` computes: one implementation of the training stage, not two that drift.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { HOST_TAG } from "../../src/io/atomic.js";
import type { HardenConfig } from "../../src/config/harden.js";
import {
  RUN_FILES,
  identifyOptions,
  planStages,
  runHarden,
  runTrain,
  stagesTrainedOn,
} from "../../src/recipes/harden.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { readNeuronMap } from "../../src/method/goodvibe/neuron-map.js";
import { readClusterMap } from "../../src/method/goodvibe/clustering.js";
import { readGoodVibeDelta } from "../../src/method/goodvibe/delta.js";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { tinyHardenConfig } from "./tiny-config.js";
import { describeCheckpointing } from "../../src/method/checkpointing.js";
import { InterruptedError } from "../../src/errors.js";

const made = makeTinyChatModel();
const work = scratchDir("gv-recipe-");
const data = path.join(work, "pairs.jsonl");
writeCorpusJsonl(data, made.pairs.slice(0, 4));

function config(out: string, over: Partial<HardenConfig> = {}): HardenConfig {
  return tinyHardenConfig(made.dir, data, path.join(work, out), over);
}

test("runHarden: each stage in its slot, the settings reach the stages, the output says what made it", async () => {
  const cfg = config("hardened");
  const plan = planStages(cfg);
  const r = await runHarden(cfg);
  // the stages' slots hold the inputs that key them and their results, under the table's names
  for (const k of ["identify", "cluster", "train"] as const) {
    const inputs = JSON.parse(fs.readFileSync(path.join(plan[k].dir, RUN_FILES.slotInputs), "utf8"));
    assert.deepEqual(inputs, JSON.parse(JSON.stringify(plan[k].inputs)), k);
  }
  const run = JSON.parse(fs.readFileSync(path.join(cfg.runDir, RUN_FILES.run), "utf8"));
  assert.deepEqual(run.stages, {
    identify: path.basename(plan.identify.dir),
    cluster: path.basename(plan.cluster.dir),
    train: path.basename(plan.train.dir),
  });
  assert.ok(
    !fs.existsSync(path.join(plan.identify.dir, RUN_FILES.identifyState)),
    "state removed once mapped",
  );
  // identify.topK reached identification: every layer keeps exactly 3 rows, and the map says so
  const neurons = readNeuronMap(path.join(plan.identify.dir, RUN_FILES.neurons));
  assert.equal(neurons.topK, 3);
  for (const [name, m] of Object.entries(neurons.modules)) assert.equal(m.indices.length, 3, name);
  // the published output holds the maps the stages made
  assert.deepEqual(readNeuronMap(path.join(cfg.out, RUN_FILES.neurons)), neurons);
  assert.deepEqual(
    readClusterMap(path.join(cfg.out, RUN_FILES.clusters)),
    readClusterMap(path.join(plan.cluster.dir, RUN_FILES.clusters)),
  );
  // train.maxPairs reached training: 2 of the 4 pairs at batch 2 is one optimiser step
  assert.equal(r.train.totalSteps, 1);
  assert.equal(r.train.steps, 1);
  // the delta names its base model (provenance), and the stats file the run key
  assert.equal(r.artifact, path.join(cfg.out, RUN_FILES.delta));
  assert.equal(readGoodVibeDelta(r.artifact).baseModel, path.resolve(made.dir));
  const stats = JSON.parse(fs.readFileSync(path.join(cfg.out, RUN_FILES.stats), "utf8"));
  assert.equal(stats.runKey, plan.runKey);
  // identification's checkpointing as asked (false here) and used, in the map and the stats, not in any key
  assert.deepEqual(neurons.gradientCheckpointing, { requested: false, used: false });
  assert.deepEqual(stats.identification.gradientCheckpointing, { requested: false, used: false });
  assert.equal(stats.stages.identify.identify.gradientCheckpointing, false);
  // a rerun with the same inputs computes nothing
  const again = await runHarden(cfg);
  assert.equal(again.reused, true);
  assert.equal(again.trainableParams, r.trainableParams);
  assert.deepEqual(again.neurons?.gradientCheckpointing, { requested: false, used: false });
});

test("runTrain on harden's cluster map trains what runHarden trained (one training stage, not a copy)", async () => {
  const full = config("full-run");
  const r = await runHarden(full);
  const clustersFile = path.join(full.out, RUN_FILES.clusters);
  const staged = config("staged", { runDir: path.join(work, "staged.run") });
  const t = await runTrain(staged, clustersFile);
  assert.equal(t.train.steps, r.train.steps);
  assert.equal(t.trainableParams, r.trainableParams);
  const a = readGoodVibeDelta(r.artifact);
  const b = readGoodVibeDelta(t.artifact);
  assert.equal(b.baseModel, a.baseModel);
  assert.deepEqual([...b.U.keys()], [...a.U.keys()]);
  for (const [name, u] of a.U) {
    const x = u.toFloat32Array();
    const y = b.U.get(name)!.toFloat32Array();
    assert.equal(y.length, x.length, name);
    let diff = 0;
    for (let i = 0; i < x.length; i++) diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
    assert.ok(diff <= 1e-6, `${name}: the two paths differ by ${diff}`);
  }
  assert.ok(
    [...a.U.values()].some((u) => u.toFloat32Array().some((v) => v !== 0)),
    "training moved the update rows",
  );
  // the goodvibe path needs a cluster map
  await assert.rejects(runTrain(config("none"), undefined), /needs --clusters/);
});

test("identifyOptions hands identify() the identify config as resolved: every field, none copied by hand", async () => {
  const base = config("opts");
  const cfg: HardenConfig = {
    ...base,
    identify: {
      ...base.identify,
      topK: 2,
      mode: "activation",
      batchTokens: 777,
      profileSamples: 5,
      lmHead: true,
      gradientCheckpointing: "auto",
    },
  };
  const opts = identifyOptions(await loadTokenizer(made.dir), cfg, path.join(work, "opts.run"));
  for (const [k, v] of Object.entries(cfg.identify))
    assert.deepEqual((opts as unknown as Record<string, unknown>)[k], v, `identify.${k}`);
  assert.equal(opts.runDir, path.join(work, "opts.run"));
  assert.equal(opts.source.model, path.resolve(made.dir));
});

test("a training pair whose prompt fills train.maxLength is refused naming the file, the pair and the setting, before anything is written", async () => {
  const file = path.join(work, "one-long.jsonl");
  const pairs = made.pairs.slice(0, 4).map((p, i) =>
    // pair 3's question alone is far past the default train.maxLength (1024): about 3000 tokens of " x"
    i === 2 ? { ...p, id: "too-long", question: p.question + " x".repeat(3000) } : p,
  );
  writeCorpusJsonl(file, pairs);
  const cfg = tinyHardenConfig(made.dir, file, path.join(work, "long-out"), {});
  const run = { ...cfg, train: { ...cfg.train, maxPairs: 0, maxLength: 1024 } };
  await assert.rejects(runHarden(run), (e: Error) => {
    assert.equal(e.name, "InputError");
    assert.ok(e.message.includes(file), `the file is not named: ${e.message}`);
    assert.match(e.message, /pair too-long: prompt is \d+ tokens/);
    assert.match(e.message, /train\.maxLength/);
    return true;
  });
  assert.ok(!fs.existsSync(run.runDir), "a run folder was created");
  assert.ok(!fs.existsSync(run.out), "an output was created");
});

test("the stages' keys see a language filter, not its spelling: C++, cpp and c++ find the same cached stages", () => {
  const keys = (languages: string[] | undefined) => {
    const p = planStages(config("lang-keys", languages ? { languages } : {}));
    return [p.identify.key, p.cluster.key, p.train.key];
  };
  const cpp = keys(["c++"]);
  assert.deepEqual(keys(["C++"]), cpp);
  assert.deepEqual(keys(["cpp", " CXX ", "c++"]), cpp);
  assert.deepEqual(keys(["Java", "cpp"]), keys(["java", "c++"]));
  // another filter is another run
  assert.notDeepEqual(keys(["java"]), cpp);
  assert.notDeepEqual(keys(undefined), cpp);
});

test('a stage replaced for another language filter says "all" for no filter, not null', async () => {
  const runDir = path.join(work, "lang-diff-run");
  const told: string[] = [];
  const log = { info: (m: string) => told.push(m), warn() {}, progress() {} };
  const one = config("lang-diff-one", { runDir, languages: [made.pairs[0]!.lang] });
  await runHarden(one, { log });
  told.length = 0;
  await runHarden(config("lang-diff-all", { runDir }), { log });
  const line = told.find((m) => m.startsWith("identification: settings differ from the cached run"));
  assert.ok(line, told.join("\n"));
  assert.match(line, /languages: \["[^"]+"\] → all/);
  assert.doesNotMatch(line, /null/);
});

test("a rerun that finds its output complete still removes what a dead run left beside it (an --overwrite killed while publishing)", async () => {
  // found by a SIGKILL audit: the "nothing to do" return came before the run folder's cleaning, so a killed
  // --overwrite's temporary copy of the model stayed for good
  const cfg = config("done-then-stale");
  await runHarden(cfg);
  const dead = spawnSync(process.execPath, ["-e", "0"]).pid!;
  const stale = path.join(work, `.done-then-stale.tmp-${dead}-1-${HOST_TAG}`);
  fs.mkdirSync(stale);
  fs.writeFileSync(path.join(stale, "model.safetensors"), Buffer.alloc(1 << 20));
  const told: string[] = [];
  const log = { info: (m: string) => told.push(m), warn() {}, progress() {} };
  await runHarden(cfg, { log });
  assert.ok(!fs.existsSync(stale), "the dead run's temporary is still there");
  assert.ok(
    told.some((m) => m.startsWith(`removed ${stale} (1.0 MiB), left by a dead run (pid ${dead})`)),
    told.join("\n"),
  );
  assert.ok(told.some((m) => /already complete .*nothing to do/.test(m)));
});

test("an output of the same inputs published by another run meanwhile is this run's result, not a refusal", async () => {
  // a run stopped (SIGSTOP, Ctrl-Z) past the claim's stale time loses its claim, and a rerun may publish first: the
  // stopped run then said "exists and is not empty; refusing to replace it" of its own result (a SIGKILL audit)
  const first = config("published-meanwhile", { runDir: path.join(work, "published-meanwhile-run-a") });
  await runHarden(first);
  const saved = path.join(work, "published-meanwhile-saved");
  fs.renameSync(first.out, saved);
  const warned: string[] = [];
  const log = { info() {}, warn: (m: string) => warned.push(m), progress() {} };
  // the other run publishes while this one computes (its first save: identification's state)
  const second = { ...first, runDir: path.join(work, "published-meanwhile-run-b") };
  const r = await runHarden(second, {
    log,
    beforeSave: () => {
      if (!fs.existsSync(first.out)) fs.cpSync(saved, first.out, { recursive: true });
    },
  });
  assert.ok(
    warned.some((m) => /published meanwhile by another run of the same inputs and settings/.test(m)),
    warned.join("\n"),
  );
  assert.equal(r.outDir, first.out);
  assert.deepEqual(
    fs.readFileSync(path.join(first.out, "model.safetensors")),
    fs.readFileSync(path.join(saved, "model.safetensors")),
  );
  assert.deepEqual(
    fs.readdirSync(work).filter((n) => n.startsWith(".published-meanwhile.tmp")),
    [],
  );
  // another output there (other settings) is still refused
  fs.rmSync(first.out, { recursive: true });
  const other = { ...first, runDir: path.join(work, "published-meanwhile-run-c"), seed: 7 };
  await assert.rejects(
    runHarden(other, {
      beforeSave: () => {
        if (!fs.existsSync(first.out)) fs.cpSync(saved, first.out, { recursive: true });
      },
    }),
    /exists and is not empty; refusing to replace it/,
  );
});

test("stagesTrainedOn: the hardened folder names the stages that read the file, byte for byte; no other file", async () => {
  const cfg = config("trained-on");
  await runHarden(cfg);
  assert.deepEqual(stagesTrainedOn(cfg.out, data).sort(), ["identify", "train"]);
  // the same pairs in another file with other bytes (one more blank line): not the same file, not claimed
  const copy = path.join(work, "copy.jsonl");
  fs.writeFileSync(copy, fs.readFileSync(data, "utf8") + "\n");
  assert.deepEqual(stagesTrainedOn(cfg.out, copy), []);
  // a byte-for-byte copy elsewhere is the same data
  const same = path.join(work, "same.jsonl");
  fs.copyFileSync(data, same);
  assert.deepEqual(stagesTrainedOn(cfg.out, same).sort(), ["identify", "train"]);
  // a model the project did not harden, and a missing file
  assert.deepEqual(stagesTrainedOn(made.dir, data), []);
  assert.deepEqual(stagesTrainedOn(cfg.out, path.join(work, "missing.jsonl")), []);
});

test("checkpointing auto: the records say what was asked and what was used, the keys keep auto as true", async () => {
  // the tiny model's activations (kilobytes) are far within half of any machine's memory: "auto" turns it off on
  // the CPU (method/checkpointing.ts chooseCheckpointing)
  const train = (g: boolean | "auto") => ({ ...config("ckpt").train, gradientCheckpointing: g });
  const cfg = config("ckpt-auto", { method: "lora", train: train("auto") });
  const plan = planStages(cfg);
  assert.equal(plan.runKey, planStages({ ...cfg, train: train(true) }).runKey, "keyed as true");
  const r = await runHarden(cfg);
  assert.deepEqual(r.gradientCheckpointing, { requested: "auto", used: false });
  assert.equal(r.train.gradientCheckpointing, false);
  const stats = JSON.parse(fs.readFileSync(path.join(cfg.out, RUN_FILES.stats), "utf8"));
  assert.deepEqual(stats.gradientCheckpointing, { requested: "auto", used: false });
  // the keyed settings as before: the train slot's inputs and the stats' stages hold true
  assert.equal(stats.stages.train.train.gradientCheckpointing, true);
  const inputs = JSON.parse(fs.readFileSync(path.join(plan.train.dir, RUN_FILES.slotInputs), "utf8"));
  assert.equal(inputs.train.gradientCheckpointing, true);
  // the finished output reused: its record as made
  const again = await runHarden(cfg);
  assert.equal(again.reused, true);
  assert.deepEqual(again.gradientCheckpointing, { requested: "auto", used: false });
  assert.equal(describeCheckpointing(again.gradientCheckpointing!), "auto → off");
  assert.equal(describeCheckpointing({ requested: "auto", used: true }), "auto → on");
  assert.equal(describeCheckpointing({ requested: true, used: true }), "on (as set)");
  assert.equal(describeCheckpointing({ requested: false, used: false }), "off (as set)");
});

test("a train slot partly trained under auto (off) and resumed under true: the records say mixed, not the last choice", async () => {
  const train = (g: boolean | "auto") => ({ ...config("x").train, maxPairs: 4, gradientCheckpointing: g });
  const runDir = path.join(work, "ckpt-mixed-run");
  // 4 pairs at batch 2: two steps; the first computed under "auto" (off on the CPU here), then stopped
  const auto = config("ckpt-mixed", {
    method: "lora",
    runDir,
    train: { ...train("auto"), stopAfterSteps: 1 },
  });
  await assert.rejects(runHarden(auto), (e) => e instanceof InterruptedError);
  const on = config("ckpt-mixed", { method: "lora", runDir, train: train(true) });
  const r = await runHarden(on);
  assert.equal(r.train.steps, 2);
  assert.equal(r.train.stepsRun, 1, "resumed, not retrained");
  assert.deepEqual(r.gradientCheckpointing, { requested: true, used: "mixed" });
  assert.equal(r.train.gradientCheckpointing, "mixed");
  assert.match(describeCheckpointing(r.gradientCheckpointing!), /^on for part of the work, off for the rest/);
  const stats = JSON.parse(fs.readFileSync(path.join(on.out, RUN_FILES.stats), "utf8"));
  assert.deepEqual(stats.gradientCheckpointing, { requested: true, used: "mixed" });
  assert.equal(stats.train.gradientCheckpointing, "mixed");
  assert.deepEqual(
    JSON.parse(fs.readFileSync(path.join(planStages(on).train.dir, RUN_FILES.slotRequested), "utf8")),
    { "train.gradientCheckpointing": { requested: true, used: "mixed" } },
  );
  // reused as trained by a later run that computes nothing ("auto" shares the slot: keyed as true)
  const again = await runHarden({ ...on, out: path.join(work, "ckpt-mixed-2"), train: train("auto") });
  assert.equal(again.train.stepsRun, 0);
  assert.deepEqual(again.gradientCheckpointing, { requested: "auto", used: "mixed" });
});

test("a train slot trained under auto (used off), reused by a run with true: the records keep off, as trained", async () => {
  const runDir = path.join(work, "ckpt-reused-run");
  const train = (g: boolean | "auto") => ({ ...config("x").train, gradientCheckpointing: g });
  const requested = (dir: string) =>
    JSON.parse(fs.readFileSync(path.join(dir, RUN_FILES.slotRequested), "utf8")) as unknown;
  // trained to the end under "auto": off on the CPU for the tiny model (the test above)
  const auto = config("ckpt-reused-auto", { method: "lora", runDir, train: train("auto") });
  const first = await runHarden(auto);
  assert.deepEqual(first.gradientCheckpointing, { requested: "auto", used: false });
  const slot = planStages(auto).train.dir;
  const steps = first.train.steps;
  assert.ok(steps > 0);
  // true shares the slot (keyed as true): its steps are found, none runs, and they were computed without
  const on = config("ckpt-reused-true", { method: "lora", runDir, train: train(true) });
  assert.equal(planStages(on).train.dir, slot);
  const again = await runHarden(on);
  assert.equal(again.train.stepsRun, 0);
  assert.equal(again.train.steps, steps);
  assert.deepEqual(again.gradientCheckpointing, { requested: true, used: false });
  assert.equal(again.train.gradientCheckpointing, false);
  assert.equal(describeCheckpointing(again.gradientCheckpointing!), "off (set true)");
  assert.deepEqual(requested(slot), { "train.gradientCheckpointing": { requested: true, used: false } });
  const stats = JSON.parse(fs.readFileSync(path.join(on.out, RUN_FILES.stats), "utf8"));
  assert.deepEqual(stats.gradientCheckpointing, { requested: true, used: false });
  assert.equal(stats.train.gradientCheckpointing, false);
  // a slot trained anew under true (its checkpoint gone): this run's steps, this run's choice
  fs.rmSync(path.join(slot, "checkpoint"), { recursive: true });
  const retrained = await runHarden({ ...on, out: path.join(work, "ckpt-reused-true2") });
  assert.equal(retrained.train.stepsRun, steps);
  assert.deepEqual(retrained.gradientCheckpointing, { requested: true, used: true });
  assert.deepEqual(requested(slot), { "train.gradientCheckpointing": { requested: true, used: true } });
});

test("a train slot replaced for checkpointing says what was asked and used, not the keyed true → false", async () => {
  const runDir = path.join(work, "ckpt-replaced-run");
  const train = (g: boolean | "auto") => ({ ...config("x").train, gradientCheckpointing: g });
  const told: string[] = [];
  const log = { info: (m: string) => told.push(m), warn() {}, progress() {} };
  // "auto" first: on the CPU the tiny model's activations fit, so it runs without (used off), keyed as true
  const auto = config("ckpt-replaced-auto", { method: "full", runDir, train: train("auto") });
  await runHarden(auto, { log });
  const autoSlot = planStages(auto).train.dir;
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(autoSlot, RUN_FILES.slotRequested), "utf8")), {
    "train.gradientCheckpointing": { requested: "auto", used: false },
  });
  // then false: another key (false), so another slot; the message names the request and what was used
  told.length = 0;
  const off = config("ckpt-replaced-off", { method: "full", runDir, train: train(false) });
  await runHarden(off, { log });
  const line = told.find((m) => m.startsWith("training: settings differ from the cached run"));
  assert.ok(line, told.join("\n"));
  assert.match(line, /\(train\.gradientCheckpointing: auto \(used off\) → false\)/);
  assert.doesNotMatch(line, /true → false/);
  // the keys as before: inputs.json holds the keyed forms, true for "auto"
  const inputs = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, RUN_FILES.slotInputs), "utf8"));
  assert.equal(inputs(autoSlot).train.gradientCheckpointing, true);
  assert.equal(inputs(planStages(off).train.dir).train.gradientCheckpointing, false);
  // and back to "auto": its slot is found (keyed true), nothing is said; a new "true" run shares it as well
  told.length = 0;
  await runHarden({ ...auto, out: path.join(work, "ckpt-replaced-auto2") }, { log });
  assert.ok(!told.some((m) => /settings differ/.test(m)), told.join("\n"));
  // a slot of the false run made before requested.json, replaced by "auto": the keyed side is said as what it is
  fs.rmSync(path.join(planStages(off).train.dir, RUN_FILES.slotRequested));
  fs.rmSync(autoSlot, { recursive: true });
  told.length = 0;
  await runHarden({ ...auto, out: path.join(work, "ckpt-replaced-auto3") }, { log });
  assert.match(
    told.find((m) => /settings differ/.test(m)) ?? told.join("\n"),
    /train\.gradientCheckpointing: false → auto \(decided when training starts\)/,
  );
  // an output of the auto run, asked for under false: its record says what it was asked and used
  await assert.rejects(
    runHarden({ ...off, out: auto.out }),
    /holds a hardened model made with other inputs or settings \(train\.gradientCheckpointing: auto \(used off\) → false\)/,
  );
});
