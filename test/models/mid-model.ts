/**
 * A Qwen2-layout model of random bf16 weights built in memory, and one pass's loss and gradients (the frozenDx tests:
 * transposed and float32 copies, and their lifetime).
 */
import assert from "node:assert/strict";
import { DecoderModel, frozenCopyKind } from "../../src/models/index.js";
import { buildQwen2Layer } from "../../src/models/qwen2.js";
import { parseModelConfig } from "../../src/io/config.js";
import {
  Tensor,
  crossEntropy,
  frozenLinearCache,
  keep,
  manualSeed,
  noGrad,
  setF32Products,
  setFusedOp,
} from "../../src/tensor/index.js";
import { tapLinears, untapLinears } from "./taps.js";

/**
 * A Qwen2-layout model of random bf16 weights built in memory, large enough that every product of a 64-token pass
 * passes the default setting's size rules (FROZEN_DX_MIN_ROWS rows, weights of FROZEN_DX_MIN_WEIGHT elements or
 * more: o_proj's 768 × 768 is the smallest): per layer q/k/v 1.5 MiB, o 1.125 MiB, gate/up 3 MiB, down 1.5 MiB;
 * lm_head (tied) 1.5 MiB; 15.75 MiB in all.
 */
export function midModel(dtype: "bfloat16" | "float32" = "bfloat16"): DecoderModel {
  const [H, I, V, kv] = [768, 1024, 1024, 128];
  const cfg = parseModelConfig(
    {
      architectures: ["Qwen2ForCausalLM"],
      model_type: "qwen2",
      hidden_size: H,
      intermediate_size: I,
      num_attention_heads: 12,
      num_key_value_heads: 2,
      num_hidden_layers: 2,
      vocab_size: V,
      max_position_embeddings: 256,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: true,
      hidden_act: "silu",
      torch_dtype: "bfloat16",
    },
    "midModel",
  );
  const shapeOf = (name: string): number[] | null => {
    const leaf = name.split(".").slice(-2).join(".");
    const shapes: Record<string, number[]> = {
      "embed_tokens.weight": [V, H],
      "q_proj.weight": [H, H],
      "q_proj.bias": [H],
      "k_proj.weight": [kv, H],
      "k_proj.bias": [kv],
      "v_proj.weight": [kv, H],
      "v_proj.bias": [kv],
      "o_proj.weight": [H, H],
      "gate_proj.weight": [I, H],
      "up_proj.weight": [I, H],
      "down_proj.weight": [H, I],
      "input_layernorm.weight": [H],
      "post_attention_layernorm.weight": [H],
      "norm.weight": [H],
    };
    return shapes[leaf] ?? null;
  };
  manualSeed(11);
  const source = (name: string, required = true): Tensor | null => {
    const shape = shapeOf(name);
    if (!shape) {
      if (required) throw new Error(`midModel: no shape for ${name}`);
      return null;
    }
    return keep(
      noGrad(() =>
        Tensor.randn(shape)
          .mul(shape.length === 1 ? 1 : 0.05)
          .to(dtype),
      ),
    );
  };
  return new DecoderModel(cfg, dtype, "cpu", source, buildQwen2Layer);
}

/**
 * Loss and every linear output's gradient of one pass over `tokens`, the loss at every next position (an SFT-like
 * head) or at the last position only (`lastOnly`: lm_head's product has one row, as in the identification benchmark).
 */
export function lossAndLinearGrads(
  model: DecoderModel,
  tokens: number[],
  lastOnly = false,
): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const kept = tapLinears(model);
  try {
    const T = tokens.length;
    const ids = Tensor.fromArray(tokens, [1, T], "int64");
    const loss = model.forwardBackward(ids, {}, (h) =>
      lastOnly
        ? crossEntropy(model.logitsFrom(h.select(1, T - 1)), Tensor.fromArray([42], [1], "int64"))
        : crossEntropy(
            model.logitsFrom(h.narrow(1, 0, T - 1)).reshape([T - 1, -1]),
            ids.narrow(1, 1, T - 1).reshape([T - 1]),
          ),
    );
    out.set("loss", [loss]);
    for (const [name, y] of kept) {
      out.set(`${name} grad`, [...y.grad!.toFloat32Array()]);
      y.dispose();
    }
  } finally {
    untapLinears(model);
  }
  return out;
}

/** Runs `fn` with CPU bf16 products computed in float32 (whatever this CPU's libtorch does), copies dropped first. */
export function withF32Products(fn: () => void) {
  const prev = setF32Products("on");
  frozenLinearCache(true);
  try {
    assert.equal(frozenCopyKind("cpu"), "float32");
    fn();
  } finally {
    setF32Products(prev);
    setFusedOp("frozenDx", null);
    frozenLinearCache(true);
  }
}
