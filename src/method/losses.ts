/**
 * The two losses of the method. Both compute lm_head only where a loss is taken (the last position of a judge
 * prompt; answer tokens of an SFT example), which gives the same gradients as full logits at a fraction of the cost.
 */
import type { DecoderModel } from "../models/decoder.js";
import { Tensor, crossEntropy, crossEntropySum } from "../tensor/index.js";

export const IGNORE_INDEX = -100;

export interface TokenBatch {
  ids: Tensor; // [B, T] int64
  attentionMask?: Tensor; // [B, T]
}

/**
 * Float32 logits of `tokenIds` only, from hidden states [N, H]. `onRaw` sees them as lm_head computes them
 * (before the float cast and Gemma's soft-capping): identification reads lm_head's gradient there.
 */
export function restrictedLogits(
  model: DecoderModel,
  hidden: Tensor,
  tokenIds: Tensor,
  onRaw?: (raw: Tensor) => void,
): Tensor {
  // an update trained on lm_head's rows and not yet folded takes part: the full head, then the columns
  const raw = model.head.adapter
    ? model.head.forward(hidden).indexSelect(-1, tokenIds)
    : hidden.linear(model.lmHead.indexSelect(0, tokenIds));
  onRaw?.(raw);
  let logits = raw.float();
  const cap = model.cfg.finalLogitSoftcapping;
  if (cap) logits = logits.div(cap).tanh().mul(cap);
  return logits;
}

/**
 * Security-classification loss: cross-entropy over the logits of the label tokens ("0", "1") at the last position.
 * Batches are left-padded, so the last position is real for every row. reduction "sum" makes each sample's
 * gradient its own (samples never attend to each other), which identification needs.
 */
export function judgeLossHead(
  model: DecoderModel,
  labelTokenIds: [number, number],
  labels: Tensor,
  reduction: "sum" | "mean" | "none" = "sum",
  onRaw?: (raw: Tensor) => void,
): (hidden: Tensor) => Tensor {
  const tokenIds = Tensor.fromArray(labelTokenIds, [2], "int64", model.device);
  const onDevice = labels.onDevice(model.device);
  return (hidden) => {
    const last = hidden.select(1, hidden.size(1) - 1); // [B, H]
    return crossEntropy(restrictedLogits(model, last, tokenIds, onRaw), onDevice, { reduction });
  };
}

/**
 * Causal-LM loss as transformers computes it: logits at t predict labels at t+1, mean over non-ignored labels.
 * `denominator` overrides the count (gradient accumulation divides by the tokens of the whole optimiser step).
 */
export function sftLossHead(
  model: DecoderModel,
  labels: Tensor,
  denominator?: number,
): (hidden: Tensor) => Tensor {
  const [B, T] = labels.shape;
  const target = labels.narrow(1, 1, T - 1).reshape([B * (T - 1)]);
  const keepIdx = target.ne(IGNORE_INDEX).nonzeroIndices();
  const n = keepIdx.size(0);
  if (n === 0) throw new Error("SFT batch has no answer tokens (every label is -100)");
  const kept = target.indexSelect(0, keepIdx).onDevice(model.device);
  const keepOnDevice = keepIdx.onDevice(model.device);
  return (hidden) => {
    const H = hidden.size(-1);
    const h = hidden
      .narrow(1, 0, T - 1)
      .reshape([B * (T - 1), H])
      .indexSelect(0, keepOnDevice);
    // without soft-capping, one op from lm_head's output (in its dtype) to the summed loss and back
    const sum = model.cfg.finalLogitSoftcapping
      ? crossEntropy(model.logitsFrom(h), kept, { reduction: "sum" })
      : crossEntropySum(model.head.forward(h), kept);
    return sum.div(denominator ?? n);
  };
}

export function countAnswerTokens(labels: number[]): number {
  let n = 0;
  for (let t = 1; t < labels.length; t++) if (labels[t] !== IGNORE_INDEX) n++;
  return n;
}
