/**
 * Folding back into checkpoints, the GoodVibe delta and PEFT adapters, against the fixtures and by reloading.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { loadModel } from "../../src/models/index.js";
import { AdamW, Tensor, noGrad } from "../../src/tensor/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { attachLora } from "../../src/method/lora/model.js";
import { attachFull } from "../../src/method/full.js";
import { sftLossHead } from "../../src/method/losses.js";
import { readPeftAdapter, writePeftAdapter } from "../../src/method/lora/peft.js";
import { foldIntoCheckpoint } from "../../src/method/fold.js";
import { readGoodVibeDelta, writeGoodVibeDelta, checkDeltaFits } from "../../src/method/goodvibe/delta.js";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.js";
import { runCli, showRun } from "../cli/cli-helpers.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import { fixtureSelections } from "./goodvibe-fixture.js";
import { type Nested, maxAbsDiff, flat } from "../numeric.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const tmp = () => scratchDir("gv-fold-");
const hashDir = (dir: string) => {
  const h = crypto.createHash("sha256");
  for (const f of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) h.update(f).update(fs.readFileSync(p));
  }
  return h.digest("hex");
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function batchOf(ts: any) {
  const ids = ts.sft_batch.input_ids as number[][];
  const labels = ts.sft_batch.labels as number[][];
  return {
    ids: Tensor.fromArray(ids.flat(), [2, 16], "int64"),
    labels: Tensor.fromArray(labels.flat(), [2, 16], "int64"),
  };
}

function train3(model: ReturnType<typeof loadModel>, params: Tensor[], ts: unknown) {
  const b = batchOf(ts);
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0 });
  for (let s = 0; s < 3; s++) {
    model.forwardBackward(b.ids, {}, sftLossHead(model, b.labels));
    opt.step();
    opt.zeroGrad();
  }
}

for (const family of ["llama", "gemma3"]) {
  const dir = path.join(FIX, family);
  const ts = readFixtureJson(path.join(dir, "train_step.json.gz"));

  test(`${family}: the fixture's PEFT adapter loads and merges to PyTorch's merged logits`, () => {
    const { cfg, init } = readPeftAdapter(path.join(dir, "lora-adapter"));
    assert.equal(cfg.r, ts.lora.r);
    assert.equal(cfg.alpha, ts.lora.lora_alpha);
    const model = loadModel(dir);
    attachLora(model, cfg, init);
    const logits = noGrad(() => model.forward(batchOf(ts).ids))
      .select(1, 15)
      .toFloat32Array();
    assert.ok(maxAbsDiff(logits, flat(ts.lora.merged_logits_last_position)) < 1e-4);
  });

  test(`${family}: a trained LoRA adapter is written as PEFT writes it`, () => {
    const model = loadModel(dir);
    const init = new Map<string, Tensor>();
    for (const [mod, a] of Object.entries(ts.lora.A_init as Record<string, number[][]>))
      init.set(`${mod}.lora_A`, Tensor.fromArray(a.flat(), [a.length, a[0].length]));
    const cfg = { r: ts.lora.r, alpha: ts.lora.lora_alpha, dropout: 0, targetModules: ["q_proj", "v_proj"] };
    const method = attachLora(model, cfg, init);
    train3(model, [...method.trainable.values()], ts);
    const out = tmp();
    writePeftAdapter(out, cfg, method, "../base");
    const mine = readSafetensors(path.join(out, "adapter_model.safetensors"));
    const ref = readSafetensors(path.join(dir, "lora-adapter", "adapter_model.safetensors"));
    assert.deepEqual([...mine.tensors.keys()].sort(), [...ref.tensors.keys()].sort());
    for (const [name, r] of ref.tensors) {
      const m = mine.tensors.get(name)!;
      assert.deepEqual(m.shape, r.shape);
      const a = new Float32Array(
        m.data.buffer.slice(m.data.byteOffset, m.data.byteOffset + m.data.byteLength),
      );
      const b = new Float32Array(
        r.data.buffer.slice(r.data.byteOffset, r.data.byteOffset + r.data.byteLength),
      );
      assert.ok(maxAbsDiff(a, b) < 1e-5, name);
    }
    const c = JSON.parse(fs.readFileSync(path.join(out, "adapter_config.json"), "utf8"));
    const rc = JSON.parse(fs.readFileSync(path.join(dir, "lora-adapter", "adapter_config.json"), "utf8"));
    for (const k of ["peft_type", "task_type", "r", "lora_alpha", "target_modules", "bias", "fan_in_fan_out"])
      assert.deepEqual(c[k], rc[k], k);
  });

  test(`${family}: GoodVibe folds into a checkpoint that reloads to the adapter's logits; the base is untouched`, async () => {
    const model = loadModel(dir);
    const sel = fixtureSelections(ts.cluster.selection);
    const method = attachGoodVibe(model, sel);
    train3(model, [...method.trainable.values()], ts);
    const ids = batchOf(ts).ids;
    const withAdapter = noGrad(() => model.forward(ids)).toFloat32Array();
    const before = hashDir(dir);
    const out = path.join(tmp(), "hardened");
    const stats = await foldIntoCheckpoint(dir, out, method);
    assert.equal(hashDir(dir), before, "the input model folder changed");
    assert.equal(stats.rowsVanished, 0);
    assert.equal(
      stats.rowsUpdated,
      [...sel.values()].reduce((a, s) => a + s.rows.length, 0),
    );
    assert.equal(stats.rowsChanged, stats.rowsUpdated);
    const reloaded = noGrad(() => loadModel(out).forward(ids)).toFloat32Array();
    assert.ok(maxAbsDiff(reloaded, withAdapter) < 1e-4);
    assert.ok(
      maxAbsDiff(
        reloaded.subarray(15 * 512, 16 * 512),
        flat(ts.cluster.folded_logits_last_position).slice(0, 512),
      ) < 1e-4,
    );
    // the delta artifact re-applies to a fresh base model
    const deltaFile = path.join(tmp(), "delta.safetensors");
    writeGoodVibeDelta(deltaFile, model, sel, method);
    const fresh = loadModel(dir);
    const delta = readGoodVibeDelta(deltaFile);
    checkDeltaFits(fresh, delta, deltaFile);
    attachGoodVibe(fresh, delta.selections, delta.U);
    assert.ok(maxAbsDiff(noGrad(() => fresh.forward(ids)).toFloat32Array(), withAdapter) < 1e-5);
    // refusing to write into the input folder
    await assert.rejects(foldIntoCheckpoint(dir, dir, method), /the output is the input model folder/);
    await assert.rejects(
      foldIntoCheckpoint(dir, path.join(dir, "sub"), method),
      /the output lies inside the input model folder/,
    );
  });
}

test("a delta made for another model is refused with the module that differs", () => {
  const llama = loadModel(path.join(FIX, "llama"));
  const qwen3 = loadModel(path.join(FIX, "qwen3"));
  const sel = new Map<string, RowSelection>([
    ["model.layers.0.self_attn.q_proj", { rows: [1, 2], clusters: [0, 0], nClusters: 1 }],
  ]);
  const method = attachGoodVibe(qwen3, sel);
  const file = path.join(tmp(), "delta.safetensors");
  writeGoodVibeDelta(file, qwen3, sel, method);
  assert.throws(
    () => checkDeltaFits(llama, readGoodVibeDelta(file), file),
    /made for another model: model\.layers\.0\.self_attn\.q_proj is \[128,64\] there and \[64,64\] here/,
  );
});

test("folding a tiny update into bf16 reports the rows that vanished in rounding", async () => {
  const dir = path.join(FIX, "llama", "model-bf16");
  const model = loadModel(dir);
  const sel = new Map<string, RowSelection>([
    ["model.layers.0.mlp.up_proj", { rows: [3, 7], clusters: [0, 1], nClusters: 2 }],
  ]);
  const U = Tensor.zeros([2, 64]);
  // row 3: 1e-6 (far below bf16's resolution near weights of size ~0.2); row 7: 0.5 (survives)
  const init = noGrad(() => Tensor.cat([U.narrow(0, 0, 1).add(1e-6), U.narrow(0, 1, 1).add(0.5)], 0));
  const method = attachGoodVibe(model, sel, new Map([["model.layers.0.mlp.up_proj.U", init]]));
  const stats = await foldIntoCheckpoint(dir, path.join(tmp(), "out"), method);
  assert.equal(stats.rowsUpdated, 2);
  assert.equal(stats.rowsVanished, 1);
  assert.equal(stats.rowsChanged, 1);
  assert.match(stats.warnings[0], /1 of 2 updated rows did not change after casting to BF16/);
});

for (const [family, sub] of [
  ["llama", "model-bf16"],
  ["qwen3", ""],
] as const) {
  test(`${family}${sub ? " bf16" : ""}: GoodVibe's fold patches only its rows, byte for byte the dense fold W.float() + ΔW cast back`, async () => {
    const dir = path.join(FIX, family, sub);
    const model = loadModel(dir);
    // rows out of order, several clusters, a row at each end; updates from far below to far above the rounding
    const sel = new Map<string, RowSelection>([
      ["model.layers.0.mlp.up_proj", { rows: [40, 3, 0, 127, 7], clusters: [1, 0, 2, 1, 0], nClusters: 3 }],
      ["model.layers.1.self_attn.o_proj", { rows: [63, 5], clusters: [0, 0], nClusters: 1 }],
    ]);
    const scales = [1e-7, 1e-3, 0.3];
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 2;
    const init = new Map<string, Tensor>();
    for (const [n, s] of sel) {
      const inF = model.linear(n).inFeatures;
      const vals = Array.from(
        { length: s.nClusters * inF },
        (_, i) => rand() * scales[Math.floor(i / inF) % 3]!,
      );
      init.set(`${n}.U`, Tensor.fromArray(vals, [s.nClusters, inF], "float32"));
    }
    const method = attachGoodVibe(model, sel, init);
    assert.ok(method.rowUpdates, "GoodVibe gives its row updates");
    const out = path.join(tmp(), "hardened");
    const stats = await foldIntoCheckpoint(dir, out, method);
    const base = readSafetensors(path.join(dir, "model.safetensors")).tensors;
    const got = readSafetensors(path.join(out, "model.safetensors")).tensors;
    assert.deepEqual([...got.keys()].sort(), [...base.keys()].sort());
    // the dense formula, independently of the row path: foldedWeight on the stored tensor, cast to its dtype
    const dense = method.foldedWeights((n) => {
      const r = base.get(n)!;
      return Tensor.fromBytes(r.data, r.dtype === "BF16" ? "bfloat16" : "float32", r.shape);
    });
    let updated = 0;
    let changed = 0;
    for (const [n, rec] of base) {
      const g = got.get(n)!;
      assert.equal(g.dtype, rec.dtype, n);
      assert.deepEqual(g.shape, rec.shape, n);
      const d = dense.get(n);
      const want = d ? d.to(rec.dtype === "BF16" ? "bfloat16" : "float32").toBytes() : rec.data;
      assert.ok(Buffer.from(g.data).equals(Buffer.from(want)), `${n}: bytes differ from the dense fold`);
      if (d) {
        const rowBytes = rec.data.byteLength / rec.shape[0]!;
        const fBase = Tensor.fromBytes(rec.data, rec.dtype === "BF16" ? "bfloat16" : "float32", rec.shape)
          .float()
          .toFloat32Array();
        const fNew = d.toFloat32Array();
        for (let r = 0; r < rec.shape[0]!; r++) {
          const inF = rec.shape[1]!;
          if (fNew.subarray(r * inF, (r + 1) * inF).some((v, j) => v !== fBase[r * inF + j])) updated++;
          const a = Buffer.from(g.data.subarray(r * rowBytes, (r + 1) * rowBytes));
          if (!a.equals(Buffer.from(rec.data.subarray(r * rowBytes, (r + 1) * rowBytes)))) changed++;
        }
      }
    }
    assert.equal(stats.tensorsChanged, 2);
    assert.equal(stats.rowsUpdated, updated);
    assert.equal(stats.rowsChanged, changed);
    assert.equal(stats.rowsVanished, updated - changed);
    if (sub)
      assert.ok(stats.rowsVanished > 0 && stats.rowsChanged > 0, "bf16: some rows vanish, some change");
  });
}

test("fold makes one changed tensor at a time, as the writer reaches it, and frees it and GoodVibe's row updates", async () => {
  const dir = path.join(FIX, "llama");
  const ts = readFixtureJson(path.join(dir, "train_step.json.gz"));
  const lora = (model: ReturnType<typeof loadModel>) => {
    const init = new Map<string, Tensor>();
    for (const [mod, a] of Object.entries(ts.lora.A_init as Record<string, number[][]>))
      init.set(`${mod}.lora_A`, Tensor.fromArray(a.flat(), [a.length, a[0].length]));
    return attachLora(
      model,
      { r: ts.lora.r, alpha: ts.lora.lora_alpha, dropout: 0, targetModules: ["q_proj", "v_proj"] },
      init,
    );
  };
  const goodvibe = (model: ReturnType<typeof loadModel>) =>
    attachGoodVibe(model, fixtureSelections(ts.cluster.selection));
  for (const [label, attach] of [
    ["lora", lora],
    ["full", (m: ReturnType<typeof loadModel>) => attachFull(m)],
    ["goodvibe", goodvibe],
  ] as const) {
    const model = loadModel(dir);
    const method = attach(model);
    train3(model, [...method.trainable.values()], ts);
    // the reference: every changed tensor at once, as fold made them before
    const expected = new Map([...method.foldedWeights()].map(([n, t]) => [n, t.toFloat32Array()]));
    const made: Tensor[] = [];
    const deltas: Tensor[] = [];
    const spy = {
      ...method,
      foldedWeight: (name: string, base?: Tensor) => {
        assert.ok(
          made.every((t) => t.disposed),
          `${label}: ${name} was made while an earlier folded tensor was still alive`,
        );
        const t = method.foldedWeight(name, base);
        made.push(t);
        return t;
      },
      ...(method.rowUpdates
        ? {
            rowUpdates: () => {
              const u = method.rowUpdates!();
              for (const v of u.values()) deltas.push(v.delta);
              return u;
            },
          }
        : {}),
    };
    const out = path.join(tmp(), "hardened");
    await foldIntoCheckpoint(dir, out, spy);
    assert.equal(
      made.length,
      label === "goodvibe" ? 0 : expected.size,
      `${label}: one fold per changed tensor`,
    );
    assert.ok(
      made.every((t) => t.disposed) && deltas.every((t) => t.disposed),
      `${label}: fold left tensors alive`,
    );
    const written = readSafetensors(path.join(out, "model.safetensors")).tensors;
    for (const [name, want] of expected) {
      const rec = written.get(name);
      if (!rec) continue; // a tied lm_head is not stored
      assert.equal(rec.dtype, "F32", name); // the llama fixture is float32: the fold writes the values exactly
      const got = new Float32Array(
        rec.data.buffer.slice(rec.data.byteOffset, rec.data.byteOffset + rec.data.byteLength),
      );
      assert.ok(maxAbsDiff(got, want) === 0, `${label}: ${name} differs from foldedWeights`);
    }
  }
});

test("folding into a float16 base: values pushed beyond 65504 are written as inf, and stats, warnings and fold --json name them", async () => {
  // a float16 copy of the llama fixture (Llama-2/CodeLlama-era checkpoints are stored so)
  const t = tmp();
  const dir = path.join(t, "llama-f16");
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIX, "llama", "config.json"), path.join(dir, "config.json"));
  const src = readSafetensors(path.join(FIX, "llama", "model.safetensors")).tensors;
  writeSafetensors(
    path.join(dir, "model.safetensors"),
    [...src.values()].map((r) => ({
      name: r.name,
      dtype: "F16" as const,
      shape: r.shape,
      data: Tensor.fromBytes(r.data, "float32", r.shape).to("float16").toBytes(),
    })),
    { format: "pt" },
  );
  const base = readSafetensors(path.join(dir, "model.safetensors")).tensors;
  const w = (name: string, i: number) =>
    Tensor.fromBytes(base.get(name)!.data, "float16", base.get(name)!.shape).float().toFloat32Array()[i]!;
  const model = loadModel(dir);
  const UP = "model.layers.0.mlp.up_proj";
  // GoodVibe's row path: row 3 moved by 70000 (every value of it beyond float16's range), row 7 by 0.5 (inside)
  const sel = new Map<string, RowSelection>([[UP, { rows: [3, 7], clusters: [0, 1], nClusters: 2 }]]);
  const U = Tensor.fromArray([...Array(64).fill(70000), ...Array(64).fill(0.5)], [2, 64]);
  const gv = attachGoodVibe(model, sel, new Map([[`${UP}.U`, U]]));
  const want = Math.max(
    ...Array.from({ length: 64 }, (_, j) => Math.abs(Math.fround(w(`${UP}.weight`, 3 * 64 + j) + 70000))),
  );
  const gvStats = await foldIntoCheckpoint(dir, path.join(t, "gv"), gv);
  assert.deepEqual(gvStats.f16Overflow, [{ tensor: `${UP}.weight`, count: 64, maxAbs: want }]);
  assert.match(
    gvStats.warnings.join("\n"),
    /model\.layers\.0\.mlp\.up_proj\.weight: 64 values beyond float16's range \(\|x\| > 65504; the largest 7000\d\.\d+\) written as ±inf.*fold into a bfloat16 or float32 copy/,
  );
  // LoRA's whole-tensor path: ΔW[5] = 70000·A with A = [1, -2, 0, …]: two values beyond the range
  const Q = "model.layers.0.self_attn.q_proj";
  const A = Tensor.fromArray([1, -2, ...Array(62).fill(0)], [1, 64]);
  const B = Tensor.fromArray(
    Array.from({ length: 64 }, (_, i) => (i === 5 ? 70000 : 0)),
    [64, 1],
  );
  const lora = attachLora(
    loadModel(dir),
    { r: 1, alpha: 1, dropout: 0, targetModules: ["q_proj"] },
    new Map([
      [`${Q}.lora_A`, A],
      [`${Q}.lora_B`, B],
    ]),
  );
  const loraStats = await foldIntoCheckpoint(dir, path.join(t, "lora"), lora);
  const big = Math.abs(Math.fround(w(`${Q}.weight`, 5 * 64 + 1) - 140000));
  assert.deepEqual(loraStats.f16Overflow, [{ tensor: `${Q}.weight`, count: 2, maxAbs: big }]);
  const q = readSafetensors(path.join(t, "lora", "model.safetensors")).tensors.get(`${Q}.weight`)!;
  const bits = new Uint16Array(Uint8Array.from(q.data).buffer);
  assert.deepEqual([bits[5 * 64], bits[5 * 64 + 1]], [0x7c00, 0xfc00], "written as +inf, -inf");
  // a float32 base holds them: nothing found
  const f32 = attachGoodVibe(loadModel(path.join(FIX, "llama")), sel, new Map([[`${UP}.U`, U]]));
  assert.deepEqual(
    (await foldIntoCheckpoint(path.join(FIX, "llama"), path.join(t, "f32"), f32)).f16Overflow,
    [],
  );
  // the fold command: the warning on stderr, the list under --json
  const delta = path.join(t, "delta.safetensors");
  writeGoodVibeDelta(delta, model, sel, gv);
  const r = await runCli(["fold", "-m", dir, "--delta", delta, "-o", path.join(t, "cli"), "--json"]);
  assert.equal(r.code, 0, showRun(r));
  assert.match(r.stderr, /warning: model\.layers\.0\.mlp\.up_proj\.weight: 64 values beyond float16's range/);
  assert.deepEqual(JSON.parse(r.stdout).f16Overflow, gvStats.f16Overflow);
});
