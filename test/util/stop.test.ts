/**
 * util/stop.ts stopRequested: a signal that arrived while the thread was blocked (a libtorch call, a synchronous
 * load) is seen at the next stop point, whatever phase of the event loop that stop point is reached from. Node
 * reads signals in the loop's poll phase; a stop point reached from an awaited file read (a continuation of that
 * phase) and yielding only one setImmediate ran before the next poll, so the signal was seen one unit of work late
 * (a Ctrl-C during harden's start-up computed one more training step before stopping).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { stopRequested } from "../../src/util/stop.js";

const blockMs = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

test(
  "a signal received while the thread was blocked is seen at the next stop point, after a file read too",
  {
    skip: process.platform === "win32" ? "POSIX signals" : false,
  },
  async () => {
    for (const after of ["a file read", "a timer", "a setImmediate"] as const) {
      const c = new AbortController();
      const onSignal = () => c.abort(new Error("SIGUSR2"));
      process.on("SIGUSR2", onSignal);
      try {
        if (after === "a file read") await fs.promises.readFile(import.meta.filename ?? process.argv[1]!);
        else if (after === "a timer") await new Promise((r) => setTimeout(r, 1));
        else await new Promise((r) => setImmediate(r));
        // the signal arrives while the thread is busy, as Ctrl-C during a long synchronous call
        process.kill(process.pid, "SIGUSR2");
        blockMs(50);
        assert.equal(c.signal.aborted, false, "no handler can run while the thread is blocked");
        assert.equal(await stopRequested(c.signal), true, `the stop point after ${after} saw the signal`);
      } finally {
        process.off("SIGUSR2", onSignal);
      }
    }
  },
);

test("without a signal nothing can ask to stop; an aborted one is seen at once", async () => {
  assert.equal(await stopRequested(undefined), false);
  const c = new AbortController();
  assert.equal(await stopRequested(c.signal), false);
  c.abort();
  assert.equal(await stopRequested(c.signal), true);
});
