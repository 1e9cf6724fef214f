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
      `${rowWhere(file, r.row, field)}: unknown language "${raw}" (known: ${LANGUAGES.join(", ")})`,
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

/** Read a CyberNative-style JSONL file `{id, lang, question, chosen, rejected, cwe?}`. */
export function readPairs(file: string, opts: ReadPairsOptions = {}): SecurityPair[] {
  return pairsOf(file, readRowsOf(file), opts);
}

function pairsOf(file: string, rows: JsonRow[], opts: ReadPairsOptions): SecurityPair[] {
  const pairs: SecurityPair[] = [];
  const firstRowOfId = new Map<string, number>();
  for (const r of rows) {
    const id = requireString(file, r, "id");
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
  const keptLanguages = new Set(kept.map((p) => p.lang));
  if (wanted.length >= 2 && keptLanguages.size === 1) {
    const missing = wanted.filter((l) => !keptLanguages.has(l));
    throw new InputError(
      `asked for languages [${wanted.map(datasetName).join(", ")}] but ${file} has rows only for [${[...keptLanguages].map(datasetName).join(", ")}]; ` +
        `missing: ${missing.map(datasetName).join(", ")}; present: ${present()}`,
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

const SECURE_LABELS = ["safe", "secure"];
const INSECURE_LABELS = ["unsafe", "insecure"];

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
        `${rowWhere(file, r.row, "label")}: expected 1 (unsafe), 0 (safe), "unsafe"/"insecure" or "safe"/"secure", got ${preview(label)}`,
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

/** Two samples per pair: the chosen answer's code (secure) then the rejected one's (insecure). */
export function pairsToLabelledSamples(pairs: readonly SecurityPair[]): LabelledSample[] {
  return pairs.flatMap((p) => [
    { id: `${p.id}/secure`, lang: p.lang, code: extractCode(p.chosen) ?? p.chosen, secure: true },
    { id: `${p.id}/insecure`, lang: p.lang, code: extractCode(p.rejected) ?? p.rejected, secure: false },
  ]);
}

export interface SplitOptions {
  /** Fraction of each language's pairs that goes to dev, in [0, 1). */
  devFraction: number;
  seed: number;
}

/**
 * Seeded split stratified by language: each language gives round(n * devFraction) of its pairs to dev, but
 * always leaves at least one in train. Both halves keep the input order.
 */
export function splitPairs(
  pairs: readonly SecurityPair[],
  opts: SplitOptions,
): { train: SecurityPair[]; dev: SecurityPair[] } {
  const { devFraction, seed } = opts;
  if (!(devFraction >= 0 && devFraction < 1))
    throw new InputError(`devFraction must be in [0, 1), got ${devFraction}`);
  const rng = createRng(seed);
  const byLang = new Map<Language, number[]>();
  pairs.forEach((p, i) => {
    const list = byLang.get(p.lang) ?? [];
    list.push(i);
    byLang.set(p.lang, list);
  });
  const isDev = new Array<boolean>(pairs.length).fill(false);
  // Languages in first-occurrence order, so the random stream does not depend on Map internals.
  for (const indices of byLang.values()) {
    const nDev = Math.min(indices.length - 1, Math.round(indices.length * devFraction));
    for (const i of rng.shuffle(indices.slice()).slice(0, nDev)) isDev[i] = true;
  }
  return { train: pairs.filter((_, i) => !isDev[i]), dev: pairs.filter((_, i) => isDev[i]) };
}

function countBy<T, K>(items: readonly T[], key: (t: T) => K): Map<K, number> {
  const counts = new Map<K, number>();
  for (const t of items) counts.set(key(t), (counts.get(key(t)) ?? 0) + 1);
  return counts;
}
