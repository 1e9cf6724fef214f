/**
 * Which of an answer's code blocks the judges read (SafetyOptions.codeBlocks, eval --code-blocks) is an experiment
 * setting since 2026-12-02: eval.codeBlocks. Every cell finished before was judged reading the longest block, so
 * the default (absent, or "longest" written out) keeps each cell's key; "all" keys the cells anew, reaches the
 * safety evaluation, and is recorded in results.json. "The key they had" is rebuilt from the inputs as the plan
 * recorded them before the setting: the eval inputs were `{...eval, utility: null}` (no utility files here).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { canonicalJson, sha256 } from "../../src/io/hash.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { parseExperimentResults } from "../../src/report/schema.js";
import type { ModelEvaluation } from "../../src/recipes/evaluate.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 5 });
const work = scratchDir("gv-code-blocks-keys-");
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 4));
writeCorpusJsonl(devFile, made.pairs.slice(-2));

function spec(name: string, evalSettings: Record<string, unknown>, methods = ["base", "goodvibe"]) {
  return parseExperimentSpec(
    {
      name,
      models: [{ name: "a", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      methods,
      seeds: [0],
      eval: { maxNewTokens: 4, batchSize: 2, ...evalSettings },
    },
    `${name}.yaml`,
  );
}

/** The key a cell had before eval.codeBlocks: its inputs with the eval inputs as the plan then made them. */
function keyBefore(cell: { inputs: unknown }, evalSpec: Record<string, unknown>): string {
  const { utility: _u, generationConfig: _g, codeBlocks: _c, ...rest } = evalSpec;
  const inputs = { ...(cell.inputs as Record<string, unknown>), eval: { ...rest, utility: null } };
  return sha256(canonicalJson(inputs));
}

test("experiment eval.codeBlocks: the default keeps every cell's key, 'all' keys them anew", () => {
  for (const settings of [{}, { codeBlocks: "longest" }]) {
    const s = spec("k", settings);
    const cells = planExperiment(s, { out: path.join(work, "plan") }).cells;
    assert.equal(cells.length, 2);
    for (const c of cells)
      assert.equal(c.key, keyBefore(c, s.eval), `${JSON.stringify(settings)} ${c.method}: keeps its key`);
  }
  const all = spec("k", { codeBlocks: "all" });
  assert.equal(all.eval.codeBlocks, "all");
  for (const c of planExperiment(all, { out: path.join(work, "plan") }).cells)
    assert.notEqual(c.key, keyBefore(c, all.eval), `${c.method}: a cell judged on the longest block reused`);
});

test("experiment eval.codeBlocks: a value other than longest or all is an error naming the field", () => {
  assert.throws(
    () => spec("bad", { codeBlocks: "first" }),
    (e: Error) =>
      /eval\.codeBlocks/.test(e.message) && /longest/.test(e.message) && /bad\.yaml/.test(e.message),
  );
});

test("experiment eval.codeBlocks 'all' reaches the safety evaluation and is recorded in results.json", async () => {
  for (const [settings, want] of [
    [{ codeBlocks: "all" }, "all"],
    [{}, "longest"],
  ] as const) {
    const s = spec(`run-${want}`, settings, ["base"]);
    const plan = planExperiment(s, { out: path.join(work, `run-${want}`) });
    const r = await runExperiment(plan, { log: { info() {}, warn() {}, progress() {} } });
    // what evaluateSafety was given: its result records the setting it judged with
    const base = plan.cells.find((c) => c.method === "base")!;
    const ev = JSON.parse(
      fs.readFileSync(path.join(work, `run-${want}`, "work", base.baseKey, "evaluation.json"), "utf8"),
    ) as ModelEvaluation;
    assert.equal(ev.safety!.codeBlocks, want);
    const results = parseExperimentResults(
      JSON.parse(fs.readFileSync(r.resultsFile!, "utf8")),
      "results.json",
    );
    assert.equal(results.evaluation!.codeBlocks, want);
    if (want === "all") assert.match(results.evaluation!.protocol, /all of an answer's code blocks/);
    else assert.doesNotMatch(results.evaluation!.protocol, /code blocks/);
  }
});
