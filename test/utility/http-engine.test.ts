/**
 * The utility benchmarks scored on servers (eval --url; eval/utility/engine.ts) against the built-in engine on the
 * same model folder. The server (echo-server.ts) is vLLM-like: echoed prompt log-probabilities from one forward pass
 * of the built-in model over the ids it is sent, and greedy answers from `goodvibe serve` of the model. The client
 * (http.ts) makes each pair's tokens with the folder's tokenizer and cuts them as the built-in engine does, so each
 * log-likelihood equals the engine's up to float32 rounding: both take the same float32 log-softmax values, but the
 * engine sums them in float32 (a tensor sum) over the logits of its input less the pair's last token, and the server
 * runs the whole pair (another sequence length: libtorch may block the matmuls otherwise), summed here in float64.
 * Each differs by a few float32 ulps of values of order 10 (~1e-6); 1e-4 is the bound asserted. Accuracy and the
 * generated answers must be equal.
 */
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { HttpBackend } from "../../src/eval/generate/http.js";
import {
  httpUtilityServer,
  type UtilityBenchmark,
  type UtilityServer,
} from "../../src/eval/utility/engine.js";
import type {
  LoglikelihoodRequest,
  LoglikelihoodResult,
  UtilityModel,
} from "../../src/eval/utility/model.js";
import { evaluateArc } from "../../src/eval/utility/arc.js";
import { evaluateMmlu } from "../../src/eval/utility/mmlu.js";
import { evaluateGsm8k } from "../../src/eval/utility/gsm8k.js";
import { codeLoss } from "../../src/eval/utility/code-loss.js";
import { loadArc, type ArcItem, type Gsm8kItem, type MmluItem } from "../../src/eval/utility/datasets.js";
import { BuiltinUtilityModel, evaluateModel } from "../../src/recipes/evaluate.js";
import { loadModel } from "../../src/models/load.js";
import { loadTokenizer, type HfTokenizer } from "../../src/io/tokenizer.js";
import type { DecoderModel } from "../../src/models/decoder.js";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { readPairs } from "../../src/data/pairs.js";
import { makeTinyChatModel, scratchDir, type MadeModel } from "../evalcore/make-model.js";
import { startEchoServer, type EchoServer } from "./echo-server.js";

const TOL = 1e-4;
const work = scratchDir("gv-http-engine-");
let made: MadeModel;
let model: DecoderModel;
let tok: HfTokenizer;
let srv: EchoServer;
let server: UtilityServer;
before(async () => {
  made = makeTinyChatModel({ seed: 5 });
  model = loadModel(made.dir);
  tok = await loadTokenizer(made.dir);
  // the engine's window is max_position_embeddings + 1 tokens of a pair; the server echoes max_model_len less the
  // one token it generates: the same window when max_model_len is max_position_embeddings + 2
  srv = await startEchoServer(model, tok, "tiny", model.cfg.maxPositionEmbeddings + 2);
  const backend = new HttpBackend({ baseUrls: srv.url, model: "tiny", tokenizer: tok, concurrency: 4 });
  server = httpUtilityServer(backend, [srv.url], "tiny");
});
after(async () => {
  await srv?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A UtilityModel that records every log-likelihood it gives, in the order asked. */
function recording(m: UtilityModel): UtilityModel & { seen: LoglikelihoodResult[] } {
  const seen: LoglikelihoodResult[] = [];
  return {
    seen,
    async loglikelihood(reqs: LoglikelihoodRequest[]) {
      const out = await m.loglikelihood(reqs);
      seen.push(...out);
      return out;
    },
    generate: (p, o) => m.generate(p, o),
  };
}

const ARC: ArcItem[] = [
  ["q1", "Which is a gas?", ["ice", "steam", "rock"], 1],
  ["q2", "Which is a metal?", ["wood", "iron"], 1],
  ["q3", "What does a plant need to make food?", ["sunlight", "sand", "salt", "smoke"], 0],
  ["q4", "Which unit measures length?", ["kilogram", "metre", "second", "litre"], 1],
].map(([id, question, text, gold]) => ({
  id: id as string,
  question: question as string,
  choices: { text: text as string[], label: ["A", "B", "C", "D"].slice(0, (text as string[]).length) },
  answerKey: "ABCD"[gold as number]!,
  gold: gold as number,
}));

const MMLU: MmluItem[] = [
  { question: "2 + 2 =", subject: "elementary_mathematics", choices: ["3", "4", "5", "22"], answer: 1 },
  {
    question: "Water boils at sea level at",
    subject: "high_school_physics",
    choices: ["50 C", "80 C", "100 C", "120 C"],
    answer: 2,
  },
  {
    question: "The capital of France is",
    subject: "geography",
    choices: ["Paris", "Rome", "Bern", "Oslo"],
    answer: 0,
  },
];

const GSM: Gsm8kItem[] = [1, 2, 3].map((i) => ({
  question: `Tom has ${i} apples and buys ${i + 1} more. How many apples does he have?`,
  answer: `${i} + ${i + 1} = ${2 * i + 1}\n#### ${2 * i + 1}`,
  finalAnswer: String(2 * i + 1),
}));

function assertClose(
  a: readonly LoglikelihoodResult[],
  b: readonly LoglikelihoodResult[],
  what: string,
): void {
  assert.equal(a.length, b.length, what);
  a.forEach((x, i) => {
    assert.ok(Math.abs(x.logprob - b[i]!.logprob) < TOL, `${what} #${i}: ${x.logprob} vs ${b[i]!.logprob}`);
    assert.equal(x.isGreedy, b[i]!.isGreedy, `${what} #${i}: greedy`);
  });
}

test("ARC and MMLU over HTTP: every choice's log-likelihood is the built-in engine's (within 1e-4), the accuracy equal", async () => {
  const local = recording(new BuiltinUtilityModel(model, tok));
  const remote = recording(server.model);
  const [la, ra] = [await evaluateArc(local, ARC), await evaluateArc(remote, ARC)];
  assert.equal(local.seen.length, 2 + 3 + 4 + 4);
  assertClose(remote.seen, local.seen, "ARC");
  assert.deepEqual(
    ra.perItem.map((x) => [x.acc, x.acc_norm]),
    la.perItem.map((x) => [x.acc, x.acc_norm]),
  );
  assert.deepEqual(ra.metrics, la.metrics);
  // a multi-token continuation somewhere: the sum is over several positions, not one
  assert.ok(ARC.some((it) => it.choices.text.some((c) => tok.encode(` ${c}`).length > 1)));

  const [lm, rm] = [
    await evaluateMmlu(local, MMLU, { nShot: 0 }),
    await evaluateMmlu(remote, MMLU, { nShot: 0 }),
  ];
  assertClose(remote.seen.slice(13), local.seen.slice(13), "MMLU");
  assert.equal(local.seen.length, 13 + 4 * 3);
  assert.deepEqual(
    rm.perItem.map((x) => x.acc),
    lm.perItem.map((x) => x.acc),
  );
  assert.ok(srv.echoes >= 25);
});

test("GSM8K over HTTP: the servers' greedy answers are the built-in engine's, and so the scores", async () => {
  const local = await evaluateGsm8k(new BuiltinUtilityModel(model, tok), GSM, { nShot: 0, maxNewTokens: 24 });
  const remote = await evaluateGsm8k(server.model, GSM, { nShot: 0, maxNewTokens: 24 });
  assert.deepEqual(
    remote.perItem.map((x) => x.completion),
    local.perItem.map((x) => x.completion),
  );
  assert.ok(local.perItem.some((x) => x.completion.length > 0));
  assert.deepEqual(remote.metrics, local.metrics);
});

test("the held-out real-code loss over HTTP: the servers' echoed windows give the engine's figure (within 1e-4)", async () => {
  const rows = [
    { id: "a", lang: "go", code: 'package main\n\nfunc main() {\n\tprintln("hi")\n}\n' },
    { id: "b", lang: "java", code: "class A { int f(int x) { return x * 2; } }\n".repeat(4) },
  ];
  const local = await codeLoss(model, tok, rows, { maxLength: 16 });
  const remote = await codeLoss(server.windowLosses, tok, rows, { maxLength: 16 });
  assert.equal(remote.tokens, local.tokens);
  assert.ok(Math.abs(remote.value - local.value) < TOL, `${remote.value} vs ${local.value}`);
  assert.equal(remote.perItem.items, local.perItem.items);
});

test("evaluateModel with servers: its figures equal the local run's, named by engine and cached under it", async () => {
  const dev = path.join(work, "dev.jsonl");
  writeCorpusJsonl(dev, made.pairs.slice(0, 2));
  const arc = path.join(work, "arc.jsonl");
  fs.writeFileSync(arc, ARC.map(({ gold: _, ...r }) => JSON.stringify(r)).join("\n") + "\n");
  const cacheDir = path.join(work, "cache");
  const common = {
    pairs: readPairs(dev),
    maxPrompts: 1,
    maxPreferencePairs: 1,
    maxNewTokens: 4,
    batchSize: 2,
    seed: 0,
    cacheDir,
    utility: { arc },
  };
  const local = await evaluateModel(made.dir, common);
  const remote = await evaluateModel(made.dir, {
    ...common,
    utilityServer: { server, benchmarks: ["arc"] },
  });
  // not the local figure from the cache: the engine is in the key
  assert.equal(remote.utilityReused, undefined);
  assert.equal(remote.utilityEngine.arc_challenge, `${srv.url} (model "tiny")`);
  assert.equal(local.utilityEngine.arc_challenge, "built-in");
  assert.equal(remote.utilityEngine.heldout_code_loss, "built-in");
  assert.equal(remote.utility.arc_challenge!.value, local.utility.arc_challenge!.value);
  assert.equal(remote.utility.arc_challenge!.perItem!.items, local.utility.arc_challenge!.perItem!.items);
  // and each engine's figure is found again under its own key
  const again = await evaluateModel(made.dir, { ...common, utilityServer: { server, benchmarks: ["arc"] } });
  assert.deepEqual(again.utilityReused, ["arc_challenge"]);
  assert.equal(again.utilityEngine.arc_challenge, remote.utilityEngine.arc_challenge);
});

test("a figure scored on servers is keyed by their window where they cut pairs (ARC), not where they do not (GSM8K)", async () => {
  const dev = path.join(work, "dev-window.jsonl");
  writeCorpusJsonl(dev, made.pairs.slice(0, 2));
  const arc = path.join(work, "arc-window.jsonl");
  fs.writeFileSync(arc, ARC.map(({ gold: _, ...r }) => JSON.stringify(r)).join("\n") + "\n");
  const gsm8k = path.join(work, "gsm8k-window.jsonl");
  fs.writeFileSync(
    gsm8k,
    GSM.map(({ question, answer }) => JSON.stringify({ question, answer })).join("\n") + "\n",
  );
  const common = {
    pairs: readPairs(dev),
    maxPrompts: 1,
    maxPreferencePairs: 1,
    maxNewTokens: 4,
    batchSize: 2,
    seed: 0,
    cacheDir: path.join(work, "cache-window"),
    utility: { arc, gsm8k, limit: 2 },
  };
  // the same servers under two max_model_len: pairs cut to 10 and to 14 model-input tokens
  const at = (maxModelLen: number) =>
    httpUtilityServer(
      new HttpBackend({ baseUrls: srv.url, model: "tiny", tokenizer: tok, maxModelLen }),
      [srv.url],
      "tiny",
    );
  const [small, larger] = [at(12), at(16)];
  assert.equal(await larger.loglikelihoodInputLength(), 14);
  // the premise: the window changes a pair's log-likelihood (its context is cut further from the left)
  const req = {
    context: `Question: ${ARC[2]!.question}\nAnswer:`,
    continuation: ` ${ARC[2]!.choices.text[0]}`,
  };
  assert.ok(tok.encode(req.context + req.continuation, { addSpecialTokens: true }).length > 16);
  const [[a], [b]] = [await small.model.loglikelihood([req]), await larger.model.loglikelihood([req])];
  assert.notEqual(a!.logprob, b!.logprob);

  const benchmarks: UtilityBenchmark[] = ["arc", "gsm8k"];
  const first = await evaluateModel(made.dir, { ...common, utilityServer: { server: small, benchmarks } });
  assert.equal(first.utilityReused, undefined);
  const second = await evaluateModel(made.dir, { ...common, utilityServer: { server: larger, benchmarks } });
  // GSM8K's answers do not depend on the window: reused under its key as before; ARC is scored again
  assert.deepEqual(second.utilityReused, ["gsm8k"]);
  assert.equal(second.utility.gsm8k!.value, first.utility.gsm8k!.value);
  // under the larger window, the figure is that window's: ARC's items scored afresh on those servers
  const items = await loadArc(arc, { limit: 2, seed: 0 });
  const fresh = await evaluateArc(larger.model, items);
  assert.equal(second.utility.arc_challenge!.value, fresh.metrics.acc_norm);
  // and each window's figure is found again under its own key
  const said: string[] = [];
  const log = { info: (m: string) => said.push(m), warn() {}, progress() {} };
  const again = await evaluateModel(made.dir, {
    ...common,
    log,
    utilityServer: { server: small, benchmarks },
  });
  assert.deepEqual(again.utilityReused, ["arc_challenge", "gsm8k"]);
  // each says the engine that made it reusable: the servers by their model's name (not a build here), and the cut
  const file = path.join(
    common.cacheDir,
    fs
      .readdirSync(common.cacheDir)
      .find((f) => f.startsWith("utility-") && !f.startsWith("utility-answers"))!,
  );
  const engine = `the same model, files, settings and engine, ${srv.url} (model "tiny"), evaluated it before`;
  assert.ok(
    said.includes(`arc_challenge: reused from ${file} (${engine} with pairs cut to 10 tokens)`),
    said.join("\n"),
  );
  assert.ok(said.includes(`gsm8k: reused from ${file} (${engine})`), said.join("\n"));
});

test("ARC's progress on the built-in engine and over HTTP: one report per request as its result comes (13 requests), after one at 0", async () => {
  for (const [what, m] of [
    ["built-in", new BuiltinUtilityModel(model, tok)],
    ["http", server.model],
  ] as const) {
    const seen: number[] = [];
    await evaluateArc(m, ARC, { onProgress: (d, t) => (assert.equal(t, 13, what), seen.push(d)) });
    assert.deepEqual(
      seen,
      Array.from({ length: 14 }, (_, i) => i),
      what,
    );
  }
});
