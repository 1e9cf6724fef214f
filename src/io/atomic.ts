/**
 * Every write of the project goes through here, with three promises:
 * - a file or folder appears complete or not at all (temp sibling + fsync + rename);
 * - an output never replaces or deletes what the project did not create: an existing non-empty output is
 *   refused unless the user says so, and then moved aside (renamed), never deleted;
 * - an output is never an input, inside one, or around one, compared by where paths really lead (symlinks, bind
 *   mounts, `..`), not by how they are spelled.
 * Temporaries are named `.NAME.tmp-PID-TIME-HOST`; those of dead processes of this host are removed (or, for a
 * folder that was being replaced, put back) by the next write into the same folder or by `cleanStaleTemps`; a
 * PID in use again by a process that started after TIME is dead too (PID reuse: /proc's start times). HOST
 * is there because workers on several machines (Slurm nodes, Kubernetes pods with their own PID namespaces) share
 * one output or cache folder: another host's PID says nothing here, so its temporaries are never touched.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InputError, InterruptedError, withPath } from "../errors.js";
import { stopRequested } from "../util/stop.js";

// ---------------------------------------------------------------- where paths really lead
/** fs.realpath of `p`'s nearest existing ancestor, with the rest of `p` joined on (for paths yet to be made). */
export function realPathOf(p: string): string {
  let cur = path.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(cur), ...rest.reverse());
    } catch {
      const up = path.dirname(cur);
      if (up === cur) return path.resolve(p);
      rest.push(path.basename(cur));
      cur = up;
    }
  }
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/**
 * True when `inner` is `outer` or lies inside it: by real path, or by device and inode (a bind mount shows one
 * folder under two real paths; a hard link one file under two names).
 */
export function isSameOrInside(inner: string, outer: string): boolean {
  const ro = realPathOf(outer);
  const ri = realPathOf(inner);
  if (ri === ro || ri.startsWith(ro.endsWith(path.sep) ? ro : ro + path.sep)) return true;
  const so = statOrNull(outer);
  if (!so) return false;
  // the chain of existing folders from inner up to the root, each compared with outer
  let cur = ri;
  while (!statOrNull(cur)) cur = path.dirname(cur);
  for (;;) {
    const s = statOrNull(cur);
    if (s && s.dev === so.dev && s.ino === so.ino) return true;
    const up = path.dirname(cur);
    if (up === cur) return false;
    cur = up;
  }
}

// ---------------------------------------------------------------- checking an output before any work
export interface OutputCheck {
  /** how the user named it, for messages: "--out", "-o" */
  flag: string;
  path: string;
  kind: "folder" | "file";
  /** paths the output must not be, be inside, or contain, by the flag that named them */
  inputs?: Record<string, string | undefined | null>;
  /**
   * the user allows replacing an existing output (it is moved aside when the new one is published). Present, even
   * undefined, where the command offers --overwrite for this path: only then does a refusal suggest it.
   */
  overwrite?: boolean;
  /** a folder the project keeps working in (a run or cache folder): accepted when every entry passes */
  ownEntry?: (name: string) => boolean;
}

/** What an existing output is: absent, ours to continue (or empty), or someone's that must not be touched. */
export type OutputState = "absent" | "empty" | "own" | "occupied";

export function outputState(
  p: string,
  kind: "folder" | "file",
  ownEntry?: (name: string) => boolean,
): OutputState {
  const st = statOrNull(p);
  let lst: fs.Stats | null = null;
  try {
    lst = fs.lstatSync(p);
  } catch {
    // absent
  }
  if (!st) return lst ? "occupied" : "absent"; // a dangling symlink is someone's
  // /dev/stdout and /dev/fd/N name a process's descriptor: moved aside, the link is gone for everyone (as root)
  if (lst?.isSymbolicLink()) {
    const target = path.resolve(path.dirname(p), fs.readlinkSync(p));
    if (/^\/(proc|dev\/fd)\//.test(target))
      throw new InputError(
        `${p}: a link to a process's file descriptor (${target}), not a file goodvibe can write or move aside; choose another output path`,
      );
  }
  // a device, a pipe or a socket (as root `-o /dev/null --overwrite` would have renamed the system's /dev/null aside)
  if (!st.isFile() && !st.isDirectory())
    throw new InputError(
      `${p}: a ${st.isFIFO() ? "pipe (FIFO)" : st.isSocket() ? "socket" : "device"}, not a file or folder goodvibe can write or move aside; choose another output path`,
    );
  if (kind === "file") return "occupied";
  if (!st.isDirectory()) return "occupied";
  const entries = fs.readdirSync(p).filter((e) => !isTempName(e));
  if (entries.length === 0) return "empty";
  return ownEntry && entries.every(ownEntry) ? "own" : "occupied";
}

/**
 * Check an output before any work is done, so that a refusal costs nothing: exit 2 naming the conflict when the
 * output is, contains or lies inside an input, when it is an existing file or non-empty folder the project may
 * not continue (unless `overwrite`), or when its parent is a file.
 */
export function checkOutput(o: OutputCheck): OutputState {
  // `-o newdir/` asks for a folder: a file output written as "newdir" would not be what was asked
  if (o.kind === "file" && /[/\\]$/.test(o.path))
    throw new InputError(
      `${o.flag} ${o.path}: ends with a slash, a folder; this output is a file: give its file name`,
    );
  for (const [flag, input] of Object.entries(o.inputs ?? {})) {
    if (!input) continue;
    if (isSameOrInside(o.path, input))
      throw new InputError(
        `${o.flag} ${o.path}: the output ${isSameOrInside(input, o.path) ? "is" : "lies inside"} the input ${flag} ${input}; ` +
          `choose an output outside every input`,
      );
    if (isSameOrInside(input, o.path))
      throw new InputError(
        `${o.flag} ${o.path}: the output folder contains the input ${flag} ${input}; choose an output outside every input`,
      );
  }
  let parent = path.dirname(path.resolve(o.path));
  while (!statOrNull(parent)) {
    // a link to nowhere, or a loop, is no folder to make: mkdir through it fails at the end of the work
    if (lstatOrNull(parent))
      throw new InputError(
        `${o.flag} ${o.path}: ${parent} is a symbolic link to a missing place (or a loop of links); choose a folder that exists`,
      );
    parent = path.dirname(parent);
  }
  if (!statOrNull(parent)!.isDirectory())
    throw new InputError(`${o.flag} ${o.path}: ${parent} is a file, not a folder`);
  refusePseudoFileSystem(o, parent);
  // a read-only or forbidden location fails now, not when the result of hours of work is published there
  refuseUnwritable(o, parent);
  if (o.kind === "folder" && statOrNull(o.path)?.isDirectory()) refuseUnwritable(o, path.resolve(o.path));
  const state = outputState(o.path, o.kind, o.ownEntry);
  if (state === "occupied" && !o.overwrite) {
    const isDir = o.kind === "folder" && statOrNull(o.path)?.isDirectory() === true;
    // a folder the tool keeps working in: which entries are not the tool's, so the user knows what is in the way
    const foreign =
      isDir && o.ownEntry ? fs.readdirSync(o.path).filter((e) => !isTempName(e) && !o.ownEntry!(e)) : [];
    const listed = foreign.length
      ? ` (${foreign
          .slice(0, 3)
          .map((e) => JSON.stringify(e))
          .join(", ")}${foreign.length > 3 ? `, … ${foreign.length} in all` : ""}: not goodvibe's)`
      : "";
    throw new InputError(
      `${o.flag} ${o.path}: ${isDir ? "exists and is not empty" : "exists"}${listed}; choose a new path` +
        ("overwrite" in o
          ? `, or pass --overwrite to move it aside (renamed to ${path.basename(o.path)}.old-…, never deleted) and write a new one`
          : o.ownEntry
            ? ", or one that holds only what goodvibe writes there (--overwrite does not apply to it)"
            : " (--overwrite does not apply to it)"),
    );
  }
  return state;
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null;
  }
}

/**
 * statfs magic numbers of kernel pseudo file systems (linux/magic.h): proc, sysfs, debugfs, securityfs, cgroup,
 * cgroup2, devpts. root may write there by access(2), but no file goodvibe writes can live there (Node's recursive
 * mkdir spins on /proc: mkdir ENOENT, its parent EEXIST, again).
 */
const PSEUDO_FS = new Map<number, string>([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x64626720, "debugfs"],
  [0x73636673, "securityfs"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0x1cd1, "devpts"],
]);

function refusePseudoFileSystem(o: OutputCheck, dir: string): void {
  let type: number;
  try {
    type = Number(fs.statfsSync(dir).type);
  } catch {
    return; // statfs unavailable: the write says what is wrong
  }
  const name = PSEUDO_FS.get(type);
  if (name)
    throw new InputError(
      `${o.flag} ${o.path}: ${dir} is on the kernel's ${name} file system, where no output can be written; choose a folder on a disk`,
    );
}

function refuseUnwritable(o: OutputCheck, dir: string): void {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EROFS" && code !== "EACCES" && code !== "EPERM") throw e;
    throw new InputError(
      `${o.flag} ${o.path}: ${dir} cannot be written (${code === "EROFS" ? "read-only file system" : "permission denied"}); choose a writable location`,
    );
  }
}

// ---------------------------------------------------------------- temporaries
// HOST is optional when read: names written before it was added belong to this host.
const TEMP = /^\.(.+)\.tmp-(\d+)-(\d+)(?:-([0-9a-f]{8}))?(\.old)?$/;

/** This machine's tag in temporary names: 8 hex digits of its host name's SHA-256 (any host name is safe). */
export const HOST_TAG = createHash("sha256").update(os.hostname()).digest("hex").slice(0, 8);

function isTempName(name: string): boolean {
  return TEMP.test(name);
}

/**
 * The path a temporary will be published as (`/x/.out.tmp-…` → `/x/out`), or `p` itself: messages name what the user
 * asked for, not a hidden name they never typed.
 */
export function publishedPath(p: string): string {
  const m = TEMP.exec(path.basename(p));
  return m ? path.join(path.dirname(p), m[1]!) : p;
}

/**
 * Names of the temporaries this process is making: its own, whatever the wall clock did since (writerAlive); each
 * is forgotten once published or removed, so that a process writing many files does not hold every name.
 */
const madeHere = new Set<string>();

function tempName(target: string): string {
  const base = `.${path.basename(target)}.tmp-${process.pid}-${Date.now()}-${HOST_TAG}`;
  madeHere.add(base);
  return path.join(path.dirname(target), base);
}

/**
 * The temporaries this process is filling. A process that exits before publishing them (a second Ctrl-C exits at
 * once: cli/common.ts) removes them on its way out; only SIGKILL or a crash leaves one, for the next write into
 * the same folder to remove (sweepFolder, cleanStaleTemps).
 */
const filling = new Set<string>();
let exitHooked = false;

/** Run `work` with `tmp` removed at process exit unless `work` has finished (published or removed it). */
async function whileFilling<T>(tmp: string, work: () => Promise<T>): Promise<T> {
  if (!exitHooked) {
    exitHooked = true;
    // 'exit' handlers run synchronously: rmSync
    process.on("exit", () => {
      for (const t of filling) fs.rmSync(t, { recursive: true, force: true });
    });
  }
  filling.add(tmp);
  try {
    return await work();
  } finally {
    filling.delete(tmp);
    madeHere.delete(path.basename(tmp));
  }
}

/**
 * A process now running with this PID that started more than this long after a temporary's TIME (when its name
 * was made, by its writer, which was running then) is not its writer: the PID was reused. The slack covers
 * /proc's whole-second boot time and a forward step of the wall clock while a writer runs; within it a reused PID
 * keeps a dead writer's temporary until that process ends (safe: never a live writer's removed).
 */
const PID_REUSE_SLACK_MS = 60_000;

/** /proc's clock ticks per second (USER_HZ: 100 on every Linux architecture Node runs on; checked below). */
const USER_HZ = 100;

/** When the process `pid` started (epoch ms) from /proc, or null where that cannot be read (not Linux, hidepid). */
function processStartMs(pid: number | "self"): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) is in parentheses and may hold spaces and ')': fields after the last ')'
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[19]); // field 22, starttime: clock ticks after boot
    const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync("/proc/stat", "utf8"))?.[1]);
    if (!Number.isFinite(ticks) || !Number.isFinite(btime)) return null;
    return btime * 1000 + (ticks * 1000) / USER_HZ;
  } catch {
    return null;
  }
}

/**
 * Whether /proc's start times can be trusted here: this process's own, read from /proc, agrees with what Node
 * measured at start. Not on a clock stepped since, a time namespace, or another USER_HZ: then a live PID counts
 * as the writer, as before start times were read.
 */
let startTimesTrusted: boolean | undefined;
function trustStartTimes(): boolean {
  if (startTimesTrusted === undefined) {
    const own = processStartMs("self");
    startTimesTrusted = own !== null && Math.abs(own - performance.timeOrigin) < 5_000;
  }
  return startTimesTrusted;
}

/**
 * Whether the writer of a temporary of this host, named by process `pid` at epoch ms `time`, may still be running:
 * its PID is in use (by any user) and the process using it did not start after the name was made.
 */
function writerAlive(pid: number, time: number, name: string): boolean {
  if (pid === process.pid && madeHere.has(name.replace(/\.old$/, ""))) return true;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false; // EPERM: alive, someone else's
  }
  if (!trustStartTimes()) return true;
  const started = processStartMs(pid);
  return started === null || started <= time + PID_REUSE_SLACK_MS;
}

/** A stale temporary of a dead writer that a write removed (or, a folder moved aside while replaced, put back). */
export interface StaleTemp {
  path: string;
  /** its size (all its files' sizes for a folder): the disk freed; 0 for one put back */
  bytes: number;
  /** the dead writer's PID */
  pid: number;
  /** where a complete folder that was being replaced was put back (its target was missing) */
  restoredTo?: string;
}

/** Every stale temporary this process has removed or put back, in order: the CLI reports them (cli/common.ts). */
const cleaned: StaleTemp[] = [];

export function staleTempsCleaned(): readonly StaleTemp[] {
  return cleaned;
}

/** Bytes in `p` (a file, or a folder's files at any depth), by lstat: links are not followed. */
function sizeOf(p: string): number {
  const st = fs.lstatSync(p);
  if (!st.isDirectory()) return st.size;
  let n = 0;
  for (const e of fs.readdirSync(p)) n += sizeOf(path.join(p, e));
  return n;
}

/**
 * Remove the temporaries that dead processes of this host left in `dir`, for targets named `only`, or all: a
 * half-written file or folder goes; a complete folder that was moved out of the way while being replaced
 * (`….old`) is put back when its target is missing. A live process's temporaries, and every temporary of another
 * host (whose PIDs cannot be checked from here), are never touched. With `sweep` (a write's sweep of its folder),
 * only names that carry this host's tag and entries of this user count: a name without the tag (written before
 * tags, 2026-11-29) is too plain to be sure it is ours unless it is the target's own, and another user's
 * temporaries are theirs to clean. A temporary that cannot be removed (permissions) is passed over: it must not
 * fail the write. Returns what was removed or put back.
 */
export function cleanStaleTemps(dir: string, only?: string, sweep = false): StaleTemp[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const uid = process.getuid?.();
  const done: StaleTemp[] = [];
  for (const name of names) {
    const m = TEMP.exec(name);
    // `..NAME.tmp-….tmp-…`: the temporary of a temporary, which GGUF exports before 2026-11-30 wrote (the writer's
    // own temporary inside publishFile's); it belongs to NAME too, or a killed export's file would stay for good
    if (!m || (only !== undefined && m[1] !== only && TEMP.exec(m[1]!)?.[1] !== only)) continue;
    if (m[4] === undefined ? sweep : m[4] !== HOST_TAG) continue;
    const pid = Number(m[2]);
    if (writerAlive(pid, Number(m[3]), name)) continue;
    const p = path.join(dir, name);
    const target = path.join(dir, m[1]!);
    try {
      const st = fs.lstatSync(p);
      // the project writes files and folders only; a link or another user's entry is not for a sweep to remove
      if (!st.isFile() && !st.isDirectory()) continue;
      if (sweep && uid !== undefined && st.uid !== uid) continue;
      if (m[5] && !fs.existsSync(target)) {
        fs.renameSync(p, target);
        done.push({ path: p, bytes: 0, pid, restoredTo: target });
      } else {
        const bytes = sizeOf(p);
        fs.rmSync(p, { recursive: true });
        done.push({ path: p, bytes, pid });
      }
    } catch {
      // gone meanwhile (another run cleaned it), or not ours to remove (EACCES, EPERM): left as it is
    }
  }
  cleaned.push(...done);
  return done;
}

/** When each folder was last swept (ms, this process's clock). */
const swept = new Map<string, number>();

/** A folder is swept again after this long: a long run also cleans up after a run killed while it worked. */
const SWEEP_AGAIN_MS = 60_000;

/**
 * Before a write into `dir`: remove the stale temporaries of dead processes of this host there, whatever their
 * target (a killed export of the 15 GB `a.gguf` must not wait for a write of that same name, which may never come).
 * Once a minute per folder at most: some folders are written to many times a second.
 */
function sweepFolder(dir: string): void {
  const now = Date.now();
  const last = swept.get(dir);
  if (last !== undefined && now - last >= 0 && now - last < SWEEP_AGAIN_MS) return;
  swept.set(dir, now);
  cleanStaleTemps(dir, undefined, true);
}

export function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // not every file system lets a folder be opened or synced; the rename itself is still atomic
  }
}

/**
 * A working folder the project fills over several runs (an experiment, the demo, a cache): absent, empty or
 * holding only what the project writes there is fine; anything else is refused before any work, or with
 * `overwrite` moved aside now so that the run starts in a fresh folder. Returns where it was moved, if it was.
 */
export function claimWorkFolder(o: OutputCheck): string | null {
  const state = checkOutput(o);
  if (state !== "occupied") return null;
  return moveAside(o.path);
}

/** `p` renamed to a free `p.old-<time>` beside it; returns the new name. */
export function moveAside(p: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
  let aside = `${p}.old-${stamp}`;
  for (let i = 2; fs.existsSync(aside); i++) aside = `${p}.old-${stamp}-${i}`;
  fs.renameSync(p, aside);
  return aside;
}

// ---------------------------------------------------------------- writing
/**
 * Write a file atomically: write to a temp file in the same folder, fsync, rename.
 * A crash leaves either the old file or the new one, never a partial one.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  writeFileAtomicFrom(
    file,
    typeof data === "string" ? [Buffer.from(data)] : data instanceof Uint8Array ? [data] : data,
  );
}

/**
 * Write all of `view` through `fd`, at byte `position` of the file or, without one, at its current offset. A disk
 * that fills up cuts a write short without an error (the next one fails): a caller that ignores the count leaves
 * the data partly unwritten and says nothing.
 */
export function writeWhole(fd: number, view: ArrayBufferView, position?: number): void {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  for (let off = 0; off < bytes.length;)
    off += fs.writeSync(fd, bytes, off, bytes.length - off, position === undefined ? null : position + off);
}

/**
 * writeFileAtomic for a file made piece by piece (a model's weights: a generator makes each tensor's bytes when
 * it is reached, so one is held at a time); stop marks are passed over (writeFileAtomicAsync honours them).
 * Whatever the pieces throw leaves no file and no temporary behind.
 */
export function writeFileAtomicFrom(file: string, pieces: Iterable<Piece>): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  sweepFolder(path.dirname(path.resolve(file)));
  const tmp = tempName(file);
  try {
    const fd = fs.openSync(tmp, "w");
    try {
      for (const p of pieces) if (p instanceof Uint8Array) writeWhole(fd, p);
      fs.fsyncSync(fd);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw withPath(e, file);
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } finally {
    madeHere.delete(path.basename(tmp));
  }
}

// ---------------------------------------------------------------- long writes that a stop request ends
/** A place in a stream of bytes where a long write may stop, and what comes next there ("tensor x (3 of 40)"). */
export interface StopMark {
  stopMark: string;
}

/**
 * What a stoppable writer takes: the file's bytes in order, with stop marks between them (before each tensor).
 * A lazy source (a generator) makes each piece only when the writer reaches it, so one tensor is held at a time.
 */
export type Piece = Uint8Array | StopMark;

/**
 * One tensor's consecutive parts as pieces, with a stop mark before each part after the first, the next part asked
 * for only after that mark: a generator makes a part when asked, so a stop inside the largest tensor waits for one
 * part's conversion, not the whole tensor's. Returns the bytes made; it stops asking once they exceed `expected`,
 * so too many bytes fail (the caller's check) before the excess is written.
 */
export function* partsWithStops(
  parts: Iterable<Uint8Array>,
  expected: number,
  which: string,
): Generator<Piece, number> {
  const it = parts[Symbol.iterator]();
  let n = 0;
  try {
    for (;;) {
      if (n > 0 && n < expected) yield { stopMark: `byte ${n} of ${which}` };
      const next = it.next();
      if (next.done) return n;
      n += next.value.byteLength;
      if (n > expected) return n;
      if (next.value.byteLength > 0) yield next.value;
    }
  } finally {
    // left before the parts ended (a stop, a failed write, too many bytes): close them as for-of would, so that a
    // generator's finally runs (fold's disposes the folded tensor its parts are cut from)
    it.return?.();
  }
}

/**
 * A piece larger than this is written in parts with a stop check between them: a stop then waits for one part
 * (tens of milliseconds on a disk), not for a whole 1 GB embedding.
 */
const STOP_CHECK_BYTES = 64 << 20;

/**
 * Write `pieces` through `fd`, checking `signal` (util/stop.ts: yields so that signal handlers run) at every stop
 * mark and between parts of a large piece; a stop ends with an InterruptedError naming `label` and where it stopped.
 * Without a signal nothing yields and nothing can stop.
 */
async function writePieces(
  fd: number,
  pieces: Iterable<Piece>,
  signal: AbortSignal | undefined,
  label: string,
): Promise<void> {
  let at = "the start";
  const stopped = (where: string) =>
    new InterruptedError(
      `writing ${label} stopped ${where} on request; the partial file was removed, nothing was published; ` +
        `rerun the same command to write it again`,
    );
  for (const p of pieces) {
    if (!(p instanceof Uint8Array)) {
      at = p.stopMark;
      if (await stopRequested(signal)) throw stopped(`before ${at}`);
      continue;
    }
    for (let off = 0; off < p.length;) {
      if (off > 0 && (await stopRequested(signal))) throw stopped(`inside ${at}`);
      const end = Math.min(p.length, off + STOP_CHECK_BYTES);
      writeWhole(fd, p.subarray(off, end));
      off = end;
    }
  }
}

/** Write `pieces` into the new file `tmp`, fsynced; on any error or stop the file is removed and the error thrown. */
async function writeTempFile(
  tmp: string,
  pieces: Iterable<Piece>,
  signal: AbortSignal | undefined,
  target: string,
): Promise<void> {
  const fd = fs.openSync(tmp, "w");
  try {
    await writePieces(fd, pieces, signal, path.basename(target));
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw withPath(e, target);
  }
  fs.closeSync(fd);
}

/**
 * writeFileAtomicFrom for a long write (a model's weights) that Ctrl-C must end promptly: `pieces` are written to a
 * temporary beside `file`, which is renamed into place when complete. When `signal` is aborted the write stops at
 * the next stop mark (or 64 MiB), the temporary is removed, and an InterruptedError (exit 130) is thrown; so does
 * any other error, leaving no temporary either.
 */
export async function writeFileAtomicAsync(
  file: string,
  pieces: Iterable<Piece>,
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  sweepFolder(path.dirname(path.resolve(file)));
  const tmp = tempName(file);
  await whileFilling(tmp, async () => {
    await writeTempFile(tmp, pieces, opts.signal, file);
    fs.renameSync(tmp, file);
  });
}

export interface WriteDirOptions {
  /** an existing non-empty folder is moved aside (renamed `NAME.old-…`) instead of refused */
  overwrite?: boolean;
  /**
   * the folder is the project's own state (a checkpoint) that the new one supersedes: the old one is deleted.
   * Never for a path the user named.
   */
  replaceOwn?: boolean;
  /** told where an existing folder was moved */
  onMovedAside?: (aside: string) => void;
}

/**
 * The name of a new temporary for `target` (an absolute path), its folder made, the temporaries that dead runs
 * left for the same target removed (those named before host tags too) and the folder swept.
 */
function freshTemp(target: string): string {
  const parent = path.dirname(target);
  fs.mkdirSync(parent, { recursive: true });
  cleanStaleTemps(parent, path.basename(target));
  sweepFolder(parent);
  return tempName(target);
}

/**
 * Build a folder atomically: `fill` writes into a temp sibling folder, which is renamed into place only when
 * `fill` returns (a failed or interrupted `fill` leaves nothing). An existing empty folder is replaced; a
 * non-empty one is refused unless `overwrite` (moved aside) or `replaceOwn` (deleted: the project's own state).
 */
export async function writeDirAtomic(
  dir: string,
  fill: (tmpDir: string) => void | Promise<void>,
  opts: WriteDirOptions = {},
): Promise<void> {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  const tmp = freshTemp(target);
  fs.mkdirSync(tmp);
  await whileFilling(tmp, async () => {
    try {
      await fill(tmp);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  });
  const state = outputState(target, "folder");
  if (state === "absent") fs.renameSync(tmp, target);
  else if (state === "empty") {
    fs.rmdirSync(target);
    fs.renameSync(tmp, target);
  } else if (opts.replaceOwn) {
    const old = `${tmp}.old`;
    fs.renameSync(target, old);
    fs.renameSync(tmp, target);
    fs.rmSync(old, { recursive: true, force: true });
  } else if (opts.overwrite) {
    const aside = moveAside(target);
    fs.renameSync(tmp, target);
    opts.onMovedAside?.(aside);
  } else {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new InputError(
      `${dir}: exists and is not empty; refusing to replace it (pass --overwrite to move it aside)`,
    );
  }
  fsyncDir(parent);
}

/**
 * A fresh temporary folder for `target` (beside it, named as every temporary, so that one a killed process left is
 * swept by the next write there), handed to `work` and removed when `work` ends, returns or throws, and at exit. For
 * a writer that stages files there and renames them into place itself (report/folder.ts).
 */
export async function withTempFolder<T>(target: string, work: (tmpDir: string) => Promise<T>): Promise<T> {
  const tmp = freshTemp(path.resolve(target));
  fs.mkdirSync(tmp);
  return whileFilling(tmp, async () => {
    try {
      return await work(tmp);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}

/**
 * Write a file whose path the user named: refused if it exists unless `overwrite`, and then the old file is
 * moved aside (never deleted). The new file appears complete or not at all.
 */
export function publishFile(
  file: string,
  write: (tmpFile: string) => void,
  opts: { overwrite?: boolean; onMovedAside?: (aside: string) => void } = {},
): void {
  const target = path.resolve(file);
  const tmp = freshTemp(target);
  try {
    try {
      write(tmp);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    publishTemp(file, target, tmp, opts);
  } finally {
    madeHere.delete(path.basename(tmp));
  }
}

/**
 * Put the file `tmp` in place as `target` unless `target` exists; false (nothing moved) when it does. A hard link
 * fails where a file appeared since the caller looked (a second export to the same path, finishing at the same
 * moment), where a rename would silently replace it; then the temporary's name goes. A file system without hard
 * links gets the rename.
 */
export function renameNoReplace(tmp: string, target: string): boolean {
  try {
    fs.linkSync(tmp, target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EMLINK") throw e;
    fs.renameSync(tmp, target);
    return true;
  }
  fs.unlinkSync(tmp);
  return true;
}

/** Put the finished temporary `tmp` in place as `target` (refused, or the old file moved aside, if it exists). */
function publishTemp(
  file: string,
  target: string,
  tmp: string,
  opts: { overwrite?: boolean; onMovedAside?: (aside: string) => void },
): void {
  // again when a file appears between the look and the move: refused, or moved aside too
  for (;;) {
    if (outputState(target, "file") !== "absent") {
      if (!opts.overwrite) {
        fs.rmSync(tmp, { force: true });
        throw new InputError(`${file}: exists; refusing to replace it (pass --overwrite to move it aside)`);
      }
      opts.onMovedAside?.(moveAside(target));
    }
    if (renameNoReplace(tmp, target)) break;
  }
  fsyncDir(path.dirname(target));
}

/**
 * publishFile for a long write that Ctrl-C must end promptly (a GGUF export): `pieces` are written to the
 * temporary as writeFileAtomicAsync writes them, stopping on `signal` with nothing left behind (no temporary, no
 * output; an existing output untouched).
 */
export async function publishFileAsync(
  file: string,
  pieces: Iterable<Piece>,
  opts: { overwrite?: boolean; onMovedAside?: (aside: string) => void; signal?: AbortSignal } = {},
): Promise<void> {
  const target = path.resolve(file);
  const tmp = freshTemp(target);
  await whileFilling(tmp, async () => {
    await writeTempFile(tmp, pieces, opts.signal, target);
    publishTemp(file, target, tmp, opts);
  });
}
