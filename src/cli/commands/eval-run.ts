/**
 * What `goodvibe eval` does: loaded by eval.ts (which registers the command) only when it runs.
 */
import type { OptionValues } from "commander";
import * as path from "node:path";
import { readPairs } from "../../data/pairs.js";
import { claimWorkFolder } from "../../io/atomic.js";
import { LlmJudge } from "../../eval/judge/llm.js";
import { describeProtocol, evaluateModel, securityCell } from "../../recipes/evaluate.js";
import { PROMPT_FILTERS, type PromptFilter } from "../../data/prompts.js";
import { InputError } from "../../errors.js";
import { HttpBackend } from "../../eval/generate/http.js";
import { serverChatBackend } from "../../eval/generate/backend.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";

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
      throw new InputError("--server-model (the model's name on the --url servers) is required with --url");
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
}
