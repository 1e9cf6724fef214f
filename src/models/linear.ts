/**
 * A linear layer with one extension point. y = x Wᵀ + b + adapter(x): GoodVibe's cluster-shared row update,
 * LoRA and full fine-tuning all plug in here, and identification reads y's gradient through `tap`.
 * Every Linear carries its Hugging Face name (`model.layers.3.mlp.down_proj`).
 */
import { Tensor } from "../tensor/index.js";

export interface LinearAdapter {
  /** Returns the layer output with the adapter's contribution added. `y` is x Wᵀ + b. */
  apply(x: Tensor, y: Tensor, layer: Linear): Tensor;
  /** Tensors the optimiser trains. */
  trainable(): Tensor[];
  /**
   * W + ΔW in float32, for folding into a checkpoint. `base` is W as the checkpoint stores it (a bf16 model
   * computes with rounded weights, which must not replace a float32 checkpoint's); default the layer's weight.
   */
  foldedWeight(layer: Linear, base?: Tensor): Tensor;
  /**
   * When the adapter changes only some rows by adding float32 rows (GoodVibe): those rows (distinct) and what is
   * added to each ([rows, in] float32), so that foldedWeight(layer, W)[rows[i]] = float32(W[rows[i]]) + delta[i]
   * and every other row is W's. The fold then touches only these rows.
   */
  rowUpdate?(): { rows: number[]; delta: Tensor };
}

/** Sees each output as it is made (identification keeps its gradient). */
export type OutputTap = (y: Tensor, layer: Linear) => void;

export class Linear {
  adapter: LinearAdapter | null = null;
  tap: OutputTap | null = null;

  constructor(
    readonly name: string,
    public weight: Tensor,
    public bias: Tensor | null,
  ) {}

  get outFeatures(): number {
    return this.weight.size(0);
  }
  get inFeatures(): number {
    return this.weight.size(1);
  }

  forward(x: Tensor): Tensor {
    let y = x.linear(this.weight, this.bias);
    if (this.adapter) y = this.adapter.apply(x, y, this);
    if (this.tap) this.tap(y, this);
    return y;
  }
}
