/**
 * `--extra-body <json>` (eval --url, generate --backend http): a JSON object merged into every request body, as
 * HttpBackend's extraBody, but for its chat_template_kwargs, which go with chat requests only (a completion has no
 * template); their keys win over ours, a null there leaves the key out. Checked
 * against a local server that records the bodies it receives. The answers asked with an extra body are cached
 * apart from those asked without (the body's canonical JSON is part of their keys), and those without keep theirs.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { balancedPairs, makeCliFixture, runCli, showRun } from "./cli-helpers.js";
import { REPO_ROOT } from "../evalcore/make-model.js";

const fx = makeCliFixture({ perLanguage: 2 });
after(() => fx.cleanup());

async function recordingServer() {
  const bodies: Record<string, unknown>[] = [];
  /** the request paths, in the order of `bodies` */
  const paths: string[] = [];
  const server = http.createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      // GET /v1/models: a server that lists no models (the name is not checked)
      if (req.method === "GET") return res.writeHead(404).end();
      bodies.push(JSON.parse(raw) as Record<string, unknown>);
      paths.push(req.url ?? "");
      res.writeHead(200, { "content-type": "application/json" });
      const content = "```python\nprint(1)\n```";
      // a chat answer's message, a completion's text
      res.end(
        JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content }, text: content }] }),
      );
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = async () => {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  };
  return { bodies, paths, url, close };
}

/** every cached answer's key in `cache`, by pair id */
function keys(cache: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of fs.readdirSync(cache).filter((f) => f.startsWith("safety-")))
    for (const l of fs.readFileSync(path.join(cache, f), "utf8").split("\n").filter(Boolean)) {
      const { id, key } = JSON.parse(l) as { id: string; key: string };
      out.set(id, [...(out.get(id) ?? []), key]);
    }
  return out;
}

test("eval --url --extra-body: every chat body carries it; its answers are keyed apart, key order does not matter", async () => {
  const dev = path.join(fx.work, "dev.jsonl");
  writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 1).slice(0, 3));
  const srv = await recordingServer();
  const cache = path.join(fx.work, "c-extra");
  const args = [
    ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "3", "--max-new-tokens", "8"],
    ...["--preference-pairs", "1", "--cache", cache, "--url", srv.url, "--server-model", "m"],
  ];
  try {
    const plain = await runCli(args);
    assert.equal(plain.code, 0, showRun(plain));
    assert.equal(srv.bodies.length, 3);
    for (const b of srv.bodies) assert.equal("reasoning_effort" in b, false);
    const before = keys(cache);
    assert.equal(before.size, 3);

    // Ollama's switch, and a server that refuses date_string
    const extra = { reasoning_effort: "none", chat_template_kwargs: { date_string: null } };
    const withExtra = await runCli([...args, "--extra-body", JSON.stringify(extra)]);
    assert.equal(withExtra.code, 0, showRun(withExtra));
    assert.equal(srv.bodies.length, 6, "asked again: an extra body keys the answers apart");
    for (const b of srv.bodies.slice(3)) {
      assert.equal(b.reasoning_effort, "none");
      assert.deepEqual(b.chat_template_kwargs, { enable_thinking: false });
      assert.equal(b.model, "m");
      assert.equal(Array.isArray(b.messages), true);
    }
    // the summary says what the servers were sent, as the bodies above show: the day left out, the switch sent
    assert.match(
      withExtra.stdout,
      /template day: [^\n]*; not sent to the servers \(--extra-body leaves chat_template_kwargs\.date_string out\)/,
    );
    assert.doesNotMatch(withExtra.stdout, /sent to the servers as chat_template_kwargs\.date_string/);
    assert.match(
      withExtra.stdout,
      /thinking switch: off [^\n]*, sent to the servers as chat_template_kwargs\.enable_thinking/,
    );
    assert.match(
      plain.stdout,
      /template day: [^\n]*, sent to the servers as chat_template_kwargs\.date_string/,
    );
    const after = keys(cache);
    for (const [id, k] of before) {
      assert.equal(after.get(id)!.length, 2);
      assert.equal(after.get(id)![0], k[0], "the answers without an extra body keep their keys");
      assert.notEqual(after.get(id)![1], k[0]);
    }

    // the same object written in another key order (and spacing): the same keys, nothing asked
    const reordered = '{ "chat_template_kwargs": {"date_string": null}, "reasoning_effort": "none" }';
    const again = await runCli([...args, "--extra-body", reordered]);
    assert.equal(again.code, 0, showRun(again));
    assert.equal(srv.bodies.length, 6);
    // another value is another key; and without one, the first answers are found again
    const other = await runCli([...args, "--extra-body", '{"reasoning_effort": "low"}']);
    assert.equal(other.code, 0, showRun(other));
    assert.equal(srv.bodies.length, 9);
    for (const b of srv.bodies.slice(6)) assert.equal(b.reasoning_effort, "low");
    // the extra body's own value of the switch: sent instead of ours, and the summary says so
    const theirs = await runCli([
      ...args,
      "--extra-body",
      '{"chat_template_kwargs": {"enable_thinking": true}}',
    ]);
    assert.equal(theirs.code, 0, showRun(theirs));
    assert.equal(srv.bodies.length, 12);
    for (const b of srv.bodies.slice(9))
      assert.equal((b.chat_template_kwargs as Record<string, unknown>).enable_thinking, true);
    assert.match(
      theirs.stdout,
      /thinking switch: off [^\n]*; the servers were sent --extra-body's chat_template_kwargs\.enable_thinking true instead/,
    );
    const plainAgain = await runCli(args);
    assert.equal(plainAgain.code, 0, showRun(plainAgain));
    assert.equal(srv.bodies.length, 12);
    // an empty object sends the bodies sent without one: the same answers, found again
    const empty = await runCli([...args, "--extra-body", "{}"]);
    assert.equal(empty.code, 0, showRun(empty));
    assert.equal(srv.bodies.length, 12);
  } finally {
    await srv.close();
  }
});

test("--extra-body refuses what is not a JSON object, and without a server, naming the flag", async () => {
  const dev = path.join(fx.work, "dev-bad.jsonl");
  writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 1).slice(0, 1));
  const base = ["eval", "-m", fx.model.dir, "-d", dev, "--url", "http://127.0.0.1:9", "--server-model", "m"];
  for (const [value, why] of [
    ["{reasoning_effort: none}", /Expected a JSON object.*\(.*JSON/],
    ["[1, 2]", /Expected a JSON object.*not an array/],
    ["null", /Expected a JSON object.*not null/],
    ['"none"', /Expected a JSON object.*not string/],
  ] as const) {
    const r = await runCli([...base, "--extra-body", value]);
    assert.equal(r.code, 2, showRun(r));
    assert.match(r.stderr, /--extra-body <json>/);
    assert.match(r.stderr, why);
    const j = await runCli([...base, "--extra-body", value, "--json"]);
    assert.equal(j.code, 2, showRun(j));
    const g = await runCli([
      "generate",
      "--backend",
      "http",
      "--url",
      "http://127.0.0.1:9",
      "--server-model",
      "m",
      "-p",
      "x",
      "--extra-body",
      value,
    ]);
    assert.equal(g.code, 2, showRun(g));
    assert.match(g.stderr, /--extra-body <json>/);
  }
  const local = await runCli(["eval", "-m", fx.model.dir, "-d", dev, "--extra-body", "{}"]);
  assert.equal(local.code, 2, showRun(local));
  assert.match(local.stderr, /--extra-body is sent to servers: it needs --url/);
  const builtin = await runCli(["generate", "-m", fx.model.dir, "-p", "x", "--extra-body", "{}"]);
  assert.equal(builtin.code, 2, showRun(builtin));
  assert.match(builtin.stderr, /--extra-body is sent to servers: it needs --backend http \(not builtin/);
});

test("generate --backend http --extra-body: the request carries it", async () => {
  const srv = await recordingServer();
  try {
    const r = await runCli([
      ...["generate", "--backend", "http", "--url", srv.url, "--server-model", "m", "-p", "hi"],
      ...["--extra-body", '{"reasoning_effort": "none", "chat_template_kwargs": null}'],
    ]);
    assert.equal(r.code, 0, showRun(r));
    assert.equal(srv.bodies.length, 1);
    assert.equal(srv.bodies[0]!.reasoning_effort, "none");
    assert.equal("chat_template_kwargs" in srv.bodies[0]!, false);
    assert.deepEqual(srv.bodies[0]!.messages, [{ role: "user", content: "hi" }]);
    assert.match(r.stdout, /print\(1\)/);
    // no --model: the server's template, and so whether it writes the server's day, is not known; said once
    const warned = /generate --backend http: the servers' chat template is not known here \(no --model/g;
    assert.equal((r.stderr.match(warned) ?? []).length, 1, r.stderr);
    const j = await runCli([
      ...["generate", "--backend", "http", "--url", srv.url, "--server-model", "m", "-p", "hi", "--json"],
    ]);
    assert.equal(j.code, 0, showRun(j));
    assert.match(
      (JSON.parse(j.stdout) as { caveats: string[] }).caveats[0]!,
      /^template day: .*not known here/,
    );
    // with the model folder (a template that writes no day) and date_string sent, nothing to say
    const k = await runCli([
      ...["generate", "--backend", "http", "--url", srv.url, "--server-model", "m", "-p", "hi", "--json"],
      ...["-m", fx.model.dir],
    ]);
    assert.equal(k.code, 0, showRun(k));
    assert.doesNotMatch(k.stderr, /template is not known|strftime_now/);
    assert.equal((JSON.parse(k.stdout) as { caveats?: string[] }).caveats, undefined);
  } finally {
    await srv.close();
  }
});

test("--extra-body's chat_template_kwargs go with chat requests only, as its help and the README say", async () => {
  const srv = await recordingServer();
  const extra = { top_k: 3, chat_template_kwargs: { enable_thinking: true } };
  const generate = (raw: boolean) =>
    runCli([
      ...["generate", "--backend", "http", "--url", srv.url, "--server-model", "m", "-p", "hi"],
      ...["--extra-body", JSON.stringify(extra), ...(raw ? ["--raw"] : [])],
    ]);
  try {
    for (const raw of [false, true]) {
      const r = await generate(raw);
      assert.equal(r.code, 0, showRun(r));
    }
  } finally {
    await srv.close();
  }
  // the chat request carries the whole object; the completion (--raw) its other fields, no chat_template_kwargs
  assert.deepEqual(srv.paths, ["/v1/chat/completions", "/v1/completions"]);
  const [chat, completion] = srv.bodies;
  assert.equal(chat!.top_k, 3);
  assert.deepEqual(chat!.chat_template_kwargs, { enable_thinking: true, date_string: "26 Jul 2024" });
  assert.equal(completion!.top_k, 3);
  assert.equal("chat_template_kwargs" in completion!, false);
  // what users read says the same: each --extra-body help and README's paragraph on it
  for (const cmd of ["eval", "generate"]) {
    const help = await runCli([cmd, "--help"]);
    const text = help.stdout.replace(/\s+/g, " ");
    assert.match(
      text,
      /--extra-body <json> .*chat_template_kwargs goes with chat requests only/,
      `${cmd} --help`,
    );
  }
  const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8").replace(/\s+/g, " ");
  const para =
    /`--extra-body <json>` \(also `generate --backend http`[^]*?left out\./.exec(readme)?.[0] ?? "";
  assert.match(para, /`chat_template_kwargs` goes with chat requests only/, para);
  assert.doesNotMatch(para, /into every request body/, para);
});
