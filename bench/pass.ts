/**
 * The identification pass shared by the benchmarks: fixed token ids, the FLOP count and the activation-memory
 * estimate used to judge it, and the pass itself: identify()'s own batch (method/goodvibe/identify.ts runBatch:
 * each linear output's gradient reduced in a native hook to a per-neuron mean |g| over the tokens, read back to the
 * host and added to float64 sums by addImportances), or every linear output kept with its gradient (--grads retain,
 * the benchmark's pass before 2026-12-01 06:00).
 */
import type { DecoderModel, Linear } from "../src/models/index.js";
import { layerForwardFlops } from "../src/method/flops.js";
import { judgeLossHead } from "../src/method/losses.js";
import { addImportances, runBatch } from "../src/method/goodvibe/identify.js";
import { ExactSums } from "../src/util/exact-sum.js";
import { Tensor, crossEntropy, keep, synchronize, tidy } from "../src/tensor/index.js";

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

/**
 * What the pass does with the linear outputs' gradients. "hook" (the default): what identify() does — its own
 * runBatch, where a native hook on each output reduces the gradient to a per-neuron mean |g| over the tokens in
 * float32 as it passes (the paper's §4.1 Eq. 8), the [1, out] rows read back to the host and added to float64 sums
 * (addImportances); the loss is the "labels" head's. "retain": every output kept with retainGrad (a clone of each
 * gradient, ~156 MB per pass at Qwen2.5-0.5B's shape), the benchmark's pass before 2026-12-01 06:00, kept so that
 * earlier figures stay reproducible; it goes with either head. torch_reference.py fwdbwd --grads has the same two.
 */
export type PassGrads = "hook" | "retain";
export const PASS_GRADS: readonly PassGrads[] = ["hook", "retain"];

export function parsePassGrads(v: string | undefined, head: PassHead): PassGrads {
  const g = (v ?? "hook") as PassGrads;
  if (!PASS_GRADS.includes(g)) throw new Error(`--grads must be one of ${PASS_GRADS.join(", ")}, got ${v}`);
  if (g === "hook" && head !== "labels")
    throw new Error(
      "--grads hook runs identify()'s own batch, whose loss is the two label tokens' (--head labels); " +
        "--head full goes with --grads retain (the figures before 2026-12-01)",
    );
  return g;
}

/** Fixed token ids (no tokenizer needed): the same formula as torch_reference.py. */
export function benchIdList(T: number, vocab: number): number[] {
  return Array.from({ length: T }, (_, t) => (t * 7919 + 13) % vocab);
}

export function benchIds(T: number, vocab: number): Tensor {
  return Tensor.fromArray(benchIdList(T, vocab), [1, T], "int64");
}

/** Per-neuron float64 sums of the "hook" pass, one per linear module, as identify() keeps them for a run. */
export interface PassSums {
  sums: Map<string, ExactSums>;
  /** passes added */
  passes: number;
}

export function emptyPassSums(model: DecoderModel): PassSums {
  return { sums: new Map(model.linears().map((l) => [l.name, new ExactSums(l.outFeatures)])), passes: 0 };
}

/** The mean per-neuron importance over the passes added (identify()'s score of a row: its sum / samples). */
export function passScores(s: PassSums): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [name, sum] of s.sums) out[name] = Array.from(sum.values(), (v) => v / s.passes);
  return out;
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
 * float32 = 4): every linear output (and its retained gradient with grads "retain"), both RMSNorms (float32 input copy + output),
 * rotated q/k and the GQA-expanded k/v, attention scores / masked scores (bf16), softmax (float32) and probs
 * (bf16), SiLU(gate) and the gated product. A guide for the memory target, not a measurement.
 */
export function activationBytesEstimate(model: DecoderModel, T: number, grads: PassGrads = "hook"): number {
  const c = model.cfg;
  const e = 2;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const linearOut = T * (qDim + 2 * kvDim + c.hiddenSize + 2 * c.intermediateSize + c.hiddenSize) * e;
  const norms = 2 * T * c.hiddenSize * (4 + e);
  const rope = T * (qDim + kvDim) * e * 2 + T * qDim * e * 2;
  const attention = c.numHeads * T * T * (e + e + 4 + e);
  const mlp = 2 * T * c.intermediateSize * e;
  return c.numLayers * ((grads === "retain" ? 2 : 1) * linearOut + norms + rope + attention + mlp);
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
 * token of the "full" head; the "labels" head ignores it (BENCH_LABEL_TOKENS, BENCH_LABEL). grads "hook":
 * identify()'s batch of the one sequence `ids` (label BENCH_LABEL), its importances added to `sums` (a fresh set
 * when none is given).
 */
export function identificationPass(
  model: DecoderModel,
  ids: Tensor,
  target: Tensor,
  headKind: PassHead = "labels",
  grads: PassGrads = "hook",
  sums?: PassSums,
): { loss: number; grads: number } {
  if (grads === "hook") {
    if (headKind !== "labels") parsePassGrads(grads, headKind); // refused, with the reason
    const inputIds = ids.toIntArray();
    const linears = model.linears();
    const r = tidy(() =>
      runBatch(
        model,
        linears,
        [{ id: "bench", inputIds, label: BENCH_LABEL }],
        { labelTokenIds: BENCH_LABEL_TOKENS, mode: "gradient" },
        false,
      ),
    );
    const into = sums ?? emptyPassSums(model);
    addImportances(into.sums, r.importance, 1);
    into.passes++;
    for (const l of linears) l.tap = null; // as identify() leaves the model
    return { loss: r.loss, grads: r.importance.size };
  }
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
  let got = 0;
  for (const y of kept) {
    const g = y.grad;
    if (g) {
      got++;
      g.dispose();
    }
    y.dispose();
  }
  return { loss, grads: got };
}
