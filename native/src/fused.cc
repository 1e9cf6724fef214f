// Fused decoder ops (see fused.h). Layout of this file: scalar and 16-lane vector helpers (bf16, exp), the CPU
// kernels (loops over rows on 16-lane vectors, compiled once per instruction set with target_clones and
// dispatched at run time), the composite ATen versions of the same maths (any device / dtype), and the autograd
// functions.
#include "fused.h"
#include "f32_products.h"
#include "simd.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace gv {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

using namespace simd;

std::atomic<bool> g_composite{false};

// ---------------------------------------------------------------- scalars

GV_INLINE float bf2f(bf16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even, NaN stays NaN (as c10::BFloat16 does).
GV_INLINE bf16_t f2bf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7fffffffu) > 0x7f800000u ? bf16_t(0x7fc0) : bf16_t(r);
}

template <typename T>
GV_INLINE float ld(const T* p, int64_t i);
template <>
GV_INLINE float ld<float>(const float* p, int64_t i) {
  return p[i];
}
template <>
GV_INLINE float ld<bf16_t>(const bf16_t* p, int64_t i) {
  return bf2f(p[i]);
}
template <typename T>
GV_INLINE void st(T* p, int64_t i, float v);
template <>
GV_INLINE void st<float>(float* p, int64_t i, float v) {
  p[i] = v;
}
template <>
GV_INLINE void st<bf16_t>(bf16_t* p, int64_t i, float v) {
  p[i] = f2bf(v);
}
/** v as the storage type would hold it (the cast eager code makes between two ops). */
template <typename T>
GV_INLINE float rnd(float v);
template <>
GV_INLINE float rnd<float>(float v) {
  return v;
}
template <>
GV_INLINE float rnd<bf16_t>(float v) {
  return bf2f(f2bf(v));
}

GV_INLINE float fsigmoid(float x) { return 1.0f / (1.0f + fexp(-x)); }
GV_INLINE float ftanh(float x) { return 1.0f - 2.0f / (1.0f + fexp(2.0f * x)); }

constexpr float kGeluK0 = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluK1 = 0.044715f;

// ---------------------------------------------------------------- 16-lane vectors
// GCC vector extensions: one source that target_clones compiles to zmm (AVX-512), ymm pairs (AVX2) or SSE, so the
// elementwise kernels below are really vectorised (the plain loops with fexp's clamps and the bf16 NaN test were
// not: the compiler left them scalar, 4-9 ns per element).

/** The first n (< 16) elements, zeros after. */
template <typename T>
GV_INLINE vf vldn(const T* p, int64_t n) {
  T tmp[VL] = {};
  std::memcpy(tmp, p, n * sizeof(T));
  return vld(tmp);
}
template <typename T, bool W = false>
GV_INLINE void vstn(T* p, vf v, int64_t n) {
  T tmp[VL];
  vst<T, W>(tmp, v);
  std::memcpy(p, tmp, n * sizeof(T));
}
/** Up to 16 elements (m of them; zeros after). */
template <typename T>
GV_INLINE vf vldm(const T* p, int64_t m) {
  return m >= VL ? vld(p) : vldn(p, m);
}
template <typename T, bool W = false>
GV_INLINE void vstm(T* p, vf v, int64_t m) {
  if (m >= VL)
    vst<T, W>(p, v);
  else
    vstn<T, W>(p, v, m);
}
/** v as the storage type would hold it (rnd on 16 lanes). */
template <typename T, bool W = false>
GV_INLINE vf vrnd(vf v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    vu u = (vu)v;
    vu r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    vi nan = vgtu<W>(u & 0x7fffffffu, vu{} + 0x7f800000u);
    vu q = u - u + 0x7fc00000u;
    return (vf)vsel<W>(nan, q, r);
  }
}
GV_INLINE float hsum(vf v) {
  float s = 0;
  for (int j = 0; j < VL; j++) s += v[j];
  return s;
}
GV_INLINE float hmax(vf v) {
  float m = v[0];
  for (int j = 1; j < VL; j++) m = v[j] > m ? v[j] : m;
  return m;
}
/** Lanes 0..n-1 set. */
template <bool W = false>
GV_INLINE vi lanesBelow(int64_t n) {
  const vi idx = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return vlti<W>(idx, vi{} + static_cast<int32_t>(n));
}

template <bool W = false>
GV_INLINE vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp<W>(-x)); }
template <bool W = false>
GV_INLINE vf vtanh(vf x) { return 1.0f - 2.0f / (1.0f + vexp<W>(2.0f * x)); }

bool nativeCpu(std::initializer_list<const Tensor*> ts) {
  if (g_composite.load(std::memory_order_relaxed)) return false;
  auto dt = (*ts.begin())->scalar_type();
  if (dt != torch::kFloat32 && dt != torch::kBFloat16) return false;
  for (auto* t : ts)
    if (t->defined() && (!t->is_cpu() || t->scalar_type() != dt)) return false;
  return true;
}

int64_t grainRows(int64_t rowLen) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, rowLen)); }

// ================================================================= RMSNorm
template <typename T, bool ONEPLUS, bool W>
GV_INLINE void rmsFwdRows(const T* x, const T* w, T* y, float* rstd, int64_t r0, int64_t r1, int64_t D, float eps) {
  for (int64_t r = r0; r < r1; r++) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    vf acc = vf{};
    for (int64_t i = 0; i < D; i += VL) {
      vf v = vldm(xr + i, D - i);
      acc += v * v;
    }
    float rs = 1.0f / std::sqrt(hsum(acc) / static_cast<float>(D) + eps);
    rstd[r] = rs;
    for (int64_t i = 0; i < D; i += VL) {
      int64_t m = D - i;
      vf n = vldm(xr + i, m) * rs;
      vstm<T, W>(yr + i, ONEPLUS ? n * (1.0f + vldm(w + i, m)) : vldm(w + i, m) * vrnd<T, W>(n), m);
    }
  }
}

template <typename T, bool ONEPLUS, bool W>
GV_INLINE void rmsBwdRows(const T* gy, const T* x, const T* w, const float* rstd, T* gx, float* gw, int64_t r0,
                          int64_t r1, int64_t D) {
  for (int64_t r = r0; r < r1; r++) {
    const T* xr = x + r * D;
    const T* gr = gy + r * D;
    float rs = rstd[r];
    auto dn = [&](int64_t i, int64_t m) { return vldm(gr + i, m) * (ONEPLUS ? 1.0f + vldm(w + i, m) : vldm(w + i, m)); };
    vf acc = vf{};
    for (int64_t i = 0; i < D; i += VL) acc += dn(i, D - i) * vldm(xr + i, D - i) * rs;
    float c = hsum(acc) / static_cast<float>(D);
    if (gx) {
      T* gxr = gx + r * D;
      for (int64_t i = 0; i < D; i += VL) {
        int64_t m = D - i;
        vstm<T, W>(gxr + i, rs * (dn(i, m) - vldm(xr + i, m) * rs * c), m);
      }
    }
    if (gw)
      for (int64_t i = 0; i < D; i += VL) {
        int64_t m = D - i;
        vf n = vldm(xr + i, m) * rs;
        vstm(gw + i, vldm(gw + i, m) + vldm(gr + i, m) * (ONEPLUS ? n : vrnd<T, W>(n)), m);
      }
  }
}

// Two versions, as the gated product's below: the avx2 / default clones (W off), and on AVX-512 CPUs a zmm one whose
// bf16 roundings and stores compare and select whole vectors (W on). The zmm version keeps fused multiply-adds
// (GV_WIDE without GV_NO_FMA), i.e. computes what the avx512f clone that AVX-512 CPUs ran before computed, without
// its store-forwarding stalls (BENCHMARKS "Issue 13 §1 on an AMD Zen 5").
#define GV_RMS_VERSION(T, NAME, ATTRS, W)                                                                          \
  ATTRS void rmsFwd##W##_##NAME(const T* x, const T* w, T* y, float* rstd, int64_t r0, int64_t r1, int64_t D,    \
                                float eps, bool onePlus) {                                                       \
    if (onePlus)                                                                                                 \
      rmsFwdRows<T, true, W>(x, w, y, rstd, r0, r1, D, eps);                                                     \
    else                                                                                                         \
      rmsFwdRows<T, false, W>(x, w, y, rstd, r0, r1, D, eps);                                                    \
  }                                                                                                              \
  ATTRS void rmsBwd##W##_##NAME(const T* gy, const T* x, const T* w, const float* rstd, T* gx, float* gw,        \
                                int64_t r0, int64_t r1, int64_t D, bool onePlus) {                               \
    if (onePlus)                                                                                                 \
      rmsBwdRows<T, true, W>(gy, x, w, rstd, gx, gw, r0, r1, D);                                                 \
    else                                                                                                         \
      rmsBwdRows<T, false, W>(gy, x, w, rstd, gx, gw, r0, r1, D);                                                \
  }
#if GV_HAVE_WIDE
#define GV_RMS_WIDE(T, NAME) GV_RMS_VERSION(T, NAME, GV_WIDE, true)
#define GV_WIDE_CALL(FN, NAME, ...) (simd::wideCpu() ? FN##true_##NAME(__VA_ARGS__) : FN##false_##NAME(__VA_ARGS__))
#else
#define GV_RMS_WIDE(T, NAME)
#define GV_WIDE_CALL(FN, NAME, ...) FN##false_##NAME(__VA_ARGS__)
#endif
#define GV_RMS_KERNELS(T, NAME)                                                                                  \
  GV_RMS_VERSION(T, NAME, GV_CLONES_YMM, false)                                                                  \
  GV_RMS_WIDE(T, NAME)                                                                                           \
  void rmsFwd_##NAME(const T* x, const T* w, T* y, float* rstd, int64_t r0, int64_t r1, int64_t D, float eps,    \
                     bool onePlus) {                                                                             \
    GV_WIDE_CALL(rmsFwd, NAME, x, w, y, rstd, r0, r1, D, eps, onePlus);                                          \
  }                                                                                                              \
  void rmsBwd_##NAME(const T* gy, const T* x, const T* w, const float* rstd, T* gx, float* gw, int64_t r0,       \
                     int64_t r1, int64_t D, bool onePlus) {                                                      \
    GV_WIDE_CALL(rmsBwd, NAME, gy, x, w, rstd, gx, gw, r0, r1, D, onePlus);                                      \
  }
GV_RMS_KERNELS(float, f32)
GV_RMS_KERNELS(bf16_t, bf16)

Tensor rmsComposite(const Tensor& x, const Tensor& w, double eps, bool onePlus) {
  auto xf = x.to(torch::kFloat32);
  auto n = xf * torch::rsqrt(xf.square().mean(-1, true) + eps);
  if (onePlus) return (n * (w.to(torch::kFloat32) + 1)).to(x.scalar_type());
  return w * n.to(x.scalar_type());
}

struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x0, const Tensor& w0, double eps, bool onePlus) {
    auto x = x0.contiguous();
    auto w = w0.contiguous();
    int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
    auto y = torch::empty_like(x);
    auto rstd = torch::empty({R}, x.options().dtype(torch::kFloat32));
    float* rp = rstd.data_ptr<float>();
    float e = static_cast<float>(eps);
    at::parallel_for(0, R, grainRows(D), [&](int64_t r0, int64_t r1) {
      if (x.scalar_type() == torch::kBFloat16)
        rmsFwd_bf16(static_cast<const bf16_t*>(x.data_ptr()), static_cast<const bf16_t*>(w.data_ptr()),
                    static_cast<bf16_t*>(y.data_ptr()), rp, r0, r1, D, e, onePlus);
      else
        rmsFwd_f32(x.data_ptr<float>(), w.data_ptr<float>(), y.data_ptr<float>(), rp, r0, r1, D, e, onePlus);
    });
    ctx->save_for_backward({x, w, rstd});
    ctx->saved_data["onePlus"] = onePlus;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto x = saved[0], w = saved[1], rstd = saved[2];
    bool onePlus = ctx->saved_data["onePlus"].toBool();
    auto gy = grads[0].contiguous();
    int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
    bool needX = ctx->needs_input_grad(0), needW = ctx->needs_input_grad(1);
    Tensor gx = needX ? torch::empty_like(x) : Tensor();
    int nt = at::get_num_threads();
    Tensor gwPart = needW ? torch::zeros({nt, D}, x.options().dtype(torch::kFloat32)) : Tensor();
    const float* rp = rstd.data_ptr<float>();
    at::parallel_for(0, R, grainRows(D), [&](int64_t r0, int64_t r1) {
      float* gw = needW ? gwPart.data_ptr<float>() + at::get_thread_num() * D : nullptr;
      if (x.scalar_type() == torch::kBFloat16)
        rmsBwd_bf16(static_cast<const bf16_t*>(gy.data_ptr()), static_cast<const bf16_t*>(x.data_ptr()),
                    static_cast<const bf16_t*>(w.data_ptr()), rp,
                    needX ? static_cast<bf16_t*>(gx.data_ptr()) : nullptr, gw, r0, r1, D, onePlus);
      else
        rmsBwd_f32(gy.data_ptr<float>(), x.data_ptr<float>(), w.data_ptr<float>(), rp,
                   needX ? gx.data_ptr<float>() : nullptr, gw, r0, r1, D, onePlus);
    });
    Tensor gw = needW ? gwPart.sum(0).to(w.scalar_type()) : Tensor();
    return {gx, gw, Tensor(), Tensor()};
  }
};

// ================================================================= rotary embedding
struct RopeGeom {
  int64_t B, T, H, D, G, R;
  int64_t xs0, xs1, xs2;  // x strides (last dim contiguous)
  int64_t cs0;            // cos/sin batch stride (0 when shared), [T, D] contiguous inside
};

template <typename T>
GV_INLINE void ropeFwdRows(const T* x, const T* cs, const T* sn, T* y, const RopeGeom& g, int64_t r0, int64_t r1) {
  int64_t h2 = g.D / 2;
  for (int64_t row = r0; row < r1; row++) {  // row = (b, t, h)
    int64_t h = row % g.H, t = (row / g.H) % g.T, b = row / (g.H * g.T);
    const T* xr = x + b * g.xs0 + t * g.xs1 + h * g.xs2;
    const T* c = cs + b * g.cs0 + t * g.D;
    const T* s = sn + b * g.cs0 + t * g.D;
    int64_t gi = h / g.R, ri = h % g.R;
    T* yr = y + (((b * g.G + gi) * g.T + t) * g.R + ri) * g.D;
    for (int64_t i = 0; i < h2; i += VL) {
      int64_t m = h2 - i;
      vf x1 = vldm(xr + i, m), x2 = vldm(xr + i + h2, m);
      vstm(yr + i, x1 * vldm(c + i, m) - x2 * vldm(s + i, m), m);
      vstm(yr + i + h2, x2 * vldm(c + i + h2, m) + x1 * vldm(s + i + h2, m), m);
    }
  }
}

template <typename T>
GV_INLINE void ropeBwdRows(const T* gy, const T* cs, const T* sn, T* gx, const RopeGeom& g, int64_t r0, int64_t r1) {
  int64_t h2 = g.D / 2;
  for (int64_t row = r0; row < r1; row++) {
    int64_t h = row % g.H, t = (row / g.H) % g.T, b = row / (g.H * g.T);
    const T* c = cs + b * g.cs0 + t * g.D;
    const T* s = sn + b * g.cs0 + t * g.D;
    int64_t gi = h / g.R, ri = h % g.R;
    const T* gr = gy + (((b * g.G + gi) * g.T + t) * g.R + ri) * g.D;
    T* xr = gx + row * g.D;  // [B, T, H, D] contiguous
    for (int64_t i = 0; i < h2; i += VL) {
      int64_t m = h2 - i;
      vf g1 = vldm(gr + i, m), g2 = vldm(gr + i + h2, m);
      vstm(xr + i, g1 * vldm(c + i, m) + g2 * vldm(s + i + h2, m), m);
      vstm(xr + i + h2, g2 * vldm(c + i + h2, m) - g1 * vldm(s + i, m), m);
    }
  }
}

#define GV_ROPE_KERNELS(T, NAME)                                                                              \
  GV_CLONES_YMM void ropeFwd_##NAME(const T* x, const T* c, const T* s, T* y, const RopeGeom& g, int64_t r0, \
                                    int64_t r1) {                                                             \
    ropeFwdRows<T>(x, c, s, y, g, r0, r1);                                                                    \
  }                                                                                                           \
  GV_CLONES_YMM void ropeBwd_##NAME(const T* gy, const T* c, const T* s, T* gx, const RopeGeom& g, int64_t r0, \
                                    int64_t r1) {                                                             \
    ropeBwdRows<T>(gy, c, s, gx, g, r0, r1);                                                                  \
  }
GV_ROPE_KERNELS(float, f32)
GV_ROPE_KERNELS(bf16_t, bf16)

/** cos/sin as [B or 1, T, D] contiguous. */
Tensor ropeTable(const Tensor& t, int64_t B, int64_t T, int64_t D) {
  Tensor c = t.dim() == 4 ? t.squeeze(1) : t;
  TORCH_CHECK(c.dim() == 3 && c.size(1) == T && c.size(2) == D && (c.size(0) == B || c.size(0) == 1),
              "rope: cos/sin must be [B, T, D] or [B, 1, T, D] for x [B, T, H, D], got ", t.sizes());
  return c.contiguous();
}

Tensor ropeComposite(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t G) {
  int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
  auto c = ropeTable(cos, B, T, D).unsqueeze(2);
  auto s = ropeTable(sin, B, T, D).unsqueeze(2);
  auto rot = torch::cat({-x.narrow(-1, D / 2, D / 2), x.narrow(-1, 0, D / 2)}, -1);
  auto y = x * c + rot * s;
  return y.view({B, T, G, H / G, D}).permute({0, 2, 1, 3, 4}).contiguous();
}

struct RopeFn : public torch::autograd::Function<RopeFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x0, const Tensor& cos, const Tensor& sin, int64_t G) {
    auto x = x0.stride(-1) == 1 ? x0 : x0.contiguous();
    int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
    auto c = ropeTable(cos, B, T, D), s = ropeTable(sin, B, T, D);
    RopeGeom g{B, T, H, D, G, H / G, x.stride(0), x.stride(1), x.stride(2), c.size(0) == 1 ? 0 : T * D};
    auto y = torch::empty({B, G, T, H / G, D}, x.options());
    at::parallel_for(0, B * T * H, grainRows(D), [&](int64_t r0, int64_t r1) {
      if (x.scalar_type() == torch::kBFloat16)
        ropeFwd_bf16(static_cast<const bf16_t*>(x.data_ptr()), static_cast<const bf16_t*>(c.data_ptr()),
                     static_cast<const bf16_t*>(s.data_ptr()), static_cast<bf16_t*>(y.data_ptr()), g, r0, r1);
      else
        ropeFwd_f32(x.data_ptr<float>(), c.data_ptr<float>(), s.data_ptr<float>(), y.data_ptr<float>(), g, r0, r1);
    });
    ctx->save_for_backward({c, s});
    ctx->saved_data["geom"] = std::vector<int64_t>{B, T, H, D, G};
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto c = saved[0], s = saved[1];
    auto v = ctx->saved_data["geom"].toIntVector();
    int64_t B = v[0], T = v[1], H = v[2], D = v[3], G = v[4];
    auto gy = grads[0].contiguous();
    RopeGeom g{B, T, H, D, G, H / G, 0, 0, 0, c.size(0) == 1 ? 0 : T * D};
    auto gx = torch::empty({B, T, H, D}, gy.options());
    at::parallel_for(0, B * T * H, grainRows(D), [&](int64_t r0, int64_t r1) {
      if (gy.scalar_type() == torch::kBFloat16)
        ropeBwd_bf16(static_cast<const bf16_t*>(gy.data_ptr()), static_cast<const bf16_t*>(c.data_ptr()),
                     static_cast<const bf16_t*>(s.data_ptr()), static_cast<bf16_t*>(gx.data_ptr()), g, r0, r1);
      else
        ropeBwd_f32(gy.data_ptr<float>(), c.data_ptr<float>(), s.data_ptr<float>(), gx.data_ptr<float>(), g, r0, r1);
    });
    return {gx, Tensor(), Tensor(), Tensor()};
  }
};

// ================================================================= gated activation
// W: compiled as AVX-512 code (GV_WIDE), comparisons and selects on whole vectors (simd.h)
template <bool GELU, bool W>
GV_INLINE vf gatedA(vf x) {
  if (GELU) return 0.5f * x * (1.0f + vtanh<W>(kGeluK0 * (x + kGeluK1 * x * x * x)));
  return x * vsigmoid<W>(x);
}

template <typename T, bool GELU, bool W>
GV_INLINE void gatedFwdRange(const T* g, const T* u, T* y, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + VL <= i1; i += VL) vst<T, W>(y + i, gatedA<GELU, W>(vld(g + i)) * vld(u + i));
  if (i < i1) vstn<T, W>(y + i, gatedA<GELU, W>(vldn(g + i, i1 - i)) * vldn(u + i, i1 - i), i1 - i);
}

template <typename T, bool GELU, bool W>
GV_INLINE void gatedBwdVec(vf x, vf d, vf uu, vf& gg, vf& gu) {
  vf a, da;
  if (GELU) {
    vf t = vtanh<W>(kGeluK0 * (x + kGeluK1 * x * x * x));
    a = 0.5f * x * (1.0f + t);
    da = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kGeluK0 * (1.0f + 3.0f * kGeluK1 * x * x);
  } else {
    vf s = vsigmoid<W>(x);
    a = x * s;
    da = s * (1.0f + x * (1.0f - s));
  }
  gg = d * uu * da;
  gu = d * a;
}

template <typename T, bool GELU, bool W>
GV_INLINE void gatedBwdRange(const T* gy, const T* g, const T* u, T* gg, T* gu, int64_t i0, int64_t i1) {
  int64_t i = i0;
  vf a, b;
  for (; i + VL <= i1; i += VL) {
    gatedBwdVec<T, GELU, W>(vld(g + i), vld(gy + i), vld(u + i), a, b);
    vst<T, W>(gg + i, a);
    vst<T, W>(gu + i, b);
  }
  if (i < i1) {
    int64_t n = i1 - i;
    gatedBwdVec<T, GELU, W>(vldn(g + i, n), vldn(gy + i, n), vldn(u + i, n), a, b);
    vstn<T, W>(gg + i, a, n);
    vstn<T, W>(gu + i, b, n);
  }
}

// The gated product in two versions: the avx2 / default clones, and on AVX-512 CPUs a zmm one (GV_WIDE, no fused
// multiply-adds, so the same bits): [256, 4864] bf16 in 0.79 against 1.11 ms forward, 1.24 against 1.71 backward on
// a Zen 5 core (bench/fused-ops.ts; BENCHMARKS "Issue 13 §1 on an AMD Zen 5").
#define GV_GATED_VERSION(T, NAME, ATTRS, W)                                                                 \
  ATTRS void gatedFwd##W##_##NAME(const T* g, const T* u, T* y, int64_t i0, int64_t i1, bool gelu) {        \
    if (gelu)                                                                                              \
      gatedFwdRange<T, true, W>(g, u, y, i0, i1);                                                          \
    else                                                                                                   \
      gatedFwdRange<T, false, W>(g, u, y, i0, i1);                                                         \
  }                                                                                                        \
  ATTRS void gatedBwd##W##_##NAME(const T* gy, const T* g, const T* u, T* gg, T* gu, int64_t i0, int64_t i1, \
                                  bool gelu) {                                                             \
    if (gelu)                                                                                              \
      gatedBwdRange<T, true, W>(gy, g, u, gg, gu, i0, i1);                                                 \
    else                                                                                                   \
      gatedBwdRange<T, false, W>(gy, g, u, gg, gu, i0, i1);                                                \
  }
#if GV_HAVE_WIDE
#define GV_GATED_WIDE(T, NAME) GV_GATED_VERSION(T, NAME, GV_WIDE GV_NO_FMA, true)
#else
#define GV_GATED_WIDE(T, NAME)
#endif
#define GV_GATED_KERNELS(T, NAME)                                                                          \
  GV_GATED_VERSION(T, NAME, GV_CLONES_YMM, false)                                                          \
  GV_GATED_WIDE(T, NAME)                                                                                   \
  void gatedFwd_##NAME(const T* g, const T* u, T* y, int64_t i0, int64_t i1, bool gelu) {                  \
    GV_WIDE_CALL(gatedFwd, NAME, g, u, y, i0, i1, gelu);                                                  \
  }                                                                                                        \
  void gatedBwd_##NAME(const T* gy, const T* g, const T* u, T* gg, T* gu, int64_t i0, int64_t i1, bool gelu) { \
    GV_WIDE_CALL(gatedBwd, NAME, gy, g, u, gg, gu, i0, i1, gelu);                                         \
  }
GV_GATED_KERNELS(float, f32)
GV_GATED_KERNELS(bf16_t, bf16)

bool isGelu(const std::string& act) {
  if (act == "gelu_tanh" || act == "gelu_pytorch_tanh") return true;
  if (act == "silu") return false;
  throw std::invalid_argument("gatedAct: activation must be silu or gelu_tanh, got '" + act + "'");
}

/**
 * x as rows of its last dimension: the row stride when every dimension above the last is laid out densely over
 * rows of that stride (a contiguous tensor, or a block of columns of one: gate's and up's outputs of one
 * product), else 0 (the caller makes it contiguous).
 */
int64_t rowStride(const Tensor& x) {
  int64_t d = x.dim();
  if (d == 0 || x.stride(d - 1) != 1) return 0;
  int64_t ld = -1, rows = 1;  // rows: how many rows one step along dimension k spans
  for (int64_t k = d - 2; k >= 0; --k) {
    if (x.size(k) != 1) {
      if (ld < 0) {
        if (x.stride(k) % rows) return 0;
        ld = x.stride(k) / rows;
      } else if (x.stride(k) != ld * rows) {
        return 0;
      }
    }
    rows *= x.size(k);
  }
  if (ld < 0) ld = x.size(d - 1);  // a single row
  return ld >= x.size(d - 1) ? ld : 0;
}

struct GatedFn : public torch::autograd::Function<GatedFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& g0, const Tensor& u0, bool gelu) {
    // gate and up are read in place when they are rows of a common stride (one product's output split by
    // columns), else made contiguous
    auto g = rowStride(g0) ? g0 : g0.contiguous();
    auto u = rowStride(u0) == rowStride(g) ? u0 : u0.contiguous();
    if (rowStride(u) != rowStride(g)) g = g.contiguous();
    int64_t I = g.size(-1), N = g.numel() / std::max<int64_t>(1, I), ld = rowStride(g);
    auto y = torch::empty(g.sizes(), g.options());
    bool bf = g.scalar_type() == torch::kBFloat16;
    at::parallel_for(0, N, grainRows(I), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (bf)
          gatedFwd_bf16(static_cast<const bf16_t*>(g.data_ptr()) + r * ld,
                        static_cast<const bf16_t*>(u.data_ptr()) + r * ld, static_cast<bf16_t*>(y.data_ptr()) + r * I,
                        0, I, gelu);
        else
          gatedFwd_f32(g.data_ptr<float>() + r * ld, u.data_ptr<float>() + r * ld, y.data_ptr<float>() + r * I, 0, I,
                       gelu);
      }
    });
    ctx->save_for_backward({g, u});
    ctx->saved_data["gelu"] = gelu;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto g = saved[0], u = saved[1];
    bool gelu = ctx->saved_data["gelu"].toBool();
    auto gy = grads[0].contiguous();
    int64_t I = g.size(-1), N = g.numel() / std::max<int64_t>(1, I), ld = rowStride(g);
    // gate and up side by side in one product's output (up's columns right after gate's): their gradients are
    // written side by side into one buffer, so splitColumns' backward passes it to the product without a copy
    bool adjacent = ld == 2 * I && u.storage().is_alias_of(g.storage()) &&
                    u.storage_offset() == g.storage_offset() + I;
    Tensor gg, gu, both;
    int64_t ldo = I;
    if (adjacent) {
      auto shape = g.sizes().vec();
      shape.back() = 2 * I;
      both = torch::empty(shape, g.options());
      gg = both.narrow(-1, 0, I);
      gu = both.narrow(-1, I, I);
      ldo = 2 * I;
    } else {
      gg = torch::empty(g.sizes(), g.options());
      gu = torch::empty(u.sizes(), u.options());
    }
    bool bf = g.scalar_type() == torch::kBFloat16;
    at::parallel_for(0, N, grainRows(I), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (bf)
          gatedBwd_bf16(static_cast<const bf16_t*>(gy.data_ptr()) + r * I,
                        static_cast<const bf16_t*>(g.data_ptr()) + r * ld,
                        static_cast<const bf16_t*>(u.data_ptr()) + r * ld, static_cast<bf16_t*>(gg.data_ptr()) + r * ldo,
                        static_cast<bf16_t*>(gu.data_ptr()) + r * ldo, 0, I, gelu);
        else
          gatedBwd_f32(gy.data_ptr<float>() + r * I, g.data_ptr<float>() + r * ld, u.data_ptr<float>() + r * ld,
                       gg.data_ptr<float>() + r * ldo, gu.data_ptr<float>() + r * ldo, 0, I, gelu);
      }
    });
    return {gg, gu, Tensor()};
  }
};

// ================================================================= attention
struct AttnGeom {
  int64_t B, G, T, R, D, S, past, window;
  float scale, softcap;
  const uint8_t* keyMask;  // [B, S] bool, or null
};

/** Keys [lo, hi) that query time t (block-local row of the (b, g) task) may see, before the key mask. */
GV_INLINE void visible(const AttnGeom& a, int64_t t, int64_t& lo, int64_t& hi) {
  hi = a.past + t + 1;
  lo = a.window > 0 ? std::max<int64_t>(0, a.past + t - a.window + 1) : 0;
}

/** 16 keys' validity from the key mask (lanes past n are invalid). */
template <bool W = false>
GV_INLINE vi keyLanes(const uint8_t* km, int64_t n) {
  if (!km) return lanesBelow<W>(n);
  uint8_t tmp[VL] = {};
  std::memcpy(tmp, km, std::min<int64_t>(n, VL));
  typedef uint8_t vb __attribute__((vector_size(16)));
  vb m;
  std::memcpy(&m, tmp, sizeof m);
  return vnei<W>(__builtin_convertvector(m, vi), vi{}) & lanesBelow<W>(n);
}

/** Raw scores of 16 keys as softmax sees them: scaled, soft-capped (dcap: the cap's derivative). */
template <typename T, bool W = false>
GV_INLINE vf scoreLanes(const T* s, int64_t n, const AttnGeom& a, vf* dcap) {
  vf v = (n >= VL ? vld(s) : vldn(s, n)) * a.scale;
  if (a.softcap > 0) {
    vf th = vtanh<W>(v / a.softcap);
    if (dcap) *dcap = 1.0f - th * th;
    v = a.softcap * th;
  } else if (dcap) {
    *dcap = splat(1.0f);
  }
  return v;
}

template <typename T>
GV_INLINE void zeroRange(T* p, int64_t j0, int64_t j1) {
  if (j1 > j0) std::memset(p + j0, 0, (j1 - j0) * sizeof(T));  // +0.0 in float32 and bfloat16
}

// Scores [rows, n] (keys jlo .. jlo + n) of query times t0 .. -> probabilities (written to P, which may be S),
// and the log-sum-exp per row. Keys outside a row's window or masked get probability 0. buf holds a row's
// scores in float32 (n floats, 16-aligned count). Whole 16-key chunks run without lane masks; the last partial
// chunk of a row and the key mask (padding) use them.
template <typename T, bool W>
GV_INLINE void softmaxRows(const T* S, T* P, float* lse, const AttnGeom& a, int64_t b, int64_t t0, int64_t rows,
                           int64_t jlo, int64_t n, float* buf) {
  const uint8_t* km = a.keyMask ? a.keyMask + b * a.S + jlo : nullptr;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t row = 0; row < rows; row++) {
    int64_t t = t0 + row / a.R;
    int64_t lo, hi;
    visible(a, t, lo, hi);
    lo = std::max(lo, jlo) - jlo;
    hi = std::min(hi, jlo + n) - jlo;
    const T* s = S + row * n;
    T* p = P + row * n;
    vf mx = splat(ninf);
    vi bad = vi{}, seen = vi{};  // NaN lanes; valid-key lanes
    int64_t j = lo;
    if (!km) {
      for (; j + VL <= hi; j += VL) {
        vf v = scoreLanes<T, W>(s + j, VL, a, nullptr);
        vst(buf + j - lo, v);
        bad |= vne<W>(v, v);
        mx = vsel<W>(vgt<W>(v, mx), v, mx);
      }
      seen = vi{} + (hi > lo ? 1 : 0);
    }
    for (; j < hi; j += VL) {  // key-masked rows, and the last partial chunk
      int64_t m = std::min<int64_t>(VL, hi - j);
      vi ok = keyLanes<W>(km ? km + j : nullptr, m);
      vf v = scoreLanes<T, W>(s + j, m, a, nullptr);
      vst(buf + j - lo, vsel<W>(ok, v, splat(ninf)));
      seen |= ok;
      bad |= ok & vne<W>(v, v);
      mx = vsel<W>(ok & vgt<W>(v, mx), v, mx);
    }
    float rmx = hmax(mx);
    bool anySeen = false, anyNan = false;
    for (int k = 0; k < VL; k++) anySeen |= seen[k] != 0, anyNan |= bad[k] != 0;
    if (!anySeen) {  // sees no key (a padding query): output 0, no gradient
      zeroRange(p, 0, n);
      lse[row] = ninf;
      continue;
    }
    if (anyNan || rmx == ninf) {  // as eager softmax: NaN in, NaN out
      for (int64_t k = 0; k < n; k++) st(p, k, std::numeric_limits<float>::quiet_NaN());
      lse[row] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    // exp of every lane of the whole chunks (masked keys hold -inf: exp gives a denormal-or-zero there, so they
    // are selected to 0 explicitly)
    vf sum = vf{};
    int64_t end = lo + ((hi - lo + VL - 1) / VL) * VL;
    for (j = lo; j < end; j += VL) {
      vf v = vld(buf + j - lo);
      vf e = vsel<W>(vne<W>(v, splat(ninf)), vexp<W>(v - rmx), vf{});
      vst(buf + j - lo, e);
      sum += e;
    }
    float total = hsum(sum), inv = 1.0f / total;
    zeroRange(p, 0, lo);
    for (j = lo; j + VL <= hi; j += VL) vst<T, W>(p + j, vld(buf + j - lo) * inv);
    if (j < hi) vstn<T, W>(p + j, vld(buf + j - lo) * inv, hi - j);
    zeroRange(p, hi, n);
    lse[row] = rmx + std::log(total);
  }
}

// Backward of one block: P recomputed from the scores S and the saved lse (stored rounded, as the forward used it
// in P·V, for dV); dP (in place) becomes dScores = P (dP - sum_j P dP) · d(score)/d(raw) with P in float32, as
// eager's float32 softmax backward computes it.
template <typename T, bool W>
GV_INLINE void softmaxBwdRows(const T* S, T* P, T* dP, const float* lse, const AttnGeom& a, int64_t b, int64_t t0,
                              int64_t rows, int64_t jlo, int64_t n, float* pbuf, float* cbuf) {
  const uint8_t* km = a.keyMask ? a.keyMask + b * a.S + jlo : nullptr;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t row = 0; row < rows; row++) {
    int64_t t = t0 + row / a.R;
    int64_t lo, hi;
    visible(a, t, lo, hi);
    lo = std::max(lo, jlo) - jlo;
    hi = std::min(hi, jlo + n) - jlo;
    const T* s = S + row * n;
    T* p = P + row * n;
    T* dp = dP + row * n;
    float L = lse[row];
    vf dot = vf{};
    if (L == ninf) {  // a query that saw no key: no gradient
      zeroRange(p, 0, n);
      zeroRange(dp, 0, n);
      continue;
    }
    int64_t j = lo;
    if (!km && !(a.softcap > 0)) {
      for (; j + VL <= hi; j += VL) {
        vf pj = vexp<W>(vld(s + j) * a.scale - L);
        vst(pbuf + j - lo, pj);
        dot += pj * vld(dp + j);
      }
    }
    for (; j < hi; j += VL) {  // soft-capped or key-masked rows, and the last partial chunk
      int64_t m = std::min<int64_t>(VL, hi - j);
      vf dcap;
      vf v = scoreLanes<T, W>(s + j, m, a, &dcap);
      vi ok = keyLanes<W>(km ? km + j : nullptr, m);
      vf pj = vsel<W>(ok, vexp<W>(v - L), vf{});
      vst(pbuf + j - lo, pj);
      vst(cbuf + j - lo, dcap);
      dot += pj * (m == VL ? vld(dp + j) : vldn(dp + j, m));
    }
    float d = hsum(dot);
    float sc = a.scale;
    zeroRange(p, 0, lo);
    zeroRange(dp, 0, lo);
    for (j = lo; j < hi; j += VL) {
      int64_t m = std::min<int64_t>(VL, hi - j);
      vf pj = vld(pbuf + j - lo);
      vf dpj = m == VL ? vld(dp + j) : vldn(dp + j, m);
      vf g = a.softcap > 0 ? pj * (dpj - d) * vld(cbuf + j - lo) * sc : pj * (dpj - d) * sc;
      if (m == VL) {
        vst<T, W>(p + j, pj);
        vst<T, W>(dp + j, g);
      } else {
        vstn<T, W>(p + j, pj, m);
        vstn<T, W>(dp + j, g, m);
      }
    }
    zeroRange(p, hi, n);
    zeroRange(dp, hi, n);
  }
}

// Two versions again, as the gated product's (GV_GATED_VERSION): the attention core at the same shape 0.99-1.28
// against 1.63-1.68 ms forward, 1.95-2.66 against 2.83-3.55 backward.
#define GV_ATTN_VERSION(T, NAME, ATTRS, W)                                                                     \
  ATTRS void softmaxRows##W##_##NAME(const T* S, T* P, float* lse, const AttnGeom& a, int64_t b, int64_t t0,     \
                                     int64_t rows, int64_t jlo, int64_t n, float* buf) {                      \
    softmaxRows<T, W>(S, P, lse, a, b, t0, rows, jlo, n, buf);                                                 \
  }                                                                                                            \
  ATTRS void softmaxBwdRows##W##_##NAME(const T* S, T* P, T* dP, const float* lse, const AttnGeom& a, int64_t b, \
                                        int64_t t0, int64_t rows, int64_t jlo, int64_t n, float* pbuf,         \
                                        float* cbuf) {                                                         \
    softmaxBwdRows<T, W>(S, P, dP, lse, a, b, t0, rows, jlo, n, pbuf, cbuf);                                   \
  }
#if GV_HAVE_WIDE
#define GV_ATTN_WIDE(T, NAME) GV_ATTN_VERSION(T, NAME, GV_WIDE GV_NO_FMA, true)
#else
#define GV_ATTN_WIDE(T, NAME)
#endif
#define GV_ATTN_KERNELS(T, NAME)                                                                               \
  GV_ATTN_VERSION(T, NAME, GV_CLONES_YMM, false)                                                               \
  GV_ATTN_WIDE(T, NAME)                                                                                        \
  void softmaxRows_##NAME(const T* S, T* P, float* lse, const AttnGeom& a, int64_t b, int64_t t0, int64_t rows, \
                          int64_t jlo, int64_t n, float* buf) {                                                \
    GV_WIDE_CALL(softmaxRows, NAME, S, P, lse, a, b, t0, rows, jlo, n, buf);                                  \
  }                                                                                                            \
  void softmaxBwdRows_##NAME(const T* S, T* P, T* dP, const float* lse, const AttnGeom& a, int64_t b,          \
                             int64_t t0, int64_t rows, int64_t jlo, int64_t n, float* pbuf, float* cbuf) {     \
    GV_WIDE_CALL(softmaxBwdRows, NAME, S, P, dP, lse, a, b, t0, rows, jlo, n, pbuf, cbuf);                    \
  }
GV_ATTN_KERNELS(float, f32)
GV_ATTN_KERNELS(bf16_t, bf16)

// Products of the attention blocks. libtorch 1.13 sends bf16 products below 16^3 multiply-adds to a fallback gemm
// that accumulates in bf16; those (small blocks, short sequences) are computed in float32 instead, and so is every
// bf16 product where libtorch's large ones do not accumulate in float32 either (f32_products.h: AVX2 CPUs), so every
// product accumulates in float32 and is rounded once, as oneDNN does for the large ones.
bool smallProduct(const Tensor& a, const Tensor& b) {
  return a.size(0) * a.size(1) * b.size(1) <= 16 * 16 * 16 || f32Products();
}
Tensor mmAcc(const Tensor& a, const Tensor& b) {
  if (a.scalar_type() == torch::kBFloat16 && smallProduct(a, b))
    return torch::mm(a.to(torch::kFloat32), b.to(torch::kFloat32)).to(a.scalar_type());
  return torch::mm(a, b);
}
/** The same product, kept in float32 (for accumulators). */
Tensor mmF32(const Tensor& a, const Tensor& b) {
  if (a.scalar_type() == torch::kBFloat16 && smallProduct(a, b))
    return torch::mm(a.to(torch::kFloat32), b.to(torch::kFloat32));
  return torch::mm(a, b).to(torch::kFloat32);
}

/**
 * Query blocks. While one (batch, KV head)'s scores are small (T·R·S <= 1 M entries: the 0.5B shape at 256 tokens
 * has 0.46 M) the whole sequence is one block: each product is one oneDNN call and dK, dV come out of one product
 * each, rounded once; measured faster at that shape than causal blocks (bench/fused-ops.ts), although it multiplies
 * the masked upper triangle too. Longer sequences take blocks of ~512 rows (time steps x query heads per KV head),
 * so causal blocks skip the keys they cannot see and the scores stay in cache.
 */
int64_t blockSteps(const AttnGeom& a) {
  if (a.T * a.R * a.S <= (int64_t(1) << 20)) return a.T;
  return std::max<int64_t>(1, std::min<int64_t>(a.T, 512 / a.R));
}

/** Keys a block of query times [t0, t1) can see: [jlo, jlo + n). */
void blockKeys(const AttnGeom& a, int64_t t0, int64_t t1, int64_t& jlo, int64_t& n) {
  int64_t lo0, hi0, lo1, hi1;
  visible(a, t0, lo0, hi0);
  visible(a, t1 - 1, lo1, hi1);
  jlo = lo0;
  n = hi1 - lo0;
}

/** Runs f(b, g) for every (batch, KV head): in parallel when there are enough of them (the products inside then
 * run on one thread each), else one after the other with multi-threaded products. */
template <typename F>
void forEachHead(int64_t B, int64_t G, F f) {
  int64_t n = B * G;
  if (n >= at::get_num_threads() && n > 1 && !at::in_parallel_region()) {
    at::parallel_for(0, n, 1, [&](int64_t i0, int64_t i1) {
      at::NoGradGuard noGrad;  // grad mode is per thread: workers start with it on
      for (int64_t i = i0; i < i1; i++) f(i / G, i % G);
    });
  } else {
    for (int64_t i = 0; i < n; i++) f(i / G, i % G);
  }
}

void softmaxDispatch(const Tensor& S, const Tensor& P, float* lse, const AttnGeom& a, int64_t b, int64_t t0,
                     int64_t rows, int64_t jlo, int64_t n, float* buf) {
  if (S.scalar_type() == torch::kBFloat16)
    softmaxRows_bf16(static_cast<const bf16_t*>(S.data_ptr()), static_cast<bf16_t*>(P.data_ptr()), lse, a, b, t0,
                     rows, jlo, n, buf);
  else
    softmaxRows_f32(S.data_ptr<float>(), P.data_ptr<float>(), lse, a, b, t0, rows, jlo, n, buf);
}

Tensor keyMaskBytes(const Tensor& keyMask, int64_t B, int64_t S) {
  if (!keyMask.defined()) return Tensor();
  TORCH_CHECK(keyMask.dim() == 2 && keyMask.size(0) == B && keyMask.size(1) == S,
              "attention: key mask must be [B, S] = [", B, ", ", S, "], got ", keyMask.sizes());
  return keyMask.ne(0).to(torch::kCPU).to(torch::kUInt8).contiguous();
}

struct AttentionFn : public torch::autograd::Function<AttentionFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& q0, const Tensor& k0, const Tensor& v0, double scale,
                        int64_t past, int64_t window, const c10::optional<Tensor>& keyMask, double softcap) {
    // detached: the products below run on worker threads, where autograd would otherwise record them
    auto q = q0.detach().contiguous(), k = k0.detach().contiguous(), v = v0.detach().contiguous();
    int64_t B = q.size(0), G = q.size(1), T = q.size(2), R = q.size(3), D = q.size(4), S = k.size(2);
    auto km = keyMaskBytes(keyMask.has_value() ? *keyMask : Tensor(), B, S);
    AttnGeom a{B, G, T, R, D, S, past, window, static_cast<float>(scale), static_cast<float>(softcap),
               km.defined() ? km.data_ptr<uint8_t>() : nullptr};
    auto out = torch::empty({B, T, G * R * D}, q.options());
    auto lse = torch::empty({B, G, T * R}, q.options().dtype(torch::kFloat32));
    int64_t tb = blockSteps(a);
    forEachHead(B, G, [&](int64_t b, int64_t g) {
      auto Q = q.select(0, b).select(0, g).view({T * R, D});
      auto K = k.select(0, b).select(0, g), V = v.select(0, b).select(0, g);
      auto O = out.select(0, b).narrow(1, g * R * D, R * D);  // [T, R*D]
      float* L = lse.select(0, b).select(0, g).data_ptr<float>();
      std::vector<float> buf(S + VL);  // whole 16-lane chunks
      for (int64_t t0 = 0; t0 < T; t0 += tb) {
        int64_t t1 = std::min(T, t0 + tb), rows = (t1 - t0) * R, jlo, n;
        blockKeys(a, t0, t1, jlo, n);
        auto Qb = Q.narrow(0, t0 * R, rows);
        auto Kb = K.narrow(0, jlo, n);
        auto Sc = mmAcc(Qb, Kb.t());
        auto P = softcap > 0 ? torch::empty_like(Sc) : Sc;  // softmax in place unless backward needs raw scores
        softmaxDispatch(Sc, P, L + t0 * R, a, b, t0, rows, jlo, n, buf.data());
        O.narrow(0, t0, t1 - t0).copy_(mmAcc(P, V.narrow(0, jlo, n)).view({t1 - t0, R * D}));
      }
    });
    ctx->save_for_backward({q, k, v, lse, km});
    ctx->saved_data["ints"] = std::vector<int64_t>{past, window};
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["softcap"] = softcap;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    auto q = sv[0].detach(), k = sv[1].detach(), v = sv[2].detach(), lse = sv[3], km = sv[4];
    auto ints = ctx->saved_data["ints"].toIntVector();
    double scale = ctx->saved_data["scale"].toDouble(), softcap = ctx->saved_data["softcap"].toDouble();
    int64_t B = q.size(0), G = q.size(1), T = q.size(2), R = q.size(3), D = q.size(4), S = k.size(2);
    AttnGeom a{B, G, T, R, D, S, ints[0], ints[1], static_cast<float>(scale), static_cast<float>(softcap),
               km.defined() ? km.data_ptr<uint8_t>() : nullptr};
    auto dout = grads[0].detach().contiguous();
    auto dq = torch::empty_like(q);
    auto dk = torch::empty_like(k), dv = torch::empty_like(v);
    int64_t tb = blockSteps(a);
    bool bf = q.scalar_type() == torch::kBFloat16;
    forEachHead(B, G, [&](int64_t b, int64_t g) {
      auto Q = q.select(0, b).select(0, g).view({T * R, D});
      auto K = k.select(0, b).select(0, g), V = v.select(0, b).select(0, g);
      auto dO = dout.select(0, b).narrow(1, g * R * D, R * D);
      std::vector<float> pbuf(S + VL), cbuf(S + VL);
      auto dQ = dq.select(0, b).select(0, g).view({T * R, D});
      const float* L = lse.select(0, b).select(0, g).data_ptr<float>();
      auto dKg = dk.select(0, b).select(0, g), dVg = dv.select(0, b).select(0, g);
      bool single = tb >= T;  // one block: dK and dV straight from one product each
      Tensor dKacc, dVacc;
      if (!single) {
        dKacc = torch::zeros({S, D}, q.options().dtype(torch::kFloat32));
        dVacc = torch::zeros({S, D}, q.options().dtype(torch::kFloat32));
      }
      for (int64_t t0 = 0; t0 < T; t0 += tb) {
        int64_t t1 = std::min(T, t0 + tb), rows = (t1 - t0) * R, jlo, n;
        blockKeys(a, t0, t1, jlo, n);
        auto Qb = Q.narrow(0, t0 * R, rows);
        auto Kb = K.narrow(0, jlo, n), Vb = V.narrow(0, jlo, n);
        auto dOb = dO.narrow(0, t0, t1 - t0).contiguous().view({rows, D});
        auto Sc = mmAcc(Qb, Kb.t());
        auto P = softcap > 0 ? torch::empty_like(Sc) : Sc;
        auto dP = mmAcc(dOb, Vb.t());
        if (bf)
          softmaxBwdRows_bf16(static_cast<const bf16_t*>(Sc.data_ptr()), static_cast<bf16_t*>(P.data_ptr()),
                              static_cast<bf16_t*>(dP.data_ptr()), L + t0 * R, a, b, t0, rows, jlo, n, pbuf.data(),
                              cbuf.data());
        else
          softmaxBwdRows_f32(Sc.data_ptr<float>(), P.data_ptr<float>(), dP.data_ptr<float>(), L + t0 * R, a, b, t0,
                             rows, jlo, n, pbuf.data(), cbuf.data());
        dQ.narrow(0, t0 * R, rows).copy_(mmAcc(dP, Kb));
        if (single) {
          if (jlo > 0 || n < S) {  // keys before a window see no query
            dKg.zero_();
            dVg.zero_();
          }
          dVg.narrow(0, jlo, n).copy_(mmAcc(P.t(), dOb));
          dKg.narrow(0, jlo, n).copy_(mmAcc(dP.t(), Qb));
        } else {
          dVacc.narrow(0, jlo, n).add_(mmF32(P.t(), dOb));
          dKacc.narrow(0, jlo, n).add_(mmF32(dP.t(), Qb));
        }
      }
      if (!single) {
        dKg.copy_(dKacc);
        dVg.copy_(dVacc);
      }
    });
    return {dq, dk, dv, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

/** The same attention as eager ops with an additive finfo.min mask (what transformers' eager path computes). */
Tensor attentionComposite(const Tensor& q, const Tensor& k, const Tensor& v, double scale, int64_t past,
                          int64_t window, const Tensor& keyMask, double softcap) {
  int64_t B = q.size(0), G = q.size(1), T = q.size(2), R = q.size(3), D = q.size(4), S = k.size(2);
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(q.device());
  auto qpos = torch::arange(past, past + T, opts).unsqueeze(1);
  auto kpos = torch::arange(0, S, opts).unsqueeze(0);
  auto allowed = kpos.le(qpos);
  if (window > 0) allowed = allowed.logical_and(kpos.gt(qpos - window));
  auto allowed4 = allowed.view({1, 1, T, S});
  if (keyMask.defined()) {
    TORCH_CHECK(keyMask.dim() == 2 && keyMask.size(0) == B && keyMask.size(1) == S,
                "attention: key mask must be [B, S] = [", B, ", ", S, "], got ", keyMask.sizes());
    allowed4 = allowed4.logical_and(keyMask.to(q.device()).ne(0).view({B, 1, 1, S}));
  }
  double minv = q.scalar_type() == torch::kBFloat16   ? -3.3895313892515355e38
                : q.scalar_type() == torch::kFloat16  ? -65504.0
                : q.scalar_type() == torch::kFloat64 ? -1.7976931348623157e308
                                                      : -3.4028234663852886e38;
  auto mask = torch::zeros(allowed4.sizes(), q.options()).masked_fill(allowed4.logical_not(), minv);
  // [B, G, R, T, D] query heads; k and v shared by the R heads of a group
  auto qh = q.permute({0, 1, 3, 2, 4}).reshape({B, G * R, T, D});
  auto kh = k.unsqueeze(2).expand({B, G, R, S, D}).reshape({B, G * R, S, D});
  auto vh = v.unsqueeze(2).expand({B, G, R, S, D}).reshape({B, G * R, S, D});
  Tensor ctxh;
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1)
  if (softcap <= 0) {
    ctxh = at::scaled_dot_product_attention(qh, kh, vh, mask, 0.0, false, scale);
  } else
#endif
  {
    auto s = gv::matmul(qh, kh.transpose(-1, -2)) * scale;
    if (softcap > 0) s = (s / softcap).tanh() * softcap;
    ctxh = gv::matmul((s + mask).softmax(-1, torch::kFloat32).to(q.scalar_type()), vh);
  }
  return ctxh.transpose(1, 2).reshape({B, T, G * R * D});
}

// ================================================================= GoodVibe's cluster-shared rows
struct ClusterRowFn : public torch::autograd::Function<ClusterRowFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& y, const Tensor& x, const Tensor& U, const Tensor& rows,
                        const Tensor& clusters) {
    auto Uc = U.to(x.scalar_type());
    auto perRow = gv::linear(x, Uc, c10::nullopt).index_select(-1, clusters);  // [..., S]
    y.index_add_(-1, rows, perRow);
    ctx->mark_dirty({y});
    ctx->save_for_backward({x, U, rows, clusters});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    auto x = sv[0], U = sv[1], rows = sv[2], clusters = sv[3];
    auto gy = grads[0];
    int64_t C = U.size(0), in = U.size(1);
    // dy at the selected rows, summed per cluster: [N, C] in float32
    auto g = gy.index_select(-1, rows).reshape({-1, rows.size(0)}).to(torch::kFloat32);
    auto gc = torch::zeros({g.size(0), C}, g.options()).index_add_(1, clusters, g);
    Tensor gx, gU;
    if (ctx->needs_input_grad(1)) gx = gv::mm(gc.to(x.scalar_type()), U.to(x.scalar_type())).view(x.sizes());
    if (ctx->needs_input_grad(2)) gU = torch::mm(gc.t(), x.reshape({-1, in}).to(torch::kFloat32));
    return {gy, gx, gU, Tensor(), Tensor()};
  }
};

// ================================================================= one product's output split by columns
struct SplitColumnsFn : public torch::autograd::Function<SplitColumnsFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& y, std::vector<int64_t> sizes) {
    ctx->saved_data["sizes"] = sizes;
    ctx->saved_data["shape"] = y.sizes().vec();
    // unsafe_split: blocks that share y's memory without being views for autograd, so an adapter may update one
    // in place (GoodVibe's row update) as it would the output of its own product
    return at::unsafe_split_with_sizes(y, sizes, -1);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sizes = ctx->saved_data["sizes"].toIntVector();
    auto shape = ctx->saved_data["shape"].toIntVector();
    return {joinColumns(grads, sizes, shape), Tensor()};
  }

  /** The blocks' gradients side by side: the buffer they already are blocks of (no copy), else their cat. */
  static Tensor joinColumns(const variable_list& gs, const std::vector<int64_t>& sizes,
                            const std::vector<int64_t>& shape) {
    const Tensor* any = nullptr;
    for (auto& g : gs)
      if (g.defined()) any = &g;
    if (!any) return Tensor();
    std::vector<int64_t> strides(shape.size(), 1);
    for (int64_t k = static_cast<int64_t>(shape.size()) - 2; k >= 0; --k) strides[k] = strides[k + 1] * shape[k + 1];
    bool adjacent = true;
    int64_t col = 0;
    for (size_t i = 0; i < gs.size() && adjacent; ++i) {
      auto& g = gs[i];
      auto want = shape;
      want.back() = sizes[i];
      adjacent = g.defined() && g.sizes().vec() == want && g.strides().vec() == strides &&
                 g.storage().is_alias_of(gs[0].storage()) && g.scalar_type() == gs[0].scalar_type() &&
                 g.storage_offset() == gs[0].storage_offset() + col;
      col += sizes[i];
    }
    if (adjacent) return gs[0].as_strided(shape, strides, gs[0].storage_offset());
    std::vector<Tensor> parts;
    for (size_t i = 0; i < gs.size(); ++i) {
      if (gs[i].defined()) {
        parts.push_back(gs[i]);
      } else {
        auto want = shape;
        want.back() = sizes[i];
        parts.push_back(torch::zeros(want, any->options()));
      }
    }
    return torch::cat(parts, -1);
  }
};

}  // namespace

// ================================================================= entry points
void setKernelMode(const std::string& mode) {
  if (mode != "native" && mode != "composite")
    throw std::invalid_argument("kernel mode must be 'native' or 'composite', got '" + mode + "'");
  g_composite.store(mode == "composite");
}
std::string kernelMode() { return g_composite.load() ? "composite" : "native"; }
bool compositeKernels() { return g_composite.load(std::memory_order_relaxed); }

Tensor rmsNorm(const Tensor& x, const Tensor& w, double eps, bool onePlus) {
  TORCH_CHECK(x.dim() >= 1 && w.dim() == 1 && w.size(0) == x.size(-1), "rmsNorm: weight [", x.size(-1),
              "] for input ", x.sizes(), ", got ", w.sizes());
  if (!nativeCpu({&x, &w})) return rmsComposite(x, w, eps, onePlus);
  return RmsNormFn::apply(x, w, eps, onePlus);
}

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t groups) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: x must be [B, T, H, D] with D even, got ", x.sizes());
  TORCH_CHECK(groups >= 1 && x.size(2) % groups == 0, "rope: ", x.size(2), " heads do not split into ", groups,
              " groups");
  if (!nativeCpu({&x, &cos, &sin})) return ropeComposite(x, cos, sin, groups);
  return RopeFn::apply(x, cos, sin, groups);
}

Tensor gatedAct(const Tensor& g, const Tensor& u, const std::string& act) {
  bool gelu = isGelu(act);
  TORCH_CHECK(g.sizes() == u.sizes(), "gatedAct: gate ", g.sizes(), " and up ", u.sizes(), " differ");
  if (!nativeCpu({&g, &u})) return (gelu ? torch::gelu(g, "tanh") : torch::silu(g)) * u;
  return GatedFn::apply(g, u, gelu);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, int64_t past, int64_t window,
                 const Tensor& keyMask, double softcap) {
  TORCH_CHECK(q.dim() == 5, "attention: q must be [B, G, T, R, D], got ", q.sizes());
  int64_t B = q.size(0), G = q.size(1), T = q.size(2), D = q.size(4);
  TORCH_CHECK(k.dim() == 4 && k.size(0) == B && k.size(1) == G && k.size(3) == D && v.sizes() == k.sizes(),
              "attention: k and v must be [B, G, S, D] = [", B, ", ", G, ", S, ", D, "], got ", k.sizes(), " and ",
              v.sizes());
  TORCH_CHECK(past >= 0 && k.size(2) == past + T, "attention: ", k.size(2), " keys for ", past, " past + ", T,
              " new positions");
  if (!nativeCpu({&q, &k, &v})) return attentionComposite(q, k, v, scale, past, window, keyMask, softcap);
  c10::optional<Tensor> km;
  if (keyMask.defined()) km = keyMask;
  return AttentionFn::apply(q, k, v, scale, past, window, km, softcap);
}

Tensor clusterRowUpdate(const Tensor& y, const Tensor& x, const Tensor& U, const Tensor& rows,
                        const Tensor& clusters) {
  TORCH_CHECK(U.dim() == 2 && U.size(1) == x.size(-1), "clusterRowUpdate: U must be [C, ", x.size(-1), "], got ",
              U.sizes());
  TORCH_CHECK(rows.dim() == 1 && clusters.dim() == 1 && rows.size(0) == clusters.size(0),
              "clusterRowUpdate: one cluster per row");
  return ClusterRowFn::apply(y, x, U, rows, clusters);
}

std::vector<Tensor> splitColumns(const Tensor& y, const std::vector<int64_t>& sizes) {
  int64_t total = 0;
  for (auto n : sizes) {
    TORCH_CHECK(n > 0, "splitColumns: sizes must be positive, got ", c10::IntArrayRef(sizes));
    total += n;
  }
  TORCH_CHECK(y.dim() >= 1 && y.size(-1) == total, "splitColumns: sizes ", c10::IntArrayRef(sizes), " add up to ",
              total, ", the last dimension of ", y.sizes());
  return SplitColumnsFn::apply(y, sizes);
}

}  // namespace gv
