import type { Command } from "commander";
import { DEFAULT_PREFERENCE_PAIRS } from "../../recipes/config.js";
import { DEFAULT_EVAL_BATCH, DEFAULT_MAX_NEW_TOKENS } from "../../eval/config.js";
import { DEFAULT_CACHE_DIR, integer, jsonObject, list, number } from "../options.js";
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_PROMPT_COUNT_TOLERANCE_PCT,
  DEFAULT_REQUEST_TIMEOUT_S,
} from "../../eval/generate/http-config.js";

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description(
      "security (secure preference, safe rate by rules and an LLM judge) and utility of a model folder",
    )
    .requiredOption("-m, --model <dir>", "model folder to evaluate")
    .requiredOption("-d, --data <file>", "held-out pairs (JSONL) for preference and vibe-coding prompts")
    .option("--languages <list>", "comma-separated languages to keep (default: all)", list)
    .option("--judge <dir>", "LLM judge model folder (e.g. from `goodvibe judge train`)")
    .option(
      "--base <dir>",
      "base model folder: evaluated the same way (rates, held-out loss, the same benchmarks), with McNemar's test and each utility difference against it",
    )
    .option("--prompts <n>", "held-out prompts answered (0 = all, the paper's protocol)", integer(0), 0)
    .option(
      "--preference-pairs <n>",
      "held-out pairs scored for secure preference, round-robin over languages (0 = all)",
      integer(0),
      DEFAULT_PREFERENCE_PAIRS,
    )
    .option(
      "--prompt-filter <f>",
      "none | security-words (opt-in: leave out prompts that mention security; not the paper's)",
      "none",
    )
    .option("--max-new-tokens <n>", "tokens per answer", integer(1), DEFAULT_MAX_NEW_TOKENS)
    .option(
      "--enable-thinking",
      "render the prompts answered with Qwen3's thinking switch on (a server is sent chat_template_kwargs {enable_thinking}); default off, every prompt's, as the paper does not say which mode it used; a template without the switch ignores it",
    )
    .option(
      "--code-blocks <which>",
      "of an answer's several code blocks for the prompt's language, what both judges read: longest (default) | all (joined); the paper does not say",
      "longest",
    )
    .option("--batch-size <n>", "generation / scoring batch", integer(1), DEFAULT_EVAL_BATCH)
    .option("--arc <file>", "ARC-Challenge JSONL/Parquet (allenai/ai2_arc schema): figure arc_challenge")
    .option(
      "--arc-easy <file>",
      "ARC-Easy JSONL/Parquet (allenai/ai2_arc schema), scored as --arc: figure arc_easy",
    )
    .option("--gsm8k <file>", "GSM8K test JSONL; --gsm8k-train for few-shot examples")
    .option("--gsm8k-train <file>", "GSM8K train JSONL (few-shot source)")
    .option("--mmlu <file>", "MMLU test (cais/mmlu schema); --mmlu-dev for 5-shot examples")
    .option("--mmlu-dev <file>", "MMLU dev split")
    .option("--humaneval <file>", "HumanEval (.jsonl or .jsonl.gz): pass@1, completions run in the sandbox")
    .option(
      "--code <file>",
      "held-out real code the model never trained on, JSONL {code, lang?, id?}: its loss (NLL per token, token-weighted over the files; paired per file with --base)",
    )
    .option(
      "--limit <n>",
      "utility items per benchmark, a seeded subsample by --seed (default: all); --code's documents too, its interval then over the documents drawn",
      integer(1),
    )
    .option(
      "--cache <dir>",
      "cache folder: answers, answer losses and finished utility benchmarks, per model (resumable; a base's benchmarks are reused across models)",
      DEFAULT_CACHE_DIR,
    )
    .option("--seed <n>", "seed", integer(0), 0)
    .option(
      "--url <list>",
      "OpenAI-compatible servers serving --model (vLLM, llama-server, Ollama, goodvibe serve), comma-separated, round-robin: they answer the vibe-coding prompts and score the utility benchmarks given (GSM8K and HumanEval generated on /v1/completions with the local prompts, stops and budgets, greedy; ARC, MMLU and --code from the prompt's echoed log-probabilities, which vLLM gives and llama-server, Ollama and goodvibe serve do not: the run stops before answering, naming the server; --utility-local scores such benchmarks here); secure preference and the held-out code loss stay local",
      list,
    )
    .option("--server-model <name>", "the model's name on those servers (with --url)")
    .option(
      "--utility-local <list>",
      "utility benchmarks scored on the built-in engine here although --url is given, comma-separated: arc (--arc and --arc-easy), mmlu, gsm8k, humaneval, code, or all (default: none, the servers score every one given); with --base, for both sides",
      list,
    )
    .option(
      "--base-server-model <name>",
      "the --base model's name on the --url servers: its prompts and utility benchmarks go there too, like the model's (with --url, a --base whose benchmarks the servers would score needs it, or --utility-local: one engine for both sides)",
    )
    .option(
      "--concurrency <n>",
      "requests in flight over all servers (with --url)",
      integer(1),
      DEFAULT_CONCURRENCY,
    )
    .option(
      "--request-timeout <s>",
      "seconds one request to a server may take before it is retried (with --url)",
      number({ above: 0 }),
      DEFAULT_REQUEST_TIMEOUT_S,
    )
    .option(
      "--max-model-len <n>",
      "the servers' context per request in tokens, as vLLM's --max-model-len (with --url): log-likelihood pairs (ARC, MMLU) longer than it less the token generated are cut from the left to it, as the built-in engine cuts them to the model's; default: the least the servers' GET /v1/models report (vLLM's max_model_len, a LoRA's from its base model; llama-server's meta.n_ctx; goodvibe serve); needed where a server echoes prompt log-probabilities but does not report it; refused when more than a server reports. Part of the key of ARC's and MMLU's cached figures",
      integer(2),
    )
    .option(
      "--prompt-count-tolerance <percent>",
      `with --url: how many fewer prompt tokens than the -m tokenizer counts a server may report (usage.prompt_tokens) before its answer is refused as one to a prompt it cut (Ollama past num_ctx), in percent of the prompt's tokens, besides 2 per message: more for a server whose tokenizer counts fewer (a GGUF's); a raised one is kept in the output as a caveat (default: ${DEFAULT_PROMPT_COUNT_TOLERANCE_PCT})`,
      number({ min: 0, max: 100 }),
    )
    .option(
      "--no-generation-config",
      "don't apply the model folder's generation_config.json as transformers' generate() does (its repetition_penalty, which applies to greedy answers too; eval's answers are greedy): the built-in engine then takes the raw logits; default: applied (recorded in the output)",
    )
    .option(
      "--extra-body <json>",
      "a JSON object merged into every request body sent to the servers (with --url), e.g. '{\"reasoning_effort\": \"none\"}' for Ollama; the fields we set (model, messages, max_tokens, sampling) stay ours; its chat_template_kwargs goes with chat requests only (eval's answers are all chat requests), its keys winning over ours, a null there leaving that key out; part of the cached answers' keys",
      jsonObject,
    )
    .addHelpText(
      "after",
      '\nExamples:\n  goodvibe eval -m ./hardened -d dev.jsonl --judge ./judge --base ./base-model\n  goodvibe eval -m ./hardened -d dev.jsonl --arc arc_challenge_test.jsonl --limit 200 --json\n  goodvibe eval -m ./hardened -d dev.jsonl --url http://gpu1:8000,http://gpu2:8000 --server-model hardened\n  goodvibe eval -m ./hardened -d dev.jsonl --arc arc.jsonl --gsm8k gsm8k.jsonl --base ./base-model --url http://gpu1:8000 --server-model hardened --base-server-model base\n  goodvibe eval -m ./hardened -d dev.jsonl --url http://127.0.0.1:11434 --server-model hardened --extra-body \'{"reasoning_effort": "none"}\'',
    )
    .action(async (opts) => (await import("./eval-run.js")).evalCommand(program.opts(), opts));
}
