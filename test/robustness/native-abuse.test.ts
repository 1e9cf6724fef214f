/**
 * Abuse of the raw addon (native/src/addon.cc): wrong argument types and counts, bad shapes for every op
 * family, disposed and forged handles, huge allocations, lying buffers, misuse of autograd and AdamW.
 * Every call must come back as a JS exception; that this file finishes at all shows the process survived.
 * Each family also has one valid call, so a throw is known to come from the bad argument, not a broken op.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { native } from "../../src/tensor/native.js";
import type { NativeTensor } from "../../src/tensor/native-ops.js";
import { MAX_BUFFER_BYTES } from "../../src/io/mapfile.js";

// The raw addon takes anything: these casts let the tests pass what TypeScript would refuse.
const raw = native as unknown as Record<string, (...args: unknown[]) => unknown>;

type Case = [label: string, call: () => unknown];

/** Every case must throw an Error (TypeError counts); a case that returns is reported by name. */
function assertAllThrow(cases: Case[]): void {
  const returned: string[] = [];
  const wrongKind: string[] = [];
  for (const [label, call] of cases) {
    try {
      call();
      returned.push(label);
    } catch (e) {
      if (!(e instanceof Error) || e.message === "") wrongKind.push(`${label}: ${String(e)}`);
    }
  }
  assert.deepEqual(returned, [], "these calls returned instead of throwing");
  assert.deepEqual(wrongKind, [], "these calls threw something other than an Error with a message");
}

const f32 = (shape: number[], value = 1) => native.full(shape, value, "float32");
const i64 = (values: number[]) => {
  const bytes = new BigInt64Array(values.map((v) => BigInt(v)));
  return native.fromBuffer(new Uint8Array(bytes.buffer), "int64", [values.length]);
};
const scalarOf = (t: NativeTensor) => native.item(native.sum(t));
const disposed = () => {
  const t = f32([2]);
  native.dispose(t);
  return t;
};
/** A BigInt no handle is: serial 0 (the addon's serials start at 1). */
const empty = () => 5n as NativeTensor;
/** A handle-shaped BigInt the addon never gave out: a serial past the last one it made. */
const forged = () => (((1n << 40n) - 1n) << 24n) as NativeTensor;

const notTensors: [string, () => unknown][] = [
  ["undefined", () => undefined],
  ["null", () => null],
  ["number", () => 3],
  ["NaN", () => NaN],
  ["string", () => "tensor"],
  ["plain object", () => ({ shape: [2], dtype: "float32" })],
  ["array", () => [1, 2]],
  ["function", () => () => 1],
  ["disposed tensor", disposed],
  ["empty handle", empty],
  ["forged handle", forged],
  ["negative BigInt", () => -1n],
  ["BigInt past 64 bits", () => 1n << 70n],
];

test("creation ops reject bad shapes, dtypes and devices", () => {
  assert.deepEqual(native.info(native.zeros([2, 3], "float32")).shape, [2, 3]);
  const cases: Case[] = [];
  for (const op of ["zeros", "ones", "randn", "rand"]) {
    const badShapes: [string, unknown][] = [
      ["undefined", undefined],
      ["string", "2,3"],
      ["object", { 0: 2, length: 1 }],
      ["NaN", [NaN]],
      ["Infinity", [Infinity]],
      ["-Infinity", [-Infinity]],
      ["fraction", [1.5]],
      ["negative", [-1]],
      ["string dim", ["2"]],
      ["2^63", [2 ** 63]],
      ["overflowing product", [2 ** 40, 2 ** 40]],
      ["nested", [[2]]],
    ];
    for (const [what, shape] of badShapes)
      cases.push([`${op} shape ${what}`, () => raw[op]!(shape, "float32")]);
    cases.push([`${op} unknown dtype`, () => raw[op]!([2], "float33")]);
    cases.push([`${op} dtype number`, () => raw[op]!([2], 32)]);
    cases.push([`${op} no dtype`, () => raw[op]!([2])]);
    cases.push([`${op} unknown device`, () => raw[op]!([2], "float32", "tpu")]);
    cases.push([`${op} device number`, () => raw[op]!([2], "float32", 0)]);
    cases.push([`${op} malformed cuda device`, () => raw[op]!([2], "float32", "cuda:x")]);
    cases.push([`${op} no arguments`, () => raw[op]!()]);
  }
  cases.push(["full value string", () => raw.full!([2], "1", "float32")]);
  cases.push(["full NaN into int64", () => native.full([2], NaN, "int64")]);
  cases.push(["full 1e300 into int32", () => native.full([2], 1e300, "int32")]);
  cases.push(["arange step 0", () => native.arange(0, 10, 0, "float32")]);
  cases.push(["arange to Infinity", () => native.arange(0, Infinity, 1, "float32")]);
  cases.push(["arange NaN", () => native.arange(0, NaN, 1, "float32")]);
  cases.push(["arange wrong direction", () => native.arange(0, 10, -1, "float32")]);
  cases.push(["arange with 1e300 elements", () => native.arange(0, 1, 1e-300, "float32")]);
  cases.push(["manualSeed NaN", () => native.manualSeed(NaN)]);
  cases.push(["manualSeed string", () => raw.manualSeed!("42")]);
  cases.push(["manualSeed fraction", () => native.manualSeed(0.5)]);
  assertAllThrow(cases);
});

test("huge allocations throw an out-of-memory error instead of aborting", () => {
  // 4e14 bytes exceeds a 47-bit user address space, so no overcommit policy can grant it.
  assert.throws(() => native.zeros([1e14], "float32"), /memory|allocate/i);
  assert.throws(() => native.ones([1e7, 1e7], "float64"), /memory|allocate/i);
  // With vm.overcommit_memory=1 the kernel may grant 4 TB and the zero-fill would invoke the OOM killer.
  let overcommit = "0";
  try {
    overcommit = fs.readFileSync("/proc/sys/vm/overcommit_memory", "utf8").trim();
  } catch {
    // not Linux: the allocator refuses 4 TB on its own
  }
  if (overcommit !== "1") assert.throws(() => native.zeros([1e12], "float32"), /memory|allocate/i);
  // The addon is still usable afterwards.
  assert.equal(scalarOf(f32([2, 2])), 4);
});

test("fromBuffer rejects lying lengths, bad shapes and non-typed-array sources", () => {
  const ok = native.fromBuffer(new Uint8Array(new Float32Array([1, 2, 3]).buffer), "float32", [3]);
  assert.equal(scalarOf(ok), 6);
  const twelve = new Uint8Array(12);
  assertAllThrow([
    ["buffer too short", () => native.fromBuffer(twelve, "float32", [4])],
    ["buffer too long", () => native.fromBuffer(twelve, "float32", [2])],
    ["empty buffer, non-empty shape", () => native.fromBuffer(new Uint8Array(0), "float32", [1])],
    ["offset view shorter than its buffer", () => native.fromBuffer(twelve.subarray(4), "float32", [3])],
    ["negative dim", () => native.fromBuffer(twelve, "float32", [-3])],
    ["negative dims whose product matches", () => native.fromBuffer(twelve, "float32", [-1, -3])],
    ["fractional dim", () => native.fromBuffer(twelve, "float32", [1.5, 2])],
    ["NaN dim", () => native.fromBuffer(twelve, "float32", [NaN])],
    // 2^61 * 8 wraps to 0 in 64 bits: the product must not be taken modulo 2^64.
    [
      "product wrapping to the buffer size",
      () => native.fromBuffer(new Uint8Array(0), "uint8", [2 ** 61, 8]),
    ],
    ["product wrapping to 4096", () => native.fromBuffer(new Uint8Array(4096), "uint8", [2 ** 61 + 512, 8])],
    ["unknown dtype", () => native.fromBuffer(twelve, "float12", [3])],
    ["string source", () => raw.fromBuffer!("abcdefghijkl", "uint8", [12])],
    ["plain array source", () => raw.fromBuffer!([1, 2, 3], "uint8", [3])],
    ["ArrayBuffer (not a view)", () => raw.fromBuffer!(new ArrayBuffer(4), "uint8", [4])],
    ["DataView", () => raw.fromBuffer!(new DataView(new ArrayBuffer(4)), "uint8", [4])],
    ["no shape", () => raw.fromBuffer!(twelve, "uint8")],
    ["unknown device", () => native.fromBuffer(twelve, "uint8", [12], "gpu")],
    ["no arguments", () => raw.fromBuffer!()],
  ]);
});

test("fromBuffer over a memory-mapped file rejects wrapped shapes (the zero-copy path)", () => {
  const dir = scratchDir("gv-abuse-");
  try {
    const file = path.join(dir, "page.bin");
    fs.writeFileSync(file, new Uint8Array(4096).fill(1));
    const mapped = native.mmapFile(file, MAX_BUFFER_BYTES);
    assert.equal(mapped.length, 4096);
    assert.equal(scalarOf(native.fromBuffer(mapped, "uint8", [4096])), 4096);
    // A shape whose 64-bit product wraps to 4096 would make a tensor view 2^64 bytes of a 4096-byte mapping.
    assert.throws(() => native.fromBuffer(mapped, "uint8", [2 ** 61 + 512, 8]), Error);
    assert.throws(() => native.fromBuffer(mapped, "float32", [2048]), Error);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("fromBuffer does not read a buffer that was detached while its shape was being read", () => {
  // The shape's getter runs JS in the middle of argument decoding; it detaches the source buffer. The addon
  // must decode every argument before it takes the buffer's pointer and length, or it copies freed memory.
  const source = new ArrayBuffer(64);
  const view = new Uint8Array(source);
  const shape = [16];
  Object.defineProperty(shape, 0, {
    get() {
      structuredClone(source, { transfer: [source] });
      return 16;
    },
  });
  assert.throws(() => native.fromBuffer(view, "float32", shape), Error);
  assert.equal(source.byteLength, 0, "the getter did detach the buffer");
});

test("every op rejects non-tensors, disposed, empty and forged handles", () => {
  const unary = [
    "neg",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "abs",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "silu",
  ];
  unary.push(
    "square",
    "reciprocal",
    "isnan",
    "isfinite",
    "gelu",
    "logicalNot",
    "contiguous",
    "clone",
    "detach",
  );
  unary.push("toBytes", "item", "info", "sum", "mean", "amax", "amin", "nonzero", "grad", "clearGrad");
  const binaryTensorOnly = ["logicalAnd", "logicalOr", "matmul", "linear", "embedding", "copyInPlace"];
  const scalarOrTensor = ["add", "sub", "mul", "div", "pow", "eq", "ne", "lt", "le", "gt", "ge"];
  scalarOrTensor.push("maximum", "minimum");
  const good = f32([2]);
  assert.equal(scalarOf(native.add(good, good)), 4);
  const cases: Case[] = [];
  for (const [what, make] of notTensors) {
    for (const op of unary) cases.push([`${op}(${what})`, () => raw[op]!(make())]);
    for (const op of binaryTensorOnly) {
      cases.push([`${op}(${what}, t)`, () => raw[op]!(make(), good)]);
      cases.push([`${op}(t, ${what})`, () => raw[op]!(good, make())]);
    }
    for (const op of scalarOrTensor) {
      // A number (NaN included) on one side is legal; anything else that is not a live tensor is not.
      const isNumber = typeof make() === "number";
      if (!isNumber) cases.push([`${op}(${what}, t)`, () => raw[op]!(make(), good)]);
      if (!isNumber) cases.push([`${op}(t, ${what})`, () => raw[op]!(good, make())]);
      cases.push([`${op}(${what}, ${what})`, () => raw[op]!(make(), make())]);
    }
    cases.push([`to(${what})`, () => raw.to!(make(), "float64")]);
    cases.push([`reshape(${what})`, () => raw.reshape!(make(), [2])]);
    cases.push([`where(${what}, t, t)`, () => raw.where!(make(), good, good)]);
    cases.push([`cat([${what}])`, () => raw.cat!([good, make()], 0)]);
    cases.push([`backward([${what}])`, () => raw.backward!([make()], null, false)]);
    cases.push([`setRequiresGrad(${what})`, () => raw.setRequiresGrad!(make(), true)]);
  }
  assertAllThrow(cases);
  // The disposed handle reports itself as disposed, and disposing twice is harmless.
  const t = disposed();
  assert.equal(native.disposed(t), true);
  native.dispose(t);
  assert.equal(native.disposed(good), false);
  assert.equal(scalarOf(good), 2);
  // a disposed handle's slot serves the next tensor, which the old handle does not reach
  const next = f32([3], 7);
  assert.throws(() => native.item(native.sum(t)), /used after dispose/);
  assert.equal(scalarOf(next), 21);
});

test("dispose and disposed take handles only; AdamW's methods a foreign `this` never", () => {
  const cases: Case[] = [];
  for (const [what, make] of notTensors.filter(([w]) => w !== "disposed tensor")) {
    cases.push([`dispose(${what})`, () => raw.dispose!(make())]);
    cases.push([`disposed(${what})`, () => raw.disposed!(make())]);
  }
  assertAllThrow([
    ...cases,
    [
      "AdamW without new",
      () => (native.AdamW as unknown as (...a: unknown[]) => unknown)([], 1, 0.9, 0.9, 1e-8, 0),
    ],
    ["AdamW.step on a plain object", () => native.AdamW.prototype.step.call({})],
    ["AdamW.getState on a tensor", () => native.AdamW.prototype.getState.call(f32([1]) as never)],
  ]);
});

test("binary ops reject mismatched shapes and unsupported dtypes", () => {
  const a = f32([2, 3]);
  const b = f32([4]);
  const bool = native.eq(f32([2]), f32([2]));
  assert.deepEqual(native.info(native.add(a, f32([3]))).shape, [2, 3]); // broadcasting works
  const cases: Case[] = [];
  for (const op of [
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "maximum",
    "minimum",
  ]) {
    cases.push([`${op} [2,3] vs [4]`, () => raw[op]!(a, b)]);
    cases.push([`${op} with a string scalar`, () => raw[op]!(a, "2")]);
    cases.push([`${op} with two numbers`, () => raw[op]!(1, 2)]);
    cases.push([`${op} with one argument`, () => raw[op]!(a)]);
  }
  cases.push(["bool minus bool", () => native.sub(bool, bool)]);
  cases.push(["logicalAnd [2,3] vs [4]", () => native.logicalAnd(a, b)]);
  cases.push(["where with a float condition", () => native.where(a, a, a)]);
  cases.push(["where [2] vs [2,3] vs [4]", () => native.where(bool, a, b)]);
  cases.push(["where with two scalars", () => raw.where!(bool, 1, 2)]);
  cases.push([
    "maskedFill with a mismatched mask",
    () => native.maskedFill(a, native.eq(f32([4]), f32([4])), 0),
  ]);
  cases.push(["maskedFill value string", () => raw.maskedFill!(a, bool, "x")]);
  cases.push(["clamp bound string", () => raw.clamp!(a, "0", 1)]);
  cases.push(["gelu unknown approximation", () => native.gelu(a, "cubic")]);
  assertAllThrow(cases);
});

test("reductions reject out-of-range and malformed dims", () => {
  const t = f32([2, 3]);
  assert.deepEqual(native.info(native.sum(t, [1], true)).shape, [2, 1]);
  assertAllThrow([
    ["sum dim 2 of a 2-d tensor", () => native.sum(t, [2], false)],
    ["sum dim -3", () => native.sum(t, [-3], false)],
    ["sum repeated dim", () => native.sum(t, [0, 0], false)],
    ["sum dims string", () => raw.sum!(t, "0", false)],
    ["sum fractional dim", () => native.sum(t, [0.5], false)],
    ["sum keepdim string", () => raw.sum!(t, [0], "yes")],
    ["mean of int64", () => native.mean(i64([1, 2]))],
    ["amax dim 5", () => native.amax(t, [5], false)],
    ["amin of an empty tensor", () => native.amin(native.zeros([0], "float32"))],
    ["argmax dim 9", () => native.argmax(t, 9, false)],
    ["argmax dim NaN", () => native.argmax(t, NaN, false)],
    ["logsumexp dims not an array", () => raw.logsumexp!(t, 0, false)],
    ["cumsum dim 3", () => native.cumsum(t, 3)],
    ["softmax dim 2", () => native.softmax(t, 2)],
    ["softmax unknown dtype", () => native.softmax(t, 1, "float8")],
    ["logSoftmax dim Infinity", () => native.logSoftmax(t, Infinity)],
    ["topk k larger than the dim", () => native.topk(t, 4, 1, true, true)],
    ["topk k negative", () => native.topk(t, -1, 1, true, true)],
    ["topk flags missing", () => raw.topk!(t, 1, 1)],
    ["sort dim 2", () => native.sort(t, 2, false)],
    ["item of 6 elements", () => native.item(t)],
    ["item of 0 elements", () => native.item(native.zeros([0], "float32"))],
  ]);
});

test("linear algebra and nn ops reject mismatched shapes and bad indices", () => {
  const x = f32([2, 3]);
  const w = f32([4, 3]);
  assert.deepEqual(native.info(native.linear(x, w, null)).shape, [2, 4]);
  const logits = f32([2, 5]);
  assertAllThrow([
    ["matmul [2,3] x [2,3]", () => native.matmul(x, x)],
    ["matmul of 0-d tensors", () => native.matmul(native.sum(x), native.sum(x))],
    ["matmul float x int64", () => native.matmul(x, native.zeros([3, 2], "int64"))],
    ["linear wrong in-features", () => native.linear(x, f32([4, 5]), null)],
    ["linear bias wrong size", () => native.linear(x, w, f32([3]))],
    ["linear bias not a tensor", () => raw.linear!(x, w, 5)],
    ["embedding float ids", () => native.embedding(w, f32([2]))],
    ["embedding id out of range", () => native.embedding(w, i64([0, 4]))],
    ["embedding negative id", () => native.embedding(w, i64([-5]))],
    ["crossEntropy target out of range", () => native.crossEntropy(logits, i64([0, 5]), -100, "mean")],
    ["crossEntropy negative target", () => native.crossEntropy(logits, i64([0, -3]), -100, "mean")],
    ["crossEntropy target count", () => native.crossEntropy(logits, i64([0, 1, 2]), -100, "mean")],
    ["crossEntropy unknown reduction", () => native.crossEntropy(logits, i64([0, 1]), -100, "avg")],
    ["crossEntropy ignoreIndex string", () => raw.crossEntropy!(logits, i64([0, 1]), "x", "mean")],
    ["multinomial negative probabilities", () => native.multinomial(f32([3], -1), 1, true)],
    ["multinomial NaN probabilities", () => native.multinomial(f32([3], NaN), 1, true)],
    ["multinomial all-zero probabilities", () => native.multinomial(f32([3], 0), 1, true)],
    ["multinomial more draws than categories", () => native.multinomial(f32([3]), 4, false)],
    ["multinomial negative draws", () => native.multinomial(f32([3]), -1, true)],
    ["dropout p = 2", () => native.dropout(x, 2, true)],
    ["dropout p = NaN", () => native.dropout(x, NaN, true)],
  ]);
});

test("shape and indexing ops reject bad dims, sizes and indices", () => {
  const t = f32([2, 3]);
  assert.deepEqual(native.info(native.reshape(t, [3, 2])).shape, [3, 2]);
  const cases: Case[] = [
    ["reshape to the wrong numel", () => native.reshape(t, [4])],
    ["reshape with two -1", () => native.reshape(t, [-1, -1])],
    ["reshape with a huge dim", () => native.reshape(t, [2 ** 53, 0])],
    ["view of a non-contiguous tensor", () => native.view(native.transpose(t, 0, 1), [6])],
    ["permute with a repeated dim", () => native.permute(t, [0, 0])],
    ["permute with too few dims", () => native.permute(t, [0])],
    ["transpose dim 7", () => native.transpose(t, 0, 7)],
    ["unsqueeze dim 10", () => native.unsqueeze(t, 10)],
    ["squeeze dim 5", () => native.squeeze(t, 5)],
    ["expand to an incompatible shape", () => native.expand(t, [4, 3])],
    ["expand to fewer dims", () => native.expand(t, [3])],
    ["narrow past the end", () => native.narrow(t, 1, 2, 5)],
    ["narrow negative length", () => native.narrow(t, 1, 0, -1)],
    ["slice step 0", () => native.slice(t, 1, 0, 3, 0)],
    ["slice negative step", () => native.slice(t, 1, 0, 3, -1)],
    ["select index 2 of 2", () => native.select(t, 0, 2)],
    ["select index -3", () => native.select(t, 0, -3)],
    ["indexSelect float index", () => native.indexSelect(t, 0, f32([1]))],
    ["indexSelect index out of range", () => native.indexSelect(t, 0, i64([5]))],
    ["gather index out of range", () => native.gather(t, 1, native.reshape(i64([0, 9]), [2, 1]))],
    ["gather index rank mismatch", () => native.gather(t, 1, i64([0]))],
    ["indexAdd source shape mismatch", () => native.indexAdd(t, 0, i64([0]), f32([1, 5]))],
    ["indexAdd index out of range", () => native.indexAdd(t, 0, i64([7]), f32([1, 3]))],
    ["indexCopy index out of range", () => native.indexCopy(t, 0, i64([-9]), f32([1, 3]))],
    [
      "scatter index out of range",
      () => native.scatter(t, 1, native.reshape(i64([0, 3]), [2, 1]), f32([2, 1])),
    ],
    ["cat of nothing", () => native.cat([], 0)],
    ["cat mismatched shapes", () => native.cat([t, f32([2, 2])], 0)],
    ["cat dim 4", () => native.cat([t, t], 4)],
    ["cat not an array", () => raw.cat!(t, 0)],
    ["stack of nothing", () => native.stack([], 0)],
    ["stack different shapes", () => native.stack([t, f32([3, 2])], 0)],
    ["split size 0", () => native.split(t, 0, 1)],
    ["split negative size", () => native.split(t, -1, 1)],
    ["splitSizes not summing to the dim", () => native.splitSizes(t, [1, 1], 1)],
    ["splitSizes negative size", () => native.splitSizes(t, [4, -1], 1)],
    ["repeatInterleave negative repeats", () => native.repeatInterleave(t, -1, 0)],
    ["tril of a 1-d tensor", () => native.tril(f32([3]), 0)],
    ["triu diagonal NaN", () => native.triu(t, NaN)],
    ["flip dim 3", () => native.flip(t, [3])],
    ["flip repeated dim", () => native.flip(t, [0, 0])],
  ];
  assertAllThrow(cases);
});

test("in-place ops reject mismatched shapes and overlapping destinations", () => {
  const dst = f32([2, 3], 0);
  native.copyInPlace(dst, f32([3], 2)); // broadcasting copy is fine
  assert.equal(scalarOf(dst), 12);
  assertAllThrow([
    ["copyInPlace from [4]", () => native.copyInPlace(dst, f32([4]))],
    ["copyInPlace into an expanded view", () => native.copyInPlace(native.expand(f32([1, 3]), [2, 3]), dst)],
    ["copyInPlace into a disposed tensor", () => native.copyInPlace(disposed(), f32([2]))],
    ["zeroInPlace of a disposed tensor", () => native.zeroInPlace(disposed())],
    ["indexCopyInPlace index out of range", () => native.indexCopyInPlace(dst, 0, i64([5]), f32([1, 3]))],
    ["indexCopyInPlace source shape", () => native.indexCopyInPlace(dst, 0, i64([0]), f32([1, 4]))],
    ["indexCopyInPlace float index", () => native.indexCopyInPlace(dst, 0, f32([1]), f32([1, 3]))],
  ]);
});

test("autograd misuse throws: no graph, second backward, wrong gradients, int tensors", () => {
  const leaf = native.setRequiresGrad(f32([3]), true);
  const loss = native.sum(native.mul(leaf, leaf));
  native.backward([loss], null, false);
  assert.equal(scalarOf(native.grad(leaf)!), 6); // d/dx sum(x^2) = 2x = 2 per element
  const nonScalar = native.mul(leaf, 2);
  // x * x saves x for backward, so a second backward without retainGraph finds the graph freed.
  const used = native.sum(native.mul(leaf, leaf));
  native.backward([used], null, false);
  assertAllThrow([
    ["backward on a tensor without grad", () => native.backward([f32([1])], null, false)],
    ["backward through a freed graph", () => native.backward([used], null, false)],
    ["backward on a non-scalar without gradients", () => native.backward([nonScalar], null, true)],
    [
      "backward with one gradient for two outputs",
      () => native.backward([loss, nonScalar], [f32([3])], true),
    ],
    ["backward with a gradient of the wrong shape", () => native.backward([nonScalar], [f32([4])], true)],
    ["backward outputs not an array", () => raw.backward!(nonScalar, null, true)],
    ["backward retainGraph string", () => raw.backward!([nonScalar], null, "yes")],
    ["requiresGrad on an int64 tensor", () => native.setRequiresGrad(i64([1]), true)],
    ["retainGrad without requiresGrad", () => native.retainGrad(f32([1]))],
    [
      "autogradGrad w.r.t. a tensor that does not require grad",
      () => native.autogradGrad([native.sum(nonScalar)], [f32([3])], null, true),
    ],
    ["autogradGrad of a constant", () => native.autogradGrad([f32([1])], [leaf], null, false)],
    ["autogradGrad inputs not an array", () => raw.autogradGrad!([native.sum(nonScalar)], leaf, null, true)],
    ["setGradEnabled string", () => raw.setGradEnabled!("yes")],
    ["setGradEnabled no argument", () => raw.setGradEnabled!()],
  ]);
  assert.equal(native.isGradEnabled(), true, "a failed setGradEnabled left grad mode alone");
});

test("AdamW rejects non-leaf, grad-less and malformed parameters, and wrong state", () => {
  const p = native.setRequiresGrad(f32([2, 2]), true);
  assertAllThrow([
    ["non-leaf parameter", () => new native.AdamW([native.mul(p, 2)], 0.1, 0.9, 0.999, 1e-8, 0)],
    ["parameter without requiresGrad", () => new native.AdamW([f32([2])], 0.1, 0.9, 0.999, 1e-8, 0)],
    ["params not an array", () => new native.AdamW(p as never, 0.1, 0.9, 0.999, 1e-8, 0)],
    ["params holding a number", () => new native.AdamW([1 as never], 0.1, 0.9, 0.999, 1e-8, 0)],
    ["disposed parameter", () => new native.AdamW([disposed()], 0.1, 0.9, 0.999, 1e-8, 0)],
    ["lr string", () => new native.AdamW([p], "0.1" as never, 0.9, 0.999, 1e-8, 0)],
    ["negative lr", () => new native.AdamW([p], -1, 0.9, 0.999, 1e-8, 0)],
    ["beta1 = 1.5", () => new native.AdamW([p], 0.1, 1.5, 0.999, 1e-8, 0)],
    ["negative eps", () => new native.AdamW([p], 0.1, 0.9, 0.999, -1, 0)],
    ["no hyper-parameters", () => new (native.AdamW as never as new (...a: unknown[]) => unknown)([p])],
  ]);

  const opt = new native.AdamW([p], 0.1, 0.9, 0.999, 1e-8, 0);
  assert.deepEqual(opt.getState(), [null], "no state before the first step");
  native.backward([native.sum(native.mul(p, p))], null, false);
  opt.step();
  const [state] = opt.getState();
  assert.ok(state && state.step === 1);
  const good = { step: 1, expAvg: f32([2, 2]), expAvgSq: f32([2, 2]) };
  assertAllThrow([
    ["setState not an array", () => opt.setState(good as never)],
    ["setState too many entries", () => opt.setState([good, good])],
    ["setState no entries", () => opt.setState([])],
    ["setState expAvg wrong shape", () => opt.setState([{ ...good, expAvg: f32([4]) }])],
    ["setState expAvgSq wrong shape", () => opt.setState([{ ...good, expAvgSq: f32([2, 3]) }])],
    [
      "setState step missing",
      () => opt.setState([{ expAvg: good.expAvg, expAvgSq: good.expAvgSq } as never]),
    ],
    ["setState step string", () => opt.setState([{ ...good, step: "1" as never }])],
    ["setState expAvg a number", () => opt.setState([{ ...good, expAvg: 0 as never }])],
    ["setState expAvg disposed", () => opt.setState([{ ...good, expAvg: disposed() }])],
    ["setState entry a string", () => opt.setState(["state" as never])],
    ["setLr string", () => opt.setLr("0.1" as never)],
  ]);
  // The failed setState calls left the optimiser's own state in place.
  const after = opt.getState()[0];
  assert.ok(after);
  assert.equal(after.step, 1);
  assert.deepEqual(native.info(after.expAvg).shape, [2, 2]);
});

test("mmapFile and mmapRanges reject missing files, folders, non-strings, bad ranges and lengths past the limit", () => {
  const dir = scratchDir("gv-abuse-");
  try {
    const emptyFile = path.join(dir, "empty.bin");
    fs.writeFileSync(emptyFile, "");
    assert.equal(native.mmapFile(emptyFile, MAX_BUFFER_BYTES).length, 0);
    const page = path.join(dir, "page.bin");
    fs.writeFileSync(
      page,
      new Uint8Array(4096).map((_, i) => i % 251),
    );
    assertAllThrow([
      ["missing file", () => native.mmapFile(path.join(dir, "missing.bin"), MAX_BUFFER_BYTES)],
      ["a folder", () => native.mmapFile(dir, MAX_BUFFER_BYTES)],
      ["empty path", () => native.mmapFile("", MAX_BUFFER_BYTES)],
      ["number", () => raw.mmapFile!(3, MAX_BUFFER_BYTES)],
      ["no argument", () => raw.mmapFile!()],
      ["no limit", () => raw.mmapFile!(page)],
      // longer than a Buffer may be: refused before one is made (Node 20 with 4 GiB: a double free, signal 6)
      ["past the limit", () => native.mmapFile(page, 4095)],
    ]);
    // ranges: views of one mapping, each its own bytes; bad ranges refused
    const views = native.mmapRanges(page, [0, 16, 4000, 96, 100, 0], MAX_BUFFER_BYTES);
    assert.deepEqual(
      views.map((v) => [v.length, v[0], v[v.length - 1]]),
      [
        [16, 0, 15],
        [96, 4000 % 251, 4095 % 251],
        [0, undefined, undefined],
      ],
    );
    assertAllThrow([
      ["odd ranges", () => native.mmapRanges(page, [0, 16, 32], MAX_BUFFER_BYTES)],
      ["negative offset", () => native.mmapRanges(page, [-1, 16], MAX_BUFFER_BYTES)],
      ["past the end", () => native.mmapRanges(page, [4000, 97], MAX_BUFFER_BYTES)],
      ["offset past the end", () => native.mmapRanges(page, [5000, 0], MAX_BUFFER_BYTES)],
      ["longer than the limit", () => native.mmapRanges(page, [0, 4096], 4095)],
      ["missing file", () => native.mmapRanges(path.join(dir, "missing.bin"), [0, 1], MAX_BUFFER_BYTES)],
      ["no ranges", () => raw.mmapRanges!(page)],
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("runtime setters reject non-positive and non-integer values", () => {
  const before = native.getNumThreads();
  assertAllThrow([
    ["setNumThreads 0", () => native.setNumThreads(0)],
    ["setNumThreads -1", () => native.setNumThreads(-1)],
    ["setNumThreads NaN", () => native.setNumThreads(NaN)],
    ["setNumThreads 1.5", () => native.setNumThreads(1.5)],
    ["setNumThreads string", () => raw.setNumThreads!("4")],
    ["toDevice unknown device", () => native.toDevice(f32([1]), "npu")],
    ["to unknown dtype", () => native.to(f32([1]), "complex32")],
  ]);
  assert.equal(native.getNumThreads(), before);
});

test("a tensor disposed by a JS getter during argument decoding is safe: an error or a valid result, never a crash", () => {
  // IL() reads array elements through getters, so JS can run after T() has decoded the tensor. T() holds the
  // tensor by value, so the op may complete on it (memory-safe) or refuse; both are fine, a crash is not.
  const cases: Case[] = [];
  for (const op of ["reshape", "permute", "flip", "sum", "expand"]) {
    const victim = f32([2, 2]);
    const dims = op === "sum" || op === "flip" ? [0] : op === "permute" ? [1, 0] : [2, 2];
    const arr = [...dims];
    Object.defineProperty(arr, 0, {
      get() {
        native.dispose(victim);
        return dims[0];
      },
    });
    cases.push([
      `${op} with a disposing shape getter`,
      () => (op === "sum" ? native.sum(victim, arr, false) : raw[op]!(victim, arr)),
    ]);
  }
  for (const [name, call] of cases) {
    try {
      const out = call() as NativeTensor;
      assert.equal(typeof out, "bigint", `${name} returned ${String(out)}`);
      assert.equal(native.disposed(out), false, `${name} returned a dead handle`);
    } catch (e) {
      assert.ok(e instanceof Error, `${name} threw a non-Error`);
    }
  }
});

test("nothing above aborts the process: the same abuse in a child exits normally", () => {
  // A C++ abort or a fatal V8 error would kill a child silently from this process's point of view; run a
  // sample of the worst calls there and require a clean exit with the expected output.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const nativeModule = path.resolve(here, "../../src/tensor/native.js");
  const script = `
    const { native } = await import(${JSON.stringify(nativeModule)});
    const calls = [
      () => native.zeros([1e14], "float32"),
      () => native.fromBuffer(new Uint8Array(0), "uint8", [2 ** 61, 8]),
      () => native.embedding(native.zeros([2, 2], "float32"), native.full([1], 9, "int64")),
      () => native.backward([native.zeros([1], "float32")], null, false),
      () => native.add(((1n << 40n) - 1n) << 24n, 1),
      () => new native.AdamW([native.mul(native.setRequiresGrad(native.zeros([2], "float32"), true), 2)], 1, 0.9, 0.9, 1e-8, 0),
      () => native.mmapFile("/nonexistent/file"),
    ];
    let thrown = 0;
    for (const call of calls) { try { call(); } catch { thrown++; } }
    console.log("thrown=" + thrown + "/" + calls.length);
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(child.signal, null, `child died by signal ${child.signal}: ${child.stderr}`);
  assert.equal(child.status, 0, child.stderr);
  assert.match(child.stdout, /thrown=7\/7/);
});
