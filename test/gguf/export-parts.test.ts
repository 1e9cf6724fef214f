/**
 * A GGUF export converts each tensor in parts of whole rows (about CONVERT_CHUNK_VALUES values each), made only when
 * the writer asks for them, with a stop mark between parts: a stop (Ctrl-C) inside the largest tensor ends the write
 * after one part's conversion instead of the whole tensor's, and a conversion never holds a whole converted tensor.
 * The parts put together are the whole tensor converted at once (permuted Q/K rows included), for every outtype.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { InterruptedError } from "../../src/errors.js";
import { publishFileAsync } from "../../src/io/atomic.js";
import {
  CONVERT_CHUNK_VALUES,
  permuteQK,
  planGgufExport,
  type GgufOutType,
} from "../../src/io/export-gguf.js";
import {
  f32ToBf16Bytes,
  f32ToF16Bytes,
  ggufPieces,
  ggufTensorBytes,
  quantizeQ8_0,
  readGguf,
  writeGguf,
  type GgufTensorSpec,
} from "../../src/io/gguf.js";
import { writeModelWeights, type TensorToWrite } from "../../src/io/safetensors.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const work = scratchDir("gv-export-parts-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

const H = 256;
const V = 16384; // token_embd: 4 × CONVERT_CHUNK_VALUES values
const HEADS = 4;
const KV = 2;
const HD = H / HEADS;

/** Seeded bf16 values (N(0,1)-ish via a sum of uniforms, times 0.02) as raw bytes and as float32 values. */
function bf16Random(n: number, seed: number): { bytes: Uint8Array; values: Float32Array } {
  const bits = new Uint16Array(n);
  const values = new Float32Array(n);
  const u32 = new Uint32Array(values.buffer);
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  for (let i = 0; i < n; i++) {
    values[i] = (rnd() + rnd() + rnd() - 1.5) * 0.04;
    bits[i] = u32[i]! >>> 16; // truncated: a bf16 value, exact in float32 below
    u32[i] = bits[i]! << 16;
  }
  return { bytes: new Uint8Array(bits.buffer), values };
}

/** A one-layer llama checkpoint with a 16,384 × 256 bf16 embedding (the tiny model's tokenizer, ids padded). */
function model(): { dir: string; values: Map<string, Float32Array> } {
  const dir = makeTinyChatModel({ layers: 1 }).dir;
  for (const f of fs.readdirSync(dir)) if (f.endsWith(".safetensors")) fs.rmSync(path.join(dir, f));
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  Object.assign(cfg, {
    hidden_size: H,
    intermediate_size: 2 * H,
    num_attention_heads: HEADS,
    num_key_value_heads: KV,
    head_dim: HD,
    vocab_size: V,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
  });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(cfg, null, 2));
  const shapes: [string, number[]][] = [
    ["model.embed_tokens.weight", [V, H]],
    ["model.layers.0.self_attn.q_proj.weight", [H, H]],
    ["model.layers.0.self_attn.k_proj.weight", [KV * HD, H]],
    ["model.layers.0.self_attn.v_proj.weight", [KV * HD, H]],
    ["model.layers.0.self_attn.o_proj.weight", [H, H]],
    ["model.layers.0.mlp.gate_proj.weight", [2 * H, H]],
    ["model.layers.0.mlp.up_proj.weight", [2 * H, H]],
    ["model.layers.0.mlp.down_proj.weight", [H, 2 * H]],
    ["model.layers.0.input_layernorm.weight", [H]],
    ["model.layers.0.post_attention_layernorm.weight", [H]],
    ["model.norm.weight", [H]],
  ];
  const values = new Map<string, Float32Array>();
  const tensors: TensorToWrite[] = shapes.map(([name, shape], i) => {
    const r = bf16Random(
      shape.reduce((a, b) => a * b, 1),
      i + 1,
    );
    values.set(name, r.values);
    return { name, dtype: "BF16", shape, data: r.bytes };
  });
  writeModelWeights(dir, tensors);
  return { dir, values };
}

const ckpt = model();

/** The bytes of each tensor's parts, in writing order, and the stop marks seen between parts of one tensor. */
function parts(outtype: GgufOutType): { parts: Map<string, Uint8Array[]>; inner: Map<string, string[]> } {
  const plan = planGgufExport(ckpt.dir, { outtype });
  const out = new Map<string, Uint8Array[]>();
  const inner = new Map<string, string[]>();
  let current = "";
  for (const p of ggufPieces(plan.spec)) {
    if (!(p instanceof Uint8Array)) {
      const m = /^tensor (\S+) \(/.exec(p.stopMark);
      if (m) {
        current = m[1]!;
        out.set(current, []);
        inner.set(current, []);
      } else inner.get(current)!.push(p.stopMark);
      continue;
    }
    if (current && p.byteLength > 0 && !(p.every((b) => b === 0) && p.byteLength < 32))
      out.get(current)!.push(p);
  }
  return { parts: out, inner };
}

const BYTES_PER_VALUE: Record<GgufOutType, number> = { f32: 4, f16: 2, bf16: 2, q8_0: 34 / 32 };

const ENCODE: Record<GgufOutType, (v: Float32Array) => Uint8Array> = {
  f32: (v) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
  f16: f32ToF16Bytes,
  bf16: f32ToBf16Bytes,
  q8_0: quantizeQ8_0,
};

test("bf16 from bf16: the embedding is copied as it is, in one piece (nothing to convert); permuted Q is converted", () => {
  const { parts: p } = parts("bf16");
  assert.equal(p.get("token_embd.weight")!.length, 1);
  const q = Buffer.concat(p.get("blk.0.attn_q.weight")!);
  const permuted = permuteQK(ckpt.values.get("model.layers.0.self_attn.q_proj.weight")!, H, H, HEADS);
  assert.ok(q.equals(f32ToBf16Bytes(permuted)), "attn_q bytes");
});

for (const outtype of ["f32", "f16", "q8_0"] as const) {
  test(`${outtype} from bf16: the embedding is converted in ${(V * H) / CONVERT_CHUNK_VALUES} parts with a stop mark between each two; together they are the whole tensor converted at once`, () => {
    const { parts: p, inner } = parts(outtype);
    const embd = p.get("token_embd.weight")!;
    const n = (V * H) / CONVERT_CHUNK_VALUES;
    assert.equal(embd.length, n, "parts of token_embd.weight");
    assert.equal(inner.get("token_embd.weight")!.length, n - 1, "stop marks between its parts");
    assert.match(inner.get("token_embd.weight")![0]!, /^byte \d+ of tensor token_embd\.weight \(1 of \d+\)$/);
    for (const part of embd) assert.ok(part.byteLength <= CONVERT_CHUNK_VALUES * BYTES_PER_VALUE[outtype]);
    const whole = Buffer.concat(embd);
    assert.ok(
      whole.equals(ENCODE[outtype](ckpt.values.get("model.embed_tokens.weight")!)),
      "token_embd bytes",
    );
    // Q's rows permuted part by part as permuteQK permutes the whole
    const q = Buffer.concat(p.get("blk.0.attn_q.weight")!);
    const permuted = permuteQK(ckpt.values.get("model.layers.0.self_attn.q_proj.weight")!, H, H, HEADS);
    assert.ok(q.equals(ENCODE[outtype](permuted)), "attn_q bytes");
  });
}

test("the file written from the parts is the one writeGguf writes, and reads back with the same tensors", () => {
  const plan = planGgufExport(ckpt.dir, { outtype: "q8_0" });
  const file = path.join(work, "m.gguf");
  writeGguf(file, plan.spec);
  const g = readGguf(file);
  const { parts: p } = parts("q8_0");
  for (const t of g.tensors)
    assert.ok(Buffer.from(ggufTensorBytes(g, t.name)).equals(Buffer.concat(p.get(t.name)!)), t.name);
});

test("a stop while the embedding's second part is converted ends the write before its third is converted: no temporary, no output", async () => {
  const out = path.join(work, "stop", "m.gguf");
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const ac = new AbortController();
  let made = 0;
  const spec = planGgufExport(ckpt.dir, { outtype: "f16" }).spec;
  // the embedding's parts, counted as the writer takes them from the converting generator
  const tensors: GgufTensorSpec[] = spec.tensors.map((t) =>
    t.name !== "token_embd.weight"
      ? t
      : {
          ...t,
          data: function* () {
            const d = t.data();
            for (const part of d instanceof Uint8Array ? [d] : d) {
              if (++made === 2) ac.abort(new Error("SIGINT"));
              yield part;
            }
          },
        },
  );
  await assert.rejects(
    publishFileAsync(out, ggufPieces({ ...spec, tensors }), { signal: ac.signal }),
    (e: unknown) => {
      assert.ok(e instanceof InterruptedError, String(e));
      assert.match(
        e.message,
        new RegExp(
          `stopped before byte ${2 * CONVERT_CHUNK_VALUES * 2} of tensor token_embd\\.weight \\(1 of`,
        ),
      );
      return true;
    },
  );
  assert.equal(made, 2, "parts converted after the stop");
  assert.deepEqual(fs.readdirSync(path.dirname(out)), []);
});
