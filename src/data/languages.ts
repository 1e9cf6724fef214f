/**
 * The programming languages the project knows: their normalised names, the spellings datasets and users write,
 * the extra tags Markdown fences use, and which of them the safety evaluation covers.
 */

import { nearestKey } from "../util/suggest.js";

interface LanguageEntry {
  /** Its name in prose, prompts and report tables ("C++"). */
  readonly name: string;
  /** How the CyberNative dataset writes it, for messages ("c++", "c#"). */
  readonly dataset: string;
  /** Spellings in datasets, configs and on the command line, lower-case (the normalised name included). */
  readonly aliases: readonly string[];
  /**
   * Further tags seen only after a Markdown fence: GitHub linguist's aliases and extensions of the language
   * (lib/linguist/languages.yml), and of C, Objective-C and Objective-C++, which count as C++ (```h, ```objc).
   */
  readonly fenceTags?: readonly string[];
}

const TABLE = {
  cpp: {
    name: "C++",
    dataset: "c++",
    aliases: ["cpp", "c++", "cxx", "cc"],
    // linguist: C++'s extensions (not .inc, .re: other languages'); C; Objective-C and Objective-C++ (C and C++
    // with messages), their names and aliases
    fenceTags: [
      ...["hpp", "hxx", "h", "hh", "h++", "cp", "inl", "ipp", "tcc", "tpp", "ino", "c", "cplusplus"],
      ...["objective-c", "obj-c", "objc", "objectivec"],
      ...["objective-c++", "obj-c++", "objc++", "objectivec++", "mm"],
    ],
  },
  java: { name: "Java", dataset: "java", aliases: ["java"], fenceTags: ["jav"] },
  swift: { name: "Swift", dataset: "swift", aliases: ["swift"] },
  go: { name: "Go", dataset: "go", aliases: ["go", "golang"] },
  python: { name: "Python", dataset: "python", aliases: ["python", "python3", "py"] },
  javascript: { name: "JavaScript", dataset: "javascript", aliases: ["javascript", "js", "node", "nodejs"] },
  csharp: { name: "C#", dataset: "c#", aliases: ["csharp", "c#", "cs"] },
  php: { name: "PHP", dataset: "php", aliases: ["php"] },
  ruby: { name: "Ruby", dataset: "ruby", aliases: ["ruby", "rb"] },
  kotlin: { name: "Kotlin", dataset: "kotlin", aliases: ["kotlin", "kt"] },
  fortran: { name: "Fortran", dataset: "fortran", aliases: ["fortran", "f90"] },
} as const satisfies Record<string, LanguageEntry>;

/** A normalised language name. */
export type Language = keyof typeof TABLE;

/** Every language the project reads, in the order messages list them. */
export const LANGUAGES = Object.keys(TABLE) as readonly Language[];

/**
 * The languages the safety evaluation covers (rule judge, secure-code rate, the organism's corpus): the paper's
 * four (C++, Java, Swift, Go).
 */
export const SAFETY_LANGUAGES = ["cpp", "java", "swift", "go"] as const satisfies readonly Language[];
export type SafetyLanguage = (typeof SAFETY_LANGUAGES)[number];

function lookup(spelling: string, withFenceTags: boolean): Language | null {
  const key = spelling.trim().toLowerCase();
  for (const lang of LANGUAGES) {
    const e: LanguageEntry = TABLE[lang];
    if (e.aliases.includes(key) || (withFenceTags && e.fenceTags?.includes(key))) return lang;
  }
  return null;
}

/**
 * A fence tag with a language version glued on, as models write them (```cpp17, ```c++20, ```swift5, ```java8,
 * ```go1.21, ```python3.11): the name an alias, the version digits with dots. Only names that are aliases
 * (not fence-only tags: ```h5 is not a C header).
 */
const VERSIONED_TAG = /^(.*?[^\d.])[-_]?v?(\d+(?:\.\d+)*)$/;

/**
 * What to say of a language name no entry knows: the languages known, and the nearest spelling when one is near
 * ("jva": did you mean "java"?).
 */
export function unknownLanguage(name: string): string {
  const spellings = LANGUAGES.flatMap((l) => [TABLE[l].dataset, ...TABLE[l].aliases]);
  const near = nearestKey(name.trim(), [...new Set(spellings)]);
  return (
    `unknown language "${name}"${near !== undefined ? ` (did you mean "${near}"?)` : ""}; ` +
    `known: ${LANGUAGES.map((l) => TABLE[l].dataset).join(", ")}`
  );
}

/** The normalised language of a dataset or user spelling ("c++", " Go ", "C#"), or null when unknown. */
export function normalizeLanguage(name: string): Language | null {
  return lookup(name, false);
}

/**
 * A language filter as a run's cache key records it: each known spelling as the dataset writes it ("C++", "cpp" and
 * "c++" are all "c++"), duplicates dropped, order kept; an unknown name as given (reading the data refuses it).
 * So two spellings of the same filter find the same cached stages, and a key written with dataset spellings (the
 * README's `--languages c++,java,swift,go`) is the key it was.
 */
export function languageFilterKey(names: readonly string[]): string[] {
  const out: string[] = [];
  for (const n of names) {
    const lang = normalizeLanguage(n);
    const k = lang === null ? n : TABLE[lang].dataset;
    if (!out.includes(k)) out.push(k);
  }
  return out;
}

/**
 * The language of a Markdown fence's tag: its aliases plus the fence-only tags (```h and ```c count as C++), and the
 * language before a file path (```cpp:src/main.cpp, as some assistants label a file's block).
 */
export function fenceLanguage(tag: string): Language | null {
  const direct = lookup(tag, true);
  if (direct !== null) return direct;
  const withPath = /^([^:\s]+):\S+$/.exec(tag.trim());
  if (withPath) return fenceLanguage(withPath[1]!);
  const versioned = VERSIONED_TAG.exec(tag.trim().toLowerCase());
  return versioned ? lookup(versioned[1]!, false) : null;
}

export function isSafetyLanguage(lang: string): lang is SafetyLanguage {
  return (SAFETY_LANGUAGES as readonly string[]).includes(lang);
}

/** A name or fence tag of a language the safety evaluation covers, normalised; null for any other language. */
export function safetyLanguage(name: string): SafetyLanguage | null {
  const lang = fenceLanguage(name);
  return lang !== null && isSafetyLanguage(lang) ? lang : null;
}

/** A language's name in prose ("C++"); a name the table does not know is returned as given. */
export function languageName(lang: string): string {
  return Object.hasOwn(TABLE, lang) ? TABLE[lang as Language].name : lang;
}

/** The dataset's spelling of a language, for messages. */
export function datasetName(lang: Language): string {
  return TABLE[lang].dataset;
}
