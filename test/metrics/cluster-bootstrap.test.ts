/**
 * clusterBootstrap (the mean loss gap's interval over tasks) against independent references: a naive cluster
 * bootstrap written out here (draw whole clusters, concatenate their items, take the mean), pairedBootstrap over
 * the effective data at the two ends (one item per cluster; clusters of identical items), and a property over
 * random clusterings of data with a task effect.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { clusterBootstrap, pairedBootstrap, quantile } from "../../src/eval/metrics.js";
import { createRng } from "../../src/util/random.js";
import { InputError } from "../../src/errors.js";

const close = (a: number, b: number, what: string, tol = 1e-12) =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

/** The textbook cluster bootstrap: clusters in order of first appearance, K draws of whole clusters per resample. */
function naive(values: number[], groups: string[], iterations: number, seed: number) {
  const names = [...new Set(groups)];
  const members = names.map((g) => values.filter((_, i) => groups[i] === g));
  const rng = createRng(seed);
  const stats: number[] = [];
  for (let it = 0; it < iterations; it++) {
    const items: number[] = [];
    for (let k = 0; k < names.length; k++) items.push(...members[rng.int(names.length)]!);
    stats.push(items.reduce((a, b) => a + b, 0) / items.length);
  }
  stats.sort((a, b) => a - b);
  return { low: quantile(stats, 0.025), high: quantile(stats, 0.975) };
}

test("clusterBootstrap equals the naive cluster bootstrap on random clusterings (same seed)", () => {
  const rng = createRng(11);
  for (let trial = 0; trial < 20; trial++) {
    const n = 5 + rng.int(40);
    const k = 1 + rng.int(n);
    const values = Array.from({ length: n }, () => rng.normal());
    const groups = Array.from({ length: n }, () => `t${rng.int(k)}`);
    const seed = rng.int(1000);
    const got = clusterBootstrap(values, groups, { iterations: 500, seed });
    const ref = naive(values, groups, 500, seed);
    close(got.low, ref.low, `trial ${trial} low`, 1e-9);
    close(got.high, ref.high, `trial ${trial} high`, 1e-9);
    close(got.mean, values.reduce((a, b) => a + b, 0) / n, `trial ${trial} mean`);
    assert.equal(got.units, new Set(groups).size);
  }
});

test("one pair per task: exactly today's bootstrap over the pairs (same seed)", () => {
  const rng = createRng(3);
  const values = Array.from({ length: 37 }, () => 0.1 + rng.normal());
  const groups = values.map((_, i) => `python:task-${i}`);
  for (const seed of [0, 5]) {
    const got = clusterBootstrap(values, groups, { seed });
    const ref = pairedBootstrap(values, { seed });
    close(got.mean, ref.mean, "mean");
    close(got.low, ref.low, "low");
    close(got.high, ref.high, "high");
    assert.equal(got.units, 37);
  }
});

test("tasks of identical pairs: the pair bootstrap over one pair per task (the effective data)", () => {
  const rng = createRng(8);
  const K = 12;
  const perTask = Array.from({ length: K }, () => rng.normal());
  // 4 pairs per task, interleaved (t0 t1 ... t11 t0 t1 ...): the tasks first appear in order 0..11
  const values: number[] = [];
  const groups: string[] = [];
  for (let r = 0; r < 4; r++)
    perTask.forEach((v, k) => {
      values.push(v);
      groups.push(`t${k}`);
    });
  const got = clusterBootstrap(values, groups, { seed: 2 });
  const ref = pairedBootstrap(perTask, { seed: 2 });
  close(got.mean, ref.mean, "mean");
  close(got.low, ref.low, "low");
  close(got.high, ref.high, "high");
  // and the pairs' bootstrap, which takes the 48 as independent, is narrower: the bug this fixes
  const overPairs = pairedBootstrap(values, { seed: 2 });
  assert.ok(overPairs.high - overPairs.low < 0.7 * (got.high - got.low));
});

test("random clusterings of data with a task effect: the clustered interval is not narrower on average", () => {
  // pairs of one task share its effect (intra-class correlation 0.5 here), which is why tasks are resampled; with
  // no task effect the two agree up to the (K − 1)/K of resampling K clusters, so that case is no property
  const rng = createRng(21);
  const ratios: number[] = [];
  for (let trial = 0; trial < 100; trial++) {
    const K = 8 + rng.int(25);
    const values: number[] = [];
    const groups: string[] = [];
    for (let k = 0; k < K; k++) {
      const effect = rng.normal();
      const size = 1 + rng.int(6);
      for (let j = 0; j < size; j++) {
        values.push(effect + rng.normal());
        groups.push(`t${k}`);
      }
    }
    // shuffle the order of the pairs: clusters are found by name, not by position
    const order = rng.shuffle(values.map((_, i) => i));
    const v = order.map((i) => values[i]!);
    const g = order.map((i) => groups[i]!);
    const c = clusterBootstrap(v, g, { iterations: 400, seed: trial });
    const p = pairedBootstrap(v, { iterations: 400, seed: trial });
    ratios.push((c.high - c.low) / (p.high - p.low));
  }
  const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
  assert.ok(mean >= 1, `mean width ratio clustered / pairs ${mean}`);
});

test("clusterBootstrap: one group per value, else a clear error; no values, NaN", () => {
  assert.throws(() => clusterBootstrap([1, 2], ["a"]), InputError);
  const empty = clusterBootstrap([], []);
  assert.ok(Number.isNaN(empty.mean) && Number.isNaN(empty.low) && empty.units === 0);
});
