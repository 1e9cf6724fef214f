/**
 * adapter_config.json loads in the PEFT versions users have. PEFT before 0.13 builds LoraConfig(**fields) from the
 * file, so any field it does not know fails the load ("TypeError: LoraConfig.__init__() got an unexpected keyword
 * argument 'exclude_modules'", huggingface/peft#2275; 0.13 drops unknown fields with a warning, huggingface/peft#2038).
 * exclude_modules came with PEFT 0.14; written as null (its default) it only broke older loaders. It is written when
 * set (a multimodal Gemma3's vision side, which needs a PEFT of 2025 anyway) and left out otherwise, as its default.
 *
 * The reference: the fields of PEFT 0.12's LoraConfig and its PeftConfig base (src/peft/tuners/lora/config.py,
 * src/peft/config.py at v0.12.0), every field save_pretrained writes there.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parsePeftConfig, peftAdapterConfig } from "../../src/method/lora/peft.js";

const PEFT_0_12_LORA_FIELDS = new Set([
  // PeftConfigMixin / PeftConfig
  "peft_type",
  "auto_mapping",
  "base_model_name_or_path",
  "revision",
  "task_type",
  "inference_mode",
  // LoraConfig
  "r",
  "target_modules",
  "lora_alpha",
  "lora_dropout",
  "fan_in_fan_out",
  "bias",
  "use_rslora",
  "modules_to_save",
  "init_lora_weights",
  "layers_to_transform",
  "layers_pattern",
  "rank_pattern",
  "alpha_pattern",
  "megatron_config",
  "megatron_core",
  "loftq_config",
  "use_dora",
  "layer_replication",
  "runtime_config",
]);

const base = { r: 8, alpha: 16, dropout: 0.05, targetModules: ["q_proj", "v_proj"] };

test("an adapter without exclude_modules writes only fields PEFT 0.12's LoraConfig takes, and reads back the same", () => {
  for (const cfg of [
    base,
    { ...base, excludeModules: null },
    {
      ...base,
      useRslora: true,
      rankPattern: { "model.layers.1.self_attn.q_proj": 4 },
      layersToTransform: [0, 1],
    },
  ]) {
    const written = peftAdapterConfig(cfg, "Qwen/Qwen2.5-0.5B");
    const unknown = Object.keys(written).filter((k) => !PEFT_0_12_LORA_FIELDS.has(k));
    assert.deepEqual(unknown, [], `fields PEFT 0.12 refuses: ${unknown.join(", ")}`);
    const back = parsePeftConfig(JSON.parse(JSON.stringify(written)), "adapter_config.json").cfg;
    assert.equal(back.excludeModules, null);
    assert.deepEqual(back.targetModules, ["q_proj", "v_proj"]);
    assert.equal(back.r, 8);
    assert.equal(back.alpha, 16);
  }
});

test("exclude_modules, when set, is written and reads back", () => {
  for (const ex of [".*(vision_tower|multi_modal_projector).*", ["model.layers.0.self_attn.q_proj"]]) {
    const written = peftAdapterConfig({ ...base, excludeModules: ex }, "google/gemma-3-4b-it");
    assert.deepEqual(written.exclude_modules, ex);
    assert.deepEqual(parsePeftConfig(written, "adapter_config.json").cfg.excludeModules, ex);
  }
});
