import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { Tokenizer } from "@huggingface/tokenizers";
import {
  buildTokenizerConfig,
  buildTokenizerJson,
  bytesToUnicode,
  countWords,
  DEFAULT_SPECIAL_TOKENS,
  trainByteLevelBpe,
  writeTokenizerFiles,
} from "../../src/data/bpe-train.js";
import { InputError } from "../../src/errors.js";

const SPECIALS = DEFAULT_SPECIAL_TOKENS.length;

function load(bpe: ReturnType<typeof trainByteLevelBpe>): Tokenizer {
  // Round-trip through JSON text, as a reader of the written files would see them.
  const json = JSON.parse(JSON.stringify(buildTokenizerJson(bpe)));
  const config = JSON.parse(JSON.stringify(buildTokenizerConfig(bpe)));
  return new Tokenizer(json, config);
}

const codeSample = [
  "#include <cstring>\nvoid copyName(char* dst, const char* src) {\n    strncpy(dst, src, 31);\n}\n",
  'func ping(host string) error {\n\tcmd := exec.Command("ping", "-c", "1", host)\n\treturn cmd.Run()\n}\n',
  'String q = "SELECT * FROM users WHERE name = ?";\nPreparedStatement ps = conn.prepareStatement(q);\n',
  'let value = dict["key"] ?? "default"\nprint(value)\n',
];

test("bytesToUnicode is GPT-2's map: a bijection onto printable characters", () => {
  const m = bytesToUnicode();
  assert.equal(new Set(m).size, 256);
  // Known points of GPT-2's table: printable ASCII maps to itself, space to Ġ (U+0120), \n to Ċ (U+010A).
  assert.equal(m[0x41], "A");
  assert.equal(m[0x20], "Ġ");
  assert.equal(m[0x0a], "Ċ");
  assert.equal(m[0x00], "\u0100");
  assert.equal(m[0xad], "\u0143"); // soft hyphen is the 68th non-printable byte: 256 + 67
});

test("classic BPE example aaabdaaabac: merges a+a, then a+b, then aa+ab", () => {
  // Hand-worked (Wikipedia's example): counts over the single word "aaabdaaabac"
  //   pairs aa:4 ab:2 bd:1 da:1 ba:1 ac:1 -> merge "a a"
  //   then aa·a:2, a·b:2 tie -> smaller ids win: (a,b) = (97,98) beats (aa, a)
  //   then aa·ab:2 -> "aaab"
  const bpe = trainByteLevelBpe(["aaabdaaabac"], { vocabSize: SPECIALS + 256 + 3, minFrequency: 2 });
  assert.deepEqual(bpe.merges, [
    ["a", "a"],
    ["a", "b"],
    ["aa", "ab"],
  ]);
  const tok = load(bpe);
  assert.deepEqual(tok.tokenize("aaabdaaabac"), ["aaab", "d", "aaab", "a", "c"]);
  // Stops when no pair occurs twice even if the target size is not reached.
  const more = trainByteLevelBpe(["aaabdaaabac"], { vocabSize: SPECIALS + 256 + 50 });
  assert.equal(more.merges.length, 3);
  assert.equal(more.vocab.size, SPECIALS + 256 + 3);
});

test("merges are counted over words weighted by frequency", () => {
  // "low" x5, "lower" x2, "newest" x6, "widest" x3 (Sennrich et al.'s example, no end-of-word marker):
  // pair counts: lo 7, ow 7, we 8, er 2, ne 6, ew 6, es 9, st 9, wi 3, id 3, de 3.
  // First merge: es (9) vs st (9) tie -> (e,s) = (101,115) < (s,t) = (115,116) -> "e s".
  // After it: est... "s t" no longer exists in newest/widest ("es" "t"): es·t = 9 -> second merge "es t".
  const texts: string[] = [];
  const add = (w: string, n: number) => {
    for (let i = 0; i < n; i++) texts.push(w);
  };
  add("low", 5);
  add("lower", 2);
  add("newest", 6);
  add("widest", 3);
  const bpe = trainByteLevelBpe(texts, { vocabSize: SPECIALS + 256 + 3 });
  assert.deepEqual(bpe.merges, [
    ["e", "s"],
    ["es", "t"],
    // remaining: lo 7, ow 7, we 2 (lower), ne 6, ew 6, ... -> (l,o)=(108,111) < (o,w)=(111,119)
    ["l", "o"],
  ]);
});

test("countWords uses the GPT-2 split and never splits inside special tokens", () => {
  const c = countWords(["<|im_start|>user\nhi there's  x<|im_end|>"], DEFAULT_SPECIAL_TOKENS);
  assert.deepEqual([...c.keys()].sort(), ["\n", " ", " there", " x", "'s", "hi", "user"].sort());
  assert.equal(c.has("<|im_start|>"), false);
});

test("vocab layout: special tokens first, then bytes in byte order, then merges", () => {
  const bpe = trainByteLevelBpe(codeSample, { vocabSize: 300 });
  DEFAULT_SPECIAL_TOKENS.forEach((t, i) => assert.equal(bpe.vocab.get(t), i));
  const m = bytesToUnicode();
  for (let b = 0; b < 256; b++) assert.equal(bpe.vocab.get(m[b]!), SPECIALS + b);
  bpe.merges.forEach(([l, r], i) => assert.equal(bpe.vocab.get(l + r), SPECIALS + 256 + i));
  assert.equal(bpe.vocab.size, 300);
  assert.equal(new Set(bpe.vocab.values()).size, bpe.vocab.size);
});

test("training is deterministic and independent of text order within ties", () => {
  const a = trainByteLevelBpe(codeSample, { vocabSize: 320 });
  const b = trainByteLevelBpe([...codeSample].reverse(), { vocabSize: 320 });
  assert.deepEqual(a.merges, b.merges);
});

test("written tokenizer loads in @huggingface/tokenizers and round-trips arbitrary text", () => {
  const bpe = trainByteLevelBpe(codeSample.concat(codeSample), { vocabSize: 340 });
  const dir = scratchDir("bpe-");
  writeTokenizerFiles(dir, bpe, { chatTemplate: "{{ messages[0]['content'] }}", modelMaxLength: 512 });
  const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const config = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  assert.equal(json.model.type, "BPE");
  assert.equal(json.pre_tokenizer.type, "ByteLevel");
  assert.equal(json.decoder.type, "ByteLevel");
  assert.equal(config.model_max_length, 512);
  assert.equal(config.eos_token, "<|im_end|>");
  assert.equal(config.chat_template, "{{ messages[0]['content'] }}");
  const tok = new Tokenizer(json, config);

  const samples = [
    ...codeSample,
    "   leading and trailing   ",
    "tabs\t\tand\n\n\nnewlines\r\n",
    "unicode: héllo wörld — 日本語 テキスト 🙂👍🏽 ∑∫",
    "mixed 123456 numbers 3.14159e-10 and 'quotes' \"double\" `back`",
    "\u0000control\u0001chars\u007f",
    "a".repeat(200),
  ];
  for (const s of samples) {
    const ids = tok.encode(s).ids;
    assert.equal(tok.decode(ids), s, `round trip of ${JSON.stringify(s)}`);
    for (const id of ids) assert.ok(id >= 0 && id < bpe.vocab.size);
  }
  // The library refuses to decode an empty id list; the empty string just encodes to nothing.
  assert.deepEqual(tok.encode("").ids, []);
  // A trained merge is used: frequent code words become few tokens.
  assert.ok(tok.encode("strncpy").ids.length < "strncpy".length);
  fs.rmSync(dir, { recursive: true });
});

test("special tokens encode as single ids and decode back", () => {
  const bpe = trainByteLevelBpe(codeSample, { vocabSize: 300 });
  const tok = load(bpe);
  for (const t of DEFAULT_SPECIAL_TOKENS) {
    assert.deepEqual(tok.encode(t).ids, [bpe.vocab.get(t)]);
  }
  const text = "<|im_start|>user\nhello<|im_end|>\n";
  const ids = tok.encode(text).ids;
  assert.equal(ids[0], bpe.vocab.get("<|im_start|>"));
  assert.ok(ids.includes(bpe.vocab.get("<|im_end|>")!));
  assert.equal(tok.decode(ids), text);
  assert.equal(tok.decode(ids, { skip_special_tokens: true }), "user\nhello\n");
});

test("bad options are InputErrors", () => {
  assert.throws(() => trainByteLevelBpe(["x"], { vocabSize: 100 }), InputError);
  assert.throws(
    () => trainByteLevelBpe(["x"], { vocabSize: 300, specialTokens: ["<a>", "<a>"] }),
    InputError,
  );
  const bpe = trainByteLevelBpe(["x"], { vocabSize: 300 });
  assert.throws(() => buildTokenizerConfig(bpe, { eosToken: "</s>" }), InputError);
});

test("trains ~2 MB of text to 1024 tokens", () => {
  // Not timed (no timed unit tests); just makes sure a realistic size completes and fills the vocab.
  const words = ["return", "string", "buffer", "const", "error", "value", "user", "query", "file", "path"];
  const texts: string[] = [];
  let size = 0;
  let x = 12345;
  while (size < 2_000_000) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const line = `${words[x % 10]}_${x % 997}(${words[(x >> 8) % 10]}, ${x % 53}) {\n    ${words[(x >> 4) % 10]};\n}\n`;
    texts.push(line);
    size += line.length;
  }
  const bpe = trainByteLevelBpe(texts, { vocabSize: 1024 });
  assert.equal(bpe.vocab.size, 1024);
});
