/**
 * Outputs never destroy what the tool did not make, as a careless user would find out: every command that writes
 * refuses an existing output (exit 2, before any work) unless --overwrite, which moves it aside and never deletes
 * it; an output is never an input or inside one, however the paths are spelled (symlinks, `..`, bind mounts, a
 * file inside the input folder); a hardened folder is published whole or not at all, and stale temporaries of
 * killed runs are cleaned (never a live process's); cached stages are keyed by every setting that shapes them.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { readSafetensors } from "../../src/io/safetensors.js";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import {
  CLI,
  balancedPairs,
  findUnder,
  hashOutput,
  hashTree,
  killWhenExists,
  makeCliFixture,
  runCli,
  showRun,
} from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 4 });
after(() => fx.cleanup());

const TINY = ["--epochs", "1", "--set", "train.maxPairs=8", "--set", "identify.maxPairs=8"];
const harden = (out: string, extra: string[] = []) => [
  "harden",
  ...["-m", fx.model.dir, "-d", fx.pairsFile, "-o", out, "--top-k", "4", ...TINY, ...extra],
];

/** A folder of someone's work: it must come through every refusal and --overwrite intact. */
function usersFolder(name: string): { dir: string; hash: () => Map<string, string> } {
  const dir = path.join(fx.work, name);
  fs.mkdirSync(path.join(dir, "data"), { recursive: true });
  fs.writeFileSync(path.join(dir, "thesis.txt"), `chapter 1 of ${name}\n`);
  fs.writeFileSync(path.join(dir, "data", "results.csv"), "a,b\n1,2\n");
  const before = hashTree(dir);
  return { dir, hash: () => before };
}

const modelBefore = hashTree(fx.model.dir);
const assertModelUntouched = () =>
  assert.deepEqual(hashTree(fx.model.dir), modelBefore, "the input model folder changed");

test("harden -o on a non-empty folder: refused at once (exit 2, nothing written); --overwrite moves it aside, never deletes it", async () => {
  const u = usersFolder("thesis");
  const r = await runCli(harden(u.dir));
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, /--out .*thesis: exists and is not empty.*--overwrite/);
  assert.doesNotMatch(r.stderr, /identification/, "work started before the refusal");
  assert.deepEqual(hashTree(u.dir), u.hash());
  assert.ok(!fs.existsSync(path.join(fx.work, ".thesis.run")), "a run folder was created");

  const o = await runCli(harden(u.dir, ["--overwrite"]));
  assert.equal(o.code, 0, showRun(o));
  const aside = fs.readdirSync(fx.work).filter((n) => n.startsWith("thesis.old-"));
  assert.equal(aside.length, 1, `moved-aside folders: ${aside}`);
  assert.deepEqual(hashTree(path.join(fx.work, aside[0]!)), u.hash(), "the user's files changed");
  assert.match(o.stderr, /moved aside/);
  assert.ok(fs.existsSync(path.join(u.dir, "model.safetensors")));
  assertModelUntouched();
});

test("harden -m LINK -o MODEL (LINK a symlink to MODEL), -o inside the model, -o around it: refused even with --overwrite", async () => {
  const link = path.join(fx.work, "model-link");
  fs.symlinkSync(fx.model.dir, link);
  const dotted = path.join(fx.work, "..", path.basename(fx.work), "model-link", "..", "model-link");
  const cases: [string, string, RegExp][] = [
    [link, fx.model.dir, /the output is the input --model/],
    [fx.model.dir, link, /the output is the input --model/],
    [dotted, path.join(fx.model.dir, "hardened"), /lies inside the input --model/],
    [link, path.dirname(fx.model.dir), /contains the input --model/],
    [fx.model.dir, fx.pairsFile, /the output is the input --data/],
  ];
  for (const [m, out, msg] of cases) {
    const r = await runCli(["harden", ...["-m", m, "-d", fx.pairsFile, "-o", out, "--overwrite", ...TINY]]);
    assert.equal(r.code, 2, `-m ${m} -o ${out}\n${showRun(r)}`);
    assert.match(r.stderr, msg);
  }
  assertModelUntouched();
});

test("every writing command refuses an existing output unless --overwrite, naming the flag; an input is never an output", async () => {
  const harden1 = path.join(fx.work, "h1");
  const h = await runCli(harden(harden1));
  assert.equal(h.code, 0, showRun(h));
  const delta = path.join(harden1, "goodvibe-delta.safetensors");
  const neurons = path.join(harden1, "neurons.json");
  const taken = usersFolder("taken");
  const takenFile = path.join(fx.work, "taken.json");
  fs.writeFileSync(takenFile, "{}");
  const results = path.join(fx.work, "results.json");
  fs.writeFileSync(results, "{}");
  const spec = path.join(fx.work, "exp.yaml");
  fs.writeFileSync(
    spec,
    YAML.stringify({
      name: "x",
      models: [{ name: "m", path: fx.model.dir }],
      data: { train: fx.pairsFile, dev: fx.pairsFile },
      // within the fixture's range (its k_proj has 32 rows): the default 50 is refused before the output is looked at
      defaults: { identify: { topK: 4 } },
    }),
  );
  const m = fx.model.dir;
  const d = fx.pairsFile;
  const cases: [string, string[]][] = [
    ["train", ["train", "-m", m, "-d", d, "--method", "lora", "-o", taken.dir, ...TINY]],
    ["identify", ["identify", "-m", m, "-d", d, "-o", takenFile]],
    ["cluster", ["cluster", "-n", neurons, "-o", takenFile]],
    ["fold", ["fold", "-m", m, "--delta", delta, "-o", taken.dir]],
    ["export gguf", ["export", "-m", m, "-o", takenFile]],
    ["export safetensors", ["export", "-m", m, "--format", "safetensors", "-o", taken.dir]],
    ["judge train", ["judge", "train", "-m", m, "-d", d, "-o", taken.dir]],
    ["organism build", ["organism", "build", "-o", taken.dir]],
    ["demo", ["demo", "-o", taken.dir]],
    ["experiment run", ["experiment", "run", spec, "-o", taken.dir]],
    ["eval --cache", ["eval", "-m", m, "-d", d, "--cache", taken.dir]],
    ["report", ["report", results, "-o", taken.dir]],
    // outputs that are, or lie inside, an input
    ["export into the model", ["export", "-m", m, "-o", path.join(m, "model.safetensors"), "--overwrite"]],
    ["export beside the weights", ["export", "-m", m, "-o", path.join(m, "x.gguf")]],
    ["fold into the model", ["fold", "-m", m, "--delta", delta, "-o", path.join(m, "sub"), "--overwrite"]],
    // --delta given as the harden output folder: that folder is an input as a whole
    [
      "adapter into the delta's folder",
      ["export", "--adapter", "peft", "--delta", harden1, "-m", m, "-o", path.join(harden1, "peft")],
    ],
    ["cluster over its input", ["cluster", "-n", neurons, "-o", neurons, "--overwrite"]],
    ["identify over the data", ["identify", "-m", m, "-d", d, "-o", d, "--overwrite"]],
    ["judge into the model", ["judge", "train", "-m", m, "-d", d, "-o", m, "--overwrite"]],
    ["eval cache in the model", ["eval", "-m", m, "-d", d, "--cache", m]],
    ["report over its results", ["report", results, "-o", fx.work, "--overwrite"]],
    ["demo around the organism", ["demo", "--organism", m, "-o", path.dirname(m), "--overwrite"]],
  ];
  const deltaBefore = hashTree(harden1);
  for (const [name, args] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${name}\n${showRun(r)}`);
    assert.match(r.stderr, /error: .*(exists|is the input|inside the input|contains the input)/, name);
  }
  assert.deepEqual(hashTree(taken.dir), taken.hash(), "a refused command changed the existing output");
  assert.equal(fs.readFileSync(takenFile, "utf8"), "{}");
  assert.deepEqual(hashTree(harden1), deltaBefore, "an input was changed");
  assertModelUntouched();

  // with --overwrite: the old output is renamed beside the new one, byte for byte
  const o = await runCli(["export", "-m", m, "-o", takenFile, "--overwrite", "--outtype", "f32"]);
  assert.equal(o.code, 0, showRun(o));
  const aside = fs.readdirSync(fx.work).filter((n) => n.startsWith("taken.json.old-"));
  assert.equal(aside.length, 1);
  assert.equal(fs.readFileSync(path.join(fx.work, aside[0]!), "utf8"), "{}");
  assert.equal(fs.readFileSync(takenFile).subarray(0, 4).toString(), "GGUF");
});

test("a bind mount of the model folder is seen through: -o inside the model by another path is refused", (t) => {
  const alias = path.join(fx.work, "bind-alias");
  fs.mkdirSync(alias);
  const probe = spawnSync("unshare", ["--user", "--map-root-user", "--mount", "true"]);
  if (probe.status !== 0) return t.skip("no unprivileged mount namespaces here (unshare)");
  const out = path.join(fx.model.dir, "hardened");
  const r = spawnSync(
    "unshare",
    [
      ...["--user", "--map-root-user", "--mount", "sh", "-c"],
      `mount --bind "$1" "$2" && exec "$3" "$4" harden -m "$2" -d "$5" -o "$6" --epochs 1`,
      ...["sh", fx.model.dir, alias, process.execPath, CLI, fx.pairsFile, out],
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 2, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /lies inside the input --model/);
  assert.ok(!fs.existsSync(out));
  assertModelUntouched();
});

test("kill -9 while the output is being built: nothing at the output path; the rerun removes the dead run's temporary (not a live one's) and publishes the complete folder", async () => {
  const ref = path.join(fx.work, "pub-ref");
  const r0 = await runCli(harden(ref));
  assert.equal(r0.code, 0, showRun(r0));

  const out = path.join(fx.work, "pub");
  const temp = () => fs.readdirSync(fx.work).find((n) => /^\.pub\.tmp-\d+-\d+-[0-9a-f]{8}$/.test(n));
  // killed while the fold writes the weights into the temporary folder. The tiny model's fold takes
  // milliseconds, and the temporary was often renamed into place before a poll saw it: every stop point (one
  // before each tensor the fold writes) is made to block 100 ms, so the writing lasts seconds
  await killWhenExists(harden(out), () => temp() !== undefined, {
    env: { GOODVIBE_TEST_STOP_POINT_DELAY_MS: "100" },
  });
  assert.ok(!fs.existsSync(out), "a partial output folder is visible at the output path");
  const stale = temp();
  assert.ok(stale, "the killed run left no temporary (nothing to clean)");
  // a live process's temporary for the same output: never touched
  // (named now, by a running process: a real temporary's TIME is when its running writer named it)
  const live = path.join(fx.work, `.pub.tmp-${process.pid}-${Date.now()}`);
  fs.mkdirSync(live);

  const r = await runCli(harden(out));
  assert.equal(r.code, 0, showRun(r));
  assert.ok(!fs.existsSync(path.join(fx.work, stale)), "the dead run's temporary is still there");
  assert.ok(fs.existsSync(live), "a live process's temporary was removed");
  fs.rmdirSync(live);
  for (const f of ["model.safetensors", "config.json", "tokenizer.json", "goodvibe-delta.safetensors"])
    assert.ok(fs.existsSync(path.join(out, f)), f);
  for (const f of ["goodvibe-stats.json", "neurons.json", "clusters.json"])
    assert.ok(fs.existsSync(path.join(out, f)), f);
  assert.deepEqual(hashOutput(out), hashOutput(ref));
});

test("cached stages are keyed by their settings: --top-k 2 after --top-k 4 selects 2 rows, reuses nothing stale, and a changed setting into the same -o fails at once naming it", async () => {
  const out = path.join(fx.work, "topk");
  const runDir = path.join(fx.work, "topk.run");
  const args = (k: string, o: string, extra: string[] = []) => [
    "harden",
    ...[
      "-m",
      fx.model.dir,
      "-d",
      fx.pairsFile,
      "-o",
      o,
      "--run-dir",
      runDir,
      "--top-k",
      k,
      ...TINY,
      ...extra,
    ],
  ];
  const first = await runCli(args("4", out));
  assert.equal(first.code, 0, showRun(first));

  // the same command again: complete, nothing computed
  const again = await runCli(args("4", out));
  assert.equal(again.code, 0, showRun(again));
  assert.match(again.stderr, /already complete/);
  assert.doesNotMatch(again.stderr, /identification:|training goodvibe/);

  // other settings into the same output folder: refused before any work, naming what differs
  const refused = await runCli(args("2", out));
  assert.equal(refused.code, 2, showRun(refused));
  assert.match(refused.stderr, /identify\.topK: 4 → 2/);
  assert.doesNotMatch(refused.stderr, /identification:/);

  // into a new output with the same run folder: identification is recomputed for top-2, not reused
  const out2 = path.join(fx.work, "topk2");
  const second = await runCli(args("2", out2));
  assert.equal(second.code, 0, showRun(second));
  assert.match(second.stderr, /identification: settings differ .*identify\.topK: 4 → 2/);
  assert.doesNotMatch(second.stderr, /identification: reusing/);
  const map = JSON.parse(fs.readFileSync(path.join(out2, "neurons.json"), "utf8")) as {
    topK: number;
    modules: Record<string, { indices: number[] }>;
  };
  assert.equal(map.topK, 2);
  for (const [name, mod] of Object.entries(map.modules)) assert.equal(mod.indices.length, 2, name);
  const delta = readSafetensors(path.join(out2, "goodvibe-delta.safetensors")).tensors;
  for (const [name, rec] of delta) if (name.endsWith(".rows")) assert.equal(rec.shape[0], 2, name);

  // only clustering settings change: identification is reused, clustering and training recomputed
  const out3 = path.join(fx.work, "topk3");
  const third = await runCli(args("2", out3, ["--set", "cluster.threshold=0.9"]));
  assert.equal(third.code, 0, showRun(third));
  assert.match(third.stderr, /identification: reusing/);
  assert.match(third.stderr, /clustering: settings differ .*cluster\.threshold: 0\.05 → 0\.9/);

  // the model's weights change, shapes the same: every stage is recomputed
  const changed = path.join(fx.work, "model-changed");
  fs.cpSync(fx.model.dir, changed, { recursive: true });
  const st = path.join(changed, "model.safetensors");
  const bytes = fs.readFileSync(st);
  bytes[bytes.length - 1] ^= 0x01;
  fs.writeFileSync(st, bytes);
  const fourth = await runCli([
    "harden",
    ...["-m", changed, "-d", fx.pairsFile, "-o", path.join(fx.work, "topk4"), "--run-dir", runDir],
    ...["--top-k", "2", ...TINY],
  ]);
  assert.equal(fourth.code, 0, showRun(fourth));
  assert.match(fourth.stderr, /identification: settings differ .*model folder contents changed/);
});

test("a run folder that holds someone's files is refused (exit 2) before any work", async () => {
  const u = usersFolder("notes");
  const r = await runCli(harden(path.join(fx.work, "out-notes"), ["--run-dir", u.dir]));
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, /--run-dir .*notes: exists and is not empty/);
  // it names what is in the way and does not suggest --overwrite, which does not apply to a run folder: passing
  // it is refused the same way
  assert.match(r.stderr, /"thesis\.txt"/);
  assert.match(r.stderr, /"data"/);
  assert.doesNotMatch(r.stderr, /pass --overwrite/);
  const o = await runCli(harden(path.join(fx.work, "out-notes"), ["--run-dir", u.dir, "--overwrite"]));
  assert.equal(o.code, 2, showRun(o));
  assert.match(o.stderr, /--run-dir .*notes: exists and is not empty/);
  assert.deepEqual(hashTree(u.dir), u.hash());
});

test("eval --cache accepts its own earlier cache folder (resume)", async () => {
  const heldOut = path.join(fx.work, "held.jsonl");
  writeCorpusJsonl(heldOut, balancedPairs(fx.model.pairs, 1));
  const cache = path.join(fx.work, "cache");
  const args = ["eval", "-m", fx.model.dir, "-d", heldOut, "--cache", cache, "--prompts", "2"];
  const a = await runCli([...args, "--max-new-tokens", "4"]);
  assert.equal(a.code, 0, showRun(a));
  assert.ok(findUnder(cache, /^safety-[0-9a-f]{16}\.jsonl$/));
  const b = await runCli([...args, "--max-new-tokens", "4"]);
  assert.equal(b.code, 0, showRun(b));
});
