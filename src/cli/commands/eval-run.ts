/**
 * What `goodvibe eval` does: loaded by eval.ts (which registers the command) only when it runs.
 */
import type { OptionValues } from "commander";
import * as path from "node:path";
import { readPairs } from "../../data/pairs.js";
import { claimWorkFolder } from "../../io/atomic.js";
import { LlmJudge } from "../../eval/judge/llm.js";
import {
  checkUtilityFiles,
  describeProtocol,
  evaluateModel,
  isEvalCacheEntry,
  securityCell,
  utilityVsBase,
} from "../../recipes/evaluate.js";
import { stagesTrainedOn } from "../../recipes/harden.js";
import { PROMPT_FILTERS, type PromptFilter } from "../../data/prompts.js";
import { CODE_BLOCK_CHOICES, type CodeBlockChoice } from "../../data/code.js";
import { GoodVibeError, InputError } from "../../errors.js";
import {
  HttpBackend,
  NoPromptLogprobsError,
  type ContextPerRequest,
  retryWarning,
  templateKwargSent,
} from "../../eval/generate/http.js";
import {
  LOGLIKELIHOOD_BENCHMARKS,
  UTILITY_BENCHMARKS,
  BUILTIN_ENGINE,
  httpUtilityServer,
  type UtilityBenchmark,
  type UtilityServer,
} from "../../eval/utility/engine.js";
import { loadTokenizer, requireTokenizerFile } from "../../io/tokenizer.js";
import { loadModelConfig } from "../../io/config.js";
import { checkWeightHeaders } from "../../io/model-folder.js";
import { promptCountToleranceCaveat } from "../../eval/generate/prompt-fit.js";
import { applyGenerationConfigOption, generationConfigCaveats, serverDayCaveats } from "./server-day.js";
import { serverChatBackend } from "../../eval/generate/backend.js";
import { folderDefaultSampling, generationConfigProcessors } from "../../eval/generate/generation-config.js";
import {
  DEFAULT_ENABLE_THINKING,
  DEFAULT_TEMPLATE_DATE,
  folderChatTemplate,
  thinkingSwitchReaches,
  templateDateString,
  templateDayIso,
} from "../../io/chat-template.js";
import { templateDayReaches } from "../../io/tokenizer-json.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";
import { evalSummaryLines } from "./eval-summary.js";
import { GSM8K_ZERO_SHOT_WARNING } from "../../eval/utility/gsm8k.js";

/** How a chat_template_kwargs key reached the servers, for the lines that say what the answers were asked with. */
function sentToServers(extraBody: Record<string, unknown> | undefined, key: string): string {
  const k = templateKwargSent(extraBody, key);
  if (k.sent === "dropped")
    return `; not sent to the servers (--extra-body leaves chat_template_kwargs.${key} out)`;
  if (k.sent === "theirs")
    return `; the servers were sent --extra-body's chat_template_kwargs.${key} ${JSON.stringify(k.value)} instead`;
  return `, sent to the servers as chat_template_kwargs.${key}`;
}

/** The utility benchmarks given that the --url servers score: all given but those of --utility-local. */
function serverBenchmarks(opts: OptionValues): UtilityBenchmark[] {
  if (!opts.url) return [];
  const local: string[] = opts.utilityLocal ?? [];
  return UTILITY_BENCHMARKS.filter(
    (b) =>
      (opts[b] !== undefined || (b === "arc" && opts.arcEasy !== undefined)) &&
      !local.includes("all") &&
      !local.includes(b),
  );
}

/**
 * The flags that say who scores what: --utility-local's names, the servers' flags with --url, and the like-for-like
 * rule of a utility comparison: with --base, a model whose benchmarks the servers score is compared with a base
 * scored there too (--base-server-model), never with one scored on the built-in engine (another engine: other
 * numerics, other cuts of a long pair).
 */
function checkEngineFlags(opts: OptionValues): void {
  const local: string[] = opts.utilityLocal ?? [];
  for (const b of local)
    if (b !== "all" && !(UTILITY_BENCHMARKS as readonly string[]).includes(b))
      throw new InputError(
        `--utility-local ${b}: use ${UTILITY_BENCHMARKS.join(", ")} or all (comma-separated)`,
      );
  if (!opts.url) {
    for (const [flag, v] of [
      ["--utility-local", opts.utilityLocal],
      ["--base-server-model", opts.baseServerModel],
      ["--max-model-len", opts.maxModelLen],
      ["--prompt-count-tolerance", opts.promptCountTolerance],
    ] as const)
      if (v !== undefined)
        throw new InputError(
          `${flag} is about the --url servers: it needs --url (without it all runs locally)`,
        );
    return;
  }
  if (opts.baseServerModel !== undefined && !opts.base)
    throw new InputError(
      "--base-server-model is the --base model's name on the --url servers: it needs --base",
    );
  const remote = serverBenchmarks(opts);
  if (opts.base && !opts.baseServerModel && remote.length > 0)
    throw new InputError(
      `--base ${opts.base} would be scored on the built-in engine and the model's ${remote.join(", ")} on the --url ` +
        "servers: a utility comparison across two engines is not like for like. Serve the base on the same servers " +
        "and give its name there (--base-server-model NAME), or score these benchmarks locally for both " +
        `(--utility-local ${remote.join(",")})`,
    );
}

/**
 * One echo request before the answers are generated, where the servers score a log-likelihood benchmark: a server
 * without the prompt's log-probabilities (llama-server, Ollama) stops the run now, naming it, the benchmarks and what
 * to do, instead of after hours of answers.
 */
async function checkPromptLogprobs(
  backend: HttpBackend,
  server: UtilityServer,
  tok: { encode(text: string, opts?: { addSpecialTokens?: boolean }): number[] },
  benchmarks: readonly UtilityBenchmark[],
  signal: AbortSignal,
  log: { info(msg: string): void },
): Promise<void> {
  const ll = benchmarks.filter((b) => LOGLIKELIHOOD_BENCHMARKS.includes(b));
  if (ll.length === 0) return;
  // only ARC's and MMLU's pairs are cut to the servers' context: --code's windows are sent whole, and need none
  const pairs = ll.some((b) => b === "arc" || b === "mmlu");
  const probe = { context: "def f():\n", continuation: "    return 1", item: "the probe before the answers" };
  try {
    // the echo first (no window needed: the server's refusal is named, not its missing max_model_len), then, for
    // ARC's and MMLU's pairs, a log-likelihood as they ask it (the servers' window read)
    await backend.promptLogprobs(
      tok.encode(probe.context + probe.continuation, { addSpecialTokens: true }),
      probe.item,
    );
    if (pairs) await backend.loglikelihood([probe]);
  } catch (e) {
    if (signal.aborted || !(e instanceof NoPromptLogprobsError)) throw e;
    throw new GoodVibeError(
      `${ll.map((b) => `--${b}`).join(", ")} ${ll.length === 1 ? "is" : "are"} scored by log-likelihood, which ` +
        `${server.name} ${e.remedy ? "refuses as it is served" : "cannot give"}: ${e.message}. ` +
        `${e.remedy ? "Or" : "Serve the model with vLLM for them, or"} score ` +
        `${ll.length === 1 ? "it" : "them"} on the built-in engine here with --utility-local ${ll.join(",")}`,
      3,
    );
  }
  if (pairs) log.info(`${server.name}: ${contextLine(await backend.contextPerRequest())}`);
}

/** What the servers' context per request is and whence it comes: said once, before the answers. */
export function contextLine(ctx: ContextPerRequest): string {
  const reports = ctx.reported.map((r) => `${r.url} ${r.field} ${r.len}`).join(", ");
  const head = `log-likelihood pairs cut to a context per request of ${ctx.len} tokens`;
  if (ctx.from === "servers")
    return `${head}, ${ctx.reported.length > 1 ? "the least the servers report" : "what the server reports"} on GET /v1/models (${reports})`;
  return (
    `${head}, --max-model-len's` +
    (reports ? `; within what ${reports} report${ctx.reported.length === 1 ? "s" : ""}` : "") +
    (ctx.unreported.length
      ? `; not checked against ${ctx.unreported.join(", ")}, whose GET /v1/models reports none`
      : "") +
    (ctx.unanswered.length
      ? `; not checked against ${ctx.unanswered.join(", ")}, which gave no answer to GET /v1/models`
      : "")
  );
}

/**
 * The benchmarks that generate are asked with raw few-shot prompts (/v1/completions), which must reach the model as
 * they are: refused before any answer on a server that wraps them in a chat template (Ollama, but for a model
 * without one), naming it, the benchmarks and what to do.
 */
async function checkRawPrompts(backend: HttpBackend, benchmarks: readonly UtilityBenchmark[]): Promise<void> {
  const gen = benchmarks.filter((b) => !LOGLIKELIHOOD_BENCHMARKS.includes(b));
  if (gen.length === 0) return;
  const problem = await backend.rawPromptProblem();
  if (problem)
    throw new GoodVibeError(
      `${gen.map((b) => `--${b}`).join(", ")} ${gen.length === 1 ? "is" : "are"} asked with raw prompts, which ` +
        `must reach the model as they are: ${problem}. Serve the model without a template there (Ollama: a model ` +
        `whose Modelfile has TEMPLATE {{ .Prompt }}), use vLLM or llama-server, or score ` +
        `${gen.length === 1 ? "it" : "them"} on the built-in engine here with --utility-local ${gen.join(",")}`,
      3,
    );
}

/** The lines that say who scored each utility figure, by side (eval --url). */
function engineLines(engines: Record<string, Record<string, string>>): string[] {
  return Object.entries(engines).map(([side, byFigure]) => {
    const by = new Map<string, string[]>();
    for (const [fig, engine] of Object.entries(byFigure)) by.set(engine, [...(by.get(engine) ?? []), fig]);
    return (
      `utility scored (${side}): ` +
      [...by]
        .map(
          ([engine, figs]) =>
            `${figs.join(", ")} on ${engine === BUILTIN_ENGINE ? "the built-in engine" : engine}`,
        )
        .join("; ")
    );
  });
}

export async function evalCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    claimWorkFolder({
      flag: "--cache",
      path: opts.cache,
      kind: "folder",
      inputs: {
        "--model": opts.model,
        "--data": opts.data,
        "--base": opts.base,
        "--judge": opts.judge,
        ...Object.fromEntries(
          ["arc", "arcEasy", "gsm8k", "gsm8kTrain", "mmlu", "mmluDev", "humaneval", "code"].map((k) => [
            `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
            opts[k],
          ]),
        ),
      },
      ownEntry: isEvalCacheEntry,
    });
    // each folder evaluated is read before any work: a --base without weights or tokenizer was found only after
    // the model's whole evaluation
    for (const dir of [opts.model, opts.base] as (string | undefined)[]) {
      if (dir === undefined) continue;
      checkWeightHeaders(loadModelConfig(dir), dir);
      requireTokenizerFile(dir);
    }
    const pairs = readPairs(opts.data, { languages: opts.languages });
    // the file the model was hardened on is no held-out set: its rates would measure memorisation
    for (const [flag, dir] of [
      ["--model", opts.model],
      ["--base", opts.base],
    ] as const) {
      const stages = dir ? stagesTrainedOn(dir, opts.data) : [];
      if (stages.length)
        log.warn(
          `--data ${opts.data} is the file ${flag} ${dir} was hardened on (its ${stages.join(" and ")} stages read it): ` +
            `these pairs are not held out, so the secure preference and safe rates below measure what it was trained ` +
            `on; evaluate on pairs it never saw, split so that no prompt or code is on both sides (only a file that is ` +
            `byte for byte the training file is caught here; \`experiment\` reports the overlap of its splits)`,
        );
    }
    if (!(PROMPT_FILTERS as readonly string[]).includes(opts.promptFilter))
      throw new InputError(`--prompt-filter ${opts.promptFilter}: use ${PROMPT_FILTERS.join(" or ")}`);
    const enableThinking: boolean = opts.enableThinking ?? DEFAULT_ENABLE_THINKING;
    const applyGenerationConfig = applyGenerationConfigOption(opts);
    // a trained judge's prompts follow its record; a plain checkpoint is asked with the setting
    const judge = opts.judge ? await LlmJudge.load(opts.judge, { enableThinking }) : null;
    if (!CODE_BLOCK_CHOICES.includes(opts.codeBlocks as CodeBlockChoice))
      throw new InputError(`--code-blocks must be longest or all, got ${JSON.stringify(opts.codeBlocks)}`);
    const common = {
      enableThinking,
      codeBlocks: opts.codeBlocks as CodeBlockChoice,
      pairs,
      judge,
      maxPrompts: opts.prompts,
      maxPreferencePairs: opts.preferencePairs,
      promptFilter: opts.promptFilter as PromptFilter,
      maxNewTokens: opts.maxNewTokens,
      batchSize: opts.batchSize,
      cacheDir: opts.cache,
      seed: opts.seed,
      applyGenerationConfig,
      log,
      signal: interruptSignal(log),
    };
    const retries = retryWarning(log);
    if (opts.url && !opts.serverModel)
      throw new InputError("--server-model (the model's name on the --url servers) is required with --url");
    checkEngineFlags(opts);
    if (opts.extraBody && !opts.url)
      throw new InputError(
        "--extra-body is sent to servers: it needs --url (the built-in engine takes no request body)",
      );
    // a server renders its own chat template: one that calls strftime_now without checking date_string writes the
    // server's day whatever it is sent. Known only as far as the model folder's template tells (said once, before
    // the answers, and kept in the output as a caveat)
    const caveats = opts.url
      ? serverDayCaveats("eval --url", folderChatTemplate(opts.model), opts.extraBody, log)
      : [];
    // a raised tolerance of the servers' prompt counts: what it lets through unnoticed, said and kept
    const tolerance = promptCountToleranceCaveat(opts.promptCountTolerance);
    if (tolerance) {
      log.warn(tolerance);
      caveats.push(tolerance);
    }
    // a generation_config.json asking for logits processors that transformers applies even greedy and the built-in
    // engine does not (all but repetition_penalty, or all with --no-generation-config), or a server may: the answers
    // may lack them, which is said (and kept) here
    caveats.push(
      ...generationConfigCaveats(
        "eval",
        [
          { who: "", dir: opts.model, server: Boolean(opts.url) },
          { who: "--base: ", dir: opts.base, server: Boolean(opts.baseServerModel) },
        ],
        applyGenerationConfig,
        log,
      ),
    );
    // the folders evaluated, by side
    const sides = (
      [
        ["model", opts.model],
        ["base", opts.base],
      ] as [string, string | undefined][]
    ).filter((s): s is [string, string] => Boolean(s[1]));
    // what the built-in engine applied of each folder's generation_config.json (its answers and the utility
    // benchmarks'; with --url, those it scores here: the servers apply their own): in the text and the JSON alike
    const penalties = Object.fromEntries(
      sides.map(([side, dir]) => [
        side,
        generationConfigProcessors(dir, applyGenerationConfig).repetitionPenalty ?? null,
      ]),
    ) as Record<string, number | null>;
    const generationConfig = { applied: applyGenerationConfig, repetitionPenalty: penalties };
    const utility = {
      arc: opts.arc,
      arcEasy: opts.arcEasy,
      humaneval: opts.humaneval,
      gsm8k: opts.gsm8k,
      gsm8kTrain: opts.gsm8kTrain,
      mmlu: opts.mmlu,
      mmluDev: opts.mmluDev,
      code: opts.code,
      limit: opts.limit,
    };
    // every benchmark file's rows, before the safety evaluation's generation (the benchmarks run after it)
    await checkUtilityFiles(utility);
    if (opts.gsm8k !== undefined && opts.gsm8kTrain === undefined)
      log.warn(`${GSM8K_ZERO_SHOT_WARNING}; give --gsm8k-train for the harness's 5 shots`);
    // each side's servers (the model's with --url; the base's with --base-server-model): its prompts, and the
    // utility benchmarks given but those of --utility-local
    const onServers = serverBenchmarks(opts);
    const servers = async (dir: string, model: string, flag: string) => {
      const tokenizer = await loadTokenizer(dir);
      const backend = new HttpBackend({
        baseUrls: opts.url,
        model,
        concurrency: opts.concurrency,
        timeoutMs: opts.requestTimeout * 1000,
        onRetry: retries,
        // Ctrl-C ends every request at once: the checks before the answers and the utility benchmarks' too
        signal: common.signal,
        // the log-likelihoods' tokens made and cut as the built-in engine makes them (http.ts)
        tokenizer,
        ...(opts.maxModelLen !== undefined ? { maxModelLen: opts.maxModelLen } : {}),
        ...(opts.extraBody ? { extraBody: opts.extraBody } : {}),
        ...(opts.promptCountTolerance !== undefined
          ? { promptCountTolerancePct: opts.promptCountTolerance }
          : {}),
      });
      // a server that is not there is refused before any local work (a fleet has no failover), then a name the
      // servers do not serve, with the names they do (not vLLM's 404)
      const gone = await backend.unreachable();
      if (gone) throw new InputError(`--url: ${gone}`);
      const unserved = await backend.modelProblem();
      if (unserved) throw new InputError(`${flag}: ${unserved}. Give one of the names it lists with ${flag}`);
      const server = httpUtilityServer(backend, opts.url, model);
      // a server that cannot score log-likelihoods, or that does not take raw prompts as they are, is found before
      // the answers are generated, not after
      await checkPromptLogprobs(backend, server, tokenizer, onServers, common.signal, log);
      await checkRawPrompts(backend, onServers);
      return {
        generator: serverChatBackend(backend),
        ...(onServers.length ? { utilityServer: { server, benchmarks: onServers } } : {}),
      };
    };
    const modelServers = opts.url ? await servers(opts.model, opts.serverModel, "--server-model") : {};
    const baseServers = opts.baseServerModel
      ? await servers(opts.base, opts.baseServerModel, "--base-server-model")
      : {};
    let ev;
    let base = null;
    try {
      ev = await evaluateModel(opts.model, { ...common, ...modelServers, utility });
      // the base on the same utility files (same seeded subsample): a utility comparison needs both sides
      base = opts.base ? await evaluateModel(opts.base, { ...common, ...baseServers, utility }) : null;
    } finally {
      retries.flush(); // the retries not yet said, run finished or not
    }
    log.done();
    const cell = securityCell(ev, base, pairs);
    const baseCell = base ? securityCell(base, null, pairs) : null;
    const vsBase = base ? utilityVsBase(ev, base) : undefined;
    // the subsample the benchmarks and --code are of, in the text and the JSON alike
    const limited = ["arc", "arcEasy", "gsm8k", "mmlu", "humaneval", "code"].some(
      (k) => opts[k] !== undefined,
    );
    const utilityLimit =
      opts.limit !== undefined && limited
        ? { limit: opts.limit as number, seed: opts.seed as number }
        : undefined;
    const lines = evalSummaryLines({
      model: path.resolve(opts.model),
      protocol: describeProtocol(ev.protocol),
      cell,
      base: baseCell ? { model: path.resolve(opts.base), cell: baseCell } : null,
      utilityVsBase: vsBase,
      llmJudge: judge !== null,
      reused: { model: ev.utilityReused ?? [], base: base?.utilityReused ?? [] },
      engines: { model: ev.utilityEngine, ...(base ? { base: base.utilityEngine } : {}) },
      ...(utilityLimit ? { utilityLimit } : {}),
    });
    // the thinking mode the answers were asked in, where it can matter: a template with the switch, or a server
    // (whose template is not known here)
    if (thinkingSwitchReaches(opts.model, { server: Boolean(opts.url) }))
      lines.push(
        `Qwen3's thinking switch: ${enableThinking ? "on" : "off"} (enable_thinking ${enableThinking} in every prompt ` +
          `answered${opts.url ? sentToServers(opts.extraBody, "enable_thinking") : ""}` +
          `${enableThinking ? "" : "; --enable-thinking turns it on"}; the paper does not say which mode it used)`,
      );
    // the day the prompts were rendered on, where it can matter: a template that writes it (Llama 3.2's "Today
    // Date: ..."), or a server (whose template is not known here), which is sent it
    const templateDate = templateDayIso();
    if (templateDayReaches(opts.model, { server: Boolean(opts.url) }))
      lines.push(
        `template day: ${templateDateString()} (${templateDate}, ` +
          `${templateDate === DEFAULT_TEMPLATE_DATE ? "the default" : "GOODVIBE_TEMPLATE_DATE"}; in every prompt ` +
          `answered${opts.url ? sentToServers(opts.extraBody, "date_string") : ""}` +
          `${templateDate === DEFAULT_TEMPLATE_DATE ? "; GOODVIBE_TEMPLATE_DATE=YYYY-MM-DD|today sets another" : ""})`,
      );
    // who scored each utility figure, by side: the servers or the built-in engine
    const engines = { model: ev.utilityEngine, ...(base ? { base: base.utilityEngine } : {}) };
    if (opts.url) lines.push(...engineLines(engines));
    const applied = Object.entries(penalties).filter(([, p]) => p !== null);
    if (!applyGenerationConfig)
      lines.push("generation config: not applied (--no-generation-config): greedy on the raw logits");
    else if (applied.length)
      lines.push(
        `generation config: repetition_penalty ${applied.map(([side, p]) => `${p} (${side})`).join(", ")} applied ` +
          `by the built-in engine${opts.url ? " (to what it answered; the servers apply their own)" : ""}, as ` +
          `transformers' generate() does; --no-generation-config turns it off`,
      );
    // the answers are greedy (with --url: asked at temperature 0); a folder whose generation_config.json sets
    // do_sample true would have transformers' generate() sample instead (experiment/departures.ts says the same
    // for an experiment): said, with its values, where one does
    const sampledByDefault = sides.flatMap(([side, dir]) => {
      const s = folderDefaultSampling(dir);
      return s ? [`${side} (temperature ${s.temperature}, top_p ${s.topP}, top_k ${s.topK})`] : [];
    });
    if (sampledByDefault.length)
      lines.push(
        `decoding: greedy, though the generation_config.json of ${sampledByDefault.join(", ")} sets do_sample ` +
          `true, with which transformers' generate() samples by default: one reproducible answer per prompt (the ` +
          `paper does not say how it decoded)`,
      );
    for (const c of caveats) lines.push(`caveat: ${c}`);
    // the benchmarks taken from --cache, by side, when any was
    const reused = {
      ...(ev.utilityReused ? { utilityReused: ev.utilityReused } : {}),
      ...(base?.utilityReused ? { baseUtilityReused: base.utilityReused } : {}),
    };
    // `base` stays the base's security (as before); its utility and the differences beside it
    output(
      g,
      lines.join("\n"),
      baseCell
        ? {
            ...cell,
            base: baseCell.security,
            baseUtility: baseCell.utility,
            utilityVsBase: vsBase,
            ...reused,
            ...(utilityLimit ? { utilityLimit } : {}),
            enableThinking,
            templateDate,
            generationConfig,
            utilityEngine: engines,
            ...(caveats.length ? { caveats } : {}),
          }
        : {
            ...cell,
            ...reused,
            ...(utilityLimit ? { utilityLimit } : {}),
            enableThinking,
            templateDate,
            generationConfig,
            utilityEngine: engines,
            ...(caveats.length ? { caveats } : {}),
          },
    );
  });
}
