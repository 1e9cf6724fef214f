/**
 * generate --backend http -m <folder>: the folder's tokenizer counts the prompt, so an answer an Ollama server gave to
 * a prompt it cut to its num_ctx (prompt-fit.ts) is refused, not printed as the answer to the whole prompt.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 2 });
after(() => fx.cleanup());

/** Ollama at a context it states nowhere (its default): a prompt is cut to 16 tokens and answered. */
async function cuttingOllama() {
  const server = http.createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      const json = (status: number, body: unknown) =>
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
      if (req.url === "/api/version") return json(200, { version: "0.12.3" });
      if (req.url === "/v1/models")
        return json(200, { object: "list", data: [{ id: "m:latest", object: "model" }] });
      if (req.url === "/api/ps") return json(200, { models: [] });
      if (req.url === "/api/show") return json(200, { template: "{{ .Prompt }}", parameters: "" });
      const body = JSON.parse(raw) as { messages?: { content: string }[]; prompt?: string };
      // the whole prompt's tokens are at least its words here; the runner keeps 16 of them
      const words = (body.messages?.[0]?.content ?? body.prompt ?? "").split(/\s+/).length;
      return json(200, {
        choices: [{ message: { content: "the answer" }, text: "the answer", finish_reason: "stop" }],
        usage: { prompt_tokens: Math.min(16, words + 10), completion_tokens: 2 },
      });
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

test("generate --backend http -m: an answer to a prompt the server cut is refused, naming both counts and the fix; a whole prompt's is printed", async () => {
  const srv = await cuttingOllama();
  const long = Array.from({ length: 200 }, (_, i) => `word${i}`).join(" ");
  const gen = (prompt: string, raw: boolean) =>
    runCli([
      ...["generate", "--backend", "http", "--url", srv.url, "--server-model", "m", "-m", fx.model.dir],
      ...["-p", prompt, ...(raw ? ["--raw"] : [])],
    ]);
  try {
    for (const raw of [false, true]) {
      const r = await gen(long, raw);
      assert.notEqual(r.code, 0, showRun(r));
      assert.match(r.stderr, /the prompt "word0 word1 .*counted 16 prompt tokens \(usage\.prompt_tokens\)/);
      assert.match(r.stderr, /OLLAMA_CONTEXT_LENGTH=\d+/);
      // the way out for a server that cut nothing but counts fewer (not taken here: it did cut)
      assert.match(
        r.stderr,
        /--prompt-count-tolerance \(HttpBackend option promptCountTolerancePct; now 1%\)/,
      );
      assert.doesNotMatch(r.stdout, /the answer/);
      const ok = await gen("hi", raw);
      assert.equal(ok.code, 0, showRun(ok));
      assert.match(ok.stdout, /the answer/);
    }
  } finally {
    await srv.close();
  }
});

test("generate --backend http -m --prompt-count-tolerance: the server's count is allowed that many percent fewer, said as a caveat; refused without -m or another backend", async () => {
  const srv = await cuttingOllama();
  const long = Array.from({ length: 200 }, (_, i) => `word${i}`).join(" ");
  const base = ["generate", "--backend", "http", "--url", srv.url, "--server-model", "m"];
  try {
    // 100%: any count is taken as whole (the cut here goes unnoticed, as the caveat says it may)
    const r = await runCli([
      ...base,
      "-m",
      fx.model.dir,
      "-p",
      long,
      "--prompt-count-tolerance",
      "100",
      "--json",
    ]);
    assert.equal(r.code, 0, showRun(r));
    const out = JSON.parse(r.stdout) as { text: string; caveats?: string[] };
    assert.equal(out.text, "the answer");
    const said = (out.caveats ?? []).filter((c) => c.startsWith("--prompt-count-tolerance 100: "));
    assert.equal(said.length, 1, JSON.stringify(out.caveats));
    assert.ok(r.stderr.includes(said[0]!), r.stderr);
    for (const args of [
      [...base, "-p", "hi", "--prompt-count-tolerance", "5"],
      ["generate", "--backend", "builtin", "-m", fx.model.dir, "-p", "hi", "--prompt-count-tolerance", "5"],
    ]) {
      const bad = await runCli(args);
      assert.equal(bad.code, 2, showRun(bad));
      assert.match(
        bad.stderr,
        /--prompt-count-tolerance is about a server's count .*needs --backend http and -m/,
      );
    }
  } finally {
    await srv.close();
  }
});
