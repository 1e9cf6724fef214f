import { Option, type Command } from "commander";
import { InputError } from "../../errors.js";
import { loadTokenizer } from "../../io/tokenizer.js";
import { BuiltinBackend } from "../../eval/generate/builtin.js";
import { getNumThreads, setNumThreads } from "../../tensor/index.js";
import { HttpBackend } from "../../eval/generate/http.js";
import type { GenerateOptions } from "../../eval/generate/backend.js";
import { output, runCommand } from "../common.js";
import { integer, list, number } from "../options.js";

export function registerGenerate(program: Command): void {
  program
    .command("generate")
    .description(
      "generate an answer with the built-in engine, llama.cpp (GGUF) or an OpenAI-compatible server",
    )
    .requiredOption("-p, --prompt <text>", "the user message (sent through the chat template)")
    .option("-m, --model <dir>", "model folder (builtin; for llamacpp its tokenizer's chat template is used)")
    .addOption(
      new Option("--backend <name>", "generation engine")
        .choices(["builtin", "llamacpp", "http"])
        .default("builtin"),
    )
    .option("--gguf <file>", "GGUF file (backend llamacpp)")
    .addOption(
      new Option(
        "--llama-gpu <kind>",
        "run llama.cpp on this GPU (default: CPU; see `goodvibe setup llamacpp`)",
      ).choices(["cuda", "vulkan"]),
    )
    .option(
      "--threads <n>",
      "compute threads (default: GOODVIBE_THREADS, else llamacpp the usable cores, builtin by model size)",
      integer(1),
    )
    .option("--url <list>", "server base URLs, comma-separated (backend http)", list)
    .option("--server-model <name>", "model name on the server (backend http)")
    .option("--max-new-tokens <n>", "tokens to generate", integer(1), 256)
    .option("--temperature <t>", "sampling temperature, 0 = greedy", number({ min: 0 }), 0)
    .option("--top-p <p>", "nucleus sampling mass", number({ above: 0, max: 1 }), 1)
    .option("--seed <n>", "sampling seed", integer(0), 0)
    .option("--raw", "send the prompt as is, without the chat template")
    .addHelpText(
      "after",
      `
Examples:
  goodvibe generate -m ./hardened -p "Write a C++ function that copies a user name into a buffer"
  goodvibe generate --backend llamacpp --gguf hardened.gguf -m ./hardened -p "..."
  goodvibe generate --backend http --url http://127.0.0.1:8000 --server-model hardened -p "..."`,
    )
    .action(async (opts) => {
      const g = program.opts();
      await runCommand(g, async () => {
        const gen: GenerateOptions = {
          maxNewTokens: opts.maxNewTokens,
          temperature: opts.temperature,
          topP: opts.topP,
          seed: opts.seed,
        };
        const messages = [{ role: "user" as const, content: opts.prompt }];
        let text: string;
        let threads: number | undefined;
        if (opts.backend === "builtin") {
          if (!opts.model) throw new InputError("--model is required with the builtin backend");
          const b = await BuiltinBackend.load(opts.model);
          // after loading: loadModel picks a thread count for the model's size unless GOODVIBE_THREADS is set
          if (opts.threads) setNumThreads(opts.threads);
          threads = getNumThreads();
          text = opts.raw
            ? await b.generateText(opts.prompt, gen)
            : (await b.generateChat([messages], gen))[0];
        } else if (opts.backend === "llamacpp") {
          if (!opts.gguf) throw new InputError("--gguf is required with the llamacpp backend");
          // node-llama-cpp takes ~0.7 s to import: only when this backend is used
          const { openLlamaCppBackend } = await import("../../eval/generate/llamacpp.js");
          if (!opts.raw && !opts.model)
            throw new InputError(
              "--model (the folder whose tokenizer and chat template to use) is required unless --raw",
            );
          // With the model folder, the prompt is rendered and encoded by our tokenizer: llama.cpp gets the
          // built-in engine's prompt tokens (BOS and special tokens included) and stops at the same end tokens.
          const tokenizer = opts.model ? await loadTokenizer(opts.model) : undefined;
          const b = await openLlamaCppBackend({
            modelPath: opts.gguf,
            gpu: opts.llamaGpu,
            tokenizer,
            threads: opts.threads,
          });
          threads = b.threads;
          try {
            text = opts.raw
              ? await b.generateText(opts.prompt, gen)
              : (await b.generateChat([messages], gen))[0]!;
          } finally {
            await b.close();
          }
        } else if (opts.backend === "http") {
          if (!opts.url || !opts.serverModel)
            throw new InputError("--url and --server-model are required with the http backend");
          const b = new HttpBackend({ baseUrls: opts.url, model: opts.serverModel });
          text = opts.raw ? await b.generateText(opts.prompt, gen) : await b.chat(messages, gen);
          await b.close();
        } else throw new InputError(`unknown backend ${opts.backend} (builtin | llamacpp | http)`);
        output(g, text, { backend: opts.backend, text, ...(threads !== undefined ? { threads } : {}) });
      });
    });
}
