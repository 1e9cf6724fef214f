/**
 * The real-scale tier's harness: run the built `goodvibe` CLI as a user does (a child process, pipes, no TTY),
 * with its exit code, output, wall time and peak memory; scratch folders; and real CyberNative pairs.
 *
 * A case looks like:
 *   const model = scaleModelDir(qwen3_0_6b(2));          // models.ts: made once, cached
 *   const r = await goodvibe(["harden", "-m", model, "-d", data, "-o", out, "--json"]);
 *   expectOk(r); const result = r.json as {...};
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { writeCorpusJsonl, buildCorpus } from "../../src/data/corpus.js";
import { normalizeLanguage } from "../../src/data/languages.js";
import { REPO_ROOT } from "./models.js";

/** The CLI under test: this checkout's build, or GOODVIBE_SCALE_CLI (another build's main.js, for before/after runs). */
export const CLI = process.env.GOODVIBE_SCALE_CLI ?? path.join(REPO_ROOT, "dist/src/cli/main.js");
/**
 * The whole tier (every family, every method, every GGUF type, serving) runs in `npm test` and so in CI: about 3
 * minutes on 2 idle cores once its models are made (they are cached under GOODVIBE_SCALE_DIR). GOODVIBE_SCALE=quick
 * keeps only the always-on part (GoodVibe harden on Qwen3's shape, identification's memory) for a quick local run.
 */
export const FULL_TIER = process.env.GOODVIBE_SCALE !== "quick";
export const heavy: string | false = FULL_TIER
  ? false
  : "a heavy real-scale case, skipped under GOODVIBE_SCALE=quick";
export const SHARED_DATA = path.resolve(REPO_ROOT, "../shared/data");
export const CYBERNATIVE_TRAIN = path.join(SHARED_DATA, "cybernative/train.jsonl");
export const CYBERNATIVE_DEV = path.join(SHARED_DATA, "cybernative/dev.jsonl");
const TIME = "/usr/bin/time";

export interface Run {
  args: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
  /** peak resident memory of the command (GNU time's %M), when /usr/bin/time exists */
  peakRssBytes: number | null;
  /** user + system CPU seconds of the command (GNU time's %U + %S), when /usr/bin/time exists */
  cpuSeconds: number | null;
  /** stdout parsed as JSON when the command ran with --json and printed JSON */
  json?: unknown;
}

export interface Started {
  child: ChildProcess;
  done: Promise<Run>;
}

/** Every command run in this process, for the timing summary. */
export const runs: Run[] = [];
/** GNU time's output files, in a scratch folder of this process (removed at exit even when a command hangs) */
let timeDir: string | undefined;

/**
 * Start `goodvibe <args>`. With `measure` (default) the command runs under GNU time for its peak RSS; signals
 * sent to `child` then reach time, which passes them on — use measure: false for servers that a test stops.
 */
export function startGoodvibe(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; measure?: boolean; nodeArgs?: string[] } = {},
): Started {
  const measure = (opts.measure ?? true) && fs.existsSync(TIME);
  // Node's own flags (V8's GC schedule for a memory measurement), before the CLI's path
  const node = opts.nodeArgs ?? [];
  const timeFile = measure
    ? path.join((timeDir ??= scratchDir("gv-time-")), `${runs.length}-${Date.now()}`)
    : null;
  const argv = timeFile
    ? [TIME, "-o", timeFile, "-f", "%M %U %S", process.execPath, ...node, CLI, ...args]
    : [process.execPath, ...node, CLI, ...args];
  const t0 = process.hrtime.bigint();
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const done = new Promise<Run>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      let peakRssBytes: number | null = null;
      let cpuSeconds: number | null = null;
      if (timeFile) {
        try {
          const [kb, user, sys] = fs
            .readFileSync(timeFile, "utf8")
            .trim()
            .split("\n")
            .pop()!
            .split(" ")
            .map(Number);
          if (Number.isFinite(kb)) peakRssBytes = kb! * 1024;
          if (Number.isFinite(user) && Number.isFinite(sys)) cpuSeconds = user! + sys!;
        } catch {
          // time did not write (killed)
        }
        fs.rmSync(timeFile, { force: true });
        // GNU time reports a signalled child as "Command terminated by signal N" and exits 128 + N
      }
      const run: Run = {
        args,
        code,
        signal,
        stdout,
        stderr,
        seconds: Number(process.hrtime.bigint() - t0) / 1e9,
        peakRssBytes,
        cpuSeconds,
      };
      if (args.includes("--json")) {
        try {
          run.json = JSON.parse(stdout);
        } catch {
          // not JSON: the assertion on the exit code shows the output
        }
      }
      runs.push(run);
      resolve(run);
    });
  });
  return { child, done };
}

export function goodvibe(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; measure?: boolean; nodeArgs?: string[] } = {},
): Promise<Run> {
  return startGoodvibe(args, opts).done;
}

export function showRun(r: Run): string {
  return `goodvibe ${r.args.join(" ")}\nexit ${r.code}${r.signal ? ` (${r.signal})` : ""} after ${r.seconds.toFixed(1)} s\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;
}

/** Assert exit code 0 (or `code`), showing the command's own output when it is not. */
export function expectOk(r: Run, code = 0): void {
  assert.equal(r.code, code, showRun(r));
}

/** JSON output of a successful --json run. */
export function jsonOf<T = Record<string, unknown>>(r: Run): T {
  expectOk(r);
  assert.ok(r.json !== undefined, `stdout is not JSON:\n${showRun(r)}`);
  return r.json as T;
}

/** A fresh scratch folder; removed by `cleanup`. */
export function scratch(prefix = "gv-scale-"): { dir: string; cleanup(): void } {
  const dir = scratchDir(prefix);
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A pairs file of `n` real CyberNative train pairs of `languages` (first rows in file order, deterministic),
 * written into `dir`. Without ../shared/data (a checkout without the shared folder) the project's own corpus
 * stands in, so the tier still exercises every command; `real` tells which one was used.
 */
export function pairsFile(
  dir: string,
  n: number,
  opts: { languages?: string[]; source?: string; name?: string } = {},
): { file: string; real: boolean } {
  const file = path.join(dir, opts.name ?? "pairs.jsonl");
  const source = opts.source ?? CYBERNATIVE_TRAIN;
  const wanted = (opts.languages ?? ["c++"]).map(normalizeLanguage);
  if (fs.existsSync(source)) {
    const rows = fs
      .readFileSync(source, "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { lang: string })
      .filter((r) => wanted.includes(normalizeLanguage(r.lang)))
      .slice(0, n);
    fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    return { file, real: true };
  }
  const pairs = buildCorpus({ seed: 7, perTemplate: 2 })
    .filter((p) => wanted.includes(p.lang))
    .slice(0, n);
  writeCorpusJsonl(file, pairs);
  return { file, real: false };
}

/** One line per command run so far: wall time, CPU time and peak memory (printed by each test file at its end). */
export function timingSummary(): string {
  return runs
    .map(
      (r) =>
        `${r.seconds.toFixed(1).padStart(6)} s ${r.cpuSeconds === null ? "   ?  " : r.cpuSeconds.toFixed(1).padStart(6)} s CPU ${r.peakRssBytes ? `${(r.peakRssBytes / 1024 ** 3).toFixed(2)} GiB` : "    ?   "}  goodvibe ${r.args
          .map((a) => (a.length > 40 ? `…${a.slice(-30)}` : a))
          .join(" ")}`,
    )
    .join("\n");
}

/** A stage's file in a run folder (`<runDir>/<stage>-<key>/<file>`): the one of the newest slot of that stage. */
export function runFile(runDir: string, stage: string, file: string): string {
  const slots = fs
    .readdirSync(runDir)
    .filter((d) => new RegExp(`^${stage}-[0-9a-f]{12}$`).test(d) && fs.existsSync(path.join(runDir, d, file)))
    .map((d) => path.join(runDir, d, file))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (!slots.length)
    throw new Error(`no ${stage}-*/${file} in ${runDir}: ${fs.readdirSync(runDir).join(", ")}`);
  return slots[0]!;
}
