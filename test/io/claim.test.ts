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

test(
  "a claim whose pid now names a live process started at another time (the pid reused) is taken over; the live holder's own claim is refused",
  { skip: fs.existsSync("/proc/self/stat") ? false : "no /proc: start times are not known here" },
  async () => {
    const { spawn } = await import("node:child_process");
    const dir = path.join(work, "reused-pid");
    const url = new URL("../../src/io/claim.js", import.meta.url).href;
    // a live holder: another process that claims the folder and waits
    const holder = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { tryClaim } = await import(${JSON.stringify(url)}); ` +
          `if (!tryClaim(${JSON.stringify(dir)})) process.exit(3); console.log("held"); setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once("data", () => resolve());
        holder.once("exit", (code) => reject(new Error(`the holder exited ${code}`)));
      });
      const real = JSON.parse(fs.readFileSync(path.join(dir, ".claim.json"), "utf8")) as { start?: string };
      assert.ok(real.start, "the claim records its holder's start time");
      assert.equal(tryClaim(dir), null, "the live holder's claim stands");
      // the same live pid, recorded with another start time: the holder died and its pid went to a stranger
      fs.writeFileSync(path.join(dir, ".claim.json"), JSON.stringify({ ...real, start: `${real.start}0` }));
      assert.equal(claimHolder(dir), null, "a stranger with the holder's pid holds nothing");
      const release = tryClaim(dir);
      assert.ok(release, "a reused pid blocked the folder");
      release();
    } finally {
      holder.kill("SIGKILL");
    }
  },
);
