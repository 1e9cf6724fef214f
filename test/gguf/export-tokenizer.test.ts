/**
 * Export with a real tokenizer.json: a 512-token byte-level BPE trained here (GPT-2 pre-tokenizer), next to
 * the qwen3 fixture weights. llama.cpp must tokenize text exactly as @huggingface/tokenizers does (an
 * independent implementation), and generateText must agree with token-level generation.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { Tokenizer } from "@huggingface/tokenizers";
import { InputError } from "../../src/errors.js";
import { trainByteLevelBpe, writeTokenizerFiles } from "../../src/data/bpe-train.js";
import { exportGguf } from "../../src/io/export-gguf.js";
import { ggufMeta, readGguf } from "../../src/io/gguf.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.resolve(here, "../../../test/fixtures");
const tmpDir = scratchDir("gguf-tok-");
after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

const CORPUS = [
  "def add(a, b):\n    return a + b\n",
  "import os\nprint(os.path.join('a', 'b'))\n",
  "The quick brown fox jumps over the lazy dog. It's 2024, isn't it?",
  "for (let i = 0; i < 10; i++) { console.log(i); }",
  "SELECT name FROM users WHERE id = ?;  -- parameterised, not concatenated",
];
const TEMPLATE =
  "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";

function modelWithTokenizer(): string {
  const dir = path.join(tmpDir, "qwen3-tok");
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "model.safetensors"])
    fs.copyFileSync(path.join(fixtures, "qwen3", f), path.join(dir, f));
  const bpe = trainByteLevelBpe(Array.from({ length: 20 }, () => CORPUS).flat(), { vocabSize: 512 });
  writeTokenizerFiles(dir, bpe, { chatTemplate: TEMPLATE });
  return dir;
}

test("tokenizer.json export: vocabulary, specials, template; llama.cpp tokenizes like HF", async () => {
  const dir = modelWithTokenizer();
  const file = path.join(tmpDir, "tok.gguf");
  const res = exportGguf(dir, file, { outtype: "f32" });
  assert.equal(res.vocab, "tokenizer.json");
  assert.equal(res.pre, "gpt-2"); // ByteLevel(use_regex) is GPT-2's pre-tokenizer

  const tj = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tc = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  const g = readGguf(file);
  const tokens = ggufMeta(g, "tokenizer.ggml.tokens") as string[];
  const types = ggufMeta(g, "tokenizer.ggml.token_type") as number[];
  assert.equal(tokens.length, 512);
  for (const [t, id] of Object.entries(tj.model.vocab as Record<string, number>)) assert.equal(tokens[id], t);
  const imEnd = tj.model.vocab["<|im_end|>"] as number;
  assert.equal(types[imEnd], 3); // CONTROL
  assert.equal(types[300], 1); // an ordinary merged token: NORMAL
  assert.equal(ggufMeta(g, "tokenizer.ggml.eos_token_id"), imEnd);
  assert.equal(ggufMeta(g, "tokenizer.ggml.add_bos_token"), false);
  assert.equal(ggufMeta(g, "tokenizer.chat_template"), TEMPLATE);
  const merges = ggufMeta(g, "tokenizer.ggml.merges") as string[];
  assert.deepEqual(
    merges.slice(0, 3),
    (tj.model.merges as string[][]).slice(0, 3).map((m) => (Array.isArray(m) ? m.join(" ") : m)),
  );

  const hf = new Tokenizer(tj, tc);
  const b = await openLlamaCppBackend({ modelPath: file, contextSize: 128, threads: 1 });
  try {
    for (const text of [...CORPUS, "unseen words: ünïcödé 🦙 and   spaces\n\n\tend"]) {
      assert.deepEqual(
        b.model.tokenize(text, false).map(Number),
        hf.encode(text, { add_special_tokens: false }).ids,
        `tokenization of ${JSON.stringify(text)}`,
      );
    }
    const prompt = "<|im_start|>user\ndef add(a, b):<|im_end|>\n<|im_start|>assistant\n";
    const promptIds = hf.encode(prompt, { add_special_tokens: false }).ids;
    assert.equal(promptIds[0], tj.model.vocab["<|im_start|>"]); // special-token text parsed as one token
    const ids = await b.generateTokens(promptIds, { maxNewTokens: 6 });
    const text = await b.generateText(prompt, { maxNewTokens: 6 });
    assert.equal(text, hf.decode(ids, { skip_special_tokens: true }));
    // A stop string cuts the text before it.
    if (text.length > 2) {
      const stop = text.slice(1, 3);
      const cut = await b.generateText(prompt, { maxNewTokens: 6, stop: [stop] });
      assert.equal(cut, text.slice(0, text.indexOf(stop)));
    }
  } finally {
    await b.close();
  }
});

test("unsupported families and bad outtypes are refused with InputError", () => {
  const dir = path.join(tmpDir, "mistral");
  fs.mkdirSync(dir, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(fixtures, "llama", "config.json"), "utf8"));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, model_type: "phi3" }));
  assert.throws(() => exportGguf(dir, path.join(tmpDir, "x.gguf"), { outtype: "f32" }), InputError);
  assert.throws(
    () => exportGguf(path.join(fixtures, "llama"), path.join(tmpDir, "y.gguf"), { outtype: "q4_0" as "f32" }),
    InputError,
  );
  assert.equal(fs.existsSync(path.join(tmpDir, "y.gguf")), false);
});

test("a model folder without tokenizer.json is refused: no placeholder vocabulary, no file", () => {
  const out = path.join(tmpDir, "no-tok.gguf");
  assert.throws(
    () => exportGguf(path.join(fixtures, "qwen3"), out, { outtype: "f16" }),
    (e: unknown) =>
      e instanceof InputError && /no tokenizer\.json/.test(e.message) && e.message.includes("qwen3"),
  );
  assert.equal(fs.existsSync(out), false);
  assert.deepEqual(
    fs.readdirSync(tmpDir).filter((f) => f.includes("no-tok")),
    [],
  );
});

test("a byte-level pre-tokenizer this tool does not recognise is refused, not guessed; --gguf-pre names llama.cpp's", async () => {
  // DeepSeek-Coder's splits (llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_CODER regexes) before a regex-less ByteLevel:
  // the guess was "default", which split "x = foo(1234)" otherwise than the model's tokenizer (an audit's finding)
  const dir = modelWithTokenizer();
  const tjFile = path.join(dir, "tokenizer.json");
  const tj = JSON.parse(fs.readFileSync(tjFile, "utf8"));
  const split = (r: string) => ({
    type: "Split",
    pattern: { Regex: r },
    behavior: "Isolated",
    invert: false,
  });
  tj.pre_tokenizer = {
    type: "Sequence",
    pretokenizers: [
      split("[\r\n]"),
      split("\\s?\\p{L}+"),
      split("\\s?\\p{P}+"),
      split("[一-龥ࠀ-一가-퟿]+"),
      { type: "Digits", individual_digits: true },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  };
  fs.writeFileSync(tjFile, JSON.stringify(tj));
  const refused = path.join(tmpDir, "deepseek-refused.gguf");
  assert.throws(
    () => exportGguf(dir, refused, { outtype: "f32" }),
    (e: unknown) =>
      e instanceof InputError &&
      /pre-tokenizer not recognised/.test(e.message) &&
      /--gguf-pre/.test(e.message),
  );
  assert.equal(fs.existsSync(refused), false);
  assert.throws(() => exportGguf(dir, refused, { outtype: "f32", pre: "Deepseek Coder" }), InputError);

  const file = path.join(tmpDir, "deepseek.gguf");
  const res = exportGguf(dir, file, { outtype: "f32", pre: "deepseek-coder" });
  assert.equal(res.pre, "deepseek-coder");
  assert.ok(
    res.notes.some((n) => n.includes('"deepseek-coder" as given')),
    res.notes.join("\n"),
  );
  // named right, llama.cpp splits as the tokenizer does
  const hf = new Tokenizer(tj, JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")));
  const b = await openLlamaCppBackend({ modelPath: file, contextSize: 128, threads: 1 });
  try {
    for (const text of [...CORPUS, "x = foo(1234) + bar;", 'if (a >= b) { return "ok"; }\r\n\t12 中文'])
      assert.deepEqual(
        b.model.tokenize(text, false).map(Number),
        hf.encode(text, { add_special_tokens: false }).ids,
        `tokenization of ${JSON.stringify(text)}`,
      );
  } finally {
    await b.close();
  }
});

test("a byte-level tokenizer's normalizer, which llama.cpp does not apply, is said", () => {
  const dir = modelWithTokenizer();
  const tjFile = path.join(dir, "tokenizer.json");
  const tj = JSON.parse(fs.readFileSync(tjFile, "utf8"));
  tj.normalizer = { type: "NFC" };
  fs.writeFileSync(tjFile, JSON.stringify(tj));
  const res = exportGguf(dir, path.join(tmpDir, "nfc.gguf"), { outtype: "f32" });
  assert.ok(
    res.notes.some((n) => /does not apply the tokenizer's normalizer/.test(n) && n.includes("NFC")),
    res.notes.join("\n"),
  );
});
