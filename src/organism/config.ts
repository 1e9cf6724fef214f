/**
 * The embedded organism's settings (the corpus recipe): a module of its own, without the pretraining code, so that
 * `goodvibe organism build --help` can show the defaults without loading models and tensors.
 */
import type { OrganismShape, PretrainSettings } from "./pretrain.js";
import type { SourceBudget } from "./sources.js";

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

/** The CyberNative organism's settings (organism/cybernative.ts builds it; its reference build used these). */
export interface CyberNativeOrganismConfig extends OrganismShape, PretrainSettings {
  /** share of each language's train pairs held out of pretraining (the train-only validation split) */
  valFraction: number;
  /**
   * how that share is drawn (cybernative.ts validationSplit): "group", whole groups of pairs sharing a prompt or
   * code, so that no validation pair was pretrained on; "id", pair by pair, as the reference build (2026-11-29)
   * and the shipped assets/cybernative-organism were made (its record has no valSplit)
   */
  valSplit: ValSplit;
  /** use at most this many pairs per language (0: all); for quick builds and tests, not the reference */
  maxPairsPerLanguage: number;
  /** real code from Debian packages (characters per language after cleaning) */
  sources: Omit<SourceBudget, "seed">;
  /** libtorch threads: the build is bit-identical only at the same count */
  threads: number;
  dtype: "float32" | "bfloat16";
}

export type ValSplit = "group" | "id";

export const CYBERNATIVE_ORGANISM: CyberNativeOrganismConfig = {
  seed: 1234,
  valFraction: 0.1,
  valSplit: "group",
  maxPairsPerLanguage: 0,
  vocabSize: 8192,
  hiddenSize: 256,
  intermediateSize: 768,
  numLayers: 6,
  numHeads: 4,
  numKvHeads: 2,
  blockLength: 512,
  batchSize: 8,
  epochs: 2,
  lr: 2e-3,
  warmupRatio: 0.02,
  // the reference build ran on one core of a 2-core machine in 48 min (BENCHMARKS.md "CyberNative organism");
  // bfloat16 mixed precision trained 2.2× faster than float32 there, 2 threads only 1.3× faster than 1
  threads: 1,
  dtype: "bfloat16",
  sources: {
    pretrainChars: { go: 600_000, java: 600_000, cpp: 400_000, python: 300_000 },
    heldOutChars: { go: 60_000, java: 60_000, cpp: 60_000, python: 30_000 },
    maxFileChars: 16_000,
    minFileChars: 400,
  },
};
