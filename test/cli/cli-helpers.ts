/**
 * Running the built `goodvibe` CLI the way a user does: a child process with pipes (so no TTY progress bars),
 * its exit code, stdout and stderr; a kill -9 once a file shows up; content hashes of whole folders; and a tiny
 * model folder with a pairs file over all four corpus languages.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { writeCorpusJsonl, type CorpusPair } from "../../src/data/corpus.js";
import { REPO_ROOT, makeTinyChatModel, scratchDir, type MadeModel } from "../evalcore/make-model.js";

export const CLI = path.join(REPO_ROOT, "dist/src/cli/main.js");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A running CLI process and the promise of its result. */
export interface CliRun {
  child: ChildProcess;
  done: Promise<CliResult>;
}

export interface CliOptions {
  cwd?: string;
  /** added to the environment */
  env?: Record<string, string>;
}

export function startCli(args: readonly string[], opts: CliOptions = {}): CliRun {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

export function runCli(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  return startCli(args, opts).done;
}

/**
 * Added to a run's env: it records the native addons it opens into `file` (load-recorder.ts, addons only: without
 * the module hooks, which about double a start's cost). Read back with addonOpens.
 */
export function recordAddons(file: string): Record<string, string> {
  const recorder = pathToFileURL(path.join(REPO_ROOT, "dist/test/cli/load-recorder.js")).href;
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${recorder}`.trim(),
    GOODVIBE_LOAD_RECORD: file,
    GOODVIBE_LOAD_RECORD_ADDONS_ONLY: "1",
  };
}

/** The libtorch addon's loads in a recordAddons record (none when nothing was written). */
export function addonOpens(file: string): string[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("dlopen ") && l.endsWith("goodvibe_torch.node"));
}

/** Show the command's own output when an exit code is not the expected one. */
export function showRun(r: CliResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ""}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/**
 * Start the command, SIGKILL it as soon as `file` exists, and return what it had printed. Fails when the
 * process ends on its own first: then nothing was interrupted and the resume test would prove nothing.
 * The time limit only guards against a hung child; the kill itself waits on the file, not on time.
 */
export async function killWhenExists(
  args: readonly string[],
  file: string | (() => boolean),
  opts: { cwd?: string; limitMs?: number; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const exists = typeof file === "string" ? () => fs.existsSync(file) : file;
  const run = startCli(args, opts);
  let exited = false;
  void run.done.then(() => (exited = true));
  const limit = Date.now() + (opts.limitMs ?? 120_000);
  while (!exited && !exists()) {
    if (Date.now() > limit) {
      run.child.kill("SIGKILL");
      throw new Error(`no ${String(file)} after ${opts.limitMs ?? 120_000} ms`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  if (!exited) run.child.kill("SIGKILL");
  const r = await run.done;
  if (r.signal !== "SIGKILL")
    throw new Error(`the run ended before it could be killed (make it longer):\n${showRun(r)}`);
  return r;
}

/** How a signalled run ended: its result and the milliseconds from the (last) signal to its exit. */
export interface SignalledRun extends CliResult {
  exitMs: number;
  /** stderr at the moment the first signal was sent */
  stderrAtSignal: string;
}

/**
 * Start the command, wait until its stderr matches `ready` (the log line of the stage to interrupt), then send
 * `signals` (a second one after `gapMs`) and wait for the exit. Fails when the process ends before `ready`: then
 * nothing was interrupted. The limit only guards against a hung child; the signal waits on the log, not on time.
 */
export async function signalWhenLogged(
  args: readonly string[],
  ready: RegExp,
  signals: NodeJS.Signals[] = ["SIGINT"],
  opts: CliOptions & { limitMs?: number; gapMs?: number } = {},
): Promise<SignalledRun> {
  const run = startCli(args, opts);
  let exited = false;
  let stderr = "";
  run.child.stderr!.on("data", (s: string) => (stderr += s));
  void run.done.then(() => (exited = true));
  const limit = Date.now() + (opts.limitMs ?? 180_000);
  while (!exited && !ready.test(stderr)) {
    if (Date.now() > limit) {
      run.child.kill("SIGKILL");
      throw new Error(`no ${ready} in the log after ${opts.limitMs ?? 180_000} ms:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  if (exited)
    throw new Error(`the run ended before ${ready} showed (make it longer):\n${showRun(await run.done)}`);
  const stderrAtSignal = stderr;
  let sentAt = Date.now();
  for (const [i, sig] of signals.entries()) {
    if (i > 0) await new Promise((r) => setTimeout(r, opts.gapMs ?? 50));
    sentAt = Date.now();
    run.child.kill(sig);
  }
  const r = await run.done;
  return { ...r, exitMs: Date.now() - sentAt, stderrAtSignal };
}

/**
 * Content hashes of a hardened output folder with its wall-clock fields left out (the stats file, and the
 * neuron map's wallSeconds): two runs with the same inputs must agree on everything else, byte for byte.
 */
export function hashOutput(dir: string): Map<string, string> {
  const out = hashTree(dir, (rel) => rel === "goodvibe-stats.json" || rel === "neurons.json");
  const neurons = path.join(dir, "neurons.json");
  if (fs.existsSync(neurons)) {
    const m = JSON.parse(fs.readFileSync(neurons, "utf8")) as Record<string, unknown>;
    delete m.wallSeconds;
    out.set("neurons.json (timing aside)", createHash("sha256").update(JSON.stringify(m)).digest("hex"));
  }
  return out;
}

/** The first file under `dir` whose path relative to it (with "/") matches `re`, or null. */
export function findUnder(dir: string, re: RegExp): string | null {
  // Walked by hand, not readdirSync({ recursive }): a running command renames its temporary folders into place
  // while we look, and a folder that vanishes mid-walk must count as not there yet, not throw ENOENT.
  const rels: string[] = [];
  const walk = (rel: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
      throw e;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      rels.push(r);
      if (e.isDirectory()) walk(r);
    }
  };
  walk("");
  for (const rel of rels.sort()) if (re.test(rel)) return path.join(dir, rel);
  return null;
}

/** sha256 of every file under `dir`, by relative path (sorted), skipping names `skip` rejects. */
export function hashTree(dir: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of fs
      .readdirSync(path.join(dir, rel), { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skip(r)) continue;
      if (e.isDirectory()) walk(r);
      else
        out.set(
          r,
          createHash("sha256")
            .update(fs.readFileSync(path.join(dir, r)))
            .digest("hex"),
        );
    }
  };
  walk("");
  return out;
}

export function sha256File(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/** The first `n` corpus pairs of every language, interleaved so that any prefix mixes languages. */
export function balancedPairs(pairs: readonly CorpusPair[], n: number): CorpusPair[] {
  const byLang = new Map<string, CorpusPair[]>();
  for (const p of pairs) byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), p]);
  const out: CorpusPair[] = [];
  for (let i = 0; i < n; i++) for (const ps of byLang.values()) if (ps[i]) out.push(ps[i]!);
  return out;
}

export interface CliFixture {
  work: string;
  model: MadeModel;
  /** pairs JSONL with `perLanguage` pairs of each of the four languages */
  pairsFile: string;
  pairs: CorpusPair[];
  cleanup(): void;
}

/**
 * The experiment tests' data: 4 pairs of each language of the fixture's model, the first 12 as `<prefix>-train.jsonl`
 * and the last 4 as `<prefix>-dev.jsonl` in its work folder.
 */
export function experimentSplit(fx: CliFixture, prefix: string): { train: string; dev: string } {
  const byLang = balancedPairs(fx.model.pairs, 4);
  const train = path.join(fx.work, `${prefix}-train.jsonl`);
  const dev = path.join(fx.work, `${prefix}-dev.jsonl`);
  writeCorpusJsonl(train, byLang.slice(0, 12));
  writeCorpusJsonl(dev, byLang.slice(12, 16));
  return { train, dev };
}

/** A scratch folder with a tiny Llama (real tokenizer) and a pairs file. */
export function makeCliFixture(opts: { perLanguage?: number; seed?: number } = {}): CliFixture {
  const work = scratchDir("gv-cli-");
  const model = makeTinyChatModel({ seed: opts.seed ?? 1 });
  const pairs = balancedPairs(model.pairs, opts.perLanguage ?? 4);
  const pairsFile = path.join(work, "pairs.jsonl");
  writeCorpusJsonl(pairsFile, pairs);
  return {
    work,
    model,
    pairsFile,
    pairs,
    cleanup() {
      fs.rmSync(work, { recursive: true, force: true });
      fs.rmSync(model.dir, { recursive: true, force: true });
    },
  };
}
