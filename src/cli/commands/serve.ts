import * as net from "node:net";
import type { Command } from "commander";
import { InputError, InterruptedError } from "../../errors.js";
import { BuiltinBackend } from "../../eval/generate/builtin.js";
import { DEFAULT_MAX_QUEUE, isLoopbackHost, listenOn, serveBuiltin } from "../../eval/generate/serve.js";
import { interruptSignal, makeLogger, runCommand } from "../common.js";
import { collect, integer } from "../options.js";

export const API_KEY_ENV = "GOODVIBE_API_KEY";

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
    .option("--max-tokens <n>", "largest max_tokens a request may ask for", integer(1), 4096)
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
    .action(async (opts) => {
      const g = program.opts();
      const log = makeLogger(g);
      await runCommand(g, async () => {
        // everything a user can get wrong is checked before the model loads (the numbers by their parsers)
        const { port, maxBodyMb, maxQueue, maxTokens } = opts as Record<string, number>;
        const host = String(opts.host).trim();
        if (!host) throw new InputError("--host is empty");
        const apiKey: string | undefined = opts.apiKey ?? (process.env[API_KEY_ENV] || undefined);
        if (apiKey !== undefined && apiKey.trim() === "")
          throw new InputError("--api-key is empty (leave it out to serve without a key)");
        // the address must be one this machine can listen on (port 0 probes nothing but the host)
        const probe = net.createServer();
        await listenOn(probe, host, port);
        await new Promise<void>((resolve) => probe.close(() => resolve()));

        const stop = interruptSignal(log);
        const backend = await BuiltinBackend.load(opts.model);
        if (stop.aborted) throw new InterruptedError(`serve stopped (${String(stop.reason?.message)})`);
        const running = await serveBuiltin(backend, {
          host,
          port,
          modelName: opts.name,
          apiKey,
          allowedHosts: opts.allowedHost,
          maxBodyBytes: maxBodyMb << 20,
          maxQueue,
          maxTokensLimit: maxTokens,
          log: g.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
        });
        process.stderr.write(
          `serving ${opts.model} as "${opts.name}" at ${running.url}/v1 (Ctrl-C to stop)\n` +
            `  API key: ${apiKey ? "required" : "none"}; Host names accepted: ${running.allowedHosts.join(", ")}\n`,
        );
        if (!isLoopbackHost(host) && !apiKey)
          log.warn(
            `\n!!! serving on ${host} WITHOUT AN API KEY: anyone who can reach this port can use the model.\n` +
              `!!! Set ${API_KEY_ENV} (or --api-key) to require "Authorization: Bearer <key>".`,
          );
        await new Promise<void>((resolve) => stop.addEventListener("abort", () => resolve(), { once: true }));
        await running.stop();
        throw new InterruptedError(`serve stopped (${String(stop.reason?.message)})`);
      });
    });
}
