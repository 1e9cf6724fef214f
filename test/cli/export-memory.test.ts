/**
 * `export --format safetensors` converts a checkpoint to another dtype. It must not hold the whole converted model:
 * a 7B checkpoint exported to float32 is 28 GB. Measured as the command's peak RSS (GNU time) against the same
 * command on the tiny organism, on a checkpoint whose weights are many equal layers (so that no single tensor
 * dominates): the extra memory stays under the input (mapped) plus the output. Converting every tensor before
 * writing needed about twice the output on top of the input (632 MiB extra here, for 130 MiB in and 260 MiB out);
 * converting each as it is written needs one tensor plus what V8 has not yet collected (167-290 MiB in 6 runs).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeModelWeights, type TensorToWrite } from "../../src/io/safetensors.js";
import { readSafetensors } from "../../src/io/safetensors.js";
import { Tensor, manualSeed, noGrad, tidy } from "../../src/tensor/index.js";
import { CLI } from "./cli-helpers.js";
import { REPO_ROOT, scratchDir } from "../evalcore/make-model.js";

const TIME = "/usr/bin/time";
const ORGANISM = path.join(REPO_ROOT, "assets/organism");

/** A bf16 Llama checkpoint of 16 layers at hidden 512 (67 M parameters, 134 MB), small vocabulary. */
function layeredModel(dir: string): void {
  const H = 512;
  const I = 2048;
  const L = 16;
  const V = 1024;
  const shapes: [string, number[]][] = [["model.embed_tokens.weight", [V, H]]];
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}`;
    for (const m of ["q_proj", "k_proj", "v_proj", "o_proj"])
      shapes.push([`${p}.self_attn.${m}.weight`, [H, H]]);
    shapes.push([`${p}.mlp.gate_proj.weight`, [I, H]], [`${p}.mlp.up_proj.weight`, [I, H]]);
    shapes.push([`${p}.mlp.down_proj.weight`, [H, I]]);
    shapes.push([`${p}.input_layernorm.weight`, [H]], [`${p}.post_attention_layernorm.weight`, [H]]);
  }
  shapes.push(["model.norm.weight", [H]], ["lm_head.weight", [V, H]]);
  manualSeed(0);
  const tensors: TensorToWrite[] = shapes.map(([name, shape]) => ({
    name,
    dtype: "BF16",
    shape,
    data: noGrad(() => tidy(() => Tensor.randn(shape, "bfloat16").mul(0.02).toBytes())),
  }));
  writeModelWeights(dir, tensors);
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: H,
    intermediate_size: I,
    num_attention_heads: 8,
    num_key_value_heads: 8,
    num_hidden_layers: L,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    vocab_size: V,
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
}

/** Run `goodvibe export --format safetensors --outtype float32` under GNU time; its peak RSS in bytes. */
function exportPeak(model: string, out: string): number {
  const timeFile = `${out}.time`;
  const r = spawnSync(
    TIME,
    [
      "-o",
      timeFile,
      "-f",
      "%M",
      process.execPath,
      CLI,
      "export",
      "-m",
      model,
      "-o",
      out,
      "--format",
      "safetensors",
      "--outtype",
      "float32",
    ],
    { encoding: "utf8", env: { ...process.env, GOODVIBE_THREADS: "1" } },
  );
  assert.equal(r.status, 0, `export failed:\n${r.stdout}\n${r.stderr}`);
  return Number(fs.readFileSync(timeFile, "utf8").trim().split("\n").pop()) * 1024;
}

test(
  "export --format safetensors holds one converted tensor at a time, not the whole model",
  { skip: fs.existsSync(TIME) ? false : "GNU time (/usr/bin/time) is not installed" },
  (t) => {
    const work = scratchDir("gv-export-mem-");
    const model = path.join(work, "model");
    fs.mkdirSync(model);
    layeredModel(model);
    const inBytes = fs.statSync(path.join(model, "model.safetensors")).size;
    const base = exportPeak(ORGANISM, path.join(work, "organism-f32"));
    const peak = exportPeak(model, path.join(work, "f32"));
    const outFile = path.join(work, "f32/model.safetensors");
    const outBytes = fs.statSync(outFile).size;
    // the output is right: every tensor is the input's, in float32
    const src = readSafetensors(path.join(model, "model.safetensors"));
    const dst = readSafetensors(outFile);
    assert.equal(dst.tensors.size, src.tensors.size);
    for (const name of ["model.layers.7.mlp.down_proj.weight", "lm_head.weight"]) {
      const a = src.tensors.get(name)!;
      const b = dst.tensors.get(name)!;
      assert.equal(b.dtype, "F32");
      assert.deepEqual(b.shape, a.shape);
      // bf16 → f32 is exact: the high half of each float32 is the bf16 value, the low half zero
      for (const i of [0, 1, 12345, a.data.length / 2 - 1]) {
        assert.equal(b.data.readUInt16LE(4 * i + 2), a.data.readUInt16LE(2 * i), `${name}[${i}]`);
        assert.equal(b.data.readUInt16LE(4 * i), 0);
      }
    }
    const extra = peak - base;
    const MiB = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    t.diagnostic(`peak ${MiB(peak)}, organism ${MiB(base)}, input ${MiB(inBytes)}, output ${MiB(outBytes)}`);
    assert.ok(
      extra < inBytes + outBytes,
      `peak RSS ${MiB(peak)} is ${MiB(extra)} above the organism's export (${MiB(base)}); ` +
        `input ${MiB(inBytes)}, output ${MiB(outBytes)}: more than one tensor at a time is held`,
    );
  },
);
