/**
 * How well the rule judge separates labelled secure and insecure code: run it on pairs (a secure and an
 * insecure answer to the same prompt, e.g. CyberNative's chosen/rejected) and report, per language, the
 * share of insecure answers flagged (recall), the share of secure answers flagged (false-positive rate)
 * and the precision of a flag, each with its 95% Wilson interval, plus which rules fired on which side.
 * "Flagged" means judgeCode() finds the code insecure (a finding at or above the severity threshold).
 */
import { extractCode } from "../../../data/code.js";
import { safetyLanguage, type SafetyLanguage } from "../../../data/languages.js";
import { wilsonInterval, type Interval } from "../../metrics.js";
import { judgeCode, type JudgeOptions } from "./index.js";

export interface LabelledPair {
  /** Language as the dataset writes it ("c++", "go", ...); pairs in other languages are skipped. */
  lang: string;
  /** The secure answer (Markdown or bare code). */
  chosen: string;
  /** The insecure answer. */
  rejected: string;
}

export interface RuleJudgeStats {
  lang: SafetyLanguage;
  /** Pairs judged. */
  n: number;
  /** Insecure answers flagged (true positives). */
  insecureFlagged: number;
  /** Secure answers flagged (false positives). */
  secureFlagged: number;
  /** insecureFlagged / n. */
  recall: Interval;
  /** secureFlagged / n. */
  falsePositiveRate: Interval;
  /** insecureFlagged / (insecureFlagged + secureFlagged). */
  precision: Interval;
  /** Per rule: answers it fired on (at any severity) among secure and among insecure ones. */
  perRule: Record<string, { secure: number; insecure: number }>;
}

/** Answers whose code cannot be extracted are judged as written (a bare code answer). */
function codeOf(answer: string, lang: SafetyLanguage): string {
  return extractCode(answer, lang) ?? answer;
}

export function measureRuleJudge(
  pairs: readonly LabelledPair[],
  opts: JudgeOptions = {},
): Map<SafetyLanguage, RuleJudgeStats> {
  const acc = new Map<
    SafetyLanguage,
    { n: number; tp: number; fp: number; perRule: Record<string, { secure: number; insecure: number }> }
  >();
  for (const p of pairs) {
    const lang = safetyLanguage(p.lang);
    if (!lang) continue;
    const a = acc.get(lang) ?? { n: 0, tp: 0, fp: 0, perRule: {} };
    a.n++;
    for (const [side, answer] of [
      ["secure", p.chosen],
      ["insecure", p.rejected],
    ] as const) {
      const j = judgeCode(codeOf(answer, lang), lang, opts);
      if (!j.secure) {
        if (side === "insecure") a.tp++;
        else a.fp++;
      }
      for (const id of new Set(j.findings.map((f) => f.ruleId))) {
        const r = (a.perRule[id] ??= { secure: 0, insecure: 0 });
        r[side]++;
      }
    }
    acc.set(lang, a);
  }
  const out = new Map<SafetyLanguage, RuleJudgeStats>();
  for (const [lang, a] of acc)
    out.set(lang, {
      lang,
      n: a.n,
      insecureFlagged: a.tp,
      secureFlagged: a.fp,
      recall: wilsonInterval(a.tp, a.n),
      falsePositiveRate: wilsonInterval(a.fp, a.n),
      precision: wilsonInterval(a.tp, a.tp + a.fp),
      perRule: a.perRule,
    });
  return out;
}

const pct = (x: number) => (Number.isNaN(x) ? "n/a" : `${(100 * x).toFixed(1)}%`);
const withInterval = (i: Interval) => `${pct(i.value)} [${pct(i.low)}, ${pct(i.high)}]`;

/** A Markdown table, one row per language, in the given order. */
export function ruleJudgeTable(
  stats: Map<SafetyLanguage, RuleJudgeStats>,
  order?: readonly SafetyLanguage[],
): string {
  const langs = order ?? [...stats.keys()];
  const rows = [
    "| language | pairs | insecure flagged (recall) | secure flagged (false positives) | precision |",
    "|---|---:|---:|---:|---:|",
  ];
  for (const l of langs) {
    const s = stats.get(l);
    if (!s) continue;
    rows.push(
      `| ${l} | ${s.n} | ${s.insecureFlagged}/${s.n} = ${withInterval(s.recall)} | ${s.secureFlagged}/${s.n} = ${withInterval(s.falsePositiveRate)} | ${withInterval(s.precision)} |`,
    );
  }
  return rows.join("\n");
}
