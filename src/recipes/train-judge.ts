/**
 * Training a judge: fine-tune a base checkpoint on labelled pairs (insecure code → the unsafe label, secure code →
 * the safe label) and write it as a normal HF checkpoint that LlmJudge loads. A training recipe, so it lives with
 * the recipes, above the evaluation's judge (eval/judge/llm.ts) and the trainer (method/train.ts) it combines.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { GoodVibeError, InputError } from "../errors.js";
import { writeDirAtomic, writeFileAtomic } from "../io/atomic.js";
import { whileClaimed } from "../io/claim.js";
import { copyModelFiles, folderStamps, folderUnchanged } from "../io/model-folder.js";
import type { FileStamp } from "../io/mapfile.js";
import { modelFolderHash } from "../io/hash.js";
import {
  openModelWeights,
  weightsUnchanged,
  writeModelWeightsAsync,
  type AnyTensorToWrite,
  type ModelWeights,
  type TensorRecord,
} from "../io/safetensors.js";
import { loadTokenizer, type HfTokenizer } from "../io/tokenizer.js";
import { loadModelWithWeights, ST_TO_DTYPE, type DecoderModel } from "../models/index.js";
import { attachFull } from "../method/full.js";
import type { AttachedMethod } from "../method/attached.js";
import { attachLora } from "../method/lora/model.js";
import { DEFAULT_LORA, type LoraConfig } from "../method/lora/config.js";
import type { TrainConfig } from "../method/train-config.js";
import { guardSaves, trainSft, type SftExample, type TrainHooks, type TrainResult } from "../method/train.js";
import { PAPER_JUDGE, buildSftExample, judgeMessages, type JudgeConvention } from "../data/prompts.js";
import { labelConflicts, normalizedText, pairsToLabelledSamples, type SecurityPair } from "../data/pairs.js";
import { Tensor, noGrad, tidy, type DType } from "../tensor/index.js";
import { JUDGE_RECORD_FILE, LlmJudge, codeFingerprint } from "../eval/judge/llm.js";
import { DEFAULT_ENABLE_THINKING } from "../io/chat-template.js";
import {
  DEFAULT_JUDGE_TRAIN,
  judgeLoopConfig,
  type JudgeMethod,
  type JudgeTrainConfig,
} from "../eval/judge/config.js";

export interface TrainJudgeOptions {
  /** Hugging Face model folder with a tokenizer; only read. */
  baseModelDir: string;
  /** Training pairs: each gives (insecure code → the unsafe label) and (secure code → the safe label). */
  pairs: readonly SecurityPair[];
  /** The instruction and labels it is trained with, recorded in the folder (default the paper's). */
  convention?: JudgeConvention;
  /** The new checkpoint folder (written atomically; must not be the base folder). */
  outDir: string;
  method: JudgeMethod;
  /** Overrides of the judge's training loop (judgeLoopConfig(DEFAULT_JUDGE_TRAIN): DEFAULT_TRAIN). */
  cfg?: Partial<TrainConfig>;
  /** For method "lora" (default DEFAULT_LORA). */
  lora?: LoraConfig;
  /** Examples longer than this (tokens, label included) are skipped and counted (DEFAULT_JUDGE_TRAIN.maxLength). */
  maxLength?: number;
  /** Qwen3's thinking switch in the examples (default off), recorded in the folder when on. */
  enableThinking?: boolean;
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
  /** Judge examples trained on, those skipped for length, and those whose code the pairs label both ways. */
  examples: number;
  skipped: number;
  conflicting: number;
  /** The trained judge in memory, its weights folded exactly as written to outDir. */
  judge: LlmJudge;
}

/**
 * trainJudge's options from the judge's typed config (`judge train`, an experiment's judge, the demo): its
 * method, its training loop and its example length. (maxPairs picks the pairs: recipes/judge.ts.)
 */
export function judgeTrainOptions(
  s: JudgeTrainConfig,
): Pick<TrainJudgeOptions, "method" | "cfg" | "maxLength" | "enableThinking"> {
  return {
    method: s.method,
    cfg: judgeLoopConfig(s),
    maxLength: s.maxLength,
    enableThinking: s.enableThinking,
  };
}

/**
 * The judge's SFT examples: the answer is the label token (plus the template's end-of-turn token). A code that the
 * pairs label both ways (a pair whose secure and insecure code are the same after whitespace and case
 * normalisation, or a secure answer that is another pair's insecure one; real CyberNative has both) is left out
 * and counted in `conflicting`: trained under both labels, it only teaches the judge to answer 0.5.
 */
export function judgeExamples(
  tok: HfTokenizer,
  pairs: readonly SecurityPair[],
  maxLength: number,
  convention: JudgeConvention = PAPER_JUDGE,
  enableThinking = DEFAULT_ENABLE_THINKING,
): { examples: SftExample[]; skipped: number; conflicting: number } {
  const examples: SftExample[] = [];
  let skipped = 0;
  let conflicting = 0;
  const conflicts = labelConflicts(pairs);
  for (const s of pairsToLabelledSamples(pairs)) {
    if (conflicts.has(normalizedText(s.code))) {
      conflicting++;
      continue;
    }
    const label = s.secure ? convention.labels.safe : convention.labels.unsafe;
    const ex = buildSftExample(
      tok,
      [...judgeMessages(s.code, s.lang, convention), { role: "assistant", content: label }],
      { maxLength: Number.MAX_SAFE_INTEGER, enableThinking },
    );
    if (ex.inputIds.length > maxLength) skipped++;
    else examples.push(ex);
  }
  return { examples, skipped, conflicting };
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
 * in place (each in the base tensor's dtype), config.json and the tokenizer files copied unchanged. With a runDir,
 * the run folder is claimed for the training (io/claim.ts): a second training into it is refused at once (exit 2).
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
  // the base model is read and checked (tokenizer, config against weights) before the run folder is claimed: a
  // claim creates that folder, and a bad base model must leave nothing behind
  const ready = await prepareJudge(opts, base);
  if (!opts.runDir) return await trainAndWrite(opts, base, out, ready);
  // the run folder is this training's: a second one into the same output would train again beside it, both saving
  // checkpoints into one folder, and clash only at the end on the output the first wrote
  return whileClaimed(
    opts.runDir,
    (h) =>
      `run folder ${opts.runDir} is in use by another goodvibe run (${h}) training a judge into ${opts.outDir}: ` +
      `wait for it to end, or choose another output folder`,
    () => trainAndWrite(opts, base, out, ready),
  );
}

interface PreparedJudge {
  tokenizer: HfTokenizer;
  convention: JudgeConvention;
  enableThinking: boolean;
  examples: SftExample[];
  skipped: number;
  conflicting: number;
  model: DecoderModel;
  /** the base's weights as loaded, and its files as first read: checked before anything is saved or published */
  weights: ModelWeights;
  stamps: FileStamp[];
}

async function prepareJudge(opts: TrainJudgeOptions, base: string): Promise<PreparedJudge> {
  const stamps = folderStamps(base);
  const tokenizer = await loadTokenizer(base);
  const convention = opts.convention ?? PAPER_JUDGE;
  const maxLength = opts.maxLength ?? DEFAULT_JUDGE_TRAIN.maxLength;
  const enableThinking = opts.enableThinking ?? DEFAULT_ENABLE_THINKING;
  const { examples, skipped, conflicting } = judgeExamples(
    tokenizer,
    opts.pairs,
    maxLength,
    convention,
    enableThinking,
  );
  if (examples.length === 0)
    throw new InputError(
      conflicting > 0 && skipped === 0
        ? `trainJudge: every judge example's code is labelled both secure and insecure by the pairs`
        : `trainJudge: every judge example is longer than maxLength ${maxLength} tokens`,
    );
  const dtype = opts.dtype ?? (opts.method === "full" ? "float32" : undefined);
  const { model, weights } = loadModelWithWeights(base, { dtype });
  return { tokenizer, convention, enableThinking, examples, skipped, conflicting, model, weights, stamps };
}

async function trainAndWrite(
  opts: TrainJudgeOptions,
  base: string,
  out: string,
  prepared: PreparedJudge,
): Promise<TrainedJudge> {
  const { tokenizer, convention, enableThinking, examples, skipped, conflicting, model, weights, stamps } =
    prepared;
  const doing = "the judge's training";
  const cfg: TrainConfig = { ...judgeLoopConfig(DEFAULT_JUDGE_TRAIN), ...opts.cfg };
  if (conflicting > 0)
    opts.hooks?.onNote?.(
      `left out ${conflicting} of ${examples.length + skipped + conflicting} samples: their code is labelled both secure and insecure by the pairs`,
    );
  const method: AttachedMethod =
    opts.method === "full" ? attachFull(model) : attachLora(model, opts.lora ?? DEFAULT_LORA);
  const padTokenId = tokenizer.padTokenId ?? tokenizer.eosTokenIds[0] ?? 0;
  let train: TrainResult;
  try {
    train = await trainSft(model, method, examples, cfg, {
      runDir: opts.runDir,
      // the base folder's content hash (memoised) rather than a second pass over the loaded weights
      identity: opts.runDir ? { model: modelFolderHash(base) } : undefined,
      padTokenId,
      // no checkpoint computed after a weight file was written in place is saved
      hooks: guardSaves(opts.hooks ?? {}, weights, `${doing} (its checkpoint is not saved)`),
    });
  } finally {
    // no product runs while the checkpoint is written, and the fold below changes the trained weights in place (their
    // copies would be stale): the weight copies go now; the judge makes those it needs at its first products
    model.frozenDx.release();
  }
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
    async (tmp) => {
      const tensors: AnyTensorToWrite[] = [];
      for (const [name, rec] of records) {
        const t = replaced.get(name);
        if (!t) {
          tensors.push({ name, dtype: rec.dtype, shape: rec.shape, data: rec.data });
          continue;
        }
        // cast when the writer reaches it, a few rows at a time, and dropped once written
        const bytes = () => t.bytesInParts(ST_TO_DTYPE[rec.dtype]!);
        tensors.push({ name, dtype: rec.dtype, shape: rec.shape, bytes });
      }
      // Ctrl-C stops the write before the next tensor: the partial folder goes, an existing outDir stays as it was
      await writeModelWeightsAsync(tmp, tensors, { signal: opts.hooks?.signal });
      // config, tokenizer and (a multimodal base's) processor files: the judge loads as its base does
      copyModelFiles(base, tmp);
      const meta = {
        kind: "goodvibe-llm-judge",
        baseModel: base,
        method: opts.method,
        lora: opts.method === "lora" ? (opts.lora ?? DEFAULT_LORA) : undefined,
        train: cfg,
        examples: examples.length,
        skipped,
        // samples left out because the pairs label their code both ways (judgeExamples)
        ...(conflicting > 0 ? { conflicting } : {}),
        // what it was trained on, so that `judge check` can tell held-out code it has seen (eval/judge/llm.ts
        // trainingOverlap): its pairs, and the code of every sample of them (sorted fingerprints)
        trainingPairs: opts.pairs.length,
        trainingCode: [
          ...new Set(pairsToLabelledSamples(opts.pairs).map((x) => codeFingerprint(x.code))),
        ].sort(),
        finalLoss: train.finalLoss,
        steps: train.steps,
        // the builds of the tool that trained it, from the step each began at (a checkpoint resumed by another)
        ...(train.builds ? { builds: train.builds } : {}),
        convention,
        // its prompts follow it (LlmJudge.load); left out at the default, as judges trained before it was a setting
        ...(enableThinking !== DEFAULT_ENABLE_THINKING ? { enableThinking } : {}),
      };
      writeFileAtomic(path.join(tmp, JUDGE_RECORD_FILE), JSON.stringify(meta, null, 2) + "\n");
      // what was trained is what the base held when it was read: nothing written into its weights, and none of its
      // files (weights reopened above, config and tokenizer copied) replaced since
      weightsUnchanged(weights, doing);
      folderUnchanged(base, stamps, doing);
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
    conflicting,
    judge: new LlmJudge(model, tokenizer, out, convention, enableThinking),
  };
}
