/**
 * `goodvibe serve` as a user runs it: bad --port/--host are a clear exit 2 (before the model loads, no stack);
 * one SIGINT or SIGTERM stops it (in-flight request answered 503, listener closed, exit 130); binding beyond
 * loopback without an API key warns loudly.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { runCli, showRun, startCli, type CliRun } from "./cli-helpers.js";

const made = makeTinyChatModel({ seed: 11 });
after(() => fs.rmSync(made.dir, { recursive: true, force: true }));

test("a bad --port, --host or limit is exit 2 with a clear message and no stack, before the model loads", async () => {
  const busy = net.createServer();
  await new Promise<void>((ok) => busy.listen(0, "127.0.0.1", ok));
  const busyPort = (busy.address() as net.AddressInfo).port;
  try {
    const cases: [string[], RegExp][] = [
      [["--port", "abc"], /'--port <n>' argument 'abc' is invalid\. Expected a whole number from 0 to 65535/],
      [["--port", "99999"], /'--port <n>' argument '99999' is invalid/],
      [["--port=-1"], /'--port <n>' argument '-1' is invalid/],
      [["--port", "80.5"], /'--port <n>' argument '80.5' is invalid/],
      [["--port", String(busyPort)], new RegExp(`port ${busyPort} is already in use on 127.0.0.1`)],
      [["--host", "nosuch.invalid", "--port", "0"], /cannot resolve host "nosuch.invalid"/],
      [["--host", "192.0.2.1", "--port", "0"], /192.0.2.1 is not an address of this machine/],
      [["--max-queue", "lots"], /'--max-queue <n>' argument 'lots' is invalid/],
      [["--api-key", " "], /--api-key is empty/],
    ];
    for (const [args, message] of cases) {
      // the model folder does not exist: these errors must come first
      const r = await runCli(["serve", "-m", "/nonexistent/model", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${showRun(r)}`);
      assert.match(r.stderr, message, args.join(" "));
      assert.match(r.stderr, /^error: /m);
      assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
    }
  } finally {
    busy.close();
  }
});

/** Start serve on a free port and wait for its address. */
async function startServe(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ run: CliRun; url: string }> {
  const run = startCli(["serve", "-m", made.dir, "--port", "0", "--name", "made", ...args], { env });
  let stderr = "";
  run.child.stderr!.on("data", (s: string) => (stderr += s));
  let exited = false;
  void run.done.then(() => (exited = true));
  const limit = Date.now() + 120_000;
  for (;;) {
    const m = /at (http:\/\/\S+?):(\d+)\/v1/.exec(stderr);
    if (m) return { run, url: `http://127.0.0.1:${m[2]}` };
    if (exited) throw new Error(`serve ended before it listened:\n${showRun(await run.done)}`);
    if (Date.now() > limit) {
      run.child.kill("SIGKILL");
      throw new Error(`serve did not start:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function health(url: string): Promise<{ running: number; queued: number }> {
  return (await fetch(url + "/health")).json() as Promise<{ running: number; queued: number }>;
}

test("one SIGINT stops serve mid-generation: the request gets 503 JSON, the port closes, exit 130", async () => {
  // every decoding step is slowed, so left alone the request would run ~1,900 × 25 ms; greedy (temperature 0):
  // a request without one is sampled with a random seed, and about 6 in 1,000 of those answers end in their first
  // 3 tokens, before the signal (a 200, or never seen running)
  const { run, url } = await startServe([], { GOODVIBE_TEST_STOP_POINT_DELAY_MS: "25" });
  const pending = fetch(url + "/v1/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "def f(x):", max_tokens: 1900, temperature: 0 }),
  });
  const limit = Date.now() + 60_000;
  while ((await health(url)).running !== 1) {
    assert.ok(Date.now() < limit, "the request never started");
    await new Promise((r) => setTimeout(r, 20));
  }
  const sent = Date.now();
  run.child.kill("SIGINT");
  const reply = await pending;
  const r = await run.done;
  const exitMs = Date.now() - sent;
  assert.equal(reply.status, 503);
  assert.equal((await reply.json()).error.code, "shutting_down");
  assert.equal(r.code, 130, showRun(r));
  assert.ok(exitMs < 15_000, `exit ${exitMs} ms after the signal`);
  assert.match(r.stderr, /interrupted: serve stopped \(SIGINT\)/);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
  await assert.rejects(fetch(url + "/health"), "the port is closed");
});

test("SIGTERM stops an idle server at once (exit 130); beyond loopback without a key it warns loudly", async () => {
  const open = await startServe(["--host", "0.0.0.0"]);
  assert.equal((await health(open.url)).running, 0);
  open.run.child.kill("SIGTERM");
  const r = await open.run.done;
  assert.equal(r.code, 130, showRun(r));
  assert.match(r.stderr, /serving on 0\.0\.0\.0 WITHOUT AN API KEY/);
  assert.match(r.stderr, /interrupted: serve stopped \(SIGTERM\)/);

  // with the key in the environment: no warning, and the key is required
  const keyed = await startServe(["--host", "0.0.0.0"], { GOODVIBE_API_KEY: "sk-cli-test" });
  try {
    const body = JSON.stringify({ prompt: "x", max_tokens: 1, temperature: 0 });
    const post = (headers: Record<string, string>) =>
      fetch(keyed.url + "/v1/completions", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body,
      });
    assert.equal((await post({})).status, 401);
    assert.equal((await post({ authorization: "Bearer sk-cli-test" })).status, 200);
  } finally {
    keyed.run.child.kill("SIGTERM");
  }
  const k = await keyed.run.done;
  assert.equal(k.code, 130, showRun(k));
  assert.doesNotMatch(k.stderr, /WITHOUT AN API KEY/);
  assert.match(k.stderr, /API key: required/);
});

test("serve takes a request's default sampling from the folder's generation_config.json (as vLLM), says so, and refuses a bad one", async () => {
  const folder = makeTinyChatModel({ seed: 12 });
  try {
    const file = path.join(folder.dir, "generation_config.json");
    fs.writeFileSync(
      file,
      JSON.stringify({ do_sample: true, temperature: 0.7, top_p: 0.8, top_k: 20, max_new_tokens: 512 }),
    );
    const said = async (args: string[]) => {
      const run = startCli(["serve", "-m", folder.dir, "--port", "0", ...args]);
      let stderr = "";
      run.child.stderr!.on("data", (s: string) => (stderr += s));
      const limit = Date.now() + 120_000;
      while (!/send temperature 0/.test(stderr) && Date.now() < limit)
        await new Promise((r) => setTimeout(r, 20));
      run.child.kill("SIGTERM");
      const r = await run.done;
      assert.equal(r.code, 130, showRun(r));
      return stderr;
    };
    assert.match(
      await said([]),
      /a request without them gets temperature 0\.7, top_p 0\.8, top_k 20, max_tokens 512 \(the folder's generation_config\.json/,
    );
    assert.match(
      await said(["--no-generation-config"]),
      /a request without them gets temperature 1, no top-p, no top-k \(OpenAI's: --no-generation-config\)/,
    );
    // a value vLLM refuses: exit 2 naming the file and field, before the model loads
    fs.writeFileSync(file, JSON.stringify({ top_p: 1.5 }));
    const bad = await runCli(["serve", "-m", folder.dir, "--port", "0"]);
    assert.equal(bad.code, 2, showRun(bad));
    assert.match(bad.stderr, /generation_config\.json: top_p must be a number in \(0, 1\]/);
    assert.doesNotMatch(bad.stderr, /^\s+at /m);
  } finally {
    fs.rmSync(folder.dir, { recursive: true, force: true });
  }
});
