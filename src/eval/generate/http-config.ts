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
