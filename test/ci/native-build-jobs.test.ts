/**
 * scripts/build-native.mjs compiles the addon's sources side by side: make gets --jobs, one compiler per usable
 * core, as many as memory allows at ~1.4 GB each (2 GiB counted), never more than there are sources. Serially
 * the seven sources take ~200 s of one core (addon.cc 50 s, fused.cc 65 s: BENCHMARKS "CI time"), the longest
 * phase of a fresh clone's CI before its tests.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../evalcore/make-model.js";

test("the native build runs one compiler per core, within memory, at most one per source (--dry-run)", () => {
  const r = spawnSync(
    process.execPath,
    [path.join(REPO_ROOT, "scripts", "build-native.mjs"), "--force", "--dry-run"],
    { encoding: "utf8", env: { ...process.env, GOODVIBE_SKIP_NATIVE: undefined } },
  );
  assert.equal(r.status, 0, r.stderr);
  const plan = JSON.parse(r.stdout.trim().split("\n").pop()!) as { command: string; args: string[] };
  assert.equal(plan.command, process.execPath);
  assert.match(plan.args[0]!, /node-gyp[\\/]bin[\\/]node-gyp\.js$/);
  assert.equal(plan.args[1], "rebuild");
  const i = plan.args.indexOf("--jobs");
  assert.ok(i > 0, `no --jobs in ${plan.args.join(" ")}`);
  const jobs = Number(plan.args[i + 1]);
  // binding.gyp's sources: what make can compile at once
  const gyp = fs.readFileSync(path.join(REPO_ROOT, "native", "binding.gyp"), "utf8");
  const sources = (gyp.match(/"src\/[^"]+\.cc"/g) ?? []).length;
  assert.ok(sources >= 2, `${sources} sources in binding.gyp`);
  const byMemory = Math.floor(os.totalmem() / 2 ** 31);
  assert.equal(jobs, Math.max(1, Math.min(os.availableParallelism(), byMemory, sources)));
  // where more than one core and 4 GiB are there (the CI: 2 cores, 24 GiB), the sources compile side by side
  if (os.availableParallelism() >= 2 && byMemory >= 2) assert.ok(jobs >= 2, `${jobs} job(s)`);
  // the dry run built nothing: the addon and its stamp are still there
  assert.ok(fs.existsSync(path.join(REPO_ROOT, "native", "build", "goodvibe-build.json")));
});
