// bf16 products accumulated in float32 where libtorch's own do not.
//
// libtorch 1.13 sends a bf16 mm/addmm/matmul/linear/bmm to oneDNN only on CPUs with avx512bw/vl/dq; elsewhere (AVX2
// CPUs: AMD before Zen 4, Intel before Sapphire Rapids) to its fallback gemm, which accumulates in bf16 (a [64, 4864]
// x [4864, 256] product off by 14% relative) at ~4 GFLOP/s against ~135 for float32 OpenBLAS on one core (BENCHMARKS
// "bf16 products on AVX2 CPUs"). Where a probe finds that, every CPU bf16 product is computed here as a float32
// product of the bf16 values, rounded once: what oneDNN and GPUs compute, at float32 BLAS speed. libtorch 2.x
// accumulates in float32 there but may still be many times slower than float32 BLAS (BENCHMARKS "libtorch 2.x on AVX2
// CPUs"): where the probe passes, a timed pair of products decides (decideBf16Products).
#include "f32_products.h"

#include <ATen/ExpandUtils.h>

#include "simd.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <tuple>

namespace gv {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<int> g_mode{-1};  // -1 auto, 0 off, 1 on

bool probe() {
  // [16, 513] x [513, 16] (above libtorch 1.13's 16^3 small-product threshold: the path real products take): each row
  // is 1 then 512 x 2^-9, against ones. In float32 every partial sum is a multiple of 2^-9 below 2 (11 bits: exact),
  // so the product is exactly 2, representable in bf16. In bf16 (8 significant bits) 1 + 2^-9 rounds back to 1, and
  // summed in any order the small terms cannot reach 1 exactly before meeting the 1 (0.5 + 2^-9 ties back to 0.5): a
  // bf16 accumulator never gives 2.
  torch::NoGradGuard ng;
  auto a = torch::full({16, 513}, 1.0 / 512, torch::TensorOptions().dtype(torch::kBFloat16));
  a.select(1, 0).fill_(1.0);
  auto b = torch::ones({513, 16}, torch::TensorOptions().dtype(torch::kBFloat16));
  auto y = at::mm(a, b);
  return y.to(torch::kFloat32).eq(2.0).all().item<bool>();
}

Tensor f32(const Tensor& t) { return t.to(torch::kFloat32); }

// The route's bf16 <-> float32 conversions, on the calling thread. ATen's copy_ runs one of these (a few hundred
// thousand elements) as an OpenMP parallel region between two OpenBLAS products, and on 2 threads that hand-over
// (OpenBLAS's workers waking, OpenMP's spinning) cost more than the copy: a gate/up forward of Qwen2.5-0.5B's shape,
// 256 rows, in blocks with a copy after each, ran at 135 GFLOP/s against 151 with the copy on one thread and 170 for
// one product (Zen 3, BENCHMARKS "The route's conversions on the calling thread"). The values are ATen's bit for bit
// (a bf16 value widened exactly; float32 rounded to nearest even) but for a NaN's bits: 0x7fc0, as c10::BFloat16 and
// the fused kernels (simd.h vst) write it, where ATen's AVX2 vector conversion writes 0xffff.
using simd::bf16_t;

GV_CLONES_YMM void widenRows(const bf16_t* src, int64_t srcStride, float* dst, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const bf16_t* s = src + r * srcStride;
    float* d = dst + r * cols;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) simd::vst(d + c, simd::vld(s + c));
    for (; c < cols; c++) {
      uint32_t u = uint32_t(s[c]) << 16;
      std::memcpy(d + c, &u, 4);
    }
  }
}

GV_CLONES_YMM void roundRows(const float* src, bf16_t* dst, int64_t dstStride, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const float* s = src + r * cols;
    bf16_t* d = dst + r * dstStride;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) simd::vst<bf16_t, false>(d + c, simd::vld(s + c));
    for (; c < cols; c++) d[c] = c10::BFloat16(s[c]).x;  // c10's rounding (the vector one matches it)
  }
}

// Whether t is a matrix whose rows are contiguous (any row stride): what the loops above read and write.
bool rowsContiguous(const Tensor& t) { return t.dim() == 2 && (t.size(1) <= 1 || t.stride(1) == 1); }

/** t (2-D, bf16 or float32) as float32 in `buf` when given (a contiguous float32 tensor of t's size), else fresh. */
Tensor widen(const Tensor& t, Tensor buf = Tensor()) {
  if (t.scalar_type() != torch::kBFloat16 || !rowsContiguous(t)) return f32(t);
  if (!buf.defined()) buf = torch::empty(t.sizes(), t.options().dtype(torch::kFloat32));
  widenRows(reinterpret_cast<const bf16_t*>(t.data_ptr<at::BFloat16>()), t.stride(0), buf.data_ptr<float>(),
            t.size(0), t.size(1));
  return buf;
}

/** src (contiguous float32, 2-D) rounded into dst (bf16, 2-D, rows contiguous) of its size; else copy_. */
void roundInto(const Tensor& dst, const Tensor& src) {
  if (dst.scalar_type() != torch::kBFloat16 || src.scalar_type() != torch::kFloat32 || !src.is_contiguous() ||
      !rowsContiguous(dst) || src.dim() != 2) {
    dst.copy_(src);
    return;
  }
  roundRows(src.data_ptr<float>(), reinterpret_cast<bf16_t*>(dst.data_ptr<at::BFloat16>()), dst.stride(0),
            src.size(0), src.size(1));
}

/** src (float32) as `dtype`: rounded on this thread where that is bf16 and src a contiguous matrix. */
Tensor narrowTo(const Tensor& src, c10::ScalarType dtype) {
  if (dtype != torch::kBFloat16 || src.scalar_type() != torch::kFloat32 || src.dim() != 2 || !src.is_contiguous())
    return src.to(dtype);
  auto out = torch::empty(src.sizes(), src.options().dtype(dtype));
  roundInto(out, src);
  return out;
}

// The non-input operands of a product (weights and biases that need no gradient): passed beside the inputs, as
// frozen_linear.cc does, since a view made without grad mode (a LinearGroup's rows) trips libtorch 1.13's view checks
// when it is a Function input.
struct Side {
  Tensor w;
  c10::optional<Tensor> b;
  Tensor wf;  // W's float32 copy when the caller holds one (frozen_linear.cc), else undefined: W upcast per call
  /** What the products read: the held copy, else W (upcast a block at a time by linearValues / dxValues). */
  const Tensor& values() const { return wf.defined() ? wf : w; }
};

// A large weight is upcast a block of rows at a time, each block multiplied while it is in cache: one float32 copy
// of a whole weight (lm_head's 151936 x 896: 544 MB, freshly mapped pages each call) cost more than its product with
// a few rows (BENCHMARKS "bf16 products on AVX2 CPUs").
constexpr int64_t kBlockElems = int64_t(1) << 20;  // 4 MiB of float32 per block
int64_t blockRows(const Tensor& w) { return std::max<int64_t>(64, kBlockElems / std::max<int64_t>(1, w.size(1))); }

// x·Wᵀ + b in float32 from the bf16 values, rounded once; a fresh tensor, not a view (a view made inside a Function may
// not be updated in place later: GoodVibe's row update is). w may be W's float32 copy (Side::wf): f32() is then the
// identity and the blocks are the same rows of the same values, so the result is the per-call upcast's bit for bit.
Tensor linearValues(const Tensor& x, const Tensor& w, const c10::optional<Tensor>& b) {
  auto xf = widen(x.reshape({-1, x.size(-1)}));
  int64_t out = w.size(0), step = blockRows(w);
  auto shape = x.sizes().vec();
  shape.back() = out;
  if (out <= step) {
    auto wf = widen(w);
    auto y2 = b ? at::addmm(f32(*b), xf, wf.t()) : at::mm(xf, wf.t());
    return at::_unsafe_view(narrowTo(y2, x.scalar_type()), shape);
  }
  auto y = torch::empty({xf.size(0), out}, x.options());
  // one buffer for every block of W upcast (a held float32 copy is read in place)
  Tensor wbuf = w.scalar_type() == torch::kBFloat16
                    ? torch::empty({step, w.size(1)}, w.options().dtype(torch::kFloat32))
                    : Tensor();
  for (int64_t r0 = 0; r0 < out; r0 += step) {
    int64_t n = std::min(step, out - r0);
    auto wf = widen(w.narrow(0, r0, n), wbuf.defined() ? wbuf.narrow(0, 0, n) : Tensor());
    roundInto(y.narrow(1, r0, n), b ? at::addmm(f32(b->narrow(0, r0, n)), xf, wf.t()) : at::mm(xf, wf.t()));
  }
  return at::_unsafe_view(y, shape);
}

/**
 * dY·W in float32 (g2 [N, out], bf16 or float32), W upcast a block of rows at a time. dY is upcast block by block
 * too, the columns each block of W meets: lm_head's dY is [N, 151936], whose whole float32 copy (2x its bf16 bytes,
 * fresh pages every call) cost more than its product (BENCHMARKS "lm_head's gradient upcast a block at a time"). The
 * same values reach the same products (a block of columns read in place or copied out packs alike): the same bits.
 */
Tensor dxValues(const Tensor& g2, const Tensor& w) {
  int64_t out = w.size(0), step = blockRows(w);
  if (out <= step) return at::mm(widen(g2), widen(w));
  auto gx = torch::zeros({g2.size(0), w.size(1)}, g2.options().dtype(torch::kFloat32));
  auto f = g2.options().dtype(torch::kFloat32);
  Tensor gbuf = g2.scalar_type() == torch::kBFloat16 ? torch::empty({g2.size(0), step}, f) : Tensor();
  Tensor wbuf = w.scalar_type() == torch::kBFloat16 ? torch::empty({step, w.size(1)}, f) : Tensor();
  for (int64_t r0 = 0; r0 < out; r0 += step) {
    int64_t n = std::min(step, out - r0);
    // a block of dY's columns upcast into a contiguous buffer of n columns (the same values the product packs)
    auto gcols = g2.narrow(1, r0, n);
    auto gb = gbuf.defined() ? widen(gcols, gbuf.view(-1).narrow(0, 0, g2.size(0) * n).view({g2.size(0), n}))
                             : f32(gcols);
    gx.addmm_(gb, widen(w.narrow(0, r0, n), wbuf.defined() ? wbuf.narrow(0, 0, n) : Tensor()));
  }
  return gx;
}

// The timed pair (where the probe passes): a linear's forward x·Wᵀ and its dX = dY·W at [64, 1024] x [1024, 256], 34
// MFLOP each (large enough that float32 BLAS is not all call overhead, which would favour libtorch's own), libtorch's
// own bf16 product against the float32 route (linearValues / dxValues: upcast, float32 product, round once). Values
// from sin(i), not the random generator, whose stream a run's results depend on. The best of kTimedReps after a
// warm-up (the first call pays allocation, thread start, oneDNN's kernel generation); libtorch's own stop early once
// clearly slow (libtorch 2.6 on an AVX2 CPU: ~34 ms a pair against ~1.6 ms, BENCHMARKS "libtorch 2.x on
// AVX2 CPUs"), so the whole costs ~75 ms there and a few ms where libtorch's own are fast.
constexpr int kTimedReps = 3;
std::pair<double, double> timeProducts() {
  torch::NoGradGuard ng;
  auto vals = [](int64_t r, int64_t c, double phase) {
    return torch::arange(r * c, torch::TensorOptions().dtype(torch::kFloat32)).add(phase).sin().reshape({r, c}).to(
        torch::kBFloat16);
  };
  auto x = vals(64, 1024, 0.0), w = vals(256, 1024, 0.5), g = vals(64, 256, 1.0);
  auto own = [&] {
    at::mm(x, w.t());
    at::mm(g, w);
  };
  auto routed = [&] {  // the route's own functions, as F32LinearFn's forward and backward call them
    linearValues(x, w, c10::nullopt);
    dxValues(g, w).to(torch::kBFloat16);
  };
  auto secs = [](const std::function<void()>& f) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  own();
  routed();
  double bestOwn = INFINITY, bestRouted = INFINITY;
  for (int i = 0; i < kTimedReps; i++) {  // alternated, so a burst of load elsewhere hits both
    bestRouted = std::min(bestRouted, secs(routed));
    if (i > 0 && bestOwn > 4 * kSlowRatio * bestRouted) continue;  // decided: more repetitions of a slow product change nothing
    bestOwn = std::min(bestOwn, secs(own));
  }
  return {bestOwn, bestRouted};
}

Bf16Decision measureDecision() {
  Bf16Decision d;
  d.accurate = probe();
  if (d.accurate) std::tie(d.ownSeconds, d.f32Seconds) = timeProducts();
  d.nativeBf16 = cpuHasNativeBf16();
  d.reason = decideBf16Products(d.accurate, d.ownSeconds, d.f32Seconds, d.nativeBf16);
  d.route = d.reason != "fine";
  return d;
}

struct F32LinearFn : public torch::autograd::Function<F32LinearFn> {
  // wIn / bIn: W and b when they require a gradient (else placeholders); s: W and b themselves
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& wIn, const Tensor& bIn, const Side& s) {
    // the bf16 tensors, for the backward to upcast: a float32 copy made here would double the graph's memory (a held
    // one, s.wf, is saved instead of W: it is in memory anyway)
    bool wGrad = wIn.requires_grad();
    ctx->save_for_backward({wGrad ? x : Tensor(), x.requires_grad() && wGrad ? wIn : Tensor()});
    if (x.requires_grad() && !wGrad) ctx->saved_data["w"] = s.values();
    ctx->saved_data["xshape"] = x.sizes().vec();
    return linearValues(x, s.values(), s.b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    auto xshape = ctx->saved_data["xshape"].toIntVector();
    Tensor x = sv[0], w = sv[1];
    if (!w.defined() && ctx->saved_data.count("w")) w = ctx->saved_data["w"].toTensor();
    auto g = grads[0];
    Tensor gx, gw, gb;
    if (!g.defined()) return {gx, gw, gb, Tensor()};
    auto g2 = g.reshape({-1, g.size(-1)});
    // in dY's dtype (x's): W may be its float32 copy; dY is upcast whole only where dW or db needs it
    if (ctx->needs_input_grad(0)) gx = narrowTo(dxValues(g2, w), g.scalar_type()).view(xshape);
    Tensor gf = ctx->needs_input_grad(1) || ctx->needs_input_grad(2) ? f32(g2) : Tensor();
    if (ctx->needs_input_grad(1)) gw = at::mm(gf.t(), f32(x.reshape({-1, x.size(-1)}))).to(x.scalar_type());
    if (ctx->needs_input_grad(2)) gb = gf.sum(0).to(g.scalar_type());
    return {gx, gw, gb, Tensor()};
  }
};

struct F32MatmulFn : public torch::autograd::Function<F32MatmulFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b) {
    ctx->save_for_backward({b.requires_grad() ? a : Tensor(), a.requires_grad() ? b : Tensor()});
    ctx->saved_data["ashape"] = a.sizes().vec();
    ctx->saved_data["bshape"] = b.sizes().vec();
    return at::matmul(f32(a), f32(b)).to(a.scalar_type());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    auto ashape = ctx->saved_data["ashape"].toIntVector(), bshape = ctx->saved_data["bshape"].toIntVector();
    auto g = grads[0];
    Tensor ga, gb;
    if (!g.defined()) return {ga, gb};
    auto gf = f32(g);
    // broadcast batch dimensions are summed back to each operand's shape
    if (ctx->needs_input_grad(0))
      ga = at::sum_to(at::matmul(gf, f32(sv[1]).transpose(-1, -2)), ashape).to(g.scalar_type());
    if (ctx->needs_input_grad(1))
      gb = at::sum_to(at::matmul(f32(sv[0]).transpose(-1, -2), gf), bshape).to(g.scalar_type());
    return {ga, gb};
  }
};

}  // namespace

bool cpuHasNativeBf16() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("flags", 0) == 0) {
      line += ' ';
      return line.find(" avx512_bf16 ") != std::string::npos || line.find(" amx_bf16 ") != std::string::npos;
    }
  return false;
}

std::string decideBf16Products(bool accurate, double ownSeconds, double f32Seconds, bool nativeBf16) {
  if (!accurate) return "inaccurate";
  // bf16 dot-product instructions (AVX512_BF16, AMX-BF16): oneDNN computes libtorch's own with them, 0.3-0.5x the
  // float32 route's time on a Zen 5 core, so they stay without asking the clock. The timing alone flipped there when
  // another process took the core for a moment (test/cli/concurrent-run in CI, 2026-12-01): the same command then
  // made another model, its products rerouted. The timed rule is for CPUs without them (2.x on AVX2: 28-75x).
  if (nativeBf16) return "fine";
  // a comparison with NaN (not timed) is false: libtorch's own stay
  return ownSeconds > kSlowRatio * f32Seconds ? "slow" : "fine";
}

const Bf16Decision& bf16ProductsDecision() {
  // once per process (thread-safe); the first CPU bf16 product asks, normally a q_proj outside any parallel region
  // (inside one, both sides of the timed pair run on one thread: still a like-for-like comparison)
  static const Bf16Decision d = measureDecision();
  return d;
}

bool libtorchBf16AccumulatesF32() { return bf16ProductsDecision().accurate; }

void setF32Products(const std::string& mode) {
  if (mode != "auto" && mode != "on" && mode != "off")
    throw std::invalid_argument("f32Products must be 'auto', 'on' or 'off', got '" + mode + "'");
  g_mode.store(mode == "auto" ? -1 : mode == "on" ? 1 : 0);
}

std::string f32ProductsMode() {
  int m = g_mode.load();
  return m < 0 ? "auto" : m ? "on" : "off";
}

bool f32Products() {
  int m = g_mode.load();
  return m < 0 ? bf16ProductsDecision().route : m == 1;
}

bool routeF32(const Tensor& a, const Tensor& b) {
  return a.scalar_type() == torch::kBFloat16 && b.scalar_type() == torch::kBFloat16 && a.is_cpu() && b.is_cpu() &&
         f32Products();
}

Tensor linear(const Tensor& x, const Tensor& w, const c10::optional<Tensor>& b) { return linear(x, w, b, Tensor()); }

bool routedLinear(const Tensor& x, const Tensor& w, const c10::optional<Tensor>& b) {
  return routeF32(x, w) && w.dim() == 2 && x.dim() >= 1 && (!b || b->scalar_type() == torch::kBFloat16);
}

// F32LinearFn's dX with W frozen
Tensor routedDx(const Tensor& g2, const Tensor& w) { return narrowTo(dxValues(g2, w), g2.scalar_type()); }

Tensor linear(const Tensor& x, const Tensor& w, const c10::optional<Tensor>& b, const Tensor& wf) {
  if (!routedLinear(x, w, b)) return torch::linear(x, w, b);
  TORCH_CHECK(x.size(-1) == w.size(1), "linear: input ", x.sizes(), " against weight ", w.sizes());
  TORCH_CHECK(!b || (b->dim() == 1 && b->size(0) == w.size(0)), "linear: bias ", b->sizes(), " for weight ",
              w.sizes());
  TORCH_CHECK(!wf.defined() || (wf.scalar_type() == torch::kFloat32 && wf.sizes() == w.sizes() &&
                                wf.is_contiguous() && w.is_contiguous() && !w.requires_grad()),
              "linear: a held float32 copy ", wf.sizes(), " for weight ", w.sizes(),
              " (a contiguous float32 copy of a contiguous frozen weight)");
  Side s{w, b, wf};
  bool grad = torch::GradMode::is_enabled();
  if (!grad || !(x.requires_grad() || w.requires_grad() || (b && b->requires_grad())))
    return linearValues(x, s.values(), b);
  // an input that needs no gradient is a zero-element placeholder (libtorch 1.13's apply refuses undefined tensors)
  auto none = [&] { return torch::empty({0}, x.options().requires_grad(false)); };
  Tensor wIn = w.requires_grad() ? w : none();
  Tensor bIn = b && b->requires_grad() ? *b : none();
  return F32LinearFn::apply(x, wIn, bIn, s);
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (!routeF32(a, b)) return torch::matmul(a, b);
  if (a.dim() < 2 || b.dim() < 2) return torch::matmul(f32(a), f32(b)).to(a.scalar_type());  // vectors: rare
  if (!torch::GradMode::is_enabled() || !(a.requires_grad() || b.requires_grad()))
    return at::matmul(f32(a), f32(b)).to(a.scalar_type());
  return F32MatmulFn::apply(a, b);
}

Tensor mm(const Tensor& a, const Tensor& b) {
  if (!routeF32(a, b)) return torch::mm(a, b);
  return torch::mm(f32(a), f32(b)).to(a.scalar_type());
}

}  // namespace gv
