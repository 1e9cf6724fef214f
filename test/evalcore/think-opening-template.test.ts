/**
 * What eval reads of answers from the model folder and says of them in its log. A model folder whose chat template opens the answer's think block in the prompt (Qwen3's Thinking-2507 models
 * end the generation prompt in "<|im_start|>assistant\n<think>\n"): eval reads the folder's template and takes an
 * answer cut before its </think> as all reasoning, as vLLM's deepseek_r1 reasoning parser does.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { evaluateModel } from "../../src/recipes/evaluate.js";
import { answerCode } from "../../src/data/corpus.js";
import type { ChatBackend } from "../../src/eval/generate/backend.js";
import type { ChatMessage } from "../../src/io/tokenizer.js";
import { makeTinyChatModel, scratchDir } from "./make-model.js";

test("eval on a folder whose template opens <think>: answers cut before </think> have no code and are counted as reasoning never closed", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const dir = path.join(scratchDir("gv-think-open-"), "model");
  fs.cpSync(made.dir, dir, { recursive: true });
  // as Qwen3's Thinking-2507 templates do: the generation prompt opens the think block; a past assistant turn has
  // its (empty) reasoning closed before its answer, so the prompt stays a prefix of the whole conversation
  const opening =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}" +
    "{{ '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + message['content'] + '<|im_end|>\\n' }}" +
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}" +
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}";
  // chat_template.jinja wins over tokenizer_config.json's, as in transformers
  fs.writeFileSync(path.join(dir, "chat_template.jinja"), opening);
  const pairs = made.pairs.slice(0, 4);
  // a server serving it: the first two answers close their reasoning, the last two run out of tokens in it
  const server: ChatBackend = {
    name: "server",
    async generateChat(list: readonly (readonly ChatMessage[])[]) {
      return list.map((m) => {
        const i = pairs.findIndex((p) => p.question === m[0]!.content);
        const p = pairs[i]!;
        const reasoning = `Draft:\n\n${p.rejected}\n\n`;
        return i < 2 ? `${reasoning}Unsafe.\n</think>\n\n${p.chosen}` : `${reasoning}Now the`;
      });
    },
  };
  const run = (d: string) =>
    evaluateModel(d, {
      pairs,
      maxPrompts: 0,
      maxPreferencePairs: 1,
      maxNewTokens: 8,
      batchSize: 4,
      seed: 0,
      generator: server,
    });
  const ev = await run(dir);
  const items = ev.safety!.items;
  assert.deepEqual(
    items.map((it) => it.code),
    pairs.map((p, i) => (i < 2 ? answerCode(p.chosen) : null)),
  );
  assert.equal(ev.safety!.noCode, 2);
  assert.match(ev.safety!.note, /4 answers began with reasoning .* and 2 of them never closed it/);
  // the same answers from a folder whose template does not open it: a cut answer's drafted code is its code (no
  // tag says otherwise), as every answer cut so was read before
  const plain = await run(made.dir);
  assert.deepEqual(
    plain.safety!.items.map((it) => it.code),
    pairs.map((p, i) => answerCode(i < 2 ? p.chosen : p.rejected)),
  );
});

test("eval says in its log how many answers had several code blocks and which the judges read (--code-blocks)", async () => {
  const made = makeTinyChatModel({ seed: 6 });
  const pairs = made.pairs.slice(0, 3);
  // the first two answers hold the insecure and the secure code in two blocks of the prompt's language
  const server: ChatBackend = {
    name: "server",
    async generateChat(list: readonly (readonly ChatMessage[])[]) {
      return list.map((m) => {
        const i = pairs.findIndex((p) => p.question === m[0]!.content);
        const p = pairs[i]!;
        return i < 2 ? `${p.rejected}\n\nor:\n\n${p.chosen}` : p.chosen;
      });
    },
  };
  for (const codeBlocks of ["longest", "all"] as const) {
    const seen: string[] = [];
    const log = { info: (m: string) => seen.push(m), warn: (m: string) => seen.push(m), progress() {} };
    const ev = await evaluateModel(made.dir, {
      pairs,
      maxPrompts: 0,
      maxPreferencePairs: 1,
      maxNewTokens: 8,
      batchSize: 4,
      seed: 0,
      generator: server,
      codeBlocks,
      log,
    });
    assert.deepEqual(
      ev.safety!.items.map((it) => it.codeBlocks),
      [2, 2, undefined],
    );
    const line = seen.filter((l) => l.includes("several code blocks"));
    assert.deepEqual(line, [
      "safe rate: 2 answers had several code blocks for the prompt's language: the judges read " +
        (codeBlocks === "all"
          ? 'all of them, joined (codeBlocks "all").'
          : 'the longest (codeBlocks "longest"; "all" reads them all; the paper does not say).'),
    ]);
  }
});
