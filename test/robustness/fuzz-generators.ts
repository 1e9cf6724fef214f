/**
 * Seeded input generators for fuzzing the dataset readers (src/data/pairs.ts, src/eval/utility/datasets.ts).
 * Shared by test/robustness/dataset-fuzz.test.ts (a few hundred cases) and bench/fuzz-long.ts (minutes).
 *
 * Each case is a file (bytes and a name suffix) built from a valid seed row by one mutation: random bytes,
 * truncation, byte flips, invalid UTF-8, a field replaced by a value of the wrong type, deep nesting, odd
 * line structure, or a corrupted Parquet file. The contract checked on every case: the reader returns items
 * that satisfy its schema, or throws InputError; nothing else.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";
import { InputError } from "../../src/errors.js";
import { readLabelledCode, readPairs } from "../../src/data/pairs.js";
import { LANGUAGES } from "../../src/data/languages.js";
import { loadArc, loadGsm8k, loadHumanEval, loadMmlu } from "../../src/eval/utility/datasets.js";
import { createRng, type Rng } from "../../src/util/random.js";
import { jsonlLimits } from "../../src/data/jsonl.js";

type Row = Record<string, unknown>;

export interface FuzzTarget {
  name: string;
  /** Valid rows in the reader's schema: every mutation starts from these. */
  seedRows: Row[];
  /** Column layout for a Parquet copy of the seed rows, when the reader accepts Parquet. */
  parquet?: () => ArrayBuffer;
  read: (file: string) => unknown[] | Promise<unknown[]>;
  /** Throws (a plain Error) when an item the reader returned breaks the schema it promises. */
  checkItem: (item: unknown) => void;
}

export interface FuzzCase {
  target: string;
  mutation: string;
  suffix: string;
  bytes: Uint8Array;
}

const isString = (v: unknown): v is string => typeof v === "string";
function expect(ok: boolean, what: string, item: unknown): void {
  if (!ok) throw new Error(`schema broken: ${what} in ${JSON.stringify(item)?.slice(0, 200)}`);
}

const CODE = "```python\nimport os\nos.system(cmd)\n```";
const SAFE_CODE = "```python\nimport subprocess\nsubprocess.run([cmd], check=True)\n```";

export const TARGETS: FuzzTarget[] = [
  {
    name: "readPairs",
    seedRows: [
      {
        id: "p1",
        lang: "python",
        question: "Run a command",
        chosen: SAFE_CODE,
        rejected: CODE,
        cwe: "CWE-78",
      },
      {
        id: "p2",
        lang: "c++",
        question: "Copy a string",
        chosen: "strncpy(dst, src, n);",
        rejected: "strcpy(dst, src);",
      },
    ],
    read: (file) => readPairs(file),
    checkItem: (p) => {
      const pair = p as Row;
      for (const f of ["id", "question", "chosen", "rejected"])
        expect(isString(pair[f]) && pair[f] !== "", f, p);
      expect((LANGUAGES as readonly unknown[]).includes(pair.lang), "lang is a known language", p);
      expect(pair.cwe === undefined || isString(pair.cwe), "cwe", p);
    },
  },
  {
    name: "readLabelledCode",
    seedRows: [
      { id: "c1", code: CODE, label: 0, lang: "python" },
      { code: "char buf[8];\nstrcpy(buf, input);", label: "insecure" },
      { id: "c3", code: SAFE_CODE, label: "secure", lang: "py" },
    ],
    read: (file) => readLabelledCode(file),
    checkItem: (s) => {
      const sample = s as Row;
      expect(isString(sample.id) && sample.id !== "", "id", s);
      expect(isString(sample.code) && sample.code.trim() !== "", "code", s);
      expect(typeof sample.secure === "boolean", "secure", s);
      expect(sample.lang === undefined || (LANGUAGES as readonly unknown[]).includes(sample.lang), "lang", s);
    },
  },
  {
    name: "loadArc",
    seedRows: [
      {
        id: "Mercury_1",
        question: "Which is a gas?",
        choices: { text: ["ice", "steam", "rock"], label: ["A", "B", "C"] },
        answerKey: "B",
      },
      { id: "n2", question: "2+2?", choices: { text: ["3", "4"], label: ["1", "2"] }, answerKey: "2" },
    ],
    read: (file) => loadArc(file),
    checkItem: (a) => {
      const item = a as {
        id: unknown;
        question: unknown;
        choices: { text: unknown[]; label: unknown[] };
      } & Row;
      expect(isString(item.id) && isString(item.question), "id/question", a);
      expect(
        item.choices.text.every(isString) && item.choices.label.every(isString),
        "choices are strings",
        a,
      );
      expect(
        item.choices.text.length === item.choices.label.length && item.choices.text.length > 0,
        "lengths",
        a,
      );
      const gold = item.gold as number;
      expect(
        Number.isInteger(gold) && item.choices.label[gold] === item.answerKey,
        "gold indexes answerKey",
        a,
      );
    },
  },
  {
    name: "loadGsm8k",
    seedRows: [
      { question: "Tom has 3 apples and buys 2. How many?", answer: "3 + 2 = 5\n#### 5" },
      { question: "Half of 10?", answer: "10 / 2 = 5\n#### 5" },
    ],
    read: (file) => loadGsm8k(file),
    checkItem: (g) => {
      const item = g as Row;
      expect(isString(item.question) && isString(item.answer) && isString(item.finalAnswer), "strings", g);
      expect((item.answer as string).includes("#### "), "answer has '#### '", g);
    },
  },
  {
    name: "loadMmlu",
    seedRows: [
      { question: "What is 2+2?", subject: "math", choices: ["3", "4", "5", "6"], answer: 1 },
      {
        question: "Bones in the adult body?",
        subject: "anatomy",
        choices: ["206", "212", "180", "300"],
        answer: 0,
      },
    ],
    parquet: () =>
      parquetWriteBuffer({
        columnData: [
          { name: "question", data: ["What is 2+2?", "Bones?"], type: "STRING" },
          { name: "subject", data: ["math", "anatomy"], type: "STRING" },
          {
            name: "choices",
            data: [
              ["3", "4", "5", "6"],
              ["206", "212", "180", "300"],
            ],
          },
          { name: "answer", data: [1n, 0n], type: "INT64" },
        ],
      }),
    read: (file) => loadMmlu(file),
    checkItem: (m) => {
      const item = m as Row;
      expect(isString(item.question) && isString(item.subject), "strings", m);
      expect(
        Array.isArray(item.choices) && item.choices.length === 4 && item.choices.every(isString),
        "choices",
        m,
      );
      expect(
        Number.isInteger(item.answer) && (item.answer as number) >= 0 && (item.answer as number) <= 3,
        "answer",
        m,
      );
    },
  },
  {
    name: "loadHumanEval",
    seedRows: [
      {
        task_id: "HumanEval/0",
        prompt: "def add(a, b):\n",
        canonical_solution: "    return a + b\n",
        test: "def check(f):\n    assert f(1, 2) == 3\n",
        entry_point: "add",
      },
    ],
    read: (file) => loadHumanEval(file),
    checkItem: (h) => {
      const item = h as Row;
      for (const f of ["task_id", "prompt", "canonical_solution", "test", "entry_point"])
        expect(isString(item[f]), f, h);
    },
  },
];

// ---------------------------------------------------------------- values and mutations

const pick = <T>(rng: Rng, items: readonly T[]): T => items[rng.int(items.length)]!;

function randomString(rng: Rng, maxLength: number): string {
  const alphabet = [
    "a",
    "Z",
    "0",
    " ",
    "\n",
    "\t",
    '"',
    "\\",
    "{",
    "}",
    "[",
    "]",
    ";",
    "(",
    ")",
    "#### ",
    "```",
    "é",
    "\u2028",
    "\ud800",
    "😀",
    "\u0000",
  ];
  let s = "";
  const n = rng.int(maxLength + 1);
  for (let i = 0; i < n; i++) s += pick(rng, alphabet);
  return s;
}

function deeplyNested(rng: Rng, depth: number): unknown {
  let v: unknown = rng.next() < 0.5 ? 1 : "x";
  for (let i = 0; i < depth; i++) v = rng.next() < 0.5 ? [v] : { a: v };
  return v;
}

/** A JSON value of a random kind: the wrong type for most fields, occasionally the right one. */
function weirdValue(rng: Rng): unknown {
  switch (rng.int(16)) {
    case 0:
      return null;
    case 1:
      return rng.next() < 0.5;
    case 2:
      return pick(rng, [0, 1, -1, 4, 0.5, 1e308, -1e308, 2 ** 53 + 1, -0, 3]);
    case 3:
      return "";
    case 4:
      return randomString(rng, 40);
    case 5:
      return pick(rng, [
        "constructor",
        "__proto__",
        "toString",
        "hasOwnProperty",
        "valueOf",
        "PYTHON",
        " c++ ",
        "secure",
        "insecure",
        "A",
      ]);
    case 6:
      return [];
    case 7:
      return [randomString(rng, 5), 1, null];
    case 8:
      return pick(rng, [["a", "b", "c", "d"], ["A", "B"], ["x"]]);
    case 9:
      return {};
    case 10:
      return { text: ["a"], label: ["A"] };
    case 11:
      return deeplyNested(rng, 1 + rng.int(64));
    case 12:
      return "x".repeat(1 + rng.int(5000));
    case 13:
      return "#### " + randomString(rng, 10);
    case 14:
      return CODE;
    default:
      return deepPlaceholder(1000 + rng.int(20000), rng.next() < 0.5 ? "a" : "o");
  }
}

/**
 * Nesting deeper than a few thousand levels overflows JSON.stringify and structuredClone here, so it travels
 * as a placeholder string that `jsonl` expands into raw JSON text.
 */
function deepPlaceholder(depth: number, kind: "a" | "o"): string {
  return `\u0000DEEP:${depth}:${kind}\u0000`;
}
const DEEP_PLACEHOLDER = /"\\u0000DEEP:(\d+):([ao])\\u0000"/g;
function expandDeep(text: string): string {
  return text.replace(DEEP_PLACEHOLDER, (_, depth: string, kind: string) => {
    const n = Number(depth);
    return kind === "a" ? "[".repeat(n) + "1" + "]".repeat(n) : '{"a":'.repeat(n) + "1" + "}".repeat(n);
  });
}

/** Values that probe a particular field's checks: near-misses, prototype names, deep nesting. */
const FIELD_PROBES: Partial<Record<string, () => unknown[]>> = {
  lang: () => ["constructor", "__proto__", "toString", "hasOwnProperty", "PYTHON", " c++ ", "klingon", ""],
  label: () => [1, 0, 2, -1, true, "secure", " INSECURE ", "1", deepPlaceholder(12_000, "a")],
  answer: () => [0, 3, 4, -1, 1.5, "1", 1e400, deepPlaceholder(12_000, "o"), "#### 5", "no final answer"],
  answerKey: () => ["A", "Z", "", 1, deepPlaceholder(12_000, "a")],
  choices: () => [
    ["a", "b", "c", "d"],
    ["a", "b", "c"],
    { text: ["a", "b"], label: ["A"] },
    { text: [], label: [] },
  ],
  id: () => ["", "p1", "dup", 1, null],
};

function probeOrWeird(rng: Rng, key: string): unknown {
  // hasOwn: a row key such as "constructor" must not find Object.prototype's members.
  const probes = Object.hasOwn(FIELD_PROBES, key) ? FIELD_PROBES[key] : undefined;
  return probes && rng.next() < 0.5 ? pick(rng, probes()) : weirdValue(rng);
}

function mutateRow(rng: Rng, row: Row): Row {
  const out: Row = structuredClone(row);
  const edits = 1 + rng.int(3);
  for (let e = 0; e < edits; e++) {
    const keys = Object.keys(out);
    if (keys.length === 0) break;
    switch (rng.int(5)) {
      case 0: // delete a field
        delete out[pick(rng, keys)];
        break;
      case 1: // add a stray or prototype-named field
        out[pick(rng, ["__row", "extra", "constructor", "label", "cwe", "lang", "id"])] = weirdValue(rng);
        break;
      case 2: {
        // replace inside a nested object or array
        const key = pick(rng, keys);
        const v = out[key];
        if (v && typeof v === "object") {
          const inner = v as Row;
          const innerKeys = Object.keys(inner);
          if (innerKeys.length > 0) inner[pick(rng, innerKeys)] = weirdValue(rng);
          else out[key] = probeOrWeird(rng, key);
        } else out[key] = probeOrWeird(rng, key);
        break;
      }
      default: {
        const key = pick(rng, keys);
        out[key] = probeOrWeird(rng, key);
      }
    }
  }
  return out;
}

const encoder = new TextEncoder();
const jsonl = (rows: unknown[], eol = "\n") => expandDeep(rows.map((r) => JSON.stringify(r)).join(eol) + eol);

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const INVALID_UTF8: number[][] = [
  [0xff],
  [0xc3],
  [0xed, 0xa0, 0x80],
  [0xc0, 0xaf],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0x80, 0x80],
];

type Mutation = (rng: Rng, t: FuzzTarget) => { mutation: string; suffix: string; bytes: Uint8Array };

const MUTATIONS: Mutation[] = [
  (rng) => {
    const bytes = new Uint8Array(rng.int(2000));
    for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(256);
    // Sometimes start with the gzip magic, so the gzip branch sees garbage too.
    if (bytes.length >= 2 && rng.next() < 0.3) bytes.set([0x1f, 0x8b]);
    return { mutation: "random bytes", suffix: ".jsonl", bytes };
  },
  (rng, t) => {
    const full = encoder.encode(jsonl(t.seedRows));
    return { mutation: "truncated", suffix: ".jsonl", bytes: full.slice(0, rng.int(full.length)) };
  },
  (rng, t) => {
    const full = zlib.gzipSync(jsonl(t.seedRows));
    return { mutation: "truncated gzip", suffix: ".jsonl.gz", bytes: full.subarray(0, rng.int(full.length)) };
  },
  (rng, t) => {
    const bytes = encoder.encode(jsonl(t.seedRows));
    const flips = 1 + rng.int(4);
    for (let i = 0; i < flips; i++) bytes[rng.int(bytes.length)] = rng.int(256);
    return { mutation: "byte flips", suffix: ".jsonl", bytes };
  },
  (rng, t) => {
    const text = encoder.encode(jsonl(t.seedRows));
    // Inside a string value where possible: right after an opening quote.
    const quotes = [...text.keys()].filter((i) => text[i] === 0x22);
    const at = quotes.length > 0 ? pick(rng, quotes) + 1 : 0;
    const bad = Uint8Array.from(pick(rng, INVALID_UTF8));
    return {
      mutation: "invalid UTF-8",
      suffix: ".jsonl",
      bytes: concat([text.subarray(0, at), bad, text.subarray(at)]),
    };
  },
  (rng, t) => {
    const rows = t.seedRows.map((r) => (rng.next() < 0.7 ? mutateRow(rng, r) : r));
    return { mutation: "mutated rows", suffix: ".jsonl", bytes: encoder.encode(jsonl(rows)) };
  },
  (rng, t) => {
    const rows = t.seedRows.map((r) => mutateRow(rng, r));
    return { mutation: "mutated rows (gzip)", suffix: ".jsonl.gz", bytes: zlib.gzipSync(jsonl(rows)) };
  },
  (rng, t) => {
    const row = JSON.stringify(pick(rng, t.seedRows));
    const lines = [
      "",
      "   ",
      "\r",
      "[]",
      "null",
      "42",
      '"a string"',
      "[" + row + "]",
      row + row,
      row.slice(0, -1) + ', "id": "dup"}',
      "\ufeff" + row,
      row,
      row,
      "{".repeat(50000),
      "[".repeat(3000) + "]".repeat(3000),
    ];
    const chosen = Array.from({ length: 1 + rng.int(4) }, () => pick(rng, lines));
    return {
      mutation: "odd lines",
      suffix: ".jsonl",
      bytes: encoder.encode(chosen.join(rng.next() < 0.5 ? "\n" : "\r\n")),
    };
  },
  (rng, t) => {
    // A huge number as text: JSON.parse reads 1e400 as Infinity, and long digit runs lose precision.
    const row = JSON.stringify(pick(rng, t.seedRows));
    const key = pick(rng, Object.keys(pick(rng, t.seedRows)));
    const huge = pick(rng, [
      "1e400",
      "-1e400",
      "9".repeat(400),
      "1e-400",
      "-0",
      "123456789012345678901234567890",
    ]);
    const text = row.replace(new RegExp(`"${key}":("(?:[^"\\\\]|\\\\.)*"|[^,}\\]]+)`), `"${key}":${huge}`);
    return { mutation: "huge numbers", suffix: ".jsonl", bytes: encoder.encode(text + "\n") };
  },
  (rng, t) => {
    // One field of one row: the rest of the file stays valid, so the reader's check of that field decides.
    const rows = structuredClone(t.seedRows);
    const row = pick(rng, rows);
    const key = pick(rng, Object.keys(row));
    row[key] = probeOrWeird(rng, key);
    return { mutation: `one field (${key})`, suffix: ".jsonl", bytes: encoder.encode(jsonl(rows)) };
  },
  (rng, t) => {
    // A key that reaches a prototype, at the top of a row or inside a nested object, in the raw text (an
    // object literal cannot carry an own "__proto__" through JSON.stringify).
    const rows = t.seedRows.map((r) => JSON.stringify(r));
    const i = rng.int(rows.length);
    const key = pick(rng, ["__proto__", "constructor", "prototype", "a.__proto__.b"]);
    const value = pick(rng, ['{"polluted": true}', '{"prototype": {"polluted": 1}}', "1", '"x"']);
    const opens = [...rows[i]!.matchAll(/\{/g)].map((m) => m.index!);
    const at = pick(rng, opens) + 1;
    const tail = rows[i]!.slice(at);
    rows[i] = `${rows[i]!.slice(0, at)}"${key}":${value}${tail.startsWith("}") ? "" : ","}${tail}`;
    const gz = rng.next() < 0.3;
    const text = rows.join("\n") + "\n";
    return {
      mutation: "prototype key",
      suffix: gz ? ".jsonl.gz" : ".jsonl",
      bytes: gz ? zlib.gzipSync(text) : encoder.encode(text),
    };
  },
  (rng, t) => {
    // One row around the row limit: just under it must read, past it must be an InputError naming the row.
    const limit = jsonlLimits().maxRowBytes;
    const rows = structuredClone(t.seedRows);
    const row = pick(rng, rows);
    const key = pick(
      rng,
      Object.keys(row).filter((k) => typeof row[k] === "string"),
    );
    const base = JSON.stringify({ ...row, [key]: "" }).length;
    const target = limit + pick(rng, [-base - 1, -base, 1, 2, 1000, limit]);
    row[key] = (typeof row[key] === "string" ? row[key] : "") + "x".repeat(Math.max(0, target - base - 10));
    const gz = rng.next() < 0.3;
    const text = jsonl(rows);
    return {
      mutation: "row near the size limit",
      suffix: gz ? ".jsonl.gz" : ".jsonl",
      bytes: gz ? zlib.gzipSync(text) : encoder.encode(text),
    };
  },
];

const PARQUET_MUTATIONS: Mutation[] = [
  (rng, t) => {
    const bytes = new Uint8Array(t.parquet!());
    const flips = 1 + rng.int(8);
    for (let i = 0; i < flips; i++) bytes[rng.int(bytes.length)] = rng.int(256);
    return { mutation: "parquet byte flips", suffix: ".parquet", bytes };
  },
  (rng, t) => {
    const bytes = new Uint8Array(t.parquet!());
    return { mutation: "parquet truncated", suffix: ".parquet", bytes: bytes.slice(rng.int(bytes.length)) };
  },
  (rng, t) => {
    // Keep the magic and footer but scramble the footer length, the classic way to ask for a huge read.
    const bytes = new Uint8Array(t.parquet!());
    const view = new DataView(bytes.buffer);
    view.setUint32(
      bytes.length - 8,
      pick(rng, [0, 1, 0xffffffff, 0x7fffffff, bytes.length, bytes.length - 8]),
      true,
    );
    return { mutation: "parquet footer length", suffix: ".parquet", bytes };
  },
];

/** The i-th case of a seeded stream: the same (seed, i) always gives the same file. */
export function makeCase(seed: number, i: number, target: FuzzTarget): FuzzCase {
  const rng = createRng(seed * 1_000_003 + i);
  const pool = target.parquet && rng.next() < 0.25 ? PARQUET_MUTATIONS : MUTATIONS;
  const made = pick(rng, pool)(rng, target);
  return { target: target.name, ...made };
}

/** A key written through a prototype would show up on every object. */
function assertNoPollution(label: string, c: FuzzCase): void {
  const leaked = Object.keys(Object.prototype);
  if (leaked.length > 0 || ({} as Record<string, unknown>).polluted !== undefined)
    throw new Error(
      `${label} (${c.target}, ${c.mutation}): Object.prototype was polluted (${leaked.join(", ")})`,
    );
}

export interface Outcome {
  kind: "items" | "input-error";
}

/**
 * Write the case to `dir`, run the reader, and check the contract. Returns what happened; throws an Error
 * describing the case when the reader threw something other than InputError or returned a broken item.
 */
export async function runCase(dir: string, target: FuzzTarget, c: FuzzCase, label: string): Promise<Outcome> {
  const file = path.join(dir, `${label}${c.suffix}`);
  fs.writeFileSync(file, c.bytes);
  let items: unknown[];
  try {
    items = await target.read(file);
  } catch (e) {
    assertNoPollution(label, c);
    if (e instanceof InputError) {
      if (!e.message.includes(file) && !e.message.includes(path.basename(file)))
        throw new Error(
          `${label} (${c.target}, ${c.mutation}): InputError does not name the file: ${e.message.slice(0, 200)}`,
        );
      return { kind: "input-error" };
    }
    const what = e instanceof Error ? `${e.name}: ${e.message.slice(0, 200)}` : String(e);
    throw new Error(`${label} (${c.target}, ${c.mutation}): threw ${what}`, { cause: e });
  }
  assertNoPollution(label, c);
  try {
    for (const item of items) target.checkItem(item);
  } catch (e) {
    throw new Error(`${label} (${c.target}, ${c.mutation}): ${(e as Error).message}`);
  }
  return { kind: "items" };
}
