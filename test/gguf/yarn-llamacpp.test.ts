/**
 * YaRN through the GGUF export: each fixture family given the rope_scaling Qwen's model cards recommend (factor 4,
 * here over an original context of 64 so that the tiny head_dim spans the blend) and run by llama.cpp, whose YaRN
 * (ggml's rope_yarn) was written apart from transformers and from ours. Its logits must equal our forward's within
 * the tolerances of export-llamacpp.test.ts, and ours must move far beyond them from the unscaled model's, so that
 * the comparison can fail. Settings llama.cpp reads nowhere for these architectures are refused.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { exportGguf } from "../../src/io/export-gguf.js";
import { ggufMeta, readGguf } from "../../src/io/gguf.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { loadModel } from "../../src/models/index.js";
import { Tensor } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
import { fixtureWithTokenizer } from "./fixture-tokenizer.js";

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const tmpDir = scratchDir("gguf-yarn-");
after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

const TOL: Record<string, number> = { llama: 1e-4, qwen2: 1e-4, qwen3: 1e-4, gemma3: 2e-3 };
const YARN = { rope_type: "yarn", factor: 4, original_max_position_embeddings: 64 };
const IDS = Array.from({ length: 40 }, (_, i) => ((i * 37 + 11) % 500) + 3);

function withRope(family: string, ropeScaling: unknown, name: string): string {
  const dir = fixtureWithTokenizer(path.join(fixtures, family), path.join(tmpDir, `${family}-${name}`));
  const file = path.join(dir, "config.json");
  const cfg = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  fs.writeFileSync(file, JSON.stringify({ ...cfg, rope_scaling: ropeScaling }));
  return dir;
}

function ourLogits(dir: string): Float32Array {
  return loadModel(dir, { dtype: "float32" })
    .forward(Tensor.fromArray(IDS, [1, IDS.length], "int64"))
    .toFloat32Array();
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function llamaCppLogits(file: string, V: number): Promise<Float32Array> {
  const b = await openLlamaCppBackend({ modelPath: file, contextSize: 64, threads: 1 });
  try {
    const rows = await b.logits(IDS, { prefill: IDS.length });
    const flat = new Float32Array(rows.length * V);
    rows.forEach((r, t) => flat.set(r.subarray(0, V), t * V));
    return flat;
  } finally {
    await b.close();
  }
}

for (const family of ["llama", "qwen2", "qwen3", "gemma3"]) {
  test(`${family}: a yarn model exported to GGUF gives our logits in llama.cpp`, async () => {
    const dir = withRope(family, YARN, "yarn");
    const ours = ourLogits(dir);
    // the unscaled model (gemma3's fixture: its own linear scaling) is far from it: the check below can fail
    const apart = maxAbs(ours, ourLogits(withRope(family, null, "plain")));
    assert.ok(apart > 100 * TOL[family]!, `yarn moves the logits by only ${apart}`);

    const file = path.join(tmpDir, `${family}-yarn.gguf`);
    exportGguf(dir, file, { outtype: "f32" });
    const g = readGguf(file);
    const arch = family;
    assert.equal(ggufMeta(g, `${arch}.rope.scaling.type`), "yarn");
    assert.equal(ggufMeta(g, `${arch}.rope.scaling.factor`), 4);
    assert.equal(ggufMeta(g, `${arch}.rope.scaling.original_context_length`), 64);
    const b = await openLlamaCppBackend({ modelPath: file, contextSize: 64, threads: 1 });
    let rows: Float32Array[];
    try {
      rows = await b.logits(IDS, { prefill: IDS.length });
    } finally {
      await b.close();
    }
    const V = ours.length / IDS.length;
    const flat = new Float32Array(rows.length * V);
    rows.forEach((r, t) => flat.set(r.subarray(0, V), t * V));
    const diff = maxAbs(flat, ours);
    assert.ok(diff <= TOL[family]!, `llama.cpp's logits differ from ours by ${diff} (unscaled: ${apart})`);
  });
}

test("an attention factor of its own (attention_factor, or DeepSeek's mscale pair) reaches llama.cpp as rope.scaling.attn_factor: our logits", async () => {
  for (const [family, extra] of [
    ["qwen2", { attention_factor: 1.3 }],
    ["llama", { mscale: 1, mscale_all_dim: 0.5 }],
    ["qwen3", { attention_factor: 1.0 }],
  ] as const) {
    const dir = withRope(family, { ...YARN, ...extra }, `attn-${Object.keys(extra)[0]}`);
    const ours = ourLogits(dir);
    const implied = ourLogits(withRope(family, YARN, `attn-implied-${family}`));
    assert.ok(maxAbs(ours, implied) > 100 * TOL[family]!, `${family}: the factor does not move the logits`);
    const file = path.join(tmpDir, `${family}-attn.gguf`);
    const r = exportGguf(dir, file, { outtype: "f32" });
    assert.ok(typeof ggufMeta(readGguf(file), `${family}.rope.scaling.attn_factor`) === "number");
    assert.ok(
      r.notes.some((n) => /Ollama/.test(n)),
      r.notes.join("\n"),
    );
    const diff = maxAbs(await llamaCppLogits(file, ours.length / IDS.length), ours);
    assert.ok(diff <= TOL[family]!, `${family} ${JSON.stringify(extra)}: llama.cpp differs by ${diff}`);
  }
});

test("dynamic: exported with no scaling (llama.cpp's default RoPE), the same logits as ours up to max_position_embeddings", async () => {
  const dir = withRope("qwen2", { type: "dynamic", factor: 2 }, "dynamic");
  const ours = ourLogits(dir);
  assert.deepEqual(ours, ourLogits(withRope("qwen2", null, "dynamic-plain")));
  const file = path.join(tmpDir, "qwen2-dynamic.gguf");
  exportGguf(dir, file, { outtype: "f32" });
  assert.equal(ggufMeta(readGguf(file), "qwen2.rope.scaling.type"), undefined);
  const b = await openLlamaCppBackend({ modelPath: file, contextSize: 64, threads: 1 });
  try {
    const rows = await b.logits(IDS, { prefill: IDS.length });
    const V = ours.length / IDS.length;
    const flat = new Float32Array(rows.length * V);
    rows.forEach((r, t) => flat.set(r.subarray(0, V), t * V));
    assert.ok(maxAbs(flat, ours) <= TOL.qwen2!);
  } finally {
    await b.close();
  }
});

test("yarn settings llama.cpp does not read for these architectures are refused by the GGUF export, nothing written", () => {
  for (const [family, extra, named] of [
    ["qwen2", { beta_fast: 16 }, "beta_fast 16"],
    ["qwen2", { beta_slow: 2 }, "beta_slow 2"],
    ["qwen2", { truncate: false }, "truncate false"],
    // Gemma3's would scale its sliding layers too in llama.cpp
    ["gemma3", { attention_factor: 1.3 }, "attention factor 1.3"],
  ] as const) {
    const dir = withRope(family, { ...YARN, ...extra }, `refused-${Object.keys(extra)[0]}`);
    const file = path.join(tmpDir, `refused.gguf`);
    assert.throws(
      () => exportGguf(dir, file, { outtype: "f32" }),
      (e: unknown) => e instanceof InputError && e.message.includes(named) && e.message.includes("GGUF"),
    );
    assert.equal(fs.existsSync(file), false);
  }
  // the attention factor transformers would imply anyway is carried: 0.1·ln 4 + 1
  const dir = withRope("qwen2", { ...YARN, attention_factor: 0.1 * Math.log(4) + 1 }, "implied");
  exportGguf(dir, path.join(tmpDir, "implied.gguf"), { outtype: "f32" });
});
