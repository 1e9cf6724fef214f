// A caching CPU allocator for libtorch, installed when the addon loads (issue 13 §1).
//
// Why: libtorch's default CPU allocator is posix_memalign/free. glibc serves the large blocks of a decoder pass
// (activations and their gradients, 0.5-10 MB each) from fresh mmaps or trims them from the heap when freed, so
// every pass first-touches ~0.9 GB of new pages at the Qwen2.5-0.5B shape: ~1.4 M page faults per 6 passes, each
// page zeroed by the kernel, ~10% of the identification pass (BENCHMARKS §5). A pass allocates the same sizes
// every time, so freed blocks of >= 256 KiB are kept per exact size (rounded to 4 KiB) and handed out again.
//
// Opt-in: GOODVIBE_CPU_CACHE_MB=N (e.g. 256) keeps at most N MiB cached; unset or 0 leaves libtorch's allocator
// in place. Measured on the identification pass at a fixed 256 tokens (BENCHMARKS §5): page faults 1.43 M -> 0.66 M
// per 6 passes, the pass 6% faster, peak RSS unchanged at 256 MiB (+0.13 GiB at 512, +0.38 GiB at 1024). Not the
// default: real identification batches change length every batch, where exact sizes rarely match, and the
// identification memory test (test/scale/identify-memory) has not been run with it. A block freed beyond the cap
// goes back to the system, and a request that finds no block of its size while more than half the cap is cached
// first releases the oldest cached blocks down to half, so workloads whose sizes keep changing (generation with a
// growing KV cache) do not pin stale memory.
// Small blocks go to libtorch's allocator unchanged.
//
// Large blocks on transparent huge pages (default on; GOODVIBE_HUGE_BLOCKS=0 turns it off). glibc maps every block
// of 32 MiB or more (its largest mmap threshold) afresh and unmaps it at free, so such a block's first touch is one
// page fault and one zeroed page per 4 KiB: a training step's logits and their gradient ([256, 151936] bf16, 78 MB
// each) are ~38 k faults per step, ~13% of a 4-layer GoodVibe step on a Zen 5 core (BENCHMARKS "Issue 13 §1 on an
// AMD Zen 5"). Those blocks are mapped here instead, 2 MiB-aligned, with madvise(MADV_HUGEPAGE) (this kernel's THP
// setting is "madvise" on Debian); the kernel falls back to 4 KiB pages where it has no huge page to give.
// A freed one stays mapped for the next request it can hold (from the smallest that fits; a rest of 32 MiB or more
// stays idle on its own), up to 256 MiB of them (GOODVIBE_HUGE_CACHE_MB=N, 0 = unmap at free; the smallest go
// first when over), so at most that much more, plus under 32 MiB a block in use, is resident than with every block
// unmapped at free. Unmapped, its huge pages went back to the kernel and were granted, zeroed, again at every
// micro-batch, and on a VM whose balloon takes back free memory (free page reporting: this Firecracker VM reports
// free 8 MiB blocks) each came back through the host, so the GoodVibe micro-batch slowed from 2.95 to 3.3 s within
// a minute of training, its system time 0.01 -> 0.4 s (BENCHMARKS "The recipe's micro-batch: freed huge blocks").
// releaseIdleMemory hands them back when a model's products end (before a run's fold).
//
// glibc's heap keeps up to 256 MiB of freed memory (default; GOODVIBE_HEAP_TRIM_MB=N sets N, 0 leaves glibc's
// defaults, and a GLIBC_TUNABLES that sets glibc.malloc.* wins). With its defaults glibc gives the top of its heap
// back to the system whenever more than twice its current mmap threshold (a few MiB to 64 MiB) lies free there,
// which a pass's backward reaches again and again as it frees activations; the next allocations fault the same
// pages in afresh (~8 k faults per 4-layer training step on a Zen 5 core, perf -e page-faults; under 100 with this).
// Here the heap is trimmed only past 256 MiB free at its top, and the mmap threshold is fixed at glibc's own
// maximum, 32 MiB (blocks that large are the huge blocks above). Measured (BENCHMARKS "Issue 13 §1 on an AMD
// Zen 5"): the 4-layer GoodVibe step 0.92-0.95x the time, the identification pass 0.94-0.96x, peak RSS about
// unchanged (1.08 -> 1.09-1.10 / 2.22-2.23 -> 2.23-2.24 GiB); memory freed between steps stays resident, up to
// 256 MiB more than before.
#include "cpu_cache.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#define GV_HUGE_BLOCKS 1
#else
#define GV_HUGE_BLOCKS 0
#endif

namespace gv {
namespace {

constexpr size_t kMinCached = 256 * 1024;
constexpr size_t kPage = 4096;
constexpr size_t kAlign = 64;  // c10's gAlignment

struct Cache {
  std::mutex mu;
  std::unordered_map<void*, size_t> live;              // blocks handed out -> their size
  std::unordered_map<size_t, std::vector<void*>> free;  // block size -> cached blocks (LIFO: warm ones first)
  std::deque<std::pair<size_t, void*>> order;            // cached blocks, oldest first (may hold taken ones)
  size_t cached = 0, cap = 0;

  void* take(size_t size) {
    std::lock_guard<std::mutex> g(mu);
    auto it = free.find(size);
    if (it != free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached -= size;
      return p;
    }
    if (cached > cap / 2) releaseOldest(cached - cap / 2);  // a miss: sizes change, stale blocks go first
    return nullptr;
  }
  /** Keeps the block; false when the cache is full (the caller frees it). */
  bool put(void* base, size_t size) {
    std::lock_guard<std::mutex> g(mu);
    if (cached + size > cap) return false;
    free[size].push_back(base);
    order.emplace_back(size, base);
    cached += size;
    if (order.size() > 4 * 4096) compactOrder();
    return true;
  }
  // Releases cached blocks, oldest first, until `bytes` are gone (called with the lock held).
  void releaseOldest(size_t bytes) {
    size_t done = 0;
    while (done < bytes && !order.empty()) {
      auto [size, p] = order.front();
      order.pop_front();
      auto& v = free[size];
      for (size_t i = 0; i < v.size(); i++)
        if (v[i] == p) {
          v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
          cached -= size;
          done += size;
          std::free(p);
          break;
        }
    }
  }
  // Drops entries of `order` for blocks that were taken again (called with the lock held).
  void compactOrder() {
    std::unordered_map<void*, bool> present;
    for (auto& [size, v] : free)
      for (void* p : v) present[p] = true;
    std::deque<std::pair<size_t, void*>> kept;
    for (auto& e : order)
      if (present.erase(e.second)) kept.push_back(e);
    order.swap(kept);
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during exit
  return *c;
}

c10::DeleterFnPtr g_fallbackDeleter = nullptr;

// ---------------------------------------------------------------- large blocks on huge pages
constexpr size_t kHugeMin = size_t(32) << 20;  // glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: mapped afresh anyway
constexpr size_t kHugePage = size_t(2) << 20;
bool g_huge = false;

struct HugeBlocks {
  std::mutex mu;
  std::unordered_map<void*, size_t> live;  // block -> mapped length
  std::vector<std::pair<size_t, void*>> idle;  // freed blocks kept mapped: (mapped length, block)
  size_t idleBytes = 0, cap = 0;

  /**
   * len bytes from the smallest idle block that holds them, taken out of `idle` (null: none); the rest of that block
   * stays idle as a block of its own when it could hold a huge block (>= 32 MiB), else it goes with the block (so a
   * block handed out holds less than 32 MiB more than asked, and sizes that come and go keep their blocks whole).
   * Called with the lock held.
   */
  void* takeIdle(size_t len) {
    size_t best = idle.size();
    for (size_t i = 0; i < idle.size(); i++)
      if (idle[i].first >= len && (best == idle.size() || idle[i].first < idle[best].first)) best = i;
    if (best == idle.size()) return nullptr;
    auto [got, p] = idle[best];
    idle.erase(idle.begin() + static_cast<std::ptrdiff_t>(best));
    idleBytes -= got;
    if (got - len >= kHugeMin) {
      idle.emplace_back(got - len, static_cast<char*>(p) + len);
      idleBytes += got - len;
      got = len;
    }
    live[p] = got;
    return p;
  }
  /** Keeps a freed block mapped, the smallest idle ones unmapped first to stay within cap; false: unmap it. */
  bool keep(void* p, size_t len) {
    if (len > cap) return false;
    while (idleBytes + len > cap) {
      auto smallest = std::min_element(idle.begin(), idle.end());
      if (smallest->first > len) return false;  // the idle ones are the larger: they serve more requests
      munmap(smallest->second, smallest->first);
      idleBytes -= smallest->first;
      idle.erase(smallest);
    }
    idle.emplace_back(len, p);
    idleBytes += len;
    return true;
  }
};
HugeBlocks& hugeBlocks() {
  static HugeBlocks* h = new HugeBlocks();  // never destroyed: tensors may be freed during exit
  return *h;
}

/** A 2 MiB-aligned anonymous mapping of n bytes (rounded up to 2 MiB) advised for huge pages; null if mmap fails. */
void* hugeAlloc(size_t n) {
#if GV_HUGE_BLOCKS
  size_t len = (n + kHugePage - 1) / kHugePage * kHugePage;
  {
    HugeBlocks& h = hugeBlocks();
    std::lock_guard<std::mutex> g(h.mu);
    if (void* p = h.takeIdle(len)) return p;
  }
  void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto base = reinterpret_cast<uintptr_t>(raw);
  uintptr_t start = (base + kHugePage - 1) / kHugePage * kHugePage;
  if (start > base) munmap(raw, start - base);
  uintptr_t end = base + len + kHugePage;
  if (end > start + len) munmap(reinterpret_cast<void*>(start + len), end - (start + len));
  void* p = reinterpret_cast<void*>(start);
  madvise(p, len, MADV_HUGEPAGE);  // advice only: a refusal leaves ordinary pages
  HugeBlocks& h = hugeBlocks();
  std::lock_guard<std::mutex> g(h.mu);
  h.live[p] = len;
  return p;
#else
  (void)n;
  return nullptr;
#endif
}

/** Keeps p mapped for reuse or unmaps it if it is a huge block (true), else leaves it (false). */
bool hugeFree(void* p) {
#if GV_HUGE_BLOCKS
  size_t len = 0;
  {
    HugeBlocks& h = hugeBlocks();
    std::lock_guard<std::mutex> g(h.mu);
    auto it = h.live.find(p);
    if (it == h.live.end()) return false;
    len = it->second;
    h.live.erase(it);
    if (h.keep(p, len)) return true;
  }
  munmap(p, len);
  return true;
#else
  (void)p;
  return false;
#endif
}

// Deleter of every block this allocator hands out, and its raw_deleter (ideep's engine allocator frees through
// raw_deallocate): data pointer == context, the size comes from `live`. Small blocks came from the fallback.
void deleteBlock(void* p) {
  if (g_huge && hugeFree(p)) return;
  Cache& c = cache();
  size_t size = 0;
  {
    std::lock_guard<std::mutex> g(c.mu);
    auto it = c.live.find(p);
    if (it != c.live.end()) {
      size = it->second;
      c.live.erase(it);
    }
  }
  if (size == 0) {
    g_fallbackDeleter(p);
    return;
  }
  if (!c.put(p, size)) std::free(p);
}

struct CachingCpuAllocator final : public c10::Allocator {
  c10::Allocator* fallback;
  explicit CachingCpuAllocator(c10::Allocator* f) : fallback(f) {}

  // Allocator::allocate is const in libtorch 1.x and not in 2.x (which also adds the pure copy_data): both
  // overloads and copy_data, without `override`, so the one each version declares is the one overridden
  c10::DataPtr allocate(size_t n) { return static_cast<const CachingCpuAllocator*>(this)->allocate(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DataPtr allocate(size_t n) const {
    if (g_huge && n >= kHugeMin)
      if (void* p = hugeAlloc(n)) return {p, p, &deleteBlock, c10::Device(c10::DeviceType::CPU)};
    if (n < kMinCached || cache().cap == 0)  // raw_deallocate of these reaches deleteBlock's fallback
      return fallback->allocate(n);
    size_t size = (n + kPage - 1) / kPage * kPage;
    Cache& c = cache();
    void* p = c.take(size);
    if (!p && posix_memalign(&p, kAlign, size) != 0) throw std::bad_alloc();
    {
      std::lock_guard<std::mutex> g(c.mu);
      c.live[p] = size;
    }
    return {p, p, &deleteBlock, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &deleteBlock; }
};

/** glibc's trim threshold and a fixed mmap threshold (see the file comment); false where left alone. */
bool tuneHeap() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "glibc.malloc.")) return false;  // the user's own malloc settings win
  const char* env = std::getenv("GOODVIBE_HEAP_TRIM_MB");
  long mb = env && *env ? std::strtol(env, nullptr, 10) : 256;
  if (mb <= 0) return false;
  // setting either threshold ends glibc's dynamic mmap threshold, so both are set: blocks below 32 MiB from the heap
  return mallopt(M_MMAP_THRESHOLD, static_cast<int>(kHugeMin)) == 1 &&
         mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min<long>(mb, 2047) << 20)) == 1;
#else
  return false;
#endif
}

[[maybe_unused]] const bool g_heapTuned = tuneHeap();

bool install() {
  const char* env = std::getenv("GOODVIBE_CPU_CACHE_MB");
  long mb = env && *env ? std::strtol(env, nullptr, 10) : 0;
  const char* hugeEnv = std::getenv("GOODVIBE_HUGE_BLOCKS");
  bool huge = GV_HUGE_BLOCKS && !(hugeEnv && std::strcmp(hugeEnv, "0") == 0);
  if (mb <= 0 && !huge) return false;
  c10::Allocator* fallback = c10::GetCPUAllocator();
  g_fallbackDeleter = fallback->raw_deleter();
  if (!g_fallbackDeleter) return false;  // a fallback without a raw deleter: leave it alone
  g_huge = huge;
  const char* keepEnv = std::getenv("GOODVIBE_HUGE_CACHE_MB");
  long keepMb = keepEnv && *keepEnv ? std::strtol(keepEnv, nullptr, 10) : 256;
  hugeBlocks().cap = keepMb > 0 ? static_cast<size_t>(keepMb) << 20 : 0;
  cache().cap = mb > 0 ? static_cast<size_t>(mb) * 1024 * 1024 : 0;
  static auto* alloc = new CachingCpuAllocator(fallback);  // never destroyed: tensors may be made during exit
  c10::SetCPUAllocator(alloc, /*priority=*/1);
  return true;
}

[[maybe_unused]] const bool g_installed = install();

}  // namespace

size_t releaseIdleMemory() {
  size_t bytes = 0;
#if GV_HUGE_BLOCKS
  {
    HugeBlocks& h = hugeBlocks();
    std::lock_guard<std::mutex> g(h.mu);
    for (auto& [len, p] : h.idle) munmap(p, len);
    bytes += h.idleBytes;
    h.idle.clear();
    h.idleBytes = 0;
  }
#endif
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> g(c.mu);
    bytes += c.cached;
    c.releaseOldest(c.cached);
  }
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  return bytes;
}

}  // namespace gv
