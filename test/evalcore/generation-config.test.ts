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
  // the built-in engine applies repetition_penalty (unless --no-generation-config): nothing left to say for
  // Qwen2.5-Coder's file; with it off, or with a field it does not apply, the caveat names what is missing
  assert.equal(generationConfigCaveat(folder(qwenCoder)), null);
  const off = generationConfigCaveat(folder(qwenCoder), { applied: false })!;
  assert.match(
    off,
    /sets repetition_penalty 1\.1, which transformers' generate\(\) applies even in greedy decoding/,
  );
  assert.match(off, /--no-generation-config/);
  const both = generationConfigCaveat(folder({ ...qwenCoder, no_repeat_ngram_size: 3 }))!;
  assert.match(both, /sets no_repeat_ngram_size 3, which/);
  assert.doesNotMatch(both, /repetition_penalty/);
  const server = generationConfigCaveat(folder(qwenCoder), { server: true })!;
  assert.match(server, /a server may apply it/);
  assert.match(server, /which applies repetition_penalty only/);
});

test("generate applies the folder's repetition_penalty and records it; --no-generation-config turns it off and says so", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  assert.ok(!fs.existsSync(path.join(made.dir, "generation_config.json")));
  fs.writeFileSync(
    path.join(made.dir, "generation_config.json"),
    JSON.stringify({ repetition_penalty: 1.05 }),
  );
  const r = await runCli(["generate", "-m", made.dir, "-p", "hello", "--max-new-tokens", "2", "--json"]);
  assert.equal(r.code, 0, showRun(r));
  const on = JSON.parse(r.stdout) as { caveats?: string[]; generationConfig?: unknown };
  assert.equal(on.caveats, undefined, r.stdout);
  assert.deepEqual(on.generationConfig, { applied: true, repetitionPenalty: 1.05 });
  const r2 = await runCli([
    "generate",
    "-m",
    made.dir,
    "-p",
    "hello",
    "--max-new-tokens",
    "2",
    "--no-generation-config",
    "--json",
  ]);
  assert.equal(r2.code, 0, showRun(r2));
  const out = JSON.parse(r2.stdout) as { caveats?: string[]; generationConfig?: unknown };
  assert.deepEqual(out.generationConfig, { applied: false, repetitionPenalty: null });
  assert.equal(out.caveats?.length, 1, r2.stdout);
  assert.match(
    out.caveats![0]!,
    /^generation config: .*repetition_penalty 1\.05.*built-in engine and llama\.cpp do not \(--no-generation-config\)/,
  );
  assert.match(r2.stderr, /repetition_penalty 1\.05/);
});
