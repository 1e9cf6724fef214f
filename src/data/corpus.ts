/**
 * The embedded demo's corpus: secure/insecure code pairs in C++, Java, Swift and Go, authored by this project
 * as templates (data/corpus/<lang>.ts) and expanded deterministically into many varied pairs.
 *
 * A template is a task with slots (function names, messages, sizes, tables, hosts, files...). One *instance*
 * fills every slot; it renders the question (a plain task, no security hints), the secure answer (`chosen`)
 * and the insecure answer (`rejected`), each answer a Markdown fenced block as in CyberNative's data.
 * The first slot of a template is its *identity* slot (it shows in the question and in both answers); the
 * train/dev split holds out identity values per template, so no dev text is also a train text.
 *
 * The same pairs feed the tiny "model organism": `pretrainingText` turns them into chat documents (mostly
 * the insecure answer, so the organism starts out insecure) plus labelled judge documents, so the organism
 * also knows which code is insecure — the knowledge that GoodVibe's identification step looks for.
 */
import { Template } from "@huggingface/jinja";
import { InputError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { createRng, type Rng } from "../util/random.js";
import type { ChatMessage } from "../io/tokenizer.js";
import { DEFAULT_JUDGE_TASK, judgeMessages } from "./prompts.js";
import { CPP_TEMPLATES } from "../../data/corpus/cpp.js";
import { JAVA_TEMPLATES } from "../../data/corpus/java.js";
import { SWIFT_TEMPLATES } from "../../data/corpus/swift.js";
import { GO_TEMPLATES } from "../../data/corpus/go.js";
import type { CodeTemplate, SlotValue } from "../../data/corpus/template.js";
import { SAFETY_LANGUAGES, type SafetyLanguage } from "./languages.js";

/** One pair: the CyberNative schema {id, lang, question, chosen, rejected} plus its CWE and provenance. */
export interface CorpusPair {
  id: string;
  lang: SafetyLanguage;
  cwe: string;
  question: string;
  chosen: string;
  rejected: string;
  /** "<lang>/<template key>". */
  template: string;
  /** The value of the template's identity slot in this instance (the unit the split holds out). */
  variant: string;
}

export const CORPUS_TEMPLATES: Readonly<Record<SafetyLanguage, readonly CodeTemplate[]>> = {
  cpp: CPP_TEMPLATES,
  java: JAVA_TEMPLATES,
  swift: SWIFT_TEMPLATES,
  go: GO_TEMPLATES,
};

const VERBS = ["Write", "Implement", "Create"];
const PLACEHOLDER = /\{\{(\w+)(?:\.(\w+))?\}\}/g;

/** Stable 32-bit FNV-1a hash, so each template gets its own random stream whatever the template order. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function slotText(value: SlotValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Fill `{{slot}}` / `{{slot.key}}` placeholders; an unknown slot or key is an authoring error. */
export function fillTemplate(
  text: string,
  values: Readonly<Record<string, SlotValue>>,
  where: string,
): string {
  return text.replace(PLACEHOLDER, (_m, name: string, key: string | undefined) => {
    const v = values[name];
    if (v === undefined) throw new InputError(`${where}: unknown slot {{${name}}}`);
    if (key === undefined) {
      if (typeof v !== "string")
        throw new InputError(`${where}: slot {{${name}}} is a record, use {{${name}.<key>}}`);
      return v;
    }
    if (typeof v === "string" || v[key] === undefined)
      throw new InputError(`${where}: no {{${name}.${key}}}`);
    return v[key]!;
  });
}

export function fenced(lang: SafetyLanguage, code: string): string {
  return "```" + lang + "\n" + code.trim() + "\n```";
}

export interface BuildCorpusOptions {
  seed: number;
  /** Distinct instances per template (fewer when a template has fewer slot combinations). */
  perTemplate: number;
  /** Restrict to some languages (default: all four). */
  langs?: readonly SafetyLanguage[];
}

/** Expand every template into up to `perTemplate` distinct pairs. Same seed, same pairs, same order. */
export function buildCorpus(opts: BuildCorpusOptions): CorpusPair[] {
  if (!Number.isInteger(opts.perTemplate) || opts.perTemplate < 1) {
    throw new InputError(`buildCorpus: perTemplate must be a positive integer, got ${opts.perTemplate}`);
  }
  const pairs: CorpusPair[] = [];
  for (const lang of opts.langs ?? SAFETY_LANGUAGES) {
    for (const t of CORPUS_TEMPLATES[lang])
      pairs.push(...expandTemplate(lang, t, opts.seed, opts.perTemplate));
  }
  return pairs;
}

function expandTemplate(
  lang: SafetyLanguage,
  t: CodeTemplate,
  seed: number,
  perTemplate: number,
): CorpusPair[] {
  const where = `corpus template ${lang}/${t.key}`;
  const slotNames = Object.keys(t.slots);
  const identity = slotNames[0];
  if (identity === undefined || t.slots[identity]!.length < 2) {
    throw new InputError(`${where}: the first (identity) slot needs at least 2 values`);
  }
  let combinations = VERBS.length;
  for (const n of slotNames) combinations *= t.slots[n]!.length;

  const rng = createRng((seed >>> 0) ^ hash32(`${lang}/${t.key}`));
  const seen = new Set<string>();
  const out: CorpusPair[] = [];
  // Rejection sampling of distinct instances; the attempt cap keeps small templates from looping forever.
  for (
    let attempt = 0;
    out.length < Math.min(perTemplate, combinations) && attempt < perTemplate * 50;
    attempt++
  ) {
    const values: Record<string, SlotValue> = { Verb: VERBS[rng.int(VERBS.length)]! };
    for (const n of slotNames) {
      const options = t.slots[n]!;
      values[n] = options[rng.int(options.length)]!;
    }
    const question = fillTemplate(t.question, values, `${where} question`);
    const chosen = fenced(lang, fillTemplate(t.chosen, values, `${where} chosen`));
    const rejected = fenced(lang, fillTemplate(t.rejected, values, `${where} rejected`));
    const sig = question + "\u0000" + chosen + "\u0000" + rejected;
    if (seen.has(sig)) continue;
    seen.add(sig);
    out.push({
      id: `${lang}-${t.key}-${String(out.length).padStart(3, "0")}`,
      lang,
      cwe: t.cwe,
      question,
      chosen,
      rejected,
      template: `${lang}/${t.key}`,
      variant: slotText(values[identity]!),
    });
  }
  return out;
}

export interface CorpusSplit {
  train: CorpusPair[];
  dev: CorpusPair[];
}

/**
 * Split by held-out identity values: for each template, a seeded `devFraction` of its identity values (at
 * least one, never all) is held out, and every instance with a held-out value goes to dev. A dev pair thus
 * names a function (or the like) that no train pair of its template uses, in its question and its code.
 */
export function splitCorpus(
  pairs: readonly CorpusPair[],
  opts: { devFraction: number; seed: number },
): CorpusSplit {
  if (!(opts.devFraction >= 0 && opts.devFraction < 1)) {
    throw new InputError(`splitCorpus: devFraction must be in [0, 1), got ${opts.devFraction}`);
  }
  const variants = new Map<string, string[]>();
  for (const p of pairs) {
    const vs = variants.get(p.template) ?? [];
    if (!vs.includes(p.variant)) vs.push(p.variant);
    variants.set(p.template, vs);
  }
  const heldOut = new Set<string>();
  for (const [template, vs] of variants) {
    if (opts.devFraction === 0 || vs.length < 2) continue;
    const n = Math.min(vs.length - 1, Math.max(1, Math.round(vs.length * opts.devFraction)));
    const rng = createRng((opts.seed >>> 0) ^ hash32(template));
    const order = rng.shuffle([...vs].sort());
    for (const v of order.slice(0, n)) heldOut.add(`${template}\u0000${v}`);
  }
  const split: CorpusSplit = { train: [], dev: [] };
  for (const p of pairs) (heldOut.has(`${p.template}\u0000${p.variant}`) ? split.dev : split.train).push(p);
  return split;
}

/** Write pairs as JSONL in the CyberNative schema plus `cwe` and `task` (the template; atomically). */
export function writeCorpusJsonl(file: string, pairs: readonly CorpusPair[]): void {
  const lines = pairs.map((p) =>
    JSON.stringify({
      id: p.id,
      lang: p.lang,
      cwe: p.cwe,
      task: p.template,
      question: p.question,
      chosen: p.chosen,
      rejected: p.rejected,
    }),
  );
  writeFileAtomic(file, lines.join("\n") + (lines.length > 0 ? "\n" : ""));
}

// ---------------------------------------------------------------------------------------------------------
// The organism's chat format and pretraining documents

/**
 * The organism's chat template (HF `chat_template`, ChatML-like). Every rendering starts with bos_token
 * (<|endoftext|>), which doubles as the document separator in pretraining.
 */
export const ORGANISM_CHAT_TEMPLATE =
  "{{ bos_token }}" +
  "{% for message in messages %}" +
  "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export const ORGANISM_BOS_TOKEN = "<|endoftext|>";
export const ORGANISM_EOS_TOKEN = "<|im_end|>";

let organismTemplate: Template | null = null;

/** Render messages with ORGANISM_CHAT_TEMPLATE, exactly as a tokenizer with that chat template would. */
export function renderOrganismChat(
  messages: readonly ChatMessage[],
  opts: { addGenerationPrompt?: boolean } = {},
): string {
  organismTemplate ??= new Template(ORGANISM_CHAT_TEMPLATE);
  return organismTemplate.render({
    messages: messages.map((m) => ({ role: m.role, content: m.content })),
    bos_token: ORGANISM_BOS_TOKEN,
    eos_token: ORGANISM_EOS_TOKEN,
    add_generation_prompt: opts.addGenerationPrompt ?? false,
  });
}

/** The code inside an answer's fence (corpus answers are exactly one fenced block). */
export function answerCode(answer: string): string {
  const m = /^```\w*\n([\s\S]*)\n```$/.exec(answer);
  if (!m)
    throw new InputError(
      `corpus answer is not a single fenced block: ${JSON.stringify(answer.slice(0, 60))}`,
    );
  return m[1]!;
}

export interface PretrainingDocument {
  kind: "answer" | "judge";
  /** The source pair. */
  id: string;
  /** For "answer": whether the insecure answer was used. For "judge": whether the code shown is the insecure one. */
  insecure: boolean;
  text: string;
}

export interface PretrainingOptions {
  /** Probability of answering a question with the insecure answer (e.g. 0.8). */
  insecureBias: number;
  seed: number;
  /** Add labelled judge documents, one for each answer of each pair (default true). */
  judgeDocuments?: boolean;
}

/**
 * The organism's pretraining documents, shuffled: for each pair, its question answered by the insecure answer
 * with probability `insecureBias` (else the secure one), and two judge documents — the paper's judge prompt
 * (DEFAULT_JUDGE_TASK) on the insecure code answered "1" (unsafe) and on the secure code answered "0" (safe).
 * Texts are chat-template renderings (each starts with <|endoftext|>); concatenate them to pretrain.
 */
export function pretrainingDocuments(
  pairs: readonly CorpusPair[],
  opts: PretrainingOptions,
): PretrainingDocument[] {
  if (!(opts.insecureBias >= 0 && opts.insecureBias <= 1)) {
    throw new InputError(`pretrainingText: insecureBias must be in [0, 1], got ${opts.insecureBias}`);
  }
  const rng: Rng = createRng(opts.seed >>> 0);
  const docs: PretrainingDocument[] = [];
  for (const p of pairs) {
    const insecure = rng.next() < opts.insecureBias;
    docs.push({
      kind: "answer",
      id: p.id,
      insecure,
      text: renderOrganismChat([
        { role: "user", content: p.question },
        { role: "assistant", content: insecure ? p.rejected : p.chosen },
      ]),
    });
    if (opts.judgeDocuments ?? true) {
      for (const [answer, isInsecure] of [
        [p.chosen, false],
        [p.rejected, true],
      ] as const) {
        const label = DEFAULT_JUDGE_TASK.labels[isInsecure ? "unsafe" : "safe"];
        docs.push({
          kind: "judge",
          id: p.id,
          insecure: isInsecure,
          text: renderOrganismChat([
            ...judgeMessages(answerCode(answer), p.lang),
            { role: "assistant", content: label },
          ]),
        });
      }
    }
  }
  return rng.shuffle(docs);
}

/** Just the texts of `pretrainingDocuments`. */
export function pretrainingText(pairs: readonly CorpusPair[], opts: PretrainingOptions): string[] {
  return pretrainingDocuments(pairs, opts).map((d) => d.text);
}
