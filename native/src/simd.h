// What the CPU kernels of fused.cc, grad_reduce.cc and train_ops.cc share: GCC's 16-lane vector types over bf16 /
// float32 (compiled once per instruction set with GV_CLONES and dispatched at run time), the always-inline marker,
// and one float32 exp (scalar and 16 lanes) without libm calls.
#pragma once

// The 16-lane vector helpers are always inlined, so the ABI note GCC gives for 64-byte vector arguments is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
// The kernels whose inner loops are mostly exp and bf16 stores, i.e. comparisons and selects (vexp's clamps and NaN
// tests, vst's NaN test): no avx512f clone, so AVX-512 CPUs run the avx2 one. In a zmm clone the 32-byte halves
// that vgt/vsel below work on go through the stack (two 32-byte stores read back as one 64-byte load, a store-
// forwarding stall each): on an AMD Zen 5 core the gated SiLU product took 2.4 ns per element that way against 0.87
// in the avx2 clone (BENCHMARKS "Issue 13 §1 on an AMD Zen 5"). The avx2 clone has no fused multiply-adds, so these
// kernels compute the same bits on AVX2 and AVX-512 CPUs.
#define GV_CLONES_YMM __attribute__((target_clones("avx2", "default")))
// A kernel's zmm version where it pays to spell one out (fused.cc: RMSNorm, the gated product, the attention's
// softmaxes; train_ops.cc: the loss's row kernels):
// compiled for AVX-512 with the comparisons and selects on whole 64-byte vectors (the W = true helpers below), one
// instruction each, and called where the CPU has AVX-512 (wideCpu() below); the same source cannot serve both,
// since whole-vector comparisons go scalar in the avx2 clone and halves go through memory in a zmm one.
#define GV_HAVE_WIDE 1
#define GV_WIDE __attribute__((target("avx512f")))
#else
#define GV_CLONES
#define GV_CLONES_YMM
#define GV_HAVE_WIDE 0
#define GV_WIDE
#endif
// No fused multiply-adds (GCC contracts a·b + c where the instruction set has them, i.e. in AVX-512 code, not in the
// avx2 and default clones): a kernel's zmm version then computes the bits its avx2 clone computes.
#define GV_NO_FMA __attribute__((optimize("fp-contract=off")))
#define GV_INLINE inline __attribute__((always_inline))

namespace gv::simd {
using bf16_t = uint16_t;  // a bf16 value's bits
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef uint32_t vu __attribute__((vector_size(64)));
typedef uint16_t vh __attribute__((vector_size(32)));
constexpr int64_t VL = 16;  // lanes per vector

GV_INLINE vf splat(float v) { return vf{} + v; }

/** Whether this CPU runs the GV_WIDE kernels (the first call decides). */
inline bool wideCpu() {
#if GV_HAVE_WIDE
  static const bool wide = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return wide;
#else
  return false;
#endif
}

// Comparisons and selects (?:) of 16 lanes, one 32-byte half at a time. GCC 12 turns a comparison or a select of
// 64-byte vectors into 16 scalar ones wherever the target has no 64-byte registers (the avx2 and default clones:
// silu, exp and every bf16 store ran scalar there, gatedAct at ~7 ns per element on an AVX2 CPU), while a 32-byte
// half is one instruction on AVX2 (vcmpps, vpcmpgtd, vblendvps). Arithmetic and bit operations on 64-byte vectors
// GCC splits by itself. Every vector comparison and select in the kernels goes through these.
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef uint32_t vu8 __attribute__((vector_size(32)));
template <typename H, typename V>
GV_INLINE void halves(V v, H& lo, H& hi) {
  static_assert(sizeof(V) == 2 * sizeof(H), "a 16-lane vector is two 8-lane halves");
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
}
template <typename V, typename H>
GV_INLINE V joined(H lo, H hi) {
  V v;
  std::memcpy(&v, &lo, sizeof lo);
  std::memcpy(reinterpret_cast<char*>(&v) + sizeof lo, &hi, sizeof hi);
  return v;
}
// a OP b lane by lane: -1 (all bits) where true, 0 where false, as the 64-byte comparison gives
// (W = true: the caller is AVX-512 code, GV_WIDE, where the 64-byte comparison is one instruction)
#define GV_CMP(NAME, V, H, OP)                        \
  template <bool W = false>                           \
  GV_INLINE vi NAME(V a, V b) {                       \
    if constexpr (W) {                                \
      return (vi)(a OP b);                            \
    } else {                                          \
      H a0, a1, b0, b1;                               \
      halves(a, a0, a1);                              \
      halves(b, b0, b1);                              \
      return joined<vi, vi8>(a0 OP b0, a1 OP b1);     \
    }                                                 \
  }
GV_CMP(vgt, vf, vf8, >)
GV_CMP(vlt, vf, vf8, <)
GV_CMP(veq, vf, vf8, ==)
GV_CMP(vne, vf, vf8, !=)
GV_CMP(vgtu, vu, vu8, >)  // unsigned
GV_CMP(vlti, vi, vi8, <)
GV_CMP(vnei, vi, vi8, !=)
#undef GV_CMP
// m ? a : b lane by lane (m from the comparisons above)
template <typename V, typename H, bool W = false>
GV_INLINE V vselect(vi m, V a, V b) {
  if constexpr (W) {
    return m ? a : b;
  } else {
    vi8 m0, m1;
    H a0, a1, b0, b1;
    halves(m, m0, m1);
    halves(a, a0, a1);
    halves(b, b0, b1);
    return joined<V, H>(m0 ? a0 : b0, m1 ? a1 : b1);
  }
}
template <bool W = false>
GV_INLINE vf vsel(vi m, vf a, vf b) { return vselect<vf, vf8, W>(m, a, b); }
template <bool W = false>
GV_INLINE vu vsel(vi m, vu a, vu b) { return vselect<vu, vu8, W>(m, a, b); }

// e^x in float32 without libm calls, so loops over it vectorise: Cephes' expf (x = n·ln2 + r, |r| <= ln2/2, a
// degree-6 polynomial for e^r, 2^n built in the exponent bits; ~1 ulp). expCore takes x already in [-87.3, 88.3]
// (where 2^n is a normal float); floor() is a truncating conversion and a correction, because without SSE4.1
// floorf is a libm call that keeps a loop scalar (t lies in [-126, 128] there, where the conversion is exact).
// e^(x − n·ln2) for an integer-valued n: ln2 split in two for an exact reduction, then Cephes' polynomial; on one
// float or on 16 lanes (V{} + c is c in every lane).
template <typename V>
GV_INLINE V expReduced(V x, V n) {
  V r = x - n * 0.693359375f + n * 2.12194440e-4f;
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

GV_INLINE float expCore(float x) {
  float t = x * 1.44269504088896341f + 0.5f;
  float n = static_cast<float>(static_cast<int32_t>(t));
  n = n > t ? n - 1.0f : n;
  float e = expReduced(x, n);
  uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return e * scale;
}

// e^x for any float32: clamped to [-87.3, 88.3] outside, NaN stays NaN.
GV_INLINE float fexp(float x) {
  float xc = x > 88.3f ? 88.3f : (x < -87.3f ? -87.3f : x);
  xc = xc == xc ? xc : 0.0f;  // NaN: any finite value (the result is replaced below)
  float e = expCore(xc);
  return x == x ? e : x;
}

// fexp on 16 lanes (the same reduction and polynomial; n by round-to-nearest instead of floor(t + 0.5), which differs only at
// exact ties, where either reduction is exact).
template <bool W = false>
GV_INLINE vf vexp(vf x) {
  vf xc = vsel<W>(vgt<W>(x, splat(88.3f)), splat(88.3f), vsel<W>(vlt<W>(x, splat(-87.3f)), splat(-87.3f), x));
  vf t = xc * 1.44269504088896341f;
  vf n = (t + 12582912.0f) - 12582912.0f;
  n = vsel<W>(veq<W>(n, n), n, splat(0.0f));
  vf e = expReduced(xc, n);
  vf scale = (vf)((__builtin_convertvector(n, vi) + 127) << 23);
  return vsel<W>(veq<W>(x, x), e * scale, x);
}

// 16 float32 values from float32 or bf16 storage, and back (bf16 rounded to nearest even, NaN -> 0x7fc0).
template <typename T>
GV_INLINE vf vld(const T* p);
template <>
GV_INLINE vf vld<float>(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <>
GV_INLINE vf vld<bf16_t>(const bf16_t* p) {
  vh h;
  std::memcpy(&h, p, sizeof h);
  return (vf)(__builtin_convertvector(h, vu) << 16);
}
template <typename T, bool W = false>
GV_INLINE void vst(T* p, vf v) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(p, &v, sizeof v);
  } else {  // bf16: round to nearest even, NaN -> 0x7fc0 (as f2bf)
    vu u = (vu)v;
    vu r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    vi nan = vgtu<W>(u & 0x7fffffffu, vu{} + 0x7f800000u);
    vu q = u - u + 0x7fc0u;
    vh h = __builtin_convertvector(vsel<W>(nan, q, r), vh);
    std::memcpy(p, &h, sizeof h);
  }
}
}  // namespace gv::simd
