/**
 * Loading a Hugging Face checkpoint folder: config.json + safetensors (single or sharded), weights viewed
 * straight from the memory-mapped files when the dtype matches, converted otherwise.
 */
import type { ModelConfig } from "../io/config.js";
import { loadModelConfig } from "../io/config.js";
import {
  firstNonFinite,
  openModelWeights,
  type ModelWeights,
  type StDtype,
  type TensorRecord,
} from "../io/safetensors.js";
import { InputError } from "../errors.js";
import { checkWeightHeaders, checkWeights } from "../io/model-folder.js";
import {
  Tensor,
  defaultComputeDtype,
  keep,
  noGrad,
  tidy,
  itemSize,
  resolveDevice,
  setDefaultNumThreads,
  type DType,
  type Device,
} from "../tensor/index.js";
import { usableCores } from "../util/cores.js";
import { requireMemory } from "../util/memory.js";
import { DecoderModel, type DecoderLayer, type TensorSource } from "./decoder.js";
import { buildGemma3Layer } from "./gemma3.js";
import { buildPreNormLayer } from "./llama.js";
import { buildQwen2Layer } from "./qwen2.js";
import { buildQwen3Layer } from "./qwen3.js";

const LAYER_BUILDERS: Record<
  ModelConfig["family"],
  (cfg: ModelConfig, i: number, src: TensorSource) => DecoderLayer
> = {
  llama: buildPreNormLayer,
  qwen2: buildQwen2Layer,
  qwen3: buildQwen3Layer,
  gemma3: buildGemma3Layer,
};

export const ST_TO_DTYPE: Partial<Record<StDtype, DType>> = {
  F32: "float32",
  BF16: "bfloat16",
  F16: "float16",
  F64: "float64",
  I64: "int64",
  I32: "int32",
};

export function recordToTensor(rec: TensorRecord): Tensor {
  const dtype = ST_TO_DTYPE[rec.dtype];
  if (!dtype)
    throw new InputError(`${rec.file}: tensor ${rec.name} has dtype ${rec.dtype}, which a model cannot use`);
  return Tensor.fromBytes(rec.data, dtype, rec.shape);
}

/**
 * The tensors buildModel made as views of the checkpoint's mapped bytes (the compute dtype is the stored one, on the
 * CPU): their pages belong to the page cache, which MemAvailable counts as free though the model keeps using them.
 * Every other weight (converted to the compute dtype, copied side by side into a LinearGroup, moved to a device) is
 * the process's own memory, which MemAvailable no longer counts. Full fine-tuning's memory check reads this
 * (method/full.ts), so that it counts each byte once. A view the addon had to copy (bytes not aligned for the dtype)
 * is counted as mapped: the check then asks for more, never less.
 */
const checkpointViews = new WeakSet<Tensor>();
/** Whether `t` is one of the tensors buildModel viewed straight from a checkpoint's mapped file (checkpointViews). */
export function viewsCheckpointFile(t: Tensor): boolean {
  return checkpointViews.has(t);
}

export interface LoadOptions {
  /** Compute dtype; default: the checkpoint's torch_dtype. */
  dtype?: DType;
  /** "cpu" (default), "cuda", "cuda:N", or "auto" (cuda when available); CUDA asked for and absent is an error */
  device?: Device | "auto";
}

/**
 * Build a model from its config and tensors. The tensors are first checked against the config (names,
 * shapes, dtypes, finite values: checkWeights), then the memory is checked, and only then is anything converted.
 */
export function buildModel(
  cfg: ModelConfig,
  tensors: Map<string, TensorRecord>,
  where: string,
  opts: LoadOptions = {},
): DecoderModel {
  // values are checked below in libtorch, as each tensor is made (vectorised, and it sees conversion overflow)
  const byName = checkWeights(cfg, tensors, where, { finite: false });
  // fail early, with the numbers, rather than being killed half-way through a load
  const { device, dtype, params } = requireFits(cfg, byName, where, opts);
  if (cfg.tieWordEmbeddings) requireTiedCopyEqual(byName, where);
  const source: TensorSource = (name, required = true) => {
    const rec = byName.get(name);
    if (!rec) {
      if (!required) return null;
      throw new InputError(`${where}: tensor ${name} is missing (needed by the ${cfg.family} model)`);
    }
    return noGrad(() => {
      const t = recordToTensor(rec);
      let out = t.dtype === dtype ? t : t.to(dtype);
      if (device !== "cpu") out = out.toDevice(device);
      // a sum is finite only when every element is (NaN and ±inf propagate through additions), and it costs one
      // pass without temporaries where isfinite() costs 15x as much (7 s for a 0.5B model); only a non-finite sum
      // (a bad value, or finite values whose sum overflows) is looked at element by element
      if (
        !Number.isFinite(tidy(() => out.sum().item())) &&
        tidy(() => out.isfinite().logicalNot().sum().item()) > 0
      )
        throw nonFinite(rec, dtype);
      if (out === t && device === "cpu") checkpointViews.add(out);
      return keep(out);
    });
  };
  const model = new DecoderModel(cfg, dtype, device, source, LAYER_BUILDERS[cfg.family]);
  setDefaultNumThreads(threadsFor(params));
  return model;
}

/**
 * A tied model (tie_word_embeddings) whose files also store lm_head.weight: the model reads the embedding, and the
 * copy must hold the same values. One that differs makes the folder two models: transformers 5 then does not tie
 * them and projects with the stored lm_head (with a warning; modeling_utils tie_weights), while vLLM skips the copy
 * and ties (vllm-project/vllm#6758); hardening one of the two readings could ship a model other than the user's.
 */
function requireTiedCopyEqual(byName: Map<string, TensorRecord>, where: string): void {
  const head = byName.get("lm_head.weight");
  const embed = byName.get("model.embed_tokens.weight");
  if (!head || !embed) return;
  const same =
    head.dtype === embed.dtype
      ? head.data.equals(embed.data)
      : noGrad(() =>
          tidy(
            () => recordToTensor(head).float().sub(recordToTensor(embed).float()).abs().amax().item() === 0,
          ),
        );
  if (!same)
    throw new InputError(
      `${where}: config.json sets tie_word_embeddings, but ${head.file} stores ${head.name} with values other than ` +
        `${embed.name}'s: transformers 5 loads such a folder untied (its output projection from ${head.name}), vLLM ` +
        `tied (from the embedding), so it is not one model. In a copy of the folder, set ` +
        `"tie_word_embeddings": false to use both as stored, or remove ${head.name} to tie them`,
    );
}

/** A tensor with NaN or infinite values: stored so, or overflowing the compute dtype when converted. */
function nonFinite(rec: TensorRecord, dtype: DType): InputError {
  const i = firstNonFinite(rec);
  return new InputError(
    i >= 0
      ? `${rec.file}: tensor ${rec.name} holds a NaN or infinite value (element ${i} of shape [${rec.shape.join(", ")}]); the checkpoint is corrupt or diverged in training`
      : `${rec.file}: tensor ${rec.name} overflows ${dtype} (values beyond its range become infinite); load it in float32 or bfloat16`,
  );
}

/**
 * libtorch threads for a model of `params` parameters: below ~20 M parameters every op is so small that
 * synchronising threads costs more than it saves (the demo organism runs 2.3× faster on one thread than on
 * two here), above it all cores help (1.7× on the 0.5B benchmark). GOODVIBE_THREADS or an explicit setNumThreads
 * overrides this.
 */
export function threadsFor(params: number): number {
  return params < 20e6 ? 1 : usableCores();
}

/**
 * Parameters of the tensors buildModel makes from `byName` (a multimodal folder's vision tower is not among them,
 * and with tied embeddings neither is a stored lm_head.weight, which the model never reads: DecoderModel).
 */
function paramCount(cfg: ModelConfig, byName: Map<string, TensorRecord>): number {
  let n = 0;
  for (const [name, rec] of byName)
    if (!(cfg.tieWordEmbeddings && name === "lm_head.weight")) n += rec.shape.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Where a load puts the weights and in which dtype, and on the CPU a refusal, with the numbers, when they do not fit
 * the memory available (`available`: for tests): one home for buildModel and the check before it.
 */
function requireFits(
  cfg: ModelConfig,
  byName: Map<string, TensorRecord>,
  where: string,
  opts: LoadOptions & { available?: number },
): { device: Device; dtype: DType; params: number } {
  const device = resolveDevice(opts.device);
  const dtype = opts.dtype ?? defaultComputeDtype(device, cfg.torchDtype);
  const params = paramCount(cfg, byName);
  if (device === "cpu")
    requireMemory(
      params * itemSize(dtype),
      `loading ${where} in ${dtype}`,
      "every method, identification and evaluation hold the whole model; use a machine with more memory, or a " +
        "GPU (GOODVIBE_DEVICE=cuda)",
      opts.available,
    );
  return { device, dtype, params };
}

/**
 * Refuse, from config.json and the safetensors headers alone (nothing mapped, read or hashed), a model whose weights
 * in the compute dtype do not fit the memory available: a command calls it before its first costly step. Without it,
 * a 27.5 GiB Qwen3-14B on a 24 GiB machine was hashed for 48 s and then failed to map ("Cannot allocate memory",
 * reported as a bad file); a model that maps but does not fit would end in the kernel's OOM kill. On a GPU the
 * device's memory is not read here. `available`: for tests.
 */
export function requireModelMemory(dir: string, opts: LoadOptions & { available?: number } = {}): void {
  const cfg = loadModelConfig(dir);
  requireFits(cfg, checkWeightHeaders(cfg, dir), dir, opts);
}

/** Parameters a load of `dir` makes (the text model's: a multimodal folder's vision tower is not loaded), from headers. */
export function loadedParamCount(dir: string): number {
  const cfg = loadModelConfig(dir);
  return paramCount(cfg, checkWeightHeaders(cfg, dir));
}

/** Load a model folder (config.json + safetensors). The folder is only read, never written. */
export function loadModel(dir: string, opts: LoadOptions = {}): DecoderModel {
  return loadModelWithWeights(dir, opts).model;
}

/**
 * loadModel, and the weights it was made from: the model's tensors may be views of their mapped files, so a command
 * that publishes what it computed with them checks their stamps first (io/safetensors.ts weightsUnchanged).
 */
export function loadModelWithWeights(
  dir: string,
  opts: LoadOptions = {},
): { model: DecoderModel; weights: ModelWeights } {
  requireModelMemory(dir, opts);
  const cfg = loadModelConfig(dir);
  const weights = openModelWeights(dir);
  return { model: buildModel(cfg, weights.tensors, dir, opts), weights };
}
