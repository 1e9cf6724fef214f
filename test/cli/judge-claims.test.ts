/**
 * `goodvibe judge train` into one output twice at once: the second is refused at once (exit 2), naming the host and
 * pid of the training that holds the run folder (.<out>.run), instead of training again beside it, both saving
 * checkpoints into one folder, and clashing at the end on the output the first wrote; the first writes the judge a
 * training alone writes. A training killed while it held the folder left its claim there: the next one takes it over.
 * And a --dev-fraction that holds out nothing is refused before training, not after the judge is written.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { hashTree, makeCliFixture, runCli, showRun, startCli, type CliResult } from "./cli-helpers.js";

// 24 pairs: 21 to train on (one epoch, batch 1: about a second of training), 3 held out for the reliability report
const fx = makeCliFixture({ perLanguage: 6 });
after(() => fx.cleanup());

const args = (out: string) => [
  ...[
    "judge",
    "train",
    "-m",
    fx.model.dir,
    "-d",
    fx.pairsFile,
    "-o",
    out,
    "--method",
    "lora",
    "--epochs",
    "2",
  ],
  ...["--set", "batchSize=1", "--set", "gradAccum=1"],
];
const runDirOf = (out: string) => path.join(path.dirname(out), `.${path.basename(out)}.run`);

/** The judge folder's files; its record names the base model and settings, which all runs here share. */
const judgeFiles = (dir: string) => hashTree(dir);

test("judge train twice at once into one -o: the second is refused at once (exit 2, host and pid of the first); the first writes a lone training's judge; a dead training's claim is taken over", async () => {
  // the lone training finds the claim of a training killed while it held its run folder: it takes it over
  const alone = path.join(fx.work, "alone");
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
    encoding: "utf8",
  });
  fs.mkdirSync(runDirOf(alone), { recursive: true });
  const claim = {
    host: os.hostname(),
    pid: Number(dead.stdout),
    token: "0123456789abcdef",
    since: "2026-01-01",
  };
  fs.writeFileSync(path.join(runDirOf(alone), ".claim.json"), JSON.stringify(claim));
  const a = await runCli(args(alone));
  assert.equal(a.code, 0, showRun(a));
  assert.ok(
    !fs.existsSync(path.join(runDirOf(alone), ".claim.json")),
    "the dead training's claim is still there",
  );

  const out = path.join(fx.work, "judge");
  const first = startCli(args(out));
  let ended: CliResult | null = null;
  void first.done.then((r) => (ended = r));
  const runDir = runDirOf(out);
  const limit = Date.now() + 120_000;
  // holding its run folder: its claim (or, without claims, its first checkpoint) is there
  while (!(
    fs.existsSync(runDir) && fs.readdirSync(runDir).some((n) => n === ".claim.json" || n === "checkpoint")
  )) {
    if (ended) assert.fail(`the first training ended before it held ${runDir}:\n${showRun(ended)}`);
    assert.ok(Date.now() < limit, `the first training never held ${runDir}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  first.child.kill("SIGSTOP");
  let second: CliResult;
  try {
    second = await runCli(args(out));
  } finally {
    first.child.kill("SIGCONT");
  }
  const r1 = await first.done;
  assert.equal(second.code, 2, showRun(second));
  const m = /is in use by another goodvibe run \((\S+) pid (\d+) since /.exec(second.stderr);
  assert.ok(m, `the refusal names no holder:\n${second.stderr}`);
  assert.equal(m[1], os.hostname());
  assert.equal(Number(m[2]), first.child.pid);
  assert.doesNotMatch(second.stderr, /held-out reliability/);
  assert.equal(r1.code, 0, showRun(r1));
  assert.deepEqual(judgeFiles(out), judgeFiles(alone));
  assert.ok(!fs.existsSync(path.join(runDir, ".claim.json")), "the claim outlived the training");
});

test("judge train whose --dev-fraction holds out no pair is refused before it trains (exit 2), writing nothing", async () => {
  // 4 pairs a language: 10% of 4 rounds to none held out in every language
  const few = path.join(fx.work, "few.jsonl");
  const lines = fs.readFileSync(fx.pairsFile, "utf8").split("\n").filter(Boolean);
  const perLang = new Map<string, number>();
  const kept = lines.filter((l) => {
    const lang = (JSON.parse(l) as { lang: string }).lang;
    perLang.set(lang, (perLang.get(lang) ?? 0) + 1);
    return perLang.get(lang)! <= 4;
  });
  assert.equal(kept.length, 16);
  fs.writeFileSync(few, kept.join("\n") + "\n");
  const out = path.join(fx.work, "few-judge");
  const r = await runCli(["judge", "train", "-m", fx.model.dir, "-d", few, "-o", out]);
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, /--dev-fraction 0\.1 holds out no pair of .*few\.jsonl \(16 pairs/);
  assert.ok(!fs.existsSync(out), "a judge was written");
  assert.ok(!fs.existsSync(runDirOf(out)), "a run folder was made");
});
