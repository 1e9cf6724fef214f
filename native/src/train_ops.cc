// AdamW in one pass and the global gradient norm in one read (train_ops.h).
//
// Why: torch's AdamW is about ten elementwise passes per parameter (mul_, add_, mul_, addcmul_, sqrt, div,
// add_, addcdiv_, and for mixed precision a float32 copy of the bf16 gradient before and a bf16 copy of the
// master after), and clipping reads every gradient again (cast, square, sum) and writes it once more (mul_).
// On a CPU these passes are memory-bound: full fine-tuning spent more time in them than in forward + backward.
// Here a parameter's p, g, m, v (and the bf16 copy) are each read and written once. On a GPU (libtorch >= 2.0) the
// same holds by libtorch's own fused AdamW kernel, every parameter of a step in one launch; there the composite ops
// were ~12 launches and passes per parameter (full fine-tuning's clip + AdamW 3.4x PyTorch's foreach AdamW on the
// H200 at the 0.5B shape, BENCHMARKS "First run on a GPU"), and the norm a float32 copy and a tensor of squares.
#include "train_ops.h"
#include "fused.h"
#include "simd.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace gv {
namespace {

using torch::Tensor;

inline float bf16ToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// round to nearest even, NaN kept NaN (c10::BFloat16's rounding)
inline uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  // NaN: exponent all ones and a non-zero mantissa (compared as signed: both sides are below 2^31)
  bool nan = static_cast<int32_t>(u & 0x7FFFFFFFu) > static_cast<int32_t>(0x7F800000u);
  return static_cast<uint16_t>(nan ? 0x7FC0u : r);
}

constexpr int64_t kGrain = 1 << 15;

struct Coeffs {
  float decay, beta1, oneMinusBeta1, beta2, oneMinusBeta2, bc2Sqrt, eps, negStepSize, scale;
  bool hasDecay, scaled;
};

Coeffs coeffs(const AdamWHyper& h, int64_t step, double gradScale) {
  double bc1 = 1 - std::pow(h.beta1, static_cast<double>(step));
  double bc2 = 1 - std::pow(h.beta2, static_cast<double>(step));
  Coeffs c;
  // each scalar is rounded to float32 where torch's tensor-by-scalar ops round it
  c.decay = static_cast<float>(1 - h.lr * h.weightDecay);
  c.beta1 = static_cast<float>(h.beta1);
  c.oneMinusBeta1 = static_cast<float>(1 - h.beta1);
  c.beta2 = static_cast<float>(h.beta2);
  c.oneMinusBeta2 = static_cast<float>(1 - h.beta2);
  c.bc2Sqrt = static_cast<float>(std::sqrt(bc2));
  c.eps = static_cast<float>(h.eps);
  c.negStepSize = static_cast<float>(-(h.lr / bc1));
  c.scale = static_cast<float>(gradScale);
  c.hasDecay = h.weightDecay != 0;
  c.scaled = gradScale != 1.0;
  return c;
}

constexpr int64_t kTile = 512;

// Gradient values as the update reads them: scaled (by 1 when not clipping, which changes nothing) and, for a
// bf16 gradient, rounded to bf16 as the clip's in-place mul_ on it would.
inline void scaledGrad(const float* __restrict g, float* __restrict out, int64_t len, float scale) {
  for (int64_t i = 0; i < len; i++) out[i] = g[i] * scale;
}
inline void scaledGrad(const uint16_t* __restrict g, float* __restrict out, int64_t len, float scale) {
  for (int64_t i = 0; i < len; i++) out[i] = bf16ToFloat(g[i]) * scale;
  for (int64_t i = 0; i < len; i++) out[i] = bf16ToFloat(floatToBf16(out[i]));
}

// One range of the update, a tile at a time (the gradient tile and the copy are converted in loops of their own,
// each of which vectorises). Decaying by 1 changes nothing either: no branch per element.
template <typename G, typename C>
void adamwRange(float* __restrict p, const G* __restrict g, float* __restrict m, float* __restrict v,
                C* __restrict copy, const int64_t len, const Coeffs c) {
  const float decay = c.hasDecay ? c.decay : 1.0f, scale = c.scaled ? c.scale : 1.0f;
  const float beta1 = c.beta1, omb1 = c.oneMinusBeta1, beta2 = c.beta2, omb2 = c.oneMinusBeta2;
  const float bc2Sqrt = c.bc2Sqrt, eps = c.eps, negStep = c.negStepSize;
  alignas(64) float gt[kTile];
  for (int64_t t0 = 0; t0 < len; t0 += kTile) {
    const int64_t n = std::min(kTile, len - t0);
    scaledGrad(g + t0, gt, n, scale);
    float* __restrict pt = p + t0;
    float* __restrict mt = m + t0;
    float* __restrict vt = v + t0;
    for (int64_t i = 0; i < n; i++) {
      float gi = gt[i];
      float pi = pt[i] * decay;
      float mi = mt[i] * beta1;
      mi = mi + omb1 * gi;
      float vi = vt[i] * beta2;
      vi = vi + omb2 * gi * gi;
      float denom = std::sqrt(vi) / bc2Sqrt + eps;
      pi = pi + negStep * mi / denom;
      mt[i] = mi;
      vt[i] = vi;
      pt[i] = pi;
    }
    if constexpr (std::is_same_v<C, uint16_t>)
      for (int64_t i = 0; i < n; i++) copy[t0 + i] = floatToBf16(pt[i]);
    if constexpr (std::is_same_v<C, float>)
      for (int64_t i = 0; i < n; i++) copy[t0 + i] = pt[i];
  }
}

template <typename G, typename C>
void adamwKernel(float* p, const G* g, float* m, float* v, C* copy, int64_t n, const Coeffs& c) {
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    C* copyAt = nullptr;
    if constexpr (!std::is_void_v<C>) copyAt = copy + begin;
    adamwRange<G, C>(p + begin, g + begin, m + begin, v + begin, copyAt, end - begin, c);
  });
}

bool cpuContiguous(const Tensor& t) { return t.device().is_cpu() && t.is_contiguous(); }

// The same step as ATen ops: any device and dtype.
void adamwComposite(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step,
                    const AdamWHyper& h, double gradScale, const Tensor& copy) {
  double bc1 = 1 - std::pow(h.beta1, static_cast<double>(step));
  double bc2 = 1 - std::pow(h.beta2, static_cast<double>(step));
  // scaled in g's dtype, as an in-place clip: the product in float32, rounded once (libtorch 1.13's CPU product of
  // a bf16 tensor and a scalar rounds the scalar to bf16 first)
  Tensor gs = g;
  if (gradScale != 1.0)
    gs = g.scalar_type() == torch::kBFloat16 || g.scalar_type() == torch::kHalf
             ? (g.to(torch::kFloat32) * gradScale).to(g.scalar_type())
             : g * gradScale;
  if (gs.scalar_type() != p.scalar_type()) gs = gs.to(p.scalar_type());
  auto pd = p.detach();
  if (h.weightDecay != 0) pd.mul_(1 - h.lr * h.weightDecay);
  m.mul_(h.beta1).add_(gs, 1 - h.beta1);
  v.mul_(h.beta2).addcmul_(gs, gs, 1 - h.beta2);
  auto denom = (v.sqrt() / std::sqrt(bc2)).add_(h.eps);
  pd.addcdiv_(m, denom, -(h.lr / bc1));
  if (copy.defined()) copy.detach().copy_(pd);
}

#if TORCH_VERSION_MAJOR >= 2
// The gradients as the update reads them (gradScale and dtype as adamwComposite takes them: scaled in the
// gradient's dtype, as an in-place clip, then brought to the parameter's dtype), for the fused kernel. libtorch
// 2.x computes a bf16 tensor's product with a scalar in float32 and rounds once, which is adamwComposite's rounding.
std::vector<Tensor> updateGrads(const std::vector<Tensor>& ps, const std::vector<Tensor>& gs, double gradScale) {
  std::vector<Tensor> out;
  out.reserve(gs.size());
  for (size_t i = 0; i < gs.size(); i++) {
    Tensor g = gradScale != 1.0 ? gs[i] * gradScale : gs[i];
    // the kernel takes dense tensors laid out as their parameters (a no-op for autograd's gradients and row blocks)
    out.push_back((g.scalar_type() != ps[i].scalar_type() ? g.to(ps[i].scalar_type()) : g).contiguous());
  }
  return out;
}
#endif  // the fused kernel's only caller: libtorch 2.x

}  // namespace

bool fusedAdamwServes(const torch::Tensor& p) {
#if TORCH_VERSION_MAJOR >= 2
  // libtorch's own fused AdamW: a CUDA kernel from 2.0, a CPU one from 2.4 (where it stands in for the composite
  // ops of setKernelMode("composite"): the CPU's own path is the native loop above)
  if (!p.is_contiguous() || p.is_complex()) return false;
  if (p.device().is_cuda()) return true;
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 4
  if (p.device().is_cpu()) return compositeKernels();
#endif
#endif
  (void)p;
  return false;
}

void adamwFused(const std::vector<Tensor>& ps, const std::vector<Tensor>& gs, const std::vector<Tensor>& ms,
                const std::vector<Tensor>& vs, const std::vector<int64_t>& steps, const AdamWHyper& h,
                double gradScale) {
  TORCH_CHECK(ps.size() == gs.size() && ps.size() == ms.size() && ps.size() == vs.size() && ps.size() == steps.size(),
              "adamwFused: one gradient, moment pair and step per parameter");
  if (ps.empty()) return;
#if TORCH_VERSION_MAJOR >= 2
  torch::NoGradGuard noGrad;
  for (size_t i = 0; i < ps.size(); i++) {
    TORCH_CHECK(gs[i].sizes() == ps[i].sizes(), "AdamW: gradient of shape ", gs[i].sizes(),
                " for a parameter of shape ", ps[i].sizes());
    TORCH_CHECK(ps[i].device() == ps[0].device() && ps[i].scalar_type() == ps[0].scalar_type(),
                "adamwFused: the parameters of one call share a device and a dtype");
  }
  auto grads = updateGrads(ps, gs, gradScale);
  // the step counts after this step, as the kernel reads them: float32 scalars on the parameters' device, each a
  // view of one tensor; made there when they are equal (one fill), else copied without waiting (a blocking copy
  // to a GPU waits for its stream, the backward included)
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(ps[0].device());
  bool equal = std::all_of(steps.begin(), steps.end(), [&](int64_t s) { return s == steps[0]; });
  Tensor stepTensor;
  if (equal) {
    stepTensor = torch::full({static_cast<int64_t>(steps.size())}, static_cast<double>(steps[0]), opts);
  } else {
    std::vector<float> stepValues(steps.begin(), steps.end());
    stepTensor = torch::tensor(stepValues, torch::kFloat32).to(ps[0].device(), /*non_blocking=*/true);
  }
  auto stepViews = stepTensor.unbind(0);
  std::vector<Tensor> detached;
  detached.reserve(ps.size());
  for (const auto& p : ps) detached.push_back(p.detach());
  at::_fused_adamw_(detached, grads, ms, vs, {}, stepViews, h.lr, h.beta1, h.beta2, h.weightDecay, h.eps,
                    /*amsgrad=*/false, /*maximize=*/false);
#else
  (void)h;
  (void)gradScale;
  TORCH_CHECK(false, "adamwFused: this libtorch (", TORCH_VERSION, ") has no fused AdamW kernel");
#endif
}

bool adamwTakesFused(const Tensor& p, const Tensor& g) {
  bool native = !compositeKernels() && cpuContiguous(p) && p.scalar_type() == torch::kFloat32 && g.device().is_cpu();
  return !native && fusedAdamwServes(p);
}

void adamwUpdate(const Tensor& p, const Tensor& gIn, const Tensor& m, const Tensor& v, int64_t step,
                 const AdamWHyper& h, double gradScale, const Tensor& copy) {
  TORCH_CHECK(gIn.sizes() == p.sizes(), "AdamW: gradient of shape ", gIn.sizes(), " for a parameter of shape ",
              p.sizes());
  TORCH_CHECK(m.sizes() == p.sizes() && v.sizes() == p.sizes(), "AdamW: moments of shape ", m.sizes(), " and ",
              v.sizes(), " for a parameter of shape ", p.sizes());
  TORCH_CHECK(!copy.defined() || copy.sizes() == p.sizes(), "AdamW: a copy of shape ", copy.sizes(),
              " for a parameter of shape ", p.sizes());
  torch::NoGradGuard noGrad;
  auto gt = gIn.scalar_type();
  bool native = !compositeKernels() && cpuContiguous(p) && p.scalar_type() == torch::kFloat32 && gIn.device().is_cpu() &&
                (gt == torch::kFloat32 || gt == torch::kBFloat16) && cpuContiguous(m) &&
                m.scalar_type() == torch::kFloat32 && cpuContiguous(v) && v.scalar_type() == torch::kFloat32 &&
                (!copy.defined() || (cpuContiguous(copy) && (copy.scalar_type() == torch::kBFloat16 ||
                                                             copy.scalar_type() == torch::kFloat32)));
  if (!native) {
    if (!fusedAdamwServes(p) || !m.is_contiguous() || !v.is_contiguous() ||
        m.scalar_type() != p.scalar_type() || v.scalar_type() != p.scalar_type())
      return adamwComposite(p, gIn, m, v, step, h, gradScale, copy);
    adamwFused({p}, {gIn}, {m}, {v}, {step}, h, gradScale);
    if (copy.defined()) copy.detach().copy_(p.detach());
    return;
  }
  auto g = gIn.contiguous();
  auto c = coeffs(h, step, gradScale);
  int64_t n = p.numel();
  float* pp = p.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  auto run = [&](auto* gp) {
    if (!copy.defined())
      adamwKernel(pp, gp, mp, vp, static_cast<void*>(nullptr), n, c);
    else if (copy.scalar_type() == torch::kBFloat16)
      adamwKernel(pp, gp, mp, vp, reinterpret_cast<uint16_t*>(copy.data_ptr<at::BFloat16>()), n, c);
    else
      adamwKernel(pp, gp, mp, vp, copy.data_ptr<float>(), n, c);
  };
  if (gt == torch::kFloat32)
    run(g.data_ptr<float>());
  else
    run(reinterpret_cast<const uint16_t*>(g.data_ptr<at::BFloat16>()));
  // written through raw pointers: bumped as an in-place op would be, so that nothing keyed on the version (the weight
  // copies of frozen_linear.cc) serves the values from before the step
  torch::autograd::impl::bump_version(p);
  if (copy.defined()) torch::autograd::impl::bump_version(copy);
}

namespace {

// Σ x² of n values, in blocks of kBlock: each block in float lanes of 1024 values, summed in float64; blocks are
// added in order, so the result does not depend on the thread count.
constexpr int64_t kBlock = 1 << 16;
constexpr int kLanes = 16;
constexpr int64_t kRun = 1024;

template <typename X>
double blockSumSq(const X* x, int64_t begin, int64_t end) {
  double total = 0;
  for (int64_t r = begin; r < end; r += kRun) {
    int64_t stop = std::min(end, r + kRun);
    float acc[kLanes] = {};
    int64_t i = r;
    for (; i + kLanes <= stop; i += kLanes)
      for (int k = 0; k < kLanes; k++) {
        float f;
        if constexpr (std::is_same_v<X, uint16_t>)
          f = bf16ToFloat(x[i + k]);
        else
          f = x[i + k];
        acc[k] += f * f;
      }
    double s = 0;
    for (int k = 0; k < kLanes; k++) s += acc[k];
    for (; i < stop; i++) {
      double f;
      if constexpr (std::is_same_v<X, uint16_t>)
        f = bf16ToFloat(x[i]);
      else
        f = x[i];
      s += f * f;
    }
    total += s;
  }
  return total;
}

template <typename X>
double sumSq(const X* x, int64_t n) {
  int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) partial[b] = blockSumSq(x, b * kBlock, std::min(n, (b + 1) * kBlock));
  });
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace

double sumOfSquares(const std::vector<Tensor>& ts) {
  torch::NoGradGuard noGrad;
  double total = 0;
  std::vector<Tensor> onDevice;  // sums of other tensors, kept where they are and read back once
  for (const auto& t0 : ts) {
    if (!t0.defined() || t0.numel() == 0) continue;
    auto st = t0.scalar_type();
    if (t0.device().is_cpu() && (st == torch::kFloat32 || st == torch::kBFloat16)) {
      auto t = t0.contiguous();
      total += st == torch::kFloat32 ? sumSq(t.data_ptr<float>(), t.numel())
                                     : sumSq(reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()), t.numel());
    } else {
      // each tensor's 2-norm read once where it is, accumulated in float32 (float64 for a float64 tensor): no
      // float32 copy of a bf16 gradient and no tensor of squares (on a GPU a bf16 read goes straight to float32);
      // the norms' squares are summed in float64, read back once for all
      auto acc = st == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
      onDevice.push_back(at::linalg_vector_norm(t0, 2, c10::nullopt, false, acc).reshape({1}).to(torch::kFloat64));
    }
  }
  if (!onDevice.empty()) total += torch::cat(onDevice).square().sum().item<double>();
  return total;
}

}  // namespace gv

// ================================================================= the SFT loss: cross-entropy summed over rows
namespace gv {
namespace {

// e^x for x <= 0 (x − max of a row; NaN when the row holds one): simd.h's expCore, and 0 below −87.3 (where 2^n
// leaves the normal range), as expf underflows there to denormals of no weight in a softmax. No NaN test or upper
// clamp (fexp's): they cost this loop a third of its speed, and a NaN in x reaches the result through r anyway.
inline float expNonPositive(float x) {
  const bool under = x < -87.3f;
  const float e = simd::expCore(under ? -87.3f : x);
  return under ? 0.0f : e;
}

inline float loadF(const float* x, int64_t i) { return x[i]; }
inline float loadF(const uint16_t* x, int64_t i) { return bf16ToFloat(x[i]); }

// The loss's row kernels on 16 lanes, compiled once per instruction set (GV_CLONES_YMM: AVX2 and SSE, and a zmm
// version for AVX-512 CPUs, see simd.h; plain loops over the scalar exp stayed scalar: the loss and its gradient on
// [128, 151936] bf16 logits took 0.12 s each, 1 thread). Each lane
// computes what the scalar code below computes for its elements: the same exp (the floor reduction included) and,
// in rowSumExp, the same 16 float accumulators per run of kRun values, summed in float64 in lane order. No fused
// multiply-adds (GCC contracts a·b + c where the instruction set has them): the scalar code has none, and the
// float32 gradient kept them 1 ulp apart in 1% of its values.
// (GV_NO_FMA: simd.h)
template <bool W = false>
GV_NO_FMA GV_INLINE simd::vf vexpNonPositive(simd::vf x) {
  using namespace simd;
  vi under = vlt<W>(x, splat(-87.3f));
  vf xc = vsel<W>(under, splat(-87.3f), x);
  vf t = xc * 1.44269504088896341f + 0.5f;
  vf n = __builtin_convertvector(__builtin_convertvector(t, vi), vf);
  n = vsel<W>(vgt<W>(n, t), n - 1.0f, n);
  vf e = expReduced(xc, n);
  vf scale = (vf)((__builtin_convertvector(n, vi) + 127) << 23);
  return vsel<W>(under, splat(0.0f), e * scale);
}

// Each row kernel twice, as fused.cc's gated product: the avx2 / default clones (W off) and, on AVX-512 CPUs, a zmm
// version with whole-vector comparisons (W on; the same bits, both without fused multiply-adds).
#define GV_LOSS_ROWS_VERSION(NAME, X, ATTRS, W)                                                                 \
  ATTRS GV_NO_FMA float rowMax##W##_##NAME(const X* __restrict x, int64_t n) {                                  \
    using namespace simd;                                                                                      \
    int64_t i = 0;                                                                                             \
    vf acc = splat(-INFINITY);                                                                                 \
    for (; i + VL <= n; i += VL) {                                                                             \
      vf v = vld(x + i);                                                                                       \
      acc = vsel<W>(vgt<W>(v, acc), v, acc);                                                                   \
    }                                                                                                          \
    float m = -INFINITY;                                                                                       \
    for (int k = 0; k < VL; k++) m = acc[k] > m ? acc[k] : m;                                                  \
    for (; i < n; i++) m = loadF(x, i) > m ? loadF(x, i) : m;                                                  \
    return m;                                                                                                  \
  }                                                                                                            \
  ATTRS GV_NO_FMA double rowSumExp##W##_##NAME(const X* __restrict x, int64_t n, float max) {                   \
    using namespace simd;                                                                                      \
    double total = 0;                                                                                          \
    for (int64_t r = 0; r < n; r += kRun) {                                                                    \
      int64_t stop = std::min(n, r + kRun);                                                                    \
      vf acc = splat(0.0f);                                                                                    \
      int64_t i = r;                                                                                           \
      for (; i + VL <= stop; i += VL) acc += vexpNonPositive<W>(vld(x + i) - max);                             \
      double s = 0;                                                                                            \
      for (int k = 0; k < VL; k++) s += acc[k];                                                                \
      for (; i < stop; i++) s += expNonPositive(loadF(x, i) - max);                                            \
      total += s;                                                                                              \
    }                                                                                                          \
    return total;                                                                                              \
  }                                                                                                            \
  ATTRS GV_NO_FMA void rowGrad##W##_##NAME(const X* __restrict x, X* __restrict out, int64_t n, float lse,      \
                                           float g) {                                                          \
    using namespace simd;                                                                                      \
    int64_t i = 0;                                                                                             \
    for (; i + VL <= n; i += VL) vst<X, W>(out + i, g * vexpNonPositive<W>(vld(x + i) - lse));                 \
    for (; i < n; i++) {                                                                                       \
      float v = g * expNonPositive(loadF(x, i) - lse);                                                         \
      if constexpr (std::is_same_v<X, uint16_t>)                                                               \
        out[i] = floatToBf16(v);                                                                               \
      else                                                                                                     \
        out[i] = v;                                                                                            \
    }                                                                                                          \
  }
#if GV_HAVE_WIDE
#define GV_LOSS_ROWS_WIDE(NAME, X) GV_LOSS_ROWS_VERSION(NAME, X, GV_WIDE, true)
#define GV_LOSS_CALL(FN, NAME, ...) (simd::wideCpu() ? FN##true_##NAME(__VA_ARGS__) : FN##false_##NAME(__VA_ARGS__))
#else
#define GV_LOSS_ROWS_WIDE(NAME, X)
#define GV_LOSS_CALL(FN, NAME, ...) FN##false_##NAME(__VA_ARGS__)
#endif
#define GV_LOSS_ROWS(NAME, X)                                                                                  \
  GV_LOSS_ROWS_VERSION(NAME, X, GV_CLONES_YMM, false)                                                          \
  GV_LOSS_ROWS_WIDE(NAME, X)                                                                                   \
  float rowMax_##NAME(const X* x, int64_t n) { return GV_LOSS_CALL(rowMax, NAME, x, n); }                     \
  double rowSumExp_##NAME(const X* x, int64_t n, float max) { return GV_LOSS_CALL(rowSumExp, NAME, x, n, max); } \
  void rowGrad_##NAME(const X* x, X* out, int64_t n, float lse, float g) {                                     \
    GV_LOSS_CALL(rowGrad, NAME, x, out, n, lse, g);                                                            \
  }
GV_LOSS_ROWS(bf16, uint16_t)
GV_LOSS_ROWS(f32, float)
#undef GV_LOSS_ROWS

inline float rowMax(const uint16_t* x, int64_t n) { return rowMax_bf16(x, n); }
inline float rowMax(const float* x, int64_t n) { return rowMax_f32(x, n); }
inline double rowSumExp(const uint16_t* x, int64_t n, float max) { return rowSumExp_bf16(x, n, max); }
inline double rowSumExp(const float* x, int64_t n, float max) { return rowSumExp_f32(x, n, max); }
inline void rowGrad(const uint16_t* x, uint16_t* out, int64_t n, float lse, float g) {
  rowGrad_bf16(x, out, n, lse, g);
}
inline void rowGrad(const float* x, float* out, int64_t n, float lse, float g) { rowGrad_f32(x, out, n, lse, g); }

template <typename X>
const X* rowsOf(const Tensor& t) {
  if constexpr (std::is_same_v<X, uint16_t>)
    return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>());
  else
    return t.data_ptr<float>();
}

struct CrossEntropySumFn : public torch::autograd::Function<CrossEntropySumFn> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& logitsIn, const Tensor& targets) {
    auto logits = logitsIn.contiguous();
    int64_t N = logits.size(0), V = logits.size(1);
    auto t = targets.contiguous();
    const int64_t* tp = t.data_ptr<int64_t>();
    auto lse = torch::empty({N}, logits.options().dtype(torch::kFloat32));
    float* lp = lse.data_ptr<float>();
    std::vector<double> rowLoss(static_cast<size_t>(N));
    auto run = [&](auto* x) {
      using X = std::remove_const_t<std::remove_pointer_t<decltype(x)>>;
      at::parallel_for(0, N, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
          const X* row = x + r * V;
          float mx = rowMax(row, V);
          double s = rowSumExp(row, V, mx);
          float l = mx + static_cast<float>(std::log(s));
          lp[r] = l;
          rowLoss[r] = static_cast<double>(l) - static_cast<double>(loadF(row, tp[r]));
        }
      });
    };
    if (logits.scalar_type() == torch::kBFloat16)
      run(rowsOf<uint16_t>(logits));
    else
      run(rowsOf<float>(logits));
    double total = 0;
    for (double l : rowLoss) total += l;
    ctx->save_for_backward({logits, lse, t});
    return torch::full({}, total, logits.options().dtype(torch::kFloat32));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto logits = saved[0], lse = saved[1], t = saved[2];
    int64_t N = logits.size(0), V = logits.size(1);
    float g = grads[0].to(torch::kFloat32).item<float>();
    auto out = torch::empty_like(logits, at::MemoryFormat::Contiguous);
    const float* lp = lse.data_ptr<float>();
    const int64_t* tp = t.data_ptr<int64_t>();
    auto run = [&](auto* x, auto* o) {
      at::parallel_for(0, N, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
          rowGrad(x + r * V, o + r * V, V, lp[r], g);
          // − g at the target: softmax − onehot, as log-softmax's backward of NLL's gradient computes it
          float at = loadF(o + r * V, tp[r]) - g;
          if constexpr (std::is_same_v<std::remove_pointer_t<decltype(o)>, uint16_t>)
            o[r * V + tp[r]] = floatToBf16(at);
          else
            o[r * V + tp[r]] = at;
        }
      });
    };
    if (logits.scalar_type() == torch::kBFloat16)
      run(rowsOf<uint16_t>(logits), reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()));
    else
      run(rowsOf<float>(logits), out.data_ptr<float>());
    return {out, Tensor()};
  }
};

}  // namespace

Tensor crossEntropySum(const Tensor& logits, const Tensor& targets) {
  TORCH_CHECK(logits.dim() == 2, "crossEntropySum: logits must be [N, V], got ", logits.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), "crossEntropySum: one target per row (",
              logits.size(0), "), got ", targets.sizes());
  TORCH_CHECK(targets.scalar_type() == torch::kInt64, "crossEntropySum: targets must be int64");
  auto st = logits.scalar_type();
  bool native = logits.device().is_cpu() && targets.device().is_cpu() &&
                (st == torch::kFloat32 || st == torch::kBFloat16) && logits.size(1) > 0;
  if (native) {
    int64_t V = logits.size(1);
    auto bad = (targets < 0).logical_or(targets >= V);
    TORCH_CHECK(!bad.any().item<bool>(), "crossEntropySum: a target is outside [0, ", V, ")");
    return CrossEntropySumFn::apply(logits, targets);
  }
  return at::cross_entropy_loss(logits.to(torch::kFloat32), targets, {}, at::Reduction::Sum, -100, 0.0);
}

}  // namespace gv
