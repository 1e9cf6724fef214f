/**
 * A trained cell's McNemar test against the base (results.json security.mcnemarVsBase, Table 6) depends on the
 * cells alone, not on whether the experiment that computed the trained cell had the base: its key is the same
 * either way, so one folder serves both. Before 2026-12-02 the test was counted when the trained cell was computed,
 * only where the base was planned: a cell computed without the base and reused with it had no test, and one
 * computed with it kept its test in an experiment without the base. Checked against a fresh run with the base and
 * against McNemar's counts and exact p-value recounted here by hand from the two cells' per-item outcomes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentResults, type CellResult, type Outcomes } from "../../src/report/schema.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 3 });
const work = scratchDir("gv-mcnemar-vs-base-");
// one pair per template and language: 12 training pairs, 4 dev pairs (one per language)
const byLang = new Map<string, typeof made.pairs>();
for (const p of made.pairs) byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), p]);
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(
  trainFile,
  [...byLang.values()].flatMap((ps) => ps.slice(0, 3)),
);
writeCorpusJsonl(
  devFile,
  [...byLang.values()].flatMap((ps) => ps.slice(-1)),
);

const quiet = { info() {}, warn() {}, progress() {} };

function plan(out: string, methods: string[]) {
  const spec = parseExperimentSpec(
    {
      name: "mcnemar",
      models: [{ name: "tiny", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      // the untrained model as its LLM judge: a verdict on every answer (a random model writes no code block,
      // so the rules have none)
      judge: { path: made.dir },
      eval: { maxPrompts: 4, maxNewTokens: 12, batchSize: 4 },
      methods,
      seeds: [0],
      defaults: {
        identify: { topK: 4, maxPairs: 4, maxLength: 512, batchSize: 4, gradientCheckpointing: false },
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
    },
    "mcnemar.yaml",
  );
  return planExperiment(spec, { out: path.join(work, out) });
}

async function run(out: string, methods: string[]) {
  const r = await runExperiment(plan(out, methods), { log: quiet, render: false });
  const results = parseExperimentResults(JSON.parse(fs.readFileSync(r.resultsFile!, "utf8")), "results.json");
  return { ran: r.ran, cells: results.cells };
}

const cellOf = (cells: readonly CellResult[], method: string) => cells.find((c) => c.method === method)!;

/**
 * McNemar by hand: over the ids both outcomes hold with a verdict in both, b01 = base insecure and trained secure,
 * b10 the reverse; the exact two-sided binomial p-value (fewer than 25 discordant pairs here) summed from
 * C(n, i) / 2^n.
 */
function byHand(base: Outcomes, trained: Outcomes, judge: "rule" | "llm") {
  const at = new Map(trained.ids.map((id, i) => [id, trained[judge]![i]!]));
  let b01 = 0;
  let b10 = 0;
  base.ids.forEach((id, i) => {
    const a = base[judge]![i]!;
    const b = at.get(id);
    if (b === undefined || a === "-" || b === "-") return;
    if (a === "0" && b === "1") b01++;
    if (a === "1" && b === "0") b10++;
  });
  const n = b01 + b10;
  let choose = 1;
  let tail = 0;
  for (let i = 0; i <= Math.min(b01, b10); i++) {
    tail += choose / 2 ** n;
    choose = (choose * (n - i)) / (i + 1);
  }
  return { b01, b10, pValue: Math.min(1, 2 * tail), test: "exact-binomial" };
}

test("McNemar vs base: the same for a trained cell computed without the base and reused with it as in a fresh run; none without the base", async () => {
  // A: the trained cell first, in an experiment without the base: nothing to test against
  const alone = await run("a", ["goodvibe"]);
  assert.equal(alone.cells.length, 1);
  assert.equal(cellOf(alone.cells, "goodvibe").security.mcnemarVsBase, undefined);
  // A again with the base: only the base cell is computed, the trained cell is reused
  const withBase = await run("a", ["base", "goodvibe"]);
  assert.deepEqual(withBase.ran, [cellOf(withBase.cells, "base").id]);
  const base = cellOf(withBase.cells, "base");
  const gv = cellOf(withBase.cells, "goodvibe");
  // the LLM judge gave every answer of both models a verdict: a test to report
  assert.match(base.outcomes!.llm!, /^[01]{4}$/);
  assert.match(gv.outcomes!.llm!, /^[01]{4}$/);
  assert.deepEqual(gv.security.mcnemarVsBase, { llm: byHand(base.outcomes!, gv.outcomes!, "llm") });
  assert.equal(base.security.mcnemarVsBase, undefined);

  // B: the base planned from the start; the same cells, the same test
  const fresh = await run("b", ["base", "goodvibe"]);
  assert.equal(fresh.ran.length, 2);
  assert.deepEqual(cellOf(fresh.cells, "goodvibe").outcomes, gv.outcomes);
  assert.deepEqual(cellOf(fresh.cells, "base").outcomes, base.outcomes);
  assert.deepEqual(cellOf(fresh.cells, "goodvibe").security.mcnemarVsBase, gv.security.mcnemarVsBase);
  // B again without the base: the trained cell computed with it is reused and has no base to be tested against
  const dropped = await run("b", ["goodvibe"]);
  assert.deepEqual(dropped.ran, []);
  assert.equal(cellOf(dropped.cells, "goodvibe").security.mcnemarVsBase, undefined);
});

test("McNemar vs base is counted from the cells' outcomes as filed, whatever test a cell file recorded", async () => {
  const p = plan("a", ["base", "goodvibe"]);
  const file = (method: string) => p.cells.find((c) => c.method === method)!.cellFile;
  const edit = (method: string, f: (c: CellResult) => void) => {
    const c = JSON.parse(fs.readFileSync(file(method), "utf8")) as CellResult;
    f(c);
    fs.writeFileSync(file(method), JSON.stringify(c, null, 2));
  };
  // rule verdicts with discordant pairs both ways (the random model wrote no code: none were given), one item
  // without a verdict in the base; and a test recorded in the trained cell's file, as code before 2026-12-02
  // filed it, that the outcomes do not support
  edit("base", (c) => {
    c.outcomes!.rule = "0-01";
    c.outcomes!.llm = "1111";
  });
  edit("goodvibe", (c) => {
    c.outcomes!.rule = "1110";
    c.outcomes!.llm = "0000";
    c.security.mcnemarVsBase = { rule: { b01: 9, b10: 9, pValue: 1, test: "exact-binomial" } };
  });
  const { ran, cells } = await run("a", ["base", "goodvibe"]);
  assert.deepEqual(ran, []);
  // rule: items 1, 3 and 4 have both verdicts: (0,1) (0,1) (1,0) → b01 2, b10 1, p = 2·(1 + 3)/8 = 1;
  // llm: (1,0) four times → b01 0, b10 4, p = 2/16
  assert.deepEqual(cellOf(cells, "goodvibe").security.mcnemarVsBase, {
    rule: { b01: 2, b10: 1, pValue: 1, test: "exact-binomial" },
    llm: { b01: 0, b10: 4, pValue: 0.125, test: "exact-binomial" },
  });
  const o = (m: string) => cellOf(cells, m).outcomes!;
  assert.deepEqual(cellOf(cells, "goodvibe").security.mcnemarVsBase, {
    rule: byHand(o("base"), o("goodvibe"), "rule"),
    llm: byHand(o("base"), o("goodvibe"), "llm"),
  });
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});
