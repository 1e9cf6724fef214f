/**
 * The held-out real-code loss against a direct computation: every file's tokens, cut into windows, each window's
 * tokens after its first scored by the model's full logits (log-softmax written out here), averaged per token.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { codeLoss, readCodeRows } from "../../src/eval/utility/code-loss.js";
import { loadModel } from "../../src/models/load.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
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
    total += s;
    count += n;
  }
  assert.equal(r.tokens, count);
  assert.equal(r.n, 2);
  assert.ok(Math.abs(r.value - total / count) < 1e-4, `${r.value} vs ${total / count}`);
  assert.ok(Math.abs(r.perLanguage.go!.value - perFile[0]!) < 1e-4);
  const m = (perFile[0]! + perFile[1]!) / 2;
  const sd = Math.sqrt((perFile[0]! - m) ** 2 + (perFile[1]! - m) ** 2);
  assert.ok(Math.abs(r.stderr - sd / Math.sqrt(2)) < 1e-4);
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
