/**
 * The generating utility benchmarks (GSM8K, HumanEval) keep each answer as it arrives (eval/utility/answers.ts):
 * a run stopped part-way (a generator that fails on a batch, a stop request between answers, a HumanEval sandbox
 * that cannot run) and then rerun asks the model only for the items not yet answered, and scores what an
 * uninterrupted run scores; another answer budget or another identity (generation config, repetition penalty)
 * asks for every answer again. The reference score is the formula of the fake model's right answers.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { evaluateGsm8k } from "../../src/eval/utility/gsm8k.js";
import { evaluateHumanEval, resolvePython } from "../../src/eval/utility/humaneval.js";
import { UtilityAnswerCache } from "../../src/eval/utility/answers.js";
import type { Gsm8kItem, HumanEvalItem } from "../../src/eval/utility/datasets.js";
import { utilityModelFrom, type TextBackendLike, type UtilityModel } from "../../src/eval/utility/model.js";
import { readGenerationCache } from "../../src/eval/generation-cache.js";
import { sandboxAvailable } from "../../src/eval/sandbox.js";
import { stopPoint } from "../../src/util/stop.js";
import { scratchDir } from "../scratch.js";

// Awaited before the first test(): when the tests registered before a top-level await end before it does, node:test
// (Node 20) runs the file's after() then, and the tests registered after it wrote into `work` once it was removed,
// leaving their caches in /tmp (a CI run left cache-5/ and cache-6/ there).
const python = process.platform === "linux" ? await resolvePython().catch(() => undefined) : undefined;
const skip = !python || !sandboxAvailable() ? "needs Linux namespaces and python3" : false;

// removed at process exit as well (scratch.ts): whatever the order of hooks and tests, nothing stays in /tmp
const work = scratchDir("gv-uanswers-");
after(() => fs.rmSync(work, { recursive: true, force: true }));
let files = 0;
const freshFile = () => path.join(work, `cache-${files++}`, "utility-answers.jsonl");

const N = 10;
const ITEMS: Gsm8kItem[] = Array.from({ length: N }, (_, i) => ({
  question: `What is ${i} + ${i}?`,
  answer: `${i}+${i}=${2 * i}\n#### ${2 * i}`,
  finalAnswer: String(2 * i),
}));
const SHOTS: Gsm8kItem[] = [{ question: "What is 1+1?", answer: "1+1=2\n#### 2", finalAnswer: "2" }];
/** the fake's right answers: every item whose index is not a multiple of 3 */
const right = (i: number) => i % 3 !== 0;
const EXPECTED = Array.from({ length: N }, (_, i) => i).filter(right).length / N;

/** A generating model that counts the prompts it is asked, and can fail on one call or stop after some answers. */
class CountingModel implements UtilityModel {
  asked: string[] = [];
  calls = 0;
  constructor(
    readonly o: { failOnCall?: number; signal?: AbortSignal; afterAnswer?: (n: number) => void } = {},
  ) {}
  async loglikelihood(): Promise<never> {
    throw new Error("not used");
  }
  async generate(
    prompts: string[],
    opts: { maxNewTokens: number; stop: string[]; onAnswer?: (i: number, t: string) => void },
  ): Promise<string[]> {
    if (++this.calls === this.o.failOnCall) throw new Error(`server gave up on call ${this.calls}`);
    const out: string[] = [];
    for (const p of prompts) {
      await stopPoint(this.o.signal, "generation stopped");
      this.asked.push(p);
      const m = /What is (\d+) \+ \d+\?\nAnswer:$/.exec(p);
      const text = m ? ` So #### ${right(Number(m[1])) ? 2 * Number(m[1]) : -1}` : "    return a + b\n";
      opts.onAnswer?.(out.length, text);
      out.push(text);
      this.o.afterAnswer?.(this.asked.length);
    }
    return out;
  }
}
const questionsAsked = (m: CountingModel) =>
  m.asked.map((p) => Number(/What is (\d+) \+ \d+\?\nAnswer:$/.exec(p)![1]));

const IDENTITY = { model: "fp", build: "b", endTokens: [2] };
const gsm = (
  model: UtilityModel,
  file: string | null,
  o: { maxNewTokens?: number; identity?: object; onProgress?: (done: number, total: number) => void } = {},
) => {
  const answers = file ? new UtilityAnswerCache(file, o.identity ?? IDENTITY) : undefined;
  return evaluateGsm8k(model, ITEMS, {
    fewshot: SHOTS,
    nShot: 1,
    batchSize: 3,
    maxNewTokens: o.maxNewTokens,
    answers,
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  }).finally(() => answers?.close());
};

test("GSM8K: a generator failing on its third batch, rerun: only the items not answered are asked, the score is the uninterrupted one", async () => {
  const plain = await gsm(new CountingModel(), null);
  assert.equal(plain.metrics.exact_match_strict, EXPECTED);

  const file = freshFile();
  const failing = new CountingModel({ failOnCall: 3 });
  await assert.rejects(gsm(failing, file), /server gave up on call 3/);
  assert.deepEqual(questionsAsked(failing), [0, 1, 2, 3, 4, 5]);
  assert.equal(fs.readFileSync(file, "utf8").trim().split("\n").length, 6);

  const rerun = new CountingModel();
  const r = await gsm(rerun, file);
  assert.deepEqual(questionsAsked(rerun), [6, 7, 8, 9]);
  assert.equal(r.metrics.exact_match_strict, EXPECTED);
  assert.deepEqual(r.perItem, plain.perItem);

  // complete now: a third run asks for nothing
  const third = new CountingModel();
  assert.deepEqual((await gsm(third, file)).perItem, plain.perItem);
  assert.equal(third.asked.length, 0);
});

test("GSM8K: a stop request between answers keeps every answer given; the rerun asks only for the rest", async () => {
  const file = freshFile();
  const stop = new AbortController();
  const stopped = new CountingModel({ signal: stop.signal, afterAnswer: (n) => n === 4 && stop.abort() });
  await assert.rejects(gsm(stopped, file), /generation stopped/);
  assert.deepEqual(questionsAsked(stopped), [0, 1, 2, 3]);
  const rerun = new CountingModel();
  const r = await gsm(rerun, file);
  assert.deepEqual(questionsAsked(rerun), [4, 5, 6, 7, 8, 9]);
  assert.equal(r.metrics.exact_match_strict, EXPECTED);
});

test("GSM8K: another answer budget or another identity (generation config, repetition penalty) asks for every answer again", async () => {
  const file = freshFile();
  await gsm(new CountingModel(), file);
  for (const o of [
    { maxNewTokens: 128 },
    { identity: { ...IDENTITY, repetitionPenalty: 1.1 } },
    { identity: { ...IDENTITY, model: "other" } },
  ]) {
    const m = new CountingModel();
    await gsm(m, file, o);
    assert.equal(m.asked.length, N, JSON.stringify(o));
  }
  // and the original settings still find theirs
  const same = new CountingModel();
  await gsm(same, file);
  assert.equal(same.asked.length, 0);
});

test("GSM8K over a server: a request failing for good fails the call only once the other answers of its batch are kept, and nothing is written after", async () => {
  const file = freshFile();
  const sent: number[] = [];
  const answerOf = (i: number) => ` So #### ${right(i) ? 2 * i : -1}`;
  const server: TextBackendLike = {
    async generateText(prompt) {
      const i = Number(/What is (\d+) \+ \d+\?\nAnswer:$/.exec(prompt)![1]);
      sent.push(i);
      // item 1 fails at once; the others of its batch (0, 2) answer after it
      await new Promise((r) => setTimeout(r, i === 1 ? 0 : 50));
      if (i === 1) throw new Error("server gave up on item 1");
      return answerOf(i);
    },
  };
  await assert.rejects(gsm(utilityModelFrom(server), file), /gave up on item 1/);
  // what a process that exits the moment the call fails leaves: both other answers, as whole records
  assert.deepEqual(sent, [0, 1, 2]);
  assert.deepEqual(
    [...readGenerationCache(file).values()].map((a) => a.answer),
    [answerOf(0), answerOf(2)],
  );
  const bytes = fs.readFileSync(file);
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(fs.readFileSync(file), bytes, "nothing is written after the call failed");
  // the rerun asks for item 1 and the batches after, and scores what an uninterrupted run scores
  const rerun = new CountingModel();
  const r = await gsm(rerun, file);
  assert.deepEqual(questionsAsked(rerun), [1, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(r.metrics.exact_match_strict, EXPECTED);
});

const PROBLEMS: HumanEvalItem[] = Array.from({ length: 5 }, (_, i) => ({
  task_id: `Test/${i}`,
  prompt: `def add${i}(a, b):\n    """Return a + b."""\n`,
  canonical_solution: "    return a + b\n",
  test: "def check(candidate):\n    assert candidate(2, 3) == 5\n",
  entry_point: `add${i}`,
}));

test("HumanEval: every completion is kept before any runs, so a sandbox that cannot run loses none of them", async () => {
  const file = freshFile();
  const first = new CountingModel();
  const answers = new UtilityAnswerCache(file, IDENTITY);
  await assert.rejects(
    evaluateHumanEval(first, PROBLEMS, { batchSize: 2, python: path.join(work, "no-such-python"), answers }),
  );
  answers.close();
  assert.equal(first.asked.length, PROBLEMS.length);
  assert.equal(fs.readFileSync(file, "utf8").trim().split("\n").length, PROBLEMS.length);
  // a generator failing on its second batch, in another cache: the rerun asks for the problems of batches 2 and 3
  const file2 = freshFile();
  const failing = new CountingModel({ failOnCall: 2 });
  const a2 = new UtilityAnswerCache(file2, IDENTITY);
  await assert.rejects(evaluateHumanEval(failing, PROBLEMS, { batchSize: 2, answers: a2 }), /call 2/);
  a2.close();
  assert.equal(failing.asked.length, 2);
});

test("HumanEval: resumed after a failing batch, pass@1 is the uninterrupted run's", { skip }, async () => {
  const file = freshFile();
  const failing = new CountingModel({ failOnCall: 2 });
  const a = new UtilityAnswerCache(file, IDENTITY);
  await assert.rejects(evaluateHumanEval(failing, PROBLEMS, { batchSize: 2, answers: a }), /call 2/);
  a.close();
  const rerun = new CountingModel();
  const b = new UtilityAnswerCache(file, IDENTITY);
  const r = await evaluateHumanEval(rerun, PROBLEMS, { batchSize: 2, answers: b });
  b.close();
  assert.deepEqual(
    rerun.asked,
    PROBLEMS.slice(2).map((p) => p.prompt),
  );
  const plain = await evaluateHumanEval(new CountingModel(), PROBLEMS, { batchSize: 2 });
  assert.equal(r.metrics["pass@1"], 1); // every completion is the canonical solution
  assert.deepEqual(r.metrics, plain.metrics);
});

test("generateKept looks each prompt's answer up once, cached or not, and returns them in order", async () => {
  const { generateKept } = await import("../../src/eval/utility/answers.js");
  const file = freshFile();
  const prompts = Array.from({ length: 7 }, (_, i) => ({
    id: `p${i}`,
    prompt: `What is ${i} + ${i}?\nAnswer:`,
  }));
  const gen = { maxNewTokens: 8, stop: [] as string[] };
  const first = new UtilityAnswerCache(file, "model-A");
  // a first run answers prompts 0..3 (a limit), then stops
  await generateKept(new CountingModel(), prompts.slice(0, 4), gen, 3, {
    answers: first,
    benchmark: "gsm8k",
  });
  first.close();
  let lookups = 0;
  const again = new UtilityAnswerCache(file, "model-A");
  const get = again.get.bind(again);
  again.get = (key: string) => {
    lookups++;
    return get(key);
  };
  const model = new CountingModel();
  const out = await generateKept(model, prompts, gen, 3, { answers: again, benchmark: "gsm8k" });
  again.close();
  // the reference: the fake's answer to each prompt, whichever run gave it
  assert.deepEqual(
    out,
    prompts.map((_, i) => ` So #### ${right(i) ? 2 * i : -1}`),
  );
  assert.equal(model.asked.length, 3, "only the three not cached are asked");
  assert.equal(lookups, prompts.length, "one look-up per prompt");
});

test("GSM8K progress, in answers: told before the first is asked for (the meter's clock), after each, the cached ones counted; all cached: told once; a model that does not tell its answers: after each call", async () => {
  const run = async (model: UtilityModel, file: string | null) => {
    const seen: string[] = [];
    const asked = () => (model instanceof CountingModel ? model.asked.length : -1);
    await gsm(model, file, { onProgress: (d, t) => seen.push(`${d}/${t} after ${asked()}`) });
    return seen;
  };
  const every = Array.from({ length: N }, (_, i) => `${i + 1}/${N} after ${i + 1}`);
  assert.deepEqual(await run(new CountingModel(), null), [`0/${N} after 0`, ...every]);
  // stopped after 4 answers, then resumed: the kept four counted before the first new one is asked for
  const file = freshFile();
  const stop = new AbortController();
  await assert.rejects(
    gsm(new CountingModel({ signal: stop.signal, afterAnswer: (n) => n === 4 && stop.abort() }), file),
    /generation stopped/,
  );
  assert.deepEqual(await run(new CountingModel(), file), [
    `4/${N} after 0`,
    ...Array.from({ length: N - 4 }, (_, i) => `${i + 5}/${N} after ${i + 1}`),
  ]);
  assert.deepEqual(await run(new CountingModel(), file), [`${N}/${N} after 0`]);
  // a model that returns its answers without telling them one by one: progress after each call of 3
  const quiet: UtilityModel = {
    loglikelihood: () => Promise.reject(new Error("not used")),
    generate: (prompts, opts) => new CountingModel().generate(prompts, { ...opts, onAnswer: undefined }),
  };
  assert.deepEqual(
    (await run(quiet, null)).map((l) => l.replace(/ after .*/, "")),
    ["0/10", "1/10", "2/10", "3/10", "4/10", "5/10", "6/10", "7/10", "8/10", "9/10", "10/10"],
  );
});
