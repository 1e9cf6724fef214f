// Fused decoder ops as libtorch autograd functions with hand-written backward passes (fused.cc).
// Each one replaces a chain of eager ops (and the intermediates autograd would keep) by one pass over memory
// forward and one backward. CPU float32/bfloat16 tensors run the hand-written kernels; any other device or
// dtype (CUDA, float16, float64) runs the same maths as composite ATen ops, so the addon works wherever
// libtorch does. setKernelMode("composite") forces the composite path on the CPU too (tests, GPU rehearsal).
#pragma once
#include <torch/torch.h>

#include <string>

namespace gv {

/** "native" (hand-written CPU kernels where they apply) or "composite" (ATen ops everywhere). */
void setKernelMode(const std::string& mode);
std::string kernelMode();
/** kernelMode() == "composite", cheaply (train_ops.cc reads it on every AdamW step). */
bool compositeKernels();

/**
 * RMSNorm over the last dimension with the f32 accumulation inside. onePlus = false (Llama/Qwen):
 * w * bf16(x / rms(x)); onePlus = true (Gemma): bf16(x / rms(x) * (1 + w)), computed in float32.
 */
torch::Tensor rmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps, bool onePlus);

/**
 * Rotary embedding in the half-split (NeoX) layout: x [B, T, H, D], cos/sin [B, T, D] (or [B, 1, T, D]).
 * Returns x·cos + rotate_half(x)·sin laid out [B, G, T, H/G, D] (G = groups: the query heads of one KV head
 * next to each other in time order, which is what attention reads), computed in float32, rounded once.
 */
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t groups);

/** act(g) * u for act = "silu" or "gelu_tanh", in float32, rounded once. */
torch::Tensor gatedAct(const torch::Tensor& g, const torch::Tensor& u, const std::string& act);

/**
 * Causal grouped-query attention without a materialised mask: q [B, G, T, R, D] (R query heads per KV head),
 * k and v [B, G, S, D] with S = past + T. Query t sees key j iff j <= past + t, j > past + t - window
 * (window > 0) and keyMask[b, j] != 0 (keyMask [B, S], optional). Scores are scaled, optionally soft-capped
 * (cap * tanh(s / cap)), softmaxed in float32 over the visible keys only (a query that sees no key gets 0),
 * computed in query blocks (the whole sequence while T * R * S <= 1M scores; beyond, causal blocks that only visit
 * the keys they can see); backward recomputes the probabilities from the saved log-sum-exp. Returns
 * [B, T, G * R * D] (ready for o_proj).
 */
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                        int64_t past, int64_t window, const torch::Tensor& keyMask, double softcap);

/**
 * GoodVibe's cluster-shared row update, added in place to a linear layer's output: y[..., rows[i]] +=
 * x · U[clusters[i]] (U float32, cast to x's dtype for the product). dU is accumulated per cluster in float32;
 * y's gradient passes through; x receives (dy[:, rows] summed per cluster) · U.
 */
torch::Tensor clusterRowUpdate(const torch::Tensor& y, const torch::Tensor& x, const torch::Tensor& U,
                               const torch::Tensor& rows, const torch::Tensor& clusters);

/**
 * A product's output [..., sum(sizes)] (one product of several linears' weights stored side by side) split along
 * its last dimension into one block per linear. The blocks share y's memory but are not views for autograd, so
 * each can be used, updated in place (GoodVibe's row update) or hooked as its own linear's output. Backward joins
 * their gradients into y's; when they already are adjacent blocks of one buffer (gatedAct writes gate's and up's
 * gradients so when they are adjacent blocks), that buffer is passed on without a copy.
 */
std::vector<torch::Tensor> splitColumns(const torch::Tensor& y, const std::vector<int64_t>& sizes);

}  // namespace gv
