/**
 * Run untrusted generated code (HumanEval completions) contained, on Linux, with bubblewrap (`bwrap`, Debian's
 * `bubblewrap`, the sandbox Flatpak uses) rather than hand-written namespace code:
 *   - a new mount namespace whose root holds only the system folders an interpreter needs, read-only (/usr and
 *     the /bin, /lib* links or folders), plus any `readOnlyPaths` (an interpreter outside /usr); nothing of the
 *     user's: no home, no working folder, no model folders, no /run, /var, /sys, /etc;
 *   - private, size-limited tmpfs at /tmp, /var/tmp, /dev/shm and the working folder /sandbox, gone afterwards;
 *     a minimal /dev;
 *   - new PID namespace with its own /proc (host processes are invisible), new network namespace (no network,
 *     no host abstract sockets), new IPC and UTS namespaces;
 *   - run as nobody when the caller is root (kuid 65534, so RLIMIT_NPROC is enforced), no capabilities,
 *     no_new_privs, and no further user namespaces where bwrap can forbid them;
 *   - prlimit: address space, CPU seconds, file size, processes, no core dumps;
 *   - wall-clock timeout that SIGKILLs bwrap, which takes the whole PID namespace with it; stdout/stderr capped.
 * When this cannot be set up (no bwrap, no namespaces) it refuses, unless the caller explicitly allows running
 * unsandboxed (`allowUnsandboxed`, or GOODVIBE_SANDBOX=off), which keeps only the limits and the nobody user.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InputError, ResourceError } from "../errors.js";

export interface SandboxOptions {
  cmd: string;
  args?: string[];
  stdin?: string;
  /** Files to create in the working folder (/sandbox), by relative path. */
  files?: Record<string, string | Uint8Array>;
  timeoutMs?: number;
  /** Address-space limit (RLIMIT_AS). */
  memoryMb?: number;
  cpuSeconds?: number;
  /** Largest file the code may write (RLIMIT_FSIZE). */
  fileSizeMb?: number;
  /** Size of each private tmpfs (/sandbox, /tmp, /var/tmp, /dev/shm); they live in memory. Default 64. */
  tmpfsMb?: number;
  /** Extra processes the code may start (on top of what its user already runs). */
  maxProcesses?: number;
  /** Bytes kept of each of stdout and stderr. */
  maxOutputBytes?: number;
  env?: Record<string, string>;
  /** Host folders made visible read-only at the same path (an interpreter installed outside /usr). */
  readOnlyPaths?: string[];
  /** Share the host's network namespace (the file system stays isolated). */
  allowNetwork?: boolean;
  /**
   * Run with limits only when no sandbox can be set up, instead of refusing. Default: true only when the
   * environment says GOODVIBE_SANDBOX=off.
   */
  allowUnsandboxed?: boolean;
}

export interface SandboxIsolation {
  /** "bwrap" (namespaces as above) or "none" (limits only; explicitly allowed). */
  tool: "bwrap" | "none";
  /** Own mount namespace: private tmp folders, no host files beyond the read-only system folders. */
  filesystem: boolean;
  network: boolean;
  pidNamespace: boolean;
  /** No user namespaces can be created inside. */
  noUserNamespaces: boolean;
  user: string;
}

export interface SandboxResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  durationMs: number;
  /** How the run was isolated, for the record. */
  isolation: SandboxIsolation;
}

/** Where the code runs inside the sandbox (its cwd and HOME). */
export const SANDBOX_DIR = "/sandbox";
const NOBODY = 65534;
/** Setting it to "off" lets code run with limits only when no sandbox can be made. */
export const SANDBOX_ENV = "GOODVIBE_SANDBOX";

/**
 * How bwrap is run:
 *  - "userns": bwrap makes a user namespace as an unprivileged user (the caller, or nobody when the caller is
 *    root: `setpriv` first), so nested user namespaces can be disabled;
 *  - "privileged": root runs bwrap without a user namespace, and `setpriv` drops to nobody inside (for hosts
 *    without unprivileged user namespaces, or read-only paths that nobody cannot reach on the host).
 */
export type Mode = "userns" | "privileged";

interface Probe {
  bwrap: string | null;
  modes: Mode[];
  /** Why no mode works (bwrap's own words). */
  failure?: string;
}

let bwrapOverride: string | null | undefined;
let forcedMode: Mode | undefined;
let cachedProbe: Probe | null = null;

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** Pretend bwrap is at `file` (or missing: `null`); `undefined` restores the search. Tests only. */
export function setBwrapForTests(file: string | null | undefined): void {
  bwrapOverride = file;
  cachedProbe = null;
}

/** Use only this mode (when it works here); `undefined` lets the probe choose. Tests only. */
export function setSandboxModeForTests(mode: Mode | undefined): void {
  forcedMode = mode;
}

/** The modes that work on this machine, best first. */
export function sandboxModes(): Mode[] {
  return [...probeSandbox().modes];
}

function which(name: string): string | null {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Resolve a command on PATH to an absolute path (the sandbox has another PATH). */
export function resolveCommand(cmd: string): string {
  if (cmd.includes("/")) return path.resolve(cmd);
  const found = which(cmd);
  if (!found) throw new InputError(`sandbox: command "${cmd}" not found on PATH`);
  return found;
}

/** The host's system folders the sandbox shows read-only: /usr, and /bin, /lib… as links or as folders. */
function systemMounts(): { args: string[]; roots: string[] } {
  const args = ["--ro-bind", "/usr", "/usr"];
  const roots = ["/usr"];
  for (const d of ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(d);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) args.push("--symlink", fs.readlinkSync(d), d);
    else if (st.isDirectory()) {
      args.push("--ro-bind", d, d);
      roots.push(d);
    }
  }
  return { args, roots };
}

function dropToNobody(): string[] {
  return ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--no-new-privs"];
}

/** The argv in front of the sandbox's own mount arguments, for one mode. */
function modePrefix(bwrap: string, mode: Mode, network: boolean): string[] {
  const ns = [
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    ...(network ? [] : ["--unshare-net"]),
    "--hostname",
    "sandbox",
    "--die-with-parent",
    "--new-session",
  ];
  if (mode === "userns")
    return [
      ...(isRoot() ? [...dropToNobody(), "--"] : []),
      bwrap,
      "--unshare-user",
      "--disable-userns",
      ...ns,
    ];
  return [bwrap, ...ns, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"];
}

/** Inside a privileged bwrap: become nobody with no capabilities at all. */
function modeInner(mode: Mode): string[] {
  return mode === "privileged" ? [...dropToNobody(), "--inh-caps=-all", "--bounding-set=-all", "--"] : [];
}

/** Find bwrap and which modes work on this machine (once per process). */
export function probeSandbox(): Probe {
  if (cachedProbe) return cachedProbe;
  const bwrap = bwrapOverride !== undefined ? bwrapOverride : which("bwrap");
  if (!bwrap || process.platform !== "linux") {
    cachedProbe = { bwrap: null, modes: [], failure: "bubblewrap (bwrap) is not installed" };
    return cachedProbe;
  }
  const trueCmd = resolveCommand("true");
  const modes: Mode[] = [];
  const failures: string[] = [];
  const candidates: Mode[] = isRoot() ? ["userns", "privileged"] : ["userns"];
  for (const mode of candidates) {
    const argv = [
      ...modePrefix(bwrap, mode, false),
      ...systemMounts().args,
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--",
      ...modeInner(mode),
      trueCmd,
    ];
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 15_000 });
    if (r.status === 0) modes.push(mode);
    else failures.push(`${mode}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`);
  }
  cachedProbe = { bwrap, modes, failure: modes.length ? undefined : failures.join("; ") };
  return cachedProbe;
}

/** Whether the code can be sandboxed here (for tests and for a clear message before a long evaluation). */
export function sandboxAvailable(): boolean {
  return probeSandbox().modes.length > 0;
}

function unsandboxedAllowed(opts: SandboxOptions): boolean {
  return opts.allowUnsandboxed ?? process.env[SANDBOX_ENV]?.toLowerCase() === "off";
}

/** nobody (uid 65534) may read `p` on the host (every parent searchable): needed to bind it in "userns" mode. */
const reachableCache = new Map<string, boolean>();
function nobodyCanRead(p: string): boolean {
  let ok = reachableCache.get(p);
  if (ok === undefined) {
    ok =
      spawnSync("setpriv", [...dropToNobody().slice(1), "--", "test", "-r", p], { stdio: "ignore" })
        .status === 0;
    reachableCache.set(p, ok);
  }
  return ok;
}

function isWithin(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** Extra read-only folders: real paths, never "/", and never a folder that holds the user's home or cwd. */
function checkReadOnlyPaths(paths: readonly string[]): string[] {
  return paths.map((p) => {
    if (!path.isAbsolute(p)) throw new InputError(`sandbox: read-only path "${p}" must be absolute`);
    let real: string;
    try {
      real = fs.realpathSync(p);
    } catch {
      throw new InputError(`sandbox: read-only path "${p}" does not exist`);
    }
    if (["/proc", "/dev", "/sys", SANDBOX_DIR].some((d) => isWithin(real, d)))
      throw new InputError(`sandbox: read-only path "${p}" is inside a folder the sandbox makes itself`);
    for (const [what, dir] of [
      ["the home folder", os.homedir()],
      ["the working folder", process.cwd()],
    ] as const)
      if (isWithin(dir, real))
        throw new InputError(
          `sandbox: read-only path "${p}" would expose ${what} (${dir}) to generated code`,
        );
    return real;
  });
}

/** Relative file name inside the working folder, refused if it leaves it. */
function checkFileName(rel: string): string {
  const norm = path.posix.normalize(rel);
  if (
    rel.includes("\0") ||
    path.posix.isAbsolute(norm) ||
    norm === "." ||
    norm.startsWith("../") ||
    norm === ".."
  )
    throw new InputError(`sandbox: file name "${rel}" leaves the sandbox folder`);
  return norm;
}

function countProcessesOf(uid: number): number {
  let n = 0;
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.statSync(`/proc/${entry}`).uid === uid) n++;
    } catch {
      // exited meanwhile
    }
  }
  return n;
}

let warnedUnsandboxed = false;

export async function runSandboxed(opts: SandboxOptions): Promise<SandboxResult> {
  if (process.platform !== "linux") throw new ResourceError("sandbox: needs Linux (bubblewrap, prlimit)");
  for (const tool of ["prlimit", ...(isRoot() ? ["setpriv"] : [])])
    if (!which(tool))
      throw new ResourceError(`sandbox: ${tool} (util-linux) is not installed; apt-get install util-linux`);

  const timeoutMs = opts.timeoutMs ?? 10_000;
  const memoryMb = opts.memoryMb ?? 1024;
  const cpuSeconds = opts.cpuSeconds ?? Math.max(1, Math.ceil(timeoutMs / 1000));
  const fileSizeMb = opts.fileSizeMb ?? 16;
  const tmpfsMb = opts.tmpfsMb ?? 64;
  const maxProcesses = opts.maxProcesses ?? 32;
  const maxOutputBytes = opts.maxOutputBytes ?? 1 << 20;
  for (const [k, v] of Object.entries({ timeoutMs, memoryMb, cpuSeconds, fileSizeMb, tmpfsMb, maxProcesses }))
    if (!Number.isInteger(v) || v < 1)
      throw new InputError(`sandbox: ${k} must be a positive integer, got ${v}`);
  const files = Object.entries(opts.files ?? {}).map(
    ([rel, content]) => [checkFileName(rel), content] as const,
  );
  const readOnly = checkReadOnlyPaths(opts.readOnlyPaths ?? []);
  // Run the command as named (a venv's python is a link whose location matters), check where it really is.
  const cmd = resolveCommand(opts.cmd);
  let realCmd: string;
  try {
    realCmd = fs.realpathSync(cmd);
  } catch {
    throw new InputError(`sandbox: command ${cmd} does not exist`);
  }

  const probe = probeSandbox();
  // "userns" mode binds as the unprivileged user, who must be able to read what is bound.
  const modes = probe.modes.filter(
    (m) =>
      (forcedMode === undefined || m === forcedMode) &&
      (m !== "userns" || !isRoot() || readOnly.every(nobodyCanRead)),
  );
  const mode = modes[0];
  if (!mode) {
    if (!unsandboxedAllowed(opts)) {
      const why =
        probe.modes.length > 0
          ? `the read-only paths ${readOnly.join(", ")} are not readable by nobody and bwrap cannot run privileged here`
          : probe.bwrap
            ? `bwrap cannot create the namespaces here (${probe.failure}); a non-root user needs unprivileged user namespaces`
            : "bubblewrap (bwrap) is not installed: apt-get install bubblewrap (scripts/install.sh does)";
      throw new ResourceError(
        `sandbox: refusing to run generated code without isolation: ${why}. ` +
          `Set ${SANDBOX_ENV}=off to run it anyway with resource limits only (it can then read your files and ` +
          `use the network).`,
      );
    }
    if (!warnedUnsandboxed) {
      warnedUnsandboxed = true;
      process.stderr.write(
        `warning: running generated code WITHOUT a sandbox (${SANDBOX_ENV}=off or allowUnsandboxed): ` +
          `only resource limits${isRoot() ? " and the nobody user" : ""} apply\n`,
      );
    }
  }

  const dropping = isRoot(); // both sandbox modes and the unsandboxed fallback run as nobody under root
  // RLIMIT_NPROC counts the processes of the real uid in the caller's user namespace: in a new one, only the
  // sandbox's own (bwrap's init and the code); otherwise every process the uid runs now, plus the allowance.
  const nproc =
    (mode === "userns" ? 2 : countProcessesOf(dropping ? NOBODY : process.getuid!())) + maxProcesses;
  const limited = [
    "prlimit",
    `--as=${memoryMb * 1024 * 1024}`,
    `--cpu=${cpuSeconds}`,
    `--fsize=${fileSizeMb * 1024 * 1024}`,
    `--nproc=${nproc}`,
    "--core=0",
    "--",
    cmd,
    ...(opts.args ?? []),
  ];

  // Files go in through file descriptors (bwrap --file), from a private host folder removed once bwrap started.
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), "gv-sandbox-"));
  const fds: number[] = [];
  let cwd = staging;
  try {
    let argv: string[];
    let isolation: SandboxIsolation;
    if (mode) {
      const sys = systemMounts();
      const visible = (p: string) => sys.roots.concat(readOnly).some((r) => isWithin(p, r));
      if (!visible(cmd) || !visible(realCmd))
        throw new InputError(
          `sandbox: ${cmd} is outside the folders the sandbox shows (${sys.roots.join(", ")}); ` +
            `pass its installation folder in readOnlyPaths`,
        );
      const tmpfs = (dest: string, perms: string) => [
        "--perms",
        perms,
        "--size",
        String(tmpfsMb * 1024 * 1024),
        "--tmpfs",
        dest,
      ];
      const fsArgs = [
        ...sys.args,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        ...tmpfs("/tmp", "1777"),
        "--dir",
        "/var",
        ...tmpfs("/var/tmp", "1777"),
        ...tmpfs("/dev/shm", "1777"),
        ...tmpfs(SANDBOX_DIR, "0777"),
      ];
      // Extra read-only folders go last (one under /tmp must not be hidden by the tmpfs), their parents
      // made searchable (bwrap would copy a parent's mode, e.g. /root's 0700).
      const mounted = new Set(["/", "/tmp", "/var", "/var/tmp", "/dev", "/dev/shm", "/proc", SANDBOX_DIR]);
      for (const p of readOnly) {
        if (sys.roots.some((r) => isWithin(p, r))) continue;
        const parts = p.split("/");
        for (let i = 2; i < parts.length; i++) {
          const a = parts.slice(0, i).join("/");
          if (!mounted.has(a)) fsArgs.push("--perms", "0755", "--dir", a);
          mounted.add(a);
        }
        fsArgs.push("--ro-bind", p, p);
      }
      const made = new Set<string>();
      for (const [rel, content] of files) {
        const parts = rel.split("/");
        for (let i = 1; i < parts.length; i++) {
          const d = parts.slice(0, i).join("/");
          if (!made.has(d)) fsArgs.push("--perms", "0777", "--dir", path.posix.join(SANDBOX_DIR, d));
          made.add(d);
        }
        const host = path.join(staging, String(fds.length));
        fs.writeFileSync(host, content, { mode: 0o600 });
        fds.push(fs.openSync(host, "r"));
        fsArgs.push("--perms", "0666", "--file", String(2 + fds.length), path.posix.join(SANDBOX_DIR, rel));
      }
      argv = [
        ...modePrefix(probe.bwrap!, mode, opts.allowNetwork ?? false),
        ...fsArgs,
        // The root and /dev are tmpfs that bwrap made (owned by the code's user in a user namespace): read-only.
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        SANDBOX_DIR,
        "--",
        ...modeInner(mode),
        ...limited,
      ];
      isolation = {
        tool: "bwrap",
        filesystem: true,
        network: !opts.allowNetwork,
        pidNamespace: true,
        noUserNamespaces: mode === "userns",
        user: dropping ? "nobody" : os.userInfo().username,
      };
    } else {
      for (const [rel, content] of files) {
        const target = path.join(staging, rel);
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, content);
      }
      if (dropping) chownTree(staging, NOBODY, NOBODY);
      argv = [...(dropping ? [...dropToNobody(), "--"] : []), ...limited];
      isolation = {
        tool: "none",
        filesystem: false,
        network: false,
        pidNamespace: false,
        noUserNamespaces: false,
        user: dropping ? "nobody" : os.userInfo().username,
      };
    }
    const home = mode ? SANDBOX_DIR : staging;
    if (mode) cwd = "/";
    const env: Record<string, string> = {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: home,
      TMPDIR: mode ? "/tmp" : staging,
      LANG: "C.UTF-8",
      PYTHONDONTWRITEBYTECODE: "1",
      ...opts.env,
    };
    return await runProcess(argv, cwd, env, fds, opts.stdin, timeoutMs, maxOutputBytes, isolation, () => {
      // bwrap has its own copies of the descriptors once started
      for (const fd of fds.splice(0)) fs.closeSync(fd);
      if (mode) fs.rmSync(staging, { recursive: true, force: true });
    });
  } finally {
    for (const fd of fds) fs.closeSync(fd);
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

function chownTree(dir: string, uid: number, gid: number): void {
  fs.chownSync(dir, uid, gid);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) chownTree(p, uid, gid);
    else fs.chownSync(p, uid, gid);
  }
}

function runProcess(
  argv: string[],
  cwd: string,
  env: Record<string, string>,
  fds: number[],
  stdin: string | undefined,
  timeoutMs: number,
  maxOutputBytes: number,
  isolation: SandboxIsolation,
  onSpawned: () => void,
): Promise<SandboxResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    // detached: the child leads a new process group, so one kill(-pid) reaches all of it (bwrap's
    // --die-with-parent and the PID namespace take down what runs inside).
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd,
      env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe", ...fds],
    });
    onSpawned();
    const out = new CappedBuffer(maxOutputBytes);
    const err = new CappedBuffer(maxOutputBytes);
    child.stdout!.on("data", (d: Buffer) => out.push(d));
    child.stderr!.on("data", (d: Buffer) => err.push(d));
    let timedOut = false;
    const killGroup = () => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new ResourceError(`sandbox: could not start ${argv[0]}: ${e.message}`, { cause: e }));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      killGroup(); // leftovers that kept running after the leader exited
      resolve({
        exitCode: code,
        signal,
        timedOut,
        stdout: out.text(),
        stderr: err.text(),
        stdoutTruncated: out.truncated,
        stderrTruncated: err.truncated,
        durationMs: Date.now() - started,
        isolation,
      });
    });
    // The code may exit without reading its input; that EPIPE is not our error.
    child.stdin!.on("error", () => {});
    child.stdin!.end(stdin ?? "");
  });
}

class CappedBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly cap: number) {}
  push(d: Buffer): void {
    if (this.size >= this.cap) {
      this.truncated = true;
      return;
    }
    const room = this.cap - this.size;
    if (d.length > room) {
      this.truncated = true;
      d = d.subarray(0, room);
    }
    this.chunks.push(d);
    this.size += d.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}
