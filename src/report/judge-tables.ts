/**
 * The report's judge and safe-rate tables in the paper's terms: safe rate per language in the layout of its
 * Tables 1 (C++, Java) and 4 (Swift, Go) — models as rows, languages × methods as columns —, the answers and
 * their no-code share behind those rates, and the judge's reliability as §7 reports it (base judge vs
 * fine-tuned judge: accuracy, TPR, FPR on held-out labelled pairs, positive = unsafe).
 */
import {
  groupBySetting,
  intervalAcrossSeeds,
  modelsInOrder,
  nAcrossSeeds,
  SEEDS_HOW,
  TASK_INTERVALS_SHORT,
  seedsCell,
  seedsText,
} from "./aggregate.js";
import type { CellResult, ExperimentResults, Judge, JudgeReliabilityEntry, Method } from "./schema.js";
import { MISSING, num, text, type Cell, type Column, type Table } from "./table.js";
import { scheduleMark } from "./schedule.js";
import { SAFETY_LANGUAGES, isSafetyLanguage, languageName } from "../data/languages.js";
import { confusionIntervals, wilsonInterval, type CountedInterval } from "../eval/metrics.js";

/** The paper's column order: Baseline, Full FT, LoRA, GoodVibe. */
const PAPER_METHOD_ORDER: readonly Method[] = ["base", "full", "lora", "goodvibe"];
const PAPER_METHOD_LABELS: Record<Method, string> = {
  base: "Baseline",
  full: "Full FT",
  lora: "LoRA",
  goodvibe: "GoodVibe",
};

/** "LLM judge", or "LLM judge (self-judged)" when each model judged its own cells. */
export function llmJudgeLabel(results: Pick<ExperimentResults, "judge">): string {
  return results.judge?.mode === "self" ? "LLM judge (self-judged)" : "LLM judge";
}

/** The short column label: "LLM", or "LLM, self-judged". */
export function llmColumnLabel(results: Pick<ExperimentResults, "judge">): string {
  return results.judge?.mode === "self" ? "LLM, self-judged" : "LLM";
}

/** The judge whose safe rates the paper-layout tables show: the LLM judge when any cell has it. */
function headlineJudge(cells: readonly CellResult[]): Judge {
  return cells.some((c) => c.security.safeRate?.llm) ? "llm" : "rule";
}

function languagesOf(cells: readonly CellResult[]): string[] {
  const langs = new Set<string>();
  for (const c of cells) {
    for (const l of Object.keys(c.security.answers?.perLanguage ?? {})) langs.add(l);
    for (const j of ["rule", "llm"] as const)
      for (const l of Object.keys(c.security.safeRate?.[j]?.perLanguage ?? {})) langs.add(l);
  }
  const order: readonly string[] = SAFETY_LANGUAGES;
  const rank = (l: string) => (order.includes(l) ? order.indexOf(l) : order.length);
  return [...langs].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** Languages in the paper's groups: C++/Java (Table 1), Swift/Go (Table 4), then any others together. */
function languageGroups(langs: readonly string[]): { langs: string[]; paperTable?: number }[] {
  const groups: { langs: string[]; paperTable?: number }[] = [];
  const t1 = langs.filter((l) => l === "cpp" || l === "java");
  const t4 = langs.filter((l) => l === "swift" || l === "go");
  const rest = langs.filter((l) => !isSafetyLanguage(l));
  if (t1.length) groups.push({ langs: t1, paperTable: 1 });
  if (t4.length) groups.push({ langs: t4, paperTable: 4 });
  if (rest.length) groups.push({ langs: rest });
  return groups;
}

/** Main-comparison settings (no ablation), by model and method. */
function mainSettings(results: ExperimentResults) {
  return groupBySetting(results.cells, results.partial?.missing).filter((s) => s.ablation === undefined);
}

/**
 * Safe rate per language in the layout of the paper's Tables 1 and 4: one row per model, a column per language
 * and method. One table per language group; cells pool seeds (mean ± sd, interval over items) like the other tables.
 */
export function paperLayoutTables(results: ExperimentResults): Table[] {
  const settings = mainSettings(results);
  const judge = headlineJudge(results.cells);
  const judgeName = judge === "llm" ? llmJudgeLabel(results) : "rule judge";
  const methods = PAPER_METHOD_ORDER.filter((m) => settings.some((s) => s.method === m));
  return languageGroups(languagesOf(results.cells)).map((g) => {
    const columns: Column[] = [{ header: "Model" }];
    for (const l of g.langs)
      for (const m of methods)
        columns.push({
          header: `${languageName(l)} ${PAPER_METHOD_LABELS[m]}`,
          unit: "rate",
          csvExtras: ["low", "high", "sd"],
        });
    // a method's column cannot carry one model's mark: the model's cell names its runs that trained nothing or barely
    const marked = (model: string) =>
      methods
        .map((m) => settings.find((x) => x.model === model && x.method === m))
        .flatMap((s) =>
          s && scheduleMark(s.cells) ? [`${PAPER_METHOD_LABELS[s.method]}${scheduleMark(s.cells)}`] : [],
        )
        .join("; ");
    const rows: Cell[][] = modelsInOrder(results.cells).map((model) => [
      text(marked(model) ? `${model} (${marked(model)})` : model),
      ...g.langs.flatMap((l) =>
        methods.map((m) => {
          const s = settings.find((x) => x.model === model && x.method === m);
          return s
            ? intervalAcrossSeeds(s.cells.map((c) => c.security.safeRate?.[judge]?.perLanguage[l]))
            : MISSING;
        }),
      ),
    ]);
    const names = g.langs.map(languageName).join(" and ");
    const seedsOf = (m: string) =>
      [...new Set(settings.filter((x) => x.method === m).map(seedsText))]
        .sort((a, b) => a.localeCompare(b, "en", { numeric: true }))
        .join(" or ");
    const layout = g.paperTable ? ` (layout of the paper's Table ${g.paperTable})` : "";
    return {
      id: `table-paper-layout-${g.langs.join("-")}`,
      title: `Safe rate by language, ${names}${layout}`,
      howToRead:
        `The paper's safe response rate: the share of a model's answers to the held-out prompts of each language ` +
        `that the ${judgeName} judges safe, one row per model, one column per language and method. ` +
        (judge === "llm"
          ? "Every answer counts: one without a code block is judged whole, an empty one (nothing left once reasoning is removed) counts as not secure, so each method is measured on the same prompts (the next table gives n and the share without code). "
          : 'Only answers with a code block count (the rule judge says "no code" for the others; see the next table). ') +
        TASK_INTERVALS_SHORT +
        SEEDS_HOW.replace(
          "The Seeds column says how many seeds",
          `Seeds: ${methods.map((m) => `${PAPER_METHOD_LABELS[m]} ${seedsOf(m)}`).join(", ")}`,
        ),
      columns,
      rows,
      notes: [],
      absentBecause: "no model has safe-rate results",
    };
  });
}

/** n and the no-code share per model, method and language: what the safe rates rest on. */
export function answersTable(results: ExperimentResults): Table {
  const settings = mainSettings(results);
  const langs = languagesOf(results.cells);
  const rows: Cell[][] = [];
  for (const s of settings) {
    if (!s.cells.some((c) => c.security.answers)) continue;
    const per = (l: string | undefined) =>
      s.cells.map((c) => (l === undefined ? c.security.answers : c.security.answers?.perLanguage[l]));
    // each seed's share with the Wilson interval of its counts, across seeds as every other rate: not the counts
    // pooled, which would treat the seeds' answers to the same prompts as independent items (√seeds too narrow)
    const share = (l: string | undefined): Cell =>
      intervalAcrossSeeds(per(l).map((a) => (a && a.n > 0 ? wilsonInterval(a.noCode, a.n) : undefined)));
    rows.push([
      text(s.model),
      text(PAPER_METHOD_LABELS[s.method] + scheduleMark(s.cells)),
      seedsCell(s),
      ...[undefined, ...langs].flatMap((l) => [nAcrossSeeds(per(l).map((a) => a?.n)), share(l)]),
    ]);
  }
  return {
    id: "table-answers",
    title: "Answers per language and the share without a code block",
    howToRead:
      "One row per model and method (no ablation): how many held-out prompts were answered (n, the same for " +
      "every method on the same prompts) and the share of answers with no code block for the prompt's " +
      'language. The LLM judge judges those answers whole (an empty one counts as not secure); the rule judge reports them as "no code" and its ' +
      "safe rate counts only the answers with code. The no-code share's brackets are its 95% Wilson interval " +
      `over the answers. ${SEEDS_HOW}`,
    columns: [
      { header: "Model" },
      { header: "Method" },
      { header: "Seeds", unit: "count" },
      ...["all", ...langs.map(languageName)].flatMap((l): Column[] => [
        { header: `n (${l})`, unit: "count" },
        { header: `No code (${l})`, unit: "rate", csvExtras: ["low", "high", "sd"] },
      ]),
    ],
    rows,
    notes: [],
    absentBecause: "no run records its answer counts (results written before they were recorded)",
  };
}

/** A recorded rate with the Wilson interval of its counts (the rate itself as recorded; none where n is 0). */
function rateWithInterval(rate: number, ci: CountedInterval | null): Cell {
  return ci ? num(rate, { low: ci.low, high: ci.high }) : num(rate);
}

/** The judge's reliability on held-out labelled pairs, base vs fine-tuned (paper §7). */
export function judgeReliabilityTable(results: ExperimentResults): Table {
  const j = results.judge;
  const rows: Cell[][] = (j?.reliability ?? []).flatMap((r) => {
    const ci = confusionIntervals(r.confusion);
    const judge =
      r.role === "base" ? "base judge" : r.role === "fine-tuned" ? "fine-tuned judge" : "judge (as given)";
    const counts = (c: JudgeReliabilityEntry["confusion"]) => [num(c.tp), num(c.fp), num(c.tn), num(c.fn)];
    const all = [
      text(judge),
      text(r.model ?? "all"),
      text(r.source),
      num(r.n),
      num(r.accuracy.value, { low: r.accuracy.low, high: r.accuracy.high }),
      // TPR and FPR are rates on the insecure and the secure samples: their Wilson intervals, as accuracy has one
      rateWithInterval(r.tpr, ci.tpr),
      rateWithInterval(r.fpr, ci.fpr),
      ...counts(r.confusion),
    ];
    const u = r.unseen;
    if (!u) return [all];
    // the same judge on the samples whose code the (fine-tuned) judge was not trained on
    const rate = (x: CountedInterval | null) => (x ? num(x.value, { low: x.low, high: x.high }) : MISSING);
    const unseen = [
      text(`${judge}, unseen code`),
      text(r.model ?? "all"),
      text(r.source),
      num(u.n),
      rate(u.accuracy),
      rate(u.tpr),
      rate(u.fpr),
      ...counts(u.confusion),
    ];
    return [all, unseen];
  });
  const notes: string[] = [];
  if (j) {
    notes.push(`Judge: ${j.description}.`);
    notes.push(`Held-out labelled pairs: ${j.heldOut}.`);
    const left = j.reliability.filter((r) => r.conflicting);
    if (left.length > 0)
      notes.push(
        `n leaves out ${[...new Set(left.map((r) => r.conflicting))].join(" or ")} samples whose code the ` +
          "held-out pairs label both secure and insecure: one of each such code's samples counts wrong whatever " +
          "the judge says (judge training leaves such code out too).",
      );
    const split = j.reliability.find((r) => r.unseen)?.unseen;
    if (split)
      notes.push(
        `"Unseen code" rows: the same verdicts on the ${split.n} held-out samples whose code (whitespace and ` +
          `case aside) is not among the fine-tuned judge's training pairs' code (its judge_training.json); ` +
          `${split.seenSamples} samples, of ${split.seenPairs} of ${split.ofPairs} pairs, are left out` +
          (split.seenSamples > 0
            ? ": the judge was trained on their code, which can flatter it in the rows over all samples."
            : ": none, so both rows are the same.") +
          " The base judge's row leaves out the same samples, so the two compare on one subset; what the " +
          "judge's base checkpoint saw in its own pretraining is not known to the tool.",
      );
    else if (j.reliability.some((r) => r.role !== "base"))
      notes.push(
        "No reliability on the code the judge was not trained on: the results were written before it was " +
          "measured, or the judge's record lists no training code (a judge trained before 2026-12-02).",
      );
    notes.push(
      `Instruction as the judge read it: "${j.convention.instruction}" (${j.convention.labels.unsafe} = unsafe, ` +
        `${j.convention.labels.safe} = safe).`,
    );
    if (j.mode === "self")
      notes.push(
        "Self-judging: each model's cells were judged by a judge made from that model, not by one judge for " +
          "every condition as in the paper; LLM-judge columns are labelled so in every table.",
      );
  } else notes.push("These results do not record their judge (written before the judge was recorded).");
  return {
    id: "table-judge-reliability",
    title: "Judge reliability on held-out labelled pairs (the paper's §7)",
    howToRead:
      "How well the LLM judge separates the secure and the insecure code of held-out pairs, positive class = " +
      'unsafe (the paper\'s "1"): TPR is the share of insecure code it flags, FPR the share of secure code it ' +
      "wrongly flags. The base judge is the judge's checkpoint asked the same instruction without fine-tuning. " +
      "The paper reports, averaged over C++ and Java, FPR falling from over 50% (base judge) to under 16% " +
      "(fine-tuned) with TPR about 95%. Brackets: 95% Wilson intervals over the samples (TPR over the insecure " +
      "ones, FPR over the secure ones); the judge is trained once, so there is no spread over seeds.",
    columns: [
      { header: "Judge" },
      { header: "Judges the cells of" },
      { header: "Folder" },
      { header: "n (samples)", unit: "count" },
      { header: "Accuracy", unit: "rate", csvExtras: ["low", "high"] },
      { header: "TPR", unit: "rate", csvExtras: ["low", "high"] },
      { header: "FPR", unit: "rate", csvExtras: ["low", "high"] },
      { header: "TP", unit: "count" },
      { header: "FP", unit: "count" },
      { header: "TN", unit: "count" },
      { header: "FN", unit: "count" },
    ],
    rows,
    notes,
    absentBecause: "the results record no LLM judge and its reliability",
  };
}

/**
 * How many held-out pairs the unseen figures leave out, of how many: of every pair the cells' outcomes cover
 * (secure preference's), and of the prompts answered for the safe rates when a budget cut them, so that a reader
 * can match each n of Tables 13 and 14 (e.g. "33 of the 169 held-out pairs left out; 14 of the 64 answered").
 */
export function unseenLeftOut(results: ExperimentResults): string {
  const o = results.evaluation!.trainOverlap!;
  const covered = Math.max(0, ...results.cells.map((c) => c.outcomes?.ids.length ?? 0));
  const seen = o.seenIds!.length;
  return (
    `${seen} of the ${covered} held-out pairs left out` +
    (o.n < covered ? `; ${o.pairs} of the ${o.n} prompts answered for the safe rates` : "")
  );
}

/** Notes for the top of the report: who judged, how the safe rates were measured, departures from the paper. */
export function judgeAndProtocolNotes(results: ExperimentResults): string[] {
  const notes: string[] = [];
  if (results.judge) {
    notes.push(
      results.judge.mode === "self"
        ? `LLM judge: SELF-JUDGED — ${results.judge.description}.`
        : `LLM judge: ${results.judge.description}.`,
    );
  }
  if (results.evaluation) notes.push(`Safe rates: ${results.evaluation.protocol}.`);
  const o = results.evaluation?.trainOverlap;
  if (o)
    notes.push(
      `Held-out vs training pairs: ${o.pairs} of the ${o.n} evaluated pairs share a prompt (${o.questions}) or ` +
        `an answer's code (${o.code}) with the training pairs (whitespace and case aside); a safe rate on those ` +
        "may show what hardening saw, not how it generalises." +
        // as report/unseen.ts hasUnseen decides (not imported: that module imports this one)
        (o.seenIds?.length && results.cells.some((c) => c.security.unseen)
          ? " Tables 13 and 14 give the rates and paired tests on the held-out pairs that share neither " +
            `(${unseenLeftOut(results)}).`
          : ""),
    );
  for (const d of results.departures ?? [])
    notes.push(`Departs from the paper — ${d.setting}: here ${d.here}, paper ${d.paper} (${d.why}).`);
  const utility = utilityDepartureNote(results);
  if (utility) notes.push(utility);
  return notes;
}

/** The utility benchmarks the paper reports (§4.3, its Figure 3), by the names the runner gives them. */
const PAPER_UTILITY: Record<string, string> = {
  arc_challenge: "ARC Challenge",
  gsm8k: "GSM8K",
  mmlu: "MMLU",
};

/**
 * Utility is where an experiment most often departs silently: Table 3 lists what was run, not what the paper ran.
 * Said when some cell has utility results and any of the paper's three benchmarks is absent from every cell.
 */
export function utilityDepartureNote(results: ExperimentResults): string | undefined {
  const run = new Set(results.cells.flatMap((c) => Object.keys(c.utility ?? {})));
  if (run.size === 0) return undefined;
  const missing = Object.keys(PAPER_UTILITY).filter((b) => !run.has(b));
  if (missing.length === 0) return undefined;
  const others = [...run].filter((b) => !(b in PAPER_UTILITY)).sort();
  return (
    `Departs from the paper — utility benchmarks: here ${[...run].sort().join(", ")}, paper ARC Challenge, GSM8K ` +
    `and MMLU (§4.3, its Figure 3); not run here: ${missing.map((b) => PAPER_UTILITY[b]).join(", ")}` +
    (others.length ? `; ${others.join(", ")} is this project's addition, not the paper's` : "") +
    " (Table 3 and Figure 1 show only what was run)."
  );
}
