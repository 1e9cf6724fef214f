// The optimiser's side of a training step (train_ops.cc): AdamW as one pass over memory per parameter and the
// global gradient norm as one read of every gradient. CPU float32 parameters with float32 or bfloat16 gradients
// run hand-written loops; anything else (CUDA, float16, float64) runs the same maths as ATen ops.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace gv {

struct AdamWHyper {
  double lr, beta1, beta2, eps, weightDecay;
};

/**
 * One step of torch.optim.AdamW (decoupled weight decay, no amsgrad) on p, in place, with gradient
 * g · gradScale (the clipping coefficient; a bfloat16 gradient is scaled and rounded to bfloat16 first, as an
 * in-place clip of it would be). `step` is the step count after this one (1 on the first). m and v are float32
 * moments shaped like p. When `copy` is defined it receives the updated p, rounded to copy's dtype (the bf16
 * weights a mixed-precision forward uses), in the same pass. The per-element arithmetic is torch's, op by op,
 * each rounded to float32: p·(1 − lr·wd); m·β1 + (1−β1)·g; v·β2 + (1−β2)·g·g; p + (−lr/bc1)·m / (√v / √bc2 + eps).
 */
void adamwUpdate(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m, const torch::Tensor& v,
                 int64_t step, const AdamWHyper& h, double gradScale, const torch::Tensor& copy);

/**
 * Whether adamwUpdate and adamwFused step p with libtorch's fused AdamW kernel (one pass, every parameter of a call
 * in one launch) where the CPU's native loop does not apply: a contiguous parameter on a GPU (libtorch >= 2.0) or,
 * under setKernelMode("composite"), on the CPU (libtorch >= 2.4). Otherwise those parameters take the composite ATen
 * ops (libtorch 1.13).
 */
bool fusedAdamwServes(const torch::Tensor& p);

/** Whether adamwUpdate(p, g, ...) takes the fused kernel (not the CPU's native loop, and fusedAdamwServes(p)). */
bool adamwTakesFused(const torch::Tensor& p, const torch::Tensor& g);

/**
 * One AdamW step of several parameters (one device, one dtype; m and v of that dtype) in libtorch's fused kernel,
 * each with gradient g · gradScale (scaled in its own dtype, then brought to the parameter's, as adamwUpdate's
 * composite path does); steps: each parameter's step count after this step. Its arithmetic is libtorch's fused
 * kernel's (the same formula as adamwUpdate's, possibly with fused multiply-adds): equal to adamwUpdate's within
 * float32 rounding, not bit for bit. Only where fusedAdamwServes.
 */
void adamwFused(const std::vector<torch::Tensor>& ps, const std::vector<torch::Tensor>& gs,
                const std::vector<torch::Tensor>& ms, const std::vector<torch::Tensor>& vs,
                const std::vector<int64_t>& steps, const AdamWHyper& h, double gradScale);

/**
 * Σ x² over every element of every tensor, accumulated in float64 (deterministic for any thread count). CPU
 * float32/bf16 tensors: their squares summed in float64 blocks; others (a GPU's, float64): the square of each
 * tensor's 2-norm (accumulated in float32, float64 for float64), summed in float64.
 */
double sumOfSquares(const std::vector<torch::Tensor>& ts);

}  // namespace gv

namespace gv {

/**
 * Σ_i (logsumexp(logits[i]) − logits[i, targets[i]]) over the rows of logits [N, V] (bfloat16 or float32; every
 * target in [0, V)), as a float32 scalar, with a hand-written backward that writes the logits' gradient
 * g·(softmax − onehot) straight in the logits' dtype: the SFT loss without the float32 copy of the logits, the
 * log-softmax, NLL and their backward passes (six passes over N·V values and two N·V float32 buffers). Softmax in
 * float32, exp by a vectorisable polynomial (within 2 ulp of expf). Other devices and dtypes: the same sum by ATen.
 */
torch::Tensor crossEntropySum(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace gv
