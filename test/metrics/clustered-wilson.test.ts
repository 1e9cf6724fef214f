import { test } from "node:test";
import assert from "node:assert/strict";
import { clusteredWilsonInterval, wilsonInterval } from "../../src/eval/metrics.js";
import { createRng } from "../../src/util/random.js";

const close = (a: number, b: number, tol = 1e-4) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

// Published Wilson bounds (z = 1.96): 6 of 10 → [0.3127, 0.8318]; 24 of 40 → [0.4460, 0.7365].
test("tasks whose items all agree: the interval is Wilson on the number of tasks, not on the items", () => {
  // 10 tasks of 4 identical prompts each, 6 tasks secure: 24 of 40 items, but 10 independent outcomes
  const clusters = Array.from({ length: 10 }, (_, k) => ({ successes: k < 6 ? 4 : 0, n: 4 }));
  const c = clusteredWilsonInterval(clusters);
  close(c.value, 0.6, 1e-12);
  close(c.low, 0.3127);
  close(c.high, 0.8318);
  close(c.nEffective, 10, 1e-9);
  close(c.designEffect, 4, 1e-9);
  // the items' Wilson interval is far narrower: what the table gave before
  const naive = wilsonInterval(24, 40);
  close(naive.low, 0.446);
  close(naive.high, 0.7365);
  assert.ok(c.high - c.low > 1.7 * (naive.high - naive.low));
});

test("one item per task: the interval is the items' Wilson interval", () => {
  const clusters = Array.from({ length: 40 }, (_, k) => ({ successes: k < 24 ? 1 : 0, n: 1 }));
  const c = clusteredWilsonInterval(clusters);
  close(c.low, 0.446);
  close(c.high, 0.7365);
  assert.equal(c.designEffect, 1);
  assert.equal(c.nEffective, 40);
});

test("equal task sizes: the effective n lies between the number of tasks and the number of items", () => {
  const rng = createRng(7);
  for (let trial = 0; trial < 200; trial++) {
    const k = 2 + rng.int(20);
    const m = 1 + rng.int(6);
    const pTask = rng.next();
    const clusters = Array.from({ length: k }, () => {
      const q = Math.min(1, Math.max(0, pTask + (rng.next() - 0.5)));
      let s = 0;
      for (let i = 0; i < m; i++) if (rng.next() < q) s++;
      return { successes: s, n: m };
    });
    const c = clusteredWilsonInterval(clusters);
    const n = k * m;
    assert.ok(c.nEffective >= k - 1e-9 && c.nEffective <= n + 1e-9, `${c.nEffective} outside [${k}, ${n}]`);
    const w = wilsonInterval(
      clusters.reduce((a, x) => a + x.successes, 0),
      n,
    );
    // never narrower than the items' Wilson interval
    assert.ok(c.low <= w.low + 1e-12 && c.high >= w.high - 1e-12);
    assert.ok(c.low >= 0 && c.high <= 1 && c.low <= c.value && c.value <= c.high);
  }
});

test("0% and 100%: every task's items agree, so Wilson on the number of tasks; one item per task: on the items; nothing judged: [0, 1]", () => {
  const all = clusteredWilsonInterval([
    { successes: 3, n: 3 },
    { successes: 5, n: 5 },
  ]);
  assert.deepEqual({ low: all.low, high: all.high }, { low: wilsonInterval(2, 2).low, high: 1 });
  assert.equal(all.nEffective, 2);
  // 40 of 40 over 10 tasks of 4: Wilson's 10 of 10, [0.7225, 1] (it read the items' [0.9124, 1] before 2026-12-06,
  // narrower than 36 of 40 with one task all wrong, [0.596, 0.982]: the interval jumped with one task)
  const forty = clusteredWilsonInterval(Array.from({ length: 10 }, () => ({ successes: 4, n: 4 })));
  close(forty.low, 0.7225);
  assert.equal(forty.high, 1);
  const thirtySix = clusteredWilsonInterval(
    Array.from({ length: 10 }, (_, k) => ({ successes: k === 0 ? 0 : 4, n: 4 })),
  );
  assert.ok(forty.low > thirtySix.low && forty.low < 0.8, `${forty.low} vs ${thirtySix.low}`);
  const zero = clusteredWilsonInterval(Array.from({ length: 10 }, () => ({ successes: 0, n: 4 })));
  close(zero.high, 1 - 0.7225);
  const single = clusteredWilsonInterval(Array.from({ length: 8 }, () => ({ successes: 1, n: 1 })));
  assert.deepEqual({ low: single.low, high: single.high }, { low: wilsonInterval(8, 8).low, high: 1 });
  const none = clusteredWilsonInterval([]);
  assert.deepEqual({ low: none.low, high: none.high }, { low: 0, high: 1 });
  assert.throws(() => clusteredWilsonInterval([{ successes: 3, n: 2 }]), /successes <= n/);
});
