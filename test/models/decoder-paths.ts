/**
 * The fixture tests run every case on both decoder paths: op by op (the default: transformers' eager code line
 * by line) and the addon's fused ops (GOODVIBE_FUSED=1), so neither loses its checks against PyTorch.
 */
import { after, before, describe } from "node:test";
import { setFusedOps } from "../../src/tensor/index.js";

/** Declare `body`'s tests twice, once per path, each in a describe block that switches the path around them. */
export function onBothDecoderPaths(body: () => void): void {
  for (const fused of [false, true])
    describe(fused ? "fused ops (GOODVIBE_FUSED=1)" : "op by op (the default)", () => {
      let prev = false;
      before(() => {
        prev = setFusedOps(fused);
      });
      after(() => {
        setFusedOps(prev);
      });
      body();
    });
}
