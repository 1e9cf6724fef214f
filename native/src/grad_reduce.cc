// Identification's output-gradient reduction inside the backward (see grad_reduce.h).
//
// Bit-identity with the op sequence g.abs().float().sum(1).div(lengths) that it replaces: |g| is exact in bf16 and
// the bf16 -> float32 widening is exact, so every summand is the same float32 value, and the division is a true
// float32 division either way; what remains is the order of the additions. ATen's CPU sum of a contiguous float32
// [B, T, N] over T (SumKernel.cpp: cascade_sum -> vectorized_outer_sum, or scalar_outer_sum when N is below the
// vector width) takes the columns in blocks of four vectors (four columns when N < the width) and sums each column
// of a block in cascade order (multi_row_sum: four levels of partial sums over t); the columns left over go by
// row_sum (the rows as (T/4, 4): four cascaded partial sums, the rest, then the partials). The order of a column
// thus depends on T, on N and on ATen's vector width, never on the lane. The kernels below make the same additions
// in the same order (16 columns per vector of their own), with ATen's width found once by a probe against ATen's
// own sum (atenSumWidth); test/tensor/grad-reduce.test.ts checks them against the ATen ops bit for bit over lengths
// that cross every level and widths that leave every kind of leftover. N == 1, other dtypes and devices: the ATen
// ops themselves.
#include "grad_reduce.h"
#include "simd.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace gv {

using torch::Tensor;

namespace {

using namespace simd;
constexpr int NV = 4;       // vectors per column block (ATen's nrows)
constexpr int64_t BLOCK = VL * NV;
constexpr int LEVELS = 4;  // ATen's num_levels

// |x| as float32, 16 lanes, from the first m (1..16) elements at p (zeros after m)
template <typename T>
GV_INLINE vf absLoad(const T* p, int64_t m);
template <>
GV_INLINE vf absLoad<float>(const float* p, int64_t m) {
  vu u;
  if (m >= VL) {
    std::memcpy(&u, p, sizeof u);
  } else {
    float tmp[VL] = {};
    std::memcpy(tmp, p, m * sizeof(float));
    std::memcpy(&u, tmp, sizeof u);
  }
  return (vf)(u & 0x7fffffffu);
}
template <>
GV_INLINE vf absLoad<bf16_t>(const bf16_t* p, int64_t m) {
  vh h;
  if (m >= VL) {
    std::memcpy(&h, p, sizeof h);
  } else {
    bf16_t tmp[VL] = {};
    std::memcpy(tmp, p, m * sizeof(bf16_t));
    std::memcpy(&h, tmp, sizeof h);
  }
  return (vf)((__builtin_convertvector(h, vu) << 16) & 0x7fffffffu);
}

int64_t ceilLog2(int64_t x) {  // ATen's utils::CeilLog2
  if (x <= 2) return 1;
  return 64 - __builtin_clzll(static_cast<uint64_t>(x) - 1);
}

// Σ_{i<n} |g[i·rs, c]| for the m (<= 64) columns c of a block, in ATen's multi_row_sum order: four levels of
// partial sums, 2^p rows into level 0 (p = max(4, ceil(log2 n) / 4)), then each level into the next, moving up while
// the row count is a multiple of the next level's span; the rest into level 0; levels 1, 2, 3 into level 0 last.
template <typename T>
GV_INLINE void cascade(const T* g, int64_t rs, int64_t n, int64_t m, vf res[NV]) {
  const int64_t power = std::max<int64_t>(4, ceilLog2(n) / LEVELS);
  const int64_t step = int64_t(1) << power;
  const int64_t mask = step - 1;
  vf acc[LEVELS][NV];
  for (int l = 0; l < LEVELS; l++)
    for (int k = 0; k < NV; k++) acc[l][k] = vf{};
  const int nv = static_cast<int>(std::min<int64_t>(NV, (m + VL - 1) / VL));
  auto addRow = [&](int64_t i) {
    const T* row = g + i * rs;
    for (int k = 0; k < nv; k++) acc[0][k] += absLoad(row + k * VL, m - k * VL);
  };
  int64_t i = 0;
  while (i + step <= n) {
    for (int64_t s = 0; s < step; s++, i++) addRow(i);
    for (int l = 1; l < LEVELS; l++) {
      for (int k = 0; k < nv; k++) {
        acc[l][k] += acc[l - 1][k];
        acc[l - 1][k] = vf{};
      }
      if ((i & (mask << (l * power))) != 0) break;
    }
  }
  for (; i < n; i++) addRow(i);
  for (int l = 1; l < LEVELS; l++)
    for (int k = 0; k < nv; k++) acc[0][k] += acc[l][k];
  for (int k = 0; k < NV; k++) res[k] = acc[0][k];
}

// ATen's row_sum order (the columns left over after its blocks of four vectors or four scalars): the rows taken as
// (T / 4, 4), four partial sums over the first 4·(T / 4) rows each in cascade order, the last T % 4 rows into the
// first partial, then the partials 1, 2, 3 into it.
template <typename T>
GV_INLINE void rowSum(const T* g, int64_t rs, int64_t n, int64_t m, vf res[NV]) {
  vf p[4][NV];
  const int64_t q = n / 4;
  for (int k = 0; k < 4; k++) cascade(g + k * rs, 4 * rs, q, m, p[k]);
  const int nv = static_cast<int>(std::min<int64_t>(NV, (m + VL - 1) / VL));
  for (int64_t i = 4 * q; i < n; i++)
    for (int k = 0; k < nv; k++) p[0][k] += absLoad(g + i * rs + k * VL, m - k * VL);
  for (int j = 1; j < 4; j++)
    for (int k = 0; k < nv; k++) p[0][k] += p[j][k];
  for (int k = 0; k < NV; k++) res[k] = p[0][k];
}

GV_INLINE void storeBlock(const vf res[NV], int64_t m, float len, float* out, int64_t os) {
  for (int k = 0; k < NV && k * VL < m; k++) {
    float lanes[VL];
    std::memcpy(lanes, &res[k], sizeof lanes);
    const int64_t n = std::min<int64_t>(VL, m - k * VL);
    for (int64_t c = 0; c < n; c++) out[(k * VL + c) * os] = lanes[c] / len;
  }
}

// The kernel over tasks [i0, i1): a task is one sample's block of up to 64 columns, the columns [0, C) in cascade
// order, the columns [C, N) in row_sum order (C from atenCascadeColumns).
struct Geometry {
  int64_t sb, st;          // g's sample and row strides (columns adjacent)
  int64_t T, N, C;         // rows, columns, columns summed in cascade order
  const float* len;        // B lengths
  float* out;              // [B, N]
  int64_t ob, oj;          // out's strides
  int64_t blocksC, blocks; // blocks per sample: in [0, C), in all
};

#define GV_MEAN_ABS_KERNEL(E, NAME)                                                        \
  GV_CLONES void meanAbs_##NAME(const E* g, const Geometry& G, int64_t i0, int64_t i1) { \
    for (int64_t i = i0; i < i1; i++) {                                                   \
      const int64_t b = i / G.blocks, k = i % G.blocks;                                   \
      const bool casc = k < G.blocksC;                                                    \
      const int64_t j0 = casc ? k * BLOCK : G.C + (k - G.blocksC) * BLOCK;                \
      const int64_t m = std::min(BLOCK, (casc ? G.C : G.N) - j0);                         \
      vf res[NV];                                                                         \
      if (casc)                                                                           \
        cascade<E>(g + b * G.sb + j0, G.st, G.T, m, res);                                 \
      else                                                                                \
        rowSum<E>(g + b * G.sb + j0, G.st, G.T, m, res);                                  \
      storeBlock(res, m, G.len[b], G.out + b * G.ob + j0 * G.oj, G.oj);                   \
    }                                                                                     \
  }
GV_MEAN_ABS_KERNEL(float, f32)
GV_MEAN_ABS_KERNEL(bf16_t, bf16)
#undef GV_MEAN_ABS_KERNEL

/**
 * The columns ATen's float32 sum over the rows of a contiguous [T, N] (N > 1) adds in cascade order, the rest going
 * by row_sum: with vectors of `vs` floats, blocks of four vectors while they fit (N >= vs), else blocks of four
 * columns.
 */
int64_t atenCascadeColumns(int64_t N, int64_t vs) { return N >= vs ? N / (4 * vs) * (4 * vs) : N / 4 * 4; }

void runKernel(const Tensor& g, const Tensor& out, const Tensor& len, int64_t vs) {
  const int64_t B = g.size(0), T_ = g.size(1), N = g.size(2);
  Geometry G{};
  G.sb = g.stride(0);
  G.st = g.stride(1);
  G.T = T_;
  G.N = N;
  G.C = atenCascadeColumns(N, vs);
  G.len = len.data_ptr<float>();
  G.out = out.data_ptr<float>();
  G.ob = out.stride(0);
  G.oj = out.stride(1);
  G.blocksC = (G.C + BLOCK - 1) / BLOCK;
  G.blocks = G.blocksC + (N - G.C + BLOCK - 1) / BLOCK;
  // a grain of ~64 K elements of g per thread
  const int64_t grain = std::max<int64_t>(1, 65536 / (BLOCK * std::max<int64_t>(T_, 1)));
  const bool f32 = g.scalar_type() == torch::kFloat32;
  at::parallel_for(0, B * G.blocks, grain, [&](int64_t i0, int64_t i1) {
    if (f32)
      meanAbs_f32(g.data_ptr<float>(), G, i0, i1);
    else
      meanAbs_bf16(reinterpret_cast<const bf16_t*>(g.data_ptr<at::BFloat16>()), G, i0, i1);
  });
}

Tensor opSequence(const Tensor& g, const Tensor& lengths) {
  return g.contiguous().abs().to(torch::kFloat32).sum(1).div(lengths.reshape({-1, 1}));
}

/**
 * ATen's vector width for float32 sums, found once by comparing the kernel with ATen's own sum on probe gradients
 * whose last bits depend on the order of the additions (widths 6, 40, 70 and 120 over 260 rows: every level of the
 * cascade, blocks of four vectors, leftover vectors and scalars; each under ATen's serial grain, so one thread sums
 * them as it would at any thread count); 0 when no width reproduces it (another ATen: the ops themselves then).
 */
int64_t atenSumWidth() {
  static const int64_t width = [] {
    torch::NoGradGuard noGrad;
    std::vector<Tensor> probes;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int64_t N : {6, 40, 70, 120}) {
      auto t = torch::empty({1, 260, N}, torch::kFloat32);
      float* p = t.data_ptr<float>();
      for (int64_t i = 0; i < t.numel(); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64: no use of libtorch's generator
        const double u = static_cast<double>(x >> 11) / 9007199254740992.0;
        p[i] = static_cast<float>((u - 0.5) * std::exp(12.0 * (static_cast<double>((x >> 3) & 0xff) / 255.0 - 0.5)));
      }
      probes.push_back(t);
    }
    const auto len = torch::full({1, 1}, 251.0f, torch::kFloat32);
    for (int64_t vs : {8, 16, 4}) {
      bool same = true;
      for (const auto& t : probes) {
        auto ours = torch::empty({1, t.size(2)}, torch::kFloat32);
        runKernel(t, ours, len, vs);
        if (!torch::equal(ours, opSequence(t, len))) same = false;
      }
      if (same) return vs;
    }
    return int64_t(0);
  }();
  return width;
}

std::string shapeOf(const Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); d++) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

// the arguments' agreement, for a gradient or an output of shape [B, T, N]
void checkArgs(const char* who, const Tensor& g, const Tensor& out, const Tensor& lengths) {
  if (g.dim() != 3)
    throw std::invalid_argument(std::string(who) + ": expected a [batch, time, features] tensor, got " + shapeOf(g));
  if (!at::isFloatingType(g.scalar_type()))
    throw std::invalid_argument(std::string(who) + ": expected a floating-point tensor");
  const int64_t B = g.size(0), N = g.size(2);
  if (out.scalar_type() != torch::kFloat32 || out.dim() != 2 || out.size(0) != B || out.size(1) != N)
    throw std::invalid_argument(std::string(who) + ": out must be float32 [" + std::to_string(B) + ", " +
                                std::to_string(N) + "], got " + shapeOf(out));
  if (lengths.scalar_type() != torch::kFloat32 || lengths.numel() != B || (lengths.dim() == 2 && lengths.size(1) != 1) ||
      lengths.dim() > 2)
    throw std::invalid_argument(std::string(who) + ": lengths must be float32 [" + std::to_string(B) + "] or [" +
                                std::to_string(B) + ", 1], got " + shapeOf(lengths));
  if (out.device() != g.device() || lengths.device() != g.device())
    throw std::invalid_argument(std::string(who) + ": out and lengths must be on the tensor's device (" +
                                g.device().str() + ")");
}

}  // namespace

void meanAbsOverTimeInto(const Tensor& g0, const Tensor& out, const Tensor& lengths) {
  checkArgs("meanAbsOverTime", g0, out, lengths);
  torch::NoGradGuard noGrad;
  const auto dt = g0.scalar_type();
  const bool kernel = g0.device().is_cpu() && (dt == torch::kFloat32 || dt == torch::kBFloat16) && g0.size(2) > 1 &&
                      g0.numel() > 0 && atenSumWidth() > 0;
  if (!kernel) {
    // the op sequence itself (on a contiguous copy, as the retained gradient was)
    out.copy_(opSequence(g0, lengths));
    return;
  }
  // columns must be adjacent; rows and samples may be anywhere (a slice of a larger product)
  runKernel(g0.stride(2) == 1 ? g0 : g0.contiguous(), out, lengths.contiguous(), atenSumWidth());
}

/** Which order the CPU kernel reproduces: ATen's float32 vector width, 0 when it runs the ATen ops instead. */
int64_t meanAbsKernelWidth() { return atenSumWidth(); }

void registerMeanAbsGradHook(const Tensor& y, const Tensor& out, const Tensor& lengths) {
  checkArgs("meanAbsGradHook", y, out, lengths);
  if (!y.requires_grad()) throw std::invalid_argument("meanAbsGradHook: the tensor does not require grad");
  Tensor o = out, len = lengths;
  // void hook: the gradient passes on unchanged, and nothing here keeps it
  y.register_hook([o, len](const Tensor& g) { meanAbsOverTimeInto(g, o, len); });
}

}  // namespace gv
