/**
 * Numeric comparisons shared by the tests that check our tensors against fixtures or against another path.
 */
import assert from "node:assert/strict";

/** A fixture's nested JSON arrays. */
export type Nested = number | Nested[];

/** A nested JSON array flattened in row-major order. */
export const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);

/** max |a − b| over elements (lengths must match). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** max |a − b| divided by max |b|: a difference relative to the reference's scale, not per element. */
export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let scale = 1e-12;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    m = Math.max(m, Math.abs(a[i] - b[i]));
  }
  return m / scale;
}
