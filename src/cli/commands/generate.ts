import {
  DEFAULT_PROMPT_COUNT_TOLERANCE_PCT,
  DEFAULT_REQUEST_TIMEOUT_S,
} from "../../eval/generate/http-config.js";
import { DEFAULT_MAX_NEW_TOKENS } from "../../eval/config.js";
import { Option, type Command } from "commander";
import { integer, jsonObject, list, number } from "../options.js";

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
    .option(
      "--request-timeout <s>",
      "seconds one request to a server may take before it is retried (with --url)",
      number({ above: 0 }),
      DEFAULT_REQUEST_TIMEOUT_S,
    )
    .option(
      "--extra-body <json>",
      'a JSON object merged into every request body sent to the servers (backend http), e.g. \'{"reasoning_effort": "none"}\' for Ollama; the fields we set (model, messages, max_tokens, sampling) stay ours; its chat_template_kwargs goes with chat requests only (not with --raw: a completion has no template), its keys winning over ours, a null there leaving that key out',
      jsonObject,
    )
    .option(
      "--prompt-count-tolerance <percent>",
      `backend http with -m: how many fewer prompt tokens than the folder's tokenizer counts a server may report (usage.prompt_tokens) before its answer is refused as one to a prompt it cut (Ollama past num_ctx), in percent of the prompt's tokens, besides 2 per message: more for a server whose tokenizer counts fewer (a GGUF's); a raised one is kept in the output as a caveat (default: ${DEFAULT_PROMPT_COUNT_TOLERANCE_PCT})`,
      number({ min: 0, max: 100 }),
    )
    .option("--max-new-tokens <n>", "tokens to generate", integer(1), DEFAULT_MAX_NEW_TOKENS)
    .option(
      "--temperature <t>",
      "sampling temperature, 0 = greedy (default: greedy; with --sample, the folder's generation_config.json temperature, else 1)",
      number({ min: 0 }),
    )
    .option(
      "--sample",
      "sample, as transformers' do_sample: with the folder's generation_config.json temperature, top_p and top_k where --temperature and --top-p give none (default: greedy, whatever its do_sample says)",
    )
    .option(
      "--top-p <p>",
      "nucleus sampling mass (default when sampling: the folder's generation_config.json top_p, else 1)",
      number({ above: 0, max: 1 }),
    )
    .option("--seed <n>", "sampling seed", integer(0), 0)
    .option(
      "--no-generation-config",
      "don't apply the model folder's generation_config.json as transformers' generate() does (its repetition_penalty, greedy or sampled; when sampling its top_k, else 50, and its top_p and temperature where not given): the built-in engine and llama.cpp then take the raw logits; default: applied (recorded in the output)",
    )
    .option("--raw", "send the prompt as is, without the chat template")
    .option(
      "--enable-thinking",
      "Qwen3's thinking switch on (every backend: our template, or chat_template_kwargs to a server); default off",
    )
    .addHelpText(
      "after",
      `
Examples:
  goodvibe generate -m ./hardened -p "Write a C++ function that copies a user name into a buffer"
  goodvibe generate --backend llamacpp --gguf hardened.gguf -m ./hardened -p "..."
  goodvibe generate --backend http --url http://127.0.0.1:8000 --server-model hardened -p "..."`,
    )
    .action(async (opts) => (await import("./generate-run.js")).generateCommand(program.opts(), opts));
}
