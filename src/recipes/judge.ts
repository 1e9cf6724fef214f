/**
 * The judge of an evaluation, as the paper sets it up (§4.3, §7): one judge, trained independently on labelled
 * pairs only (never on outputs of the models it judges), the same for every condition; and its reliability as
 * §7 reports it — the base judge (its checkpoint asked zero-shot) against the fine-tuned judge, accuracy, TPR and
 * FPR on held-out labelled pairs, positive class = unsafe (the paper's "1").
 *
 * Used by the experiment runner and the demo: a judge folder given as is, or a base checkpoint fine-tuned once
 * into a cache folder (resumable) and reused while its inputs are unchanged.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { writeFileAtomic } from "../io/atomic.js";
import { modelFolderIdentity } from "../io/hash.js";
import { ScoreCache } from "../eval/score-cache.js";
import { pairOverlap, subsamplePairs, type LabelledSample, type SecurityPair } from "../data/pairs.js";
import { describeJudgeConvention, type JudgeConvention } from "../data/prompts.js";
import {
  JUDGE_RECORD_FILE,
  LlmJudge,
  judgeTrainingCode,
  reliabilityOfScores,
  reliabilitySamples,
  trainingOverlap,
  type JudgeReliability,
  type TrainingOverlap,
} from "../eval/judge/llm.js";
import { confusionIntervals, percentWithInterval, type CountedInterval } from "../eval/metrics.js";
import { trainJudge, judgeTrainOptions } from "./train-judge.js";
import type { JudgeTrainConfig } from "../eval/judge/config.js";
import type { JudgeInfo, JudgeReliabilityEntry } from "../report/schema.js";
import { silentLogger, type Logger } from "../util/log.js";
import { otherBuildWarning, trainProgressHooks } from "../method/train.js";
import { DEFAULT_ENABLE_THINKING } from "../io/chat-template.js";

/** A judge to fine-tune once: its base checkpoint, labelled pairs and training settings. */
export interface JudgeTraining {
  base: string;
  /** The labelled pairs (all of them; `settings.maxPairs` subsamples with seed 0). */
  pairs: () => readonly SecurityPair[];
  /** Where the pairs come from, for the report. */
  data: string;
  /** how it is trained (src/eval/judge/config.ts) */
  settings: JudgeTrainConfig;
  /** Cache folder: <dir>/model is the judge, <dir>/run its resumable training state. */
  dir: string;
}

/** The pairs a judge is trained on: all, or a subsample of settings.maxPairs (seed 0). */
export function judgeTrainingPairs(t: Pick<JudgeTraining, "pairs" | "settings">): readonly SecurityPair[] {
  return subsamplePairs(t.pairs(), t.settings.maxPairs);
}

/**
 * The fine-tuned judge's folder: trained into `<dir>/model` unless it is there already (a finished training
 * writes the folder atomically, so an existing folder is complete; an interrupted one resumes from <dir>/run).
 */
export async function ensureJudgeTrained(
  t: JudgeTraining,
  opts: { convention: JudgeConvention; log?: Logger; signal?: AbortSignal },
): Promise<string> {
  const log = opts.log ?? silentLogger;
  const dir = path.join(t.dir, "model");
  if (fs.existsSync(path.join(dir, JUDGE_RECORD_FILE))) {
    log.info(`LLM judge: reusing ${dir}`);
    return dir;
  }
  const pairs = judgeTrainingPairs(t);
  log.info(
    `training the LLM judge (${JSON.stringify(t.settings)}) from ${t.base} on ${pairs.length} labelled ` +
      `pairs of ${t.data}, under ${describeJudgeConvention(opts.convention)}`,
  );
  await trainJudge({
    baseModelDir: t.base,
    pairs,
    outDir: dir,
    ...judgeTrainOptions(t.settings),
    convention: opts.convention,
    runDir: path.join(t.dir, "run"),
    overwrite: true,
    hooks: {
      signal: opts.signal,
      onOtherBuild: (info) => log.warn(otherBuildWarning(info)),
      onNote: (m) => log.info(`judge ${m}`),
      ...trainProgressHooks(log, "judge", (l) => `loss ${l.loss.toFixed(4)}`),
    },
  });
  return dir;
}

/** The base checkpoint a judge folder names in its record, when that folder still exists. */
export function recordedJudgeBase(judgeDir: string): string | undefined {
  try {
    const rec = JSON.parse(fs.readFileSync(path.join(judgeDir, JUDGE_RECORD_FILE), "utf8")) as {
      baseModel?: unknown;
    };
    return typeof rec.baseModel === "string" && fs.existsSync(path.join(rec.baseModel, "config.json"))
      ? rec.baseModel
      : undefined;
  } catch {
    return undefined;
  }
}

/** A reliability entry's rates on the held-out samples whose code the judge was not trained on. */
function unseenEntry(o: TrainingOverlap): NonNullable<JudgeReliabilityEntry["unseen"]> {
  const c = o.unseen?.confusion ?? { tp: 0, fp: 0, tn: 0, fn: 0 };
  const ci = confusionIntervals(c);
  return {
    seenSamples: o.samples,
    // samples of pairs (pairsToLabelledSamples' ids): trainingOverlap counts their pairs
    seenPairs: o.pairs!,
    ofPairs: o.ofPairs!,
    n: o.unseen?.n ?? 0,
    accuracy: ci.accuracy,
    tpr: ci.tpr,
    fpr: ci.fpr,
    confusion: { tp: c.tp, fp: c.fp, tn: c.tn, fn: c.fn },
  };
}

/**
 * A judge's reliability as results record it; with `overlap` (trainingOverlap of the same verdicts against the
 * judge's training code), also its rates on the held-out samples whose code the judge was not trained on.
 */
export function reliabilityEntry(
  role: JudgeReliabilityEntry["role"],
  source: string,
  r: JudgeReliability,
  model?: string,
  overlap?: TrainingOverlap,
): JudgeReliabilityEntry {
  const c = r.confusion;
  return {
    role,
    ...(model !== undefined ? { model } : {}),
    source,
    n: r.n,
    accuracy: { value: r.accuracy, low: r.accuracyInterval.low, high: r.accuracyInterval.high },
    tpr: r.tpr,
    fpr: r.fpr,
    confusion: { tp: c.tp, fp: c.fp, tn: c.tn, fn: c.fn },
    ...(r.conflicting > 0 ? { conflicting: r.conflicting } : {}),
    ...(overlap ? { unseen: unseenEntry(overlap) } : {}),
  };
}

function pairsHash(pairs: readonly SecurityPair[]): string {
  return createHash("sha256").update(JSON.stringify(pairs)).digest("hex").slice(0, 16);
}

/**
 * A reliability entry as the run's log says it: each rate with its 95% Wilson interval and n, and the same on the
 * code the judge was not trained on when it was measured.
 */
export function reliabilitySummary(e: JudgeReliabilityEntry): string {
  const rate = (r: CountedInterval | null) => (r ? `${percentWithInterval(r)} (n ${r.n})` : "— (n 0)");
  const rates = (c: JudgeReliabilityEntry["confusion"]) => {
    const ci = confusionIntervals(c);
    return `accuracy ${rate(ci.accuracy)}, TPR ${rate(ci.tpr)}, FPR ${rate(ci.fpr)}`;
  };
  const u = e.unseen;
  return (
    rates(e.confusion) +
    (u
      ? `; on the ${u.n} samples whose code ${e.role === "base" ? "the fine-tuned judge" : "it"} was not ` +
        `trained on (left out ${u.seenSamples}, of ` +
        `${u.seenPairs} of ${u.ofPairs} pairs): ${u.n > 0 ? rates(u.confusion) : "none left"}`
      : "")
  );
}

/**
 * §7's comparison on held-out labelled pairs: the base judge (when its checkpoint is known) and the fine-tuned
 * judge; where the judge's record lists its training code, both also on the held-out samples whose code it was
 * not trained on (held-out code it has seen flatters it). Cached in `cacheFile` under the held-out pairs' hash,
 * the convention and that training code.
 */
export async function measureJudgeReliability(opts: {
  judgeDir: string;
  baseDir?: string;
  heldOut: readonly SecurityPair[];
  convention: JudgeConvention;
  /** Qwen3's thinking switch for the base judge's prompts, as the fine-tuned judge's were trained (default off) */
  enableThinking?: boolean;
  /** the experiment model this judge judges (self-judging) */
  model?: string;
  cacheFile?: string;
  batchSize?: number;
  log?: Logger;
  /** stops between batches (InterruptedError); the samples scored so far are kept for the rerun */
  signal?: AbortSignal;
}): Promise<JudgeReliabilityEntry[]> {
  const log = opts.log ?? silentLogger;
  const thinking = opts.enableThinking ?? DEFAULT_ENABLE_THINKING;
  // the samples scored: those whose code the pairs do not label both ways
  const { kept, conflicting } = reliabilitySamples(opts.heldOut);
  const training = judgeTrainingCode(opts.judgeDir);
  const key = JSON.stringify([
    pairsHash(opts.heldOut),
    opts.convention,
    opts.baseDir ?? null,
    // the judges' own files (size, mtime, inode...: io/hash modelFolderIdentity, as their per-batch scores are
    // keyed): a judge trained again in place, or another copied there, is measured anew, not its old reliability
    {
      judge: modelFolderIdentity(opts.judgeDir),
      base: opts.baseDir ? modelFolderIdentity(opts.baseDir) : null,
    },
    // left out at the default: reliabilities measured before it was a setting are found again
    ...(thinking !== DEFAULT_ENABLE_THINKING ? [{ enableThinking: thinking }] : []),
    // code labelled both ways is left out since it was counted (one of its samples always wrong): measured anew
    ...(conflicting > 0 ? [{ labelConflicts: "left out" }] : []),
    // the split by the judge's training code since it was measured: reliabilities cached before are measured anew
    ...(training
      ? [
          {
            unseenBy: createHash("sha256")
              .update([...training].sort().join("\n"))
              .digest("hex")
              .slice(0, 16),
          },
        ]
      : []),
  ]);
  if (opts.cacheFile && fs.existsSync(opts.cacheFile)) {
    try {
      const c = JSON.parse(fs.readFileSync(opts.cacheFile, "utf8")) as {
        key: string;
        entries: JudgeReliabilityEntry[];
      };
      if (c.key === key) return c.entries;
    } catch {
      // damaged cache: measure again
    }
  }
  // each batch's scores as scored, next to cacheFile: a run stopped or killed mid-way (a 7B judge takes minutes
  // over hundreds of samples) scores only the rest when run again; superseded once cacheFile is written
  const scoresFile = opts.cacheFile
    ? path.join(path.dirname(opts.cacheFile), `${path.basename(opts.cacheFile, ".json")}-scores.jsonl`)
    : undefined;
  const entries: JudgeReliabilityEntry[] = [];
  const score = async (role: JudgeReliabilityEntry["role"], dir: string) => {
    log.info(
      `judge reliability: the ${role} judge (${dir}) on ${opts.heldOut.length} held-out pairs` +
        (conflicting > 0
          ? `; left out ${conflicting} of ${2 * opts.heldOut.length} samples: their code is labelled both ` +
            `secure and insecure by the pairs`
          : ""),
    );
    const judge = await LlmJudge.load(dir, { convention: opts.convention, enableThinking: thinking });
    const { p, taken } = await resumableJudgeScores(judge, kept, {
      scoresFile,
      batchSize: opts.batchSize,
      signal: opts.signal,
      onProgress: (done, total) => log.progress(`judge reliability (${role})`, done, total),
    });
    if (taken > 0)
      log.info(
        `judge reliability: the ${role} judge: ${taken} of ${kept.length} samples' scores taken from an earlier ` +
          `run (${scoresFile})`,
      );
    const rel: JudgeReliability = { ...reliabilityOfScores(kept, p), conflicting };
    const overlap = training && trainingOverlap(rel, kept, training);
    const e = reliabilityEntry(role, dir, rel, opts.model, overlap);
    log.info(`judge reliability: the ${role} judge: ${reliabilitySummary(e)}`);
    entries.push(e);
  };
  if (opts.baseDir) await score("base", opts.baseDir);
  await score(
    fs.existsSync(path.join(opts.judgeDir, JUDGE_RECORD_FILE)) ? "fine-tuned" : "given",
    opts.judgeDir,
  );
  if (opts.cacheFile) {
    writeFileAtomic(opts.cacheFile, JSON.stringify({ key, entries }, null, 2));
    fs.rmSync(scoresFile!, { force: true });
  }
  return entries;
}

/**
 * A judge's P(unsafe) of `samples`, resumable: with `scoresFile`, each batch's scores are appended to it as scored
 * (fsync'd) and a rerun takes them back (LlmJudge.scoreResumable, keyed by the judge's identity and the prompts);
 * `signal` stops it between batches (InterruptedError). `taken`: how many samples' scores came from the file.
 */
export async function resumableJudgeScores(
  judge: LlmJudge,
  samples: readonly LabelledSample[],
  opts: {
    scoresFile?: string;
    batchSize?: number;
    signal?: AbortSignal;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<{ p: number[]; taken: number }> {
  const cache = opts.scoresFile ? new ScoreCache(opts.scoresFile) : undefined;
  let taken = 0;
  try {
    const p = await judge.scoreResumable(samples, {
      batchSize: opts.batchSize,
      cache,
      signal: opts.signal,
      onBatch: (scored, t, total) => {
        taken = t;
        opts.onProgress?.(scored + t, total);
      },
    });
    return { p, taken };
  } finally {
    cache?.close();
  }
}

/**
 * Held-out pairs whose secure or insecure code is also a training pair's code, compared after whitespace and case
 * normalisation (data/pairs.ts pairOverlap): the judge sees only the code, and a copy that differs only in
 * indentation or line endings is the same sample to it.
 */
export function overlapWithTraining(
  heldOut: readonly SecurityPair[],
  training: readonly SecurityPair[],
): number {
  return pairOverlap(heldOut, training).code;
}

/** A folder as results name it: relative to the output folder when inside it (results stay valid when moved). */
export function shownPath(p: string, outDir: string): string {
  const rel = path.relative(path.resolve(outDir), path.resolve(p));
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : p;
}

/** The results' judge section. */
export function judgeInfo(opts: {
  mode: JudgeInfo["mode"];
  description: string;
  convention: JudgeConvention;
  heldOut: string;
  reliability: JudgeReliabilityEntry[];
  /** folders inside it are named relative to it */
  outDir?: string;
}): JudgeInfo {
  return {
    mode: opts.mode,
    description: opts.description,
    convention: { instruction: opts.convention.instruction, labels: { ...opts.convention.labels } },
    heldOut: opts.heldOut,
    reliability: opts.outDir
      ? opts.reliability.map((r) => ({ ...r, source: shownPath(r.source, opts.outDir!) }))
      : opts.reliability,
  };
}
