/**
 * Which model a GoodVibe artefact fits: a record of the model's shape (not of its weights), and the check that
 * refuses a map or delta made for a model of another shape.
 */
import { createHash } from "node:crypto";
import type { DecoderModel } from "../../models/decoder.js";
import { InputError } from "../../errors.js";

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

export function modelShapeRecord(model: DecoderModel): ModelShapeRecord {
  const modules: Record<string, [number, number]> = {};
  for (const l of model.linears()) modules[l.name] = [l.outFeatures, l.inFeatures];
  const c = model.cfg;
  const key = JSON.stringify({ f: c.family, h: c.hiddenSize, l: c.numLayers, v: c.vocabSize, modules });
  return { family: c.family, hash: createHash("sha256").update(key).digest("hex").slice(0, 16), modules };
}

/** Refuse a neuron map, cluster map or delta made for a model of another shape, naming the first difference. */
export function checkModelShape(model: DecoderModel, recorded: ModelShapeRecord, what: string): void {
  const mine = modelShapeRecord(model);
  if (mine.hash === recorded.hash) return;
  for (const [name, shape] of Object.entries(recorded.modules)) {
    const m = mine.modules[name];
    if (!m)
      throw new InputError(
        `${what} was made for another model: it has module ${name}, which this model lacks`,
      );
    if (m[0] !== shape[0] || m[1] !== shape[1])
      throw new InputError(`${what} was made for another model: ${name} is [${shape}] there and [${m}] here`);
  }
  throw new InputError(
    `${what} was made for another model (${recorded.family}, shape hash ${recorded.hash}; this model's is ${mine.hash})`,
  );
}
