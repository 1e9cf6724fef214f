/**
 * What `goodvibe eval` prints, from cells made by hand: a judge with no verdicts says why (never "NaN%"), and with
 * --base the base's own rates and McNemar's test by every judge are shown (the LLM judge's too), or why a judge
 * has no test. The numbers printed are the cell's, checked against the cell's own fields.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { evalSummaryLines } from "../../src/cli/commands/eval-summary.js";
import type { CellResult } from "../../src/report/schema.js";

const rate = (value: number, n: number) => ({ value, low: value / 2, high: (1 + value) / 2, n });

// the run of the audit that found it: 4 answers, none with code, the LLM judge judged all 4 (3 secure)
const noCode: CellResult["security"] = {
  securePreference: {
    rate: { value: 1 / 3, low: 0.1, high: 0.7 },
    meanLossGap: { value: 0.0082, low: -0.0365, high: 0.07 },
    n: 6,
    perLanguage: {},
  },
  answers: { n: 4, noCode: 4, perLanguage: {} },
  safeRate: { llm: { overall: rate(0.75, 4), perLanguage: {}, perCwe: {} } },
  mcnemarVsBase: { llm: { b01: 1, b10: 0, pValue: 1, test: "exact-binomial" } },
};
const baseNoCode: CellResult["security"] = {
  ...noCode,
  safeRate: { llm: { overall: rate(0.5, 4), perLanguage: {}, perCwe: {} } },
  mcnemarVsBase: undefined,
};

test("eval's summary: no NaN for a judge without verdicts; with --base, the base's rates and both judges' McNemar tests", () => {
  const lines = evalSummaryLines({
    model: "/m/hardened",
    protocol: "4 of 10 held-out prompts",
    cell: { security: noCode, utility: {} },
    base: { model: "/m/base", cell: { security: baseNoCode } },
    llmJudge: true,
  });
  const text = lines.join("\n");
  assert.doesNotMatch(text, /NaN/);
  // the rule judge had nothing to judge: said, with the counts
  assert.match(text, /^safe rate \(rules\): none: .*no code in 4 of 4\)$/m);
  assert.match(text, /^safe rate \(LLM judge\): 75\.0% \[37\.5, 87\.5\] of 4 answers/m);
  // the base's own numbers
  assert.ok(lines.includes("base: /m/base"), text);
  assert.match(text, /^base safe rate \(LLM judge\): 50\.0% \[25\.0, 75\.0\] of 4 answers/m);
  assert.match(text, /^base secure preference: 33\.3% \[10\.0, 70\.0\] of 6 pairs/m);
  // McNemar by the LLM judge, which the cell holds, is printed; the rule judge's absence is explained
  assert.match(text, /^vs base \(LLM judge\): improved 1, worsened 0, p = 1\.00 \(exact-binomial\)$/m);
  assert.match(text, /^vs base \(rules\): no test: /m);
});

test("eval's summary without --base prints no base or McNemar lines; rules with verdicts are printed as rates", () => {
  const security: CellResult["security"] = {
    ...noCode,
    answers: { n: 4, noCode: 1, perLanguage: {} },
    safeRate: { rule: { overall: rate(2 / 3, 3), perLanguage: {}, perCwe: {} } },
    mcnemarVsBase: undefined,
  };
  const lines = evalSummaryLines({
    model: "/m/x",
    protocol: "p",
    cell: { security, utility: { arc: { metric: "acc", value: 0.25, stderr: 0.01, n: 40 } } },
    llmJudge: false,
  });
  const text = lines.join("\n");
  assert.match(
    text,
    /^safe rate \(rules\): 66\.7% \[33\.3, 83\.3\] of 3 answers with code; no code in 1 of 4$/m,
  );
  assert.doesNotMatch(text, /LLM judge|base|vs base/);
  // a share of items scored 0/1: its Wilson interval, by hand for 10 of 40: [0.1419, 0.4019]; the se beside it
  assert.match(text, /^arc: acc 0\.2500 \[0\.1419, 0\.4019\] Wilson \(n=40; se 0\.0100\)$/m);
});

test("eval's summary with --base: the base's utility beside the model's, and each difference with its interval and method", () => {
  const lines = evalSummaryLines({
    model: "/m/hardened",
    protocol: "p",
    cell: {
      security: noCode,
      utility: { heldout_code_loss: { metric: "nll/token", value: 1.25, stderr: 0.01, n: 12 } },
    },
    base: {
      model: "/m/base",
      cell: {
        security: baseNoCode,
        utility: { heldout_code_loss: { metric: "nll/token", value: 1.5, stderr: 0.02, n: 12 } },
      },
    },
    utilityVsBase: {
      heldout_code_loss: {
        metric: "nll/token",
        diff: -0.25,
        low: -0.3,
        high: -0.2,
        n: 6,
        method: "paired normal",
      },
      arc_challenge: {
        metric: "acc_norm",
        diff: 0.1,
        low: -0.143406,
        high: 0.319857,
        n: 10,
        method: "paired newcombe",
      },
      humaneval: {
        metric: "pass@1",
        diff: 0.05,
        low: -0.048,
        high: 0.148,
        n: 10,
        method: "paired normal",
      },
      mmlu: {
        metric: "acc",
        diff: 0.1,
        low: -0.357,
        high: 0.557,
        n: 10,
        method: "unpaired normal",
        unpairedBecause: "the base does not keep per-item scores",
      },
      gsm8k: {
        metric: "exact_match_strict",
        diff: 0.1,
        low: -0.289794,
        high: 0.45089,
        n: 10,
        method: "unpaired newcombe",
        unpairedBecause: "the two sides scored different items",
      },
    },
    llmJudge: false,
  });
  const text = lines.join("\n");
  // a loss: value ± 1.96 se (1.25 ± 0.0196, 1.5 ± 0.0392)
  assert.match(text, /^heldout_code_loss: nll\/token 1\.2500 \[1\.2304, 1\.2696\] \(n=12; se 0\.0100\)$/m);
  assert.match(
    text,
    /^base heldout_code_loss: nll\/token 1\.5000 \[1\.4608, 1\.5392\] \(n=12; se 0\.0200\)$/m,
  );
  assert.match(
    text,
    /^vs base \(heldout_code_loss\): nll\/token -0\.2500 \[-0\.3000, -0\.2000\] \(model − base, 95% interval; paired over the 6 held-out pairs both scored, mean difference ± 1\.96·sd\/√n\)$/m,
  );
  // a benchmark: paired item by item, or unpaired with the reason
  assert.match(
    text,
    /^vs base \(arc_challenge\): acc_norm \+0\.1000 \[-0\.1434, \+0\.3199\] \(model − base, 95% interval; paired over the 10 items both scored, Newcombe's score interval\)$/m,
  );
  assert.match(
    text,
    /^vs base \(humaneval\): pass@1 \+0\.0500 \[-0\.0480, \+0\.1480\] \(model − base, 95% interval; paired over the 10 items both scored, mean difference ± 1\.96·sd\/√n\)$/m,
  );
  assert.match(
    text,
    /^vs base \(mmlu\): acc \+0\.1000 \[-0\.3570, \+0\.5570\] \(model − base, 95% interval; unpaired, from both standard errors: the base does not keep per-item scores\)$/m,
  );
  // unpaired 0/1 counts: Newcombe's interval for two independent proportions, and the line says so
  assert.match(
    text,
    /^vs base \(gsm8k\): exact_match_strict \+0\.1000 \[-0\.2898, \+0\.4509\] \(model − base, 95% interval; unpaired, Newcombe's score interval from both counts: the two sides scored different items\)$/m,
  );
});

test("eval's summary: a 0/1 benchmark at 0 of n is not printed as exact (its standard error is 0; Wilson by hand: 0/10 → [0, 0.2775])", () => {
  const text = evalSummaryLines({
    model: "/m/x",
    protocol: "p",
    cell: {
      security: noCode,
      utility: {
        gsm8k: { metric: "exact_match_strict", value: 0, stderr: 0, n: 10 },
        // pass@1 as a mean over several samples per problem is no count: value ± 1.96 se (0.25 ± 0.0392)
        humaneval: { metric: "pass@1", value: 0.25, stderr: 0.02, n: 3 },
      },
    },
    llmJudge: false,
  }).join("\n");
  assert.match(text, /^gsm8k: exact_match_strict 0\.0000 \[0\.0000, 0\.2775\] Wilson \(n=10; se 0\.0000\)$/m);
  assert.match(text, /^humaneval: pass@1 0\.2500 \[0\.2108, 0\.2892\] \(n=3; se 0\.0200\)$/m);
});

test("eval's summary: --code's per-language figures each with an interval as the overall's (value ± 1.96 se)", () => {
  const lines = evalSummaryLines({
    model: "/m/hardened",
    protocol: "p",
    cell: {
      security: noCode,
      utility: {
        heldout_real_code_loss: {
          metric: "nll/token",
          value: 1.5,
          stderr: 0.1,
          n: 4,
          perLanguage: {
            python: { value: 1.25, stderr: 0.375, n: 2, tokens: 4 },
            c: { value: 1.75, stderr: 0.25, n: 2, tokens: 4 },
          },
        },
      },
    },
    llmJudge: false,
  });
  // 1.25 ± 1.96·0.375 = [0.5150, 1.9850]; 1.75 ± 1.96·0.25 = [1.2600, 2.2400]; languages in name order
  const at = lines.findIndex((l) => l.startsWith("heldout_real_code_loss: "));
  assert.match(
    lines[at]!,
    /^heldout_real_code_loss: nll\/token 1\.5000 \[1\.3040, 1\.6960\] \(n=4; se 0\.1000\)$/,
  );
  assert.equal(
    lines[at + 1],
    "heldout_real_code_loss (c): nll/token 1.7500 [1.2600, 2.2400] (n=2; se 0.2500; 4 tokens)",
  );
  assert.equal(
    lines[at + 2],
    "heldout_real_code_loss (python): nll/token 1.2500 [0.5150, 1.9850] (n=2; se 0.3750; 4 tokens)",
  );
});

test("eval's summary says when the mean loss gap's interval resampled tasks, and only then", () => {
  const line = (security: CellResult["security"]) =>
    evalSummaryLines({ model: "/m", protocol: "p", cell: { security, utility: {} }, llmJudge: true }).find(
      (l) => l.startsWith("secure preference:"),
    )!;
  assert.match(line(noCode), /mean loss gap 0\.0082 \[-0\.0365, 0\.0700\]$/);
  assert.match(
    line({ ...noCode, lossGapInterval: "bootstrap-task" }),
    /mean loss gap 0\.0082 \[-0\.0365, 0\.0700\] \(tasks resampled\)$/,
  );
});

test("eval's summary: a figure reused from --cache names what made it reusable: the servers that scored it, or the build of the built-in engine", () => {
  const fig = { metric: "acc", value: 0.5, stderr: 0.1, n: 10 };
  const servers = 'http://gpu1:8000, http://gpu2:8000 (model "hardened")';
  const text = evalSummaryLines({
    model: "/m/x",
    protocol: "p",
    cell: { security: noCode, utility: { arc_challenge: fig, gsm8k: fig } },
    base: { model: "/m/base", cell: { security: baseNoCode, utility: { arc_challenge: fig } } },
    llmJudge: false,
    reused: { model: ["arc_challenge", "gsm8k"], base: ["arc_challenge"] },
    engines: {
      model: { arc_challenge: servers, gsm8k: "built-in" },
      base: { arc_challenge: 'http://gpu1:8000, http://gpu2:8000 (model "base")' },
    },
  }).join("\n");
  assert.match(
    text,
    /^arc_challenge: .* \(reused from --cache: same model, files, settings and engine, http:\/\/gpu1:8000, http:\/\/gpu2:8000 \(model "hardened"\)\)$/m,
  );
  assert.match(text, /^gsm8k: .* \(reused from --cache: same model, files, settings and build\)$/m);
  assert.match(
    text,
    /^base arc_challenge: .* \(reused from --cache: same model, files, settings and engine, http:\/\/gpu1:8000, http:\/\/gpu2:8000 \(model "base"\)\)$/m,
  );
});
