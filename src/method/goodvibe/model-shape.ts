/**
 * Which model a GoodVibe artefact fits: a record of the model's shape (not of its weights), and the check that
 * refuses a map or delta made for a model of another shape.
 */
import { createHash } from "node:crypto";
import type { ShapeSource } from "../../models/shapes.js";
import { InputError } from "../../errors.js";
import { isPlainObject } from "../../util/keys.js";

/**
 * The shape of the model a neuron map, cluster map or delta was made for: its family, every linear module's
 * [out, in] and a hash of those with the hidden size, layer count and vocabulary. An architecture check, not a
 * content hash: the same model after fine-tuning has the same record (the folder's content hash is
 * io/hash.ts modelWeightsHash). Stored under the key "model" of maps and in a delta's metadata.
 */
export interface ModelShapeRecord {
  family: string;
  hash: string;
  modules: Record<string, [number, number]>;
}

/** The record of a loaded model, or of a model folder's config.json alone (models/shapes.ts ModelShape): the same. */
export function modelShapeRecord(model: ShapeSource): ModelShapeRecord {
  const modules: Record<string, [number, number]> = {};
  for (const l of model.linears()) modules[l.name] = [l.outFeatures, l.inFeatures];
  const c = model.cfg;
  const key = JSON.stringify({ f: c.family, h: c.hiddenSize, l: c.numLayers, v: c.vocabSize, modules });
  return { family: c.family, hash: createHash("sha256").update(key).digest("hex").slice(0, 16), modules };
}

/** `text` (a record as a file stores it, JSON) checked to be a ModelShapeRecord; `what` names it in the error. */
export function parseModelShapeRecord(text: string, what: string): ModelShapeRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = null;
  }
  const r = v as Record<string, unknown> | null;
  const dims = (x: unknown) =>
    Array.isArray(x) && x.length === 2 && x.every((n) => Number.isSafeInteger(n) && (n as number) > 0);
  if (
    !isPlainObject(r) ||
    typeof r.family !== "string" ||
    typeof r.hash !== "string" ||
    !isPlainObject(r.modules) ||
    !Object.values(r.modules as object).every(dims)
  )
    throw new InputError(
      `${what}: its record of the model's shape is not {family, hash, modules: {name: [rows, columns]}}`,
    );
  return r as unknown as ModelShapeRecord;
}

/** The number of decoder layers a record's modules span (model.layers.<i>.…). */
function layersOf(modules: Record<string, unknown>): number {
  let last = -1;
  for (const name of Object.keys(modules)) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) last = Math.max(last, Number(m[1]));
  }
  return last + 1;
}

/**
 * Refuse a neuron map, cluster map or delta made for a model of another shape, naming the first difference: a
 * module (missing, or of another [rows, columns]) with both layer counts, the family, else the vocabulary (the one
 * part of the hash the modules do not show). `model` is a loaded model or its config's shapes (ModelShape).
 */
export function checkModelShape(model: ShapeSource, recorded: ModelShapeRecord, what: string): void {
  const mine = modelShapeRecord(model);
  if (mine.hash === recorded.hash) return;
  const fail = (why: string): never => {
    throw new InputError(`${what} was made for another model: ${why}`);
  };
  const layers = `${layersOf(recorded.modules)} layers there, ${layersOf(mine.modules)} here`;
  for (const [name, shape] of Object.entries(recorded.modules)) {
    const m = mine.modules[name];
    if (!m) fail(`it has module ${name}, which this model lacks (${layers})`);
    else if (m[0] !== shape[0] || m[1] !== shape[1]) fail(`${name} is [${shape}] there and [${m}] here`);
  }
  for (const name of Object.keys(mine.modules))
    if (!Object.hasOwn(recorded.modules, name))
      fail(`this model has module ${name}, which it lacks (${layers})`);
  if (recorded.family !== mine.family) fail(`a ${recorded.family} model there, ${mine.family} here`);
  fail(
    `its modules are this model's, but not its vocabulary (vocab_size ${model.cfg.vocabSize} here; shape hash ${recorded.hash} there, ${mine.hash} here)`,
  );
}
