// GGUF's q8_0 blocks (src/io/gguf.ts quantizeQ8_0Js is the same in JavaScript): per 32 float32 values,
// d = amax / 127, id = d ? 1/d : 0, q = roundf(x * id), d stored as f16, all in float32 as ggml's
// quantize_row_q8_0_ref computes it, so the bytes are those of the JavaScript and of ggml's own C
// (test/gguf/convert-exact.test.ts checks both against it). No libtorch here: a GGUF export quantizes every weight
// (7e9 values for a 7B model), and this runs them in SIMD lanes.
#include "quant.h"

#include <cmath>
#include <cstring>

#include "simd.h"

namespace gv {
namespace {

// IEEE half bits of the float32 whose bits are `b`, round to nearest even (src/io/gguf.ts halfBits, line for line).
uint16_t halfBits(uint32_t b) {
  const uint32_t sign = (b >> 16) & 0x8000;
  const uint32_t a = b & 0x7fffffff;
  if (a >= 0x47800000) return a > 0x7f800000 ? sign | 0x7e00 | ((a >> 13) & 0x3ff) : sign | 0x7c00;
  if (a >= 0x38800000) return sign | ((a - 0x37fff001 + ((a >> 13) & 1)) >> 13);
  const uint32_t exp = a >> 23;
  if (exp < 102) return sign;
  const uint32_t mant = (a & 0x7fffff) | 0x800000;
  const uint32_t shift = 126 - exp;
  uint32_t h = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1))) h++;
  return static_cast<uint16_t>(sign | h);
}

}  // namespace

// One block of 32 float32 values `x` into 34 bytes. The loops are plain C++ that GCC vectorises in each clone of its
// callers (no fast-math: every operation is the float32 one): amax as the largest |x|'s bits (an integer max:
// non-negative floats order as their bits do), and roundf as the truncation t of v (exact below 2^31) moved one away
// from zero when the exact remainder v - t reaches ±0.5.
GV_INLINE void quantizeBlock(const float* __restrict x, uint8_t* __restrict out) {
  int32_t bits[32];
  std::memcpy(bits, x, sizeof bits);
  int32_t m = 0;
  for (int j = 0; j < 32; j++) {
    const int32_t a = bits[j] & 0x7fffffff;
    m = a > m ? a : m;
  }
  int8_t* q = reinterpret_cast<int8_t*>(out + 2);
  if (m >= 0x7f800000) {  // inf or NaN (a checked model folder has none): d = inf or NaN, q = 0, as in gguf.ts
    out[0] = 0;
    out[1] = m > 0x7f800000 ? 0x7e : 0x7c;
    std::memset(q, 0, 32);
    return;
  }
  float amax;
  std::memcpy(&amax, &m, 4);
  const float d = amax / 127;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  uint32_t dBits;
  std::memcpy(&dBits, &d, 4);
  const uint16_t h = halfBits(dBits);
  out[0] = static_cast<uint8_t>(h & 0xff);
  out[1] = static_cast<uint8_t>(h >> 8);
  if (std::isinf(id)) {  // amax < 127 * 2^-128: q = 0, as the JavaScript's (inf * x) | 0 and x86-64's C give
    std::memset(q, 0, 32);
    return;
  }
  for (int j = 0; j < 32; j++) {
    const float v = x[j] * id;
    const int32_t t = static_cast<int32_t>(v);
    const float r = v - static_cast<float>(t);
    q[j] = static_cast<int8_t>(t + (r >= 0.5f ? 1 : 0) - (r <= -0.5f ? 1 : 0));
  }
}

GV_CLONES void quantizeQ8_0(const float* __restrict x, int64_t nBlocks, uint8_t* __restrict out) {
  for (int64_t b = 0; b < nBlocks; b++) quantizeBlock(x + 32 * b, out + 34 * b);
}

// A bfloat16 is the top half of a float32, so its float32 value (the bits shifted up) is exact: the same bytes as
// quantizeQ8_0 of the values read into float32, without the float32 copy of the whole part.
GV_CLONES void quantizeQ8_0Bf16(const uint16_t* __restrict x, int64_t nBlocks, uint8_t* __restrict out) {
  constexpr int64_t CHUNK = 64;  // blocks widened at a time (8 KiB of float32 on the stack)
  alignas(64) uint32_t bits[CHUNK * 32];
  for (int64_t b0 = 0; b0 < nBlocks; b0 += CHUNK) {
    const int64_t nb = nBlocks - b0 < CHUNK ? nBlocks - b0 : CHUNK;
    const uint16_t* xs = x + 32 * b0;
    for (int64_t i = 0; i < nb * 32; i++) bits[i] = static_cast<uint32_t>(xs[i]) << 16;
    float v[CHUNK * 32];
    std::memcpy(v, bits, static_cast<size_t>(nb) * 32 * sizeof(float));
    for (int64_t b = 0; b < nb; b++) quantizeBlock(v + 32 * b, out + 34 * (b0 + b));
  }
}

}  // namespace gv
