/**
 * io/claim.ts: a claim left by a run that died is taken over, also when the pid it names is this very process's. In
 * a container the run is often pid 1 (or another low pid): killed (an OOM kill is a SIGKILL) and restarted with the
 * same hostname and volume, the rerun gets the same pid, so "that pid is alive" said the dead run still held the
 * folder, and the resume was refused ("in use by another goodvibe run (<host> pid 1 ...)") until the claim's
 * heartbeat went stale, 10 minutes later. A claim naming a live other process is still refused.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { claimHolder, tryClaim } from "../../src/io/claim.js";
import { scratchDir } from "../scratch.js";

const work = scratchDir("gv-claim-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

function plant(dir: string, pid: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const body = { host: os.hostname(), pid, token: "0123456789abcdef", since: new Date().toISOString() };
  fs.writeFileSync(path.join(dir, ".claim.json"), JSON.stringify(body));
}
const claimOf = (dir: string) =>
  JSON.parse(fs.readFileSync(path.join(dir, ".claim.json"), "utf8")) as { pid: number; token: string };

test("a fresh claim naming this process's pid but not held by it (a dead run of the same pid) is taken over", () => {
  const dir = path.join(work, "same-pid");
  plant(dir, process.pid);
  assert.equal(claimHolder(dir), null, "nobody alive holds it");
  const release = tryClaim(dir);
  assert.ok(release, "the rerun was refused by its own pid");
  assert.equal(claimOf(dir).pid, process.pid);
  assert.notEqual(claimOf(dir).token, "0123456789abcdef", "the claim is this run's now");
  // held by this process: a nested claim of the same folder is the same claim, and another holder is named
  const again = tryClaim(dir);
  assert.ok(again);
  assert.match(claimHolder(dir)!, new RegExp(`pid ${process.pid} `));
  again();
  release();
  assert.equal(fs.existsSync(path.join(dir, ".claim.json")), false);
});

test("a fresh claim of a live other process on this host is refused", () => {
  const dir = path.join(work, "live-other");
  plant(dir, process.ppid);
  assert.equal(tryClaim(dir), null);
  assert.match(claimHolder(dir)!, new RegExp(`pid ${process.ppid} `));
});
