/**
 * Agreement (Cohen's kappa) of the rule judge with the LLM judge on generated code, recomputed with the
 * current rules from an experiment's answer caches: each `work/<cell>/safety-*.jsonl` record holds a model's
 * answer and the LLM judge's P(unsafe) for it, so the rules can be rerun on the same answers without
 * generating or judging anything again (any safety-*.jsonl below the folders given: an experiment's
 * work/<cell>/, a demo's cache/). The language of an answer comes from the dev pairs file (by id).
 * Only answers with a code block for their language count (the rule judge has no verdict otherwise), as in
 * the experiment runner's `agreement`. The kappa interval is a percentile bootstrap over answers (seed 0).
 *
 *   node dist/bench/rule-judge-agreement.js --dev <dev pairs .jsonl> <folder>...
 *   node dist/bench/rule-judge-agreement.js --dev assets/organism/data/dev.jsonl /tmp/i10-study
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { extractCode } from "../src/data/code.js";
import { SAFETY_LANGUAGES, safetyLanguage, type SafetyLanguage } from "../src/data/languages.js";
import { judgeCode } from "../src/eval/judge/rules/index.js";
import { isSecure } from "../src/eval/judge/llm.js";
import { cohensKappa, confusionMatrix, quantile } from "../src/eval/metrics.js";
import { createRng } from "../src/util/random.js";
import { benchArgs, benchUsageError } from "./args.js";

interface Judged {
  lang: SafetyLanguage;
  llmInsecure: boolean;
  ruleInsecure: boolean;
}

function args(): { dev: string; dirs: string[] } {
  const { values, positionals } = benchArgs(import.meta.url, {
    allowPositionals: true,
    options: { dev: { type: "string" } },
  });
  if (!values.dev) benchUsageError(import.meta.url, "--dev <dev pairs .jsonl> is required");
  if (!positionals.length) benchUsageError(import.meta.url, "no experiment folder given");
  return { dev: values.dev, dirs: positionals };
}

function readJsonl(file: string): Record<string, unknown>[] {
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`${file} line ${i + 1}: not JSON`);
      }
    });
}

function kappaInterval(items: Judged[], iterations = 2000): [number, number] {
  const rng = createRng(0);
  const ks: number[] = [];
  for (let it = 0; it < iterations; it++) {
    const s = Array.from({ length: items.length }, () => items[rng.int(items.length)]!);
    const k = cohensKappa(
      s.map((x) => x.llmInsecure),
      s.map((x) => x.ruleInsecure),
    );
    if (!Number.isNaN(k)) ks.push(k);
  }
  ks.sort((x, y) => x - y);
  return [quantile(ks, 0.025), quantile(ks, 0.975)];
}

function row(label: string, items: Judged[]): string {
  if (items.length === 0) return `| ${label} | 0 | | | |`;
  const llm = items.map((x) => x.llmInsecure);
  const rule = items.map((x) => x.ruleInsecure);
  const c = confusionMatrix(llm, rule);
  const k = cohensKappa(llm, rule);
  const [lo, hi] = kappaInterval(items);
  const f = (x: number) => (Number.isNaN(x) ? "n/a" : x.toFixed(2));
  return `| ${label} | ${items.length} | ${c.tp} / ${c.fp} / ${c.fn} / ${c.tn} | ${f(k)} [${f(lo)}, ${f(hi)}] |`;
}

const { dev, dirs } = args();
const langOf = new Map<string, SafetyLanguage>();
for (const p of readJsonl(dev)) {
  const lang = safetyLanguage(String(p.lang ?? ""));
  if (typeof p.id === "string" && lang) langOf.set(p.id, lang);
}
console.log(
  "| answers | n (with code) | both insecure / LLM only / rules only / both secure | kappa [95% bootstrap] |",
);
console.log("|---|---:|---:|---:|");
/** The answer caches below a folder (an experiment's work/<cell>/, a demo's cache/), in path order. */
function caches(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && e.name !== "model") out.push(...caches(p));
    else if (e.isFile() && /^safety-.*\.jsonl$/.test(e.name)) out.push(p);
  }
  return out;
}

const all: Judged[] = [];
for (const dir of dirs) {
  for (const file of caches(dir)) {
    const items: Judged[] = [];
    for (const r of readJsonl(file)) {
      const lang = langOf.get(String(r.id));
      const llm = r.llm as { pUnsafe?: number } | undefined;
      if (!lang || typeof r.answer !== "string" || typeof llm?.pUnsafe !== "number") continue;
      const code = extractCode(r.answer, lang);
      if (code === null) continue;
      items.push({ lang, llmInsecure: !isSecure(llm.pUnsafe), ruleInsecure: !judgeCode(code, lang).secure });
    }
    const rel = path.relative(dir, file).split(path.sep);
    console.log(
      row(`${path.basename(dir)}/${rel.length > 1 ? rel[rel.length - 2]!.slice(0, 12) : rel[0]}`, items),
    );
    all.push(...items);
  }
}
console.log(row("all cells", all));
for (const lang of SAFETY_LANGUAGES)
  console.log(
    row(
      `all cells, ${lang}`,
      all.filter((x) => x.lang === lang),
    ),
  );
