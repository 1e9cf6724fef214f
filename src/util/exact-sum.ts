/**
 * Sums of float64 values that are exact until the final rounding, so that they do not depend on the order of
 * the additions: n sums at once, each kept as Shewchuk's non-overlapping partials (the algorithm of Python's
 * math.fsum). The value of a sum is its exact total correctly rounded to a float64 — one number for one set of
 * addends whatever the order or grouping — which is what lets identification shards run on many machines and
 * merge into exactly the sums of one run.
 *
 * Partials per sum: a value of similar magnitude adds one or two; storage grows (for all n) only when one sum
 * needs more. Addends must be finite.
 */
export class ExactSums {
  /** [n][width] partials, smallest magnitude first, no zeros; unused slots are 0 */
  private parts: Float64Array;
  private count: Uint8Array;
  private width: number;

  constructor(
    readonly n: number,
    width = 2,
  ) {
    this.width = Math.max(1, width);
    this.parts = new Float64Array(n * this.width);
    this.count = new Uint8Array(n);
  }

  /** Add x to sum j (exactly). */
  add(j: number, x: number): void {
    if (!Number.isFinite(x)) throw new RangeError(`ExactSums: non-finite addend ${x}`);
    const m = this.count[j]!;
    let w = this.width;
    if (m + 1 > w) {
      this.grow(m + 1);
      w = this.width;
    }
    const p = this.parts;
    const base = j * w;
    let i = 0;
    for (let k = 0; k < m; k++) {
      let y = p[base + k]!;
      if (Math.abs(x) < Math.abs(y)) {
        const t = x;
        x = y;
        y = t;
      }
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) p[base + i++] = lo;
      x = hi;
    }
    if (x !== 0) p[base + i++] = x;
    for (let k = i; k < m; k++) p[base + k] = 0;
    this.count[j] = i;
  }

  /** Add every partial of `other`'s sums (same n) to these: the exact totals add. */
  addAll(other: ExactSums): void {
    if (other.n !== this.n) throw new RangeError(`ExactSums: adding ${other.n} sums to ${this.n}`);
    for (let j = 0; j < this.n; j++) {
      const m = other.count[j]!;
      const base = j * other.width;
      for (let k = 0; k < m; k++) this.add(j, other.parts[base + k]!);
    }
  }

  /** The exact total of sum j rounded to the nearest float64 (ties to even). */
  value(j: number): number {
    let n = this.count[j]!;
    if (n === 0) return 0;
    const p = this.parts;
    const base = j * this.width;
    let hi = p[base + --n]!;
    let lo = 0;
    while (n > 0) {
      const x = hi;
      const y = p[base + --n]!;
      hi = x + y;
      lo = y - (hi - x);
      if (lo !== 0) break;
    }
    // the rest could push a halfway case past the tie: round as the exact total says (as math.fsum does)
    if (n > 0 && ((lo < 0 && p[base + n - 1]! < 0) || (lo > 0 && p[base + n - 1]! > 0))) {
      const y = lo * 2;
      const x = hi + y;
      if (y === x - hi) hi = x;
    }
    return hi;
  }

  values(): Float64Array {
    const out = new Float64Array(this.n);
    for (let j = 0; j < this.n; j++) out[j] = this.value(j);
    return out;
  }

  /** The partials as an [n, width] matrix (for saving; `fromPartials` reads it back). */
  partials(): { width: number; data: Float64Array } {
    return { width: this.width, data: this.parts };
  }

  static fromPartials(n: number, width: number, data: Float64Array): ExactSums {
    if (data.length !== n * width)
      throw new RangeError(`ExactSums: ${data.length} partials for ${n} sums of width ${width}`);
    const s = new ExactSums(n, width);
    s.parts.set(data);
    for (let j = 0; j < n; j++) {
      let m = 0;
      while (m < width && data[j * width + m] !== 0) m++;
      for (let k = m; k < width; k++)
        if (data[j * width + k] !== 0) throw new RangeError(`ExactSums: sum ${j} has a gap in its partials`);
      s.count[j] = m;
    }
    return s;
  }

  private grow(need: number): void {
    if (need > 255) throw new RangeError("ExactSums: more than 255 partials");
    const w = Math.max(need, this.width * 2);
    const next = new Float64Array(this.n * w);
    for (let j = 0; j < this.n; j++)
      next.set(this.parts.subarray(j * this.width, j * this.width + this.count[j]!), j * w);
    this.parts = next;
    this.width = w;
  }
}
