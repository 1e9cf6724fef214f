import { native, type NativeAdamW } from "./native.js";
import { Tensor } from "./tensor.js";

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** each parameter's own weight decay, in `params`' order (torch's parameter groups); replaces weightDecay */
  weightDecays?: number[];
}

/** The state of one parameter, for checkpoints (tensors are copies). */
export interface AdamWParamState {
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
}

/**
 * torch.optim.AdamW (decoupled weight decay) over leaf tensors that require grad, each parameter updated in one pass
 * over its values, gradient and moments in the addon (native/src/train_ops.cc), with torch's arithmetic op by op. On a
 * GPU (libtorch >= 2.0) the update is libtorch's fused AdamW kernel instead: step() takes every parameter with a
 * gradient in one call (torch.optim.AdamW(fused=True)'s kernel; equal to the op-by-op arithmetic within float32
 * rounding); with libtorch 1.13 there, the same arithmetic as ATen ops.
 */
export class AdamW {
  private readonly opt: NativeAdamW;
  readonly params: Tensor[];
  private _lr: number;

  constructor(params: Tensor[], opts: AdamWOptions) {
    const [b1, b2] = opts.betas ?? [0.9, 0.999];
    this.params = params;
    this._lr = opts.lr;
    this.opt = new native.AdamW(
      params.map((p) => p.h),
      opts.lr,
      b1,
      b2,
      opts.eps ?? 1e-8,
      opts.weightDecay ?? 0.01,
      opts.weightDecays ?? null,
    );
  }

  get lr(): number {
    return this._lr;
  }
  set lr(v: number) {
    this._lr = v;
    this.opt.setLr(v);
  }

  /** Steps every parameter that has a gradient, with the gradient multiplied by `gradScale` (clipping). */
  step(gradScale = 1): void {
    this.opt.step(gradScale);
  }

  /**
   * Steps parameter `index` (of `params`) with `grad` · gradScale instead of its own gradient, and writes the
   * updated values into `copy` (rounded to its dtype) in the same pass: a float32 master stepped from the gradient
   * of its bf16 weight, which receives the master rounded. A bf16 gradient is scaled in bf16, as an in-place clip.
   */
  stepParam(index: number, grad: Tensor, copy: Tensor | null, gradScale = 1): void {
    this.opt.stepParam(index, grad.h, copy ? copy.h : null, gradScale);
  }

  /** Drops gradients (set to none), so the next backward writes fresh ones. */
  zeroGrad(): void {
    this.opt.zeroGrad();
  }

  getState(): (AdamWParamState | null)[] {
    return this.opt
      .getState()
      .map((s) =>
        s ? { step: s.step, expAvg: new Tensor(s.expAvg), expAvgSq: new Tensor(s.expAvgSq) } : null,
      );
  }

  setState(state: (AdamWParamState | null)[]): void {
    this.opt.setState(
      state.map((s) => (s ? { step: s.step, expAvg: s.expAvg.h, expAvgSq: s.expAvgSq.h } : null)),
    );
  }
}
