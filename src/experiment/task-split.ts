/**
 * Task-held-out experiments: each language's tasks (the pairs' `task` field, e.g. a corpus template) are split
 * into hardening tasks and held-out tasks, stratified by vulnerability class and fixed by a seed. Identification
 * and training read only the hardening tasks' training pairs; evaluation reads only the held-out tasks' pairs.
 * The split is written as two pair files and a record (split.json) in the experiment's folder, so the cells are
 * keyed by the split's content and a reader sees which tasks were held out.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { sha256 } from "../io/hash.js";
import { readPairs, type SecurityPair } from "../data/pairs.js";
import { createRng } from "../util/random.js";
import type { TaskSplitInfo } from "../report/schema.js";

export interface TaskSplitSettings {
  /** share of each language's tasks held out (rounded; at least one task, never all) */
  heldOut: number;
  seed: number;
  /** strata: the coarse vulnerability class of a task's CWE, the CWE itself, or none */
  stratify: "class" | "cwe" | "none";
  /** evaluate on every pair of the held-out tasks (train and dev files) or only on their dev pairs */
  evaluate: "all" | "dev";
}

/**
 * Coarse vulnerability classes, this project's grouping of the CWEs in its corpus and in CyberNative: what kind
 * of mistake a task is about, so that a split holds out some of each kind rather than, by chance, all crypto
 * tasks. A CWE not listed is a class of its own.
 */
export const VULNERABILITY_CLASSES: Readonly<Record<string, readonly string[]>> = {
  // untrusted data reaches an interpreter, a query, a resource name or a deserialiser
  injection: ["CWE-22", "CWE-78", "CWE-79", "CWE-89", "CWE-94", "CWE-134", "CWE-502", "CWE-601", "CWE-611"],
  // memory and resource safety, arithmetic, concurrency
  memory: ["CWE-119", "CWE-120", "CWE-125", "CWE-190", "CWE-362", "CWE-416", "CWE-476", "CWE-770", "CWE-787"],
  // cryptography, randomness, transport security
  crypto: ["CWE-295", "CWE-319", "CWE-326", "CWE-327", "CWE-328", "CWE-338"],
  // credentials and sensitive information
  secrets: ["CWE-200", "CWE-256", "CWE-312", "CWE-532", "CWE-798"],
  // unchecked errors and exceptional conditions
  errors: ["CWE-252", "CWE-390", "CWE-754", "CWE-755"],
};

export function vulnerabilityClass(cwe: string): string {
  for (const [cls, cwes] of Object.entries(VULNERABILITY_CLASSES)) if (cwes.includes(cwe)) return cls;
  return cwe;
}

export interface SplitTask {
  task: string;
  cwe: string;
  stratum: string;
}

export interface TaskSplitRecord {
  settings: TaskSplitSettings;
  /** per language: its hardening and held-out tasks */
  languages: Record<string, { hardening: SplitTask[]; heldOut: SplitTask[] }>;
  /** pairs in the two files */
  trainPairs: number;
  evalPairs: number;
  files: { train: string; dev: string; sha256: { train: string; dev: string } };
}

function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Choose the held-out tasks: per language n = round(tasks × heldOut) (1 ≤ n < tasks), allocated to the strata in
 * proportion to their size (largest remainders; ties in a seeded order), each stratum's tasks drawn by a seeded
 * shuffle. Deterministic in (tasks, settings), independent of the order the tasks are listed in.
 */
export function chooseHeldOutTasks(
  tasks: readonly { task: string; lang: string; cwe: string }[],
  settings: Pick<TaskSplitSettings, "heldOut" | "seed" | "stratify">,
): TaskSplitRecord["languages"] {
  if (!(settings.heldOut > 0 && settings.heldOut < 1))
    throw new InputError(`taskSplit.heldOut must lie strictly between 0 and 1, got ${settings.heldOut}`);
  const byLang = new Map<string, Map<string, SplitTask>>();
  for (const t of tasks) {
    const m = byLang.get(t.lang) ?? new Map<string, SplitTask>();
    const stratum =
      settings.stratify === "class" ? vulnerabilityClass(t.cwe) : settings.stratify === "cwe" ? t.cwe : "all";
    m.set(t.task, { task: t.task, cwe: t.cwe, stratum });
    byLang.set(t.lang, m);
  }
  const out: TaskSplitRecord["languages"] = {};
  for (const lang of [...byLang.keys()].sort()) {
    const all = [...byLang.get(lang)!.values()].sort((a, b) => (a.task < b.task ? -1 : 1));
    if (all.length < 2)
      throw new InputError(
        `task split: language ${lang} has ${all.length} task, so none can be held out while some harden`,
      );
    const n = Math.min(all.length - 1, Math.max(1, Math.round(all.length * settings.heldOut)));
    const rng = createRng((settings.seed >>> 0) ^ hash32(lang));
    const strata = new Map<string, SplitTask[]>();
    for (const t of all) strata.set(t.stratum, [...(strata.get(t.stratum) ?? []), t]);
    const names = rng.shuffle([...strata.keys()].sort());
    const quota = new Map(names.map((s) => [s, (strata.get(s)!.length * n) / all.length]));
    const take = new Map(names.map((s) => [s, Math.floor(quota.get(s)!)]));
    let left = n - [...take.values()].reduce((a, b) => a + b, 0);
    // largest remainder first; the seeded order of `names` breaks ties (sort is stable)
    for (const s of [...names].sort((a, b) => (quota.get(b)! % 1) - (quota.get(a)! % 1))) {
      if (left === 0) break;
      if (take.get(s)! < strata.get(s)!.length) {
        take.set(s, take.get(s)! + 1);
        left--;
      }
    }
    const held = new Set<string>();
    for (const s of names)
      for (const t of rng.shuffle([...strata.get(s)!]).slice(0, take.get(s)!)) held.add(t.task);
    out[lang] = {
      hardening: all.filter((t) => !held.has(t.task)),
      heldOut: all.filter((t) => held.has(t.task)),
    };
  }
  return out;
}

function pairTask(p: SecurityPair, file: string): { task: string; cwe: string } {
  if (!p.task)
    throw new InputError(
      `${file}: pair ${p.id} has no "task" field; a task split needs every pair to name its task ` +
        `(the organism's corpus writes it: rebuild its data with \`goodvibe organism build\`)`,
    );
  return { task: p.task, cwe: p.cwe ?? "unknown" };
}

function pairsText(pairs: readonly SecurityPair[]): string {
  return (
    pairs
      .map((p) =>
        JSON.stringify({
          id: p.id,
          lang: p.lang,
          ...(p.cwe ? { cwe: p.cwe } : {}),
          task: p.task,
          question: p.question,
          chosen: p.chosen,
          rejected: p.rejected,
        }),
      )
      .join("\n") + "\n"
  );
}

/** Write a file unless it already holds this text: replanning never rewrites the split (nor its mtime). */
function writeUnlessSame(file: string, text: string): void {
  if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== text) writeFileAtomic(file, text);
}

/**
 * Split `train` and `dev` by task and write `<dir>/train.jsonl` (the hardening tasks' train pairs),
 * `<dir>/dev.jsonl` (the held-out tasks' pairs: all of them, or their dev pairs) and `<dir>/split.json`.
 */
export function writeTaskSplit(
  data: { train: string; dev: string; languages?: string[] },
  settings: TaskSplitSettings,
  dir: string,
): TaskSplitRecord {
  const { record, texts } = computeTaskSplit(data, settings, dir);
  fs.mkdirSync(dir, { recursive: true });
  writeUnlessSame(record.files.train, texts.train);
  writeUnlessSame(record.files.dev, texts.dev);
  writeUnlessSame(path.join(dir, "split.json"), JSON.stringify(record, null, 2) + "\n");
  return record;
}

/**
 * The split and the texts of its two pair files, written nowhere (`experiment plan` shows a plan without writing
 * the run's outputs): `record.files` names where writeTaskSplit would put them, with their content's sha256.
 */
export function computeTaskSplit(
  data: { train: string; dev: string; languages?: string[] },
  settings: TaskSplitSettings,
  dir: string,
): { record: TaskSplitRecord; texts: { train: string; dev: string } } {
  const opts = data.languages ? { languages: data.languages } : {};
  const train = readPairs(data.train, opts);
  const dev = readPairs(data.dev, opts);
  const tasks = new Map<string, { task: string; lang: string; cwe: string }>();
  for (const [file, pairs] of [
    [data.train, train],
    [data.dev, dev],
  ] as const)
    for (const p of pairs) {
      const t = pairTask(p, file);
      const key = `${p.lang}\u0000${t.task}`;
      const have = tasks.get(key);
      if (have && have.cwe !== t.cwe)
        throw new InputError(`${file}: task ${t.task} (${p.lang}) is tagged ${have.cwe} and ${t.cwe}`);
      tasks.set(key, { task: t.task, lang: p.lang, cwe: t.cwe });
    }
  const languages = chooseHeldOutTasks([...tasks.values()], settings);
  const heldOut = new Set(
    Object.entries(languages).flatMap(([lang, s]) => s.heldOut.map((t) => `${lang}\u0000${t.task}`)),
  );
  const isHeld = (p: SecurityPair) => heldOut.has(`${p.lang}\u0000${p.task}`);
  const trainOut = train.filter((p) => !isHeld(p));
  const evalOut = [...(settings.evaluate === "all" ? train.filter(isHeld) : []), ...dev.filter(isHeld)];
  const files = { train: path.join(dir, "train.jsonl"), dev: path.join(dir, "dev.jsonl") };
  const texts = { train: pairsText(trainOut), dev: pairsText(evalOut) };
  const record: TaskSplitRecord = {
    settings,
    languages,
    trainPairs: trainOut.length,
    evalPairs: evalOut.length,
    files: { ...files, sha256: { train: sha256(texts.train), dev: sha256(texts.dev) } },
  };
  return { record, texts };
}

/** One line per language for logs and reports: "cpp: held out sql-lookup (CWE-89), ...". */
export function describeTaskSplit(r: TaskSplitRecord): string[] {
  return Object.entries(r.languages).map(
    ([lang, s]) =>
      `${lang}: ${s.hardening.length} hardening tasks, held out ${s.heldOut.map((t) => `${t.task} (${t.cwe})`).join(", ")}`,
  );
}

/** The split as the results file records it (no file paths: results stay the same when the run moves). */
export function taskSplitInfo(r: TaskSplitRecord): TaskSplitInfo {
  return { ...r.settings, trainPairs: r.trainPairs, evalPairs: r.evalPairs, languages: r.languages };
}
