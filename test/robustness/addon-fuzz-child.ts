/**
 * The child of test/robustness/addon-fuzz.test.ts: runs seeded fuzz cases against the raw addon, the ops enumerated
 * from the addon's own op table (opSignatures), so an op added later is fuzzed without being listed here.
 *
 *   node addon-fuzz-child.js <mode: ops | kernels> <seed> <first case> <count>
 *
 * Before each call it writes "CASE <n> <op>(<arguments>)" to stderr, synchronously, so that a child killed by a
 * signal names the call that killed it. A call may return or throw; a throw must be an Error with a message
 * ("BADTHROW" otherwise). At the end: "DONE ok=<returned> thrown=<threw>" on stdout.
 *
 * ops: each case takes the next op of the table in turn (every op gets cases) with arguments drawn per parameter
 * type from its signature: tensors of every dtype, of odd shapes (empty, 0-d, 5-d), strided, transposed, expanded,
 * requiring grad, disposed, forged; numbers (NaN, infinities, +-2^63, negative); arrays, strings and junk values;
 * now and then one argument too many or too few. A tenth of the calls whose output needs grad run a backward.
 * kernels: the addon's own kernels (fused.cc, train_ops.cc, grad_reduce.cc, f32_products.cc, frozen_linear.cc)
 * and the index-taking ops with valid arguments, then zero to two mutations (a stride, a dtype, a size, a disposed
 * or zero-size tensor, NaN, out-of-range indices), then a backward through whatever needs grad and toBytes of the
 * outputs: the mutated argument must be refused or handled, past the shape checks too.
 */
import * as fs from "node:fs";
import { native } from "../../src/tensor/native.js";
import type { NativeTensor } from "../../src/tensor/native-ops.js";
import { createRng, type Rng } from "../../src/util/random.js";

type Fn = (...args: unknown[]) => unknown;
const A = native as unknown as Record<string, Fn> & {
  opSignatures: Record<string, string>;
};
/** Every handle a case made: disposed when the case ends (the addon frees a handle only when told). */
const made: NativeTensor[] = [];
function record(v: unknown): void {
  if (typeof v === "bigint") made.push(v as NativeTensor);
  else if (Array.isArray(v)) v.forEach(record);
  else if (v && typeof v === "object") Object.values(v).forEach(record);
}
const call = (name: string, ...args: unknown[]) => {
  const out = A[name]!(...args) as NativeTensor;
  record(out);
  return out;
};

/** Global switches: a fuzzed call would change how the rest of the run computes (threads, kernels, grad mode). */
const SKIP = new Set([
  "setNumThreads",
  "manualSeed",
  "setF32Products",
  "setKernelMode",
  "setGradEnabled",
  "synchronize",
]);

const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r.next() * xs.length)]!;
const isTensor = (v: unknown): v is NativeTensor => typeof v === "bigint";
const infoOf = (t: NativeTensor) => A.info!(t) as { shape: number[]; dtype: string; requiresGrad: boolean };
const i64 = (vals: number[]) =>
  call("fromBuffer", new Uint8Array(new BigInt64Array(vals.map((v) => BigInt(v))).buffer), "int64", [
    vals.length,
  ]);

const DTYPES = ["float32", "bfloat16", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"];
const SHAPES = [
  [],
  [0],
  [1],
  [3],
  [2, 3],
  [3, 2],
  [4, 4],
  [2, 0],
  [0, 3],
  [1, 3, 4],
  [2, 3, 4],
  [2, 2, 3, 4],
  [1, 2, 3, 8],
  [2, 4, 3, 16],
  [5, 7],
  [7, 5],
  [1, 1, 1, 1, 1],
  [2, 2, 5, 2, 16],
];
const NUMBERS = [
  0,
  1,
  -1,
  2,
  3,
  -2,
  0.5,
  NaN,
  Infinity,
  -Infinity,
  2 ** 31,
  2 ** 53,
  -(2 ** 53),
  1e300,
  1e-300,
  4,
  16,
  7,
  2 ** 63,
  -(2 ** 63),
  64,
];
const ARRAYS = [
  [],
  [0],
  [1],
  [-1],
  [0, 1],
  [1, 0],
  [2, 3],
  [3, 2],
  [6],
  [-1, 2],
  [1, 2, 3],
  [0, 0],
  [NaN],
  [2 ** 40, 2 ** 40],
  [1e9],
  [-7],
  [1, -1],
  [2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
  [0, 1, 2, 3],
  [4, 4],
  [2 ** 63],
];
const STRINGS = [
  "float32",
  "bfloat16",
  "int64",
  "cpu",
  "cuda",
  "cuda:7",
  "tanh",
  "none",
  "gelu",
  "silu",
  "gelu_tanh",
  "mean",
  "sum",
  "",
  "x".repeat(3000),
  "auto",
  "on",
  "off",
  "native",
  "composite",
  "\u0000",
];
const junk = (r: Rng): unknown =>
  pick(r, [
    undefined,
    null,
    {},
    [],
    "3",
    true,
    () => 1,
    Symbol("s"),
    10n,
    new Uint8Array(4),
    ((1n << 40n) - 1n) << 24n, // a handle the addon never gave out
    -1n,
  ]);

function tensor(r: Rng): NativeTensor {
  const shape = pick(r, SHAPES);
  const dt = pick(r, DTYPES);
  const kind = Math.floor(r.next() * 10);
  let t: NativeTensor;
  if (dt === "bool") t = call("gt", call("randn", shape, "float32"), 0);
  else if (dt.startsWith("int") || dt === "uint8") {
    const [lo, hi] = pick(r, [
      [0, 1],
      [-1, -5],
      [2 ** 40, 1e9],
      [0, 100],
    ]);
    t = call("to", call("add", call("mul", call("rand", shape, "float64"), hi! - lo!), lo!), dt);
  } else {
    t = call("randn", shape, dt);
    if (kind === 9) t = call("mul", t, NaN);
  }
  const last = shape[shape.length - 1] ?? 0;
  if (kind === 1 && shape.length >= 2) t = call("transpose", t, 0, 1);
  if (kind === 2 && last > 1) t = call("slice", t, -1, 0, last, 2);
  if (kind === 3 && shape.length >= 1)
    t = call("expand", call("narrow", t, 0, 0, Math.min(1, shape[0]!)), shape);
  if (kind === 4) t = call("setRequiresGrad", call("to", t, "float32"), true);
  if (kind === 5)
    t = call("mul", call("setRequiresGrad", call("randn", shape.length ? shape : [1], "float32"), true), 2);
  if (kind === 6) {
    t = call("zeros", [1], "float32");
    A.dispose!(t);
  }
  return t;
}

/** The parameter types of a signature "(a: N, b?: number[] | null): N" -> ["N", "number[] | null"]. */
function parameterTypes(sig: string): string[] {
  const inner = sig.slice(1, sig.lastIndexOf("):"));
  if (!inner.trim()) return [];
  return inner.split(/,\s*(?![^{]*})/).map((p) => p.split(":").slice(1).join(":").trim());
}

function argument(r: Rng, type: string): unknown {
  if (r.next() < 0.08) return junk(r);
  if (type.startsWith("N[]")) return Array.from({ length: Math.floor(r.next() * 4) }, () => tensor(r));
  if (type.startsWith("NS")) return r.next() < 0.7 ? tensor(r) : pick(r, NUMBERS);
  if (type.startsWith("N")) return r.next() < 0.1 ? null : tensor(r);
  if (type.startsWith("number[]")) return pick(r, ARRAYS);
  if (type.startsWith("number")) return pick(r, NUMBERS);
  if (type.startsWith("string")) return pick(r, STRINGS);
  if (type.startsWith("boolean")) return r.next() < 0.5;
  if (type.startsWith("Uint8Array") || type.startsWith("buf"))
    return new Uint8Array(Math.floor(r.next() * 64));
  return junk(r);
}

// ---------------------------------------------------------------- kernels: valid arguments, then mutations
function mk(r: Rng, shape: number[], dt: string, grad = false): NativeTensor {
  let t = call("randn", shape, "float32");
  if (dt !== "float32") t = call("to", t, dt);
  return grad ? call("setRequiresGrad", t, true) : t;
}
function mutate(r: Rng, t: NativeTensor): NativeTensor {
  const { shape: s, dtype } = infoOf(t);
  const last = s[s.length - 1] ?? 0;
  switch (Math.floor(r.next() * 12)) {
    case 0:
      return s.length >= 2 ? call("transpose", t, -1, -2) : t;
    case 1:
      return call("to", t, pick(r, ["float64", "float16", "int64", "bfloat16", "float32", "bool", "int32"]));
    case 2: {
      if (!s.length) return call("reshape", t, [1]);
      const ns = s.slice();
      const d = Math.floor(r.next() * s.length);
      ns[d] = pick(r, [0, 1, ns[d]! + 1, ns[d]! * 2, Math.max(1, ns[d]! - 1)]);
      return call("randn", ns, dtype === "int64" || dtype === "bool" ? "float32" : dtype);
    }
    case 3:
      return s.length ? call("expand", call("narrow", t, -1, 0, Math.min(1, last)), s) : t;
    case 4:
      return last >= 2 ? call("slice", call("cat", [t, t], -1), -1, 0, 2 * last, 2) : t;
    case 5:
      return call("unsqueeze", t, 0);
    case 6:
      return s.length ? call("select", t, 0, 0) : t;
    case 7:
      return call("mul", t, NaN);
    case 8:
      return call("mul", t, 1e30);
    case 9: {
      const c = call("clone", t);
      A.dispose!(c);
      return c;
    }
    case 10:
      return call(
        "zeros",
        s.map(() => 0),
        "float32",
      );
    default:
      return call(
        "contiguous",
        call(
          "permute",
          t,
          s.map((_, k) => s.length - 1 - k),
        ),
      );
  }
}
const KERNELS: Record<string, (r: Rng, dt: string, g: boolean) => unknown[]> = {
  rmsNorm: (r, dt, g) => [mk(r, [2, 3, 40], dt, g), mk(r, [40], dt, g), 1e-6, r.next() < 0.5],
  rope: (r, dt, g) => [
    mk(r, [2, 5, 4, 16], dt, g),
    mk(r, [2, 5, 16], dt),
    mk(r, [2, 5, 16], dt),
    pick(r, [1, 2, 4]),
  ],
  gatedAct: (r, dt, g) => [
    mk(r, [3, 7, 33], dt, g),
    mk(r, [3, 7, 33], dt, g),
    pick(r, ["silu", "gelu_tanh", "gelu"]),
  ],
  splitColumns: (r, dt, g) => [mk(r, [3, 12], dt, g), [4, 8]],
  frozenLinear: (r, dt, g) => [
    mk(r, [3, 5, 24], dt, g),
    mk(r, [16, 24], dt),
    r.next() < 0.5 ? mk(r, [16], dt) : null,
  ],
  linear: (r, dt, g) => [
    mk(r, [3, 5, 24], dt, g),
    mk(r, [16, 24], dt, g),
    r.next() < 0.5 ? mk(r, [16], dt, g) : null,
  ],
  matmul: (r, dt, g) => [mk(r, [3, 5, 24], dt, g), mk(r, [24, 16], dt, g)],
  attention: (r, dt, g) => {
    const past = pick(r, [0, 2]);
    const mask = r.next() < 0.5 ? call("gt", call("randn", [2, 5 + past], "float32"), -1) : null;
    return [
      mk(r, [2, 2, 5, 2, 16], dt, g),
      mk(r, [2, 2, 5 + past, 16], dt, g),
      mk(r, [2, 2, 5 + past, 16], dt, g),
      0.25,
      past,
      pick(r, [0, 3, -1, 1e9]),
      mask,
      pick(r, [0, 30, -1, NaN]),
    ];
  },
  clusterRowUpdate: (r, dt, g) => {
    const y = call("clone", mk(r, [2, 3, 16], dt));
    const rows = i64(
      pick(r, [
        [0, 5, 9],
        [0, 16, 1],
        [-1, 2, 3],
        [15, 15, 15],
      ]),
    );
    const clusters = i64(
      pick(r, [
        [0, 1, 1],
        [0, 2, 0],
        [-1, 0, 0],
        [1, 0, 1],
      ]),
    );
    return [
      g ? call("mul", call("setRequiresGrad", y, true), 1) : y,
      mk(r, [2, 3, 24], dt, g),
      mk(r, [2, 24], "float32", g),
      rows,
      clusters,
    ];
  },
  crossEntropySum: (r, dt, g) => [
    mk(r, [6, 50], dt, g),
    i64(
      pick(r, [
        [0, 1, 2, 3, 4, 49],
        [0, 1, 2, 3, 4, 50],
        [0, -1, 2, 3, 4, 5],
        [-100, 0, 0, 0, 0, 0],
      ]),
    ),
  ],
  meanAbsOverTime: (r, dt) => [
    mk(r, [2, 7, 40], dt),
    pick(r, [
      call("full", [2], 7, "float32"),
      call("full", [2, 1], 3, "float32"),
      call("full", [2], 0, "float32"),
      call("full", [3], 1, "float32"),
    ]),
  ],
  meanAbsGradHook: (r, dt) => [
    call("mul", mk(r, [2, 7, 40], dt, true), 1),
    call("zeros", [2, 40], "float32"),
    call("full", [2], 7, "float32"),
  ],
  sumOfSquares: (r, dt, g) => [[mk(r, [5, 7], dt, g), mk(r, [33], dt, g)]],
  embedding: (r, dt, g) => [mk(r, [10, 8], dt, g), i64(pick(r, [[0, 9, 3], [10], [-1], [2 ** 40]]))],
  crossEntropy: (r, dt, g) => [
    mk(r, [4, 10], dt, g),
    i64(
      pick(r, [
        [0, 9, 3, 1],
        [10, 0, 0, 0],
        [-100, -100, 1, 2],
        [-5, 0, 0, 0],
      ]),
    ),
    -100,
    pick(r, ["mean", "sum", "none"]),
  ],
  indexSelect: (r, dt, g) => [mk(r, [10, 8], dt, g), 0, i64(pick(r, [[0, 9], [10], [-1]]))],
  gather: (r, dt, g) => [
    mk(r, [4, 8], dt, g),
    1,
    call(
      "reshape",
      i64(
        pick(r, [
          [0, 7, 1, 2],
          [8, 0, 0, 0],
          [-1, 0, 0, 0],
        ]),
      ),
      [4, 1],
    ),
  ],
  indexCopyInPlace: (r, dt) => [
    mk(r, [10, 8], dt),
    0,
    i64(
      pick(r, [
        [0, 9],
        [10, 0],
        [-1, 0],
      ]),
    ),
    mk(r, [2, 8], dt),
  ],
  indexAdd: (r, dt, g) => [
    mk(r, [10, 8], dt, g),
    0,
    i64(
      pick(r, [
        [0, 9],
        [10, 0],
        [-11, 0],
      ]),
    ),
    mk(r, [2, 8], dt, g),
  ],
  scatter: (r, dt, g) => [
    mk(r, [4, 8], dt, g),
    1,
    call(
      "reshape",
      i64(
        pick(r, [
          [0, 7, 1, 2],
          [8, 0, 0, 0],
          [-9, 0, 0, 0],
        ]),
      ),
      [4, 1],
    ),
    mk(r, [4, 1], dt, g),
  ],
  multinomial: (r) => [call("abs", mk(r, [3, 5], "float32")), pick(r, [1, 5, 6, 0]), r.next() < 0.5],
  releaseMappedPages: (r, dt) => [mk(r, [4096], dt)],
  repeatInterleave: (r, dt, g) => [mk(r, [3, 4], dt, g), pick(r, [2, 0, -1, 2 ** 40]), pick(r, [0, 1, 2])],
  topk: (r, dt, g) => [mk(r, [3, 5], dt, g), pick(r, [1, 5, 6, 0, -1]), pick(r, [0, 1, -1, 2]), true, true],
  setRngState: (r) => [
    pick(r, [
      call("rngState"),
      call("zeros", [5], "uint8"),
      call("to", call("rngState"), "float32"),
      call("narrow", call("rngState"), 0, 0, 100),
    ]),
  ],
};

const describe = (v: unknown): string => {
  if (isTensor(v)) {
    try {
      const i = infoOf(v);
      return `T${JSON.stringify(i.shape)}${i.dtype}${i.requiresGrad ? "+grad" : ""}`;
    } catch {
      return "T(disposed or forged)";
    }
  }
  if (Array.isArray(v)) return `[${v.map(describe).join(",")}]`;
  if (typeof v === "string") return JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}...` : v);
  return typeof v === "symbol" || typeof v === "function" ? typeof v : String(v);
};

const [mode, seedArg, firstArg, countArg] = process.argv.slice(2);
const seed = Number(seedArg);
const first = Number(firstArg);
const count = Number(countArg);
A.setNumThreads!(1);
const ops = Object.keys(A.opSignatures)
  .filter((k) => !SKIP.has(k))
  .sort();
const kernels = Object.keys(KERNELS).sort();
let ok = 0;
let thrown = 0;
for (let c = first; c < first + count; c++) {
  const r = createRng(seed * 1_000_003 + c);
  let op: string;
  let args: unknown[];
  try {
    if (mode === "kernels") {
      op = kernels[c % kernels.length]!;
      args = KERNELS[op]!(r, pick(r, ["float32", "bfloat16"]), r.next() < 0.5);
      for (let k = Math.floor(r.next() * 3); k > 0; k--) {
        const i = Math.floor(r.next() * args.length);
        const a = args[i];
        if (isTensor(a)) args[i] = mutate(r, a);
        else if (Array.isArray(a) && isTensor(a[0])) a[0] = mutate(r, a[0]);
        else if (typeof a === "number") args[i] = pick(r, [NaN, -1, 0, 1e300, 2 ** 53, -(2 ** 63)]);
        else if (Array.isArray(a)) args[i] = pick(r, [[], [12], [0, 12], [-4, 16], [6, 6], [NaN]]);
      }
    } else {
      op = ops[c % ops.length]!;
      const types = parameterTypes(A.opSignatures[op]!);
      let n = types.length;
      if (r.next() < 0.1) n = Math.max(0, n + (r.next() < 0.5 ? -1 : 1));
      args = Array.from({ length: n }, (_, i) => argument(r, types[i] ?? "junk"));
    }
  } catch {
    continue; // making the arguments failed (a mutation the op table refuses): no case
  }
  fs.writeSync(2, `CASE ${c} ${op}(${args.map(describe).join(", ")})\n`);
  try {
    const out = A[op]!(...args);
    record(out);
    ok++;
    const outs = (Array.isArray(out) ? out : [out]).filter(isTensor);
    const needGrad = outs.filter((o) => {
      try {
        return infoOf(o).requiresGrad;
      } catch {
        return false;
      }
    });
    if (op === "meanAbsGradHook") needGrad.push(args[0] as NativeTensor);
    if (needGrad.length && (mode === "kernels" || r.next() < 0.1)) {
      fs.writeSync(2, `CASE ${c} ${op}: backward\n`);
      const loss = needGrad
        .map((o) =>
          call("sum", call("mul", call("to", o, "float32"), call("randn", infoOf(o).shape, "float32"))),
        )
        .reduce((a, b) => call("add", a, b));
      call("backward", [loss], null, false);
    }
    if (mode === "kernels") for (const o of outs) A.toBytes!(o);
  } catch (e) {
    if (!(e instanceof Error) || !e.message) fs.writeSync(2, `BADTHROW ${c} ${op}: ${String(e)}\n`);
    thrown++;
  }
  for (const h of made.splice(0)) A.dispose!(h);
}
fs.writeSync(1, `DONE ok=${ok} thrown=${thrown}\n`);
