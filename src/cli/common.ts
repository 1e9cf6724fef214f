/**
 * What every command shares (config files and --set overrides are resolved in src/config/): progress bars with ETA on a TTY (plain log lines otherwise), `--json` output, exit codes, and Ctrl-C / SIGTERM
 * that stop at the next checkpoint instead of killing the process mid-write.
 */
import { SingleBar, Presets } from "cli-progress";
import { GoodVibeError, fromSystemError } from "../errors.js";
import { staleTempsCleaned, type StaleTemp } from "../io/atomic.js";
import { formatBytes } from "../util/memory.js";
import type { Logger } from "../util/log.js";
import { ProgressMeter } from "../util/progress.js";

export const EXIT = { ok: 0, internal: 1, input: 2, resource: 3, interrupted: 130 } as const;

export interface GlobalOptions {
  json?: boolean;
  quiet?: boolean;
}

// ---------------------------------------------------------------- output and progress
export function makeLogger(opts: GlobalOptions): Logger & { done(): void } {
  const tty = process.stderr.isTTY && !opts.json && !opts.quiet;
  let bar: SingleBar | null = null;
  let barStage = "";
  const meters = new Map<string, ProgressMeter>();
  const stopBar = () => {
    bar?.stop();
    bar = null;
  };
  return {
    info(msg) {
      if (opts.quiet) return;
      stopBar();
      process.stderr.write(`${msg}\n`);
    },
    warn(msg) {
      stopBar();
      process.stderr.write(`warning: ${msg}\n`);
    },
    progress(stage, done, total, extra = "") {
      if (opts.quiet) return;
      if (tty) {
        if (!bar || barStage !== stage) {
          stopBar();
          bar = new SingleBar(
            {
              format: `${stage.padEnd(9)} [{bar}] {value}/{total} | ETA {eta_formatted} | {extra}`,
              hideCursor: true,
            },
            Presets.shades_classic,
          );
          bar.start(total, done, { extra });
          barStage = stage;
        }
        bar.update(done, { extra });
        if (done >= total) stopBar();
        return;
      }
      // not a TTY: timestamped plain lines with rate and ETA, one per interval and the last
      let meter = meters.get(stage);
      if (!meter) meters.set(stage, (meter = new ProgressMeter(stage)));
      const line = meter.update(done, total, extra);
      if (line) process.stderr.write(`${line}\n`);
    },
    done: stopBar,
  };
}

export function output(opts: GlobalOptions, human: string, data: unknown): void {
  const stale = staleTemps();
  if (opts.json) {
    // an object result carries them beside its fields; a list result (report's files) keeps its shape
    const withStale =
      stale && data !== null && typeof data === "object" && !Array.isArray(data)
        ? { ...data, staleTemporaries: stale.json }
        : data;
    process.stdout.write(JSON.stringify(withStale, replacer, 2) + "\n");
  } else {
    const text = stale ? `${human.replace(/\n$/, "")}\n${stale.text}` : human;
    process.stdout.write(text.endsWith("\n") ? text : text + "\n");
  }
}

/**
 * The temporaries of killed runs (SIGKILL, the OOM killer, a preempted node) that this command's writes removed:
 * a model export's is as large as the model, so the user is told what went and what it freed. Null when none.
 */
function staleTemps(): {
  text: string;
  json: { removed: StaleTemp[]; restored: StaleTemp[]; bytesFreed: number };
} | null {
  const all = staleTempsCleaned();
  if (all.length === 0) return null;
  const removed = all.filter((t) => t.restoredTo === undefined);
  const restored = all.filter((t) => t.restoredTo !== undefined);
  const bytesFreed = removed.reduce((n, t) => n + t.bytes, 0);
  const lines: string[] = [];
  if (removed.length)
    lines.push(
      `removed ${removed.length} temporar${removed.length === 1 ? "y" : "ies"} of killed goodvibe runs ` +
        `(${formatBytes(bytesFreed)} freed):`,
      ...removed.map((t) => `  ${t.path} (${formatBytes(t.bytes)}, process ${t.pid})`),
    );
  for (const t of restored)
    lines.push(
      `put back ${t.restoredTo}, which a killed run (process ${t.pid}) had moved aside to ${t.path}`,
    );
  return { text: lines.join("\n"), json: { removed, restored, bytesFreed } };
}

function replacer(_k: string, v: unknown): unknown {
  return typeof v === "number" && !Number.isFinite(v) ? null : v;
}

// ---------------------------------------------------------------- Ctrl-C and SIGTERM
let controller: AbortController | null = null;
/**
 * SIGINT and SIGTERM abort the returned signal: long stages then save a checkpoint at their next stop point
 * (util/stop.ts), within a step, and the command exits 130. A second signal exits 130 at once: every file is
 * written atomically (temp + rename), and the temporaries being filled are removed on exit (io/atomic.ts), so an
 * early exit leaves nothing half-written (a SIGKILL leaves a stale temporary that the next run removes). Only
 * commands that pass the signal to their stages install it; the others keep the default action.
 */
export function interruptSignal(log: Logger): AbortSignal {
  if (controller) return controller.signal;
  const c = new AbortController();
  controller = c;
  const onSignal = (sig: NodeJS.Signals) => {
    if (c.signal.aborted) {
      process.stderr.write(`${sig} again: exiting now\n`);
      process.exit(EXIT.interrupted);
    }
    log.warn(`${sig}: stopping at the next checkpoint (send it again to quit now)`);
    c.abort(new Error(sig));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return c.signal;
}

/** Run a command body with the project's error → exit-code mapping. */
export async function runCommand(opts: GlobalOptions, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (caught) {
    // a full disk or an unwritable path is the user's to fix: exit 3 or 2 with the path, no stack
    const e = caught instanceof GoodVibeError ? caught : (fromSystemError(caught) ?? caught);
    if (e instanceof GoodVibeError) {
      process.stderr.write(`${e.exitCode === EXIT.interrupted ? "interrupted" : "error"}: ${e.message}\n`);
      process.exitCode = e.exitCode;
      // what was cleaned before the failure was cleaned all the same
      const stale = staleTemps();
      if (stale && !opts.json) process.stderr.write(`${stale.text}\n`);
      if (opts.json)
        process.stdout.write(
          JSON.stringify({
            error: e.message,
            exitCode: e.exitCode,
            ...(stale && { staleTemporaries: stale.json }),
          }) + "\n",
        );
      return;
    }
    const err = e as Error;
    process.stderr.write(`internal error: ${err.stack ?? err.message}\n`);
    process.exitCode = EXIT.internal;
  }
}
