/**
 * End to end: an experiment whose evaluation has --code documents in two languages writes results.json with the
 * loss per language, and its index.html shows those figures as the file has them. The per-language figures are
 * checked against the overall one by a property that holds whatever the model: each document has one language,
 * so the languages' token-weighted means, weighted by their tokens, give the overall mean, and their documents
 * add up to its n.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

test("experiment run with eval.utility.code: results.json's loss per language is the one index.html shows", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const work = scratchDir("gv-experiment-code-");
  const byLang = new Map<string, typeof made.pairs>();
  for (const p of made.pairs) byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), p]);
  const train = path.join(work, "train.jsonl");
  const dev = path.join(work, "dev.jsonl");
  writeCorpusJsonl(
    train,
    [...byLang.values()].flatMap((ps) => ps.slice(0, 2)),
  );
  writeCorpusJsonl(
    dev,
    [...byLang.values()].flatMap((ps) => ps.slice(-1)),
  );
  const code = path.join(work, "code.jsonl");
  const docs = [
    { lang: "python", code: "def add(a, b):\n    return a + b\n" },
    { lang: "python", code: "import os\nprint(os.getcwd())\n" },
    { lang: "c", code: "int main(void) { return 0; }\n" },
  ];
  fs.writeFileSync(code, docs.map((d) => JSON.stringify(d)).join("\n") + "\n");
  const spec = parseExperimentSpec(
    {
      name: "code-by-language",
      models: [{ name: "tiny", path: made.dir }],
      data: { train, dev },
      judge: { path: made.dir },
      eval: { maxPrompts: 2, maxNewTokens: 4, batchSize: 2, utility: { code } },
      methods: ["base"],
      seeds: [0],
    },
    "code.yaml",
  );
  const out = path.join(work, "run");
  const r = await runExperiment(planExperiment(spec, { out }), {
    log: { info() {}, warn() {}, progress() {} },
  });
  const json = JSON.parse(fs.readFileSync(r.resultsFile!, "utf8"));
  const u = json.cells[0].utility.heldout_real_code_loss;
  assert.deepEqual(Object.keys(u.perLanguage).sort(), ["c", "python"]);
  const langs = Object.values(u.perLanguage) as {
    value: number;
    stderr: number;
    n: number;
    tokens: number;
  }[];
  const tokens = langs.reduce((t, l) => t + l.tokens, 0);
  assert.ok(Math.abs(langs.reduce((s, l) => s + l.value * l.tokens, 0) / tokens - u.value) < 1e-9 * u.value);
  assert.equal(
    langs.reduce((s, l) => s + l.n, 0),
    u.n,
  );
  assert.equal(u.perLanguage.python.n, 2);
  assert.equal(u.perLanguage.c.stderr, 0); // one document
  const html = fs.readFileSync(path.join(r.reportDir!, "index.html"), "utf8");
  const z = 1.959963984540054;
  for (const [lang, f] of [["all", { ...u, tokens }], ...Object.entries(u.perLanguage)] as [
    string,
    { value: number; stderr: number; n: number; tokens: number },
  ][]) {
    const shown =
      `<td>${lang}</td><td>nll/token</td><td class="num">${f.value.toFixed(3)} ` +
      `[${(f.value - z * f.stderr).toFixed(3)}, ${(f.value + z * f.stderr).toFixed(3)}]</td>` +
      `<td class="num">${f.stderr.toFixed(3)}</td><td class="num">${f.n}</td><td class="num">${f.tokens}</td>`;
    assert.ok(html.includes(shown), `${lang}: ${shown} not in index.html`);
  }
});
