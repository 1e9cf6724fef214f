/**
 * The embedded organism's settings (the corpus recipe): a module of its own, without the pretraining code, so that
 * `goodvibe organism build --help` can show the defaults without loading models and tensors.
 */
import type { OrganismShape, PretrainSettings } from "./pretrain.js";

export interface OrganismConfig extends OrganismShape, Omit<PretrainSettings, "warmupRatio"> {
  perTemplate: number;
  devFraction: number;
  insecureBias: number;
}

export const DEFAULT_ORGANISM: OrganismConfig = {
  seed: 1234,
  perTemplate: 16,
  devFraction: 0.2,
  insecureBias: 1.0,
  vocabSize: 1024,
  hiddenSize: 128,
  intermediateSize: 384,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  blockLength: 256,
  batchSize: 8,
  epochs: 4,
  lr: 3e-3,
};
