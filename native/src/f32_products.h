// bf16 products accumulated in float32 where libtorch's own do not (f32_products.cc).
#pragma once
#include <torch/torch.h>

#include <cmath>
#include <string>

namespace gv {
/**
 * Whether libtorch's own bf16 product accumulates in float32 on this machine, measured once by a product whose two
 * paths give different exact results (oneDNN on AVX-512 CPUs, GPUs: yes; libtorch 1.13's fallback gemm on AVX2
 * CPUs: no, it accumulates in bf16, at a few GFLOP/s).
 */
bool libtorchBf16AccumulatesF32();
/**
 * The float32 route is taken for libtorch's own accurate bf16 products only when they take more than this many times
 * as long as it (timed, once per process): a clear margin, so that timing noise does not flip the choice between runs
 * and CPUs where oneDNN's bf16 is about as fast or faster (AVX-512 BF16, AMX) keep theirs. libtorch 2.6 on an AVX2 CPU
 * measured 20-65x (BENCHMARKS "libtorch 2.x on AVX2 CPUs").
 */
constexpr double kSlowRatio = 2.0;
/**
 * The automatic setting's rule: "inaccurate" (libtorch's own accumulate in bf16: reroute), "slow" (they accumulate in
 * float32 but take more than kSlowRatio x the float32 route's time on a CPU without bf16 dot-product instructions:
 * reroute) or "fine" (keep libtorch's own). Pure:
 * the addon's decideBf16Products, for tests; NaN times (not measured) never say "slow".
 */
std::string decideBf16Products(bool accurate, double ownSeconds, double f32Seconds, bool nativeBf16 = false);
/** /proc/cpuinfo lists avx512_bf16 or amx_bf16 (false where it cannot be read). */
bool cpuHasNativeBf16();
/** What the automatic setting found here, measured once per process: the probe, then the timed pair where it passes. */
struct Bf16Decision {
  bool accurate = false;
  double ownSeconds = NAN;  // libtorch's own bf16 products of the timed pair (NaN: not timed, the probe failed)
  double f32Seconds = NAN;  // the same products by the float32 route
  bool nativeBf16 = false;  // the CPU has bf16 dot-product instructions (cpuHasNativeBf16)
  std::string reason;       // decideBf16Products
  bool route = false;       // reason != "fine"
};
const Bf16Decision& bf16ProductsDecision();
/** "auto" (reroute where bf16ProductsDecision says "inaccurate" or "slow"), "on" or "off". */
void setF32Products(const std::string& mode);
std::string f32ProductsMode();
/** The effective setting: CPU bf16 products are computed in float32 (rounded once) by the functions below. */
bool f32Products();
/** Whether a product of these operands is rerouted: both on the CPU, both bf16, and f32Products(). */
bool routeF32(const torch::Tensor& a, const torch::Tensor& b);
/**
 * y = x·Wᵀ + b: rerouted (routeF32(x, W), b bf16 or absent) as float32 products of the bf16 values, rounded once,
 * with a backward that saves the bf16 tensors (never float32 copies) and computes dX, dW, db the same way, each in
 * its input's dtype; otherwise torch::linear.
 */
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& b);
/**
 * linear() with wf, W's float32 copy held by the caller (frozen_linear.cc; W upcast exactly, contiguous, W unchanged
 * since), read where linear() upcasts W per call: the same blocks and products, so the same bits, without the upcast.
 */
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& b,
                     const torch::Tensor& wf);
/** Whether linear(x, w, b) takes the float32 route (routeF32, a 2-D W, a bf16 bias or none) rather than torch::linear. */
bool routedLinear(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& b);
/**
 * dX of a routed linear(x, w, b) whose W needs no gradient, for dY [rows, out]: what its backward computes, bit for
 * bit (w: W, or its float32 copy), in dY's dtype, [rows, in].
 */
torch::Tensor routedDx(const torch::Tensor& g2, const torch::Tensor& w);
/** a @ b (torch::matmul's broadcasting), rerouted the same way for operands of at least 2 dimensions. */
torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b);
/** A 2-D product without autograd (inside custom functions): rerouted as above, else torch::mm. */
torch::Tensor mm(const torch::Tensor& a, const torch::Tensor& b);
}  // namespace gv
