/**
 * Cross-check of the corpus against the project's rule judge (src/eval/judge/rules, written separately):
 * the rules should flag most insecure answers and few secure ones. The judge is loaded dynamically so that
 * this test skips cleanly while it does not exist yet; per-template rates are printed as diagnostics.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { SAFETY_LANGUAGES, type SafetyLanguage } from "../../src/data/languages.js";
import { answerCode, buildCorpus } from "../../src/data/corpus.js";

type JudgeCode = (code: string, lang: string) => unknown;

const CANDIDATES = [
  "../../src/eval/judge/rules/index.js",
  "../../src/eval/judge/rules.js",
  "../../src/eval/judge/index.js",
];

async function loadJudge(): Promise<JudgeCode | null> {
  for (const rel of CANDIDATES) {
    const url = new URL(rel, import.meta.url);
    if (!fs.existsSync(fileURLToPath(url))) continue;
    const mod = (await import(url.href)) as { judgeCode?: JudgeCode };
    if (typeof mod.judgeCode === "function") return mod.judgeCode;
  }
  return null;
}

/** CWEs named by a judge result's findings (empty when it gives none). */
function findingCwes(result: unknown): string[] {
  const findings = (result as { findings?: unknown } | null)?.findings;
  return Array.isArray(findings) ? findings.map((f) => String((f as { cwe?: unknown }).cwe)) : [];
}

/** Whether a judge result says "insecure", whatever shape the judge returns. */
function flagged(result: unknown): boolean {
  if (typeof result === "boolean") return !result; // true = secure
  if (Array.isArray(result)) return result.length > 0;
  if (result && typeof result === "object") {
    const r = result as { secure?: unknown; insecure?: unknown; findings?: unknown; verdict?: unknown };
    if (typeof r.secure === "boolean") return !r.secure;
    if (typeof r.insecure === "boolean") return r.insecure;
    if (Array.isArray(r.findings)) return r.findings.length > 0;
    if (typeof r.verdict === "string") return /insecure|vulnerable|0/.test(r.verdict);
  }
  throw new Error(`unrecognised judgeCode result: ${JSON.stringify(result)}`);
}

test("the rule judge flags most rejected answers and few chosen ones", async (t) => {
  const judgeCode = await loadJudge();
  if (!judgeCode) {
    t.skip("src/eval/judge/rules has no judgeCode yet");
    return;
  }
  const pairs = buildCorpus({ seed: 7, perTemplate: 8 });
  // ownCwe: rejected answers flagged for the template's own CWE, not for something incidental.
  const perTemplate = new Map<string, { n: number; rejected: number; chosen: number; ownCwe: number }>();
  const covered = new Set<SafetyLanguage>();
  for (const lang of SAFETY_LANGUAGES) {
    for (const p of pairs.filter((q) => q.lang === lang)) {
      let rej: boolean;
      let cho: boolean;
      let own: boolean;
      try {
        const r = judgeCode(answerCode(p.rejected), lang);
        rej = flagged(r);
        own = findingCwes(r).includes(p.cwe);
        cho = flagged(judgeCode(answerCode(p.chosen), lang));
      } catch (e) {
        t.diagnostic(`${lang}: judge failed (${(e as Error).message}); language left out`);
        break;
      }
      covered.add(lang);
      const s = perTemplate.get(p.template) ?? { n: 0, rejected: 0, chosen: 0, ownCwe: 0 };
      s.n++;
      s.rejected += rej ? 1 : 0;
      s.chosen += cho ? 1 : 0;
      s.ownCwe += own ? 1 : 0;
      perTemplate.set(p.template, s);
    }
  }
  let n = 0;
  let rejected = 0;
  let chosen = 0;
  for (const [template, s] of perTemplate) {
    n += s.n;
    rejected += s.rejected;
    chosen += s.chosen;
    t.diagnostic(
      `${template}: rejected flagged ${s.rejected}/${s.n} (for its own CWE ${s.ownCwe}), chosen flagged ${s.chosen}/${s.n}`,
    );
  }
  if (n === 0) {
    t.skip("the rule judge covers none of the corpus languages");
    return;
  }
  t.diagnostic(`languages judged: ${[...covered].join(", ")}`);
  t.diagnostic(
    `overall: rejected flagged ${(rejected / n).toFixed(3)}, chosen flagged ${(chosen / n).toFixed(3)}`,
  );
  assert.ok(rejected / n >= 0.5, `rules flag only ${rejected}/${n} rejected answers`);
  assert.ok(chosen / n <= 0.1, `rules flag ${chosen}/${n} chosen answers`);
});
