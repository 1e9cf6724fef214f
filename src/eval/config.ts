/**
 * The evaluation's defaults, each written once: eval's flags (cli/commands/eval.ts), an experiment file's `eval`
 * section (experiment/spec.ts) and the library (eval/safety.ts, eval/preference.ts) take them from here. A module that
 * loads no model code, so that --help can show them.
 */

/** Tokens per generated answer (eval --max-new-tokens, an experiment's eval.maxNewTokens, generate's). */
export const DEFAULT_MAX_NEW_TOKENS = 256;

/** Prompts generated or examples scored per batch (eval --batch-size, an experiment's eval.batchSize). */
export const DEFAULT_EVAL_BATCH = 8;

/**
 * Whether the built-in engine (and llama.cpp) apply the logits processors a model folder's generation_config.json
 * asks for, as transformers' generate() does (eval/generate/generation-config.ts: its repetition_penalty, greedy or
 * sampled; its top_k, else transformers' 50, when sampling). The paper is silent on decoding, so the default is
 * what transformers and vLLM do with the folder; eval/generate's --no-generation-config turns it off (greedy
 * argmax of the raw logits, as before 2026-12-01).
 */
export const DEFAULT_APPLY_GENERATION_CONFIG = true;
