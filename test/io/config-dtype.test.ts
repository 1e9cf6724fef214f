/**
 * config.json's dtype as transformers 5 reads and writes it. transformers >= 4.56 saves the field as `dtype`
 * (older releases: `torch_dtype`) and, reading a file that has both, keeps `dtype`:
 * huggingface/transformers src/transformers/configuration_utils.py, PreTrainedConfig.__post_init__ /
 * __init__: `if (torch_dtype := kwargs.pop("torch_dtype", None)) is not None: # If both are provided, keep
 * \`dtype\`  dtype = dtype if dtype is not None else torch_dtype`. from_pretrained's default dtype="auto" then
 * loads the weights in that config dtype.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModelConfig, parseModelConfig, withDtype } from "../../src/io/config.js";
import { openModelWeights, readSafetensors, writeSafetensors } from "../../src/io/safetensors.js";
import { loadModel } from "../../src/models/index.js";
import { Tensor, defaultComputeDtype, noGrad } from "../../src/tensor/index.js";
import { runCli, showRun } from "../cli/cli-helpers.js";
import { FIXTURES, scratchDir } from "./helpers.js";

const work = scratchDir("gv-config-dtype-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** The dtype transformers 5 takes from a config dict: `dtype` when present, else `torch_dtype` (see above). */
function transformersDtype(cfg: Record<string, unknown>): unknown {
  return cfg.dtype ?? cfg.torch_dtype;
}

const llama = (): Record<string, unknown> =>
  JSON.parse(fs.readFileSync(path.join(FIXTURES, "llama/config.json"), "utf8")) as Record<string, unknown>;

test("a config with both dtype and torch_dtype is read as transformers 5 reads it: dtype wins", () => {
  const both = { ...llama(), torch_dtype: "float32", dtype: "bfloat16" };
  assert.equal(parseModelConfig(both, "both/config.json").torchDtype, transformersDtype(both));
  // either one alone is read as before
  assert.equal(parseModelConfig({ ...llama(), torch_dtype: "float16" }, "t").torchDtype, "float16");
  const onlyDtype: Record<string, unknown> = { ...llama(), dtype: "bfloat16" };
  delete onlyDtype.torch_dtype;
  assert.equal(parseModelConfig(onlyDtype, "d").torchDtype, "bfloat16");
  // a bad `dtype` is named by its own field even when torch_dtype is fine
  assert.throws(
    () => parseModelConfig({ ...llama(), torch_dtype: "float32", dtype: "int8" }, "x/config.json"),
    /field "dtype" = "int8"/,
  );
});

test("withDtype leaves no reader the old dtype: top level, both names, and sub-configs that name one", () => {
  const gemma = {
    model_type: "gemma3",
    dtype: "bfloat16",
    text_config: { model_type: "gemma3_text", torch_dtype: "bfloat16", hidden_size: 64 },
    vision_config: { dtype: "bfloat16" },
    other_config: { hidden_size: 3 },
  };
  const out = withDtype(gemma, "float32");
  assert.equal(out.dtype, "float32");
  assert.equal(out.torch_dtype, "float32");
  assert.deepEqual(out.text_config, { model_type: "gemma3_text", torch_dtype: "float32", hidden_size: 64 });
  assert.deepEqual(out.vision_config, { dtype: "float32" });
  assert.deepEqual(out.other_config, { hidden_size: 3 }); // named no dtype: none added
  assert.equal(gemma.dtype, "bfloat16", "the input object is not changed");
});

test("export --format safetensors from a transformers-5 config (dtype: bfloat16) writes a config that loads as the new dtype", async () => {
  const src = path.join(work, "t5-bf16");
  fs.cpSync(path.join(FIXTURES, "llama/model-bf16"), src, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(src, "config.json"), "utf8")) as Record<string, unknown>;
  delete cfg.torch_dtype;
  cfg.dtype = "bfloat16"; // as transformers 5's save_pretrained writes it
  fs.writeFileSync(path.join(src, "config.json"), JSON.stringify(cfg, null, 2));
  const out = path.join(work, "f32");
  const r = await runCli(["export", "-m", src, "-o", out, "--format", "safetensors", "--outtype", "float32"]);
  assert.equal(r.code, 0, showRun(r));
  const written = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  assert.equal(
    transformersDtype(written),
    "float32",
    "transformers 5 would load the float32 weights as bfloat16",
  );
  assert.equal(written.torch_dtype, "float32", "transformers < 4.56 reads only torch_dtype");
  assert.equal(loadModelConfig(out).torchDtype, "float32");
  for (const t of openModelWeights(out).tensors.values()) assert.equal(t.dtype, "F32", t.name);
});

test("a float16 checkpoint computes in float32 on the CPU: its first forward threw (libtorch 1.13 has no float16 CPU products); float32 holds its weights exactly", () => {
  const src = readSafetensors(path.join(FIXTURES, "llama/model.safetensors"));
  /** The fixture's llama with every tensor stored as `dtype` after a round to float16, config.json saying `torchDtype`. */
  const write = (name: string, dtype: "F16" | "F32", torchDtype: string): string => {
    const dir = path.join(work, name);
    fs.mkdirSync(dir);
    const tensors = [...src.tensors.values()].map((rec) => {
      const f16 = noGrad(() => Tensor.fromBytes(rec.data, "float32", rec.shape).to("float16"));
      const data = noGrad(() => (dtype === "F16" ? f16 : f16.to("float32")).toBytes());
      return { name: rec.name, dtype, shape: rec.shape, data };
    });
    writeSafetensors(path.join(dir, "model.safetensors"), tensors);
    const cfg: Record<string, unknown> = { ...llama(), torch_dtype: torchDtype };
    delete cfg.dtype;
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(cfg));
    return dir;
  };
  const half = write("llama-f16", "F16", "float16");
  assert.equal(defaultComputeDtype("cpu", "float16"), "float32");
  assert.equal(defaultComputeDtype("cpu", "bfloat16"), "bfloat16", "other dtypes as stored");
  const model = loadModel(half);
  assert.equal(model.dtype, "float32");
  const ids = Tensor.fromArray([1, 17, 250, 33, 400, 9], [1, 6], "int64");
  const got = noGrad(() => model.forward(ids).toFloat32Array());
  // the same values stored as float32: the same logits, bit for bit
  const want = noGrad(() =>
    loadModel(write("llama-f16-as-f32", "F32", "float32"))
      .forward(ids)
      .toFloat32Array(),
  );
  assert.deepEqual(got, want);
});
