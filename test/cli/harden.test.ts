/**
 * `goodvibe harden` and `goodvibe fold` as a user runs them: the output is a complete Hugging Face folder, the
 * input folder is never written, the --json report parses, and the shipped artifact (GoodVibe delta or PEFT LoRA
 * adapter) folded onto the base by `fold` reproduces the hardened weights byte for byte.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { readSafetensors, type TensorRecord } from "../../src/io/safetensors.js";
import { hashTree, makeCliFixture, runCli, sha256File, showRun } from "./cli-helpers.js";
import { loadModelConfig } from "../../src/io/config.js";
import { ModelShape } from "../../src/models/shapes.js";
import { formatFlops } from "../../src/method/flops.js";

const fx = makeCliFixture({ perLanguage: 4 });
after(() => fx.cleanup());

const TINY = [
  "--epochs",
  "1",
  "--set",
  "train.maxPairs=8",
  "--set",
  "identify.maxPairs=8",
  "--set",
  "train.lr=0.01",
];
const LINEAR = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/;

/** Output rows (first-axis slices) whose bytes differ between two records of the same shape. */
function changedRows(a: TensorRecord, b: TensorRecord): number {
  assert.deepEqual(a.shape, b.shape, a.name);
  const rowBytes = a.data.length / a.shape[0]!;
  let n = 0;
  for (let r = 0; r < a.shape[0]!; r++) {
    const lo = r * rowBytes;
    if (!a.data.subarray(lo, lo + rowBytes).equals(b.data.subarray(lo, lo + rowBytes))) n++;
  }
  return n;
}

function weights(dir: string): Map<string, TensorRecord> {
  return readSafetensors(path.join(dir, "model.safetensors")).tensors;
}

test("harden (GoodVibe): complete output folder, input untouched, --json parses, only top-k rows of linear layers move; fold --delta reproduces it", async () => {
  const before = hashTree(fx.model.dir);
  const out = path.join(fx.work, "hardened");
  const r = await runCli([
    "harden",
    "-m",
    fx.model.dir,
    "-d",
    fx.pairsFile,
    "-o",
    out,
    "--top-k",
    "4",
    ...TINY,
    "--json",
  ]);
  assert.equal(r.code, 0, showRun(r));

  for (const f of [
    "model.safetensors",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "goodvibe-delta.safetensors",
  ])
    assert.ok(fs.existsSync(path.join(out, f)), `${f} missing from the output folder`);
  assert.deepEqual(hashTree(fx.model.dir), before, "the input model folder changed");

  const report = JSON.parse(r.stdout) as {
    outDir: string;
    method: string;
    trainableParams: number;
    totalParams: number;
    fold: { rowsChanged: number };
    artifact: string;
  };
  assert.equal(report.outDir, path.resolve(out));
  assert.equal(report.method, "goodvibe");
  assert.equal(report.artifact, path.join(out, "goodvibe-delta.safetensors"));
  assert.ok(report.trainableParams > 0 && report.trainableParams < report.totalParams);

  // GoodVibe trains only selected output rows of linear layers: at most top-k = 4 rows per weight, nothing else.
  const base = weights(fx.model.dir);
  const hard = weights(out);
  assert.deepEqual([...hard.keys()].sort(), [...base.keys()].sort());
  let rows = 0;
  for (const [name, t] of hard) {
    const n = changedRows(base.get(name)!, t);
    if (!LINEAR.test(name)) assert.equal(n, 0, `${name} is not a linear layer's weight but changed`);
    else assert.ok(n <= 4, `${name}: ${n} rows changed, more than top-k = 4`);
    rows += n;
  }
  assert.ok(rows > 0, "training changed no weight at all");
  assert.equal(rows, report.fold.rowsChanged, "the report's rowsChanged disagrees with the weights");

  // the delta alone, folded onto the untouched base, is the hardened checkpoint
  const refolded = path.join(fx.work, "refolded");
  const f = await runCli([
    "fold",
    "-m",
    fx.model.dir,
    "--delta",
    path.join(out, "goodvibe-delta.safetensors"),
    "-o",
    refolded,
    "--json",
  ]);
  assert.equal(f.code, 0, showRun(f));
  assert.equal(
    sha256File(path.join(refolded, "model.safetensors")),
    sha256File(path.join(out, "model.safetensors")),
  );
  assert.equal(JSON.parse(f.stdout).rowsChanged, rows);
  assert.deepEqual(hashTree(fx.model.dir), before, "fold changed the input model folder");

  // the output folder itself as --delta, as export --delta takes it: its delta is found (it was a raw
  // libtorch "not a regular file" error)
  const fromFolder = path.join(fx.work, "refolded-from-folder");
  const g = await runCli(["fold", "-m", fx.model.dir, "--delta", out, "-o", fromFolder]);
  assert.equal(g.code, 0, showRun(g));
  assert.equal(
    sha256File(path.join(fromFolder, "model.safetensors")),
    sha256File(path.join(out, "model.safetensors")),
  );
});

test("harden --method lora: PEFT adapter folder, fold --adapter reproduces the merged weights", async () => {
  const before = hashTree(fx.model.dir);
  const out = path.join(fx.work, "lora");
  const r = await runCli([
    "harden",
    "-m",
    fx.model.dir,
    "-d",
    fx.pairsFile,
    "-o",
    out,
    "--method",
    "lora",
    ...TINY,
    "--json",
  ]);
  assert.equal(r.code, 0, showRun(r));
  assert.equal(JSON.parse(r.stdout).method, "lora");
  assert.deepEqual(hashTree(fx.model.dir), before, "the input model folder changed");

  // the summary a person reads gives the counted FLOPs and, beside them, the trainers' 6·N·D with N from the
  // model's shapes: every parameter but the input embedding, plus LoRA's A and B (README, "Cost")
  const again = await runCli([
    "harden",
    "-m",
    fx.model.dir,
    "-d",
    fx.pairsFile,
    "-o",
    out,
    "--method",
    "lora",
    ...TINY,
  ]);
  assert.equal(again.code, 0, showRun(again));
  const stats = JSON.parse(fs.readFileSync(path.join(out, "goodvibe-stats.json"), "utf8")) as {
    trainableParams: number;
    train: { flops: { total: number }; flopsEstimate: { params: number; tokens: number; flops: number } };
  };
  // how a CPU bf16 model's products were computed (tensor.ts describeBf16Products), recorded beside its precision
  const { precision, bf16Products } = stats as unknown as { precision: string; bf16Products?: string };
  if (precision.startsWith("bfloat16"))
    assert.match(bf16Products ?? "", /^bf16 products: (computed in float32|libtorch's own)/);
  else assert.equal(bf16Products, undefined);
  const shape = new ModelShape(loadModelConfig(fx.model.dir)).params();
  const n = shape.total - shape.embedding + stats.trainableParams;
  const est = stats.train.flopsEstimate;
  assert.equal(est.params, n);
  assert.equal(est.flops, 6 * n * est.tokens);
  assert.ok(est.tokens > 0);
  assert.ok(
    again.stdout.includes(`${formatFlops(stats.train.flops.total)} counted`) &&
      again.stdout.includes(`6·N·D estimate ${formatFlops(6 * n * est.tokens)}`),
    again.stdout,
  );

  const adapterCfg = JSON.parse(fs.readFileSync(path.join(out, "adapter", "adapter_config.json"), "utf8"));
  assert.equal(adapterCfg.peft_type, "LORA");
  // as PEFT's save_pretrained: both files at the top of the adapter folder, and a base name that means
  // something on another machine (the base folder's name here: its config.json has no _name_or_path)
  assert.deepEqual(fs.readdirSync(path.join(out, "adapter")).sort(), [
    "adapter_config.json",
    "adapter_model.safetensors",
  ]);
  assert.equal(adapterCfg.base_model_name_or_path, path.basename(fx.model.dir));
  assert.ok(
    !fs.existsSync(path.join(out, "goodvibe-delta.safetensors")),
    "a LoRA run wrote a GoodVibe delta",
  );

  // LoRA's B starts at zero, so a merged checkpoint equal to the base would mean nothing was trained
  const base = weights(fx.model.dir);
  const merged = weights(out);
  let rows = 0;
  for (const [name, t] of merged) {
    const n = changedRows(base.get(name)!, t);
    if (!LINEAR.test(name)) assert.equal(n, 0, `${name} is not a LoRA target but changed`);
    rows += n;
  }
  assert.ok(rows > 0, "the merged LoRA checkpoint equals the base");

  const refolded = path.join(fx.work, "lora-refolded");
  const f = await runCli([
    "fold",
    "-m",
    fx.model.dir,
    "--adapter",
    path.join(out, "adapter"),
    "-o",
    refolded,
  ]);
  assert.equal(f.code, 0, showRun(f));
  assert.equal(
    sha256File(path.join(refolded, "model.safetensors")),
    sha256File(path.join(out, "model.safetensors")),
  );
});
