/**
 * A generation_config.json asking for logits processors that transformers' generate() applies even in greedy
 * decoding (generation/utils.py `_get_logits_processor`: repetition_penalty != 1.0 and the others are not gated on
 * do_sample) is said, since the built-in engine and llama.cpp apply none of them: the answers are greedy without
 * them, and a user comparing with transformers or vLLM learns why they differ.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeTinyChatModel, scratchDir } from "./make-model.js";
import { generationConfigCaveat, greedyProcessorFields } from "../../src/eval/generate/generation-config.js";
import { runCli, showRun } from "../cli/cli-helpers.js";

function folder(gen: unknown): string {
  const dir = scratchDir("gv-genconfig-");
  if (gen !== undefined) fs.writeFileSync(path.join(dir, "generation_config.json"), JSON.stringify(gen));
  return dir;
}

test("the fields transformers applies in greedy decoding are named; sampling fields and ids are not", () => {
  // Qwen2.5-Coder-7B-Instruct's generation_config.json
  const qwenCoder = {
    bos_token_id: 151643,
    pad_token_id: 151643,
    do_sample: true,
    eos_token_id: [151645, 151643],
    repetition_penalty: 1.1,
    temperature: 0.7,
    top_p: 0.8,
    top_k: 20,
  };
  assert.deepEqual(greedyProcessorFields(folder(qwenCoder)), ["repetition_penalty 1.1"]);
  // Llama 3.1 Instruct's: sampling defaults only, nothing greedy decoding would apply
  const llama = {
    bos_token_id: 128000,
    do_sample: true,
    eos_token_id: [128001, 128008, 128009],
    temperature: 0.6,
    top_p: 0.9,
  };
  assert.deepEqual(greedyProcessorFields(folder(llama)), []);
  assert.equal(generationConfigCaveat(folder(llama)), null);
  // the neutral values transformers skips (penalty 1.0, ngram 0, min_length 0) are not named
  assert.deepEqual(
    greedyProcessorFields(
      folder({ repetition_penalty: 1.0, no_repeat_ngram_size: 0, min_length: 0, suppress_tokens: null }),
    ),
    [],
  );
  assert.deepEqual(greedyProcessorFields(folder({ no_repeat_ngram_size: 3, min_new_tokens: 5 })), [
    "no_repeat_ngram_size 3",
    "min_new_tokens 5",
  ]);
  assert.deepEqual(greedyProcessorFields(folder(undefined)), []);
  const local = generationConfigCaveat(folder(qwenCoder))!;
  assert.match(
    local,
    /sets repetition_penalty 1\.1, which transformers' generate\(\) applies even in greedy decoding/,
  );
  assert.match(generationConfigCaveat(folder(qwenCoder), { server: true })!, /a server may apply it/);
});

test("generate says it, in the text run's warnings and in --json's caveats", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  assert.ok(!fs.existsSync(path.join(made.dir, "generation_config.json")));
  fs.writeFileSync(
    path.join(made.dir, "generation_config.json"),
    JSON.stringify({ repetition_penalty: 1.05 }),
  );
  const r = await runCli(["generate", "-m", made.dir, "-p", "hello", "--max-new-tokens", "2", "--json"]);
  assert.equal(r.code, 0, showRun(r));
  const out = JSON.parse(r.stdout) as { caveats?: string[] };
  assert.equal(out.caveats?.length, 1, r.stdout);
  assert.match(
    out.caveats![0]!,
    /^generation config: .*repetition_penalty 1\.05.*built-in engine and llama\.cpp apply none/,
  );
  assert.match(r.stderr, /repetition_penalty 1\.05/);
});
