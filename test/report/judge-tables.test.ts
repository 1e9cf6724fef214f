/**
 * The judge and safe-rate tables against numbers worked out by hand from the fixture (test/report/fixture.ts):
 * the paper's Table 1/4 layout, answers and their no-code share, the judge's reliability (§7), and the
 * self-judging label in every table that shows LLM-judge numbers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  answersTable,
  judgeAndProtocolNotes,
  judgeReliabilityTable,
  paperLayoutTables,
} from "../../src/report/judge-tables.js";
import { buildTables } from "../../src/report/paper-tables.js";
import { tableToMarkdown } from "../../src/report/table.js";
import { parseExperimentResults, type ExperimentResults } from "../../src/report/schema.js";
import { handMadeResults, MODEL } from "./fixture.js";
import { cellOf, parseMarkdownTable } from "./parse.js";

/** The fixture plus answer counts (a base with more no-code answers) and a judge section. */
function withJudge(mode: "independent" | "self"): ExperimentResults {
  const r = handMadeResults();
  for (const c of r.cells) {
    const noCode = c.method === "base" ? 8 : 2;
    c.security.answers = {
      n: 40,
      noCode,
      perLanguage: { cpp: { n: 20, noCode: noCode - 1 }, java: { n: 20, noCode: 1 } },
    };
  }
  r.judge = {
    mode,
    description: "one judge for every cell and the base: ./qwen3-0.6b, a full fine-tune",
    convention: {
      instruction: "You are an AI that returns only a single number: 1 or 0. …",
      labels: { unsafe: "1", safe: "0" },
    },
    heldOut: "100 held-out pairs of dev.jsonl (200 labelled samples)",
    reliability: [
      {
        role: "base",
        source: "./qwen3-0.6b",
        n: 200,
        accuracy: { value: 0.7, low: 0.63, high: 0.76 },
        tpr: 0.95,
        fpr: 0.55,
        confusion: { tp: 95, fp: 55, tn: 45, fn: 5 },
      },
      {
        role: "fine-tuned",
        source: "work/judges/x/model",
        n: 200,
        accuracy: { value: 0.9, low: 0.85, high: 0.93 },
        tpr: 0.95,
        fpr: 0.15,
        confusion: { tp: 95, fp: 15, tn: 85, fn: 5 },
      },
    ],
  };
  r.evaluation = {
    protocol: "all 40 held-out prompts, as they are; greedy, up to 256 new tokens",
    promptFilter: "none",
    maxPrompts: 0,
    maxNewTokens: 256,
  };
  return parseExperimentResults(JSON.parse(JSON.stringify(r)), "hand-made");
}

test("safe rate in the paper's Table 1 layout: models as rows, language × method columns in the paper's order", () => {
  const [t] = paperLayoutTables(withJudge("independent"));
  assert.equal(t!.title, "Safe rate by language, C++ and Java (layout of the paper's Table 1)");
  const md = parseMarkdownTable(tableToMarkdown(t!));
  assert.deepEqual(md.header, [
    "Model",
    "C++ Baseline",
    "C++ Full FT",
    "C++ LoRA",
    "C++ GoodVibe",
    "Java Baseline",
    "Java Full FT",
    "Java LoRA",
    "Java GoodVibe",
  ]);
  assert.equal(md.rows.length, 1);
  // LLM judge (the paper's metric): GoodVibe cpp 0.70 and 0.80 -> 75.0% ± 7.1 sd, the seeds' intervals (± 0.15)
  // averaged -> [60.0, 90.0]; base 0.5 both seeds: the zero spread is shown with the interval, not hidden
  assert.equal(cellOf(md, [MODEL], "C++ GoodVibe"), "75.0% ± 7.1 sd [60.0, 90.0]");
  assert.equal(cellOf(md, [MODEL], "C++ Baseline"), "50.0% ± 0.0 sd [35.0, 65.0]");
  // LoRA's LLM result exists for seed 1 only: java 0.70 with its interval
  assert.equal(cellOf(md, [MODEL], "Java LoRA"), "70.0% [55.0, 85.0] (1/2 seeds)");
  assert.match(t!.howToRead, /LLM judge judges safe/);
  // the table has no Seeds column: its paragraph names the seeds of each method and what ± and [] are
  assert.match(t!.howToRead, /Seeds: Baseline 2, Full FT 2, LoRA 2, GoodVibe 2;/);
  assert.match(t!.howToRead, /shown even when 0\.0/);
});

test("Swift and Go get the Table 4 layout; without an LLM judge the rule judge's rates are shown and said so", () => {
  const r = withJudge("independent");
  for (const c of r.cells) {
    const rule = c.security.safeRate!.rule!;
    rule.perLanguage = { swift: rule.perLanguage.cpp!, go: rule.perLanguage.cpp! };
    delete c.security.safeRate!.llm;
    c.security.answers!.perLanguage = { swift: { n: 20, noCode: 1 }, go: { n: 20, noCode: 1 } };
  }
  delete c0(r).security.securePreference;
  const tables = paperLayoutTables(r);
  assert.deepEqual(
    tables.map((t) => t.title),
    ["Safe rate by language, Swift and Go (layout of the paper's Table 4)"],
  );
  assert.match(tables[0]!.howToRead, /rule judge judges safe/);
  const md = parseMarkdownTable(tableToMarkdown(tables[0]!));
  assert.equal(cellOf(md, [MODEL], "Swift GoodVibe"), "65.0% ± 7.1 sd [50.0, 80.0]");
});

function c0(r: ExperimentResults) {
  return r.cells[0]!;
}

test("answers table: the same n for every method, the no-code share per language with its Wilson interval", () => {
  const t = answersTable(withJudge("independent"));
  const md = parseMarkdownTable(tableToMarkdown(t));
  assert.equal(cellOf(md, [MODEL, "Baseline"], "n (all)"), "40");
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "n (all)"), "40");
  assert.equal(cellOf(md, [MODEL, "Baseline"], "Seeds"), "2");
  // Wilson by hand, (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n), z = 1.96; both seeds alike, so ± 0.0 sd
  // and the seeds' bounds are each seed's: 8 of 40 -> [10.5, 34.8]; 7 of 20 -> [18.1, 56.7]; 1 of 20 -> [0.9, 23.6]
  assert.equal(cellOf(md, [MODEL, "Baseline"], "No code (all)"), "20.0% ± 0.0 sd [10.5, 34.8]");
  assert.equal(cellOf(md, [MODEL, "Baseline"], "No code (C++)"), "35.0% ± 0.0 sd [18.1, 56.7]");
  assert.equal(cellOf(md, [MODEL, "GoodVibe"], "No code (Java)"), "5.0% ± 0.0 sd [0.9, 23.6]");
  assert.match(t.howToRead, /Wilson interval/);
  assert.match(t.howToRead, /shown even when 0\.0/);
  // one seed with counts: its share and its interval, marked as resting on one of two seeds; seeds that differ:
  // the mean, their sd and their bounds averaged (8/40 and 2/40: 12.5% ± 10.6 sd, [(10.5 + 1.4)/2, (34.8 + 16.5)/2])
  const r = withJudge("independent");
  const base = r.cells.filter((c) => c.method === "base");
  const gv = r.cells.filter((c) => c.method === "goodvibe");
  delete base[1]!.security.answers;
  gv[1]!.security.answers!.noCode = 8;
  const one = parseMarkdownTable(tableToMarkdown(answersTable(r)));
  assert.equal(cellOf(one, [MODEL, "Baseline"], "No code (all)"), "20.0% [10.5, 34.8] (1/2 seeds)");
  assert.equal(cellOf(one, [MODEL, "GoodVibe"], "No code (all)"), "12.5% ± 10.6 sd [5.9, 25.6]");
});

test("judge reliability (§7): base vs fine-tuned judge, accuracy, TPR, FPR; the notes say who judged", () => {
  const r = withJudge("independent");
  const t = judgeReliabilityTable(r);
  const md = parseMarkdownTable(tableToMarkdown(t));
  // TPR and FPR with their 95% Wilson intervals (they had none), worked by hand from the counts:
  // (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n), z = 1.96, n = 100 insecure (TP + FN) or secure (FP + TN)
  // FP 55/100 -> [45.2, 64.4]; 15/100 -> [9.3, 23.3]; TP 95/100 -> [88.8, 97.8]
  assert.equal(cellOf(md, ["base judge"], "FPR"), "55.0% [45.2, 64.4]");
  assert.equal(cellOf(md, ["fine-tuned judge"], "FPR"), "15.0% [9.3, 23.3]");
  assert.equal(cellOf(md, ["fine-tuned judge"], "TPR"), "95.0% [88.8, 97.8]");
  assert.match(t.howToRead, /Wilson intervals/);
  assert.equal(cellOf(md, ["fine-tuned judge"], "Accuracy"), "90.0% [85.0, 93.0]");
  assert.ok(t.notes.some((n) => /Held-out labelled pairs: 100 held-out pairs/.test(n)));
  const notes = judgeAndProtocolNotes(r);
  assert.match(notes[0]!, /^LLM judge: one judge for every cell/);
  assert.match(notes[1]!, /^Safe rates: all 40 held-out prompts, as they are/);
  assert.ok(buildTables(r).some((x) => x.id === "table-judge-reliability"));
  // results without a judge section and answer counts (older files) have neither table
  const old = buildTables(handMadeResults());
  assert.ok(!old.some((x) => x.id === "table-judge-reliability" || x.id === "table-answers"));
});

test("self-judging is labelled in every table that shows LLM-judge numbers", () => {
  const r = withJudge("self");
  const tables = buildTables(r);
  const llmHeaders = tables.flatMap((t) => t.columns.map((c) => c.header)).filter((h) => /LLM/.test(h));
  assert.ok(llmHeaders.length > 0);
  for (const h of llmHeaders) assert.match(h, /self-judged/, h);
  for (const t of paperLayoutTables(r)) assert.match(t.howToRead, /LLM judge \(self-judged\)/);
  assert.match(judgeAndProtocolNotes(r)[0]!, /SELF-JUDGED/);
  assert.ok(judgeReliabilityTable(r).notes.some((n) => /Self-judging/.test(n)));
});
