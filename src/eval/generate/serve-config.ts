/**
 * The server's default limits (serve.ts), apart from the server so that `goodvibe serve --help` shows them without
 * loading the built-in engine.
 */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;
export const DEFAULT_MAX_QUEUE = 16;
/** The environment variable `goodvibe serve` reads its API key from (a flag would show in ps). */
export const API_KEY_ENV = "GOODVIBE_API_KEY";
/**
 * Prompt tokens the server runs per forward pass (models/generate.ts prefillChunk): a longer prompt is prefilled a
 * chunk at a time, with a turn of the event loop after each, so that other clients (health checks, streams, the
 * queue's 429s) are answered while it prefills, as vLLM's chunked prefill does. 0: the whole prompt at once.
 */
export const DEFAULT_PREFILL_CHUNK = 512;
