/**
 * The evaluation's defaults, each written once: eval's flags (cli/commands/eval.ts), an experiment file's `eval`
 * section (experiment/spec.ts) and the library (eval/safety.ts, eval/preference.ts) take them from here. A module that
 * loads no model code, so that --help can show them.
 */

/** Tokens per generated answer (eval --max-new-tokens, an experiment's eval.maxNewTokens, generate's). */
export const DEFAULT_MAX_NEW_TOKENS = 256;

/** Prompts generated or examples scored per batch (eval --batch-size, an experiment's eval.batchSize). */
export const DEFAULT_EVAL_BATCH = 8;
