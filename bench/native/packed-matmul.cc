// Go/no-go micro-benchmark (issue 13 §1): the identification pass's frozen products, libtorch as the addon calls
// it (at::linear for y = x·Wᵀ, at::mm for dX = dY·W: oneDNN's brgemm matmul on the plain weight, which copies W
// into its blocked layout on every call) against oneDNN matmul primitives made once per shape with the weight
// reordered ONCE into the layout oneDNN picks (format_tag::any; one packed copy for the forward, one for dX).
// Not part of the addon: it needs oneDNN's headers (Debian libdnnl-dev) and links the libdnnl.so.2 that
// libtorch 1.13 links. Build and run (1 thread, CPU 0 under the measurement lock):
//
//   g++ -O2 -std=c++17 bench/native/packed-matmul.cc -o /tmp/packed-matmul \
//       -I/usr/include/torch/csrc/api/include -ltorch -ltorch_cpu -lc10 -ldnnl
//   flock /work/wt/core0.lock taskset -c 0 /tmp/packed-matmul shapes [reps] [M...]   # per product
//   flock /work/wt/core0.lock taskset -c 0 /tmp/packed-matmul pass [reps] [M]        # the pass's sequence
//
// shapes: per product (Qwen2.5-0.5B: q/k/v [1152, 896], o [896, 896], gate/up [9728, 896], down [896, 4864]),
//   24 distinct weights each (as the 24 layers: cold caches), libtorch and packed alternated rep by rep, median
//   ms per product; maxdiff = largest |packed - libtorch| over one output (0: bit for bit).
// pass: every product of one pass in its order (24 layers forward, then dX in reverse), libtorch and packed
//   alternated pass by pass; median s and each pair's ratio.
#include <oneapi/dnnl/dnnl.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace dnnl;
using dt = memory::data_type;
using clk = std::chrono::steady_clock;

static engine eng(engine::kind::cpu, 0);
static stream strm(eng);

struct Packed {
  matmul prim;
  memory::desc src, dst;
  memory weights;
};

// trans: B = Wᵀ with W [N, K] row-major (forward, y = x·Wᵀ); else B = W (dX = dY·W)
static Packed pack(const at::Tensor& W, bool trans, int64_t M) {
  int64_t kin = trans ? W.size(1) : W.size(0), n = trans ? W.size(0) : W.size(1);
  Packed p;
  p.src = memory::desc({M, kin}, dt::bf16, memory::format_tag::ab);
  p.dst = memory::desc({M, n}, dt::bf16, memory::format_tag::ab);
  auto plain = memory::desc({kin, n}, dt::bf16, trans ? memory::format_tag::ba : memory::format_tag::ab);
  auto any = memory::desc({kin, n}, dt::bf16, memory::format_tag::any);
  auto pd = matmul::primitive_desc(matmul::desc(p.src, any, p.dst), eng);
  p.prim = matmul(pd);
  p.weights = memory(pd.weights_desc(), eng);
  memory from(plain, eng, W.data_ptr());
  reorder(from, p.weights).execute(strm, from, p.weights);
  strm.wait();
  return p;
}

static at::Tensor run(Packed& p, const at::Tensor& a) {
  auto out = at::empty({p.dst.dims()[0], p.dst.dims()[1]}, a.options());
  memory s(p.src, eng, a.data_ptr()), d(p.dst, eng, out.data_ptr());
  p.prim.execute(strm, {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, p.weights}, {DNNL_ARG_DST, d}});
  strm.wait();
  return out;
}

template <class F>
static double seconds(F f) {
  auto t0 = clk::now();
  f();
  return std::chrono::duration<double>(clk::now() - t0).count();
}
static double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
static at::Tensor bf16(std::vector<int64_t> shape, double scale) {
  return (torch::randn(shape) * scale).to(torch::kBFloat16);
}

struct Shape {
  const char* name;
  int64_t n, k;
};
static const std::vector<Shape> kShapes = {{"q/k/v", 1152, 896}, {"o", 896, 896}, {"gate/up", 9728, 896}, {"down", 896, 4864}};
static const int kLayers = 24;

static void shapes(int reps, const std::vector<int64_t>& ms) {
  for (auto& sh : kShapes) {
    std::vector<at::Tensor> W;
    for (int l = 0; l < kLayers; l++) W.push_back(bf16({sh.n, sh.k}, 0.02));
    for (int64_t M : ms) {
      auto x = bf16({M, sh.k}, 1), dy = bf16({M, sh.n}, 1);
      double flop = 2.0 * M * sh.n * sh.k;
      for (int dir = 0; dir < 2; dir++) {
        bool fwd = dir == 0;
        std::vector<Packed> P;
        for (auto& w : W) P.push_back(pack(w, fwd, M));
        const at::Tensor& a = fwd ? x : dy;
        auto lib = [&] { for (int l = 0; l < kLayers; l++) fwd ? at::linear(a, W[l]) : at::mm(a, W[l]); };
        auto pk = [&] { for (int l = 0; l < kLayers; l++) run(P[l], a); };
        lib(), pk();
        std::vector<double> tl, tp;
        for (int r = 0; r < reps; r++) tl.push_back(seconds(lib) / kLayers), tp.push_back(seconds(pk) / kLayers);
        auto ref = fwd ? at::linear(a, W[0]) : at::mm(a, W[0]);
        float diff = (run(P[0], a).to(at::kFloat) - ref.to(at::kFloat)).abs().max().item<float>();
        double l = median(tl), p = median(tp);
        printf("%-8s M=%-5lld %-3s libtorch %7.3f ms %5.0f GFLOP/s | packed %7.3f ms %5.0f GFLOP/s | packed/libtorch %.3f | maxdiff %g\n",
               sh.name, (long long)M, fwd ? "fwd" : "dX", l * 1e3, flop / l / 1e9, p * 1e3, flop / p / 1e9, p / l, diff);
        fflush(stdout);
      }
    }
  }
}

static void pass(int reps, int64_t M) {
  std::vector<at::Tensor> W, X, DY;
  std::vector<Packed> F, B;
  for (int l = 0; l < kLayers; l++)
    for (auto& sh : kShapes) W.push_back(bf16({sh.n, sh.k}, 0.02));
  for (auto& sh : kShapes) X.push_back(bf16({M, sh.k}, 1)), DY.push_back(bf16({M, sh.n}, 1));
  for (auto& w : W) F.push_back(pack(w, true, M)), B.push_back(pack(w, false, M));
  const int S = kShapes.size();
  auto lib = [&] {
    for (int l = 0; l < kLayers; l++)
      for (int j = 0; j < S; j++) at::linear(X[j], W[l * S + j]);
    for (int l = kLayers - 1; l >= 0; l--)
      for (int j = S - 1; j >= 0; j--) at::mm(DY[j], W[l * S + j]);
  };
  auto pk = [&] {
    for (int l = 0; l < kLayers; l++)
      for (int j = 0; j < S; j++) run(F[l * S + j], X[j]);
    for (int l = kLayers - 1; l >= 0; l--)
      for (int j = S - 1; j >= 0; j--) run(B[l * S + j], DY[j]);
  };
  double flop = 0;
  for (auto& sh : kShapes) flop += 2 * 2.0 * M * sh.n * sh.k * kLayers;
  lib(), pk();
  std::vector<double> tl, tp;
  for (int r = 0; r < reps; r++) tl.push_back(seconds(lib)), tp.push_back(seconds(pk));
  double l = median(tl), p = median(tp);
  printf("pass M=%lld, %.1f GFLOP of products: libtorch %.3f s (%.0f GFLOP/s, %.3f-%.3f) | packed %.3f s (%.0f GFLOP/s, %.3f-%.3f) | packed/libtorch %.3f\npairs:",
         (long long)M, flop / 1e9, l, flop / l / 1e9, *std::min_element(tl.begin(), tl.end()), *std::max_element(tl.begin(), tl.end()), p,
         flop / p / 1e9, *std::min_element(tp.begin(), tp.end()), *std::max_element(tp.begin(), tp.end()), p / l);
  for (int r = 0; r < reps; r++) printf(" %.3f", tp[r] / tl[r]);
  printf("\n");
}

int main(int argc, char** argv) {
  at::set_num_threads(1);
  torch::manual_seed(0);
  std::string mode = argc > 1 ? argv[1] : "shapes";
  int reps = argc > 2 ? std::atoi(argv[2]) : 7;
  std::vector<int64_t> ms;
  for (int i = 3; i < argc; i++) ms.push_back(std::atoll(argv[i]));
  if (ms.empty()) ms.push_back(256);
  printf("oneDNN %d.%d.%d, libtorch %s, 1 thread\n", dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch, TORCH_VERSION);
  if (mode == "pass") pass(reps, ms[0]);
  else shapes(reps, ms);
}
