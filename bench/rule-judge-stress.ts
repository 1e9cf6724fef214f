/**
 * The rule judge on hostile model output: how each rule's time grows on degenerate texts a looping model writes
 * (runs of one character, blank lines, unterminated strings and comments, deep nesting, long dotted names, chained
 * assignments, repeated statements, NUL bytes, lone surrogates, CRLF), and the judge's throughput on real answers.
 *
 *   node dist/bench/rule-judge-stress.js growth [--lang cpp] [--base 2000] [--factor 8] [--texts blank-lines,dots]
 *   node dist/bench/rule-judge-stress.js throughput [--data ../shared/data/cybernative/dev.jsonl] [--repeat 20]
 *   node dist/bench/rule-judge-stress.js worst [--chars 200000]
 *
 * growth: each rule of each language is timed alone (its own parse of the text: each run gets a new text) at
 * `base` and `factor` x base characters; a rule whose time grows more than 2.5 x factor (and takes over 5 ms) is
 * printed with both times. Linear rules grow about `factor` times; quadratic ones about factor^2.
 * throughput: the whole judge (extraction, then every rule of the language at the default limit) over the C++,
 * Java, Swift and Go answers of a CyberNative split, `repeat` times (each repetition a distinct text): answers per
 * second and the median, 99th percentile and largest time per answer.
 * worst: every degenerate text at `chars` characters, fenced, unterminated and inside <think>, through extraction
 * and the whole judge; the slowest answers, and any exception (there should be none).
 */
import * as fs from "node:fs";
import { extractCode } from "../src/data/code.js";
import { SAFETY_LANGUAGES, safetyLanguage, type SafetyLanguage } from "../src/data/languages.js";
import { judgeCode, listRules } from "../src/eval/judge/rules/index.js";
import { benchArgs, benchUsageError } from "./args.js";

const rep = (s: string, n: number) => s.repeat(Math.max(1, Math.ceil(n / s.length))).slice(0, n);
function numbered(n: number, line: (i: number) => string, head = "", tail = ""): string {
  let s = head;
  for (let i = 0; s.length < n; i++) s += line(i);
  return s + tail;
}

/** Degenerate texts of about n characters. */
export const TEXTS: Record<string, (n: number) => string> = {
  "one-letter": (n) => "a".repeat(n),
  spaces: (n) => " ".repeat(n),
  "blank-lines": (n) => "\n".repeat(n),
  "crlf-lines": (n) => rep("x = y;\r\n", n),
  "open-parens": (n) => "f" + "(".repeat(n),
  "nested-parens": (n) => "f" + "(".repeat(n / 2) + ")".repeat(n / 2),
  "open-braces": (n) => "{".repeat(n),
  "nested-braces": (n) => "void f() " + "{".repeat(n / 2) + "}".repeat(n / 2),
  "nested-brackets": (n) => "a" + "[a".repeat(n / 4) + "]".repeat(n / 4),
  "open-string": (n) => '"' + "a".repeat(n),
  quotes: (n) => '"'.repeat(n),
  apostrophes: (n) => "'".repeat(n),
  backticks: (n) => "`".repeat(n),
  "open-comment": (n) => "/*" + rep("x ", n),
  slashes: (n) => "/".repeat(n),
  stars: (n) => "*".repeat(n),
  "open-raw-string": (n) => 'R"(' + rep("a\n", n),
  "open-triple-quote": (n) => '"""' + rep("a\n", n),
  nul: (n) => rep("int a\0= b;\0", n),
  surrogates: (n) => rep("x\uD800 = \uDC00y;\n", n),
  dots: (n) => "a" + ".a".repeat(n / 2),
  "call-chain": (n) => rep("a.b(", n),
  arrows: (n) => rep("a->", n),
  colons: (n) => rep("a::", n),
  "less-than": (n) => "a" + "<a".repeat(n / 2),
  "open-angles": (n) => "<".repeat(n),
  "assignment-chain": (n) => "x" + " = x".repeat(n / 4),
  "plus-chain": (n) => "s = " + "a + ".repeat(n / 4) + "b;",
  "string-concat": (n) => 's = "a"' + ' + "a"'.repeat(n / 6) + ";",
  "long-argument-list": (n) => "f(" + "a, ".repeat(n / 3) + "b);",
  "if-chain": (n) => rep("if (x) ", n),
  semicolons: (n) => ";".repeat(n),
  digits: (n) => "1".repeat(n),
  hashes: (n) => "#".repeat(n),
  backslashes: (n) => "\\".repeat(n),
  dollars: (n) => "$".repeat(n),
  "format-directives": (n) => 'printf("' + "%s".repeat(n / 2) + '");',
  "spaces-tabs": (n) => rep(" \t", n),
  "word-space": (n) => rep("a ", n),
  "word-newline-tab": (n) => rep("int\n\t", n),
  "copy-one-line": (n) => rep("char buf[10]; strcpy(buf, argv[1]); ", n),
  "copy-lines": (n) => rep("char buf[10]; strcpy(buf, argv[1]);\n", n),
  "java-query-one-line": (n) =>
    rep('String q = "SELECT * FROM t WHERE id=" + req.getParameter("id"); stmt.executeQuery(q); ', n),
  "java-query-lines": (n) =>
    rep('String q = "SELECT * FROM t WHERE id=" + req.getParameter("id");\nstmt.executeQuery(q);\n', n),
  "go-query-lines": (n) =>
    rep('q := "SELECT * FROM t WHERE id=" + r.URL.Query().Get("id")\ndb.Query(q)\n', n),
  "swift-lines": (n) =>
    rep("let s = readLine()!\nlet u = URL(string: s)!\nvar p: String? = nil\nprint(p!)\n", n),
  "function-lines": (n) => rep("void f(int x) { int a[10]; a[x] = 1; }\n", n),
  "loop-lines": (n) => rep("for (int i = 0; i <= n; i++) { a[i] = b[i]; }\n", n),
  "copy-through-variables": (n) =>
    numbered(n, (i) => `x${i + 1} = x${i};\n`, "x0 = argv[1];\n", "system(x0);\n"),
  "nested-ifs": (n) => "void f() {\n" + "if (x) {\n".repeat(n / 12) + "}\n".repeat(n / 12) + "}\n",
  "nested-functions": (n) => "func f() {\n".repeat(n / 20) + "}\n".repeat(n / 20),
  "many-functions": (n) => numbered(n, (i) => `int f${i}(char* p) { char b[8]; strcpy(b, p); return 0; }\n`),
  "many-arrays": (n) => numbered(n, (i) => `int a${i}[${i + 1}];\n`),
  "many-request-values": (n) => numbered(n, (i) => `v${i} := r.FormValue("k")\n`, "func f() {\n", "}\n"),
  "many-strings": (n) => rep('"abc", ', n),
  generics: (n) => "List" + "<List".repeat(n / 5) + ">".repeat(n / 5),
};

interface Args {
  mode: "growth" | "throughput" | "worst";
  langs: SafetyLanguage[];
  base: number;
  factor: number;
  texts: string[];
  data: string;
  repeat: number;
  chars: number;
}

function usage(message: string): never {
  benchUsageError(import.meta.url, message);
}

function readArgs(): Args {
  const { values: a, positionals } = benchArgs(import.meta.url, {
    allowPositionals: true,
    options: {
      lang: { type: "string" },
      base: { type: "string", default: "2000" },
      factor: { type: "string", default: "8" },
      texts: { type: "string" },
      data: { type: "string", default: "../shared/data/cybernative/dev.jsonl" },
      repeat: { type: "string", default: "20" },
      chars: { type: "string", default: "200000" },
    },
  });
  const mode = positionals[0];
  if (mode !== "growth" && mode !== "throughput" && mode !== "worst")
    usage(`first argument: growth, throughput or worst${mode === undefined ? "" : `, got ${mode}`}`);
  if (positionals.length > 1) usage(`unexpected argument ${positionals[1]}`);
  const int = (name: string, v: string) => {
    if (!/^[1-9]\d*$/.test(v)) usage(`${name} needs a positive integer, got ${v}`);
    return Number(v);
  };
  let langs: SafetyLanguage[] = [...SAFETY_LANGUAGES];
  if (a.lang !== undefined) {
    if (!SAFETY_LANGUAGES.includes(a.lang as SafetyLanguage))
      usage(`--lang: not one of ${SAFETY_LANGUAGES.join(", ")}: ${a.lang}`);
    langs = [a.lang as SafetyLanguage];
  }
  const texts = a.texts === undefined ? Object.keys(TEXTS) : a.texts.split(",");
  for (const t of texts) if (!(t in TEXTS)) usage(`--texts: no text ${t} (${Object.keys(TEXTS).join(", ")})`);
  return {
    mode,
    langs,
    base: int("--base", a.base),
    factor: int("--factor", a.factor),
    texts,
    data: a.data,
    repeat: int("--repeat", a.repeat),
    chars: int("--chars", a.chars),
  };
}

let salt = 0;
/** Mean ms of check(code) over runs of at least 30 ms (at most 50 runs), each on a new text. */
function timeRule(check: (code: string) => unknown, code: string): number {
  const t0 = performance.now();
  let runs = 0;
  let t = 0;
  do {
    check(`${code}\n// ${salt++}`);
    runs++;
    t = performance.now() - t0;
  } while (t < 30 && runs < 50);
  return t / runs;
}

function growth(args: Args): void {
  console.log(
    `rule time at ${args.base} and ${args.base * args.factor} characters; flagged: grows over ${2.5 * args.factor}x`,
  );
  let flagged = 0;
  for (const lang of args.langs)
    for (const name of args.texts) {
      const small = TEXTS[name]!(args.base);
      const big = TEXTS[name]!(args.base * args.factor);
      for (const r of listRules(lang)) {
        const a = timeRule((c) => r.check(c), small);
        const b = timeRule((c) => r.check(c), big);
        const ratio = b / Math.max(a, 0.01);
        if (ratio > 2.5 * args.factor && b > 5) {
          flagged++;
          console.log(`${r.id}\t${name}\t${a.toFixed(2)} ms -> ${b.toFixed(1)} ms (${ratio.toFixed(1)}x)`);
        }
      }
    }
  console.log(`${flagged} rule/text pairs grow faster than linear`);
}

function throughput(args: Args): void {
  if (!fs.existsSync(args.data)) {
    console.log(`${args.data} is absent: nothing measured`);
    return;
  }
  const answers: [string, SafetyLanguage][] = [];
  for (const line of fs.readFileSync(args.data, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as { lang: string; chosen: string; rejected: string };
    const lang = safetyLanguage(r.lang);
    if (lang) answers.push([r.chosen, lang], [r.rejected, lang]);
  }
  const times: number[] = [];
  const t0 = performance.now();
  for (let k = 0; k < args.repeat; k++)
    for (const [answer, lang] of answers) {
      const s = performance.now();
      judgeCode(`${extractCode(answer, lang) ?? answer}\n// ${k}`, lang);
      times.push(performance.now() - s);
    }
  const wall = (performance.now() - t0) / 1000;
  times.sort((x, y) => x - y);
  const n = times.length;
  console.log(
    `${n} answers (${answers.length} x ${args.repeat}) in ${wall.toFixed(1)} s: ${(n / wall).toFixed(0)} answers/s; ` +
      `per answer median ${times[n >> 1]!.toFixed(2)} ms, p99 ${times[Math.floor(n * 0.99)]!.toFixed(1)} ms, ` +
      `max ${times[n - 1]!.toFixed(1)} ms`,
  );
}

function worst(args: Args): void {
  const rows: [number, string][] = [];
  let errors = 0;
  for (const name of Object.keys(TEXTS))
    for (const lang of args.langs) {
      const body = TEXTS[name]!(args.chars);
      const forms: [string, string][] = [
        ["fenced", "```" + lang + "\n" + body + "\n```"],
        ["unterminated fence", "```" + lang + "\n" + body],
        ["inside <think>", "<think>" + body],
      ];
      for (const [form, answer] of forms) {
        const t0 = performance.now();
        try {
          const code = extractCode(answer, lang);
          if (code !== null) judgeCode(code, lang);
        } catch (e) {
          errors++;
          console.log(`EXCEPTION ${lang} ${name} ${form}: ${(e as Error).message}`);
        }
        rows.push([performance.now() - t0, `${lang} ${name} (${form})`]);
      }
    }
  rows.sort((x, y) => y[0] - x[0]);
  const total = rows.reduce((s, r) => s + r[0], 0) / 1000;
  console.log(
    `${rows.length} answers of ${args.chars} characters in ${total.toFixed(1)} s, ${errors} exceptions; slowest:`,
  );
  for (const [t, what] of rows.slice(0, 10)) console.log(`  ${t.toFixed(0)} ms  ${what}`);
}

const args = readArgs();
if (args.mode === "growth") growth(args);
else if (args.mode === "throughput") throughput(args);
else worst(args);
