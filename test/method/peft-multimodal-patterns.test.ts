/**
 * A PEFT adapter trained on a multimodal Gemma3 (Gemma3ForConditionalGeneration) names its text modules by their
 * path in that model, and PEFT matched the adapter's target_modules and pattern keys against that path too:
 * huggingface/peft src/peft/tuners/tuners_utils.py check_target_module_exists (`re.fullmatch(config.target_modules,
 * key)` for a regex; a list entry: the whole key or a `.`-suffix) and src/peft/utils/other.py get_pattern_key
 * (`re.match(rf"(.*\.)?({key})$", key_to_match)`), where key is the module's name in model.named_modules():
 * model.language_model.layers.N.… from transformers 4.52 on (and in 5.x), language_model.model.layers.N.… before.
 * Read against this project's own names (model.layers.N.…), such an adapter's regex matched no module and it was
 * refused as "not a linear layer this config targets", and an alpha_pattern key naming the full path was ignored
 * (a silently wrong scale).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModel } from "../../src/models/index.js";
import { attachPeftAdapter } from "../../src/method/lora/model.js";
import { readPeftAdapter } from "../../src/method/lora/peft.js";
import type { LoraAdapter } from "../../src/method/lora/layer.js";
import { openModelWeights, writeModelWeights, writeSafetensors } from "../../src/io/safetensors.js";
import { FIXTURES, scratchDir } from "../io/helpers.js";

const TEXT = path.join(FIXTURES, "gemma3");
const work = scratchDir("gv-peft-mm-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

type Layout = "model.language_model." | "language_model.model.";

/** The gemma3 fixture as a Gemma3ForConditionalGeneration folder whose text weights carry `layout`. */
function multimodalFolder(layout: Layout): string {
  const dir = path.join(work, layout.replace(/\./g, "_"));
  fs.mkdirSync(dir);
  const text = JSON.parse(fs.readFileSync(path.join(TEXT, "config.json"), "utf8")) as Record<string, unknown>;
  const config = {
    architectures: ["Gemma3ForConditionalGeneration"],
    model_type: "gemma3",
    text_config: text,
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  writeModelWeights(
    dir,
    [...openModelWeights(TEXT).tensors.values()].map((r) => ({
      ...r,
      name: r.name.startsWith("model.") ? layout + r.name.slice("model.".length) : r.name,
    })),
  );
  return dir;
}

for (const layout of ["model.language_model.", "language_model.model."] as const) {
  test(`${layout}*: a PEFT adapter's regex target_modules and full-path alpha_pattern mean what they meant to PEFT`, () => {
    const base = multimodalFolder(layout);
    const esc = layout.replace(/\./g, "\\.");
    // as a user writes them for the multimodal model PEFT sees
    const targetRegex = `${esc}layers\\.\\d+\\.self_attn\\.(q_proj|v_proj)`;
    const fullKey = `${layout}layers.1.self_attn.q_proj`;
    const r = 2;
    const dims: Record<string, [number, number]> = { q_proj: [128, 64], v_proj: [64, 64] }; // [out, in]
    const adapterDir = path.join(work, `adapter-${layout}`);
    fs.mkdirSync(adapterDir);
    fs.writeFileSync(
      path.join(adapterDir, "adapter_config.json"),
      JSON.stringify({
        peft_type: "LORA",
        task_type: "CAUSAL_LM",
        r,
        lora_alpha: 4,
        target_modules: targetRegex,
        alpha_pattern: { [fullKey]: 8 },
        rank_pattern: {},
      }),
    );
    const tensors = [];
    let k = 0;
    for (let layer = 0; layer < 4; layer++)
      for (const proj of ["q_proj", "v_proj"] as const) {
        const [out, inn] = dims[proj];
        for (const [ab, shape] of [
          ["A", [r, inn]],
          ["B", [out, r]],
        ] as const) {
          const v = Float32Array.from({ length: shape[0] * shape[1] }, () => (++k % 7) / 100);
          tensors.push({
            name: `base_model.model.${layout}layers.${layer}.self_attn.${proj}.lora_${ab}.weight`,
            dtype: "F32" as const,
            shape: [...shape],
            data: new Uint8Array(v.buffer),
          });
        }
      }
    writeSafetensors(path.join(adapterDir, "adapter_model.safetensors"), tensors);

    const model = loadModel(base);
    attachPeftAdapter(model, readPeftAdapter(adapterDir)); // threw: "… is not a linear layer this config targets"
    const pathOf = (m: string) => layout + m.slice("model.".length);
    for (const l of model.linears()) {
      const p = pathOf(l.name);
      const targeted = new RegExp(`^(?:${targetRegex})$`).test(p); // re.fullmatch on PEFT's key
      assert.equal(l.adapter !== null, targeted, l.name);
      if (!targeted) continue;
      // get_pattern_key on PEFT's key: alpha 8 for the one module named, lora_alpha 4 elsewhere; scaling alpha / r
      const alpha = new RegExp(`^(.*\\.)?(${fullKey.replace(/\./g, "\\.")})$`).test(p) ? 8 : 4;
      assert.equal((l.adapter as LoraAdapter).scaling, alpha / r, l.name);
    }
  });
}
