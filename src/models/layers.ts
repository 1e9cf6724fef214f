/**
 * The building blocks shared by every family, with Hugging Face's numerics: RMSNorm (w·x or (1+w)·x, computed
 * in float32), rotary embeddings in the half-split (NeoX) layout with default / linear / dynamic / llama3 / yarn
 * frequency scaling, causal grouped-query attention, and the gated MLP.
 *
 * Each block has two paths: transformers' eager code op by op, with the additive finfo.min mask (PyTorch's
 * numerics, and the reference the fused ops are tested against), or the addon's fused ops (native/src/fused.cc:
 * one pass forward and one backward per block, attention without a materialised mask). Which one runs is
 * decided per op by fusedOps (src/tensor/tensor.ts: fused on the CPU where measured faster, GOODVIBE_FUSED=0/1
 * to force either path).
 */
import type { ModelConfig, RopeScaling } from "../io/config.js";
import {
  Tensor,
  attention,
  fusedOps,
  gatedAct,
  keep,
  noGrad,
  rmsNorm,
  rope,
  type DType,
  type Device,
} from "../tensor/index.js";
import { Linear, LinearGroup } from "./linear.js";

export class RMSNorm {
  constructor(
    readonly name: string,
    public weight: Tensor,
    readonly eps: number,
    readonly onePlus: boolean,
  ) {}

  forward(x: Tensor): Tensor {
    if (fusedOps("rmsNorm", x.device)) return rmsNorm(x, this.weight, this.eps, this.onePlus);
    const dtype = x.dtype;
    const xf = x.float();
    const normed = xf.mul(xf.square().mean(-1, true).add(this.eps).rsqrt());
    if (this.onePlus) {
      // Gemma: (1 + w) in float32, then back to the input dtype
      return normed.mul(this.weight.float().add(1)).to(dtype);
    }
    // Llama/Qwen: cast back first, then scale by w
    return this.weight.mul(dtype === "float32" ? normed : normed.to(dtype));
  }
}

/** float32 inverse frequencies, exactly as transformers' rope init functions compute them. */
export function ropeInvFreq(headDim: number, theta: number, scaling: RopeScaling): Tensor {
  return noGrad(() => {
    const exponents = Tensor.arange(0, headDim, 2, "int64").float().div(headDim);
    const invFreq = Tensor.scalar(theta).pow(exponents).reciprocal();
    // dynamic: transformers' frequencies below max_position_embeddings are the default ones
    if (scaling.type === "default" || scaling.type === "dynamic") return invFreq;
    if (scaling.type === "linear") return invFreq.div(scaling.factor);
    if (scaling.type === "yarn") return yarnInvFreq(headDim, theta, scaling);
    // llama3: keep high frequencies, divide low ones by factor, interpolate the band between
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldCtx } = scaling;
    const lowFreqWavelen = oldCtx / lowFreqFactor;
    const highFreqWavelen = oldCtx / highFreqFactor;
    const wavelen = invFreq.reciprocal().mul(2 * Math.PI);
    const scaled = Tensor.where(wavelen.gt(lowFreqWavelen), invFreq.div(factor), invFreq);
    const smooth = wavelen
      .reciprocal()
      .mul(oldCtx)
      .sub(lowFreqFactor)
      .div(highFreqFactor - lowFreqFactor);
    const smoothed = smooth.rsub(1).mul(scaled).div(factor).add(smooth.mul(scaled));
    const isMedium = wavelen
      .lt(highFreqWavelen)
      .logicalNot()
      .logicalAnd(wavelen.gt(lowFreqWavelen).logicalNot());
    return Tensor.where(isMedium, smoothed, scaled);
  });
}

type YarnScaling = Extract<RopeScaling, { type: "yarn" }>;

/** The dimension (of `dim`) whose wavelength turns `rotations` times over `length` positions. */
function yarnCorrectionDim(rotations: number, dim: number, theta: number, length: number): number {
  return (dim * Math.log(length / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
}

/**
 * YaRN's frequencies, op for op as transformers 5's _compute_yarn_parameters: dimensions below the correction
 * range keep their frequency (extrapolation), those above are divided by `factor` (interpolation), a linear
 * ramp blends the range between.
 */
function yarnInvFreq(dim: number, theta: number, s: YarnScaling): Tensor {
  const posFreqs = Tensor.scalar(theta).pow(Tensor.arange(0, dim, 2, "int64").float().div(dim));
  const extrapolation = posFreqs.reciprocal();
  const interpolation = posFreqs.mul(s.factor).reciprocal();
  let low = yarnCorrectionDim(s.betaFast, dim, theta, s.originalMaxPositionEmbeddings);
  let high = yarnCorrectionDim(s.betaSlow, dim, theta, s.originalMaxPositionEmbeddings);
  if (s.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  [low, high] = [Math.max(low, 0), Math.min(high, dim - 1)];
  if (low === high) high += 0.001; // transformers' guard against a zero-width ramp
  const ramp = Tensor.arange(0, dim / 2, 1, "int64")
    .float()
    .sub(low)
    .div(high - low)
    .clamp(0, 1);
  const extrapolationFactor = ramp.rsub(1);
  return interpolation.mul(extrapolationFactor.rsub(1)).add(extrapolation.mul(extrapolationFactor));
}

/** The factor cos and sin are multiplied by (transformers' attention_scaling): YaRN's, else 1. */
export function ropeAttentionScaling(scaling: RopeScaling): number {
  return scaling.type === "yarn" ? scaling.attentionFactor : 1;
}

/** cos/sin tables [B, 1, T, headDim] for position ids [B, T], scaled in float32 before the cast as transformers. */
export function ropeTables(
  invFreq: Tensor,
  positionIds: Tensor,
  dtype: DType,
  attentionScaling = 1,
): { cos: Tensor; sin: Tensor } {
  return noGrad(() => {
    const freqs = positionIds.float().unsqueeze(-1).mul(invFreq); // [B, T, d/2]
    const emb = Tensor.cat([freqs, freqs], -1).unsqueeze(1); // [B, 1, T, d]
    if (attentionScaling === 1) return { cos: emb.cos().to(dtype), sin: emb.sin().to(dtype) };
    return {
      cos: emb.cos().mul(attentionScaling).to(dtype),
      sin: emb.sin().mul(attentionScaling).to(dtype),
    };
  });
}

function rotateHalf(x: Tensor): Tensor {
  const half = x.size(-1) / 2;
  return Tensor.cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
}

export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  return x.mul(cos).add(rotateHalf(x).mul(sin));
}

/** Per-layer key/value cache: [B, kvHeads, T, headDim], grown by concatenation. */
export class KVCache {
  keys: (Tensor | null)[];
  values: (Tensor | null)[];
  constructor(numLayers: number) {
    this.keys = new Array(numLayers).fill(null);
    this.values = new Array(numLayers).fill(null);
  }
  get length(): number {
    return this.keys[0] ? this.keys[0].size(2) : 0;
  }
  update(layer: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const pk = this.keys[layer];
    const pv = this.values[layer];
    const nk = pk ? Tensor.cat([pk, k], 2) : k;
    const nv = pv ? Tensor.cat([pv, v], 2) : v;
    pk?.dispose();
    pv?.dispose();
    // the cache outlives the tidy() scope of the step that grew it
    this.keys[layer] = keep(nk);
    this.values[layer] = keep(nv);
    return [nk, nv];
  }
  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
  }
}

export interface AttentionInputs {
  cos: Tensor;
  sin: Tensor;
  /** [B, S] with 0 for padding keys (S = past + T), or null when every key is real */
  keyMask: Tensor | null;
  /** sliding window of this layer kind (a query sees itself and the window - 1 positions before it), or null */
  window: number | null;
  /** the op-by-op path's additive mask [B, 1, T, S] (absent when the fused attention runs: it needs none) */
  mask?: Tensor;
  cache?: KVCache;
}

const FINFO_MIN: Partial<Record<DType, number>> = {
  float32: -3.4028234663852886e38,
  bfloat16: -3.3895313892515355e38,
  float16: -65504,
  float64: -1.7976931348623157e308,
};

/**
 * transformers' additive mask [B, 1, T, S]: 0 where query t (cache position past + t) may see key j — j <= it,
 * inside the window, not padding — and finfo(dtype).min elsewhere.
 */
export function additiveMask(
  B: number,
  T: number,
  past: number,
  window: number | null,
  keyMask: Tensor | null,
  dtype: DType,
  device: Device = "cpu",
): Tensor {
  return noGrad(() => {
    const S = past + T;
    const qpos = Tensor.arange(past, S, 1, "int64", device).unsqueeze(1); // [T, 1]
    const kpos = Tensor.arange(0, S, 1, "int64", device).unsqueeze(0); // [1, S]
    let allowed = kpos.le(qpos); // [T, S]
    if (window) allowed = allowed.logicalAnd(kpos.gt(qpos.sub(window)));
    let a = allowed.unsqueeze(0).unsqueeze(0);
    if (keyMask) a = a.logicalAnd(keyMask.ne(0).unsqueeze(1).unsqueeze(1)); // [B, 1, 1, S]
    return Tensor.zeros([B, 1, T, S], dtype, device).maskedFill(
      a.expand([B, 1, T, S]).logicalNot(),
      FINFO_MIN[dtype] ?? -1e30,
    );
  });
}

export class Attention {
  /** q, k and v in one product (their weights become views of one tensor; see LinearGroup) */
  readonly qkv: LinearGroup;

  constructor(
    readonly cfg: ModelConfig,
    readonly layerIndex: number,
    readonly q: Linear,
    readonly k: Linear,
    readonly v: Linear,
    readonly o: Linear,
    readonly qNorm: RMSNorm | null,
    readonly kNorm: RMSNorm | null,
  ) {
    this.qkv = new LinearGroup([q, k, v]);
  }

  /** q and k per head ([B, T, heads, D], normed where the family norms them) and v as [B, kvHeads, T, D]. */
  private project(h: Tensor): { q: Tensor; k: Tensor; v: Tensor; B: number; T: number } {
    const { numHeads, numKvHeads, headDim } = this.cfg;
    const [B, T] = h.shape as [number, number];
    const [yq, yk, yv] = this.qkv.forward(h);
    let q = yq.view([B, T, numHeads, headDim]);
    let k = yk.view([B, T, numKvHeads, headDim]);
    const v = yv.view([B, T, numKvHeads, headDim]).transpose(1, 2);
    if (this.qNorm) q = this.qNorm.forward(q);
    if (this.kNorm) k = this.kNorm.forward(k);
    return { q, k, v, B, T };
  }

  /** `gradOnly`: the output's values will not be read, only its gradient (Linear.forward): o_proj may skip its product. */
  forward(h: Tensor, inp: AttentionInputs, gradOnly = false): Tensor {
    if (!fusedOps("attention", h.device)) return this.forwardOpByOp(h, inp, gradOnly);
    const { numKvHeads, headDim } = this.cfg;
    const { q, B, T, ...p } = this.project(h);
    // q as [B, kvHeads, T, rep, D]: each KV head's query heads side by side, the layout attention reads
    const qg = rope(q, inp.cos, inp.sin, numKvHeads);
    let k = rope(p.k, inp.cos, inp.sin, numKvHeads).view([B, numKvHeads, T, headDim]);
    let v = p.v;
    if (inp.cache) [k, v] = inp.cache.update(this.layerIndex, k, v);
    const out = attention(qg, k, v, {
      scale: this.cfg.attnScale,
      past: k.size(2) - T,
      window: inp.window,
      keyMask: inp.keyMask,
      softcap: this.cfg.attnLogitSoftcapping,
    });
    return this.o.forward(out, gradOnly);
  }

  /** transformers' eager attention, op by op (the reference for the fused path). */
  forwardOpByOp(h: Tensor, inp: AttentionInputs, gradOnly = false): Tensor {
    const { numHeads, numKvHeads, headDim } = this.cfg;
    const { B, T, ...p } = this.project(h);
    const q = applyRope(p.q.transpose(1, 2), inp.cos, inp.sin);
    let k = applyRope(p.k.transpose(1, 2), inp.cos, inp.sin);
    let v = p.v;
    if (inp.cache) [k, v] = inp.cache.update(this.layerIndex, k, v);
    // Grouped-query attention without copying k and v per query head: query head h uses kv head h / rep, so
    // the rep query heads of a group are stacked along time and multiplied against their shared k and v.
    const rep = numHeads / numKvHeads;
    const S = k.size(2);
    const mask =
      inp.mask ?? additiveMask(B, T, S - T, inp.window, inp.keyMask, q.dtype, this.q.weight.device as Device);
    const qg = q.reshape([B, numKvHeads, rep * T, headDim]);
    let scores = qg.matmul(k.transpose(2, 3)).view([B, numHeads, T, S]).mul(this.cfg.attnScale);
    const cap = this.cfg.attnLogitSoftcapping;
    if (cap) scores = scores.div(cap).tanh().mul(cap);
    const probs = scores.add(mask).softmax(-1, "float32").to(q.dtype);
    const ctx = probs
      .view([B, numKvHeads, rep * T, S])
      .matmul(v)
      .view([B, numHeads, T, headDim]);
    const out = ctx.transpose(1, 2).reshape([B, T, numHeads * headDim]);
    return this.o.forward(out, gradOnly);
  }
}

export class MLP {
  /** gate and up in one product (their weights become views of one tensor; see LinearGroup) */
  readonly gateUp: LinearGroup;

  constructor(
    readonly gate: Linear,
    readonly up: Linear,
    readonly down: Linear,
    readonly act: "silu" | "gelu_pytorch_tanh",
  ) {
    this.gateUp = new LinearGroup([gate, up]);
  }

  /** `gradOnly`: the output's values will not be read, only its gradient (Linear.forward): down_proj may skip its product. */
  forward(x: Tensor, gradOnly = false): Tensor {
    const [g, u] = this.gateUp.forward(x);
    if (fusedOps("gatedAct", x.device)) return this.down.forward(gatedAct(g, u, this.act), gradOnly);
    const a = this.act === "silu" ? g.silu() : g.gelu("tanh");
    return this.down.forward(a.mul(u), gradOnly);
  }
}
