/**
 * The report's tables, after the GoodVibe paper's: security by language (T1), cost (T2), utility
 * (T3), identification/clustering ablations (T4), threshold/top-k/epoch studies (T5), judge
 * agreement and McNemar tests (T6). Each builder takes validated results and returns a Table;
 * missing data stays missing ("—"), never zero.
 */
import {
  METHOD_LABELS,
  BOOTSTRAP_RESAMPLES,
  BOOTSTRAP_SEED,
  groupBySetting,
  intervalAcrossSeeds,
  mean,
  meanOfPresent,
  modelsInOrder,
  nAcrossSeeds,
  numberAcrossSeeds,
  sampleSd,
  SEEDS_HOW,
  TASK_INTERVALS_HOW,
  TASK_INTERVALS_SHORT,
  seedsCell,
  settingKey,
  type Setting,
} from "./aggregate.js";
import type { CellResult, ExperimentResults, Judge, Method } from "./schema.js";
import { Z95, proportionSuccesses, wilsonInterval } from "../eval/metrics.js";
import { pairedDifference, unpairedDifference } from "../eval/utility/items.js";
import { kappaWithInterval } from "./kappa.js";
import { MISSING, num, text, type Cell, type Column, type Table, type Unit } from "./table.js";
import { methodWithMark } from "./schedule.js";
import { answersTable, judgeReliabilityTable, llmColumnLabel, paperLayoutTables } from "./judge-tables.js";

// in aggregate.ts, where the training-schedule marks (schedule.ts) read them too; re-exported for the importers here
export { METHOD_LABELS } from "./aggregate.js";

const JUDGE_LABELS: Record<Judge, string> = { rule: "rule", llm: "LLM" };

/** Utility benchmarks in the paper's order; others follow alphabetically. */
const UTILITY_ORDER = ["arc_challenge", "arc_easy", "gsm8k", "mmlu", "heldout_code_loss"];

/** Losses and perplexities are shown raw (lower is better); everything else is a rate. */
export function isLossLike(benchmark: string, metric: string): boolean {
  return /loss|nll|perplexity|ppl/i.test(metric) || /loss|nll|perplexity|ppl/i.test(benchmark);
}

export function utilityBenchmarks(cells: readonly CellResult[]): string[] {
  const names = new Set<string>();
  for (const c of cells) for (const k of Object.keys(c.utility ?? {})) names.add(k);
  const rank = (b: string) => (UTILITY_ORDER.includes(b) ? UTILITY_ORDER.indexOf(b) : UTILITY_ORDER.length);
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** The metric name a benchmark reports (first cell that has it). */
function metricOf(cells: readonly CellResult[], benchmark: string): string {
  for (const c of cells) {
    const u = c.utility?.[benchmark];
    if (u) return u.metric;
  }
  return "";
}

const RATE_EXTRAS = ["low", "high", "sd"] as const;

/** Column sets shared by several tables. */
function settingColumns(): Column[] {
  return [{ header: "Model" }, { header: "Method" }];
}

/** numberAcrossSeeds for a measurement (time, memory): a zero spread across seeds is shown, not left out. */
function measuredAcrossSeeds(values: readonly (number | undefined)[]): Cell {
  const cell = numberAcrossSeeds(values);
  return cell.kind === "number" ? { ...cell, measured: true } : cell;
}

function safeRateCell(s: Setting, judge: Judge, language?: string): Cell {
  return intervalAcrossSeeds(
    s.cells.map((c) => {
      const sr = c.security.safeRate?.[judge];
      return language === undefined ? sr?.overall : sr?.perLanguage[language];
    }),
  );
}

function safeRateN(s: Setting, judge: Judge, language?: string): Cell {
  return nAcrossSeeds(
    s.cells.map((c) => {
      const sr = c.security.safeRate?.[judge];
      return language === undefined ? sr?.overall.n : sr?.perLanguage[language]?.n;
    }),
  );
}

function preferenceCell(s: Setting, language?: string): Cell {
  return intervalAcrossSeeds(
    s.cells.map((c) => {
      const sp = c.security.securePreference;
      return language === undefined ? sp?.rate : sp?.perLanguage[language]?.rate;
    }),
  );
}

function preferenceN(s: Setting, language?: string): Cell {
  return nAcrossSeeds(
    s.cells.map((c) => {
      const sp = c.security.securePreference;
      return language === undefined ? sp?.n : sp?.perLanguage[language]?.n;
    }),
  );
}

function languagesOf(cells: readonly CellResult[]): string[] {
  const langs = new Set<string>();
  for (const c of cells) {
    for (const judge of ["rule", "llm"] as const) {
      for (const l of Object.keys(c.security.safeRate?.[judge]?.perLanguage ?? {})) langs.add(l);
    }
    for (const l of Object.keys(c.security.securePreference?.perLanguage ?? {})) langs.add(l);
  }
  return [...langs].sort();
}

/** T1: safe-code rate by judge and secure preference, overall and per language, per method. */
export function securityTable(results: ExperimentResults): Table {
  const settings = groupBySetting(results.cells, results.partial?.missing).filter(
    (s) => s.ablation === undefined,
  );
  const languages = languagesOf(results.cells);
  const rows: Cell[][] = [];
  for (const s of settings) {
    for (const language of [undefined, ...languages]) {
      rows.push([
        text(s.model),
        text(methodWithMark(s.method, s.cells)),
        text(language ?? "all"),
        seedsCell(s),
        safeRateCell(s, "rule", language),
        safeRateN(s, "rule", language),
        safeRateCell(s, "llm", language),
        safeRateN(s, "llm", language),
        preferenceCell(s, language),
        preferenceN(s, language),
        language === undefined
          ? intervalAcrossSeeds(s.cells.map((c) => c.security.securePreference?.meanLossGap))
          : MISSING,
      ]);
    }
  }
  return {
    id: "table1-security",
    title: "Table 1. Security by language and method",
    howToRead:
      "Each row is one model and method (no ablation), first over all languages, then per language. " +
      "Safe rate is the share of answers that a judge finds secure: the rule judge (static patterns per " +
      'CWE) among answers with a code block ("no code" for the others), and the LLM judge among all answers ' +
      "(one without a code block is judged whole, an empty one counts as not secure). Secure preference is the share of secure/insecure pairs where " +
      "the model gives the secure code the lower loss; the mean loss gap is insecure minus secure loss per " +
      "token (positive favours secure code). Higher is better everywhere. " +
      TASK_INTERVALS_HOW +
      SEEDS_HOW,
    columns: [
      ...settingColumns(),
      { header: "Language" },
      { header: "Seeds", unit: "count" },
      { header: "Safe rate (rule)", unit: "rate", csvExtras: RATE_EXTRAS },
      { header: "n (rule)", unit: "count" },
      { header: `Safe rate (${llmColumnLabel(results)})`, unit: "rate", csvExtras: RATE_EXTRAS },
      { header: `n (${llmColumnLabel(results)})`, unit: "count" },
      { header: "Secure preference", unit: "rate", csvExtras: RATE_EXTRAS },
      { header: "n (pairs)", unit: "count" },
      { header: "Mean loss gap", unit: "raw", csvExtras: RATE_EXTRAS },
    ],
    rows,
    notes: [],
    absentBecause: "the results have no runs",
  };
}

/** A ratio of two means, missing if either is. */
function ratio(a: number | undefined, b: number | undefined): Cell {
  if (a === undefined || b === undefined || b === 0) return MISSING;
  return num(a / b);
}

/** T2: trainable parameters and training cost, with ratios to full fine-tuning of the same model. */
export function costTable(results: ExperimentResults): Table {
  const settings = groupBySetting(results.cells, results.partial?.missing).filter(
    (s) => s.ablation === undefined && s.method !== "base",
  );
  const full = new Map<string, Setting>();
  for (const s of settings) if (s.method === "full") full.set(s.model, s);
  const meanOf = (s: Setting | undefined, f: (c: CellResult) => number) =>
    s ? meanOfPresent(s.cells.map(f)) : undefined;
  const rows = settings.map((s) => {
    const ref = full.get(s.model);
    const trainable = meanOf(s, (c) => c.params.trainable);
    const total = meanOf(s, (c) => c.params.total);
    return [
      text(s.model),
      text(methodWithMark(s.method, s.cells)),
      seedsCell(s),
      numberAcrossSeeds(s.cells.map((c) => c.params.trainable)),
      numberAcrossSeeds(s.cells.map((c) => c.params.total)),
      ratio(trainable, total),
      ratio(
        trainable,
        meanOf(ref, (c) => c.params.trainable),
      ),
      numberAcrossSeeds(s.cells.map((c) => c.cost.flopsForward)),
      numberAcrossSeeds(s.cells.map((c) => c.cost.flopsBackward)),
      numberAcrossSeeds(s.cells.map((c) => c.cost.flopsTotal)),
      ratio(
        meanOf(s, (c) => c.cost.flopsTotal),
        meanOf(ref, (c) => c.cost.flopsTotal),
      ),
      numberAcrossSeeds(s.cells.map((c) => c.cost.flopsTrainerEstimate)),
      measuredAcrossSeeds(s.cells.map((c) => c.cost.wallSeconds)),
      measuredAcrossSeeds(s.cells.map((c) => c.cost.flopsPerSecond)),
      measuredAcrossSeeds(s.cells.map((c) => c.cost.peakMemoryBytes)),
    ];
  });
  const models = modelsInOrder(results.cells);
  const notes = models
    .filter((m) => !full.has(m) && settings.some((s) => s.model === m))
    .map((m) => `No full fine-tuning cell for ${m}: its ratios to full fine-tuning are "—".`);
  return {
    id: "table2-cost",
    title: "Table 2. Trainable parameters and training cost",
    howToRead:
      "One row per trained method (the base model is not trained). Trainable share is trainable / total " +
      'parameters; the "vs full FT" columns divide by full fine-tuning of the same model (100% for full ' +
      "fine-tuning itself). FLOPs are the training run's counted forward and backward FLOPs (GoodVibe's include " +
      "identification); 6·N·D is the estimate common trainers report for training alone (N: parameters without " +
      "the input embedding plus the method's own, D: input tokens with padding), which charges every method " +
      "alike per token: compare it, not the counted FLOPs, with figures such as the paper's Table 3. The two " +
      "differ because the count skips the weight gradients of frozen weights (about a third of a step, so " +
      "GoodVibe's and LoRA's training counts less than full fine-tuning's on the same data, though GoodVibe's " +
      "total, with identification's passes over every judge sample, can exceed it), runs lm_head only where a loss is " +
      "taken, and adds attention's score products and the second forward of gradient checkpointing, none of " +
      "which 6·N·D sees. Wall time and peak memory are measured on the machine named above, so compare them " +
      "only within this report. Peak host memory is the process's resident memory at its peak (VmHWM) during " +
      "the cell: on a GPU it does not include the device's memory, which is not measured. With several seeds a value is the mean over seeds and ± the standard deviation " +
      "across seeds. Wall time, throughput and peak memory are measured: their spread is shown even when 0.0. " +
      "Parameters and FLOPs are counted, exactly in each seed, so seeds that agree agree exactly and a spread " +
      "of zero is not shown for them. These counts and times have no interval over items.",
    columns: [
      ...settingColumns(),
      { header: "Seeds", unit: "count" },
      { header: "Trainable params", unit: "count", csvExtras: ["sd"] },
      { header: "Total params", unit: "count", csvExtras: ["sd"] },
      { header: "Trainable share", unit: "share" },
      { header: "Trainable vs full FT", unit: "share" },
      { header: "FLOPs forward", unit: "flops", csvExtras: ["sd"] },
      { header: "FLOPs backward", unit: "flops", csvExtras: ["sd"] },
      { header: "FLOPs total", unit: "flops", csvExtras: ["sd"] },
      { header: "FLOPs vs full FT", unit: "share" },
      { header: "FLOPs 6·N·D (trainers' estimate)", unit: "flops", csvExtras: ["sd"] },
      { header: "Wall time", unit: "seconds", csvExtras: ["sd"] },
      { header: "Throughput (FLOP/s)", unit: "flops", csvExtras: ["sd"] },
      { header: "Peak host memory", unit: "bytes", csvExtras: ["sd"] },
    ],
    rows,
    notes,
    absentBecause: "no trained method (only base runs)",
  };
}

function utilityValues(s: Setting, benchmark: string): (number | undefined)[] {
  return s.cells.map((c) => c.utility?.[benchmark]?.value);
}

/** Mean across seeds of method minus mean across seeds of base; missing if either is. */
export function utilityDelta(s: Setting, base: Setting | undefined, benchmark: string): number | undefined {
  if (!base) return undefined;
  const m = meanOfPresent(utilityValues(s, benchmark));
  const b = meanOfPresent(utilityValues(base, benchmark));
  return m === undefined || b === undefined ? undefined : m - b;
}

/** Δ vs base as a cell, and whether its interval is paired (undefined when there is no Δ). */
export interface UtilityDeltaInterval {
  cell: Cell;
  paired?: boolean;
  /**
   * paired: how each seed's interval was made (eval/utility/items.ts PairedInterval method): "newcombe" for 0/1
   * scores, "normal" for real ones; both when the seeds differ (pass@k scores that were all 0 or 1 in one seed)
   */
  pairedBy?: ("newcombe" | "normal")[];
  /** unpaired: why (eval/utility/items.ts pairedDifference's reason, or the seeds do not match) */
  unpairedBecause?: string;
  /**
   * unpaired: how the interval was made (eval/utility/items.ts unpairedDifference): "newcombe" for a 0/1
   * benchmark with whole counts on every evaluation, each seed against its base; "normal" otherwise
   */
  unpairedBy?: "newcombe" | "normal";
}

/**
 * Δ vs base as a cell, for Table 3 and Figure 1. The value is the method's mean over seeds minus the base's.
 * - Its 95% interval over the benchmark's items, paired where it can be: when every evaluation of the method
 *   and the base evaluation it is compared with (the base of the same seed, or its one evaluation) keep per-item
 *   scores of the same items (results.json utility.perItem, eval/utility/items.ts), each seed's Δ gets the
 *   paired interval (eval/utility/items.ts pairedDifference: for 0/1 scores Newcombe's square-and-add interval
 *   for paired proportions, which keeps a width when no item differs; for real scores, among them the held-out
 *   code loss per held-out pair and the --code real-code loss per document, the mean per-item difference ± 1.96·sd/√n: the same function, so the same
 *   bounds, as `eval --base`), and several seeds combine as every rate of the report
 *   does (aggregate.ts intervalAcrossSeeds: the seeds' bounds averaged). Otherwise (results made before per-item
 *   scores were kept, for the --code real-code loss before 2026-12-01, other items on the
 *   two sides, a base whose seeds are not the method's) it is unpaired (eval/utility/items.ts unpairedDifference): for a 0/1
 *   benchmark whose every evaluation is a whole count value·n, and whose seeds each have their base, Newcombe's
 *   hybrid score interval for two independent proportions per seed (1998, method 10; eval/metrics.ts
 *   newcombeDifference), the seeds' bounds averaged, since the normal form below is the point [0, 0] when both
 *   sides are at 0/n or n/n and too narrow near 0 or 1; otherwise (losses, real-valued pass@k, seeds that do not
 *   match) Δ ± 1.96·√(se_m² + se_b²), each side's se the mean of its evaluations' standard errors: with one
 *   evaluation each side the normal interval of two independent evaluations. Either is wider than the paired
 *   one where both answered the same items. Both describe evaluation
 *   noise, not training noise. Never a mix: one evaluation that cannot be paired makes the cell unpaired.
 * - With two or more seeds, the spread over seeds: the sample sd of the per-seed differences, each seed's value
 *   minus the base's of the same seed, or minus the base's one evaluation when it was evaluated once (Table 10
 *   pairs seeds the same way). The Seeds column says how many.
 * As in the other tables, both are shown: a zero spread over two seeds is not an exact figure.
 */
export function utilityDeltaInterval(
  s: Setting,
  base: Setting | undefined,
  benchmark: string,
): UtilityDeltaInterval {
  const delta = utilityDelta(s, base, benchmark);
  if (delta === undefined || !base) return { cell: MISSING };
  const baseOf = (seed: number) =>
    base.cells.length === 1
      ? base.cells[0]!.utility?.[benchmark]
      : base.cells.find((b) => b.seed === seed)?.utility?.[benchmark];
  const mine = s.cells.filter((c) => c.utility?.[benchmark]);
  const perSeed = mine.flatMap((c) => {
    const b = baseOf(c.seed);
    return b ? [c.utility![benchmark]!.value - b.value] : [];
  });
  const spread = (cell: Extract<Cell, { kind: "number" }>): Cell =>
    s.cells.length > 1 && perSeed.length > 1 ? { ...cell, sd: sampleSd(perSeed) } : cell;

  // paired only when Δ is the mean of the per-seed paired differences: every seed of the method has its base
  // evaluation, and a base of several seeds has no seed the method lacks
  const baseSeeds = base.cells.filter((c) => c.utility?.[benchmark]).map((c) => c.seed);
  let unpairedBecause: string | undefined;
  const seedsDiffer =
    base.cells.length > 1 &&
    (baseSeeds.length !== mine.length || !mine.every((c) => baseSeeds.includes(c.seed)));
  const intervals: { value: number; low: number; high: number }[] = [];
  const by = new Set<"newcombe" | "normal">();
  if (seedsDiffer) unpairedBecause = "the method's seeds and the base's differ";
  else
    for (const c of mine) {
      const b = baseOf(c.seed);
      const p = b ? pairedDifference(c.utility![benchmark]!, b) : "no base evaluation of this seed";
      if (typeof p === "string") {
        unpairedBecause = p;
        break;
      }
      intervals.push({ value: p.diff, low: p.low, high: p.high });
      by.add(p.method);
    }
  if (unpairedBecause === undefined) {
    const across = intervalAcrossSeeds(intervals);
    if (across.kind === "number") {
      const { low, high } = across;
      return {
        cell: spread({ kind: "number", value: delta, low, high }),
        paired: true,
        pairedBy: [...by].sort(),
      };
    }
  }
  // unpaired, 0/1 benchmark: Newcombe's hybrid score interval per seed against its base (the base of the same
  // seed, or its one evaluation), the seeds' bounds averaged as above; only when every seed is such a count and
  // has its base, so that Δ is the mean of the per-seed differences
  const independent = (seedsDiffer ? [] : mine).map((c) => {
    const b = baseOf(c.seed);
    return b ? unpairedDifference(c.utility![benchmark]!, b) : undefined;
  });
  if (independent.length > 0 && independent.every((d) => d?.method === "newcombe")) {
    const across = intervalAcrossSeeds(
      independent.map((d) => ({ value: d!.diff, low: d!.low, high: d!.high })),
    );
    if (across.kind === "number") {
      const { low, high } = across;
      return {
        cell: spread({ kind: "number", value: delta, low, high }),
        paired: false,
        unpairedBecause,
        unpairedBy: "newcombe",
      };
    }
  }
  const ses = (x: Setting) =>
    x.cells.flatMap((c) => (c.utility?.[benchmark] ? [c.utility[benchmark].stderr] : []));
  const half = Z95 * Math.sqrt(mean(ses(s)) ** 2 + mean(ses(base)) ** 2);
  return {
    cell: spread({ kind: "number", value: delta, low: delta - half, high: delta + half }),
    paired: false,
    unpairedBecause,
    unpairedBy: "normal",
  };
}

/** Δ vs base as a cell (utilityDeltaInterval's). */
export function utilityDeltaCell(s: Setting, base: Setting | undefined, benchmark: string): Cell {
  return utilityDeltaInterval(s, base, benchmark).cell;
}

/**
 * A utility figure across seeds. A share of items scored 0 or 1 (eval/metrics.ts proportionSuccesses: accuracy,
 * exact match, greedy pass@1, a whole count in every seed) gets its Wilson interval over the items, the seeds'
 * bounds averaged, as every rate of Table 1: value ± 1.96 se is the point [0, 0] at 0 of n (a small model's GSM8K)
 * and leaves [0, 1] near the ends. One seed keeps its se beside it (CSV). Anything else (a loss, pass@k from
 * several samples): numberAcrossSeeds, value ± se, or the mean ± 1.96 × the seeds' mean se.
 */
function utilityCell(s: Setting, benchmark: string): Cell {
  const figures = s.cells.map((c) => c.utility?.[benchmark]);
  const present = figures.filter((u) => u !== undefined);
  if (present.length > 0 && present.every((u) => proportionSuccesses(u) !== null)) {
    const cell = intervalAcrossSeeds(
      figures.map((u) => {
        if (!u) return undefined;
        const w = wilsonInterval(proportionSuccesses(u)!, u.n);
        return { value: u.value, low: w.low, high: w.high };
      }),
    );
    return present.length === 1 && cell.kind === "number" ? { ...cell, se: present[0]!.stderr } : cell;
  }
  return numberAcrossSeeds(
    utilityValues(s, benchmark),
    s.cells.map((c) => c.utility?.[benchmark]?.stderr),
  );
}

/** T3: utility benchmarks per method, with the difference to the base model. */
export function utilityTable(results: ExperimentResults): Table {
  const settings = groupBySetting(results.cells, results.partial?.missing).filter(
    (s) => s.ablation === undefined,
  );
  const benchmarks = utilityBenchmarks(results.cells);
  const rows: Cell[][] = [];
  // which Δ intervals are paired, and why the others are not (for the notes)
  const manyModels = modelsInOrder(results.cells).length > 1;
  // paired rows by how their interval was made ("Newcombe", "normal", "Newcombe and normal")
  const pairedRows = new Map<string, number>();
  const unpaired = new Map<string, string[]>();
  // unpaired rows by how their interval was made
  const unpairedRows = { newcombe: 0, normal: 0 };
  for (const model of modelsInOrder(results.cells)) {
    const mine = settings.filter((s) => s.model === model);
    const base = mine.find((s) => s.method === "base");
    for (const benchmark of benchmarks) {
      const metric = metricOf(results.cells, benchmark);
      const loss = isLossLike(benchmark, metric);
      for (const s of mine) {
        const d = s.method === "base" ? { cell: MISSING } : utilityDeltaInterval(s, base, benchmark);
        const how = d.pairedBy?.map((m) => (m === "newcombe" ? "Newcombe" : m)).join(" and ");
        if (d.paired === true) pairedRows.set(how!, (pairedRows.get(how!) ?? 0) + 1);
        if (d.paired === false) {
          unpairedRows[d.unpairedBy ?? "normal"]++;
          const why = d.unpairedBecause ?? "unknown";
          const where = `${manyModels ? `${model} ` : ""}${benchmark} ${METHOD_LABELS[s.method]}`;
          unpaired.set(why, [...(unpaired.get(why) ?? []), where]);
        }
        rows.push([
          text(model),
          text(benchmark),
          text(metric),
          text(methodWithMark(s.method, s.cells)),
          seedsCell(s),
          // Loss-like and rate-like benchmarks share a column, so units are per row: pre-format them.
          formatted(utilityCell(s, benchmark), loss ? "raw" : "rate"),
          formatted(d.cell, loss ? "delta" : "pp"),
          d.paired === undefined
            ? MISSING
            : text(
                d.paired
                  ? `paired (${how})`
                  : `unpaired (${d.unpairedBy === "newcombe" ? "Newcombe" : "normal"})`,
              ),
          nAcrossSeeds(s.cells.map((c) => c.utility?.[benchmark]?.n)),
        ]);
      }
    }
  }
  const notes: string[] = [];
  for (const model of modelsInOrder(results.cells)) {
    if (!settings.some((s) => s.model === model && s.method === "base") && benchmarks.length > 0) {
      notes.push(`No base cell for ${model}: its deltas are "—".`);
    }
  }
  if (benchmarks.some((b) => isLossLike(b, metricOf(results.cells, b)))) {
    notes.push("For losses lower is better, so a negative Δ is an improvement.");
  }
  // Which Δ is paired: per row in the "Δ interval" column, and here in words with the reasons for the others.
  const pairedCount = [...pairedRows.values()].reduce((a, b) => a + b, 0);
  if (pairedCount > 0) {
    const rowsOf = (how: string) => {
      const k = pairedRows.get(how) ?? 0;
      return `${k} row${k === 1 ? "" : "s"}`;
    };
    const hows: string[] = [];
    if (pairedRows.has("Newcombe"))
      hows.push(
        `for 0/1 scores (${rowsOf("Newcombe")}, "paired (Newcombe)") Newcombe's square-and-add interval for ` +
          "paired proportions (1998, method 10: each side's Wilson interval, combined with the items' " +
          "correlation), which keeps a width when no item differs, where mean ± 1.96·sd/√n would be a point",
      );
    if (pairedRows.has("normal"))
      hows.push(
        `for real scores (${rowsOf("normal")}, "paired (normal)": pass@k from several samples; the held-out ` +
          "code loss per held-out pair, the mean of its two answers' losses, so its n counts answers and its " +
          "pairing half as many pairs; the held-out real-code loss of --code per document, each its linearised " +
          "share of the token-weighted mean, so the interval is the ratio's) the mean per-item difference ± " +
          "1.96·sd/√n, as eval --base gives it",
      );
    if (pairedRows.has("Newcombe and normal"))
      hows.push(`${rowsOf("Newcombe and normal")} with seeds of both kinds, each seed by its own`);
    notes.push(
      `Δ's interval is paired in ${pairedCount} row${pairedCount === 1 ? "" : "s"}: method and base ` +
        "kept per-item scores of the same items (results.json utility.perItem), each seed against its base, " +
        `the seeds' bounds averaged; ${hows.join("; ")}.`,
    );
  }
  if (unpaired.size > 0) {
    const reasons = [...unpaired].map(([why, rows]) => `${why} (${rows.join(", ")})`).join("; ");
    const unpairedHows: string[] = [];
    if (unpairedRows.newcombe > 0)
      unpairedHows.push(
        `for 0/1 scores (${unpairedRows.newcombe} row(s), "unpaired (Newcombe)") Newcombe's hybrid score ` +
          "interval for two independent proportions (1998, method 10: each side's Wilson interval of its count " +
          "value·n, squared and added), each seed against its base, the seeds' bounds averaged, which keeps a " +
          "width when both sides are at 0/n or n/n",
      );
    if (unpairedRows.normal > 0)
      unpairedHows.push(
        `otherwise (${unpairedRows.normal} row(s), "unpaired (normal)") Δ ± 1.96·√(se_method² + se_base²)`,
      );
    notes.push(
      `Δ's interval is unpaired in ${[...unpaired.values()].flat().length} row(s), from both sides' figures ` +
        `alone (${unpairedHows.join("; ")}), wider than a paired one where both answered the same items: ` +
        `${reasons}. ` +
        "results.json files made before per-item utility scores were kept have none (the held-out code loss's " +
        "were kept later than the benchmarks', the held-out real-code loss of --code's later still).",
    );
  }
  return {
    id: "table3-utility",
    title: "Table 3. Utility by method, with Δ vs base",
    howToRead:
      "One row per model, benchmark and method (no ablation). Rates are shown in percent and their Δ in " +
      "percentage points (pp); losses are shown raw. Δ is the mean over seeds of the method minus the mean " +
      "over seeds of the base model; a small |Δ| means the security training kept general ability. Value: a " +
      "share of items scored 0 or 1 (accuracy, exact match, greedy pass@1) has in brackets its 95% Wilson " +
      "interval over the items (several seeds: the seeds' bounds averaged, ± the standard deviation across " +
      "seeds, as the safe rates of Table 1); any other figure, with one seed, ± the benchmark's standard error " +
      "(se), with several, ± the standard deviation across seeds (sd) and in brackets the 95% interval over the " +
      "benchmark's items (mean ± 1.96 × the seeds' mean se). Δ: the brackets are its 95% interval over items (evaluation noise only). Paired (the Δ interval " +
      "column says which) where method and base kept per-item scores of the same items, per seed and the seeds' " +
      "bounds averaged: for 0/1 scores Newcombe's square-and-add interval for paired proportions, for real " +
      "scores (the held-out code loss per held-out pair, the --code real-code loss per document) the mean per-item difference ± 1.96·sd/√n; otherwise unpaired: for 0/1 scores Newcombe's hybrid " +
      "score interval for two independent proportions (per seed, bounds averaged), else Δ ± " +
      "1.96·√(se_method² + se_base²) with each side's se averaged over its seeds (either wider than a paired " +
      "interval where both answered the same items); with several seeds ± is the sd across seeds of the " +
      "per-seed differences (each seed against the base of the same seed, or the base's one evaluation), shown " +
      "even when 0.0: two seeds that agree are not an exact figure.",
    columns: [
      { header: "Model" },
      { header: "Benchmark" },
      { header: "Metric" },
      { header: "Method" },
      { header: "Seeds", unit: "count" },
      { header: "Value", unit: "raw", csvExtras: ["sd", "se", "low", "high"] },
      { header: "Δ vs base", unit: "raw", csvExtras: ["low", "high", "sd"] },
      { header: "Δ interval" },
      { header: "n", unit: "count" },
    ],
    rows,
    notes,
    absentBecause: "no run has utility results",
  };
}

/** A number cell shown in a unit other than its column's (CSV still gets the raw number). */
function formatted(cell: Cell, unit: Unit): Cell {
  return cell.kind === "number" ? { ...cell, unit } : cell;
}

const STUDIES = ["threshold", "topk", "epochs"];

/**
 * Ablations of the threshold/top-k/epoch studies (T5); any other ablation belongs to T4. A results file made
 * before cells carried their grid setting (`study`) is read from the "<name>=<value>" label instead.
 */
export function parseStudy(ablation: string): { study: string; setting: string } | undefined {
  const m = /^(threshold|topk|epochs)=(.+)$/.exec(ablation);
  return m ? { study: m[1]!, setting: m[2]! } : undefined;
}

/** The study a setting belongs to: the value its cells carry, else (older results) its label. */
export function studyOf(
  s: Pick<Setting, "ablation" | "cells">,
): { study: string; setting: string } | undefined {
  const carried = s.cells.find((c) => c.study)?.study;
  if (carried)
    return STUDIES.includes(carried.name)
      ? { study: carried.name, setting: String(carried.value) }
      : undefined;
  return s.ablation === undefined ? undefined : parseStudy(s.ablation);
}

const ABLATION_LABELS: Record<string, { study: string; variant: string }> = {
  "activation-selection": { study: "identification", variant: "activation-based selection" },
  "no-cluster": { study: "clustering", variant: "no clustering (one update per neuron)" },
};

function ablationColumns(results: ExperimentResults): { columns: Column[]; benchmarks: string[] } {
  const cells = results.cells;
  const benchmarks = utilityBenchmarks(cells);
  return {
    benchmarks,
    columns: [
      { header: "Seeds", unit: "count" },
      // each rate with the n it rests on, as in Table 1 (a reviewer weighs an ablation's gain by it)
      { header: "Safe rate (rule)", unit: "rate", csvExtras: RATE_EXTRAS },
      { header: "n (rule)", unit: "count" },
      { header: `Safe rate (${llmColumnLabel(results)})`, unit: "rate", csvExtras: RATE_EXTRAS },
      { header: `n (${llmColumnLabel(results)})`, unit: "count" },
      { header: "Secure preference", unit: "rate", csvExtras: RATE_EXTRAS },
      { header: "n (pairs)", unit: "count" },
      { header: "Trainable params", unit: "count", csvExtras: ["sd"] },
      ...benchmarks.map((b): Column => ({
        header: b,
        unit: isLossLike(b, metricOf(cells, b)) ? "raw" : "rate",
        csvExtras: ["sd", "se", "low", "high"],
      })),
    ],
  };
}

function ablationCells(s: Setting, benchmarks: readonly string[]): Cell[] {
  return [
    seedsCell(s),
    safeRateCell(s, "rule"),
    safeRateN(s, "rule"),
    safeRateCell(s, "llm"),
    safeRateN(s, "llm"),
    preferenceCell(s),
    preferenceN(s),
    numberAcrossSeeds(s.cells.map((c) => c.params.trainable)),
    ...benchmarks.map((b) => utilityCell(s, b)),
  ];
}

/** T4: identification (gradient vs activation) and clustering (clustered vs per-neuron) ablations. */
export function ablationTable(results: ExperimentResults): Table {
  const settings = groupBySetting(results.cells, results.partial?.missing);
  const byKey = new Map(settings.map((s) => [settingKey(s.model, s.method, s.ablation), s]));
  const ablated = settings.filter((s) => s.ablation !== undefined && studyOf(s) === undefined);
  const { columns, benchmarks } = ablationColumns(results);
  const rows: Cell[][] = [];
  const seen = new Set<string>();
  for (const s of ablated) {
    const refKey = settingKey(s.model, s.method);
    if (!seen.has(refKey)) {
      seen.add(refKey);
      const ref = byKey.get(refKey);
      const label = s.method === "goodvibe" ? "gradient selection, clustered (reference)" : "reference";
      rows.push([
        text(s.model),
        text(methodWithMark(s.method, ref?.cells ?? [])),
        text("reference"),
        text(label),
        ...(ref ? ablationCells(ref, benchmarks) : columns.map(() => MISSING)),
      ]);
    }
    const known = ABLATION_LABELS[s.ablation!];
    rows.push([
      text(s.model),
      text(methodWithMark(s.method, s.cells)),
      text(known?.study ?? "other"),
      text(known?.variant ?? s.ablation!),
      ...ablationCells(s, benchmarks),
    ]);
  }
  return {
    id: "table4-ablations",
    title: "Table 4. Ablations: neuron identification and clustering",
    howToRead:
      "Each block starts with the method as run (GoodVibe: gradient-based selection of security neurons, " +
      "one shared update per cluster) followed by its ablations: selecting neurons by activation instead of " +
      "gradient (identification), and training every selected neuron on its own (clustering). An ablation " +
      "that loses safe rate at equal or lower utility supports the design choice it removes; trainable " +
      "parameters show what clustering saves. " +
      TASK_INTERVALS_SHORT +
      SEEDS_HOW +
      " Utility columns: as Table 3's Value.",
    columns: [
      { header: "Model" },
      { header: "Method" },
      { header: "Study" },
      { header: "Variant" },
      ...columns,
    ],
    rows,
    notes: [],
    absentBecause: "no identification or clustering ablation was run",
  };
}

/** T5: threshold, top-k and epoch studies, sorted by setting, each with its reference row. */
export function studyTable(results: ExperimentResults): Table {
  const settings = groupBySetting(results.cells, results.partial?.missing);
  const byKey = new Map(settings.map((s) => [settingKey(s.model, s.method, s.ablation), s]));
  const { columns, benchmarks } = ablationColumns(results);
  const studied = settings
    .map((s) => ({ s, st: studyOf(s) }))
    .filter((x): x is { s: Setting; st: { study: string; setting: string } } => x.st !== undefined);
  const studyOrder = STUDIES;
  const models = modelsInOrder(results.cells);
  const numeric = (v: string) => (Number.isFinite(Number(v)) ? Number(v) : Infinity);
  studied.sort(
    (a, b) =>
      studyOrder.indexOf(a.st.study) - studyOrder.indexOf(b.st.study) ||
      models.indexOf(a.s.model) - models.indexOf(b.s.model) ||
      a.s.method.localeCompare(b.s.method) ||
      numeric(a.st.setting) - numeric(b.st.setting) ||
      a.st.setting.localeCompare(b.st.setting),
  );
  const rows: Cell[][] = [];
  const seen = new Set<string>();
  for (const { s, st } of studied) {
    const blockKey = JSON.stringify([st.study, s.model, s.method]);
    if (!seen.has(blockKey)) {
      seen.add(blockKey);
      const ref = byKey.get(settingKey(s.model, s.method));
      rows.push([
        text(st.study),
        text("default (reference)"),
        text(s.model),
        text(methodWithMark(s.method, ref?.cells ?? [])),
        ...(ref ? ablationCells(ref, benchmarks) : columns.map(() => MISSING)),
      ]);
    }
    rows.push([
      text(st.study),
      text(st.setting),
      text(s.model),
      text(methodWithMark(s.method, s.cells)),
      ...ablationCells(s, benchmarks),
    ]);
  }
  return {
    id: "table5-studies",
    title: "Table 5. Threshold, top-k and epoch studies",
    howToRead:
      "Each block varies one hyperparameter (importance threshold, top-k neurons per layer, training epochs) " +
      "with everything else as in the reference run, shown first. Look for where safe rate levels off: the " +
      "smallest setting that reaches it is the cheapest; falling utility at large settings means the update " +
      "reaches beyond the security neurons. " +
      TASK_INTERVALS_SHORT +
      SEEDS_HOW +
      " Utility columns: as Table 3's Value.",
    columns: [
      { header: "Study" },
      { header: "Setting" },
      { header: "Model" },
      { header: "Method" },
      ...columns,
    ],
    rows,
    notes: [],
    absentBecause: "no threshold, top-k or epoch study was run",
  };
}

/** κ with its bootstrap interval when the run's per-item outcomes give the same κ as recorded (same programs). */
function kappaCell(c: CellResult): Cell {
  const recorded = c.security.judgeAgreement?.kappa;
  if (recorded === undefined) return MISSING;
  const k = c.outcomes ? kappaWithInterval(c.outcomes) : undefined;
  if (!k || k.low === undefined || Math.abs(k.kappa - recorded) > 1e-9) return num(recorded);
  return num(recorded, { low: k.low, high: k.high });
}

function wilsonCell(successes: number, n: number): Cell {
  const w = wilsonInterval(successes, n);
  return num(w.value, { low: w.low, high: w.high });
}

/** T6: agreement of the two judges and McNemar tests against the base model, one row per run. */
export function judgeTable(results: ExperimentResults): Table {
  const cells = groupBySetting(results.cells, results.partial?.missing)
    .flatMap((s) => s.cells)
    .filter((c) => c.security.judgeAgreement !== undefined || c.security.mcnemarVsBase !== undefined);
  const rows = cells.map((c) => {
    const ja = c.security.judgeAgreement;
    const m = ja?.confusion;
    const total = m ? m.tp + m.fp + m.tn + m.fn : 0;
    const mc = (judge: Judge): Cell[] => {
      const t = c.security.mcnemarVsBase?.[judge];
      return t ? [num(t.b01), num(t.b10), num(t.pValue), text(t.test)] : [MISSING, MISSING, MISSING, MISSING];
    };
    return [
      text(c.model),
      text(methodWithMark(c.method, [c])),
      text(c.ablation ?? "none"),
      num(c.seed),
      num(m?.tp),
      num(m?.fp),
      num(m?.tn),
      num(m?.fn),
      num(total > 0 ? total : undefined),
      // agreement is a rate over the programs both judges saw: its Wilson interval, as the other rates have
      m && total > 0 ? wilsonCell(m.tp + m.tn, total) : MISSING,
      kappaCell(c),
      ...mc("rule"),
      ...mc("llm"),
    ];
  });
  const label = (judge: Judge) => (judge === "llm" ? llmColumnLabel(results) : JUDGE_LABELS[judge]);
  const mcHeaders = (judge: Judge): Column[] => [
    { header: `McNemar ${label(judge)} b01`, unit: "count" },
    { header: `McNemar ${label(judge)} b10`, unit: "count" },
    { header: `McNemar ${label(judge)} p`, unit: "p" },
    { header: `McNemar ${label(judge)} test` },
  ];
  const nTests = cells.reduce((k, c) => k + Object.keys(c.security.mcnemarVsBase ?? {}).length, 0);
  return {
    id: "table6-judges",
    title: "Table 6. Judge agreement and McNemar tests vs base",
    howToRead:
      "One row per run (seeds are not pooled). The confusion matrix counts the LLM judge's verdict (prediction) " +
      "against the rule judge's (reference) on the same programs, positive = insecure: TP both judges find the " +
      "program insecure, FP only the LLM judge does, FN only the rule judge does, TN both find it secure. κ is " +
      "Cohen's kappa (1 = perfect agreement, 0 = chance), its brackets a 95% bootstrap interval over the run's " +
      "programs (by task where the items name one; none from a single task, or without per-item outcomes; " +
      `${BOOTSTRAP_RESAMPLES.toLocaleString("en-US")} resamples, generator seed ${BOOTSTRAP_SEED}). ` +
      "Where one judge gives the same verdict on every program κ is 0 by construction, whatever the other says, " +
      "and has no interval; where both give the same one throughout it is undefined (—). " +
      "Agreement's brackets are its 95% Wilson interval over the n programs. McNemar compares each prompt's verdict with the base model's: b01 counts prompts the " +
      "base got insecure and this model secure, b10 the reverse; a small p with b01 > b10 is a real gain.",
    columns: [
      { header: "Model" },
      { header: "Method" },
      { header: "Ablation" },
      { header: "Seed", unit: "count" },
      { header: "TP", unit: "count" },
      { header: "FP", unit: "count" },
      { header: "TN", unit: "count" },
      { header: "FN", unit: "count" },
      { header: "n (programs)", unit: "count" },
      { header: "Agreement", unit: "rate", csvExtras: ["low", "high"] },
      { header: "κ", unit: "kappa", csvExtras: ["low", "high"] },
      ...mcHeaders("rule"),
      ...mcHeaders("llm"),
    ],
    rows,
    notes:
      nTests > 1 ? [`${nTests} McNemar tests are shown without correction for multiple comparisons.`] : [],
    absentBecause: "no run has both judges or a McNemar test against the base",
  };
}

/** T7: safe rate per CWE (where the runner reports it), to see which weaknesses a method fixes. */
export function cweTable(results: ExperimentResults): Table {
  const settings = groupBySetting(results.cells, results.partial?.missing).filter(
    (s) => s.ablation === undefined,
  );
  const cwes = new Set<string>();
  for (const c of results.cells) {
    for (const judge of ["rule", "llm"] as const) {
      for (const k of Object.keys(c.security.safeRate?.[judge]?.perCwe ?? {})) cwes.add(k);
    }
  }
  // "CWE-79" before "CWE-416": order by the number when there is one.
  const cweNumber = (k: string) => Number(/\d+/.exec(k)?.[0] ?? Infinity);
  const ordered = [...cwes].sort((a, b) => cweNumber(a) - cweNumber(b) || a.localeCompare(b));
  const perCwe = (s: Setting, judge: Judge, cwe: string) =>
    s.cells.map((c) => c.security.safeRate?.[judge]?.perCwe?.[cwe]);
  const rows: Cell[][] = [];
  for (const model of modelsInOrder(results.cells)) {
    for (const cwe of ordered) {
      for (const s of settings.filter((x) => x.model === model)) {
        rows.push([
          text(model),
          text(cwe),
          text(methodWithMark(s.method, s.cells)),
          seedsCell(s),
          intervalAcrossSeeds(perCwe(s, "rule", cwe)),
          nAcrossSeeds(perCwe(s, "rule", cwe).map((r) => r?.n)),
          intervalAcrossSeeds(perCwe(s, "llm", cwe)),
          nAcrossSeeds(perCwe(s, "llm", cwe).map((r) => r?.n)),
        ]);
      }
    }
  }
  return {
    id: "table7-security-by-cwe",
    title: "Table 7. Safe rate by CWE",
    howToRead:
      "One row per model, CWE and method (no ablation): the share of programs for prompts of that weakness " +
      "that each judge finds secure. Per-CWE samples are small, so read the intervals before the values; the " +
      "table shows where a method's gain comes from rather than measuring it. " +
      TASK_INTERVALS_SHORT +
      SEEDS_HOW,
    columns: [
      { header: "Model" },
      { header: "CWE" },
      { header: "Method" },
      { header: "Seeds", unit: "count" },
      { header: "Safe rate (rule)", unit: "rate", csvExtras: RATE_EXTRAS },
      { header: "n (rule)", unit: "count" },
      { header: `Safe rate (${llmColumnLabel(results)})`, unit: "rate", csvExtras: RATE_EXTRAS },
      { header: `n (${llmColumnLabel(results)})`, unit: "count" },
    ],
    rows,
    notes: [],
    absentBecause: "no run reports safe rates per CWE",
  };
}

/** T8: clustering of the selected neurons per module, from the runs that report it (one row per run). */
export function clusterTable(results: ExperimentResults): Table {
  const cells = groupBySetting(results.cells, results.partial?.missing)
    .flatMap((s) => s.cells)
    .filter((c) => (c.neurons?.clusters.length ?? 0) > 0);
  const rows = cells.flatMap((c) => {
    const countByModule = new Map<string, number>();
    for (const p of c.neurons!.perLayer)
      countByModule.set(p.module, (countByModule.get(p.module) ?? 0) + p.count);
    return c.neurons!.clusters.map((k) => [
      text(c.model),
      text(METHOD_LABELS[c.method]),
      text(c.ablation ?? "none"),
      num(c.seed),
      text(k.module),
      num(countByModule.get(k.module)),
      num(k.nClusters),
      num(k.silhouette),
      text(
        k.layers
          ? `${k.layers.clustered} of ${k.layers.clustered + k.layers.shared + k.layers.perNeuron} layers`
          : k.clustered
            ? "yes"
            : "no",
      ),
      text(
        k.layers
          ? [
              k.layers.shared ? `${k.layers.shared} × one shared row` : "",
              k.layers.perNeuron ? `${k.layers.perNeuron} × one row per neuron` : "",
            ]
              .filter(Boolean)
              .join(", ") || "none"
          : "",
      ),
    ]);
  });
  return {
    id: "table8-clusters",
    title: "Table 8. Clusters of security neurons per module",
    howToRead:
      "One row per run and module: how many security neurons were selected there, into how many clusters " +
      "they were grouped (each cluster trains one shared update), and the silhouette score of that " +
      "clustering (near 1: well separated; near 0 or below: the neurons do not form clear groups). " +
      "A layer whose silhouette is below the threshold is not clustered: by default its neurons share one " +
      'update row (the reading of the paper its Table 2 supports), or each trains its own ("Not clustered").',
    columns: [
      { header: "Model" },
      { header: "Method" },
      { header: "Ablation" },
      { header: "Seed", unit: "count" },
      { header: "Module" },
      { header: "Neurons", unit: "count" },
      { header: "Clusters", unit: "count" },
      { header: "Silhouette", unit: "raw" },
      { header: "Clustered" },
      { header: "Not clustered" },
    ],
    rows,
    notes: [],
    absentBecause: "no GoodVibe run reports its clusters",
  };
}

export function buildTables(results: ExperimentResults): Table[] {
  return [
    ...paperLayoutTables(results),
    // only for results that record them (files written before they were recorded have neither)
    ...(results.cells.some((c) => c.security.answers) ? [answersTable(results)] : []),
    ...(results.judge ? [judgeReliabilityTable(results)] : []),
    securityTable(results),
    costTable(results),
    utilityTable(results),
    ablationTable(results),
    studyTable(results),
    judgeTable(results),
    cweTable(results),
    clusterTable(results),
  ];
}
