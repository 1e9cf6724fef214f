/**
 * Secure/insecure pair datasets (CyberNative Code_Vulnerability_Security_DPO) and labelled code files.
 *
 * Every row is checked on read; a bad row throws an InputError naming the file, the 1-based line number and
 * the field. Answers must contain code by the rule of ./code.ts (a fenced block, or a code-like line).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError, preview, rowWhere } from "../errors.js";
import { extractCode } from "./code.js";
import { LANGUAGES, datasetName, normalizeLanguage, unknownLanguage, type Language } from "./languages.js";
import { readJsonlSync, type JsonRow } from "./jsonl.js";
import { isForbiddenKey } from "../util/keys.js";
import { createRng } from "../util/random.js";

export interface SecurityPair {
  id: string;
  lang: Language;
  question: string;
  /** The secure answer (Markdown, usually one fenced block). */
  chosen: string;
  /** The insecure answer. */
  rejected: string;
  cwe?: string;
  /** the task the pair is an instance of (e.g. a corpus template), for task-held-out splits */
  task?: string;
}

export interface LabelledSample {
  id: string;
  /** Absent when a labelled-code file gives no language. */
  lang?: Language;
  code: string;
  secure: boolean;
}

export interface ReadPairsOptions {
  /** Keep only these languages (any spelling `normalizeLanguage` knows). */
  languages?: readonly string[];
}

/** Parse a JSONL file into objects with their 1-based line numbers; blank lines are skipped. */
function readRowsOf(file: string): JsonRow[] {
  const rows: JsonRow[] = [];
  readJsonlSync(file, (r) => rows.push(r));
  if (rows.length === 0) throw new InputError(`${file}: no rows (the file is empty)`);
  return rows;
}

function requireString(file: string, r: JsonRow, field: string): string {
  const v = r.value[field];
  if (v === undefined || v === null) throw new InputError(`${rowWhere(file, r.row, field)}: missing`);
  if (typeof v !== "string")
    throw new InputError(`${rowWhere(file, r.row, field)}: expected a string, got ${typeof v}`);
  if (v.trim() === "") throw new InputError(`${rowWhere(file, r.row, field)}: empty`);
  return v;
}

/** A label that keys tables and splits (CWE, task), so names that reach a prototype are refused. */
function requireKey(file: string, r: JsonRow, field: string): string {
  const v = requireString(file, r, field);
  if (isForbiddenKey(v.trim()))
    throw new InputError(`${rowWhere(file, r.row, field)}: "${v}" is not a ${field} name`);
  return v;
}

function requireCwe(file: string, r: JsonRow): string {
  return requireKey(file, r, "cwe");
}

function requireLanguage(file: string, r: JsonRow, field: string): Language {
  const raw = requireString(file, r, field);
  const lang = normalizeLanguage(raw);
  if (lang === null) {
    throw new InputError(
      `${rowWhere(file, r.row, field)}: unknown language "${raw}" (known: ${LANGUAGES.map(datasetName).join(", ")})`,
    );
  }
  return lang;
}

function requireCode(file: string, r: JsonRow, field: string): string {
  const text = requireString(file, r, field);
  if (extractCode(text) === null) {
    throw new InputError(
      `${rowWhere(file, r.row, field)}: contains no code (no fenced block and no code-like line)`,
    );
  }
  return text;
}

function normalizeFilter(languages: readonly string[]): Language[] {
  const out: Language[] = [];
  for (const name of languages) {
    const lang = normalizeLanguage(name);
    if (lang === null) throw new InputError(`the language filter: ${unknownLanguage(name)}`);
    if (!out.includes(lang)) out.push(lang);
  }
  return out;
}

/**
 * Read a CyberNative-style JSONL file `{id?, lang, question, chosen, rejected, cwe?, task?}`. Other fields are
 * ignored: the upstream dataset's rows (`{lang, vulnerability, system, question, chosen, rejected}`) have no id, and
 * a row without one is named `<file name>:<row>`, as readLabelledCode names its samples.
 */
export function readPairs(file: string, opts: ReadPairsOptions = {}): SecurityPair[] {
  return pairsOf(file, readRowsOf(file), opts);
}

function pairsOf(file: string, rows: JsonRow[], opts: ReadPairsOptions): SecurityPair[] {
  const pairs: SecurityPair[] = [];
  const firstRowOfId = new Map<string, number>();
  const base = path.basename(file);
  for (const r of rows) {
    const id =
      r.value["id"] === undefined || r.value["id"] === null
        ? `${base}:${r.row}`
        : requireString(file, r, "id");
    const seen = firstRowOfId.get(id);
    if (seen !== undefined)
      throw new InputError(`${rowWhere(file, r.row, "id")}: duplicate id "${id}" (first at row ${seen})`);
    firstRowOfId.set(id, r.row);
    const pair: SecurityPair = {
      id,
      lang: requireLanguage(file, r, "lang"),
      question: requireString(file, r, "question"),
      chosen: requireCode(file, r, "chosen"),
      rejected: requireCode(file, r, "rejected"),
    };
    if (r.value["cwe"] !== undefined && r.value["cwe"] !== null) pair.cwe = requireCwe(file, r);
    if (r.value["task"] !== undefined && r.value["task"] !== null) pair.task = requireKey(file, r, "task");
    pairs.push(pair);
  }
  if (opts.languages === undefined) return pairs;

  const wanted = normalizeFilter(opts.languages);
  const kept = pairs.filter((p) => wanted.includes(p.lang));
  const present = () =>
    [...countBy(pairs, (p) => p.lang)].map(([lang, n]) => `${datasetName(lang)} (${n})`).join(", ");
  if (kept.length === 0) {
    throw new InputError(
      `no rows for languages [${wanted.map(datasetName).join(", ")}] in ${file}; present: ${present()}`,
    );
  }
  // every language asked for must be there: one missing was dropped without a word (its stats still listed it)
  const keptLanguages = new Set(kept.map((p) => p.lang));
  const missing = wanted.filter((l) => !keptLanguages.has(l));
  if (missing.length > 0) {
    throw new InputError(
      `asked for languages [${wanted.map(datasetName).join(", ")}] but ${file} has no rows for some; missing: ${missing.map(datasetName).join(", ")}; ` +
        `present: ${present()}`,
    );
  }
  return kept;
}

/**
 * Read a JSONL file of `{code, label, lang?, id?}` under the judge task's labels (the paper's, README "The judge
 * task"): 1, "unsafe" or "insecure" = insecure; 0, "safe" or "secure" = secure.
 */
export function readLabelledCode(file: string): LabelledSample[] {
  return labelledOf(file, readRowsOf(file));
}

/**
 * Labelled code from a file of either schema: `{code, label}` rows as they are, pairs as their two samples each
 * (the secure answer's code, then the insecure one's). The first row's fields tell which.
 */
export function readLabelledSamples(file: string): LabelledSample[] {
  const rows = readRowsOf(file);
  return Object.hasOwn(rows[0]!.value, "code")
    ? labelledOf(file, rows)
    : pairsToLabelledSamples(pairsOf(file, rows, {}));
}

// the numbers as strings too: a file written by a tool that quotes every field ("1") means the label 1
const SECURE_LABELS = ["0", "safe", "secure"];
const INSECURE_LABELS = ["1", "unsafe", "insecure"];

function labelledOf(file: string, rows: JsonRow[]): LabelledSample[] {
  const base = path.basename(file);
  return rows.map((r) => {
    const raw = requireCode(file, r, "code");
    const label = r.value["label"];
    const word = typeof label === "string" ? label.trim().toLowerCase() : null;
    let secure: boolean;
    if (label === 0 || (word !== null && SECURE_LABELS.includes(word))) secure = true;
    else if (label === 1 || (word !== null && INSECURE_LABELS.includes(word))) secure = false;
    else if (label === undefined || label === null)
      throw new InputError(`${rowWhere(file, r.row, "label")}: missing`);
    else {
      throw new InputError(
        `${rowWhere(file, r.row, "label")}: expected 1 or "1"/"unsafe"/"insecure" (unsafe), 0 or "0"/"safe"/"secure" (safe), got ${preview(label)}`,
      );
    }
    const sample: LabelledSample = {
      id: r.value["id"] !== undefined ? requireString(file, r, "id") : `${base}:${r.row}`,
      code: extractCode(raw)!,
      secure,
    };
    if (r.value["lang"] !== undefined && r.value["lang"] !== null)
      sample.lang = requireLanguage(file, r, "lang");
    return sample;
  });
}

/** The code an answer holds (its code block), or the whole answer when it has none: what the judge sees. */
function answerCode(answer: string): string {
  return extractCode(answer) ?? answer;
}

/** Two samples per pair: the chosen answer's code (secure) then the rejected one's (insecure). */
export function pairsToLabelledSamples(pairs: readonly SecurityPair[]): LabelledSample[] {
  return pairs.flatMap((p) => [
    { id: `${p.id}/secure`, lang: p.lang, code: answerCode(p.chosen), secure: true },
    { id: `${p.id}/insecure`, lang: p.lang, code: answerCode(p.rejected), secure: false },
  ]);
}

export interface SplitOptions {
  /** Fraction of each language's pairs that goes to dev, in [0, 1). */
  devFraction: number;
  seed: number;
}

/** Text as duplicates are found: whitespace runs made one space, ends trimmed, lower case. */
export function normalizedText(s: string): string {
  return s.replace(/\s+/g, " ").trim().toLowerCase();
}

/**
 * The codes (after normalizedText) that the pairs label both secure and insecure: a pair whose two answers are the
 * same code, or a secure answer that is another pair's insecure one. Judge training leaves them out.
 */
export function labelConflicts(pairs: readonly SecurityPair[]): Set<string> {
  const labels = new Map<string, Set<boolean>>();
  for (const s of pairsToLabelledSamples(pairs)) {
    const k = normalizedText(s.code);
    labels.set(k, (labels.get(k) ?? new Set()).add(s.secure));
  }
  return new Set([...labels].filter(([, l]) => l.size > 1).map(([k]) => k));
}

/** "424 pairs (c++ 106, java 106, swift 106, go 106)": a run's data line, so that a language with few rows shows. */
export function describePairs(pairs: readonly SecurityPair[]): string {
  const by = [...countBy(pairs, (p) => p.lang)].map(([lang, n]) => `${datasetName(lang)} ${n}`);
  return `${pairs.length} pairs (${by.join(", ")})`;
}

/**
 * The warning for pairs whose code is labelled both ways (labelConflicts: a pair's two answers alike, or one pair's
 * secure code another's insecure), or null: identification and fine-tuning use them as given, as the paper's data
 * holds them (CyberNative's train split has 19 pairs with identical answers), where `judge train` leaves them out.
 */
export function labelConflictWarning(pairs: readonly SecurityPair[], file: string): string | null {
  const conflicts = labelConflicts(pairs);
  if (conflicts.size === 0) return null;
  const hit = pairs.filter(
    (p) =>
      conflicts.has(normalizedText(answerCode(p.chosen))) ||
      conflicts.has(normalizedText(answerCode(p.rejected))),
  );
  return (
    `${hit.length} of ${pairs.length} pairs of ${file} label the same code both secure and insecure (e.g. ` +
    `${hit
      .slice(0, 3)
      .map((p) => p.id)
      .join(", ")}): used as given, as the paper's data holds them`
  );
}

/** All pairs, or a seeded subsample of `n` of them (seed 0; 0 or undefined: all), as a judge is trained on. */
export function subsamplePairs<T>(all: readonly T[], n: number | undefined): readonly T[] {
  return n && n < all.length
    ? createRng(0)
        .shuffle([...all])
        .slice(0, n)
    : all;
}

/** An answer's code as duplicates are found (the judge sees only the code). */
function codeKey(answer: string): string {
  return normalizedText(answerCode(answer));
}

/** What a pair can leak through: its prompt, and the code of either answer (whichever label it has elsewhere). */
function leakKeys(p: SecurityPair): string[] {
  return [
    `q\u0000${normalizedText(p.question)}`,
    `c\u0000${codeKey(p.chosen)}`,
    `c\u0000${codeKey(p.rejected)}`,
  ];
}

/**
 * Groups of pairs that share a prompt or an answer's code (after normalizedText), directly or through others:
 * each group's pair indices in input order, groups in the order of their first pair.
 */
export function duplicateGroups(pairs: readonly SecurityPair[]): number[][] {
  const parent = pairs.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]!]!;
    return i;
  };
  const owner = new Map<string, number>();
  pairs.forEach((p, i) => {
    for (const k of leakKeys(p)) {
      const j = owner.get(k);
      if (j === undefined) owner.set(k, i);
      else {
        const [a, b] = [find(i), find(j)];
        // the smaller index is the root, so a group is named by its first pair
        if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
      }
    }
  });
  const groups = new Map<number, number[]>();
  pairs.forEach((_, i) => {
    const r = find(i);
    const g = groups.get(r) ?? [];
    g.push(i);
    groups.set(r, g);
  });
  return [...groups.values()];
}

/**
 * Seeded split stratified by language, that never puts a prompt or a piece of code on both sides: pairs that share
 * a prompt or an answer's code (duplicateGroups: after whitespace and case normalisation; real CyberNative repeats
 * both) go to the same side, so a dev pair is not one the model or the judge was trained on. Each language gives
 * about round(n * devFraction) of its pairs to dev (whole groups, in a seeded order, while they fit), always
 * leaving at least one in train. Without duplicates every group is one pair and the split is exactly that count.
 * Both halves keep the input order.
 */
export function splitPairs(
  pairs: readonly SecurityPair[],
  opts: SplitOptions,
): { train: SecurityPair[]; dev: SecurityPair[] } {
  const { devFraction, seed } = opts;
  if (!(devFraction >= 0 && devFraction < 1))
    throw new InputError(`devFraction must be in [0, 1), got ${devFraction}`);
  const rng = createRng(seed);
  // a group counts in the language of its first pair
  const byLang = new Map<Language, { n: number; groups: number[][] }>();
  for (const g of duplicateGroups(pairs)) {
    const lang = pairs[g[0]!]!.lang;
    const entry = byLang.get(lang) ?? { n: 0, groups: [] };
    entry.n += g.length;
    entry.groups.push(g);
    byLang.set(lang, entry);
  }
  const isDev = new Array<boolean>(pairs.length).fill(false);
  // Languages in first-occurrence order, so the random stream does not depend on Map internals.
  for (const { n, groups } of byLang.values()) {
    const target = Math.min(n - 1, Math.round(n * devFraction));
    let taken = 0;
    for (const g of rng.shuffle(groups.slice())) {
      if (taken + g.length > target) continue;
      for (const i of g) isDev[i] = true;
      taken += g.length;
    }
  }
  return { train: pairs.filter((_, i) => !isDev[i]), dev: pairs.filter((_, i) => isDev[i]) };
}

/** How much of a held-out set its training set already holds (counts of held-out pairs). */
export interface PairOverlap {
  /** held-out pairs */
  n: number;
  /** whose prompt is a training prompt, character for character */
  questionsExact: number;
  /** whose prompt is a training prompt after normalizedText */
  questions: number;
  /** whose secure or insecure code is a training answer's code after normalizedText (what a judge sees) */
  code: number;
  /** sharing a prompt or code with training (questions or code) */
  pairs: number;
}

/** The overlap of held-out pairs with training pairs (see PairOverlap); `unseen`: the held-out pairs sharing none. */
export function pairOverlap(
  heldOut: readonly SecurityPair[],
  training: readonly SecurityPair[],
): PairOverlap & { unseen: SecurityPair[] } {
  const exact = new Set(training.map((p) => p.question));
  const questions = new Set(training.map((p) => normalizedText(p.question)));
  const code = new Set(training.flatMap((p) => [codeKey(p.chosen), codeKey(p.rejected)]));
  const out = {
    n: heldOut.length,
    questionsExact: 0,
    questions: 0,
    code: 0,
    pairs: 0,
    unseen: [] as SecurityPair[],
  };
  for (const p of heldOut) {
    const q = questions.has(normalizedText(p.question));
    const c = code.has(codeKey(p.chosen)) || code.has(codeKey(p.rejected));
    if (exact.has(p.question)) out.questionsExact++;
    if (q) out.questions++;
    if (c) out.code++;
    if (q || c) out.pairs++;
    else out.unseen.push(p);
  }
  return out;
}

function countBy<T, K>(items: readonly T[], key: (t: T) => K): Map<K, number> {
  const counts = new Map<K, number>();
  for (const t of items) counts.set(key(t), (counts.get(key(t)) ?? 0) + 1);
  return counts;
}
