/**
 * The SFT loss op (crossEntropySum, native/src/train_ops.cc) against libtorch's cross_entropy (log_softmax + NLL in
 * float32) and its autograd gradient: values and gradients, float32 and bf16 logits, a scaled upstream gradient,
 * rows whose logits span a wide range, and the errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tensor, crossEntropy, crossEntropySum, noGrad } from "../../src/tensor/index.js";
import { createRng } from "../../src/util/random.js";

const N = 37;
const V = 5003; // not a multiple of any vector width

function logitsAndTargets(seed: number): { values: number[]; targets: number[] } {
  const rng = createRng(seed);
  const values: number[] = [];
  for (let r = 0; r < N; r++) {
    // rows of different spreads: near-uniform to one dominant logit, and far from zero
    const spread = 10 ** (rng.int(4) - 1);
    const offset = (rng.next() - 0.5) * 200;
    for (let j = 0; j < V; j++) values.push(offset + rng.normal() * spread);
  }
  const targets = Array.from({ length: N }, () => rng.int(V));
  return { values, targets };
}

function gradOf(loss: Tensor, x: Tensor, upstream: number): Float32Array {
  loss.mul(upstream).backward();
  const g = x.grad!;
  return g.float().toFloat32Array();
}

for (const dtype of ["float32", "bfloat16"] as const) {
  test(`crossEntropySum equals libtorch's summed cross-entropy and its gradient (${dtype} logits)`, () => {
    const { values, targets } = logitsAndTargets(dtype === "float32" ? 1 : 2);
    const t = Tensor.fromArray(targets, [N], "int64");
    const x1 = noGrad(() => Tensor.fromArray(values, [N, V]).to(dtype)).requiresGrad_();
    const x2 = noGrad(() => x1.detach().clone()).requiresGrad_();
    const ours = crossEntropySum(x1, t);
    const ref = crossEntropy(x2.float(), t, { reduction: "sum" });
    assert.equal(ours.dtype, "float32");
    assert.deepEqual(ours.shape, []);
    const [a, b] = [ours.item(), ref.item()];
    assert.ok(Math.abs(a - b) <= 2e-6 * Math.abs(b), `loss ${a} vs ${b}`);
    const g1 = gradOf(ours, x1, 0.37);
    const g2 = gradOf(ref, x2, 0.37);
    assert.equal(x1.grad!.dtype, dtype, "the gradient comes in the logits' dtype");
    // float32: exp(x − lse) carries the rounding of x − lse on both sides, about 2^-24·max(|x|, |lse|) relative;
    // bf16: both are the same float32 value rounded, at most one bf16 ulp apart
    const xs = x1.float().toFloat32Array();
    let worst = 0;
    for (let r = 0; r < N; r++) {
      let mx = -Infinity;
      for (let j = 0; j < V; j++) mx = Math.max(mx, xs[r * V + j]!);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(xs[r * V + j]! - mx);
      const lse = mx + Math.log(s);
      for (let j = 0; j < V; j++) {
        const i = r * V + j;
        const want = g2[i]!;
        // below e^-87 our exp is 0 where expf gives denormals (of no weight next to the row's target)
        if (Math.abs(want) < 1e-30) {
          assert.ok(Math.abs(g1[i]!) < 1e-30, `[${i}] ${g1[i]} vs ${want}`);
          continue;
        }
        const rel =
          dtype === "float32" ? 2 ** -22 * (4 + Math.max(Math.abs(xs[i]!), Math.abs(lse))) : 2 ** -7;
        worst = Math.max(worst, Math.abs(g1[i]! - want) / Math.abs(want) / rel);
      }
    }
    assert.ok(worst <= 1, `gradient difference ${worst} of the tolerance`);
    // each row's gradient sums to 0 (softmax − onehot)
    for (let r = 0; r < N; r++) {
      let s = 0;
      for (let j = 0; j < V; j++) s += g1[r * V + j]!;
      assert.ok(Math.abs(s) < (dtype === "float32" ? 4e-6 : 2e-3), `row ${r} sums to ${s}`);
    }
  });
}

test("crossEntropySum works without a graph and refuses bad targets by name", () => {
  const x = Tensor.fromArray([0, Math.log(3)], [1, 2]);
  // −log(3/4)
  assert.ok(
    Math.abs(noGrad(() => crossEntropySum(x, Tensor.fromArray([1], [1], "int64")).item()) - Math.log(4 / 3)) <
      1e-6,
  );
  assert.throws(() => crossEntropySum(x, Tensor.fromArray([2], [1], "int64")), /target is outside \[0, 2\)/);
  assert.throws(() => crossEntropySum(x, Tensor.fromArray([-100], [1], "int64")), /target is outside/);
  assert.throws(() => crossEntropySum(x, Tensor.fromArray([0, 1], [2], "int64")), /one target per row/);
});
