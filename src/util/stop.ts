/**
 * Cooperative stopping, the one mechanism every long loop uses (identification, clustering, training, fold,
 * generation and evaluation, experiment cells, organism pretraining).
 *
 * A stop request is an ordinary AbortSignal. Loops call `stopRequested(signal)` (or `stopPoint`) between units of
 * work — a batch, an optimiser micro-batch, a tensor, a cell — and, when it says so, save what they have and end
 * with an InterruptedError (exit 130). The call yields to the event loop first: libtorch calls block the thread,
 * and Node runs signal handlers (and AbortSignal.timeout's timers) only when the thread returns to the loop, so a
 * loop that never yields sees Ctrl-C only when it is over. The CLI turns SIGINT/SIGTERM into an aborted signal
 * (cli/common.ts); a library user passes any AbortSignal (a controller's, AbortSignal.timeout(ms)).
 */
import { setImmediate as nextTurn } from "node:timers/promises";
import { InterruptedError } from "../errors.js";

/**
 * Fault injection for tests (GOODVIBE_TEST_STOP_POINT_DELAY_MS): block the thread this long at every stop point
 * before yielding, as a long libtorch call would, so a test can deliver a real signal in the middle of a stage of
 * a tiny model. Read once; 0 (unset) in normal use.
 */
const testDelayMs = Math.max(0, Number(process.env.GOODVIBE_TEST_STOP_POINT_DELAY_MS ?? 0) || 0);
const sleeper = testDelayMs > 0 ? new Int32Array(new SharedArrayBuffer(4)) : null;

/**
 * True once `signal` is aborted. Yields to the event loop first so that pending signal handlers run. Without a
 * signal nothing can ask to stop, so it returns false at once (no yield, no cost).
 */
export async function stopRequested(signal: AbortSignal | undefined): Promise<boolean> {
  if (!signal) return false;
  if (sleeper) Atomics.wait(sleeper, 0, 0, testDelayMs);
  // two turns: a signal that arrived while the thread was blocked is read in the loop's poll phase, and one
  // setImmediate called from a continuation of that phase (an awaited file read) runs before the next poll
  if (!signal.aborted) await nextTurn();
  if (!signal.aborted) await nextTurn();
  return signal.aborted;
}

/** A stop point with nothing to save: throws InterruptedError naming `what` once `signal` is aborted. */
export async function stopPoint(signal: AbortSignal | undefined, what: string): Promise<void> {
  if (await stopRequested(signal)) throw interrupted(what);
}

/** The error a stopped stage ends with; `what` says where it stopped and what a rerun does. */
export function interrupted(what: string): InterruptedError {
  return new InterruptedError(`${what}; rerun the same command to resume`);
}
