/**
 * A cell's per-item outcomes (report schema `outcomes`): for every evaluation pair, whether the model preferred
 * the secure answer and whether each judge found its generated answer secure. They let the report pair any two
 * cells item by item (McNemar, bootstrap) without the caches of the run.
 */
import type { SecurityPair } from "../data/pairs.js";
import type { ModelEvaluation } from "../recipes/evaluate.js";
import type { Outcomes } from "../report/schema.js";

const mark = (v: boolean | null | undefined): string => (v === true ? "1" : v === false ? "0" : "-");

export function outcomesOf(ev: ModelEvaluation, pairs: readonly SecurityPair[]): Outcomes {
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
