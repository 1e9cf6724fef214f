/**
 * kill -9 and rerun: for training, identification, generation in `eval` and `experiment run`, a run SIGKILLed
 * after its first checkpoint and then rerun with the same command ends with exactly what an uninterrupted run
 * (in its own folders) produces. Each test also checks that the rerun resumed rather than started over.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import {
  balancedPairs,
  experimentSplit,
  findUnder,
  hashOutput,
  killWhenExists,
  makeCliFixture,
  runCli,
  showRun,
} from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 16 });
after(() => fx.cleanup());

/** The first "stage: done/total" progress line (non-TTY log) of a run's stderr. */
function firstProgress(stderr: string, stage: string): number {
  // plain progress lines: "<UTC timestamp> <stage> <done>/<total> ..."
  const m = new RegExp(`^\\S+Z ${stage} (\\d+)/\\d+`, "m").exec(stderr);
  assert.ok(m, `no "${stage}:" progress line in:\n${stderr}`);
  return Number(m[1]);
}

test("harden: killed during training, rerun resumes from the checkpoint and ends byte-equal to an uninterrupted run", async () => {
  // batch 1, no accumulation: 12 optimiser steps, a checkpoint after each
  const args = (name: string) => [
    "harden",
    ...[
      "-m",
      fx.model.dir,
      "-d",
      fx.pairsFile,
      "-o",
      path.join(fx.work, name),
      "--run-dir",
      path.join(fx.work, `${name}.run`),
    ],
    ...["--top-k", "4", "--epochs", "1", "--set", "identify.maxPairs=4", "--set", "train.maxPairs=12"],
    ...[
      "--set",
      "train.batchSize=1",
      "--set",
      "train.gradAccum=1",
      "--set",
      "train.lr=0.01",
      "--set",
      "train.checkpointEvery=1",
    ],
  ];
  const ref = await runCli(args("train-ref"));
  assert.equal(ref.code, 0, showRun(ref));

  // the training stage's slot in the run folder (train-goodvibe-<key of its inputs>)
  const slotFile = () =>
    findUnder(path.join(fx.work, "train-cut.run"), /^train-goodvibe-[0-9a-f]{12}\/checkpoint\/state\.json$/);
  await killWhenExists(args("train-cut"), () => slotFile() !== null);
  const ckpt = slotFile()!;
  assert.ok(
    !fs.existsSync(path.join(fx.work, "train-cut")),
    "the output folder appeared before training finished",
  );
  const stepAtKill = (JSON.parse(fs.readFileSync(ckpt, "utf8")) as { step: number }).step;
  assert.ok(stepAtKill >= 1 && stepAtKill < 12, `checkpoint at step ${stepAtKill}`);

  const rerun = await runCli(args("train-cut"));
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.match(
    rerun.stderr,
    /identification: reusing/,
    "the rerun identified again instead of reusing the finished stage",
  );
  assert.ok(firstProgress(rerun.stderr, "train") > stepAtKill, "the rerun started training from step 1");
  assert.ok(
    rerun.stderr.includes(
      `training: resuming at step ${stepAtKill} of 12 (checkpoint in ${path.dirname(ckpt)})\n`,
    ),
    "the rerun did not say which checkpoint it resumed",
  );

  assert.deepEqual(hashOutput(path.join(fx.work, "train-cut")), hashOutput(path.join(fx.work, "train-ref")));
});

test("identify: killed after its first saved state, rerun ends with the same neuron map (timing aside)", async () => {
  // 24 pairs = 48 judge samples in batches of 4; state is saved every 32 samples
  const args = (name: string) => [
    "identify",
    ...["-m", fx.model.dir, "-d", fx.pairsFile, "-o", path.join(fx.work, name, "neurons.json")],
    ...["--top-k", "4", "--set", "identify.maxPairs=24", "--set", "identify.batchSize=4"],
  ];
  fs.mkdirSync(path.join(fx.work, "id-ref"));
  fs.mkdirSync(path.join(fx.work, "id-cut"));
  const ref = await runCli(args("id-ref"));
  assert.equal(ref.code, 0, showRun(ref));

  const stateFile = () =>
    findUnder(
      path.join(fx.work, "id-cut", ".neurons.json.run"),
      /^identify-[0-9a-f]{12}\/identify-state\/state\.json$/,
    );
  await killWhenExists(args("id-cut"), () => stateFile() !== null);
  const state = stateFile()!;
  const doneAtKill = (JSON.parse(fs.readFileSync(state, "utf8")) as { done: number }).done;
  assert.ok(doneAtKill > 0 && doneAtKill < 48, `state saved after ${doneAtKill} samples`);

  const rerun = await runCli(args("id-cut"));
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.ok(
    firstProgress(rerun.stderr, "identify") > doneAtKill,
    "the rerun started identification from sample 0",
  );
  assert.ok(
    rerun.stderr.includes(
      `identification: resuming with ${doneAtKill} of 48 samples done (saved in ${path.dirname(state)})\n`,
    ),
    "the rerun did not say what it kept",
  );

  const read = (name: string) => {
    const m = JSON.parse(fs.readFileSync(path.join(fx.work, name, "neurons.json"), "utf8")) as Record<
      string,
      unknown
    >;
    assert.equal(typeof m.wallSeconds, "number");
    delete m.wallSeconds;
    return m;
  };
  const a = read("id-cut");
  assert.equal((a.source as { samples: number }).samples, 48);
  assert.deepEqual(a, read("id-ref"));
});

test("eval: killed once generations are cached, rerun generates only the rest and reports the same numbers", async () => {
  const heldOut = path.join(fx.work, "eval-pairs.jsonl");
  writeCorpusJsonl(heldOut, balancedPairs(fx.model.pairs, 3));
  const args = (cache: string) => [
    "eval",
    ...["-m", fx.model.dir, "-d", heldOut, "--cache", path.join(fx.work, cache)],
    ...["--prompts", "10", "--max-new-tokens", "32", "--batch-size", "1", "--json"],
  ];
  const ref = await runCli(args("cache-ref"));
  assert.equal(ref.code, 0, showRun(ref));

  const cacheDir = path.join(fx.work, "cache-cut");
  const cacheLines = () => {
    if (!fs.existsSync(cacheDir)) return [];
    return fs
      .readdirSync(cacheDir)
      .filter((f) => f.startsWith("safety-")) // the generation cache (preference keeps its batches beside it)
      .flatMap((f) => fs.readFileSync(path.join(cacheDir, f), "utf8").split("\n"))
      .filter((l) => l.endsWith("}"));
  };
  await killWhenExists(args("cache-cut"), () => cacheLines().length > 0);
  const cachedAtKill = cacheLines().length;
  assert.ok(cachedAtKill >= 1 && cachedAtKill < 10, `${cachedAtKill} answers cached at the kill`);

  const rerun = await runCli(args("cache-cut"));
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.deepEqual(JSON.parse(rerun.stdout), JSON.parse(ref.stdout));
  // a rerun that regenerated everything would have appended the cached prompts a second time
  const keys = cacheLines().map((l) => (JSON.parse(l) as { key: string }).key);
  assert.equal(keys.length, 10);
  assert.equal(new Set(keys).size, 10);
});

test("experiment run: killed after its first cell, rerun skips it and writes the same results", async (t) => {
  const { train, dev } = experimentSplit(fx, "exp");
  const spec = {
    name: "tiny",
    models: [{ name: "tiny", path: fx.model.dir }],
    data: { train, dev },
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
        profileSamples: 0,
      },
      // no profiles were kept: cluster the neurons by their importance alone
      cluster: { features: "importance" },
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
  };
  const file = path.join(fx.work, "tiny.yaml");
  fs.writeFileSync(file, YAML.stringify(spec));
  const args = (out: string) => ["experiment", "run", file, "-o", path.join(fx.work, out), "--json"];

  const ref = await runCli(args("exp-ref"));
  if (ref.code !== 0 && /unknown command|error: too many arguments/.test(ref.stderr))
    return t.skip("no experiment command");
  assert.equal(ref.code, 0, showRun(ref));
  assert.equal(JSON.parse(ref.stdout).cells, 3);

  const cellsDir = path.join(fx.work, "exp-cut", "cells");
  const cellFiles = () =>
    fs.existsSync(cellsDir) ? fs.readdirSync(cellsDir).filter((f) => f.endsWith(".json")) : [];
  await killWhenExists(args("exp-cut"), () => cellFiles().length > 0);
  const doneAtKill = cellFiles().length;
  assert.ok(doneAtKill >= 1 && doneAtKill < 3);
  assert.ok(!fs.existsSync(path.join(fx.work, "exp-cut", "results.json")));

  const rerun = await runCli(args("exp-cut"));
  assert.equal(rerun.code, 0, showRun(rerun));
  const summary = JSON.parse(rerun.stdout) as { skipped: string[]; ran: string[] };
  assert.equal(summary.skipped.length, doneAtKill, "the rerun computed finished cells again");
  assert.equal(summary.ran.length + summary.skipped.length, 3);

  /** Timing fields differ between runs; everything else must not. */
  const results = (out: string) => {
    const r = JSON.parse(fs.readFileSync(path.join(fx.work, out, "results.json"), "utf8"));
    return JSON.parse(JSON.stringify(r), (k, v) =>
      ["wallSeconds", "flopsPerSecond", "peakMemoryBytes", "createdAt", "finishedAt", "generatedAt"].includes(
        k,
      )
        ? 0
        : v,
    );
  };
  assert.deepEqual(results("exp-cut"), results("exp-ref"));
});
