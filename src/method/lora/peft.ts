/**
 * PEFT's LoRA adapter folder, read and written as PEFT's save_pretrained / from_pretrained do:
 * adapter_config.json and adapter_model.safetensors at the top of the folder, tensors named
 * base_model.model.<module>.lora_A.weight ([r, in]) and .lora_B.weight ([out, r]).
 *
 * Every field that changes what the adapter computes is honoured (r, lora_alpha, use_rslora, rank_pattern,
 * alpha_pattern, target_modules, layers_to_transform, exclude_modules) or refused with the reason (DoRA,
 * bias, modules_to_save, embedding adapters, inits that rewrite the base weights, ...): an adapter merged
 * with the wrong scale is worse than one refused.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import { writeFileAtomic } from "../../io/atomic.js";
import { F16OverflowCounter, f16Bits, type F16Overflow } from "../../io/export-overflow.js";
import {
  FLOAT_ST_DTYPES,
  openModelWeights,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  type FloatDtypeName,
  type SafetensorsFile,
  type TensorToWrite,
} from "../../io/safetensors.js";
import { recordToTensor } from "../../models/load.js";
import { loadModelConfig } from "../../io/config.js";
import { WEIGHT_DTYPES, isVisionTensor, textModelPrefix } from "../../io/model-folder.js";
import { tidy, type Tensor } from "../../tensor/index.js";
import { isPlainObject, parseJson } from "../../util/keys.js";
import type { LoraConfig } from "./config.js";

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

/**
 * The base model's name for base_model_name_or_path: `override` when given, else config.json's `_name_or_path`
 * (the hub id transformers records, e.g. "Qwen/Qwen2.5-0.5B"; only its last part when it is a local path),
 * else the folder's name. Never an absolute local path: the adapter travels to machines where it means nothing.
 */
export function baseModelName(baseDir: string, override?: string): string {
  if (override) return override;
  try {
    const cfg = JSON.parse(fs.readFileSync(path.join(baseDir, "config.json"), "utf8")) as Record<
      string,
      unknown
    >;
    const n = cfg._name_or_path;
    if (typeof n === "string" && n.trim() !== "")
      return path.isAbsolute(n) || n.startsWith(".") ? path.basename(n) : n;
  } catch {
    // no readable config.json: the folder's name
  }
  return path.basename(path.resolve(baseDir));
}

/**
 * How PEFT names the text model's modules in the model transformers builds from a base folder. A text-only
 * model: as this project does (model.layers.N.…). A multimodal Gemma3 (Gemma3ForConditionalGeneration): PEFT
 * names a module by its path in that model, which depends on the transformers version — language_model.model.
 * layers.N.… before 4.52 (and in google's published checkpoints), model.language_model.layers.N.… from 4.52 on
 * (its _checkpoint_conversion_mapping renames the old keys when loading, so a folder of either layout builds a model
 * with the newer paths). The adapter's tensor keys are those newer paths, whatever the folder's layout: PEFT 0.21
 * with transformers 5.17 loaded none of an adapter keyed language_model.model.… onto google's layout ("tensors not
 * loaded", seen on the GPU machine, BENCHMARKS "CUDA"), where PEFT was thought to map them (huggingface/peft#2574).
 * transformers before 4.52 (May 2025) would need the older keys: not written. Adapters of either layout are read.
 * adapter_config.json names modules
 * by what both versions share, from `layers.` on (PEFT matches list entries and pattern keys as dot-separated
 * suffixes), and excludes the vision tower and projector, whose SigLIP attention has q_proj/k_proj/v_proj too.
 */
export interface PeftNames {
  /** the module's name in adapter_model.safetensors (after base_model.model.) */
  key(module: string): string;
  /** the module's name in target_modules, rank_pattern and alpha_pattern */
  pattern(module: string): string;
  /** exclude_modules' regex for what is not the text model, or null (a text-only model) */
  exclude: string | null;
}

/** What stands for `model.` in a multimodal Gemma3's module paths (see PeftNames), by the folder's layout. */
export const MULTIMODAL_PREFIXES = ["language_model.model.", "model.language_model."] as const;
/** exclude_modules for a multimodal Gemma3: every module of the vision side. */
export const MULTIMODAL_EXCLUDE = ".*(vision_tower|multi_modal_projector).*";

/** This project's module name (model.…, lm_head) as its path in a multimodal Gemma3 of the layout `prefix`. */
function multimodalPath(prefix: (typeof MULTIMODAL_PREFIXES)[number]): (module: string) => string {
  const older = prefix === "language_model.model.";
  return (m) =>
    m.startsWith("model.")
      ? prefix + m.slice("model.".length)
      : m === "lm_head" && older
        ? "language_model.lm_head"
        : m;
}

/** A text-only model's PeftNames: PEFT names its modules as this project does. */
const TEXT_ONLY_NAMES: PeftNames = { key: (m) => m, pattern: (m) => m, exclude: null };

/** PeftNames for the base model folder `baseDir` (see PeftNames). */
export function peftNames(baseDir: string): PeftNames {
  const cfg = loadModelConfig(baseDir);
  if (cfg.modelType !== "gemma3") return TEXT_ONLY_NAMES;
  const prefix = textModelPrefix(openModelWeights(baseDir).tensors.keys());
  if (!(MULTIMODAL_PREFIXES as readonly string[]).includes(prefix)) return TEXT_ONLY_NAMES;
  return {
    key: multimodalPath("model.language_model."),
    pattern: (m) => (m.startsWith("model.layers.") ? m.slice("model.".length) : m),
    exclude: MULTIMODAL_EXCLUDE,
  };
}

/** A module name as PEFT wrote it for a multimodal Gemma3 (either layout), as this project names it. */
export function textModuleName(peftModule: string): string {
  for (const p of MULTIMODAL_PREFIXES)
    if (peftModule.startsWith(p)) return `model.${peftModule.slice(p.length)}`;
  return peftModule === "language_model.lm_head" ? "lm_head" : peftModule;
}

/** `cfg` with its module names as `names` gives them for adapter_config.json. */
function configFor(c: LoraConfig, names: PeftNames): LoraConfig {
  const keys = (p: Record<string, number> | undefined) =>
    p && Object.fromEntries(Object.entries(p).map(([k, v]) => [names.pattern(k), v]));
  let exclude = c.excludeModules ?? null;
  if (names.exclude) {
    if (exclude === null || (Array.isArray(exclude) && exclude.length === 0)) exclude = names.exclude;
    else if (typeof exclude === "string") exclude = `(?:${exclude})|(?:${names.exclude})`;
    // a list cannot hold a regex (PEFT matches its entries as suffixes): the vision side is left as listed
  }
  return {
    ...c,
    targetModules: typeof c.targetModules === "string" ? c.targetModules : c.targetModules.map(names.pattern),
    rankPattern: keys(c.rankPattern),
    alphaPattern: keys(c.alphaPattern),
    excludeModules: exclude,
  };
}

/**
 * adapter_config.json as PEFT writes it for `cfg`. exclude_modules (PEFT 0.14) only when set: PEFT before 0.13 fails
 * on any field it does not know (LoraConfig(**fields)), and left out it is its default, None.
 */
export function peftAdapterConfig(c: LoraConfig, baseModel: string): Record<string, unknown> {
  const exclude = c.excludeModules ?? null;
  return {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: baseModel,
    r: c.r,
    lora_alpha: c.alpha,
    lora_dropout: c.dropout,
    target_modules: typeof c.targetModules === "string" ? c.targetModules : [...c.targetModules].sort(),
    use_rslora: c.useRslora ?? false,
    rank_pattern: c.rankPattern ?? {},
    alpha_pattern: c.alphaPattern ?? {},
    layers_to_transform: c.layersToTransform ?? null,
    layers_pattern: null,
    ...(exclude === null ? {} : { exclude_modules: exclude }),
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    use_dora: false,
    revision: null,
  };
}

/** Anything holding trained "<module>.lora_A" / "<module>.lora_B" tensors (an attached LoRA, or a plain map). */
type LoraWeights = { trainable: Map<string, Tensor> } | Map<string, Tensor>;

/**
 * Write a PEFT adapter at the top of `dir` (created if needed). `base` is the base model's folder (its name is
 * taken with baseModelName) or the name itself; `opts.baseModelName` overrides either. `opts.dtype` is the tensors'
 * dtype in adapter_model.safetensors (float32 by default): PEFT loads a bfloat16 or float16 file as it loads its own
 * (load_state_dict casts into the adapter's parameters, float32 under its default autocast_adapter_dtype), so the
 * adapter computes with the values rounded to that dtype; adapter_config.json does not record it. Returns the tensors
 * whose values float16 could not hold (written as ±inf; empty for the other dtypes).
 */
export function writePeftAdapter(
  dir: string,
  cfg: LoraConfig,
  weights: LoraWeights,
  base: string,
  opts: { baseModelName?: string; dtype?: FloatDtypeName } = {},
): F16Overflow[] {
  const dtype = opts.dtype ?? "float32";
  const overflow = new F16OverflowCounter();
  const map = weights instanceof Map ? weights : weights.trainable;
  const isDir = fs.existsSync(base) && fs.statSync(base).isDirectory();
  // a base given by name only (no folder to look at) is named as a text-only model
  const names = isDir ? peftNames(base) : TEXT_ONLY_NAMES;
  const tensors: TensorToWrite[] = [];
  for (const [name, t] of map) {
    const m = /^(.*)\.lora_([AB])$/.exec(name);
    if (!m) continue;
    const tensorName = `base_model.model.${names.key(m[1]!)}.lora_${m[2]}.weight`;
    const data = tidy(() => t.to(dtype).contiguous().toBytes());
    if (dtype === "float16") {
      const source = tidy(() => t.float().contiguous().toFloat32Array());
      overflow.count(tensorName, f16Bits(data), (i) => source[i]!);
    }
    tensors.push({ name: tensorName, dtype: FLOAT_ST_DTYPES[dtype], shape: t.shape, data });
  }
  if (tensors.length === 0) throw new Error("writePeftAdapter: no lora_A / lora_B tensors to write");
  const name = opts.baseModelName ?? (isDir ? baseModelName(base) : base);
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors);
  writeFileAtomic(
    path.join(dir, ADAPTER_CONFIG_FILE),
    JSON.stringify(peftAdapterConfig(configFor(cfg, names), name), null, 2) + "\n",
  );
  return overflow.found;
}

// ---------------------------------------------------------------------------------------------- reading

/** The folder that holds adapter_config.json: `dir`, or the adapter/ folder a harden/train output keeps. */
export function findAdapterDir(dir: string): string {
  if (fs.existsSync(path.join(dir, ADAPTER_CONFIG_FILE))) return dir;
  if (fs.existsSync(path.join(dir, "adapter", ADAPTER_CONFIG_FILE))) return path.join(dir, "adapter");
  throw new InputError(`${dir}: no ${ADAPTER_CONFIG_FILE} (not a PEFT adapter folder)`);
}

/** Parse and check adapter_config.json: every field that changes the result is honoured or refused. */
export function parsePeftConfig(raw: unknown, file: string): { cfg: LoraConfig; baseModel: string | null } {
  const fail = (msg: string): never => {
    throw new InputError(`${file}: ${msg}`);
  };
  if (!isPlainObject(raw)) fail("not a JSON object");
  const c = raw as Record<string, unknown>;
  if (c.peft_type !== "LORA")
    fail(`peft_type is ${JSON.stringify(c.peft_type)}; only LORA adapters are supported`);
  const r = c.r;
  if (!Number.isInteger(r) || (r as number) <= 0)
    fail(`"r" must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = c.lora_alpha ?? 8; // PEFT's default
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) fail(`"lora_alpha" must be a number`);
  // What this project cannot apply, refused by name rather than merged wrongly.
  const refuse = (cond: boolean, what: string) => {
    if (cond) fail(`${what} is not supported; the adapter cannot be applied faithfully`);
  };
  refuse(c.use_dora === true, "use_dora (DoRA: a learned magnitude vector rescales each weight column)");
  refuse(
    c.bias !== undefined && c.bias !== null && c.bias !== "none",
    `bias "${String(c.bias)}" (trained biases)`,
  );
  refuse(c.lora_bias === true, "lora_bias (a bias on lora_B)");
  refuse(c.fan_in_fan_out === true, "fan_in_fan_out (transposed Conv1D weights)");
  refuse(
    Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0,
    "modules_to_save (fully trained modules)",
  );
  refuse(Array.isArray(c.layer_replication) && c.layer_replication.length > 0, "layer_replication");
  refuse(Array.isArray(c.target_parameters) && c.target_parameters.length > 0, "target_parameters");
  refuse(
    c.trainable_token_indices !== undefined && c.trainable_token_indices !== null,
    "trainable_token_indices",
  );
  refuse(Array.isArray(c.alora_invocation_tokens) && c.alora_invocation_tokens.length > 0, "aLoRA");
  refuse(c.use_qalora === true, "QALoRA");
  const init = c.init_lora_weights;
  refuse(
    // each of these rewrites the base weights at init (PiSSA, OLoRA, CorDA, LoftQ; LoRA-GA's lora_ga_init:
    // W - scaling·B₀A₀): on the untouched base the adapter is off by what was taken out
    typeof init === "string" && /^(pissa|olora|corda|loftq|lora_ga)/i.test(init),
    `init_lora_weights "${String(init)}" (it rewrites the base weights when PEFT loads the adapter)`,
  );
  const t = c.target_modules;
  let targetModules: string[] | string;
  if (typeof t === "string") targetModules = t;
  else if (Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === "string"))
    targetModules = t as string[];
  else return fail(`"target_modules" must be a list of module names or a regex, got ${JSON.stringify(t)}`);
  const numbers = (key: string): Record<string, number> | undefined => {
    const v = c[key];
    if (v === undefined || v === null) return undefined;
    if (!isPlainObject(v) || !Object.values(v).every((x) => typeof x === "number" && Number.isFinite(x)))
      fail(`"${key}" must map module patterns to numbers`);
    for (const k of Object.keys(v as object))
      try {
        new RegExp(k, "u");
      } catch {
        fail(`"${key}" key ${JSON.stringify(k)} is not a regular expression`);
      }
    return Object.keys(v as object).length > 0 ? (v as Record<string, number>) : undefined;
  };
  const rankPattern = numbers("rank_pattern");
  for (const [k, v] of Object.entries(rankPattern ?? {}))
    if (!Number.isInteger(v) || v <= 0) fail(`rank_pattern["${k}"] must be a positive integer, got ${v}`);
  const alphaPattern = numbers("alpha_pattern");
  let layersToTransform: number[] | null = null;
  const ltt = c.layers_to_transform;
  if (Number.isInteger(ltt)) layersToTransform = [ltt as number];
  else if (Array.isArray(ltt) && ltt.every((x) => Number.isInteger(x))) layersToTransform = ltt as number[];
  else if (ltt !== undefined && ltt !== null)
    fail(`"layers_to_transform" must be an integer or a list of integers`);
  if (layersToTransform && typeof targetModules === "string")
    fail(`"layers_to_transform" cannot be used with a regex target_modules (PEFT refuses it too)`);
  // Our modules are named model.layers.<i>...: the default pattern and "layers" find the index; others cannot.
  const lp = c.layers_pattern;
  const lpList = lp === undefined || lp === null ? [] : Array.isArray(lp) ? lp : [lp];
  if (layersToTransform && lpList.length > 0 && !lpList.includes("layers"))
    fail(
      `layers_pattern ${JSON.stringify(lp)} does not name this model's layer list ("layers"); the layers to transform cannot be found`,
    );
  const ex = c.exclude_modules;
  let excludeModules: string[] | string | null = null;
  if (typeof ex === "string" || (Array.isArray(ex) && ex.every((x) => typeof x === "string")))
    excludeModules = ex as string[] | string;
  else if (ex !== undefined && ex !== null)
    fail(`"exclude_modules" must be a list of module names or a regex`);
  const dropout = typeof c.lora_dropout === "number" ? c.lora_dropout : 0;
  return {
    cfg: {
      r: r as number,
      alpha: alpha as number,
      dropout,
      targetModules,
      useRslora: c.use_rslora === true,
      rankPattern,
      alphaPattern,
      layersToTransform,
      excludeModules,
    },
    baseModel: typeof c.base_model_name_or_path === "string" ? c.base_model_name_or_path : null,
  };
}

export interface PeftAdapter {
  cfg: LoraConfig;
  /** Trained tensors by "<module>.lora_A" / "<module>.lora_B" (HF module names). */
  init: Map<string, Tensor>;
  /** base_model_name_or_path, as written. */
  baseModel: string | null;
  /** The folder the files were read from. */
  dir: string;
}

/**
 * A PEFT adapter folder as its files' headers give it: adapter_config.json parsed and checked, and each tensor of
 * adapter_model.safetensors named and shaped, none read (so the libtorch addon is not loaded). What a command checks
 * against the base model's config.json (lora/model.ts checkPeftAdapterFits) before it loads the model.
 */
export interface PeftAdapterHeader {
  cfg: LoraConfig;
  /** base_model_name_or_path, as written. */
  baseModel: string | null;
  /** The folder the files were read from. */
  dir: string;
  /** Each tensor's shape by "<module>.lora_A" / "<module>.lora_B" (HF module names). */
  shapes: Map<string, readonly number[]>;
}

/** Read a PEFT LoRA adapter folder's config and tensor headers (or a harden/train output holding one in adapter/). */
export function readPeftAdapterHeader(dirGiven: string): PeftAdapterHeader {
  return peftAdapterFiles(dirGiven, readSafetensorsHeader).header;
}

/** Read a PEFT LoRA adapter folder (or a harden/train output holding one in adapter/). */
export function readPeftAdapter(dirGiven: string): PeftAdapter {
  const { header, f, keys } = peftAdapterFiles(dirGiven, readSafetensors);
  const init = new Map<string, Tensor>();
  for (const [name, key] of keys) init.set(key, recordToTensor(f.tensors.get(name)!));
  return { cfg: header.cfg, init, baseModel: header.baseModel, dir: header.dir };
}

/**
 * The adapter folder's config and weights file, read by `readWeights` (the header alone, or the tensors too), with
 * every check of names and dtypes made; `keys` maps each tensor's name in the file to "<module>.lora_A|B".
 */
function peftAdapterFiles(
  dirGiven: string,
  readWeights: (file: string) => SafetensorsFile,
): { header: PeftAdapterHeader; f: SafetensorsFile; keys: Map<string, string> } {
  const dir = findAdapterDir(dirGiven);
  const cfgFile = path.join(dir, ADAPTER_CONFIG_FILE);
  let text: string;
  try {
    text = fs.readFileSync(cfgFile, "utf8");
  } catch (e) {
    throw new InputError(`${cfgFile}: cannot read (${(e as Error).message})`, { cause: e });
  }
  const raw = parseJson(text, cfgFile); // refuses __proto__ and friends as keys
  const { cfg, baseModel } = parsePeftConfig(raw, cfgFile);
  const weightsFile = path.join(dir, ADAPTER_WEIGHTS_FILE);
  if (!fs.existsSync(weightsFile)) {
    const bin = fs.existsSync(path.join(dir, "adapter_model.bin"));
    throw new InputError(
      `${dir}: no ${ADAPTER_WEIGHTS_FILE}${bin ? " (adapter_model.bin is a pickle, which is not read: save the adapter with safe_serialization=True)" : ""}`,
    );
  }
  const f = readWeights(weightsFile);
  const keys = new Map<string, string>();
  const shapes = new Map<string, readonly number[]>();
  for (const [name, rec] of f.tensors) {
    if (/\.lora_embedding_[AB]/.test(name))
      throw new InputError(`${weightsFile}: ${name} is an embedding LoRA, which is not supported`);
    const m = /^base_model\.model\.(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$/.exec(name);
    if (!m)
      throw new InputError(
        `${weightsFile}: unexpected tensor ${name} (expected base_model.model.<module>.lora_A/lora_B.weight)`,
      );
    if (isVisionTensor(`${m[1]}.`))
      throw new InputError(
        `${weightsFile}: ${name} adapts the image side of a multimodal model (vision tower or projector), which this project does not load or change; merge such an adapter with PEFT (merge_and_unload), or train one whose target_modules leave the vision tower out (exclude_modules)`,
      );
    if (!WEIGHT_DTYPES.includes(rec.dtype))
      throw new InputError(`${weightsFile}: ${name} has dtype ${rec.dtype}, not a float`);
    // a multimodal Gemma3's adapter names the text model's modules by its path there (PeftNames)
    const key = `${textModuleName(m[1]!)}.lora_${m[2]}`;
    if (shapes.has(key)) throw new InputError(`${weightsFile}: two tensors for ${key}`);
    shapes.set(key, rec.shape);
    keys.set(name, key);
  }
  if (shapes.size === 0) throw new InputError(`${weightsFile}: no LoRA tensors`);
  // PEFT matched target_modules, exclude_modules and the pattern keys against the modules' paths in the model
  // it was trained on (tuners_utils.check_target_module_exists: re.fullmatch(target_modules, key) for a regex):
  // for a multimodal Gemma3 that path is the one its tensor keys carry, so the config is matched against it
  const mm = MULTIMODAL_PREFIXES.find((p) =>
    [...f.tensors.keys()].some((n) => n.startsWith(`base_model.model.${p}`)),
  );
  if (mm) cfg.matchAs = multimodalPath(mm);
  return { header: { cfg, baseModel, dir, shapes }, f, keys };
}
