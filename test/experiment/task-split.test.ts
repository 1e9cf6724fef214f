/**
 * Task-held-out splits: the held-out share per language, proportional allocation over the vulnerability classes,
 * determinism (seed, not file order), files that hold only what they should, and the experiment runner using
 * them: identification and training on the hardening tasks only, every evaluation on the held-out tasks only.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  chooseHeldOutTasks,
  computeTaskSplit,
  vulnerabilityClass,
  writeTaskSplit,
  VULNERABILITY_CLASSES,
} from "../../src/experiment/task-split.js";
import {
  describeProtocol,
  evaluationInfo,
  evaluationProtocol,
  interleaveByLanguage,
} from "../../src/recipes/evaluate.js";
import { readPairs } from "../../src/data/pairs.js";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { parseExperimentResults } from "../../src/report/schema.js";
import { renderReport } from "../../src/report/render.js";
import { InputError } from "../../src/errors.js";
import { REPO_ROOT, makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { runCli, showRun } from "../cli/cli-helpers.js";

const work = scratchDir("gv-task-split-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

const ORGANISM = path.join(REPO_ROOT, "assets/organism/data");
const organismData = { train: path.join(ORGANISM, "train.jsonl"), dev: path.join(ORGANISM, "dev.jsonl") };
const SETTINGS = { heldOut: 0.25, seed: 0, stratify: "class", evaluate: "all" } as const;

function tasksOf(file: string) {
  return [...new Map(readPairs(file).map((p) => [`${p.lang}/${p.task}`, p])).values()].map((p) => ({
    task: p.task!,
    lang: p.lang,
    cwe: p.cwe!,
  }));
}

test("the vulnerability classes do not overlap, and an unlisted CWE is a class of its own", () => {
  const all = Object.values(VULNERABILITY_CLASSES).flat();
  assert.equal(new Set(all).size, all.length);
  assert.equal(vulnerabilityClass("CWE-89"), "injection");
  assert.equal(vulnerabilityClass("CWE-1234"), "CWE-1234");
});

test("organism split: a quarter of each language's 12 tasks held out, allocated to classes in proportion", () => {
  const tasks = [...tasksOf(organismData.train), ...tasksOf(organismData.dev)];
  for (const seed of [0, 1, 2]) {
    const split = chooseHeldOutTasks(tasks, { ...SETTINGS, seed });
    assert.deepEqual(Object.keys(split).sort(), ["cpp", "go", "java", "swift"]);
    for (const [lang, s] of Object.entries(split)) {
      const n = s.hardening.length + s.heldOut.length;
      assert.equal(n, 12, lang);
      assert.equal(s.heldOut.length, 3, `${lang}: round(12 × 0.25)`);
      // no task on both sides
      const h = new Set(s.hardening.map((t) => t.task));
      for (const t of s.heldOut) assert.ok(!h.has(t.task));
      // proportional allocation: each class gets floor or ceil of its share (largest remainders)
      const size = new Map<string, number>();
      const held = new Map<string, number>();
      for (const t of [...s.hardening, ...s.heldOut]) size.set(t.stratum, (size.get(t.stratum) ?? 0) + 1);
      for (const t of s.heldOut) held.set(t.stratum, (held.get(t.stratum) ?? 0) + 1);
      for (const [cls, k] of size) {
        const quota = (k * 3) / n;
        const got = held.get(cls) ?? 0;
        assert.ok(
          got >= Math.floor(quota) && got <= Math.ceil(quota),
          `${lang} ${cls}: ${got} of quota ${quota}`,
        );
        assert.equal(
          vulnerabilityClass([...s.hardening, ...s.heldOut].find((t) => t.stratum === cls)!.cwe),
          cls,
        );
      }
    }
  }
});

test("the split depends on the seed, not on the order the tasks are listed in", () => {
  const tasks = tasksOf(organismData.train);
  const a = chooseHeldOutTasks(tasks, SETTINGS);
  assert.deepEqual(chooseHeldOutTasks([...tasks].reverse(), SETTINGS), a);
  const held = (s: typeof a) => Object.values(s).flatMap((l) => l.heldOut.map((t) => t.task));
  const differ = [1, 2, 3].some(
    (seed) => held(chooseHeldOutTasks(tasks, { ...SETTINGS, seed })).join() !== held(a).join(),
  );
  assert.ok(differ, "other seeds hold out other tasks");
  assert.throws(() => chooseHeldOutTasks(tasks, { ...SETTINGS, heldOut: 1 }), InputError);
  assert.throws(
    () => chooseHeldOutTasks([{ task: "only", lang: "go", cwe: "CWE-89" }], SETTINGS),
    /has 1 task/,
  );
});

test("writeTaskSplit: the train file holds only hardening tasks' train pairs, the eval file only held-out tasks", () => {
  for (const evaluate of ["all", "dev"] as const) {
    const dir = path.join(work, `split-${evaluate}`);
    const r = writeTaskSplit(organismData, { ...SETTINGS, evaluate }, dir);
    const held = new Set(
      Object.entries(r.languages).flatMap(([l, s]) => s.heldOut.map((t) => `${l}/${t.task}`)),
    );
    const train = readPairs(r.files.train);
    const evalPairs = readPairs(r.files.dev);
    const srcTrain = readPairs(organismData.train);
    const srcDev = readPairs(organismData.dev);
    assert.ok(train.every((p) => !held.has(`${p.lang}/${p.task}`)));
    assert.equal(train.length, srcTrain.filter((p) => !held.has(`${p.lang}/${p.task}`)).length);
    assert.ok(evalPairs.every((p) => held.has(`${p.lang}/${p.task}`)));
    const want = (evaluate === "all" ? [...srcTrain, ...srcDev] : srcDev).filter((p) =>
      held.has(`${p.lang}/${p.task}`),
    );
    assert.deepEqual(evalPairs.map((p) => p.id).sort(), want.map((p) => p.id).sort());
    assert.equal(r.trainPairs, train.length);
    assert.equal(r.evalPairs, evalPairs.length);
    // replanning rewrites nothing
    const mtime = fs.statSync(r.files.train).mtimeMs;
    writeTaskSplit(organismData, { ...SETTINGS, evaluate }, dir);
    assert.equal(fs.statSync(r.files.train).mtimeMs, mtime);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, "split.json"), "utf8")).settings, {
      ...SETTINGS,
      evaluate,
    });
  }
});

test("a split of pairs without a task field is refused, naming the file and the pair", () => {
  const file = path.join(work, "no-task.jsonl");
  fs.writeFileSync(
    file,
    readPairs(organismData.dev)
      .slice(0, 3)
      .map((p) =>
        JSON.stringify({
          id: p.id,
          lang: p.lang,
          question: p.question,
          chosen: p.chosen,
          rejected: p.rejected,
        }),
      )
      .join("\n"),
  );
  assert.throws(
    () => writeTaskSplit({ train: file, dev: file }, SETTINGS, path.join(work, "x")),
    /no "task" field/,
  );
});

test("experiment with data.taskSplit: hardening reads only hardening tasks, evaluation only held-out tasks", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  // two pairs per template: 12 tasks per language
  const trainFile = path.join(work, "tiny-train.jsonl");
  const devFile = path.join(work, "tiny-dev.jsonl");
  writeCorpusJsonl(
    trainFile,
    made.pairs.filter((_, i) => i % 2 === 0),
  );
  writeCorpusJsonl(
    devFile,
    made.pairs.filter((_, i) => i % 2 === 1),
  );
  const spec = parseExperimentSpec(
    {
      name: "tiny-heldout",
      models: [{ name: "tiny", path: made.dir }],
      data: {
        train: trainFile,
        dev: devFile,
        languages: ["go"],
        taskSplit: { heldOut: 0.25, evaluate: "dev" },
      },
      eval: { maxPrompts: 0, maxNewTokens: 8, batchSize: 4 },
      methods: ["base", "goodvibe"],
      seeds: [0],
      defaults: {
        identify: { topK: 2, maxPairs: 2, maxLength: 384, batchSize: 2, gradientCheckpointing: false },
        train: {
          epochs: 1,
          maxPairs: 2,
          lr: 1e-3,
          batchSize: 2,
          gradAccum: 1,
          maxLength: 384,
          gradientCheckpointing: false,
        },
      },
    },
    "tiny-heldout.yaml",
  );
  const out = path.join(work, "run");
  const plan = planExperiment(spec, { out });
  const split = plan.taskSplit!;
  assert.ok(split, "the plan records the split");
  const held = new Set(split.languages.go!.heldOut.map((t) => t.task));
  assert.equal(held.size, 3);
  const trained = plan.cells.find((c) => c.method === "goodvibe")!;
  assert.equal(trained.harden!.data, path.join(out, "split", "train.jsonl"));
  assert.ok(readPairs(trained.harden!.data).every((p) => !held.has(p.task!)));

  const r = await runExperiment(plan, { render: false });
  const results = parseExperimentResults(JSON.parse(fs.readFileSync(r.resultsFile!, "utf8")), "results");
  assert.deepEqual(
    results.taskSplit!.languages.go!.heldOut.map((t) => t.task),
    [...held],
  );
  for (const c of results.cells) {
    const o = c.outcomes!;
    assert.ok(o.ids.length > 0);
    const devTask = new Map(readPairs(devFile).map((p) => [p.id, p.task]));
    assert.ok(
      o.ids.every((id) => held.has(devTask.get(id)!)),
      "evaluated only on held-out tasks",
    );
    assert.equal(c.security.securePreference!.n, o.ids.length);
    assert.equal(o.groups!.length, o.ids.length);
    // the pairs name their task: every rate's interval is over the tasks (the recounts from the outcomes agree
    // with the recorded rates, else the cell would have kept Wilson over the items), and the cell says so
    assert.equal(c.security.intervals, "wilson-task-design-effect");
    // and the mean loss gap's bootstrap resampled whole tasks
    assert.equal(c.security.lossGapInterval, "bootstrap-task");
  }
  const { html } = await renderReport(results, path.join(work, "report"));
  assert.match(html, /Table 9\. Task split/);
  assert.match(html, /wilson-task-design-effect/);
  assert.match(html, /bootstrap-task/);
  assert.match(html, /Table 10\. Paired tests/);
});

test("experiment run with a task split: a fresh folder runs; a foreign folder is refused before the split is written", async () => {
  const made = makeTinyChatModel({ seed: 6 });
  const trainFile = path.join(work, "cli-train.jsonl");
  const devFile = path.join(work, "cli-dev.jsonl");
  writeCorpusJsonl(
    trainFile,
    made.pairs.filter((_, i) => i % 2 === 0),
  );
  writeCorpusJsonl(
    devFile,
    made.pairs.filter((_, i) => i % 2 === 1),
  );
  // JSON is YAML
  const file = path.join(work, "cli-heldout.yaml");
  fs.writeFileSync(
    file,
    JSON.stringify({
      name: "cli-heldout",
      models: [{ name: "tiny", path: made.dir }],
      data: { train: trainFile, dev: devFile, languages: ["go"], taskSplit: { evaluate: "dev" } },
      eval: { maxPrompts: 2, maxNewTokens: 4, batchSize: 2 },
      methods: ["base"],
    }),
  );
  const foreign = path.join(work, "cli-foreign");
  fs.mkdirSync(foreign);
  fs.writeFileSync(path.join(foreign, "notes.txt"), "mine\n");
  const refused = await runCli(["experiment", "run", file, "--out", foreign]);
  assert.equal(refused.code, 2, showRun(refused));
  assert.deepEqual(fs.readdirSync(foreign), ["notes.txt"], "nothing written into a folder that is not ours");

  const out = path.join(work, "cli-run");
  const r = await runCli(["experiment", "run", file, "--out", out]);
  assert.equal(r.code, 0, showRun(r));
  const split = JSON.parse(fs.readFileSync(path.join(out, "split", "split.json"), "utf8"));
  assert.equal(split.languages.go.heldOut.length, 3);
  // the budget of 2 prompts went to two different held-out tasks, and the results say which prompts counted
  const results = parseExperimentResults(
    JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8")),
    "results",
  );
  const ev = results.evaluation!;
  assert.equal(ev.spread, "task");
  assert.equal(ev.promptIds!.length, 2);
  const taskOf = new Map(readPairs(devFile).map((p) => [p.id, p.task!]));
  assert.equal(new Set(ev.promptIds!.map((id) => taskOf.get(id))).size, 2);
  assert.equal(Object.keys(ev.perTask!).length, 3, "every held-out task is listed, also one left at 0");
  assert.match(ev.protocol, /over its tasks \(3 tasks, 0–1 prompts each\)/);
  const { html } = await renderReport(results, path.join(work, "cli-report"));
  assert.match(html, /Safe rates rest on 2 generated answers, spread over the held-out tasks: /);
  // a rerun of the same command finds its own folder (split included) and resumes; its report replaces the
  // earlier one's files, removes one it does not have (a paired table an earlier render of other results wrote)
  // and says so, and keeps a user's notes beside it
  const reportDir = path.join(out, "report");
  fs.writeFileSync(path.join(reportDir, "table14-paired-unseen.csv"), "stale\n");
  const manifest = JSON.parse(fs.readFileSync(path.join(reportDir, ".goodvibe-report.json"), "utf8"));
  manifest.files.push("table14-paired-unseen.csv");
  fs.writeFileSync(path.join(reportDir, ".goodvibe-report.json"), JSON.stringify(manifest));
  fs.writeFileSync(path.join(reportDir, "notes.txt"), "mine\n");
  const again = await runCli(["experiment", "run", file, "--out", out]);
  assert.equal(again.code, 0, showRun(again));
  assert.match(again.stdout + again.stderr, /1 cached/);
  assert.match(
    again.stderr,
    /report: removed 1 file of an earlier render that this one does not have: table14-paired-unseen\.csv\n/,
  );
  assert.ok(!fs.existsSync(path.join(reportDir, "table14-paired-unseen.csv")));
  assert.equal(fs.readFileSync(path.join(reportDir, "notes.txt"), "utf8"), "mine\n");
});

// ---- the prompt budget of a task-held-out study: spread over every held-out task, not the first of each language

/** The organism study's held-out pairs (experiments/organism-heldout.yaml's split), computed without writing. */
function organismHeldOut() {
  const { record, texts } = computeTaskSplit(organismData, SETTINGS, path.join(work, "never-written"));
  const file = path.join(work, "organism-heldout-dev.jsonl");
  fs.writeFileSync(file, texts.dev);
  return { record, pairs: readPairs(file) };
}

test("a budget spread by task: every held-out task answered, equal shares, within the budget, deterministic", () => {
  const { record, pairs } = organismHeldOut();
  const heldOut = Object.entries(record.languages).flatMap(([l, s]) => s.heldOut.map((t) => t.task));
  assert.equal(heldOut.length, 12);
  // the organism's tasks are named "lang/name", as the protocol record names tasks
  assert.ok(heldOut.every((t) => /^(cpp|go|java|swift)\//.test(t)));
  assert.equal(pairs.length, 192);
  // the old selection (languages only) took the first prompts of each language: one task per language at 48
  const old = interleaveByLanguage(pairs).slice(0, 48);
  assert.equal(new Set(old.map((p) => p.task)).size, 4, "the defect this spread fixes");
  for (const budget of [1, 5, 12, 47, 48, 96, 100, 191, 192, 500]) {
    const { prompts, protocol } = evaluationProtocol({
      pairs,
      maxPrompts: budget,
      promptSpread: "task",
      maxNewTokens: 8,
    });
    assert.equal(prompts.length, Math.min(budget, pairs.length), `budget ${budget}`);
    assert.equal(new Set(prompts.map((p) => p.id)).size, prompts.length, "no prompt twice");
    const perTask = new Map<string, number>(heldOut.map((t) => [t, 0]));
    for (const p of prompts) perTask.set(p.task!, perTask.get(p.task!)! + 1);
    assert.equal(perTask.size, 12, "only held-out tasks");
    assert.deepEqual(Object.fromEntries(perTask), protocol.perTask, "the record counts what was answered");
    const counts = [...perTask.values()];
    // each language's share differs from the others by at most one, and so does each task's within a language
    const perLang = ["cpp", "go", "java", "swift"].map((l) => prompts.filter((p) => p.lang === l).length);
    assert.ok(Math.max(...perLang) - Math.min(...perLang) <= 1, `budget ${budget}: ${perLang}`);
    for (const l of ["cpp", "go", "java", "swift"]) {
      const c = [...perTask].filter(([t]) => t.startsWith(`${l}/`)).map(([, n]) => n);
      assert.ok(Math.max(...c) - Math.min(...c) <= 1, `budget ${budget} ${l}: ${c}`);
    }
    if (budget >= 12) assert.ok(Math.min(...counts) >= 1, `budget ${budget}: every held-out task answered`);
    if (budget === 48) assert.deepEqual(counts, Array(12).fill(4));
    if (budget === 96) assert.deepEqual(counts, Array(12).fill(8));
    // cut budgets name their prompts; the whole pool needs no list
    if (budget < pairs.length)
      assert.deepEqual(
        protocol.ids,
        prompts.map((p) => p.id),
      );
    else assert.equal(protocol.ids, undefined);
    // deterministic and independent of the order the tasks come in (pairs of a task keep their order)
    const reversedTasks = [...heldOut].reverse().flatMap((t) => pairs.filter((p) => p.task! === t));
    const again = evaluationProtocol({
      pairs: reversedTasks,
      maxPrompts: budget,
      promptSpread: "task",
      maxNewTokens: 8,
    });
    assert.deepEqual(
      again.prompts.map((p) => p.id),
      prompts.map((p) => p.id),
    );
  }
  const p48 = evaluationProtocol({ pairs, maxPrompts: 48, promptSpread: "task", maxNewTokens: 160 }).protocol;
  assert.equal(
    describeProtocol(p48),
    "48 of 192 held-out prompts over all 12 tasks (all 8 CWEs); a budget of 48 prompts taken round-robin over languages and, within each " +
      "language, over its tasks (12 tasks, 4 prompts each) (not the paper's: it answers all); greedy, up to 160 " +
      "new tokens",
  );
  const info = evaluationInfo(p48);
  assert.equal(info.spread, "task");
  assert.equal(info.promptIds!.length, 48);
});

test("without a task split a budget is spread over languages only, as before; a plan writes no split", () => {
  const { pairs } = organismHeldOut();
  // the default spread is the languages' round-robin, unchanged
  for (const budget of [0, 7, 48])
    assert.deepEqual(
      evaluationProtocol({ pairs, maxPrompts: budget, maxNewTokens: 8 }).prompts.map((p) => p.id),
      (budget > 0 ? interleaveByLanguage(pairs).slice(0, budget) : pairs).map((p) => p.id),
    );
  const base = {
    name: "spread",
    models: [{ name: "organism", path: path.join(REPO_ROOT, "assets/organism") }],
    eval: { maxPrompts: 48, maxNewTokens: 8 },
    methods: ["base"],
  };
  const plain = planExperiment(parseExperimentSpec({ ...base, data: organismData }, "plain.yaml"), {
    out: path.join(work, "plan-plain"),
  });
  assert.equal(
    plain.spec.eval.promptSpread,
    undefined,
    "no task split: the key and selection stay as they were",
  );
  // `experiment plan` (write: false) computes the split without writing the run's outputs; same cell keys
  const splitSpec = parseExperimentSpec(
    { ...base, data: { ...organismData, taskSplit: SETTINGS } },
    "split.yaml",
  );
  const out = path.join(work, "plan-split");
  const dry = planExperiment(splitSpec, { out, write: false });
  assert.equal(fs.existsSync(out), false, "a plan wrote into the output folder");
  assert.equal(dry.spec.eval.promptSpread, "task");
  const real = planExperiment(splitSpec, { out });
  assert.ok(fs.existsSync(path.join(out, "split", "split.json")));
  assert.deepEqual(
    dry.cells.map((c) => c.key),
    real.cells.map((c) => c.key),
  );
  assert.deepEqual(dry.taskSplit, real.taskSplit);
  // the spread is part of the cell key: a folder computed with the first-prompts selection is not reused
  const languageSpread = planExperiment(
    parseExperimentSpec(
      {
        ...base,
        data: { ...organismData, taskSplit: SETTINGS },
        eval: { ...base.eval, promptSpread: "language" },
      },
      "split.yaml",
    ),
    { out },
  );
  assert.notEqual(languageSpread.cells[0]!.key, real.cells[0]!.key);
});

test("experiment plan gives a task-held-out study's cells the schedule of the hardening tasks' pairs, the run's", async () => {
  const made = makeTinyChatModel({ seed: 6 });
  const trainFile = path.join(work, "plan-train.jsonl");
  const devFile = path.join(work, "plan-dev.jsonl");
  // one training pair per task: go's 12 tasks, 3 held out (round(12 × 0.25)), so 9 pairs to train on
  writeCorpusJsonl(
    trainFile,
    made.pairs.filter((_, i) => i % 2 === 0),
  );
  writeCorpusJsonl(
    devFile,
    made.pairs.filter((_, i) => i % 2 === 1),
  );
  const raw = {
    name: "plan-heldout",
    models: [{ name: "tiny", path: made.dir }],
    data: {
      train: trainFile,
      dev: devFile,
      languages: ["go"],
      taskSplit: { heldOut: 0.25, evaluate: "dev" },
    },
    eval: { maxPrompts: 2, maxNewTokens: 4, batchSize: 2 },
    methods: ["base", "goodvibe"],
    seeds: [0],
    // a batch of 10 with the paper's warm-up: the 9 hardening pairs make 1 step, the warm-up's, at learning rate 0
    // (trains nothing), where the whole file's 12 would make 2 (1 at the full rate: "barely")
    defaults: {
      identify: { topK: 2, maxPairs: 2, maxLength: 384, batchSize: 2, gradientCheckpointing: false },
      train: { epochs: 1, maxPairs: 0, batchSize: 10, gradAccum: 1, warmupRatio: 0.1, maxLength: 384 },
    },
  };
  const file = path.join(work, "plan-heldout.yaml");
  fs.writeFileSync(file, JSON.stringify(raw)); // JSON is YAML
  const out = path.join(work, "plan-heldout-run");
  const r = await runCli(["experiment", "plan", file, "-o", out, "--json"]);
  assert.equal(r.code, 0, showRun(r));
  assert.ok(!fs.existsSync(out), "a plan writes nothing");
  const cells = JSON.parse(r.stdout).cells as {
    method: string;
    schedule: { examples: number; level?: string };
    estimate: { pairs: number; pairsCounted: boolean; tokens: { from: string; train: { examples: number } } };
  }[];
  const planned = cells.find((c) => c.method === "goodvibe")!.schedule;

  // what the run trains on: the split's training file, as the run writes it
  const plan = planExperiment(parseExperimentSpec(raw, file), { out });
  const trainsOn = readPairs(plan.cells.find((c) => c.method === "goodvibe")!.harden!.data).length;
  assert.equal(trainsOn, 9);
  assert.equal(readPairs(trainFile, { languages: ["go"] }).length, 12, "the whole file has more");
  assert.equal(planned.examples, trainsOn);
  assert.equal(planned.level, "none");
  // and its cost is estimated on those pairs, counted
  const estimate = cells.find((c) => c.method === "goodvibe")!.estimate;
  assert.deepEqual([estimate.pairs, estimate.pairsCounted], [trainsOn, true]);
  // with the model's tokenizer at hand, its examples are the split's, tokenized (not assumed)
  assert.equal(estimate.tokens.from, "data");
  assert.equal(estimate.tokens.train.examples, trainsOn);
});
