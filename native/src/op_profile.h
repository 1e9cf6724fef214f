// An op-level profile of everything libtorch runs between start and stop (op_profile.cc): per op name, how many
// calls and how much wall time, total and self (children's time taken out), forward and backward ops alike. It is
// what bench/op-profile.ts compares with PyTorch's own profiler on the reference side, op name by op name: which ops
// one side runs that the other does not, and where the time goes. Made from libtorch's RecordFunction callbacks,
// which every libtorch has (1.13 and 2.x alike; Debian's 1.13 is built without Kineto, so the Kineto profiler is not
// available everywhere).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gv {

struct OpProfileRow {
  std::string name;
  std::string shapes;  // "[1024x896, 896x3]" when recorded with shapes, else empty
  bool backward;  // recorded in the autograd engine's scope (an autograd node), not an op called directly
  int64_t calls;
  int64_t totalNs;
  int64_t selfNs;
};

/**
 * Starts recording (an error when a profile is already being recorded); `shapes`: each op's input shapes too, one
 * row per name, scope and shapes (what they cost: building a short string per op).
 */
void opProfileStart(bool shapes);
/** Stops recording and returns what was recorded, one row per (name, scope[, shapes]), largest self time first. */
std::vector<OpProfileRow> opProfileStop();

}  // namespace gv
