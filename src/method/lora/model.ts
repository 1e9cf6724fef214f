/**
 * LoRA on a decoder model (PEFT's LoraModel): one LoraAdapter per targeted linear layer, each with its own
 * rank and scaling from the config (rank_pattern, alpha_pattern, rsLoRA), and the AttachedMethod the trainer
 * and the folding code use.
 */
import { InputError } from "../../errors.js";
import type { DecoderModel } from "../../models/decoder.js";
import { Tensor, manualSeed, type Device } from "../../tensor/index.js";
import { adapterMethod, type AttachedMethod } from "../attached.js";
import { loraRank, loraScalingFor, loraTargets, type LoraConfig } from "./config.js";
import { LoraAdapter } from "./layer.js";
import type { PeftAdapter, PeftAdapterHeader } from "./peft.js";
import type { ShapeSource } from "../../models/shapes.js";

/**
 * LoRA on every linear the config targets. A's random init is seeded, so the same command gives the same
 * adapter (and a resumed run the same result as an uninterrupted one). `init` gives starting A and/or B by
 * "<module>.lora_A" / "<module>.lora_B"; their shapes must agree with the module's rank.
 */
export function attachLora(
  model: DecoderModel,
  cfg: LoraConfig,
  init?: Map<string, Tensor>,
  seed = 0,
): AttachedMethod {
  const adapters = new Map<string, LoraAdapter>();
  manualSeed(seed);
  for (const layer of model.linears()) {
    if (!loraTargets(cfg, layer.name)) continue;
    const r = loraRank(cfg, layer.name);
    const A = init?.get(`${layer.name}.lora_A`);
    const B = init?.get(`${layer.name}.lora_B`);
    const want = { A: [r, layer.inFeatures], B: [layer.outFeatures, r] };
    for (const [k, t] of [
      ["A", A],
      ["B", B],
    ] as const)
      if (t && (t.rank !== 2 || t.size(0) !== want[k][0] || t.size(1) !== want[k][1]))
        throw new InputError(
          `LoRA ${layer.name}.lora_${k}: shape [${t.shape}], expected [${want[k]}] (rank ${r}, ${layer.inFeatures} -> ${layer.outFeatures})`,
        );
    const a = new LoraAdapter(
      r,
      loraScalingFor(cfg, layer.name),
      cfg.dropout,
      layer.inFeatures,
      layer.outFeatures,
      {
        A,
        B,
      },
      layer.weight.device as Device,
    );
    layer.adapter = a;
    adapters.set(layer.name, a);
  }
  if (adapters.size === 0)
    throw new InputError(`LoRA: no linear layer matches target modules ${JSON.stringify(cfg.targetModules)}`);
  const trainable = new Map<string, Tensor>();
  for (const [n, a] of adapters) {
    trainable.set(`${n}.lora_A`, a.A);
    trainable.set(`${n}.lora_B`, a.B);
  }
  // the whole config (scaling and dropout do not show in the tensors' shapes) and A's seed
  const settings = { lora: cfg, seed: init ? null : seed };
  return adapterMethod("lora", model, adapters, trainable, settings, (on) => {
    for (const a of adapters.values()) a.training = on;
  });
}

/**
 * A trained PEFT adapter on the model, as PEFT loads it: every module the config targets must have both
 * lora_A and lora_B, and every tensor must belong to a targeted module (checkPeftAdapterFits). Either gap would
 * silently change what the adapter computes (a missing B is a zero update; a tensor for an untargeted module is
 * dropped).
 */
export function attachPeftAdapter(model: DecoderModel, adapter: PeftAdapter): AttachedMethod {
  const { cfg, init, dir } = adapter;
  checkPeftAdapterFits(model, { ...adapter, shapes: new Map([...init].map(([k, t]) => [k, t.shape])) });
  try {
    return attachLora(model, cfg, init);
  } catch (e) {
    throw new InputError(`${dir}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The adapter (its tensors' shapes: a header, or a read adapter) fits the model whose shapes `shape` gives (a loaded
 * model, or models/shapes.ts ModelShape of a folder's config.json): no LoRA on lm_head, every tensor on a module the
 * config targets, both lora_A and lora_B for each such module, each of the shape its rank and the module's widths
 * give. A command calls it on the headers before the model loads or a tensor is read.
 */
export function checkPeftAdapterFits(shape: ShapeSource, adapter: PeftAdapterHeader): void {
  const { cfg, shapes, dir } = adapter;
  const linears = shape.linears().filter((l) => loraTargets(cfg, l.name));
  const targeted = new Set(linears.map((l) => l.name));
  const refuse = (what: string) => new InputError(`${dir}: ${what}${otherModel(adapter, shape)}`);
  // LoRA goes on the decoder layers' linears only (linears()); lm_head is a module PEFT adapts when target_modules
  // names it. Said as such: "not a linear layer this config targets" blamed a config that does target it
  if (shapes.has("lm_head.lora_A") || shapes.has("lm_head.lora_B"))
    throw new InputError(
      `${dir}: the adapter has LoRA on lm_head, which this project does not apply (LoRA on the decoder layers' linear layers only); merge it with PEFT (merge_and_unload) instead`,
    );
  for (const key of shapes.keys()) {
    const mod = key.replace(/\.lora_[AB]$/, "");
    if (!targeted.has(mod))
      throw refuse(
        `the adapter has ${key}, but ${mod} is not a linear layer this config targets in this model (target_modules, layers_to_transform, exclude_modules)`,
      );
  }
  for (const layer of linears) {
    const r = loraRank(cfg, layer.name);
    const want = { A: [r, layer.inFeatures], B: [layer.outFeatures, r] };
    for (const k of ["A", "B"] as const) {
      const s = shapes.get(`${layer.name}.lora_${k}`);
      if (!s) throw refuse(`the config targets ${layer.name}, but the adapter has no lora_${k} for it`);
      if (s.length !== 2 || s[0] !== want[k][0] || s[1] !== want[k][1])
        throw refuse(
          `LoRA ${layer.name}.lora_${k}: shape [${s}], expected [${want[k]}] (rank ${r}, ${layer.inFeatures} -> ${layer.outFeatures})`,
        );
    }
  }
}

/**
 * When the adapter's tensors cover another number of decoder layers than the model has, the usual cause of the
 * refusals above is an adapter made for another model (a 28-layer 7B adapter on a 24-layer 0.5B): say so, with the
 * base model the adapter names. Empty when the layer counts agree (layers_to_transform may leave layers out, so only
 * tensors past the model's last layer, or none past the adapter's last while the config targets every layer, count).
 */
function otherModel(adapter: PeftAdapterHeader, shape: ShapeSource): string {
  let last = -1;
  for (const key of adapter.shapes.keys()) {
    const m = /(?:^|\.)layers\.(\d+)\./.exec(key);
    if (m) last = Math.max(last, Number(m[1]));
  }
  const layers = shape.cfg.numLayers;
  const allLayers = adapter.cfg.layersToTransform == null;
  if (last < 0 || last + 1 === layers || (last + 1 < layers && !allLayers)) return "";
  const made = adapter.baseModel ? ` (its adapter_config.json names ${adapter.baseModel})` : "";
  return `. The adapter's tensors stop at layer ${last}, and this model's layers are 0 to ${layers - 1}: it was made for another model${made}`;
}
