/**
 * The op profile (native/src/op_profile.cc): every op libtorch runs between start and stop is counted once, forward
 * ops, autograd nodes and the addon's own calls (js::<op>) apart; nested time is taken out of a row's self time;
 * with shapes, one row per op and input shapes; and nothing outside a profile is recorded. The counts are checked against the ops the test itself runs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tensor, opProfileStart, opProfileStop, tidy, type OpProfileRow } from "../../src/tensor/index.js";

function row(rows: OpProfileRow[], name: string, backward = false): OpProfileRow | undefined {
  return rows.find((r) => r.name === name && r.backward === backward);
}

test("op profile: each call counted once, the addon's call around libtorch's op, self within total", () => {
  const a = Tensor.ones([8, 8]);
  const b = Tensor.ones([8, 8]);
  tidy(() => a.add(b)); // before the profile: not counted
  opProfileStart();
  tidy(() => {
    for (let i = 0; i < 3; i++) a.add(b);
    a.matmul(b);
  });
  const rows = opProfileStop();
  tidy(() => a.add(b)); // after it: not counted
  assert.equal(row(rows, "js::add")?.calls, 3);
  assert.equal(row(rows, "aten::add")?.calls, 3);
  assert.equal(row(rows, "js::matmul")?.calls, 1);
  assert.equal(row(rows, "aten::matmul")?.calls, 1);
  for (const r of rows) {
    assert.ok(
      r.selfNs >= 0 && r.selfNs <= r.totalNs,
      `${r.name}: self ${r.selfNs} outside [0, ${r.totalNs}]`,
    );
    assert.ok(r.totalNs > 0, `${r.name}: no time`);
  }
  // aten::add runs inside js::add: the addon call's total holds the op's, and its self time leaves it out
  const js = row(rows, "js::add")!;
  const op = row(rows, "aten::add")!;
  assert.ok(js.totalNs >= op.totalNs);
  assert.ok(js.selfNs <= js.totalNs - op.totalNs);
  // largest self time first
  for (let i = 1; i < rows.length; i++) assert.ok(rows[i - 1].selfNs >= rows[i].selfNs);
  a.dispose();
  b.dispose();
});

test("op profile: the backward's autograd nodes are recorded in their own scope", () => {
  const w = Tensor.ones([4, 4]).requiresGrad_();
  const x = Tensor.ones([4, 4]);
  opProfileStart();
  tidy(() => x.mul(w).sum().backward());
  const rows = opProfileStop();
  assert.equal(row(rows, "MulBackward0", true)?.calls, 1);
  assert.equal(row(rows, "SumBackward0", true)?.calls, 1);
  assert.equal(row(rows, "MulBackward0"), undefined, "an autograd node is not a forward op");
  assert.equal(row(rows, "aten::mul")?.calls, 2, "the forward's product and the backward's dW = dY * x");
  w.dispose();
  x.dispose();
});

test("op profile with shapes: one row per op and input shapes, as PyTorch's profiler lists them", () => {
  const a = Tensor.ones([8, 4]);
  const b = Tensor.ones([4, 3]);
  const c = Tensor.ones([3, 5]);
  opProfileStart({ shapes: true });
  tidy(() => {
    a.matmul(b);
    a.matmul(b);
    b.matmul(c);
    a.add(a);
  });
  const rows = opProfileStop();
  const mm = rows.filter((r) => r.name === "aten::mm");
  assert.deepEqual(mm.map((r) => [r.shapes, r.calls]).sort(), [
    ["[4x3, 3x5]", 1],
    ["[8x4, 4x3]", 2],
  ]);
  // a scalar input (add's alpha) has no shape
  assert.equal(rows.find((r) => r.name === "aten::add")?.shapes, "[8x4, 8x4, ]");
  // without shapes: one row per op, shapes empty
  opProfileStart();
  tidy(() => a.matmul(b));
  const plain = opProfileStop().filter((r) => r.name === "aten::mm");
  assert.deepEqual(
    plain.map((r) => [r.shapes, r.calls]),
    [["", 1]],
  );
  for (const t of [a, b, c]) t.dispose();
});

test("op profile: one at a time, and a stop needs a start", () => {
  assert.throws(() => opProfileStop(), /no profile is being recorded/);
  opProfileStart();
  assert.throws(() => opProfileStart(), /already being recorded/);
  assert.deepEqual(
    opProfileStop().filter((r) => !r.name.startsWith("js::op")),
    [],
    "nothing ran but the profile's own calls",
  );
});
