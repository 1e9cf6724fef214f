"""YaRN's inverse frequencies and attention factor as transformers 5 computes them, for test/models/yarn.test.ts.

A transcription of transformers 5's RotaryEmbeddingConfigMixin.standardize_rope_params (the default for
original_max_position_embeddings) and _compute_yarn_parameters (src/transformers/modeling_rope_utils.py) for one dict
of RoPE parameters (Llama, Qwen; where the outer dict `truncate` is read from is that dict), kept line for line so
that it can be compared with that file; Gemma3's per-layer-type reading is tested in yarn.test.ts. Run with the
PyTorch the test finds (Debian's 1.13 on CI).
Reads a JSON list of cases on stdin, writes one JSON object per case: inv_freq as float32 bit patterns.
"""
import json
import math
import struct
import sys

import torch


def compute_yarn_parameters(config, rope_parameters_dict, device=None):
    base = rope_parameters_dict["rope_theta"]
    partial_rotary_factor = rope_parameters_dict.get("partial_rotary_factor", 1.0)
    head_dim = config["head_dim"]
    dim = int(head_dim * partial_rotary_factor)

    factor = rope_parameters_dict["factor"]
    attention_factor = rope_parameters_dict.get("attention_factor")
    mscale = rope_parameters_dict.get("mscale")
    mscale_all_dim = rope_parameters_dict.get("mscale_all_dim")
    original_max_position_embeddings = rope_parameters_dict["original_max_position_embeddings"]

    if factor is None:
        factor = config["max_position_embeddings"] / original_max_position_embeddings

    def get_mscale(scale, mscale=1):
        if scale <= 1:
            return 1.0
        return 0.1 * mscale * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)

    beta_fast = rope_parameters_dict.get("beta_fast") or 32
    beta_slow = rope_parameters_dict.get("beta_slow") or 1

    def find_correction_dim(num_rotations, dim, base, max_position_embeddings):
        return (dim * math.log(max_position_embeddings / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    def find_correction_range(low_rot, high_rot, dim, base, max_position_embeddings, truncate):
        low = find_correction_dim(low_rot, dim, base, max_position_embeddings)
        high = find_correction_dim(high_rot, dim, base, max_position_embeddings)
        if truncate:
            low = math.floor(low)
            high = math.ceil(high)
        return max(low, 0), min(high, dim - 1)

    def linear_ramp_factor(min, max, dim):
        if min == max:
            max += 0.001

        linear_func = (torch.arange(dim, dtype=torch.float32) - min) / (max - min)
        ramp_func = torch.clamp(linear_func, 0, 1)
        return ramp_func

    pos_freqs = base ** (torch.arange(0, dim, 2).to(device=device, dtype=torch.float) / dim)
    inv_freq_extrapolation = 1.0 / pos_freqs
    inv_freq_interpolation = 1.0 / (factor * pos_freqs)

    truncate = rope_parameters_dict.get("truncate", True)
    low, high = find_correction_range(beta_fast, beta_slow, dim, base, original_max_position_embeddings, truncate)

    inv_freq_extrapolation_factor = 1 - linear_ramp_factor(low, high, dim // 2).to(device=device, dtype=torch.float)
    inv_freq = (
        inv_freq_interpolation * (1 - inv_freq_extrapolation_factor)
        + inv_freq_extrapolation * inv_freq_extrapolation_factor
    )
    return inv_freq, attention_factor


def standardize(config):
    """standardize_rope_params, case 1 (one dict): rope_type, rope_theta and original_max_position_embeddings."""
    rope = dict(config.get("rope_scaling") or {})
    rope.setdefault("rope_type", rope.get("type", "default"))
    rope.setdefault("rope_theta", config["rope_theta"])
    if "original_max_position_embeddings" in config:
        rope["original_max_position_embeddings"] = config["original_max_position_embeddings"]
    else:
        rope.setdefault("original_max_position_embeddings", config["max_position_embeddings"])
    return rope


out = []
for config in json.load(sys.stdin):
    inv_freq, attention_factor = compute_yarn_parameters(config, standardize(config))
    bits = [struct.unpack("<I", struct.pack("<f", v))[0] for v in inv_freq.tolist()]
    out.append({"inv_freq_bits": bits, "attention_factor": attention_factor})
print(json.dumps(out))
