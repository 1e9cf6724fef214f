import type { Command } from "commander";
import { BuiltinBackend } from "../../eval/generate/builtin.js";
import { serveBuiltin } from "../../eval/generate/serve.js";
import { runCommand } from "../common.js";
import { integer } from "../options.js";

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("serve a model folder over an OpenAI-compatible API (/v1/completions, /v1/chat/completions)")
    .requiredOption("-m, --model <dir>", "model folder")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <n>", "port (0 = any free port)", integer(0, 65535), 8000)
    .option("--name <name>", "model name the API reports", "goodvibe")
    .addHelpText(
      "after",
      '\nExample:\n  goodvibe serve -m ./hardened --port 8000 &\n  goodvibe generate --backend http --url http://127.0.0.1:8000 --server-model goodvibe -p "..."',
    )
    .action(async (opts) => {
      const g = program.opts();
      await runCommand(g, async () => {
        const backend = await BuiltinBackend.load(opts.model);
        const { url } = await serveBuiltin(backend, {
          host: opts.host,
          port: opts.port,
          modelName: opts.name,
        });
        process.stderr.write(`serving ${opts.model} as "${opts.name}" at ${url}/v1 (Ctrl-C to stop)\n`);
        await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
      });
    });
}
