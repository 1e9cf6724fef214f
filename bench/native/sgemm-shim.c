// Every float32 matrix product a process makes, by shape (issue 13 §1, BENCHMARKS "Closing the float32 gap on
// AVX2"): an LD_PRELOAD library that wraps BLAS's sgemm_ (what libtorch calls for every CPU float32 product, on our
// side and on PyTorch's) and, at exit, writes one line per (transa, transb, m, n, k): the calls and the CPU seconds
// of the calling thread spent in them. Not part of the addon. Build, run both sides on the same inputs, compare:
//
//   gcc -O2 -shared -fPIC -o /tmp/sgemm-shim.so bench/native/sgemm-shim.c -ldl
//   SGEMM_LOG=/tmp/ours.sgemm LD_PRELOAD=/tmp/sgemm-shim.so node dist/src/cli/main.js harden ...
//   SGEMM_LOG=/tmp/torch.sgemm LD_PRELOAD=/tmp/sgemm-shim.so /usr/bin/python3 bench/torch_harden.py run ...
//   /usr/bin/python3 bench/sgemm_summary.py /tmp/ours.sgemm /tmp/torch.sgemm
//
// libtorch loads BLAS under RTLD_LOCAL (a library dlopen'ed by node or python), so the real sgemm_ is looked up in
// libblas.so.3 when RTLD_NEXT does not find it. One thread's products (GOODVIBE_THREADS=1 / torch threads 1).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void (*sgemm_t)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                        const int*, const float*, const int*, const float*, float*, const int*);
static sgemm_t real;
#define MAXKEYS 8192
static struct {
  char ta, tb;
  int m, n, k;
  long calls;
  double sec;
} tab[MAXKEYS];
static int nkeys;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) {
  if (!real) {
    real = (sgemm_t)dlsym(RTLD_NEXT, "sgemm_");
    if (!real) {
      void* h = dlopen("libblas.so.3", RTLD_LAZY | RTLD_NOLOAD);
      if (!h) h = dlopen("libblas.so.3", RTLD_LAZY);
      if (h) real = (sgemm_t)dlsym(h, "sgemm_");
    }
    if (!real) abort();
  }
  double t0 = now();
  real(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  double dt = now() - t0;
  int i;
  for (i = 0; i < nkeys; i++)
    if (tab[i].ta == *ta && tab[i].tb == *tb && tab[i].m == *m && tab[i].n == *n && tab[i].k == *k) break;
  if (i == nkeys) {
    if (nkeys == MAXKEYS) return;
    nkeys++;
    tab[i].ta = *ta;
    tab[i].tb = *tb;
    tab[i].m = *m;
    tab[i].n = *n;
    tab[i].k = *k;
  }
  tab[i].calls++;
  tab[i].sec += dt;
}

__attribute__((destructor)) static void dump(void) {
  const char* path = getenv("SGEMM_LOG");
  if (!path || !nkeys) return;
  FILE* f = fopen(path, "w");
  if (!f) return;
  for (int i = 0; i < nkeys; i++)
    fprintf(f, "%c %c %d %d %d %ld %.6f\n", tab[i].ta, tab[i].tb, tab[i].m, tab[i].n, tab[i].k, tab[i].calls,
            tab[i].sec);
  fclose(f);
}
