/**
 * The rule-based security judge for C++, Java, Swift and Go: a SAST-style second opinion next to the
 * LLM judge; cheap, deterministic, explainable by rule, CWE and line. Rules work on a lexed view of the
 * code (comments and string contents blanked) with a small intra-snippet data-flow layer (flow.ts):
 * untrusted input (stdin, arguments, environment, request parameters, deserialized data, and for
 * injection sinks the parameters of the snippet's functions) is followed through assignments,
 * concatenation and formatting to sinks (queries, commands, file paths, format strings, reflection,
 * redirects, deserialization), stopping at sanitizers and at validating guards. Memory, bounds,
 * null/nil/optional, error-handling, concurrency and crypto rules complete it; bounds.ts holds the
 * array-length reasoning shared by all four languages. measure.ts scores the judge on labelled pairs.
 * A finding means "insecure"; `secure` is true when no finding reaches the severity threshold.
 */
import type { SafetyLanguage } from "../../../data/languages.js";
import { cppRules } from "./cpp.js";
import { javaRules } from "./java.js";
import { swiftRules } from "./swift.js";
import { goRules } from "./go.js";
import { SEVERITY_RANK, type Finding, type Rule, type Severity } from "./types.js";

export type { Finding, Rule, Severity } from "./types.js";
export { SEVERITY_RANK } from "./types.js";

const RULES: Record<SafetyLanguage, readonly Rule[]> = {
  cpp: cppRules,
  java: javaRules,
  swift: swiftRules,
  go: goRules,
};

/** All rules, or those of one language. */
export function listRules(lang?: SafetyLanguage): Rule[] {
  return lang ? [...RULES[lang]] : Object.values(RULES).flat();
}

export interface JudgeOptions {
  /** Findings at or above this severity make the code insecure; "medium" by default. */
  minSeverity?: Severity;
  /** Run only these rule ids. */
  rules?: readonly string[];
}

export interface Judgement {
  secure: boolean;
  /** Every finding, including those below the threshold, in line order. */
  findings: Finding[];
}

export function judgeCode(code: string, lang: SafetyLanguage, opts: JudgeOptions = {}): Judgement {
  const threshold = SEVERITY_RANK[opts.minSeverity ?? "medium"];
  const rules = RULES[lang].filter((r) => !opts.rules || opts.rules.includes(r.id));
  const findings = rules
    .flatMap((r) => r.check(code))
    .sort((a, b) => a.line - b.line || a.ruleId.localeCompare(b.ruleId));
  return { secure: !findings.some((f) => SEVERITY_RANK[f.severity] >= threshold), findings };
}
