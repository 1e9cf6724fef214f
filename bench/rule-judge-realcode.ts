/**
 * False positives of rules on real code: runs the rule judge over every source file of one language below a
 * folder (a code base expected to hold no instance of what the rules look for, e.g. the JDK's sources for the
 * credential rules: every finding there is a false positive) and prints each finding and a count. How the
 * credential, key and IV rules' name heuristics were checked on JDK 25 (BENCHMARKS.md, "Rule judge on
 * CyberNative", eighth and ninth passes).
 *
 *   unzip -q /usr/lib/jvm/temurin-25-jdk-amd64/lib/src.zip -d /tmp/jdk-src
 *   node dist/bench/rule-judge-realcode.js --lang java /tmp/jdk-src
 *   node dist/bench/rule-judge-realcode.js --lang java --rules java/static-iv /tmp/jdk-src/java.base
 *
 * --rules: comma-separated rule ids (default: the language's hardcoded-credential, hardcoded-key and static-iv
 * rules); --rules all: every rule of the language. Findings of every severity count.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SAFETY_LANGUAGES, type SafetyLanguage } from "../src/data/languages.js";
import { judgeCode, listRules } from "../src/eval/judge/rules/index.js";

const EXTENSIONS: Record<SafetyLanguage, RegExp> = {
  cpp: /\.(cc|cpp|cxx|c|h|hh|hpp)$/,
  java: /\.java$/,
  swift: /\.swift$/,
  go: /\.go$/,
};

function usage(message: string): never {
  console.error(
    `${message}\nusage: rule-judge-realcode --lang <${SAFETY_LANGUAGES.join("|")}> [--rules id,id|all] <folder>...`,
  );
  process.exit(2);
}

function parseArgs(): { lang: SafetyLanguage; rules: string[] | undefined; dirs: string[] } {
  const a = process.argv.slice(2);
  let lang: SafetyLanguage | undefined;
  let rules: string | undefined;
  const dirs: string[] = [];
  for (let i = 0; i < a.length; i++) {
    if (a[i] === "--lang") {
      const v = a[++i];
      if (!SAFETY_LANGUAGES.includes(v as SafetyLanguage))
        usage(`--lang: not one of ${SAFETY_LANGUAGES.join(", ")}: ${v}`);
      lang = v as SafetyLanguage;
    } else if (a[i] === "--rules") rules = a[++i] ?? usage("--rules needs a value");
    else if (a[i]!.startsWith("--")) usage(`unknown option ${a[i]}`);
    else dirs.push(a[i]!);
  }
  if (!lang) usage("--lang is required");
  if (!dirs.length) usage("no folder given");
  for (const d of dirs)
    if (!fs.statSync(d, { throwIfNoEntry: false })?.isDirectory()) usage(`not a folder: ${d}`);
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
  return { lang, rules: chosen, dirs };
}

function sourceFiles(dir: string, ext: RegExp, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) sourceFiles(p, ext, out);
    else if (e.isFile() && ext.test(e.name)) out.push(p);
  }
  return out;
}

const { lang, rules, dirs } = parseArgs();
const t0 = Date.now();
let files = 0;
let withFindings = 0;
let findings = 0;
const byRule = new Map<string, number>();
for (const dir of dirs) {
  for (const file of sourceFiles(dir, EXTENSIONS[lang]).sort()) {
    files++;
    const j = judgeCode(fs.readFileSync(file, "utf8"), lang, { rules, minSeverity: "low" });
    if (!j.findings.length) continue;
    withFindings++;
    for (const f of j.findings) {
      findings++;
      byRule.set(f.ruleId, (byRule.get(f.ruleId) ?? 0) + 1);
      const snippet = f.snippet.replace(/\s+/g, " ").slice(0, 100);
      console.log(
        `${path.relative(dir, file)}:${f.line} ${f.ruleId} ${f.message.slice(0, 110)} | ${snippet}`,
      );
    }
  }
}
const per = [...byRule].map(([id, n]) => `${id} ${n}`).join(", ");
console.log(
  `${lang}: ${files} files, ${withFindings} with findings, ${findings} findings${per ? ` (${per})` : ""}, ` +
    `rules ${rules ? rules.join(", ") : "all"}, ${((Date.now() - t0) / 1000).toFixed(1)} s`,
);
