/**
 * An output on a read-only file system (a mount the job cannot write, a snapshot): every command that writes must
 * refuse it before any work, with exit 2 naming the path, not after hours of training when it publishes, and never
 * with a stack (Node's recursive mkdir reports such a folder as ENOENT, which reached the user as an internal error).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { REPO_ROOT, scratchDir } from "../evalcore/make-model.js";
import { runCli, showRun } from "./cli-helpers.js";

const ORGANISM = path.join(REPO_ROOT, "assets/organism");
const work = scratchDir("gv-readonly-");
const ro = path.join(work, "ro");
fs.mkdirSync(ro);
const mounted =
  spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", ro], { encoding: "utf8" }).status === 0;
after(() => {
  if (mounted) spawnSync("umount", ["-l", ro]);
  fs.rmSync(work, { recursive: true, force: true });
});
const pairs = path.join(ORGANISM, "data/dev.jsonl");
const TINY = ["--top-k", "2", "--epochs", "1", "--set", "identify.maxPairs=4", "--set", "train.maxPairs=4"];

test(
  "a read-only output location: harden, eval --cache, export, identify refuse it before any work (exit 2, named, no stack)",
  { skip: mounted ? false : "mounting a read-only tmpfs is not permitted here" },
  async () => {
    const runElsewhere = path.join(work, "run-elsewhere");
    for (const args of [
      ["harden", "-m", ORGANISM, "-d", pairs, "-o", path.join(ro, "out"), ...TINY],
      ["harden", "-m", ORGANISM, "-d", pairs, "-o", path.join(ro, "out"), "--run-dir", runElsewhere, ...TINY],
      [
        "harden",
        "-m",
        ORGANISM,
        "-d",
        pairs,
        "-o",
        path.join(work, "out"),
        "--run-dir",
        path.join(ro, "run"),
        ...TINY,
      ],
      ["eval", "-m", ORGANISM, "-d", pairs, "--prompts", "1", "--cache", path.join(ro, "cache")],
      ["export", "-m", ORGANISM, "-o", path.join(ro, "x.gguf")],
      ["identify", "-m", ORGANISM, "-d", pairs, "-o", path.join(ro, "n.json"), "--top-k", "2"],
    ]) {
      const r = await runCli(args, { cwd: work });
      const what = `${args.slice(0, 1).join(" ")} … ${showRun(r)}`;
      assert.equal(r.code, 2, what);
      assert.match(r.stderr, /cannot be written \(read-only file system\); choose a writable location/, what);
      assert.ok(r.stderr.includes(ro), what);
      assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, what);
      // before any work: nothing identified, trained or generated
      assert.doesNotMatch(r.stderr, /identification: \d+ samples|training goodvibe|generating answers/, what);
      assert.ok(!fs.existsSync(runElsewhere), `a run folder was made: ${what}`);
      assert.ok(!fs.existsSync(path.join(work, "out")), `an output was made: ${what}`);
    }
  },
);
