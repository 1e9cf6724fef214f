/**
 * The server's default limits (serve.ts), apart from the server so that `goodvibe serve --help` shows them without
 * loading the built-in engine.
 */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;
export const DEFAULT_MAX_QUEUE = 16;
/** The environment variable `goodvibe serve` reads its API key from (a flag would show in ps). */
export const API_KEY_ENV = "GOODVIBE_API_KEY";
