/**
 * PEFT adapters as PEFT means them. `fold --adapter` used to read only r and lora_alpha: an rsLoRA adapter was
 * merged with alpha/r instead of alpha/√r, rank_pattern / alpha_pattern / layers_to_transform were ignored,
 * and DoRA adapters merged as plain LoRA, all silently. Each case is checked against the merge formula
 * W' = W + s·B·A with PEFT's s for the module (alpha/r, or alpha/√r with rsLoRA; r and alpha from the patterns),
 * computed here from the adapter files and the base weights.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import { openModelWeights, readSafetensors, writeSafetensors } from "../../src/io/safetensors.js";
import { loadModel } from "../../src/models/index.js";
import { recordToTensor } from "../../src/models/load.js";
import { Tensor, manualSeed, noGrad } from "../../src/tensor/index.js";
import { attachLora } from "../../src/method/lora/model.js";
import { attachPeftAdapter } from "../../src/method/lora/model.js";
import { foldIntoCheckpoint } from "../../src/method/fold.js";
import { loraTargets, patternKey } from "../../src/method/lora/config.js";
import { baseModelName, readPeftAdapter, writePeftAdapter } from "../../src/method/lora/peft.js";
import { FIXTURES } from "../evalcore/make-model.js";
import { runCli, showRun } from "../cli/cli-helpers.js";

const BASE = path.join(FIXTURES, "llama"); // 2 layers, hidden 64, 4 heads of 16, 2 kv heads, mlp 128
const tmp = scratchDir("gv-peft-");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SHAPES: Record<string, [number, number]> = {
  "self_attn.q_proj": [64, 64],
  "self_attn.k_proj": [32, 64],
  "self_attn.v_proj": [32, 64],
  "mlp.down_proj": [64, 128],
  lm_head: [512, 64],
};

/** An adapter folder with random A/B (std 0.05) for `modules` of rank `rankOf(module)`. */
function makeAdapter(
  name: string,
  config: Record<string, unknown>,
  modules: string[],
  rankOf: (m: string) => number,
  seed = 1,
): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  manualSeed(seed);
  const tensors = modules.flatMap((m) => {
    const [out, inn] = SHAPES[m.replace(/^model\.layers\.\d+\./, "")]!;
    const r = rankOf(m);
    const t = (shape: number[]) => Tensor.randn(shape).mul(0.05).contiguous().toBytes();
    return [
      {
        name: `base_model.model.${m}.lora_A.weight`,
        dtype: "F32" as const,
        shape: [r, inn],
        data: t([r, inn]),
      },
      {
        name: `base_model.model.${m}.lora_B.weight`,
        dtype: "F32" as const,
        shape: [out, r],
        data: t([out, r]),
      },
    ];
  });
  writeSafetensors(path.join(dir, "adapter_model.safetensors"), tensors);
  fs.writeFileSync(
    path.join(dir, "adapter_config.json"),
    JSON.stringify({ peft_type: "LORA", task_type: "CAUSAL_LM", lora_dropout: 0, bias: "none", ...config }),
  );
  return dir;
}

/** Max |folded - (W + s·B·A)| over every module, with s per module from `scaleOf`, and untouched elsewhere. */
function checkMerged(
  folded: string,
  adapter: string,
  scaleOf: (m: string) => number,
  changed: string[],
): void {
  const base = openModelWeights(BASE);
  const out = openModelWeights(folded);
  const ad = readSafetensors(path.join(adapter, "adapter_model.safetensors"));
  for (const [name, rec] of base.tensors) {
    const mod = name.replace(/\.weight$/, "");
    const got = recordToTensor(out.tensors.get(name)!).float();
    let want = recordToTensor(rec).float();
    if (changed.includes(mod)) {
      const A = recordToTensor(ad.tensors.get(`base_model.model.${mod}.lora_A.weight`)!);
      const B = recordToTensor(ad.tensors.get(`base_model.model.${mod}.lora_B.weight`)!);
      want = want.add(B.matmul(A).mul(scaleOf(mod)));
    }
    const diff = noGrad(() => got.sub(want).abs().amax().item());
    assert.ok(diff < 1e-6, `${name}: folded weight differs from W + s·B·A by ${diff}`);
  }
}

async function fold(adapter: string, out: string): Promise<void> {
  const model = loadModel(BASE);
  await foldIntoCheckpoint(BASE, out, attachPeftAdapter(model, readPeftAdapter(adapter)));
}

const L = (i: number, m: string) => `model.layers.${i}.${m}`;

test("PEFT's pattern and target rules", () => {
  // get_pattern_key: a dot-separated suffix, the key read as a regex; first key wins
  assert.equal(patternKey(["q_proj"], "model.layers.0.self_attn.q_proj"), "q_proj");
  assert.equal(patternKey(["layers.1.self_attn.q_proj"], "model.layers.11.self_attn.q_proj"), null);
  assert.equal(
    patternKey(["model.layers.1.self_attn.q_proj"], "model.layers.1.self_attn.q_proj"),
    "model.layers.1.self_attn.q_proj",
  );
  assert.equal(patternKey(["proj"], "model.layers.0.self_attn.q_proj"), null); // not at a dot boundary
  assert.equal(patternKey([".*attn.q_proj", "q_proj"], "model.layers.0.self_attn.q_proj"), ".*attn.q_proj");
  const cfg = {
    r: 4,
    alpha: 8,
    dropout: 0,
    targetModules: ["q_proj", "mlp.down_proj"],
    layersToTransform: [1],
  };
  assert.equal(loraTargets(cfg, L(1, "self_attn.q_proj")), true);
  assert.equal(loraTargets(cfg, L(0, "self_attn.q_proj")), false);
  assert.equal(loraTargets(cfg, L(1, "mlp.down_proj")), true);
  assert.equal(loraTargets(cfg, L(1, "self_attn.k_proj")), false);
  assert.equal(loraTargets({ ...cfg, targetModules: ".*\\.(q|v)_proj" }, L(0, "self_attn.v_proj")), true);
  assert.equal(loraTargets({ ...cfg, targetModules: "q_proj" }, L(0, "self_attn.q_proj")), false); // fullmatch
  assert.equal(
    loraTargets({ ...cfg, targetModules: "all-linear", layersToTransform: null }, L(0, "mlp.up_proj")),
    true,
  );
  assert.equal(
    loraTargets({ ...cfg, layersToTransform: null, excludeModules: ["q_proj"] }, L(0, "self_attn.q_proj")),
    false,
  );
});

test("rsLoRA merges with alpha/sqrt(r), not alpha/r", async () => {
  const mods = [0, 1].flatMap((i) => [L(i, "self_attn.q_proj"), L(i, "self_attn.v_proj")]);
  const ad = makeAdapter(
    "rslora",
    { r: 4, lora_alpha: 8, use_rslora: true, target_modules: ["q_proj", "v_proj"] },
    mods,
    () => 4,
  );
  const out = path.join(tmp, "rslora-out");
  await fold(ad, out);
  checkMerged(out, ad, () => 8 / Math.sqrt(4), mods);
});

test("rank_pattern and alpha_pattern give each module its own rank and scaling", async () => {
  const mods = [0, 1].flatMap((i) => [
    L(i, "self_attn.q_proj"),
    L(i, "self_attn.v_proj"),
    L(i, "mlp.down_proj"),
  ]);
  const rankOf = (m: string) => (m.endsWith("q_proj") ? 2 : m === L(1, "mlp.down_proj") ? 6 : 4);
  const alphaOf = (m: string) => (m === L(1, "self_attn.v_proj") ? 32 : 8);
  const ad = makeAdapter(
    "patterns",
    {
      r: 4,
      lora_alpha: 8,
      target_modules: ["q_proj", "v_proj", "down_proj"],
      rank_pattern: { q_proj: 2, "model.layers.1.mlp.down_proj": 6 },
      alpha_pattern: { "layers.1.self_attn.v_proj": 32 },
    },
    mods,
    rankOf,
  );
  const out = path.join(tmp, "patterns-out");
  await fold(ad, out);
  checkMerged(out, ad, (m) => alphaOf(m) / rankOf(m), mods);
  // the same with rsLoRA: alpha/sqrt(r) per module
  const ad2 = makeAdapter(
    "patterns-rs",
    {
      r: 4,
      lora_alpha: 8,
      use_rslora: true,
      target_modules: ["q_proj", "v_proj", "down_proj"],
      rank_pattern: { q_proj: 2, "model.layers.1.mlp.down_proj": 6 },
      alpha_pattern: { "layers.1.self_attn.v_proj": 32 },
    },
    mods,
    rankOf,
    2,
  );
  const out2 = path.join(tmp, "patterns-rs-out");
  await fold(ad2, out2);
  checkMerged(out2, ad2, (m) => alphaOf(m) / Math.sqrt(rankOf(m)), mods);
});

test("layers_to_transform: only the listed layers; tensors for other layers are refused", async () => {
  const cfg = {
    r: 4,
    lora_alpha: 8,
    target_modules: ["q_proj", "v_proj"],
    layers_to_transform: [1],
    layers_pattern: "layers",
  };
  const mods = [L(1, "self_attn.q_proj"), L(1, "self_attn.v_proj")];
  const ad = makeAdapter("ltt", cfg, mods, () => 4);
  const out = path.join(tmp, "ltt-out");
  await fold(ad, out);
  checkMerged(out, ad, () => 2, mods);
  const bad = makeAdapter(
    "ltt-bad",
    cfg,
    [...mods, L(0, "self_attn.q_proj"), L(0, "self_attn.v_proj")],
    () => 4,
  );
  await assert.rejects(
    fold(bad, path.join(tmp, "ltt-bad-out")),
    /model\.layers\.0\.self_attn\.q_proj.*not a linear layer this config targets/,
  );
  // a rank the patterns do not explain is refused, not merged with a guessed scale
  const wrongRank = makeAdapter(
    "rank-mismatch",
    { r: 4, lora_alpha: 8, target_modules: ["q_proj"] },
    [L(0, "self_attn.q_proj"), L(1, "self_attn.q_proj")],
    () => 2,
  );
  await assert.rejects(
    fold(wrongRank, path.join(tmp, "rank-mismatch-out")),
    /shape \[2,64\], expected \[4,64\]/,
  );
});

test("an adapter made for a model with other layers is refused saying so, with the base model it names", async () => {
  const cfg = { r: 4, lora_alpha: 8, target_modules: ["q_proj"], base_model_name_or_path: "Qwen/Qwen2.5-7B" };
  // three layers' tensors on the two-layer fixture: the third has no module here
  const deeper = makeAdapter(
    "deeper",
    cfg,
    [0, 1, 2].map((i) => L(i, "self_attn.q_proj")),
    () => 4,
  );
  await assert.rejects(
    fold(deeper, path.join(tmp, "deeper-out")),
    /model\.layers\.2\.self_attn\.q_proj is not a linear layer.*stop at layer 2, and this model's layers are 0 to 1: it was made for another model \(its adapter_config\.json names Qwen\/Qwen2\.5-7B\)/,
  );
  // one layer's tensors while the config targets every layer: layer 1 has none
  const shallower = makeAdapter("shallower", cfg, [L(0, "self_attn.q_proj")], () => 4);
  await assert.rejects(
    fold(shallower, path.join(tmp, "shallower-out")),
    /targets model\.layers\.1\.self_attn\.q_proj, but the adapter has no lora_A.*stop at layer 0.*made for another model/,
  );
  // layers_to_transform legitimately leaves layers out: a missing tensor there is not blamed on another model
  const listed = makeAdapter(
    "listed-missing",
    { ...cfg, layers_to_transform: [0, 1], layers_pattern: "layers" },
    [L(0, "self_attn.q_proj")],
    () => 4,
  );
  await assert.rejects(fold(listed, path.join(tmp, "listed-missing-out")), (e: Error) => {
    assert.match(e.message, /no lora_A for it$/);
    return true;
  });
});

test("what cannot be applied faithfully is refused, naming the field", () => {
  const mods = [L(0, "self_attn.q_proj"), L(1, "self_attn.q_proj")];
  const base = { r: 4, lora_alpha: 8, target_modules: ["q_proj"] };
  for (const [extra, msg] of [
    [{ use_dora: true }, /use_dora/],
    [{ bias: "all" }, /bias "all"/],
    [{ modules_to_save: ["lm_head"] }, /modules_to_save/],
    [{ layers_to_transform: [0], layers_pattern: "h" }, /layers_pattern "h"/],
    [{ init_lora_weights: "pissa" }, /pissa/],
    // LoRA-GA subtracts scaling·B₀A₀ from the base weight at init (huggingface/peft src/peft/tuners/lora/layer.py
    // lora_ga_init, @314e988557586d4aefccb0b4a006d1048209ede3 lines 673-679: weight_data = weight_data -
    // weight_offset), so its adapter on the untouched base is off by that product, as PiSSA's is
    [{ init_lora_weights: "lora_ga" }, /init_lora_weights "lora_ga".*rewrites the base weights/],
    [{ peft_type: "IA3" }, /only LORA/],
    [{ r: 0 }, /"r" must be a positive integer/],
  ] as const) {
    const dir = makeAdapter(
      `refuse-${Object.keys(extra)[0]}-${String(Object.values(extra)[0])}`,
      { ...base, ...extra },
      mods,
      () => 4,
    );
    assert.throws(
      () => readPeftAdapter(dir),
      (e: unknown) => e instanceof InputError && msg.test(e.message) && e.message.includes(dir),
      JSON.stringify(extra),
    );
  }
});

test("written adapters: files at the top of the folder, a base name that resolves elsewhere", () => {
  const model = loadModel(BASE);
  const cfg = {
    r: 2,
    alpha: 4,
    dropout: 0,
    targetModules: ["q_proj"],
    useRslora: true,
    rankPattern: { "model.layers.1.self_attn.q_proj": 3 },
  };
  const method = attachLora(model, cfg);
  const out = path.join(tmp, "written");
  writePeftAdapter(out, cfg, method, BASE);
  assert.deepEqual(fs.readdirSync(out).sort(), ["adapter_config.json", "adapter_model.safetensors"]);
  const c = JSON.parse(fs.readFileSync(path.join(out, "adapter_config.json"), "utf8"));
  assert.equal(c.base_model_name_or_path, "llama"); // no _name_or_path in the fixture: the folder's name
  assert.equal(c.use_rslora, true);
  assert.deepEqual(c.rank_pattern, { "model.layers.1.self_attn.q_proj": 3 });
  const back = readPeftAdapter(out);
  assert.deepEqual(back.init.get(L(1, "self_attn.q_proj.lora_A"))!.shape, [3, 64]);
  // _name_or_path (the hub id transformers records) wins; a local absolute path is cut to its name; override wins
  const named = path.join(tmp, "named-base");
  fs.mkdirSync(named);
  fs.writeFileSync(path.join(named, "config.json"), JSON.stringify({ _name_or_path: "Qwen/Qwen2.5-0.5B" }));
  assert.equal(baseModelName(named), "Qwen/Qwen2.5-0.5B");
  fs.writeFileSync(
    path.join(named, "config.json"),
    JSON.stringify({ _name_or_path: "/home/me/models/my-qwen" }),
  );
  assert.equal(baseModelName(named), "my-qwen");
  assert.equal(baseModelName(named, "org/model"), "org/model");
});

test("CLI: fold --adapter honours rsLoRA; a DoRA adapter exits 2 with the reason and writes nothing", async () => {
  const mods = [0, 1].map((i) => L(i, "self_attn.q_proj"));
  const ad = makeAdapter(
    "cli-rs",
    { r: 4, lora_alpha: 8, use_rslora: true, target_modules: ["q_proj"] },
    mods,
    () => 4,
    3,
  );
  const out = path.join(tmp, "cli-rs-out");
  const r = await runCli(["fold", "-m", BASE, "--adapter", ad, "-o", out]);
  assert.equal(r.code, 0, showRun(r));
  checkMerged(out, ad, () => 4, mods);
  const dora = makeAdapter(
    "cli-dora",
    { r: 4, lora_alpha: 8, use_dora: true, target_modules: ["q_proj"] },
    mods,
    () => 4,
  );
  const out2 = path.join(tmp, "cli-dora-out");
  const r2 = await runCli(["fold", "-m", BASE, "--adapter", dora, "-o", out2]);
  assert.equal(r2.code, 2, showRun(r2));
  assert.match(r2.stderr, /use_dora/);
  assert.equal(fs.existsSync(out2), false);
});

test("an adapter with LoRA on lm_head (target_modules naming it, as PEFT allows) is refused as such, not blamed on its config", () => {
  // PEFT adapts any nn.Linear whose name target_modules matches (tuners_utils.check_target_module_exists), lm_head too
  const dir = makeAdapter(
    "lm-head",
    { r: 4, lora_alpha: 8, target_modules: ["q_proj", "lm_head"] },
    [L(0, "self_attn.q_proj"), L(1, "self_attn.q_proj"), "lm_head"],
    () => 4,
  );
  const adapter = readPeftAdapter(dir);
  assert.throws(
    () => attachPeftAdapter(loadModel(BASE), adapter),
    (e: unknown) =>
      e instanceof InputError &&
      /LoRA on lm_head, which this project does not apply.*merge_and_unload/.test(e.message) &&
      !/this config targets/.test(e.message),
  );
});
