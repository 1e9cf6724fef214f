/**
 * Llama's decoder layer (also Qwen2's and Qwen3's: they differ from Llama only by config flags — q/k/v biases
 * for Qwen2, per-head q/k RMSNorm before RoPE for Qwen3 — which the shared Attention reads).
 *   x = x + attn(input_layernorm(x));  x = x + mlp(post_attention_layernorm(x))
 */
import type { ModelConfig } from "../io/config.js";
import type { Tensor } from "../tensor/index.js";
import { layerNorms, layerParts, type DecoderLayer, type TensorSource } from "./decoder.js";
import type { Attention, AttentionInputs, MLP, RMSNorm } from "./layers.js";

export class PreNormLayer implements DecoderLayer {
  readonly norms: RMSNorm[];
  constructor(
    readonly index: number,
    readonly attn: Attention,
    readonly mlp: MLP,
    readonly inputNorm: RMSNorm,
    readonly postAttentionNorm: RMSNorm,
  ) {
    this.norms = layerNorms(attn, [inputNorm, postAttentionNorm]);
  }

  forward(x: Tensor, inp: AttentionInputs): Tensor {
    const h = x.add(this.attn.forward(this.inputNorm.forward(x), inp));
    return h.add(this.mlp.forward(this.postAttentionNorm.forward(h)));
  }
}

export function buildPreNormLayer(cfg: ModelConfig, i: number, src: TensorSource): DecoderLayer {
  const { attn, mlp, norm } = layerParts(cfg, i, src);
  return new PreNormLayer(i, attn, mlp, norm("input_layernorm"), norm("post_attention_layernorm"));
}
