/**
 * The identification pass shared by the benchmarks: fixed token ids, the FLOP count and the activation-memory
 * estimate used to judge it, and the pass itself (every linear output kept with its gradient).
 */
import type { DecoderModel, Linear } from "../src/models/index.js";
import { layerForwardFlops } from "../src/method/flops.js";
import { Tensor, crossEntropy, keep, synchronize } from "../src/tensor/index.js";

/** Fixed token ids (no tokenizer needed): the same formula as torch_reference.py. */
export function benchIds(T: number, vocab: number): Tensor {
  return Tensor.fromArray(
    Array.from({ length: T }, (_, t) => (t * 7919 + 13) % vocab),
    [1, T],
    "int64",
  );
}

/**
 * FLOPs of the pass. Forward: linears, attention (QKᵀ and PV) and the last-position lm_head. Backward to
 * activations only (weights are frozen): each linear's input gradient costs its forward; attention needs two
 * products per forward product (dQ and dK; dP and dV); lm_head's input gradient costs its forward.
 */
export function passFlops(model: DecoderModel, T: number): { forward: number; backward: number } {
  const { linear, attention } = layerForwardFlops(model, 1, T);
  const head = 2 * model.cfg.hiddenSize * model.cfg.vocabSize;
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

/** One identification pass; returns the loss and how many linear outputs got a gradient. */
export function identificationPass(
  model: DecoderModel,
  ids: Tensor,
  target: Tensor,
): { loss: number; grads: number } {
  const kept: Tensor[] = [];
  tapAll(model, kept);
  const T = ids.size(1);
  const onDevice = target.onDevice(model.device);
  const loss = model.forwardBackward(
    ids,
    {},
    (hidden) => crossEntropy(model.logitsFrom(hidden.select(1, T - 1)), onDevice),
    false,
  );
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
