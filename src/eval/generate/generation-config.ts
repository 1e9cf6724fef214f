/**
 * What a model folder's generation_config.json asks of greedy decoding that this project's engines do not do.
 *
 * transformers' generate() builds its logits processors from the model's generation config whatever do_sample says
 * (generation/utils.py `_get_logits_processor`: `if generation_config.repetition_penalty is not None and
 * generation_config.repetition_penalty != 1.0: processors.append(RepetitionPenaltyLogitsProcessor(...))`, and the
 * same for no_repeat_ngram_size, bad_words_ids, min_length/min_new_tokens, sequence_bias, forced BOS/EOS, suppressed
 * tokens, the length penalty's decay), and vLLM takes the folder's repetition_penalty as a request's default. Qwen2.5's
 * instruct models set repetition_penalty 1.05 (Coder: 1.1). The built-in engine and llama.cpp decode greedily with
 * none of them (models/generate.ts), so for such a model their answers can differ from transformers' greedy
 * generate() and vLLM's: said, not silently different.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { isPlainObject } from "../../util/keys.js";

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
  let cfg: unknown;
  try {
    cfg = JSON.parse(fs.readFileSync(path.join(dir, "generation_config.json"), "utf8"));
  } catch {
    return []; // absent (or unreadable: the tokenizer's loading names a malformed file)
  }
  if (!isPlainObject(cfg)) return [];
  return GREEDY_PROCESSORS.filter(([k, active]) => active(cfg[k])).map(
    ([k]) => `${k} ${JSON.stringify(cfg[k])}`,
  );
}

/**
 * The caveat of answers from `dir`'s model when its generation_config.json asks for logits processors; null when it
 * asks for none. `server`: the answers come from a server, which may apply them (vLLM does, llama-server does not).
 */
export function generationConfigCaveat(dir: string, opts: { server?: boolean } = {}): string | null {
  const fields = greedyProcessorFields(dir);
  if (fields.length === 0) return null;
  const what = `${path.join(dir, "generation_config.json")} sets ${fields.join(", ")}`;
  return opts.server
    ? `${what}: a server may apply ${fields.length === 1 ? "it" : "them"} (vLLM takes repetition_penalty from the ` +
        `folder by default, llama-server does not), so these answers can differ from the built-in engine's, which ` +
        `applies none`
    : `${what}, which transformers' generate() applies even in greedy decoding (and vLLM by default); the ` +
        `built-in engine and llama.cpp apply none, so their answers can differ from transformers' and vLLM's for ` +
        `this model`;
}
