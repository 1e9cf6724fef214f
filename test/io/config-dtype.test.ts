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
import { openModelWeights } from "../../src/io/safetensors.js";
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
