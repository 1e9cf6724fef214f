/**
 * A linear layer with one extension point. y = x Wᵀ + b + adapter(x): GoodVibe's cluster-shared row update,
 * LoRA and full fine-tuning all plug in here, and identification reads y's gradient through `tap`.
 * Every Linear carries its Hugging Face name (`model.layers.3.mlp.down_proj`).
 * Linears that read the same input (q/k/v, gate/up) may share one product (LinearGroup); each still sees its own
 * output through its adapter and tap.
 */
import { InputError } from "../errors.js";
import {
  Tensor,
  frozenLinear,
  frozenLinearGradOnly,
  fusedOps,
  isGradEnabled,
  keep,
  noGrad,
  releaseMappedPages,
  splitColumns,
} from "../tensor/index.js";
import { DxSlot, frozenCopyKind, frozenDxMode } from "./frozen-dx.js";

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

/**
 * Sees each output as it is made (identification keeps its gradient). In a `gradOnly` forward (gradient
 * checkpointing's recomputation) y's values are not the layer's: there a tap may use only y's gradient.
 */
export type OutputTap = (y: Tensor, layer: Linear) => void;

/**
 * Whether a frozen weight's product reads a copy (frozenDx): a bf16 weight where frozenDx is on and the model's plan
 * gives `slot` a copy for a product this size (models/frozen-dx.ts). A linear outside a model (no plan, no budget)
 * makes a copy only when frozenDx is forced on.
 */
function copyFor(x: Tensor, w: Tensor, slot: DxSlot): boolean {
  if (w.dtype !== "bfloat16") return false;
  const mode = frozenDxMode(x.device);
  if (mode === "off") return false;
  const rows = x.numel / x.size(-1);
  return slot.plan ? slot.plan.allows(slot, mode, rows, w.size(0), w.size(1)) : mode === "forced";
}

/**
 * x Wᵀ + b; a frozen bf16 weight's dX from its transposed copy, or its forward and dX from its float32 copy where
 * bf16 products are computed in float32 (tensor.ts frozenLinear), where copyFor says so. `gradOnly`: the caller will
 * never read the values, only backpropagate through them; for a frozen weight no product runs then
 * (frozenLinearGradOnly: zeros whose backward is the product's own dX).
 */
function product(x: Tensor, w: Tensor, b: Tensor | null, slot: DxSlot, gradOnly = false): Tensor {
  const frozen = !w.requiresGrad && !b?.requiresGrad;
  if (gradOnly && frozen)
    return frozenLinearGradOnly(x, w, b, isGradEnabled() && x.requiresGrad && copyFor(x, w, slot));
  if (w.dtype !== "bfloat16" || !frozen) return x.linear(w, b);
  // a transposed copy serves only a backward: without one to run frozenLinear is x.linear, and no plan is made
  const forward = frozenCopyKind(x.device) === "float32";
  if (!forward && (!isGradEnabled() || !x.requiresGrad)) return x.linear(w, b);
  return copyFor(x, w, slot) ? frozenLinear(x, w, b) : x.linear(w, b);
}

export class Linear {
  adapter: LinearAdapter | null = null;
  tap: OutputTap | null = null;
  /** where the frozenDx plan decides this weight's copy (its group's slot when it has one) */
  dxSlot: DxSlot;

  constructor(
    readonly name: string,
    public weight: Tensor,
    public bias: Tensor | null,
  ) {
    this.dxSlot = new DxSlot(name, name === "lm_head", () => this.weight);
  }

  get outFeatures(): number {
    return this.weight.size(0);
  }
  get inFeatures(): number {
    return this.weight.size(1);
  }

  /**
   * `gradOnly`: y's values will not be read, only its gradient (the last product of a layer that gradient
   * checkpointing recomputes): a frozen weight's product is skipped, its adapter and tap still apply.
   */
  forward(x: Tensor, gradOnly = false): Tensor {
    return this.finish(x, product(x, this.weight, this.bias, this.dxSlot, gradOnly));
  }

  /** The adapter and the tap on y = x Wᵀ + b, whether y came from this layer's product or its group's. */
  finish(x: Tensor, y: Tensor): Tensor {
    if (this.adapter) y = this.adapter.apply(x, y, this);
    if (this.tap) this.tap(y, this);
    return y;
  }
}

/**
 * Linears that read the same input, their weights stored side by side: one product x·[W₁; W₂; …]ᵀ + [b₁; b₂; …]
 * for all of them instead of one each (k and v have only 128 outputs on Qwen2.5-0.5B's shape, a product that size
 * runs far below the matmul peak), and one product for dx in backward. The output is split by columns
 * (splitColumns) and each block finished by its own linear (adapter, tap), so each sees exactly its own output.
 *
 * The weights are concatenated once, when the group is made, and each linear's weight (and bias) becomes a view
 * of its rows of the shared tensor: no weight is held twice, in-place updates (a fold, full fine-tuning's AdamW)
 * reach the shared tensor, and whatever reads a linear's weight (fold, save, GGUF export) still sees its own.
 * The one product runs where fusedOps("concatLinear") is on and nothing departs from that layout: a linear whose
 * weight or bias is not the group's view any more (replaced) or needs a gradient (full fine-tuning: each weight's
 * gradient is its own) runs its own product, as do all when the switch is off.
 */
export class LinearGroup {
  /** [Σ out, in]: every linear's weight, in order; null when the linears cannot share one tensor */
  readonly weight: Tensor | null = null;
  readonly bias: Tensor | null = null;
  private readonly sizes: number[];
  private readonly views: { weight: Tensor; bias: Tensor | null }[] = [];
  /** the frozenDx slot of the concatenated weight, which its linears share */
  readonly dxSlot: DxSlot | null = null;

  constructor(readonly linears: Linear[]) {
    if (linears.length < 2) throw new InputError("LinearGroup: at least two linear layers");
    this.sizes = linears.map((l) => l.outFeatures);
    const [first] = linears;
    const w0 = first.weight;
    const shareable = linears.every(
      (l) =>
        l.inFeatures === first.inFeatures &&
        l.weight.dtype === w0.dtype &&
        l.weight.device === w0.device &&
        !l.weight.requiresGrad &&
        !!l.bias === !!first.bias &&
        (!l.bias || (l.bias.dtype === w0.dtype && !l.bias.requiresGrad)),
    );
    if (!shareable) return;
    const join = (ts: Tensor[]) => keep(noGrad(() => Tensor.cat(ts, 0)));
    this.weight = join(linears.map((l) => l.weight));
    this.bias = first.bias ? join(linears.map((l) => l.bias!)) : null;
    let start = 0;
    for (const l of linears) {
      const n = l.outFeatures;
      const weight = keep(noGrad(() => this.weight!.narrow(0, start, n)));
      const bias = this.bias ? keep(noGrad(() => this.bias!.narrow(0, start, n))) : null;
      // the copies replace the checkpoint's mapped bytes (no weight held twice, in RSS either)
      for (const t of [l.weight, l.bias]) {
        if (!t) continue;
        releaseMappedPages(t);
        t.dispose();
      }
      l.weight = weight;
      l.bias = bias;
      this.views.push({ weight, bias });
      start += n;
    }
    this.dxSlot = new DxSlot(linears.map((l) => l.name).join("+"), false, () => this.weight);
    for (const l of linears) l.dxSlot = this.dxSlot;
  }

  /** Whether the one product stands for the linears' own: each weight and bias still the group's, none trains. */
  private shared(): boolean {
    if (!this.weight) return false;
    return this.linears.every(
      (l, i) =>
        l.weight === this.views[i].weight &&
        l.bias === this.views[i].bias &&
        !l.weight.requiresGrad &&
        !l.bias?.requiresGrad,
    );
  }

  /** Each linear's output (adapter and tap applied), in order. */
  forward(x: Tensor): Tensor[] {
    if (!fusedOps("concatLinear", x.device) || !this.shared()) return this.linears.map((l) => l.forward(x));
    const parts = splitColumns(product(x, this.weight!, this.bias, this.dxSlot!), this.sizes);
    return this.linears.map((l, i) => l.finish(x, parts[i]));
  }
}
