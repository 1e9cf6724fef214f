/**
 * Cohen's κ of the two judges on one run's programs, with a 95% bootstrap interval from the run's per-item
 * outcomes: Table 6 showed κ bare, and on a dozen programs it can be anything. The programs are resampled by task
 * when the items name one (instances of one task are not independent, as in the paired tables), else one by one;
 * κ is recomputed on each resample (resamples where it is undefined, every verdict the same, are skipped) and
 * the 2.5% and 97.5% quantiles are the interval. None with fewer than two units, or when a judge gives one
 * verdict throughout (κ is then 0 by construction, in every resample).
 */
import { clusterBootstrapDraws, cohensKappa, kappaOfCounts, quantile } from "../eval/metrics.js";
import type { Outcomes } from "./schema.js";
import { BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED } from "./aggregate.js";

export interface KappaInterval {
  kappa: number;
  low?: number;
  high?: number;
  /** programs both judges gave a verdict on, and the units resampled */
  n: number;
  units: number;
}

/** Both verdicts per item as "insecure" flags (positive = insecure, as Table 6 counts), with each item's group. */
function bothVerdicts(o: Outcomes): { llm: boolean[]; rule: boolean[]; groups: string[] } | undefined {
  if (!o.rule || !o.llm) return undefined;
  const llm: boolean[] = [];
  const rule: boolean[] = [];
  const groups: string[] = [];
  o.ids.forEach((id, i) => {
    const r = o.rule![i];
    const l = o.llm![i];
    if (r === "-" || l === "-") return;
    llm.push(l === "0");
    rule.push(r === "0");
    groups.push(o.groups?.[i] ?? id);
  });
  return llm.length > 0 ? { llm, rule, groups } : undefined;
}

export function kappaWithInterval(
  o: Outcomes,
  opts: { iterations?: number; seed?: number } = {},
): KappaInterval | undefined {
  const v = bothVerdicts(o);
  if (!v) return undefined;
  const kappa = cohensKappa(v.llm, v.rule);
  if (!Number.isFinite(kappa)) return undefined;
  const names = [...new Set(v.groups)];
  const index = new Map(names.map((g, k) => [g, k]));
  // per task: programs, agreements, and each judge's "insecure" count; a resample's κ is from the weighted sums
  // (integer counts, so the same κ as on the resampled programs listed out)
  const n = new Float64Array(names.length);
  const agree = new Float64Array(names.length);
  const llmYes = new Float64Array(names.length);
  const ruleYes = new Float64Array(names.length);
  v.groups.forEach((g, i) => {
    const k = index.get(g)!;
    n[k]! += 1;
    if (v.llm[i] === v.rule[i]) agree[k]! += 1;
    if (v.llm[i]) llmYes[k]! += 1;
    if (v.rule[i]) ruleYes[k]! += 1;
  });
  const out: KappaInterval = { kappa, n: v.llm.length, units: names.length };
  // a judge that gives one verdict throughout makes κ 0 by construction in every resample: no interval
  const constant = (xs: boolean[]) => xs.every((x) => x === xs[0]);
  if (names.length < 2 || constant(v.llm) || constant(v.rule)) return out;
  const sum = (xs: Float64Array, w: Float64Array) => {
    let s = 0;
    for (let k = 0; k < w.length; k++) s += w[k]! * xs[k]!;
    return s;
  };
  const draws = clusterBootstrapDraws(
    names.length,
    (w) => kappaOfCounts(sum(n, w), sum(agree, w), sum(llmYes, w), sum(ruleYes, w)),
    { iterations: opts.iterations ?? BOOTSTRAP_RESAMPLES, seed: opts.seed ?? BOOTSTRAP_SEED },
  );
  if (draws.length === 0) return out;
  out.low = quantile(draws, 0.025);
  out.high = quantile(draws, 0.975);
  return out;
}
