// The GoodVibe libtorch binding: a small N-API surface over ATen/autograd, in the spirit of tch-rs.
// Tensors are JS objects owning a torch::Tensor; every op is a free function taking such handles.
// Every entry point runs inside `guarded`, so c10::Error, std::bad_alloc and bad arguments become
// JS exceptions and nothing a caller passes can abort the process.
#include <napi.h>
#include <torch/torch.h>

#include "cpu_cache.h"
#include "f32_products.h"
#include "frozen_linear.h"
#include "fused.h"
#include "grad_reduce.h"
#include "op_profile.h"
#include "quant.h"
#include "train_ops.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <type_traits>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------- memory-mapped files
// A private (copy-on-write) mapping: tensors may view it without copying, and an in-place write
// changes only this process's pages, never the file.
struct MappedFile {
  void* addr = nullptr;
  size_t size = 0;
  ~MappedFile();
};

std::mutex g_map_mutex;
// start address -> mapping, the live ones only: findMapping looks at the entry starting nearest below a pointer, so
// a freed mapping's entry left here would hide a later, larger mapping placed over its range (the kernel reuses the
// hole), and the tensors read from that part of it were copied, not viewed (a second model loaded in one process)
std::map<uintptr_t, std::weak_ptr<MappedFile>> g_mappings;

// ---------------------------------------------------------------- a mapped file cut short by another program
// A file truncated in place while mapped (cp over it, a shell redirect or a download writing into it; a file replaced
// by renaming a new one over it, as this project's writers do, keeps its old pages) turns every later read of its
// lost pages into SIGBUS (so does a failed read of a mapped page: a disk or network file system error), which ends
// the process with "Bus error" and nothing more. No process survives that (the bytes are gone), but it can say which
// file: the live mappings are also kept here, where a signal handler may read them (atomics, no lock, no
// allocation), and the handler writes the file's name before the signal ends the process as it would have.
struct FaultSlot {
  std::atomic<int> state{0};  // 0 free, 1 being written, 2 published
  std::atomic<uintptr_t> start{0};
  std::atomic<size_t> size{0};
  char path[1024];
};
constexpr size_t kFaultSlots = 1024;  // files mapped at once (a model's shards); past that a fault goes unnamed
FaultSlot g_faultSlots[kFaultSlots];
struct sigaction g_prevBus;
std::atomic<bool> g_busSaid{false};

void publishMapping(const void* addr, size_t size, const std::string& path) {
  for (auto& s : g_faultSlots) {
    int free = 0;
    if (!s.state.compare_exchange_strong(free, 1, std::memory_order_acquire)) continue;
    s.start.store(reinterpret_cast<uintptr_t>(addr), std::memory_order_relaxed);
    s.size.store(size, std::memory_order_relaxed);
    size_t n = std::min(path.size(), sizeof(s.path) - 1);
    std::memcpy(s.path, path.data(), n);
    s.path[n] = 0;
    s.state.store(2, std::memory_order_release);
    return;
  }
}

void withdrawMapping(const void* addr) {
  for (auto& s : g_faultSlots) {
    if (s.state.load(std::memory_order_acquire) != 2 ||
        s.start.load(std::memory_order_relaxed) != reinterpret_cast<uintptr_t>(addr))
      continue;
    s.state.store(0, std::memory_order_release);
    return;
  }
}

void sayStr(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

void onBus(int, siginfo_t* info, void*) {
  auto a = reinterpret_cast<uintptr_t>(info->si_addr);
  for (auto& s : g_faultSlots) {
    if (s.state.load(std::memory_order_acquire) != 2) continue;
    uintptr_t start = s.start.load(std::memory_order_relaxed);
    if (a < start || a - start >= s.size.load(std::memory_order_relaxed)) continue;
    if (!g_busSaid.exchange(true)) {  // once, whichever threads meet the lost pages
      sayStr("\ngoodvibe: ");
      sayStr(s.path);
      sayStr(
          ": its memory-mapped bytes can no longer be read (SIGBUS), so the process stops here. Either another "
          "program cut the file short in place while this process read it (cp over it, a shell redirect or a "
          "download writing into it; a new file renamed over it would have been safe), or the disk or network file "
          "system failed a read of it. Run the command again once the file is whole (interrupted jobs resume).\n");
    }
    break;
  }
  // back to the previous disposition; returning runs the access again, which meets it (by default the process ends
  // by SIGBUS, as it did without this handler); a SIGBUS sent by kill() has no access to run again: sent once more
  sigaction(SIGBUS, &g_prevBus, nullptr);
  if (info->si_code <= 0) raise(SIGBUS);
}

void installBusHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = onBus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_prevBus);
  });
}

MappedFile::~MappedFile() {
  if (!addr || !size) return;
  withdrawMapping(addr);
  {
    // before munmap: once the range is free, another thread may map and register a new file at this address
    std::lock_guard<std::mutex> lock(g_map_mutex);
    auto it = g_mappings.find(reinterpret_cast<uintptr_t>(addr));
    if (it != g_mappings.end() && it->second.expired()) g_mappings.erase(it);
  }
  munmap(addr, size);
}

std::shared_ptr<MappedFile> findMapping(const void* p, size_t len) {
  auto key = reinterpret_cast<uintptr_t>(p);
  std::shared_ptr<MappedFile> m;
  {
    std::lock_guard<std::mutex> lock(g_map_mutex);
    auto it = g_mappings.upper_bound(key);
    if (it == g_mappings.begin()) return nullptr;
    m = std::prev(it)->second.lock();
  }
  // m is let go outside the lock: were it the last reference (another thread dropped its own), ~MappedFile locks
  if (!m) return nullptr;
  auto start = reinterpret_cast<uintptr_t>(m->addr);
  if (key >= start && key + len <= start + m->size) return m;
  return nullptr;
}

// ---------------------------------------------------------------- tensor handles
// A handle is a BigInt naming a slot of this env's table: (serial << 24) | slot, the serial unique for the env's
// lifetime (40 bits), so a disposed handle is told from the slot's next tenant. Why not a JS object wrapping the
// tensor (napi_wrap): each such object cost a weak global handle, a finalizer reference in N-API's tracker, a
// collection callback and a deferred finalizer, about 2.2 us per op result on top of the op itself, where a GPU
// kernel launch costs 5 (BENCHMARKS "The addon's handles"); a BigInt costs one small allocation. The JS side
// (tensor.ts) disposes what its tidy scopes make and leaves to a FinalizationRegistry only what outlives them.
// Every host tensor's bytes are told to V8 (AdjustExternalMemory) while its slot holds it, so that handles dropped
// without dispose() put pressure on the collector, and given back exactly once when it is released (dispose, the
// registry's callback); the env's teardown frees what is left without calling into V8.
// (Telling V8 only about what outlives its tidy scope stops the full collection it starts about once per layer,
// but measured no faster and the heap fragmented without them: BENCHMARKS.md, "V8's collector and the tensor
// reports".)
constexpr uint32_t kSlotBits = 24;
constexpr uint64_t kSlotMask = (uint64_t{1} << kSlotBits) - 1;
constexpr uint64_t kMaxSerial = (uint64_t{1} << (64 - kSlotBits)) - 1;

struct Slot {
  torch::Tensor t;
  uint64_t serial = 0;  // 0: free
  int64_t reported = 0;
};

struct AddonData {
  Napi::FunctionReference adamCtor;
  Napi::FunctionReference arrayBufferCtor;  // JavaScript's own, as it was at load (toBytes)
  std::vector<Slot> slots;
  std::vector<uint32_t> freeSlots;
  uint64_t lastSerial = 0;
  int64_t reportedBytes = 0;  // what the live slots have told V8 (externalReports)
};

AddonData* data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

void releaseSlot(Napi::Env env, AddonData* d, uint32_t s) {
  auto& slot = d->slots[s];
  const c10::StorageImpl* storage =
      slot.t.defined() && slot.t.has_storage() ? slot.t.storage().unsafeGetStorageImpl() : nullptr;
  int64_t reported = slot.reported;
  slot.t = torch::Tensor();
  slot.serial = 0;
  slot.reported = 0;
  d->freeSlots.push_back(s);
  // a frozen weight's copies go with the weight's last handle (a model dropped and collected), not at some later
  // product (frozen_linear.cc)
  if (storage) gv::frozenLinearStorageReleased(storage);
  if (reported > 0) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -reported);
    d->reportedBytes -= reported;
  }
}

Napi::Value wrap(Napi::Env env, torch::Tensor t) {
  auto* d = data(env);
  if (d->lastSerial >= kMaxSerial) throw std::runtime_error("this process has made 2^40 tensor handles");
  uint32_t s;
  if (!d->freeSlots.empty()) {
    s = d->freeSlots.back();
    d->freeSlots.pop_back();
  } else {
    if (d->slots.size() > kSlotMask)
      throw std::runtime_error("16,777,216 tensors are alive at once: dispose what is no longer needed (tidy)");
    s = static_cast<uint32_t>(d->slots.size());
    d->slots.emplace_back();
  }
  auto& slot = d->slots[s];
  slot.serial = ++d->lastSerial;
  // host memory only: a GPU tensor's bytes are not the process's memory, and telling V8 about them made it
  // collect (and mark, inside the allocating op) about once per layer of a CUDA model, whose layer takes a
  // millisecond there: every op of a GPU step paid for it (BENCHMARKS "CUDA")
  slot.reported = t.defined() && t.is_cpu() ? static_cast<int64_t>(t.nbytes()) : 0;
  slot.t = std::move(t);
  if (slot.reported > 0) {
    Napi::MemoryManagement::AdjustExternalMemory(env, slot.reported);
    d->reportedBytes += slot.reported;
  }
  try {
    return Napi::BigInt::New(env, (slot.serial << kSlotBits) | s);
  } catch (...) {
    releaseSlot(env, d, s);
    throw;
  }
}

Napi::Value wrapList(Napi::Env env, const std::vector<torch::Tensor>& ts) {
  auto arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); i++) arr.Set(static_cast<uint32_t>(i), wrap(env, ts[i]));
  return arr;
}

enum class HandleIs { Live, Disposed, NotAHandle };

/** The slot a handle names, if `v` is a handle this env gave out; `is` says which case. */
HandleIs lookupHandle(Napi::Env env, const Napi::Value& v, uint32_t* slotOut) {
  if (!v.IsBigInt()) return HandleIs::NotAHandle;
  bool lossless = false;
  uint64_t id = v.As<Napi::BigInt>().Uint64Value(&lossless);
  auto* d = data(env);
  uint64_t serial = id >> kSlotBits;
  auto s = static_cast<uint32_t>(id & kSlotMask);
  if (!lossless || serial == 0 || serial > d->lastSerial || s >= d->slots.size()) return HandleIs::NotAHandle;
  if (d->slots[s].serial != serial) return HandleIs::Disposed;
  *slotOut = s;
  return HandleIs::Live;
}

// ---------------------------------------------------------------- argument decoding
[[noreturn]] void argError(size_t i, const std::string& what) {
  throw std::invalid_argument("argument " + std::to_string(i) + ": expected " + what);
}

// By value: a getter run while decoding a later argument could dispose a handle a reference points into.
torch::Tensor tensorAt(Napi::Env env, const Napi::Value& v, size_t i, const char* what) {
  uint32_t s = 0;
  switch (lookupHandle(env, v, &s)) {
    case HandleIs::Live: return data(env)->slots[s].t;
    case HandleIs::Disposed: throw std::runtime_error("tensor used after dispose()");
    default: argError(i, what);
  }
}

torch::Tensor T(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length()) argError(i, "a tensor");
  return tensorAt(info.Env(), info[i], i, "a tensor");
}

bool isNil(const Napi::CallbackInfo& info, size_t i) {
  return i >= info.Length() || info[i].IsUndefined() || info[i].IsNull();
}

c10::optional<torch::Tensor> OptT(const Napi::CallbackInfo& info, size_t i) {
  if (isNil(info, i)) return c10::nullopt;
  return T(info, i);
}

double D(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) argError(i, "a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

// Range-check before casting: converting NaN, infinities or |d| >= 2^63 to int64 is undefined behaviour.
bool isInt64(double d) { return std::isfinite(d) && d >= -9.2233720368547758e18 && d < 9.2233720368547758e18 && d == std::trunc(d); }

int64_t I(const Napi::CallbackInfo& info, size_t i) {
  double d = D(info, i);
  if (!isInt64(d)) argError(i, "an integer");
  return static_cast<int64_t>(d);
}

bool B(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsBoolean()) argError(i, "a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

std::string S(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsString()) argError(i, "a string");
  return info[i].As<Napi::String>().Utf8Value();
}

std::vector<int64_t> IL(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsArray()) argError(i, "an array of integers");
  auto arr = info[i].As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    if (!v.IsNumber()) argError(i, "an array of integers");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!isInt64(d)) argError(i, "an array of integers");
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

std::vector<torch::Tensor> TL(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsArray()) argError(i, "an array of tensors");
  auto arr = info[i].As<Napi::Array>();
  std::vector<torch::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) out.push_back(tensorAt(info.Env(), arr.Get(k), i, "an array of tensors"));
  return out;
}

torch::ScalarType dtypeOf(const std::string& s) {
  if (s == "float32") return torch::kFloat32;
  if (s == "bfloat16") return torch::kBFloat16;
  if (s == "float16") return torch::kFloat16;
  if (s == "float64") return torch::kFloat64;
  if (s == "int64") return torch::kInt64;
  if (s == "int32") return torch::kInt32;
  if (s == "int16") return torch::kInt16;
  if (s == "int8") return torch::kInt8;
  if (s == "uint8") return torch::kUInt8;
  if (s == "bool") return torch::kBool;
  throw std::invalid_argument("unknown dtype '" + s + "'");
}

std::string dtypeName(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    case torch::kFloat64: return "float64";
    case torch::kInt64: return "int64";
    case torch::kInt32: return "int32";
    case torch::kInt16: return "int16";
    case torch::kInt8: return "int8";
    case torch::kUInt8: return "uint8";
    case torch::kBool: return "bool";
    default: return std::string(c10::toString(t));
  }
}

torch::ScalarType DT(const Napi::CallbackInfo& info, size_t i) { return dtypeOf(S(info, i)); }

torch::Device DEV(const Napi::CallbackInfo& info, size_t i) {
  if (isNil(info, i)) return torch::Device(torch::kCPU);
  std::string s = S(info, i);
  if (s != "cpu" && s.rfind("cuda", 0) != 0) throw std::invalid_argument("unknown device '" + s + "'");
  torch::Device d(s);
  if (d.is_cuda()) {
    // say so here rather than let libtorch fail later with a message about its build
    if (!torch::cuda::is_available())
      throw std::invalid_argument("device '" + s + "' asked for, but CUDA is not available to libtorch " TORCH_VERSION
                                  ": it was built without CUDA (build the addon against a CUDA libtorch: LIBTORCH=...), or "
                                  "no GPU is visible (driver, CUDA_VISIBLE_DEVICES)");
    if (d.has_index() && d.index() >= static_cast<int64_t>(torch::cuda::device_count()))
      throw std::invalid_argument("device '" + s + "' asked for, but only " +
                                  std::to_string(torch::cuda::device_count()) + " CUDA device(s) are visible");
  }
  return d;
}

torch::TensorOptions OPTS(const Napi::CallbackInfo& info, size_t dtypeArg, size_t deviceArg) {
  return torch::TensorOptions().dtype(DT(info, dtypeArg)).device(DEV(info, deviceArg));
}

// Scalar-or-tensor operands: elementwise ops accept a JS number on either side.
bool isTensorArg(const Napi::CallbackInfo& info, size_t i) { return i < info.Length() && !info[i].IsNumber(); }

// ---------------------------------------------------------------- errors
// The one place native failures become JS exceptions (for every op and the AdamW class alike): c10::Error,
// std::bad_alloc and bad arguments, so nothing a caller passes can abort the process. Call inside a catch.
[[noreturn]] void rethrowAsJs(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string("libtorch: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "libtorch: out of memory");
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("libtorch: ") + e.what());
  } catch (...) {
    throw Napi::Error::New(env, "libtorch: unknown native error");
  }
}

using Body = Napi::Value (*)(const Napi::CallbackInfo&);

template <Body F>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (...) {
    rethrowAsJs(info.Env());
  }
}

// ---------------------------------------------------------------- the op table
// Each op is declared once, by OP(name, "TypeScript signature") { body }: the definition registers itself here,
// Init exports every entry, and src/tensor/native-ops.ts (the TypeScript interface) is generated from this
// table by native/gen-types.mjs, which test/tensor/native-ops.test.ts keeps honest against the built addon.
struct OpDecl {
  const char* name;
  const char* signature;
  Body fn;
};
std::vector<OpDecl>& opTable() {
  static std::vector<OpDecl> table;
  return table;
}
struct OpRegistrar {
  OpRegistrar(const char* name, const char* signature, Body fn) { opTable().push_back({name, signature, fn}); }
};

// Each call is a user scope named js::<op> for libtorch's RecordFunction observers (the op profile, op_profile.cc,
// and any profiler): the ATen ops it runs nest inside it, and its own time is the binding's (arguments, handles).
#define OP(name, signature)                                                    \
  Napi::Value op_##name(const Napi::CallbackInfo& info);                       \
  Napi::Value scoped_##name(const Napi::CallbackInfo& info) {                  \
    RECORD_USER_SCOPE("js::" #name);                                           \
    return op_##name(info);                                                    \
  }                                                                            \
  const OpRegistrar reg_##name(#name, signature, &guarded<scoped_##name>);     \
  Napi::Value op_##name(const Napi::CallbackInfo& info)
#define ENV info.Env()
#define RET(expr) return wrap(ENV, (expr))

// ---------------------------------------------------------------- creation and data
OP(fromBuffer, "(buf: Uint8Array, dtype: string, shape: number[], device?: string): N") {
  // (buffer: Uint8Array, dtype, shape, device?)
  if (info.Length() < 1 || !info[0].IsTypedArray()) argError(0, "a Uint8Array");
  // Decode the other arguments first: their getters can run JS that detaches or frees the buffer.
  auto dt = DT(info, 1);
  auto shape = IL(info, 2);
  auto device = DEV(info, 3);
  auto arr = info[0].As<Napi::TypedArray>();
  auto bytes = arr.ArrayBuffer();
  auto* ptr = static_cast<uint8_t*>(bytes.Data()) + arr.ByteOffset();
  size_t len = arr.ByteLength();
  int64_t numel = 1;
  for (auto d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape");
    if (__builtin_mul_overflow(numel, d, &numel)) throw std::invalid_argument("shape is too large");
  }
  size_t need;
  if (__builtin_mul_overflow(static_cast<size_t>(numel), c10::elementSize(dt), &need))
    throw std::invalid_argument("shape is too large");
  if (need != len)
    throw std::invalid_argument("buffer has " + std::to_string(len) + " bytes, shape needs " + std::to_string(need));
  // Zero-copy only for memory that C++ owns for as long as the tensor lives (our file mappings).
  auto mapping = len > 0 ? findMapping(ptr, len) : nullptr;
  if (mapping && reinterpret_cast<uintptr_t>(ptr) % c10::elementSize(dt) == 0 && device.is_cpu()) {
    auto t = torch::from_blob(
        ptr, shape, [mapping](void*) mutable { mapping.reset(); }, torch::TensorOptions().dtype(dt));
    RET(t);
  }
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dt));
  if (len) std::memcpy(t.data_ptr(), ptr, len);
  RET(device.is_cpu() ? t : t.to(device));
}

// Frees the handle's slot (the tensor itself goes with its last reference: views and autograd may hold it);
// disposing twice is harmless.
OP(dispose, "(t: N): void") {
  uint32_t s = 0;
  if (info.Length() < 1) argError(0, "a tensor");
  switch (lookupHandle(ENV, info[0], &s)) {
    case HandleIs::Live: releaseSlot(ENV, data(ENV), s); break;
    case HandleIs::Disposed: break;
    default: argError(0, "a tensor");
  }
  return ENV.Undefined();
}

OP(disposed, "(t: N): boolean") {
  uint32_t s = 0;
  if (info.Length() < 1) argError(0, "a tensor");
  switch (lookupHandle(ENV, info[0], &s)) {
    case HandleIs::Live: return Napi::Boolean::New(ENV, false);
    case HandleIs::Disposed: return Napi::Boolean::New(ENV, true);
    default: argError(0, "a tensor");
  }
}

// Handles given out and not yet disposed (tests and diagnostics: a leak shows as growth).
OP(liveHandles, "(): number") {
  auto* d = data(ENV);
  return Napi::Number::New(ENV, static_cast<double>(d->slots.size() - d->freeSlots.size()));
}

// [bytes the live handles have told V8, V8's own count of external memory (every report to the isolate, this
// addon's and any other's)]: for tests and diagnostics.
OP(externalReports, "(): [number, number]") {
  auto out = Napi::Array::New(ENV, 2);
  out.Set(0u, Napi::Number::New(ENV, static_cast<double>(data(ENV)->reportedBytes)));
  out.Set(1u, Napi::Number::New(ENV, static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(ENV, 0))));
  return out;
}

// The ArrayBuffer is made by JavaScript's own constructor (`new ArrayBuffer(n)`, kept at load), which throws a
// RangeError ("Array buffer allocation failed") where the memory cannot be had: napi_create_arraybuffer
// (v8::ArrayBuffer::New) has no failing path in Node 20's V8 and ended the process instead ("FATAL ERROR:
// v8::ArrayBuffer::New Allocation failed", SIGABRT). Its memory stays V8's, so a dropped result is freed by the
// collection that finds it, at once (an external buffer over a tensor's storage is freed only once the event loop
// turns: a synchronous writer's parts piled up, 60 of 64 MiB grew RSS by 3.8 GiB). `maxBytes` as for the mapped
// Buffers (buffer.constants.MAX_LENGTH; without it 2^32, Node 20's): no typed array can view a longer one.
OP(toBytes, "(t: N, maxBytes?: number): ArrayBuffer") {
  auto src = T(info, 0);
  double maxBytes = isNil(info, 1) ? 4294967296.0 : D(info, 1);
  auto t = src.detach().to(torch::kCPU).contiguous();
  size_t len = t.nbytes();
  if (static_cast<double>(len) > maxBytes)
    throw std::runtime_error("cannot hand " + std::to_string(len) + " bytes to JavaScript as one ArrayBuffer (at most " +
                             std::to_string(static_cast<uint64_t>(maxBytes)) + "): write it in parts");
  Napi::Value made = data(ENV)->arrayBufferCtor.New({Napi::Number::New(ENV, static_cast<double>(len))});
  if (!made.IsArrayBuffer()) throw std::runtime_error("toBytes: ArrayBuffer's constructor gave no ArrayBuffer");
  auto buf = made.As<Napi::ArrayBuffer>();
  if (buf.ByteLength() != len) throw std::runtime_error("toBytes: ArrayBuffer's constructor gave the wrong length");
  if (len) std::memcpy(buf.Data(), t.data_ptr(), len);
  return buf;
}

OP(item, "(t: N): number") {
  auto t = T(info, 0);
  if (t.numel() != 1) throw std::invalid_argument("item() needs a tensor with one element, got " + std::to_string(t.numel()));
  return Napi::Number::New(ENV, t.item().toDouble());
}

// The two flags a model asks of its weights at every product, without info's object.
OP(requiresGrad, "(t: N): boolean") { return Napi::Boolean::New(ENV, T(info, 0).requires_grad()); }

OP(info, "(t: N): { shape: number[]; dtype: string; device: string; requiresGrad: boolean; isLeaf: boolean }") {
  auto t = T(info, 0);
  auto o = Napi::Object::New(ENV);
  auto shape = Napi::Array::New(ENV, t.dim());
  for (int64_t i = 0; i < t.dim(); i++) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(ENV, t.size(i)));
  o.Set("shape", shape);
  o.Set("dtype", dtypeName(t.scalar_type()));
  o.Set("device", t.device().str());
  o.Set("requiresGrad", t.requires_grad());
  o.Set("isLeaf", t.is_leaf());
  return o;
}

OP(zeros, "(shape: number[], dtype: string, device?: string): N") { RET(torch::zeros(IL(info, 0), OPTS(info, 1, 2))); }
OP(ones, "(shape: number[], dtype: string, device?: string): N") { RET(torch::ones(IL(info, 0), OPTS(info, 1, 2))); }
OP(full, "(shape: number[], value: number, dtype: string, device?: string): N") { RET(torch::full(IL(info, 0), D(info, 1), OPTS(info, 2, 3))); }
OP(arange, "(start: number, end: number, step: number, dtype: string, device?: string): N") { RET(torch::arange(D(info, 0), D(info, 1), D(info, 2), OPTS(info, 3, 4))); }
OP(randn, "(shape: number[], dtype: string, device?: string): N") { RET(torch::randn(IL(info, 0), OPTS(info, 1, 2))); }
OP(rand, "(shape: number[], dtype: string, device?: string): N") { RET(torch::rand(IL(info, 0), OPTS(info, 1, 2))); }
OP(manualSeed, "(seed: number): void") {
  torch::manual_seed(static_cast<uint64_t>(I(info, 0)));
  return ENV.Undefined();
}
// The default generator's state on a device (a CPU byte tensor), and setting it back: gradient checkpointing
// recomputes a layer with the random numbers its forward drew (LoRA's dropout masks), as PyTorch's checkpoint does
// with preserve_rng_state, so a checkpointed step equals one without checkpointing bit for bit.
OP(rngState, "(device?: string): N") {
  at::Generator g = at::globalContext().defaultGenerator(DEV(info, 0));
  std::lock_guard<std::mutex> lock(g.mutex());
  RET(g.get_state());
}
OP(setRngState, "(state: N, device?: string): void") {
  auto state = T(info, 0);
  at::Generator g = at::globalContext().defaultGenerator(DEV(info, 1));
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(state);
  return ENV.Undefined();
}

// ---------------------------------------------------------------- conversion
OP(to, "(t: N, dtype: string): N") { RET(T(info, 0).to(DT(info, 1))); }
OP(toDevice, "(t: N, device: string): N") { RET(T(info, 0).to(DEV(info, 1))); }
OP(contiguous, "(t: N): N") { RET(T(info, 0).contiguous()); }
OP(clone, "(t: N): N") { RET(T(info, 0).clone()); }
OP(detach, "(t: N): N") { RET(T(info, 0).detach()); }

// ---------------------------------------------------------------- elementwise
#define BINARY(name, fn, signature)                                            \
  OP(name, signature) {                                                                   \
    if (isTensorArg(info, 0) && isTensorArg(info, 1)) RET(fn(T(info, 0), T(info, 1))); \
    if (isTensorArg(info, 0)) RET(fn(T(info, 0), torch::Scalar(D(info, 1))));  \
    if (isTensorArg(info, 1)) RET(fn(torch::Scalar(D(info, 0)), T(info, 1)));  \
    argError(0, "a tensor on at least one side");                              \
  }
torch::Tensor addF(const torch::Tensor& a, const torch::Tensor& b) { return a + b; }
torch::Tensor addF(const torch::Tensor& a, const torch::Scalar& b) { return a + b; }
torch::Tensor addF(const torch::Scalar& a, const torch::Tensor& b) { return b + a; }
torch::Tensor subF(const torch::Tensor& a, const torch::Tensor& b) { return a - b; }
torch::Tensor subF(const torch::Tensor& a, const torch::Scalar& b) { return a - b; }
torch::Tensor subF(const torch::Scalar& a, const torch::Tensor& b) { return torch::rsub(b, a); }
torch::Tensor mulF(const torch::Tensor& a, const torch::Tensor& b) { return a * b; }
torch::Tensor mulF(const torch::Tensor& a, const torch::Scalar& b) { return a * b; }
torch::Tensor mulF(const torch::Scalar& a, const torch::Tensor& b) { return b * a; }
torch::Tensor divF(const torch::Tensor& a, const torch::Tensor& b) { return a / b; }
torch::Tensor divF(const torch::Tensor& a, const torch::Scalar& b) { return a / b; }
torch::Tensor divF(const torch::Scalar& a, const torch::Tensor& b) { return torch::reciprocal(b) * a; }
torch::Tensor powF(const torch::Tensor& a, const torch::Tensor& b) { return torch::pow(a, b); }
torch::Tensor powF(const torch::Tensor& a, const torch::Scalar& b) { return torch::pow(a, b); }
torch::Tensor powF(const torch::Scalar& a, const torch::Tensor& b) { return torch::pow(a, b); }
#define CMP(fname, op)                                                                                 \
  torch::Tensor fname(const torch::Tensor& a, const torch::Tensor& b) { return op(a, b); }            \
  torch::Tensor fname(const torch::Tensor& a, const torch::Scalar& b) { return op(a, b); }            \
  torch::Tensor fname(const torch::Scalar& a, const torch::Tensor& b) {                                \
    return op(torch::scalar_tensor(a, b.options().requires_grad(false)), b);                           \
  }
CMP(eqF, torch::eq)
CMP(neF, torch::ne)
CMP(ltF, torch::lt)
CMP(leF, torch::le)
CMP(gtF, torch::gt)
CMP(geF, torch::ge)
torch::Tensor maximumF(const torch::Tensor& a, const torch::Tensor& b) { return torch::maximum(a, b); }
torch::Tensor maximumF(const torch::Tensor& a, const torch::Scalar& b) { return torch::clamp_min(a, b); }
torch::Tensor maximumF(const torch::Scalar& a, const torch::Tensor& b) { return torch::clamp_min(b, a); }
torch::Tensor minimumF(const torch::Tensor& a, const torch::Tensor& b) { return torch::minimum(a, b); }
torch::Tensor minimumF(const torch::Tensor& a, const torch::Scalar& b) { return torch::clamp_max(a, b); }
torch::Tensor minimumF(const torch::Scalar& a, const torch::Tensor& b) { return torch::clamp_max(b, a); }
BINARY(add, addF, "(a: NS, b: NS): N")
BINARY(sub, subF, "(a: NS, b: NS): N")
BINARY(mul, mulF, "(a: NS, b: NS): N")
BINARY(div, divF, "(a: NS, b: NS): N")
BINARY(pow, powF, "(a: NS, b: NS): N")
BINARY(eq, eqF, "(a: NS, b: NS): N")
BINARY(ne, neF, "(a: NS, b: NS): N")
BINARY(lt, ltF, "(a: NS, b: NS): N")
BINARY(le, leF, "(a: NS, b: NS): N")
BINARY(gt, gtF, "(a: NS, b: NS): N")
BINARY(ge, geF, "(a: NS, b: NS): N")
BINARY(maximum, maximumF, "(a: NS, b: NS): N")
BINARY(minimum, minimumF, "(a: NS, b: NS): N")

OP(logicalAnd, "(a: N, b: N): N") { RET(torch::logical_and(T(info, 0), T(info, 1))); }
OP(logicalOr, "(a: N, b: N): N") { RET(torch::logical_or(T(info, 0), T(info, 1))); }
OP(logicalNot, "(a: N): N") { RET(torch::logical_not(T(info, 0))); }
OP(where, "(c: N, a: NS, b: NS): N") {
  const auto& c = T(info, 0);
  if (isTensorArg(info, 1) && isTensorArg(info, 2)) RET(torch::where(c, T(info, 1), T(info, 2)));
  if (isTensorArg(info, 1)) RET(torch::where(c, T(info, 1), torch::scalar_tensor(D(info, 2), T(info, 1).options().requires_grad(false))));
  if (isTensorArg(info, 2)) RET(torch::where(c, torch::scalar_tensor(D(info, 1), T(info, 2).options().requires_grad(false)), T(info, 2)));
  argError(1, "a tensor on at least one side");
}
OP(maskedFill, "(t: N, mask: N, value: number): N") { RET(T(info, 0).masked_fill(T(info, 1), D(info, 2))); }
OP(clamp, "(t: N, lo: number | null, hi: number | null): N") {
  c10::optional<torch::Scalar> lo, hi;
  if (!isNil(info, 1)) lo = D(info, 1);
  if (!isNil(info, 2)) hi = D(info, 2);
  RET(torch::clamp(T(info, 0), lo, hi));
}

#define UNARY(name, signature, expr) \
  OP(name, signature) {              \
    const auto& x = T(info, 0); \
    RET(expr);            \
  }
UNARY(neg, "(t: N): N", -x)
UNARY(exp, "(t: N): N", torch::exp(x))
UNARY(log, "(t: N): N", torch::log(x))
UNARY(sqrt, "(t: N): N", torch::sqrt(x))
UNARY(rsqrt, "(t: N): N", torch::rsqrt(x))
UNARY(abs, "(t: N): N", torch::abs(x))
UNARY(sin, "(t: N): N", torch::sin(x))
UNARY(cos, "(t: N): N", torch::cos(x))
UNARY(tanh, "(t: N): N", torch::tanh(x))
UNARY(sigmoid, "(t: N): N", torch::sigmoid(x))
UNARY(relu, "(t: N): N", torch::relu(x))
UNARY(silu, "(t: N): N", torch::silu(x))
UNARY(square, "(t: N): N", torch::square(x))
UNARY(reciprocal, "(t: N): N", torch::reciprocal(x))
UNARY(isnan, "(t: N): N", torch::isnan(x))
UNARY(isfinite, "(t: N): N", torch::isfinite(x))
OP(gelu, "(t: N, approximate?: string): N") { RET(torch::gelu(T(info, 0), isNil(info, 1) ? "none" : S(info, 1))); }

// ---------------------------------------------------------------- reductions
OP(sum, "(t: N, dims?: number[] | null, keepdim?: boolean): N") {
  if (isNil(info, 1)) RET(T(info, 0).sum());
  RET(T(info, 0).sum(IL(info, 1), B(info, 2)));
}
OP(mean, "(t: N, dims?: number[] | null, keepdim?: boolean): N") {
  if (isNil(info, 1)) RET(T(info, 0).mean());
  RET(T(info, 0).mean(IL(info, 1), B(info, 2)));
}
OP(amax, "(t: N, dims?: number[] | null, keepdim?: boolean): N") {
  if (isNil(info, 1)) RET(T(info, 0).max());
  RET(T(info, 0).amax(IL(info, 1), B(info, 2)));
}
OP(amin, "(t: N, dims?: number[] | null, keepdim?: boolean): N") {
  if (isNil(info, 1)) RET(T(info, 0).min());
  RET(T(info, 0).amin(IL(info, 1), B(info, 2)));
}
OP(argmax, "(t: N, dim: number, keepdim: boolean): N") { RET(T(info, 0).argmax(I(info, 1), B(info, 2))); }
OP(logsumexp, "(t: N, dims: number[], keepdim: boolean): N") { RET(torch::logsumexp(T(info, 0), IL(info, 1), B(info, 2))); }
OP(cumsum, "(t: N, dim: number): N") { RET(torch::cumsum(T(info, 0), I(info, 1))); }
OP(softmax, "(t: N, dim: number, dtype?: string): N") {
  if (isNil(info, 2)) RET(torch::softmax(T(info, 0), I(info, 1)));
  RET(torch::softmax(T(info, 0), I(info, 1), DT(info, 2)));
}
OP(logSoftmax, "(t: N, dim: number, dtype?: string): N") {
  if (isNil(info, 2)) RET(torch::log_softmax(T(info, 0), I(info, 1)));
  RET(torch::log_softmax(T(info, 0), I(info, 1), DT(info, 2)));
}
OP(topk, "(t: N, k: number, dim: number, largest: boolean, sorted: boolean): [N, N]") {
  auto r = torch::topk(T(info, 0), I(info, 1), I(info, 2), B(info, 3), B(info, 4));
  return wrapList(ENV, {std::get<0>(r), std::get<1>(r)});
}
OP(sort, "(t: N, dim: number, descending: boolean): [N, N]") {
  auto r = torch::sort(T(info, 0), /*stable=*/true, I(info, 1), B(info, 2));
  return wrapList(ENV, {std::get<0>(r), std::get<1>(r)});
}

// ---------------------------------------------------------------- linear algebra and nn
// CPU bf16 products in float32 where libtorch's accumulate in bf16 (f32_products.h)
OP(matmul, "(a: N, b: N): N") { RET(gv::matmul(T(info, 0), T(info, 1))); }
OP(linear, "(x: N, w: N, b?: N | null): N") { RET(gv::linear(T(info, 0), T(info, 1), OptT(info, 2))); }
OP(setF32Products, "(mode: string): void") {
  gv::setF32Products(S(info, 0));
  return ENV.Undefined();
}
OP(f32ProductsMode, "(): string") { return Napi::String::New(ENV, gv::f32ProductsMode()); }
OP(f32Products, "(): boolean") { return Napi::Boolean::New(ENV, gv::f32Products()); }
OP(bf16ProductsAccumulateF32, "(): boolean") { return Napi::Boolean::New(ENV, gv::libtorchBf16AccumulatesF32()); }
OP(bf16ProductsDecision,
   "(): { accurate: boolean; ownSeconds: number | null; f32Seconds: number | null; nativeBf16: boolean; reason: string; slowRatio: number }") {
  const auto& d = gv::bf16ProductsDecision();
  auto num = [&](double v) { return std::isnan(v) ? ENV.Null() : Napi::Number::New(ENV, v); };
  auto o = Napi::Object::New(ENV);
  o.Set("accurate", d.accurate);
  o.Set("ownSeconds", num(d.ownSeconds));
  o.Set("f32Seconds", num(d.f32Seconds));
  o.Set("nativeBf16", d.nativeBf16);
  o.Set("reason", d.reason);
  o.Set("slowRatio", gv::kSlowRatio);
  return o;
}
OP(decideBf16Products, "(accurate: boolean, ownSeconds: number, f32Seconds: number, nativeBf16?: boolean): string") {
  return Napi::String::New(ENV, gv::decideBf16Products(B(info, 0), D(info, 1), D(info, 2), !isNil(info, 3) && B(info, 3)));
}
OP(embedding, "(w: N, ids: N): N") { RET(torch::embedding(T(info, 0), T(info, 1))); }
OP(crossEntropy, "(logits: N, targets: N, ignoreIndex: number, reduction: string): N") {
  // (logits [N,C], targets [N] int64, ignoreIndex, reduction "mean"|"sum"|"none")
  std::string red = isNil(info, 3) ? "mean" : S(info, 3);
  int64_t r = red == "mean" ? at::Reduction::Mean : red == "sum" ? at::Reduction::Sum : at::Reduction::None;
  if (red != "mean" && red != "sum" && red != "none") throw std::invalid_argument("reduction must be mean|sum|none");
  RET(at::cross_entropy_loss(T(info, 0), T(info, 1), {}, r, I(info, 2), 0.0));
}
OP(multinomial, "(probs: N, n: number, replacement: boolean): N") { RET(torch::multinomial(T(info, 0), I(info, 1), B(info, 2))); }
OP(dropout, "(t: N, p: number, train: boolean): N") { RET(torch::dropout(T(info, 0), D(info, 1), B(info, 2))); }

// ---------------------------------------------------------------- shape and indexing
OP(reshape, "(t: N, shape: number[]): N") { RET(T(info, 0).reshape(IL(info, 1))); }
OP(view, "(t: N, shape: number[]): N") { RET(T(info, 0).view(IL(info, 1))); }
OP(permute, "(t: N, dims: number[]): N") { RET(T(info, 0).permute(IL(info, 1))); }
OP(transpose, "(t: N, a: number, b: number): N") { RET(T(info, 0).transpose(I(info, 1), I(info, 2))); }
OP(unsqueeze, "(t: N, dim: number): N") { RET(T(info, 0).unsqueeze(I(info, 1))); }
OP(squeeze, "(t: N, dim?: number): N") {
  if (isNil(info, 1)) RET(T(info, 0).squeeze());
  RET(T(info, 0).squeeze(I(info, 1)));
}
OP(expand, "(t: N, shape: number[]): N") { RET(T(info, 0).expand(IL(info, 1))); }
OP(narrow, "(t: N, dim: number, start: number, length: number): N") { RET(T(info, 0).narrow(I(info, 1), I(info, 2), I(info, 3))); }
OP(slice, "(t: N, dim: number, start: number, end: number, step: number): N") { RET(T(info, 0).slice(I(info, 1), I(info, 2), I(info, 3), I(info, 4))); }
OP(select, "(t: N, dim: number, index: number): N") { RET(T(info, 0).select(I(info, 1), I(info, 2))); }
OP(indexSelect, "(t: N, dim: number, index: N): N") { RET(torch::index_select(T(info, 0), I(info, 1), T(info, 2))); }
OP(gather, "(t: N, dim: number, index: N): N") { RET(torch::gather(T(info, 0), I(info, 1), T(info, 2))); }
OP(indexAdd, "(t: N, dim: number, index: N, src: N): N") { RET(torch::index_add(T(info, 0), I(info, 1), T(info, 2), T(info, 3))); }
OP(indexCopy, "(t: N, dim: number, index: N, src: N): N") { RET(torch::index_copy(T(info, 0), I(info, 1), T(info, 2), T(info, 3))); }
OP(scatter, "(t: N, dim: number, index: N, src: N): N") { RET(torch::scatter(T(info, 0), I(info, 1), T(info, 2), T(info, 3))); }
OP(cat, "(ts: N[], dim: number): N") { RET(torch::cat(TL(info, 0), I(info, 1))); }
OP(stack, "(ts: N[], dim: number): N") { RET(torch::stack(TL(info, 0), I(info, 1))); }
OP(split, "(t: N, size: number, dim: number): N[]") { return wrapList(ENV, torch::split(T(info, 0), I(info, 1), I(info, 2))); }
OP(splitSizes, "(t: N, sizes: number[], dim: number): N[]") { return wrapList(ENV, torch::split_with_sizes(T(info, 0), IL(info, 1), I(info, 2))); }
OP(repeatInterleave, "(t: N, repeats: number, dim: number): N") { RET(torch::repeat_interleave(T(info, 0), I(info, 1), I(info, 2))); }
OP(nonzero, "(t: N): N") { RET(torch::nonzero(T(info, 0))); }
OP(tril, "(t: N, diagonal: number): N") { RET(torch::tril(T(info, 0), I(info, 1))); }
OP(triu, "(t: N, diagonal: number): N") { RET(torch::triu(T(info, 0), I(info, 1))); }
OP(flip, "(t: N, dims: number[]): N") { RET(torch::flip(T(info, 0), IL(info, 1))); }

// ---------------------------------------------------------------- in-place (optimisers, caches, folding)
OP(copyInPlace, "(dst: N, src: N): N") {
  torch::NoGradGuard ng;
  T(info, 0).copy_(T(info, 1));
  return info[0];
}
OP(mulScalarInPlace, "(t: N, s: number): N") {
  torch::NoGradGuard ng;
  T(info, 0).mul_(D(info, 1));
  return info[0];
}
OP(zeroInPlace, "(t: N): N") {
  torch::NoGradGuard ng;
  T(info, 0).zero_();
  return info[0];
}
OP(indexCopyInPlace, "(t: N, dim: number, index: N, src: N): N") {
  torch::NoGradGuard ng;
  T(info, 0).index_copy_(I(info, 1), T(info, 2), T(info, 3));
  return info[0];
}

// ---------------------------------------------------------------- autograd
OP(setRequiresGrad, "(t: N, on: boolean): N") {
  T(info, 0).requires_grad_(B(info, 1));
  return info[0];
}
OP(retainGrad, "(t: N): N") {
  auto t = T(info, 0);
  if (!t.requires_grad()) throw std::invalid_argument("retainGrad() on a tensor that does not require grad");
  t.retain_grad();
  return info[0];
}
OP(grad, "(t: N): N | null") {
  auto g = T(info, 0).grad();
  if (!g.defined()) return ENV.Null();
  RET(g);
}
OP(clearGrad, "(t: N): void") {
  auto t = T(info, 0);
  t.mutable_grad() = torch::Tensor();
  return ENV.Undefined();
}
// An embedding lookup's gradient added into the weight's gradient by rows, in place (a zero gradient first where the
// weight has none): rows [.., H] holds one row per id of ids. The bits are those of autograd's embedding backward
// added to the gradient already there, one addition per element; the dense [V, H] temporary and the pass that adds
// it are not made. Each distinct id's contributions are summed by libtorch's own embedding backward over a table of
// the distinct ids (a row's sum depends only on its contributions in order, and how it is accumulated differs
// between versions: bf16 step by step in 1.13, in float32 in 2.x), then added once each.
OP(addLookupGrad, "(weight: N, ids: N, rows: N): void") {
  torch::NoGradGuard ng;
  auto w = T(info, 0);
  auto ids = T(info, 1).reshape({-1});
  auto rows = T(info, 2);
  if (w.dim() != 2) throw std::invalid_argument("addLookupGrad: the weight must be [vocabulary, hidden]");
  if (ids.scalar_type() != torch::kLong) throw std::invalid_argument("addLookupGrad: ids must be int64");
  if (rows.dim() < 1 || rows.size(-1) != w.size(1) || rows.numel() != ids.numel() * w.size(1))
    throw std::invalid_argument("addLookupGrad: rows must hold one row of the weight's width per id");
  if (rows.scalar_type() != w.scalar_type() || rows.device() != w.device() || ids.device() != w.device())
    throw std::invalid_argument("addLookupGrad: rows and ids must be on the weight's device, rows in its dtype");
  rows = rows.reshape({ids.size(0), w.size(1)});
  auto distinct = at::_unique2(ids, /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/false);
  const auto& keys = std::get<0>(distinct);
  auto sums = at::embedding_dense_backward(rows, std::get<1>(distinct).reshape({-1}), keys.size(0), -1, false);
  auto& g = w.mutable_grad();
  if (!g.defined()) g = torch::zeros_like(w, at::MemoryFormat::Contiguous);
  g.index_add_(0, keys, sums);
  return ENV.Undefined();
}
OP(backward, "(outputs: N[], grads: N[] | null, retainGraph: boolean): void") {
  // (outputs[], gradOutputs[] | null, retainGraph)
  auto outs = TL(info, 0);
  std::vector<torch::Tensor> grads;
  if (!isNil(info, 1)) grads = TL(info, 1);
  bool retain = isNil(info, 2) ? false : B(info, 2);
  if (!grads.empty() && grads.size() != outs.size()) throw std::invalid_argument("backward: one gradient per output");
  for (auto& o : outs)
    if (!o.requires_grad()) throw std::invalid_argument("backward: an output does not require grad (no graph)");
  torch::autograd::backward(outs, grads, retain);
  return ENV.Undefined();
}
OP(autogradGrad, "(outputs: N[], inputs: N[], grads: N[] | null, retainGraph: boolean): (N | null)[]") {
  // (outputs[], inputs[], gradOutputs[] | null, retainGraph) -> grads (null where unused)
  auto outs = TL(info, 0);
  auto ins = TL(info, 1);
  std::vector<torch::Tensor> gouts;
  if (!isNil(info, 2)) gouts = TL(info, 2);
  bool retain = isNil(info, 3) ? false : B(info, 3);
  auto gs = torch::autograd::grad(outs, ins, gouts, retain, false, /*allow_unused=*/true);
  auto arr = Napi::Array::New(ENV, gs.size());
  for (size_t i = 0; i < gs.size(); i++)
    arr.Set(static_cast<uint32_t>(i), gs[i].defined() ? wrap(ENV, gs[i]) : ENV.Null());
  return arr;
}
OP(setGradEnabled, "(on: boolean): boolean") {
  bool prev = torch::GradMode::is_enabled();
  torch::GradMode::set_enabled(B(info, 0));
  return Napi::Boolean::New(ENV, prev);
}
OP(isGradEnabled, "(): boolean") { return Napi::Boolean::New(ENV, torch::GradMode::is_enabled()); }

// ---------------------------------------------------------------- runtime
// OpenBLAS (libtorch's float32 products on Debian) keeps its own pool of threads, sized by the cores at load, which
// torch::set_num_threads leaves alone (it sets MKL's): asked for one thread, a process still split float32 products
// over two, and after each one OpenBLAS's worker spun in sched_yield for ~0.1 s, a second core busy for nothing
// (0.8 CPU s per GoodVibe step at 24 layers) or taken from oneDNN's threads. Found among the loaded objects, since
// libtorch's BLAS is loaded under RTLD_LOCAL; absent (MKL builds, other BLAS) it is left alone.
struct OpenBlas {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
};
const OpenBlas& openBlas() {
  static const OpenBlas found = [] {
    OpenBlas o;
    dl_iterate_phdr(
        [](struct dl_phdr_info* info, size_t, void* data) -> int {
          auto* out = static_cast<OpenBlas*>(data);
          if (!info->dlpi_name || !*info->dlpi_name) return 0;
          void* h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
          if (!h) return 0;
          auto set = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"));
          auto get = reinterpret_cast<int (*)()>(dlsym(h, "openblas_get_num_threads"));
          dlclose(h);  // NOLOAD took a reference to a library that stays loaded with libtorch
          if (!set || !get) return 0;
          out->set = set;
          out->get = get;
          return 1;
        },
        &o);
    return o;
  }();
  return found;
}
OP(setNumThreads, "(n: number): void") {
  int64_t n = I(info, 0);
  if (n < 1 || n > 4096) throw std::invalid_argument("threads must be in [1, 4096]");
  torch::set_num_threads(static_cast<int>(n));
  if (openBlas().set) openBlas().set(static_cast<int>(n));
  return ENV.Undefined();
}
OP(getNumThreads, "(): number") { return Napi::Number::New(ENV, torch::get_num_threads()); }
OP(blasThreads, "(): number") {
  return Napi::Number::New(ENV, openBlas().get ? openBlas().get() : -1);
}
OP(cudaAvailable, "(): boolean") { return Napi::Boolean::New(ENV, torch::cuda::is_available()); }
OP(cudaDeviceCount, "(): number") { return Napi::Number::New(ENV, static_cast<double>(torch::cuda::device_count())); }
OP(version, "(): string") { return Napi::String::New(ENV, TORCH_VERSION); }

// A file mapped whole (copy-on-write, so the Buffers over it may be written), registered for findMapping.
// MAP_NORESERVE: the kernel's heuristic overcommit (vm.overcommit_memory 0) refused one such mapping larger than RAM +
// swap although nothing is written to most of it: transformers 5 saves a model of up to 50 GB as one file, and a
// float32 checkpoint larger than the memory that loads in bf16, or any file export streams, then could not be read.
// Pages are read from the file as touched and only a page written is charged; strict overcommit (mode 2) still
// charges the whole mapping (io/safetensors.ts says so).
std::shared_ptr<MappedFile> mapWholeFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block the open
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    throw std::runtime_error("cannot stat " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    throw std::runtime_error("cannot map " + path + ": not a regular file");
  }
  auto m = std::make_shared<MappedFile>();
  m->size = static_cast<size_t>(st.st_size);
  if (m->size > 0) {
    void* p = mmap(nullptr, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
      close(fd);
      m->size = 0;
      throw std::runtime_error("cannot mmap " + path + ": " + std::strerror(errno));
    }
    m->addr = p;
  }
  close(fd);
  if (m->size > 0) {
    std::lock_guard<std::mutex> lock(g_map_mutex);
    g_mappings[reinterpret_cast<uintptr_t>(m->addr)] = m;
  }
  if (m->size > 0) publishMapping(m->addr, m->size, path);
  return m;
}

// A Buffer over [offset, offset + len) of a mapping, keeping the mapping alive while it lives. `maxBytes` is the
// largest Buffer Node.js makes (buffer.constants.MAX_LENGTH, 4 GiB in Node 20): past it Node frees the finalizer's
// data itself on failure and node-addon-api frees it again (a double free, seen on a 4.7 GB shard), so a longer
// range is refused here, before any Buffer is made.
Napi::Value mappedBuffer(Napi::Env env, const std::shared_ptr<MappedFile>& m, size_t offset, size_t len,
                         double maxBytes, const std::string& path) {
  if (static_cast<double>(len) > maxBytes)
    throw std::runtime_error("cannot map " + std::to_string(len) + " bytes of " + path + " as one Buffer (at most " +
                             std::to_string(static_cast<uint64_t>(maxBytes)) + ")");
  if (offset > m->size || len > m->size - offset)
    throw std::runtime_error("range [" + std::to_string(offset) + ", " + std::to_string(offset + len) +
                             ") is past the end of " + path + " (" + std::to_string(m->size) + " bytes)");
  if (len == 0) return Napi::Buffer<uint8_t>::New(env, 0);
  auto* holder = new std::shared_ptr<MappedFile>(m);
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(m->addr) + offset, len,
                                    [](Napi::Env, uint8_t*, std::shared_ptr<MappedFile>* h) { delete h; }, holder);
}

OP(mmapFile, "(file: string, maxBytes: number): Buffer") {
  std::string path = S(info, 0);
  auto m = mapWholeFile(path);
  return mappedBuffer(ENV, m, 0, m->size, D(info, 1), path);
}

// Buffers over byte ranges of one mapping of the file (ranges: [offset0, length0, offset1, length1, ...]), for a
// file larger than one Buffer may be (a 5 GB safetensors shard): each tensor gets its own view, none a copy.
OP(mmapRanges, "(file: string, ranges: number[], maxBytes: number): Buffer[]") {
  std::string path = S(info, 0);
  auto ranges = IL(info, 1);
  double maxBytes = D(info, 2);
  if (ranges.size() % 2 != 0) throw std::invalid_argument("ranges must be [offset, length] pairs");
  for (auto r : ranges)
    if (r < 0) throw std::invalid_argument("ranges must not be negative");
  auto m = mapWholeFile(path);
  auto out = Napi::Array::New(ENV, ranges.size() / 2);
  for (size_t i = 0; i < ranges.size() / 2; i++)
    out.Set(static_cast<uint32_t>(i), mappedBuffer(ENV, m, static_cast<size_t>(ranges[2 * i]),
                                                   static_cast<size_t>(ranges[2 * i + 1]), maxBytes, path));
  return out;
}

// GGUF q8_0 blocks of `src` (a multiple of 32 float32 values, or bfloat16 bits) written into `out` (34 bytes a
// block): the bytes of src/io/gguf.ts quantizeQ8_0Js, in SIMD lanes (quant.cc). No tensor: the export's parts are
// plain typed arrays.
template <typename T>
Napi::Value quantizeQ8_0Op(const Napi::CallbackInfo& info, napi_typedarray_type type, const char* typeName,
                           void (*quantize)(const T*, int64_t, uint8_t*)) {
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != type)
    argError(0, std::string("a ") + typeName);
  if (info.Length() < 2 || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    argError(1, "a Uint8Array");
  auto src = info[0].As<Napi::TypedArray>();
  auto out = info[1].As<Napi::TypedArray>();
  size_t n = src.ElementLength();
  if (n % 32 != 0) throw std::invalid_argument("q8_0 needs a multiple of 32 values, got " + std::to_string(n));
  if (out.ByteLength() != n / 32 * 34)
    throw std::invalid_argument("q8_0 of " + std::to_string(n) + " values is " + std::to_string(n / 32 * 34) +
                                " bytes, out has " + std::to_string(out.ByteLength()));
  const auto* x = reinterpret_cast<const T*>(static_cast<const uint8_t*>(src.ArrayBuffer().Data()) + src.ByteOffset());
  auto* y = static_cast<uint8_t*>(out.ArrayBuffer().Data()) + out.ByteOffset();
  quantize(x, static_cast<int64_t>(n / 32), y);
  return info.Env().Undefined();
}
OP(quantizeQ8_0, "(src: Float32Array, out: Uint8Array): void") {
  return quantizeQ8_0Op<float>(info, napi_float32_array, "Float32Array", gv::quantizeQ8_0);
}
OP(quantizeQ8_0Bf16, "(src: Uint16Array, out: Uint8Array): void") {
  return quantizeQ8_0Op<uint16_t>(info, napi_uint16_array, "Uint16Array", gv::quantizeQ8_0Bf16);
}

// The pages of a file mapping that only `t` reads, handed back to the kernel once its values were copied elsewhere
// (models/linear.ts LinearGroup copies q/k/v and gate/up side by side): touched pages of a mapping count in the
// process's RSS as long as the mapping lives. Only whole pages inside t; the mapping is private, so a later read
// of that range (nothing should) gets the file's bytes again. Returns the bytes released (0: not mapped).
OP(releaseMappedPages, "(t: N): number") {
  const auto& t = T(info, 0);
  if (!t.defined() || !t.is_cpu() || !t.is_contiguous() || t.nbytes() == 0) return Napi::Number::New(ENV, 0);
  auto* p = static_cast<uint8_t*>(t.data_ptr());
  size_t len = t.nbytes();
  if (!findMapping(p, len)) return Napi::Number::New(ENV, 0);
  auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t a = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  uintptr_t b = (reinterpret_cast<uintptr_t>(p) + len) / page * page;
  if (b <= a || madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED) != 0) return Napi::Number::New(ENV, 0);
  return Napi::Number::New(ENV, static_cast<double>(b - a));
}

// ---------------------------------------------------------------- fused decoder ops (fused.cc)
OP(rmsNorm, "(x: N, w: N, eps: number, onePlus: boolean): N") {
  RET(gv::rmsNorm(T(info, 0), T(info, 1), D(info, 2), B(info, 3)));
}
OP(rope, "(x: N, cos: N, sin: N, groups: number): N") { RET(gv::rope(T(info, 0), T(info, 1), T(info, 2), I(info, 3))); }
OP(gatedAct, "(g: N, u: N, act: string): N") { RET(gv::gatedAct(T(info, 0), T(info, 1), S(info, 2))); }
OP(splitColumns, "(y: N, sizes: number[]): N[]") { return wrapList(ENV, gv::splitColumns(T(info, 0), IL(info, 1))); }
OP(frozenLinear, "(x: N, w: N, b?: N | null): N") { RET(gv::frozenLinear(T(info, 0), T(info, 1), OptT(info, 2))); }
Napi::Value countBytes(Napi::Env env, std::pair<int64_t, int64_t> r) {
  auto out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, static_cast<double>(r.first)));
  out.Set(1u, Napi::Number::New(env, static_cast<double>(r.second)));
  return out;
}
OP(frozenLinearGradOnly, "(x: N, w: N, b: N | null, copy: boolean): N") {
  RET(gv::frozenLinearGradOnly(T(info, 0), T(info, 1), OptT(info, 2), B(info, 3)));
}
// The allocator's blocks kept for reuse (cpu_cache.cc), handed back: the bytes released
OP(releaseIdleMemory, "(): number") { return Napi::Number::New(ENV, static_cast<double>(gv::releaseIdleMemory())); }
OP(frozenLinearCache, "(clear: boolean): [number, number]") { return countBytes(ENV, gv::frozenLinearCache(B(info, 0))); }
OP(frozenLinearRelease, "(weights: N[]): [number, number]") {
  return countBytes(ENV, gv::frozenLinearRelease(TL(info, 0)));
}
OP(attention,
   "(q: N, k: N, v: N, scale: number, past: number, window: number, keyMask: N | null, softcap: number): N") {
  auto keyMask = OptT(info, 6);
  RET(gv::attention(T(info, 0), T(info, 1), T(info, 2), D(info, 3), I(info, 4), I(info, 5),
                    keyMask ? *keyMask : torch::Tensor(), D(info, 7)));
}
OP(clusterRowUpdate, "(y: N, x: N, U: N, rows: N, clusters: N): N") {
  RET(gv::clusterRowUpdate(T(info, 0), T(info, 1), T(info, 2), T(info, 3), T(info, 4)));
}
OP(setKernelMode, "(mode: string): void") {
  gv::setKernelMode(S(info, 0));
  return ENV.Undefined();
}
OP(kernelMode, "(): string") { return Napi::String::New(ENV, gv::kernelMode()); }

// ---------------------------------------------------------------- host <-> device
OP(pinMemory, "(t: N): N") { RET(T(info, 0).pin_memory()); }
OP(isPinned, "(t: N): boolean") { return Napi::Boolean::New(ENV, T(info, 0).is_pinned()); }
OP(copyToDeviceAsync, "(t: N, device: string): N") { RET(T(info, 0).to(DEV(info, 1), /*non_blocking=*/true)); }
// Waits for the device's queued work (copies included); nothing to wait for on the CPU.
OP(synchronize, "(device: string): void") {
  auto d = DEV(info, 0);
  if (d.is_cuda()) torch::cuda::synchronize(d.has_index() ? d.index() : -1);
  return ENV.Undefined();
}

// ---------------------------------------------------------------- op profile
OP(opProfileStart, "(shapes: boolean): void") {
  gv::opProfileStart(B(info, 0));
  return ENV.Undefined();
}

OP(opProfileStop,
   "(): { name: string; shapes: string; backward: boolean; calls: number; totalNs: number; selfNs: number }[]") {
  auto rows = gv::opProfileStop();
  auto arr = Napi::Array::New(ENV, rows.size());
  for (size_t i = 0; i < rows.size(); i++) {
    auto o = Napi::Object::New(ENV);
    o.Set("name", rows[i].name);
    o.Set("shapes", rows[i].shapes);
    o.Set("backward", rows[i].backward);
    o.Set("calls", static_cast<double>(rows[i].calls));
    o.Set("totalNs", static_cast<double>(rows[i].totalNs));
    o.Set("selfNs", static_cast<double>(rows[i].selfNs));
    arr.Set(static_cast<uint32_t>(i), o);
  }
  return arr;
}

// ---------------------------------------------------------------- gradient norm
OP(sumOfSquares, "(ts: N[]): number") { return Napi::Number::New(ENV, gv::sumOfSquares(TL(info, 0))); }

// ---------------------------------------------------------------- identification's gradient reduction
OP(meanAbsOverTime, "(g: N, lengths: N): N") {
  auto g = T(info, 0);
  auto out = torch::empty({g.dim() == 3 ? g.size(0) : 0, g.dim() == 3 ? g.size(2) : 0},
                          torch::TensorOptions().dtype(torch::kFloat32).device(g.device()));
  gv::meanAbsOverTimeInto(g, out, T(info, 1));
  RET(out);
}
OP(meanAbsKernelWidth, "(): number") { return Napi::Number::New(ENV, static_cast<double>(gv::meanAbsKernelWidth())); }
OP(meanAbsGradHook, "(y: N, out: N, lengths: N): void") {
  gv::registerMeanAbsGradHook(T(info, 0), T(info, 1), T(info, 2));
  return ENV.Undefined();
}

// ---------------------------------------------------------------- the SFT loss
OP(crossEntropySum, "(logits: N, targets: N): N") { RET(gv::crossEntropySum(T(info, 0), T(info, 1))); }

// ---------------------------------------------------------------- AdamW
// torch.optim.AdamW's update (train_ops.cc: one pass per parameter) with its state kept here: per parameter
// the step count and float32 moments, created on the parameter's first step with a gradient (as torch does).
class AdamWHandle : public Napi::ObjectWrap<AdamWHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeAdamW",
                       {InstanceMethod("step", &AdamWHandle::Step), InstanceMethod("stepParam", &AdamWHandle::StepParam),
                        InstanceMethod("zeroGrad", &AdamWHandle::ZeroGrad), InstanceMethod("setLr", &AdamWHandle::SetLr),
                        InstanceMethod("getState", &AdamWHandle::GetState),
                        InstanceMethod("setState", &AdamWHandle::SetState)});
  }
  // (params[], lr, beta1, beta2, eps, weightDecay, decays?: number[]): `decays`, when given, is each parameter's
  // own weight decay (torch's parameter groups: transformers' Trainer exempts biases and norm weights)
  explicit AdamWHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AdamWHandle>(info) {
    try {
      params_ = TL(info, 0);
      for (auto& p : params_)
        if (!p.is_leaf() || !p.requires_grad())
          throw std::invalid_argument("AdamW: every parameter must be a leaf tensor that requires grad");
      h_ = {D(info, 1), D(info, 2), D(info, 3), D(info, 4), D(info, 5)};
      decays_.assign(params_.size(), h_.weightDecay);
      if (!isNil(info, 6)) {
        if (!info[6].IsArray()) argError(6, "an array of weight decays, one per parameter");
        auto arr = info[6].As<Napi::Array>();
        if (arr.Length() != params_.size())
          throw std::invalid_argument("AdamW: " + std::to_string(arr.Length()) + " weight decays for " +
                                      std::to_string(params_.size()) + " parameters");
        for (uint32_t i = 0; i < arr.Length(); i++) {
          Napi::Value v = arr.Get(i);
          if (!v.IsNumber() || !(v.As<Napi::Number>().DoubleValue() >= 0)) argError(6, "weight decays >= 0");
          decays_[i] = v.As<Napi::Number>().DoubleValue();
        }
      }
      if (!(h_.lr >= 0)) throw std::invalid_argument("AdamW: invalid learning rate " + std::to_string(h_.lr));
      if (!(h_.beta1 >= 0 && h_.beta1 < 1) || !(h_.beta2 >= 0 && h_.beta2 < 1))
        throw std::invalid_argument("AdamW: betas must be in [0, 1)");
      if (!(h_.eps >= 0)) throw std::invalid_argument("AdamW: invalid epsilon " + std::to_string(h_.eps));
      states_.resize(params_.size());
    } catch (...) {
      rethrowAsJs(info.Env());
    }
  }

 private:
  struct State {
    int64_t step = 0;
    torch::Tensor m, v;
  };

  template <typename F>
  Napi::Value run(const Napi::CallbackInfo& info, F f) {
    try {
      return f();
    } catch (...) {
      rethrowAsJs(info.Env());
    }
  }
  State& initState(size_t i) {
    auto& s = states_[i];
    const auto& p = params_[i];
    if (!s.m.defined()) {
      s.m = torch::zeros(p.sizes(), p.options().requires_grad(false));
      s.v = torch::zeros(p.sizes(), p.options().requires_grad(false));
    }
    return s;
  }
  void update(size_t i, const torch::Tensor& g, const torch::Tensor& copy, double scale) {
    auto& s = initState(i);
    s.step++;
    gv::adamwUpdate(params_[i], g, s.m, s.v, s.step, hyper(i), scale, copy);
  }
  gv::AdamWHyper hyper(size_t i) const {
    gv::AdamWHyper h = h_;
    h.weightDecay = decays_[i];
    return h;
  }
  double scaleArg(const Napi::CallbackInfo& info, size_t i) {
    double scale = isNil(info, i) ? 1.0 : D(info, i);
    if (!std::isfinite(scale)) argError(i, "a finite gradient scale");
    return scale;
  }
  // (gradScale = 1): every parameter with a gradient, its gradient multiplied by gradScale (clipping). Those the
  // fused kernel takes (a GPU's) go in one call per device and dtype instead of a few launches each.
  Napi::Value Step(const Napi::CallbackInfo& info) {
    return run(info, [&]() -> Napi::Value {
      double scale = scaleArg(info, 0);
      std::vector<std::vector<size_t>> groups;
      for (size_t i = 0; i < params_.size(); i++) {
        const auto& p = params_[i];
        const auto& g = p.grad();
        if (!g.defined()) continue;
        if (!gv::adamwTakesFused(p, g)) {
          update(i, g, torch::Tensor(), scale);
          continue;
        }
        auto same = [&](const std::vector<size_t>& grp) {
          const auto& q = params_[grp[0]];
          return q.device() == p.device() && q.scalar_type() == p.scalar_type() && decays_[grp[0]] == decays_[i];
        };
        auto it = std::find_if(groups.begin(), groups.end(), same);
        if (it == groups.end())
          groups.push_back({i});
        else
          it->push_back(i);
      }
      for (const auto& grp : groups) {
        std::vector<torch::Tensor> ps, gs, ms, vs;
        std::vector<int64_t> steps;
        for (size_t i : grp) {
          auto& s = initState(i);
          ps.push_back(params_[i]);
          gs.push_back(params_[i].grad());
          ms.push_back(s.m);
          vs.push_back(s.v);
          steps.push_back(s.step + 1);
        }
        gv::adamwFused(ps, gs, ms, vs, steps, hyper(grp[0]), scale);
        for (size_t i : grp) states_[i].step++;  // counted once the step is done, as update() leaves it
      }
      return info.Env().Undefined();
    });
  }
  // (index, grad, copy | null, gradScale): parameter `index` with this gradient (a float32 master stepped from its
  // bf16 weight's gradient); `copy` receives the updated values rounded to its dtype
  Napi::Value StepParam(const Napi::CallbackInfo& info) {
    return run(info, [&]() -> Napi::Value {
      int64_t i = I(info, 0);
      if (i < 0 || i >= static_cast<int64_t>(params_.size())) argError(0, "a parameter index");
      torch::Tensor copy;
      if (!isNil(info, 2)) copy = T(info, 2);
      update(static_cast<size_t>(i), T(info, 1), copy, scaleArg(info, 3));
      return info.Env().Undefined();
    });
  }
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    return run(info, [&]() -> Napi::Value {
      // set_to_none: the next backward allocates fresh gradients, as torch >= 2 does by default.
      for (auto& p : params_) p.mutable_grad() = torch::Tensor();
      return info.Env().Undefined();
    });
  }
  Napi::Value SetLr(const Napi::CallbackInfo& info) {
    return run(info, [&]() -> Napi::Value {
      h_.lr = D(info, 0);
      return info.Env().Undefined();
    });
  }
  // -> [{step, expAvg, expAvgSq} | null] per parameter, for checkpoints.
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    return run(info, [&]() -> Napi::Value {
      auto env = info.Env();
      auto arr = Napi::Array::New(env, params_.size());
      for (size_t i = 0; i < params_.size(); i++) {
        const auto& s = states_[i];
        if (!s.m.defined()) {
          arr.Set(static_cast<uint32_t>(i), env.Null());
          continue;
        }
        auto o = Napi::Object::New(env);
        o.Set("step", Napi::Number::New(env, static_cast<double>(s.step)));
        o.Set("expAvg", wrap(env, s.m.clone()));
        o.Set("expAvgSq", wrap(env, s.v.clone()));
        arr.Set(static_cast<uint32_t>(i), o);
      }
      return arr;
    });
  }
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    return run(info, [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsArray()) argError(0, "an array of states");
      auto arr = info[0].As<Napi::Array>();
      if (arr.Length() != params_.size()) throw std::invalid_argument("AdamW.setState: one entry per parameter");
      std::vector<State> next(params_.size());
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value v = arr.Get(i);
        if (v.IsNull() || v.IsUndefined()) continue;
        if (!v.IsObject()) argError(0, "state objects");
        auto o = v.As<Napi::Object>();
        Napi::Value ea = o.Get("expAvg"), es = o.Get("expAvgSq"), st = o.Get("step");
        const char* want = "{step: number, expAvg: tensor, expAvgSq: tensor}";
        if (!st.IsNumber() || !isInt64(st.As<Napi::Number>().DoubleValue()) || st.As<Napi::Number>().DoubleValue() < 0)
          argError(0, want);
        auto expAvg = tensorAt(info.Env(), ea, 0, want);
        auto expAvgSq = tensorAt(info.Env(), es, 0, want);
        if (!expAvg.sizes().equals(params_[i].sizes()) || !expAvgSq.sizes().equals(params_[i].sizes()))
          throw std::invalid_argument("AdamW.setState: state " + std::to_string(i) + " has the wrong shape");
        auto opts = params_[i].options().requires_grad(false);
        next[i].step = static_cast<int64_t>(st.As<Napi::Number>().DoubleValue());
        next[i].m = expAvg.detach().to(opts).clone(at::MemoryFormat::Contiguous);
        next[i].v = expAvgSq.detach().to(opts).clone(at::MemoryFormat::Contiguous);
      }
      states_ = std::move(next);
      return info.Env().Undefined();
    });
  }

  std::vector<torch::Tensor> params_;
  std::vector<State> states_;
  gv::AdamWHyper h_{};
  std::vector<double> decays_;  // each parameter's weight decay
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  installBusHandler();
  auto* d = new AddonData();
  env.SetInstanceData<AddonData>(d);
  auto actor = AdamWHandle::Define(env);
  d->adamCtor = Napi::Persistent(actor);
  d->arrayBufferCtor = Napi::Persistent(env.Global().Get("ArrayBuffer").As<Napi::Function>());
  exports.Set("AdamW", actor);
  auto signatures = Napi::Object::New(env);
  for (const auto& op : opTable()) {
    if (exports.Has(op.name)) throw Napi::Error::New(env, std::string("goodvibe addon: op declared twice: ") + op.name);
    exports.Set(op.name, Napi::Function::New(env, op.fn, op.name));
    signatures.Set(op.name, op.signature);
  }
  exports.Set("opSignatures", signatures);
  return exports;
}

}  // namespace

NODE_API_MODULE(goodvibe_torch, Init)
