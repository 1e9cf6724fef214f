/**
 * GSM8K as lm-evaluation-harness's `gsm8k` task (version 3): few-shot "Question: …\nAnswer: …" blocks joined
 * by "\n\n", greedy generation until "Question:", "</s>" or "<|im_end|>", then two filters:
 *   strict-match      first match of  #### (\-?[0-9\.\,]+)
 *   flexible-extract  last match of   (-?[$0-9.,]{2,})|(-?[0-9]+)
 * and exact_match after removing "," "$" "(?s).*#### " and a trailing "." from prediction and reference,
 * case-insensitively.
 *
 * Shots: as the harness draws them (its default sampler, api/samplers.py): `random.Random(1234)`, and for each test
 * question in test-file order `rnd.sample(train, 5)`, the question at 0-based position p getting the (p+1)-th draw
 * (util/python-random.ts is CPython's generator and sample()). A question keeps its position's shots in a seeded
 * subsample (`index`, set by the loader), so its prompt is the one the harness sends it in a full run. Before
 * 2026-12-01 every question got the first 5 train examples (the `first_n` sampler, still `fewshotSampler:
 * "first_n"`): other prompts than the harness's, so other absolute figures.
 */
import type { Gsm8kItem } from "./datasets.js";
import { sha256 } from "../../io/hash.js";
import { PythonRandom } from "../../util/python-random.js";
import { generateKept, type UtilityAnswerCache } from "./answers.js";
import { cutAtStop, summarise, type TaskResult, type UtilityModel } from "./model.js";

export const GSM8K_STOP = ["Question:", "</s>", "<|im_end|>"];
export const INVALID = "[invalid]";

const STRICT_RE = /#### (\-?[0-9\.\,]+)/;
const FLEXIBLE_RE = /(-?[$0-9.,]{2,})|(-?[0-9]+)/g;

/** Harness `regexes_to_ignore`, in order. Python's `\.$` also matches before one final newline. */
const IGNORE_RES = [/,/g, /\$/g, /[\s\S]*#### /g, /\.(?=\n?$)/g];

export function gsm8kDocText(question: string): string {
  return `Question: ${question}\nAnswer:`;
}

/** The few-shot prompt: shots as "Question: q\nAnswer: a", joined and followed by "\n\n", then the question. */
export function gsm8kPrompt(question: string, shots: readonly Gsm8kItem[]): string {
  const blocks = shots.map((s) => `${gsm8kDocText(s.question)} ${s.answer}`);
  blocks.push(gsm8kDocText(question));
  return blocks.join("\n\n");
}

/** strict-match filter: the number after the first "#### ", or "[invalid]". */
export function extractStrict(text: string): string {
  const m = STRICT_RE.exec(text);
  return m ? m[1]!.trim() : INVALID;
}

/** flexible-extract filter: the last number-like run in the text, or "[invalid]". */
export function extractFlexible(text: string): string {
  const matches = [...text.matchAll(FLEXIBLE_RE)];
  if (matches.length === 0) return INVALID;
  const last = matches[matches.length - 1]!;
  return (last[1] || last[2] || "").trim();
}

/** Apply the harness's exact_match normalisation to one string. */
export function normaliseForExactMatch(s: string): string {
  let out = s;
  for (const re of IGNORE_RES) out = out.replace(re, "");
  return out.toLowerCase();
}

export function exactMatch(prediction: string, reference: string): number {
  return normaliseForExactMatch(prediction) === normaliseForExactMatch(reference) ? 1 : 0;
}

export interface Gsm8kItemResult {
  question: string;
  reference: string;
  completion: string;
  strict: string;
  flexible: string;
  exact_match_strict: number;
  exact_match_flexible: number;
}

/** lm-evaluation-harness's `fewshot_random_seed` default (evaluator.simple_evaluate, --seed's fourth value). */
export const HARNESS_FEWSHOT_SEED = 1234;

/**
 * Said wherever GSM8K is asked 0-shot (no few-shot source given): the harness's task is 5-shot, and without shots
 * ending in "#### N" a model rarely writes that form, so the strict match scores near 0 whatever it can do.
 */
export const GSM8K_ZERO_SHOT_WARNING =
  "GSM8K 0-shot: lm-evaluation-harness's gsm8k is 5-shot, and without the shots' \"#### N\" answers the strict match " +
  "rarely fires, so the figure says little and is not comparable with a harness run's";

/**
 * The shots (indices into a train split of `poolSize`) the harness's default sampler gives the test questions at
 * positions 0..count-1: draw p of `random.Random(seed).sample(range(poolSize), nShot)`, in draw order.
 */
export function harnessShotIndices(
  poolSize: number,
  nShot: number,
  count: number,
  seed = HARNESS_FEWSHOT_SEED,
): number[][] {
  const rnd = new PythonRandom(seed);
  return Array.from({ length: count }, () => rnd.sample(poolSize, nShot));
}

export interface Gsm8kOptions {
  /** Few-shot examples (the train split, in its file order). */
  fewshot?: readonly Gsm8kItem[];
  nShot?: number;
  /**
   * "harness" (default): each question's shots drawn as lm-evaluation-harness draws them (harnessShotIndices, by
   * the question's `index`, else its place in `items`); "first_n": the first `nShot` train examples for all
   */
  fewshotSampler?: "harness" | "first_n";
  /** The harness sampler's seed (HARNESS_FEWSHOT_SEED). */
  fewshotSeed?: number;
  maxNewTokens?: number;
  batchSize?: number;
  /** Keeps each answer as it arrives and answers from there what it has (eval/utility/answers.ts). */
  answers?: UtilityAnswerCache;
  /** Progress in answers, the cached ones counted (generateKept). */
  onProgress?: (done: number, total: number) => void;
}

function scoreOne(item: Gsm8kItem, completion: string): Gsm8kItemResult {
  const strict = extractStrict(completion);
  const flexible = extractFlexible(completion);
  return {
    question: item.question,
    reference: item.answer,
    completion,
    strict,
    flexible,
    exact_match_strict: exactMatch(strict, item.answer),
    exact_match_flexible: exactMatch(flexible, item.answer),
  };
}

function result(task: string, perItem: Gsm8kItemResult[]): TaskResult<Gsm8kItemResult> {
  const { metrics, stderr } = summarise({
    exact_match_strict: perItem.map((r) => r.exact_match_strict),
    exact_match_flexible: perItem.map((r) => r.exact_match_flexible),
  });
  return {
    task,
    metrics: { acc: metrics.exact_match_strict!, ...metrics },
    n: perItem.length,
    stderr: { acc: stderr.exact_match_strict!, ...stderr },
    perItem,
  };
}

export async function evaluateGsm8k(
  model: UtilityModel,
  items: readonly Gsm8kItem[],
  opts: Gsm8kOptions = {},
): Promise<TaskResult<Gsm8kItemResult>> {
  const nShot = opts.nShot ?? 5;
  const pool = opts.fewshot ?? [];
  if (pool.length < nShot)
    throw new Error(
      `GSM8K ${nShot}-shot needs ${nShot} train examples, got ${pool.length} (pass the train split as fewshot)`,
    );
  const positions = items.map((it, i) => it.index ?? i);
  const draws =
    (opts.fewshotSampler ?? "harness") === "harness" && nShot > 0
      ? harnessShotIndices(
          pool.length,
          nShot,
          positions.reduce((m, p) => Math.max(m, p), 0) + 1,
          opts.fewshotSeed,
        )
      : null;
  const shotsOf = (p: number) => (draws ? draws[p]!.map((j) => pool[j]!) : pool.slice(0, nShot));
  const outs = await generateKept(
    model,
    items.map((it, i) => ({
      id: `gsm8k:${sha256(it.question).slice(0, 12)}`,
      prompt: gsm8kPrompt(it.question, shotsOf(positions[i]!)),
    })),
    { maxNewTokens: opts.maxNewTokens ?? 256, stop: GSM8K_STOP },
    opts.batchSize ?? 32,
    opts.answers ? { answers: opts.answers, benchmark: "gsm8k" } : undefined,
    opts.onProgress,
  );
  const perItem = items.map((it, i) => scoreOne(it, cutAtStop(outs[i] ?? "", GSM8K_STOP)));
  return result(`gsm8k_${nShot}shot`, perItem);
}
