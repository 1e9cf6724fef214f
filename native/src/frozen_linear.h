// Linear products on frozen weights whose dX reads a transposed copy of the weight (frozen_linear.cc).
#pragma once
#include <torch/torch.h>

namespace gv {
// y = x·Wᵀ + b whose backward computes dX = dY·W from Wᵀ kept contiguous (made once per weight and version), no
// gradient for W or b: for weights and biases that do not require one. Where CPU bf16 products are computed in
// float32 (f32_products.h routeF32), the forward and dX read W's float32 copy instead (made once per weight and
// version; the same values as the per-call upcast, bit for bit), with or without a backward to run.
torch::Tensor frozenLinear(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& b);
// y = x·Wᵀ + b where y's values will never be read, only its gradient (a residual block's last product recomputed by
// gradient checkpointing: the residual sum's backward needs no values): zeros of y's shape whose backward is the
// product's own dX, bit for bit: from Wᵀ's copy with `copy` (frozenLinear's), the float32 route's where CPU bf16
// products take it (W's float32 copy with `copy`), else torch::linear's. No product runs in the forward.
torch::Tensor frozenLinearGradOnly(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& b,
                                   bool copy);
// The copies held now (transposed and float32), stale ones included: { count, bytes }; clear drops them all first.
std::pair<int64_t, int64_t> frozenLinearCache(bool clear);
// Drops the copies of these weights (of any view of their storages) and every stale copy: { count, bytes } dropped.
std::pair<int64_t, int64_t> frozenLinearRelease(const std::vector<torch::Tensor>& weights);
// Called when a tensor handle lets go of `storage`: the copies of a weight whose storage is now freed go at once.
void frozenLinearStorageReleased(const c10::StorageImpl* storage);
}  // namespace gv
