/**
 * `goodvibe eval --url` scores the utility benchmarks on the servers (their figures against the built-in engine's:
 * test/utility/http-engine.test.ts). Here the CLI's rules, each a run that stops before any answer: a server without
 * the prompt's log-probabilities (goodvibe serve, as llama-server and Ollama) is named with the benchmark and the
 * flag that scores it locally; a --base scored on another engine than the model's benchmarks is refused.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { serveBuiltin } from "../../src/eval/generate/serve.js";
import { loadModel } from "../../src/models/load.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { balancedPairs, makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 1 });
after(() => fx.cleanup());
const dev = path.join(fx.work, "dev.jsonl");
writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 1).slice(0, 2));
const arc = path.join(fx.work, "arc.jsonl");
fs.writeFileSync(
  arc,
  JSON.stringify({
    id: "q1",
    question: "Which is a gas?",
    choices: { text: ["ice", "steam"], label: ["A", "B"] },
    answerKey: "B",
  }) + "\n",
);
const args = (cache: string) => [
  ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "1", "--max-new-tokens", "4", "--arc", arc],
  ...["--preference-pairs", "1", "--cache", path.join(fx.work, cache), "--server-model", "tiny"],
];

test("eval --url: a server without prompt log-probabilities stops the run before any answer, naming it, the benchmark and --utility-local", async () => {
  const served = await serveBuiltin(
    new BuiltinBackend(loadModel(fx.model.dir), await loadTokenizer(fx.model.dir)),
    { port: 0, modelName: "tiny" },
  );
  try {
    const r = await runCli([...args("c-noecho"), "--url", served.url]);
    assert.equal(r.code, 3, showRun(r));
    assert.match(
      r.stderr,
      new RegExp(
        `--arc is scored by log-likelihood, which ${served.url.replace(/[.]/g, "\\.")} \\(model "tiny"\\) cannot give: .*` +
          "or score it on the built-in engine here with --utility-local arc",
      ),
    );
    // before the answers: no safety answer was asked for
    const cache = path.join(fx.work, "c-noecho");
    const files = fs.existsSync(cache) ? fs.readdirSync(cache) : [];
    assert.equal(files.filter((f) => f.startsWith("safety-")).length, 0, files.join(", "));
  } finally {
    await served.stop();
  }
});

test("eval --url --base: the model's benchmarks on the servers and the base's on the built-in engine are refused, with the two ways out", async () => {
  // refused before any request: the URL is never asked
  const r = await runCli([...args("c-mix"), "--url", "http://127.0.0.1:9", "--base", fx.model.dir]);
  assert.equal(r.code, 2, showRun(r));
  assert.match(
    r.stderr,
    /--base .* would be scored on the built-in engine and the model's arc on the --url servers: a utility comparison across two engines is not like for like\. Serve the base on the same servers and give its name there \(--base-server-model NAME\), or score these benchmarks locally for both \(--utility-local arc\)/,
  );
});
