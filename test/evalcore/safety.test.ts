/**
 * Safe-response rate: rates and groups from canned answers (expected verdicts computed here with the rule judge
 * on the corpus code directly), "no code" exclusion, judge agreement, McNemar against a base, and the resumable
 * cache (an interrupted run plus a rerun equals one run, and nothing is generated twice).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { modelWeightsHash } from "../../src/io/hash.js";
import type { ChatBackend, ChatGenerateOptions } from "../../src/eval/generate/backend.js";
import { evaluateSafety, mcnemarVsBase, type SafetyOptions } from "../../src/eval/safety.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import type { JudgeInput, JudgeVerdict } from "../../src/eval/judge/llm.js";
import { judgeCode } from "../../src/eval/judge/rules/index.js";
import { answerCode, type CorpusPair } from "../../src/data/corpus.js";
import type { ChatMessage } from "../../src/io/tokenizer.js";
import { PAPER_JUDGE } from "../../src/data/prompts.js";
import { InputError } from "../../src/errors.js";
import { corpusPairs, makeTinyChatModel, scratchDir } from "./make-model.js";
import { promptOpensThink } from "../../src/data/code.js";
import { safetyLanguage } from "../../src/data/languages.js";

type Plan = "chosen" | "rejected" | "nocode";

/** Ten pairs over the four languages, with distinct questions (the fake backend answers by question). */
const PAIRS: CorpusPair[] = (() => {
  const seen = new Set<string>();
  return corpusPairs()
    .filter((p, i) => i % 9 === 0 && !seen.has(p.question) && seen.add(p.question))
    .slice(0, 10);
})();

/** Answers in prose around the fenced code, as a model would write them. */
function answerFor(p: CorpusPair, plan: Plan): string {
  if (plan === "nocode") return "I would rather not write that for you.";
  return `Here is the code:\n\n${plan === "chosen" ? p.chosen : p.rejected}\n\nHope it helps.`;
}

class FakeBackend implements ChatBackend {
  readonly name = "fake";
  calls = 0;
  prompts: string[] = [];
  constructor(private readonly plan: (p: CorpusPair) => Plan) {}
  async generateChat(
    list: readonly (readonly ChatMessage[])[],
    _opts: ChatGenerateOptions,
  ): Promise<string[]> {
    this.calls++;
    return list.map((messages) => {
      assert.equal(messages.length, 1);
      const q = messages[0]!.content;
      this.prompts.push(q);
      const p = PAIRS.find((x) => x.question === q)!;
      return answerFor(p, this.plan(p));
    });
  }
}

/** LLM judge stand-in: secure iff the code is a pair's secure code; counts the items it scores. */
class FakeJudge {
  scored = 0;
  seen: JudgeInput[] = [];
  readonly source = null;
  readonly convention = PAPER_JUDGE;
  judge(items: readonly JudgeInput[]): JudgeVerdict[] {
    this.scored += items.length;
    this.seen.push(...items);
    return items.map((it) => {
      const secure = PAIRS.some((p) => answerCode(p.chosen) === it.code);
      return { pUnsafe: secure ? 0.1 : 0.8, secure };
    });
  }
}

const PLAN = (p: CorpusPair): Plan => {
  const i = PAIRS.indexOf(p);
  return i % 4 === 3 ? "nocode" : i % 2 === 0 ? "chosen" : "rejected";
};

const BASE_OPTS = { modelFingerprint: "model-A", generation: { maxNewTokens: 64 }, batchSize: 3 };

test("the rule judge reports answers without code as 'no code'; its rates match it on the code", async () => {
  const backend = new FakeBackend(PLAN);
  const r = await evaluateSafety(PAIRS, { ...BASE_OPTS, backend });
  assert.equal(r.n, PAIRS.length);
  const withCode = PAIRS.filter((p) => PLAN(p) !== "nocode");
  assert.equal(r.noCode, PAIRS.length - withCode.length);
  assert.match(
    r.note,
    new RegExp(`${r.noCode} of ${PAIRS.length} answers \\(\\d+\\.\\d%\\) had no code block`),
  );
  for (const lang of new Set(PAIRS.map((p) => p.lang))) {
    const g = PAIRS.filter((p) => p.lang === lang);
    assert.deepEqual(r.perLanguage[lang], {
      n: g.length,
      noCode: g.filter((p) => PLAN(p) === "nocode").length,
    });
  }
  assert.ok(r.complete);
  assert.equal(r.llm, null);
  assert.equal(r.agreement, null);

  const secure = (p: CorpusPair) =>
    judgeCode(answerCode(PLAN(p) === "chosen" ? p.chosen : p.rejected), p.lang).secure;
  assert.equal(r.rule.overall.n, withCode.length);
  assert.equal(r.rule.overall.safe, withCode.filter(secure).length);
  for (const lang of new Set(withCode.map((p) => p.lang))) {
    const g = withCode.filter((p) => p.lang === lang);
    assert.deepEqual(
      [r.rule.perLanguage[lang]!.safe, r.rule.perLanguage[lang]!.n],
      [g.filter(secure).length, g.length],
    );
  }
  for (const cwe of new Set(withCode.map((p) => p.cwe))) {
    const g = withCode.filter((p) => p.cwe === cwe);
    assert.deepEqual([r.rule.perCwe[cwe]!.safe, r.rule.perCwe[cwe]!.n], [g.filter(secure).length, g.length]);
  }
  // raw generations are kept for the report
  r.items.forEach((it, i) => {
    const p = PAIRS[i]!;
    assert.equal(it.id, p.id);
    assert.equal(it.answer, answerFor(p, PLAN(p)));
    assert.equal(
      it.code,
      PLAN(p) === "nocode" ? null : answerCode(PLAN(p) === "chosen" ? p.chosen : p.rejected),
    );
    assert.equal(it.rule === null, PLAN(p) === "nocode");
  });
  assert.equal(backend.calls, Math.ceil(PAIRS.length / 3));
});

test("the LLM judge judges every answer (the whole answer when it has no code): the same n for every model", async () => {
  const judge = new FakeJudge();
  const other = await evaluateSafety(PAIRS, {
    ...BASE_OPTS,
    backend: new FakeBackend(PLAN),
    llmJudge: judge,
  });
  const base = await evaluateSafety(PAIRS, {
    ...BASE_OPTS,
    modelFingerprint: "base",
    backend: new FakeBackend(() => "rejected"),
    llmJudge: new FakeJudge(),
  });
  const withCode = other.items.filter((it) => it.code !== null);
  assert.ok(withCode.length < PAIRS.length);
  assert.equal(judge.scored, PAIRS.length);
  other.items.forEach((it, i) => {
    // no code block: the judge reads the whole answer, untagged
    const want = it.code === null ? { code: it.answer.trim() } : { code: it.code, lang: it.lang };
    assert.deepEqual(judge.seen[i], want);
  });
  assert.equal(other.llm!.overall.n, PAIRS.length);
  assert.equal(base.llm!.overall.n, PAIRS.length);
  for (const lang of Object.keys(other.perLanguage))
    assert.equal(other.llm!.perLanguage[lang]!.n, base.llm!.perLanguage[lang]!.n);
  assert.equal(other.llm!.overall.safe, PAIRS.filter((p) => PLAN(p) === "chosen").length);

  let tp = 0,
    fp = 0,
    tn = 0,
    fn = 0;
  for (const it of withCode) {
    const llmBad = !it.llm!.secure;
    const ruleBad = !it.rule!.secure;
    if (llmBad && ruleBad) tp++;
    else if (llmBad) fp++;
    else if (ruleBad) fn++;
    else tn++;
  }
  const a = other.agreement!;
  assert.deepEqual(
    [a.n, a.confusion.tp, a.confusion.fp, a.confusion.tn, a.confusion.fn],
    [withCode.length, tp, fp, tn, fn],
  );

  // LLM verdicts: the base is insecure everywhere; the other model is secure on its "chosen" prompts
  const cmp = mcnemarVsBase(base, other, "llm");
  const chosen = PAIRS.filter((p) => PLAN(p) === "chosen").length;
  assert.equal(cmp.n, PAIRS.length);
  assert.equal(cmp.excluded, 0);
  assert.deepEqual([cmp.b01, cmp.b10], [chosen, 0]);
  assert.equal(cmp.baseRate, 0);
  assert.equal(cmp.otherRate, chosen / PAIRS.length);
  assert.throws(() => mcnemarVsBase(base, { ...other, items: [] }), InputError);
});

test("an answer empty once its reasoning is removed is not secure by the LLM judge, which is not asked", async () => {
  // answers with nothing to judge: none at all, blanks, and reasoning that ran out of tokens before </think>
  const empties = ["", "  \n", "<think>\nThe buffer must be checked first, so", "<think>a</think>\n\n"];
  const answer = (p: CorpusPair) => {
    const i = PAIRS.indexOf(p);
    return i < empties.length ? empties[i]! : answerFor(p, "chosen");
  };
  const backend: ChatBackend = {
    name: "fake-empty",
    generateChat: async (list) => list.map((m) => answer(PAIRS.find((x) => x.question === m[0]!.content)!)),
  };
  // a judge that finds no flaw in anything, empty input included (what a judge may well say about nothing)
  const lenient = {
    source: null,
    convention: PAPER_JUDGE,
    seen: [] as JudgeInput[],
    judge(items: readonly JudgeInput[]): JudgeVerdict[] {
      this.seen.push(...items);
      return items.map(() => ({ pUnsafe: 0.1, secure: true }));
    },
  };
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  const opts = { ...BASE_OPTS, backend, llmJudge: lenient, llmJudgeFingerprint: "lenient", cacheFile };
  const r = await evaluateSafety(PAIRS, opts);
  // every answer counts (the same n for every model); the empty ones as not secure, the others as the judge says
  assert.equal(r.llm!.overall.n, PAIRS.length);
  assert.equal(r.llm!.overall.safe, PAIRS.length - empties.length);
  assert.equal(lenient.seen.length, PAIRS.length - empties.length);
  assert.ok(lenient.seen.every((it) => it.code.trim() !== ""));
  r.items.forEach((it, i) => assert.equal(it.llm!.secure, i >= empties.length, `item ${i}`));
  assert.match(r.note, new RegExp(`${empties.length} answers were empty once reasoning was removed`));

  // a cache written before 2026-12-01 holds the judge's verdict on the empty answers: it is not taken
  const lines = fs
    .readFileSync(cacheFile, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.ok(lines.every((rec) => rec.llm === undefined || !empties.includes(rec.answer)));
  fs.writeFileSync(
    cacheFile,
    // (the other answers' verdicts keep the input they were asked about, so they are taken)
    lines
      .map((rec) => JSON.stringify({ ...rec, llm: { ...rec.llm, judge: "lenient", pUnsafe: 0.1 } }))
      .join("\n") + "\n",
  );
  lenient.seen = [];
  const again = await evaluateSafety(PAIRS, opts);
  assert.equal(again.generated, 0);
  assert.equal(lenient.seen.length, 0);
  assert.equal(again.llm!.overall.safe, PAIRS.length - empties.length);
});

test("an interrupted run plus a rerun equals one run, and no prompt is generated twice", async () => {
  const dir = scratchDir();
  const cacheFile = path.join(dir, "gen.jsonl");
  const oneShot = await evaluateSafety(PAIRS, { ...BASE_OPTS, backend: new FakeBackend(PLAN) });

  const backend = new FakeBackend(PLAN);
  const first = await evaluateSafety(PAIRS, { ...BASE_OPTS, backend, cacheFile, stopAfterItems: 4 });
  assert.equal(first.complete, false);
  assert.equal(first.generated, 6); // two batches of 3: a batch is never split
  assert.match(first.note, /stopped early/);
  const second = await evaluateSafety(PAIRS, { ...BASE_OPTS, backend, cacheFile });
  assert.ok(second.complete);
  assert.deepEqual([second.generated, second.fromCache], [PAIRS.length - 6, 6]);
  assert.equal(backend.prompts.length, PAIRS.length);
  assert.equal(new Set(backend.prompts).size, PAIRS.length);
  const strip = (r: typeof oneShot) => ({ ...r, generated: 0, fromCache: 0 });
  assert.deepEqual(strip(second), strip(oneShot));
  assert.equal(fs.readFileSync(cacheFile, "utf8").trim().split("\n").length, PAIRS.length);

  // a run killed mid-write leaves a torn line (the newline a record starts with, then part of it): it is ignored
  // and later appends start on a fresh line
  fs.appendFileSync(cacheFile, '\n{"key":"abc","id":"x","ans');
  const third = await evaluateSafety(PAIRS, { ...BASE_OPTS, backend, cacheFile });
  assert.deepEqual([third.generated, backend.prompts.length], [0, PAIRS.length]);

  // another model or other generation options are other items
  const otherModel = await evaluateSafety(PAIRS, {
    ...BASE_OPTS,
    modelFingerprint: "model-B",
    backend,
    cacheFile,
  });
  assert.equal(otherModel.generated, PAIRS.length);
  const longer = await evaluateSafety(PAIRS, {
    ...BASE_OPTS,
    generation: { maxNewTokens: 65 },
    backend,
    cacheFile,
  });
  assert.equal(longer.generated, PAIRS.length);
  const again = await evaluateSafety(PAIRS, { ...BASE_OPTS, backend, cacheFile });
  assert.equal(again.generated, 0);

  // a line that is no JSON in the middle of the file (a torn record of another run sharing the file looks the same)
  // is skipped, never fatal: its answer is generated again and every other is kept
  const lines = fs.readFileSync(cacheFile, "utf8").split("\n");
  lines[lines.findIndex((l) => l.startsWith("{"))] = "not json";
  fs.writeFileSync(cacheFile, lines.join("\n"));
  assert.equal((await evaluateSafety(PAIRS, { ...BASE_OPTS, backend, cacheFile })).generated, 1);
});

test("cached LLM verdicts are reused under the same judge fingerprint", async () => {
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  const opts: SafetyOptions = {
    ...BASE_OPTS,
    backend: new FakeBackend(PLAN),
    cacheFile,
    llmJudgeFingerprint: "judge-1",
  };
  const j1 = new FakeJudge();
  const r1 = await evaluateSafety(PAIRS, { ...opts, llmJudge: j1 });
  const j2 = new FakeJudge();
  const r2 = await evaluateSafety(PAIRS, { ...opts, llmJudge: j2 });
  assert.ok(j1.scored > 0);
  assert.equal(j2.scored, 0);
  assert.deepEqual(r2.items, r1.items);
  const j3 = new FakeJudge();
  await evaluateSafety(PAIRS, { ...opts, llmJudge: j3, llmJudgeFingerprint: "judge-2" });
  assert.equal(j3.scored, j1.scored);
});

test("end to end with the built-in backend: a cached rerun reproduces the items; fingerprints follow content", async () => {
  const made = makeTinyChatModel({ seed: 2 });
  const backend = await BuiltinBackend.load(made.dir);
  const fp = modelWeightsHash(made.dir);
  assert.equal(fp, modelWeightsHash(made.dir));
  const pairs = PAIRS.slice(0, 4);
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  const opts: SafetyOptions = {
    backend,
    modelFingerprint: fp,
    generation: { maxNewTokens: 6 },
    batchSize: 2,
    cacheFile,
  };
  const r1 = await evaluateSafety(pairs, opts);
  assert.equal(r1.generated, 4);
  assert.equal(r1.noCode, r1.items.filter((it) => it.code === null).length);
  const r2 = await evaluateSafety(pairs, opts);
  assert.equal(r2.generated, 0);
  assert.deepEqual(r2.items, r1.items);

  const copy = scratchDir();
  for (const f of fs.readdirSync(made.dir)) fs.copyFileSync(path.join(made.dir, f), path.join(copy, f));
  assert.equal(modelWeightsHash(copy), fp);
  const w = path.join(copy, "model.safetensors");
  const bytes = fs.readFileSync(w);
  bytes[bytes.length - 1] ^= 1;
  fs.writeFileSync(w, bytes);
  assert.notEqual(modelWeightsHash(copy), fp);
  await assert.rejects(evaluateSafety([PAIRS[0]!, PAIRS[0]!], opts), /appears twice/);
});

/** A server that answers in thinking mode whatever it is asked: reasoning with the insecure code, then the secure. */
class ThinkingServer implements ChatBackend {
  readonly name = "thinking-server";
  asked: (boolean | undefined)[] = [];
  async generateChat(
    list: readonly (readonly ChatMessage[])[],
    opts: ChatGenerateOptions,
  ): Promise<string[]> {
    this.asked.push(opts.enableThinking);
    return list.map((messages) => {
      const i = PAIRS.findIndex((x) => x.question === messages[0]!.content);
      const p = PAIRS[i]!;
      // the last one runs out of tokens inside its reasoning
      if (i === PAIRS.length - 1) return `<think>\nFirst attempt:\n${p.rejected}\nHmm, let me`;
      return `<think>\nFirst attempt:\n${p.rejected}\nThat is unsafe.\n</think>\n\n${p.chosen}`;
    });
  }
}

test("answers with a think block: the reasoning is not judged (neither judge), and the note says so", async () => {
  const server = new ThinkingServer();
  const judge = new FakeJudge();
  const r = await evaluateSafety(PAIRS, { ...BASE_OPTS, backend: server, llmJudge: judge });
  // the setting reaches the backend: off by default
  assert.ok(server.asked.length > 0 && server.asked.every((t) => t === false));
  r.items.forEach((it, i) => {
    const p = PAIRS[i]!;
    if (i === PAIRS.length - 1) {
      // reasoning never closed: no code, and nothing left for the LLM judge: not asked, not secure
      assert.equal(it.code, null);
      assert.deepEqual(it.llm, { pUnsafe: 1, secure: false, empty: true });
      return;
    }
    assert.equal(it.code, answerCode(p.chosen), p.id);
    assert.equal(it.llm?.secure, true, p.id);
  });
  assert.equal(r.noCode, 1);
  assert.equal(judge.seen.length, PAIRS.length - 1);
  assert.ok(judge.seen.every((x) => !x.code.includes("First attempt")));
  assert.match(
    r.note,
    new RegExp(
      `${PAIRS.length} answers began with reasoning between <think> tags \\(thinking mode though enableThinking ` +
        `is off: a server that does not read chat_template_kwargs\\?\\); it was dropped before judging, and 1 of ` +
        `them never closed it`,
    ),
  );
  // asked for: the note says so; the setting is passed on
  const asked = await evaluateSafety(PAIRS, {
    ...BASE_OPTS,
    generation: { ...BASE_OPTS.generation, enableThinking: true },
    backend: new ThinkingServer(),
  });
  assert.match(asked.note, /\(thinking mode, as asked\)/);
  // answers without reasoning (an empty think block, or none) add nothing to the note
  const plain = await evaluateSafety(PAIRS, { ...BASE_OPTS, backend: new FakeBackend(PLAN) });
  assert.doesNotMatch(plain.note, /think/);
});

test("one batch at a time (the built-in engine): a batch's answers are cached before it is judged, so a judge that fails on it costs no generation on the rerun", async () => {
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  class FailingJudge extends FakeJudge {
    override judge(items: readonly JudgeInput[]): JudgeVerdict[] {
      throw new Error(`judge failed on ${items.length} answers`);
    }
  }
  const backend = new FakeBackend(() => "chosen");
  const opts = { ...BASE_OPTS, backend, llmJudgeFingerprint: "j", cacheFile };
  await assert.rejects(evaluateSafety(PAIRS, { ...opts, llmJudge: new FailingJudge() }), /judge failed/);
  // the first batch (BASE_OPTS.batchSize = 3) was generated, then the judge failed on it
  assert.equal(backend.prompts.length, 3);
  const judge = new FakeJudge();
  const r = await evaluateSafety(PAIRS, { ...opts, llmJudge: judge });
  // the rerun generates only the other pairs (before: the 3 answers were lost and generated again)
  assert.deepEqual([r.generated, r.fromCache], [PAIRS.length - 3, 3]);
  assert.equal(backend.prompts.length, PAIRS.length);
  assert.deepEqual(new Set(backend.prompts).size, PAIRS.length);
  // every answer judged once, the cached ones included (none had a verdict)
  assert.equal(judge.scored, PAIRS.length);
  assert.equal(r.items.filter((it) => it.llm?.secure).length, PAIRS.length);
});

test("sampled answers are keyed by the top_p and top_k the engine takes from the folder: another folder's are not reused", async () => {
  const made = makeTinyChatModel({ seed: 3 });
  const other = scratchDir();
  for (const f of fs.readdirSync(made.dir)) fs.copyFileSync(path.join(made.dir, f), path.join(other, f));
  const genConfig = (dir: string, cfg: object) =>
    fs.writeFileSync(path.join(dir, "generation_config.json"), JSON.stringify(cfg));
  genConfig(made.dir, { top_p: 0.5, top_k: 5 });
  genConfig(other, { top_p: 0.9, top_k: 5 });
  // the same weights: the same model fingerprint; only generation_config.json differs
  assert.equal(modelWeightsHash(other), modelWeightsHash(made.dir));
  const pairs = PAIRS.slice(0, 3);
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  const run = async (dir: string) =>
    evaluateSafety(pairs, {
      backend: await BuiltinBackend.load(dir),
      modelFingerprint: modelWeightsHash(dir),
      generation: { maxNewTokens: 6, temperature: 0.8, seed: 1 },
      batchSize: 3,
      cacheFile,
    });
  assert.equal((await run(made.dir)).generated, 3);
  assert.equal((await run(made.dir)).generated, 0);
  // the other folder samples under top_p 0.9: its answers are generated, not taken from the first folder's
  assert.equal((await run(other)).generated, 3);
  // a call that gives its own top_p samples the same in both folders (the folder's top_k being equal): reused
  const callTopP = async (dir: string) =>
    evaluateSafety(pairs, {
      backend: await BuiltinBackend.load(dir),
      modelFingerprint: modelWeightsHash(dir),
      generation: { maxNewTokens: 6, temperature: 0.8, seed: 1, topP: 0.7 },
      batchSize: 3,
      cacheFile,
    });
  assert.equal((await callTopP(made.dir)).generated, 3);
  assert.equal((await callTopP(other)).generated, 0);
});

/** A judge that reads at most `tokenLimit` characters of its input (one a token), as LlmJudge cuts long code. */
class BoundedJudge {
  readonly inner = new FakeJudge();
  readonly convention = PAPER_JUDGE;
  constructor(
    readonly source: string,
    readonly tokenLimit: number,
  ) {}
  get scored(): number {
    return this.inner.scored;
  }
  judge(items: readonly JudgeInput[]): JudgeVerdict[] {
    return this.inner.judge(items).map((v, i) => {
      const code = items[i]!.code;
      if (code.length <= this.tokenLimit) return v;
      return { pUnsafe: 0.9, secure: false, judgedChars: code.lastIndexOf("\n", this.tokenLimit) };
    });
  }
}

test("an LLM verdict on the first lines of a long answer says so, in the items, the note and the cache; the judge's limit keys its verdicts", async () => {
  const made = makeTinyChatModel({ seed: 4 });
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  const opts: SafetyOptions = { ...BASE_OPTS, backend: new FakeBackend(PLAN), cacheFile };
  const limit = 120;
  const long = (r: Awaited<ReturnType<typeof evaluateSafety>>) =>
    r.items.filter((it) => (it.code ?? it.answer).length > limit);
  const j1 = new BoundedJudge(made.dir, limit);
  const r1 = await evaluateSafety(PAIRS, { ...opts, llmJudge: j1 });
  const cut = long(r1);
  assert.ok(cut.length > 0 && cut.length < PAIRS.length, `${cut.length} long answers`);
  for (const it of r1.items) {
    const input = it.code ?? it.answer;
    if (input.length > limit) assert.equal(it.llm!.judgedChars, input.lastIndexOf("\n", limit), it.id);
    else assert.equal(it.llm!.judgedChars, undefined, it.id);
  }
  assert.match(
    r1.note,
    new RegExp(`${cut.length} answers were longer than the LLM judge reads .*first lines only`),
  );
  // a rerun takes the verdicts from the cache, with what they read
  const j2 = new BoundedJudge(made.dir, limit);
  const r2 = await evaluateSafety(PAIRS, { ...opts, llmJudge: j2 });
  assert.equal(j2.scored, 0);
  assert.deepEqual(r2.items, r1.items);
  assert.equal(r2.note, r1.note);
  // a judge that reads another length is another judge: its verdicts are not the cached ones
  const j3 = new BoundedJudge(made.dir, 2 * limit);
  await evaluateSafety(PAIRS, { ...opts, llmJudge: j3 });
  assert.equal(j3.scored, PAIRS.length);
  fs.rmSync(made.dir, { recursive: true, force: true });
});

// Qwen3's Thinking-2507 models and DeepSeek-R1 distills open the think block in the prompt (their chat templates end
// the generation prompt in "<think>\n"), so an answer holds the reasoning, a </think> with no <think>, then the
// answer: vLLM's and SGLang's deepseek_r1 reasoning parsers read the text before such a </think> as reasoning.
class PromptOpenedThinkingServer implements ChatBackend {
  readonly name = "prompt-opened-thinking";
  async generateChat(list: readonly (readonly ChatMessage[])[]): Promise<string[]> {
    return list.map((messages) => {
      const p = PAIRS.find((x) => x.question === messages[0]!.content)!;
      return `First attempt:\n${p.rejected}\nThat is unsafe.\n</think>\n\n${p.chosen}`;
    });
  }
}

test("reasoning before a </think> the prompt opened is not judged (neither judge), and the note counts it", async () => {
  const judge = new FakeJudge();
  const r = await evaluateSafety(PAIRS, {
    ...BASE_OPTS,
    generation: { ...BASE_OPTS.generation, enableThinking: true },
    backend: new PromptOpenedThinkingServer(),
    llmJudge: judge,
  });
  r.items.forEach((it, i) => {
    const p = PAIRS[i]!;
    assert.equal(it.code, answerCode(p.chosen), p.id);
    assert.equal(it.rule?.secure, judgeCode(answerCode(p.chosen), p.lang).secure, p.id);
    assert.equal(it.llm?.secure, true, p.id);
  });
  assert.ok(judge.seen.every((x) => !x.code.includes("First attempt")));
  assert.match(r.note, new RegExp(`${PAIRS.length} answers began with reasoning .*thinking mode, as asked`));
});

test("a cached LLM verdict is reused only for the input it judged: a changed extraction asks the judge again", async () => {
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  const opts: SafetyOptions = {
    ...BASE_OPTS,
    backend: new FakeBackend(PLAN),
    cacheFile,
    llmJudgeFingerprint: "judge-1",
  };
  const j1 = new FakeJudge();
  const r1 = await evaluateSafety(PAIRS, { ...opts, llmJudge: j1 });
  assert.equal(j1.scored, PAIRS.length);
  // the same answers, cached verdicts on other inputs (an older extractor's) or on inputs not recorded (a cache
  // written before the input was): each is judged again, on what the judge reads now
  const lines = fs.readFileSync(cacheFile, "utf8").trim().split("\n");
  for (const edit of [
    (llm: Record<string, unknown>) => ({ ...llm, input: "0".repeat(32) }),
    (llm: Record<string, unknown>) => {
      const { input: _input, ...rest } = llm;
      return rest;
    },
  ]) {
    const edited = lines.map((l) => {
      const rec = JSON.parse(l) as { llm?: Record<string, unknown> };
      return JSON.stringify(rec.llm ? { ...rec, llm: edit(rec.llm) } : rec);
    });
    fs.writeFileSync(cacheFile, edited.join("\n") + "\n");
    const j = new FakeJudge();
    const r = await evaluateSafety(PAIRS, { ...opts, llmJudge: j });
    assert.equal(r.generated, 0);
    assert.equal(j.scored, PAIRS.length);
    assert.deepEqual(r.items, r1.items);
  }
});

test("two LLM judges sharing a cache keep each other's verdicts: judge A, then B, then A asks A nothing the third time", async () => {
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  const backend = new FakeBackend(PLAN);
  const run = (fingerprint: string, judge: FakeJudge) =>
    evaluateSafety(PAIRS, {
      ...BASE_OPTS,
      backend,
      cacheFile,
      llmJudge: judge,
      llmJudgeFingerprint: fingerprint,
    });
  const a1 = new FakeJudge();
  const first = await run("judge-A", a1);
  assert.equal(a1.scored, PAIRS.length);
  const b = new FakeJudge();
  await run("judge-B", b);
  assert.equal(b.scored, PAIRS.length);
  // before: the read kept each answer's last verdict (B's), so A judged all ten again
  const a2 = new FakeJudge();
  const again = await run("judge-A", a2);
  assert.equal(a2.scored, 0);
  assert.equal(backend.prompts.length, PAIRS.length);
  assert.deepEqual(again.items, first.items);
  const b2 = new FakeJudge();
  await run("judge-B", b2);
  assert.equal(b2.scored, 0);
});

test("a cache written one verdict a line by an older version loads and its verdicts are used", async () => {
  // the format every version writes: an answer record, then a record of the same key with one verdict; here
  // written by hand from the documented key functions (generationKey on the run's options; the verdict's input
  // key as llmJudgeInput hashes it)
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  const fresh = path.join(scratchDir(), "fresh.jsonl");
  const opts = { ...BASE_OPTS, backend: new FakeBackend(PLAN), llmJudgeFingerprint: "old-judge" };
  const j0 = new FakeJudge();
  const ref = await evaluateSafety(PAIRS, { ...opts, llmJudge: j0, cacheFile: fresh });
  // the same lines as the older writer wrote them, plus a verdict of another judge after each (the last verdict
  // read is then not the one asked for)
  const lines = fs.readFileSync(fresh, "utf8").trim().split("\n");
  const withOthers = lines.flatMap((l) => {
    const rec = JSON.parse(l) as { key: string; id: string; answer: string; llm?: { judge: string } };
    return rec.llm
      ? [l, JSON.stringify({ ...rec, llm: { ...rec.llm, judge: "another", pUnsafe: 0.99 } })]
      : [l];
  });
  fs.writeFileSync(cacheFile, withOthers.join("\n") + "\n");
  const j = new FakeJudge();
  const backend = new FakeBackend(PLAN);
  const r = await evaluateSafety(PAIRS, { ...opts, backend, llmJudge: j, cacheFile });
  assert.deepEqual([r.generated, r.fromCache, backend.calls, j.scored], [0, PAIRS.length, 0, 0]);
  assert.deepEqual(r.items, ref.items);
});

/**
 * A Thinking-2507 model: its template opens the think block in the prompt, so each answer has only the closing
 * tag; the last two run out of tokens inside their reasoning, which drafted code (fenced, in the prompt's language).
 */
class PromptOpenedThinking implements ChatBackend {
  readonly name = "thinking-2507";
  async generateChat(list: readonly (readonly ChatMessage[])[]): Promise<string[]> {
    return list.map((messages) => {
      const i = PAIRS.findIndex((x) => x.question === messages[0]!.content);
      const p = PAIRS[i]!;
      if (i >= PAIRS.length - 2) return `Let me draft it first:\n\n${p.rejected}\n\nNow check the input`;
      return `Let me draft it first:\n\n${p.rejected}\n\nThat is unsafe.\n</think>\n\n${p.chosen}`;
    });
  }
}

test("a template that opens <think> in the prompt: an answer cut before its </think> is all reasoning (no code, the LLM judge not asked), and the note counts it", async () => {
  // vLLM's deepseek_r1 reasoning parser reads such output the same way: without </think> all of it is reasoning
  assert.equal(promptOpensThink("<|im_start|>assistant\n<think>\n"), true);
  assert.equal(promptOpensThink("<|im_start|>assistant\n<think>\n\n</think>\n\n"), false);
  assert.equal(promptOpensThink("<|im_start|>assistant\n"), false);
  const judge = new FakeJudge();
  const r = await evaluateSafety(PAIRS, {
    ...BASE_OPTS,
    backend: new PromptOpenedThinking(),
    llmJudge: judge,
    promptOpensThink: true,
  });
  const cut = PAIRS.length - 2;
  r.items.forEach((it, i) => {
    const p = PAIRS[i]!;
    if (i >= cut) {
      // before: the drafted (insecure) code in the reasoning was taken and judged as the answer's code
      assert.equal(it.code, null, p.id);
      assert.equal(it.rule, null, p.id);
      assert.deepEqual(it.llm, { pUnsafe: 1, secure: false, empty: true }, p.id);
    } else {
      assert.equal(it.code, answerCode(p.chosen), p.id);
      assert.equal(it.llm?.secure, true, p.id);
    }
  });
  assert.equal(r.noCode, 2);
  assert.equal(judge.seen.length, cut);
  assert.ok(judge.seen.every((x) => !x.code.includes("Let me draft")));
  assert.match(r.note, /^2 of 10 answers \(20\.0%\) had no code block/);
  assert.match(r.note, / 2 answers were empty once reasoning was removed: the LLM judge was not asked/);
  assert.match(r.note, /10 answers began with reasoning .* and 2 of them never closed it \(no answer within/);
});

test('an answer with several blocks of its language: the judges read the longest by default, all of them with codeBlocks "all", and the note counts such answers', async () => {
  // the secure code, then a shorter helper with the pair's insecure code (both fenced with the pair's language)
  const helperFirst = (p: CorpusPair) => {
    const shorter = [p.chosen, p.rejected].sort((a, b) => answerCode(a).length - answerCode(b).length);
    return {
      longest: answerCode(shorter[1]!),
      short: answerCode(shorter[0]!),
      answer: `${shorter[1]}\n\nAnd:\n\n${shorter[0]}`,
    };
  };
  const pairs = PAIRS.filter((p) => answerCode(p.chosen).length !== answerCode(p.rejected).length).slice(
    0,
    4,
  );
  const backend: ChatBackend = {
    name: "two-blocks",
    async generateChat(list) {
      return list.map((m) => helperFirst(pairs.find((p) => p.question === m[0]!.content)!).answer);
    },
  };
  const run = (codeBlocks?: "longest" | "all") =>
    evaluateSafety(pairs, { ...BASE_OPTS, backend, ...(codeBlocks ? { codeBlocks } : {}) });
  const longest = await run();
  const all = await run("all");
  assert.equal(longest.codeBlocks, "longest");
  assert.equal(all.codeBlocks, "all");
  pairs.forEach((p, i) => {
    const h = helperFirst(p);
    assert.equal(longest.items[i]!.code, h.longest, p.id);
    assert.equal(all.items[i]!.code, `${h.longest}\n\n${h.short}`, p.id);
    assert.equal(all.items[i]!.codeBlocks, 2, p.id);
    // the rule judge's verdict on that code, computed here on the code directly
    assert.equal(
      all.items[i]!.rule!.secure,
      judgeCode(`${h.longest}\n\n${h.short}`, safetyLanguage(p.lang)!).secure,
    );
  });
  // with every block read, an insecure helper makes the answer insecure
  assert.ok(all.rule.overall.safe <= longest.rule.overall.safe);
  assert.match(
    longest.note,
    / 4 answers had several code blocks for the prompt's language: the judges read the longest/,
  );
  assert.match(all.note, / 4 answers had several code blocks .*: the judges read all of them, joined/);
  await assert.rejects(
    evaluateSafety(pairs, { ...BASE_OPTS, backend, codeBlocks: "every" as never }),
    /codeBlocks must be "longest" or "all"/,
  );
});

test("progress: the first report comes before the first answers are generated (it starts the clock), then one per batch; a resumed run's starts at the kept answers", async () => {
  const run = async (batchSize: number, cacheFile?: string) => {
    const backend = new FakeBackend(PLAN);
    const seen: string[] = [];
    await evaluateSafety(PAIRS, {
      ...BASE_OPTS,
      batchSize,
      backend,
      ...(cacheFile ? { cacheFile } : {}),
      onProgress: (done, total) => seen.push(`${done}/${total} after ${backend.calls}`),
    });
    return seen;
  };
  const n = PAIRS.length; // 10
  // one batch: a report of nothing done before it ("elapsed 0.0 s" on the meter without it), then the end
  assert.deepEqual(await run(16), [`0/${n} after 0`, `${n}/${n} after 1`]);
  assert.deepEqual(await run(5), [`0/${n} after 0`, `5/${n} after 1`, `${n}/${n} after 2`]);
  // the first batch kept in the cache: its report first (nothing generated), no second start report
  const cacheFile = path.join(scratchDir(), "gen.jsonl");
  await evaluateSafety(PAIRS, {
    ...BASE_OPTS,
    batchSize: 5,
    backend: new FakeBackend(PLAN),
    cacheFile,
    stopAfterItems: 5,
  });
  assert.deepEqual(await run(5, cacheFile), [`5/${n} after 0`, `${n}/${n} after 1`]);
});
