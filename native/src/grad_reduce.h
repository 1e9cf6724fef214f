// Identification's reduction of a linear output's gradient, inside the backward (grad_reduce.cc): a tensor hook
// on each output y that writes the per-sample mean over time of |∂L/∂y| into a preallocated float32 buffer, instead
// of retain_grad (which clones every output gradient and holds it until the backward ends) and a reduction after.
#pragma once
#include <torch/torch.h>

namespace gv {

/**
 * out[b, j] = Σ_t float(|g[b, t, j]|) / lengths[b], with exactly the arithmetic of
 * g.abs().float().sum(1).div(lengths) on g.contiguous() (ATen's float32 sum: a cascade of partial sums over t for each
 * column, the same order on CPU at any thread count and vector width; then a true division). g is [B, T, N] of any
 * floating dtype and layout; out is [B, N] float32 (any strides) on g's device; lengths holds B float32 values on
 * g's device. CPU bfloat16/float32: one pass over g (grad_reduce.cc) in the order ATen's serial sum takes, which
 * depends on its vector width (found once by a probe: meanAbsKernelWidth); anything else (CUDA, float16, float64, an
 * ATen whose order the probe does not recognise): those ATen ops themselves.
 */
void meanAbsOverTimeInto(const torch::Tensor& g, const torch::Tensor& out, const torch::Tensor& lengths);

/** ATen's float32 vector width whose summation order the CPU kernel reproduces; 0: the kernel is not used. */
int64_t meanAbsKernelWidth();

/**
 * Registers on y ([B, T, N], requires grad) a hook that, when the backward reaches y, runs meanAbsOverTimeInto(its
 * gradient, out, lengths) and passes the gradient on unchanged. The hook holds out and lengths (not y, not the
 * gradient); it lives as long as y's graph. Shapes, dtypes and devices are checked here, so that a bad argument is
 * an error of this call, not of the backward.
 */
void registerMeanAbsGradHook(const torch::Tensor& y, const torch::Tensor& out, const torch::Tensor& lengths);

}  // namespace gv
