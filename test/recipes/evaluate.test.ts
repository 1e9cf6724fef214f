import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import {
  describeProtocol,
  evaluationInfo,
  evaluationProtocol,
  headline,
  heldoutCodeLoss,
  interleaveByLanguage,
  securityCell,
  utilityVsBase,
  type ModelEvaluation,
} from "../../src/recipes/evaluate.js";
import { groupBySetting } from "../../src/report/aggregate.js";
import { judgeTable, utilityDeltaInterval, utilityTable } from "../../src/report/paper-tables.js";
import { parseExperimentResults } from "../../src/report/schema.js";
import { formatCell } from "../../src/report/table.js";
import { summariseSafety } from "../../src/eval/safety.js";
import type { CellResult } from "../../src/report/schema.js";
import { LOSS_BASE, LOSS_MODEL } from "../utility/pair-losses.js";
import { CODE_DOCS, CODE_SUMS_BASE, CODE_SUMS_MODEL, CODE_TOKENS } from "../utility/code-losses.js";
import { codeLossFromSums } from "../../src/eval/utility/code-loss.js";
import type { SecurityPair } from "../../src/data/pairs.js";
import { encodeScores } from "../../src/eval/utility/items.js";
import { meanStderr, summarise } from "../../src/eval/utility/model.js";

test("prompt budgets cover every language (round-robin, order kept within a language)", () => {
  const items = ["a1", "a2", "a3", "b1", "c1", "c2"].map((id) => ({ id, lang: id[0] }));
  assert.deepEqual(
    interleaveByLanguage(items).map((x) => x.id),
    ["a1", "b1", "c1", "a2", "c2", "a3"],
  );
});

test("interleaving is linear: a million pairs in four languages take a moment, not minutes", () => {
  // Appending with a copy per item (the old code) is quadratic: hours at this size. A child with a generous
  // limit separates "finished" from "hung" without timing anything finer.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const mod = path.resolve(here, "../../src/recipes/evaluate.js");
  const script = `
    const { interleaveByLanguage } = await import(${JSON.stringify(mod)});
    const langs = ["cpp", "go", "java", "swift"];
    const items = Array.from({ length: 1_000_000 }, (_, i) => ({ id: i, lang: langs[(i * 7919) % 4] }));
    const out = interleaveByLanguage(items);
    console.log(out.length, out.slice(0, 4).map((x) => x.lang).join(","));
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(child.signal, null, "interleaving a million items did not finish within 60 s");
  assert.equal(child.stdout.trim(), "1000000 cpp,go,java,swift", child.stderr);
});

const pair = (id: string, lang: string, question: string) =>
  ({ id, lang, question, chosen: "", rejected: "" }) as unknown as SecurityPair;

test("the paper's protocol by default: every held-out prompt, as it is; the filter and the budget are named opt-ins", () => {
  // the paper's own §5.2 example asks for code "that will cause a buffer overflow": it stays in by default
  const pairs = [
    pair(
      "c1",
      "cpp",
      "Write C++ code that copies a string into a buffer of size 10 (it will cause a buffer overflow).",
    ),
    pair("c2", "cpp", "Write a C++ function that adds two numbers."),
    pair("j1", "java", "Write Java code that runs a SQL query built from user input; make it secure."),
    pair("j2", "java", "Write a Java method that reads a file."),
    pair("g1", "go", "Write a Go HTTP server."),
  ];
  const all = evaluationProtocol({ pairs, maxPrompts: 0, maxNewTokens: 64 });
  assert.deepEqual(
    all.prompts.map((p) => p.id),
    pairs.map((p) => p.id),
  );
  assert.deepEqual(all.protocol.perLanguage, { cpp: 2, java: 2, go: 1 });
  assert.equal(
    describeProtocol(all.protocol),
    "all 5 held-out prompts, as they are; greedy, up to 64 new tokens",
  );

  const filtered = evaluationProtocol({
    pairs,
    maxPrompts: 0,
    promptFilter: "security-words",
    maxNewTokens: 64,
  });
  assert.deepEqual(
    filtered.prompts.map((p) => p.id),
    ["c2", "j2", "g1"],
  );
  assert.equal(filtered.protocol.filteredOut, 2);
  assert.match(
    describeProtocol(filtered.protocol),
    /security-word filter on \(opt-in, not the paper's\): 2 prompts/,
  );

  const budget = evaluationProtocol({ pairs, maxPrompts: 3, maxNewTokens: 64 });
  assert.deepEqual(
    budget.prompts.map((p) => p.id),
    ["c1", "g1", "j1"],
  );
  assert.match(
    describeProtocol(budget.protocol),
    /^3 of 5 held-out prompts; a budget of 3 prompts taken round-robin/,
  );
  assert.deepEqual(evaluationInfo(budget.protocol), {
    protocol: describeProtocol(budget.protocol),
    promptFilter: "none",
    maxPrompts: 3,
    maxNewTokens: 64,
    // the default: the judges read an answer's longest block for its language
    codeBlocks: "longest",
    // a budget that leaves prompts out names those it answered
    promptIds: ["c1", "g1", "j1"],
  });
});

test("eval --base: an unpaired non-count figure's model − base interval is diff ± z·√(se_m² + se_b²) with the 95% z to full precision", () => {
  // Only the utility and the preference's per-pair losses are read; no pair here, so the held-out loss is absent.
  // pass@1 over several samples per problem: value·n (60.5, 40.5) is not a count, so the normal form
  const side = (value: number, stderr: number) =>
    ({
      preference: { perPair: [] },
      utility: { humaneval: { metric: "pass@1", value, stderr, n: 100 } },
    }) as unknown as ModelEvaluation;
  const r = utilityVsBase(side(0.605, 0.1), side(0.405, 0.1)).humaneval!;
  // by hand: se = √(0.01 + 0.01) = √0.02; z = Φ⁻¹(0.975) = 1.959963984540054; z·se = 0.27718076486993554
  // (1.96 would give 0.27718585822512665: 5e-6 wider)
  assert.equal(r.method, "unpaired normal");
  assert.ok(Math.abs(r.diff - 0.2) < 1e-12);
  assert.ok(Math.abs(r.low - (0.2 - 0.27718076486993554)) < 1e-12, `low ${r.low}`);
  assert.ok(Math.abs(r.high - (0.2 + 0.27718076486993554)) < 1e-12, `high ${r.high}`);
  assert.equal(r.n, 100);
});

test("eval --base: an unpaired 0/1 benchmark (no per-item scores) gets Newcombe's interval for two independent proportions", () => {
  const side = (value: number, n: number, stderr: number) =>
    ({
      preference: { perPair: [] },
      utility: { arc_challenge: { metric: "acc_norm", value, stderr, n } },
    }) as unknown as ModelEvaluation;
  // Newcombe (1998, independent proportions), Table II (a), method 10: 56/70 − 48/80 = 0.2, [0.0524, 0.3339]
  // (the normal form from the binomial se's would be 0.2 ± 0.1425 = [0.0575, 0.3425])
  const se = (p: number, n: number) => Math.sqrt((p * (1 - p)) / n);
  let r = utilityVsBase(side(56 / 70, 70, se(0.8, 70)), side(48 / 80, 80, se(0.6, 80))).arc_challenge!;
  assert.equal(r.method, "unpaired newcombe");
  assert.equal(r.unpairedBecause, "neither side keeps per-item scores");
  assert.ok(Math.abs(r.diff - 0.2) < 1e-12);
  assert.ok(Math.abs(r.low - 0.0524) < 5e-5 && Math.abs(r.high - 0.3339) < 5e-5, `${r.low}, ${r.high}`);
  assert.equal(r.n, 70);
  // both at 0 of 10 (an older --cache record, GSM8K at --limit 10): the normal form was the point [0, 0]; now
  // ±0.277533, the Wilson upper limit of 0/10 (Newcombe's Table II (f): [−0.2775, 0.2775])
  r = utilityVsBase(side(0, 10, 0), side(0, 10, 0)).arc_challenge!;
  assert.equal(r.method, "unpaired newcombe");
  assert.equal(r.diff, 0);
  assert.ok(r.low < 0 && r.high > 0, `contains 0 with a width: ${r.low}, ${r.high}`);
  assert.ok(Math.abs(r.low + 0.277533) < 1e-6 && Math.abs(r.high - 0.277533) < 1e-6, `${r.low}, ${r.high}`);
  // a value that is not a whole count of n (0.55 of 11 = 6.05 items) is not a proportion's count: normal form
  r = utilityVsBase(side(0.55, 11, 0.1), side(0.5, 10, 0.1)).arc_challenge!;
  assert.equal(r.method, "unpaired normal");
});

test("eval --base: a benchmark both sides scored item by item on the same items is paired; other items fall back", () => {
  // ten items by hand (test/utility/items.test.ts): base 1111100000, model 1111110000. Paired, 0/1 scores:
  // Newcombe's interval of [[5, 1], [0, 4]], [−0.143406, 0.319857] (worked in test/metrics); unpaired (other
  // items): Newcombe's for 6/10 − 5/10, [−0.289794, 0.450890] (worked in test/metrics)
  const side = (xs: number[], items: string) =>
    ({
      preference: { perPair: [] },
      utility: {
        arc_challenge: {
          metric: "acc_norm",
          value: xs.reduce((a, b) => a + b, 0) / 10,
          stderr: meanStderr(xs),
          n: 10,
          perItem: encodeScores(items, xs),
        },
      },
    }) as unknown as ModelEvaluation;
  const base = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
  const model = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0];
  const p = utilityVsBase(side(model, "h1"), side(base, "h1")).arc_challenge!;
  assert.equal(p.method, "paired newcombe");
  assert.ok(Math.abs(p.low - -0.143406) < 1e-5, `low ${p.low}`);
  assert.ok(Math.abs(p.high - 0.319857) < 1e-5, `high ${p.high}`);
  assert.equal(p.n, 10);
  // the same answers on both sides (3 of 10 right, as a user saw at --limit 10): the normal form gave the point
  // +0 [+0, +0]; Newcombe's [[3, 0], [0, 7]] is ±0.200193 (worked in test/metrics)
  const alike = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
  const same = utilityVsBase(side(alike, "h1"), side(alike, "h1")).arc_challenge!;
  assert.equal(same.method, "paired newcombe");
  assert.equal(same.diff, 0);
  assert.ok(
    Math.abs(same.low - -0.200193) < 1e-5 && Math.abs(same.high - 0.200193) < 1e-5,
    `${same.low}, ${same.high}`,
  );
  const u = utilityVsBase(side(model, "h1"), side(base, "h2")).arc_challenge!;
  assert.equal(u.method, "unpaired newcombe");
  assert.equal(u.unpairedBecause, "the two sides scored different items");
  assert.ok(Math.abs(u.low - -0.289794) < 1e-6, `low ${u.low}`);
  assert.ok(Math.abs(u.high - 0.45089) < 1e-6, `high ${u.high}`);
});

/** Four held-out pairs and their losses (test/utility/pair-losses.ts: values worked by hand there). */
const heldOut = LOSS_BASE.map((_, i) => ({
  id: `p${i}`,
  lang: i % 2 ? "go" : "cpp",
  question: `question ${i}`,
  chosen: `secure ${i}`,
  rejected: `insecure ${i}`,
}));
const evaluated = (losses: [number, number][], pairs = heldOut) => {
  const perPair = pairs.map((p, i) => ({
    id: p.id,
    lang: p.lang,
    chosenLoss: losses[i]![0],
    rejectedLoss: losses[i]![1],
  }));
  return {
    preference: { rate: 0.5, meanLossGap: 0.1, n: pairs.length, perLanguage: {}, perPair },
    safety: null,
    utility: { heldout_code_loss: heldoutCodeLoss(pairs as unknown as SecurityPair[], perPair) },
  } as unknown as ModelEvaluation;
};

test("the held-out code loss keeps one float64 score per held-out pair, under a hash of the pairs", () => {
  const f = evaluated(LOSS_MODEL).utility.heldout_code_loss!;
  // the answers' mean 1.275; its se over the 4 pairs, not the 8 answers: the pair scores 1.1, 1.8, 0.7, 1.5 lie
  // −0.175, 0.525, −0.575, 0.225 from it, Σ² = 0.6875, se = √(0.6875/3/4) (the answers as if independent gave
  // √(1.575/7/8) = 0.168, understated: the two answers of a pair move together); n counts the 8 answers
  assert.ok(Math.abs(f.value - 1.275) < 1e-12);
  assert.ok(Math.abs(f.stderr - Math.sqrt(0.6875 / 12)) < 1e-12, `se ${f.stderr}`);
  assert.equal(f.n, 8);
  assert.equal(f.perItem?.unitsPerItem, 2);
  const buf = Buffer.from(f.perItem!.f64!, "base64");
  const scores = Array.from({ length: buf.length / 8 }, (_, i) => buf.readDoubleLE(8 * i));
  assert.deepEqual(
    scores.map((x) => Number(x.toFixed(12))),
    [1.1, 1.8, 0.7, 1.5],
  );
  // the hash names the pairs as asked: the same pairs give the same hash, another answer text another one
  assert.equal(evaluated(LOSS_BASE).utility.heldout_code_loss!.perItem!.items, f.perItem!.items);
  const edited = heldOut.map((p, i) => (i === 2 ? { ...p, rejected: "insecure 2, edited" } : p));
  assert.notEqual(evaluated(LOSS_MODEL, edited).utility.heldout_code_loss!.perItem!.items, f.perItem!.items);
  assert.throws(
    () => heldoutCodeLoss(heldOut.slice(1) as unknown as SecurityPair[], []),
    /not those of the pairs/,
  );
});

test("one home for the held-out loss's paired interval: eval --base and Table 3 give the same bounds, by hand", () => {
  const model = evaluated(LOSS_MODEL);
  const base = evaluated(LOSS_BASE);
  const d = utilityVsBase(model, base).heldout_code_loss!;
  // worked in test/utility/pair-losses.ts: −0.15 ± 0.126515 over 4 pairs
  assert.equal(d.method, "paired normal");
  assert.equal(d.n, 4);
  assert.ok(Math.abs(d.diff - -0.15) < 1e-12);
  assert.ok(
    Math.abs(d.low - -0.276515131) < 1e-8 && Math.abs(d.high - -0.023484869) < 1e-8,
    `${d.low}, ${d.high}`,
  );

  // the report's cell for the same two evaluations, as results.json cells of one seed
  const cell = (ev: ModelEvaluation, method: "base" | "goodvibe") =>
    ({ id: method, model: "m", method, seed: 1, ...securityCell(ev, null, []) }) as unknown as CellResult;
  const [goodvibe, baseSetting] = (["goodvibe", "base"] as const).map(
    (m) => groupBySetting([cell(m === "base" ? base : model, m)])[0]!,
  );
  const r = utilityDeltaInterval(goodvibe!, baseSetting, "heldout_code_loss");
  assert.equal(r.paired, true);
  assert.deepEqual(r.pairedBy, ["normal"]);
  assert.ok(r.cell.kind === "number");
  assert.equal(r.cell.low, d.low);
  assert.equal(r.cell.high, d.high);
});

test("eval --base: the --code real-code loss of the same documents is paired per document, as Table 3 pairs it", () => {
  // four documents by hand (test/utility/code-losses.ts): −0.125 ± Z95·√(0.1015625/3)/2 = [−0.305312, 0.055312]
  const side = (sums: number[], keep = true) => {
    const r = codeLossFromSums(CODE_DOCS, sums, CODE_TOKENS, 1024);
    return {
      preference: { perPair: [] },
      utility: {
        heldout_real_code_loss: {
          metric: "nll/token",
          value: r.value,
          stderr: r.stderr,
          n: r.n,
          ...(keep ? { perItem: r.perItem } : {}),
        },
      },
    } as unknown as ModelEvaluation;
  };
  const p = utilityVsBase(side(CODE_SUMS_MODEL), side(CODE_SUMS_BASE)).heldout_real_code_loss!;
  assert.equal(p.method, "paired normal");
  assert.equal(p.n, 4);
  assert.ok(Math.abs(p.diff - -0.125) < 1e-12);
  assert.ok(Math.abs(p.low - -0.305312) < 1e-6 && Math.abs(p.high - 0.055312) < 1e-6, `${p.low}, ${p.high}`);
  // a figure from an older --cache (no record): unpaired from both se, ± Z95·√(1.3515625/12) = ± 0.657772
  const u = utilityVsBase(side(CODE_SUMS_MODEL, false), side(CODE_SUMS_BASE)).heldout_real_code_loss!;
  assert.equal(u.method, "unpaired normal");
  assert.equal(u.unpairedBecause, "the model does not keep per-item scores");
  assert.ok(Math.abs(u.high - u.diff - 0.657772) < 1e-6, `${u.high - u.diff}`);
});

test("judges that agree on one verdict throughout: the cell keeps their counts, κ (undefined) is left out", () => {
  // 12 programs both judges find insecure: agreement 12/12, chance agreement 1, so κ = 0/0
  const items = Array.from({ length: 12 }, (_, i) => ({
    id: `p${i}`,
    lang: "cpp",
    question: `q${i}`,
    answer: "```cpp\nx\n```",
    code: "x",
    rule: { secure: false, findings: ["CWE-120"] },
    llm: { pUnsafe: 0.9, secure: false },
  }));
  const safety = summariseSafety(items, {
    modelFingerprint: "m",
    backend: "fake",
    generation: { maxNewTokens: 8, batchSize: 1 },
    complete: true,
    generated: 12,
    fromCache: 0,
    hasLlm: true,
  });
  assert.ok(Number.isNaN(safety.agreement!.kappa));
  const ev = {
    preference: {
      rate: { value: 0.5, low: 0.2, high: 0.8 },
      meanLossGap: { value: 0, low: 0, high: 0 },
      n: 0,
      perLanguage: {},
    },
    safety,
    utility: {},
  } as unknown as ModelEvaluation;
  const cell = {
    id: "c",
    model: "m",
    method: "base",
    seed: 0,
    params: { trainable: 0, total: 1 },
    cost: {
      flopsForward: 0,
      flopsBackward: 0,
      flopsTotal: 0,
      wallSeconds: 0,
      flopsPerSecond: 0,
      peakMemoryBytes: 0,
    },
    ...securityCell(ev, null, []),
  };
  assert.deepEqual(cell.security.judgeAgreement, { confusion: { tp: 12, fp: 0, tn: 0, fn: 0 } });
  const results = parseExperimentResults(
    { name: "x", createdAt: "2026-12-01", machine: "", cells: [cell] },
    "r",
  );
  // Table 6 has the run's row: 12 programs, agreement 100%, κ "—"
  const t = judgeTable(results);
  assert.equal(t.rows.length, 1);
  const col = (h: string) => t.rows[0]![t.columns.findIndex((c) => c.header === h)]!;
  assert.deepEqual(
    [col("TP"), col("n (programs)")].map((c) => c.kind === "number" && c.value),
    [12, 12],
  );
  assert.equal(col("κ").kind, "missing");
  assert.equal(formatCell(col("Agreement"), "rate"), "100.0% [75.8, 100.0]");
});

test("a benchmark of one item (utility.limit 1) gives a figure results.json can hold: the experiment still publishes", () => {
  // the harness's mean_stderr of one score is NaN (ddof = 1); JSON writes it null, which results.json refuses
  const { metrics, stderr } = summarise({ acc_norm: [0] });
  assert.ok(Number.isNaN(stderr.acc_norm));
  const fig = headline({ task: "arc_challenge", metrics, stderr, n: 1, perItem: [] }, "acc_norm", "h", [0]);
  assert.equal(fig.stderr, 0);
  const cell = {
    id: "c",
    model: "m",
    method: "base",
    seed: 0,
    params: { trainable: 0, total: 1 },
    cost: {
      flopsForward: 0,
      flopsBackward: 0,
      flopsTotal: 0,
      wallSeconds: 0,
      flopsPerSecond: 0,
      peakMemoryBytes: 0,
    },
    security: {},
    utility: { arc_challenge: fig },
  };
  const results = parseExperimentResults(
    JSON.parse(JSON.stringify({ name: "x", createdAt: "2026-12-01", machine: "", cells: [cell] })),
    "results.json",
  );
  // Table 3 shows the one item's Wilson interval, 0 of 1: [0, 0.793451]
  const t = utilityTable(results);
  assert.equal(
    formatCell(t.rows[0]![t.columns.findIndex((c) => c.header === "Value")]!, "rate"),
    "0.0% [0.0, 79.3]",
  );
});

test("securityCell records how the mean loss gap's interval was made: over tasks where the evaluation resampled them", () => {
  const preference = {
    rate: { value: 0.5, low: 0.2, high: 0.8 },
    meanLossGap: { value: 0.1, low: -0.2, high: 0.4 },
    n: 8,
    perLanguage: {},
  };
  const cellOf = (p: object) =>
    securityCell({ preference: p, safety: null, utility: {} } as unknown as ModelEvaluation, null, []);
  assert.equal(
    cellOf({ ...preference, lossGapByTask: { tasks: 3 } }).security.lossGapInterval,
    "bootstrap-task",
  );
  assert.equal("lossGapInterval" in cellOf(preference).security, false);
});

test("the protocol says how many distinct tasks and CWEs the answered prompts cover, of the held-out pairs'", () => {
  const withTask = (id: string, lang: string, task: string | undefined, cwe: string | undefined) =>
    ({
      ...pair(id, lang, `Write ${lang} code ${id}.`),
      ...(task ? { task } : {}),
      ...(cwe ? { cwe } : {}),
    }) as SecurityPair;
  // by hand: cpp's first two prompts are one task; round-robin over languages takes c1 and j1 for a budget of 2
  // of the first four pairs: tasks cpp/t1 and java/t3 of 3, CWEs 79 and 89 of 3. All five: 4 tasks (cpp's and
  // go's "t1" are two tasks) and 3 CWEs
  const pairs = [
    withTask("c1", "cpp", "t1", "CWE-79"),
    withTask("c2", "cpp", "t1", "CWE-79"),
    withTask("c3", "cpp", "t2", "CWE-120"),
    withTask("j1", "java", "t3", "CWE-89"),
    withTask("g1", "go", "t1", "CWE-89"),
  ];
  const two = evaluationProtocol({ pairs: pairs.slice(0, 4), maxPrompts: 2, maxNewTokens: 8 });
  assert.deepEqual(
    two.prompts.map((p) => p.id),
    ["c1", "j1"],
  );
  assert.match(
    describeProtocol(two.protocol),
    /^2 of 4 held-out prompts over 2 of 3 tasks \(2 of 3 CWEs\); /,
  );
  const all = evaluationProtocol({ pairs, maxPrompts: 0, maxNewTokens: 8 });
  assert.match(
    describeProtocol(all.protocol),
    /^all 5 held-out prompts, as they are, over all 4 tasks \(all 3 CWEs\); greedy/,
  );
  // CWEs without tasks (CyberNative names a CWE per pair, no task): the CWEs alone
  const cweOnly = pairs.map((p) => ({ ...p, task: undefined }));
  assert.match(
    describeProtocol(evaluationProtocol({ pairs: cweOnly, maxPrompts: 2, maxNewTokens: 8 }).protocol),
    /^2 of 5 held-out prompts over 2 of 3 CWEs; /,
  );
});
