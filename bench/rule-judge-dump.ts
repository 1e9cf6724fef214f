/**
 * Every rule-judge verdict and finding on the CyberNative answers, one JSON line per answer, so that two builds
 * of the rules can be compared answer by answer (BENCHMARKS.md, "Rule judge on CyberNative", tenth and eleventh
 * passes: a rule change made on real code must not make any dev or train verdict worse).
 *
 *   node dist/bench/rule-judge-dump.js --out /tmp/after.jsonl [--data ../shared/data/cybernative] [--splits train,dev]
 *   node dist/bench/rule-judge-dump.js --compare /tmp/before.jsonl /tmp/after.jsonl
 *
 * The dump reads `<data>/<split>.jsonl` (rows with lang, chosen, rejected; other languages skipped) and writes
 * {split, row, lang, side, secure, findings} per answer; side "secure" is the chosen answer, "insecure" the
 * rejected one. --compare prints, per split and language, the verdicts that changed (a secure answer newly
 * flagged or an insecure one no longer flagged is worse, the reverse better) and how many answers' findings
 * changed at all, and exits 1 when any verdict got worse. A split whose file is absent is skipped with a note.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { extractCode } from "../src/data/code.js";
import { safetyLanguage } from "../src/data/languages.js";
import { judgeCode } from "../src/eval/judge/rules/index.js";
import { benchArgs, benchUsageError } from "./args.js";

interface Row {
  split: string;
  row: number;
  lang: string;
  side: "secure" | "insecure";
  secure: boolean;
  findings: string[];
}

function dump(out: string, dataDir: string, splits: string[]): void {
  const lines: string[] = [];
  for (const split of splits) {
    const file = path.join(dataDir, `${split}.jsonl`);
    if (!fs.existsSync(file)) {
      console.log(`skipped: ${file} is not present`);
      continue;
    }
    const rows = fs.readFileSync(file, "utf8").split("\n");
    rows.forEach((l, k) => {
      if (!l.trim()) return;
      let p: { lang?: unknown; chosen?: unknown; rejected?: unknown };
      try {
        p = JSON.parse(l) as typeof p;
      } catch (e) {
        throw new Error(`${file} row ${k + 1}: not JSON (${(e as Error).message})`);
      }
      if (typeof p.lang !== "string" || typeof p.chosen !== "string" || typeof p.rejected !== "string")
        throw new Error(`${file} row ${k + 1}: expected lang, chosen, rejected strings`);
      const lang = safetyLanguage(p.lang);
      if (!lang) return;
      for (const [side, answer] of [
        ["secure", p.chosen],
        ["insecure", p.rejected],
      ] as const) {
        const j = judgeCode(extractCode(answer, lang) ?? answer, lang);
        const r: Row = {
          split,
          row: k + 1,
          lang,
          side,
          secure: j.secure,
          findings: j.findings.map((f) => `${f.line} ${f.ruleId} ${f.severity} ${f.message}`),
        };
        lines.push(JSON.stringify(r));
      }
    });
  }
  const tmp = `${out}.tmp`;
  fs.writeFileSync(tmp, lines.length ? lines.join("\n") + "\n" : "");
  fs.renameSync(tmp, out);
  console.log(`${lines.length} answers judged -> ${out}`);
}

function read(file: string): Map<string, Row> {
  const m = new Map<string, Row>();
  fs.readFileSync(file, "utf8")
    .split("\n")
    .forEach((l, k) => {
      if (!l.trim()) return;
      try {
        const r = JSON.parse(l) as Row;
        m.set(`${r.split}:${r.row}:${r.side}`, r);
      } catch (e) {
        throw new Error(`${file} line ${k + 1}: not JSON (${(e as Error).message})`);
      }
    });
  return m;
}

function compare(beforeFile: string, afterFile: string): number {
  const before = read(beforeFile);
  const after = read(afterFile);
  const keys = new Set([...before.keys(), ...after.keys()]);
  const groups = new Map<string, { answers: number; worse: string[]; better: string[]; changed: number }>();
  for (const k of keys) {
    const b = before.get(k);
    const a = after.get(k);
    if (!a || !b) {
      console.log(`${k}: only in ${a ? afterFile : beforeFile}`);
      continue;
    }
    const g = groups.get(`${a.split} ${a.lang}`) ?? { answers: 0, worse: [], better: [], changed: 0 };
    g.answers++;
    if (JSON.stringify(a.findings) !== JSON.stringify(b.findings)) {
      g.changed++;
      console.log(
        `${k} (${a.lang}) findings:\n  - ${b.findings.join("\n  - ")}\n  + ${a.findings.join("\n  + ")}`,
      );
    }
    if (a.secure !== b.secure) {
      // An insecure answer should be flagged (secure: false); a secure one should not.
      const good = a.side === "insecure" ? !a.secure : a.secure;
      (good ? g.better : g.worse).push(`${a.side} row ${a.row}`);
    }
    groups.set(`${a.split} ${a.lang}`, g);
  }
  let worse = 0;
  for (const [g, c] of [...groups].sort()) {
    worse += c.worse.length;
    console.log(
      `${g}: ${c.answers} answers, ${c.changed} with changed findings, verdicts worse ${c.worse.length}` +
        `${c.worse.length ? ` (${c.worse.join(", ")})` : ""}, better ${c.better.length}` +
        `${c.better.length ? ` (${c.better.join(", ")})` : ""}`,
    );
  }
  return worse ? 1 : 0;
}

const { values: args, positionals } = benchArgs(import.meta.url, {
  allowPositionals: true,
  options: {
    compare: { type: "boolean", default: false },
    out: { type: "string" },
    data: { type: "string" },
    splits: { type: "string" },
  },
});
if (args.compare) {
  if (args.out !== undefined || args.data !== undefined || args.splits !== undefined)
    benchUsageError(import.meta.url, "--compare takes two dump files and no --out, --data or --splits");
  if (positionals.length !== 2)
    benchUsageError(import.meta.url, `--compare needs two dump files, got ${positionals.length}`);
  process.exit(compare(positionals[0]!, positionals[1]!));
}
if (positionals.length) benchUsageError(import.meta.url, `unexpected argument ${positionals[0]}`);
if (!args.out) benchUsageError(import.meta.url, "--out FILE is required (or --compare BEFORE AFTER)");
dump(args.out, args.data ?? "../shared/data/cybernative", (args.splits ?? "train,dev").split(","));
