/**
 * GoodVibe's delta: the small artifact that carries a hardening without the full weights — per module the
 * selected rows, their cluster assignments and the trained U (one update per cluster), plus the shape of the
 * model it was made for. It is to GoodVibe what PEFT's adapter (src/method/lora/peft.ts) is to LoRA; folding
 * it into a checkpoint is src/method/fold.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import {
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  type TensorToWrite,
} from "../../io/safetensors.js";
import type { DecoderModel } from "../../models/decoder.js";
import { recordToTensor } from "../../models/load.js";
import { tidy, type Tensor } from "../../tensor/index.js";
import type { AttachedMethod } from "../attached.js";
import type { RowSelection } from "./adapter.js";
import { checkModelShape, modelShapeRecord, type ModelShapeRecord } from "./model-shape.js";
import { DELTA_FILE } from "./config.js";

export function writeGoodVibeDelta(
  file: string,
  model: DecoderModel,
  selections: Map<string, RowSelection>,
  method: AttachedMethod,
  meta: Record<string, string> = {},
): void {
  const tensors: TensorToWrite[] = [];
  const i64 = (v: number[]) => new Uint8Array(BigInt64Array.from(v.map((x) => BigInt(x))).buffer);
  for (const [name, sel] of selections) {
    const U = method.trainable.get(`${name}.U`);
    if (!U) throw new Error(`no trained U for ${name}`);
    tensors.push({
      name: `${name}.U`,
      dtype: "F32",
      shape: U.shape,
      data: tidy(() => U.float().contiguous().toBytes()),
    });
    tensors.push({ name: `${name}.rows`, dtype: "I64", shape: [sel.rows.length], data: i64(sel.rows) });
    tensors.push({
      name: `${name}.clusters`,
      dtype: "I64",
      shape: [sel.clusters.length],
      data: i64(sel.clusters),
    });
  }
  writeSafetensors(file, tensors, {
    format: "goodvibe-delta",
    // the metadata key keeps its first name: deltas written before stay readable
    fingerprint: JSON.stringify(modelShapeRecord(model)),
    ...meta,
  });
}

export interface GoodVibeDelta {
  selections: Map<string, RowSelection>;
  U: Map<string, Tensor>;
  /** the shape of the model it was made for (metadata key "fingerprint") */
  modelShape: ModelShapeRecord;
  /** The base model folder harden recorded (metadata base_model), if any. */
  baseModel: string | null;
}

/** The delta file itself, or the one a harden/train output folder holds. */
export function findDeltaFile(fileOrDir: string): string {
  if (fs.existsSync(fileOrDir) && fs.statSync(fileOrDir).isDirectory()) {
    const f = path.join(fileOrDir, DELTA_FILE);
    if (!fs.existsSync(f)) {
      // a LoRA run's output (harden/train --method lora) keeps a PEFT adapter there instead: say where it is
      const adapter = path.join(fileOrDir, "adapter");
      const lora = fs.existsSync(path.join(adapter, "adapter_config.json"))
        ? `; it is a LoRA run's output, whose PEFT LoRA adapter is ${adapter}`
        : "";
      throw new InputError(
        `${fileOrDir}: no ${DELTA_FILE} in this folder (not a GoodVibe run output)${lora}`,
      );
    }
    return f;
  }
  if (!fs.existsSync(fileOrDir)) throw new InputError(`${fileOrDir}: no such GoodVibe delta file`);
  return fileOrDir;
}

/**
 * A delta file's base model (metadata base_model, null when it names none) from its header alone, after the checks
 * of its format that need no tensor: no tensor is read, so the libtorch addon is not loaded. What a command reads
 * to check its arguments before it loads anything.
 */
export function readGoodVibeDeltaBase(file: string): string | null {
  return checkDeltaMetadata(readSafetensorsHeader(file).metadata, file).base_model ?? null;
}

function checkDeltaMetadata(metadata: Record<string, string>, file: string): Record<string, string> {
  if (metadata.format !== "goodvibe-delta" || !metadata.fingerprint)
    throw new InputError(`${file}: not a GoodVibe delta (metadata format/fingerprint missing)`);
  return metadata;
}

export function readGoodVibeDelta(file: string): GoodVibeDelta {
  const f = readSafetensors(file);
  checkDeltaMetadata(f.metadata, file);
  const selections = new Map<string, RowSelection>();
  const U = new Map<string, Tensor>();
  for (const [name, rec] of f.tensors) {
    if (!name.endsWith(".U")) continue;
    const mod = name.slice(0, -2);
    const rows = f.tensors.get(`${mod}.rows`);
    const clusters = f.tensors.get(`${mod}.clusters`);
    if (!rows || !clusters) throw new InputError(`${file}: ${mod} lacks rows or clusters`);
    const r = recordToTensor(rows).toIntArray();
    const c = recordToTensor(clusters).toIntArray();
    const u = recordToTensor(rec);
    if (r.length !== c.length || u.rank !== 2 || c.some((x) => x < 0 || x >= u.size(0)))
      throw new InputError(`${file}: ${mod} has inconsistent rows, clusters and U`);
    selections.set(mod, { rows: r, clusters: c, nClusters: u.size(0) });
    U.set(`${mod}.U`, u);
  }
  return {
    selections,
    U,
    modelShape: JSON.parse(f.metadata.fingerprint),
    baseModel: f.metadata.base_model ?? null,
  };
}

/**
 * The delta fits the model: the shape it records is the model's, and each module's update fits that module (U has
 * the module's input width; rows are distinct rows of it). The recorded shape alone does not show a file whose
 * tensors were edited or cut: folding or exporting one would fail deep in a tensor op, or (a duplicate row, which
 * export turns into two ones in a row of lora_B) write a wrong adapter without a word.
 */
export function checkDeltaFits(model: DecoderModel, delta: GoodVibeDelta, file: string): void {
  checkModelShape(model, delta.modelShape, file);
  for (const [mod, sel] of delta.selections) {
    const layer = model.linear(mod);
    const u = delta.U.get(`${mod}.U`)!;
    if (u.size(1) !== layer.inFeatures)
      throw new InputError(
        `${file}: ${mod}.U has shape [${u.shape}]: its rows must have the module's input width ${layer.inFeatures}`,
      );
    const seen = new Set<number>();
    for (const r of sel.rows) {
      if (!Number.isInteger(r) || r < 0 || r >= layer.outFeatures)
        throw new InputError(
          `${file}: ${mod}.rows holds ${r}, outside the module's ${layer.outFeatures} rows`,
        );
      if (seen.has(r)) throw new InputError(`${file}: ${mod}.rows holds row ${r} twice`);
      seen.add(r);
    }
  }
}
