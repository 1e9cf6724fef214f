/**
 * A hardened model ships as an adapter: a GoodVibe delta exported as a PEFT LoRA adapter (lora_A = U, one-hot
 * lora_B, per-module rank = clusters through rank_pattern, scaling 1) and as a llama.cpp LoRA GGUF, through the
 * CLI (`goodvibe export --adapter peft|gguf --delta ...`). The references are the folded checkpoint (the
 * delta written into the weights) and its own GGUF:
 *  - base + PEFT adapter through our adapter loader gives the folded model's logits;
 *  - llama.cpp with base GGUF + LoRA GGUF gives the folded GGUF's greedy tokens and logits.
 * Per family: llama (Q/K rows permuted in GGUF, so lora_b's too), qwen2 (biases), gemma3 (sandwich norms).
 */
import { readFixtureJson } from "../fixture-json.js";
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { gguf as hfGguf } from "@huggingface/gguf";
import { loadModel } from "../../src/models/index.js";
import { Tensor, manualSeed, noGrad } from "../../src/tensor/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { foldIntoCheckpoint } from "../../src/method/fold.js";
import { writeGoodVibeDelta } from "../../src/method/goodvibe/delta.js";
import { attachPeftAdapter } from "../../src/method/lora/model.js";
import { readPeftAdapter } from "../../src/method/lora/peft.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import { exportGguf } from "../../src/io/export-gguf.js";
import { readSafetensors } from "../../src/io/safetensors.js";
import { recordToTensor } from "../../src/models/load.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { FIXTURES } from "../evalcore/make-model.js";
import { runCli, showRun } from "../cli/cli-helpers.js";
import { fixtureWithTokenizer } from "../gguf/fixture-tokenizer.js";

const tmp = scratchDir("gv-gvlora-");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

for (const family of ["llama", "qwen2", "gemma3"]) {
  test(`${family}: a GoodVibe delta as a PEFT adapter and a llama.cpp LoRA GGUF reproduces the folded model`, async () => {
    const dir = fixtureWithTokenizer(path.join(FIXTURES, family), path.join(tmp, `${family}-base`));
    const ts = readFixtureJson(path.join(FIXTURES, family, "train_step.json.gz"));
    const cases = readFixtureJson(path.join(FIXTURES, family, "cases.json.gz"));
    const promptIds: number[] = cases.greedy.prompt_ids;

    // the fixture's selected rows, with 1, 2 or 3 clusters per module so that ranks differ; random U
    const model = loadModel(dir);
    const sel = new Map<string, RowSelection>();
    Object.entries(ts.cluster.selection as Record<string, { rows: number[] }>).forEach(([name, s], k) => {
      const nClusters = 1 + (k % 3);
      sel.set(name, { rows: s.rows, clusters: s.rows.map((_, i) => i % nClusters), nClusters });
    });
    manualSeed(11);
    const U = new Map<string, Tensor>();
    for (const [name, s] of sel)
      U.set(`${name}.U`, Tensor.randn([s.nClusters, model.linear(name).inFeatures]).mul(0.3));
    const method = attachGoodVibe(model, sel, U);
    const deltaFile = path.join(tmp, `${family}-delta.safetensors`);
    writeGoodVibeDelta(deltaFile, model, sel, method, { base_model: dir });
    const folded = path.join(tmp, `${family}-folded`);
    await foldIntoCheckpoint(dir, folded, method);
    method.detach();
    const ids = Tensor.fromArray(promptIds, [1, promptIds.length], "int64");
    const baseLogits = noGrad(() => model.forward(ids)).toFloat32Array();
    const foldedLogits = noGrad(() => loadModel(folded).forward(ids)).toFloat32Array();
    assert.ok(maxAbsDiff(baseLogits, foldedLogits) > 1e-2, "the delta must visibly change the model");

    // PEFT: exported by the CLI (the base comes from the delta's metadata), loaded by our PEFT loader
    const peftDir = path.join(tmp, `${family}-peft`);
    const r = await runCli(["export", "--adapter", "peft", "--delta", deltaFile, "-o", peftDir]);
    assert.equal(r.code, 0, showRun(r));
    assert.deepEqual(fs.readdirSync(peftDir).sort(), ["adapter_config.json", "adapter_model.safetensors"]);
    const cfg = JSON.parse(fs.readFileSync(path.join(peftDir, "adapter_config.json"), "utf8"));
    assert.equal(cfg.base_model_name_or_path, `${family}-base`);
    assert.equal(cfg.use_rslora, false);
    // vLLM reads one rank and one scaling for the adapter (vllm/lora/peft_helper.py PEFTHelper.__post_init__:
    // vllm_lora_scaling_factor = lora_alpha / r; validate_legal: r against --max-lora-rank): r must be the largest
    // module rank for that check to hold, and lora_alpha = r keeps every module's scaling at GoodVibe's 1
    assert.equal(cfg.r, Math.max(...[...sel.values()].map((s) => s.nClusters)));
    assert.equal(cfg.lora_alpha, cfg.r);
    assert.deepEqual(cfg.target_modules, [...sel.keys()].sort());
    const st = readSafetensors(path.join(peftDir, "adapter_model.safetensors"));
    for (const [name, s] of sel) {
      assert.equal(cfg.rank_pattern[name], s.nClusters);
      assert.equal(cfg.alpha_pattern[name], s.nClusters); // scaling alpha/r = 1
      const B = recordToTensor(st.tensors.get(`base_model.model.${name}.lora_B.weight`)!).toFloat32Array();
      assert.equal(B.filter((x) => x === 1).length, s.rows.length);
      assert.equal(B.filter((x) => x !== 0 && x !== 1).length, 0);
      s.rows.forEach((row, i) => assert.equal(B[row * s.nClusters + s.clusters[i]!], 1));
      const A = recordToTensor(st.tensors.get(`base_model.model.${name}.lora_A.weight`)!).toFloat32Array();
      assert.deepEqual(A, U.get(`${name}.U`)!.toFloat32Array());
    }
    const withPeft = loadModel(dir);
    attachPeftAdapter(withPeft, readPeftAdapter(peftDir));
    const peftLogits = noGrad(() => withPeft.forward(ids)).toFloat32Array();
    assert.ok(
      maxAbsDiff(peftLogits, foldedLogits) < 1e-4,
      `PEFT adapter logits differ by ${maxAbsDiff(peftLogits, foldedLogits)}`,
    );

    // llama.cpp: base GGUF + LoRA GGUF against the folded model's GGUF
    const loraFile = path.join(tmp, `${family}-lora.gguf`);
    const r2 = await runCli(["export", "--adapter", "gguf", "--delta", deltaFile, "-m", dir, "-o", loraFile]);
    assert.equal(r2.code, 0, showRun(r2));
    const meta = (await hfGguf(loraFile, { allowLocalFile: true })).metadata as unknown as Record<
      string,
      unknown
    >;
    assert.equal(meta["general.type"], "adapter");
    assert.equal(meta["adapter.type"], "lora");
    const baseGguf = path.join(tmp, `${family}-base.gguf`);
    const foldedGguf = path.join(tmp, `${family}-folded.gguf`);
    exportGguf(dir, baseGguf, { outtype: "f32" });
    exportGguf(folded, foldedGguf, { outtype: "f32" });
    const n = 8;
    const run = async (file: string, lora?: string) => {
      const b = await openLlamaCppBackend({
        modelPath: file,
        contextSize: 64,
        threads: 1,
        lora: lora ? [{ file: lora }] : undefined,
      });
      try {
        const toks = await b.generateTokens(promptIds, { maxNewTokens: n });
        const rows = await b.logits([...promptIds, ...toks.slice(0, n - 1)], { prefill: promptIds.length });
        return { toks, rows };
      } finally {
        await b.close();
      }
    };
    const want = await run(foldedGguf);
    const got = await run(baseGguf, loraFile);
    const plain = await run(baseGguf);
    assert.equal(want.toks.length, n);
    assert.deepEqual(got.toks, want.toks, "greedy tokens with the LoRA GGUF differ from the folded GGUF's");
    const diff = Math.max(...got.rows.map((row, i) => maxAbsDiff(row, want.rows[i]!)));
    const effect = Math.max(...plain.rows.map((row, i) => maxAbsDiff(row, want.rows[i]!)));
    assert.ok(
      diff < (family === "gemma3" ? 2e-3 : 1e-4),
      `LoRA GGUF logits differ from the folded GGUF's by ${diff}`,
    );
    assert.ok(effect > 100 * diff, `the adapter's effect (${effect}) must dwarf the difference (${diff})`);
  });
}

test("export --adapter refuses what it cannot do, before writing anything", async () => {
  const out = path.join(tmp, "refused");
  let r = await runCli(["export", "--adapter", "lora", "--delta", tmp, "-o", out]);
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, /peft/);
  r = await runCli(["export", "--adapter", "peft", "--delta", tmp, "-o", out]);
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, /goodvibe-delta\.safetensors/);
  r = await runCli(["export", "--adapter", "peft", "-o", out]);
  assert.equal(r.code, 2, showRun(r));
  assert.equal(fs.existsSync(out), false);
});
