/**
 * An f16 export (GGUF --outtype f16, safetensors --outtype float16) of values beyond float16's range writes them as
 * ±inf, as llama.cpp's convert_hf_to_gguf.py (numpy astype(float16), which only prints numpy's "overflow encountered
 * in cast") and torch's .to(float16) do, but says so: the tensor, how many values, the largest. The reference is
 * float16 itself: 65504 is its largest finite value, 65536, 131072 and 2^20 (exact in float32 and bfloat16) are
 * beyond it; the organism's other weights are far inside (|x| < 10).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { exportGguf, planLoraGgufExport } from "../../src/io/export-gguf.js";
import { ggufTensorBytes, readGguf } from "../../src/io/gguf.js";
import { readSafetensors, writeSafetensors, type TensorToWrite } from "../../src/io/safetensors.js";
import { REPO_ROOT } from "../evalcore/make-model.js";
import { Tensor } from "../../src/tensor/index.js";
import { writePeftAdapter } from "../../src/method/lora/peft.js";
import { scratchDir } from "../scratch.js";
import { runCli, showRun } from "../cli/cli-helpers.js";

const tmp = scratchDir("gv-f16-overflow-");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ORGANISM = path.join(REPO_ROOT, "assets/organism");
const Q = "model.layers.0.self_attn.q_proj.weight";
/** written into Q at these indices: three beyond float16's range, one (65280, exact in bfloat16 and float16) inside */
const BIG: [number, number][] = [
  [5, 65536],
  [17, -1048576],
  [300, 131072],
  [301, 65280],
];
const WANT = { count: 3, maxAbs: 1048576 };

/** The organism with BIG written into Q, its weights stored as `dtype` (bfloat16: the float32 bits' top half). */
function organismWithBig(dtype: "F32" | "BF16"): string {
  const dir = path.join(tmp, `organism-${dtype}`);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(ORGANISM))
    if (f !== "model.safetensors" && fs.statSync(path.join(ORGANISM, f)).isFile())
      fs.copyFileSync(path.join(ORGANISM, f), path.join(dir, f));
  const src = readSafetensors(path.join(ORGANISM, "model.safetensors"));
  const tensors: TensorToWrite[] = [];
  for (const rec of src.tensors.values()) {
    assert.equal(rec.dtype, "F32");
    const v = new Float32Array(Uint8Array.from(rec.data).buffer);
    if (rec.name === Q) for (const [i, x] of BIG) v[i] = x;
    const data =
      dtype === "F32"
        ? new Uint8Array(v.buffer)
        : new Uint8Array(Uint16Array.from(new Uint32Array(v.buffer), (u) => u >>> 16).buffer);
    tensors.push({ name: rec.name, dtype, shape: rec.shape, data });
  }
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
  return dir;
}

const F32_MODEL = organismWithBig("F32");
const BF16_MODEL = organismWithBig("BF16");

test("GGUF f16 export from float32 and bfloat16 weights: the overflowed values counted for their tensor, written as inf", () => {
  for (const model of [F32_MODEL, BF16_MODEL]) {
    const file = path.join(tmp, `${path.basename(model)}.gguf`);
    const r = exportGguf(model, file, { outtype: "f16" });
    assert.deepEqual(r.f16Overflow, [{ tensor: "blk.0.attn_q.weight", ...WANT }], model);
    const bits = new Uint16Array(
      Uint8Array.from(ggufTensorBytes(readGguf(file), "blk.0.attn_q.weight")).buffer,
    );
    assert.equal(bits.filter((h) => (h & 0x7fff) === 0x7c00).length, 3, "infs written");
    // the types that hold them find nothing
    for (const outtype of ["bf16", "f32"] as const)
      assert.deepEqual(exportGguf(model, path.join(tmp, `x-${outtype}.gguf`), { outtype }).f16Overflow, []);
  }
  // a LoRA GGUF in f16: lora_b scaled beyond the range
  const plan = planLoraGgufExport(
    F32_MODEL,
    [
      {
        module: "model.layers.1.mlp.down_proj",
        rank: 1,
        a: new Float32Array(384).fill(0.5),
        b: new Float32Array(128).fill(1).map((x, i) => (i === 7 ? 70000 : x)),
        scale: 1,
      },
    ],
    { outtype: "f16" },
  );
  for (const t of plan.spec.tensors) (t.data as () => Uint8Array)();
  assert.deepEqual(plan.result.f16Overflow, [
    { tensor: "blk.1.ffn_down.weight.lora_b", count: 1, maxAbs: 70000 },
  ]);
});

test("export --outtype f16 / float16: a warning names the tensor, the count and the largest value; --json carries them", async () => {
  const cases: [string[], string, string][] = [
    [["--outtype", "f16"], "x.gguf", "blk.0.attn_q.weight"],
    [["--format", "safetensors", "--outtype", "float16"], "st", Q],
  ];
  for (const [flags, out, tensor] of cases) {
    const target = path.join(tmp, `cli-${out}`);
    const r = await runCli(["--json", "export", "-m", BF16_MODEL, "-o", target, ...flags]);
    assert.equal(r.code, 0, showRun(r));
    assert.match(
      r.stderr,
      new RegExp(
        `warning: ${tensor.replace(/\./g, "\\.")}: 3 values beyond float16's range \\(\\|x\\| > 65504; the largest 1\\.04858e\\+6\\) written as ±inf`,
      ),
      r.stderr,
    );
    const json = JSON.parse(r.stdout) as { f16Overflow: unknown };
    assert.deepEqual(json.f16Overflow, [{ tensor, ...WANT }]);
  }
  // the safetensors file holds the infs where the values were, 65280 where it was
  const q = readSafetensors(path.join(tmp, "cli-st", "model.safetensors")).tensors.get(Q)!;
  const bits = new Uint16Array(Uint8Array.from(q.data).buffer);
  assert.deepEqual(
    BIG.map(([i]) => bits[i]),
    [0x7c00, 0xfc00, 0x7c00, 0x7bf8],
  );
});

test("a PEFT adapter written in float16: the tensors whose values float16 cannot hold are returned", () => {
  const dir = path.join(tmp, "peft-f16");
  const mod = "model.layers.0.self_attn.q_proj";
  const A = Tensor.fromArray([0.5, -70000, 2, 100000], [1, 4]);
  const B = Tensor.fromArray([1, 2, 3], [3, 1]);
  const weights = new Map([
    [`${mod}.lora_A`, A],
    [`${mod}.lora_B`, B],
  ]);
  const cfg = { r: 1, alpha: 1, dropout: 0, targetModules: ["q_proj"] };
  const found = writePeftAdapter(dir, cfg, weights, "org/base", { dtype: "float16" });
  assert.deepEqual(found, [{ tensor: `base_model.model.${mod}.lora_A.weight`, count: 2, maxAbs: 100000 }]);
  assert.deepEqual(
    writePeftAdapter(path.join(tmp, "peft-bf16"), cfg, weights, "org/base", { dtype: "bfloat16" }),
    [],
  );
});
