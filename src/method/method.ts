/**
 * A fine-tuning method = which tensors train and how they fold back into a checkpoint. GoodVibe, LoRA and full
 * fine-tuning all go through the same training loop (train.ts), which only asks a method for its trainable tensors.
 */
import type { DecoderModel } from "../models/decoder.js";
import type { LinearAdapter } from "../models/linear.js";
import { Tensor, keep, noGrad, type Device } from "../tensor/index.js";
import { ClusterRowAdapter, type RowSelection } from "./goodvibe/adapter.js";

export type MethodName = "goodvibe" | "lora" | "full";

export interface AttachedMethod {
  readonly name: MethodName;
  /**
   * Trainable tensors by a stable name (checkpoints and artifacts use these names): always float32, the master
   * copies that AdamW updates, whatever dtype the model computes in.
   */
  readonly trainable: Map<string, Tensor>;
  /**
   * Mixed precision where the forward cannot use the masters directly (full fine-tuning of a bf16 model). Absent
   * when the masters are what the forward uses (adapters cast their float32 tensors themselves; a float32 model
   * is its own master).
   */
  readonly mixed?: MixedPrecision;
  /**
   * New float32 weights for every tensor the method changes, by HF tensor name. `base` gives a tensor as the
   * checkpoint stores it (fold passes the file's tensors, so that a bf16 model's rounding never reaches a float32
   * checkpoint); without it, the model's own weights are the base.
   */
  foldedWeights(base?: WeightSource): Map<string, Tensor>;
  /** Undo attach: the model computes as before (full FT keeps its updated weights). */
  detach(): void;
  setTraining(on: boolean): void;
}

/**
 * Float32 masters for low-precision weights. Each weight's master is split along its first dimension into
 * chunks of at most MASTER_CHUNK elements, and each chunk is one trainable tensor (a view into the master, so
 * the master stays one tensor for folding): AdamW's temporaries and the float32 copy of a gradient then never
 * exceed a chunk, where a 150k-token embedding would otherwise need three extra copies of half a gigabyte.
 */
export interface MixedPrecision {
  /** HF name → the bf16 weight the model computes with (its gradient trains the master) */
  copies: Map<string, Tensor>;
  /** HF name → the whole float32 master */
  masters: Map<string, Tensor>;
  /** trainable name → the weight it belongs to and the rows it covers */
  chunks: Map<string, { weight: string; start: number; rows: number }>;
}

/** Elements per master chunk (64 MiB of float32). */
export const MASTER_CHUNK = 16 * 1024 * 1024;

/** A checkpoint's tensor by HF name, in its stored dtype (null when absent). */
export type WeightSource = (name: string) => Tensor | null;

export function countParams(ts: Iterable<Tensor>): number {
  let n = 0;
  for (const t of ts) n += t.numel;
  return n;
}

/**
 * The AttachedMethod of adapters on linear layers (GoodVibe's, LoRA's), by layer name: each folds into its
 * layer's weight, and detaching takes them off the layers.
 */
export function adapterMethod(
  name: MethodName,
  model: DecoderModel,
  adapters: ReadonlyMap<string, LinearAdapter>,
  trainable: Map<string, Tensor>,
  setTraining: (on: boolean) => void = () => {},
): AttachedMethod {
  return {
    name,
    trainable,
    foldedWeights: (base) =>
      new Map(
        [...adapters].map(([n, a]) => [
          `${n}.weight`,
          a.foldedWeight(model.linear(n), base?.(`${n}.weight`) ?? undefined),
        ]),
      ),
    detach: () => {
      for (const n of adapters.keys()) model.linear(n).adapter = null;
    },
    setTraining,
  };
}

/** GoodVibe: one ClusterRowAdapter per selected linear layer. */
export function attachGoodVibe(
  model: DecoderModel,
  selections: Map<string, RowSelection>,
  init?: Map<string, Tensor>,
): AttachedMethod {
  const adapters = new Map<string, ClusterRowAdapter>();
  for (const [name, sel] of selections) {
    const layer = model.linear(name);
    for (const r of sel.rows)
      if (!Number.isInteger(r) || r < 0 || r >= layer.outFeatures)
        throw new Error(`${name}: selected row ${r} outside [0, ${layer.outFeatures})`);
    const a = new ClusterRowAdapter(
      sel,
      layer.inFeatures,
      init?.get(`${name}.U`),
      layer.weight.device as Device,
    );
    layer.adapter = a;
    adapters.set(name, a);
  }
  return adapterMethod("goodvibe", model, adapters, new Map([...adapters].map(([n, a]) => [`${n}.U`, a.U])));
}

/**
 * Full fine-tuning: every parameter trains. A float32 model trains in place (its parameters are their own master
 * copies: the fp32 path the PyTorch fixtures check). A bf16 (or fp16) model trains in mixed precision, as §4.2
 * of the paper: the forward and backward run on the model's bf16 weights, which receive bf16 gradients; AdamW
 * updates float32 master copies (in chunks, see MixedPrecision) with float32 moments, one chunk at a time
 * (train.ts), and the rounded master is copied back. Memory: 2 (weights) + 2 (gradients) + 4 (master) + 8
 * (moments) = 16 bytes per parameter, plus a chunk's worth of temporaries.
 */
export function attachFull(
  model: DecoderModel,
  opts: { checkpoint?: WeightSource; /** elements per master chunk */ chunk?: number } = {},
): AttachedMethod {
  const params = model.parameters();
  for (const p of params.values()) p.requiresGrad_(true);
  if (model.dtype === "float32")
    return {
      name: "full",
      trainable: params,
      // views of the parameters, not copies: a 7B model's weights are not duplicated to write the checkpoint
      foldedWeights: () => new Map([...params].map(([n, p]) => [n, p.detach()])),
      detach: () => {
        for (const p of params.values()) p.requiresGrad_(false);
      },
      setTraining: () => {},
    };
  // masters start from the checkpoint's values when given (a float32 checkpoint keeps its precision), else
  // from the model's own weights
  const masters = new Map<string, Tensor>();
  const trainable = new Map<string, Tensor>();
  const chunks = new Map<string, { weight: string; start: number; rows: number }>();
  for (const [n, p] of params) {
    const master = keep(
      noGrad(() => {
        const stored = opts.checkpoint?.(n);
        if (stored && stored.shape.join() !== p.shape.join())
          throw new Error(`${n}: the checkpoint has shape [${stored.shape}], the model [${p.shape}]`);
        const t = stored ?? p.detach();
        return t.dtype === "float32" ? t.clone() : t.to("float32");
      }),
    );
    masters.set(n, master);
    const rows = p.size(0);
    const perRow = p.numel / rows;
    const step = Math.max(1, Math.floor((opts.chunk ?? MASTER_CHUNK) / perRow));
    for (let start = 0; start < rows; start += step) {
      const len = Math.min(step, rows - start);
      const name = step >= rows ? n : `${n}#${start}`;
      // a view of a tensor that needs no gradient is a leaf: AdamW updates it in place, in the master's storage
      trainable.set(name, keep(noGrad(() => master.narrow(0, start, len)).requiresGrad_()));
      chunks.set(name, { weight: n, start, rows: len });
    }
  }
  return {
    name: "full",
    trainable,
    mixed: { copies: params, masters, chunks },
    foldedWeights: () => new Map([...masters].map(([n, p]) => [n, p.detach()])),
    detach: () => {
      for (const p of params.values()) p.requiresGrad_(false);
    },
    setTraining: () => {},
  };
}
