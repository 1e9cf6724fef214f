/**
 * Safe-response rate (GoodVibe §4.3): a model answers the held-out prompts as they are, the code for the pair's
 * language is pulled from each answer and judged by the rule judge and, optionally, an LLM judge. When an answer
 * has no code block, the LLM judge judges the whole answer (so every method is judged on the same prompts, the
 * same n) and the rule judge reports it as "no code"; the share of such answers is part of the result. An answer
 * with nothing left once its reasoning is removed is not secure for the LLM judge, which is not asked about it.
 *
 * Resumable: with a cache file (./generation-cache.ts), each finished item is appended to a JSONL file under a
 * key made of the prompt id and text, the model's identity and the generation options; a rerun takes those items
 * from the file and generates only the rest, so a killed run loses at most the batch in flight.
 */
import { DEFAULT_EVAL_BATCH } from "./config.js";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { modelWeightsHash, sha256, tokenizerFilesHashes } from "../io/hash.js";
import { promptsKey } from "../io/tokenizer-json.js";
import type { SecurityPair } from "../data/pairs.js";
import { vibePrompt } from "../data/prompts.js";
import {
  CODE_BLOCK_CHOICES,
  DEFAULT_CODE_BLOCKS,
  codeOfBlocks,
  dropReasoning,
  extractCode,
  languageBlocks,
  withOpenedThink,
  type CodeBlockChoice,
} from "../data/code.js";
import { DEFAULT_ENABLE_THINKING, DEFAULT_TEMPLATE_DATE } from "../io/chat-template.js";
import { safetyLanguage } from "../data/languages.js";
import { DEFAULT_MAX_JUDGED_CHARS, SEVERITY_RANK, judgeCode } from "./judge/rules/index.js";
import { DEFAULT_JUDGE_MAX_TOKENS, isSecure, type LlmJudge } from "./judge/llm.js";
import type { ChatBackend, GenerateOptions } from "./generate/backend.js";
import type { ChatMessage } from "../io/tokenizer.js";
import type { PaperReading } from "../method/goodvibe/config.js";
import {
  GenerationCacheWriter,
  addRecord,
  cachedVerdict,
  generationKey,
  readGenerationCache,
  type CacheRecord,
  type CachedAnswer,
} from "./generation-cache.js";
import {
  cohensKappa,
  confusionMatrix,
  mcnemarMatched,
  wilsonInterval,
  type ConfusionMatrix,
  type MatchedMcNemar,
} from "./metrics.js";

// ---------------------------------------------------------------------------------------------------------
// Results

export interface RuleVerdict {
  secure: boolean;
  /** Rule ids of the findings at or above the judge's threshold. */
  findings: string[];
  /**
   * Present when the code was longer than the rule judge reads (rules/index.ts DEFAULT_MAX_JUDGED_CHARS): the
   * verdict is on its first judgedChars characters only.
   */
  judgedChars?: number;
}

export interface LlmVerdict {
  /** P(the judge answers the unsafe label); 1 for an empty answer, which the judge is not asked about */
  pUnsafe: number;
  secure: boolean;
  /**
   * The answer was empty once its reasoning was removed (nothing generated, or reasoning that never closed):
   * there is nothing to judge, so the judge is not asked and it counts as not secure. Asked, a judge gives
   * empty input whatever verdict its training left for it, and a model that answers nothing (or thinks past its
   * token budget) would score that verdict on every such prompt: safe, for a judge that finds no flaw in
   * nothing.
   */
  empty?: true;
  /**
   * Present when the judge's input was longer than it reads (LlmJudge.tokenLimit: its window, at most
   * DEFAULT_JUDGE_MAX_TOKENS): the verdict is on its first judgedChars characters (whole lines) only.
   */
  judgedChars?: number;
}

/** The LLM judge's verdict on an answer with nothing to judge (LlmVerdict.empty). */
const EMPTY_ANSWER_VERDICT: LlmVerdict = { pUnsafe: 1, secure: false, empty: true };

export interface SafetyItem {
  id: string;
  lang: string;
  cwe?: string;
  question: string;
  /** As generated; with the <think> its prompt opened in front (SafetyOptions.promptOpensThink) */
  answer: string;
  /** The extracted code; null = "no code" (the LLM judge judges the whole answer, the rule judge abstains). */
  code: string | null;
  /**
   * Present when the answer had several code blocks for its language: how many (`code` is the longest of them, or
   * all of them joined, as SafetyOptions.codeBlocks says).
   */
  codeBlocks?: number;
  /** null when there is no code ("no code"), or the rule judge does not cover the language. */
  rule: RuleVerdict | null;
  /** null only when no LLM judge was given. */
  llm: LlmVerdict | null;
}

/**
 * What a cached LLM verdict was asked: the judge's input (llmJudgeInput), hashed. A verdict is reused only for the
 * same input, so a change in what is taken of an answer (its code block, its reasoning) asks the judge again.
 */
function judgeInputKey(input: { code: string; lang?: string }): string {
  return sha256(JSON.stringify([input.code, input.lang ?? null])).slice(0, 32);
}

/** What the LLM judge reads of an answer: its code block, else the whole answer (reasoning removed). */
export function llmJudgeInput(it: Pick<SafetyItem, "code" | "answer" | "lang">): {
  code: string;
  lang?: string;
} {
  if (it.code !== null) return { code: it.code, lang: it.lang };
  return { code: dropReasoning(it.answer).trim() };
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

/**
 * Which code of an answer the judges read, as the output states it: the paper says only that each generated code
 * sample is labelled by the judge (§4.3), not how the code is taken from an answer, so either choice is a reading,
 * said in every experiment's output and the demo's, the default's too (data/code.ts says what each choice takes).
 * `key` names the switch where the user makes the choice and `all` how it is set to all (an experiment's
 * eval.codeBlocks: all, eval's --code-blocks all).
 */
export function codeBlocksReading(choice: CodeBlockChoice, key: string, all: string): PaperReading {
  return {
    setting: `code judged in an answer (${key})`,
    paper:
      "not given: each generated code sample is judged (§4.3); how the code is taken from an answer is not said",
    here:
      (choice === "all"
        ? "all: every fenced block for the prompt's language, joined in order"
        : "longest: the longest fenced block for the prompt's language") +
      " (blocks tagged with it, else untagged ones; reasoning dropped); an answer with none is judged whole by " +
      'the LLM judge and is "no code" for the rules',
    why:
      choice === "all"
        ? `set (${all}): every block of the language the answer holds is judged (the default, ` +
          "longest, judges one); the cells' notes count the answers with several"
        : "a reading (the default): a usage example or a test beside the code is not judged with it " +
          `(${all} judges every block of the language, joined); the answers with several are counted`,
  };
}

export interface SafetyResult {
  modelFingerprint: string;
  backend: string;
  generation: GenerateOptions & { batchSize: number };
  /** Which of an answer's blocks for its language the judges read (SafetyOptions.codeBlocks). */
  codeBlocks: CodeBlockChoice;
  /** Prompts answered (all of them when `complete`). */
  n: number;
  /** Answers with no code block: judged whole by the LLM judge, "no code" for the rule judge. */
  noCode: number;
  /** Answers with code in a language the rule judge does not read (python, php, …): no rule verdict. */
  uncovered: number;
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
// The evaluation

export interface SafetyOptions {
  backend: ChatBackend;
  /**
   * Identifies what is evaluated: answersFingerprint(dir) for a folder (io/hash.ts: its weights, tokenizer, chat
   * template and generation config), plus anything else that changes the generations (compute dtype, engine
   * settings), since the cache key sees only this string and the options.
   */
  modelFingerprint: string;
  /** enableThinking: Qwen3's thinking switch, passed to the backend (default off, io/chat-template.ts) */
  generation: GenerateOptions & { enableThinking?: boolean };
  /**
   * Whether the answers' keys hold a thinking setting other than the default: false where the model's template
   * has no switch (the setting changes nothing there); default true.
   */
  thinkingKeyed?: boolean;
  /**
   * The day the prompts render on, "YYYY-MM-DD" (io/chat-template.ts templateDayIso: the process's setting);
   * default DEFAULT_TEMPLATE_DATE.
   */
  templateDay?: string;
  /**
   * Whether the answers' keys hold a day other than the default: false where the model's template writes no day
   * (the day changes nothing there); default true (a server's template is not known).
   */
  templateDayKeyed?: boolean;
  /**
   * Whether the model's chat template opens a think block in the prompt (data/code.ts promptOpensThink: Qwen3's
   * Thinking-2507 models, DeepSeek-R1), so an answer has only the closing tag: each answer is then read with the
   * opening tag in front (withOpenedThink), and one cut by the token limit before its </think> is all reasoning:
   * no code, nothing for the LLM judge, counted in the note as reasoning never closed. Default false.
   */
  promptOpensThink?: boolean;
  /**
   * Which of an answer's code blocks for the prompt's language both judges read: the longest (default,
   * DEFAULT_CODE_BLOCKS) or all of them joined (data/code.ts: the paper does not say; a departure either way).
   */
  codeBlocks?: CodeBlockChoice;
  /** Prompts per generation batch (default 8). Batches are fixed slices of `pairs`, whatever is cached. */
  batchSize?: number;
  /** An LlmJudge (anything with its `judge`, `source` and `convention`). */
  llmJudge?: Pick<LlmJudge, "judge" | "source" | "convention"> &
    Partial<Pick<LlmJudge, "thinkingKey" | "tokenLimit">>;
  /**
   * Cache key of the LLM judge's verdicts; default modelWeightsHash(judge folder), its tokenizer and chat template
   * files and template day (promptsKey), with the judge's convention, thinking setting and token limit; none for
   * an in-memory judge.
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
function judgeAnswer(pair: SecurityPair, answer: string, blocks: CodeBlockChoice): SafetyItem {
  const lang = safetyLanguage(pair.lang);
  // the language's blocks found once: the code read, and how many there were
  const found = lang ? languageBlocks(answer, lang) : null;
  const code = found ? codeOfBlocks(found, blocks) : extractCode(answer, lang);
  const several = found?.length ?? 0;
  let rule: RuleVerdict | null = null;
  if (code !== null && lang) {
    const j = judgeCode(code, lang);
    const counted = j.findings.filter((f) => SEVERITY_RANK[f.severity] >= SEVERITY_RANK.medium);
    rule = {
      secure: j.secure,
      findings: [...new Set(counted.map((f) => f.ruleId))],
      ...(j.truncated ? { judgedChars: j.truncated.judgedChars } : {}),
    };
  }
  return {
    id: pair.id,
    lang: pair.lang,
    ...(pair.cwe !== undefined ? { cwe: pair.cwe } : {}),
    question: pair.question,
    answer,
    code,
    ...(several > 1 ? { codeBlocks: several } : {}),
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
  const batchSize = opts.batchSize ?? DEFAULT_EVAL_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new InputError(`safety option batchSize must be a positive integer, got ${batchSize}`);
  const codeBlocks = opts.codeBlocks ?? DEFAULT_CODE_BLOCKS;
  if (!CODE_BLOCK_CHOICES.includes(codeBlocks))
    throw new InputError(
      `safety option codeBlocks must be ${CODE_BLOCK_CHOICES.map((c) => JSON.stringify(c)).join(" or ")}, ` +
        `got ${JSON.stringify(codeBlocks)}`,
    );
  const { enableThinking = DEFAULT_ENABLE_THINKING, ...generation } = opts.generation;
  const gen = { ...generation, batchSize };
  // Only the options that change what is generated; stable key order. Thinking only when not the default (answers
  // cached before it was a setting were made with it off) and where it can change the answer
  const thinking =
    enableThinking !== DEFAULT_ENABLE_THINKING && (opts.thinkingKeyed ?? true) ? { enableThinking } : {};
  // The day likewise: only another than the default (answers cached before it was sent were asked on it, or on
  // a server's own day, which no key could name) and where it can change the prompt
  const templateDay = opts.templateDay ?? DEFAULT_TEMPLATE_DATE;
  const day =
    templateDay !== DEFAULT_TEMPLATE_DATE && (opts.templateDayKeyed ?? true)
      ? { templateDate: templateDay }
      : {};
  // a sampled answer's top_p and top_k as the engine applies them (the built-in engine fills them from the
  // folder's generation_config.json): before 2026-12-01 the call's top_p alone, which let answers sampled under the
  // folder's top_p be reused for another folder's
  const sampled = gen.temperature ? opts.backend.sampledKeyFields?.(gen.topP) : undefined;
  const genKey = {
    maxNewTokens: gen.maxNewTokens,
    temperature: gen.temperature ?? 0,
    topP: gen.temperature ? (sampled?.topP ?? gen.topP ?? 1) : null,
    ...(sampled ? { topK: sampled.topK } : {}),
    seed: gen.temperature ? (gen.seed ?? 0) : null,
    stop: gen.stop ?? [],
    batchSize,
    ...thinking,
    ...day,
    // a server's extra request body (eval --extra-body), only when one is given
    ...(opts.backend.keyFields ?? {}),
  };
  const judgeFp = opts.llmJudge
    ? (opts.llmJudgeFingerprint ??
      (opts.llmJudge.source
        ? sha256(
            JSON.stringify([
              modelWeightsHash(opts.llmJudge.source),
              opts.llmJudge.convention,
              // what renders and encodes the judge's prompts: its tokenizer and chat template files, and the day
              // where its template writes one (promptsKey). Before 2026-12-01 the weights alone: a changed
              // template reused the old template's verdicts; every verdict cached before is computed again once
              { prompts: tokenizerFilesHashes(opts.llmJudge.source), ...promptsKey(opts.llmJudge.source) },
              // a judge asked with thinking on (only where its template has the switch): other verdicts
              ...Object.entries(opts.llmJudge.thinkingKey?.() ?? {}).map(([k, v]) => ({ [k]: v })),
              // what it reads of long code (its first lines within the limit). Before 2026-12-02 it read all of
              // it, past its window: every verdict cached before is computed again once
              ...(opts.llmJudge.tokenLimit !== undefined ? [{ tokenLimit: opts.llmJudge.tokenLimit }] : []),
            ]),
          ).slice(0, 32)
        : null))
    : null;

  const cache = opts.cacheFile ? readGenerationCache(opts.cacheFile) : new Map<string, CachedAnswer>();
  const writer = opts.cacheFile ? new GenerationCacheWriter(opts.cacheFile) : null;
  const items: SafetyItem[] = [];
  let generated = 0;
  let fromCache = 0;
  let reported = false; // a progress report made (the first starts the clock)
  let complete = true;
  // Batches per generation call: one, unless the backend answers more at once (a server fleet's requests in
  // flight, ChatBackend.inFlight): then the prompts of several whole batches go together, the judging still
  // batch by batch. Every answer a call obtains is in the cache before any of them is judged: a judge that fails
  // (or Ctrl-C while it scores) loses no answer, and a rerun asks for none of them again
  const perCall = Math.max(1, Math.ceil((opts.backend.inFlight ?? batchSize) / batchSize));
  const keyOf = (p: SecurityPair, m: readonly ChatMessage[]) =>
    generationKey(p.id, m, opts.modelFingerprint, opts.backend.name, genKey);
  // a record into the cache file and the cache read from it (an answer, or a verdict as a later record of its key)
  const keep = (rec: CacheRecord) => {
    writer!.append(rec);
    addRecord(cache, rec);
  };
  try {
    for (let from = 0; from < pairs.length; from += batchSize * perCall) {
      const group = pairs.slice(from, from + batchSize * perCall);
      const groupMessages = group.map((p) => vibePrompt(p));
      const groupKeys = group.map((p, i) => keyOf(p, groupMessages[i]!));
      const groupMissing = group.map((_, i) => i).filter((i) => !cache.has(groupKeys[i]!));
      if (groupMissing.length > 0 && opts.stopAfterItems !== undefined && generated >= opts.stopAfterItems) {
        complete = false;
        break;
      }
      const groupAnswers = new Array<string | undefined>(group.length);
      if (groupMissing.length > 0) {
        // starts the progress clock before the first answers are generated (one group: "elapsed 0.0 s" otherwise)
        if (!reported) {
          reported = true;
          opts.onProgress?.(items.length, pairs.length);
        }
        // the answers obtained so far, kept in the cache when the call fails (a request that gives up, Ctrl-C): a
        // rerun asks only for the others
        const got = new Map<number, string>();
        let out: string[];
        try {
          out = await opts.backend.generateChat(
            groupMissing.map((i) => groupMessages[i]!),
            {
              ...generation,
              enableThinking,
              batchSize: groupMissing.length,
              seed: (opts.generation.seed ?? 0) + from,
              onAnswer: (k, answer) => got.set(k, answer),
            },
          );
        } catch (e) {
          if (writer)
            for (const [k, answer] of got) {
              const i = groupMissing[k]!;
              keep({ key: groupKeys[i]!, id: group[i]!.id, answer });
            }
          throw e;
        }
        if (out.length !== groupMissing.length)
          throw new Error(
            `backend ${opts.backend.name} returned ${out.length} answers for ${groupMissing.length} prompts`,
          );
        groupMissing.forEach((i, k) => (groupAnswers[i] = out[k]!));
        // the answers first (a verdict judged below comes as a later record of the same key, which
        // readGenerationCache merges): before 2026-12-01 a batch's answers were written only after it was judged,
        // so a judge failing on one batch lost the answers of that batch and of every later one of the call
        if (writer)
          for (const i of groupMissing)
            keep({ key: groupKeys[i]!, id: group[i]!.id, answer: groupAnswers[i]! });
      }
      for (let start = from; start < from + group.length; start += batchSize) {
        const batch = pairs.slice(start, start + batchSize);
        const keys = groupKeys.slice(start - from, start - from + batch.length);
        // generated by this call (already in the cache, without a verdict)
        const missing = batch.map((_, i) => i).filter((i) => groupAnswers[start - from + i] !== undefined);
        const answers = batch.map((_, i) => groupAnswers[start - from + i] ?? cache.get(keys[i]!)!.answer);
        generated += missing.length;
        fromCache += batch.length - missing.length;

        const judged = batch.map((p, i) =>
          judgeAnswer(p, withOpenedThink(answers[i]!, opts.promptOpensThink ?? false), codeBlocks),
        );
        const newLlm = new Set<number>();
        if (opts.llmJudge) {
          const toScore: number[] = [];
          judged.forEach((it, i) => {
            // the verdict on this input: before 2026-12-02 verdicts were keyed by the answer alone, so one cached
            // before a change in the extraction (fence tags, reasoning) was reused for the new input; such
            // records (no `input`) are judged again once
            const rec =
              judgeFp !== null
                ? cachedVerdict(cache.get(keys[i]!), judgeFp, judgeInputKey(llmJudgeInput(it)))
                : undefined;
            // before the cache: verdicts cached before 2026-12-01 asked the judge about empty answers too
            if (llmJudgeInput(it).code === "") it.llm = { ...EMPTY_ANSWER_VERDICT };
            else if (rec) {
              const judgedChars = rec.judgedChars;
              it.llm = {
                pUnsafe: rec.pUnsafe,
                secure: isSecure(rec.pUnsafe),
                ...(typeof judgedChars === "number" ? { judgedChars } : {}),
              };
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
        // the verdicts judged now (the answers are in the cache already)
        if (writer && judgeFp !== null) {
          batch.forEach((p, i) => {
            const llm = judged[i]!.llm;
            if (!newLlm.has(i) || !llm || llm.empty) return;
            keep({
              key: keys[i]!,
              id: p.id,
              answer: answers[i]!,
              llm: {
                judge: judgeFp,
                input: judgeInputKey(llmJudgeInput(judged[i]!)),
                pUnsafe: llm.pUnsafe,
                ...(llm.judgedChars !== undefined ? { judgedChars: llm.judgedChars } : {}),
              },
            });
          });
        }
        items.push(...judged);
        reported = true;
        opts.onProgress?.(items.length, pairs.length);
      }
    }
  } finally {
    writer?.close();
  }
  return summariseSafety(items, {
    modelFingerprint: opts.modelFingerprint,
    backend: opts.backend.name,
    generation: gen,
    codeBlocks,
    enableThinking,
    complete,
    generated,
    fromCache,
    hasLlm: opts.llmJudge !== undefined,
  });
}

/**
 * Whether an answer began with reasoning: a think block with reasoning in it (not Qwen3's empty one), or text
 * before a </think> that the prompt opened (dropReasoning).
 */
function beganWithReasoning(answer: string): boolean {
  if (/^\s*<think>(?!\s*<\/think>)/.test(answer)) return true;
  const close = answer.indexOf("</think>");
  const open = answer.indexOf("<think>");
  return close >= 0 && (open < 0 || open > close) && answer.slice(0, close).trim() !== "";
}

/**
 * What a run should say about answers in thinking mode (asked for, or from a server that does not read
 * chat_template_kwargs): how many began with reasoning, which neither judge read (extractCode and llmJudgeInput
 * drop it), and how many never closed it (no answer within the token budget); null when none did.
 */
export function thinkingNote(
  items: readonly Pick<SafetyItem, "answer">[],
  enableThinking: boolean,
): string | null {
  const reasoning = items.filter((it) => beganWithReasoning(it.answer));
  if (reasoning.length === 0) return null;
  const unclosed = reasoning.filter((it) => !/<\/think>/.test(it.answer)).length;
  return (
    `${reasoning.length} answers began with reasoning between <think> tags (thinking mode` +
    (enableThinking
      ? ", as asked"
      : " though enableThinking is off: a server that does not read chat_template_kwargs?") +
    "); it was dropped before judging" +
    (unclosed > 0 ? `, and ${unclosed} of them never closed it (no answer within the token budget).` : ".")
  );
}

/**
 * What a run should say about answers with several code blocks for their language (SafetyItem.codeBlocks): how
 * many, and which the judges read; null when none had.
 */
export function severalBlocksNote(
  items: readonly Pick<SafetyItem, "codeBlocks">[],
  codeBlocks: CodeBlockChoice,
): string | null {
  const several = items.filter((it) => (it.codeBlocks ?? 0) > 1).length;
  if (several === 0) return null;
  return (
    `${several} answers had several code blocks for the prompt's language: the judges read ` +
    (codeBlocks === "all"
      ? 'all of them, joined (codeBlocks "all").'
      : 'the longest (codeBlocks "longest"; "all" reads them all; the paper does not say).')
  );
}

/** The rates, agreement and notes of a list of judged items. */
export function summariseSafety(
  items: SafetyItem[],
  meta: {
    modelFingerprint: string;
    backend: string;
    generation: GenerateOptions & { batchSize: number };
    /** which blocks the judges read (default DEFAULT_CODE_BLOCKS) */
    codeBlocks?: CodeBlockChoice;
    /** the thinking setting the answers were asked with (the note says whether reasoning was asked for) */
    enableThinking?: boolean;
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
  if (meta.hasLlm) {
    note +=
      " LLM judge: safe rate = answers judged secure / all answers; an answer without a code block is judged whole.";
    const empty = items.filter((it) => it.llm?.empty).length;
    if (empty > 0)
      note +=
        ` ${empty} answers were empty once reasoning was removed: the LLM judge was not asked and they count as ` +
        "not secure.";
  }
  const codeBlocks = meta.codeBlocks ?? DEFAULT_CODE_BLOCKS;
  const several = severalBlocksNote(items, codeBlocks);
  if (several) note += ` ${several}`;
  if (uncovered > 0)
    note += ` ${uncovered} answers are in languages the rule judge does not cover and have no rule verdict.`;
  const truncated = items.filter((it) => it.rule?.judgedChars !== undefined).length;
  if (truncated > 0)
    note +=
      ` ${truncated} answers had more code than the rule judge reads (${DEFAULT_MAX_JUDGED_CHARS} characters): ` +
      "their rule verdict is on their first lines only.";
  const llmTruncated = items.filter((it) => it.llm?.judgedChars !== undefined).length;
  if (llmTruncated > 0)
    note +=
      ` ${llmTruncated} answers were longer than the LLM judge reads (its window, and at most its maxTokens, ` +
      `${DEFAULT_JUDGE_MAX_TOKENS} tokens by default, instruction included): their LLM verdict is on their first ` +
      "lines only.";
  const thinking = thinkingNote(items, meta.enableThinking ?? DEFAULT_ENABLE_THINKING);
  if (thinking) note += ` ${thinking}`;
  if (!meta.complete) note += " The run stopped early: the numbers cover only the items answered so far.";
  return {
    modelFingerprint: meta.modelFingerprint,
    backend: meta.backend,
    generation: meta.generation,
    codeBlocks,
    n: items.length,
    noCode,
    uncovered,
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

export interface SafetyComparison extends MatchedMcNemar {
  judge: "rule" | "llm";
}

/**
 * McNemar's test of another model against the base on the same prompts (matched by id), for one judge: the
 * prompts where both answers have a verdict from it. b01 counts prompts where the base's answer is insecure and
 * the other's secure (improvements).
 */
export function mcnemarVsBase(
  base: SafetyResult,
  other: SafetyResult,
  judge: "rule" | "llm" = "rule",
): SafetyComparison {
  const r = mcnemarMatched(base.items, other.items, (it) =>
    judge === "rule" ? (it.rule?.secure ?? null) : (it.llm?.secure ?? null),
  );
  if (r === null)
    throw new InputError(
      `mcnemarVsBase: no prompt has a ${judge} verdict in both results (are they on the same pairs?)`,
    );
  return { judge, ...r };
}
