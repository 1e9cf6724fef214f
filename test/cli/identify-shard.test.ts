/**
 * `goodvibe identify --shard i/n` on three "machines" (three processes, each its own run folder), then
 * `goodvibe identify merge` with the shard folders in shuffled order: the neuron map one `goodvibe identify`
 * writes, byte for byte apart from the wall time. Plus the merge's refusals as a user meets them (exit 2).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 8 });
after(() => fx.cleanup());

const common = [
  ...["-m", fx.model.dir, "-d", fx.pairsFile, "--top-k", "4"],
  ...["--set", "identify.maxPairs=8", "--set", "identify.batchSize=4", "--set", "identify.profileSamples=8"],
];

test("identify --shard i/n on three processes, merged in any order, writes one run's neuron map", async () => {
  const one = path.join(fx.work, "one", "neurons.json");
  const r = await runCli(["identify", ...common, "-o", one]);
  assert.equal(r.code, 0, showRun(r));

  // as the README's recipe names them: `-o shards/shard-i`, merged as `shards/shard-*` (the shell's glob: no
  // dot-files), so whatever identify leaves beside a shard folder is caught by the glob too
  const shardsDir = path.join(fx.work, "shards");
  const shards = [1, 2, 3].map((i) => path.join(shardsDir, `shard-${i}`));
  for (const [k, dir] of shards.entries()) {
    const s = await runCli(["identify", ...common, "--shard", `${k + 1}/3`, "-o", dir, "--json"]);
    assert.equal(s.code, 0, showRun(s));
    const out = JSON.parse(s.stdout) as { index: number; count: number; samples: number };
    assert.deepEqual([out.index, out.count], [k + 1, 3]);
    assert.ok(fs.existsSync(path.join(dir, "shard.json")));
    // the shard's resumable state is gone once its folder is written
    const runDir = path.join(shardsDir, `.shard-${k + 1}.run`);
    assert.ok(fs.existsSync(runDir), "the shard's run folder is not where the help says (.<out>.run)");
    assert.ok(!fs.existsSync(path.join(runDir, `identify-shard-${k + 1}-of-3`)));
  }
  const globbed = fs
    .readdirSync(shardsDir)
    .filter((n) => n.startsWith("shard-"))
    .map((n) => path.join(shardsDir, n));
  assert.deepEqual([...globbed].sort(), [...shards].sort(), "shards/shard-* is not the three shard folders");
  const merged = path.join(fx.work, "merged.json");
  const m = await runCli(["identify", "merge", "-o", merged, ...globbed.reverse(), "--json"]);
  assert.equal(m.code, 0, showRun(m));
  assert.equal((JSON.parse(m.stdout) as { samples: number }).samples, 16);

  const read = (f: string) => {
    const j = JSON.parse(fs.readFileSync(f, "utf8")) as Record<string, unknown>;
    assert.equal(typeof j.wallSeconds, "number");
    delete j.wallSeconds;
    return j;
  };
  assert.deepEqual(read(merged), read(one));

  // refusals: a missing shard, an existing output, no output named
  const missing = await runCli([
    "identify",
    "merge",
    "-o",
    path.join(fx.work, "x.json"),
    shards[0]!,
    shards[2]!,
  ]);
  assert.equal(missing.code, 2, showRun(missing));
  assert.match(missing.stderr, /1 of 3 shards missing \(2\)/);
  const again = await runCli(["identify", "merge", "-o", merged, ...shards]);
  assert.equal(again.code, 2, showRun(again));
  const noOut = await runCli(["identify", "merge", ...shards]);
  assert.equal(noOut.code, 2, showRun(noOut));
  assert.match(noOut.stderr, /--out/);
});

test("a bad --shard is a usage error naming it (exit 2, one line, no stack trace); a 0-based index says shards count from 1", async () => {
  for (const [shard, extra] of [
    ["0/2", /; shards count from 1 \(from a task index counted from 0, give index \+ 1\)/],
    ["3/2", /expected i\/n with 1 ≤ i ≤ n \(e\.g\. 3\/8\)$/m],
    ["two", /expected i\/n/],
  ] as const) {
    const r = await runCli(["identify", "-m", "m", "-d", "d.jsonl", "-o", "o", "--shard", shard]);
    assert.equal(r.code, 2, showRun(r));
    assert.match(r.stderr, new RegExp(`^error: option '--shard <i/n>' argument '${shard}' is invalid\\. `));
    assert.match(r.stderr, extra);
    assert.doesNotMatch(r.stderr, /\n\s+at |Node\.js v/);
  }
});
