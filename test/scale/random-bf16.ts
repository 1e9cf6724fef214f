/**
 * Seeded N(0, std²) weights written straight as bf16 bytes, a few MiB at a time: the scale models (models.ts) are
 * gigabytes of them, and drawing them with libtorch's randn (about 35 ns a value on this machine, all tensors held
 * until the file was written) took most of a fresh machine's CI minutes. Each value is an inverse-CDF lookup: one
 * 16-bit uniform picks one of 65,536 equiprobable normal quantiles, precomputed as bf16. Their spacing is finer than
 * bf16's own (8 significant bits) up to |z| ≈ 3.5; the tails stop at |z| = 4.17, which 3 values in 100,000 pass.
 */

/** Φ⁻¹(p), the standard normal quantile (P. J. Acklam's rational approximation, relative error < 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p = ${p} is not in (0, 1)`);
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low || p > 1 - low) {
    const q = Math.sqrt(-2 * Math.log(p < low ? p : 1 - p));
    const x =
      (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
      ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
    return p < low ? x : -x;
  }
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bf16 bit pattern of `x` (float32 rounded to nearest, ties to even, as torch's .to(bfloat16)). */
export function bf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

const tables = new Map<number, Uint16Array>();
function quantileTable(std: number): Uint16Array {
  let t = tables.get(std);
  if (!t) {
    t = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) t[i] = bf16Bits(std * normalQuantile((i + 0.5) / 65536));
    tables.set(std, t);
  }
  return t;
}

/** splitmix32: spreads (seed, stream) into well-mixed 32-bit states. */
function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * `count` values of N(0, std²) as little-endian bf16 bytes, in parts of at most `partValues` values; the same
 * (seed, stream) always gives the same bytes. A xorshift128 stream (Marsaglia) gives two 16-bit uniforms a step.
 */
export function* randomNormalBf16(
  count: number,
  std: number,
  seed: number,
  stream: number,
  partValues = 1 << 21,
): Generator<Uint8Array> {
  const table = quantileTable(std);
  let x = splitmix32(seed ^ Math.imul(stream + 1, 0x632be5ab));
  let y = splitmix32(x + 1);
  let z = splitmix32(y + 2);
  let w = splitmix32(z + 3) | 1;
  for (let done = 0; done < count;) {
    const n = Math.min(partValues, count - done);
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i += 2) {
      const t = x ^ (x << 11);
      x = y;
      y = z;
      z = w;
      w = (w ^ (w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
      out[i] = table[w & 0xffff]!;
      if (i + 1 < n) out[i + 1] = table[w >>> 16]!;
    }
    done += n;
    yield new Uint8Array(out.buffer);
  }
}

/** `count` copies of one bf16 value (ones, zeros) as little-endian bytes. */
export function constantBf16(count: number, value: number): Uint8Array {
  return new Uint8Array(new Uint16Array(count).fill(bf16Bits(value)).buffer);
}
