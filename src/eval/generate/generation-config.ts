/**
 * What a model folder's generation_config.json asks of decoding: what the project's engines apply of it
 * (generationConfigProcessors: the repetition penalty; when sampling, its top_k, and its top_p and temperature
 * where the call gives none) and what they do not (the caveat).
 *
 * transformers' generate() builds its logits processors from the model's generation config whatever do_sample says
 * (generation/utils.py `_get_logits_processor`: `if generation_config.repetition_penalty is not None and
 * generation_config.repetition_penalty != 1.0: processors.append(RepetitionPenaltyLogitsProcessor(...))`, and the
 * same for no_repeat_ngram_size, bad_words_ids, min_length/min_new_tokens, sequence_bias, forced BOS/EOS, suppressed
 * tokens, the length penalty's decay), and vLLM takes the folder's repetition_penalty as a request's default. Qwen2.5's
 * instruct models set repetition_penalty 1.05 (Coder: 1.1). The built-in engine and llama.cpp apply the repetition
 * penalty as transformers does (models/generate.ts applyRepetitionPenalty), unless turned off; the other fields
 * they do not apply, which is said (the caveat), not silently different.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { isPlainObject } from "../../util/keys.js";
import { InputError } from "../../errors.js";
import { DEFAULT_APPLY_GENERATION_CONFIG } from "../config.js";

/**
 * transformers' top_k when neither the call nor the folder's generation_config.json sets one (GenerationConfig's
 * default in generation/configuration_utils.py: `top_k` 50 in v4's __init__, v5's `_get_default_generation_params`);
 * TopKLogitsWarper applies it whenever it samples.
 */
export const TRANSFORMERS_DEFAULT_TOP_K = 50;

/** The processors the project's engines apply from a folder's generation_config.json (models/generate.ts). */
export interface GenerationConfigProcessors {
  /** RepetitionPenaltyLogitsProcessor's penalty, greedy and sampled; absent: none (the field unset or 1) */
  repetitionPenalty?: number;
  /** TopKLogitsWarper's k when sampling (the folder's top_k, else TRANSFORMERS_DEFAULT_TOP_K); 0: none */
  topK?: number;
  /**
   * TopPLogitsWarper's top_p when sampling and the call gives none (the folder's top_p); absent: none (unset or 1).
   * transformers' generate() takes every field a call leaves out from the generation config, and vLLM takes the
   * folder's sampling fields as a request's defaults.
   */
  topP?: number;
  /**
   * TemperatureLogitsWarper's temperature when a call asks to sample without one (`generate --sample`); absent: the
   * folder sets none (transformers' default then is 1.0, SAMPLE_DEFAULT_TEMPERATURE).
   */
  temperature?: number;
  /**
   * The folder's do_sample: true makes transformers' generate() sample by default (Qwen2.5-Instruct's file). The
   * project's engines stay greedy unless asked to sample (a departure, experiment/departures.ts).
   */
  doSample?: boolean;
  /**
   * The sampling fields the file sets to values their warpers refuse, as messages naming the file and field: thrown
   * when a sampled call would take one (sampledTopK, sampledTopP, sampledTemperature), not before. A greedy run does not use them,
   * and transformers loads such a file and refuses it only when it samples (TopPLogitsWarper,
   * TemperatureLogitsWarper).
   */
  refused?: { topK?: string; topP?: string; temperature?: string };
}

/** transformers' temperature when neither the call nor the folder's generation_config.json sets one. */
export const SAMPLE_DEFAULT_TEMPERATURE = 1;

/**
 * The top_p a sampled call gets: its own, else the folder's (GenerationConfigProcessors.topP), else none. One home
 * for the rule, used by the built-in engine and llama.cpp alike (a server applies its own).
 */
export function sampledTopP(callTopP: number | undefined, p: GenerationConfigProcessors): number | undefined {
  if (callTopP !== undefined) return callTopP;
  if (p.refused?.topP) throw new InputError(p.refused.topP);
  return p.topP;
}

/** The top_k a sampled call applies: the folder's, else TRANSFORMERS_DEFAULT_TOP_K; undefined: none (turned off). */
export function sampledTopK(p: GenerationConfigProcessors): number | undefined {
  if (p.refused?.topK) throw new InputError(p.refused.topK);
  return p.topK;
}

/**
 * The top_p and top_k a sampled call applies, as numbers (1: no top-p, 0: no top-k): sampledTopP and sampledTopK,
 * for the engines that draw on plain numbers (llama.cpp), the answers' keys and the records.
 */
export function sampledWarpers(
  callTopP: number | undefined,
  p: GenerationConfigProcessors,
): { topP: number; topK: number } {
  return { topP: sampledTopP(callTopP, p) ?? 1, topK: sampledTopK(p) ?? 0 };
}

/** The temperature of a call that asks to sample without one: the folder's, else SAMPLE_DEFAULT_TEMPERATURE. */
export function sampledTemperature(p: GenerationConfigProcessors): number {
  if (p.refused?.temperature) throw new InputError(p.refused.temperature);
  return p.temperature ?? SAMPLE_DEFAULT_TEMPERATURE;
}

function readGenerationConfig(dir: string): Record<string, unknown> | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, "generation_config.json"), "utf8");
  } catch {
    return null; // absent
  }
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path.join(dir, "generation_config.json")}: not JSON (${(e as Error).message})`);
  }
  return isPlainObject(cfg) ? cfg : null;
}

/**
 * readGenerationConfig for what only describes the answers (caveats, departures): a file that is not JSON reads as
 * none here, as loading the model names it.
 */
function describedGenerationConfig(dir: string): Record<string, unknown> | null {
  try {
    return readGenerationConfig(dir);
  } catch {
    return null;
  }
}

/** The fields of `cfg` that `table` finds active, as "name value". */
function activeFields(
  cfg: Record<string, unknown> | null,
  table: readonly [string, (v: unknown) => boolean][],
): string[] {
  if (!cfg) return [];
  return table.filter(([k, active]) => active(cfg[k])).map(([k]) => `${k} ${JSON.stringify(cfg[k])}`);
}

/**
 * What the engines apply of `dir`'s generation_config.json, as transformers' generate() builds it
 * (generation/utils.py `_get_logits_processor`: `repetition_penalty is not None and != 1.0` adds
 * RepetitionPenaltyLogitsProcessor; with do_sample, `temperature != 1.0` TemperatureLogitsWarper, `top_k is not
 * None and != 0` TopKLogitsWarper, `top_p < 1.0` TopPLogitsWarper, each from the call where it gives one, else
 * from this file). `apply` false (--no-generation-config): nothing, the engines' behaviour before 2026-12-01.
 * A value transformers refuses is refused here, naming the file and field.
 */
export function generationConfigProcessors(dir: string | null, apply: boolean): GenerationConfigProcessors {
  if (!apply) return {};
  const cfg = dir ? readGenerationConfig(dir) : null;
  const file = dir ? path.join(dir, "generation_config.json") : "";
  const out: GenerationConfigProcessors = {};
  const p = cfg?.repetition_penalty;
  if (p !== undefined && p !== null) {
    // RepetitionPenaltyLogitsProcessor.__init__: "`penalty` has to be a strictly positive float"
    if (typeof p !== "number" || !(p > 0) || !Number.isFinite(p))
      throw new InputError(`${file}: repetition_penalty must be a number > 0, got ${JSON.stringify(p)}`);
    if (p !== 1) out.repetitionPenalty = p;
  }
  const k = cfg?.top_k;
  const refused: NonNullable<GenerationConfigProcessors["refused"]> = {};
  // TopKLogitsWarper refuses what is not a positive integer (0: no warper), when it samples: so here
  if (k !== undefined && k !== null && !(Number.isInteger(k) && (k as number) >= 0))
    refused.topK = `${file}: top_k must be a non-negative integer to sample with, got ${JSON.stringify(k)}`;
  else out.topK = typeof k === "number" ? k : TRANSFORMERS_DEFAULT_TOP_K;
  // the sampling defaults, used only when a call samples, and refused only then (`refused`): TopPLogitsWarper
  // refuses top_p outside [0, 1]; 0 (the most likely token alone) is refused too, as a sampled call's top_p is
  // (greedy says it). TemperatureLogitsWarper wants a strictly positive float
  const tp = cfg?.top_p;
  if (tp !== undefined && tp !== null) {
    if (typeof tp !== "number" || !(tp > 0 && tp <= 1))
      refused.topP = `${file}: top_p must be a number in (0, 1] to sample with, got ${JSON.stringify(tp)}`;
    else if (tp < 1) out.topP = tp;
  }
  const t = cfg?.temperature;
  if (t !== undefined && t !== null) {
    if (typeof t !== "number" || !(t > 0) || !Number.isFinite(t))
      refused.temperature = `${file}: temperature must be a number > 0 to sample with, got ${JSON.stringify(t)}`;
    else out.temperature = t;
  }
  if (refused.topK || refused.topP || refused.temperature) out.refused = refused;
  if (cfg?.do_sample === true) out.doSample = true;
  return out;
}

/**
 * The sampling `dir`'s generation_config.json makes transformers' generate() do by default: its fields when it sets
 * do_sample true (absent ones: transformers' defaults, temperature 1, top_p 1, top_k 50), else null (no file,
 * do_sample unset or false, or a file that cannot be read, which loading the model names). For the departure the
 * project's greedy answers are (experiment/departures.ts).
 */
export function folderDefaultSampling(
  dir: string,
): { temperature: number; topP: number; topK: number } | null {
  const cfg = describedGenerationConfig(dir);
  if (cfg?.do_sample !== true) return null;
  const num = (v: unknown, d: number) => (typeof v === "number" && Number.isFinite(v) ? v : d);
  return {
    temperature: num(cfg.temperature, SAMPLE_DEFAULT_TEMPERATURE),
    topP: num(cfg.top_p, 1),
    topK: num(cfg.top_k, TRANSFORMERS_DEFAULT_TOP_K),
  };
}

/**
 * The decoding a `goodvibe serve` request gets for the fields it leaves out: vLLM's (`--generation-config auto`,
 * its default): the folder's generation_config.json temperature, top_p and top_k (config.py
 * get_diff_sampling_param), else its neutral values, OpenAI's (protocol.py _DEFAULT_SAMPLING_PARAMS: temperature
 * 1.0, top_p 1.0, top_k 0, i.e. no top-p, no top-k). do_sample is not read (vLLM does not), so a folder that sets
 * none of them is sampled at temperature 1, as OpenAI and vLLM answer such a request.
 */
export interface ServedSamplingDefaults {
  /** 0: greedy */
  temperature: number;
  /** absent: none */
  topP?: number;
  /** absent: none */
  topK?: number;
  /**
   * max_tokens of a request that gives none: generation_config.json's max_new_tokens, as vLLM takes it
   * (config/model.py get_diff_sampling_param: HF's max_new_tokens is its max_tokens; serve utils get_max_tokens: the
   * request's, else this, bounded by the rest of the context). Absent: the server's own default (serve.ts)
   */
  maxTokens?: number;
}

/** vLLM's and OpenAI's neutral defaults: what a folder without generation_config.json serves. */
export const OPENAI_SAMPLING_DEFAULTS: ServedSamplingDefaults = { temperature: 1 };

/**
 * ServedSamplingDefaults of `dir`'s generation_config.json (`apply` false, `--no-generation-config`: OpenAI's).
 * A value vLLM's SamplingParams refuses is refused here, naming the file and field, before the server starts.
 */
export function servedSamplingDefaults(dir: string, apply: boolean): ServedSamplingDefaults {
  const cfg = apply ? readGenerationConfig(dir) : null;
  const out: ServedSamplingDefaults = { ...OPENAI_SAMPLING_DEFAULTS };
  if (!cfg) return out;
  const file = path.join(dir, "generation_config.json");
  const given = (k: string) => cfg[k] !== undefined && cfg[k] !== null;
  const refuse = (k: string, what: string) =>
    new InputError(`${file}: ${k} must be ${what} to serve with, got ${JSON.stringify(cfg[k])}`);
  if (given("temperature")) {
    const t = cfg.temperature;
    if (typeof t !== "number" || !Number.isFinite(t) || t < 0) throw refuse("temperature", "a number >= 0");
    out.temperature = t;
  }
  if (given("top_p")) {
    const p = cfg.top_p;
    if (typeof p !== "number" || !(p > 0 && p <= 1)) throw refuse("top_p", "a number in (0, 1]");
    if (p < 1) out.topP = p;
  }
  if (given("top_k")) {
    // vLLM: -1 or 0 disable it
    const k = cfg.top_k;
    if (!Number.isInteger(k) || (k as number) < -1) throw refuse("top_k", "an integer >= -1");
    if ((k as number) > 0) out.topK = k as number;
  }
  // max_length is not read (vLLM reads max_new_tokens alone); transformers' GenerationConfig.validate refuses a
  // max_new_tokens <= 0
  if (given("max_new_tokens")) {
    const m = cfg.max_new_tokens;
    if (!Number.isInteger(m) || (m as number) < 1) throw refuse("max_new_tokens", "a positive integer");
    out.maxTokens = m as number;
  }
  return out;
}

/**
 * What of the processors changes greedy answers, for the answers' cache keys: the repetition penalty when one is
 * applied, else nothing (so the keys of a folder without one, or of a run with them off, are those of before).
 */
export function greedyProcessorKey(p: GenerationConfigProcessors): Record<string, unknown> {
  return p.repetitionPenalty !== undefined ? { repetitionPenalty: p.repetitionPenalty } : {};
}

/** generation_config.json fields that change greedy answers in transformers' generate(), when "active". */
const GREEDY_PROCESSORS: readonly [string, (v: unknown) => boolean][] = [
  ["repetition_penalty", (v) => typeof v === "number" && v !== 1],
  ["no_repeat_ngram_size", (v) => typeof v === "number" && v > 0],
  ["bad_words_ids", (v) => Array.isArray(v) && v.length > 0],
  ["min_length", (v) => typeof v === "number" && v > 0],
  ["min_new_tokens", (v) => typeof v === "number" && v > 0],
  ["sequence_bias", (v) => v !== null && v !== undefined],
  ["forced_bos_token_id", (v) => typeof v === "number"],
  ["forced_eos_token_id", (v) => v !== null && v !== undefined],
  ["suppress_tokens", (v) => Array.isArray(v) && v.length > 0],
  ["begin_suppress_tokens", (v) => Array.isArray(v) && v.length > 0],
  ["exponential_decay_length_penalty", (v) => v !== null && v !== undefined],
];

/** The fields of `dir`'s generation_config.json that transformers applies in greedy decoding, as "name value". */
export function greedyProcessorFields(dir: string): string[] {
  return activeFields(describedGenerationConfig(dir), GREEDY_PROCESSORS);
}

/** The fields of greedyProcessorFields the project's engines apply (unless turned off). */
const APPLIED = new Set(["repetition_penalty"]);

/**
 * generation_config.json's sampling warpers the engines do not apply, when "active" as generation/utils.py
 * `_get_logits_processor` adds them with do_sample (MinPLogitsWarper: min_p set; TypicalLogitsWarper: typical_p
 * < 1; EpsilonLogitsWarper and EtaLogitsWarper: a cutoff in (0, 1)). Temperature, top_k and top_p they apply.
 */
const SAMPLING_WARPERS: readonly [string, (v: unknown) => boolean][] = [
  ["min_p", (v) => typeof v === "number" && v > 0],
  ["typical_p", (v) => typeof v === "number" && v < 1],
  ["epsilon_cutoff", (v) => typeof v === "number" && v > 0 && v < 1],
  ["eta_cutoff", (v) => typeof v === "number" && v > 0 && v < 1],
];

/** The fields of `dir`'s generation_config.json that transformers applies when sampling and the engines do not. */
export function unappliedSamplingFields(dir: string): string[] {
  return activeFields(describedGenerationConfig(dir), SAMPLING_WARPERS);
}

/**
 * The caveat of answers from `dir`'s model when its generation_config.json asks for logits processors the answers
 * may lack; null when there is none. `server`: the answers come from a server, which may apply them (vLLM does,
 * llama-server does not). `applied` (default DEFAULT_APPLY_GENERATION_CONFIG): the built-in engine and llama.cpp
 * apply repetition_penalty, so only the other fields are named; false (--no-generation-config): all of them.
 * `sampled`: the built-in engine or llama.cpp sampled these answers, so the sampling warpers they lack
 * (unappliedSamplingFields: min_p, typical_p, ...) are named too.
 */
export function generationConfigCaveat(
  dir: string,
  opts: { server?: boolean; applied?: boolean; sampled?: boolean } = {},
): string | null {
  const greedy = greedyCaveat(dir, opts);
  const applied = opts.applied ?? DEFAULT_APPLY_GENERATION_CONFIG;
  const warpers = opts.sampled && !opts.server ? unappliedSamplingFields(dir) : [];
  if (warpers.length === 0) return greedy;
  const sampled =
    `${path.join(dir, "generation_config.json")} sets ${warpers.join(", ")}, which transformers' generate() ` +
    `applies when sampling; the built-in engine and llama.cpp sample with ` +
    `${applied ? "its temperature, top_k and top_p only" : "none of the file (--no-generation-config)"}, so ` +
    `these sampled answers are drawn from another distribution than transformers'`;
  return greedy === null ? sampled : `${greedy}; ${sampled}`;
}

function greedyCaveat(dir: string, opts: { server?: boolean; applied?: boolean }): string | null {
  const applied = opts.applied ?? DEFAULT_APPLY_GENERATION_CONFIG;
  const all = greedyProcessorFields(dir);
  const file = path.join(dir, "generation_config.json");
  if (opts.server) {
    if (all.length === 0) return null;
    return (
      `${file} sets ${all.join(", ")}: a server may apply ${all.length === 1 ? "it" : "them"} (vLLM takes ` +
      `repetition_penalty from the folder by default, llama-server does not), so these answers can differ from ` +
      `the built-in engine's, which applies ${applied ? "repetition_penalty only" : "none (--no-generation-config)"}`
    );
  }
  const missing = applied ? all.filter((f) => !APPLIED.has(f.split(" ")[0]!)) : all;
  if (missing.length === 0) return null;
  return (
    `${file} sets ${missing.join(", ")}, which transformers' generate() applies even in greedy decoding (and ` +
    `vLLM by default); the built-in engine and llama.cpp do not${applied ? "" : " (--no-generation-config)"}, so ` +
    `their answers can differ from transformers' and vLLM's for this model`
  );
}
