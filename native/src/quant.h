// GGUF's q8_0 quantization (quant.cc).
#pragma once

#include <cstdint>

namespace gv {
// `nBlocks` blocks of 32 float32 values of `x` as q8_0: 34 bytes each (f16 scale d, little-endian, then 32 int8 q).
void quantizeQ8_0(const float* __restrict x, int64_t nBlocks, uint8_t* __restrict out);
// The same of `nBlocks` blocks of 32 bfloat16 values (their bits).
void quantizeQ8_0Bf16(const uint16_t* __restrict x, int64_t nBlocks, uint8_t* __restrict out);
}  // namespace gv
