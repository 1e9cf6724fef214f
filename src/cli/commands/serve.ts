import type { Command } from "commander";
import { API_KEY_ENV, DEFAULT_MAX_QUEUE, DEFAULT_PREFILL_CHUNK } from "../../eval/generate/serve-config.js";
import { collect, integer } from "../options.js";

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("serve a model folder over an OpenAI-compatible API (/v1/completions, /v1/chat/completions)")
    .requiredOption("-m, --model <dir>", "model folder")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <n>", "port (0 = any free port)", integer(0, 65535), 8000)
    .option("--name <name>", "model name the API reports", "goodvibe")
    .option(
      "--api-key <key>",
      `require "Authorization: Bearer <key>" (default: $${API_KEY_ENV}; prefer the variable, a flag shows in ps)`,
    )
    .option(
      "--allowed-host <name>",
      'a Host header name to accept besides the loopback names and --host (repeatable; "*" accepts any)',
      collect,
      [],
    )
    .option("--max-body-mb <n>", "largest request body in MiB (413 beyond)", integer(1, 1024), 1)
    .option(
      "--max-queue <n>",
      "requests that may wait while one generates (429 beyond)",
      integer(0, 100_000),
      DEFAULT_MAX_QUEUE,
    )
    .option(
      "--max-tokens <n>",
      "largest max_tokens a request may ask for; a request without one gets, as on vLLM, the folder's generation_config.json max_new_tokens, else the rest of the context, up to this (chat), or 16 tokens (/v1/completions)",
      integer(1),
      4096,
    )
    .option(
      "--prefill-chunk <n>",
      "prompt tokens per forward pass while a prompt prefills, so that other clients are answered meanwhile (0: the whole prompt at once)",
      integer(0),
      DEFAULT_PREFILL_CHUNK,
    )
    .option(
      "--no-generation-config",
      "don't take the model folder's generation_config.json (vLLM's --generation-config vllm): a request without temperature, top_p or top_k then gets OpenAI's defaults (temperature 1, no top-p, no top-k), and no repetition_penalty is applied; default: taken, as vLLM's --generation-config auto",
    )
    .addHelpText(
      "after",
      `
Security: only this machine can connect by default (127.0.0.1). Before --host 0.0.0.0, set ${API_KEY_ENV}; requests
must name an allowed host (DNS rebinding) and send JSON (CSRF). SIGINT/SIGTERM answer in-flight requests 503 and
exit 130.

Example:
  goodvibe serve -m ./hardened --port 8000 &
  goodvibe generate --backend http --url http://127.0.0.1:8000 --server-model goodvibe -p "..."`,
    )
    .action(async (opts) => (await import("./serve-run.js")).serveCommand(program.opts(), opts));
}
