/**
 * One independent judge for every condition (paper §4.3, §7): an experiment names its judge, every cell and the
 * base share it, self-judging happens only when asked for and is labelled; the judge's reliability (base vs
 * fine-tuned) is in the results; one judge convention per experiment.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentSpec, type ExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { trainJudge } from "../../src/recipes/train-judge.js";
import { judgeConvention } from "../../src/data/prompts.js";
import { InputError } from "../../src/errors.js";
import { buildTables } from "../../src/report/paper-tables.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { pairsToLabelledSamples } from "../../src/data/pairs.js";
import { LlmJudge } from "../../src/eval/judge/llm.js";
import { silentLogger } from "../../src/util/log.js";

const made = makeTinyChatModel({ seed: 4 });
const other = makeTinyChatModel({ seed: 6 });
const work = scratchDir("gv-exp-judge-");
const byLang = new Map<string, typeof made.pairs>();
for (const p of made.pairs) byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), p]);
const trainPairs = [...byLang.values()].flatMap((ps) => ps.slice(0, 3));
const devPairs = [...byLang.values()].flatMap((ps) => ps.slice(-1));
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, trainPairs);
writeCorpusJsonl(devFile, devPairs);

const TRAIN = { method: "full", epochs: 1, lr: 0.01, batchSize: 4, gradAccum: 1, maxLength: 1024 };

function spec(over: Record<string, unknown> = {}): ExperimentSpec {
  return parseExperimentSpec(
    {
      name: "judged",
      models: [
        { name: "a", path: made.dir },
        { name: "b", path: other.dir },
      ],
      data: { train: trainFile, dev: devFile },
      judge: { train: { base: made.dir, ...TRAIN } },
      eval: { maxNewTokens: 8, batchSize: 4 },
      methods: ["base", "goodvibe"],
      defaults: { identify: { topK: 2, maxPairs: 2, maxLength: 512, gradientCheckpointing: false } },
      ...over,
    },
    "judged.yaml",
  );
}

test("a trained judge needs its base checkpoint; `self` is the explicit way to self-judge", () => {
  assert.throws(
    () => spec({ judge: { train: { method: "lora" } } }),
    (e: Error) =>
      e instanceof InputError && /judge\.train\.base: required/.test(e.message) && /`self`/.test(e.message),
  );
  // the paper's protocol by default: every held-out prompt, no filter
  assert.equal(spec().eval.maxPrompts, 0);
  assert.equal(spec().eval.promptFilter, "none");
  assert.throws(() => spec({ eval: { promptFilter: "no-security" } }), InputError);
});

test("plan: one judge for every cell of every model; self-judging gives one per model and says so", () => {
  const p = planExperiment(spec(), { out: path.join(work, "plan") });
  assert.equal(p.judgeMode, "independent");
  assert.equal(new Set(p.cells.map((c) => c.judgeKey)).size, 1);
  assert.equal(p.judges.size, 1);
  assert.deepEqual(p.convention.labels, { unsafe: "1", safe: "0" });

  const self = planExperiment(spec({ judge: { train: { base: "self", ...TRAIN } } }), {
    out: path.join(work, "plan-self"),
  });
  assert.equal(self.judgeMode, "self");
  assert.equal(self.judges.size, 2);
  for (const c of self.cells) {
    const src = self.judges.get(c.judgeKey!)!;
    assert.ok(src.kind === "train" && src.base === c.model.path && src.model === c.model.name);
  }
});

test("one judge convention per experiment", () => {
  const flipped = { instruction: "{unsafe} unsafe / {safe} safe", labels: { unsafe: "0", safe: "1" } };
  assert.throws(
    () =>
      planExperiment(spec({ ablations: [{ name: "flip", set: { "identify.judgeTask": flipped } }] }), {
        out: path.join(work, "plan-mixed"),
      }),
    /one experiment uses one judge instruction and label mapping/,
  );
  // the same custom convention everywhere is fine, and it changes every key
  const a = planExperiment(spec(), { out: path.join(work, "k1") });
  const b = planExperiment(spec({ defaults: { identify: { judgeTask: flipped } } }), {
    out: path.join(work, "k2"),
  });
  assert.deepEqual(b.convention, judgeConvention(flipped));
  a.cells.forEach((c, i) => assert.notEqual(c.key, b.cells[i]!.key));
});

test("run: the judge is trained once before the cells, judges the base of every model, reports base vs fine-tuned", async () => {
  const s = spec({ methods: ["base"] });
  const out = path.join(work, "run");
  const started: string[] = [];
  const r = await runExperiment(planExperiment(s, { out }), {
    render: false,
    onCellStart: (c) => started.push(c.model.name),
  });
  assert.equal(r.stopped, false);
  assert.deepEqual(started, ["a", "b"]);
  assert.equal(fs.readdirSync(path.join(out, "work", "judges")).length, 1);
  const j = r.results!.judge!;
  assert.equal(j.mode, "independent");
  assert.match(
    j.description,
    new RegExp(`one judge for every cell and the base: ${made.dir}, a full fine-tune`),
  );
  assert.deepEqual(
    j.reliability.map((x) => [x.role, x.n]),
    [
      ["base", 2 * devPairs.length],
      ["fine-tuned", 2 * devPairs.length],
    ],
  );
  for (const x of j.reliability) {
    const c = x.confusion;
    assert.equal(c.tp + c.fn, devPairs.length); // one insecure sample per pair: the positives
    assert.equal(x.tpr, c.tp / (c.tp + c.fn));
    assert.equal(x.fpr, c.fp / (c.fp + c.tn));
  }
  // both models' base cells judged by it: every answer has an LLM verdict
  for (const c of r.results!.cells) assert.equal(c.security.safeRate!.llm!.overall.n, devPairs.length);
  // no held-out pair shares code with the judge's training pairs: on unseen code, the same samples and verdicts
  for (const x of j.reliability) {
    assert.deepEqual(
      [x.unseen!.seenSamples, x.unseen!.seenPairs, x.unseen!.ofPairs, x.unseen!.n],
      [0, 0, devPairs.length, x.n],
    );
    assert.deepEqual(x.unseen!.confusion, x.confusion);
  }
  // the report shows the reliability table: each judge over all samples and on unseen code
  const t = buildTables(r.results!).find((x) => x.id === "table-judge-reliability")!;
  assert.equal(t.rows.length, 4);

  // a judge folder trained under another convention is refused before any cell runs
  const flippedDir = path.join(work, "flipped-judge");
  await trainJudge({
    baseModelDir: made.dir,
    pairs: trainPairs.slice(0, 2),
    outDir: flippedDir,
    method: "full",
    convention: judgeConvention({ instruction: "{unsafe}/{safe}", labels: { unsafe: "0", safe: "1" } }),
    cfg: { epochs: 1, batchSize: 4, gradientCheckpointing: false },
  });
  const none: string[] = [];
  await assert.rejects(
    runExperiment(planExperiment(spec({ judge: { path: flippedDir } }), { out: path.join(work, "run2") }), {
      render: false,
      onCellStart: (c) => none.push(c.id),
    }),
    /conventions cannot be mixed/,
  );
  assert.deepEqual(none, []);
});

test("run: the judge's reliability also on the held-out code it was not trained on, base and fine-tuned alike", async () => {
  // a training pair held out again under another id: both its samples' code is among the judge's training code
  const copy = { ...trainPairs[0]!, id: "copy-of-train-0" };
  const dev = [...devPairs, copy];
  const file = path.join(work, "dev-with-copy.jsonl");
  writeCorpusJsonl(file, dev);
  const out = path.join(work, "run-unseen");
  const lines: string[] = [];
  const log = { ...silentLogger, info: (m: string) => lines.push(m) };
  const r = await runExperiment(
    planExperiment(spec({ methods: ["base"], data: { train: trainFile, dev: file } }), { out }),
    { render: false, log },
  );
  const j = r.results!.judge!;
  assert.match(j.heldOut, /; 1 of them also appear in the judge's training pairs/);
  // the verdicts recomputed here, in the run's batches: the unseen rates leave out the copy's two samples
  const samples = pairsToLabelledSamples(dev);
  const judgeDir = path.join(
    out,
    "work",
    "judges",
    fs.readdirSync(path.join(out, "work", "judges"))[0]!,
    "model",
  );
  for (const [x, dir] of [
    [j.reliability[0]!, made.dir],
    [j.reliability[1]!, judgeDir],
  ] as const) {
    const p = (await LlmJudge.load(dir)).score(samples, { batchSize: 4 });
    const count = (keep: (id: string) => boolean) => {
      const c = { tp: 0, fp: 0, tn: 0, fn: 0 };
      samples.forEach((s, i) => {
        if (!keep(s.id)) return;
        const unsafe = p[i]! > 0.5;
        if (s.secure) c[unsafe ? "fp" : "tn"]++;
        else c[unsafe ? "tp" : "fn"]++;
      });
      return c;
    };
    assert.deepEqual(
      x.confusion,
      count(() => true),
    );
    const u = x.unseen!;
    assert.deepEqual([u.seenSamples, u.seenPairs, u.ofPairs, u.n], [2, 1, dev.length, 2 * dev.length - 2]);
    const c = count((id) => !id.startsWith(`${copy.id}/`));
    assert.deepEqual(u.confusion, c);
    assert.equal(u.accuracy!.value, (c.tp + c.tn) / u.n);
    assert.equal(u.accuracy!.n, u.n);
    assert.equal(u.tpr!.n, dev.length - 1);
  }
  // the run's log says both, and the report gives each judge's row on unseen code with its note
  assert.equal(
    lines.filter((l) => /on the \d+ samples whose code .* was not trained on \(left out 2, of 1 of/.test(l))
      .length,
    2,
  );
  const t = buildTables(r.results!).find((x) => x.id === "table-judge-reliability")!;
  assert.deepEqual(
    t.rows.map((row) => (row[0] as { text: string }).text),
    ["base judge", "base judge, unseen code", "fine-tuned judge", "fine-tuned judge, unseen code"],
  );
  assert.ok(t.notes.some((n) => /2 samples, of 1 of \d+ pairs, are left out/.test(n)));
});
