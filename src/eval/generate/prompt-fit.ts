/**
 * Whether a prompt reaches a server's model whole. vLLM refuses a prompt longer than its context (400), as does a
 * recent llama-server (exceed_context_size_error); Ollama does not: its runner keeps the first num_keep tokens and the
 * last num_ctx - num_keep of a longer prompt, logs "truncating input prompt" and answers (ollama/ollama
 * runner/ollamarunner/runner.go NewSequence), as an older llama-server does with context shift on (tools/server
 * "input truncated", slot.truncated). A prompt cut that way would be answered, and scored, as if whole. So:
 *
 * - before sending, where a server's context is known (promptContextOf), a prompt that cannot fit is refused;
 * - after each answer, the server's own count of the prompt (usage.prompt_tokens: Ollama's prompt_eval_count, the
 *   runner's inputs after the cut; llama-server's n_prompt_tokens after its cut) is compared with ours.
 *
 * Our count is a lower bound: the tokens of the messages' own text (or the raw prompt's, or the ids'), without what
 * the server's chat template adds around them (role headers, a default system turn, BOS), which we do not render as
 * the server does (Ollama's Go templates are not the model's Jinja one). Both checks allow for that gap explicitly.
 */
import { DEFAULT_PROMPT_COUNT_TOLERANCE_PCT } from "./http-config.js";

/** A prompt given as token ids (generateTokens), not text or chat messages; an empty one counts as ids. */
export function isTokenIds(prompt: string | readonly unknown[]): prompt is readonly number[] {
  return typeof prompt !== "string" && (prompt.length === 0 || typeof prompt[0] === "number");
}

/**
 * Tokens a server's chat template adds to the messages' own at least as often as not: role headers and the generation
 * prompt (~5-10), a default system turn (Qwen2.5's "You are Qwen, created by Alibaba Cloud..." ~20; Llama 3.1's
 * "Cutting Knowledge Date ... Today Date" ~25). A chat prompt whose own tokens plus this margin exceed the server's
 * context is refused before it is sent: one that would fit by fewer tokens than its template adds is refused too (the
 * error says so), never one cut and scored.
 */
export const CHAT_TEMPLATE_MARGIN = 48;
/** The same for a raw prompt (/v1/completions): the BOS token a server may add. */
export const RAW_PROMPT_MARGIN = 1;

/**
 * The tokens allowed for what a server adds to a prompt's own before its model reads it, one rule for the check before
 * sending and the context the advice after an answer asks for: chat messages get their template's
 * (CHAT_TEMPLATE_MARGIN), a raw text prompt a BOS (RAW_PROMPT_MARGIN), token ids none: they reach the model as they
 * are (vLLM and llama-server add no special token to a prompt given as ids), so ids filling the context exactly fit.
 */
export function promptMargin(prompt: string | readonly unknown[]): number {
  if (typeof prompt === "string") return RAW_PROMPT_MARGIN;
  return isTokenIds(prompt) ? 0 : CHAT_TEMPLATE_MARGIN;
}

/**
 * How many fewer tokens than our count (`own`) the server may report before the prompt is taken as cut: our tokenizer
 * and the server's (a GGUF's, llama.cpp's pre-tokenizer regexes) may split a few words differently, and each
 * message's text is encoded alone here but inside the template there (a merge across its edge): 2 per message plus
 * `pct` percent of the prompt (DEFAULT_PROMPT_COUNT_TOLERANCE_PCT, 1, unless the user raises it). Token ids are not
 * tokenized there: none fewer. A server that cut the prompt to its context reports at most that context, so a cut of
 * fewer tokens than this tolerance goes unnoticed here; the check before sending (where the context is known) catches
 * those.
 */
export function promptTokenTolerance(
  prompt: string | readonly unknown[],
  own: { tokens: number; messages: number },
  pct: number = DEFAULT_PROMPT_COUNT_TOLERANCE_PCT,
): number {
  if (isTokenIds(prompt)) return 0;
  return 2 * Math.max(1, own.messages) + Math.ceil((own.tokens * pct) / 100);
}

/**
 * What a raised tolerance (eval --prompt-count-tolerance, generate's) leaves unchecked, for the run's caveats; null at
 * the default or below, which leave nothing more unchecked than the default does.
 */
export function promptCountToleranceCaveat(pct: number | undefined): string | null {
  if (pct === undefined || pct <= DEFAULT_PROMPT_COUNT_TOLERANCE_PCT) return null;
  return (
    `--prompt-count-tolerance ${pct}: answers were kept where a server counted up to ${pct}% (and 2 per message) ` +
    `fewer prompt tokens than the model's tokenizer (default ${DEFAULT_PROMPT_COUNT_TOLERANCE_PCT}%): a prompt a ` +
    "server cut by fewer tokens than that, past a context it does not state (Ollama's default), may have been " +
    "answered unnoticed"
  );
}

/** What a server told of its context per request, and what kind of server it is (for the advice). */
export interface PromptContext {
  url: string;
  len: number;
  /** where it was read: "max_model_len", "meta.n_ctx", "/api/ps context_length", "/api/show parameters num_ctx", … */
  field: string;
  kind: ServerKind;
}

export type ServerKind = "vllm" | "llama-server" | "ollama" | "other";

/** A context size to suggest: `need` rounded up to a multiple of 1024. */
function roundUp(need: number): number {
  return Math.ceil(need / 1024) * 1024;
}

/** How to give a server of `kind` a context of at least `need` tokens per request. */
export function contextFix(kind: ServerKind, need: number, model: string): string {
  const n = roundUp(need);
  switch (kind) {
    case "ollama":
      // its OpenAI-compatible endpoints take no options.num_ctx: the model's context is set where it is loaded
      return (
        `restart Ollama with OLLAMA_CONTEXT_LENGTH=${n} (ollama serve), or make a model with a larger context: a ` +
        `Modelfile "FROM ${model}" and "PARAMETER num_ctx ${n}" (ollama create ${model}-${n / 1024}k -f Modelfile), ` +
        "and evaluate that one"
      );
    case "llama-server":
      return (
        `restart llama-server with a larger --ctx-size: each of its --parallel slots gets ctx-size / parallel ` +
        `tokens, and a slot needs ${n}`
      );
    case "vllm":
      return `restart vLLM with --max-model-len ${n} (at most the model's max_position_embeddings)`;
    default:
      return `give the server a context of at least ${n} tokens per request`;
  }
}

/** A prompt's opening, to name it in an error: its last user message's (the question asked), on one line. */
export function promptOpening(
  prompt: string | readonly { role: string; content: string }[] | readonly number[],
): string {
  if (typeof prompt !== "string" && isTokenIds(prompt)) return `the ${prompt.length} token ids`;
  let text: string;
  if (typeof prompt === "string") text = prompt;
  else {
    const messages = prompt as readonly { role: string; content: string }[];
    text = [...messages].reverse().find((m) => m.role === "user")?.content ?? messages[0]?.content ?? "";
  }
  const line = text.replace(/\s+/g, " ").trim();
  return `the prompt "${line.length > 80 ? `${line.slice(0, 80)}…` : line}"`;
}
