import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ResourceError } from "../errors.js";

// the peak as read before this process last handed memory back (holdPeakRss); 0 after a reset
let peakHeld = 0;

/**
 * Start this process's peak resident memory (VmHWM) afresh from what it holds now (Linux: "5" written to
 * /proc/self/clear_refs). A process that runs several jobs one after another (`experiment run`: the judge, then
 * every cell) measures each job's peak from its start, not the peak of every job before it. False where the
 * system does not allow it (not Linux, or a kernel before 4.0): the peak then stays the process's.
 */
export function resetPeakRss(): boolean {
  peakHeld = 0;
  try {
    fs.writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * Peak resident memory of this process (VmHWM, or the peak held before memory was handed back if higher), in bytes;
 * falls back to the current RSS off Linux.
 */
export function peakRssBytes(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
    if (m) return Math.max(Number(m[1]) * 1024, peakHeld);
  } catch {
    // not Linux
  }
  return Math.max(process.memoryUsage().rss, peakHeld);
}

/**
 * Keeps the peak so far before this process hands memory back to the system (tensor.ts releaseIdleMemory). The
 * kernel records VmHWM only at some events and reads it as the larger of that record and the current RSS; memory
 * given back by a heap trim (madvise) lowers the RSS without a record, so a later VmHWM read lower than an earlier
 * one (seen: a run's peak after its fold below its training's; test/recipes/peak-memory).
 */
export function holdPeakRss(): void {
  peakHeld = peakRssBytes();
}

/** Memory the kernel says can be given to us now (MemAvailable), in bytes. */
export function availableMemoryBytes(): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync("/proc/meminfo", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return os.freemem();
}

/** Bytes free to us on the file system that holds `dir` (or its nearest existing parent, for a new folder). */
export function freeDiskBytes(dir: string): number {
  let d = path.resolve(dir);
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  const s = fs.statfsSync(d);
  return s.bavail * s.bsize;
}

const UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** A byte count in the largest binary unit that keeps it at or above 1, three significant digits (1.50 MiB). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return `${bytes} bytes`;
  let v = Math.max(0, bytes);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${Math.round(v)} ${v === 1 ? "byte" : "bytes"}`;
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${UNITS[u]}`;
}
const fmt = formatBytes;

/**
 * Fail early, with the numbers (and what to do, when given), when a load or a write cannot fit. `available`: the
 * reading to check against (default MemAvailable now; tests give their own).
 */
export function requireMemory(
  bytes: number,
  what: string,
  fix?: string,
  available: number = availableMemoryBytes(),
): void {
  if (bytes > available)
    throw new ResourceError(
      `${what} needs about ${fmt(bytes)} of memory; only ${fmt(available)} is available${fix ? `: ${fix}` : ""}`,
    );
}

export function requireDisk(dir: string, bytes: number, what: string): void {
  const free = freeDiskBytes(dir);
  if (bytes > free)
    throw new ResourceError(`${what} needs about ${fmt(bytes)} of disk in ${dir}; only ${fmt(free)} is free`);
}
