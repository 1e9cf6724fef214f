/**
 * `experiment plan` as the status of a run in progress or interrupted: a cell a live worker has claimed is
 * "running" with its holder, a dead worker's claim counts for nothing (the cell is "pending", as a run would take
 * it over), and the status line counts computations: two cells of one key (a grid value equal to the default)
 * are one to run. The reference is the claim itself (io/claim.ts tryClaim, taken here by this process) and the
 * plan's own keys.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import YAML from "yaml";
import { loadExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { tryClaim } from "../../src/io/claim.js";
import { experimentSplit, makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 4 });
after(() => fx.cleanup());

test("plan: a live worker's cell is running, a dead worker's is pending, and cells of one key count once", async () => {
  const { train, dev } = experimentSplit(fx, "exp");
  const file = path.join(fx.work, "status.yaml");
  const out = path.join(fx.work, "status-out");
  fs.writeFileSync(
    file,
    YAML.stringify({
      name: "status",
      models: [{ name: "tiny", path: fx.model.dir }],
      data: { train, dev },
      methods: ["base", "goodvibe"],
      defaults: { identify: { topK: 4 }, cluster: { features: "importance" } },
      // 0.05 is the default threshold: the same cell as goodvibe's own
      grids: [{ name: "threshold", key: "cluster.threshold", values: [0.05] }],
    }),
  );
  const plan = planExperiment(loadExperimentSpec(file), { out, write: false });
  assert.equal(plan.cells.length, 3);
  assert.equal(new Set(plan.cells.map((c) => c.key)).size, 2, "the grid cell is goodvibe's own");
  const goodvibe = plan.cells[1]!;
  const status = async () => {
    const r = await runCli(["experiment", "plan", file, "-o", out]);
    assert.equal(r.code, 0, showRun(r));
    const rows = r.stdout.split("\n").filter((l) => / [0-9a-f]{16} /.test(l));
    return { head: r.stdout.split("\n")[0]!, rows: rows.map((l) => l.split(" ")[0]) };
  };

  // nothing claimed: 2 computations to run, not 3
  let s = await status();
  assert.match(s.head, /: 3 cells \(2 to compute: 1 shares another cell's key\), 0 cached, 2 to run$/);
  assert.deepEqual(s.rows, ["pending", "pending", "pending"]);

  // this process claims goodvibe's work folder, as a worker computing it does
  fs.mkdirSync(goodvibe.workDir, { recursive: true });
  const release = tryClaim(goodvibe.workDir);
  assert.ok(release);
  try {
    s = await status();
    assert.match(s.head, /, 0 cached, 1 running \(claimed by a live worker\), 1 to run$/);
    assert.deepEqual(s.rows, ["pending", "running", "running"]);
    const r = await runCli(["experiment", "plan", file, "-o", out]);
    assert.ok(r.stdout.includes(`${os.hostname()} pid ${process.pid} since `), r.stdout);
  } finally {
    release!();
  }

  // a worker that died holding it (its pid gone): pending, as `experiment run` would take it over
  const dead = spawnSync(process.execPath, ["-e", "process.pid"]).pid!;
  fs.writeFileSync(
    path.join(goodvibe.workDir, ".claim.json"),
    JSON.stringify({ host: os.hostname(), pid: dead, token: "t", since: new Date().toISOString() }),
  );
  s = await status();
  assert.match(s.head, /, 0 cached, 2 to run$/);
  assert.deepEqual(s.rows, ["pending", "pending", "pending"]);
});
