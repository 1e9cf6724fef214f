/**
 * The identification pass shared by the benchmarks: fixed token ids, the FLOP count and the activation-memory
 * estimate used to judge it, and the pass itself (every linear output kept with its gradient).
 */
import type { DecoderModel, Linear } from "../src/models/index.js";
import { layerForwardFlops } from "../src/method/flops.js";
import { judgeLossHead } from "../src/method/losses.js";
import { Tensor, crossEntropy, keep, synchronize } from "../src/tensor/index.js";

/**
 * The loss at the last position. "labels" (the default): what identify() computes (method/losses.ts judgeLossHead):
 * cross-entropy over the logits of the two label tokens only, i.e. a product with two rows of lm_head.
 * "full": cross-entropy of the full-vocabulary logits, the benchmark's loss before 2026-12-01 (a one-row product
 * with all of lm_head, ~47 ms of a Qwen2.5-0.5B-shaped pass on a Zen 5 core, which identify() never runs); kept
 * so that earlier figures stay reproducible (BENCHMARKS "Issue 13 §1 on an AMD Zen 5").
 */
export type PassHead = "labels" | "full";
export const PASS_HEADS: readonly PassHead[] = ["labels", "full"];
/** The label tokens of the "labels" head: "0" and "1" in Qwen2's byte-level vocabulary (safe, unsafe). */
export const BENCH_LABEL_TOKENS: [number, number] = [15, 16];
/** The "labels" head's class: 1 (unsafe). torch_reference.py fwdbwd uses the same tokens and class. */
export const BENCH_LABEL = 1;

export function parsePassHead(v: string | undefined): PassHead {
  const h = (v ?? "labels") as PassHead;
  if (!PASS_HEADS.includes(h)) throw new Error(`--head must be one of ${PASS_HEADS.join(", ")}, got ${v}`);
  return h;
}

/** Fixed token ids (no tokenizer needed): the same formula as torch_reference.py. */
export function benchIds(T: number, vocab: number): Tensor {
  return Tensor.fromArray(
    Array.from({ length: T }, (_, t) => (t * 7919 + 13) % vocab),
    [1, T],
    "int64",
  );
}

/**
 * FLOPs of the pass. Forward: linears, attention (QKᵀ and PV) and the last-position lm_head (two rows of it with the
 * "labels" head, as method/flops.ts identifyFlops counts; all of it with "full"). Backward to activations only
 * (weights are frozen): each linear's input gradient costs its forward; attention needs two products per forward
 * product (dQ and dK; dP and dV); lm_head's input gradient costs its forward.
 */
export function passFlops(
  model: DecoderModel,
  T: number,
  headKind: PassHead = "labels",
): { forward: number; backward: number } {
  const { linear, attention } = layerForwardFlops(model, 1, T);
  const head = 2 * model.cfg.hiddenSize * (headKind === "full" ? model.cfg.vocabSize : 2);
  return { forward: linear + attention + head, backward: linear + 2 * attention + head };
}

/**
 * Bytes the autograd graph keeps alive at the end of the forward, counted per layer from shapes (bf16 = 2 bytes,
 * float32 = 4): every linear output and its retained gradient, both RMSNorms (float32 input copy + output),
 * rotated q/k and the GQA-expanded k/v, attention scores / masked scores (bf16), softmax (float32) and probs
 * (bf16), SiLU(gate) and the gated product. A guide for the memory target, not a measurement.
 */
export function activationBytesEstimate(model: DecoderModel, T: number): number {
  const c = model.cfg;
  const e = 2;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const linearOut = T * (qDim + 2 * kvDim + c.hiddenSize + 2 * c.intermediateSize + c.hiddenSize) * e;
  const norms = 2 * T * c.hiddenSize * (4 + e);
  const rope = T * (qDim + kvDim) * e * 2 + T * qDim * e * 2;
  const attention = c.numHeads * T * T * (e + e + 4 + e);
  const mlp = 2 * T * c.intermediateSize * e;
  return c.numLayers * (2 * linearOut + norms + rope + attention + mlp);
}

/** Keep every linear's output and ask for its gradient; layer 0's q/k/v outputs have no history, so they become leaves. */
export function tapAll(model: DecoderModel, kept: Tensor[]): void {
  for (const lin of model.linears())
    lin.tap = (y: Tensor, _layer: Linear) => {
      if (y.requiresGrad) y.retainGrad();
      else y.requiresGrad_();
      kept.push(keep(y));
    };
}

/**
 * One identification pass; returns the loss and how many linear outputs got a gradient. target: the vocabulary
 * token of the "full" head; the "labels" head ignores it (BENCH_LABEL_TOKENS, BENCH_LABEL).
 */
export function identificationPass(
  model: DecoderModel,
  ids: Tensor,
  target: Tensor,
  headKind: PassHead = "labels",
): { loss: number; grads: number } {
  const kept: Tensor[] = [];
  tapAll(model, kept);
  const T = ids.size(1);
  const onDevice = target.onDevice(model.device);
  const head =
    headKind === "labels"
      ? judgeLossHead(model, BENCH_LABEL_TOKENS, Tensor.fromArray([BENCH_LABEL], [1], "int64"), "sum")
      : (hidden: Tensor) => crossEntropy(model.logitsFrom(hidden.select(1, T - 1)), onDevice);
  const loss = model.forwardBackward(ids, {}, head, false);
  synchronize(model.device); // a GPU's backward is queued: the pass ends when it has run
  let grads = 0;
  for (const y of kept) {
    const g = y.grad;
    if (g) {
      grads++;
      g.dispose();
    }
    y.dispose();
  }
  return { loss, grads };
}
