import type { SafetyLanguage } from "../../../data/languages.js";

export type Severity = "high" | "medium" | "low";

export const SEVERITY_RANK: Record<Severity, number> = { low: 1, medium: 2, high: 3 };

export interface Finding {
  ruleId: string;
  /** "CWE-120" style. */
  cwe: string;
  /** 1-based line in the judged code. */
  line: number;
  message: string;
  /** The offending source line, trimmed. */
  snippet: string;
  severity: Severity;
}

export interface Rule {
  /** "<language>/<name>", e.g. "cpp/unbounded-copy". */
  id: string;
  cwe: string;
  language: SafetyLanguage;
  title: string;
  severity: Severity;
  check(code: string): Finding[];
}
