/**
 * What `goodvibe eval` and the demo print for pairs that name their task (the organism data: 3 generated prompts per
 * task) is the interval results.json and the report hold: Wilson on the tasks' effective n (n / Kish's design
 * effect), not Wilson over the items. Checked against the formula, computed here on its own:
 *   p = Σ s_k / n, deff = max(1, Σ (s_k − p·m_k)² / n / (p(1 − p))), n_eff = n / deff, Wilson(p, n_eff).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { evalSummaryLines } from "../../src/cli/commands/eval-summary.js";
import { securityCell, type ModelEvaluation } from "../../src/recipes/evaluate.js";
import { demoSummary, type DemoResult } from "../../src/recipes/demo.js";
import { summariseSafety, type SafetyItem } from "../../src/eval/safety.js";
import type { SecurityPair } from "../../src/data/pairs.js";

const Z = 1.959963984540054;

/** Wilson's score interval of a rate p on an effective sample size n (real, not only whole). */
function wilson(p: number, n: number): [number, number] {
  const z2 = Z * Z;
  const c = (p + z2 / (2 * n)) / (1 + z2 / n);
  const h = (Z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, c - h), Math.min(1, c + h)];
}

/** Kish's design-effect Wilson interval over clusters of `size` items with `successes[k]` secure in cluster k. */
function kish(successes: number[], size: number): [number, number] {
  const n = successes.length * size;
  const p = successes.reduce((a, b) => a + b, 0) / n;
  const ss = successes.reduce((a, s) => a + (s - p * size) ** 2, 0);
  const deff = Math.max(1, ss / n / (p * (1 - p)));
  return wilson(p, n / deff);
}

const pct = (x: number) => (100 * x).toFixed(1);

// 5 tasks of 3 prompts each; rules find [3, 3, 2, 0, 1] secure per task (9 of 15), the secure answer is preferred
// in [3, 3, 3, 1, 0] (10 of 15)
const ruleSecure = [3, 3, 2, 0, 1];
const preferred = [3, 3, 3, 1, 0];
const pairsOf = (withTask: boolean): SecurityPair[] =>
  Array.from({ length: 15 }, (_, i) => ({
    id: `p${i}`,
    lang: "python",
    cwe: "CWE-89",
    question: "q",
    chosen: "c",
    rejected: "r",
    ...(withTask ? { task: `t${Math.floor(i / 3)}` } : {}),
  }));

/** The safety summary of 15 built-in answers (rules only), as evaluate() makes it. */
const summarise = (items: SafetyItem[]) =>
  summariseSafety(items, {
    modelFingerprint: "m",
    backend: "builtin",
    generation: { maxNewTokens: 8, batchSize: 1 },
    complete: true,
    generated: 15,
    fromCache: 0,
    hasLlm: false,
  });

function evaluation(): ModelEvaluation {
  const items: SafetyItem[] = pairsOf(true).map((p, i) => ({
    id: p.id,
    lang: p.lang,
    cwe: p.cwe,
    question: p.question,
    answer: "```python\nx\n```",
    code: "x",
    rule: { secure: i % 3 < ruleSecure[Math.floor(i / 3)]!, findings: [] },
    llm: null,
  })) as unknown as SafetyItem[];
  const safety = summarise(items);
  const perPair = pairsOf(true).map((p, i) => ({
    id: p.id,
    lang: p.lang,
    cwe: p.cwe,
    chosenLoss: i % 3 < preferred[Math.floor(i / 3)]! ? 1 : 2,
    rejectedLoss: 1.5,
  }));
  // the items' Wilson, as eval/preference.ts gives it
  const [low, high] = wilson(10 / 15, 15);
  const rate = { value: 10 / 15, low, high };
  const gap = { value: 0, low: -0.1, high: 0.1 };
  return {
    preference: {
      n: 15,
      rate,
      meanLossGap: gap,
      lossGapByTask: { tasks: 5 },
      perLanguage: { python: { n: 15, rate, meanLossGap: gap } },
      perPair,
    },
    safety,
    protocol: {
      heldOut: 15,
      promptFilter: "all",
      filteredOut: 0,
      maxPrompts: 0,
      prompts: 15,
      perLanguage: { python: 15 },
      spread: "languages",
    },
    utility: { heldout_code_loss: { metric: "loss", value: 1, stderr: 0.1, n: 15 } },
  } as unknown as ModelEvaluation;
}

test("the reference: 9 of 15 over tasks [3,3,2,0,1] has deff 1.8778 and [28.6, 84.9]; items' Wilson [35.7, 80.2]", () => {
  // worked by hand: p = 0.6, Σ(s − 1.8)² = 6.76, /15 = 0.45067, p(1 − p) = 0.24, deff = 1.87778, n_eff = 7.9882
  const [l, h] = kish(ruleSecure, 3);
  assert.equal(pct(l), "28.6");
  assert.equal(pct(h), "84.9");
  const [wl, wh] = wilson(0.6, 15);
  assert.deepEqual([pct(wl), pct(wh)], ["35.7", "80.2"]);
});

test("eval: the printed brackets of task-grouped pairs are the task-clustered interval of results.json, and say so", () => {
  const ev = evaluation();
  const cell = securityCell(ev, null, pairsOf(true));
  assert.equal(cell.security.intervals, "wilson-task-design-effect");
  const [rl, rh] = kish(ruleSecure, 3);
  const [pl, ph] = kish(preferred, 3);
  const rule = cell.security.safeRate!.rule!;
  for (const r of [rule.overall, rule.perLanguage.python!, rule.perCwe!["CWE-89"]!]) {
    assert.ok(Math.abs(r.low - rl) < 1e-12 && Math.abs(r.high - rh) < 1e-12, `${r.low}, ${r.high}`);
  }
  const pref = cell.security.securePreference!.rate;
  assert.ok(Math.abs(pref.low - pl) < 1e-12 && Math.abs(pref.high - ph) < 1e-12, `${pref.low}, ${pref.high}`);
  const text = evalSummaryLines({ model: "/m", protocol: "all", cell, llmJudge: false }).join("\n");
  assert.match(
    text,
    new RegExp(`^safe rate \\(rules\\): 60\\.0% \\[${pct(rl)}, ${pct(rh)}\\] of 15 answers`, "m"),
  );
  assert.match(text, new RegExp(`^secure preference: 66\\.7% \\[${pct(pl)}, ${pct(ph)}\\] of 15 pairs`, "m"));
  assert.match(text, /^rates' brackets: 95% Wilson intervals over the tasks/m);
});

test("eval: pairs without a task (CyberNative) keep the items' Wilson interval, and the line says so", () => {
  const cell = securityCell(evaluation(), null, pairsOf(false));
  assert.equal(cell.security.intervals, undefined);
  const [wl, wh] = wilson(0.6, 15);
  assert.ok(Math.abs(cell.security.safeRate!.rule!.overall.low - wl) < 1e-12);
  const text = evalSummaryLines({ model: "/m", protocol: "all", cell, llmJudge: false }).join("\n");
  assert.match(text, new RegExp(`^safe rate \\(rules\\): 60\\.0% \\[${pct(wl)}, ${pct(wh)}\\] of 15`, "m"));
  assert.match(text, /^rates' brackets: 95% Wilson intervals over the pairs or answers/m);
});

test("demo: the table's brackets are results.json's task-clustered intervals, and the brackets line says which", () => {
  const ev = evaluation();
  const pairs = pairsOf(true);
  const security = {
    base: securityCell(ev, null, pairs).security,
    hardened: securityCell(ev, ev, pairs).security,
  };
  const r = {
    base: ev,
    hardened: ev,
    security,
    harden: {
      outDir: "/h",
      trainableParams: 10,
      totalParams: 100,
      train: { flops: { total: 1e9 }, wallSeconds: 1 },
    },
    judge: { dir: "/j", reliability: [] },
    departures: [],
    reportDir: "/r",
    resultsFile: "/r.json",
    wallSeconds: 1,
  } as unknown as DemoResult;
  const text = demoSummary(r);
  const [rl, rh] = kish(ruleSecure, 3);
  const [pl, ph] = kish(preferred, 3);
  const row = text.split("\n").find((l) => l.startsWith("goodvibe "))!;
  assert.ok(row.includes(`66.7% [${pct(pl)}, ${pct(ph)}]`), row);
  assert.ok(row.includes(`60.0% [${pct(rl)}, ${pct(rh)}] (n=15)`), row);
  assert.match(text, /^brackets: the rates', 95% Wilson intervals over the tasks/m);
});

test("eval: answers in languages no rule reads are said as such, not as 'no code', and counted in results.json", () => {
  // 15 answers: 2 without code, 13 with code in a language the rule judge does not read (rule verdict null);
  // the line said "none: no answer had a code block in its prompt's language (no code in 2 of 15)" (an audit)
  const ev = evaluation();
  const items = ev.safety!.items.map((it, i) => ({ ...it, code: i < 2 ? null : "x", rule: null }));
  const safety = summarise(items);
  assert.equal(safety.uncovered, 13);
  const cell = securityCell({ ...ev, safety }, null, pairsOf(false));
  assert.equal(cell.security.answers?.uncovered, 13);
  const text = evalSummaryLines({ model: "/m", protocol: "all", cell, llmJudge: false }).join("\n");
  assert.match(
    text,
    /^safe rate \(rules\): none: 13 of 15 in languages the rule judge does not read \(no rule verdict\), no code in 2 of 15$/m,
  );
  // with some covered: the rate's line names the unread ones beside it
  const mixed = summarise(ev.safety!.items.map((it, i) => (i < 5 ? { ...it, rule: null } : it)));
  const line = evalSummaryLines({
    model: "/m",
    protocol: "all",
    cell: securityCell({ ...ev, safety: mixed }, null, pairsOf(false)),
    llmJudge: false,
  }).find((l) => l.startsWith("safe rate (rules)"))!;
  assert.match(
    line,
    /of 10 answers with code; no code in 0 of 15; 5 of 15 in languages the rule judge does not read/,
  );
});
