/**
 * The LLM security judge: a causal LM asked the paper's judge instruction (§4.3, src/data/prompts.ts) about a
 * piece of code. Its verdict is read from the logits, not from generated text: P(unsafe) is the softmax over the
 * logits of the two label tokens ("1" = unsafe, "0" = safe under the paper's convention) at the last prompt
 * position; above 0.5 means unsafe.
 *
 * Also: fine-tuning a judge on labelled pairs (full or LoRA, through the shared SFT loop) into a normal Hugging
 * Face checkpoint, and the judge's reliability on held-out pairs (the paper's Section 7 numbers).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { GoodVibeError, InputError } from "../../errors.js";
import { writeDirAtomic, writeFileAtomic } from "../../io/atomic.js";
import { copyTokenizerFiles } from "../../io/model-folder.js";
import {
  openModelWeights,
  writeModelWeights,
  type TensorRecord,
  type TensorToWrite,
} from "../../io/safetensors.js";
import { loadTokenizer, type HfTokenizer } from "../../io/tokenizer.js";
import { loadModel, ST_TO_DTYPE, type DecoderModel, type LoadOptions } from "../../models/index.js";
import { restrictedLogits } from "../../method/losses.js";
import { attachFull, attachLora, type AttachedMethod } from "../../method/method.js";
import { DEFAULT_LORA, type LoraConfig } from "../../method/lora/config.js";
import {
  DEFAULT_TRAIN,
  trainSft,
  type SftExample,
  type TrainConfig,
  type TrainHooks,
  type TrainResult,
} from "../../method/train.js";
import {
  PAPER_JUDGE,
  buildSftExample,
  checkJudgeConvention,
  describeJudgeConvention,
  judgeMessages,
  parseJudgeConvention,
  type JudgeConvention,
} from "../../data/prompts.js";
import { pairsToLabelledSamples, type SecurityPair } from "../../data/pairs.js";
import { Tensor, noGrad, tidy, type DType } from "../../tensor/index.js";
import { confusionMatrix, wilsonInterval, type ConfusionMatrix, type Interval } from "../metrics.js";

/** P(unsafe) above this is an "unsafe" verdict (a tie, equal label logits, counts as safe). */
export const JUDGE_THRESHOLD = 0.5;

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
  const file = path.join(dir, JUDGE_RECORD_FILE);
  if (!fs.existsSync(file)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parseJudgeConvention((json as { convention?: unknown }).convention);
}

export interface JudgeInput {
  code: string;
  /** Fence tag of the code block in the prompt (e.g. "cpp"); optional. */
  lang?: string;
}

export interface ScoreOptions {
  /** Prompts per forward pass (default 8). */
  batchSize?: number;
}

export interface JudgeVerdict {
  /** P(the judge answers the unsafe label), from the two label logits */
  pUnsafe: number;
  secure: boolean;
}

export interface JudgeLoadOptions extends LoadOptions {
  /**
   * The convention the caller runs under (default the paper's). A trained judge folder must have been trained
   * under it (else the load is refused); a plain checkpoint is asked with it.
   */
  convention?: JudgeConvention;
}

export class LlmJudge {
  /** Token ids of the two labels, in softmax order [safe, unsafe]. */
  readonly labelIds: [number, number];
  readonly padTokenId: number;

  /**
   * `source`: the model folder, when the judge was loaded from one (cache keys use it). `convention`: the
   * instruction it is asked with and the labels it answers with (default the paper's).
   */
  constructor(
    readonly model: DecoderModel,
    readonly tokenizer: HfTokenizer,
    readonly source: string | null = null,
    readonly convention: JudgeConvention = PAPER_JUDGE,
  ) {
    this.labelIds = [
      tokenizer.singleTokenId(convention.labels.safe),
      tokenizer.singleTokenId(convention.labels.unsafe),
    ];
    this.padTokenId = tokenizer.padTokenId ?? tokenizer.eosTokenIds[0] ?? 0;
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
    return new LlmJudge(loadModel(dir, opts), tokenizer, dir, convention);
  }

  /**
   * Token ids of the judge prompt for one piece of code, ending where the judge's answer starts. Thinking is
   * off (Qwen3's empty think block is part of the prompt), exactly as in the judge's training examples.
   */
  promptIds(item: JudgeInput): number[] {
    const text = this.tokenizer.applyChatTemplate(judgeMessages(item.code, item.lang, this.convention), {
      addGenerationPrompt: true,
      enableThinking: false,
    });
    return this.tokenizer.encode(text, { addSpecialTokens: false });
  }

  /**
   * P(unsafe) per item: softmax over the (safe, unsafe) label logits at the last prompt position. Prompts are sorted by
   * length and left-padded in batches (so every row's last position is a real token); results come back in
   * input order.
   */
  score(items: readonly JudgeInput[], opts: ScoreOptions = {}): number[] {
    const batchSize = opts.batchSize ?? 8;
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new InputError(`judge option batchSize must be a positive integer, got ${batchSize}`);
    const prompts = items.map((it) => this.promptIds(it));
    const order = [...prompts.keys()].sort((a, b) => prompts[a]!.length - prompts[b]!.length);
    const out = new Array<number>(items.length);
    const labelIds = Tensor.fromArray(this.labelIds, [2], "int64");
    for (let start = 0; start < order.length; start += batchSize) {
      const idx = order.slice(start, start + batchSize);
      const logits = tidy(() =>
        noGrad(() =>
          this.lastLabelLogits(
            idx.map((i) => prompts[i]!),
            labelIds,
          ),
        ),
      );
      idx.forEach((i, b) => {
        const [safe, unsafe] = [logits[2 * b]!, logits[2 * b + 1]!];
        // softmax of two logits = sigmoid of their difference (stable for large gaps)
        out[i] = 1 / (1 + Math.exp(safe - unsafe));
      });
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

  /** P(unsafe) and the thresholded verdict per item. */
  judge(items: readonly JudgeInput[], opts: ScoreOptions = {}): JudgeVerdict[] {
    return this.score(items, opts).map((p) => ({ pUnsafe: p, secure: isSecure(p) }));
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
  perItem: { id: string; lang?: string; secure: boolean; pUnsafe: number }[];
}

/**
 * How well a judge separates the secure and insecure code of held-out pairs. As in the paper, the positive class
 * is "insecure" (the judge's job is to catch vulnerable code), so TPR is the share of insecure code flagged and
 * FPR the share of secure code wrongly flagged.
 */
export function judgeReliability(
  judge: Pick<LlmJudge, "score">,
  pairs: readonly SecurityPair[],
  opts: ScoreOptions = {},
): JudgeReliability {
  if (pairs.length === 0) throw new InputError("judge reliability: no pairs to evaluate on");
  const samples = pairsToLabelledSamples(pairs);
  const p = judge.score(samples, opts);
  const predInsecure = p.map((x) => !isSecure(x));
  const truthInsecure = samples.map((s) => !s.secure);
  const confusion = confusionMatrix(predInsecure, truthInsecure);
  const correct = confusion.tp + confusion.tn;
  return {
    n: samples.length,
    accuracy: confusion.accuracy,
    accuracyInterval: wilsonInterval(correct, samples.length),
    tpr: confusion.tpr,
    fpr: confusion.fpr,
    confusion,
    perItem: samples.map((s, i) => ({ id: s.id, lang: s.lang, secure: s.secure, pUnsafe: p[i]! })),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Training a judge

export interface TrainJudgeOptions {
  /** Hugging Face model folder with a tokenizer; only read. */
  baseModelDir: string;
  /** Training pairs: each gives (insecure code → the unsafe label) and (secure code → the safe label). */
  pairs: readonly SecurityPair[];
  /** The instruction and labels it is trained with, recorded in the folder (default the paper's). */
  convention?: JudgeConvention;
  /** The new checkpoint folder (written atomically; must not be the base folder). */
  outDir: string;
  method: "full" | "lora";
  /** Overrides of DEFAULT_TRAIN. */
  cfg?: Partial<TrainConfig>;
  /** For method "lora" (default DEFAULT_LORA). */
  lora?: LoraConfig;
  /** Examples longer than this (tokens, label included) are skipped and counted. Default 2048. */
  maxLength?: number;
  /** Compute dtype while training; default float32 for full fine-tuning, the checkpoint's dtype for LoRA. */
  dtype?: DType;
  /** Checkpoints of the training loop (resume after an interruption); none by default. */
  runDir?: string;
  /** Replace a non-empty outDir. */
  overwrite?: boolean;
  hooks?: TrainHooks;
}

export interface TrainedJudge {
  outDir: string;
  train: TrainResult;
  /** Judge examples trained on, and those skipped for length. */
  examples: number;
  skipped: number;
  /** The trained judge in memory, its weights folded exactly as written to outDir. */
  judge: LlmJudge;
}

/** The judge's SFT examples: the answer is the label token (plus the template's end-of-turn token). */
export function judgeExamples(
  tok: HfTokenizer,
  pairs: readonly SecurityPair[],
  maxLength: number,
  convention: JudgeConvention = PAPER_JUDGE,
): { examples: SftExample[]; skipped: number } {
  const examples: SftExample[] = [];
  let skipped = 0;
  for (const s of pairsToLabelledSamples(pairs)) {
    const label = s.secure ? convention.labels.safe : convention.labels.unsafe;
    const ex = buildSftExample(
      tok,
      [...judgeMessages(s.code, s.lang, convention), { role: "assistant", content: label }],
      {
        maxLength: Number.MAX_SAFE_INTEGER,
      },
    );
    if (ex.inputIds.length > maxLength) skipped++;
    else examples.push(ex);
  }
  return { examples, skipped };
}

/** Where a canonical HF name ("model.layers.0...") is stored in a checkpoint (Gemma3 may add a prefix). */
function storedNames(records: Map<string, TensorRecord>): (name: string) => string {
  let prefix = "model.";
  for (const n of records.keys()) {
    const m = /^(.*?)embed_tokens\.weight$/.exec(n);
    if (m) {
      prefix = m[1]!;
      break;
    }
  }
  return (name) => {
    if (records.has(name)) return name;
    const stored = name.startsWith("model.") ? prefix + name.slice("model.".length) : name;
    if (records.has(stored)) return stored;
    const head = prefix.replace(/model\.$/, "") + name;
    if (records.has(head)) return head;
    throw new Error(`trained tensor ${name} has no counterpart in the base checkpoint`);
  };
}

/**
 * Fine-tune a judge and write it as a normal HF checkpoint: the base's tensors with the method's folded weights
 * in place (each in the base tensor's dtype), config.json and the tokenizer files copied unchanged.
 */
export async function trainJudge(opts: TrainJudgeOptions): Promise<TrainedJudge> {
  const base = path.resolve(opts.baseModelDir);
  const out = path.resolve(opts.outDir);
  if (base === out)
    throw new InputError(`${opts.outDir}: the judge's output folder must differ from the base model folder`);
  if (!opts.overwrite && fs.existsSync(out) && fs.readdirSync(out).length > 0)
    throw new InputError(
      `${opts.outDir}: output folder exists and is not empty (pass overwrite to replace it)`,
    );
  if (opts.pairs.length === 0) throw new InputError("trainJudge: no training pairs");

  const tokenizer = await loadTokenizer(base);
  const convention = opts.convention ?? PAPER_JUDGE;
  const cfg: TrainConfig = { ...DEFAULT_TRAIN, ...opts.cfg };
  const { examples, skipped } = judgeExamples(tokenizer, opts.pairs, opts.maxLength ?? 2048, convention);
  if (examples.length === 0)
    throw new InputError(
      `trainJudge: every judge example is longer than maxLength ${opts.maxLength ?? 2048} tokens`,
    );

  const dtype = opts.dtype ?? (opts.method === "full" ? "float32" : undefined);
  const model = loadModel(base, { dtype });
  const method: AttachedMethod =
    opts.method === "full" ? attachFull(model) : attachLora(model, opts.lora ?? DEFAULT_LORA);
  const padTokenId = tokenizer.padTokenId ?? tokenizer.eosTokenIds[0] ?? 0;
  const train = await trainSft(model, method, examples, cfg, {
    runDir: opts.runDir,
    padTokenId,
    hooks: opts.hooks,
  });
  if (!train.finished)
    throw new GoodVibeError(
      `trainJudge: training stopped at step ${train.steps} of ${train.totalSteps}; no checkpoint was written ` +
        (opts.runDir
          ? `(run again with the same runDir to resume)`
          : `(pass runDir to make training resumable)`),
      1,
    );

  const folded = method.foldedWeights();
  method.detach();
  // A fresh view of the base files: the model's own mapping may hold in-place updates (full fine-tuning).
  const records = openModelWeights(base).tensors;
  const stored = storedNames(records);
  const replaced = new Map<string, Tensor>();
  const storedDtype = new Map<string, DType>();
  for (const [name, t] of folded) {
    const rec = records.get(stored(name))!;
    const dt = ST_TO_DTYPE[rec.dtype];
    if (!dt)
      throw new InputError(
        `${base}: tensor ${rec.name} has dtype ${rec.dtype}, which cannot hold trained weights`,
      );
    replaced.set(rec.name, t);
    storedDtype.set(name, dt);
  }

  await writeDirAtomic(
    out,
    (tmp) => {
      const tensors: TensorToWrite[] = [];
      for (const [name, rec] of records) {
        const t = replaced.get(name);
        if (!t) {
          tensors.push({ name, dtype: rec.dtype, shape: rec.shape, data: rec.data });
          continue;
        }
        const data = noGrad(() => tidy(() => t.to(ST_TO_DTYPE[rec.dtype]!).contiguous().toBytes()));
        tensors.push({ name, dtype: rec.dtype, shape: rec.shape, data });
      }
      writeModelWeights(tmp, tensors);
      writeFileAtomic(path.join(tmp, "config.json"), fs.readFileSync(path.join(base, "config.json")));
      copyTokenizerFiles(base, tmp);
      const meta = {
        kind: "goodvibe-llm-judge",
        baseModel: base,
        method: opts.method,
        lora: opts.method === "lora" ? (opts.lora ?? DEFAULT_LORA) : undefined,
        train: cfg,
        examples: examples.length,
        skipped,
        finalLoss: train.finalLoss,
        steps: train.steps,
        convention,
      };
      writeFileAtomic(path.join(tmp, JUDGE_RECORD_FILE), JSON.stringify(meta, null, 2) + "\n");
    },
    { overwrite: opts.overwrite ?? false },
  );

  // Fold into the in-memory model too, through the same dtype rounding as the written file.
  noGrad(() => {
    const params = model.parameters();
    for (const [name, t] of folded) {
      const p = params.get(name) ?? (name === "lm_head.weight" ? model.lmHead : undefined);
      if (!p) throw new Error(`trained tensor ${name} is not a model parameter`);
      p.copy_(t.to(storedDtype.get(name)!).to(p.dtype));
    }
  });
  return {
    outDir: out,
    train,
    examples: examples.length,
    skipped,
    judge: new LlmJudge(model, tokenizer, out, convention),
  };
}
