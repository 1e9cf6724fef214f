/**
 * Per-op microbenchmark of the decoder glue at the identification pass's real shape (Qwen2.5-0.5B: hidden 896,
 * 14 query / 2 KV heads of 64, intermediate 4864; one sequence of 256 tokens; bfloat16): each fused op of
 * native/src/fused.cc against the op sequence it replaces (the model's op-by-op path, transformers' eager code),
 * forward and backward timed separately. bench/torch_reference.py fusedops times the same op sequences in
 * PyTorch eager, so the three columns compare.
 *
 *   node dist/bench/fused-ops.js [--tokens 256] [--reps 30] [--threads 1] [--json f]
 *
 * Forward: the op under autograd (inputs require a gradient, as in the pass). Backward: y.backward(dy) of a fresh
 * forward, only the backward timed. Median over reps, per call; "per pass" multiplies by the calls one
 * identification pass makes (24 layers: RMSNorm 49, the rest 24).
 */
import { benchArgs } from "./args.js";
import { additiveMask, applyRope, RMSNorm, ropeInvFreq, ropeTables } from "../src/models/layers.js";
import {
  Tensor,
  attention,
  gatedAct,
  noGrad,
  rmsNorm,
  rope,
  setFusedOps,
  tidy,
} from "../src/tensor/index.js";
import { applyThreads, machineInfo, median, table, writeJson } from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    tokens: { type: "string", default: "256" },
    reps: { type: "string", default: "30" },
    threads: { type: "string", default: "1" },
    json: { type: "string" },
  },
});

const HIDDEN = 896;
const HEADS = 14;
const KV = 2;
const HD = 64;
const INTER = 4864;
const LAYERS = 24;

interface OpCase {
  name: string;
  callsPerPass: number;
  /** fresh inputs (leaves requiring a gradient where the pass has a gradient) */
  inputs: () => Tensor[];
  fused: (xs: Tensor[]) => Tensor;
  opByOp: (xs: Tensor[]) => Tensor;
}

function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** Median seconds of forward and of backward (per call). */
function timeOp(
  make: () => Tensor[],
  f: (xs: Tensor[]) => Tensor,
  reps: number,
): { fwd: number; bwd: number } {
  const fwd: number[] = [];
  const bwd: number[] = [];
  const inputs = make();
  for (let r = 0; r < reps + 2; r++) {
    tidy(() => {
      for (const x of inputs) x.clearGrad();
      const t0 = now();
      const y = f(inputs);
      const t1 = now();
      const dy = noGrad(() => Tensor.randn(y.shape, "float32").mul(0.01).to(y.dtype));
      const t2 = now();
      y.backward(dy);
      const t3 = now();
      if (r >= 2) {
        fwd.push(t1 - t0);
        bwd.push(t3 - t2);
      }
    });
  }
  return { fwd: median(fwd), bwd: median(bwd) };
}

function leaf(shape: number[], scale = 1): Tensor {
  return noGrad(() => Tensor.randn(shape, "float32").mul(scale).to("bfloat16")).requiresGrad_();
}
function frozen(shape: number[], scale = 1, shift = 0): Tensor {
  return noGrad(() => Tensor.randn(shape, "float32").mul(scale).add(shift).to("bfloat16"));
}

function cases(T: number): OpCase[] {
  const norm = new RMSNorm("bench", frozen([HIDDEN], 0.1, 1), 1e-6, false);
  const { cos, sin } = ropeTables(
    ropeInvFreq(HD, 1e6, { type: "default" }),
    Tensor.arange(0, T, 1, "int64").unsqueeze(0),
    "bfloat16",
  );
  const mask = additiveMask(1, T, 0, null, null, "bfloat16");
  const scale = 1 / Math.sqrt(HD);
  const rep = HEADS / KV;
  return [
    {
      name: "rmsnorm [256, 896]",
      callsPerPass: 2 * LAYERS + 1,
      inputs: () => [leaf([1, T, HIDDEN])],
      fused: ([x]) => rmsNorm(x, norm.weight, norm.eps, false),
      opByOp: ([x]) => {
        const prev = setFusedOps(false);
        try {
          return norm.forward(x);
        } finally {
          setFusedOps(prev);
        }
      },
    },
    {
      name: "rope q+k [256, 14+2, 64]",
      callsPerPass: LAYERS,
      inputs: () => [leaf([1, T, HEADS, HD]), leaf([1, T, KV, HD])],
      // the two outputs summed into one scalar-free tensor so one backward covers both
      fused: ([q, k]) => Tensor.cat([rope(q, cos, sin, KV).view([-1]), rope(k, cos, sin, KV).view([-1])]),
      opByOp: ([q, k]) =>
        Tensor.cat([
          applyRope(q.transpose(1, 2), cos, sin).reshape([-1]),
          applyRope(k.transpose(1, 2), cos, sin).reshape([-1]),
        ]),
    },
    {
      name: "attention core (causal GQA, 256 keys)",
      callsPerPass: LAYERS,
      // q in the layout each path gets from its rope: fused [B, G, T, R, D], op by op [B, H, T, D]
      inputs: () => [leaf([1, KV, T, rep, HD]), leaf([1, KV, T, HD]), leaf([1, KV, T, HD])],
      fused: ([q, k, v]) => attention(q, k, v, { scale }),
      opByOp: ([q, k, v]) => {
        // the same maths as Attention.forwardOpByOp from its rotated q on: q as [B, H, T, D]
        const qh = q.permute([0, 1, 3, 2, 4]).reshape([1, HEADS, T, HD]);
        const qg = qh.reshape([1, KV, rep * T, HD]);
        const scores = qg.matmul(k.transpose(2, 3)).view([1, HEADS, T, T]).mul(scale);
        const probs = scores.add(mask).softmax(-1, "float32").to("bfloat16");
        const ctx = probs
          .view([1, KV, rep * T, T])
          .matmul(v)
          .view([1, HEADS, T, HD]);
        return ctx.transpose(1, 2).reshape([1, T, HEADS * HD]);
      },
    },
    {
      name: "gated SiLU product [256, 4864]",
      callsPerPass: LAYERS,
      inputs: () => [leaf([1, T, INTER]), leaf([1, T, INTER])],
      fused: ([g, u]) => gatedAct(g, u, "silu"),
      opByOp: ([g, u]) => g.silu().mul(u),
    },
  ];
}

function main(): void {
  const threads = applyThreads(Number(args.threads));
  const T = Number(args.tokens);
  const reps = Number(args.reps);

  const rows: (string | number)[][] = [];
  const results: Record<string, unknown>[] = [];
  let sumF = 0;
  let sumO = 0;
  for (const c of cases(T)) {
    const f = timeOp(c.inputs, c.fused, reps);
    const o = timeOp(c.inputs, c.opByOp, reps);
    const ms = (s: number) => (s * 1e3).toFixed(3);
    rows.push([
      c.name,
      ms(f.fwd),
      ms(o.fwd),
      (o.fwd / f.fwd).toFixed(2),
      ms(f.bwd),
      ms(o.bwd),
      (o.bwd / f.bwd).toFixed(2),
      ((f.fwd + f.bwd) * c.callsPerPass).toFixed(3),
      ((o.fwd + o.bwd) * c.callsPerPass).toFixed(3),
    ]);
    sumF += (f.fwd + f.bwd) * c.callsPerPass;
    sumO += (o.fwd + o.bwd) * c.callsPerPass;
    results.push({ op: c.name, callsPerPass: c.callsPerPass, fused: f, opByOp: o });
  }
  rows.push(["all (per pass)", "", "", "", "", "", "", sumF.toFixed(3), sumO.toFixed(3)]);
  console.log(`threads ${threads}, ${T} tokens, bfloat16, median of ${reps} calls`);
  console.log(
    table(
      [
        "op",
        "fwd fused ms",
        "fwd op-by-op ms",
        "speed-up",
        "bwd fused ms",
        "bwd op-by-op ms",
        "speed-up",
        "fused s/pass",
        "op-by-op s/pass",
      ],
      rows,
    ),
  );
  writeJson(args.json, { bench: "fused-ops", machine: machineInfo(), threads, tokens: T, reps, results });
}

main();
