/**
 * The evaluation's defaults have one home (src/eval/config.ts, recipes/config.ts, eval/generate/http-config.ts): eval's
 * flags show them, an experiment file's `eval` section takes them when it sets nothing, and generate's answer budget
 * is eval's. Before, eval's flags, the experiment schema and the library each wrote their own 256 and 8.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_EVAL_BATCH, DEFAULT_MAX_NEW_TOKENS } from "../../src/eval/config.js";
import { DEFAULT_PREFERENCE_PAIRS } from "../../src/recipes/config.js";
import { DEFAULT_CONCURRENCY, DEFAULT_REQUEST_TIMEOUT_S } from "../../src/eval/generate/http-config.js";
import { experimentSchema } from "../../src/experiment/spec.js";
import { buildProgram } from "../../src/cli/program.js";

const program = buildProgram(false);
const defaults = (path: string[]) => {
  let cmd = program;
  for (const name of path) cmd = cmd.commands.find((c) => c.name() === name)!;
  return Object.fromEntries(cmd.options.map((o) => [o.long!, o.defaultValue as unknown]));
};

test("eval's and generate's flags default to the evaluation's constants", () => {
  const ev = defaults(["eval"]);
  assert.equal(ev["--max-new-tokens"], DEFAULT_MAX_NEW_TOKENS);
  assert.equal(ev["--batch-size"], DEFAULT_EVAL_BATCH);
  assert.equal(ev["--preference-pairs"], DEFAULT_PREFERENCE_PAIRS);
  assert.equal(ev["--concurrency"], DEFAULT_CONCURRENCY);
  assert.equal(ev["--request-timeout"], DEFAULT_REQUEST_TIMEOUT_S);
  assert.equal(ev["--prompts"], 0, "the paper's protocol: every held-out prompt");
  const gen = defaults(["generate"]);
  assert.equal(gen["--max-new-tokens"], DEFAULT_MAX_NEW_TOKENS);
  assert.equal(gen["--request-timeout"], DEFAULT_REQUEST_TIMEOUT_S);
});

test("an experiment file's eval section, left empty, takes the same defaults as eval's flags", () => {
  const spec = experimentSchema.parse({
    name: "d",
    models: [{ name: "m", path: "m" }],
    data: { train: "t.jsonl", dev: "d.jsonl" },
    methods: ["base"],
  });
  assert.equal(spec.eval.maxNewTokens, DEFAULT_MAX_NEW_TOKENS);
  assert.equal(spec.eval.batchSize, DEFAULT_EVAL_BATCH);
  assert.equal(spec.eval.maxPrompts, defaults(["eval"])["--prompts"]);
  assert.equal(spec.eval.seed, defaults(["eval"])["--seed"]);
  assert.equal(spec.eval.promptFilter, defaults(["eval"])["--prompt-filter"]);
});
