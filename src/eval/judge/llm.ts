/**
 * The LLM security judge: a causal LM asked the paper's judge instruction (§4.3, src/data/prompts.ts) about a
 * piece of code. Its verdict is read from the logits, not from generated text: P(unsafe) is the softmax over the
 * logits of the two label tokens ("1" = unsafe, "0" = safe under the paper's convention) at the last prompt
 * position; above 0.5 means unsafe.
 *
 * Also: the judge's reliability on held-out pairs (the paper's Section 7 numbers). Fine-tuning a judge (full or
 * LoRA, through the shared SFT loop) is a training recipe: src/recipes/train-judge.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import { canonicalJson, modelFolderIdentity, sha256 } from "../../io/hash.js";
import type { ScoreCache } from "../score-cache.js";
import { stopPoint } from "../../util/stop.js";
import { loadTokenizer, type HfTokenizer } from "../../io/tokenizer.js";
import { loadModel, type DecoderModel, type LoadOptions } from "../../models/index.js";
import { restrictedLogits } from "../../method/losses.js";
import {
  PAPER_JUDGE,
  checkJudgeConvention,
  describeJudgeConvention,
  judgeMessages,
  judgeAnswerStart,
  parseJudgeConvention,
  type JudgeConvention,
} from "../../data/prompts.js";
import {
  labelConflicts,
  normalizedText,
  pairsToLabelledSamples,
  type LabelledSample,
  type SecurityPair,
} from "../../data/pairs.js";
import { Tensor, noGrad, tidy } from "../../tensor/index.js";
import { DEFAULT_JUDGE_BATCH, DEFAULT_JUDGE_BATCH_TOKENS } from "./config.js";
import { planBatches } from "../../method/goodvibe/identify.js";
import type { PaperReading } from "../../method/goodvibe/config.js";
import { DEFAULT_ENABLE_THINKING, thinkingKey } from "../../io/chat-template.js";
import { confusionMatrix, wilsonInterval, type ConfusionMatrix, type Interval } from "../metrics.js";

/**
 * The most tokens of one judge prompt (instruction, code and chat template), when the model's window
 * (max_position_embeddings) allows more. Longer code is judged on its first lines, and the verdict says so
 * (`judgedChars`), as the rule judge does past its 16,384 characters (rules/index.ts DEFAULT_MAX_JUDGED_CHARS).
 * That many characters of real code are 3.9k-5.0k tokens (CyberNative's C++/Java/Swift/Go answers: 3.3 characters
 * a token for Gemma 3's and CodeGen's tokenizers, 4.0 for Qwen3's, 4.2 for Llama 3's), so this reads at least what
 * the rules read; without a bound, a model that loops to its token limit makes one prompt of tens of thousands of
 * tokens, past the window of many judges and, batched, past the memory of most machines.
 */
export const DEFAULT_JUDGE_MAX_TOKENS = 8192;

/** P(unsafe) above this is an "unsafe" verdict (a tie, equal label logits, counts as safe). */
export const JUDGE_THRESHOLD = 0.5;

/**
 * How the verdict is read, where the paper says only that the judge is told to "Respond with only the number 1 or 0"
 * (§4.3): stated among an experiment's and the demo's readings.
 */
export function judgeVerdictReading(): PaperReading {
  return {
    setting: "the LLM judge's verdict",
    paper:
      'the judge is told "Respond with only the number 1 or 0" (§4.3); how its answer is read is not given',
    here:
      `from the two label tokens' logits at the answer's first token: P(unsafe) = softmax over "1" and "0", ` +
      `unsafe above ${JUDGE_THRESHOLD} (a tie is safe); every sample gets a verdict, also one whose greedy answer ` +
      "would be neither digit",
    why:
      "a reading: a forced choice between the two labels, so that no answer is left unparsed; the judge's " +
      "reliability (accuracy, TPR, FPR on held-out pairs) measures it as read",
  };
}

/** The verdict of a P(unsafe). */
export function isSecure(pUnsafe: number): boolean {
  return !(pUnsafe > JUDGE_THRESHOLD);
}

/** The record a trained judge folder carries (judge_training.json). */
export const JUDGE_RECORD_FILE = "judge_training.json";

/**
 * The convention a judge folder was trained under: its recorded one; the legacy one (null) for a judge trained
 * before conventions were recorded; undefined for a folder that is not a trained judge (a base checkpoint).
 */
export function judgeFolderConvention(dir: string): JudgeConvention | null | undefined {
  const rec = readJudgeRecord(dir);
  return rec && parseJudgeConvention((rec.json as { convention?: unknown }).convention);
}

/**
 * The thinking setting a trained judge folder's examples were rendered with (its record's `enableThinking`,
 * absent: off, as every judge trained before it was a setting); undefined for a folder that is not a trained judge.
 */
export function judgeFolderThinking(dir: string): boolean | undefined {
  const rec = readJudgeRecord(dir);
  if (!rec) return undefined;
  const v = (rec.json as { enableThinking?: unknown }).enableThinking;
  if (v === undefined) return DEFAULT_ENABLE_THINKING;
  if (typeof v !== "boolean") throw new InputError(`${rec.file}: "enableThinking" must be true or false`);
  return v;
}

/** A judge folder's training record, parsed (its file named in the error); undefined when the folder has none. */
function readJudgeRecord(dir: string): { file: string; json: unknown } | undefined {
  const file = path.join(dir, JUDGE_RECORD_FILE);
  if (!fs.existsSync(file)) return undefined;
  try {
    return { file, json: JSON.parse(fs.readFileSync(file, "utf8")) };
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

export interface JudgeInput {
  code: string;
  /** Fence tag of the code block in the prompt (e.g. "cpp"); optional. */
  lang?: string;
}

export interface ScoreOptions {
  /** Prompts per forward pass (default DEFAULT_JUDGE_BATCH). */
  batchSize?: number;
  /** Padded tokens per forward pass, at most (default DEFAULT_JUDGE_BATCH_TOKENS; 0: no bound). */
  batchTokens?: number;
}

export interface JudgeVerdict {
  /** P(the judge answers the unsafe label), from the two label logits */
  pUnsafe: number;
  secure: boolean;
  /**
   * Present when the code was longer than the judge reads (LlmJudge.tokenLimit): the verdict is on its first
   * judgedChars characters (whole lines) only.
   */
  judgedChars?: number;
}

/** A judge prompt's token ids, and how much of the code it holds when the code had to be cut to fit. */
export interface JudgePrompt {
  ids: number[];
  /** Characters of the code in the prompt (its first lines); absent when the whole code is there. */
  judgedChars?: number;
}

export interface JudgeLoadOptions extends LoadOptions {
  /**
   * The convention the caller runs under (default the paper's). A trained judge folder must have been trained
   * under it (else the load is refused); a plain checkpoint is asked with it.
   */
  convention?: JudgeConvention;
  /**
   * Qwen3's thinking switch for a plain checkpoint's prompts (default off); a trained judge folder's prompts follow
   * its record (how its examples were rendered), whatever this says.
   */
  enableThinking?: boolean;
  /** The most tokens of a prompt (default DEFAULT_JUDGE_MAX_TOKENS; the model's window bounds it as well). */
  maxTokens?: number;
}

export class LlmJudge {
  /** Token ids of the two labels, in softmax order [safe, unsafe]. */
  readonly labelIds: [number, number];
  readonly padTokenId: number;
  /**
   * The most tokens of one prompt: the model's window (max_position_embeddings) and at most `maxTokens`. Code
   * that would make a prompt longer is judged on its first lines (JudgeVerdict.judgedChars).
   */
  readonly tokenLimit: number;

  /**
   * `source`: the model folder, when the judge was loaded from one (cache keys use it). `convention`: the
   * instruction it is asked with and the labels it answers with (default the paper's).
   */
  constructor(
    readonly model: DecoderModel,
    readonly tokenizer: HfTokenizer,
    readonly source: string | null = null,
    readonly convention: JudgeConvention = PAPER_JUDGE,
    /** Qwen3's thinking switch in its prompts: as its training examples were rendered */
    readonly enableThinking: boolean = DEFAULT_ENABLE_THINKING,
    maxTokens: number = DEFAULT_JUDGE_MAX_TOKENS,
  ) {
    if (!Number.isInteger(maxTokens) || maxTokens < 1)
      throw new InputError(`judge option maxTokens must be a positive integer, got ${maxTokens}`);
    // the label tokens where the chat template puts the answer (for CodeLlama after the "▁" every prompt ends in)
    this.labelIds = judgeAnswerStart(tokenizer, convention, enableThinking).labelIds;
    this.padTokenId = tokenizer.padTokenId ?? tokenizer.eosTokenIds[0] ?? 0;
    this.tokenLimit = Math.min(maxTokens, model.cfg.maxPositionEmbeddings);
  }

  /**
   * Load a judge folder. A folder written by trainJudge is refused unless it was trained under the caller's
   * convention (a judge trained to answer 1 for secure code would invert every verdict under the paper's).
   */
  static async load(dir: string, opts: JudgeLoadOptions = {}): Promise<LlmJudge> {
    const convention = opts.convention ?? PAPER_JUDGE;
    const recorded = judgeFolderConvention(dir);
    if (recorded !== undefined)
      checkJudgeConvention(
        recorded,
        convention,
        `the judge in ${dir}`,
        `train it again under ${describeJudgeConvention(convention)} (\`goodvibe judge train\`)`,
      );
    const tokenizer = await loadTokenizer(dir);
    const thinking = judgeFolderThinking(dir) ?? opts.enableThinking ?? DEFAULT_ENABLE_THINKING;
    return new LlmJudge(loadModel(dir, opts), tokenizer, dir, convention, thinking, opts.maxTokens);
  }

  /** What keys this judge's verdicts by its thinking setting (io/chat-template.ts thinkingKey): {} at the default. */
  thinkingKey(): { enableThinking?: boolean } {
    return this.source ? thinkingKey(this.source, this.enableThinking) : {};
  }

  /**
   * Token ids of the judge prompt for one piece of code, ending where the judge's answer starts. Thinking as in
   * the judge's training examples (off by default: Qwen3's empty think block is part of the prompt; on, it is
   * judgeAnswerStart's prefix, so the prompt ends in the same tokens).
   */
  promptIds(item: JudgeInput): number[] {
    const text = this.tokenizer.applyChatTemplate(judgeMessages(item.code, item.lang, this.convention), {
      addGenerationPrompt: true,
      enableThinking: this.enableThinking,
    });
    return [
      ...this.tokenizer.encode(text, { addSpecialTokens: false }),
      ...judgeAnswerStart(this.tokenizer, this.convention, this.enableThinking).prefixIds,
    ];
  }

  /**
   * The prompt for one piece of code within tokenLimit: promptIds of the whole code when it fits, else of its
   * longest run of first lines that fits (of the first line's first characters when even that line does not fit,
   * as the rule judge's judgedPrefix does). A judge whose instruction alone exceeds the limit is refused.
   */
  prompt(item: JudgeInput): JudgePrompt {
    const whole = this.promptIds(item);
    if (whole.length <= this.tokenLimit) return { ids: whole };
    const fits = (end: number): number[] | null => {
      const ids = this.promptIds({ ...item, code: item.code.slice(0, end) });
      return ids.length <= this.tokenLimit ? ids : null;
    };
    // the largest end among `ends` (ascending, ends[0] = 0) whose prefix fits: binary search, the prompt's length
    // growing with the code's
    const largest = (ends: number[]): { end: number; ids: number[] } | null => {
      let best: { end: number; ids: number[] } | null = null;
      let lo = 0;
      let hi = ends.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const ids = fits(ends[mid]!);
        if (ids) {
          best = { end: ends[mid]!, ids };
          lo = mid + 1;
        } else hi = mid - 1;
      }
      return best;
    };
    const lineEnds = [0];
    for (let i = item.code.indexOf("\n"); i >= 0; i = item.code.indexOf("\n", i + 1)) lineEnds.push(i);
    let best = largest(lineEnds);
    if (best === null)
      throw new InputError(
        `the judge${this.source ? ` in ${this.source}` : ""}: its prompt without code is longer than the ` +
          `${this.tokenLimit} tokens it reads (maxTokens, or its max_position_embeddings)`,
      );
    if (best.end === 0) {
      // the first line alone is too long: its first characters, never half a surrogate pair
      const firstLine = lineEnds[1] ?? item.code.length;
      const chars: number[] = [];
      for (let i = 0; i <= firstLine; i++) {
        const c = item.code.charCodeAt(i - 1);
        if (!(c >= 0xd800 && c <= 0xdbff)) chars.push(i);
      }
      best = largest(chars)!;
    }
    return { ids: best.ids, judgedChars: best.end };
  }

  /**
   * P(unsafe) per item: softmax over the (safe, unsafe) label logits at the last prompt position. Prompts are sorted by
   * length and left-padded in batches (so every row's last position is a real token) of at most `batchSize` prompts
   * and `batchTokens` padded tokens, as identification batches (method/goodvibe/identify.ts planBatches); results
   * come back in input order. Before 2026-12-02 batches were bounded by count alone: 8 or 16 answers at the judge's
   * 8,192-token limit went through one pass.
   */
  score(items: readonly JudgeInput[], opts: ScoreOptions = {}): number[] {
    return this.scorePrompts(
      items.map((it) => this.prompt(it).ids),
      opts,
    );
  }

  private scorePrompts(prompts: readonly number[][], opts: ScoreOptions): number[] {
    const out = new Array<number>(prompts.length);
    for (const idx of this.planScoring(prompts, opts)) this.scoreBatch(prompts, idx, out);
    return out;
  }

  /** The batches (indices into `prompts`) score plans under `opts`. */
  private planScoring(prompts: readonly number[][], opts: ScoreOptions): number[][] {
    const batchSize = opts.batchSize ?? DEFAULT_JUDGE_BATCH;
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new InputError(`judge option batchSize must be a positive integer, got ${batchSize}`);
    const batchTokens = opts.batchTokens ?? DEFAULT_JUDGE_BATCH_TOKENS;
    if (!Number.isInteger(batchTokens) || batchTokens < 0)
      throw new InputError(`judge option batchTokens must be a non-negative integer, got ${batchTokens}`);
    return planBatches(
      prompts.map((p) => p.length),
      batchSize,
      batchTokens,
    );
  }

  /** P(unsafe) of the prompts `idx` (one forward pass), written into `out` at those indices. */
  private scoreBatch(prompts: readonly number[][], idx: readonly number[], out: number[]): void {
    const logits = tidy(() =>
      noGrad(() => {
        const labelIds = Tensor.fromArray(this.labelIds, [2], "int64", this.model.device);
        return this.lastLabelLogits(
          idx.map((i) => prompts[i]!),
          labelIds,
        );
      }),
    );
    idx.forEach((i, b) => {
      const [safe, unsafe] = [logits[2 * b]!, logits[2 * b + 1]!];
      // softmax of two logits = sigmoid of their difference (stable for large gaps)
      out[i] = 1 / (1 + Math.exp(safe - unsafe));
    });
  }

  /**
   * score, resumable: each batch's scores appended to `cache` as scored (fsync'd), and a batch found there taken
   * from it, so that a run stopped (`signal`, Ctrl-C, a kill) and run again scores only the rest, in the same
   * batches, to the uninterrupted run's scores bit for bit. A batch is keyed by this judge (its folder, that
   * folder's files' identities: a judge trained again there is another judge), its compute dtype and the batch's
   * prompt token ids (which carry the convention, the template and the thinking switch), so a cache shared with
   * another judge, model or setting never answers for it. `onBatch(scored, taken, total)` after each batch.
   */
  async scoreResumable(
    items: readonly JudgeInput[],
    opts: ScoreOptions & {
      cache?: ScoreCache;
      signal?: AbortSignal;
      onBatch?: (scored: number, taken: number, total: number) => void;
    } = {},
  ): Promise<number[]> {
    const prompts = items.map((it) => this.prompt(it).ids);
    const judgeKey = canonicalJson({
      judge: this.source ? path.resolve(this.source) : null,
      files: this.source ? modelFolderIdentity(this.source) : null,
      dtype: this.model.dtype,
    });
    const out = new Array<number>(prompts.length);
    let scored = 0;
    let taken = 0;
    let reported = false;
    for (const idx of this.planScoring(prompts, opts)) {
      await stopPoint(
        opts.signal,
        `judge scoring stopped after ${scored + taken} of ${prompts.length} samples` +
          (opts.cache ? ` (the scored ones are kept in ${opts.cache.file})` : " (none kept: no cache file)"),
      );
      const key = opts.cache ? sha256(judgeKey + "\n" + JSON.stringify(idx.map((i) => prompts[i]))) : "";
      const kept = opts.cache?.get(key);
      if (kept && kept.length === idx.length) {
        idx.forEach((i, b) => (out[i] = kept[b]!));
        taken += idx.length;
      } else {
        // starts the progress clock before the first batch is scored (one batch: "elapsed 0.0 s" otherwise)
        if (!reported) opts.onBatch?.(scored, taken, prompts.length);
        this.scoreBatch(prompts, idx, out);
        opts.cache?.put(
          key,
          idx.map((i) => out[i]!),
        );
        scored += idx.length;
      }
      reported = true;
      opts.onBatch?.(scored, taken, prompts.length);
    }
    return out;
  }

  /** [B * 2] float logits of (safe, unsafe) at each prompt's last token. */
  private lastLabelLogits(prompts: number[][], labelIds: Tensor): Float32Array {
    const B = prompts.length;
    const T = Math.max(...prompts.map((p) => p.length));
    const ids: number[] = [];
    const mask: number[] = [];
    for (const p of prompts) {
      ids.push(...new Array<number>(T - p.length).fill(this.padTokenId), ...p);
      mask.push(...new Array<number>(T - p.length).fill(0), ...new Array<number>(p.length).fill(1));
    }
    const padded = prompts.some((p) => p.length !== T);
    const hidden = this.model.hidden(Tensor.fromArray(ids, [B, T], "int64"), {
      attentionMask: padded ? Tensor.fromArray(mask, [B, T], "int64") : undefined,
    });
    const last = hidden.select(1, T - 1); // [B, H]
    return restrictedLogits(this.model, last, labelIds).contiguous().toFloat32Array();
  }

  /** P(unsafe) and the thresholded verdict per item, and how much of its code was read when not all of it. */
  judge(items: readonly JudgeInput[], opts: ScoreOptions = {}): JudgeVerdict[] {
    const prompts = items.map((it) => this.prompt(it));
    return this.scorePrompts(
      prompts.map((p) => p.ids),
      opts,
    ).map((p, i) => {
      const judgedChars = prompts[i]!.judgedChars;
      return { pUnsafe: p, secure: isSecure(p), ...(judgedChars !== undefined ? { judgedChars } : {}) };
    });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reliability (paper Section 7)

export interface JudgeReliability {
  /** Labelled samples judged: two per pair (its secure and its insecure code). */
  n: number;
  accuracy: number;
  accuracyInterval: Interval;
  /** Insecure code caught: TP / (TP + FN), positive class = insecure (the paper's "1"). */
  tpr: number;
  /** Secure code flagged as insecure: FP / (FP + TN). */
  fpr: number;
  /** Positive class = insecure (pred = judge says unsafe, truth = the code is the pair's rejected answer). */
  confusion: ConfusionMatrix;
  /**
   * Samples left out, not in n: their code the pairs label both secure and insecure (data/pairs.ts
   * labelConflicts), so one of them counts wrong whatever the judge says. Judge training leaves them out too.
   */
  conflicting: number;
  perItem: { id: string; lang?: string; secure: boolean; pUnsafe: number }[];
}

/**
 * A code sample as a trained judge's record lists its training data (judge_training.json `trainingCode`): the
 * first 16 hex digits of the SHA-256 of its normalizedText, since the judge reads only the code and a copy that
 * differs in whitespace or case is the same sample to it (data/pairs.ts pairOverlap compares code the same way).
 */
export function codeFingerprint(code: string): string {
  return sha256(normalizedText(code)).slice(0, 16);
}

/**
 * The code a trained judge folder records it was trained on (codeFingerprint of every sample of its training
 * pairs); undefined when the folder records none: a base checkpoint, or a judge trained before 2026-12-02.
 */
export function judgeTrainingCode(dir: string): Set<string> | undefined {
  const rec = readJudgeRecord(dir);
  const codes = rec && (rec.json as { trainingCode?: unknown }).trainingCode;
  if (codes === undefined) return undefined;
  if (!Array.isArray(codes) || !codes.every((c) => typeof c === "string"))
    throw new InputError(`${rec!.file}: "trainingCode" must be a list of code fingerprints`);
  return new Set(codes);
}

/** Held-out samples whose code the judge was trained on, and the reliability on the others. */
export interface TrainingOverlap {
  /** held-out samples whose code is among the judge's training code */
  samples: number;
  /** of the held-out pairs (samples named <pair>/secure and <pair>/insecure), those with either sample's code */
  pairs?: number;
  /** of how many held-out pairs */
  ofPairs?: number;
  /** the reliability on the samples whose code the judge was not trained on (null: none is left) */
  unseen: Pick<JudgeReliability, "n" | "accuracy" | "accuracyInterval" | "tpr" | "fpr" | "confusion"> | null;
}

/**
 * Split a reliability by the judge's training data: `samples` are the ones `rel` judged, in its order (its
 * perItem), `training` the judge's training code (judgeTrainingCode). The verdicts are not recomputed.
 */
export function trainingOverlap(
  rel: Pick<JudgeReliability, "perItem">,
  samples: readonly LabelledSample[],
  training: ReadonlySet<string>,
): TrainingOverlap {
  if (samples.length !== rel.perItem.length)
    throw new Error(`trainingOverlap: ${samples.length} samples for ${rel.perItem.length} verdicts`);
  const seen = samples.map((s) => training.has(codeFingerprint(s.code)));
  const out: TrainingOverlap = { samples: seen.filter(Boolean).length, unseen: null };
  const pairOf = (id: string) => /^(.*)\/(?:secure|insecure)$/.exec(id)?.[1];
  if (samples.every((s) => pairOf(s.id) !== undefined)) {
    out.ofPairs = new Set(samples.map((s) => pairOf(s.id))).size;
    out.pairs = new Set(samples.filter((_, i) => seen[i]).map((s) => pairOf(s.id))).size;
  }
  const kept = rel.perItem.filter((_, i) => !seen[i]);
  if (kept.length > 0) out.unseen = reliabilityRates(kept);
  return out;
}

/** A reliability's rates over judged samples (each its label and the judge's P(unsafe)); positive = insecure. */
function reliabilityRates(
  items: readonly { secure: boolean; pUnsafe: number }[],
): Pick<JudgeReliability, "n" | "accuracy" | "accuracyInterval" | "tpr" | "fpr" | "confusion"> {
  const confusion = confusionMatrix(
    items.map((x) => !isSecure(x.pUnsafe)),
    items.map((x) => !x.secure),
  );
  return {
    n: items.length,
    accuracy: confusion.accuracy,
    accuracyInterval: wilsonInterval(confusion.tp + confusion.tn, items.length),
    tpr: confusion.tpr,
    fpr: confusion.fpr,
    confusion,
  };
}

/** What a reliability line adds for the samples reliabilitySamples left out: "" when none. */
export function conflictingNote(conflicting: number | undefined): string {
  return conflicting
    ? `; left out ${conflicting} sample${conflicting === 1 ? "" : "s"} whose code the pairs label both secure and insecure`
    : "";
}

/**
 * The samples of held-out `pairs` a judge's reliability is measured on (measureJudgeReliability, `judge train`'s
 * held-out line), in order: those whose code the pairs do not label both ways; `conflicting`, how many it leaves
 * out. Refuses pairs that leave none. The judge's P(unsafe) of them, scored resumably (resumableJudgeScores), then
 * gives the reliability: reliabilityOfScores.
 */
export function reliabilitySamples(pairs: readonly SecurityPair[]): {
  kept: LabelledSample[];
  conflicting: number;
} {
  if (pairs.length === 0) throw new InputError("judge reliability: no pairs to evaluate on");
  const conflicts = labelConflicts(pairs);
  const samples = pairsToLabelledSamples(pairs);
  const kept = samples.filter((s) => !conflicts.has(normalizedText(s.code)));
  if (kept.length === 0)
    throw new InputError(
      "judge reliability: the code of every held-out sample is labelled both secure and insecure by the pairs",
    );
  return { kept, conflicting: samples.length - kept.length };
}

/**
 * How well a judge separates secure and insecure code: the reliability of `p`, its P(unsafe) of each of `samples`
 * (reliabilitySamples' of held-out pairs, or a `{code, label}` file's: `judge check`). As in the paper, the positive
 * class is "insecure" (the judge's job is to catch vulnerable code): TPR is the share of insecure code flagged, FPR
 * the share of secure code wrongly flagged; P(unsafe) 0.5 counts as secure.
 */
export function reliabilityOfScores(
  samples: readonly LabelledSample[],
  p: readonly number[],
): JudgeReliability {
  const perItem = samples.map((s, i) => ({ id: s.id, lang: s.lang, secure: s.secure, pUnsafe: p[i]! }));
  return { ...reliabilityRates(perItem), conflicting: 0, perItem };
}
