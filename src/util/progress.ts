/**
 * Progress of a long stage as plain log lines (for logs, CI and pipes, where a progress bar is noise):
 * a UTC timestamp, done/total, the rate over this run and an ETA, at most one line per interval plus the last.
 *
 *   2026-11-29T10:04:12Z identify 96/848 (11.3%) 0.41/s, elapsed 3m 54s, ETA 30m 33s | 212 tokens/s
 *
 * The rate counts only what this process did (a resumed stage starts its clock at the first report), so the
 * ETA is what the user will wait, not an average polluted by work done before a restart.
 */

/** 3.2 s, 4m 05s, 2h 07m */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${String(Math.round(seconds - m * 60)).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m - h * 60).padStart(2, "0")}m`;
}

/** 12.3/s, or 4.1 s each when slower than one per second */
export function formatRate(perSecond: number): string {
  if (!(perSecond > 0) || !Number.isFinite(perSecond)) return "?/s";
  if (perSecond >= 1) return `${perSecond >= 100 ? Math.round(perSecond) : perSecond.toPrecision(3)}/s`;
  return `${(1 / perSecond).toPrecision(3)} s each`;
}

export interface ProgressMeterOptions {
  /** seconds between lines (the first report and the last always print); default 10 */
  intervalSeconds?: number;
  /** clock in milliseconds, for tests */
  now?: () => number;
}

/** One stage's plain progress lines. */
export class ProgressMeter {
  private readonly interval: number;
  private readonly now: () => number;
  private start = -1;
  private startDone = 0;
  private lastLine = -Infinity;
  private lines = 0;
  private lastDone = -1;
  private lastTotal = -1;

  constructor(
    readonly stage: string,
    opts: ProgressMeterOptions = {},
  ) {
    this.interval = (opts.intervalSeconds ?? 10) * 1000;
    this.now = opts.now ?? Date.now;
  }

  /**
   * The line to print for this report, or null when it is too soon after the last one. The first report only
   * starts the clock (with nothing done yet in this process there is no rate to show) unless it is final; the
   * next one prints at once, so the rate shows early; then one line per interval and the last.
   */
  update(done: number, total: number, extra = ""): string | null {
    const t = this.now();
    const final = done >= total;
    // a new run of the same stage (an experiment's next cell trains again): its own clock, not the last run's
    if (this.lastDone >= this.lastTotal || done < this.lastDone || total !== this.lastTotal) {
      this.start = -1;
      this.lines = 0;
    }
    this.lastDone = done;
    this.lastTotal = total;
    if (this.start < 0) {
      this.start = t;
      this.startDone = done;
      this.lastLine = t;
      if (!final) return null;
    }
    if (!final && this.lines > 0 && t - this.lastLine < this.interval) return null;
    this.lastLine = t;
    this.lines++;
    const elapsed = (t - this.start) / 1000;
    const rate = elapsed > 0 ? (done - this.startDone) / elapsed : NaN;
    const pct = total > 0 ? ` (${((100 * done) / total).toFixed(1)}%)` : "";
    const eta = final ? "done" : `ETA ${formatDuration((total - done) / rate)}`;
    const stamp = new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z");
    return `${stamp} ${this.stage} ${done}/${total}${pct} ${formatRate(rate)}, elapsed ${formatDuration(elapsed)}, ${eta}${extra ? ` | ${extra}` : ""}`;
  }
}
