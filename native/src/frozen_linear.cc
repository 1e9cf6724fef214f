// dX for frozen bf16 weights from a transposed copy (issue 13 §1; BENCHMARKS §5, "Weights packed once for the
// frozen products").
//
// libtorch computes a linear's dX = dY·W with W [out, in] row-major, i.e. oneDNN's brgemm matmul gets its B
// operand with the reduction dimension (out) strided; with Wᵀ stored contiguously, the same product reads B with
// the reduction contiguous, the layout the forward x·Wᵀ already gets. Measured on the identification pass's
// products (1 thread, AMX): the products of a pass 0.77–0.81x the time, dX bit for bit the same. The price is a
// transposed copy of every frozen weight that meets a backward, held here and made once per weight and version.
//
// Where CPU bf16 products are computed in float32 (f32_products.h: libtorch's own accumulate in bf16, AVX2 CPUs) the
// copy held is W upcast to float32 instead, read by the forward and by dX in place of the per-call upcast (forward +
// dX 0.33-1.0x the time on Qwen2.5-0.5B's decoder weights: BENCHMARKS "Float32 weight copies on AVX2 CPUs"), the same
// values bit for bit.
//
// Lifetime: a copy is useful only while its weight's products run, and it is large (Qwen2.5-0.5B's float32 copies
// are 1.33 GiB; a 7B model's, within the budget, several GiB), so it goes as soon as it cannot be used:
// - when its weight's storage is freed through a tensor handle (a model dropped and collected, a weight disposed):
//   frozenLinearStorageReleased, called by addon.cc's handle release, erases it at once; without this the copies of a
//   dropped model stayed until some later product made a new copy, pinned while the next model loaded;
// - when the caller says its products are over (frozenLinearRelease: the recipes after training and after
//   evaluation, frozen-dx.ts FrozenDxPlan.release), whatever still holds the weights;
// - when it is stale (its weight changed in place, or its storage was freed elsewhere than through a handle, e.g.
//   by an autograd graph holding the last reference): at the next new copy, at a release, and when a plan is made.
#include "frozen_linear.h"
#include "f32_products.h"

#include <map>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace gv {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct Entry {
  c10::weak_intrusive_ptr<c10::StorageImpl> storage;
  int64_t offset;
  std::vector<int64_t> sizes, strides;
  int64_t version;  // _version() is 64-bit on libtorch 2.x: no narrowing in the brace initialiser below
  Tensor wt;  // Wᵀ, contiguous [in, out] (Kind::transposed), or W in float32, contiguous [out, in] (Kind::f32)
};

enum class Kind { transposed, f32 };
using Key = std::tuple<const void*, int64_t, Kind>;

// keyed by the weight's first element and size (a group's concatenated weight and its first linear's view start at
// the same address) and the kind of copy; an entry stands only while it is still that tensor's storage, view and
// version (a weight updated in place, freed, or a new tensor at the same address gets a fresh copy)
std::map<Key, Entry> g_cache;
// the storages g_cache's entries were made from, with how many entries each: a handle's release looks its storage up
// here, in O(1), for every tensor the JS side frees (a weak reference keeps a StorageImpl's address from being reused
// while it is held, so the address names one storage)
struct Held {
  int entries;
  c10::weak_intrusive_ptr<c10::StorageImpl> storage;
};
std::unordered_map<const c10::StorageImpl*, Held> g_storages;

const c10::StorageImpl* storageOf(const Entry& e) { return e.storage._unsafe_get_target(); }

std::map<Key, Entry>::iterator erase(std::map<Key, Entry>::iterator it) {
  auto s = g_storages.find(storageOf(it->second));
  if (s != g_storages.end() && --s->second.entries == 0) g_storages.erase(s);
  return g_cache.erase(it);
}

bool same(const Entry& e, const Tensor& w) {
  auto held = e.storage.lock();
  return held && held.get() == w.storage().unsafeGetStorageImpl() && e.offset == w.storage_offset() &&
         e.sizes == w.sizes().vec() && e.strides == w.strides().vec() && e.version == w._version();
}

void purgeExpired() {
  for (auto it = g_cache.begin(); it != g_cache.end();) it = it->second.storage.expired() ? erase(it) : ++it;
}

Tensor held(const Tensor& w, Kind kind) {
  const Key key{w.data_ptr(), w.numel(), kind};
  auto it = g_cache.find(key);
  if (it != g_cache.end() && same(it->second, w)) return it->second.wt;
  // a stale copy goes before the new one is made (a 0.5B model's float32 copies are 1.33 GiB)
  if (it != g_cache.end()) erase(it);
  purgeExpired();
  torch::NoGradGuard ng;
  // f32: W.to(float32), what f32_products.cc's linearValues / dxValues make per call (W is contiguous: so is this)
  Entry e{c10::weak_intrusive_ptr<c10::StorageImpl>(w.storage().getWeakStorageImpl()), w.storage_offset(),
          w.sizes().vec(), w.strides().vec(), w._version(),
          kind == Kind::f32 ? w.to(torch::kFloat32) : w.t().contiguous()};
  auto wt = e.wt;
  auto s = g_storages.find(storageOf(e));
  if (s == g_storages.end()) g_storages.emplace(storageOf(e), Held{1, e.storage});
  else s->second.entries++;
  g_cache.emplace(key, std::move(e));
  return wt;
}

// W and b reach the function inside a struct, not as autograd inputs: neither gets a gradient, and a bias that is a
// view made without grad mode (a LinearGroup's rows of its concatenated bias) trips libtorch 1.13's view checks
// when passed as a Function input
struct Frozen {
  Tensor w;
  c10::optional<Tensor> b;
};

struct FrozenLinearFn : public torch::autograd::Function<FrozenLinearFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Frozen& p, const Tensor& wt) {
    ctx->saved_data["wt"] = wt;
    // linear's own products (addmm with a bias, else mm, on x folded to 2-D: what torch::linear runs for a
    // contiguous x), the result reshaped by _unsafe_view: torch::linear returns a view of addmm's result there,
    // and a view made inside a Function's forward may not be updated in place later (GoodVibe's row update is)
    auto x2 = x.reshape({-1, x.size(-1)});
    auto y2 = p.b ? at::addmm(*p.b, x2, p.w.t()) : at::mm(x2, p.w.t());
    auto shape = x.sizes().vec();
    shape.back() = p.w.size(0);
    return at::_unsafe_view(y2, shape);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto wt = ctx->saved_data["wt"].toTensor();
    // dY·W as the product of dY with (Wᵀ)ᵀ: linear reads Wᵀ [in, out] row-major, the reduction contiguous
    return {torch::linear(grads[0], wt), Tensor(), Tensor()};
  }
};

// The dX ways of a frozen product, each what the product's own backward computes: FrozenLinearFn's from Wᵀ, the float32
// route's (F32LinearFn, W or its float32 copy), torch::linear's (addmm's / mm's mat1 gradient, dY·W)
enum class DxWay : int64_t { transposed, routed, libtorch };

// a frozen product whose values are never read, only its backward run (frozenLinearGradOnly): the output is zeros
struct GradOnlyFn : public torch::autograd::Function<GradOnlyFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, int64_t out, int64_t way) {
    ctx->saved_data["w"] = w;
    ctx->saved_data["way"] = way;
    ctx->saved_data["xshape"] = x.sizes().vec();
    auto shape = x.sizes().vec();
    shape.back() = out;
    return torch::zeros(shape, x.options());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto w = ctx->saved_data["w"].toTensor();
    auto xshape = ctx->saved_data["xshape"].toIntVector();
    auto g = grads[0];
    Tensor gx;
    switch (static_cast<DxWay>(ctx->saved_data["way"].toInt())) {
      case DxWay::transposed:
        gx = torch::linear(g, w);
        break;
      case DxWay::routed:
        gx = routedDx(g.reshape({-1, g.size(-1)}), w).view(xshape);
        break;
      case DxWay::libtorch:
        gx = at::mm(g.reshape({-1, g.size(-1)}), w).view(xshape);
        break;
    }
    return {gx, Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor frozenLinearGradOnly(const Tensor& x, const Tensor& w, const c10::optional<Tensor>& b, bool copy) {
  TORCH_CHECK(!w.requires_grad() && !(b && b->requires_grad()),
              "frozenLinearGradOnly: the weight and bias must not require a gradient (frozen)");
  TORCH_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1), "frozenLinearGradOnly: input ", x.sizes(),
              " against weight ", w.sizes());
  TORCH_CHECK(x.scalar_type() == w.scalar_type() && (!b || b->scalar_type() == w.scalar_type()),
              "frozenLinearGradOnly: input, weight and bias of one dtype");
  int64_t out = w.size(0);
  if (!x.requires_grad() || !torch::GradMode::is_enabled()) {
    auto shape = x.sizes().vec();
    shape.back() = out;
    return torch::zeros(shape, x.options());
  }
  // the copy the product's own backward would read (frozenLinear: `copy` as the frozenDx plan decided)
  if (routedLinear(x, w, b)) {
    bool held32 = copy && w.is_contiguous();
    return GradOnlyFn::apply(x, held32 ? held(w, Kind::f32) : w, out, static_cast<int64_t>(DxWay::routed));
  }
  if (copy) return GradOnlyFn::apply(x, held(w, Kind::transposed), out, static_cast<int64_t>(DxWay::transposed));
  return GradOnlyFn::apply(x, w, out, static_cast<int64_t>(DxWay::libtorch));
}

Tensor frozenLinear(const Tensor& x, const Tensor& w, const c10::optional<Tensor>& b) {
  TORCH_CHECK(!w.requires_grad() && !(b && b->requires_grad()),
              "frozenLinear: the weight and bias must not require a gradient (frozen)");
  TORCH_CHECK(w.dim() == 2, "frozenLinear: the weight must be 2-D, got ", w.dim(), "-D");
  // where bf16 products are computed in float32 (f32_products.h) a transposed bf16 copy buys nothing (dX is a float32
  // product of dY and W upcast, which OpenBLAS packs in either layout); a float32 copy saves the upcast of the forward
  // and of dX (a bias of another dtype, or a strided W, takes gv::linear's own way)
  if (routeF32(x, w)) {
    bool copy = w.is_contiguous() && x.size(-1) == w.size(1) && (!b || b->scalar_type() == torch::kBFloat16);
    return copy ? gv::linear(x, w, b, held(w, Kind::f32)) : gv::linear(x, w, b);
  }
  if (!x.requires_grad() || !torch::GradMode::is_enabled()) return gv::linear(x, w, b);
  return FrozenLinearFn::apply(x, Frozen{w, b}, held(w, Kind::transposed));
}

std::pair<int64_t, int64_t> frozenLinearCache(bool clear) {
  if (clear) {
    g_cache.clear();
    g_storages.clear();
  }
  // what is held, stale copies included (their memory is held until they are purged): no purge here, so that what
  // is reported is what the process holds
  int64_t bytes = 0;
  for (auto& kv : g_cache) bytes += kv.second.wt.nbytes();
  return {static_cast<int64_t>(g_cache.size()), bytes};
}

std::pair<int64_t, int64_t> frozenLinearRelease(const std::vector<Tensor>& weights) {
  std::unordered_set<const c10::StorageImpl*> of;
  for (auto& w : weights)
    if (w.defined() && w.has_storage()) of.insert(w.storage().unsafeGetStorageImpl());
  int64_t count = 0, bytes = 0;
  for (auto it = g_cache.begin(); it != g_cache.end();) {
    if (it->second.storage.expired() || of.count(storageOf(it->second))) {
      count++;
      bytes += it->second.wt.nbytes();
      it = erase(it);
    } else {
      ++it;
    }
  }
  return {count, bytes};
}

void frozenLinearStorageReleased(const c10::StorageImpl* storage) {
  // the common case, a tensor of a storage no copy was made of, costs one hash lookup; a storage still alive (a view
  // of a weight released, the weight not) keeps its copies
  if (g_storages.empty()) return;
  auto s = g_storages.find(storage);
  if (s == g_storages.end() || !s->second.storage.expired()) return;
  for (auto it = g_cache.begin(); it != g_cache.end();) it = storageOf(it->second) == storage ? erase(it) : ++it;
}

}  // namespace gv
