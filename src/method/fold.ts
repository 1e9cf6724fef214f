/**
 * Folding a trained method back into a normal Hugging Face checkpoint: W' = W + ΔW in float32, cast to the
 * checkpoint's dtype, written with the base model's config and tokenizer files into a new folder (atomically;
 * the base folder is only read). The small artifacts that travel without the full weights have their own homes:
 * GoodVibe's delta in src/method/goodvibe/delta.ts, LoRA's PEFT adapter in src/method/lora/peft.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { checkOutput, publishedPath, writeDirAtomic, writeFileAtomic } from "../io/atomic.js";
import { loadModelConfig } from "../io/config.js";
import { F16OverflowCounter, f16OverflowWarning, type F16Overflow } from "../io/export-overflow.js";
import { checkWeights, isVisionTensor, readModelFiles, writeModelFiles } from "../io/model-folder.js";
import {
  openModelWeights,
  writeModelWeightsAsync,
  type AnyTensorToWrite,
  type StDtype,
  type TensorRecord,
  type TensorToWrite,
  weightsUnchanged,
} from "../io/safetensors.js";
import { ST_TO_DTYPE, recordToTensor } from "../models/load.js";
import { Tensor, noGrad, tidy, type DType, type Device } from "../tensor/index.js";
import type { AttachedMethod } from "./attached.js";
import { requireDisk } from "../util/memory.js";
import { stopPoint } from "../util/stop.js";

export interface FoldStats {
  tensorsChanged: number;
  /** rows whose stored values differ from the base after the cast */
  rowsChanged: number;
  /** rows the method meant to change (non-zero ΔW rows) */
  rowsUpdated: number;
  /** rows with a non-zero float32 update that rounding to the checkpoint dtype erased */
  rowsVanished: number;
  dtype: string;
  warnings: string[];
  /**
   * A float16 checkpoint's folded values beyond float16's range (|x| > 65504), written as ±inf (as torch's
   * W.to(float16) would) with a warning each: the model then computes inf/NaN. Empty for other dtypes.
   */
  f16Overflow: F16Overflow[];
  /** tensors of a multimodal checkpoint's image side (Gemma3's vision tower and projector), written as stored */
  visionTensors?: number;
}

/** Row-wise comparison: how many rows differ between a and b ([out, in] tensors), as a boolean list. */
function rowsDiffer(a: Tensor, b: Tensor): boolean[] {
  return tidy(() => {
    const d = a.float().ne(b.float()).to("int64").sum(-1);
    return d.toIntArray().map((v) => v > 0);
  });
}

/**
 * Counts in `overflow` under `name` the values that `folded` (float32) held finite and `cast` (its cast to the
 * stored dtype) holds as ±inf: only float16 has a range a fold can leave (bfloat16 has float32's).
 */
function countOverflow(name: string, folded: Tensor, cast: Tensor, overflow: F16OverflowCounter): void {
  if (cast.dtype !== "float16") return;
  tidy(() => {
    const lost = cast.isfinite().logicalNot().logicalAnd(folded.isfinite());
    const n = lost.to("int64").sum().item();
    if (n > 0) overflow.addCounted(name, n, folded.abs().maskedFill(lost.logicalNot(), 0).amax().item());
  });
}

/**
 * A tensor of which only `upd.rows` change: those rows of the stored bytes are read, folded as foldedWeight does
 * (float32(W[r]) + delta, cast back to the stored dtype: the same arithmetic, so the same bytes), and written as
 * patches over the stored bytes; every other row is the input's bytes, never copied or converted.
 */
function patchRows(
  rec: TensorRecord,
  dtype: DType,
  upd: { rows: number[]; delta: Tensor },
  count: (intended: boolean[], changed: boolean[]) => void,
  overflow: F16OverflowCounter,
): TensorToWrite {
  const [outRows, inFeatures] = rec.shape;
  if (rec.shape.length !== 2 || upd.delta.shape[1] !== inFeatures || upd.delta.shape[0] !== upd.rows.length)
    throw new Error(
      `fold: the row update of ${rec.name} does not fit its shape ${JSON.stringify(rec.shape)}`,
    );
  const rowBytes = rec.data.byteLength / outRows!;
  // rows in file order: the patches must be sorted
  const order = upd.rows.map((r, i) => [r, i] as const).sort((a, b) => a[0] - b[0]);
  const sel = new Uint8Array(order.length * rowBytes);
  order.forEach(([r], k) => {
    if (!(r >= 0 && r < outRows!)) throw new Error(`fold: row ${r} of ${rec.name} is out of range`);
    sel.set(rec.data.subarray(r * rowBytes, (r + 1) * rowBytes), k * rowBytes);
  });
  const newRows = noGrad(() =>
    tidy(() => {
      const base = Tensor.fromBytes(sel, dtype, [order.length, inFeatures!]);
      const perm = Tensor.fromArray(
        order.map(([, i]) => i),
        [order.length],
        "int64",
      );
      // the stored rows are on the host, the update on the model's device: folded on the host (a few rows)
      const f32 = base.float().add(upd.delta.onDevice(base.device as Device).indexSelect(0, perm));
      const cast = f32.to(dtype).contiguous();
      count(rowsDiffer(f32, base.float()), rowsDiffer(cast, base));
      countOverflow(rec.name, f32, cast, overflow);
      return cast.toBytes();
    }),
  );
  return {
    name: rec.name,
    dtype: rec.dtype,
    shape: rec.shape,
    data: rec.data,
    patches: order.map(([r], k) => ({
      offset: r * rowBytes,
      bytes: newRows.subarray(k * rowBytes, (k + 1) * rowBytes),
    })),
  };
}

/**
 * Fold into a new checkpoint folder, published in one rename (complete or absent). An existing non-empty
 * `outDir` is refused unless `overwrite`, and then moved aside, never deleted.
 */
export async function foldIntoCheckpoint(
  baseDir: string,
  outDir: string,
  method: AttachedMethod,
  opts: { overwrite?: boolean; signal?: AbortSignal; onMovedAside?: (aside: string) => void } = {},
): Promise<FoldStats> {
  checkOutput({
    flag: "output folder",
    path: outDir,
    kind: "folder",
    inputs: { "model folder": baseDir },
    overwrite: opts.overwrite,
  });
  let stats: FoldStats | undefined;
  await writeDirAtomic(
    outDir,
    async (tmp) => {
      stats = await writeFoldedCheckpoint(baseDir, tmp, method, opts);
    },
    { overwrite: opts.overwrite ?? false, onMovedAside: opts.onMovedAside },
  );
  return stats!;
}

/**
 * Write the folded checkpoint (weights, config, generation config, tokenizer files) into `dir`, a folder being
 * built (the caller publishes it). Stops between tensors on `signal` (InterruptedError).
 */
export async function writeFoldedCheckpoint(
  baseDir: string,
  dir: string,
  method: AttachedMethod,
  opts: { signal?: AbortSignal } = {},
): Promise<FoldStats> {
  // the files besides the weights (config, tokenizer) read first: one that cannot be read is reported before the
  // long weight write, not after it
  const sideFiles = readModelFiles(baseDir);
  const weights = openModelWeights(baseDir);
  // a method that changes a few rows (GoodVibe) has those rows patched into the stored bytes; the others are
  // folded as whole tensors. Both fold onto the tensors as stored: a model that computed in bf16 must not round
  // a float32 checkpoint.
  const rowUpdates = method.rowUpdates?.() ?? null;
  try {
    writeModelFiles(dir, sideFiles);
    return await writeFolded(baseDir, dir, method, weights, rowUpdates, opts.signal);
  } finally {
    for (const u of rowUpdates?.values() ?? []) u.delta.dispose();
  }
}

const EMBED = "model.embed_tokens.weight";

async function writeFolded(
  baseDir: string,
  dir: string,
  method: AttachedMethod,
  weights: ReturnType<typeof openModelWeights>,
  rowUpdates: Map<string, { rows: number[]; delta: Tensor }> | null,
  signal: AbortSignal | undefined,
): Promise<FoldStats> {
  const folded = new Set(rowUpdates ? [] : method.foldedNames);
  // The method names tensors as the text model does (model.layers.…); a multimodal Gemma3 checkpoint stores them
  // under a prefix (language_model.model.…, model.language_model.…). The output keeps the input's names, layout
  // and every other tensor (the vision tower, the projector) as stored, so that it loads as the same model.
  const cfg = loadModelConfig(baseDir);
  const textName = new Map<string, string>();
  for (const [name, rec] of checkWeights(cfg, weights.tensors, baseDir, { finite: false }))
    textName.set(rec.name, name);
  // Some checkpoints of a tied model also store lm_head.weight (Qwen1.5-0.5B-Chat did; some trainers' saves do). The
  // model never reads it, but a loader may: which of the two keys fills the tied weight differs between loaders and
  // transformers versions. When the embedding is folded (full fine-tuning), that copy is written with the folded
  // embedding, so that every loader gets the trained values; left as stored, it could undo the training's embedding.
  const foldedAs = (name: string) =>
    cfg.tieWordEmbeddings && name === "lm_head.weight" && folded.has(EMBED) ? EMBED : name;
  const reached = new Set([...textName.values()].filter((n) => folded.has(n) || rowUpdates?.has(n)));
  const lost = [...folded, ...(rowUpdates?.keys() ?? [])].filter((n) => !reached.has(n));
  if (lost.length > 0) throw new Error(`fold: ${lost.join(", ")} has no tensor in ${baseDir} to fold into`);
  let totalBytes = 0;
  for (const rec of weights.tensors.values()) totalBytes += rec.data.byteLength;
  // `dir` is usually the folder being built (a hidden temporary): the message then names the output and the folder
  // it goes in (the temporary's, so the same file system), not a name the user never typed
  const built = path.resolve(dir);
  const shown = publishedPath(built);
  requireDisk(
    shown === built ? built : path.dirname(built),
    totalBytes * 1.05,
    `writing the hardened checkpoint to ${shown}`,
  );
  const stats: FoldStats = {
    tensorsChanged: 0,
    rowsChanged: 0,
    rowsUpdated: 0,
    rowsVanished: 0,
    dtype: "",
    warnings: [],
    f16Overflow: [],
  };
  const overflow = new F16OverflowCounter();
  const count = (intended: boolean[], changed: boolean[]) =>
    intended.forEach((want, i) => {
      if (want) stats.rowsUpdated++;
      if (changed[i]) stats.rowsChanged++;
      if (want && !changed[i]) stats.rowsVanished++;
    });
  const dtypes = new Set<string>();
  const out: AnyTensorToWrite[] = [];
  for (const [stored, rec] of weights.tensors) {
    await stopPoint(signal, `fold stopped at tensor ${stored}; nothing was written`);
    const name = foldedAs(textName.get(stored) ?? stored);
    const rowUpd = textName.has(stored) ? rowUpdates?.get(name) : undefined;
    if (!textName.has(stored) || (!folded.has(name) && !rowUpd)) {
      out.push(rec);
      continue;
    }
    const dtype = ST_TO_DTYPE[rec.dtype];
    if (!dtype) throw new InputError(`${rec.file}: cannot fold into tensor ${stored} of dtype ${rec.dtype}`);
    dtypes.add(rec.dtype);
    stats.tensorsChanged++;
    if (rowUpd) {
      out.push(patchRows(rec, dtype, rowUpd, count, overflow));
      continue;
    }
    // folded as the writer reaches it and dropped once written: all at once, the changed weights in float32 and
    // their bytes would be held together (LoRA on every projection of a 7B model: about 39 GB); its bytes are
    // copied a few rows at a time, not as a second whole copy
    out.push({
      name: stored,
      dtype: rec.dtype as StDtype,
      shape: rec.shape,
      bytes: function* () {
        const cast = noGrad(() =>
          tidy(() => {
            const base = recordToTensor(rec);
            // computed where the model is (a GPU's), compared and cast beside the stored tensor, on the host
            const upd = method.foldedWeight(name, base).onDevice(base.device as Device);
            const c = upd.to(dtype);
            if (base.rank === 2) count(rowsDiffer(upd, base.float()), rowsDiffer(c, base));
            countOverflow(stored, upd, c, overflow);
            return c;
          }),
        );
        try {
          yield* cast.bytesInParts();
        } finally {
          cast.dispose();
        }
      },
    });
  }
  // stops on `signal` before each tensor it writes (the fold of each is done there), leaving no partial file
  await writeModelWeightsAsync(dir, out, { signal });
  stats.dtype = [...dtypes].join(",");
  const vision = [...weights.tensors.keys()].filter(isVisionTensor).length;
  if (vision > 0) stats.visionTensors = vision;
  if (stats.rowsVanished > 0)
    stats.warnings.push(
      `${stats.rowsVanished} of ${stats.rowsUpdated} updated rows did not change after casting to ${stats.dtype}: ` +
        `the update is below ${stats.dtype}'s rounding there (train longer, raise the learning rate, or save in float32)`,
    );
  stats.f16Overflow = overflow.found;
  for (const o of overflow.found)
    stats.warnings.push(
      f16OverflowWarning(
        o,
        "fold into a bfloat16 or float32 copy of the base (export --format safetensors --outtype bfloat16) to keep them",
      ),
    );
  // the stored tensors are views of the mapped base files: one written into meanwhile may have given mixed bytes
  weightsUnchanged(weights, "the fold");
  return stats;
}
