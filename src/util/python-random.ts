/**
 * CPython's `random.Random(seed)` as far as lm-evaluation-harness's few-shot sampler uses it: the Mersenne Twister
 * MT19937 seeded as CPython seeds it from an int (init_by_array over the seed's 32-bit words, Modules/_randommodule.c),
 * getrandbits(k) for k <= 32, _randbelow (rejection on k = n.bit_length() bits) and sample(range(n), k) (Lib/random.py:
 * the pool branch for small n, the set branch otherwise). The harness draws each GSM8K test question's shots with
 * `random.Random(1234).sample(train, 5)`, one draw per question in test order (api/samplers.py ContextSampler), and
 * those shots are only reproduced with the same generator and the same algorithm: util/random.ts's xoshiro is not it.
 */

const N = 624;
const M = 397;

export class PythonRandom {
  private readonly mt = new Uint32Array(N);
  private index = N;

  /** `seed`: a non-negative whole number (as `random.Random(seed)`; CPython takes abs() of a negative one). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed))
      throw new RangeError(`PythonRandom: seed must be a whole number, got ${seed}`);
    let s = Math.abs(seed);
    // the seed's 32-bit words, least significant first; at least one (0 seeds as [0])
    const key: number[] = [];
    do {
      key.push(s % 0x100000000);
      s = Math.floor(s / 0x100000000);
    } while (s > 0);
    this.initByArray(key);
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1]!;
      mt[i] = (Math.imul(1812433253, (prev ^ (prev >>> 30)) >>> 0) + i) >>> 0;
    }
    this.index = N;
  }

  private initByArray(key: readonly number[]): void {
    this.initGenrand(19650218);
    const mt = this.mt;
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul((prev ^ (prev >>> 30)) >>> 0, 1664525)) + key[j]! + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul((prev ^ (prev >>> 30)) >>> 0, 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  /** The next 32-bit output (genrand_uint32). */
  uint32(): number {
    const mt = this.mt;
    if (this.index >= N) {
      const mix = (a: number, b: number, c: number) => {
        const y = (mt[a]! & 0x80000000) | (mt[b]! & 0x7fffffff);
        return (mt[c]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
      };
      let kk = 0;
      for (; kk < N - M; kk++) mt[kk] = mix(kk, kk + 1, kk + M);
      for (; kk < N - 1; kk++) mt[kk] = mix(kk, kk + 1, kk + M - N);
      mt[N - 1] = mix(N - 1, 0, M - 1);
      this.index = 0;
    }
    let y = mt[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** random.getrandbits(k), 0 <= k <= 32. */
  getrandbits(k: number): number {
    if (!Number.isInteger(k) || k < 0 || k > 32)
      throw new RangeError(`getrandbits: k must be 0..32, got ${k}`);
    if (k === 0) return 0;
    return this.uint32() >>> (32 - k);
  }

  /** random._randbelow(n): uniform in [0, n), by rejection on n.bit_length() bits; n < 2^32. */
  randbelow(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 0xffffffff)
      throw new RangeError(`randbelow: n must be 1..2^32 - 1, got ${n}`);
    const k = bitLength(n);
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return r;
  }

  /** The indices `random.sample(range(n), k)` returns, in its order. */
  sample(n: number, k: number): number[] {
    if (!Number.isInteger(n) || !Number.isInteger(k) || k < 0 || k > n)
      throw new RangeError(`sample: needs 0 <= k <= n, got n=${n} k=${k}`);
    const result: number[] = new Array<number>(k);
    let setsize = 21;
    // Lib/random.py: setsize += 4 ** _ceil(_log(k * 3, 4)), in floats as Python computes it
    if (k > 5) setsize += 4 ** Math.ceil(Math.log(k * 3) / Math.log(4));
    if (n <= setsize) {
      const pool = Array.from({ length: n }, (_, i) => i);
      for (let i = 0; i < k; i++) {
        const j = this.randbelow(n - i);
        result[i] = pool[j]!;
        pool[j] = pool[n - i - 1]!;
      }
    } else {
      const selected = new Set<number>();
      for (let i = 0; i < k; i++) {
        let j = this.randbelow(n);
        while (selected.has(j)) j = this.randbelow(n);
        selected.add(j);
        result[i] = j;
      }
    }
    return result;
  }
}

/** int.bit_length() of a positive whole number below 2^53. */
function bitLength(n: number): number {
  let bits = 0;
  while (n >= 1) {
    n = Math.floor(n / 2);
    bits++;
  }
  return bits;
}
