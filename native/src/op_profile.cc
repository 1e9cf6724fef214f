#include "op_profile.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace gv {
namespace {

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One open op on this thread: RecordFunction's start and end callbacks of nested ops run last in, first out on
// the thread that runs them, so an op's parent is the op open when it started.
struct Frame : at::ObserverContext {
  int64_t t0 = 0;
  int64_t childNs = 0;
  Frame* parent = nullptr;
  uint64_t generation = 0;
};

thread_local Frame* top = nullptr;

struct Totals {
  int64_t calls = 0, totalNs = 0, selfNs = 0;
};

std::mutex mu;
bool recording = false;
uint64_t generation = 0;  // a profile's frames are not mixed with an earlier profile's still open
at::CallbackHandle handle = 0;
std::unordered_map<std::string, Totals> rows;  // keyed by scope mark + name

std::unique_ptr<at::ObserverContext> onStart(const at::RecordFunction& fn) {
  if (fn.isAsync()) return nullptr;  // may end on another thread: no place in a stack
  auto f = std::make_unique<Frame>();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!recording) return nullptr;
    f->generation = generation;
  }
  f->parent = top && top->generation == f->generation ? top : nullptr;
  top = f.get();
  f->t0 = nowNs();
  return f;
}

void onEnd(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  int64_t t1 = nowNs();
  auto* f = static_cast<Frame*>(ctx);
  if (!f) return;
  if (top == f) top = f->parent;
  int64_t d = t1 - f->t0;
  if (f->parent) f->parent->childNs += d;
  std::string key = (fn.scope() == at::RecordScope::BACKWARD_FUNCTION ? "b" : "f") + std::string(fn.name());
  std::lock_guard<std::mutex> lock(mu);
  if (!recording || f->generation != generation) return;
  auto& r = rows[key];
  r.calls++;
  r.totalNs += d;
  r.selfNs += d - f->childNs;
}

}  // namespace

void opProfileStart() {
  std::lock_guard<std::mutex> lock(mu);
  if (recording) throw std::invalid_argument("opProfileStart: a profile is already being recorded");
  rows.clear();
  generation++;
  recording = true;
  handle = at::addGlobalCallback(at::RecordFunctionCallback(&onStart, &onEnd)
                                     .needsInputs(false)
                                     .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION,
                                              at::RecordScope::USER_SCOPE}));
}

std::vector<OpProfileRow> opProfileStop() {
  std::unordered_map<std::string, Totals> taken;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!recording) throw std::invalid_argument("opProfileStop: no profile is being recorded");
    recording = false;
    at::removeCallback(handle);
    handle = 0;
    taken.swap(rows);
  }
  std::vector<OpProfileRow> out;
  out.reserve(taken.size());
  for (auto& [key, t] : taken) out.push_back({key.substr(1), key[0] == 'b', t.calls, t.totalNs, t.selfNs});
  std::sort(out.begin(), out.end(), [](const OpProfileRow& a, const OpProfileRow& b) {
    return a.selfNs != b.selfNs ? a.selfNs > b.selfNs : a.name < b.name;
  });
  return out;
}

}  // namespace gv
