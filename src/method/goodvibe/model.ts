/**
 * GoodVibe on a decoder model: one ClusterRowAdapter per selected linear layer (the rows of its security
 * neurons, one shared update row per cluster), and the AttachedMethod the trainer and the folding code use.
 */
import type { DecoderModel } from "../../models/decoder.js";
import type { Device, Tensor } from "../../tensor/index.js";
import { canonicalJson, sha256 } from "../../io/hash.js";
import { adapterMethod, type AttachedMethod } from "../attached.js";
import { ClusterRowAdapter, type RowSelection } from "./adapter.js";

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
  // which rows share which update (the U tensors' shapes show only the number of clusters)
  const settings = { selections: sha256(canonicalJson([...selections])) };
  return adapterMethod(
    "goodvibe",
    model,
    adapters,
    new Map([...adapters].map(([n, a]) => [`${n}.U`, a.U])),
    settings,
  );
}
