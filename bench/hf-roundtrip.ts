/**
 * The Hugging Face round trip, our half (issue 13 §2; bench/hf_roundtrip.py is the other half): for each family
 * (Llama, Qwen2, Qwen3, Gemma3 text), a random bf16 base model in that family's real config (the fixture's
 * config.json from transformers, the vocabulary widened to the organism's byte-level BPE, whose tokenizer files
 * it carries), then the CLI as a user runs it:
 *   goodvibe harden --method goodvibe   → a hardened checkpoint (and its GoodVibe delta)
 *   goodvibe harden --method lora       → the LoRA-folded checkpoint and its PEFT adapter (adapter/)
 *   goodvibe export --adapter peft      → the GoodVibe delta as a PEFT adapter (rank_pattern)
 * and our logits on fixed ids (2 sequences of 40 tokens, past Gemma3's sliding window) for every checkpoint and
 * every base + adapter, computed in float32 from the bf16 weights (and the hardened checkpoint in bf16 too), written
 * as raw float32 files with manifest.json, which bench/hf_roundtrip.py reads: transformers' AutoModelForCausalLM
 * on each checkpoint, peft's PeftModel on each base + adapter (and after merge_and_unload), each against ours.
 *
 *   node dist/bench/hf-roundtrip.js --out DIR [--device cpu|cuda] [--families llama,qwen2,qwen3,gemma3]
 *   node dist/bench/hf-roundtrip.js --check DIR/hf-saved.json [--device cpu|cuda]
 *
 * --check, the other way: the bases as transformers saved them (bench/hf_roundtrip.py writes hf-saved.json with
 * transformers' float32 logits), loaded by our loader, logits compared with the tolerance hf_roundtrip.py states
 * for float32 (2e-4 + 1e-5·max|logit|).
 *
 * Weights: embeddings N(0, 1), linear weights N(0, 1/in), biases N(0, 0.1²), norm weights 1 + N(0, 0.1²)
 * (Gemma3's (1 + w) norms: N(0, 0.1²)), so that logits are O(1–10) and a mis-read tensor shows; training at lr 0.01
 * so that the folded rows move by more than a bf16 rounding step.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { benchArgs } from "./args.js";
import { fileURLToPath } from "node:url";
import { readSafetensors, writeModelWeights, type TensorToWrite } from "../src/io/safetensors.js";
import { loadModel } from "../src/models/index.js";
import { attachPeftAdapter } from "../src/method/lora/model.js";
import { readPeftAdapter } from "../src/method/lora/peft.js";
import { Tensor, manualSeed, noGrad, resolveDevice, tidy, type DType } from "../src/tensor/index.js";
import { SMALL_SIGLIP_VISION_CONFIG, checkpointTensors } from "../test/scale/models.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = path.join(ROOT, "dist/src/cli/main.js");
const ORGANISM = path.join(ROOT, "assets/organism");
const FIXTURES = path.join(ROOT, "test/fixtures");
const PAIRS = path.join(ORGANISM, "data/train.jsonl");
/**
 * gemma3mm: Gemma3ForConditionalGeneration (Gemma-3-4b-it's class) as google publishes it, the gemma3 fixture's text
 * model under language_model.model.* in text_config, with a SigLIP vision tower and projector by their real names at
 * small sizes (test/scale/models.ts): transformers loads the hardened checkpoints as that class with no weight
 * missing or left over, and PEFT puts our adapters' language_model.model.* keys on the model it builds (renamed by
 * its _checkpoint_conversion_mapping on transformers >= 4.52).
 */
/**
 * qwen2yarn: the Qwen2 fixture with the YaRN rope_scaling Qwen's model cards give (factor 4; original context 64 of
 * the fixture's 256, so that the tiny head_dim spans the blend and every transformers release reads the same factor).
 */
export const FAMILIES = ["llama", "qwen2", "qwen3", "gemma3", "gemma3mm", "qwen2yarn"] as const;
const YARN = { type: "yarn", factor: 4, original_max_position_embeddings: 64 };
const BATCH = 2;
const SEQ = 40;

export interface Case {
  name: string;
  family: string;
  /** the model folder transformers loads */
  model: string;
  /** a PEFT adapter folder loaded on `model` (ours attached; peft's PeftModel, then merge_and_unload) */
  adapter?: string;
  /** the compute dtype of both sides */
  dtype: "float32" | "bfloat16";
  /** the token ids, [BATCH, SEQ] row-major */
  ids: number[];
  /** our float32 logits [BATCH, SEQ, vocab], raw little-endian */
  logits: string;
  shape: number[];
  /** a case whose logits must differ from this one's by more than the tolerance (the check is sharp) */
  differsFrom?: string;
}

/** A random bf16 base model of `family` in `dir`: the fixture's tensor names and config, the organism's tokenizer. */
function makeBase(family: string, dir: string, seed: number): void {
  const multimodal = family === "gemma3mm";
  const fixture = path.join(FIXTURES, multimodal ? "gemma3" : family === "qwen2yarn" ? "qwen2" : family);
  const organism = JSON.parse(fs.readFileSync(path.join(ORGANISM, "config.json"), "utf8")) as Record<
    string,
    number
  >;
  const cfg = JSON.parse(fs.readFileSync(path.join(fixture, "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  const oldVocab = cfg.vocab_size as number;
  const vocab = organism.vocab_size!;
  Object.assign(cfg, {
    vocab_size: vocab,
    bos_token_id: organism.bos_token_id,
    eos_token_id: organism.eos_token_id,
    pad_token_id: organism.pad_token_id,
    torch_dtype: "bfloat16",
  });
  if (family === "qwen2yarn") cfg.rope_scaling = YARN;
  const gemma = family === "gemma3" || multimodal;
  const header = readSafetensors(path.join(fixture, "model.safetensors")).tensors;
  let config: Record<string, unknown> = cfg;
  let entries = [...header.values()].map((rec) => ({
    name: rec.name,
    shape: rec.shape.map((d, i) => (i === 0 && d === oldVocab ? vocab : d)),
  }));
  if (multimodal) {
    const { model_type: _, architectures: __, ...text } = cfg;
    config = {
      architectures: ["Gemma3ForConditionalGeneration"],
      model_type: "gemma3",
      text_config: { ...text, model_type: "gemma3_text" },
      // the tower the gemma3_4b_it test checkpoints carry (test/scale/models.ts)
      vision_config: { ...SMALL_SIGLIP_VISION_CONFIG },
      mm_tokens_per_image: 4,
      eos_token_id: cfg.eos_token_id,
      torch_dtype: "bfloat16",
    };
    const vision = checkpointTensors(config, "language_model").filter(
      ([n]) => !n.startsWith("language_model."),
    );
    entries = [
      ...entries.map((e) => ({ ...e, name: e.name.replace(/^model\./, "language_model.model.") })),
      ...vision.map(([name, shape]) => ({ name, shape })),
    ];
  }
  manualSeed(seed);
  const tensors: TensorToWrite[] = entries.map((rec) => {
    const shape = rec.shape;
    const data = noGrad(() =>
      tidy(() => {
        const z = Tensor.randn(shape);
        let t: Tensor;
        // the vision side's LayerNorms are w·x̂ + b (not Gemma's 1 + w); only its shapes matter here
        const gemmaNorm = gemma && !/vision_tower/.test(rec.name);
        if (/norm\d?\.weight$/.test(rec.name))
          t = gemmaNorm ? z.mul(0.1) : z.mul(0.1).add(Tensor.ones(shape));
        else if (rec.name.endsWith(".bias")) t = z.mul(0.1);
        else if (rec.name.includes("embed_tokens") || rec.name.startsWith("lm_head")) t = z;
        else t = z.mul(1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)));
        return t.to("bfloat16").contiguous().toBytes();
      }),
    );
    return { name: rec.name, dtype: "BF16", shape, data };
  });
  fs.mkdirSync(dir, { recursive: true });
  writeModelWeights(dir, tensors);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(ORGANISM, f), path.join(dir, f));
}

/** Runs the CLI as a user would; throws with its output when it fails. */
function cli(args: string[], device: string): void {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    env: { ...process.env, GOODVIBE_DEVICE: device },
  });
  if (r.status !== 0)
    throw new Error(
      `goodvibe ${args.join(" ")} failed (exit ${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`,
    );
}

const HARDEN_BUDGET = [
  "--top-k",
  "8",
  "--epochs",
  "1",
  "--lr",
  "0.01",
  "--set",
  "identify.maxPairs=8",
  "--set",
  "train.maxPairs=8",
  "--set",
  "train.gradAccum=1",
  "-q",
];

/** Fixed ids: BATCH sequences of SEQ tokens, none of them special (ids >= 8), different per row. */
export function roundTripIds(vocab: number): number[] {
  const ids: number[] = [];
  for (let b = 0; b < BATCH; b++)
    for (let t = 0; t < SEQ; t++) ids.push(8 + ((t * 7919 + b * 104729 + 13) % (vocab - 8)));
  return ids;
}

function ourLogits(
  model: string,
  adapter: string | undefined,
  dtype: DType,
  device: string,
  ids: number[],
): Float32Array {
  const m = loadModel(model, { dtype, device: resolveDevice(device) });
  if (adapter) attachPeftAdapter(m, readPeftAdapter(adapter)).setTraining(false);
  return noGrad(() =>
    tidy(() => {
      const x = Tensor.fromArray(ids, [BATCH, SEQ], "int64").toDevice(m.device);
      return m.forward(x).float().toDevice("cpu").contiguous().toFloat32Array();
    }),
  );
}

/** --check: our loader on checkpoints the Python side saved, against its logits; false when one differs. */
function check(manifest: string, device: string): boolean {
  const { cases } = JSON.parse(fs.readFileSync(manifest, "utf8")) as { cases: Case[] };
  let ok = true;
  for (const c of cases) {
    const buf = fs.readFileSync(c.logits);
    const theirs = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    let ours: Float32Array;
    try {
      ours = ourLogits(c.model, undefined, c.dtype, device, c.ids);
    } catch (e) {
      console.log(`FAIL ${c.name}: our loader: ${(e as Error).message}`);
      ok = false;
      continue;
    }
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < theirs.length; i++) {
      diff = Math.max(diff, Math.abs(ours[i]! - theirs[i]!));
      scale = Math.max(scale, Math.abs(theirs[i]!));
    }
    const tol = 2e-4 + 1e-5 * scale;
    const pass = ours.length === theirs.length && diff <= tol;
    ok &&= pass;
    console.log(
      `${pass ? "ok  " : "FAIL"} ${c.name} (${c.model}): max|Δ| ${diff.toExponential(3)} (tolerance ${tol.toExponential(3)}, max|logit| ${scale.toFixed(2)})`,
    );
  }
  return ok;
}

function main(): void {
  const { values: args } = benchArgs(import.meta.url, {
    options: {
      check: { type: "string" },
      out: { type: "string" },
      device: { type: "string", default: "cpu" },
      families: { type: "string", default: FAMILIES.join(",") },
    },
  });
  if (args.check) {
    if (!check(args.check, args.device!)) process.exitCode = 1;
    return;
  }
  if (!args.out) throw new Error("usage: hf-roundtrip.js --out DIR [--device cpu|cuda] [--families ...]");
  const out = path.resolve(args.out);
  const device = args.device!;
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  const cases: Case[] = [];
  const families = args.families!.split(",");
  families.forEach((family, fi) => {
    if (!(FAMILIES as readonly string[]).includes(family)) throw new Error(`unknown family ${family}`);
    const t0 = Date.now();
    const dir = path.join(out, family);
    const base = path.join(dir, "base");
    makeBase(family, base, 100 + fi);
    const gv = path.join(dir, "goodvibe");
    const lora = path.join(dir, "lora");
    const gvPeft = path.join(dir, "goodvibe-peft");
    cli(["harden", "-m", base, "-d", PAIRS, "-o", gv, ...HARDEN_BUDGET], device);
    cli(["harden", "-m", base, "-d", PAIRS, "-o", lora, "--method", "lora", ...HARDEN_BUDGET], device);
    cli(["export", "-m", base, "--adapter", "peft", "--delta", gv, "-o", gvPeft, "-q"], device);
    const written = JSON.parse(fs.readFileSync(path.join(base, "config.json"), "utf8")) as {
      vocab_size?: number;
      text_config?: { vocab_size: number };
    };
    const vocab = written.text_config?.vocab_size ?? written.vocab_size!;
    const ids = roundTripIds(vocab);
    const add = (
      name: string,
      model: string,
      adapter: string | undefined,
      dtype: Case["dtype"],
      differsFrom?: string,
    ) => {
      const logits = ourLogits(model, adapter, dtype, device, ids);
      const file = path.join(dir, `${name}.${dtype}.f32`);
      fs.writeFileSync(file, logits);
      cases.push({
        name: `${family}/${name}/${dtype}`,
        family,
        model,
        adapter,
        dtype,
        ids,
        logits: file,
        shape: [BATCH, SEQ, vocab],
        differsFrom: differsFrom && `${family}/${differsFrom}/${dtype}`,
      });
    };
    add("base", base, undefined, "float32");
    add("goodvibe", gv, undefined, "float32", "base");
    add("goodvibe", gv, undefined, "bfloat16");
    add("lora", lora, undefined, "float32", "base");
    add("base+lora-adapter", base, path.join(lora, "adapter"), "float32", "base");
    add("base+goodvibe-peft", base, gvPeft, "float32", "base");
    console.log(
      `${family}: base, harden goodvibe and lora, GoodVibe as PEFT, our logits (${((Date.now() - t0) / 1e3).toFixed(1)} s)`,
    );
  });
  fs.writeFileSync(
    path.join(out, "manifest.json"),
    JSON.stringify({ device, batch: BATCH, seq: SEQ, cases }, null, 2) + "\n",
  );
  console.log(`${cases.length} cases → ${path.join(out, "manifest.json")}`);
}

main();
