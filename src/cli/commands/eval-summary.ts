/**
 * The human-readable summary of `goodvibe eval`: what the cell (recipes/evaluate.ts's securityCell) holds, in
 * lines. Kept apart from eval-run.ts so that it is a plain function of its inputs (no model, no libtorch).
 */
import type { CellResult } from "../../report/schema.js";
import type { UtilityDifference } from "../../recipes/evaluate.js";
import { Z95, percentWithInterval, proportionSuccesses, wilsonInterval } from "../../eval/metrics.js";
import { ratesIntervalName } from "../../report/aggregate.js";
import { BUILTIN_ENGINE } from "../../eval/utility/engine.js";

type Security = CellResult["security"];

/**
 * A utility figure's 95% interval: the Wilson interval for a share of items scored 0 or 1 (at 0 of 10 it is
 * [0.0000, 0.2775], where value ± 1.96 se would be the point [0, 0]); otherwise value ± 1.96 se (a loss).
 */
function utilityInterval(v: { metric: string; value: number; stderr: number; n: number }): string {
  const k = proportionSuccesses(v);
  const i =
    k === null ? { low: v.value - Z95 * v.stderr, high: v.value + Z95 * v.stderr } : wilsonInterval(k, v.n);
  return `[${i.low.toFixed(4)}, ${i.high.toFixed(4)}]${k === null ? "" : " Wilson"}`;
}

/** Preference and safe rates of one model; a judge with no verdicts says why instead of printing NaN%. */
function rateLines(s: Security, label = ""): string[] {
  const lines: string[] = [];
  const p = s.securePreference;
  if (p)
    lines.push(
      `${label}secure preference: ${percentWithInterval(p.rate)} of ${p.n} pairs; mean loss gap ${p.meanLossGap.value.toFixed(4)} [${p.meanLossGap.low.toFixed(4)}, ${p.meanLossGap.high.toFixed(4)}]${s.lossGapInterval === "bootstrap-task" ? " (tasks resampled)" : ""}`,
    );
  // which interval the brackets of the rates are: the same as results.json's and the report's for these pairs
  if (p || s.safeRate) lines.push(`${label}rates' brackets: ${ratesIntervalName(s)}`);
  const a = s.answers;
  if (!a) return lines;
  const rule = s.safeRate?.rule;
  // answers with code in a language no rule reads (python, php, …) have no rule verdict: said, not taken for "no code"
  const unread = a.uncovered
    ? `${a.uncovered} of ${a.n} in languages the rule judge does not read (no rule verdict)`
    : "";
  lines.push(
    rule
      ? `${label}safe rate (rules): ${percentWithInterval(rule.overall)} of ${rule.overall.n} answers with code; no code in ${a.noCode} of ${a.n}${unread ? `; ${unread}` : ""}`
      : unread
        ? `${label}safe rate (rules): none: ${unread}, no code in ${a.noCode} of ${a.n}`
        : `${label}safe rate (rules): none: no answer had a code block in its prompt's language (no code in ${a.noCode} of ${a.n})`,
  );
  const llm = s.safeRate?.llm;
  if (llm)
    lines.push(
      `${label}safe rate (LLM judge): ${percentWithInterval(llm.overall)} of ${llm.overall.n} answers (those without code judged whole, empty ones not secure)`,
    );
  return lines;
}

/**
 * The lines `goodvibe eval` prints. With a base model: the base's own rates, then McNemar's test against it
 * by every judge that has one, and for a judge that has none, why (no prompt has that judge's verdict on both).
 */
export function evalSummaryLines(opts: {
  model: string;
  protocol: string;
  cell: Pick<CellResult, "security" | "utility">;
  base?: { model: string; cell: Pick<CellResult, "security"> & Partial<Pick<CellResult, "utility">> } | null;
  /** model − base of each utility metric both have (recipes/evaluate.ts utilityVsBase) */
  utilityVsBase?: Record<string, UtilityDifference>;
  llmJudge: boolean;
  /** the utility benchmarks each side took from --cache instead of evaluating them (recipes/evaluate.ts) */
  reused?: { model: readonly string[]; base: readonly string[] };
  /** who scored each side's utility figures (recipes/evaluate.ts ModelEvaluation.utilityEngine), where known */
  engines?: { model: Readonly<Record<string, string>>; base?: Readonly<Record<string, string>> };
  /** --limit and --seed, where a benchmark or --code was given with them: those figures are of a seeded subsample */
  utilityLimit?: { limit: number; seed: number };
}): string[] {
  const { cell, base } = opts;
  const lines = [`model: ${opts.model}`, `safe rates on ${opts.protocol}`, ...rateLines(cell.security)];
  if (opts.utilityLimit)
    lines.push(
      `utility subsample: at most ${opts.utilityLimit.limit} items of each benchmark and documents of --code, drawn with seed ${opts.utilityLimit.seed} (--limit; the held-out code loss follows --preference-pairs)`,
    );
  // a figure from --cache says what made it reusable: the build of the built-in engine, or the servers that scored
  // it (a server's figure is keyed by its model's name there, not the build here)
  const reusedNote = (k: string, engine: string | undefined) =>
    engine !== undefined && engine !== BUILTIN_ENGINE
      ? ` (reused from --cache: same model, files, settings and engine, ${engine})`
      : " (reused from --cache: same model, files, settings and build)";
  const utilityLines = (
    u: CellResult["utility"],
    reused: readonly string[] = [],
    label = "",
    engines: Readonly<Record<string, string>> = {},
  ) =>
    Object.entries(u ?? {}).flatMap(([k, v]) => [
      `${label}${k}: ${v.metric} ${v.value.toFixed(4)} ${utilityInterval(v)} (n=${v.n}; ` +
        `${v.nShot !== undefined ? `${v.nShot}-shot; ` : ""}se ${v.stderr.toFixed(4)})` +
        (reused.includes(k) ? reusedNote(k, engines[k]) : ""),
      // --code's per language, each with its interval as the overall's (value ± 1.96 se over its documents)
      ...Object.entries(v.perLanguage ?? {})
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(
          ([lang, l]) =>
            `${label}${k} (${lang}): ${v.metric} ${l.value.toFixed(4)} ${utilityInterval({ metric: v.metric, ...l })} (n=${l.n}; se ${l.stderr.toFixed(4)}; ${l.tokens} tokens)`,
        ),
    ]);
  lines.push(...utilityLines(cell.utility, opts.reused?.model, "", opts.engines?.model));
  if (!base) return lines;
  lines.push(
    `base: ${base.model}`,
    ...rateLines(base.cell.security, "base "),
    ...utilityLines(base.cell.utility, opts.reused?.base, "base ", opts.engines?.base),
  );
  const sign = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(4)}`;
  for (const [k, d] of Object.entries(opts.utilityVsBase ?? {}))
    lines.push(
      `vs base (${k}): ${d.metric} ${sign(d.diff)} [${sign(d.low)}, ${sign(d.high)}] (model − base, 95% interval; ` +
        `${
          d.method === "paired newcombe"
            ? `paired over the ${d.n} items both scored, Newcombe's score interval`
            : d.method === "paired normal"
              ? // the held-out code loss pairs per held-out pair (the mean of its two answers' loss), the --code
                // real-code loss per document (its share of the token-weighted mean: eval/utility/code-loss.ts)
                `paired over the ${d.n} ${k === "heldout_code_loss" ? "held-out pairs" : k === "heldout_real_code_loss" ? "documents" : "items"} both scored, mean difference ± 1.96·sd/√n`
              : d.method === "unpaired newcombe"
                ? `unpaired, Newcombe's score interval from both counts${d.unpairedBecause ? `: ${d.unpairedBecause}` : ""}`
                : `unpaired, from both standard errors${d.unpairedBecause ? `: ${d.unpairedBecause}` : ""}`
        })`,
    );
  if (!cell.security.answers) return lines;
  const judges = opts.llmJudge ? (["rule", "llm"] as const) : (["rule"] as const);
  for (const judge of judges) {
    const name = judge === "rule" ? "rules" : "LLM judge";
    const m = cell.security.mcnemarVsBase?.[judge];
    lines.push(
      m
        ? `vs base (${name}): improved ${m.b01}, worsened ${m.b10}, p = ${m.pValue.toPrecision(3)} (${m.test})`
        : `vs base (${name}): no test: no prompt has a verdict of this judge on both models' answers`,
    );
  }
  return lines;
}
