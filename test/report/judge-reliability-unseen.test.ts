/**
 * The judge's reliability on the held-out code it was not trained on, as an experiment records it (recipes/judge.ts
 * reliabilityEntry, results.json judge.reliability[].unseen) and the report shows it (Table "Judge reliability"):
 * a hand-made case of 4 pairs whose verdicts, confusion counts and Wilson intervals are worked out by hand.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { codeFingerprint, trainingOverlap, type JudgeReliability } from "../../src/eval/judge/llm.js";
import { reliabilityEntry, reliabilitySummary } from "../../src/recipes/judge.js";
import { judgeReliabilityTable } from "../../src/report/judge-tables.js";
import { parseExperimentResults, type ExperimentResults } from "../../src/report/schema.js";
import { tableToMarkdown } from "../../src/report/table.js";
import type { LabelledSample } from "../../src/data/pairs.js";
import { handMadeResults } from "./fixture.js";
import { cellOf, parseMarkdownTable } from "./parse.js";

const s = (id: string, code: string, secure: boolean): LabelledSample => ({ id, code, secure });
const samples = [
  s("p1/secure", "a = safe(x)", true),
  s("p1/insecure", "a = eval(x)", false),
  s("p2/secure", "b = int(x)", true),
  s("p2/insecure", "b = eval(x)", false),
  s("p3/secure", "c = quote(x)", true),
  s("p3/insecure", "c = raw(x)", false),
  s("p4/secure", "d = esc(x)", true),
  s("p4/insecure", "d = cat(x)", false),
];
// The judge was trained on p1's secure code (re-cased, re-indented) and p2's insecure code.
const training = new Set([codeFingerprint("  A = SAFE(x)\n"), codeFingerprint("b = eval(x)")]);

/** A reliability as reliabilityOfScores returns it, its counts worked by hand from pUnsafe (> 0.5 = unsafe). */
function rel(pUnsafe: number[], c: { tp: number; fp: number; tn: number; fn: number }): JudgeReliability {
  const n = samples.length;
  return {
    n,
    accuracy: (c.tp + c.tn) / n,
    accuracyInterval: { value: (c.tp + c.tn) / n, low: 0, high: 1 },
    tpr: c.tp / (c.tp + c.fn),
    fpr: c.fp / (c.fp + c.tn),
    confusion: {
      ...c,
      accuracy: (c.tp + c.tn) / n,
      tpr: c.tp / (c.tp + c.fn),
      fpr: c.fp / (c.fp + c.tn),
      precision: 0,
    },
    conflicting: 0,
    perItem: samples.map((x, i) => ({ id: x.id, secure: x.secure, pUnsafe: pUnsafe[i]! })),
  };
}

// fine-tuned: p1 TN (seen), TP; p2 FP, TP (seen); p3 TN, FN; p4 TN, TP
const tuned = rel([0.2, 0.9, 0.6, 0.7, 0.1, 0.4, 0.3, 0.8], { tp: 3, fp: 1, tn: 3, fn: 1 });
// base: p1 FP (seen), TP; p2 FP, FN (seen); p3 FP, TP; p4 TN, FN
const base = rel([0.9, 0.9, 0.6, 0.4, 0.7, 0.8, 0.3, 0.2], { tp: 2, fp: 3, tn: 1, fn: 2 });

/** The 95% Wilson interval, written out: (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n). */
function wilson(k: number, n: number): [number, number] {
  const z = 1.959963984540054;
  const p = k / n;
  const d = 1 + (z * z) / n;
  const c = p + (z * z) / (2 * n);
  const h = z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
  return [(c - h) / d, (c + h) / d];
}

test("reliabilityEntry: the unseen samples' counts, rates and Wilson intervals, worked by hand", () => {
  const e = reliabilityEntry(
    "fine-tuned",
    "judge",
    tuned,
    undefined,
    trainingOverlap(tuned, samples, training),
  );
  const u = e.unseen!;
  // left out: p1/secure and p2/insecure, of pairs p1 and p2
  assert.deepEqual([u.seenSamples, u.seenPairs, u.ofPairs, u.n], [2, 2, 4, 6]);
  // the other six: p1/insecure TP, p2/secure FP, p3 TN and FN, p4 TN and TP
  assert.deepEqual(u.confusion, { tp: 2, fp: 1, tn: 2, fn: 1 });
  const near = (x: number, y: number) => assert.ok(Math.abs(x - y) < 1e-12, `${x} vs ${y}`);
  near(u.accuracy!.value, 4 / 6);
  near(u.tpr!.value, 2 / 3);
  near(u.fpr!.value, 1 / 3);
  assert.deepEqual([u.accuracy!.n, u.tpr!.n, u.fpr!.n], [6, 3, 3]);
  for (const [r, k, n] of [
    [u.accuracy!, 4, 6],
    [u.tpr!, 2, 3],
    [u.fpr!, 1, 3],
  ] as const) {
    const [lo, hi] = wilson(k, n);
    near(r.low, lo);
    near(r.high, hi);
  }
  // by hand, to one decimal: 4/6 -> [30.0, 90.3], 2/3 -> [20.8, 93.9], 1/3 -> [6.1, 79.2]
  assert.equal(
    reliabilitySummary(e),
    "accuracy 75.0% [40.9, 92.9] (n 8), TPR 75.0% [30.1, 95.4] (n 4), FPR 25.0% [4.6, 69.9] (n 4); on the 6 " +
      "samples whose code it was not trained on (left out 2, of 2 of 4 pairs): accuracy 66.7% [30.0, 90.3] " +
      "(n 6), TPR 66.7% [20.8, 93.9] (n 3), FPR 33.3% [6.1, 79.2] (n 3)",
  );
  // no judge training code recorded: no unseen field, the entry as before
  assert.equal(reliabilityEntry("given", "judge", tuned).unseen, undefined);
  // every held-out sample seen: nothing left, rates null
  const all = new Set(samples.map((x) => codeFingerprint(x.code)));
  const none = reliabilityEntry(
    "fine-tuned",
    "j",
    tuned,
    undefined,
    trainingOverlap(tuned, samples, all),
  ).unseen!;
  assert.deepEqual([none.n, none.accuracy, none.tpr, none.fpr, none.seenPairs], [0, null, null, null, 4]);
});

test("report: each judge over all samples and on the same unseen subset; results with it load, older ones too", () => {
  const r: ExperimentResults = handMadeResults();
  r.judge = {
    mode: "independent",
    description: "one judge for every cell and the base",
    convention: { instruction: "1 or 0", labels: { unsafe: "1", safe: "0" } },
    heldOut:
      "4 held-out pairs of dev.jsonl (8 labelled samples); 2 of them also appear in the judge's training pairs",
    reliability: [
      reliabilityEntry("base", "./base", base, undefined, trainingOverlap(base, samples, training)),
      reliabilityEntry(
        "fine-tuned",
        "work/judges/x/model",
        tuned,
        undefined,
        trainingOverlap(tuned, samples, training),
      ),
    ],
  };
  const loaded = parseExperimentResults(JSON.parse(JSON.stringify(r)), "results.json");
  const md = parseMarkdownTable(tableToMarkdown(judgeReliabilityTable(loaded)));
  assert.equal(cellOf(md, ["fine-tuned judge, unseen code"], "n (samples)"), "6");
  assert.equal(cellOf(md, ["fine-tuned judge, unseen code"], "Accuracy"), "66.7% [30.0, 90.3]");
  assert.equal(cellOf(md, ["fine-tuned judge, unseen code"], "TPR"), "66.7% [20.8, 93.9]");
  assert.equal(cellOf(md, ["fine-tuned judge, unseen code"], "FPR"), "33.3% [6.1, 79.2]");
  // the base judge on the same six samples: p1/insecure TP, p2/secure FP, p3 FP and TP, p4 TN and FN
  assert.equal(cellOf(md, ["base judge, unseen code"], "TP"), "2");
  assert.equal(cellOf(md, ["base judge, unseen code"], "FP"), "2");
  assert.equal(cellOf(md, ["base judge, unseen code"], "TN"), "1");
  assert.equal(cellOf(md, ["base judge, unseen code"], "FN"), "1");
  assert.equal(cellOf(md, ["base judge, unseen code"], "Accuracy"), "50.0% [18.8, 81.2]");
  assert.equal(cellOf(md, ["base judge"], "n (samples)"), "8");
  const notes = judgeReliabilityTable(loaded).notes;
  assert.ok(
    notes.some((n) =>
      /on the 6 held-out samples whose code .* 2 samples, of 2 of 4 pairs, are left out/.test(n),
    ),
  );
  // results written before: no unseen rows, and a note that says why
  const old = structuredClone(r);
  for (const x of old.judge!.reliability) delete x.unseen;
  const t = judgeReliabilityTable(parseExperimentResults(JSON.parse(JSON.stringify(old)), "results.json"));
  assert.equal(t.rows.length, 2);
  assert.ok(t.notes.some((n) => /No reliability on the code the judge was not trained on/.test(n)));
});
