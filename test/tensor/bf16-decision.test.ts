/**
 * The automatic decision on CPU bf16 products (native/src/f32_products.cc bf16ProductsDecision; tensor.ts): reroute
 * them through float32 products where libtorch's own accumulate in bf16 ("inaccurate": libtorch 1.13 on AVX2 CPUs)
 * or accumulate in float32 but take more than slowRatio x the float32 route's time ("slow": libtorch 2.6 on the same
 * CPUs, ~20x on the timed pair); keep libtorch's own otherwise ("fine": oneDNN on AVX-512 BF16 / AMX CPUs, GPUs).
 * The rule is checked over given findings against its statement, the measured findings against an independent
 * probe product, the override (GOODVIBE_F32_PRODUCTS) in fresh processes, and the routed products against float32
 * products of the same bf16 values. BENCHMARKS "libtorch 2.x on AVX2 CPUs".
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import {
  Tensor,
  bf16ProductsDecision,
  decideBf16Products,
  describeBf16Products,
  f32Products,
  manualSeed,
  noGrad,
  setF32Products,
} from "../../src/tensor/index.js";

const TENSOR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/tensor/index.js");

/** Runs `body` (an async function body with `t` = the tensor module) in a fresh process; its stdout, trimmed. */
function fresh(
  body: string,
  env: Record<string, string | undefined>,
): { status: number | null; out: string; err: string } {
  const env2: Record<string, string | undefined> = { ...process.env, ...env };
  for (const k of Object.keys(env2)) if (env2[k] === undefined) delete env2[k];
  const r = spawnSync(
    process.execPath,
    ["--input-type=module", "-e", `const t = await import(${JSON.stringify(TENSOR)}); ${body}`],
    { env: env2 as NodeJS.ProcessEnv, encoding: "utf8" },
  );
  return { status: r.status, out: r.stdout.trim(), err: r.stderr };
}

test("the rule: inaccurate whatever the times; slow only above slowRatio x the float32 route; else fine", () => {
  const { slowRatio } = bf16ProductsDecision();
  assert.equal(slowRatio, 2, "the documented margin (f32_products.h kSlowRatio)");
  // libtorch 1.13 on an AVX2 CPU: rerouted for accuracy, even were its products fast
  assert.equal(decideBf16Products(false, NaN, NaN), "inaccurate");
  assert.equal(decideBf16Products(false, 1e-4, 1e-3), "inaccurate");
  // libtorch 2.6 on the same CPU (BENCHMARKS: 34 ms against 1.65 ms)
  assert.equal(decideBf16Products(true, 34e-3, 1.65e-3), "slow");
  assert.equal(decideBf16Products(true, 2.01e-3, 1e-3), "slow");
  // the margin: up to slowRatio x is kept (timing noise must not flip a near tie)
  assert.equal(decideBf16Products(true, 2e-3, 1e-3), "fine");
  assert.equal(decideBf16Products(true, 1.5e-3, 1e-3), "fine");
  // oneDNN on AVX-512 BF16 / AMX: bf16 faster than float32; left alone
  assert.equal(decideBf16Products(true, 0.3e-3, 1e-3), "fine");
  // not timed: never "slow"
  assert.equal(decideBf16Products(true, NaN, 1e-3), "fine");
  assert.equal(decideBf16Products(true, 1e-3, NaN), "fine");
  // bf16 dot-product instructions: kept whatever a loaded clock says (a flip changed a run's model), but an
  // inaccurate product is still rerouted
  assert.equal(decideBf16Products(true, 34e-3, 1.65e-3, true), "fine");
  assert.equal(decideBf16Products(false, 1e-4, 1e-3, true), "inaccurate");
});

test("nativeBf16 is what /proc/cpuinfo's flags say", () => {
  let flags = "";
  try {
    flags = (/^flags\s*:(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "") + " ";
  } catch {
    // not Linux: the addon reads nothing either
  }
  const want = / (avx512_bf16|amx_bf16) /.test(` ${flags}`);
  assert.equal(bf16ProductsDecision().nativeBf16, want);
});

test("the decision made here follows the rule from its own findings, and accurate is the probe's product", () => {
  const d = bf16ProductsDecision();
  assert.equal(
    d.reason,
    decideBf16Products(d.accurate, d.ownSeconds ?? NaN, d.f32Seconds ?? NaN, d.nativeBf16),
  );
  if (d.accurate) {
    assert.ok(d.ownSeconds! > 0 && d.f32Seconds! > 0, JSON.stringify(d));
  } else {
    assert.equal(d.ownSeconds, null, "not timed where the probe fails");
    assert.equal(d.f32Seconds, null);
  }
  // libtorch's own product of rows 1, 512 x 2^-9 against ones: exactly 2 only when accumulated in float32
  const prev = setF32Products("off");
  try {
    const y = noGrad(() => {
      const row = [1, ...new Array(512).fill(2 ** -9)];
      const a = Tensor.fromArray(new Array(24).fill(row).flat(), [24, 513]).to("bfloat16");
      return a.matmul(Tensor.ones([513, 20], "bfloat16"));
    }).toFloat32Array();
    assert.equal(
      y.every((v) => v === 2),
      d.accurate,
    );
  } finally {
    setF32Products(prev);
  }
  // automatic: rerouted exactly where the reason says so, and the words say which reason decided
  const prev2 = setF32Products("auto");
  try {
    assert.equal(f32Products(), d.reason !== "fine");
    assert.match(describeBf16Products(), new RegExp(`\\(${d.reason}: `));
  } finally {
    setF32Products(prev2);
  }
});

test("GOODVIBE_F32_PRODUCTS overrides the decision in a fresh process (1, 0, auto); anything else is refused", () => {
  const body =
    "const d = t.bf16ProductsDecision();" +
    " console.log(JSON.stringify({ on: t.f32Products(), accurate: d.accurate, reason: d.reason, text: t.describeBf16Products() }));";
  const runs = Object.fromEntries(
    (["1", "0", "auto", undefined] as const).map((v) => {
      const r = fresh(body, { GOODVIBE_F32_PRODUCTS: v });
      assert.equal(r.status, 0, r.err);
      return [
        String(v),
        JSON.parse(r.out) as { on: boolean; accurate: boolean; reason: string; text: string },
      ];
    }),
  );
  assert.equal(runs["1"]!.on, true);
  assert.match(runs["1"]!.text, /computed in float32.*GOODVIBE_F32_PRODUCTS=1; (inaccurate|slow|fine): /);
  assert.equal(runs["0"]!.on, false);
  assert.match(runs["0"]!.text, /libtorch's own, forced off \(GOODVIBE_F32_PRODUCTS=0/);
  // auto and unset: the rule's answer (each process times for itself; the probe's finding is the same in all)
  for (const k of ["auto", "undefined"]) {
    assert.equal(runs[k]!.on, runs[k]!.reason !== "fine", k);
    assert.equal(runs[k]!.accurate, bf16ProductsDecision().accurate, k);
  }
  const bad = fresh("try { t.f32Products(); } catch (e) { console.log(e.name, e.message); }", {
    GOODVIBE_F32_PRODUCTS: "fast",
  });
  assert.equal(bad.status, 0, bad.err);
  assert.match(bad.out, /^InputError GOODVIBE_F32_PRODUCTS=fast: expected 1 \(on\), 0 \(off\) or auto/);
});

test("deciding draws no random numbers: a seeded stream is the same whether the decision ran first or not", () => {
  const draw = "t.manualSeed(7); const a = t.Tensor.randn([64]).toFloat32Array();";
  const r = fresh(
    `t.manualSeed(7); t.f32Products(); t.bf16ProductsDecision(); const b = t.Tensor.randn([64]).toFloat32Array(); ${draw}` +
      " console.log(JSON.stringify([Array.from(a), Array.from(b)]));",
    { GOODVIBE_F32_PRODUCTS: undefined },
  );
  assert.equal(r.status, 0, r.err);
  const [a, b] = JSON.parse(r.out) as number[][];
  assert.deepEqual(b, a);
});

test("where rerouted here, linear and matmul equal float32 products of the bf16 values, rounded once", (t) => {
  if (!f32Products())
    return t.skip(`libtorch's own bf16 products kept here (${bf16ProductsDecision().reason})`);
  manualSeed(13);
  // Qwen2.5-0.5B's widths: q_proj-like and down_proj-like products
  for (const [M, K, N] of [
    [48, 896, 896],
    [32, 4864, 128],
  ] as const) {
    const x = noGrad(() => Tensor.randn([M, K]).to("bfloat16"));
    const w = noGrad(() => Tensor.randn([N, K]).mul(0.05).to("bfloat16"));
    const ref = noGrad(() => x.to("float32").matmul(w.to("float32").T).to("bfloat16")).toFloat32Array();
    const viaLinear = noGrad(() => x.linear(w)).toFloat32Array();
    const viaMatmul = noGrad(() => x.matmul(w.T)).toFloat32Array();
    assert.deepEqual(viaLinear, ref, `linear [${M}, ${K}] x [${K}, ${N}]`);
    assert.deepEqual(viaMatmul, ref, `matmul [${M}, ${K}] x [${K}, ${N}]`);
  }
});

test("goodvibe setup check --json says how bf16 products are computed and which reason decided, with its timings", () => {
  const main = path.resolve(path.dirname(TENSOR), "../cli/main.js");
  const env = { ...process.env };
  delete env.GOODVIBE_F32_PRODUCTS; // the automatic setting's words
  const r = spawnSync(process.execPath, [main, "--json", "setup", "check"], { encoding: "utf8", env });
  assert.ok(r.status === 0 || r.status === 3, r.stderr); // 3: llama.cpp missing (optional)
  const p = (JSON.parse(r.stdout) as { addon: { bf16Products: Record<string, unknown> } }).addon.bf16Products;
  const here = bf16ProductsDecision();
  assert.equal(p.libtorchAccumulatesF32, here.accurate);
  assert.ok(["inaccurate", "slow", "fine"].includes(p.reason as string), String(p.reason));
  assert.equal(p.reason === "inaccurate", !here.accurate);
  if (here.accurate)
    assert.ok((p.libtorchSeconds as number) > 0 && (p.f32Seconds as number) > 0, JSON.stringify(p));
  else assert.deepEqual([p.libtorchSeconds, p.f32Seconds], [null, null]);
  assert.match(p.text as string, new RegExp(`\\(${p.reason}: `));
});
