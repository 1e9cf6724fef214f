/** A LoRA adapter (PEFT config + A/B tensors) in the form io/export-gguf.ts writes for llama.cpp. */
import type { LoraModuleForGguf } from "../../io/export-gguf.js";
import type { Tensor } from "../../tensor/index.js";
import { loraScalingFor, type LoraConfig } from "./config.js";

/** One entry per module of `weights` ("<module>.lora_A" / ".lora_B"), each with PEFT's scaling for it. */
export function loraGgufModules(cfg: LoraConfig, weights: Map<string, Tensor>): LoraModuleForGguf[] {
  const modules = [...new Set([...weights.keys()].map((k) => k.replace(/\.lora_[AB]$/, "")))].sort();
  return modules.map((module) => {
    const A = weights.get(`${module}.lora_A`);
    const B = weights.get(`${module}.lora_B`);
    if (!A || !B) throw new Error(`LoRA ${module}: lora_A and lora_B are both needed`);
    return {
      module,
      a: A.float().contiguous().toFloat32Array(),
      b: B.float().contiguous().toFloat32Array(),
      rank: A.size(0),
      scale: loraScalingFor(cfg, module),
    };
  });
}
