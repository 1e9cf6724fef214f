/**
 * The held-out real-code loss against a direct computation: every file's tokens, cut into windows, each window's
 * tokens after its first scored by the model's full logits (log-softmax written out here), averaged per token.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { codeLoss, codeLossFromSums, readCodeRows } from "../../src/eval/utility/code-loss.js";
import {
  decodeScores,
  pairedDifference,
  perItemProblem,
  unpairedDifference,
  type ItemScores,
} from "../../src/eval/utility/items.js";
import { Z95 } from "../../src/eval/metrics.js";
import { CODE_DOCS, CODE_SUMS_BASE, CODE_SUMS_MODEL, CODE_TOKENS } from "./code-losses.js";
import { loadModel } from "../../src/models/load.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
import { subsample } from "../../src/eval/utility/datasets.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const work = scratchDir("gv-code-loss-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

test("codeLoss equals the per-token NLL computed from the full logits, window by window", async () => {
  const made = makeTinyChatModel({ seed: 11 });
  const model = loadModel(made.dir);
  const tok = await loadTokenizer(made.dir);
  const rows = [
    { id: "a", lang: "go", code: 'package main\n\nfunc main() {\n\tprintln("hi")\n}\n' },
    { id: "b", lang: "java", code: "class A { int f(int x) { return x * 2; } }\n".repeat(6) },
  ];
  const maxLength = 16;
  const r = await codeLoss(model, tok, rows, { maxLength, batchSize: 3 });
  let total = 0;
  let count = 0;
  const perFile: number[] = [];
  const counts: number[] = [];
  for (const row of rows) {
    const ids = tok.encode(row.code, { addSpecialTokens: false });
    let s = 0;
    let n = 0;
    for (let start = 0; start + 1 < ids.length; start += maxLength) {
      const w = ids.slice(start, start + maxLength);
      const logits = noGrad(() =>
        model.forward(Tensor.fromArray(w, [1, w.length], "int64")).toFloat64Array(),
      );
      const V = logits.length / w.length;
      for (let t = 1; t < w.length; t++) {
        const row = logits.subarray((t - 1) * V, t * V);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
        s += lse - row[w[t]!]!;
        n++;
      }
    }
    perFile.push(s / n);
    counts.push(n);
    total += s;
    count += n;
  }
  assert.equal(r.tokens, count);
  assert.equal(r.n, 2);
  assert.ok(Math.abs(r.value - total / count) < 1e-4, `${r.value} vs ${total / count}`);
  assert.ok(Math.abs(r.perLanguage.go!.value - perFile[0]!) < 1e-4);
  // se of the token-weighted mean over the two files, written out: z_i = (S_i − R·t_i)/t̄, se = sd(z)/√2; the
  // per-file scores R + z_i, whose mean is the figure
  const sums = perFile.map((l, i) => l * counts[i]!);
  const R = total / count;
  const z = sums.map((s, i) => (s - R * counts[i]!) / (count / 2));
  assert.ok(Math.abs(r.stderr - Math.sqrt(z[0]! ** 2 + z[1]! ** 2) / Math.sqrt(2)) < 1e-4);
  const xs = decodeScores(r.perItem, r.n) as number[];
  assert.equal(xs.length, 2);
  xs.forEach((x, i) => assert.ok(Math.abs(x - (R + z[i]!)) < 1e-4, `${x} vs ${R + z[i]!}`));
  assert.equal(perItemProblem({ metric: "nll/token", ...r }), undefined);
});

const decoded = (r: { perItem: ItemScores; n: number }) => decodeScores(r.perItem, r.n) as number[];
const near = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test("codeLossFromSums, four documents by hand: the token-weighted figure, its ratio se, one linearised score per document", () => {
  // test/utility/code-losses.ts works the numbers
  const b = codeLossFromSums(CODE_DOCS, CODE_SUMS_BASE, CODE_TOKENS, 1024);
  near(b.value, 1.5);
  near(b.stderr, Math.sqrt(0.875 / 3) / 2);
  assert.equal(b.n, 4);
  assert.equal(b.tokens, 8);
  assert.deepEqual(decoded(b), [1.75, 1.5, 0.75, 2.0]);
  assert.equal(b.perItem.unitsPerItem, undefined);
  assert.equal(b.perItem.bits, undefined, "float64 even for scores that happen to be whole");
  const m = codeLossFromSums(CODE_DOCS, CODE_SUMS_MODEL, CODE_TOKENS, 1024);
  near(m.value, 1.375);
  near(m.stderr, Math.sqrt(0.4765625 / 3) / 2);
  assert.deepEqual(decoded(m), [1.4375, 1.5, 0.8125, 1.75]);
  assert.equal(m.perItem.items, b.perItem.items, "the same documents cut the same way: one hash");

  // paired through the one function Table 3 and eval --base use
  const fig = (r: typeof b) => ({
    metric: "nll/token",
    value: r.value,
    stderr: r.stderr,
    n: r.n,
    perItem: r.perItem,
  });
  const p = pairedDifference(fig(m), fig(b));
  assert.ok(typeof p !== "string", String(p));
  assert.equal(p.method, "normal");
  assert.equal(p.n, 4);
  near(p.diff, -0.125);
  near(p.se, Math.sqrt(0.1015625 / 3) / 2);
  near(p.low, -0.125 - Z95 * (Math.sqrt(0.1015625 / 3) / 2));
  near(p.high, -0.125 + Z95 * (Math.sqrt(0.1015625 / 3) / 2));
  near(p.low, -0.305312, 1e-6);
  const u = unpairedDifference(fig(m), fig(b));
  near(u.high - u.diff, Z95 * Math.sqrt((0.875 + 0.4765625) / 12));
  near(u.high - u.diff, 0.657772, 1e-6);

  // the hash names the documents as scored: another window length, an edited file, other token counts (another
  // tokenizer), another order: not the same items
  const other = [
    codeLossFromSums(CODE_DOCS, CODE_SUMS_BASE, CODE_TOKENS, 512),
    codeLossFromSums(
      CODE_DOCS.map((d, i) => (i === 2 ? { ...d, code: d.code + " edited" } : d)),
      CODE_SUMS_BASE,
      CODE_TOKENS,
      1024,
    ),
    codeLossFromSums(CODE_DOCS, CODE_SUMS_BASE, [1, 2, 4, 1], 1024),
    codeLossFromSums(
      [...CODE_DOCS].reverse(),
      [...CODE_SUMS_BASE].reverse(),
      [...CODE_TOKENS].reverse(),
      1024,
    ),
  ];
  for (const o of other) {
    assert.notEqual(o.perItem.items, b.perItem.items);
    assert.equal(pairedDifference(fig(m), fig(o)), "the two sides scored different items");
  }
  // a file without a scored token is not one of n, as before
  const withEmpty = codeLossFromSums(
    [...CODE_DOCS, { id: "tiny", code: "x" }],
    [...CODE_SUMS_BASE, 0],
    [...CODE_TOKENS, 0],
    1024,
  );
  assert.equal(withEmpty.n, 4);
  assert.deepEqual(decoded(withEmpty), [1.75, 1.5, 0.75, 2.0]);
});

test("codeLossFromSums per language: each its own token-weighted mean with the ratio se over its own documents", () => {
  // test/utility/code-losses.ts: python = documents 0 and 2 (t = 1, 3; S = 2, 3), c = 1 and 3 (t = 2, 2; S = 3, 4).
  // python: R = 5/4, t̄ = 2, x = 1.25 + (0.75, −0.75)/2 = 1.625, 0.875; with two documents se = |x1 − x2|/2 = 0.375.
  // c: R = 7/4, x = 1.75 + (−0.5, 0.5)/2 = 1.5, 2.0; se = 0.25.
  const b = codeLossFromSums(CODE_DOCS, CODE_SUMS_BASE, CODE_TOKENS, 1024);
  assert.deepEqual(Object.keys(b.perLanguage).sort(), ["c", "python"]);
  const py = b.perLanguage.python!;
  const c = b.perLanguage.c!;
  near(py.value, 1.25);
  near(py.stderr, 0.375);
  assert.equal(py.n, 2);
  assert.equal(py.tokens, 4);
  near(c.value, 1.75);
  near(c.stderr, 0.25);
  assert.equal(c.n, 2);
  assert.equal(c.tokens, 4);
  // the languages' token-weighted means make up the figure
  near((py.value * py.tokens + c.value * c.tokens) / (py.tokens + c.tokens), b.value);
  // one language alone: its figure is the overall one, interval and all
  const one = CODE_DOCS.map((d) => ({ ...d, lang: "go" }));
  const g = codeLossFromSums(one, CODE_SUMS_BASE, CODE_TOKENS, 1024);
  near(g.perLanguage.go!.value, g.value);
  near(g.perLanguage.go!.stderr, g.stderr);
  near(g.stderr, Math.sqrt(0.875 / 3) / 2);
  // no lang: "unknown"; a file without a scored token counts in no language
  const bare = codeLossFromSums(
    [...CODE_DOCS.map(({ lang: _l, ...d }) => d), { id: "tiny", lang: "rust", code: "x" }],
    [...CODE_SUMS_BASE, 0],
    [...CODE_TOKENS, 0],
    1024,
  );
  assert.deepEqual(Object.keys(bare.perLanguage), ["unknown"]);
});

test("readCodeRows names the file, row and field of a bad row", () => {
  const f = path.join(work, "code.jsonl");
  fs.writeFileSync(f, '{"code": "x = 1", "lang": "python"}\n\n{"lang": "go"}\n');
  assert.throws(
    () => readCodeRows(f),
    (e: Error) => e instanceof InputError && /code\.jsonl row 3 field "code"/.test(e.message),
  );
  fs.writeFileSync(f, '{"code": "x = 1"}\n');
  assert.deepEqual(readCodeRows(f), [{ id: "row-1", code: "x = 1" }]);
});

test("readCodeRows with --limit: that many documents, the benchmarks' seeded draw, in file order; every row checked first", () => {
  const f = path.join(work, "code-limit.jsonl");
  const ids = Array.from({ length: 10 }, (_, i) => `d${i}`);
  fs.writeFileSync(f, ids.map((id) => JSON.stringify({ id, code: `x = ${id}` })).join("\n") + "\n");
  const all = readCodeRows(f);
  const drawn = readCodeRows(f, { limit: 4, seed: 7 });
  assert.equal(drawn.length, 4);
  assert.deepEqual(
    drawn.map((r) => r.id),
    subsample(ids, { limit: 4, seed: 7 }),
    "the same draw as ARC's or MMLU's items under --limit 4 --seed 7",
  );
  const at = drawn.map((r) => ids.indexOf(r.id));
  assert.deepEqual(
    at,
    [...at].sort((a, b) => a - b),
    "file order kept",
  );
  assert.deepEqual(readCodeRows(f, { limit: 4, seed: 7 }), drawn, "deterministic");
  const key = (rows: { id: string }[]) => rows.map((r) => r.id).join();
  assert.ok(
    [1, 2, 3].some((seed) => key(readCodeRows(f, { limit: 4, seed })) !== key(drawn)),
    "another seed, another draw",
  );
  assert.deepEqual(readCodeRows(f, { limit: 50, seed: 7 }), all, "a limit above the rows keeps them all");
  fs.appendFileSync(f, '{"lang": "go"}\n');
  assert.throws(
    () => readCodeRows(f, { limit: 1, seed: 0 }),
    (e: Error) => e instanceof InputError && /row 11 field "code"/.test(e.message),
  );
});
