/**
 * Who scores the utility benchmarks: the built-in engine on this machine, or OpenAI-compatible servers serving the
 * model (`eval --url`). On servers, the benchmarks that generate (GSM8K, HumanEval) are asked on /v1/completions with
 * the prompts, stop sequences and token budgets the built-in engine is given, greedy (temperature 0); the
 * log-likelihood ones (ARC, MMLU, the held-out real-code loss of --code) are scored from the prompt's echoed
 * log-probabilities (/v1/completions with echo and logprobs: vLLM gives them, llama-server and Ollama do not:
 * http.ts NoPromptLogprobsError), their tokens made and cut with the model folder's tokenizer as the built-in engine
 * makes and cuts them (http.ts). The engine is part of every cached figure's and answer's key.
 */
import type { HttpBackend } from "../generate/http.js";
import type { WindowLosses } from "./code-loss.js";
import type { UtilityModel } from "./model.js";

/** What ModelEvaluation.utilityEngine (recipes/evaluate.ts) names the built-in engine. */
export const BUILTIN_ENGINE = "built-in";

/** The utility benchmarks by the names of their flags (--arc, --mmlu, --gsm8k, --humaneval, --code). */
export const UTILITY_BENCHMARKS = ["arc", "mmlu", "gsm8k", "humaneval", "code"] as const;
export type UtilityBenchmark = (typeof UTILITY_BENCHMARKS)[number];

/** The ones scored by log-likelihood: a server must give the prompt's log-probabilities for them. */
export const LOGLIKELIHOOD_BENCHMARKS: readonly UtilityBenchmark[] = ["arc", "mmlu", "code"];

/** Servers that score utility benchmarks in place of the built-in engine. */
export interface UtilityServer {
  /** the servers and the model's name there, e.g. `http://gpu1:8000 (model "hardened")`: text, JSON and errors */
  name: string;
  /**
   * what keys its figures and answers in place of the built-in engine's build: the model's name on the servers and
   * the extra body sent (not the URLs: the same model served elsewhere answers alike)
   */
  key: Readonly<Record<string, unknown>>;
  model: UtilityModel;
  windowLosses: WindowLosses;
  /**
   * the most model-input tokens of a log-likelihood pair (ARC, MMLU) on the servers, which cut a longer one from the
   * left to it (http.ts); part of those figures' keys, as the same pairs under another max_model_len are scored on
   * other tokens. null: pairs are not cut (sent as text)
   */
  loglikelihoodInputLength(): Promise<number | null>;
}

/** The servers of `backend` (a model's HttpBackend, given its tokenizer) as a UtilityServer. */
export function httpUtilityServer(
  backend: HttpBackend,
  urls: readonly string[],
  model: string,
): UtilityServer {
  return {
    name: `${urls.join(", ")} (model "${model}")`,
    key: { engine: "http", model, ...backend.keyFields },
    model: backend.asUtilityModel(),
    loglikelihoodInputLength: () => backend.loglikelihoodInputLength(),
    windowLosses: async (windows) =>
      (await backend.promptLogprobsAll(windows, (i) => `held-out real-code loss window ${i + 1}`)).map(
        (lps) => -lps.reduce((a, x) => a + x, 0) / lps.length,
      ),
  };
}
