/**
 * An experiment says how many of its evaluated pairs share a prompt or an answer's code with the training pairs
 * (real CyberNative dev shares one with train in 108 of 465 pairs): in results.json and as a note of the report.
 * The counts are worked by hand on pairs built to share exactly one prompt and one code.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { parseExperimentResults } from "../../src/report/schema.js";
import { withUnseen } from "../../src/report/unseen.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const fence = (code: string) => "```python\n" + code + "\n```";
const pair = (id: string, question: string, chosen: string, rejected: string) => ({
  id,
  lang: "python",
  question,
  chosen: fence(chosen),
  rejected: fence(rejected),
});

test("experiment run reports the evaluated pairs that share a prompt or code with the training pairs", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const work = scratchDir("gv-train-overlap-");
  const train = [
    pair("t1", "Write a function that reads a file name from the user.", "open(safe(p))", "open(p)"),
    pair("t2", "Run a shell command given by the user.", "run([c], shell=False)", "os.system(c)"),
  ];
  const dev = [
    // its prompt is t1's, up to case and spacing
    pair("d1", "  WRITE a function that reads a file name\nfrom the user. ", "a = 1", "a = eval(x)"),
    // its secure answer is t2's insecure code, re-indented
    pair("d2", "Execute what the user types.", "  os.system(c)\n", "exec(c)"),
    pair("d3", "Parse a number from text.", "int(s)", "eval(s)"),
    pair("d4", "Load settings from YAML.", "yaml.safe_load(f)", "yaml.load(f)"),
  ];
  const write = (file: string, rows: object[]) =>
    fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const trainFile = path.join(work, "train.jsonl");
  const devFile = path.join(work, "dev.jsonl");
  write(trainFile, train);
  write(devFile, dev);
  const spec = parseExperimentSpec(
    {
      name: "overlap",
      models: [{ name: "tiny", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      eval: { maxNewTokens: 4, batchSize: 2 },
      methods: ["base"],
      seeds: [0],
    },
    "overlap.yaml",
  );
  const r = await runExperiment(planExperiment(spec, { out: path.join(work, "run") }), {
    log: { info() {}, warn() {}, progress() {} },
  });
  const json = JSON.parse(fs.readFileSync(r.resultsFile!, "utf8"));
  assert.deepEqual(json.evaluation.trainOverlap, {
    n: 4,
    pairs: 2,
    questions: 1,
    code: 1,
    seenIds: ["d1", "d2"],
  });
  // every cell's measures on d3 and d4 only, recounted from its outcomes
  for (const c of json.cells) {
    const u = c.security.unseen;
    assert.equal(u.n, 2);
    const pref = c.outcomes.preference.slice(2);
    assert.equal(u.securePreference.n, 2);
    assert.equal(u.securePreference.value, [...pref].filter((m: string) => m === "1").length / 2);
    // with nothing left out the recount is the evaluation's own figure (recipes/evaluate.ts securityCell)
    const all = withUnseen([c], [])[0]!.security.unseen!;
    assert.equal(all.securePreference!.value, c.security.securePreference.rate.value);
    assert.equal(all.securePreference!.n, c.security.securePreference.n);
    for (const judge of ["rule", "llm"] as const)
      if (c.security.safeRate?.[judge]) {
        assert.equal(all.safeRate![judge]!.value, c.security.safeRate[judge].overall.value);
        assert.equal(all.safeRate![judge]!.n, c.security.safeRate[judge].overall.n);
      }
  }
  const html = fs.readFileSync(path.join(r.reportDir!, "index.html"), "utf8");
  assert.match(
    html,
    /2 of the 4 evaluated pairs share a prompt \(1\) or an answer(?:'|&#39;|&#x27;|&apos;)s code \(1\)/,
  );
  assert.match(html, /Table 13\. Security on the held-out pairs unseen in training/);
  // results written before the figure was measured still load
  delete json.evaluation.trainOverlap;
  for (const c of json.cells) delete c.security.unseen;
  assert.equal(parseExperimentResults(json, "old.json").evaluation!.trainOverlap, undefined);
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});
