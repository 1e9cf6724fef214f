/** A Hugging Face model folder as a whole: config, weights, tokenizer files. */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { writeFileAtomic } from "./atomic.js";
import { fileStamp, type FileStamp } from "./mapfile.js";
import { loadModelConfig, type ModelConfig } from "./config.js";
import { namedTemplateFiles } from "./chat-template.js";
import {
  firstNonFinite,
  openModelWeightHeaders,
  openModelWeights,
  type ModelWeights,
  type StDtype,
  type TensorRecord,
} from "./safetensors.js";

/** The tokenizer-side files a hardened checkpoint carries over from its base model. */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "generation_config.json",
] as const;

/**
 * The other files Hugging Face loaders read from a model folder, carried unchanged into a checkpoint made from
 * it (hardened, converted) beside config.json and TOKENIZER_FILES: the slow tokenizer's SentencePiece model and
 * added tokens, and a multimodal model's processor (Gemma3's image preprocessing, the processor's settings and
 * its chat template), without which AutoProcessor cannot load the output as it loads the input. The project
 * itself reads none of them.
 */
export const CARRIED_FILES = [
  "tokenizer.model",
  "added_tokens.json",
  "preprocessor_config.json",
  "processor_config.json",
  "chat_template.json",
] as const;

/**
 * The stamps of every file of `dir` a checkpoint made from it is written from (config.json, the tokenizer and carried
 * files, the weights and their index), for folderUnchanged: taken when a long run starts.
 */
export function folderStamps(dir: string): FileStamp[] {
  // a folder that cannot be listed has no stamps: the command's own reading of it says why
  const listing = (d: string): string[] => {
    try {
      return fs.readdirSync(d);
    } catch {
      return [];
    }
  };
  const names = [
    "config.json",
    ...TOKENIZER_FILES,
    ...CARRIED_FILES,
    "model.safetensors",
    "model.safetensors.index.json",
    ...listing(dir).filter((f) => /\.safetensors$/.test(f)),
    ...namedTemplateFiles(dir),
  ];
  return [...new Set(names)]
    .map((n) => fileStamp(path.join(dir, n)))
    .filter((s): s is FileStamp => s !== null);
}

/**
 * Throws an InputError when a file of `stamps` was replaced (renamed over), removed or written since: a run that
 * read the folder when it started (the model, the tokenizer that made its examples) and writes its output from the
 * folder's files at the end would pair what it trained with other files. `doing` says what read them.
 */
export function folderUnchanged(dir: string, stamps: readonly FileStamp[], doing: string): void {
  const changed = stamps.filter((s) => {
    const now = fileStamp(s.file);
    return !now || now.dev !== s.dev || now.ino !== s.ino || now.size !== s.size || now.mtimeNs !== s.mtimeNs;
  });
  if (changed.length === 0) return;
  throw new InputError(
    `${changed.map((s) => s.file).join(", ")}: replaced, removed or written by another program while ${doing} ` +
      `read ${dir}; the output would pair what was computed from the old files with the new ones, so nothing was ` +
      `published. Rerun once nothing writes into ${dir} (finished stages are kept where their inputs are unchanged)`,
  );
}

export interface ModelFolder {
  dir: string;
  config: ModelConfig;
  weights: ModelWeights;
  /** The weights by their Hugging Face text-model name (model.…, lm_head.weight), checked against config. */
  tensors: Map<string, TensorRecord>;
  /** tokenizer.json is present (loadTokenizer can be used on the folder). */
  hasTokenizer: boolean;
  /** Which of TOKENIZER_FILES exist in the folder. */
  tokenizerFiles: string[];
  /** Bytes of tensor data per dtype, e.g. { BF16: 2_000_000_000 }. */
  bytesByDtype: Partial<Record<StDtype, number>>;
}

/**
 * Read config.json and open the weights, checked against each other (checkWeights: names, shapes, dtypes,
 * finite values) before anything is allocated or written; note which tokenizer files exist.
 */
export function inspectModelFolder(dir: string): ModelFolder {
  const config = loadModelConfig(dir); // checkModelDir first: a missing folder is said as such
  checkWeightHeaders(config, dir);
  const weights = openModelWeights(dir);
  const tensors = checkWeights(config, weights.tensors, dir);
  const tokenizerFiles = TOKENIZER_FILES.filter((f) => fs.existsSync(path.join(dir, f)));
  const bytesByDtype: Partial<Record<StDtype, number>> = {};
  for (const t of weights.tensors.values())
    bytesByDtype[t.dtype] = (bytesByDtype[t.dtype] ?? 0) + t.data.length;
  return {
    dir,
    config,
    weights,
    tensors,
    hasTokenizer: tokenizerFiles.includes("tokenizer.json"),
    tokenizerFiles,
    bytesByDtype,
  };
}

/** Each of `names` that exists in `srcDir`, read (a file that exists but cannot be read is an InputError naming it). */
function readExisting(srcDir: string, names: readonly string[]): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of names) {
    const src = path.join(srcDir, name);
    if (!fs.existsSync(src)) continue;
    try {
      files.set(name, fs.readFileSync(src));
    } catch (e) {
      throw new InputError(`${src}: cannot read (${(e as Error).message})`, { cause: e });
    }
  }
  return files;
}

/** Write each of `files` into `dstDir` (each atomically); returns the names written. */
export function writeModelFiles(dstDir: string, files: ReadonlyMap<string, Uint8Array>): string[] {
  for (const [name, bytes] of files) writeFileAtomic(path.join(dstDir, name), bytes);
  return [...files.keys()];
}

/**
 * Copy the tokenizer files that exist in `srcDir` into `dstDir` (each written atomically).
 * Returns the names copied; tokenizer.json must be among them, since a checkpoint without it is unusable.
 */
export function copyTokenizerFiles(srcDir: string, dstDir: string): string[] {
  const files = readExisting(srcDir, TOKENIZER_FILES);
  if (!files.has("tokenizer.json")) {
    throw new InputError(`${srcDir}: no tokenizer.json to copy into ${dstDir}`);
  }
  return writeModelFiles(dstDir, files);
}

/**
 * Every file of `srcDir` a checkpoint made from it carries besides its weights, read: config.json unless `config` is
 * false (the caller writes its own), generation_config.json, the tokenizer files (when tokenizer.json exists) with
 * the named chat templates (additional_chat_templates/<name>.jinja, which transformers loads beside
 * chat_template.jinja) and CARRIED_FILES that exist. A few small files: a command reads them before its long weight write, so that one that
 * cannot be read is reported before that write, not after it (writeModelFiles writes them).
 */
export function readModelFiles(srcDir: string, opts: { config?: boolean } = {}): Map<string, Buffer> {
  const hasTokenizer = fs.existsSync(path.join(srcDir, "tokenizer.json"));
  return readExisting(srcDir, [
    ...(opts.config === false ? [] : ["config.json"]),
    "generation_config.json",
    ...CARRIED_FILES,
    ...(hasTokenizer ? TOKENIZER_FILES.filter((f) => f !== "generation_config.json") : []),
    ...(hasTokenizer ? namedTemplateFiles(srcDir) : []),
  ]);
}

/**
 * The tokenizer files a checkpoint made from `srcDir` will lack (tokenizer.json, and tokenizer_config.json where it
 * is missing too), or [] where `srcDir` has tokenizer.json. A command that does not itself need the tokenizer
 * (export --format safetensors, fold) still writes the checkpoint, with missingTokenizerWarning said.
 */
export function missingTokenizerFiles(srcDir: string): string[] {
  if (fs.existsSync(path.join(srcDir, "tokenizer.json"))) return [];
  return ["tokenizer.json", "tokenizer_config.json"].filter((f) => !fs.existsSync(path.join(srcDir, f)));
}

/** The warning for a checkpoint written to `outDir` from `srcDir` without the tokenizer files `missing`. */
export function missingTokenizerWarning(srcDir: string, outDir: string, missing: readonly string[]): string {
  return (
    `${srcDir} has no ${missing.join(" or ")}, so ${outDir} has none: transformers' AutoTokenizer and goodvibe's ` +
    `commands cannot load a tokenizer from it; copy ${missing.join(" and ")} from the original checkpoint into ${outDir}`
  );
}

/** readModelFiles of `srcDir` written into `dstDir` (each atomically). Returns the names copied. */
export function copyModelFiles(srcDir: string, dstDir: string, opts: { config?: boolean } = {}): string[] {
  return writeModelFiles(dstDir, readModelFiles(srcDir, opts));
}

// ---------------------------------------------------------------------------------------------------------
// Weights against config

/** The dtypes a weight may be stored in (integer or bool tensors are not weights of these families). */
export const WEIGHT_DTYPES: readonly StDtype[] = ["F32", "BF16", "F16", "F64"];

export interface ExpectedTensor {
  shape: number[];
  /** How config.json implies the shape, for messages: "[vocab_size, hidden_size]". */
  from: string;
  /** May be absent (a tied lm_head some checkpoints store anyway). */
  optional?: boolean;
}

/** Every tensor a checkpoint of `cfg` holds, by Hugging Face name, with its shape (transformers' modules). */
export function expectedTensors(cfg: ModelConfig): Map<string, ExpectedTensor> {
  const H = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  const out = new Map<string, ExpectedTensor>();
  const add = (name: string, shape: number[], from: string, optional = false) =>
    out.set(name, { shape, from, ...(optional ? { optional } : {}) });
  const qFrom = "num_attention_heads × head_dim";
  const kvFrom = "num_key_value_heads × head_dim";
  add("model.embed_tokens.weight", [cfg.vocabSize, H], "[vocab_size, hidden_size]");
  for (let i = 0; i < cfg.numLayers; i++) {
    const a = `model.layers.${i}.self_attn`;
    add(`${a}.q_proj.weight`, [q, H], `[${qFrom}, hidden_size]`);
    add(`${a}.k_proj.weight`, [kv, H], `[${kvFrom}, hidden_size]`);
    add(`${a}.v_proj.weight`, [kv, H], `[${kvFrom}, hidden_size]`);
    add(`${a}.o_proj.weight`, [H, q], `[hidden_size, ${qFrom}]`);
    if (cfg.qkvBias) {
      add(`${a}.q_proj.bias`, [q], `[${qFrom}]`);
      add(`${a}.k_proj.bias`, [kv], `[${kvFrom}]`);
      add(`${a}.v_proj.bias`, [kv], `[${kvFrom}]`);
    }
    if (cfg.oBias) add(`${a}.o_proj.bias`, [H], "[hidden_size]");
    if (cfg.qkNorm) {
      add(`${a}.q_norm.weight`, [cfg.headDim], "[head_dim]");
      add(`${a}.k_norm.weight`, [cfg.headDim], "[head_dim]");
    }
    const m = `model.layers.${i}.mlp`;
    add(`${m}.gate_proj.weight`, [I, H], "[intermediate_size, hidden_size]");
    add(`${m}.up_proj.weight`, [I, H], "[intermediate_size, hidden_size]");
    add(`${m}.down_proj.weight`, [H, I], "[hidden_size, intermediate_size]");
    if (cfg.mlpBias) {
      add(`${m}.gate_proj.bias`, [I], "[intermediate_size]");
      add(`${m}.up_proj.bias`, [I], "[intermediate_size]");
      add(`${m}.down_proj.bias`, [H], "[hidden_size]");
    }
    const norms = cfg.sandwichNorms
      ? [
          "input_layernorm",
          "post_attention_layernorm",
          "pre_feedforward_layernorm",
          "post_feedforward_layernorm",
        ]
      : ["input_layernorm", "post_attention_layernorm"];
    for (const n of norms) add(`model.layers.${i}.${n}.weight`, [H], "[hidden_size]");
  }
  add("model.norm.weight", [H], "[hidden_size]");
  add("lm_head.weight", [cfg.vocabSize, H], "[vocab_size, hidden_size]", cfg.tieWordEmbeddings);
  return out;
}

/** Parts of multimodal checkpoints that are not the text model (Gemma3's vision tower): left alone. */
const NOT_TEXT_MODEL = /(^|\.)(vision_tower|multi_modal_projector|vision_model)\./;
/** A multimodal checkpoint's tensor of the image side (vision tower, projector), which no command reads or changes. */
export const isVisionTensor = (name: string): boolean => NOT_TEXT_MODEL.test(name);
/** Buffers older checkpoints stored and transformers recomputes. */
const RECOMPUTED = /\.rotary_emb\.inv_freq$/;

/**
 * What stands for the text model's `model.` in a checkpoint's tensor names: the prefix before
 * `embed_tokens.weight` (`language_model.model.` in a multimodal Gemma3 saved by transformers < 4.52 or as
 * google published it, `model.language_model.` as later versions save it, none for a bare base model).
 */
export function textModelPrefix(names: Iterable<string>): string {
  for (const n of names)
    if (/(^|\.)embed_tokens\.weight$/.test(n) && !NOT_TEXT_MODEL.test(n))
      return n.slice(0, n.length - "embed_tokens.weight".length);
  return "model.";
}

/**
 * The Hugging Face text-model name of each stored tensor (textModelPrefix stands for `model.`). Returns the
 * renamed tensors and the names nothing maps to; ignorable tensors are dropped.
 */
function canonicalTensors(
  cfg: ModelConfig,
  stored: Map<string, TensorRecord>,
): { tensors: Map<string, TensorRecord>; unmapped: string[] } {
  const prefix = textModelPrefix(stored.keys());
  // lm_head sits beside the text model's `model.`: `lm_head.weight`, or `language_model.lm_head.weight` under
  // `language_model.model.`; under `model.language_model.` (transformers >= 4.52) it is top-level only
  const headNames = new Set(["lm_head.weight"]);
  if (/(^|\.)model\.$/.test(prefix)) headNames.add(`${prefix.slice(0, -"model.".length)}lm_head.weight`);
  const tensors = new Map<string, TensorRecord>();
  const unmapped: string[] = [];
  for (const [name, rec] of stored) {
    if (RECOMPUTED.test(name)) continue;
    if (cfg.modelType === "gemma3" && NOT_TEXT_MODEL.test(name)) continue;
    let canonical: string | null = null;
    if (headNames.has(name)) canonical = "lm_head.weight";
    else if (name.startsWith(prefix)) canonical = `model.${name.slice(prefix.length)}`;
    if (canonical === null || tensors.has(canonical)) unmapped.push(name);
    else tensors.set(canonical, rec);
  }
  return { tensors, unmapped };
}

function listed(names: readonly string[], max = 6): string {
  const shown = names.slice(0, max).join(", ");
  return names.length > max ? `${shown}, … (${names.length} in all)` : shown;
}

/** Layer indices present in tensor names, for the "config says N layers, weights have M" hint. */
function layerCount(names: Iterable<string>): number {
  let max = -1;
  for (const n of names) {
    const m = /^model\.layers\.(\d+)\./.exec(n);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max + 1;
}

/**
 * checkWeights on the weights' headers alone (names, shapes, dtypes; values are checked once read): a folder whose
 * weights do not match its config.json is refused before they are mapped, which loads the libtorch addon (about a
 * second of start-up that a refusal should not cost). Returns the records by text-model name, their data empty.
 */
export function checkWeightHeaders(cfg: ModelConfig, dir: string): Map<string, TensorRecord> {
  return checkWeights(cfg, openModelWeightHeaders(dir).tensors, dir, { finite: false });
}

/**
 * Check a checkpoint's tensors against its config before any work: every expected tensor present, nothing
 * unexpected, each shape as config.json implies, each dtype a float one, and no NaN or infinite value. All
 * mismatches go into one InputError that names `where`, each tensor, and what config.json implies.
 * Returns the tensors by Hugging Face text-model name (see canonicalTensors).
 */
export function checkWeights(
  cfg: ModelConfig,
  stored: Map<string, TensorRecord>,
  where: string,
  opts: { finite?: boolean } = {},
): Map<string, TensorRecord> {
  const expected = expectedTensors(cfg);
  const { tensors, unmapped } = canonicalTensors(cfg, stored);
  const storedName = (n: string) => tensors.get(n)?.name ?? n;
  const missing: string[] = [];
  const unexpected = [...unmapped];
  const problems: string[] = [];
  const badDtype = new Map<string, string[]>();
  for (const [name, e] of expected) if (!tensors.has(name) && !e.optional) missing.push(name);
  for (const [name, rec] of tensors) {
    const e = expected.get(name);
    if (!e) {
      unexpected.push(rec.name);
      continue;
    }
    if (rec.shape.length !== e.shape.length || rec.shape.some((d, i) => d !== e.shape[i]))
      problems.push(
        `${rec.name} has shape [${rec.shape.join(", ")}], config.json implies [${e.shape.join(", ")}] = ${e.from}`,
      );
    if (!WEIGHT_DTYPES.includes(rec.dtype)) {
      const names = badDtype.get(rec.dtype) ?? [];
      names.push(rec.name);
      badDtype.set(rec.dtype, names);
    }
  }
  for (const [dtype, names] of badDtype)
    problems.push(
      `dtype ${dtype} (${listed(names)}): weights must be ${WEIGHT_DTYPES.join(", ")} (integer tensors are quantized or not weights)`,
    );
  const lines: string[] = [];
  if (missing.length) lines.push(`missing (${missing.length}): ${listed(missing.map(storedName))}`);
  if (unexpected.length) lines.push(`unexpected (${unexpected.length}): ${listed(unexpected)}`);
  lines.push(...problems.slice(0, 8));
  if (problems.length > 8) lines.push(`… and ${problems.length - 8} more shape or dtype mismatches`);
  if (lines.length > 0) {
    const layers = layerCount([...tensors.keys()]);
    const hint =
      layers > 0 && layers !== cfg.numLayers
        ? `\n  config.json says num_hidden_layers = ${cfg.numLayers} but the weights have ${layers} layers`
        : "";
    throw new InputError(
      `${where}: the weights do not match config.json (${cfg.modelType}, ${cfg.numLayers} layers, hidden_size ${cfg.hiddenSize}, vocab_size ${cfg.vocabSize}):\n  ${lines.join("\n  ")}${hint}`,
    );
  }
  if (opts.finite ?? true) {
    for (const rec of tensors.values()) {
      const i = firstNonFinite(rec);
      if (i >= 0)
        throw new InputError(
          `${rec.file}: tensor ${rec.name} holds a NaN or infinite value (element ${i} of shape [${rec.shape.join(", ")}]); the checkpoint is corrupt or diverged in training`,
        );
    }
  }
  return tensors;
}
