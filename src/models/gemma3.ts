/**
 * Gemma3's decoder layer: "sandwich" norms around both blocks, (1 + w) RMSNorms, GELU-tanh, an embedding scale
 * of sqrt(hidden), query_pre_attn_scalar, and sliding-window layers with their own RoPE base (config flags).
 *   x = x + post_attention_layernorm(attn(input_layernorm(x)))
 *   x = x + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))
 */
import type { ModelConfig } from "../io/config.js";
import type { Tensor } from "../tensor/index.js";
import { layerNorms, layerParts, type DecoderLayer, type TensorSource } from "./decoder.js";
import type { Attention, AttentionInputs, MLP, RMSNorm } from "./layers.js";

export class SandwichNormLayer implements DecoderLayer {
  readonly norms: RMSNorm[];
  constructor(
    readonly index: number,
    readonly attn: Attention,
    readonly mlp: MLP,
    readonly inputNorm: RMSNorm,
    readonly postAttentionNorm: RMSNorm,
    readonly preFeedforwardNorm: RMSNorm,
    readonly postFeedforwardNorm: RMSNorm,
  ) {
    this.norms = layerNorms(attn, [inputNorm, postAttentionNorm, preFeedforwardNorm, postFeedforwardNorm]);
  }

  // no residual blocks for checkpointing (DecoderLayer.blocks): the post-norms' backward reads o_proj's and
  // down_proj's outputs, so recomputing them is not skippable
  forward(x: Tensor, inp: AttentionInputs): Tensor {
    const h = x.add(this.postAttentionNorm.forward(this.attn.forward(this.inputNorm.forward(x), inp)));
    return h.add(this.postFeedforwardNorm.forward(this.mlp.forward(this.preFeedforwardNorm.forward(h))));
  }
}

export function buildGemma3Layer(cfg: ModelConfig, i: number, src: TensorSource): DecoderLayer {
  const { attn, mlp, norm } = layerParts(cfg, i, src);
  return new SandwichNormLayer(
    i,
    attn,
    mlp,
    norm("input_layernorm"),
    norm("post_attention_layernorm"),
    norm("pre_feedforward_layernorm"),
    norm("post_feedforward_layernorm"),
  );
}
