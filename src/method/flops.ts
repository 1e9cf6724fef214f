/**
 * Cost from shapes: FLOPs (a multiply-add = 2 FLOPs) and trainable parameters, for the cost tables and for
 * `experiment plan`. Works on a loaded model or on a config's shapes alone (models/shapes.ts).
 *
 * Two FLOP figures, side by side:
 * - the exact count of one step's operations. Forward: every linear layer, attention scores and weighted sums,
 *   and lm_head on the positions that take a loss. Backward: the gradient with respect to a linear layer's input
 *   costs its forward matmul again, and one more for a trainable matrix; attention's two activation-by-activation
 *   matmuls each need two in backward (both operands); frozen weights get no weight gradient. Gradient
 *   checkpointing adds a second forward of the layers but the last, less what it skips (recomputeFlops).
 * - the estimate common trainers report (transformers' Trainer `total_flos`): 6 × N × D, N = the model's
 *   parameters without the input embedding (plus the adapter's), D = every input token (prompt and padding
 *   included). It charges every method as if all weights received gradients and lm_head ran at every position,
 *   so it is the same per token for GoodVibe, LoRA and full fine-tuning.
 */
import type { LinearShape, ShapeSource } from "../models/shapes.js";
import type { LoraConfig } from "./lora/config.js";
import type { MethodName } from "./attached.js";
import type { DType } from "../tensor/index.js";

export interface FlopCount {
  forward: number;
  backward: number;
  total: number;
}

/** What the FLOP count needs of a method: its name and its trainable matrices' shapes, by name. */
export interface MethodShapes {
  readonly name: MethodName;
  /** trainable tensors by name: [rows, cols] (U: [C, in]; lora_A: [r, in]; lora_B: [out, r]) */
  readonly shapes: Iterable<[string, readonly number[]]>;
}

/** An attached method (trainable tensors) seen as shapes. */
export function methodShapes(method: {
  name: MethodName;
  trainable: Map<string, { shape: number[] }>;
}): MethodShapes {
  return {
    name: method.name,
    shapes: [...method.trainable].map(([n, t]) => [n, t.shape] as [string, number[]]),
  };
}

export function layerForwardFlops(
  model: ShapeSource,
  batch: number,
  time: number,
): { linear: number; attention: number } {
  const tokens = batch * time;
  let linear = 0;
  for (const l of model.linears()) linear += 2 * tokens * l.inFeatures * l.outFeatures;
  const c = model.cfg;
  const attention = c.numLayers * 2 * 2 * batch * time * time * c.numHeads * c.headDim;
  return { linear, attention };
}

/**
 * What gradient checkpointing's recomputation runs (models/decoder.ts forwardBackward): the forward of every layer
 * but the last (whose graph is kept: its backward follows at once), without o_proj's and down_proj's products in a
 * pre-norm layer (every family but Gemma 3's sandwich norms) whose weights are frozen: their outputs reach only the
 * residual sums, so the recomputation skips them (DecoderLayer.blocks, frozenLinearGradOnly). `adapterForward`: each
 * adapter tensor's forward FLOPs by name (adapterFlops); those of the recomputed layers' linears run again.
 */
function recomputeFlops(
  model: ShapeSource,
  batch: number,
  time: number,
  frozenWeights: boolean,
  adapterForward: Map<string, number> = new Map(),
): number {
  const tokens = batch * time;
  const c = model.cfg;
  const L = c.numLayers;
  const lastLayer = `model.layers.${L - 1}.`;
  const skips = (name: string) =>
    frozenWeights &&
    c.family !== "gemma3" &&
    (name.endsWith(".self_attn.o_proj") || name.endsWith(".mlp.down_proj"));
  let flops = (L - 1) * 2 * 2 * batch * time * time * c.numHeads * c.headDim;
  for (const l of model.linears()) {
    if (l.name.startsWith(lastLayer)) continue;
    if (!skips(l.name)) flops += 2 * tokens * l.inFeatures * l.outFeatures;
    for (const [name, f] of adapterForward) if (name.startsWith(`${l.name}.`)) flops += f;
  }
  return flops;
}

/** FLOPs of a method's adapters in the forward pass, and of their parameter gradients. */
function adapterFlops(
  method: MethodShapes,
  tokens: number,
  lossTokens: number,
  model: ShapeSource,
): { forward: number; paramGrad: number; byName: Map<string, number> } {
  if (method.name === "full") {
    let paramGrad = 0;
    for (const l of model.linears()) paramGrad += 2 * tokens * l.inFeatures * l.outFeatures;
    return { forward: 0, paramGrad, byName: new Map() };
  }
  let forward = 0;
  const byName = new Map<string, number>();
  for (const [name, shape] of method.shapes) {
    const [rows, cols] = shape as [number, number];
    // U [C, in]: x Uᵀ; lora_A [r, in]: x Aᵀ; lora_B [out, r]: (x Aᵀ) Bᵀ. lm_head runs on the loss positions only.
    const f = 2 * (name.startsWith("lm_head") ? lossTokens : tokens) * rows * cols;
    byName.set(name, f);
    forward += f;
  }
  return { forward, paramGrad: forward, byName };
}

export function sftFlops(
  model: ShapeSource,
  method: MethodShapes | { name: MethodName; trainable: Map<string, { shape: number[] }> },
  shape: number[],
  lossTokens: number,
  checkpointing: boolean,
): FlopCount {
  const m = "shapes" in method ? method : methodShapes(method);
  const [B, T] = shape as [number, number];
  const { linear, attention } = layerForwardFlops(model, B, T);
  const head = 2 * lossTokens * model.cfg.hiddenSize * model.cfg.vocabSize;
  const ad = adapterFlops(m, B * T, lossTokens, model);
  const layers = linear + attention + ad.forward;
  const recompute = checkpointing ? recomputeFlops(model, B, T, m.name !== "full", ad.byName) : 0;
  const forward = layers + head + recompute;
  const headGrad = m.name === "full" ? 2 * head : head;
  const backward = linear + 2 * attention + ad.forward + headGrad + ad.paramGrad;
  return { forward, backward, total: forward + backward };
}

/**
 * Identification: a forward and a backward to the activations only (no parameter gradients). The activation
 * variant with lm_head as a target also runs lm_head over every position and the whole vocabulary. With
 * checkpointing the backward recomputes the layers' forward (recomputeFlops; counted where it ran, as in sftFlops).
 */
export function identifyFlops(
  model: ShapeSource,
  shape: number[],
  withBackward: boolean,
  lmHeadEverywhere = false,
  checkpointing = false,
): FlopCount {
  const [B, T] = shape as [number, number];
  const { linear, attention } = layerForwardFlops(model, B, T);
  const head = 2 * B * model.cfg.hiddenSize * 2;
  const fullHead = lmHeadEverywhere ? 2 * B * T * model.cfg.hiddenSize * model.cfg.vocabSize : 0;
  const recompute = checkpointing && withBackward ? recomputeFlops(model, B, T, true) : 0;
  const forward = linear + attention + head + fullHead + recompute;
  const backward = withBackward ? linear + 2 * attention + head : 0;
  return { forward, backward, total: forward + backward };
}

/**
 * N of the trainer-style estimate: every parameter except the input embedding (a tied lm_head is that same
 * tensor, so it is left out too, as transformers' num_parameters(exclude_embeddings=True) does), plus the method's
 * own trainable tensors when they are not model weights (GoodVibe's U, LoRA's A and B).
 */
export function estimateParams(
  params: { total: number; embedding: number },
  method: MethodName,
  trainableParams: number,
): number {
  return params.total - params.embedding + (method === "full" ? 0 : trainableParams);
}

/** 6 × N × D (see the file comment): D = input tokens of the step, padding included. */
export function trainerFlopsEstimate(n: number, tokens: number): number {
  return 6 * n * tokens;
}

/** A FLOP figure for people: three significant digits and a decimal prefix ("2.41 PFLOP"). */
export function formatFlops(f: number): string {
  if (f === 0) return "0 FLOP";
  const units = ["", "k", "M", "G", "T", "P", "E"];
  const i = Math.max(0, Math.min(units.length - 1, Math.floor(Math.log10(f) / 3)));
  return `${(f / 1000 ** i).toPrecision(3)} ${units[i]}FLOP`;
}

// ---------------------------------------------------------------- trainable parameters from shapes

/** The modules GoodVibe hooks: the 7 projections of every layer, and lm_head when asked. */
export function goodvibeModules(model: ShapeSource, lmHead = false): LinearShape[] {
  // fields read one by one: a loaded model's Linear has its sizes as getters, which a spread would drop
  const out: LinearShape[] = model
    .linears()
    .map((l) => ({ name: l.name, inFeatures: l.inFeatures, outFeatures: l.outFeatures, bias: false }));
  if (lmHead)
    out.push({
      name: "lm_head",
      inFeatures: model.cfg.hiddenSize,
      outFeatures: model.cfg.vocabSize,
      bias: false,
    });
  return out;
}

/**
 * GoodVibe's trainable parameters with `rows` update rows per module (1: every module one shared row; 2: two
 * clusters; topK: no clustering), each row as long as the module's input: Σ min(rows, topK, out) · in.
 */
export function goodvibeParams(
  model: ShapeSource,
  opts: { rows: number; topK: number; lmHead?: boolean },
): number {
  let n = 0;
  for (const l of goodvibeModules(model, opts.lmHead))
    n += Math.min(opts.rows, opts.topK, l.outFeatures) * l.inFeatures;
  return n;
}

/** LoRA's trainable parameters: r · (in + out) for every targeted projection (A is [r, in], B is [out, r]). */
export function loraParams(model: ShapeSource, cfg: Pick<LoraConfig, "r" | "targetModules">): number {
  let n = 0;
  for (const l of model.linears())
    if (cfg.targetModules.includes(l.name.split(".").pop()!)) n += cfg.r * (l.inFeatures + l.outFeatures);
  return n;
}

// ---------------------------------------------------------------- memory from shapes (estimates)

export interface MemoryEstimate {
  weights: number;
  /** gradients, float32 masters and AdamW moments of what trains */
  trainingState: number;
  activations: number;
  total: number;
}

/** Saved activations of one decoder layer's forward for backward, in bytes (eager attention keeps its scores). */
function layerActivationBytes(model: ShapeSource, tokens: number, time: number, bytes: number): number {
  const c = model.cfg;
  const layer = model.linears().slice(0, 7);
  let outs = 0;
  for (const l of layer) outs += l.outFeatures;
  const intermediate = layer[4]?.outFeatures ?? 0; // gate_proj
  // norm inputs/outputs and residuals (~6 × hidden), every projection's output, the MLP's activation and product,
  // and the attention scores and probabilities
  const perToken = 6 * c.hiddenSize + outs + 2 * intermediate;
  return tokens * perToken * bytes + 2 * c.numHeads * tokens * time * bytes;
}

/** One forward pass (batch × time tokens) of a model with `totalParams` weights in `dtype`. */
export interface ForwardRun {
  totalParams: number;
  /**
   * the model's compute dtype as it is (a loaded model's, a config's): float32 values take 4 bytes, a 16-bit
   * dtype's (bfloat16, the mixed-precision default) 2, so callers pass it without mapping it first
   */
  dtype: DType;
  batch: number;
  time: number;
  checkpointing: boolean;
}

/** Bytes of one value in a model's compute dtype: float32's 4, a 16-bit dtype's (bfloat16, the default) 2. */
function bytesPerValue(dtype: string): number {
  return dtype === "float32" ? 4 : 2;
}

/**
 * What a forward pass that keeps its graph for backward holds, in bytes: the weights in the compute dtype and the
 * saved activations (with checkpointing every layer's input plus one layer's graph; without, every layer's graph).
 */
function forwardGraphBytes(
  model: ShapeSource,
  opts: ForwardRun,
): { bytesPerValue: number; tokens: number; weights: number; graph: number } {
  const b = bytesPerValue(opts.dtype);
  const tokens = opts.batch * opts.time;
  const layer = layerActivationBytes(model, tokens, opts.time, b);
  const L = model.cfg.numLayers;
  // checkpointing keeps each residual block's input (two a layer; Gemma 3's layers whole: one; models/decoder.ts)
  const kept = model.cfg.family === "gemma3" ? 1 : 2;
  const graph = opts.checkpointing ? kept * L * tokens * model.cfg.hiddenSize * b + layer : L * layer;
  return { bytesPerValue: b, tokens, weights: opts.totalParams * b, graph };
}

/**
 * Full fine-tuning's training state besides the weights: in mixed precision (a 16-bit model) bf16 gradients +
 * float32 master copies + two float32 AdamW moments, 14 bytes per parameter; a float32 model, its own masters,
 * float32 gradients + moments, 12.
 */
export function fullTrainingStateBytes(params: number, dtype: string): number {
  return params * (dtype === "float32" ? 12 : 14);
}

/**
 * What full fine-tuning on the CPU must find free before it starts: the weights in the compute dtype and the
 * training state (fullTrainingStateBytes), 16 bytes per parameter in mixed precision, and a tenth more, less the
 * bytes of weights the process already holds in its own memory (`heldWeightBytes`). The tenth is measured, not
 * derived: one-layer models of Meta-Llama-3-8B's and Qwen3-8B's widths (1.27 B and 1.44 B parameters, 256-token
 * examples, 2026-12-01, Zen 5) peaked at 1.10x and over 1.08x (killed there) of the 16 bytes: activations, float32
 * logits and their gradient, frozenDx's copies and the optimiser's temporaries. Weights mapped from the checkpoint
 * count: they sit in the page cache that MemAvailable counts as free, yet stay in use. Weights the load converted
 * to the compute dtype or copied (a LinearGroup's side-by-side copy) are anonymous memory that MemAvailable already
 * left out: counting them again asked a float32 run from a bf16 checkpoint for 17.6 bytes per parameter where
 * 13.6 are needed (12 of state and the tenth of 16).
 */
export function fullTrainingNeedBytes(params: number, dtype: string, heldWeightBytes = 0): number {
  const weights = params * bytesPerValue(dtype);
  if (!(heldWeightBytes >= 0 && heldWeightBytes <= weights))
    throw new Error(`fullTrainingNeedBytes: ${heldWeightBytes} bytes of weights held, of ${weights}`);
  return Math.ceil(1.1 * (weights + fullTrainingStateBytes(params, dtype)) - heldWeightBytes);
}

/**
 * Peak memory of one training step, estimated from shapes (batch × time tokens): weights in the compute dtype,
 * the training state (full fine-tuning in mixed precision: bf16 gradients + float32 masters + two float32
 * moments = 14 bytes per parameter besides the weights; float32: 12; adapters: 16 per trainable parameter), and
 * activations (with checkpointing every layer's input plus one layer's graph; without, every layer's graph) plus
 * the loss positions' float32 logits and their gradient. Allocator overhead and fragmentation are not included.
 */
export function trainMemoryEstimate(
  model: ShapeSource,
  opts: ForwardRun & { method: MethodName; trainableParams: number; lossTokens: number },
): MemoryEstimate {
  const { bytesPerValue: b, weights, graph } = forwardGraphBytes(model, opts);
  const trainingState =
    opts.method === "full" ? fullTrainingStateBytes(opts.totalParams, opts.dtype) : opts.trainableParams * 16;
  const activations = graph + 2 * opts.lossTokens * model.cfg.vocabSize * 4;
  return { weights, trainingState, activations, total: weights + trainingState + activations };
}

/** Peak memory of identification (no parameter gradients; every linear output's gradient is read). */
export function identifyMemoryEstimate(model: ShapeSource, opts: ForwardRun): MemoryEstimate {
  const { bytesPerValue: b, tokens, weights, graph } = forwardGraphBytes(model, opts);
  const L = model.cfg.numLayers;
  let outs = 0;
  for (const l of model.linears()) outs += l.outFeatures;
  // output gradients of one layer at a time with checkpointing, of all of them without
  const grads = (opts.checkpointing ? outs / L : outs) * tokens * b;
  return { weights, trainingState: 0, activations: graph + grads, total: weights + graph + grads };
}
