/**
 * `goodvibe fold` (and `export --adapter gguf --peft`) refuse a delta or PEFT adapter that cannot fit the base model
 * from the files' headers and the base's config.json, before the model loads (for a 7B model a minute and many GB)
 * or a tensor is read: the libtorch addon is never opened to refuse them. The expected figures come from the
 * fixtures' config.json (the organism: hidden 128, 4 layers; the llama fixture and its PEFT adapter: hidden 64,
 * 2 layers, r 4 on q_proj and v_proj).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { FIXTURES, REPO_ROOT } from "../evalcore/make-model.js";
import { writeSafetensors } from "../../src/io/safetensors.js";
import { loadModelConfig } from "../../src/io/config.js";
import { ModelShape } from "../../src/models/shapes.js";
import { modelShapeRecord } from "../../src/method/goodvibe/model-shape.js";
import { addonOpens, recordAddons, runCli, showRun } from "./cli-helpers.js";

const tmp = scratchDir("gv-fold-inputs-");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ORGANISM = path.join(REPO_ROOT, "assets/organism");
const ADAPTER = path.join(FIXTURES, "llama", "lora-adapter");
const MOD = "model.layers.0.self_attn.q_proj";
const re = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));

/** A delta on MOD (2 rows, one cluster, U `width` wide) recording the shape of the model in `shapeOf`. */
function delta(name: string, shapeOf: string, width: number): string {
  const file = path.join(tmp, name);
  const i64 = (n: number) => ({ dtype: "I64" as const, shape: [n], data: new Uint8Array(8 * n) });
  writeSafetensors(
    file,
    [
      { name: `${MOD}.rows`, ...i64(2) },
      { name: `${MOD}.clusters`, ...i64(2) },
      { name: `${MOD}.U`, dtype: "F32", shape: [1, width], data: new Uint8Array(4 * width) },
    ],
    {
      format: "goodvibe-delta",
      fingerprint: JSON.stringify(modelShapeRecord(new ModelShape(loadModelConfig(shapeOf)))),
    },
  );
  return file;
}

/** `args` fails with exit 2 and a message matching each of `want`, without opening libtorch or writing `out`. */
async function refusedEarly(name: string, args: string[], out: string, want: RegExp[]): Promise<void> {
  const record = path.join(tmp, `record-${name}.txt`);
  const r = await runCli([...args, "-o", out], { env: recordAddons(record) });
  assert.equal(r.code, 2, `${name}\n${showRun(r)}`);
  for (const w of want) assert.match(r.stderr, w, name);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, r.stderr);
  assert.ok(!fs.existsSync(out), `${name}: ${out} was made`);
  assert.deepEqual(
    addonOpens(record),
    [],
    `${name}: libtorch loaded (the model or a tensor read) to refuse it`,
  );
}

test("fold --delta: a delta for another model, of the wrong width, or not a safetensors file is refused before the model loads", async () => {
  const other = delta("other-model.safetensors", path.join(FIXTURES, "llama"), 64);
  const narrow = delta("narrow.safetensors", ORGANISM, 127);
  const garbage = path.join(tmp, "garbage.safetensors");
  fs.writeFileSync(garbage, "this is not a safetensors file at all");
  const cases: [string, string, RegExp[]][] = [
    [
      "other-model",
      other,
      [re(`${other} was made for another model: ${MOD} is [64,64] there and [128,128] here`)],
    ],
    [
      "narrow",
      narrow,
      [re(`${narrow}: ${MOD}.U has shape [1,127]: its rows must have the module's input width 128`)],
    ],
    ["garbage", garbage, [re(garbage)]],
  ];
  for (const [name, file, want] of cases)
    await refusedEarly(
      `fold-${name}`,
      ["fold", "-m", ORGANISM, "--delta", file],
      path.join(tmp, `out-${name}`),
      want,
    );
});

test("fold --adapter and export --adapter gguf --peft: a PEFT adapter for another model is refused from its headers", async () => {
  // the llama fixture's adapter (hidden 64, 2 layers) on the organism (hidden 128, 4 layers)
  const want = [
    re(`${ADAPTER}: LoRA ${MOD}.lora_A: shape [4,64], expected [4,128] (rank 4, 128 -> 128)`),
    /it was made for another model/,
  ];
  await refusedEarly(
    "fold-adapter",
    ["fold", "-m", ORGANISM, "--adapter", ADAPTER],
    path.join(tmp, "out-fold-adapter"),
    want,
  );
  await refusedEarly(
    "export-peft",
    ["export", "--adapter", "gguf", "--peft", ADAPTER, "-m", ORGANISM],
    path.join(tmp, "out-export-peft.gguf"),
    want,
  );
  // an adapter folder without its weights file: refused before the model loads too
  const bare = path.join(tmp, "bare-adapter");
  fs.mkdirSync(bare);
  fs.copyFileSync(path.join(ADAPTER, "adapter_config.json"), path.join(bare, "adapter_config.json"));
  await refusedEarly(
    "fold-bare",
    ["fold", "-m", path.join(FIXTURES, "llama"), "--adapter", bare],
    path.join(tmp, "out-fold-bare"),
    [re(`${bare}: no adapter_model.safetensors`)],
  );
});

test("export --format safetensors and fold: a tokenizer file that cannot be read is refused before the weights are opened, leaving nothing", async () => {
  // the organism with tokenizer_config.json unreadable (a folder where the file should be: EISDIR, even for root)
  const model = path.join(tmp, "organism-bad-tokenizer");
  fs.mkdirSync(model);
  for (const f of fs.readdirSync(ORGANISM))
    if (fs.statSync(path.join(ORGANISM, f)).isFile() && f !== "tokenizer_config.json")
      fs.copyFileSync(path.join(ORGANISM, f), path.join(model, f));
  fs.mkdirSync(path.join(model, "tokenizer_config.json"));
  const want = [re(`${path.join(model, "tokenizer_config.json")}: cannot read`)];
  const parent = path.join(tmp, "outs-tokenizer");
  fs.mkdirSync(parent);
  await refusedEarly(
    "export-safetensors-tokenizer",
    ["export", "-m", model, "--format", "safetensors", "--outtype", "float16"],
    path.join(parent, "st"),
    want,
  );
  const ok = delta("organism.safetensors", ORGANISM, 128);
  await refusedEarly(
    "fold-tokenizer",
    ["fold", "-m", model, "--delta", ok],
    path.join(parent, "folded"),
    want,
  );
  assert.deepEqual(fs.readdirSync(parent), [], "a temporary output was left behind");
});

test("export --format safetensors and fold of a model folder without tokenizer.json warn naming the missing files (--json: missingTokenizerFiles), and write no tokenizer", async () => {
  // the llama fixture holds config.json and weights only: no tokenizer file at all
  assert.ok(!fs.existsSync(path.join(FIXTURES, "llama", "tokenizer.json")));
  const model = path.join(FIXTURES, "llama");
  for (const [name, args] of [
    ["export", ["export", "-m", model, "--format", "safetensors"]],
    ["fold", ["fold", "-m", model, "--adapter", ADAPTER]],
  ] as const) {
    const out = path.join(tmp, `no-tokenizer-${name}`);
    const r = await runCli(["--json", ...args, "-o", out]);
    assert.equal(r.code, 0, `${name}\n${showRun(r)}`);
    assert.match(r.stderr, /has no tokenizer\.json or tokenizer_config\.json/, name);
    assert.match(
      r.stderr,
      re(`copy tokenizer.json and tokenizer_config.json from the original checkpoint into ${out}`),
      name,
    );
    assert.deepEqual(
      JSON.parse(r.stdout).missingTokenizerFiles,
      ["tokenizer.json", "tokenizer_config.json"],
      name,
    );
    assert.ok(!fs.existsSync(path.join(out, "tokenizer.json")), name);
  }
});

test("fold: the update a harden output already holds, folded into that output again, is refused (it was applied twice)", async () => {
  // a harden/train output folder keeps its delta (or adapter/) beside the weights it folded it into
  const hardened = path.join(tmp, "hardened");
  fs.cpSync(ORGANISM, hardened, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}data`),
  });
  const d = delta("kept.safetensors", ORGANISM, 128);
  fs.copyFileSync(d, path.join(hardened, "goodvibe-delta.safetensors"));
  const want = [/already has this update folded in/, /fold it into the base model/];
  // the folder itself as --delta (fold takes a harden output's delta from it), and a copy of its delta elsewhere
  await refusedEarly(
    "same-folder",
    ["fold", "-m", hardened, "--delta", hardened],
    path.join(tmp, "o1"),
    want,
  );
  await refusedEarly("copy", ["fold", "-m", hardened, "--delta", d], path.join(tmp, "o2"), want);
  // a LoRA output: adapter/ beside the merged weights
  const merged = path.join(tmp, "merged");
  fs.cpSync(path.join(FIXTURES, "llama"), merged, {
    recursive: true,
    filter: (src) => !src.includes("lora-adapter") && !src.includes("sharded") && !src.includes("model-bf16"),
  });
  fs.cpSync(ADAPTER, path.join(merged, "adapter"), { recursive: true });
  await refusedEarly("lora", ["fold", "-m", merged, "--adapter", ADAPTER], path.join(tmp, "o3"), want);
});
