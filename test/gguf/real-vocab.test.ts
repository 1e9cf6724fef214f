/**
 * GGUF export at the scale users bring: random one-layer models with the real shapes and real tokenizers of
 * Qwen3-0.6B (151,936 tokens), Llama-3.2-1B (128,256), Gemma-3-1B (262,144; SentencePiece-style BPE) and
 * CodeLlama-7B-Instruct (32,016; Llama 2's SentencePiece-style BPE with a prefix space, hidden 4096, untied head).
 * (Before the fix, a vocabulary of ~128k tokens or more crashed the export: Math.max(...ids) overflowed the stack.)
 *
 * For each family and GGUF type:
 *  - an independent reader, @huggingface/gguf, reads back our metadata and tensor infos; each tensor is in the type
 *    asked for (norms in F32) and the embedding's last row reads back within the type's rounding of the checkpoint;
 *  - llama.cpp (node-llama-cpp) loads it; in f32 it tokenizes real texts (CyberNative, from ../shared when
 *    present) exactly as our tokenizer (@huggingface/tokenizers) does and decodes them back to the same text,
 *    and greedy-decodes the same tokens as the built-in engine with logits close to its own;
 *  - in f16 / bf16 / q8_0 (Qwen3) it loads and generates, its logits within the type's rounding of the built-in
 *    engine's, and the first greedy token is its own argmax (the built-in engine's unless those are a near tie);
 *  - chat through llama.cpp uses our chat template and tokenizer: the built-in engine's prompt tokens (one BOS
 *    where the template writes it) and the same answer.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { gguf as hfGguf, GGMLQuantizationType } from "@huggingface/gguf";
import { exportGguf, type GgufOutType } from "../../src/io/export-gguf.js";
import { ggufMeta, ggufTensorBytes, readGguf, tensorToF32 } from "../../src/io/gguf.js";
import { openModelWeights } from "../../src/io/safetensors.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { loadModel } from "../../src/models/load.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { Tensor, noGrad, tidy } from "../../src/tensor/index.js";
import { REPO_ROOT } from "../evalcore/make-model.js";
import { makeRealModel, realTexts, type RealFamily } from "./real-models.js";

const tmpDir = scratchDir("gguf-real-");
after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

// f32 for every family (the exactness check); every other type once, on Qwen3 (each export and load of a
// 150k-262k vocabulary model costs seconds, and the suite runs on 2 cores).
const TYPES: Record<RealFamily, GgufOutType[]> = {
  qwen3: ["f32", "f16", "bf16", "q8_0"],
  llama3: ["f32"],
  gemma3: ["f32"],
  codellama: ["f32"],
};
const HF_TYPE: Record<string, GGMLQuantizationType> = {
  F32: GGMLQuantizationType.F32,
  F16: GGMLQuantizationType.F16,
  BF16: GGMLQuantizationType.BF16,
  Q8_0: GGMLQuantizationType.Q8_0,
};

/** Unit roundoff of each type: half a step of its mantissa, or of q8_0's blocks (absmax / 127 steps). */
const ROUNDOFF: Partial<Record<GgufOutType, number>> = { f16: 2 ** -11, bf16: 2 ** -8, q8_0: 2 ** -8 };

/** The largest difference of `got` from `ref`, and the reference's scale (its largest magnitude). */
function maxDiff(got: ArrayLike<number>, ref: ArrayLike<number>): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < got.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return { diff, scale };
}
const argmax = (v: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
};

const FALLBACK_TEXTS = [
  "def add(a, b):\n    return a + b\n",
  "#include <stdio.h>\nint main(void) {\n    char buf[16];\n    if (fgets(buf, sizeof buf, stdin) != NULL) puts(buf);\n}\n",
  "unseen words: ünïcödé 🦙 and   spaces\n\n\tend",
  "SELECT name FROM users WHERE id = ?;  -- parameterised, not concatenated",
  // where a prefix space (CodeLlama) could go wrong: leading, trailing and runs of spaces, newlines first, digits
  " leading space",
  "   three leading spaces",
  "trailing spaces   ",
  "\n\nnewlines first\n",
  "x = 1234567890 + 0.25e-3;",
  "1",
  " 0",
];

for (const family of ["qwen3", "llama3", "gemma3", "codellama"] as const) {
  test(`${family}: real vocabulary exported to GGUF, read back independently, run by llama.cpp`, async () => {
    const made = makeRealModel(family, { parent: tmpDir, seed: 1 });
    const tok = await loadTokenizer(made.dir);
    const vocabSize = made.config.vocab_size as number;
    const builtin = new BuiltinBackend(loadModel(made.dir, { dtype: "float32" }), tok);
    const messages = [{ role: "user" as const, content: "Write a C function that copies a string safely." }];
    const promptText = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
    const promptIds = tok.encode(promptText, { addSpecialTokens: false });
    const want = await builtin.generateTokens(promptIds, { maxNewTokens: 6 });
    assert.ok(want.length > 0);
    const refLogits = noGrad(() =>
      tidy(() => {
        const logits = builtin.model.forward(Tensor.fromArray(promptIds, [1, promptIds.length], "int64"));
        return logits.select(1, promptIds.length - 1).toFloat32Array();
      }),
    );
    const texts = [...(realTexts(REPO_ROOT, 64) ?? []), ...FALLBACK_TEXTS];

    for (const outtype of TYPES[family]) {
      const file = path.join(tmpDir, `${family}-${outtype}.gguf`);
      const res = exportGguf(made.dir, file, { outtype });
      // SentencePiece-style: Gemma 3 without a prefix space, CodeLlama (Llama 2's tokenizer) with one
      assert.equal(res.tokenizerModel, family === "gemma3" || family === "codellama" ? "llama" : "gpt2");

      // the independent reader agrees with our own reader on every key and tensor
      const ours = readGguf(file);
      const theirs = await hfGguf(file, { allowLocalFile: true });
      const meta = theirs.metadata as unknown as Record<string, unknown>;
      assert.equal(
        meta["general.architecture"],
        family === "llama3" || family === "codellama" ? "llama" : family,
      );
      const tokens = meta["tokenizer.ggml.tokens"] as string[];
      assert.equal(tokens.length, vocabSize);
      for (const [id, t] of [
        [0, tok.idToToken(0)],
        [1000, tok.idToToken(1000)],
        [vocabSize - 1, null],
      ] as const)
        if (t !== null) assert.equal(tokens[id], t);
      assert.equal(meta["tokenizer.chat_template"], ggufMeta(ours, "tokenizer.chat_template"));
      assert.equal(meta["tokenizer.ggml.bos_token_id"], tok.bosTokenId ?? undefined);
      assert.equal(Object.keys(meta).length - 3, ours.metadata.size); // + version, tensor_count, kv_count
      assert.equal(theirs.tensorInfos.length, ours.tensors.length);
      theirs.tensorInfos.forEach((t, i) => {
        const o = ours.tensors[i]!;
        assert.equal(t.name, o.name);
        assert.deepEqual(t.shape.map(Number), o.dims);
        assert.equal(t.dtype, HF_TYPE[o.type], `${o.name}: ${o.type}`);
        assert.equal(Number(t.offset) + ours.dataOffset, o.offset);
      });
      const embd = ours.tensors.find((t) => t.name === "token_embd.weight")!;
      const hidden = made.config.hidden_size as number;
      assert.deepEqual(embd.shape, [vocabSize, hidden]);
      // each tensor in the type asked for (norms stay F32), and the embedding's last row (a padding row past the
      // tokenizer's for Qwen3: export must not drop those) read back within the type's rounding of the
      // checkpoint's bf16 (the read-back scale/qwen3-serve made of its own q8_0 and f16 exports, now made here)
      assert.equal(embd.type, { f32: "F32", f16: "F16", bf16: "BF16", q8_0: "Q8_0" }[outtype]);
      for (const t of ours.tensors) if (t.name.endsWith("norm.weight")) assert.equal(t.type, "F32", t.name);
      if (family === "qwen3")
        assert.equal(ours.tensors.length, 11 * (made.config.num_hidden_layers as number) + 2);
      const rowBytes = embd.nbytes / vocabSize;
      const last = tensorToF32(
        embd.type,
        ggufTensorBytes(ours, embd.name).subarray((vocabSize - 1) * rowBytes, vocabSize * rowBytes),
      );
      const ref = new Float32Array(hidden);
      {
        const src = openModelWeights(made.dir).tensors.get("model.embed_tokens.weight")!.data;
        const view = new DataView(src.buffer, src.byteOffset + (vocabSize - 1) * hidden * 2, hidden * 2);
        const u32 = new Uint32Array(ref.buffer);
        for (let i = 0; i < hidden; i++) u32[i] = view.getUint16(2 * i, true) << 16;
      }
      const rowTol = { f32: 0, bf16: 0, f16: 1e-4, q8_0: 2e-3 }[outtype];
      for (let i = 0; i < hidden; i++)
        assert.ok(
          Math.abs(last[i]! - ref[i]!) <= rowTol,
          `${outtype}: token_embd[${vocabSize - 1}][${i}]: ${last[i]} vs ${ref[i]}`,
        );

      const b = await openLlamaCppBackend({ modelPath: file, contextSize: 256, tokenizer: tok });
      try {
        if (family === "llama3") {
          // Llama-3.2-1B-Instruct as published: llama.cpp ends generation where we do, at <|eot_id|>, <|eom_id|>
          // (which it finds by their text) and <|end_of_text|>; eos is tokenizer_config.json's <|eot_id|>
          assert.deepEqual(tok.eosTokenIds, [128009, 128001, 128008]);
          assert.equal(b.model.tokens.eos, 128009);
          for (const id of [128001, 128008, 128009]) assert.ok(b.model.isEogToken(id as never), `${id}`);
          for (const id of [128000, 128004, 128006, 128007, 128010])
            assert.ok(!b.model.isEogToken(id as never));
        }
        if (outtype === "f32") {
          for (const text of texts) {
            const ids = tok.encode(text, { addSpecialTokens: false });
            assert.deepEqual(
              b.model.tokenize(text, false).map(Number),
              ids,
              `tokens of ${JSON.stringify(text)}`,
            );
            assert.equal(
              b.model.detokenize(ids as never, false),
              tok.decode(ids),
              `text of ${JSON.stringify(text.slice(0, 40))}`,
            );
          }
          assert.deepEqual(await b.generateTokens(promptIds, { maxNewTokens: 6 }), want);
          // chat through llama.cpp: our template and tokenizer, so the built-in engine's prompt tokens, BOS
          // included exactly once where the template writes it; llama.cpp's own reading of the text agrees
          const chatIds = b.chatPromptIds(messages);
          assert.deepEqual(chatIds, builtin.encodePrompt(builtin.chatPrompt(messages)));
          assert.deepEqual(b.model.tokenize(builtin.chatPrompt(messages), true).map(Number), chatIds);
          if (family !== "qwen3") {
            assert.equal(chatIds[0], tok.bosTokenId);
            assert.equal(chatIds.filter((t) => t === tok.bosTokenId).length, 1);
          }
          assert.deepEqual(
            await b.generateChat([messages], { maxNewTokens: 6 }),
            await builtin.generateChat([messages], { maxNewTokens: 6 }),
          );
          const rows = await b.logits(promptIds);
          const got = rows[rows.length - 1]!;
          const { diff, scale } = maxDiff(got, refLogits);
          assert.ok(diff <= 1e-3 * Math.max(1, scale), `logits differ by ${diff} (scale ${scale})`);
        } else {
          // llama.cpp computes these with its inputs rounded to the type (weights, and in its dot products the
          // activations too), so its logits are the float32 reference's within a few units of the type's
          // roundoff of their scale (measured: f16 1.0, bf16 1.1-1.2, q8_0 4.6-5.3 units, on libtorch 1.13's and
          // 2.6's weights); 16 units still fail a misread tensor (errors of the order of the scale). Its first
          // token is its own argmax, hence the reference's whenever the reference's top two are further apart than
          // twice the bound; a nearer pair may go either way (libtorch 2.6's weights here: 2.6031 vs 2.6028).
          const rows = await b.logits(promptIds);
          const got = rows[rows.length - 1]!;
          const { diff, scale } = maxDiff(got, refLogits);
          const tol = 16 * ROUNDOFF[outtype]! * scale;
          assert.ok(diff <= tol, `${outtype}: logits differ by ${diff} (bound ${tol})`);
          const ids = await b.generateTokens(promptIds, { maxNewTokens: 4 });
          assert.equal(ids.length, 4, `${outtype}: generated ${ids.length} tokens`);
          assert.equal(ids[0], argmax(got), `${outtype}: first greedy token is llama.cpp's argmax`);
          const [best, second] = [...refLogits].sort((x, y) => y - x);
          if (best! - second! > 2 * tol) assert.equal(ids[0], want[0], `${outtype}: first greedy token`);
        }
      } finally {
        await b.close();
      }
      fs.rmSync(file);
    }
  });
}
