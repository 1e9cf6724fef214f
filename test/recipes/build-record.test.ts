/**
 * Which build computed a cached stage. A stage's key holds its inputs, not the tool's build, so that interrupted work
 * resumes after an upgrade; but a stage made by another build (version, commit, addon, libtorch, device, bf16 route)
 * can differ in its last bits. Each slot records its builds (made-by.json), the output carries them, and a rerun that
 * reuses or resumes another build's work says so with the folder to delete. The other builds here are real: a slot
 * left by a version before the record (no made-by.json), and the bf16 route switched between runs
 * (setF32Products: what another machine's addon decides).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import type { HardenConfig } from "../../src/config/harden.js";
import { RUN_FILES, planStages, runHarden } from "../../src/recipes/harden.js";
import {
  buildDifferences,
  buildRecord,
  describeBuild,
  sameBuild,
  setF32Products,
} from "../../src/tensor/index.js";
import { PACKAGE } from "../../src/util/package-info.js";
import type { Logger } from "../../src/util/log.js";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { InterruptedError } from "../../src/errors.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { tinyHardenConfig } from "./tiny-config.js";
import { hardenConfigFrom } from "../../src/cli/commands/harden-config.js";

const made = makeTinyChatModel();
const work = scratchDir("gv-build-record-");
const data = path.join(work, "pairs.jsonl");
writeCorpusJsonl(data, made.pairs.slice(0, 4));

/**
 * The tiny runs here are far too short for a real schedule, which harden warns about (scheduleProblem, tested in
 * method/schedule and cli/short-schedule); those warnings are kept apart, so `warnings` holds what builds say.
 */
const SCHEDULE_WARNING = /^training: \d+ training examples? × .* make \d+ steps?, \d+ of them warm-up/;

function capture(): { warnings: string[]; schedule: string[]; infos: string[]; log: Logger } {
  const warnings: string[] = [];
  const schedule: string[] = [];
  const infos: string[] = [];
  return {
    warnings,
    schedule,
    infos,
    log: {
      info: (m) => infos.push(m),
      warn: (m) => (SCHEDULE_WARNING.test(m) ? schedule : warnings).push(m),
      progress() {},
    },
  };
}

const readJson = (f: string) => JSON.parse(fs.readFileSync(f, "utf8"));

test("a run records its build in every slot and in the output; a rerun by the same build says nothing of builds", async () => {
  const cfg = tinyHardenConfig(made.dir, data, path.join(work, "same"));
  const plan = planStages(cfg);
  const now = buildRecord("cpu", "float32");
  assert.equal(now.goodvibe, PACKAGE.version);
  assert.match(now.addon, /^(sources|file) [0-9a-f]{12}$/);
  assert.equal(now.bf16Products, undefined, "a float32 model has no bf16 route");
  const first = capture();
  await runHarden(cfg, { log: first.log });
  const nowJson = JSON.parse(JSON.stringify(now));
  for (const k of ["identify", "cluster", "train"] as const)
    assert.deepEqual(readJson(path.join(plan[k].dir, RUN_FILES.madeBy)), [nowJson], k);
  const stats = readJson(path.join(cfg.out, RUN_FILES.stats));
  assert.deepEqual(stats.build, nowJson);
  assert.deepEqual(stats.builds, { identify: [nowJson], cluster: [nowJson], train: [nowJson] });
  assert.deepEqual(first.warnings, []);
  // the output moved away: the stages are reused by the build that made them, silently
  fs.renameSync(cfg.out, `${cfg.out}-kept`);
  const again = capture();
  await runHarden(cfg, { log: again.log });
  assert.deepEqual(again.warnings, []);
  assert.ok(again.infos.some((m) => m.startsWith("identification: reusing")));
});

test("--overwrite on an output this build finished: made again (not 'nothing to do'), the finished folder moved aside intact", async () => {
  const cfg = tinyHardenConfig(made.dir, data, path.join(work, "remade"));
  await runHarden(cfg);
  const files = (dir: string) =>
    new Map(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f)).toString("base64")]));
  const before = files(cfg.out);
  const plain = await runHarden(cfg);
  assert.equal(plain.reused, true, "a rerun without --overwrite does nothing");
  // a library caller's overwrite alone (the demo's, rerun into its own folder) still returns it as it is
  const own = await runHarden({ ...cfg, overwrite: true });
  assert.equal(own.reused, true, "overwrite without remake made this build's finished output again");
  // the CLI's --overwrite is overwrite and remake
  const cli = hardenConfigFrom({ model: made.dir, data, out: cfg.out, overwrite: true, set: [] });
  assert.equal(cli.overwrite && cli.remake, true, "--overwrite does not ask for the output to be made again");
  const c = capture();
  const again = await runHarden({ ...cfg, overwrite: true, remake: true }, { log: c.log });
  assert.notEqual(again.reused, true, "--overwrite was ignored: the finished output was returned as it was");
  assert.deepEqual(
    c.warnings.filter((w) => !w.includes("moved aside")),
    [],
  );
  const aside = fs.readdirSync(work).filter((n) => n.startsWith("remade.old-"));
  assert.equal(aside.length, 1, `moved aside: ${aside.join(", ")}`);
  assert.deepEqual(
    files(path.join(work, aside[0]!)),
    before,
    "the finished folder was not moved aside intact",
  );
  // the stages are this build's and reused: the same weights again
  assert.equal(files(cfg.out).get("model.safetensors"), before.get("model.safetensors"));
});

test("stages of a version before the record: reused and resumed, each saying so with the folder to delete", async () => {
  const cfg = tinyHardenConfig(made.dir, data, path.join(work, "upgrade"));
  const plan = planStages(cfg);
  await runHarden(cfg);
  // what an earlier version left: slots without made-by.json, an output without build records
  for (const k of ["identify", "cluster", "train"] as const)
    fs.rmSync(path.join(plan[k].dir, RUN_FILES.madeBy));
  fs.rmSync(cfg.out, { recursive: true });
  const c = capture();
  const r = await runHarden(cfg, { log: c.log });
  assert.notEqual(r.reused, true);
  const said = (stage: string) => c.warnings.filter((w) => w.startsWith(`${stage}: `));
  for (const [stage, k, how] of [
    ["identification", "identify", "reusing the result in"],
    ["clustering", "cluster", "reusing the result in"],
    ["training", "train", "resuming the work in"], // its checkpoint: the finished steps are kept
  ] as const) {
    const w = said(stage);
    assert.equal(w.length, 1, `${stage}: ${c.warnings.join("\n")}`);
    assert.ok(w[0]!.includes(`${how} ${plan[k].dir}`), w[0]);
    assert.ok(w[0]!.includes("an earlier goodvibe that did not record its build"), w[0]);
    assert.ok(w[0]!.includes(`delete ${plan[k].dir} and rerun`), w[0]);
  }
  const now = JSON.parse(JSON.stringify(buildRecord("cpu", "float32")));
  const stats = readJson(path.join(cfg.out, RUN_FILES.stats));
  assert.deepEqual(stats.builds, { identify: [null], cluster: [null], train: [null, now] });
  // reused slots keep their record as it was; the resumed one names this build after the unrecorded one
  assert.ok(!fs.existsSync(path.join(plan.identify.dir, RUN_FILES.madeBy)));
  assert.deepEqual(readJson(path.join(plan.train.dir, RUN_FILES.madeBy)), [null, now]);
});

test("bf16 route switched mid-run (another machine's addon): training resumes, not restarts, and both routes are recorded; a complete output of the other route is named, and --overwrite makes it again", async () => {
  const out = path.join(work, "route ü 'q'");
  const base = tinyHardenConfig(made.dir, data, out);
  const cfg: HardenConfig = { ...base, dtype: "bfloat16", train: { ...base.train, maxPairs: 4 } };
  const plan = planStages(cfg);
  const prev = setF32Products("on");
  try {
    const routeA = JSON.parse(JSON.stringify(buildRecord("cpu", "bfloat16")));
    assert.equal(routeA.bf16Products, "float32, rounded once");
    // 4 pairs at batch 2: two steps; stopped after the first
    await assert.rejects(
      runHarden({ ...cfg, train: { ...cfg.train, stopAfterSteps: 1 } }),
      (e) => e instanceof InterruptedError,
    );
    assert.ok(!fs.existsSync(out));
    assert.deepEqual(readJson(path.join(plan.identify.dir, RUN_FILES.madeBy)), [routeA]);

    setF32Products("off");
    const routeB = JSON.parse(JSON.stringify(buildRecord("cpu", "bfloat16")));
    assert.equal(routeB.bf16Products, "libtorch's own");
    const c = capture();
    const steps: number[] = [];
    const r = await runHarden(cfg, { log: c.log, onStep: (l) => steps.push(l.step) });
    assert.equal(r.train.steps, 2);
    assert.deepEqual(steps, [2], "the first step is the other route's, kept");
    const idw = c.warnings.find((w) => w.startsWith("identification: reusing"));
    assert.ok(
      idw?.includes("bf16 products: float32, rounded once") && idw.includes("differs in bf16 products"),
      idw,
    );
    // clustering is the tool's own TypeScript: another bf16 route made the same clusters, nothing to say
    assert.equal(
      c.warnings.find((w) => w.startsWith("clustering")),
      undefined,
    );
    const tw = c.warnings.find((w) => w.startsWith("training: resuming"));
    assert.ok(tw?.includes(plan.train.dir), tw);
    const stats = readJson(path.join(out, RUN_FILES.stats));
    assert.deepEqual(stats.build, routeB);
    assert.deepEqual(stats.builds, { identify: [routeA], cluster: [routeA], train: [routeA, routeB] });

    // the complete output rerun under the first route: nothing is computed, but the line says whose it is
    setF32Products("on");
    const d = capture();
    assert.equal((await runHarden(cfg, { log: d.log })).reused, true);
    assert.equal(d.warnings.length, 1, d.warnings.join("\n"));
    assert.ok(
      d.warnings[0]!.includes("bf16 products: libtorch's own") && d.warnings[0]!.includes("--overwrite"),
    );
    // --overwrite: made again by this build (the stages reused say so), the earlier output moved aside
    const e = capture();
    const again = await runHarden({ ...cfg, overwrite: true }, { log: e.log });
    assert.notEqual(again.reused, true);
    assert.deepEqual(readJson(path.join(out, RUN_FILES.stats)).build, routeA);
    assert.ok(fs.readdirSync(work).some((n) => n.startsWith(`${path.basename(out)}.old-`)));
  } finally {
    setF32Products(prev);
  }
});

test("the commit is information, the code decides: another commit with the same compiled code is the same build", () => {
  const now = buildRecord("cpu", "float32");
  assert.match(now.code ?? "", /^[0-9a-f]{12}$/, "a compiled tree records its code's hash");
  const otherCommit = { ...now, commit: "0123456789ab" };
  assert.ok(sameBuild(otherCommit, now), "a docs- or tests-only commit runs the same code");
  assert.equal(buildDifferences(otherCommit, now), "");
  const otherCode = { ...otherCommit, code: "fedcba987654" };
  assert.ok(!sameBuild(otherCode, now));
  assert.equal(buildDifferences(otherCode, now), "code");
  assert.match(describeBuild(otherCode), /commit 0123456789ab, code fedcba987654,/);
  // a record made before the code hash (no `code`) is compared by commit where both have one, as it was
  const { code: _code, commit: _commit, ...before } = now;
  const c = "0123456789ab";
  assert.ok(
    sameBuild({ ...before, commit: c }, { ...now, commit: c }),
    "one commit, recorded before the hash",
  );
  assert.ok(!sameBuild({ ...before, commit: c }, { ...now, commit: "ba9876543210" }));
  assert.equal(buildDifferences({ ...before, commit: c }, { ...now, commit: "ba9876543210" }), "commit");
  // neither has a commit (an installed package, whose version stays 0.1.0 across releases): the code is unknown
  // on one side, so it is another build, differing in code; two such old records compare as they did
  const { commit: _c2, ...installed } = now;
  assert.ok(!sameBuild(before, installed));
  assert.equal(buildDifferences(before, installed), "code");
  assert.ok(sameBuild(before, { ...before }));
});

test("a rerun after a commit that changed no code reuses every stage and says nothing of builds", async () => {
  const cfg = tinyHardenConfig(made.dir, data, path.join(work, "docs-only"));
  const plan = planStages(cfg);
  await runHarden(cfg);
  // what a clone one docs-only commit later finds: the same records, another commit
  const rewrite = (b: Record<string, unknown> | null) => b && { ...b, commit: "0123456789ab" };
  for (const k of ["identify", "cluster", "train"] as const) {
    const f = path.join(plan[k].dir, RUN_FILES.madeBy);
    fs.writeFileSync(f, JSON.stringify(readJson(f).map(rewrite)));
  }
  const statsFile = path.join(cfg.out, RUN_FILES.stats);
  const stats = readJson(statsFile);
  fs.writeFileSync(statsFile, JSON.stringify({ ...stats, build: rewrite(stats.build) }));
  const c = capture();
  assert.equal((await runHarden(cfg, { log: c.log })).reused, true, "the finished output is this build's");
  assert.deepEqual(c.warnings, []);
  fs.rmSync(cfg.out, { recursive: true });
  const d = capture();
  await runHarden(cfg, { log: d.log });
  assert.deepEqual(d.warnings, []);
  assert.ok(d.infos.some((m) => m.startsWith("identification: reusing")));
  // other code is another build: named, with both commits as information
  for (const k of ["identify"] as const) {
    const f = path.join(plan[k].dir, RUN_FILES.madeBy);
    fs.writeFileSync(
      f,
      JSON.stringify(readJson(f).map((b: Record<string, unknown>) => ({ ...b, code: "fedcba987654" }))),
    );
  }
  fs.rmSync(cfg.out, { recursive: true });
  const e = capture();
  await runHarden(cfg, { log: e.log });
  const w = e.warnings.find((m) => m.startsWith("identification: reusing"));
  assert.ok(w?.includes("code fedcba987654") && w.includes("which differs in code,"), w);
});

test("a damaged made-by.json is refused naming the file and what to delete", async () => {
  const cfg = tinyHardenConfig(made.dir, data, path.join(work, "damaged"));
  const plan = planStages(cfg);
  await runHarden(cfg);
  fs.rmSync(cfg.out, { recursive: true });
  fs.writeFileSync(path.join(plan.identify.dir, RUN_FILES.madeBy), '[{"goodvibe": 1}');
  await assert.rejects(runHarden(cfg), (e: Error) => {
    assert.ok(e.message.includes(path.join(plan.identify.dir, RUN_FILES.madeBy)), e.message);
    assert.match(e.message, /delete the file/);
    return true;
  });
});
