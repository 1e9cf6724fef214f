/**
 * Claims on folders that several processes may compute in at once — an experiment's cells and shared inputs over
 * many workers (experiment/shard.ts), one run folder of `harden` / `train` (recipes/harden.ts), of `identify` (one
 * per shard with --shard: cli/commands/stages-run.ts) and of `judge train` (recipes/train-judge.ts), a report folder
 * while a render is put in place there (report/folder.ts). A claim is a file created exclusively and whole (a
 * temporary hard-linked into place) in the folder it claims, kept fresh by a heartbeat. A claim whose holder died
 * (same host: its process is gone, or its pid now names a process started at another time; any host: no heartbeat
 * for GOODVIBE_CLAIM_STALE_SECONDS, default 600) is taken over.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { InputError, withPath } from "../errors.js";
import { stopPoint } from "../util/stop.js";

const CLAIM = ".claim.json";
const TMP = ".tmp";

/** The names a claim puts in the folder it claims (the claim, its temporaries, a dead worker's moved aside). */
export function isClaimEntry(name: string): boolean {
  return (
    name === CLAIM ||
    (name.startsWith(CLAIM) && name.endsWith(TMP)) ||
    /^\.claim-stale-[0-9a-f]+\.json$/.test(name)
  );
}
const HEARTBEAT_MS = 30_000;

interface ClaimFile {
  host: string;
  pid: number;
  token: string;
  since: string;
  /** the holder's start time (processStart), where the system tells it: a reused pid is not the holder */
  start?: string;
}

const bootId = (() => {
  try {
    return fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return null;
  }
})();

/**
 * When process `pid` started, as the system tells it: Linux's boot id and start time in clock ticks since boot
 * (/proc/<pid>/stat field 22); null elsewhere or when it has gone. A pid is reused once its process is gone, so a
 * dead holder's pid may name a live stranger, which "is that pid alive?" alone takes for the holder.
 */
function processStart(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) is in parentheses and may hold spaces or ')': count fields after the last ')'
    const ticks = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    if (!ticks || !/^\d+$/.test(ticks)) return null;
    return `${bootId ?? ""}:${ticks}`;
  } catch {
    return null;
  }
}

const staleSeconds = () => Number(process.env.GOODVIBE_CLAIM_STALE_SECONDS ?? 600);
const pollMs = () => Number(process.env.GOODVIBE_CLAIM_POLL_MS ?? 2000);

/** Claims this process holds, by folder: a nested claim of the same folder is the same claim. */
const held = new Map<string, { depth: number; token: string; timer: NodeJS.Timeout }>();

// a process that ends with claims still held (an error, a stop) gives them back
process.once("exit", () => {
  for (const [key, h] of held)
    try {
      if (readClaim(path.join(key, CLAIM))?.token === h.token)
        fs.rmSync(path.join(key, CLAIM), { force: true });
    } catch {
      // best effort: a stale claim is taken over anyway
    }
});

type SeenClaim = ClaimFile & { mtimeMs: number };

/**
 * The claim in `file`; null when there is none. A claim file that exists but does not parse is one being written
 * (by a worker on a file system without hard links, or an older version: there the exclusive create and the write
 * of its content are two steps): it counts as held, with no known holder, until its modification time goes stale.
 */
function readClaim(file: string): SeenClaim | null {
  let mtimeMs: number;
  try {
    mtimeMs = fs.statSync(file).mtimeMs;
  } catch {
    return null;
  }
  try {
    return { ...(JSON.parse(fs.readFileSync(file, "utf8")) as ClaimFile), mtimeMs };
  } catch {
    return fs.existsSync(file) ? { host: "", pid: 0, token: "", since: "", mtimeMs } : null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function isStale(c: SeenClaim): boolean {
  if (c.host === os.hostname() && c.pid > 0 && !alive(c.pid)) return true;
  // alive, but not the holder: its pid reused by a process that started later
  if (c.host === os.hostname() && c.pid > 0 && c.start !== undefined) {
    const now = processStart(c.pid);
    if (now !== null && now !== c.start) return true;
  }
  // this process's pid on a claim it does not hold: a dead run that had the same pid (in a container the run is
  // often pid 1, and a restarted container gives the rerun the same pid and hostname)
  if (
    c.host === os.hostname() &&
    c.pid === process.pid &&
    ![...held.values()].some((h) => h.token === c.token)
  )
    return true;
  return Date.now() - c.mtimeMs > staleSeconds() * 1000;
}

/** Who holds the claim of `dir`, for messages; null when nobody (live) does. */
export function claimHolder(dir: string): string | null {
  const c = readClaim(path.join(dir, CLAIM));
  if (!c || isStale(c)) return null;
  return c.token ? `${c.host} pid ${c.pid} since ${c.since}` : "unknown (claim being written)";
}

/** Take the claim of `dir`, or return null when another live worker holds it. */
export function tryClaim(dir: string): (() => void) | null {
  const key = path.resolve(dir);
  const mine = held.get(key);
  if (mine) {
    mine.depth++;
    return () => release(key);
  }
  fs.mkdirSync(key, { recursive: true });
  const file = path.join(key, CLAIM);
  const token = randomBytes(8).toString("hex");
  const start = processStart(process.pid);
  const body: ClaimFile = {
    host: os.hostname(),
    pid: process.pid,
    token,
    since: new Date().toISOString(),
    ...(start !== null ? { start } : {}),
  };
  sweepTemporaries(key);
  for (let attempt = 0; attempt < 2; attempt++) {
    if (createClaim(file, body)) {
      const timer = setInterval(() => {
        const now = new Date();
        try {
          fs.utimesSync(file, now, now);
        } catch {
          // the folder went away (moved aside by --overwrite): nothing to keep fresh
        }
      }, HEARTBEAT_MS);
      timer.unref();
      held.set(key, { depth: 1, token, timer });
      return () => release(key);
    }
    const other = readClaim(file);
    if (other && !isStale(other)) return null;
    if (other) moveAsideIfStale(file, path.join(key, `.claim-stale-${token}.json`));
  }
  return null;
}

/**
 * Take the claim of `dir` for this run, or refuse at once (exit 2) with `refusal(holder)`, the holder named (host,
 * pid, since when): for a command computing in a run folder of its own, where a second run into the same output would
 * compute everything again beside the first and clash with it only at the end. A dead run's claim is taken over.
 */
export function claimOrRefuse(dir: string, refusal: (holder: string) => string): () => void {
  const release = tryClaim(dir);
  // the holder may have ended between the two looks: still a refusal (a rerun then finds the folder free)
  if (!release) throw new InputError(refusal(claimHolder(dir) ?? "another process"));
  return release;
}

/** Run `work` holding the claim of `dir` (claimOrRefuse), released when it ends, however it ends. */
export async function whileClaimed<T>(
  dir: string,
  refusal: (holder: string) => string,
  work: () => Promise<T>,
): Promise<T> {
  const release = claimOrRefuse(dir, refusal);
  try {
    return await work();
  } finally {
    release();
  }
}

/**
 * Create `file` with the claim's whole content, or return false when it exists. The content is written to a
 * temporary first and hard-linked into place (link fails when the name exists: as exclusive as O_EXCL), so the claim
 * appears complete or not at all. An exclusive create followed by a write would leave an empty claim when the worker
 * is killed between the two — one no reader can tell from a claim being written, so it would block the cell until
 * it went stale (GOODVIBE_CLAIM_STALE_SECONDS) instead of being taken over at once as a dead process's claim.
 */
function createClaim(file: string, body: ClaimFile): boolean {
  const tmp = `${file}.${body.token}${TMP}`;
  const text = JSON.stringify(body);
  try {
    // inside the try: a write that fails (a full disk) leaves no empty temporary, and its error names the claim
    try {
      fs.writeFileSync(tmp, text);
    } catch (e) {
      throw withPath(e, file);
    }
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS") throw e;
    // a file system without hard links: the exclusive create, with its short window
    try {
      fs.writeFileSync(file, text, { flag: "wx" });
      return true;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e2;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** A worker killed between writing its claim's temporary and removing it leaves the temporary: gone once stale. */
function sweepTemporaries(dir: string): void {
  const cutoff = Date.now() - staleSeconds() * 1000;
  for (const name of fs.readdirSync(dir)) {
    if (!name.startsWith(CLAIM) || !name.endsWith(TMP)) continue;
    try {
      if (fs.statSync(path.join(dir, name)).mtimeMs < cutoff)
        fs.rmSync(path.join(dir, name), { force: true });
    } catch {
      // another worker swept it first
    }
  }
}

/**
 * Move a dead worker's claim out of the way. Between reading it and moving it, another taker may have replaced it
 * with its own live claim: what was moved is read again, and a live claim is put back (link: only if the place is
 * still empty), so the exclusive create that follows decides between the takers.
 */
function moveAsideIfStale(file: string, aside: string): void {
  try {
    fs.renameSync(file, aside);
  } catch {
    return; // another taker moved it first
  }
  try {
    const moved = readClaim(aside);
    if (moved && !isStale(moved)) fs.linkSync(aside, file);
  } catch {
    // the place was taken again meanwhile: that claim stands, ours is dropped
  } finally {
    fs.rmSync(aside, { force: true });
  }
}

function release(key: string): void {
  const mine = held.get(key);
  if (!mine) return;
  if (--mine.depth > 0) return;
  clearInterval(mine.timer);
  held.delete(key);
  const file = path.join(key, CLAIM);
  // remove it only while it is still ours (a worker that took it over as stale keeps its own)
  if (readClaim(file)?.token === mine.token) fs.rmSync(file, { force: true });
}

/**
 * Wait (polling) until this worker holds the claim of `dir`; returns its release. With `waitMs`, a claim still held
 * by a live holder after that long throws `onTimeout(holder)` instead of waiting on (a stopped or hung holder must not
 * hang its waiter for ever).
 */
export async function holdClaim(
  dir: string,
  opts: {
    signal?: AbortSignal;
    onWait?: (holder: string) => void;
    waitMs?: number;
    onTimeout?: (holder: string) => Error;
  } = {},
): Promise<() => void> {
  let told = false;
  const deadline = opts.waitMs === undefined ? Infinity : Date.now() + opts.waitMs;
  for (;;) {
    const release = tryClaim(dir);
    if (release) return release;
    if (Date.now() >= deadline) {
      const holder = claimHolder(dir) ?? "another worker";
      throw opts.onTimeout?.(holder) ?? new Error(`${dir}: still held by ${holder}`);
    }
    if (!told) {
      opts.onWait?.(claimHolder(dir) ?? "another worker");
      told = true;
    }
    await stopPoint(opts.signal, `stopped while waiting for ${dir}`);
    await new Promise((r) => setTimeout(r, pollMs()));
  }
}

/**
 * Compute something shared in place under the claim of `dir`: when `isDone()` already, nothing; when another
 * worker holds the claim, wait (polling) until it is done or the claim goes stale; otherwise compute it.
 */
export async function whenClaimed<T>(
  dir: string,
  isDone: () => boolean,
  compute: () => Promise<T>,
  opts: { signal?: AbortSignal; onWait?: (holder: string) => void } = {},
): Promise<T | null> {
  let told = false;
  for (;;) {
    if (isDone()) return null;
    const release = tryClaim(dir);
    if (release) {
      try {
        if (isDone()) return null; // finished by the holder we waited for
        return await compute();
      } finally {
        release();
      }
    }
    if (!told) {
      opts.onWait?.(claimHolder(dir) ?? "another worker");
      told = true;
    }
    await stopPoint(opts.signal, `stopped while waiting for ${dir}`);
    await new Promise((r) => setTimeout(r, pollMs()));
  }
}
