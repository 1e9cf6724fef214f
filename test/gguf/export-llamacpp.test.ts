/**
 * The real check of the GGUF export: each fixture family exported to GGUF and run by llama.cpp
 * (node-llama-cpp, CPU, f32 KV cache, flash attention off) must reproduce the PyTorch references in
 * test/fixtures/<family>/cases.json.gz: identical greedy tokens, logits within 1e-4 (gemma3: 2e-3, because
 * llama.cpp's CPU GELU goes through an f16 table).
 */
import { readFixtureJson } from "../fixture-json.js";
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { exportGguf, permuteQK, type GgufOutType } from "../../src/io/export-gguf.js";
import { ggufMeta, ggufTensorBytes, readGguf, tensorToF32 } from "../../src/io/gguf.js";
import { openLlamaCppBackend, type LlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { fixtureWithTokenizer } from "./fixture-tokenizer.js";

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/test/gguf -> repository root
const fixtures = path.resolve(here, "../../../test/fixtures");
const tmpDir = scratchDir("gguf-export-");
after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

interface Cases {
  greedy: { prompt_ids: number[]; new_token_ids: number[]; step_logits: number[][] };
  incremental_decode: { input_ids: number[]; prefill_len: number; logits_positions_4_to_12: number[][] };
}
const FAMILIES = ["llama", "qwen2", "qwen3", "gemma3"] as const;
const TOL: Record<string, number> = { llama: 1e-4, qwen2: 1e-4, qwen3: 1e-4, gemma3: 2e-3 };

function loadCases(family: string): Cases {
  return readFixtureJson(path.join(fixtures, family, "cases.json.gz")) as Cases;
}

function maxAbsDiff(rows: Float32Array[], expected: number[][]): number {
  assert.equal(rows.length, expected.length);
  let m = 0;
  rows.forEach((r, i) => {
    assert.equal(r.length, expected[i]!.length);
    for (let j = 0; j < r.length; j++) m = Math.max(m, Math.abs(r[j]! - Math.fround(expected[i]![j]!)));
  });
  return m;
}

async function withBackend<T>(file: string, fn: (b: LlamaCppBackend) => Promise<T>): Promise<T> {
  const b = await openLlamaCppBackend({ modelPath: file, contextSize: 64, threads: 1 }); // one thread: the models are tiny and thread spin-up dominates;
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

/** The fixture folder (or one of its variants) with a byte-level tokenizer beside it, made once. */
const withTok = new Map<string, string>();
function fixtureDir(family: string, variant = ""): string {
  const key = `${family}/${variant}`;
  if (!withTok.has(key))
    withTok.set(
      key,
      fixtureWithTokenizer(
        path.join(fixtures, family, variant),
        path.join(tmpDir, `${family}-${variant || "main"}`),
      ),
    );
  return withTok.get(key)!;
}

function exportFamily(family: string, outtype: GgufOutType, variant = ""): string {
  const file = path.join(tmpDir, `${family}-${variant || "main"}-${outtype}.gguf`);
  exportGguf(fixtureDir(family, variant), file, { outtype });
  return file;
}

test("permuteQK interleaves the two halves of each head", () => {
  // 2 heads of dim 4, one column: head rows [a0 a1 b0 b1] -> [a0 b0 a1 b1]
  const v = new Float32Array([0, 1, 2, 3, 10, 11, 12, 13]);
  assert.deepEqual(Array.from(permuteQK(v, 8, 1, 2)), [0, 2, 1, 3, 10, 12, 11, 13]);
});

test("gemma3 export: metadata fixes and norm weights", () => {
  const file = exportFamily("gemma3", "f32");
  const g = readGguf(file);
  assert.equal(ggufMeta(g, "general.architecture"), "gemma3");
  assert.deepEqual(ggufMeta(g, "gemma3.attention.sliding_window_pattern"), [true, false, true, false]);
  assert.equal(ggufMeta(g, "gemma3.attention.sliding_window"), 6);
  assert.equal(ggufMeta(g, "gemma3.rope.freq_base_swa"), 10000);
  assert.equal(ggufMeta(g, "gemma3.rope.scaling.type"), "linear");
  assert.equal(ggufMeta(g, "gemma3.rope.scaling.factor"), 8);
  assert.equal(
    g.tensors.some((t) => t.name === "output.weight"),
    false,
  ); // tied
  assert.equal((ggufMeta(g, "tokenizer.ggml.tokens") as string[]).length, 512); // padded to vocab_size
  // Norms are stored as 1 + w; attn_q_norm also carries sqrt(head_dim / query_pre_attn_scalar) = sqrt(32/24).
  const st = JSON.parse(fs.readFileSync(path.join(fixtures, "gemma3", "config.json"), "utf8")) as {
    head_dim: number;
    query_pre_attn_scalar: number;
  };
  const fold = Math.sqrt(st.head_dim / st.query_pre_attn_scalar);
  const kNorm = tensorToF32("F32", ggufTensorBytes(g, "blk.0.attn_k_norm.weight"));
  const qNorm = tensorToF32("F32", ggufTensorBytes(g, "blk.0.attn_q_norm.weight"));
  const raw = readRawTensor(path.join(fixtures, "gemma3", "model.safetensors"));
  const wq = raw("model.layers.0.self_attn.q_norm.weight");
  const wk = raw("model.layers.0.self_attn.k_norm.weight");
  for (let i = 0; i < 32; i++) {
    assert.ok(Math.abs(kNorm[i]! - (1 + wk[i]!)) < 1e-6);
    assert.ok(Math.abs(qNorm[i]! - (1 + wq[i]!) * fold) < 1e-6);
  }
});

test("llama export: llama3 rope_freqs and untied output", () => {
  const g = readGguf(exportFamily("llama", "f32"));
  const factors = tensorToF32("F32", ggufTensorBytes(g, "rope_freqs.weight"));
  // Llama 3.1 scaling with theta 5e5, head_dim 16, factor 8, low 1, high 4, original 8192, worked out by hand:
  // freq_i = 5e5^(-i/8); wavelength 2*pi/freq_i; < 2048 -> 1, > 8192 -> 8, else smooth interpolation.
  const expected = Array.from({ length: 8 }, (_, i) => {
    const wl = (2 * Math.PI) / 500000 ** (-i / 8);
    if (wl < 2048) return 1;
    if (wl > 8192) return 8;
    const s = (8192 / wl - 1) / 3;
    return 1 / ((1 - s) / 8 + s);
  });
  factors.forEach((f, i) =>
    assert.ok(Math.abs(f - expected[i]!) < 1e-5 * expected[i]!, `factor ${i}: ${f} vs ${expected[i]}`),
  );
  assert.equal(factors.filter((f) => f !== 1).length, 4); // the fixture README: it changes 4 of the 8 frequencies
  assert.ok(g.tensors.some((t) => t.name === "output.weight"));
  assert.equal(ggufMeta(g, "llama.rope.dimension_count"), 16);
});

for (const family of FAMILIES) {
  test(`${family}: f32 GGUF in llama.cpp reproduces greedy tokens and logits`, async () => {
    const cases = loadCases(family);
    const file = exportFamily(family, "f32");
    await withBackend(file, async (b) => {
      const ids = await b.generateTokens(cases.greedy.prompt_ids, { maxNewTokens: 8 });
      assert.deepEqual(ids, cases.greedy.new_token_ids);

      // step logits: prefill the prompt, then feed each chosen token through the KV cache
      const steps = await b.logits([...cases.greedy.prompt_ids, ...cases.greedy.new_token_ids.slice(0, 7)], {
        prefill: cases.greedy.prompt_ids.length,
      });
      const stepDiff = maxAbsDiff(steps.slice(cases.greedy.prompt_ids.length - 1), cases.greedy.step_logits);
      assert.ok(stepDiff <= TOL[family]!, `greedy step logits differ by ${stepDiff}`);

      const inc = cases.incremental_decode;
      const rows = await b.logits(inc.input_ids, { prefill: inc.prefill_len });
      const incDiff = maxAbsDiff(rows.slice(4), inc.logits_positions_4_to_12);
      assert.ok(incDiff <= TOL[family]!, `incremental-decode logits differ by ${incDiff}`);
    });
  });
}

for (const outtype of ["bf16", "q8_0"] as const) {
  test(`${outtype} exports load and greedy-decode in llama.cpp`, async () => {
    for (const family of FAMILIES) {
      const cases = loadCases(family);
      const file = exportFamily(family, outtype);
      const g = readGguf(file);
      const want = outtype === "bf16" ? "BF16" : "Q8_0";
      assert.equal(g.tensors.find((t) => t.name === "blk.0.ffn_up.weight")?.type, want);
      assert.equal(g.tensors.find((t) => t.name === "blk.0.attn_norm.weight")?.type, "F32"); // norms stay f32
      await withBackend(file, async (b) => {
        const ids = await b.generateTokens(cases.greedy.prompt_ids, { maxNewTokens: 8 });
        assert.equal(ids.length, 8);
        if (outtype === "bf16") {
          // bf16 rounding moves logits by ~1e-2; the greedy margins (>= 0.014) may not all survive, the first does.
          assert.equal(ids[0], cases.greedy.new_token_ids[0], `${family}: first bf16 token`);
        } else {
          assert.equal(ids[0], cases.greedy.new_token_ids[0], `${family}: first q8_0 token`);
        }
      });
    }
  });
}

test("bf16 checkpoint folder exports bf16 weights without re-rounding", () => {
  const dir = path.join(fixtures, "llama", "model-bf16");
  const file = exportFamily("llama", "bf16", "model-bf16");
  const g = readGguf(file);
  const raw = readRawTensorBytes(path.join(dir, "model.safetensors"));
  assert.deepEqual(
    Buffer.from(ggufTensorBytes(g, "blk.0.ffn_up.weight")),
    raw("model.layers.0.mlp.up_proj.weight"),
  );
});

// Minimal independent safetensors reading for the checks above (8-byte header length, JSON header, data).
function readRawTensorBytes(file: string): (name: string) => Buffer {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<
    string,
    { data_offsets: [number, number] }
  >;
  return (name) => {
    const [a, b] = header[name]!.data_offsets;
    return buf.subarray(8 + n + a, 8 + n + b);
  };
}
function readRawTensor(file: string): (name: string) => Float32Array {
  const bytes = readRawTensorBytes(file);
  return (name) => {
    const b = bytes(name);
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
}
