/**
 * The OpenAI-compatible client's (http.ts) defaults, apart from it so that `eval --help` and `generate --help` show
 * them without loading the client.
 */
/** How long one request may take before it is abandoned and retried: long enough for 512 new tokens on a busy server. */
export const DEFAULT_REQUEST_TIMEOUT_S = 300;
/** Retries after a request's first attempt (429, 5xx, network errors, timeouts). */
export const DEFAULT_MAX_RETRIES = 4;
/**
 * Requests in flight at once over all servers: eval --concurrency's default and the library's (HttpBackend). A
 * server batches what it can of them and queues the rest.
 */
export const DEFAULT_CONCURRENCY = 16;
/**
 * How many fewer prompt tokens than the model's tokenizer counts a server may report (usage.prompt_tokens) before the
 * prompt is taken as cut, in percent of the prompt's tokens, besides 2 per message (prompt-fit.ts
 * promptTokenTolerance): the Hugging Face tokenizer and a server's (a GGUF's, llama.cpp's pre-tokenizer regexes)
 * split a few words differently, rarely by more than this, while a prompt cut to a context is short by far more.
 * eval --prompt-count-tolerance, generate's, and HttpBackend's promptCountTolerancePct raise it for a server whose
 * tokenizer differs by more.
 */
export const DEFAULT_PROMPT_COUNT_TOLERANCE_PCT = 1;
