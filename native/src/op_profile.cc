// libtorch is built with NDEBUG, and its RecordFunction then never sets the inputs_valid_ flag that the header's
// inputs() asserts on in a file compiled without it ("Called inputs() outside RecordFunction start callback", for
// every op). This file reads RecordFunctions that libtorch made, so it reads them as libtorch does. (The flag is a
// bool in padding: the struct's size and offsets are the same either way, 288 bytes on 1.13.)
#ifndef NDEBUG
#define NDEBUG
#endif
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
  std::string shapes;  // the inputs' shapes, when they are recorded
};

thread_local Frame* top = nullptr;

struct Totals {
  int64_t calls = 0, totalNs = 0, selfNs = 0;
};

std::mutex mu;
bool recording = false;
bool withShapes = false;
uint64_t generation = 0;  // a profile's frames are not mixed with an earlier profile's still open
at::CallbackHandle handle = 0;
std::unordered_map<std::string, Totals> rows;  // keyed by scope mark + name (+ kSep + shapes)
constexpr char kSep = '\x1f';

// "[1024x896, 896x3]": each input's sizes, empty for an input that is not a tensor or is 0-dim (as PyTorch's
// profiler's input_shapes list them; bench/torch_reference.py writes the same)
std::string shapesOf(const at::RecordFunction& fn) {
  std::string out = "[";
  auto in = fn.inputs();
  for (size_t i = 0; i < in.size(); i++) {
    if (i) out += ", ";
    if (!in[i].isTensor()) continue;
    const auto& t = in[i].toTensor();
    if (!t.defined()) continue;
    auto sz = t.sizes();
    for (size_t k = 0; k < sz.size(); k++) {
      if (k) out += "x";
      out += std::to_string(sz[k]);
    }
  }
  return out + "]";
}

std::unique_ptr<at::ObserverContext> onStart(const at::RecordFunction& fn) {
  if (fn.isAsync()) return nullptr;  // may end on another thread: no place in a stack
  auto f = std::make_unique<Frame>();
  bool shapes;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!recording) return nullptr;
    f->generation = generation;
    shapes = withShapes;
  }
  // an ATen op's inputs, as the dispatcher passes them (a user scope and an autograd node have none)
  if (shapes && fn.scope() == at::RecordScope::FUNCTION) f->shapes = shapesOf(fn);
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
  if (!f->shapes.empty()) key += kSep + f->shapes;
  std::lock_guard<std::mutex> lock(mu);
  if (!recording || f->generation != generation) return;
  auto& r = rows[key];
  r.calls++;
  r.totalNs += d;
  r.selfNs += d - f->childNs;
}

}  // namespace

void opProfileStart(bool shapes) {
  std::lock_guard<std::mutex> lock(mu);
  if (recording) throw std::invalid_argument("opProfileStart: a profile is already being recorded");
  rows.clear();
  generation++;
  recording = true;
  withShapes = shapes;
  handle = at::addGlobalCallback(at::RecordFunctionCallback(&onStart, &onEnd)
                                     .needsInputs(shapes)
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
  for (auto& [key, t] : taken) {
    auto sep = key.find(kSep);
    std::string name = key.substr(1, sep == std::string::npos ? std::string::npos : sep - 1);
    std::string shapes = sep == std::string::npos ? "" : key.substr(sep + 1);
    out.push_back({name, shapes, key[0] == 'b', t.calls, t.totalNs, t.selfNs});
  }
  std::sort(out.begin(), out.end(), [](const OpProfileRow& a, const OpProfileRow& b) {
    return a.selfNs != b.selfNs ? a.selfNs > b.selfNs : a.name != b.name ? a.name < b.name : a.shapes < b.shapes;
  });
  return out;
}

}  // namespace gv
