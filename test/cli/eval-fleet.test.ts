/**
 * `goodvibe eval --url`: the vibe-coding answers come from OpenAI-compatible servers (here two `goodvibe serve`
 * processes of the same model, round-robin), the rest stays local. Greedy answers of our own server are the
 * built-in engine's, so the report equals a local `eval`'s; the answers are cached under the server's name.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
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
