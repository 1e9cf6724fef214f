/**
 * The server's default limits (serve.ts), apart from the server so that `goodvibe serve --help` shows them without
 * loading the built-in engine.
 */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;
export const DEFAULT_MAX_QUEUE = 16;
