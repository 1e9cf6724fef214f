/**
 * Llama's decoder layer (also Qwen2's and Qwen3's: they differ from Llama only by config flags — q/k/v biases
 * for Qwen2, per-head q/k RMSNorm before RoPE for Qwen3 — which the shared Attention reads).
 *   x = x + attn(input_layernorm(x));  x = x + mlp(post_attention_layernorm(x))
 */
import type { ModelConfig } from "../io/config.js";
import type { Tensor } from "../tensor/index.js";
import {
  layerNorms,
  layerParts,
  type DecoderLayer,
  type ResidualBlock,
  type TensorSource,
} from "./decoder.js";
import type { Attention, AttentionInputs, MLP, RMSNorm } from "./layers.js";

export class PreNormLayer implements DecoderLayer {
  readonly norms: RMSNorm[];
  /** attention and MLP: o_proj's and down_proj's outputs reach only the residual sums (DecoderLayer.blocks) */
  readonly blocks: readonly ResidualBlock[];
  constructor(
    readonly index: number,
    readonly attn: Attention,
    readonly mlp: MLP,
    readonly inputNorm: RMSNorm,
    readonly postAttentionNorm: RMSNorm,
  ) {
    this.norms = layerNorms(attn, [inputNorm, postAttentionNorm]);
    this.blocks = [
      (x, inp, gradOnly) => this.attn.forward(this.inputNorm.forward(x), inp, gradOnly),
      (h, _inp, gradOnly) => this.mlp.forward(this.postAttentionNorm.forward(h), gradOnly),
    ];
  }

  forward(x: Tensor, inp: AttentionInputs): Tensor {
    const [attention, mlp] = this.blocks as [ResidualBlock, ResidualBlock];
    const h = x.add(attention(x, inp, false));
    return h.add(mlp(h, inp, false));
  }
}

export function buildPreNormLayer(cfg: ModelConfig, i: number, src: TensorSource): DecoderLayer {
  const { attn, mlp, norm } = layerParts(cfg, i, src);
  return new PreNormLayer(i, attn, mlp, norm("input_layernorm"), norm("post_attention_layernorm"));
}
