import { test } from "node:test";
import assert from "node:assert/strict";
import { PythonRandom } from "../../src/util/python-random.js";

// The reference values are CPython 3.11.7's own (`python3 -c "import random; ..."`), the generator lm-evaluation-
// harness draws its few-shot examples with: each comment gives the expression.

test("PythonRandom(1234) gives CPython's MT19937 words: [random.Random(1234).getrandbits(32) for _ in range(3)]", () => {
  const r = new PythonRandom(1234);
  assert.deepEqual([r.uint32(), r.uint32(), r.uint32()], [4150886329, 3342196574, 1892932127]);
  // a seed wider than 32 bits is seeded from its two words: random.Random(2**40 + 5).getrandbits(32)
  assert.equal(new PythonRandom(2 ** 40 + 5).uint32(), 2166296868);
});

test("PythonRandom.sample is random.sample(range(n), k): the set branch (n large) and the pool branch (n small)", () => {
  // r = random.Random(1234); [r.sample(range(7473), 5) for _ in range(3)]
  const r = new PythonRandom(1234);
  assert.deepEqual(
    [r.sample(7473, 5), r.sample(7473, 5), r.sample(7473, 5)],
    [
      [6374, 3610, 957, 61, 742],
      [7462, 6610, 4769, 286, 5501],
      [5677, 687, 806, 6279, 2905],
    ],
  );
  // r = random.Random(0); r.sample(range(10), 10), r.sample(range(30), 7), r.getrandbits(5)
  const z = new PythonRandom(0);
  assert.deepEqual(z.sample(10, 10), [6, 9, 0, 2, 4, 3, 5, 1, 8, 7]);
  assert.deepEqual(z.sample(30, 7), [18, 28, 6, 16, 4, 9, 25]);
  assert.equal(z.getrandbits(5), 24);
  // r = random.Random(1234); draws = [r.sample(range(7473), 5) for _ in range(1319)]; draws[1318]
  const far = new PythonRandom(1234);
  let last: number[] = [];
  for (let i = 0; i < 1319; i++) last = far.sample(7473, 5);
  assert.deepEqual(last, [220, 4179, 6064, 5599, 5541]);
});

test("PythonRandom refuses what CPython refuses: k > n, a seed that is not whole", () => {
  assert.throws(() => new PythonRandom(1234).sample(3, 4), RangeError);
  assert.throws(() => new PythonRandom(1.5), RangeError);
});
