/**
 * The ops behind one product for several linears (models/linear.ts LinearGroup): splitColumns (blocks of a
 * product's output that autograd treats as separate tensors; backward joins their gradients), gatedAct reading
 * gate and up in place as blocks of one output and writing their gradients side by side, and releaseMappedPages.
 * References: narrow/cat written out here, gatedAct on contiguous copies (the same kernel: bit for bit).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.js";
import { recordToTensor } from "../../src/models/load.js";
import {
  Tensor,
  clusterRowUpdate,
  gatedAct,
  keep,
  manualSeed,
  noGrad,
  releaseMappedPages,
  splitColumns,
  withGrad,
  type DType,
} from "../../src/tensor/index.js";

const same = (a: Tensor, b: Tensor, what: string) => {
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  assert.deepEqual(a.toFloat32Array(), b.toFloat32Array(), what);
};

test("splitColumns: the blocks are the output's columns; backward joins their gradients, zeros for unused blocks", () => {
  manualSeed(1);
  const y0 = Tensor.randn([2, 3, 10]);
  const sizes = [4, 2, 4];
  withGrad(() => {
    const y = y0.clone().requiresGrad_();
    const parts = splitColumns(y, sizes);
    let at = 0;
    parts.forEach((p, i) => {
      same(
        p,
        noGrad(() => y0.narrow(-1, at, sizes[i])),
        `block ${i}`,
      );
      at += sizes[i];
    });
    const w0 = Tensor.randn([2, 3, 4]);
    const w2 = Tensor.randn([2, 3, 4]);
    // block 1 unused: its gradient is zero
    parts[0].mul(w0).sum().add(parts[2].mul(w2).sum()).backward();
    same(y.grad!, Tensor.cat([w0, Tensor.zeros([2, 3, 2]), w2], -1), "dy");
  });
  assert.throws(() => splitColumns(y0, [4, 4]), /add up to 8/);
  assert.throws(() => splitColumns(y0, [10, 0]), /positive/);
});

test("splitColumns: a block may be updated in place (GoodVibe's row update) without touching the others", () => {
  manualSeed(2);
  const x = Tensor.randn([5, 6]);
  const W = Tensor.randn([9, 6]);
  const U0 = Tensor.randn([2, 6]);
  const rows = Tensor.fromArray([0, 2], [2], "int64");
  const clusters = Tensor.fromArray([1, 0], [2], "int64");
  const run = (shared: boolean) =>
    withGrad(() => {
      const U = U0.clone().requiresGrad_();
      const xg = x.clone().requiresGrad_();
      const [a, b] = shared
        ? splitColumns(xg.linear(W, null), [3, 6])
        : [xg.linear(W.narrow(0, 0, 3), null), xg.linear(W.narrow(0, 3, 6), null)];
      const a2 = clusterRowUpdate(a, xg, U, rows, clusters);
      const loss = a2.square().sum().add(b.mul(3).sum());
      loss.backward();
      return { a: a2.detach(), b: b.detach(), dU: U.grad!, dx: xg.grad! };
    });
  const s = run(true);
  const o = run(false);
  for (const k of ["a", "b", "dU", "dx"] as const) {
    const d = Math.max(...s[k].sub(o[k]).abs().toFloat32Array());
    assert.ok(d < 1e-5, `${k}: ${d}`);
  }
});

for (const dtype of ["float32", "bfloat16"] as DType[]) {
  test(`gatedAct (${dtype}) on blocks of one output: the contiguous result bit for bit, gradients joined`, () => {
    manualSeed(3);
    const I = 37; // not a multiple of the vector width
    for (const layout of ["adjacent", "apart"] as const) {
      for (const act of ["silu", "gelu_pytorch_tanh"] as const) {
        // gate and up side by side (one gate/up product), or with another block between them
        const width = layout === "adjacent" ? 2 * I : 3 * I;
        const y0 = Tensor.randn([2, 5, width]).mul(2).to(dtype);
        const w = Tensor.randn([2, 5, I]).to(dtype);
        const upAt = layout === "adjacent" ? I : 2 * I;
        const sizes = layout === "adjacent" ? [I, I] : [I, I, I];
        const shared = withGrad(() => {
          const y = y0.clone().requiresGrad_();
          const parts = splitColumns(y, sizes);
          const [g, u] = [parts[0], parts[upAt / I]];
          g.retainGrad();
          u.retainGrad();
          const out = gatedAct(g, u, act);
          out.mul(w).sum().backward();
          return { out: out.detach(), dy: y.grad!, dg: g.grad!, du: u.grad! };
        });
        const own = withGrad(() => {
          const g = noGrad(() => y0.narrow(-1, 0, I).contiguous()).requiresGrad_();
          const u = noGrad(() => y0.narrow(-1, upAt, I).contiguous()).requiresGrad_();
          const out = gatedAct(g, u, act);
          out.mul(w).sum().backward();
          return { out: out.detach(), dg: g.grad!, du: u.grad! };
        });
        const what = `${layout} ${act}`;
        same(shared.out, own.out, `${what}: output`);
        same(shared.dg, own.dg, `${what}: d gate`);
        same(shared.du, own.du, `${what}: d up`);
        const parts = [own.dg, own.du];
        if (layout === "apart") parts.splice(1, 0, Tensor.zeros([2, 5, I], dtype));
        same(shared.dy, Tensor.cat(parts, -1), `${what}: d output`);
      }
    }
  });
}

test("releaseMappedPages: the mapped pages of a copied tensor go back; its bytes read the same afterwards", () => {
  const dir = scratchDir("gv-release-");
  const file = path.join(dir, "w.safetensors");
  manualSeed(4);
  const values = Tensor.randn([64, 1024]); // 256 KiB: whole pages inside it
  writeSafetensors(file, [
    { name: "small", dtype: "F32", shape: [3], data: new Uint8Array(Tensor.randn([3]).toBytes()) },
    { name: "w", dtype: "F32", shape: [64, 1024], data: new Uint8Array(values.toBytes()) },
  ]);
  const rec = readSafetensors(file).tensors.get("w")!;
  const mapped = keep(recordToTensor(rec));
  same(mapped, values, "before");
  const released = releaseMappedPages(mapped);
  assert.ok(released >= 256 * 1024 - 2 * 4096 && released <= 256 * 1024, `released ${released} bytes`);
  // a private file mapping refills released pages from the file
  same(mapped, values, "the released tensor, read again");
  same(recordToTensor(rec), values, "a new tensor on the same record");
  assert.equal(releaseMappedPages(values), 0, "a tensor in ordinary memory");
  mapped.dispose();
});
