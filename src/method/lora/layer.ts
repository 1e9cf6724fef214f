/**
 * LoRA on one linear layer (PEFT convention): y = x Wᵀ + b + scaling · (dropout(x) Aᵀ) Bᵀ,
 * A [r, in] initialised like PEFT (Kaiming-uniform with a = √5, i.e. U(-1/√in, 1/√in)), B [out, r] = 0.
 */
import type { Linear, LinearAdapter } from "../../models/linear.js";
import { Tensor, dropout, keep, noGrad, type Device } from "../../tensor/index.js";

export class LoraAdapter implements LinearAdapter {
  readonly A: Tensor;
  readonly B: Tensor;
  training = true;

  constructor(
    readonly r: number,
    readonly scaling: number,
    readonly dropoutP: number,
    inFeatures: number,
    outFeatures: number,
    init?: { A?: Tensor; B?: Tensor },
    /** the layer's device: A and B live there (drawn on the host, so the same seed gives the same A anywhere) */
    device: Device = "cpu",
  ) {
    this.A = keep(
      noGrad(() =>
        (init?.A
          ? init.A.float().clone()
          : Tensor.rand([r, inFeatures])
              .mul(2)
              .sub(1)
              .mul(1 / Math.sqrt(inFeatures))
        ).onDevice(device),
      ).requiresGrad_(),
    );
    this.B = keep(
      noGrad(() =>
        init?.B ? init.B.float().onDevice(device).clone() : Tensor.zeros([outFeatures, r], "float32", device),
      ).requiresGrad_(),
    );
  }

  apply(x: Tensor, y: Tensor): Tensor {
    const xin = this.dropoutP > 0 && this.training ? dropout(x, this.dropoutP, true) : x;
    const low = xin.linear(this.A.to(x.dtype)).linear(this.B.to(x.dtype));
    return y.add(low.mul(this.scaling));
  }

  trainable(): Tensor[] {
    return [this.A, this.B];
  }

  foldedWeight(layer: Linear, base?: Tensor): Tensor {
    return noGrad(() => (base ?? layer.weight).float().add(this.B.matmul(this.A).mul(this.scaling)));
  }
}
