/**
 * The rule judge on real code: runs it over every source file of one language below a corpus folder and prints
 * each finding (file:line, rule, severity, message, the line) and the counts per rule. Real library and
 * application code is not a generated answer, so a finding there is read and classed by hand (true positive,
 * false positive, arguable); the counts are how the rules' false positives on real code are tracked
 * (BENCHMARKS.md, "Rule judge on CyberNative", eighth to tenth passes).
 *
 *   node dist/bench/rule-judge-realcode.js --lang go --rules all /work/cn/sources/golang-1.19-src_1.19.8-2/usr/share/go-1.19/src
 *   node dist/bench/rule-judge-realcode.js --lang cpp --rules all --sample 60 --seed 1 <libstdc++ include dir>
 *   unzip -q /usr/lib/jvm/temurin-25-jdk-amd64/lib/src.zip -d /tmp/jdk-src
 *   node dist/bench/rule-judge-realcode.js --lang java /tmp/jdk-src          (credential, key and IV rules)
 *
 * --rules: comma-separated rule ids, or `all` (every rule of the language); default: the language's
 *   hardcoded-credential, hardcoded-key and static-iv rules (the eighth and ninth passes' check).
 * --min-severity low|medium|high: findings below it are not printed or counted (default low: all; the judge's
 *   verdict counts medium and high).
 * --sample N [--seed S]: after the list, N findings drawn at random (seeded, default seed 0) from those printed,
 *   for reading when there are too many to read all.
 * --summary: print only the counts.
 * A corpus folder that does not exist is skipped with a note (exit 0 when none is present), so the command can
 * be rerun where the Debian sources are not unpacked. Files are counted as tests when their path says so
 * (Go `_test.go` and `testdata/`, a `test`/`tests`/`testing` folder): the summary splits findings in them out.
 * C++ headers without an extension (libstdc++'s `<vector>`) are read when their first lines are preprocessor
 * lines or comments.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SAFETY_LANGUAGES, type SafetyLanguage } from "../src/data/languages.js";
import {
  judgeCode,
  listRules,
  SEVERITY_RANK,
  type Finding,
  type Severity,
} from "../src/eval/judge/rules/index.js";
import { createRng } from "../src/util/random.js";
import { benchArgs, benchUsageError } from "./args.js";

const EXTENSIONS: Record<SafetyLanguage, RegExp> = {
  cpp: /\.(cc|cpp|cxx|c\+\+|c|h|hh|hpp|hxx|ipp|inl|tcc)$/,
  java: /\.java$/,
  swift: /\.swift$/,
  go: /\.go$/,
};
const TEST_PATH = /(?:_test\.go$|(?:^|\/)(?:testdata|tests?|testing)\/)/;

interface Args {
  lang: SafetyLanguage;
  rules: string[] | undefined;
  dirs: string[];
  minSeverity: Severity;
  sample: number;
  seed: number;
  summary: boolean;
}

function usage(message: string): never {
  benchUsageError(import.meta.url, message);
}

function intArg(name: string, v: string | undefined): number {
  if (v === undefined || !/^\d+$/.test(v)) usage(`${name} needs a non-negative integer, got ${v}`);
  return Number(v);
}

function readArgs(): Args {
  const { values: a, positionals: dirs } = benchArgs(import.meta.url, {
    allowPositionals: true,
    options: {
      lang: { type: "string" },
      rules: { type: "string" },
      "min-severity": { type: "string", default: "low" },
      sample: { type: "string", default: "0" },
      seed: { type: "string", default: "0" },
      summary: { type: "boolean", default: false },
    },
  });
  if (a.lang === undefined) usage("--lang is required");
  if (!SAFETY_LANGUAGES.includes(a.lang as SafetyLanguage))
    usage(`--lang: not one of ${SAFETY_LANGUAGES.join(", ")}: ${a.lang}`);
  const lang = a.lang as SafetyLanguage;
  const minSeverity = a["min-severity"];
  if (!Object.hasOwn(SEVERITY_RANK, minSeverity))
    usage(`--min-severity: not one of low, medium, high: ${minSeverity}`);
  const sample = intArg("--sample", a.sample);
  const seed = intArg("--seed", a.seed);
  if (!dirs.length) usage("no folder given");
  const rules = a.rules;
  const known = listRules(lang).map((r) => r.id);
  const chosen =
    rules === "all"
      ? undefined
      : rules
        ? rules.split(",")
        : [`${lang}/hardcoded-credential`, `${lang}/hardcoded-key`, `${lang}/static-iv`].filter((id) =>
            known.includes(id),
          );
  for (const id of chosen ?? []) if (!known.includes(id)) usage(`--rules: ${lang} has no rule ${id}`);
  return {
    lang,
    rules: chosen,
    dirs,
    minSeverity: minSeverity as Severity,
    sample,
    seed,
    summary: a.summary,
  };
}

/** An extensionless file that starts like a C/C++ header (libstdc++'s <vector>, <map>, ...). */
function looksLikeCppHeader(file: string): boolean {
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.alloc(4096);
    const head = buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString("utf8");
    if (head.includes("\0")) return false;
    const first = head.split("\n").find((l) => l.trim() && !/^\s*(?:\/\/|\/\*|\*)/.test(l));
    return first !== undefined && /^\s*#\s*(?:pragma|ifndef|if|include|define)\b/.test(first);
  } finally {
    fs.closeSync(fd);
  }
}

function sourceFiles(dir: string, lang: SafetyLanguage, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) sourceFiles(p, lang, out);
    else if (!e.isFile()) continue;
    else if (EXTENSIONS[lang].test(e.name)) out.push(p);
    else if (lang === "cpp" && !e.name.includes(".") && looksLikeCppHeader(p)) out.push(p);
  }
  return out;
}

interface Row {
  where: string;
  test: boolean;
  f: Finding;
}

const args = readArgs();
const present = args.dirs.filter((d) => fs.statSync(d, { throwIfNoEntry: false })?.isDirectory());
for (const d of args.dirs.filter((d) => !present.includes(d))) console.log(`skipped: ${d} is not present`);
if (!present.length) process.exit(0);

const t0 = Date.now();
const threshold = SEVERITY_RANK[args.minSeverity];
let files = 0;
let testFiles = 0;
let withFindings = 0;
const rows: Row[] = [];
for (const dir of present) {
  for (const file of sourceFiles(dir, args.lang).sort()) {
    const rel = path.relative(dir, file);
    const test = TEST_PATH.test(rel);
    files++;
    if (test) testFiles++;
    const j = judgeCode(fs.readFileSync(file, "utf8"), args.lang, {
      rules: args.rules,
      minSeverity: "low",
      // whole files (a library header runs to 100s of kB): the answer-length cap is for model output
      maxChars: Infinity,
    });
    const kept = j.findings.filter((f) => SEVERITY_RANK[f.severity] >= threshold);
    if (!kept.length) continue;
    withFindings++;
    for (const f of kept)
      rows.push({ where: `${present.length > 1 ? `${dir}:` : ""}${rel}:${f.line}`, test, f });
  }
}

const show = (r: Row) =>
  `${r.where} ${r.f.ruleId} ${r.f.severity}${r.test ? " test" : ""} ${r.f.message.slice(0, 110)} | ` +
  r.f.snippet.replace(/\s+/g, " ").slice(0, 100);
if (!args.summary) for (const r of rows) console.log(show(r));
if (args.sample > 0 && rows.length > 0) {
  const drawn = createRng(args.seed)
    .shuffle(rows.map((_, k) => k))
    .slice(0, args.sample)
    .sort((a, b) => a - b);
  console.log(`sample: ${drawn.length} of ${rows.length} findings, seed ${args.seed}`);
  for (const k of drawn) console.log(`  ${show(rows[k]!)}`);
}

const byRule = new Map<string, { all: number; test: number; decides: number }>();
for (const r of rows) {
  const c = byRule.get(r.f.ruleId) ?? { all: 0, test: 0, decides: 0 };
  c.all++;
  if (r.test) c.test++;
  if (SEVERITY_RANK[r.f.severity] >= SEVERITY_RANK.medium) c.decides++;
  byRule.set(r.f.ruleId, c);
}
const deciding = rows.filter((r) => SEVERITY_RANK[r.f.severity] >= SEVERITY_RANK.medium);
console.log(
  `${args.lang}: ${files} files (${testFiles} tests), ${withFindings} with findings, ${rows.length} findings ` +
    `(${rows.filter((r) => r.test).length} in tests), ${deciding.length} of medium or high severity in ` +
    `${new Set(deciding.map((r) => r.where.replace(/:\d+$/, ""))).size} files; rules ` +
    `${args.rules ? args.rules.join(", ") : "all"}, ${((Date.now() - t0) / 1000).toFixed(1)} s`,
);
for (const [id, c] of [...byRule].sort((a, b) => b[1].all - a[1].all || a[0].localeCompare(b[0])))
  console.log(`  ${id}: ${c.all} (${c.test} in tests, ${c.decides} medium/high)`);
