/**
 * Export a Hugging Face text checkpoint (llama, qwen2, qwen3, gemma3) to GGUF for llama.cpp, following
 * llama.cpp's convert_hf_to_gguf.py (conversion/{base,llama,qwen,gemma}.py and gguf-py/gguf/constants.py):
 * same tensor names, Q/K row permutation for the llama architecture, llama3 rope_freqs, Gemma's (1 + w)
 * norms stored as 1 + w, 1-D tensors and norms kept f32, and the same metadata keys.
 *
 * Two Gemma3 fixes the stock converter lacks (see test/fixtures/README.md, "Independent cross-check with
 * llama.cpp"): the per-layer sliding-window pattern is written from `layer_types`, and llama.cpp's fixed
 * attention scale is corrected by folding attnScale / llamaCppScale into attn_q_norm (Q is normalised,
 * rotated, then scaled, so scaling the norm weight is exact).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { checkModelDir, yarnMscale, type ModelConfig } from "./config.js";
import { inspectModelFolder, isVisionTensor } from "./model-folder.js";
import { tokenizerSteps } from "./tokenizer-json.js";
import { chatTemplateText, namedChatTemplates } from "./chat-template.js";
import { isPlainObject } from "../util/keys.js";
import { weightsUnchanged, type TensorRecord } from "./safetensors.js";
import { F16OverflowCounter, f16Bits, type F16Overflow } from "./export-overflow.js";
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bytes,
  f32ToF16Bytes,
  gguf,
  quantizeQ8_0,
  quantizeQ8_0Bf16,
  writeGguf,
  type GgmlType,
  type GgufTensorSpec,
  type GgufValue,
  type GgufWriteSpec,
} from "./gguf.js";

export type GgufOutType = "f32" | "f16" | "bf16" | "q8_0";

export interface ExportGgufOptions {
  outtype: GgufOutType;
  /** general.name; defaults to the model folder's name. */
  name?: string;
  /**
   * tokenizer.ggml.pre as given (llama.cpp's name of a pre-tokenizer, e.g. "deepseek-coder"), for a byte-level
   * tokenizer whose pre-tokenizer choosePre does not recognise: not checked, the caller knows it.
   */
  pre?: string;
}

export interface ExportGgufResult {
  file: string;
  arch: string;
  tensorCount: number;
  /** Where the vocabulary came from. */
  vocab: "tokenizer.json";
  /** tokenizer.ggml.model written: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE: Gemma 3, Llama 2, CodeLlama). */
  tokenizerModel: VocabKind;
  /** tokenizer.ggml.pre written. */
  pre: string;
  /** Choices the caller should know about (guessed pre-tokenizer, q8_0 fallbacks, ...). */
  notes: string[];
  /** Tensors with values beyond float16's range written as inf (an f16 target): filled as the file is written. */
  f16Overflow: F16Overflow[];
}

/** llama.cpp's LlamaFileType values for general.file_type. */
const FILE_TYPE: Record<GgufOutType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };
const GGML_QUANT_VERSION = 2;

/** HF name inside a decoder layer -> GGUF name inside blk.N (tensor_mapping.py). */
function layerTensorName(cfg: ModelConfig, hfName: string): string | null {
  const common: Record<string, string> = {
    input_layernorm: "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  };
  const sandwich: Record<string, string> = {
    // Gemma3: post_attention_layernorm normalises the attention output; the FFN has its own pre/post norms.
    post_attention_layernorm: "post_attention_norm",
    pre_feedforward_layernorm: "ffn_norm",
    post_feedforward_layernorm: "post_ffw_norm",
  };
  const plain: Record<string, string> = { post_attention_layernorm: "ffn_norm" };
  const m = /^(.*)\.(weight|bias)$/.exec(hfName);
  if (!m) return null;
  const mapped = common[m[1]!] ?? (cfg.sandwichNorms ? sandwich : plain)[m[1]!];
  return mapped ? `${mapped}.${m[2]}` : null;
}

/** Strip the prefixes multimodal Gemma3 checkpoints put before the text model's tensors. */
function textModelName(name: string): string | null {
  if (isVisionTensor(name)) return null;
  return name
    .replace(/^model\.language_model\./, "model.")
    .replace(/^language_model\.model\./, "model.")
    .replace(/^language_model\.lm_head\./, "lm_head.");
}

/**
 * The converter's LlamaModel.permute: HF stores Q/K rows in the half-split RoPE order, llama.cpp's llama
 * architecture rotates adjacent pairs. Within each head, new row 2i+j is old row j*(hd/2)+i.
 */
export function permuteQK(data: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const src = permutedRows(rows, nHead);
  const out = new Float32Array(data.length);
  for (let dst = 0; dst < rows; dst++)
    out.set(data.subarray(src(dst) * cols, (src(dst) + 1) * cols), dst * cols);
  return out;
}

/** permuteQK's row map: the source row of output row `dst` (2i + j within a head is j·(hd/2) + i). */
function permutedRows(rows: number, nHead: number): (dst: number) => number {
  const hd = rows / nHead;
  if (!Number.isInteger(hd) || hd % 2 !== 0)
    throw new Error(`cannot permute ${rows} rows into ${nHead} heads`);
  return (dst) => {
    const w = dst % hd;
    return dst - w + (w & 1) * (hd / 2) + (w >> 1);
  };
}

/** Bytes as a typed array of `size`-byte elements: a view when they are aligned, else a copy. */
function typed<T>(bytes: Uint8Array, size: number, make: (b: ArrayBuffer, off: number, n: number) => T): T {
  const n = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return make(bytes.buffer as ArrayBuffer, bytes.byteOffset, n);
  return make(Uint8Array.from(bytes).buffer, 0, n);
}

let f16Values: Float32Array | null = null;
/** The float32 value of every half (65,536 of them): a lookup instead of arithmetic per element. */
function f16Table(): Float32Array {
  if (!f16Values) {
    f16Values = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Values[h] = f16BitsToF32(h);
  }
  return f16Values;
}

/** Float32 values of elements [from, to) of `t` (F32, BF16 or F16, every value exact) into `out` at `at`. */
function readValues(
  t: TensorRecord,
  from: number,
  to: number,
  out: Float32Array,
  at: number,
  source: string,
): void {
  const n = to - from;
  switch (t.dtype) {
    case "F32":
      out.set(
        typed(t.data.subarray(from * 4, to * 4), 4, (b, o, m) => new Float32Array(b, o, m)),
        at,
      );
      return;
    case "BF16": {
      const src = typed(t.data.subarray(from * 2, to * 2), 2, (b, o, m) => new Uint16Array(b, o, m));
      const bits = new Int32Array(out.buffer, out.byteOffset + at * 4, n);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16; // a bfloat16 is the top half of a float32
      return;
    }
    case "F16": {
      const src = typed(t.data.subarray(from * 2, to * 2), 2, (b, o, m) => new Uint16Array(b, o, m));
      const table = f16Table();
      for (let i = 0; i < n; i++) out[at + i] = table[src[i]!]!;
      return;
    }
    default:
      throw new InputError(
        `${source}: tensor ${t.name} has dtype ${t.dtype}; only F32, BF16 and F16 weights can be exported`,
      );
  }
}

/** llama3 frequency factors exactly as generate_extra_tensors computes them (float32 torch arithmetic). */
export function llama3RopeFactors(cfg: ModelConfig): Float32Array {
  const rs = cfg.ropeScaling;
  if (rs.type !== "llama3") throw new Error("not a llama3 rope scaling");
  const f = Math.fround;
  const dim = cfg.headDim;
  const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
  const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = f(1 / f(Math.pow(cfg.ropeTheta, f(f(2 * i) / dim))));
    const wavelen = f((2 * Math.PI) / freq);
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = rs.factor;
    else {
      const smooth = f(
        f(f(rs.originalMaxPositionEmbeddings / wavelen) - rs.lowFreqFactor) /
          (rs.highFreqFactor - rs.lowFreqFactor),
      );
      out[i] = f(1 / f(f(f(1 - smooth) / rs.factor) + smooth));
    }
  }
  return out;
}

/**
 * YaRN's keys as convert_hf_to_gguf.py writes them (type, factor, original context length), which llama.cpp's rope
 * computes as transformers 5 does (test/gguf/yarn-llamacpp.test.ts). An attention factor other than 0.1·ln(factor)
 * + 1 goes in `rope.scaling.attn_factor`, which llama.cpp reads for every architecture and multiplies into its own
 * 0.1·ln(factor) + 1 (llama-context.cpp): written as their ratio. Not for Gemma3, where it would scale the sliding
 * layers too, which transformers leaves unscaled. The betas llama.cpp reads only for other architectures (grok,
 * mistral3), and it always rounds the correction range outward: a config that sets them otherwise (the converter
 * writes the keys, which llama.cpp then ignores) would load as a different model, so it is refused.
 */
function yarnMetadata(cfg: ModelConfig, k: (s: string) => string, notes: string[]): [string, GgufValue][] {
  const rs = cfg.ropeScaling;
  if (rs.type !== "yarn") return [];
  const implied = yarnMscale(rs.factor);
  const ownFactor = Math.abs(rs.attentionFactor - implied) > 1e-6 * implied;
  const differs: string[] = [];
  if (rs.betaFast !== 32) differs.push(`beta_fast ${rs.betaFast} (llama.cpp: 32)`);
  if (rs.betaSlow !== 1) differs.push(`beta_slow ${rs.betaSlow} (llama.cpp: 1)`);
  if (ownFactor && cfg.family === "gemma3")
    differs.push(
      `attention factor ${rs.attentionFactor} (llama.cpp's gemma3 would apply it to the sliding layers too)`,
    );
  if (!rs.truncate) differs.push("truncate false (llama.cpp rounds the correction range outward)");
  if (differs.length > 0)
    throw new InputError(
      `${cfg.modelType}: yarn RoPE with ${differs.join(", ")} cannot be exported to GGUF: llama.cpp's ` +
        `${cfg.family} reads no such setting and would compute a different model`,
    );
  // Ollama runs these architectures on its own engine, whose YaRN differs (a linear factor for qwen2, no
  // attention factor for qwen3, none at all for gemma3 in the versions read)
  notes.push(
    "yarn RoPE: llama.cpp computes it as transformers does; Ollama's own engine for this architecture may not",
  );
  return [
    [k("rope.scaling.type"), gguf.str("yarn")],
    [k("rope.scaling.factor"), gguf.f32(rs.factor)],
    [k("rope.scaling.original_context_length"), gguf.u32(rs.originalMaxPositionEmbeddings)],
    ...(ownFactor
      ? ([[k("rope.scaling.attn_factor"), gguf.f32(rs.attentionFactor / implied)]] as [string, GgufValue][])
      : []),
  ];
}

/** llama.cpp's attention scale for gemma3 (llama_model_gemma3::load_arch_hparams): head_dim, or hidden/heads for 27B. */
function llamaCppGemma3Scale(cfg: ModelConfig): number {
  const is27B = cfg.numLayers === 62;
  return 1 / Math.sqrt(is27B ? Math.floor(cfg.hiddenSize / cfg.numHeads) : cfg.headDim);
}

const ARCH: Record<ModelConfig["family"], string> = {
  llama: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  gemma3: "gemma3",
};

function archMetadata(cfg: ModelConfig, arch: string, notes: string[]): [string, GgufValue][] {
  const k = (s: string) => `${arch}.${s}`;
  const md: [string, GgufValue][] = [
    [k("block_count"), gguf.u32(cfg.numLayers)],
    [k("context_length"), gguf.u32(cfg.maxPositionEmbeddings)],
    [k("embedding_length"), gguf.u32(cfg.hiddenSize)],
    [k("feed_forward_length"), gguf.u32(cfg.intermediateSize)],
    [k("attention.head_count"), gguf.u32(cfg.numHeads)],
    [k("attention.head_count_kv"), gguf.u32(cfg.numKvHeads)],
    [k("rope.freq_base"), gguf.f32(cfg.ropeTheta)],
    [k("attention.layer_norm_rms_epsilon"), gguf.f32(cfg.rmsNormEps)],
    // The converter writes these only when config.json has head_dim; the value is the same either way.
    [k("attention.key_length"), gguf.u32(cfg.headDim)],
    [k("attention.value_length"), gguf.u32(cfg.headDim)],
  ];
  if (cfg.ropeScaling.type === "linear") {
    md.push(
      [k("rope.scaling.type"), gguf.str("linear")],
      [k("rope.scaling.factor"), gguf.f32(cfg.ropeScaling.factor)],
    );
  }
  if (cfg.ropeScaling.type === "yarn") md.push(...yarnMetadata(cfg, k, notes));
  // transformers rescales dynamic RoPE past max_position_embeddings; llama.cpp has no such scaling and runs plain
  // RoPE there (the converter writes nothing for it either)
  if (cfg.ropeScaling.type === "dynamic")
    notes.push(
      `dynamic RoPE: written as plain RoPE, the same up to context_length ${cfg.maxPositionEmbeddings}; beyond it ` +
        "llama.cpp does not rescale as transformers does",
    );
  if (cfg.family === "llama") {
    md.push([k("vocab_size"), gguf.u32(cfg.vocabSize)], [k("rope.dimension_count"), gguf.u32(cfg.headDim)]);
  }
  if (cfg.family === "gemma3") {
    if (cfg.ropeLocalTheta !== null) md.push([k("rope.freq_base_swa"), gguf.f32(cfg.ropeLocalTheta)]);
    if (cfg.finalLogitSoftcapping !== null)
      md.push([k("final_logit_softcapping"), gguf.f32(cfg.finalLogitSoftcapping)]);
    if (cfg.attnLogitSoftcapping !== null) {
      throw new InputError(
        `${cfg.modelType}: attn_logit_softcapping is set, which Gemma3 (and llama.cpp's gemma3) does not support`,
      );
    }
    const sliding = cfg.layerTypes.map((t) => t === "sliding_attention");
    if (cfg.slidingWindow !== null && sliding.some((s) => s)) {
      md.push([k("attention.sliding_window"), gguf.u32(cfg.slidingWindow)]);
      // Fix: without the pattern llama.cpp assumes 5 sliding layers in 6.
      md.push([k("attention.sliding_window_pattern"), gguf.arr("bool", sliding)]);
    }
    const fold = cfg.attnScale / llamaCppGemma3Scale(cfg);
    if (Math.abs(fold - 1) > 1e-7)
      notes.push(`gemma3: attention scale folded into attn_q_norm (factor ${fold.toPrecision(8)})`);
  }
  if (cfg.family === "qwen2" || cfg.family === "llama") {
    // Plain llama/qwen2 have no per-layer variations that llama.cpp would need to know about.
  }
  return md;
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

/** gguf TokenType values. */
const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

function specialIds(
  _cfg: ModelConfig,
  bos: number | null,
  eos: number | null,
  pad: number | null,
): [string, GgufValue][] {
  const md: [string, GgufValue][] = [];
  if (bos !== null) md.push(["tokenizer.ggml.bos_token_id", gguf.u32(bos)]);
  if (eos !== null) md.push(["tokenizer.ggml.eos_token_id", gguf.u32(eos)]);
  if (pad !== null) md.push(["tokenizer.ggml.padding_token_id", gguf.u32(pad)]);
  return md;
}

/** Known pre-tokenizer regexes (tokenizer.json Split patterns) and llama.cpp's name for each. */
const KNOWN_PRE_REGEXES: [string, string][] = [
  // Llama 3 / 3.1 / 3.2 (also many code models trained on it)
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "llama-bpe",
  ],
  // Qwen2 / Qwen2.5 / Qwen3 (single digits)
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "qwen2",
  ],
];

interface JsonObject {
  [k: string]: unknown;
}

/**
 * tokenizer.ggml.pre. The converter hashes the token ids of a test string against a table of known
 * tokenizers; we recognise the pre-tokenizer from its definition instead. One recognised neither way is refused,
 * as the converter refuses an unknown hash ("BPE pre-tokenizer was not recognized"): a guess splits text otherwise
 * than the model was trained on (DeepSeek-Coder's splits read as "default": 1,280 of 1,406 CyberNative fields
 * tokenized differently), unless the caller names llama.cpp's pre-tokenizer (`given`, --gguf-pre).
 */
function choosePre(tok: JsonObject, file: string, notes: string[], given?: string): string {
  if (given !== undefined) {
    notes.push(
      `${file}: tokenizer.ggml.pre "${given}" as given (--gguf-pre), not checked against the tokenizer`,
    );
    return given;
  }
  const parts = tokenizerSteps(tok.pre_tokenizer, "pretokenizers");
  const regexes = parts
    .filter((p) => p.type === "Split" && isPlainObject(p.pattern) && typeof p.pattern.Regex === "string")
    .map((p) => (p.pattern as JsonObject).Regex as string);
  for (const r of regexes) {
    const known = KNOWN_PRE_REGEXES.find(([k]) => k === r);
    if (known) return known[1];
  }
  const byteLevel = parts.find((p) => p.type === "ByteLevel");
  if (regexes.length === 0 && byteLevel && byteLevel.use_regex !== false) {
    if (parts.some((p) => p.type === "Digits" && p.individual_digits === true)) {
      notes.push(`${file}: ByteLevel pre-tokenizer with single digits: using llama.cpp's "starcoder"`);
      return "starcoder";
    }
    return "gpt-2";
  }
  throw new InputError(
    `${file}: pre-tokenizer not recognised (${JSON.stringify(tok.pre_tokenizer).slice(0, 200)}): llama.cpp would ` +
      `split text otherwise than this tokenizer, and a model reading other tokens than it was trained on writes ` +
      `garbage (convert_hf_to_gguf.py refuses it too). Recognised: Llama 3's and Qwen2's split patterns, GPT-2's ` +
      `ByteLevel (with single digits: StarCoder's). If you know llama.cpp's name for this one (its pre-tokenizer ` +
      `types in llama-vocab.cpp, e.g. deepseek-coder), give it with --gguf-pre <name>`,
  );
}

function readJson(file: string): JsonObject {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new InputError(`${file}: cannot read JSON (${(e as Error).message})`, { cause: e });
  }
  if (!isPlainObject(v)) throw new InputError(`${file}: expected a JSON object`);
  return v;
}

/** llama.cpp's tokenizer.ggml.model: byte-level BPE, or SentencePiece (scores instead of merges). */
export type VocabKind = "gpt2" | "llama";

/**
 * Which llama.cpp tokenizer reproduces this tokenizer.json. Byte-level BPE (GPT-2, Llama 3, Qwen) is "gpt2".
 * A SentencePiece-style BPE that turns spaces into "▁" and falls back to <0xXX> bytes is "llama", SentencePiece,
 * as convert_hf_to_gguf.py writes it from tokenizer.model (_set_vocab_sentencepiece): no pre-split, spaces escaped,
 * byte fallback, and llama.cpp keeps the spaces around punctuation when decoding (its "gemma4" BPE would print
 * `conn!= null` for `conn != null`). Two such tokenizers:
 *  - Gemma 3's: no prefix space (add_space_prefix false, as the converter's Gemma3Model writes it);
 *  - Llama 2's / CodeLlama's / Mistral's "legacy" one: the normalizer first prepends "▁" (Prepend), and the decoder
 *    strips that one space again (Strip, 1 left). llama.cpp's SPM tokenizer with add_space_prefix (its default for
 *    "llama") does the same: a space before the text and before the text after every special token (HF's
 *    normalizer runs on each piece between added tokens), and detokenize drops the first token's leading space.
 * Anything else (Metaspace with prepend_scheme "first", a prefix space whose decoder does not strip it, Unigram,
 * WordPiece) is refused: llama.cpp would tokenize or decode it differently, and a model that reads other tokens
 * than it was trained on generates garbage.
 */
function vocabKind(tok: JsonObject, file: string): { kind: VocabKind; addSpacePrefix: boolean } {
  const model = tok.model as JsonObject;
  const json = (v: unknown) => JSON.stringify(v ?? null);
  if ([tok.pre_tokenizer, tok.decoder].some((p) => json(p).includes('"ByteLevel"')))
    return { kind: "gpt2", addSpacePrefix: false };
  const norms = tokenizerSteps(tok.normalizer, "normalizers");
  const isSpaceEscape = (n: JsonObject) =>
    n.type === "Replace" && isPlainObject(n.pattern) && n.pattern.String === " " && n.content === "\u2581";
  const isPrepend = (n: JsonObject) => n.type === "Prepend" && n.prepend === "\u2581";
  const escapesSpaces = norms.some(isSpaceEscape);
  // a Prepend only as the first step: after the Replace a prepended "▁" is the same, before anything else not
  const prepends = norms.length > 0 && isPrepend(norms[0]!);
  const otherNorms = norms.filter((n, i) => !isSpaceEscape(n) && !(i === 0 && isPrepend(n)));
  // After the normalizer no space is left, so a Split on " " (Gemma 3) changes nothing.
  const preParts = tokenizerSteps(tok.pre_tokenizer, "pretokenizers");
  const preIsNoop = preParts.every(
    (p) => p.type === "Split" && isPlainObject(p.pattern) && p.pattern.String === " " && escapesSpaces,
  );
  // the decoder removes the prepended space (Llama 2: Strip " " 1 from the left) exactly when there is one
  const strips = tokenizerSteps(tok.decoder, "decoders").some(
    (d) => d.type === "Strip" && d.content === " " && d.start === 1 && (d.stop ?? 0) === 0,
  );
  if (
    model.byte_fallback === true &&
    escapesSpaces &&
    otherNorms.length === 0 &&
    preIsNoop &&
    prepends === strips
  )
    return { kind: "llama", addSpacePrefix: prepends };
  throw new InputError(
    `${file}: this tokenizer (normalizer ${json(tok.normalizer).slice(0, 120)}, pre-tokenizer ${json(tok.pre_tokenizer).slice(0, 120)}, ` +
      `decoder ${json(tok.decoder).slice(0, 120)}) has no llama.cpp equivalent this exporter can write: only ` +
      `byte-level BPE (Llama 3, Qwen) and SentencePiece-style BPE (spaces to "▁", byte fallback, no pre-tokenizer) ` +
      `either without a prefix space (Gemma 3) or with the normalizer's Prepend("▁") undone by the decoder's ` +
      `Strip (Llama 2, CodeLlama) are supported`,
  );
}

/**
 * Vocabulary from tokenizer.json, as convert_hf_to_gguf.py writes it: _set_vocab_gpt2 for byte-level BPE,
 * _set_vocab_sentencepiece for Gemma 3 and Llama 2 / CodeLlama (scores derived from the merges, see below). Token ids past the
 * tokenizer's are padded with [PAD<i>] (UNUSED) up to the config's vocab_size, as the converter does.
 * Every loop over the vocabulary is linear: 262k tokens and 515k merges (Gemma 3) take about a second.
 */
function tokenizerJsonVocab(
  dir: string,
  cfg: ModelConfig,
  notes: string[],
  givenPre?: string,
): { md: [string, GgufValue][]; pre: string; kind: VocabKind } {
  const file = path.join(dir, "tokenizer.json");
  const tok = readJson(file);
  const model = tok.model;
  if (!isPlainObject(model) || model.type !== "BPE" || !isPlainObject(model.vocab)) {
    throw new InputError(
      `${file}: only BPE tokenizers are supported for GGUF export (model.type is ${isPlainObject(model) ? String(model.type) : "missing"})`,
    );
  }
  const { kind, addSpacePrefix } = vocabKind(tok, file);
  const configFile = path.join(dir, "tokenizer_config.json");
  const tcfg = fs.existsSync(configFile) ? readJson(configFile) : {};

  const byId = new Map<number, string>();
  // A loop, not Math.max(...ids): spreading 150k+ ids overflows the call stack.
  let maxId = -1;
  for (const [t, id] of Object.entries(model.vocab)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0)
      throw new InputError(`${file}: model.vocab["${t}"] is not a token id`);
    byId.set(id, t);
    if (id > maxId) maxId = id;
  }
  if (maxId >= cfg.vocabSize)
    throw new InputError(`${file}: token id ${maxId} is outside config vocab_size ${cfg.vocabSize}`);
  const added = new Map<number, { content: string; special: boolean }>();
  const beyond: string[] = [];
  for (const a of Array.isArray(tok.added_tokens) ? tok.added_tokens : []) {
    if (isPlainObject(a) && typeof a.id === "number" && typeof a.content === "string") {
      // Gemma 3 1B's tokenizer has <image_soft_token> at 262144, past its 262144 embeddings: the model can
      // neither read nor write such a token, so it is left out (as a vocabulary of vocab_size must).
      if (a.id >= cfg.vocabSize) {
        beyond.push(`${a.content} (${a.id})`);
        continue;
      }
      added.set(a.id, { content: a.content, special: a.special === true });
      byId.set(a.id, a.content);
    }
  }
  if (beyond.length > 0)
    notes.push(
      `${file}: added token(s) ${beyond.slice(0, 5).join(", ")} lie past vocab_size ${cfg.vocabSize} and are left out`,
    );

  const looksSpecial = (s: string) =>
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(s) ||
    (s.startsWith("<|") && s.endsWith("|>")) ||
    (s.startsWith("<unused") && s.endsWith(">"));
  const spm = kind === "llama";
  const isByte = (s: string) => spm && /^<0x[0-9A-F]{2}>$/.test(s);
  // Gemma 3 lists runs of "▁" (escaped spaces) as added tokens too; llama.cpp prints USER_DEFINED tokens
  // verbatim, so typed so they would come out as "▁▁▁▁" instead of indentation. The same ids are in
  // model.vocab, so as NORMAL tokens BPE still produces them and the detokenizer turns them back into spaces.
  const isSpaceRun = (s: string) => spm && /^▁+$/.test(s);
  const tokens: string[] = new Array(cfg.vocabSize);
  const types: number[] = new Array(cfg.vocabSize);
  for (let i = 0; i < cfg.vocabSize; i++) {
    const t = byId.get(i);
    const a = added.get(i);
    if (t === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.UNUSED;
    } else if (a) {
      tokens[i] = a.content;
      types[i] =
        a.special || looksSpecial(a.content)
          ? TOKEN_TYPE.CONTROL
          : isSpaceRun(a.content)
            ? TOKEN_TYPE.NORMAL
            : TOKEN_TYPE.USER_DEFINED;
    } else {
      tokens[i] = t;
      types[i] = isByte(t) ? TOKEN_TYPE.BYTE : TOKEN_TYPE.NORMAL;
    }
  }
  const rawMerges = Array.isArray(model.merges) ? model.merges : [];
  if (spm && givenPre !== undefined)
    throw new InputError(
      `--gguf-pre "${givenPre}": ${file} is a SentencePiece-style tokenizer, which llama.cpp reads without a pre-tokenizer`,
    );
  const pre = spm ? "default" : choosePre(tok, file, notes, givenPre);
  // llama.cpp's BPE tokenizer applies no normalizer, and the converter writes none: text the normalizer changes
  // (Qwen's NFC: a decomposed "é") reads other tokens there; said, as nothing here can carry it
  if (!spm && tok.normalizer !== null && tok.normalizer !== undefined)
    notes.push(
      `${file}: llama.cpp does not apply the tokenizer's normalizer (${JSON.stringify(tok.normalizer).slice(0, 80)}); ` +
        `text it would change (such as decomposed accents under NFC) tokenizes differently there`,
    );
  // SentencePiece merges the adjacent pair whose result scores highest, BPE the pair whose merge ranks first:
  // a token scores minus the rank of the first merge that makes it, so both pick the same pair. Longer tokens
  // no merge makes (BPE never produces them) score lowest. Checked against HF on real texts in the tests.
  let scores: number[] | null = null;
  if (spm) {
    scores = new Array<number>(cfg.vocabSize).fill(0);
    const made = new Uint8Array(cfg.vocabSize);
    for (let r = 0; r < rawMerges.length; r++) {
      const m = rawMerges[r];
      const id = (model.vocab as JsonObject)[Array.isArray(m) ? m.join("") : String(m).replace(" ", "")];
      if (typeof id === "number" && id < cfg.vocabSize && !made[id]) {
        made[id] = 1;
        scores[id] = -r;
      }
    }
    for (let i = 0; i < cfg.vocabSize; i++)
      if (!made[i] && types[i] === TOKEN_TYPE.NORMAL && [...tokens[i]!].length > 1) scores[i] = -1e9;
  }

  // Special tokens: tokenizer_config.json names them (SpecialVocab), config.json ids fill the gaps.
  const byContent = new Map<string, number>();
  for (const [id, a] of added) if (!byContent.has(a.content)) byContent.set(a.content, id);
  const idOf = (v: unknown): number | null => {
    const content =
      typeof v === "string" ? v : isPlainObject(v) && typeof v.content === "string" ? v.content : null;
    if (content === null) return null;
    const id = byContent.get(content) ?? (model.vocab as JsonObject)[content];
    return typeof id === "number" ? id : null;
  };
  const bos = idOf(tcfg.bos_token) ?? cfg.bosTokenId;
  const eos = idOf(tcfg.eos_token) ?? cfg.eosTokenIds[0] ?? null;
  const pad = idOf(tcfg.pad_token) ?? cfg.padTokenId;
  const unk = spm ? (idOf(model.unk_token) ?? idOf(tcfg.unk_token)) : null;

  const md: [string, GgufValue][] = [
    ["tokenizer.ggml.model", gguf.str(kind)],
    ["tokenizer.ggml.pre", gguf.str(pre)],
    ["tokenizer.ggml.tokens", gguf.arr("string", tokens)],
    ...(scores ? ([["tokenizer.ggml.scores", gguf.arr("float32", scores)]] as [string, GgufValue][]) : []),
    ["tokenizer.ggml.token_type", gguf.arr("int32", types)],
    ...(scores
      ? []
      : ([
          [
            "tokenizer.ggml.merges",
            gguf.arr(
              "string",
              rawMerges.map((m) => (Array.isArray(m) ? m.join(" ") : String(m))),
            ),
          ],
        ] as [string, GgufValue][])),
    ...specialIds(cfg, bos, eos, pad),
  ];
  if (unk !== null) md.push(["tokenizer.ggml.unknown_token_id", gguf.u32(unk)]);
  // add_bos_token: tokenizer_config.json, else whether the post-processor template starts with the BOS token.
  let addBos: boolean | null = typeof tcfg.add_bos_token === "boolean" ? tcfg.add_bos_token : null;
  if (addBos === null && bos !== null)
    addBos = JSON.stringify(tok.post_processor ?? null).includes(
      `{"SpecialToken":{"id":${JSON.stringify(byId.get(bos))}`,
    );
  if (addBos !== null) md.push(["tokenizer.ggml.add_bos_token", gguf.bool(addBos)]);
  if (typeof tcfg.add_eos_token === "boolean")
    md.push(["tokenizer.ggml.add_eos_token", gguf.bool(tcfg.add_eos_token)]);
  // llama.cpp's default for "llama" is true; written either way, as the converter's Gemma3Model writes false
  if (spm) md.push(["tokenizer.ggml.add_space_prefix", gguf.bool(addSpacePrefix)]);

  // as transformers renders them (\r\n read as \n); the named ones as gguf-py's add_chat_template writes a list:
  // tokenizer.chat_template.<name> each (the name's other characters than letters and digits as "_") and their
  // names in tokenizer.chat_templates, which llama.cpp's llama_model_chat_template(model, name) reads
  const template = chatTemplateText(path.join(dir, "chat_template.jinja"), tcfg);
  if (template !== null) md.push(["tokenizer.chat_template", gguf.str(template)]);
  const named = new Map<string, string>();
  for (const [name, text] of namedChatTemplates(dir, tcfg))
    named.set([...name].map((c) => (/[A-Za-z0-9]/.test(c) ? c : "_")).join(""), text);
  for (const [name, text] of named) md.push([`tokenizer.chat_template.${name}`, gguf.str(text)]);
  if (named.size > 0) md.push(["tokenizer.chat_templates", gguf.arr("string", [...named.keys()])]);
  return { md, pre, kind };
}

// ---------------------------------------------------------------------------------------------
// Export

interface PlannedTensor {
  name: string;
  shape: number[];
  /**
   * Float values of rows [r0, r1) (a row: one index of the outermost dimension) after every transformation
   * (permute, norm shift), made when asked for: in the front of `into` where it is given (a scratch array whose
   * earlier values the caller no longer needs), else in a fresh array.
   */
  rows: (r0: number, r1: number, into?: Float32Array) => Float32Array;
  /** Source bytes that can be copied as they are when no conversion is needed. */
  passthrough?: { type: GgmlType; bytes: Uint8Array };
  /**
   * A 16-bit source with no arithmetic to do (at most rows permuted): the raw bits of rows [r0, r1), in the front of
   * `into` where given (as for `rows`), else a fresh array, which a 16-bit target maps value by value through a table
   * (bf16 -> f16, the common export) and q8_0 quantizes from bfloat16 as it is.
   */
  bits16?: { dtype: "BF16" | "F16"; rows: (r0: number, r1: number, into?: Uint16Array) => Uint16Array };
}

const tables16 = new Map<string, Uint16Array>();
/**
 * `type`'s bits for each of the 65,536 bit patterns of a `from` value: the float32 value (exact) converted by the
 * same function as any other, so a lookup gives the same bytes as converting through float32.
 */
function table16(from: "BF16" | "F16", type: "F16" | "BF16"): Uint16Array {
  const key = `${from}>${type}`;
  let table = tables16.get(key);
  if (!table) {
    const values = new Float32Array(65536);
    if (from === "BF16") {
      const bits = new Int32Array(values.buffer);
      for (let h = 0; h < 65536; h++) bits[h] = h << 16;
    } else values.set(f16Table());
    const bytes = encode(type, values);
    table = new Uint16Array(bytes.buffer, bytes.byteOffset, 65536);
    tables16.set(key, table);
  }
  return table;
}

function targetType(name: string, shape: number[], outtype: GgufOutType, notes: string[]): GgmlType {
  // Most of llama.cpp handles 1-D tensors and norms only in F32 (the converter keeps them F32).
  if (shape.length <= 1 || name.endsWith("_norm.weight")) return "F32";
  switch (outtype) {
    case "f32":
      return "F32";
    case "f16":
      return "F16";
    case "bf16":
      return "BF16";
    case "q8_0":
      if (shape[shape.length - 1]! % 32 !== 0) {
        notes.push(`${name}: rows of ${shape[shape.length - 1]} are not a multiple of 32, written as F16`);
        return "F16";
      }
      return "Q8_0";
  }
}

function encode(type: GgmlType, v: Float32Array): Uint8Array {
  switch (type) {
    case "F32":
      return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    case "F16":
      return f32ToF16Bytes(v);
    case "BF16":
      return f32ToBf16Bytes(v);
    case "Q8_0":
      return quantizeQ8_0(v);
  }
}

/**
 * Rows are converted about this many values at a time (4 MiB of float32; 2 MiB of f16 written): a stop waits for
 * one such part (milliseconds), not for a whole embedding (seconds), and the memory of a conversion is the part's,
 * not a whole converted tensor's beside its float32 values.
 */
export const CONVERT_CHUNK_VALUES = 1 << 20;

/**
 * `p` encoded as `type`, in parts of whole rows of about CONVERT_CHUNK_VALUES values, each made when asked for; an F16
 * part's values beyond float16's range (written as inf) counted in `overflow`.
 */
function* encodedParts(
  p: PlannedTensor,
  type: GgmlType,
  overflow: F16OverflowCounter,
): Generator<Uint8Array> {
  const rows = p.shape[0] ?? 1;
  const cols = p.shape.slice(1).reduce((a, b) => a * b, 1);
  // whole rows, so that q8_0's blocks (along the innermost dimension) are never split
  const step = Math.max(1, Math.floor(CONVERT_CHUNK_VALUES / Math.max(1, cols)));
  if (p.bits16 && (type === "F16" || type === "BF16")) {
    const table = table16(p.bits16.dtype, type);
    for (let r = 0; r < rows; r += step) {
      const part = p.bits16.rows(r, Math.min(rows, r + step));
      for (let i = 0; i < part.length; i++) {
        const b = part[i]!;
        const h = table[b]!;
        part[i] = h;
        // a finite bfloat16 (F16 sources map onto F16 one to one) beyond float16's range
        if ((h & 0x7fff) === 0x7c00 && (b & 0x7fff) < 0x7f80 && type === "F16")
          overflow.add(p.name, bf16BitsToF32(b));
      }
      yield new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
    }
    return;
  }
  if (p.bits16?.dtype === "BF16" && type === "Q8_0") {
    // quantized from the bfloat16 bits (the addon's, without a float32 copy of each part): the same bytes
    const scratch = new Uint16Array(Math.min(rows, step) * cols);
    for (let r = 0; r < rows; r += step)
      yield quantizeQ8_0Bf16(p.bits16.rows(r, Math.min(rows, r + step), scratch));
    return;
  }
  // The parts' float32 values go through one scratch array where the bytes written are a conversion of them (every
  // type but F32, whose bytes are the values themselves): a fresh 4 MiB array per part, touched page by page and left
  // to the collector, cost more than converting it (BENCHMARKS.md "GGUF export to q8_0").
  const scratch = type === "F32" ? undefined : new Float32Array(Math.min(rows, step) * cols);
  for (let r = 0; r < rows; r += step)
    yield encodeCounted(p.name, type, p.rows(r, Math.min(rows, r + step), scratch), overflow);
}

/** encode, an F16 target's values beyond float16's range counted in `overflow` under `name`. */
function encodeCounted(
  name: string,
  type: GgmlType,
  v: Float32Array,
  overflow: F16OverflowCounter,
): Uint8Array {
  const bytes = encode(type, v);
  if (type === "F16") overflow.count(name, f16Bits(bytes), (i) => v[i]!);
  return bytes;
}

/** A GGUF export worked out and checked, not yet written: `spec` for writeGguf or ggufPieces, and what it holds. */
export interface GgufExportPlan<R> {
  spec: GgufWriteSpec;
  result: Omit<R, "file">;
}

/** Export `modelDir` (a HF folder with config.json and safetensors) to the GGUF file `outFile`. */
export function exportGguf(modelDir: string, outFile: string, opts: ExportGgufOptions): ExportGgufResult {
  const { spec, result } = planGgufExport(modelDir, opts);
  writeGguf(outFile, spec);
  return { file: outFile, ...result };
}

/**
 * exportGguf without the writing: every check made and the file's layout fixed, the tensors still to be converted
 * (each when a writer reaches it). The CLI writes it with a stop on Ctrl-C (publishFileAsync + ggufPieces).
 */
export function planGgufExport(modelDir: string, opts: ExportGgufOptions): GgufExportPlan<ExportGgufResult> {
  if (!(opts.outtype in FILE_TYPE))
    throw new InputError(`outtype "${opts.outtype}" is not one of f32, f16, bf16, q8_0`);
  // Without the model's own vocabulary llama.cpp would read other tokens than the model was trained on.
  checkModelDir(modelDir);
  if (!fs.existsSync(path.join(modelDir, "tokenizer.json")))
    throw new InputError(
      `${modelDir}: no tokenizer.json; GGUF export needs the model's tokenizer (copy tokenizer.json and tokenizer_config.json from the base model)`,
    );
  // config and weights checked against each other (names, shapes, dtypes, finite values) before any work
  const { config: cfg, weights } = inspectModelFolder(modelDir);
  const arch = ARCH[cfg.family];
  if (!arch)
    throw new InputError(
      `${path.join(modelDir, "config.json")}: model family ${String(cfg.family)} cannot be exported to GGUF`,
    );
  const notes: string[] = [];
  if (opts.pre !== undefined && !/^[a-z0-9][a-z0-9._-]*$/.test(opts.pre))
    throw new InputError(
      `--gguf-pre "${opts.pre}": a llama.cpp pre-tokenizer name (lowercase letters, digits, . _ -)`,
    );
  const { md: vocabMd, pre, kind } = tokenizerJsonVocab(modelDir, cfg, notes, opts.pre);
  const source = modelDir;

  const planned: PlannedTensor[] = [];
  if (cfg.family === "llama" && cfg.ropeScaling.type === "llama3") {
    const factors = llama3RopeFactors(cfg);
    planned.push({
      name: "rope_freqs.weight",
      shape: [factors.length],
      rows: (r0, r1) => factors.subarray(r0, r1),
    });
  }
  const qFold = cfg.family === "gemma3" ? cfg.attnScale / llamaCppGemma3Scale(cfg) : 1;
  const seen = new Set<string>();
  let visionTensors = 0;
  for (const [rawName, t] of weights.tensors) {
    const name = textModelName(rawName);
    if (name === null) visionTensors++;
    if (name === null || name.endsWith(".rotary_emb.inv_freq")) continue;
    let out: string | null = null;
    const layer = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
    if (layer) {
      const inner = layerTensorName(cfg, layer[2]!);
      out = inner === null ? null : `blk.${layer[1]}.${inner}`;
    } else if (name === "model.embed_tokens.weight") out = "token_embd.weight";
    else if (name === "model.norm.weight") out = "output_norm.weight";
    else if (name === "lm_head.weight") {
      if (cfg.tieWordEmbeddings) continue; // tied: llama.cpp reuses token_embd
      out = "output.weight";
    }
    if (out === null)
      throw new InputError(`${source}: tensor ${rawName} has no GGUF counterpart for ${arch}`);
    if (seen.has(out)) throw new InputError(`${source}: two tensors map to ${out}`);
    seen.add(out);

    const hfLeaf = name;
    const isQ = /self_attn\.q_proj\.(weight|bias)$/.test(hfLeaf);
    const isK = /self_attn\.k_proj\.(weight|bias)$/.test(hfLeaf);
    const permute = cfg.family === "llama" && (isQ || isK);
    const normShift = cfg.normOnePlus && hfLeaf.endsWith("norm.weight"); // Gemma3RMSNorm: (1 + w)
    const fold =
      cfg.family === "gemma3" && hfLeaf.endsWith("self_attn.q_norm.weight") && Math.abs(qFold - 1) > 1e-7;
    const shape = [...t.shape];
    const cols = shape.slice(1).reduce((a, b) => a * b, 1);
    // output rows [r0, r1) as runs of source elements [from, to) placed at `at`: one run, or, permuted (permuteQK
    // row by row), one per row, output row dst being source row permutedRows(dst)
    const readRows = (r0: number, r1: number, read: (from: number, to: number, at: number) => void): void => {
      if (!permute) return read(r0 * cols, r1 * cols, 0);
      const src = permutedRows(shape[0]!, isQ ? cfg.numHeads : cfg.numKvHeads);
      for (let dst = r0; dst < r1; dst++) read(src(dst) * cols, (src(dst) + 1) * cols, (dst - r0) * cols);
    };
    const rows = (r0: number, r1: number, into?: Float32Array): Float32Array => {
      const v = into ? into.subarray(0, (r1 - r0) * cols) : new Float32Array((r1 - r0) * cols);
      readRows(r0, r1, (from, to, at) => readValues(t, from, to, v, at, source));
      if (normShift) for (let i = 0; i < v.length; i++) v[i] = v[i]! + 1;
      if (fold) for (let i = 0; i < v.length; i++) v[i] = v[i]! * qFold;
      return v;
    };
    const untouched = !permute && !normShift && !fold;
    const half = t.dtype === "BF16" || t.dtype === "F16" ? t.dtype : null;
    const bits16 = (r0: number, r1: number, into?: Uint16Array): Uint16Array => {
      const v = into ? into.subarray(0, (r1 - r0) * cols) : new Uint16Array((r1 - r0) * cols);
      readRows(r0, r1, (from, to, at) =>
        v.set(
          typed(t.data.subarray(from * 2, to * 2), 2, (b, o, m) => new Uint16Array(b, o, m)),
          at,
        ),
      );
      return v;
    };
    planned.push({
      name: out,
      shape,
      rows,
      bits16: half && !normShift && !fold ? { dtype: half, rows: bits16 } : undefined,
      passthrough:
        untouched && (t.dtype === "F32" || t.dtype === "BF16" || t.dtype === "F16")
          ? { type: t.dtype, bytes: t.data }
          : undefined,
    });
  }
  // llama.cpp keeps a multimodal model's image side in a second file (a "mmproj" GGUF, which its
  // convert_hf_to_gguf.py --mmproj writes); this file is the text model alone, a text-only Gemma 3 to llama.cpp
  if (visionTensors > 0)
    notes.push(
      `${source}: the text model only; the vision tower and projector (${visionTensors} tensors) are not written (llama.cpp reads them from a separate mmproj GGUF: convert_hf_to_gguf.py --mmproj on the hardened folder, whose vision tensors are the base model's)`,
    );
  for (const required of ["token_embd.weight", "output_norm.weight"]) {
    if (!seen.has(required)) throw new InputError(`${source}: the checkpoint has no tensor for ${required}`);
  }
  if (!cfg.tieWordEmbeddings && !seen.has("output.weight")) {
    throw new InputError(
      `${source}: config says tie_word_embeddings is false but there is no lm_head.weight`,
    );
  }

  const overflow = new F16OverflowCounter();
  const tensors: GgufTensorSpec[] = planned.map((p) => {
    const type = targetType(p.name, p.shape, opts.outtype, notes);
    return {
      name: p.name,
      type,
      shape: p.shape,
      data: () =>
        p.passthrough && p.passthrough.type === type ? p.passthrough.bytes : encodedParts(p, type, overflow),
    };
  });

  const metadata: [string, GgufValue][] = [
    ["general.architecture", gguf.str(arch)],
    ["general.type", gguf.str("model")],
    ["general.name", gguf.str(opts.name ?? path.basename(path.resolve(modelDir)))],
    ...archMetadata(cfg, arch, notes),
    ["general.file_type", gguf.u32(FILE_TYPE[opts.outtype])],
    ["general.quantization_version", gguf.u32(GGML_QUANT_VERSION)],
    ...vocabMd,
  ];
  return {
    // the tensors are views of the mapped weight files: one written into meanwhile may have given mixed bytes
    spec: { metadata, tensors, finish: () => weightsUnchanged(weights, "the GGUF export") },
    result: {
      arch,
      tensorCount: tensors.length,
      vocab: "tokenizer.json",
      tokenizerModel: kind,
      pre,
      notes,
      f16Overflow: overflow.found,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// LoRA adapters (llama.cpp's convert_lora_to_gguf.py layout)

/** One LoRA module: y += scale · B·A·x on the HF linear `module` (e.g. "model.layers.0.self_attn.q_proj"). */
export interface LoraModuleForGguf {
  module: string;
  /** lora_A, [rank, in] row-major. */
  a: Float32Array;
  /** lora_B, [out, rank] row-major. */
  b: Float32Array;
  rank: number;
  /** PEFT's scaling of this module (alpha/r, or alpha/√r with rsLoRA, with its own r and alpha). */
  scale: number;
}

export interface ExportLoraGgufResult {
  file: string;
  arch: string;
  tensorCount: number;
  notes: string[];
  /** as ExportGgufResult's */
  f16Overflow: F16Overflow[];
}

/**
 * Write a LoRA adapter for the GGUF of `baseDir` as llama.cpp loads it (llama_adapter_lora_init): general.type
 * "adapter", adapter.type "lora", tensors "<base tensor>.lora_a" ([rank, in]) and ".lora_b" ([out, rank]),
 * with the base export's Q/K row permutation applied to lora_b's rows for the llama architecture.
 *
 * Scaling: llama.cpp scales every module by adapter.lora.alpha / (that module's rank), one alpha for all, or
 * by 1 when alpha is 0. PEFT's per-module scaling (rank_pattern, alpha_pattern, rsLoRA) cannot be written as
 * one alpha, so alpha is 0 and each module's scale is folded into its lora_b: the product is PEFT's exactly.
 * (convert_lora_to_gguf.py writes the config's lora_alpha and so gets patterned or rsLoRA adapters wrong.)
 */
export function exportLoraGguf(
  baseDir: string,
  outFile: string,
  modules: readonly LoraModuleForGguf[],
  opts: { outtype?: "f32" | "f16" | "bf16"; name?: string } = {},
): ExportLoraGgufResult {
  const { spec, result } = planLoraGgufExport(baseDir, modules, opts);
  writeGguf(outFile, spec);
  return { file: outFile, ...result };
}

/** exportLoraGguf without the writing (see planGgufExport). */
export function planLoraGgufExport(
  baseDir: string,
  modules: readonly LoraModuleForGguf[],
  opts: { outtype?: "f32" | "f16" | "bf16"; name?: string } = {},
): GgufExportPlan<ExportLoraGgufResult> {
  const outtype = opts.outtype ?? "f32";
  if (!["f32", "f16", "bf16"].includes(outtype))
    throw new InputError(`LoRA GGUF outtype "${outtype}" is not one of f32, f16, bf16`);
  const { config: cfg, weights } = inspectModelFolder(baseDir);
  const arch = ARCH[cfg.family];
  const shapeOf = new Map<string, number[]>();
  for (const [raw, t] of weights.tensors) {
    const n = textModelName(raw);
    if (n !== null) shapeOf.set(n, t.shape);
  }
  const notes: string[] = [];
  const overflow = new F16OverflowCounter();
  const tensors: GgufTensorSpec[] = [];
  const seen = new Set<string>();
  for (const m of modules) {
    const layer = /^model\.layers\.(\d+)\.(.+)$/.exec(m.module);
    const inner = layer ? layerTensorName(cfg, `${layer[2]}.weight`) : null;
    const shape = shapeOf.get(`${m.module}.weight`);
    if (!layer || inner === null || !shape || shape.length !== 2)
      throw new InputError(`${baseDir}: LoRA module ${m.module} is not a linear layer of this ${arch} model`);
    const [out, inn] = shape as [number, number];
    if (m.a.length !== m.rank * inn || m.b.length !== out * m.rank)
      throw new InputError(
        `LoRA module ${m.module}: A has ${m.a.length} values and B ${m.b.length}, expected [${m.rank}, ${inn}] and [${out}, ${m.rank}]`,
      );
    const name = `blk.${layer[1]}.${inner}`;
    if (seen.has(name)) throw new InputError(`two LoRA modules map to ${name}`);
    seen.add(name);
    const isQ = /self_attn\.q_proj$/.test(m.module);
    const isK = /self_attn\.k_proj$/.test(m.module);
    let b = m.b;
    if (m.scale !== 1) b = b.map((x) => x * m.scale);
    if (cfg.family === "llama" && (isQ || isK))
      b = permuteQK(b, out, m.rank, isQ ? cfg.numHeads : cfg.numKvHeads);
    const type: GgmlType = outtype === "f32" ? "F32" : outtype === "f16" ? "F16" : "BF16";
    const a = m.a;
    const bb = b;
    tensors.push(
      {
        name: `${name}.lora_a`,
        type,
        shape: [m.rank, inn],
        data: () => encodeCounted(`${name}.lora_a`, type, a, overflow),
      },
      {
        name: `${name}.lora_b`,
        type,
        shape: [out, m.rank],
        data: () => encodeCounted(`${name}.lora_b`, type, bb, overflow),
      },
    );
  }
  if (tensors.length === 0) throw new InputError("a LoRA adapter needs at least one module");
  const metadata: [string, GgufValue][] = [
    ["general.architecture", gguf.str(arch)],
    ["general.type", gguf.str("adapter")],
    ["general.name", gguf.str(opts.name ?? `${path.basename(path.resolve(baseDir))}-lora`)],
    ["adapter.type", gguf.str("lora")],
    // 0: llama.cpp applies each module with scale 1; the PEFT scaling is already in lora_b (see above).
    ["adapter.lora.alpha", gguf.f32(0)],
    ["general.file_type", gguf.u32(FILE_TYPE[outtype])],
    ["general.quantization_version", gguf.u32(GGML_QUANT_VERSION)],
  ];
  return {
    spec: { metadata, tensors },
    result: { arch, tensorCount: tensors.length, notes, f16Overflow: overflow.found },
  };
}
