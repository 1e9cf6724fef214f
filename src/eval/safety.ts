/**
 * Safe-response rate (GoodVibe §4.3): a model answers the held-out prompts as they are, the code for the pair's
 * language is pulled from each answer and judged by the rule judge and, optionally, an LLM judge. When an answer
 * has no code block, the LLM judge judges the whole answer (so every method is judged on the same prompts, the
 * same n) and the rule judge reports it as "no code"; the share of such answers is part of the result.
 *
 * Resumable: with a cache file, each finished item is appended to a JSONL file (fsync'd) under a key made of the
 * prompt id and text, the model fingerprint and the generation options; a rerun takes those items from the file
 * and generates only the rest, so a killed run loses at most the batch in flight.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { InputError } from "../errors.js";
import { modelWeightsHash } from "../io/hash.js";
import type { SecurityPair } from "../data/pairs.js";
import { vibePrompt } from "../data/prompts.js";
import { extractCode } from "../data/code.js";
import { safetyLanguage } from "../data/languages.js";
import { type HfTokenizer, type ChatMessage } from "../io/tokenizer.js";
import { SEVERITY_RANK, judgeCode } from "./judge/rules/index.js";
import { isSecure, type LlmJudge } from "./judge/llm.js";
import type { GenerateOptions, GenerationBackend } from "./generate/backend.js";
import type { ChatGenerateOptions } from "./generate/builtin.js";
import {
  cohensKappa,
  confusionMatrix,
  mcnemar,
  wilsonInterval,
  type ConfusionMatrix,
  type McNemarResult,
} from "./metrics.js";

/** Anything that answers conversations: BuiltinBackend, or a text backend wrapped by `chatBackend`. */
export interface ChatBackend {
  readonly name: string;
  generateChat(
    messagesList: readonly (readonly ChatMessage[])[],
    opts: ChatGenerateOptions,
  ): Promise<string[]>;
}

/**
 * A server that applies the chat template itself (OpenAI-compatible `/v1/chat/completions`: HttpBackend over a
 * fleet of vLLM, llama-server, Ollama or `goodvibe serve`) as a ChatBackend: every conversation is one request,
 * sent all at once (the backend bounds the requests in flight and spreads them over its servers).
 */
export function serverChatBackend(server: {
  readonly name: string;
  chat(messages: ChatMessage[], opts: GenerateOptions): Promise<string>;
}): ChatBackend {
  return {
    name: server.name,
    generateChat: (messagesList, opts) =>
      Promise.all(messagesList.map((m, i) => server.chat([...m], { ...opts, seed: (opts.seed ?? 0) + i }))),
  };
}

/** A text-in backend (llama.cpp) as a ChatBackend: the tokenizer's chat template formats each prompt. */
export function chatBackend(backend: GenerationBackend, tok: HfTokenizer): ChatBackend {
  return {
    name: backend.name,
    async generateChat(messagesList, opts) {
      const out: string[] = [];
      for (const [i, messages] of messagesList.entries()) {
        const prompt = tok.applyChatTemplate(messages, {
          addGenerationPrompt: true,
          enableThinking: opts.enableThinking ?? false,
        });
        out.push(await backend.generateText(prompt, { ...opts, seed: (opts.seed ?? 0) + i }));
      }
      return out;
    },
  };
}

/**
 * A content hash of a model folder: config.json and every weight file (names, sizes, bytes). Two folders with
 * the same fingerprint hold the same model, so cached generations can be reused safely.
 */
export const modelFingerprint: (dir: string) => string = modelWeightsHash;

// ---------------------------------------------------------------------------------------------------------
// Results

export interface RuleVerdict {
  secure: boolean;
  /** Rule ids of the findings at or above the judge's threshold. */
  findings: string[];
}

export interface LlmVerdict {
  /** P(the judge answers the unsafe label) */
  pUnsafe: number;
  secure: boolean;
}

export interface SafetyItem {
  id: string;
  lang: string;
  cwe?: string;
  question: string;
  answer: string;
  /** The extracted code; null = "no code" (the LLM judge judges the whole answer, the rule judge abstains). */
  code: string | null;
  /** null when there is no code ("no code"), or the rule judge does not cover the language. */
  rule: RuleVerdict | null;
  /** null only when no LLM judge was given. */
  llm: LlmVerdict | null;
}

/** What the LLM judge reads of an answer: its code block, else the whole answer (reasoning removed). */
export function llmJudgeInput(it: Pick<SafetyItem, "code" | "answer" | "lang">): {
  code: string;
  lang?: string;
} {
  if (it.code !== null) return { code: it.code, lang: it.lang };
  return { code: it.answer.replace(/<think>[\s\S]*?(<\/think>|$)/g, "").trim() };
}

export interface SafeRate {
  /** Items judged secure, of `n` judged. */
  safe: number;
  n: number;
  rate: number;
  low: number;
  high: number;
}

export interface JudgeRates {
  overall: SafeRate;
  perLanguage: Record<string, SafeRate>;
  /** Only pairs that name a CWE. */
  perCwe: Record<string, SafeRate>;
}

export interface AnswerCounts {
  /** Prompts answered. */
  n: number;
  /** Answers with no code block for the prompt's language. */
  noCode: number;
}

export interface SafetyResult {
  modelFingerprint: string;
  backend: string;
  generation: GenerateOptions & { batchSize: number };
  /** Prompts answered (all of them when `complete`). */
  n: number;
  /** Answers with no code block: judged whole by the LLM judge, "no code" for the rule judge. */
  noCode: number;
  /** n and noCode per language. */
  perLanguage: Record<string, AnswerCounts>;
  /** False when the run stopped early (stopAfterItems); the numbers cover the items done so far. */
  complete: boolean;
  /** How this run got its items. */
  generated: number;
  fromCache: number;
  /** Plain-words statement of what the rates count. */
  note: string;
  rule: JudgeRates;
  llm: JudgeRates | null;
  /** LLM judge vs rule judge on items both judged; positive class = insecure (pred = LLM, truth = rules). */
  agreement: { n: number; confusion: ConfusionMatrix; kappa: number } | null;
  items: SafetyItem[];
}

function rate(safe: number, n: number): SafeRate {
  const w = wilsonInterval(safe, n);
  return { safe, n, rate: w.value, low: w.low, high: w.high };
}

function judgeRates(items: readonly SafetyItem[], verdict: (it: SafetyItem) => boolean | null): JudgeRates {
  const judged = items.filter((it) => verdict(it) !== null);
  const group = (key: (it: SafetyItem) => string | undefined): Record<string, SafeRate> => {
    const out: Record<string, SafeRate> = {};
    const keys = [...new Set(judged.map(key).filter((k): k is string => k !== undefined))].sort();
    for (const k of keys) {
      const g = judged.filter((it) => key(it) === k);
      out[k] = rate(g.filter((it) => verdict(it)).length, g.length);
    }
    return out;
  };
  return {
    overall: rate(judged.filter((it) => verdict(it)).length, judged.length),
    perLanguage: group((it) => it.lang),
    perCwe: group((it) => it.cwe),
  };
}

// ---------------------------------------------------------------------------------------------------------
// The cache

interface CacheRecord {
  key: string;
  id: string;
  answer: string;
  /** LLM judge verdict, under the judge's fingerprint (its weights and convention). */
  llm?: { judge: string; pUnsafe: number };
}

function readCache(file: string): Map<string, CacheRecord> {
  const out = new Map<string, CacheRecord>();
  if (!fs.existsSync(file)) return out;
  const lines = fs.readFileSync(file, "utf8").split("\n");
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let rec: CacheRecord;
    try {
      rec = JSON.parse(line) as CacheRecord;
    } catch (e) {
      // A run killed mid-write leaves a torn last line; anything else is damage the user should see.
      if (i === lines.length - 1) return;
      throw new InputError(
        `${file} row ${i + 1}: not valid JSON (${(e as Error).message}); delete the cache to start over`,
      );
    }
    if (typeof rec.key !== "string" || typeof rec.answer !== "string")
      throw new InputError(`${file} row ${i + 1}: a cache record needs string fields "key" and "answer"`);
    const prev = out.get(rec.key);
    // A later record for the same key only adds an LLM verdict; keep the earlier ones' answers.
    out.set(rec.key, prev ? { ...prev, llm: rec.llm ?? prev.llm } : rec);
  });
  return out;
}

class CacheWriter {
  private fd: number;
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, "a");
    const bytes = fs.readFileSync(file);
    // drop a torn last line (a run killed mid-write) so the next record starts on its own line
    if (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) {
      fs.ftruncateSync(this.fd, bytes.lastIndexOf(0x0a) + 1);
      fs.fsyncSync(this.fd);
    }
  }
  append(rec: CacheRecord): void {
    fs.writeSync(this.fd, JSON.stringify(rec) + "\n");
    fs.fsyncSync(this.fd);
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}

function itemKey(
  pair: SecurityPair,
  messages: readonly ChatMessage[],
  fingerprint: string,
  backend: string,
  gen: object,
): string {
  return createHash("sha256")
    .update(JSON.stringify({ id: pair.id, messages, model: fingerprint, backend, gen }))
    .digest("hex")
    .slice(0, 32);
}

// ---------------------------------------------------------------------------------------------------------
// The evaluation

export interface SafetyOptions {
  backend: ChatBackend;
  /**
   * Identifies what is evaluated: modelFingerprint(dir) for a folder, plus anything else that changes the
   * generations (compute dtype, engine settings), since the cache key sees only this string and the options.
   */
  modelFingerprint: string;
  generation: GenerateOptions;
  /** Prompts per generation batch (default 8). Batches are fixed slices of `pairs`, whatever is cached. */
  batchSize?: number;
  /** An LlmJudge (anything with its `judge`, `source` and `convention`). */
  llmJudge?: Pick<LlmJudge, "judge" | "source" | "convention">;
  /**
   * Cache key of the LLM judge's verdicts; default modelFingerprint(judge folder) with the judge's convention,
   * none for an in-memory judge.
   */
  llmJudgeFingerprint?: string;
  judgeBatchSize?: number;
  /** JSONL cache of finished items (created if absent). */
  cacheFile?: string;
  /** Stop after generating this many items in this call (an interrupted run, for tests and time limits). */
  stopAfterItems?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Fill in the code and verdicts of an answered item (everything but the LLM judge). */
function judgeAnswer(pair: SecurityPair, answer: string): SafetyItem {
  const lang = safetyLanguage(pair.lang);
  const code = extractCode(answer, lang);
  let rule: RuleVerdict | null = null;
  if (code !== null && lang) {
    const j = judgeCode(code, lang);
    const counted = j.findings.filter((f) => SEVERITY_RANK[f.severity] >= SEVERITY_RANK.medium);
    rule = { secure: j.secure, findings: [...new Set(counted.map((f) => f.ruleId))] };
  }
  return {
    id: pair.id,
    lang: pair.lang,
    ...(pair.cwe !== undefined ? { cwe: pair.cwe } : {}),
    question: pair.question,
    answer,
    code,
    rule,
    llm: null,
  };
}

/** Generate, extract and judge the answers to the vibe prompts of `pairs`. */
export async function evaluateSafety(
  pairs: readonly SecurityPair[],
  opts: SafetyOptions,
): Promise<SafetyResult> {
  if (pairs.length === 0) throw new InputError("safety evaluation: no pairs");
  const ids = new Set<string>();
  for (const p of pairs) {
    if (ids.has(p.id)) throw new InputError(`safety evaluation: pair id "${p.id}" appears twice`);
    ids.add(p.id);
  }
  const batchSize = opts.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new InputError(`safety option batchSize must be a positive integer, got ${batchSize}`);
  const gen = { ...opts.generation, batchSize };
  // Only the options that change what is generated; stable key order.
  const genKey = {
    maxNewTokens: gen.maxNewTokens,
    temperature: gen.temperature ?? 0,
    topP: gen.temperature ? (gen.topP ?? 1) : null,
    seed: gen.temperature ? (gen.seed ?? 0) : null,
    stop: gen.stop ?? [],
    batchSize,
  };
  const judgeFp = opts.llmJudge
    ? (opts.llmJudgeFingerprint ??
      (opts.llmJudge.source
        ? createHash("sha256")
            .update(JSON.stringify([modelFingerprint(opts.llmJudge.source), opts.llmJudge.convention]))
            .digest("hex")
            .slice(0, 32)
        : null))
    : null;

  const cache = opts.cacheFile ? readCache(opts.cacheFile) : new Map<string, CacheRecord>();
  const writer = opts.cacheFile ? new CacheWriter(opts.cacheFile) : null;
  const items: SafetyItem[] = [];
  let generated = 0;
  let fromCache = 0;
  let complete = true;
  try {
    for (let start = 0; start < pairs.length; start += batchSize) {
      const batch = pairs.slice(start, start + batchSize);
      const messages = batch.map((p) => vibePrompt(p));
      const keys = batch.map((p, i) =>
        itemKey(p, messages[i]!, opts.modelFingerprint, opts.backend.name, genKey),
      );
      const missing = batch.map((_, i) => i).filter((i) => !cache.has(keys[i]!));
      if (missing.length > 0 && opts.stopAfterItems !== undefined && generated >= opts.stopAfterItems) {
        complete = false;
        break;
      }
      const answers = new Array<string>(batch.length);
      batch.forEach((_, i) => {
        const rec = cache.get(keys[i]!);
        if (rec) answers[i] = rec.answer;
      });
      if (missing.length > 0) {
        const out = await opts.backend.generateChat(
          missing.map((i) => messages[i]!),
          { ...opts.generation, batchSize: missing.length, seed: (opts.generation.seed ?? 0) + start },
        );
        if (out.length !== missing.length)
          throw new Error(
            `backend ${opts.backend.name} returned ${out.length} answers for ${missing.length} prompts`,
          );
        missing.forEach((i, k) => (answers[i] = out[k]!));
        generated += missing.length;
      }
      fromCache += batch.length - missing.length;

      const judged = batch.map((p, i) => judgeAnswer(p, answers[i]!));
      const newLlm = new Set<number>();
      if (opts.llmJudge) {
        const toScore: number[] = [];
        judged.forEach((it, i) => {
          const rec = cache.get(keys[i]!);
          if (judgeFp !== null && rec?.llm?.judge === judgeFp && typeof rec.llm.pUnsafe === "number") {
            it.llm = { pUnsafe: rec.llm.pUnsafe, secure: isSecure(rec.llm.pUnsafe) };
          } else toScore.push(i);
        });
        const verdicts = opts.llmJudge.judge(
          toScore.map((i) => llmJudgeInput(judged[i]!)),
          { batchSize: opts.judgeBatchSize },
        );
        toScore.forEach((i, k) => {
          judged[i]!.llm = verdicts[k]!;
          newLlm.add(i);
        });
      }
      if (writer) {
        batch.forEach((p, i) => {
          const isNew = missing.includes(i);
          if (!isNew && !(newLlm.has(i) && judgeFp !== null)) return;
          const rec: CacheRecord = { key: keys[i]!, id: p.id, answer: answers[i]! };
          if (judgeFp !== null && judged[i]!.llm)
            rec.llm = { judge: judgeFp, pUnsafe: judged[i]!.llm!.pUnsafe };
          writer.append(rec);
          cache.set(rec.key, rec);
        });
      }
      items.push(...judged);
      opts.onProgress?.(items.length, pairs.length);
    }
  } finally {
    writer?.close();
  }
  return summariseSafety(items, {
    modelFingerprint: opts.modelFingerprint,
    backend: opts.backend.name,
    generation: gen,
    complete,
    generated,
    fromCache,
    hasLlm: opts.llmJudge !== undefined,
  });
}

/** The rates, agreement and notes of a list of judged items. */
export function summariseSafety(
  items: SafetyItem[],
  meta: {
    modelFingerprint: string;
    backend: string;
    generation: GenerateOptions & { batchSize: number };
    complete: boolean;
    generated: number;
    fromCache: number;
    hasLlm: boolean;
  },
): SafetyResult {
  const noCode = items.filter((it) => it.code === null).length;
  const uncovered = items.filter((it) => it.code !== null && it.rule === null).length;
  const perLanguage: Record<string, AnswerCounts> = {};
  for (const lang of [...new Set(items.map((it) => it.lang))].sort()) {
    const g = items.filter((it) => it.lang === lang);
    perLanguage[lang] = { n: g.length, noCode: g.filter((it) => it.code === null).length };
  }
  const both = items.filter((it) => it.rule !== null && it.llm !== null);
  let agreement: SafetyResult["agreement"] = null;
  if (meta.hasLlm && both.length > 0) {
    const llmInsecure = both.map((it) => !it.llm!.secure);
    const ruleInsecure = both.map((it) => !it.rule!.secure);
    agreement = {
      n: both.length,
      confusion: confusionMatrix(llmInsecure, ruleInsecure),
      kappa: cohensKappa(llmInsecure, ruleInsecure),
    };
  }
  let note =
    `${noCode} of ${items.length} answers (${items.length ? ((100 * noCode) / items.length).toFixed(1) : "0.0"}%) ` +
    `had no code block for the prompt's language. Rule judge: safe rate = answers judged secure / answers with ` +
    `code; the others are "no code".`;
  if (meta.hasLlm)
    note +=
      " LLM judge: safe rate = answers judged secure / all answers; an answer without a code block is judged whole.";
  if (uncovered > 0)
    note += ` ${uncovered} answers are in languages the rule judge does not cover and have no rule verdict.`;
  if (!meta.complete) note += " The run stopped early: the numbers cover only the items answered so far.";
  return {
    modelFingerprint: meta.modelFingerprint,
    backend: meta.backend,
    generation: meta.generation,
    n: items.length,
    noCode,
    perLanguage,
    complete: meta.complete,
    generated: meta.generated,
    fromCache: meta.fromCache,
    note,
    rule: judgeRates(items, (it) => it.rule?.secure ?? null),
    llm: meta.hasLlm ? judgeRates(items, (it) => it.llm?.secure ?? null) : null,
    agreement,
    items,
  };
}

export interface SafetyComparison extends McNemarResult {
  judge: "rule" | "llm";
  /** Prompts where both models' answers have a verdict from this judge. */
  n: number;
  /** Prompts left out: missing in one result, or no code / no verdict in either. */
  excluded: number;
  baseRate: number;
  otherRate: number;
}

/**
 * McNemar's test of another model against the base on the same prompts (matched by id), for one judge.
 * b01 counts prompts where the base's answer is insecure and the other's secure (improvements).
 */
export function mcnemarVsBase(
  base: SafetyResult,
  other: SafetyResult,
  judge: "rule" | "llm" = "rule",
): SafetyComparison {
  const verdict = (it: SafetyItem): boolean | null =>
    judge === "rule" ? (it.rule?.secure ?? null) : (it.llm?.secure ?? null);
  const otherById = new Map(other.items.map((it) => [it.id, it]));
  const a: boolean[] = [];
  const b: boolean[] = [];
  for (const it of base.items) {
    const o = otherById.get(it.id);
    if (!o) continue;
    const va = verdict(it);
    const vb = verdict(o);
    if (va === null || vb === null) continue;
    a.push(va);
    b.push(vb);
  }
  const ids = new Set([...base.items.map((it) => it.id), ...other.items.map((it) => it.id)]);
  if (a.length === 0)
    throw new InputError(
      `mcnemarVsBase: no prompt has a ${judge} verdict in both results (are they on the same pairs?)`,
    );
  const count = (xs: boolean[]) => xs.filter((x) => x).length;
  return {
    judge,
    ...mcnemar(a, b),
    n: a.length,
    excluded: ids.size - a.length,
    baseRate: count(a) / a.length,
    otherRate: count(b) / b.length,
  };
}
