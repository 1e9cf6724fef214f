/**
 * What `goodvibe serve` does: loaded by serve.ts (which registers the command) only when it runs.
 */
import type { OptionValues } from "commander";
import * as net from "node:net";
import { InputError, InterruptedError } from "../../errors.js";
import { BuiltinBackend } from "../../eval/generate/builtin.js";
import { isLoopbackHost, listenOn, serveBuiltin } from "../../eval/generate/serve.js";
import { API_KEY_ENV } from "../../eval/generate/serve-config.js";
import { interruptSignal, makeLogger, runCommand } from "../common.js";
import {
  servedSamplingDefaults,
  type ServedSamplingDefaults,
} from "../../eval/generate/generation-config.js";
import { applyGenerationConfigOption } from "./server-day.js";

/** "temperature 0.7, top_p 0.8, top_k 20" (none: "no top-p", "no top-k"). */
function describeServedDefaults(d: ServedSamplingDefaults): string {
  return [
    `temperature ${d.temperature}`,
    d.topP !== undefined ? `top_p ${d.topP}` : "no top-p",
    d.topK !== undefined ? `top_k ${d.topK}` : "no top-k",
    ...(d.maxTokens !== undefined ? [`max_tokens ${d.maxTokens}`] : []),
  ].join(", ");
}

export async function serveCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    // everything a user can get wrong is checked before the model loads (the numbers by their parsers)
    const { port, maxBodyMb, maxQueue, maxTokens, prefillChunk } = opts as Record<string, number>;
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
    // a request's defaults are the folder's generation_config.json, as vLLM's (checked before the model loads)
    const applyGenerationConfig = applyGenerationConfigOption(opts);
    const samplingDefaults = servedSamplingDefaults(opts.model, applyGenerationConfig);
    const backend = await BuiltinBackend.load(opts.model, { applyGenerationConfig });
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
      samplingDefaults,
      prefillChunk,
      log: g.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
    });
    process.stderr.write(
      `serving ${opts.model} as "${opts.name}" at ${running.url}/v1 (Ctrl-C to stop)\n` +
        `  API key: ${apiKey ? "required" : "none"}; Host names accepted: ${running.allowedHosts.join(", ")}\n` +
        `  a request without them gets ${describeServedDefaults(samplingDefaults)} (${applyGenerationConfig ? "the folder's generation_config.json, else OpenAI's, as vLLM" : "OpenAI's: --no-generation-config"}); send temperature 0 for greedy answers\n`,
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
}
