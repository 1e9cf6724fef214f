/**
 * Secure preference: per-answer losses against an independent computation (organism template rendered here,
 * one unpadded forward per answer, log-softmax written out in float64), the summary numbers from the per-pair
 * losses.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { securePreference } from "../../src/eval/preference.js";
import { loadModel, type DecoderModel } from "../../src/models/index.js";
import { loadTokenizer, type HfTokenizer } from "../../src/io/tokenizer.js";
import { renderOrganismChat } from "../../src/data/corpus.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
import { pairedBootstrap, quantile, wilsonInterval } from "../../src/eval/metrics.js";
import { createRng } from "../../src/util/random.js";
import type { SecurityPair } from "../../src/data/pairs.js";
import { makeTinyChatModel } from "./make-model.js";
import { scratchDir } from "../scratch.js";

const made = makeTinyChatModel({ seed: 9 });

/** Mean NLL of the answer's tokens up to and including <|im_end|>, given the question. */
function referenceLoss(model: DecoderModel, tok: HfTokenizer, question: string, answer: string): number {
  const prompt = tok.encode(
    renderOrganismChat([{ role: "user", content: question }], { addGenerationPrompt: true }),
    {
      addSpecialTokens: false,
    },
  );
  const full = tok.encode(
    renderOrganismChat([
      { role: "user", content: question },
      { role: "assistant", content: answer },
    ]),
    { addSpecialTokens: false },
  );
  assert.deepEqual(full.slice(0, prompt.length), prompt);
  const end = full.lastIndexOf(tok.tokenToId("<|im_end|>")!); // the template's trailing "\n" is not a target
  const logits = noGrad(() =>
    model.forward(Tensor.fromArray(full, [1, full.length], "int64")).toFloat32Array(),
  );
  const V = model.cfg.vocabSize;
  let sum = 0;
  for (let t = prompt.length; t <= end; t++) {
    const row = logits.subarray((t - 1) * V, t * V);
    let m = -Infinity;
    for (const x of row) m = Math.max(m, x);
    let z = 0;
    for (const x of row) z += Math.exp(x - m);
    sum -= row[full[t]!]! - m - Math.log(z);
  }
  return sum / (end - prompt.length + 1);
}

test("per-pair losses equal an unpadded forward + hand log-softmax; summary follows from them", async () => {
  const tok = await loadTokenizer(made.dir);
  const model = loadModel(made.dir);
  const pairs = made.pairs.filter((_, i) => i % 19 === 0); // 6 pairs, several languages
  // batch size 3 over 12 sequences of different lengths: pairs straddle batches, rows are padded
  const r = await securePreference(model, tok, pairs, { batchSize: 3, iterations: 2000, seed: 4 });
  assert.equal(r.n, pairs.length);
  pairs.forEach((p, i) => {
    const got = r.perPair[i]!;
    assert.equal(got.id, p.id);
    const c = referenceLoss(model, tok, p.question, p.chosen);
    const x = referenceLoss(model, tok, p.question, p.rejected);
    assert.ok(Math.abs(got.chosenLoss - c) < 1e-4 * c, `${p.id} chosen: ${got.chosenLoss} vs ${c}`);
    assert.ok(Math.abs(got.rejectedLoss - x) < 1e-4 * x, `${p.id} rejected: ${got.rejectedLoss} vs ${x}`);
  });
  const preferred = r.perPair.filter((p) => p.chosenLoss < p.rejectedLoss).length;
  const w = wilsonInterval(preferred, pairs.length);
  assert.deepEqual(r.rate, { value: w.value, low: w.low, high: w.high });
  const gaps = r.perPair.map((p) => p.rejectedLoss - p.chosenLoss);
  const meanGap = gaps.reduce((a, b) => a + b, 0) / gaps.length;
  assert.ok(Math.abs(r.meanLossGap.value - meanGap) < 1e-12);
  assert.ok(r.meanLossGap.low <= meanGap && meanGap <= r.meanLossGap.high);
  assert.ok(r.meanLossGap.low >= Math.min(...gaps) && r.meanLossGap.high <= Math.max(...gaps));
  const langs = [...new Set(pairs.map((p) => p.lang))].sort();
  assert.deepEqual(Object.keys(r.perLanguage), langs);
  assert.equal(
    Object.values(r.perLanguage).reduce((a, s) => a + s.n, 0),
    pairs.length,
  );
  // the batch size changes only float rounding
  const again = await securePreference(model, tok, pairs, { batchSize: 12, iterations: 2000, seed: 4 });
  again.perPair.forEach((p, i) => assert.ok(Math.abs(p.chosenLoss - r.perPair[i]!.chosenLoss) < 1e-4));
});

test("no pairs, or a prompt longer than maxLength, is an InputError naming the pair", async () => {
  const tok = await loadTokenizer(made.dir);
  await assert.rejects(securePreference(loadModel(made.dir), tok, []), InputError);
  const p = made.pairs[0]!;
  await assert.rejects(
    securePreference(loadModel(made.dir), tok, [p], { maxLength: 4 }),
    new RegExp(`pair ${p.id}:`),
  );
});

test("with a cache file: stopped after two batches, the rerun scores only the rest and equals an uninterrupted run bit for bit", async () => {
  const tok = await loadTokenizer(made.dir);
  const model = loadModel(made.dir);
  const pairs = made.pairs.filter((_, i) => i % 19 === 0); // 6 pairs = 12 answers = 4 batches of 3
  const opts = { batchSize: 3, iterations: 500, seed: 1 };
  const reference = await securePreference(model, tok, pairs, opts);

  const cacheFile = path.join(scratchDir("gv-pref-cache-"), "preference.jsonl");
  let forwards = 0;
  const hidden = model.hidden.bind(model);
  model.hidden = (...a: Parameters<DecoderModel["hidden"]>) => {
    forwards++;
    return hidden(...a);
  };
  const stop = new AbortController();
  await assert.rejects(
    securePreference(model, tok, pairs, {
      ...opts,
      cacheFile,
      signal: stop.signal,
      onProgress: (done) => done >= 6 && stop.abort(),
    }),
    (e: Error) => e.name === "InterruptedError" && e.message.includes(cacheFile),
  );
  assert.equal(forwards, 2);
  assert.equal(fs.readFileSync(cacheFile, "utf8").trim().split("\n").length, 2);
  // a kill mid-write leaves a torn line: dropped
  fs.appendFileSync(cacheFile, '\n{"key": "torn');

  forwards = 0;
  const resumed = await securePreference(model, tok, pairs, { ...opts, cacheFile });
  assert.equal(forwards, 2, "the two kept batches were scored again");
  assert.deepEqual(resumed, reference);
  // and a third run scores nothing
  forwards = 0;
  assert.deepEqual(await securePreference(model, tok, pairs, { ...opts, cacheFile }), reference);
  assert.equal(forwards, 0);
});

test("progress: the first report comes before the first batch is scored (it starts the clock), then one per batch; a resumed run's starts at the kept answers", async () => {
  const tok = await loadTokenizer(made.dir);
  const model = loadModel(made.dir);
  const pairs = made.pairs.filter((_, i) => i % 19 === 0); // 12 answers
  let forwards = 0;
  const hidden = model.hidden.bind(model);
  model.hidden = (...a: Parameters<DecoderModel["hidden"]>) => {
    forwards++;
    return hidden(...a);
  };
  const run = async (batchSize: number, cacheFile?: string, signal?: AbortSignal, stopAt?: () => void) => {
    const seen: string[] = [];
    forwards = 0;
    await securePreference(model, tok, pairs, {
      batchSize,
      iterations: 10,
      ...(cacheFile ? { cacheFile } : {}),
      ...(signal ? { signal } : {}),
      onProgress: (done, total) => {
        seen.push(`${done}/${total} after ${forwards}`);
        if (done >= 6) stopAt?.();
      },
    });
    return seen;
  };
  // one batch: before it a report of nothing done (the meter's clock; "elapsed 0.0 s" without it), then the end
  assert.deepEqual(await run(16), ["0/12 after 0", "12/12 after 1"]);
  assert.deepEqual(await run(6), ["0/12 after 0", "6/12 after 1", "12/12 after 2"]);
  // resumed from a cache holding the first batch: its report comes first (no forward), none repeated
  const cacheFile = path.join(scratchDir("gv-pref-progress-"), "preference.jsonl");
  const stop = new AbortController();
  await assert.rejects(
    run(6, cacheFile, stop.signal, () => stop.abort()),
    /stopped/,
  );
  assert.deepEqual(await run(6, cacheFile), ["6/12 after 0", "12/12 after 1"]);
});

test("pairs that name their task: the mean loss gap's bootstrap resamples whole tasks (lang:task), same seed", async () => {
  const tok = await loadTokenizer(made.dir);
  const model = loadModel(made.dir);
  // 12 pairs over 3 tasks per language; a pair without a task is its own
  const base: SecurityPair[] = made.pairs
    .filter((_, i) => i % 9 === 0)
    .slice(0, 12)
    .map(({ id, lang, cwe, question, chosen, rejected }) => ({ id, lang, cwe, question, chosen, rejected }));
  const pairs: SecurityPair[] = base.map((p, i) => (i === 11 ? p : { ...p, task: `tpl${i % 3}` }));
  const opts = { batchSize: 8, iterations: 2000, seed: 4 };
  const r = await securePreference(model, tok, pairs, opts);
  const gaps = r.perPair.map((p) => p.rejectedLoss - p.chosenLoss);
  const groups = pairs.map((p) => `${p.lang}:${p.task ?? p.id}`);
  // reference: the textbook cluster bootstrap written out (clusters in order of first appearance)
  const names = [...new Set(groups)];
  const members = names.map((g) => gaps.filter((_, i) => groups[i] === g));
  const rng = createRng(4);
  const stats: number[] = [];
  for (let it = 0; it < 2000; it++) {
    const items: number[] = [];
    for (let k = 0; k < names.length; k++) items.push(...members[rng.int(names.length)]!);
    stats.push(items.reduce((a, b) => a + b, 0) / items.length);
  }
  stats.sort((a, b) => a - b);
  assert.ok(Math.abs(r.meanLossGap.low - quantile(stats, 0.025)) < 1e-9);
  assert.ok(Math.abs(r.meanLossGap.high - quantile(stats, 0.975)) < 1e-9);
  assert.deepEqual(r.lossGapByTask, { tasks: names.length });
  // per language likewise over that language's tasks (or over its pairs where it has a single task)
  for (const [lang, s] of Object.entries(r.perLanguage)) {
    const tasks = new Set(groups.filter((_, i) => pairs[i]!.lang === lang)).size;
    assert.deepEqual(s.lossGapByTask, tasks >= 2 ? { tasks } : undefined, lang);
  }
  // the same pairs without tasks: today's bootstrap over the pairs, and nothing says otherwise
  const plain = await securePreference(model, tok, base, opts);
  const ref = pairedBootstrap(
    plain.perPair.map((p) => p.rejectedLoss - p.chosenLoss),
    { iterations: 2000, seed: 4 },
  );
  assert.deepEqual(plain.meanLossGap, { value: ref.mean, low: ref.low, high: ref.high });
  assert.equal(plain.lossGapByTask, undefined);
});
