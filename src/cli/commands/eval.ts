import * as path from "node:path";
import type { Command } from "commander";
import { readPairs } from "../../data/pairs.js";
import { claimWorkFolder } from "../../io/atomic.js";
import { LlmJudge } from "../../eval/judge/llm.js";
import {
  DEFAULT_PREFERENCE_PAIRS,
  describeProtocol,
  evaluateModel,
  securityCell,
} from "../../recipes/evaluate.js";
import { PROMPT_FILTERS, type PromptFilter } from "../../data/prompts.js";
import { InputError } from "../../errors.js";
import { integer, list } from "../options.js";
import { HttpBackend } from "../../eval/generate/http.js";
import { serverChatBackend } from "../../eval/generate/backend.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";

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
    .option("--base <dir>", "base model folder: adds McNemar's test of this model against it")
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
    .option("--max-new-tokens <n>", "tokens per answer", integer(1), 256)
    .option("--batch-size <n>", "generation / scoring batch", integer(1), 8)
    .option("--arc <file>", "ARC-Challenge JSONL/Parquet (allenai/ai2_arc schema)")
    .option("--gsm8k <file>", "GSM8K test JSONL; --gsm8k-train for few-shot examples")
    .option("--gsm8k-train <file>", "GSM8K train JSONL (few-shot source)")
    .option("--mmlu <file>", "MMLU test (cais/mmlu schema); --mmlu-dev for 5-shot examples")
    .option("--mmlu-dev <file>", "MMLU dev split")
    .option("--humaneval <file>", "HumanEval (.jsonl or .jsonl.gz): pass@1, completions run in the sandbox")
    .option("--limit <n>", "utility items per benchmark, a seeded subsample (default: all)", integer(1))
    .option("--cache <dir>", "generation cache folder (resumable)", ".goodvibe-cache")
    .option("--seed <n>", "seed", integer(0), 0)
    .option(
      "--url <list>",
      "answer the vibe-coding prompts on OpenAI-compatible servers serving --model (vLLM, llama-server, Ollama, goodvibe serve), comma-separated, round-robin; the rest stays local",
      list,
    )
    .option("--server-model <name>", "the model's name on those servers (with --url)")
    .option("--concurrency <n>", "requests in flight over all servers (with --url)", integer(1), 16)
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe eval -m ./hardened -d dev.jsonl --judge ./judge --base ./base-model\n  goodvibe eval -m ./hardened -d dev.jsonl --arc arc_challenge_test.jsonl --limit 200 --json\n  goodvibe eval -m ./hardened -d dev.jsonl --url http://gpu1:8000,http://gpu2:8000 --server-model hardened",
    )
    .action(async (opts) => {
      const g = program.opts();
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
              ["arc", "gsm8k", "gsm8kTrain", "mmlu", "mmluDev", "humaneval"].map((k) => [`--${k}`, opts[k]]),
            ),
          },
          ownEntry: (n) => /^safety-[0-9a-f]{16}\.jsonl$/.test(n),
        });
        const pairs = readPairs(opts.data, { languages: opts.languages });
        if (!(PROMPT_FILTERS as readonly string[]).includes(opts.promptFilter))
          throw new InputError(`--prompt-filter ${opts.promptFilter}: use ${PROMPT_FILTERS.join(" or ")}`);
        const judge = opts.judge ? await LlmJudge.load(opts.judge) : null;
        const common = {
          pairs,
          judge,
          maxPrompts: opts.prompts,
          maxPreferencePairs: opts.preferencePairs,
          promptFilter: opts.promptFilter as PromptFilter,
          maxNewTokens: opts.maxNewTokens,
          batchSize: opts.batchSize,
          cacheDir: opts.cache,
          seed: opts.seed,
          log,
          signal: interruptSignal(log),
        };
        if (opts.url && !opts.serverModel)
          throw new InputError(
            "--server-model (the model's name on the --url servers) is required with --url",
          );
        const generator = opts.url
          ? serverChatBackend(
              new HttpBackend({ baseUrls: opts.url, model: opts.serverModel, concurrency: opts.concurrency }),
            )
          : undefined;
        const ev = await evaluateModel(opts.model, {
          ...common,
          generator,
          utility: {
            arc: opts.arc,
            humaneval: opts.humaneval,
            gsm8k: opts.gsm8k,
            gsm8kTrain: opts.gsm8kTrain,
            mmlu: opts.mmlu,
            mmluDev: opts.mmluDev,
            limit: opts.limit,
          },
        });
        const base = opts.base ? await evaluateModel(opts.base, common) : null;
        log.done();
        const cell = securityCell(ev, base);
        const p = ev.preference;
        const lines = [
          `model: ${path.resolve(opts.model)}`,
          `safe rates on ${describeProtocol(ev.protocol)}`,
          `secure preference: ${(100 * p.rate.value).toFixed(1)}% [${(100 * p.rate.low).toFixed(1)}, ${(100 * p.rate.high).toFixed(1)}] of ${p.n} pairs; mean loss gap ${p.meanLossGap.value.toFixed(4)} [${p.meanLossGap.low.toFixed(4)}, ${p.meanLossGap.high.toFixed(4)}]`,
        ];
        if (ev.safety) {
          const r = ev.safety.rule.overall;
          lines.push(
            `safe rate (rules): ${(100 * r.rate).toFixed(1)}% [${(100 * r.low).toFixed(1)}, ${(100 * r.high).toFixed(1)}] of ${r.n} answers with code; no code in ${ev.safety.noCode} of ${ev.safety.n}`,
          );
          if (ev.safety.llm) {
            const l = ev.safety.llm.overall;
            lines.push(
              `safe rate (LLM judge): ${(100 * l.rate).toFixed(1)}% [${(100 * l.low).toFixed(1)}, ${(100 * l.high).toFixed(1)}] of ${l.n} answers (those without code judged whole)`,
            );
          }
        }
        for (const [k, u] of Object.entries(ev.utility))
          lines.push(`${k}: ${u.metric} ${u.value.toFixed(4)} ± ${u.stderr.toFixed(4)} (n=${u.n})`);
        if (cell.security.mcnemarVsBase?.rule) {
          const m = cell.security.mcnemarVsBase.rule;
          lines.push(
            `vs base (rules): improved ${m.b01}, worsened ${m.b10}, p = ${m.pValue.toPrecision(3)} (${m.test})`,
          );
        }
        output(g, lines.join("\n"), cell);
      });
    });
}
