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
  type SafetensorsFile,
  type TensorToWrite,
} from "../../io/safetensors.js";
import { WEIGHT_DTYPES } from "../../io/model-folder.js";
import type { ShapeSource } from "../../models/shapes.js";
import type { DecoderModel } from "../../models/decoder.js";
import { recordToTensor } from "../../models/load.js";
import { tidy, type Tensor } from "../../tensor/index.js";
import type { AttachedMethod } from "../attached.js";
import type { RowSelection } from "./adapter.js";
import {
  checkModelShape,
  modelShapeRecord,
  parseModelShapeRecord,
  type ModelShapeRecord,
} from "./model-shape.js";
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

/** What a delta's header says: every check of the file that needs no tensor's values has passed. */
export interface GoodVibeDeltaHeader {
  /** the shape of the model it was made for, as stored (metadata key "fingerprint"; checkDeltaHeaderFits reads it) */
  fingerprint: string;
  /** The base model folder harden recorded (metadata base_model), if any. */
  baseModel: string | null;
  /** per module: U's shape [clusters, input width] and the number of selected rows */
  modules: Map<string, { u: [number, number]; rows: number }>;
}

/**
 * A delta file's header, checked without reading a tensor (so the libtorch addon is not loaded): its metadata, its
 * record of the model's shape, and per module a U of rank 2 in a float dtype beside rows and clusters of one length
 * (int64, rank 1); a tensor of no module, or no module at all, is refused. What a command reads to check its
 * arguments, and the delta against the model's config (checkDeltaHeaderFits), before it loads anything.
 */
export function readGoodVibeDeltaHeader(file: string): GoodVibeDeltaHeader {
  return deltaHeader(readSafetensorsHeader(file), file);
}

function deltaHeader(f: Pick<SafetensorsFile, "metadata" | "tensors">, file: string): GoodVibeDeltaHeader {
  const { metadata } = f;
  if (metadata.format !== "goodvibe-delta" || !metadata.fingerprint)
    throw new InputError(`${file}: not a GoodVibe delta (metadata format/fingerprint missing)`);
  const modules = new Map<string, { u: [number, number]; rows: number }>();
  for (const [name, rec] of f.tensors) {
    if (!name.endsWith(".U")) continue;
    const mod = name.slice(0, -2);
    const rows = f.tensors.get(`${mod}.rows`);
    const clusters = f.tensors.get(`${mod}.clusters`);
    if (!rows || !clusters) throw new InputError(`${file}: ${mod} lacks rows or clusters`);
    const fail = (what: string) => new InputError(`${file}: ${mod}.${what}`);
    if (!WEIGHT_DTYPES.includes(rec.dtype)) throw fail(`U has dtype ${rec.dtype}, not a float`);
    if (rec.shape.length !== 2 || rec.shape[0]! < 1)
      throw fail(`U has shape [${rec.shape}]: it must be [clusters, input width]`);
    for (const t of [rows, clusters])
      if (t.dtype !== "I64" || t.shape.length !== 1)
        throw fail(`${t.name.slice(mod.length + 1)} is ${t.dtype} [${t.shape}]: it must be int64 of rank 1`);
    if (rows.shape[0] !== clusters.shape[0])
      throw fail(`rows has ${rows.shape[0]} entries and clusters ${clusters.shape[0]}: one cluster per row`);
    modules.set(mod, { u: [rec.shape[0]!, rec.shape[1]!], rows: rows.shape[0]! });
  }
  for (const name of f.tensors.keys()) {
    const m = /^(.*)\.(U|rows|clusters)$/.exec(name);
    if (!m || !modules.has(m[1]!))
      throw new InputError(
        `${file}: tensor ${name} belongs to no module's update (<module>.U, .rows, .clusters)`,
      );
  }
  if (modules.size === 0) throw new InputError(`${file}: the delta holds no module's update (no <module>.U)`);
  return { fingerprint: metadata.fingerprint, baseModel: metadata.base_model ?? null, modules };
}

/**
 * The delta's header fits the model whose shapes `shape` gives (a loaded model, or models/shapes.ts ModelShape of a
 * folder's config.json, which loading checks against the weights' headers): the model shape it records (naming the
 * first difference: a module, the layer counts, the family, the vocabulary), then each module's U width and row
 * count. No tensor is read: a command calls it before the model loads or the delta's tensors are read.
 */
export function checkDeltaHeaderFits(shape: ShapeSource, header: GoodVibeDeltaHeader, file: string): void {
  checkModelShape(shape, deltaModelShape(header, file), file);
  const linears = new Map(shape.linears().map((l) => [l.name, l]));
  for (const [mod, m] of header.modules) {
    const layer = linears.get(mod);
    if (!layer) throw new InputError(`${file}: ${mod} is not a linear layer of this model`);
    if (m.u[1] !== layer.inFeatures)
      throw new InputError(
        `${file}: ${mod}.U has shape [${m.u}]: its rows must have the module's input width ${layer.inFeatures}`,
      );
    if (m.rows > layer.outFeatures)
      throw new InputError(
        `${file}: ${mod}.rows holds ${m.rows} rows, more than the module's ${layer.outFeatures}`,
      );
  }
}

export function readGoodVibeDelta(file: string): GoodVibeDelta {
  const f = readSafetensors(file);
  const header = deltaHeader(f, file);
  const selections = new Map<string, RowSelection>();
  const U = new Map<string, Tensor>();
  for (const mod of header.modules.keys()) {
    const r = recordToTensor(f.tensors.get(`${mod}.rows`)!).toIntArray();
    const c = recordToTensor(f.tensors.get(`${mod}.clusters`)!).toIntArray();
    const u = recordToTensor(f.tensors.get(`${mod}.U`)!);
    const bad = c.findIndex((x) => x < 0 || x >= u.size(0));
    if (bad >= 0)
      throw new InputError(
        `${file}: ${mod}.clusters holds ${c[bad]}, outside U's ${u.size(0)} clusters (0 to ${u.size(0) - 1})`,
      );
    selections.set(mod, { rows: r, clusters: c, nClusters: u.size(0) });
    U.set(`${mod}.U`, u);
  }
  return { selections, U, modelShape: deltaModelShape(header, file), baseModel: header.baseModel };
}

function deltaModelShape(header: GoodVibeDeltaHeader, file: string): ModelShapeRecord {
  return parseModelShapeRecord(header.fingerprint, `${file} (metadata fingerprint)`);
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
