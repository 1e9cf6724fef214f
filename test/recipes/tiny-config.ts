/**
 * The recipe tests' harden settings on the tiny chat model (test/evalcore/make-model.ts): small and fast, every stage
 * run. With 4 pairs in the file, 2 are trained on: one step per epoch at batch 2.
 */
import { defaultHardenConfig, type HardenConfig } from "../../src/config/harden.js";

export function tinyHardenConfig(
  model: string,
  data: string,
  out: string,
  over: Partial<HardenConfig> = {},
): HardenConfig {
  const d = defaultHardenConfig({ model, data, out });
  return {
    ...d,
    dtype: "float32",
    identify: { ...d.identify, topK: 3, batchSize: 4, maxLength: 512, gradientCheckpointing: false },
    cluster: { ...d.cluster, features: "importance" },
    train: {
      ...d.train,
      epochs: 1,
      batchSize: 2,
      gradAccum: 1,
      maxPairs: 2,
      warmupRatio: 0,
      gradientCheckpointing: false,
    },
    ...over,
  };
}
