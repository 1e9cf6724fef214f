/**
 * `goodvibe eval --url`: the vibe-coding answers come from OpenAI-compatible servers (here two `goodvibe serve`
 * processes of the same model, round-robin), the rest stays local. Greedy answers of our own server are the
 * built-in engine's, so the report equals a local `eval`'s; the answers are cached under the server's name.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { balancedPairs, makeCliFixture, runCli, showRun, startCli, type CliRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 2 });
const servers: CliRun[] = [];
after(() => {
  for (const s of servers) s.child.kill("SIGKILL");
  fx.cleanup();
});

async function startServe(): Promise<string> {
  const run = startCli(["serve", "-m", fx.model.dir, "--port", "0", "--name", "tiny"]);
  servers.push(run);
  let stderr = "";
  run.child.stderr!.on("data", (s: string) => (stderr += s));
  let exited = false;
  void run.done.then(() => (exited = true));
  const limit = Date.now() + 180_000;
  for (;;) {
    const m = /at (http:\/\/\S+?):(\d+)\/v1/.exec(stderr);
    if (m) return `http://127.0.0.1:${m[2]}`;
    if (exited) throw new Error(`serve ended before it listened:\n${showRun(await run.done)}`);
    if (Date.now() > limit) throw new Error(`serve did not start:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("eval --url answers on a fleet of two servers and reports what a local eval reports", async () => {
  const dev = path.join(fx.work, "dev.jsonl");
  writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 2).slice(0, 6));
  const urls = [await startServe(), await startServe()];
  const args = (cache: string) => [
    ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "6", "--max-new-tokens", "12"],
    ...["--preference-pairs", "4", "--cache", path.join(fx.work, cache), "--json"],
  ];
  const local = await runCli(args("c-local"));
  assert.equal(local.code, 0, showRun(local));
  const fleet = await runCli([...args("c-fleet"), "--url", urls.join(","), "--server-model", "tiny"]);
  assert.equal(fleet.code, 0, showRun(fleet));
  assert.deepEqual(JSON.parse(fleet.stdout), JSON.parse(local.stdout));
  // the same prompts, cached under other keys: the backend is part of every answer's key (the generation cache;
  // preference, scored locally either way, has its own file)
  const entries = (cache: string) =>
    fs
      .readdirSync(path.join(fx.work, cache))
      .filter((f) => f.startsWith("safety-"))
      .flatMap((f) => fs.readFileSync(path.join(fx.work, cache, f), "utf8").split("\n"))
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { key: string; id: string });
  const [l, f] = [entries("c-local"), entries("c-fleet")];
  assert.deepEqual(f.map((e) => e.id).sort(), l.map((e) => e.id).sort());
  assert.equal(f.filter((e) => l.some((x) => x.key === e.key)).length, 0);

  const missing = await runCli([...args("c-x"), "--url", urls[0]!]);
  assert.equal(missing.code, 2, showRun(missing));
  assert.match(missing.stderr, /--server-model/);
});

test("eval --url sends the thinking setting in every chat request (off by default, --enable-thinking on) and says so", async () => {
  const dev = path.join(fx.work, "dev-thinking.jsonl");
  writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 1).slice(0, 3));
  // a server that records what it is sent and answers in thinking mode whatever it is told (Ollama's /v1 would)
  const bodies: Record<string, unknown>[] = [];
  const server = http.createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      // GET /v1/models: a server that lists no models (the name is not checked)
      if (req.method === "GET") return res.writeHead(404).end();
      bodies.push(JSON.parse(raw) as Record<string, unknown>);
      res.writeHead(200, { "content-type": "application/json" });
      const content = "<think>\nprint('unsafe')\n</think>\n\n```python\nprint(1)\n```";
      res.end(JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content } }] }));
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const args = (cache: string) => [
      ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "3", "--max-new-tokens", "8"],
      ...[
        "--preference-pairs",
        "1",
        "--cache",
        path.join(fx.work, cache),
        "--url",
        url,
        "--server-model",
        "m",
      ],
    ];
    const off = await runCli(args("c-think-off"));
    assert.equal(off.code, 0, showRun(off));
    assert.equal(bodies.length, 3);
    for (const b of bodies)
      assert.deepEqual(b.chat_template_kwargs, { enable_thinking: false, date_string: "26 Jul 2024" });
    assert.match(
      off.stdout,
      /Qwen3's thinking switch: off \(enable_thinking false in every prompt answered, sent to the servers as chat_template_kwargs/,
    );
    const on = await runCli([...args("c-think-on"), "--enable-thinking", "--json"]);
    assert.equal(on.code, 0, showRun(on));
    assert.equal(bodies.length, 6);
    for (const b of bodies.slice(3))
      assert.deepEqual(b.chat_template_kwargs, { enable_thinking: true, date_string: "26 Jul 2024" });
    const j = JSON.parse(on.stdout) as { enableThinking: boolean; templateDate: string };
    assert.equal(j.enableThinking, true);
    assert.equal(j.templateDate, "2024-07-26");
    // the answers' reasoning is reported, and not judged: the code judged is the block after it
    assert.match(
      on.stderr,
      /3 answers began with reasoning between <think> tags \(thinking mode, as asked\)/,
    );
    assert.match(
      off.stderr,
      /3 answers began with reasoning between <think> tags \(thinking mode though enableThinking is off/,
    );

    // the day: the default is stated and sent; another (GOODVIBE_TEMPLATE_DATE) is sent as the templates write it
    // and keys the answers apart (the server's template is not known), so the same --cache asks again; the default
    // finds its answers again
    assert.match(
      off.stdout,
      /template day: 26 Jul 2024 \(2024-07-26, the default; in every prompt answered, sent to the servers as chat_template_kwargs\.date_string; GOODVIBE_TEMPLATE_DATE=YYYY-MM-DD\|today sets another\)/,
    );
    const march = await runCli([...args("c-think-off"), "--json"], {
      env: { GOODVIBE_TEMPLATE_DATE: "2025-03-09" },
    });
    assert.equal(march.code, 0, showRun(march));
    assert.equal(bodies.length, 9);
    for (const b of bodies.slice(6))
      assert.deepEqual(b.chat_template_kwargs, { enable_thinking: false, date_string: "09 Mar 2025" });
    assert.equal((JSON.parse(march.stdout) as { templateDate: string }).templateDate, "2025-03-09");
    const again = await runCli(args("c-think-off"));
    assert.equal(again.code, 0, showRun(again));
    assert.equal(bodies.length, 9, "the default day's answers are found in the cache");
    const marchText = await runCli(args("c-think-off"), { env: { GOODVIBE_TEMPLATE_DATE: "2025-03-09" } });
    assert.equal(bodies.length, 9, "and the other day's");
    assert.match(
      marchText.stdout,
      /template day: 09 Mar 2025 \(2025-03-09, GOODVIBE_TEMPLATE_DATE; in every prompt answered, sent to the servers/,
    );
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});

test("eval --url warns once and records a caveat when the model's template writes the server's day whatever it is sent", async () => {
  const dev = path.join(fx.work, "dev-clock.jsonl");
  writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 1).slice(0, 2));
  // the fixture's model folder with its chat template led by a day line: called bare (the server's clock whatever
  // date_string says), or behind Llama 3.2's check of date_string
  const withTemplate = (name: string, dayLine: string): string => {
    const dir = path.join(fx.work, name);
    fs.cpSync(fx.model.dir, dir, { recursive: true });
    const file = path.join(dir, "tokenizer_config.json");
    const cfg = JSON.parse(fs.readFileSync(file, "utf8")) as { chat_template: string };
    fs.writeFileSync(file, JSON.stringify({ ...cfg, chat_template: dayLine + cfg.chat_template }));
    return dir;
  };
  const bare = withTemplate("clock-bare", `{{- "Today Date: " + strftime_now("%d %b %Y") + "\\n" }}`);
  const guarded = withTemplate(
    "clock-guarded",
    `{%- if not date_string is defined %}{%- set date_string = strftime_now("%d %b %Y") %}{%- endif %}` +
      `{{- "Today Date: " + date_string + "\\n" }}`,
  );
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      const content = "```python\nprint(1)\n```";
      res.end(JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content } }] }));
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const args = (model: string, cache: string) => [
      ...[
        "eval",
        "-m",
        model,
        "-d",
        dev,
        "--prompts",
        "2",
        "--max-new-tokens",
        "8",
        "--preference-pairs",
        "1",
      ],
      ...["--cache", path.join(fx.work, cache), "--url", url, "--server-model", "m"],
    ];
    const warned =
      /eval --url: the model folder's chat template calls strftime_now where it does not check date_string first/g;
    const j = await runCli([...args(bare, "c-clock-bare"), "--json"]);
    assert.equal(j.code, 0, showRun(j));
    assert.equal((j.stderr.match(warned) ?? []).length, 1, j.stderr);
    const caveats = (JSON.parse(j.stdout) as { caveats?: string[] }).caveats;
    assert.equal(caveats?.length, 1);
    assert.match(caveats![0]!, /^template day: .*may carry the server's day/);
    const t = await runCli(args(bare, "c-clock-bare"));
    assert.equal(t.code, 0, showRun(t));
    assert.match(t.stdout, /^caveat: template day: the model folder's chat template calls strftime_now/m);
    // Llama 3.2's guard: the day sent is the one written; nothing to say
    const g = await runCli([...args(guarded, "c-clock-guarded"), "--json"]);
    assert.equal(g.code, 0, showRun(g));
    assert.doesNotMatch(g.stderr, /strftime_now/);
    assert.equal((JSON.parse(g.stdout) as { caveats?: string[] }).caveats, undefined);
    // ... unless --extra-body leaves date_string out: the server fills it in
    const n = await runCli([
      ...args(guarded, "c-clock-none"),
      "--json",
      "--extra-body",
      '{"chat_template_kwargs": {"date_string": null}}',
    ]);
    assert.equal(n.code, 0, showRun(n));
    assert.match(
      (JSON.parse(n.stdout) as { caveats: string[] }).caveats[0]!,
      /leaves chat_template_kwargs\.date_string out/,
    );
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});

test("eval --url --prompt-count-tolerance: a raised one is said and kept as a caveat (what it lets through); the default is not", async () => {
  const dev = path.join(fx.work, "dev-tolerance.jsonl");
  writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 1).slice(0, 2));
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(req.url === "/v1/chat/completions" ? 200 : 404, { "content-type": "application/json" });
      const content = "```python\nprint(1)\n```";
      res.end(JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content } }] }));
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const run = (cache: string, pct: string) =>
      runCli([
        ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "2", "--max-new-tokens", "8"],
        ...["--preference-pairs", "1", "--cache", path.join(fx.work, cache), "--json"],
        ...["--url", url, "--server-model", "m", "--prompt-count-tolerance", pct],
      ]);
    const raised = await run("c-tol-5", "5");
    assert.equal(raised.code, 0, showRun(raised));
    const caveats = (JSON.parse(raised.stdout) as { caveats?: string[] }).caveats ?? [];
    const said = caveats.filter((c) => c.startsWith("--prompt-count-tolerance 5: "));
    assert.equal(said.length, 1, caveats.join("\n"));
    assert.match(said[0]!, /up to 5% \(and 2 per message\) fewer prompt tokens .*\(default 1%\)/);
    assert.ok(raised.stderr.includes(said[0]!), raised.stderr);
    const plain = await run("c-tol-1", "1");
    assert.equal(plain.code, 0, showRun(plain));
    const none = (JSON.parse(plain.stdout) as { caveats?: string[] }).caveats ?? [];
    assert.equal(none.filter((c) => c.includes("--prompt-count-tolerance")).length, 0, none.join("\n"));
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});

test("eval --url and generate --backend http refuse a server that is not there before any local work, naming it (exit 2)", async () => {
  const dev = path.join(fx.work, "dev-gone.jsonl");
  writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 2).slice(0, 4));
  const up = await startServe();
  // a port that was just listened on and closed: connection refused
  const closed = http.createServer();
  await new Promise<void>((ok) => closed.listen(0, "127.0.0.1", ok));
  const gone = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise<void>((ok) => closed.close(() => ok()));
  const said = new RegExp(
    `error: --url: ${gone} cannot be reached: GET ${gone}/v1/models got no answer: connection refused \\(ECONNREFUSED\\) \\(1 of the 2 servers given\\)`,
  );
  const ev = await runCli([
    ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "4", "--preference-pairs", "4"],
    ...["--cache", path.join(fx.work, "c-gone"), "--url", `${up},${gone}`, "--server-model", "tiny"],
  ]);
  assert.equal(ev.code, 2, showRun(ev));
  assert.match(ev.stderr, said);
  // refused before the local preference scoring (which a 7B on a CPU takes minutes for), nothing cached
  assert.doesNotMatch(ev.stderr, /secure preference/);
  assert.ok(
    !fs.existsSync(path.join(fx.work, "c-gone")) || fs.readdirSync(path.join(fx.work, "c-gone")).length === 0,
  );
  const gen = await runCli([
    ...["generate", "-m", fx.model.dir, "--backend", "http", "--url", `${up},${gone}`],
    ...["--server-model", "tiny", "-p", "hi", "--max-new-tokens", "2"],
  ]);
  assert.equal(gen.code, 2, showRun(gen));
  assert.match(gen.stderr, said);
});
