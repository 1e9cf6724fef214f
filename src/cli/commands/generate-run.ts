/**
 * What `goodvibe generate` does: loaded by generate.ts (which registers the command) only when it runs.
 */
import type { OptionValues } from "commander";
import { InputError } from "../../errors.js";
import { loadTokenizer } from "../../io/tokenizer.js";
import { BuiltinBackend } from "../../eval/generate/builtin.js";
import { getNumThreads, setNumThreads } from "../../tensor/index.js";
import { HttpBackend, retryWarning } from "../../eval/generate/http.js";
import { promptCountToleranceCaveat } from "../../eval/generate/prompt-fit.js";
import { applyGenerationConfigOption, generationConfigCaveats, serverDayCaveats } from "./server-day.js";
import {
  generationConfigProcessors,
  sampledTemperature,
  sampledWarpers,
} from "../../eval/generate/generation-config.js";
import { folderChatTemplate } from "../../io/chat-template.js";
import type { GenerateOptions } from "../../eval/generate/backend.js";
import { DEFAULT_ENABLE_THINKING } from "../../io/chat-template.js";
import { makeLogger, output, runCommand } from "../common.js";
import { number } from "../options.js";

export async function generateCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  await runCommand(g, async () => {
    if (opts.extraBody && opts.backend !== "http")
      throw new InputError(
        `--extra-body is sent to servers: it needs --backend http (not ${opts.backend}, which takes no request body)`,
      );
    if (opts.promptCountTolerance !== undefined && (opts.backend !== "http" || !opts.model))
      throw new InputError(
        "--prompt-count-tolerance is about a server's count of the prompt against the -m folder's tokenizer: it " +
          "needs --backend http and -m",
      );
    const applyGenerationConfig = applyGenerationConfigOption(opts);
    // the model folder's generation_config.json: what the local engines apply of it (a server applies its own), and
    // the temperature --sample takes from it whatever answers
    const folder = opts.model ? generationConfigProcessors(opts.model, applyGenerationConfig) : {};
    const processors = opts.backend !== "http" ? folder : {};
    // greedy unless asked to sample (--sample, or a --temperature above 0), whatever the folder's do_sample says; a
    // sampled call takes what it leaves out from the folder, as transformers' generate() does
    if (opts.sample && opts.temperature === 0)
      throw new InputError(
        "--sample with --temperature 0: sampling needs a temperature above 0 (leave --sample out for greedy)",
      );
    const temperature: number = opts.temperature ?? (opts.sample ? sampledTemperature(folder) : 0);
    // one thinking setting for every backend: rendered by our template, or sent to a server (chat_template_kwargs)
    const gen: GenerateOptions & { enableThinking: boolean } = {
      maxNewTokens: opts.maxNewTokens,
      temperature,
      // unset: the local engines take the folder's top_p when sampling (sampledTopP); a server its own default
      ...(opts.topP !== undefined ? { topP: opts.topP } : {}),
      seed: opts.seed,
      enableThinking: opts.enableThinking ?? DEFAULT_ENABLE_THINKING,
    };
    // the folder's top_p and top_k a sampled call takes, refused (naming the file) before the model loads, not once
    // generation starts: loading it loads libtorch, about a second
    if (temperature > 0) sampledWarpers(gen.topP, processors);
    const messages = [{ role: "user" as const, content: opts.prompt }];
    let text: string;
    let threads: number | undefined;
    // what the output says the answer may carry that this tool did not choose (the server's day)
    const caveats: string[] = [];
    if (opts.backend === "builtin") {
      if (!opts.model) throw new InputError("--model is required with the builtin backend");
      const b = await BuiltinBackend.load(opts.model, { processors });
      // after loading: loadModel picks a thread count for the model's size unless GOODVIBE_THREADS is set
      if (opts.threads) setNumThreads(opts.threads);
      threads = getNumThreads();
      text = opts.raw ? await b.generateText(opts.prompt, gen) : (await b.generateChat([messages], gen))[0];
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
        processors,
        threads: opts.threads,
        // the default context (2048) holds the prompt and the answer; a longer answer gets room for both (the
        // backend refuses what does not fit rather than let llama.cpp drop the prompt's beginning)
        ...(gen.maxNewTokens > 1024 ? { contextSize: gen.maxNewTokens + 1024 } : {}),
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
      const retries = retryWarning(makeLogger(g));
      // a chat request is rendered by the server's template: the model folder's tells whether it writes the server's
      // day whatever it is sent; without --model it cannot be known (a raw prompt uses no template)
      if (!opts.raw)
        caveats.push(
          ...serverDayCaveats(
            "generate --backend http",
            opts.model ? folderChatTemplate(opts.model) : null,
            opts.extraBody,
            makeLogger(g),
            opts.model ? undefined : "no --model names the folder whose template the server has",
          ),
        );
      const b = new HttpBackend({
        baseUrls: opts.url,
        model: opts.serverModel,
        timeoutMs: opts.requestTimeout * 1000,
        onRetry: retries,
        ...(opts.extraBody ? { extraBody: opts.extraBody } : {}),
        // with --model, the prompt's tokens are counted: one longer than the server's context is refused, and an
        // answer to one the server cut (Ollama past num_ctx) too (prompt-fit.ts)
        ...(opts.model ? { tokenizer: await loadTokenizer(opts.model) } : {}),
        ...(opts.promptCountTolerance !== undefined
          ? { promptCountTolerancePct: opts.promptCountTolerance }
          : {}),
      });
      const tolerance = promptCountToleranceCaveat(opts.promptCountTolerance);
      if (tolerance) {
        makeLogger(g).warn(tolerance);
        caveats.push(tolerance);
      }
      try {
        // a server that is not there, then a name the servers do not serve (with the names they do), are refused
        // as eval --url refuses them (not after the retries, not vLLM's 404)
        const gone = await b.unreachable();
        if (gone) throw new InputError(`--url: ${gone}`);
        const unserved = await b.modelProblem();
        if (unserved)
          throw new InputError(
            `--server-model: ${unserved}. Give one of the names it lists with --server-model`,
          );
        text = opts.raw ? await b.generateText(opts.prompt, gen) : await b.chat(messages, gen);
      } finally {
        retries.flush();
      }
      await b.close();
    } else throw new InputError(`unknown backend ${opts.backend} (builtin | llamacpp | http)`);
    // a generation_config.json asking for logits processors that transformers applies even greedy and our engines
    // do not: said, and kept in the output
    caveats.push(
      ...generationConfigCaveats(
        "generate",
        [{ who: "", dir: opts.model, server: opts.backend === "http", sampled: temperature > 0 }],
        applyGenerationConfig,
        makeLogger(g),
      ),
    );
    const local = opts.backend !== "http";
    // the top_p and top_k the local engine sampled with
    const warpers = local && temperature ? sampledWarpers(opts.topP, processors) : null;
    output(g, text, {
      backend: opts.backend,
      text,
      ...(threads !== undefined ? { threads } : {}),
      // what the local engine applied of generation_config.json (a server's own choice is not known here): when
      // sampling, the fields taken from it (null: the call gave its own, or the folder sets none)
      ...(local
        ? {
            generationConfig: {
              applied: applyGenerationConfig,
              repetitionPenalty: processors.repetitionPenalty ?? null,
              ...(temperature
                ? {
                    topK: processors.topK ?? null,
                    topP: opts.topP === undefined ? (processors.topP ?? null) : null,
                    temperature: opts.temperature === undefined ? (folder.temperature ?? null) : null,
                  }
                : {}),
            },
          }
        : {}),
      // the decoding the answer had: greedy, or the sampling settings used (a server's defaults: null)
      sampling: temperature
        ? {
            temperature,
            topP: warpers ? warpers.topP : (opts.topP ?? null),
            topK: warpers ? warpers.topK || null : null,
            seed: opts.seed,
          }
        : "greedy",
      ...(caveats.length ? { caveats } : {}),
    });
  });
}
