/**
 * `goodvibe eval --url` scores the utility benchmarks on the servers (their figures against the built-in engine's:
 * test/utility/http-engine.test.ts). Here the CLI's rules, each a run that stops before any answer: a server without
 * the prompt's log-probabilities (goodvibe serve, as llama-server and Ollama) is named with the benchmark and the
 * flag that scores it locally; a --base scored on another engine than the model's benchmarks is refused; with
 * --base-server-model both sides' benchmarks go to the servers, and the output says so per figure.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { serveBuiltin } from "../../src/eval/generate/serve.js";
import { loadModel } from "../../src/models/load.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { balancedPairs, makeCliFixture, runCli, showRun } from "./cli-helpers.js";
import { startEchoServer } from "../utility/echo-server.js";
import { HttpBackend } from "../../src/eval/generate/http.js";
import { httpUtilityServer } from "../../src/eval/utility/engine.js";
import { evaluateArc } from "../../src/eval/utility/arc.js";
import { loadArc } from "../../src/eval/utility/datasets.js";

const fx = makeCliFixture({ perLanguage: 1 });
after(() => fx.cleanup());
const dev = path.join(fx.work, "dev.jsonl");
writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 1).slice(0, 2));
const arc = path.join(fx.work, "arc.jsonl");
fs.writeFileSync(
  arc,
  JSON.stringify({
    id: "q1",
    question: "Which is a gas?",
    choices: { text: ["ice", "steam"], label: ["A", "B"] },
    answerKey: "B",
  }) + "\n",
);
const args = (cache: string) => [
  ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "1", "--max-new-tokens", "4", "--arc", arc],
  ...["--preference-pairs", "1", "--cache", path.join(fx.work, cache), "--server-model", "tiny"],
];

test("eval --url: a server without prompt log-probabilities stops the run before any answer, naming it, the benchmark and --utility-local", async () => {
  const served = await serveBuiltin(
    new BuiltinBackend(loadModel(fx.model.dir), await loadTokenizer(fx.model.dir)),
    { port: 0, modelName: "tiny" },
  );
  try {
    const r = await runCli([...args("c-noecho"), "--url", served.url]);
    assert.equal(r.code, 3, showRun(r));
    assert.match(
      r.stderr,
      new RegExp(
        `--arc is scored by log-likelihood, which ${served.url.replace(/[.]/g, "\\.")} \\(model "tiny"\\) cannot give: .*` +
          "or score it on the built-in engine here with --utility-local arc",
      ),
    );
    // before the answers: no safety answer was asked for
    const cache = path.join(fx.work, "c-noecho");
    const files = fs.existsSync(cache) ? fs.readdirSync(cache) : [];
    assert.equal(files.filter((f) => f.startsWith("safety-")).length, 0, files.join(", "));
    // the way out it names: ARC on the built-in engine, the prompts still answered by the server, said so
    const local = await runCli([
      ...args("c-noecho"),
      "--url",
      served.url,
      "--utility-local",
      "arc",
      "--json",
    ]);
    assert.equal(local.code, 0, showRun(local));
    const out = JSON.parse(local.stdout) as { utilityEngine: Record<string, Record<string, string>> };
    assert.deepEqual(out.utilityEngine, {
      model: { heldout_code_loss: "built-in", arc_challenge: "built-in" },
    });
  } finally {
    await served.stop();
  }
});

test("eval --url --base: the model's benchmarks on the servers and the base's on the built-in engine are refused, with the two ways out", async () => {
  // refused before any request: the URL is never asked
  const r = await runCli([...args("c-mix"), "--url", "http://127.0.0.1:9", "--base", fx.model.dir]);
  assert.equal(r.code, 2, showRun(r));
  assert.match(
    r.stderr,
    /--base .* would be scored on the built-in engine and the model's arc on the --url servers: a utility comparison across two engines is not like for like\. Serve the base on the same servers and give its name there \(--base-server-model NAME\), or score these benchmarks locally for both \(--utility-local arc\)/,
  );
});

test("eval --url --base --base-server-model: both sides' ARC on the servers, said per figure in the text and the JSON", async () => {
  const model = loadModel(fx.model.dir);
  const srv = await startEchoServer(
    model,
    await loadTokenizer(fx.model.dir),
    "tiny",
    model.cfg.maxPositionEmbeddings + 2,
  );
  try {
    const r = await runCli([
      ...args("c-both"),
      ...["--url", srv.url, "--base", fx.model.dir, "--base-server-model", "tiny", "--json"],
    ]);
    assert.equal(r.code, 0, showRun(r));
    const out = JSON.parse(r.stdout) as {
      utilityEngine: Record<string, Record<string, string>>;
      utilityVsBase: Record<string, unknown>;
    };
    const name = `${srv.url} (model "tiny")`;
    assert.deepEqual(out.utilityEngine, {
      model: { heldout_code_loss: "built-in", arc_challenge: name },
      base: { heldout_code_loss: "built-in", arc_challenge: name },
    });
    assert.ok(out.utilityVsBase.arc_challenge);
    // each side's probe (an echo, then a log-likelihood) and the model's two choices: the base (the same weights,
    // on the same engine) takes the model's figure from --cache
    assert.deepEqual((out as unknown as { baseUtilityReused: string[] }).baseUtilityReused, [
      "arc_challenge",
    ]);
    assert.equal(srv.echoes, 2 * 2 + 2);
    // each side's context per request said once, before its answers, with whence it comes
    const len = model.cfg.maxPositionEmbeddings + 2;
    const said = r.stderr.split("\n").filter((l) => l.includes("context per request"));
    assert.deepEqual(said, [
      `${name}: log-likelihood pairs cut to a context per request of ${len} tokens, what the server reports on GET /v1/models (${srv.url}/v1 max_model_len ${len})`,
      `${name}: log-likelihood pairs cut to a context per request of ${len} tokens, what the server reports on GET /v1/models (${srv.url}/v1 max_model_len ${len})`,
    ]);
  } finally {
    await srv.close();
  }
});

test("eval --url --gsm8k on Ollama with a chat-templated model: refused before any answer, naming the server, the benchmark and --utility-local", async () => {
  const gsm8k = path.join(fx.work, "gsm8k.jsonl");
  fs.writeFileSync(gsm8k, JSON.stringify({ question: "What is 1 + 1?", answer: "#### 2" }) + "\n");
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    asked.push(req.url ?? "");
    req.resume();
    req.on("end", () => {
      res.writeHead(req.url === "/api/version" || req.url === "/api/show" ? 200 : 404, {
        "content-type": "application/json",
      });
      res.end(
        JSON.stringify(
          req.url === "/api/version"
            ? { version: "0.12.3" }
            : { template: "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n" },
        ),
      );
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const r = await runCli([
      ...args("c-ollama").filter((a, i, all) => a !== arc && all[i + 1] !== arc),
      ...["--gsm8k", gsm8k, "--url", url],
    ]);
    assert.equal(r.code, 3, showRun(r));
    assert.match(
      r.stderr,
      new RegExp(
        `--gsm8k is asked with raw prompts, which must reach the model as they are: ${url.replace(/[.]/g, "\\.")} is Ollama 0\\.12\\.3, .*--utility-local gsm8k`,
      ),
    );
    // nothing asked but the look-ups (the model list, then Ollama's): no answer generated
    assert.deepEqual(asked, ["/v1/models", "/api/version", "/api/show"]);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});

test("eval --url --max-model-len: the servers' context where /v1/models does not report it (without it the run stops naming the flag); checked, and with --url only", async () => {
  const model = loadModel(fx.model.dir);
  const tok = await loadTokenizer(fx.model.dir);
  // the server takes 64 tokens but does not say so
  const srv = await startEchoServer(model, tok, "tiny", 64, { reportMaxModelLen: false });
  try {
    const without = await runCli([...args("c-mml-none"), "--url", srv.url]);
    assert.equal(without.code, 2, showRun(without));
    assert.match(without.stderr, /does not report max_model_len for "tiny": .*eval --max-model-len/);
    const r = await runCli([...args("c-mml"), "--url", srv.url, "--max-model-len", "10", "--json"]);
    assert.equal(r.code, 0, showRun(r));
    // vLLM's window: each pair sent is cut to max_model_len less the one token generated (the longest pairs: 9)
    const pair = tok.encode("Question: Which is a gas?\nAnswer: steam", { addSpecialTokens: true });
    assert.ok(pair.length > 9, `${pair.length} tokens`);
    assert.equal(Math.max(...srv.echoed), 9);
    // taken as given, said once: the server does not report its own
    const said = r.stderr.split("\n").filter((l) => l.includes("context per request"));
    assert.equal(said.length, 1, r.stderr);
    assert.match(
      said[0]!,
      /of 10 tokens, --max-model-len's; not checked against .*, whose GET \/v1\/models reports none/,
    );
    // and the figure is ARC scored on those servers by the HTTP backend told that context
    const ref = httpUtilityServer(
      new HttpBackend({ baseUrls: srv.url, model: "tiny", tokenizer: tok, maxModelLen: 10 }),
      [srv.url],
      "tiny",
    );
    const want = await evaluateArc(ref.model, await loadArc(arc));
    const out = JSON.parse(r.stdout) as { utility: Record<string, { value: number }> };
    assert.equal(out.utility.arc_challenge!.value, want.metrics.acc_norm);
  } finally {
    await srv.close();
  }
  for (const [extra, message] of [
    [["--url", "http://127.0.0.1:9", "--max-model-len", "1"], /--max-model-len.*1/],
    [["--max-model-len", "4096"], /--max-model-len is about the --url servers: it needs --url/],
    [
      ["--prompt-count-tolerance", "5"],
      /--prompt-count-tolerance is about the --url servers: it needs --url/,
    ],
    [["--url", "http://127.0.0.1:9", "--prompt-count-tolerance", "101"], /--prompt-count-tolerance.*≤ 100/],
  ] as const) {
    const bad = await runCli([...args("c-mml-bad"), ...extra]);
    assert.equal(bad.code, 2, showRun(bad));
    assert.match(bad.stderr, message);
  }
});

test("eval --url --max-model-len more than the server reports: refused before any answer, naming both numbers and the server", async () => {
  const model = loadModel(fx.model.dir);
  const srv = await startEchoServer(model, await loadTokenizer(fx.model.dir), "tiny", 64);
  try {
    const r = await runCli([...args("c-mml-over"), "--url", srv.url, "--max-model-len", "100"]);
    assert.equal(r.code, 2, showRun(r));
    assert.match(r.stderr, /--max-model-len 100 .*more than the servers take for "tiny"/);
    assert.ok(r.stderr.includes(`GET ${srv.url}/v1/models reports max_model_len 64`), r.stderr);
    // before the answers: no safety answer asked for, and only the probe's echo (the refusal comes with its window)
    const cache = path.join(fx.work, "c-mml-over");
    const files = fs.existsSync(cache) ? fs.readdirSync(cache) : [];
    assert.equal(files.filter((f) => f.startsWith("safety-")).length, 0, files.join(", "));
    assert.equal(srv.echoes, 1);
  } finally {
    await srv.close();
  }
});

test("eval --url on a vLLM that refuses prompt log-probabilities with prefix caching on: stopped before any answer, naming the restart that gives them and --utility-local, not 'serve with vLLM'", async () => {
  // vLLM V1 before vllm-project/vllm#13949: a 400 BadRequestError for echo with logprobs (vllm-project/vllm#13409)
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    asked.push(req.url ?? "");
    req.resume();
    req.on("end", () => {
      res.writeHead(req.url === "/v1/models" ? 200 : 400, { "content-type": "application/json" });
      res.end(
        JSON.stringify(
          req.url === "/v1/models"
            ? { object: "list", data: [{ id: "tiny", object: "model", owned_by: "vllm", max_model_len: 64 }] }
            : {
                object: "error",
                message: "Prefix caching with prompt logprobs not yet supported on VLLM V1.",
                type: "BadRequestError",
                code: 400,
              },
        ),
      );
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const r = await runCli([...args("c-prefix"), "--url", url]);
    assert.equal(r.code, 3, showRun(r));
    assert.match(r.stderr, /--arc is scored by log-likelihood, which .* refuses as it is served: /);
    assert.match(
      r.stderr,
      /restart it with --no-enable-prefix-caching.* Or score it on the built-in engine here with --utility-local arc/,
    );
    assert.doesNotMatch(r.stderr, /Serve the model with vLLM/);
    // the model list (the name checked) and the probe's echo alone: no answer asked for
    assert.deepEqual(asked, ["/v1/models", "/v1/completions"]);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});

test("eval --url --code alone on a server that does not report its context: scored, --max-model-len not asked for (the code windows are sent whole, not cut to it)", async () => {
  const model = loadModel(fx.model.dir);
  const tok = await loadTokenizer(fx.model.dir);
  const srv = await startEchoServer(model, tok, "tiny", 64, { reportMaxModelLen: false });
  const code = path.join(fx.work, "code.jsonl");
  fs.writeFileSync(code, JSON.stringify({ id: "c1", code: "def f(x):\n    return x + 1\n" }) + "\n");
  try {
    const r = await runCli([
      ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "1", "--max-new-tokens", "4", "--code", code],
      ...["--preference-pairs", "1", "--cache", path.join(fx.work, "c-code-only"), "--server-model", "tiny"],
      ...["--url", srv.url, "--json"],
    ]);
    assert.equal(r.code, 0, showRun(r));
    const out = JSON.parse(r.stdout) as { utilityEngine: { model: Record<string, string> } };
    assert.ok(
      Object.values(out.utilityEngine.model).includes(`${srv.url} (model "tiny")`),
      JSON.stringify(out.utilityEngine),
    );
    assert.doesNotMatch(r.stderr, /context per request|max-model-len/);
    // the probe's echo and the file's one window, sent whole
    const window = tok.encode("def f(x):\n    return x + 1\n", { addSpecialTokens: false }).length;
    assert.deepEqual(srv.echoed.slice(1), [window]);
  } finally {
    await srv.close();
  }
});

/** A vLLM that serves "tiny-hardened" only: its model list, and its 404 for any other name; records what it is asked. */
async function vllmServingOtherName(): Promise<{ url: string; asked: string[]; close(): Promise<void> }> {
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    req.resume();
    req.on("end", () => {
      const models = req.url === "/v1/models";
      res.writeHead(models ? 200 : 404, { "content-type": "application/json" });
      // vLLM's 404 for a name it does not serve, which the user saw before
      res.end(
        JSON.stringify(
          models
            ? {
                object: "list",
                data: [{ id: "tiny-hardened", object: "model", owned_by: "vllm", max_model_len: 64 }],
              }
            : {
                object: "error",
                message: "The model `tiny` does not exist.",
                type: "NotFoundError",
                code: 404,
              },
        ),
      );
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    asked,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

test("eval --url --server-model a name vLLM does not serve: refused before any request but GET /v1/models, naming the URL, the names it serves and the flag", async () => {
  const { url, asked, close } = await vllmServingOtherName();
  try {
    const r = await runCli([...args("c-unserved"), "--url", url]);
    assert.equal(r.code, 2, showRun(r));
    assert.ok(
      r.stderr.includes(
        `--server-model: ${url} does not serve "tiny": GET ${url}/v1/models lists "tiny-hardened". vLLM serves a ` +
          "model under its --served-model-name",
      ),
      r.stderr,
    );
    assert.match(r.stderr, /Give one of the names it lists with --server-model/);
    assert.doesNotMatch(r.stderr, /does not exist/);
    assert.deepEqual(asked, ["GET /v1/models"]);
  } finally {
    await close();
  }
});

test("generate --backend http --server-model a name vLLM does not serve: refused after GET /v1/models alone, with the names it serves", async () => {
  const { url, asked, close } = await vllmServingOtherName();
  try {
    const gen = ["generate", "--backend", "http", "--url", url, "-p", "hi"];
    const r = await runCli([...gen, "--server-model", "tiny"]);
    assert.equal(r.code, 2, showRun(r));
    assert.match(
      r.stderr,
      /--server-model: .* does not serve "tiny": GET .*\/v1\/models lists "tiny-hardened"/,
    );
    assert.doesNotMatch(r.stderr, /does not exist/);
    assert.deepEqual(asked, ["GET /v1/models"]);
  } finally {
    await close();
  }
});
