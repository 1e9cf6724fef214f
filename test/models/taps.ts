/**
 * Keeps the gradient of every linear output of a model through a backward pass (the tests that compare two paths
 * of the decoder gradient by gradient).
 */
import { keep, type Tensor } from "../../src/tensor/index.js";
import type { DecoderModel } from "../../src/models/decoder.js";

/**
 * Taps every linear of `model`: each output is kept (and made to hold its gradient: retained, or a leaf that
 * requires one where it has no history), as [linear name, output] in call order. untapLinears() removes the taps;
 * the caller disposes the outputs.
 */
export function tapLinears(model: DecoderModel): [string, Tensor][] {
  const kept: [string, Tensor][] = [];
  for (const lin of model.linears())
    lin.tap = (y) => {
      if (y.requiresGrad) y.retainGrad();
      else y.requiresGrad_();
      kept.push([lin.name, keep(y)]);
    };
  return kept;
}

export function untapLinears(model: DecoderModel): void {
  for (const lin of model.linears()) lin.tap = null;
}
