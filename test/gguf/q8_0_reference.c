/*
 * The q8_0 reference for test/gguf/convert-exact.test.ts: ggml's quantize_row_q8_0_ref (ggml-quants.c) and its
 * portable float32 -> float16 conversion (ggml-impl.h ggml_compute_fp32_to_fp16, from the FP16 library), copied as
 * they are, run on the blocks that q8Blocks() in the test makes (the same generator, written twice). It writes the
 * inputs (float32, little-endian) followed by their q8_0 blocks to stdout; the test holds the sha256 of that.
 *
 *   gcc -O2 -o /tmp/q8_0_reference test/gguf/q8_0_reference.c -lm && /tmp/q8_0_reference | sha256sum
 *
 * Where F16C is compiled in (-mf16c) the scale is also converted with _cvtss_sh, as ggml does on such CPUs, and the
 * program stops if the two disagree. Blocks whose d is so small that 1/d overflows float32 (amax < 127 * 2^-128)
 * give roundf(inf) converted to int8_t, undefined in C; x86-64's cvttss2si gives 0x80000000, whose low byte 0 the
 * assignment keeps (those blocks' f16 scale is 0 anyway: every value dequantizes to 0 whatever q is).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

#define QK8_0 32
#define MAX(a, b) ((a) > (b) ? (a) : (b))
typedef uint16_t ggml_fp16_t;
typedef struct {
  ggml_fp16_t d;
  int8_t qs[QK8_0];
} block_q8_0;

static inline float fp32_from_bits(uint32_t w) {
  float f;
  memcpy(&f, &w, 4);
  return f;
}
static inline uint32_t fp32_to_bits(float f) {
  uint32_t w;
  memcpy(&w, &f, 4);
  return w;
}

static inline ggml_fp16_t ggml_compute_fp32_to_fp16(float f) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
  const uint32_t w = fp32_to_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & UINT32_C(0x80000000);
  uint32_t bias = shl1_w & UINT32_C(0xFF000000);
  if (bias < UINT32_C(0x71000000)) bias = UINT32_C(0x71000000);
  base = fp32_from_bits((bias >> 1) + UINT32_C(0x07800000)) + base;
  const uint32_t bits = fp32_to_bits(base);
  const uint32_t exp_bits = (bits >> 13) & UINT32_C(0x00007C00);
  const uint32_t mantissa_bits = bits & UINT32_C(0x00000FFF);
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return (sign >> 16) | (shl1_w > UINT32_C(0xFF000000) ? UINT16_C(0x7E00) : nonsign);
}

static ggml_fp16_t fp32_to_fp16(float f) {
  ggml_fp16_t h = ggml_compute_fp32_to_fp16(f);
#ifdef __F16C__
  ggml_fp16_t h2 = _cvtss_sh(f, 0);
  if (h != h2) {
    fprintf(stderr, "fp16 of %a: portable 0x%04x, F16C 0x%04x\n", f, h, h2);
    exit(1);
  }
#endif
  return h;
}

void quantize_row_q8_0_ref(const float *restrict x, block_q8_0 *restrict y, int64_t k) {
  const int nb = k / QK8_0;
  for (int i = 0; i < nb; i++) {
    float amax = 0.0f; // absolute max
    for (int j = 0; j < QK8_0; j++) {
      const float v = x[i * QK8_0 + j];
      amax = MAX(amax, fabsf(v));
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) {
      const float x0 = x[i * QK8_0 + j] * id;
      y[i].qs[j] = roundf(x0);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The blocks (q8Blocks in convert-exact.test.ts makes the same ones)

static uint32_t s = 7;
static double rnd(void) {
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s / 4294967296.0;
}

#define N_RANDOM 16384
/* d = 2^e exactly (amax = 127 * 2^e): ties and their float32 neighbours at every kind of scale: below the one where
   1/d overflows (-130), float32-subnormal d (-127), f16-subnormal d (-24 .. -15), the f16 boundaries (-25, -14, 15,
   16) and f16 overflow (16 on) up to the largest amax float32 holds */
static const int EXPS[] = {-130, -127, -126, -100, -40, -26, -25, -24, -20, -15, -14, -1, 0, 1, 10, 15, 16, 17, 100, 120};
#define N_EXPS (int)(sizeof EXPS / sizeof EXPS[0])
/* amax for the f16 boundaries of d: 65504 (the largest half), 65519.99..., 65520 (to inf), 2^-14, 2^-24, 2^-25 (a tie:
   to 0), just above 2^-25, and the extremes of float32 */
static const float AMAX[] = {65504.0f * 127, 8321039.0f, 65520.0f * 127, 0x1p-14f * 127, 0x1p-24f * 127,
                             0x1p-25f * 127, 0x1.000002p-25f * 127, 3.4028234663852886e38f, 1e-45f, 0x1p-126f,
                             1.0f, 0.5f};
#define N_AMAX (int)(sizeof AMAX / sizeof AMAX[0])
#define N_BLOCKS (N_RANDOM + N_EXPS * 2 * 8 * 3 + N_AMAX * 2 + 3)

int main(void) {
  static float v[N_BLOCKS * QK8_0];
  int n = 0;
  // random blocks at scales 2^-140 .. 2^119
  for (int b = 0; b < N_RANDOM; b++) {
    const double scale = ldexp(1.0, (int)floor(rnd() * 260) - 140);
    for (int j = 0; j < QK8_0; j++) v[n++] = (float)((rnd() * 2 - 1) * scale);
  }
  // ties t + 0.5 for t in -127 .. 126 (8 blocks of 31 after the amax, cycling), exact (nudge 0) and one float32
  // ulp toward zero (-1) and away from it (+1), for amax +127 * 2^e and -127 * 2^e
  for (int e = 0; e < N_EXPS; e++)
    for (int nudge = -1; nudge <= 1; nudge++)
      for (int sign = 1; sign >= -1; sign -= 2)
        for (int b = 0, t = -127; b < 8; b++) {
          v[n++] = (float)(sign * 127 * ldexp(1.0, EXPS[e]));
          for (int j = 1; j < QK8_0; j++, t = t == 126 ? -127 : t + 1) {
            float x = (float)((t + 0.5) * ldexp(1.0, EXPS[e]));
            if (nudge != 0) x = nextafterf(x, nudge > 0 ? (x > 0 ? INFINITY : -INFINITY) : 0.0f);
            v[n++] = x;
          }
        }
  // each boundary amax, positive then negative, in a block of values spread below it
  for (int a = 0; a < N_AMAX; a++)
    for (int sign = 1; sign >= -1; sign -= 2) {
      v[n++] = sign * AMAX[a];
      for (int j = 1; j < QK8_0; j++) v[n++] = (float)(AMAX[a] * ((j - 16) / 16.5));
    }
  // all zero, all -0, one -3 among zeros
  for (int j = 0; j < QK8_0; j++) v[n++] = 0.0f;
  for (int j = 0; j < QK8_0; j++) v[n++] = -0.0f;
  for (int j = 0; j < QK8_0; j++) v[n++] = j == 8 ? -3.0f : 0.0f;
  if (n != N_BLOCKS * QK8_0) {
    fprintf(stderr, "made %d values, expected %d\n", n, N_BLOCKS * QK8_0);
    return 1;
  }
  static block_q8_0 y[N_BLOCKS];
  quantize_row_q8_0_ref(v, y, n);
  // little-endian float32 values, then 34-byte blocks (d little-endian, then q)
  fwrite(v, sizeof(float), n, stdout);
  for (int b = 0; b < N_BLOCKS; b++) {
    const uint8_t d[2] = {y[b].d & 0xff, y[b].d >> 8};
    fwrite(d, 1, 2, stdout);
    fwrite(y[b].qs, 1, QK8_0, stdout);
  }
  return 0;
}
