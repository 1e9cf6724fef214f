// What the CPU kernels of fused.cc and grad_reduce.cc share: GCC's 16-lane vector types over bf16 / float32
// (compiled once per instruction set with GV_CLONES and dispatched at run time), and the always-inline marker.
#pragma once

// The 16-lane vector helpers are always inlined, so the ABI note GCC gives for 64-byte vector arguments is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GV_CLONES
#endif
#define GV_INLINE inline __attribute__((always_inline))

namespace gv::simd {
using bf16_t = uint16_t;  // a bf16 value's bits
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef uint32_t vu __attribute__((vector_size(64)));
typedef uint16_t vh __attribute__((vector_size(32)));
constexpr int64_t VL = 16;  // lanes per vector
}  // namespace gv::simd
