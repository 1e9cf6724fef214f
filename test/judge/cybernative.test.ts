/**
 * The rule judge on real labelled code: CyberNative pairs (chosen = secure, rejected = insecure) from
 * ../shared/data/cybernative, never copied into the repository. The rules were developed on the train
 * split only; the dev split is measured here with the targets per language: at least 60% of
 * insecure answers flagged and at most 20% of secure ones. Each language is held to the level it reaches
 * (a floor a little under the measured value, at least the target where the target is met); the table
 * printed here shows where a target is missed (Swift's recall). The train split, on which the rules were
 * developed, is held to its level too (a larger sample, so a tighter regression check).
 * Run: npx tsc -p . && node --test dist/test/judge/cybernative.test.js   (GOODVIBE_RULE_SPLITS=train,dev)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { SAFETY_LANGUAGES, type SafetyLanguage } from "../../src/data/languages.js";
import { measureRuleJudge, ruleJudgeTable, type LabelledPair } from "../../src/eval/judge/rules/measure.js";

// dist/test/judge -> repo root -> ../shared/data (never copied into the repo).
const here = path.dirname(fileURLToPath(import.meta.url));
const dataDir = path.resolve(here, "../../../../shared/data/cybernative");
const file = (split: string) => path.join(dataDir, `${split}.jsonl`);

function readSplit(split: string): LabelledPair[] {
  return fs
    .readFileSync(file(split), "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l, k) => {
      const row = JSON.parse(l) as Partial<LabelledPair>;
      assert.ok(
        typeof row.lang === "string" && typeof row.chosen === "string" && typeof row.rejected === "string",
        `${split}.jsonl row ${k + 1}: expected lang, chosen, rejected`,
      );
      return row as LabelledPair;
    });
}

/** The targets. */
const TARGET = { recall: 0.6, falsePositiveRate: 0.2 };
type Level = Record<SafetyLanguage, { recall: number; falsePositiveRate: number }>;
/**
 * The level reached on dev (2026-11-29, BENCHMARKS.md "Rule judge on CyberNative"), less about one answer
 * in 42, so that a regression fails: recall at least this, false positives at most this. Where the level
 * is below a target (Swift's recall), the target is not asserted; the printed table shows the shortfall.
 */
const REACHED_DEV: Level = {
  cpp: { recall: 0.88, falsePositiveRate: 0.05 }, // 38/42, 1/42 since the eleventh pass (was 2/42)
  java: { recall: 0.65, falsePositiveRate: 0.14 }, // 29/43, 5/43 since the eighth pass (was 4/43)
  swift: { recall: 0.3, falsePositiveRate: 0.1 }, // 14/42, 3/42 (recall target missed)
  go: { recall: 0.61, falsePositiveRate: 0.2 }, // 27/42, 7/42
};
/** The same on the train split (about 340 pairs per language), less about three answers. */
const REACHED_TRAIN: Level = {
  cpp: { recall: 0.94, falsePositiveRate: 0.08 }, // 323/340, 24/340 since the eleventh pass (25 in the tenth)
  java: { recall: 0.745, falsePositiveRate: 0.17 }, // 256/339, 55/339
  swift: { recall: 0.49, falsePositiveRate: 0.104 }, // 169/338, 32/338 since the eighth pass (recall target missed)
  go: { recall: 0.61, falsePositiveRate: 0.125 }, // 210/338, 40/338 since the twelfth pass (was 202/338, 41/338)
};

function holdsLevel(stats: ReturnType<typeof measureRuleJudge>, reached: Level, split: string): void {
  assert.deepEqual([...stats.keys()].sort(), [...SAFETY_LANGUAGES].sort());
  for (const [lang, s] of stats) {
    assert.ok(s.n >= 40, `${lang}: only ${s.n} ${split} pairs`);
    // The level reached where it is better than the target; below the target (Swift's recall) the level itself.
    const recallFloor = reached[lang].recall;
    const fprCeiling = Math.min(reached[lang].falsePositiveRate, TARGET.falsePositiveRate);
    assert.ok(
      s.recall.value >= recallFloor,
      `${lang} (${split}): ${s.insecureFlagged}/${s.n} insecure answers flagged, below ${recallFloor}`,
    );
    assert.ok(
      s.falsePositiveRate.value <= fprCeiling,
      `${lang} (${split}): ${s.secureFlagged}/${s.n} secure answers flagged, above ${fprCeiling}`,
    );
    // The rules must separate the two sides, not just flag everything.
    assert.ok(s.insecureFlagged > s.secureFlagged, `${lang} (${split}): no separation`);
  }
}

function show(t: { diagnostic(m: string): void }, title: string, table: string): void {
  t.diagnostic(title);
  for (const line of table.split("\n")) t.diagnostic(line);
}

test(
  "rule judge on CyberNative dev pairs: per-language recall and false-positive rate against the targets",
  { skip: !fs.existsSync(file("dev")) && `${file("dev")} not present` },
  (t) => {
    const splits = (process.env.GOODVIBE_RULE_SPLITS ?? "dev").split(",").filter(Boolean);
    for (const split of splits.filter((s) => s !== "dev" && fs.existsSync(file(s))))
      show(t, `${split} split:`, ruleJudgeTable(measureRuleJudge(readSplit(split)), SAFETY_LANGUAGES));
    const stats = measureRuleJudge(readSplit("dev"));
    show(t, "dev split:", ruleJudgeTable(stats, SAFETY_LANGUAGES));
    if (process.env.GOODVIBE_RULE_DETAIL)
      for (const [lang, s] of stats)
        t.diagnostic(`${lang} per rule (secure/insecure answers): ${JSON.stringify(s.perRule)}`);
    holdsLevel(stats, REACHED_DEV, "dev");
  },
);

test(
  "rule judge on CyberNative train pairs (the rules' development data): the level reached holds",
  { skip: !fs.existsSync(file("train")) && `${file("train")} not present` },
  () => {
    holdsLevel(measureRuleJudge(readSplit("train")), REACHED_TRAIN, "train");
  },
);
