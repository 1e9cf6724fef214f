/**
 * The sandbox for generated code, attacked as issue 8 reports: writes that persisted in the host's /tmp, /dev/shm
 * and /var/tmp, a host Unix socket, host processes seen through /proc, world-readable host files (model weights,
 * the working folder), the network, fork bombs and memory hogs. Each attack runs in every sandbox mode this
 * machine supports (as root: nobody in a user namespace, and privileged bwrap dropping to nobody).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import {
  SANDBOX_DIR,
  runSandboxed,
  sandboxAvailable,
  sandboxModes,
  setBwrapForTests,
  setSandboxModeForTests,
  type Mode,
  type SandboxOptions,
} from "../../src/eval/sandbox.js";
import { interpreterFolders, resolvePython } from "../../src/eval/utility/humaneval.js";

const linux = process.platform === "linux";
const isRoot = process.getuid?.() === 0;
const python = linux && sandboxAvailable() ? await resolvePython().catch(() => undefined) : undefined;
const skip = !python ? "needs bubblewrap with namespaces, and python3" : false;
const modes: Mode[] = python ? sandboxModes() : [];

const tag = `${process.pid}-${Date.now()}`;
const py = (code: string, opts: Partial<SandboxOptions> = {}) =>
  runSandboxed({ cmd: python!, args: ["-c", code], readOnlyPaths: interpreterFolders(python!), ...opts });

/** Run `body` once per sandbox mode that works here. */
async function eachMode(body: (mode: Mode) => Promise<void>): Promise<void> {
  for (const mode of modes) {
    setSandboxModeForTests(mode);
    try {
      await body(mode);
    } catch (e) {
      (e as Error).message = `[mode ${mode}] ${(e as Error).message}`;
      throw e;
    } finally {
      setSandboxModeForTests(undefined);
    }
  }
}

function hostScratch(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755); // world-readable, as a model folder or a checkout usually is
  return dir;
}

function processesOf(uid: number): number[] {
  return fs
    .readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return fs.statSync(`/proc/${e}`).uid === uid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}

test(
  "a normal run gets stdin and its files in a private working folder; nothing of it is left on the host",
  { skip },
  async () => {
    // a temp folder of this test's own: other sandboxes may stage in the shared one meanwhile
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gv-tmpdir-"));
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    assert.equal(os.tmpdir(), tmp, "the sandbox stages in os.tmpdir()");
    try {
      await eachMode(async () => {
        const r = await py(
          "import os,sys; open('out.txt','w').write('x'); print(os.getcwd()); print(sorted(os.listdir('.'))); " +
            "print(open('data/input.txt').read()); print(sys.stdin.read()); print(os.environ['HOME'])",
          { stdin: "hello", files: { "data/input.txt": "payload" } },
        );
        assert.equal(r.exitCode, 0, r.stderr);
        assert.deepEqual(r.stdout.trim().split("\n"), [
          SANDBOX_DIR,
          "['data', 'out.txt']",
          "payload",
          "hello",
          SANDBOX_DIR,
        ]);
        assert.equal(r.isolation.tool, "bwrap");
        assert.ok(r.isolation.filesystem && r.isolation.network && r.isolation.pidNamespace);
        assert.deepEqual(fs.readdirSync(tmp), [], "the staging folder is removed");
        assert.ok(!fs.existsSync(path.join(process.cwd(), "out.txt")));
      });
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  },
);

test(
  "attack: files written to /tmp, /dev/shm, /var/tmp stay private to the run and do not persist",
  { skip },
  async () => {
    const names = ["/tmp", "/dev/shm", "/var/tmp"].map((d) => `${d}/gv-pwned-${tag}`);
    try {
      await eachMode(async () => {
        const write = `import os\nfor p in ${JSON.stringify(names)}:\n  open(p,'w').write('pwned'); print(p, os.path.exists(p))`;
        const r = await py(write);
        assert.equal(r.exitCode, 0, r.stderr); // the code may use its tmp folders...
        assert.deepEqual(
          r.stdout.trim().split("\n"),
          names.map((n) => `${n} True`),
        );
        for (const n of names) assert.ok(!fs.existsSync(n), `${n} appeared on the host`); // ...but they are its own
        const again = await py(`import os; print([os.path.exists(p) for p in ${JSON.stringify(names)}])`);
        assert.equal(
          again.stdout.trim(),
          "[False, False, False]",
          "a later run sees nothing of an earlier one",
        );
      });
    } finally {
      for (const n of names) fs.rmSync(n, { force: true });
    }
  },
);

test("attack: a host Unix socket (path or abstract) cannot be reached", { skip }, async () => {
  const dir = hostScratch("gv-sock-");
  const sockPath = path.join(dir, "docker.sock");
  const abstract = `\0gv-test-${tag}`;
  let connections = 0;
  const servers = [sockPath, abstract].map((where) =>
    net.createServer((s) => {
      connections++;
      s.end("hello from the host\n");
    }),
  );
  try {
    await Promise.all(
      servers.map((s, i) => new Promise<void>((ok) => s.listen(i ? abstract : sockPath, ok))),
    );
    fs.chmodSync(sockPath, 0o777); // anyone on the host may connect, as to a careless Docker socket
    await eachMode(async () => {
      const code = [
        "import socket",
        `for addr in [${JSON.stringify(sockPath)}, '\\0' + ${JSON.stringify(abstract.slice(1))}]:`,
        "  s = socket.socket(socket.AF_UNIX)",
        "  try:",
        "    s.connect(addr); print('connected', s.recv(100))",
        "  except OSError as e: print('blocked', e.errno)",
      ].join("\n");
      const r = await py(code);
      assert.equal(r.exitCode, 0, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.equal(lines.length, 2, r.stdout);
      for (const l of lines) assert.match(l, /^blocked/);
      assert.equal(connections, 0);
    });
  } finally {
    for (const s of servers) s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("attack: host processes are invisible (own /proc in an own PID namespace)", { skip }, async () => {
  // A host process whose command line carries a unique marker.
  const marker = `4242.${String(process.pid).padStart(7, "0")}${Date.now() % 1000}`;
  const sleeper = spawn("sleep", [marker], { stdio: "ignore" });
  const hostInit = fs.readFileSync("/proc/1/cmdline", "latin1");
  try {
    await until(() => fs.existsSync(`/proc/${sleeper.pid}/cmdline`), 5000);
    await eachMode(async () => {
      const code = [
        "import os, json",
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]",
        "seen = []",
        "for p in pids:",
        "  try: seen.append(open(f'/proc/{p}/cmdline','rb').read().decode('latin1'))",
        "  except OSError: pass",
        `try: direct = open('/proc/${sleeper.pid}/cmdline','rb').read().decode('latin1')`,
        "except OSError as e: direct = 'error %d' % e.errno",
        "print(json.dumps({'pids': pids, 'seen': seen, 'direct': direct}))",
      ].join("\n");
      const r = await py(code);
      assert.equal(r.exitCode, 0, r.stderr);
      const got = JSON.parse(r.stdout) as { pids: string[]; seen: string[]; direct: string };
      assert.ok(!got.seen.some((c) => c.includes(marker)), "the host's sleep process is visible");
      assert.ok(!got.direct.includes(marker), `read the host process's command line: ${got.direct}`);
      assert.ok(!got.seen.includes(hostInit), "the host's init is visible");
      assert.ok(got.pids.length <= 5, `sees ${got.pids.length} processes: ${got.pids.join(" ")}`);
    });
  } finally {
    sleeper.kill("SIGKILL");
  }
});

test(
  "attack: world-readable host files (model weights, the working folder, home) are not there",
  { skip },
  async () => {
    const models = hostScratch("gv-model-");
    const weights = path.join(models, "model.safetensors");
    fs.writeFileSync(weights, "SECRET-WEIGHTS", { mode: 0o644 });
    const repoFile = path.join(process.cwd(), "package.json");
    try {
      await eachMode(async () => {
        const code = [
          "import os",
          `for p in [${[weights, repoFile, "/etc/passwd", "/etc/hostname"].map((p) => JSON.stringify(p)).join(", ")}]:`,
          "  try: print('read', p, open(p).read(20))",
          "  except OSError as e: print('denied', p, e.errno)",
          `for d in [${[models, process.cwd(), os.homedir(), "/home", "/root", "/run", "/var/run", "/work", "/mnt"].map((p) => JSON.stringify(p)).join(", ")}]:`,
          "  try: print('listed', d, os.listdir(d))",
          "  except OSError as e: print('denied', d, e.errno)",
          "print('root', sorted(os.listdir('/')))",
        ].join("\n");
        const r = await py(code);
        assert.equal(r.exitCode, 0, r.stderr);
        const lines = r.stdout.trim().split("\n");
        for (const l of lines.slice(0, -1)) assert.match(l, /^denied /, l);
        assert.ok(!r.stdout.includes("SECRET-WEIGHTS"));
        // The root holds only the read-only system folders and the private ones.
        const root = lines.at(-1)!.replace(/^root /, "");
        const entries = JSON.parse(root.replace(/'/g, '"')) as string[];
        const allowed = new Set([
          "usr",
          "bin",
          "sbin",
          "lib",
          "lib32",
          "lib64",
          "libx32",
          "proc",
          "dev",
          "tmp",
        ]);
        allowed.add("var").add(SANDBOX_DIR.slice(1));
        for (const f of interpreterFolders(python!)) allowed.add(f.split("/")[1]!);
        assert.deepEqual(
          entries.filter((e) => !allowed.has(e)),
          [],
        );
      });
    } finally {
      fs.rmSync(models, { recursive: true, force: true });
    }
  },
);

test("attack: the read-only system folders cannot be written", { skip }, async () => {
  await eachMode(async () => {
    const code = [
      "import os",
      "for p in ['/usr/gv-pwned', '/usr/bin/python3', '/gv-pwned', '/dev/gv-pwned', '/proc/sys/kernel/hostname']:",
      "  try: open(p,'a').write('x'); print('wrote', p)",
      "  except OSError as e: print('denied', p, e.errno)",
    ].join("\n");
    const r = await py(code);
    assert.equal(r.exitCode, 0, r.stderr);
    for (const l of r.stdout.trim().split("\n")) assert.match(l, /^denied /, l);
    assert.ok(!fs.existsSync("/usr/gv-pwned"));
  });
});

test(
  "network: a connect to a port listening on 127.0.0.1 fails inside the sandbox, and succeeds with allowNetwork",
  { skip },
  async () => {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.end();
    });
    await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
    const port = (server.address() as net.AddressInfo).port;
    const code = `import socket\ntry:\n  socket.create_connection(("127.0.0.1", ${port}), timeout=3).close(); print("connected")\nexcept OSError as e: print("blocked", e.errno)`;
    try {
      await eachMode(async () => {
        const r = await py(code);
        assert.match(r.stdout, /^blocked/);
        assert.equal(connections, 0);
      });
      const open = await py(code, { allowNetwork: true });
      assert.match(open.stdout, /^connected/);
      assert.equal(open.isolation.network, false);
      assert.equal(open.isolation.filesystem, true, "allowNetwork keeps the file system isolated");
      assert.equal(connections, 1);
    } finally {
      server.close();
    }
  },
);

test("no user namespaces can be made inside (where bwrap can forbid them)", { skip }, async () => {
  await eachMode(async (mode) => {
    const code =
      "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n" +
      "print('unshared' if libc.unshare(0x10000000) == 0 else 'refused %d' % ctypes.get_errno())";
    const r = await py(code);
    assert.equal(r.exitCode, 0, r.stderr);
    if (r.isolation.noUserNamespaces) assert.match(r.stdout, /^refused/, `mode ${mode}`);
    // without it (privileged mode), the code is still nobody with no capabilities
    const caps = await py(
      "print([l for l in open('/proc/self/status') if l.startswith(('CapEff','CapPrm','Uid'))])",
    );
    assert.match(caps.stdout, /CapEff:\\t0000000000000000/);
    assert.match(caps.stdout, /CapPrm:\\t0000000000000000/);
    if (isRoot) assert.match(caps.stdout, /Uid:\\t65534/);
  });
});

const venvOk =
  !!python &&
  spawnSync(python, ["-c", "import venv"], { stdio: "ignore" }).status === 0 &&
  fs.existsSync("/usr/bin/python3");

test(
  "an interpreter outside /usr (a venv) runs with only its own folder shown, reachable by nobody or not",
  { skip: skip || (!venvOk && "needs /usr/bin/python3 with venv") },
  async () => {
    for (const mode of [0o755, 0o700]) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gv-venv-"));
      try {
        fs.chmodSync(dir, mode); // 0700: nobody cannot reach it on the host, so bwrap must bind it as root
        const made = spawnSync("/usr/bin/python3", ["-m", "venv", "--without-pip", path.join(dir, "v")]);
        assert.equal(made.status, 0, String(made.stderr));
        fs.writeFileSync(path.join(dir, "secret.txt"), "beside the venv");
        const venvPython = path.join(dir, "v/bin/python");
        const ro = interpreterFolders(venvPython);
        assert.deepEqual(ro, [path.join(fs.realpathSync(dir), "v")]);
        const r = await runSandboxed({
          cmd: venvPython,
          args: [
            "-c",
            "import sys, os; print(sys.prefix); print(sorted(os.listdir(os.path.dirname(sys.prefix))))",
          ],
          readOnlyPaths: ro,
        });
        assert.equal(r.exitCode, 0, r.stderr);
        assert.deepEqual(
          r.stdout.trim().split("\n"),
          [ro[0], "['v']"],
          "the venv is used, nothing beside it shown",
        );
        if (isRoot) assert.equal(r.isolation.noUserNamespaces, mode === 0o755 && modes.includes("userns"));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  },
);

test("an infinite loop is killed at the timeout", { skip }, async () => {
  const r = await py("while True: pass", { timeoutMs: 1000, cpuSeconds: 60 });
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, "SIGKILL");
});

test("a CPU hog hits RLIMIT_CPU before a long wall-clock timeout", { skip }, async () => {
  const r = await py("while True: pass", { timeoutMs: 60_000, cpuSeconds: 1 });
  assert.equal(r.timedOut, false);
  assert.notEqual(r.exitCode, 0);
});

test("a memory hog is stopped by the address-space limit", { skip }, async () => {
  await eachMode(async () => {
    const hog = "l = []\nwhile True:\n    l.append(bytearray(16 * 1024 * 1024))";
    const r = await py(hog, { memoryMb: 256, timeoutMs: 30_000 });
    assert.equal(r.timedOut, false);
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr, /MemoryError/);
  });
  // Control: the same allocation pattern, bounded to ~64 MB, fits.
  const ok = await py("l = [bytearray(16 * 1024 * 1024) for _ in range(4)]", { memoryMb: 256 });
  assert.equal(ok.exitCode, 0, ok.stderr);
});

test("attack: filling the private tmp folders (memory-backed) stops at their size", { skip }, async () => {
  await eachMode(async () => {
    const code = [
      "import errno",
      "for d in ['/dev/shm', '/tmp', '/var/tmp', '.']:",
      "  n = 0",
      "  try:",
      "    for i in range(40):",
      `      open(f'{d}/fill-${tag}-{i}', 'wb').write(b'x' * (4 << 20)); n += 4`,
      "    print(d, 'full', n)",
      "  except OSError as e: print(d, errno.errorcode[e.errno], n)",
    ].join("\n");
    try {
      const r = await py(code, { tmpfsMb: 16, fileSizeMb: 8 });
      assert.equal(r.exitCode, 0, r.stderr);
      for (const l of r.stdout.trim().split("\n")) {
        const [, err, mb] = l.split(" ");
        assert.equal(err, "ENOSPC", l);
        assert.ok(Number(mb) <= 16, l);
      }
    } finally {
      for (const d of ["/dev/shm", "/tmp", "/var/tmp"])
        for (let i = 0; i < 40; i++) fs.rmSync(`${d}/fill-${tag}-${i}`, { force: true });
    }
  });
});

test("attack: a fork bomb is held to the process limit and leaves nothing behind", { skip }, async () => {
  await eachMode(async (mode) => {
    // Count this run's processes by a marker in their command line (forks keep it): other sandboxes may run
    // as nobody on a shared machine at the same time.
    const marker = `gv-bomb-${tag}-${mode}`;
    const ours = () =>
      fs.readdirSync("/proc").filter((e) => {
        try {
          return /^\d+$/.test(e) && fs.readFileSync(`/proc/${e}/cmdline`, "latin1").includes(marker);
        } catch {
          return false;
        }
      }).length;
    // privileged mode counts every process of nobody on the host (no user namespace of its own)
    const others = mode === "privileged" && isRoot ? processesOf(65534).length : 0;
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, ours())), 50);
    try {
      const bomb = "import os\nwhile True:\n  try: os.fork()\n  except OSError: pass";
      const r = await py(bomb, {
        args: ["-c", bomb, marker],
        maxProcesses: 16,
        timeoutMs: 4000,
        cpuSeconds: 30,
      });
      assert.equal(r.timedOut, true);
    } finally {
      clearInterval(sampler);
    }
    assert.ok(peak >= 2, `the bomb never forked (peak ${peak})`);
    // the marker is also in the command lines of bwrap's two processes and of the program itself
    assert.ok(
      peak <= others + 16 + 3,
      `peak ${peak} processes (limit 16 + 3, ${others} other processes of nobody)`,
    );
    assert.ok(await until(() => ours() === 0, 10_000), `leftovers: ${ours()}`);
  });
});

test(
  "process count is limited (fork loop stops early) and leftover children die with the run",
  { skip },
  async () => {
    const code = [
      "import os, time",
      "n = 0",
      "try:",
      "    for _ in range(200):",
      "        if os.fork() == 0:",
      "            time.sleep(60); os._exit(0)",
      "        n += 1",
      "except OSError:",
      "    pass",
      "print(n)",
    ].join("\n");
    const r = await py(code, { maxProcesses: 8, timeoutMs: 20_000 });
    assert.equal(r.timedOut, false, "leftover sleepers must not keep the run alive");
    // The limit is "processes of this uid now + bwrap's + 8"; processes of earlier runs still exiting add slack.
    const forked = Number(r.stdout.trim());
    assert.ok(forked >= 1 && forked < 40, `forked ${forked}`);
  },
);

test("output is capped and flagged", { skip }, async () => {
  const r = await py("import sys; sys.stdout.write('x' * 300000)", { maxOutputBytes: 1000 });
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout.length, 1000);
  assert.equal(r.stdoutTruncated, true);
  assert.equal(r.stderrTruncated, false);
});

test(
  "file names that leave the working folder, and read-only paths that expose the user, are refused",
  { skip },
  async () => {
    for (const name of ["../escape.txt", "/etc/x", "a/../../b", ".."])
      await assert.rejects(py("pass", { files: { [name]: "x" } }), /leaves the sandbox folder/, name);
    await assert.rejects(py("pass", { readOnlyPaths: ["/"] }), /would expose the home folder/);
    await assert.rejects(
      py("pass", { readOnlyPaths: [path.dirname(process.cwd())] }),
      /would expose the working folder/,
    );
    await assert.rejects(py("pass", { readOnlyPaths: ["relative/dir"] }), /must be absolute/);
  },
);

test(
  "without bubblewrap it refuses with a clear message, and runs with limits only when told",
  { skip },
  async () => {
    const fakeDir = fs.mkdtempSync(path.join(os.tmpdir(), "gv-fakebwrap-"));
    const fake = path.join(fakeDir, "bwrap");
    fs.writeFileSync(fake, "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n", {
      mode: 0o755,
    });
    try {
      setBwrapForTests(null);
      await assert.rejects(
        py("pass"),
        /refusing to run generated code without isolation.*apt-get install bubblewrap.*GOODVIBE_SANDBOX=off/s,
      );
      setBwrapForTests(fake);
      await assert.rejects(
        py("pass"),
        /refusing.*No permissions to create new namespace.*GOODVIBE_SANDBOX=off/s,
      );
      const r = await py("import os; print(os.getuid())", { allowUnsandboxed: true });
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.isolation.tool, "none");
      assert.equal(r.isolation.filesystem, false);
      if (isRoot) assert.equal(r.stdout.trim(), "65534", "still drops to nobody");
      process.env.GOODVIBE_SANDBOX = "off";
      try {
        assert.equal((await py("print(1)")).isolation.tool, "none");
      } finally {
        delete process.env.GOODVIBE_SANDBOX;
      }
    } finally {
      setBwrapForTests(undefined);
      fs.rmSync(fakeDir, { recursive: true, force: true });
    }
    assert.equal((await py("print(1)")).isolation.tool, "bwrap");
  },
);

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const nodeForNobody =
  isRoot &&
  spawnSync("setpriv", [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--",
    process.execPath,
    "-e",
    "0",
  ]).status === 0 &&
  spawnSync("setpriv", [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--",
    "test",
    "-r",
    path.join(repoRoot, "dist/src/eval/sandbox.js"),
  ]).status === 0;

test(
  "a non-root caller gets the same isolation through a user namespace",
  { skip: skip || (!nodeForNobody && "needs root, and node and the build readable by nobody") },
  async () => {
    const script = `
      const m = await import(${JSON.stringify(path.join(repoRoot, "dist/src/eval/sandbox.js"))});
      const r = await m.runSandboxed({ cmd: "/usr/bin/python3", args: ["-c",
        "import os; open('/tmp/gv-pwned-${tag}','w').write('x'); print(os.getuid(), sorted(os.listdir('/')), len([p for p in os.listdir('/proc') if p.isdigit()]))"] });
      console.log(JSON.stringify(r));`;
    const out = spawnSync(
      "setpriv",
      [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        process.execPath,
        "--input-type=module",
        "-e",
        script,
      ],
      { cwd: "/", encoding: "utf8", timeout: 60_000, env: { PATH: "/usr/bin:/bin", HOME: "/nonexistent" } },
    );
    if (!fs.existsSync("/usr/bin/python3")) return;
    try {
      assert.equal(out.status, 0, out.stderr);
      const r = JSON.parse(out.stdout.trim().split("\n").pop()!);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.isolation.tool, "bwrap");
      assert.equal(r.isolation.noUserNamespaces, true);
      const [uid, ...rest] = r.stdout.trim().split(" ");
      assert.equal(uid, "65534");
      assert.ok(!rest.join(" ").includes("work"), r.stdout);
      assert.ok(!fs.existsSync(`/tmp/gv-pwned-${tag}`));
    } finally {
      fs.rmSync(`/tmp/gv-pwned-${tag}`, { force: true });
    }
  },
);
