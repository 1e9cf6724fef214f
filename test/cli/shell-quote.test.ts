/**
 * The commands the CLI prints for the user to paste (experiment run's "once they are done, run …"): bash reads
 * each quoted argument back as the same string, whatever the path holds.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { shellCommand, shellQuote } from "../../src/util/shell.js";

const HOSTILE = [
  "experiments/paper.yaml",
  "/tmp/exp ü/grid 'ü'.yaml",
  "it's",
  "a b\tc",
  "$HOME",
  "`id`",
  "$(id)",
  'say "hi"',
  "*.yaml",
  "!bang",
  "a;b&c|d>e<f",
  "line\nbreak",
  "back\\slash",
  "",
  "-o",
  "cluster.threshold=0.1",
  "seeds=[0,1]",
  "~user",
  "#comment",
];

test("shellCommand: bash parses the printed command back into the same arguments", () => {
  const r = spawnSync("bash", ["-c", `printf '%s\\0' ${shellCommand(HOSTILE)}`], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.split("\0").slice(0, -1), HOSTILE);
});

test("shellQuote leaves plain words as they are (the command stays readable)", () => {
  for (const w of ["goodvibe", "experiment", "/shared/runs/paper", "--set", "eval.maxPrompts=16", "a,b"])
    assert.equal(shellQuote(w), w);
});
