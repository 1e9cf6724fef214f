/**
 * The fixture tests run every case on both decoder paths: op by op (GOODVIBE_FUSED=0: transformers' eager code
 * line by line) and every fused op of the addon (GOODVIBE_FUSED=1), so neither loses its checks against PyTorch
 * (the default picks one of the two per op: src/tensor/tensor.ts fusedOps).
 */
import { after, before, describe } from "node:test";
import { setFusedOps } from "../../src/tensor/index.js";

/** Declare `body`'s tests twice, once per path, each in a describe block that switches the path around them. */
export function onBothDecoderPaths(body: () => void): void {
  for (const fused of [false, true])
    describe(fused ? "fused ops (GOODVIBE_FUSED=1)" : "op by op (GOODVIBE_FUSED=0)", () => {
      let prev: boolean | null = null;
      before(() => {
        prev = setFusedOps(fused);
      });
      after(() => {
        setFusedOps(prev);
      });
      body();
    });
}
