/**
 * A cell's per-item outcomes (report schema `outcomes`): for every evaluation pair, whether the model preferred
 * the secure answer and whether each judge found its generated answer secure. They let the report pair any two
 * cells item by item (McNemar, bootstrap) without the caches of the run.
 */
import type { SecurityPair } from "../data/pairs.js";
import type { PreferenceResult } from "../eval/preference.js";
import type { SafetyResult } from "../eval/safety.js";
import type { CellResult, Outcomes } from "../report/schema.js";
import { clusteredWilsonInterval, tallyByGroup } from "../eval/metrics.js";

const mark = (v: boolean | null | undefined): string => (v === true ? "1" : v === false ? "0" : "-");

/** `ev`: what it reads of a model's evaluation (recipes/evaluate.ts ModelEvaluation) */
export function outcomesOf(
  ev: { preference: PreferenceResult; safety: SafetyResult | null },
  pairs: readonly SecurityPair[],
): Outcomes {
  const pref = new Map(ev.preference.perPair.map((p) => [p.id, p.chosenLoss < p.rejectedLoss]));
  const items = new Map((ev.safety?.items ?? []).map((it) => [it.id, it]));
  const out: Outcomes = {
    ids: pairs.map((p) => p.id),
    langs: pairs.map((p) => p.lang),
    preference: pairs.map((p) => mark(pref.get(p.id))).join(""),
  };
  if (pairs.some((p) => p.task)) out.groups = pairs.map((p) => `${p.lang}:${p.task ?? p.id}`);
  if (ev.safety) {
    out.rule = pairs.map((p) => mark(items.get(p.id)?.rule?.secure)).join("");
    if (ev.safety.items.some((it) => it.llm))
      out.llm = pairs.map((p) => mark(items.get(p.id)?.llm?.secure)).join("");
  }
  return out;
}

type Security = CellResult["security"];
type Rated = { value: number; low: number; high: number };

/**
 * The security rates' intervals where the evaluation pairs name their task (the organism data: several generated
 * prompts per template): items of one task are not independent, so each rate (safe rate by either judge, secure
 * preference; overall, per language and per CWE) gets the design-effect-corrected Wilson interval over the tasks
 * (eval/metrics.ts clusteredWilsonInterval, which says why that and not a bootstrap) in place of the items' Wilson
 * interval, and `intervals` records it. The rates themselves are unchanged: each is recounted from the outcomes,
 * and if any recount disagrees with the recorded rate or n the cell keeps its Wilson intervals throughout (no mix
 * of methods in one cell). Without task ids (CyberNative) nothing changes.
 */
export function withTaskIntervals(
  security: Security,
  outcomes: Outcomes,
  pairs: readonly SecurityPair[],
): Security {
  const groups = outcomes.groups;
  if (!groups) return security;
  const cwe = new Map(pairs.map((p) => [p.id, p.cwe]));
  const interval = (
    marks: string,
    keep: (i: number) => boolean,
    rated: Rated,
    n: number,
  ): Rated | undefined => {
    if (n === 0) return rated;
    const byTask = tallyByGroup(marks, keep, (i) => groups[i]!);
    const c = clusteredWilsonInterval(byTask);
    const total = byTask.reduce((a, t) => a + t.n, 0);
    if (total !== n || Math.abs(c.value - rated.value) > 1e-9) return undefined;
    return { value: rated.value, low: c.low, high: c.high };
  };
  const out: Security = structuredClone(security);
  const all = () => true;
  const lang = (l: string) => (i: number) => outcomes.langs[i] === l;
  const ofCwe = (k: string) => (i: number) => cwe.get(outcomes.ids[i]!) === k;
  const replace = (
    marks: string | undefined,
    keep: (i: number) => boolean,
    r: Rated & { n?: number },
    n: number,
  ) => {
    const w = marks === undefined ? undefined : interval(marks, keep, r, n);
    if (!w) return false;
    r.low = w.low;
    r.high = w.high;
    return true;
  };
  let ok = true;
  const sp = out.securePreference;
  if (sp) {
    ok &&= replace(outcomes.preference, all, sp.rate, sp.n);
    for (const [l, v] of Object.entries(sp.perLanguage))
      ok &&= replace(outcomes.preference, lang(l), v.rate, v.n);
  }
  for (const judge of ["rule", "llm"] as const) {
    const sr = out.safeRate?.[judge];
    if (!sr) continue;
    ok &&= replace(outcomes[judge], all, sr.overall, sr.overall.n);
    for (const [l, v] of Object.entries(sr.perLanguage)) ok &&= replace(outcomes[judge], lang(l), v, v.n);
    for (const [k, v] of Object.entries(sr.perCwe ?? {})) ok &&= replace(outcomes[judge], ofCwe(k), v, v.n);
  }
  if (!ok) return security;
  out.intervals = "wilson-task-design-effect";
  return out;
}
