/** Full fine-tuning on a decoder model: every parameter trains, in mixed precision for a bf16 model. */
import type { DecoderModel } from "../models/decoder.js";
import {
  itemSize,
  keep,
  noGrad,
  resolveDevice,
  type DType,
  type Device,
  type Tensor,
} from "../tensor/index.js";
import { loadedParamCount, viewsCheckpointFile } from "../models/load.js";
import type { AttachedMethod, WeightSource } from "./attached.js";
import { fullTrainingNeedBytes } from "./flops.js";
import { formatBytes, requireMemory } from "../util/memory.js";

/** Elements per master chunk (64 MiB of float32). */
export const MASTER_CHUNK = 16 * 1024 * 1024;

/** foldedWeights and its parts over the whole tensors a method trains: views of them, not copies. */
function foldedViews(
  weights: Map<string, Tensor>,
): Pick<AttachedMethod, "foldedNames" | "foldedWeight" | "foldedWeights"> {
  const foldedWeight = (name: string) => {
    const w = weights.get(name);
    if (!w) throw new Error(`${name}: not a weight of this model`);
    return w.detach();
  };
  const foldedNames = [...weights.keys()];
  return {
    foldedNames,
    foldedWeight,
    foldedWeights: () => new Map(foldedNames.map((n) => [n, foldedWeight(n)])),
  };
}

function requireFullTrainingMemory(
  count: number,
  dtype: DType,
  held: number,
  available: number | undefined,
  heldWhen: "already" | "once loaded",
): void {
  requireMemory(
    fullTrainingNeedBytes(count, dtype, held),
    `full fine-tuning of ${count.toLocaleString("en-US")} parameters (${
      dtype === "float32"
        ? "float32 weights, gradients and AdamW moments, 16"
        : `${dtype} weights and gradients, float32 master copies and AdamW moments, 16`
    } bytes per parameter, and a tenth more for activations and temporaries${
      held > 0
        ? `, less the ${formatBytes(held)} of weights ${heldWhen === "already" ? "already in memory" : "the load will hold"}`
        : ""
    })`,
    "GoodVibe and LoRA train a small part of the model and need a small part of that; or use a machine with more memory",
    available,
  );
}

/**
 * attachFull's memory check from the folder's headers, before the model is loaded (44 s for Qwen3-8B's 15 GiB on a
 * 24 GiB CPU machine): the least full fine-tuning can need, every weight counted as already in memory. A model that
 * fails it is refused before its load; one that passes is checked again, exactly, once loaded (attachFull). On a
 * GPU the device's memory is not read here.
 */
export function requireFullTrainingMemoryOf(dir: string, dtype: DType, available?: number): void {
  if (resolveDevice() !== "cpu") return;
  const count = loadedParamCount(dir);
  requireFullTrainingMemory(count, dtype, count * itemSize(dtype), available, "once loaded");
}

/**
 * Full fine-tuning: every parameter trains. A float32 model trains in place (its parameters are their own master
 * copies: the fp32 path the PyTorch fixtures check). A bf16 (or fp16) model trains in mixed precision, as §4.2
 * of the paper: the forward and backward run on the model's bf16 weights, which receive bf16 gradients; AdamW
 * updates float32 master copies (in chunks, see MixedPrecision) with float32 moments, one chunk at a time
 * (train.ts): one pass reads the chunk's bf16 gradient rows and writes the master, its moments and the rounded
 * bf16 weight rows. Memory: 2 (weights) + 2 (gradients) + 4 (master) + 8 (moments) = 16 bytes per parameter.
 */
export function attachFull(
  model: DecoderModel,
  opts: {
    checkpoint?: WeightSource;
    /** elements per master chunk */ chunk?: number;
    /** the free memory to check against (default MemAvailable now): for tests */
    availableMemoryBytes?: number;
  } = {},
): AttachedMethod {
  const params = model.parameters();
  let count = 0;
  // the weights already in this process's own memory (converted to the compute dtype, or copied side by side at
  // load), which MemAvailable no longer counts as free: the need is what is still to be taken (flops.ts)
  let held = 0;
  for (const p of params.values()) {
    count += p.numel;
    if (!viewsCheckpointFile(p)) held += p.numel * itemSize(p.dtype);
  }
  // Said before the first byte of it is taken: a training state larger than the memory left would otherwise fill
  // it over the first step and end in the kernel's OOM kill (or swapping) with nothing said. A 1-layer model of
  // Qwen3-14B's width has 1.9 B parameters, 1.56 B of them in the embedding and lm_head: 28 GiB of weights and
  // state. On a GPU the state is the device's, whose free memory the addon does not read.
  if (model.device === "cpu")
    requireFullTrainingMemory(count, model.dtype, held, opts.availableMemoryBytes, "already");
  for (const p of params.values()) p.requiresGrad_(true);
  if (model.dtype === "float32")
    return {
      name: "full",
      settings: {},
      trainable: params,
      // views of the parameters, not copies: a 7B model's weights are not duplicated to write the checkpoint
      ...foldedViews(params),
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
        // where the weight is: a checkpoint's tensor is read on the host, and a master on another device than its
        // weight's gradient fails the first AdamW step on a GPU ("Expected all tensors to be on the same device")
        const there = t.onDevice(p.device as Device); // a copy when t is elsewhere
        if (there !== t) {
          if (there.dtype === "float32") return there;
          const master = there.to("float32");
          there.dispose(); // the bf16 copy: 2 bytes a parameter on the device, not left to the collector
          return master;
        }
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
    settings: {},
    trainable,
    mixed: { copies: params, masters, chunks },
    ...foldedViews(masters),
    detach: () => {
      for (const p of params.values()) p.requiresGrad_(false);
    },
    setTraining: () => {},
  };
}
