/**
 * What a fine-tuning method attached to a model gives the trainer and the folding code: which tensors train and
 * how they fold back into a checkpoint. GoodVibe (goodvibe/model.ts), LoRA (lora/model.ts) and full fine-tuning
 * (full.ts) all go through the same training loop (train.ts), which only asks a method for its trainable tensors.
 */
import type { DecoderModel } from "../models/decoder.js";
import type { LinearAdapter } from "../models/linear.js";
import type { Tensor } from "../tensor/index.js";

export type MethodName = "goodvibe" | "lora" | "full";

export interface AttachedMethod {
  readonly name: MethodName;
  /**
   * The method's settings that its trainable tensors' names and shapes do not show (LoRA's scaling and dropout,
   * GoodVibe's rows and clusters, the seed of a random init): a training checkpoint resumes only under the same.
   */
  readonly settings: Record<string, unknown>;
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
  /** foldedWeights' names, in its order, without computing a tensor. */
  readonly foldedNames: readonly string[];
  /**
   * One of foldedWeights' tensors alone (`base`: that tensor as the checkpoint stores it): the fold into a checkpoint
   * makes one at a time, as the writer reaches it, so that the changed weights never all exist at once in float32.
   */
  foldedWeight(name: string, base?: Tensor): Tensor;
  /**
   * Present when the method changes only some rows of its weights by adding float32 rows (GoodVibe): per HF
   * tensor name, the rows (distinct) and the float32 rows added to them. foldedWeights gives the same values as
   * whole tensors; the fold into a checkpoint uses this to touch only the changed rows.
   */
  rowUpdates?(): Map<string, { rows: number[]; delta: Tensor }>;
  /** Undo attach: the model computes as before (full FT keeps its updated weights). */
  detach(): void;
  setTraining(on: boolean): void;
}

/**
 * Float32 masters for low-precision weights. Each weight's master is split along its first dimension into
 * chunks of at most MASTER_CHUNK (full.ts) elements, and each chunk is one trainable tensor (a view into the master, so
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
  settings: Record<string, unknown>,
  setTraining: (on: boolean) => void = () => {},
): AttachedMethod {
  const foldedNames = [...adapters.keys()].map((n) => `${n}.weight`);
  const foldedWeight = (name: string, base?: Tensor) => {
    const n = name.replace(/\.weight$/, "");
    const a = adapters.get(n);
    if (!a || name === n) throw new Error(`${name}: no adapter folds into this tensor`);
    // the checkpoint's tensor comes from the host; the update lives with the model (a GPU's)
    return a.foldedWeight(model.linear(n), base?.onDevice(model.device));
  };
  return {
    name,
    settings,
    trainable,
    foldedNames,
    foldedWeight,
    foldedWeights: (base) => new Map(foldedNames.map((n) => [n, foldedWeight(n, base?.(n) ?? undefined)])),
    ...([...adapters.values()].every((a) => a.rowUpdate)
      ? {
          rowUpdates: () => new Map([...adapters].map(([n, a]) => [`${n}.weight`, a.rowUpdate!()] as const)),
        }
      : {}),
    detach: () => {
      for (const n of adapters.keys()) model.linear(n).adapter = null;
    },
    setTraining,
  };
}
