/**
 * Seeded fuzz of the raw addon, every op of its op table (opSignatures: an op added later is fuzzed too), in child
 * processes so that a crash is seen as a signal naming the call, not as a dead test runner (addon-fuzz-child.ts says
 * what is drawn). Contract (the architecture's "native errors become JS exceptions", the brief's "nothing
 * crashes"): every call returns or throws an Error with a message; no child dies by a signal or exits otherwise
 * than cleanly. The children run under an address-space limit (prlimit, where there is one) so that a drawn huge
 * size meets an allocation failure (which must throw) rather than the machine's memory.
 * test/robustness/native-abuse.test.ts checks chosen misuses one by one, with the messages; this covers the rest.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const CHILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "addon-fuzz-child.js");
const AS_LIMIT = 8 * 1024 ** 3;

const prlimit = spawnSync("prlimit", ["--version"]).status === 0;

/** Runs [first, first + count) of a mode's cases, a child at a time; a child that dies is reported and skipped past. */
function fuzz(mode: "ops" | "kernels", seed: number, count: number, perChild: number) {
  const crashes: string[] = [];
  const badThrows: string[] = [];
  let ok = 0;
  let thrown = 0;
  for (let c = 0; c < count;) {
    const n = Math.min(perChild, count - c);
    const argv = [process.execPath, CHILD, mode, String(seed), String(c), String(n)];
    const cmd = prlimit ? ["prlimit", `--as=${AS_LIMIT}`, ...argv] : argv;
    const child = spawnSync(cmd[0]!, cmd.slice(1), {
      encoding: "utf8",
      maxBuffer: 1 << 28,
      env: { ...process.env, OMP_NUM_THREADS: "1" },
    });
    const lines = child.stderr.split("\n");
    badThrows.push(...lines.filter((l) => l.startsWith("BADTHROW")));
    const done = /DONE ok=(\d+) thrown=(\d+)/.exec(child.stdout);
    if (child.status === 0 && child.signal === null && done) {
      ok += Number(done[1]);
      thrown += Number(done[2]);
      c += n;
      continue;
    }
    const cases = lines.filter((l) => l.startsWith("CASE "));
    const last = cases[cases.length - 1] ?? "";
    const tail = lines
      .filter((l) => !l.startsWith("CASE "))
      .slice(-4)
      .join(" | ");
    crashes.push(`${child.signal ?? `exit ${child.status}`} at ${last || "start-up"}: ${tail.slice(0, 400)}`);
    const at = Number(last.split(" ")[1]);
    c = Number.isFinite(at) && at >= c ? at + 1 : c + n; // past the call that killed it
  }
  return { crashes, badThrows, ok, thrown };
}

test("every op of the addon's table, called with drawn arguments, returns or throws an Error: nothing crashes", () => {
  // 142 ops at the time of writing: ~30 cases each
  const r = fuzz("ops", 1, 4500, 1500);
  assert.deepEqual(r.crashes, [], "children died");
  assert.deepEqual(r.badThrows, [], "calls threw something other than an Error with a message");
  // both outcomes occur: the draws reach the ops' bodies, not only argument decoding
  assert.ok(r.ok > 1000 && r.thrown > 1000, `returned ${r.ok}, threw ${r.thrown}`);
});

test("the addon's own kernels with valid arguments and one or two mutations, backward included, never crash", () => {
  const r = fuzz("kernels", 1, 2600, 1300);
  assert.deepEqual(r.crashes, [], "children died");
  assert.deepEqual(r.badThrows, [], "calls threw something other than an Error with a message");
  assert.ok(r.ok > 500 && r.thrown > 500, `returned ${r.ok}, threw ${r.thrown}`);
});
