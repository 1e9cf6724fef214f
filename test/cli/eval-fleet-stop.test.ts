/**
 * `goodvibe eval --url` against a fleet server that stops answering: Ctrl-C must stop the evaluation at once
 * (exit 130) keeping the answers already received, as it does for the built-in engine, instead of waiting for the
 * request's timeout (300 s) times its retries. The rerun asks the fleet only for the answers still missing.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { balancedPairs, makeCliFixture, runCli, showRun, startCli } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 2 });
const servers: http.Server[] = [];
after(() => {
  for (const s of servers) s.closeAllConnections();
  for (const s of servers) s.close();
  fx.cleanup();
});

/** An OpenAI-compatible chat server that answers the first `answered` requests and then never answers. */
async function fleetServer(answered: number): Promise<{ url: string; requests: () => number }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      // GET /v1/models: a server that lists no models (the name is not checked); not one of the answers counted
      if (req.method === "GET") return res.writeHead(404).end();
      if (++n > answered) return; // hangs: no answer, the connection stays open
      res.writeHead(200, { "content-type": "application/json" });
      const content = "```cpp\n#include <string>\nint main() { std::string s; return 0; }\n```";
      res.end(JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content } }] }));
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => n };
}

/** The generation cache's records (preference keeps its scored batches in a file of its own beside it). */
const cacheRecords = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((f) => f.startsWith("safety-"))
    .flatMap((f) => fs.readFileSync(path.join(dir, f), "utf8").split("\n"))
    .filter(Boolean);

test("eval --url: SIGINT while a fleet server hangs exits 130 at once, keeps the answers received; the rerun asks only for the rest", async () => {
  const dev = path.join(fx.work, "dev.jsonl");
  writeCorpusJsonl(dev, balancedPairs(fx.model.pairs, 1).slice(0, 3));
  const cache = path.join(fx.work, "cache");
  const args = (url: string) => [
    ...["eval", "-m", fx.model.dir, "-d", dev, "--prompts", "3", "--batch-size", "1"],
    ...["--preference-pairs", "2", "--cache", cache, "--url", url, "--server-model", "tiny"],
  ];
  const hung = await fleetServer(1);
  const run = startCli(args(hung.url));
  const limit = Date.now() + 120_000;
  while (hung.requests() < 2) {
    assert.ok(Date.now() < limit, "the second request never reached the server");
    await new Promise((r) => setTimeout(r, 50));
  }
  const t0 = Date.now();
  run.child.kill("SIGINT");
  const stopped = await Promise.race([run.done, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
  if (!stopped) run.child.kill("SIGKILL");
  const r = stopped ?? (await run.done);
  assert.ok(stopped, `still running ${(Date.now() - t0) / 1000} s after SIGINT:\n${showRun(r)}`);
  assert.equal(r.code, 130, showRun(r));
  assert.match(r.stderr, /generation stopped .*rerun the same command to resume/);
  assert.equal(cacheRecords(cache).length, 1, "the answer received before the stop is kept");

  const good = await fleetServer(Infinity);
  const rerun = await runCli([...args(good.url), "--json"]);
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.equal(good.requests(), 2, "the rerun asks only for the two answers still missing");
  assert.equal(cacheRecords(cache).length, 3);
});
