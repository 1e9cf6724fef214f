/**
 * `goodvibe eval --base`: both sides of the utility comparison. The base was evaluated for its safe rates only, so
 * the held-out code loss (and any --arc/--gsm8k/... benchmark) was the model's alone. Now the base is evaluated on
 * the same utility files, its utility is printed and in the JSON (`baseUtility`), and each shared metric's
 * difference comes with an interval (`utilityVsBase`; the held-out loss paired by pair). Checked against the two
 * sides' own values: with every pair scored by both, the paired mean difference is the difference of the means.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { newcombePairedDifference } from "../../src/eval/metrics.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { balancedPairs, runCli, showRun } from "./cli-helpers.js";

const model = makeTinyChatModel({ seed: 1 });
const base = makeTinyChatModel({ seed: 2 });
const work = scratchDir("gv-eval-base-");
const heldOut = path.join(work, "held out ü.jsonl");
writeCorpusJsonl(heldOut, balancedPairs(model.pairs, 1));
const arc = path.join(work, "arc.jsonl");
fs.writeFileSync(
  arc,
  [
    {
      id: "q1",
      question: "Which is a gas?",
      choices: { text: ["ice", "steam", "rock"], label: ["A", "B", "C"] },
      answerKey: "B",
    },
    {
      id: "q2",
      question: "Which is a metal?",
      choices: { text: ["wood", "iron"], label: ["A", "B"] },
      answerKey: "B",
    },
  ]
    .map((r) => JSON.stringify(r))
    .join("\n") + "\n",
);

// three held-out real-code documents for --code (the held-out real-code loss)
const code = path.join(work, "code.jsonl");
fs.writeFileSync(
  code,
  [
    { id: "c1", lang: "python", code: "def add(a, b):\n    return a + b\n" },
    { id: "c2", lang: "go", code: "package main\n\nfunc main() {\n\tprintln(1)\n}\n" },
    { id: "c3", lang: "c", code: "int sq(int x) { return x * x; }\n".repeat(3) },
  ]
    .map((r) => JSON.stringify(r))
    .join("\n") + "\n",
);

test("eval --base: the base's held-out loss and benchmarks beside the model's, and their differences with intervals", async () => {
  const args = ["eval", "-m", model.dir, "--base", base.dir, "-d", heldOut, "--arc", arc, "--code", code];
  args.push("--prompts", "1");
  const r = await runCli([...args, "--max-new-tokens", "4", "--cache", path.join(work, "cache"), "--json"]);
  assert.equal(r.code, 0, showRun(r));
  const out = JSON.parse(r.stdout);
  const mine = out.utility.heldout_code_loss;
  const theirs = out.baseUtility?.heldout_code_loss;
  assert.ok(theirs, `no base held-out loss in ${r.stdout}`);
  assert.equal(theirs.n, mine.n);
  assert.ok(Math.abs(theirs.value - mine.value) > 1e-6, "two different models, two losses");
  const d = out.utilityVsBase.heldout_code_loss;
  // paired per held-out pair (the mean of its two answers' loss), float64 under one hash on both sides: the
  // mean per-pair difference ± z·sd/√n, recomputed here from the decoded bytes
  assert.equal(d.method, "paired normal");
  assert.equal(d.n, mine.n / 2, "one difference per pair");
  assert.equal(mine.perItem.unitsPerItem, 2);
  assert.equal(mine.perItem.items, theirs.perItem.items);
  const f64 = (u: { perItem: { f64: string } }) => {
    const buf = Buffer.from(u.perItem.f64, "base64");
    return Array.from({ length: buf.length / 8 }, (_, i) => buf.readDoubleLE(8 * i));
  };
  const dd = f64(mine).map((x, i) => x - f64(theirs)[i]!);
  assert.equal(dd.length, d.n);
  const dm = dd.reduce((s, x) => s + x, 0) / dd.length;
  const half =
    1.959963984540054 * Math.sqrt(dd.reduce((s, x) => s + (x - dm) ** 2, 0) / (dd.length - 1) / dd.length);
  assert.ok(Math.abs(d.low - (d.diff - half)) < 1e-12 && Math.abs(d.high - (d.diff + half)) < 1e-12);
  assert.ok(
    Math.abs(d.diff - (mine.value - theirs.value)) < 1e-9,
    `${d.diff} vs ${mine.value - theirs.value}`,
  );
  assert.ok(d.low <= d.diff && d.diff <= d.high);
  // the benchmark too, on both sides
  assert.equal(out.baseUtility.arc_challenge.n, 2);
  const a = out.utilityVsBase.arc_challenge;
  assert.ok(
    Math.abs(a.diff - (out.utility.arc_challenge.value - out.baseUtility.arc_challenge.value)) < 1e-12,
  );
  // both sides answered the same two ARC items and keep their 0/1 scores (a bitset: item i in bit i of byte 0),
  // so the difference is paired, by Newcombe's interval (hand-checked in test/metrics) of the 2×2 table counted
  // here from the two bitsets
  assert.equal(a.method, "paired newcombe");
  assert.equal(a.n, 2);
  const bitsOf = (u: { perItem: { items: string; bits: string } }) => {
    const byte = Buffer.from(u.perItem.bits, "base64")[0]!;
    return [byte & 1, (byte >> 1) & 1];
  };
  assert.equal(out.utility.arc_challenge.perItem.items, out.baseUtility.arc_challenge.perItem.items);
  const m = bitsOf(out.utility.arc_challenge);
  const bb = bitsOf(out.baseUtility.arc_challenge);
  const count = (x: number, y: number) => [0, 1].filter((i) => m[i] === x && bb[i] === y).length;
  const table = { both: count(1, 1), firstOnly: count(1, 0), secondOnly: count(0, 1), neither: count(0, 0) };
  const want = newcombePairedDifference(table);
  assert.ok(Math.abs(a.low - want.low) < 1e-12, `low ${a.low} for ${JSON.stringify(table)}`);
  assert.ok(Math.abs(a.high - want.high) < 1e-12, `high ${a.high}`);
  assert.ok(a.high - a.low > 0.2, "two items leave a wide interval, never a point");
  // the --code real-code loss: one float64 per document on both sides, one hash, so paired per document (its
  // arithmetic by hand in test/utility/code-loss)
  const rc = out.utilityVsBase.heldout_real_code_loss;
  assert.equal(rc.method, "paired normal");
  assert.equal(rc.n, 3);
  assert.equal(
    out.utility.heldout_real_code_loss.perItem.items,
    out.baseUtility.heldout_real_code_loss.perItem.items,
  );
  assert.equal(f64(out.utility.heldout_real_code_loss).length, 3);
  // `base` keeps its shape: the base's security
  assert.ok(out.base.securePreference);

  const t = await runCli([...args, "--max-new-tokens", "4", "--cache", path.join(work, "cache")]);
  assert.equal(t.code, 0, showRun(t));
  assert.match(
    t.stdout,
    /^base heldout_code_loss: nll\/token \d+\.\d{4} \[\d+\.\d{4}, \d+\.\d{4}\] \(n=\d+; se /m,
  );
  assert.match(t.stdout, /^base arc_challenge: /m);
  // the second run takes the figures from --cache, their per-document scores with them: still paired
  assert.match(t.stdout, /^heldout_real_code_loss: .*\(reused from --cache/m);
  assert.match(
    t.stdout,
    /^vs base \(heldout_real_code_loss\): nll\/token [+-]\d+\.\d{4} \[[+-]\d+\.\d{4}, [+-]\d+\.\d{4}\] \(model − base, 95% interval; paired over the 3 documents both scored, mean difference ± 1\.96·sd\/√n\)$/m,
  );
  assert.match(
    t.stdout,
    /^vs base \(heldout_code_loss\): nll\/token [+-]\d+\.\d{4} \[[+-]\d+\.\d{4}, [+-]\d+\.\d{4}\] \(model − base, 95% interval; paired over the \d+ held-out pairs both scored, mean difference ± 1\.96·sd\/√n\)$/m,
  );
  assert.match(
    t.stdout,
    /^vs base \(arc_challenge\): acc_norm [+-]\d+\.\d{4} \[[+-]\d+\.\d{4}, [+-]\d+\.\d{4}\] \(model − base, 95% interval; paired over the 2 items both scored, Newcombe's score interval\)$/m,
  );
});

test("eval --limit draws --code's documents as it draws a benchmark's items, on both sides, and says so", async () => {
  const args = ["eval", "-m", model.dir, "--base", base.dir, "-d", heldOut, "--code", code, "--prompts", "1"];
  args.push("--max-new-tokens", "4", "--limit", "2", "--seed", "5");
  const r = await runCli([...args, "--json"]);
  assert.equal(r.code, 0, showRun(r));
  const out = JSON.parse(r.stdout);
  // before, --limit was ignored here: all three documents were scored
  assert.equal(out.utility.heldout_real_code_loss.n, 2);
  assert.equal(out.baseUtility.heldout_real_code_loss.n, 2);
  const scores = Buffer.from(out.utility.heldout_real_code_loss.perItem.f64, "base64");
  assert.equal(scores.length, 2 * 8, "one float64 per document drawn");
  assert.equal(out.utilityVsBase.heldout_real_code_loss.method, "paired normal", "the same two documents");
  assert.equal(out.utilityVsBase.heldout_real_code_loss.n, 2);
  assert.deepEqual(out.utilityLimit, { limit: 2, seed: 5 });
  const t = await runCli(args);
  assert.equal(t.code, 0, showRun(t));
  assert.match(
    t.stdout,
    /^utility subsample: at most 2 items of each benchmark and documents of --code, drawn with seed 5 \(--limit; /m,
  );
  assert.match(t.stdout, /paired over the 2 documents both scored/);
  assert.match(
    t.stdout,
    /^heldout_real_code_loss \((c|go|python)\): nll\/token \d+\.\d{4} \[\d+\.\d{4}, \d+\.\d{4}\] \(n=\d; se /m,
  );
  // no limit: all three, and no subsample line or field
  const all = await runCli(
    ["eval", "-m", model.dir, "-d", heldOut, "--code", code, "--prompts", "1"].concat([
      "--max-new-tokens",
      "4",
      "--json",
    ]),
  );
  assert.equal(all.code, 0, showRun(all));
  const full = JSON.parse(all.stdout);
  assert.equal(full.utility.heldout_real_code_loss.n, 3);
  assert.equal(full.utilityLimit, undefined);
  // each language's figure with its standard error; three documents in three languages: one each, se 0
  assert.deepEqual(Object.keys(full.utility.heldout_real_code_loss.perLanguage).sort(), [
    "c",
    "go",
    "python",
  ]);
  for (const l of Object.values(full.utility.heldout_real_code_loss.perLanguage) as {
    n: number;
    stderr: number;
  }[]) {
    assert.equal(l.n, 1);
    assert.equal(l.stderr, 0);
  }
});

test("eval --base with one --cache: the base's benchmarks are evaluated once and reused for the next model, and the output says so", async () => {
  const other = makeTinyChatModel({ seed: 3 });
  const cache = path.join(work, "shared cache");
  const run = (m: string, extra: string[] = []) =>
    runCli(
      ["eval", "-m", m, "--base", base.dir, "-d", heldOut, "--arc", arc, "--prompts", "1"].concat([
        "--max-new-tokens",
        "4",
        "--cache",
        cache,
        "--json",
        ...extra,
      ]),
    );
  const first = await run(model.dir);
  assert.equal(first.code, 0, showRun(first));
  const a = JSON.parse(first.stdout);
  assert.equal(a.baseUtilityReused, undefined, "nothing to reuse in a fresh cache");
  assert.equal(a.utilityReused, undefined);

  // another model against the same base: the base's ARC comes from the cache (the same figures as evaluating it,
  // which the first run did), the new model's is evaluated
  const second = await run(other.dir);
  assert.equal(second.code, 0, showRun(second));
  const b = JSON.parse(second.stdout);
  assert.deepEqual(b.baseUtilityReused, ["arc_challenge"]);
  assert.equal(b.utilityReused, undefined, "the other model was never evaluated");
  assert.deepEqual(b.baseUtility.arc_challenge, a.baseUtility.arc_challenge);
  assert.match(second.stderr, /arc_challenge: reused from .*utility-[0-9a-f]{16}\.jsonl/);

  // a setting that changes the benchmark (a subsample) is not reused; the text output marks what was
  const third = await run(other.dir, ["--limit", "1"]);
  assert.equal(third.code, 0, showRun(third));
  assert.equal(JSON.parse(third.stdout).baseUtilityReused, undefined);
  const text = await runCli(
    ["eval", "-m", other.dir, "--base", base.dir, "-d", heldOut, "--arc", arc, "--prompts", "1"].concat([
      "--max-new-tokens",
      "4",
      "--cache",
      cache,
    ]),
  );
  assert.equal(text.code, 0, showRun(text));
  assert.match(
    text.stdout,
    /^base arc_challenge: .*\(n=2; se \d+\.\d{4}\) \(reused from --cache: same model, files, settings and build\)$/m,
  );
  assert.match(
    text.stdout,
    /^arc_challenge: .*\(n=2; se \d+\.\d{4}\) \(reused from --cache/m,
    "the other model's own, from the second run",
  );
});

test("eval --help says what --cache keeps, utility benchmarks included", async () => {
  const r = await runCli(["eval", "--help"]);
  assert.equal(r.code, 0, showRun(r));
  const cache = r.stdout
    .slice(r.stdout.indexOf("--cache"))
    .split(/\n {2}-/)[0]!
    .replace(/\s+/g, " ");
  assert.match(
    cache,
    /finished utility benchmarks, per model .*a base's benchmarks are reused across models/,
  );
});
