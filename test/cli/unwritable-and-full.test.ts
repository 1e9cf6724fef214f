/**
 * Two hostile places to write that the audit of 2026-12-03 did not try: a folder the user may not write, as a
 * user who is not root (root passes every permission check, so readonly-output.test's read-only mount is the only
 * refusal root can see), and a disk that fills up during a harden, then a rerun once space is freed. Each must end
 * with a clear error (exit 2 or 3, the path named, no stack), leave no partial output, and the rerun must finish
 * what the first run began (cached stages reused) with the output of an uninterrupted run.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT, scratchDir } from "../evalcore/make-model.js";
import { CLI, hashOutput, runCli, showRun, type CliResult } from "./cli-helpers.js";

const ORGANISM = path.join(REPO_ROOT, "assets/organism");
const PAIRS = path.join(ORGANISM, "data/dev.jsonl");
// one optimiser step without warm-up: it changes the weights, so an output equal to the reference proves training
const TINY = [
  ...["--top-k", "2", "--epochs", "1", "--set", "identify.maxPairs=4", "--set", "train.maxPairs=4"],
  ...["--set", "train.warmupRatio=0"],
];
const work = scratchDir("gv-unwritable-");
fs.chmodSync(work, 0o755); // the other user must reach the folders inside
const mounts: string[] = [];
after(() => {
  for (const m of mounts) spawnSync("umount", ["-l", m]);
  fs.rmSync(work, { recursive: true, force: true });
});

const NOBODY = 65534;
// nobody must also reach the CLI: a checkout under a folder only root may enter (mktemp -d's 0700, /root) is not
const asNobody =
  process.getuid?.() === 0 &&
  spawnSync("runuser", [
    "-u",
    "nobody",
    "--",
    process.execPath,
    "-e",
    `require("fs").accessSync(${JSON.stringify(CLI)}, 4); require("fs").accessSync(${JSON.stringify(PAIRS)}, 4)`,
  ]).status === 0;

/** The CLI run as `nobody` (runuser), in `cwd`. */
function runAsNobody(args: string[], cwd: string): CliResult {
  const r = spawnSync("runuser", ["-u", "nobody", "--", process.execPath, CLI, ...args], {
    cwd,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", HOME: cwd },
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function assertClear(r: CliResult, code: number, message: RegExp, names: string): void {
  assert.equal(r.code, code, showRun(r));
  assert.match(r.stderr, message, showRun(r));
  assert.ok(r.stderr.includes(names), showRun(r));
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, showRun(r));
}

test(
  "as a user who is not root: an output, run or cache folder that user cannot write is refused before any work (exit 2, named); after the owner lets them, the same command runs",
  {
    skip: asNobody
      ? false
      : "needs root to run a command as nobody (runuser), and a checkout nobody can read",
  },
  () => {
    const home = path.join(work, "home");
    const locked = path.join(work, "locked"); // root's, 755: nobody may read, not write
    fs.mkdirSync(home);
    fs.chownSync(home, NOBODY, NOBODY);
    fs.mkdirSync(locked, { mode: 0o755 });
    for (const args of [
      ["harden", "-m", ORGANISM, "-d", PAIRS, "-o", path.join(locked, "out"), ...TINY],
      [
        "harden",
        "-m",
        ORGANISM,
        "-d",
        PAIRS,
        "-o",
        path.join(home, "out"),
        "--run-dir",
        path.join(locked, "run"),
        ...TINY,
      ],
      ["export", "-m", ORGANISM, "-o", path.join(locked, "x.gguf")],
      ["eval", "-m", ORGANISM, "-d", PAIRS, "--prompts", "1", "--cache", path.join(locked, "cache")],
      ["identify", "-m", ORGANISM, "-d", PAIRS, "-o", path.join(locked, "n.json"), "--top-k", "2"],
    ]) {
      const r = runAsNobody(args, home);
      assertClear(r, 2, /cannot be written \(permission denied\); choose a writable location/, locked);
      assert.doesNotMatch(
        r.stderr,
        /identification: \d+ samples|training goodvibe|generating answers/,
        showRun(r),
      );
      // -o alone: the run folder it implies is named as such, not as a --run-dir the user never passed
      if (args[0] === "harden" && !args.includes("--run-dir"))
        assert.match(r.stderr, /error: --run-dir \(by default beside --out\) \//, showRun(r));
    }
    assert.deepEqual(fs.readdirSync(locked), [], "something was written into the locked folder");
    assert.deepEqual(fs.readdirSync(home), [], "a run folder or output was made beside");

    // the owner lets nobody write there: the same export now runs, its file nobody's
    fs.chownSync(locked, NOBODY, NOBODY);
    const ok = runAsNobody(["export", "-m", ORGANISM, "-o", path.join(locked, "x.gguf")], home);
    assert.equal(ok.code, 0, showRun(ok));
    assert.equal(fs.statSync(path.join(locked, "x.gguf")).uid, NOBODY);
  },
);

/** A tmpfs of `size` at `dir` (made), or null where mounting is not permitted. */
function tmpfs(dir: string, size: string): string | null {
  fs.mkdirSync(dir, { recursive: true });
  if (spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]).status !== 0) return null;
  mounts.push(dir);
  return dir;
}
const canMount = (() => {
  const probe = tmpfs(path.join(work, "probe"), "64k");
  return probe !== null;
})();

test(
  "a disk that fills up in identification, and one too small for the hardened model: exit 3 naming the path and the space, no partial output; the rerun after space is freed resumes and publishes what an uninterrupted run does",
  { skip: canMount ? false : "mounting a tmpfs is not permitted here" },
  async () => {
    const ref = path.join(work, "ref");
    const r0 = await runCli(["harden", "-m", ORGANISM, "-d", PAIRS, "-o", ref, ...TINY], { cwd: work });
    assert.equal(r0.code, 0, showRun(r0));
    const want = hashOutput(ref);

    // 64 KiB: the run folder's identification profiles do not fit
    const small = tmpfs(path.join(work, "small"), "64k")!;
    const args = ["harden", "-m", ORGANISM, "-d", PAIRS, "-o", path.join(small, "out"), ...TINY];
    const full = await runCli(args, { cwd: work });
    assertClear(
      full,
      3,
      /no space left on the device \(write .*\): ENOSPC; free some space or write somewhere else, then rerun/,
      small,
    );
    assert.ok(!fs.existsSync(path.join(small, "out")), "a partial output was published");
    assert.deepEqual(
      fs.readdirSync(small).filter((n) => n.includes(".tmp-")),
      [],
      "a temporary was left in the output's folder",
    );

    // 2 MiB: identification, clustering and training fit; the 3.7 MiB model does not, which the fold says before
    // writing it
    spawnSync("mount", ["-o", "remount,size=2m", small]);
    const fold = await runCli(args, { cwd: work });
    assertClear(
      fold,
      3,
      // the output and its folder, not the hidden temporary being built
      new RegExp(
        `writing the hardened checkpoint to ${path.join(small, "out")} needs about 3\\.\\d+ MiB of disk in ${small}; only 1\\.\\d+ MiB is free`,
      ),
      small,
    );
    assert.ok(!fs.existsSync(path.join(small, "out")), "a partial output was published");
    assert.deepEqual(
      fs.readdirSync(small).filter((n) => n.includes(".tmp-")),
      [],
      "a temporary was left in the output's folder",
    );

    // space freed: the rerun reuses what the last run finished and publishes the reference's output
    spawnSync("mount", ["-o", "remount,size=16m", small]);
    const rerun = await runCli(args, { cwd: work });
    assert.equal(rerun.code, 0, showRun(rerun));
    assert.match(rerun.stderr, /identification: reusing /, showRun(rerun));
    assert.match(rerun.stderr, /clustering: reusing /, showRun(rerun));
    assert.deepEqual(hashOutput(path.join(small, "out")), want);
  },
);
