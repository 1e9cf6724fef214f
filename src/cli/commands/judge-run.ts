/**
 * What `goodvibe judge code`, `judge train` and `judge check` do: loaded by judge.ts (which registers the commands) only when one runs.
 */
import type { OptionValues } from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError, InterruptedError } from "../../errors.js";
import { sha256 } from "../../io/hash.js";
import { readLabelledSamples, readPairs, splitPairs } from "../../data/pairs.js";
import { safetyLanguage } from "../../data/languages.js";
import { DEFAULT_MAX_JUDGED_CHARS, judgeCode } from "../../eval/judge/rules/index.js";
import {
  JUDGE_RECORD_FILE,
  LlmJudge,
  conflictingNote,
  judgeTrainingCode,
  reliabilityOfScores,
  reliabilitySamples,
  trainingOverlap,
  type JudgeReliability,
  type JudgeVerdict,
  type TrainingOverlap,
} from "../../eval/judge/llm.js";
import { confusionIntervals, percentWithInterval, type CountedInterval } from "../../eval/metrics.js";
import { judgeTrainOptions, trainJudge } from "../../recipes/train-judge.js";
import { otherBuildWarning, trainProgressHooks } from "../../method/train.js";
import { judgeTrainingPairs, resumableJudgeScores } from "../../recipes/judge.js";
import { resolveJudgeTrainConfig } from "../../config/judge.js";
import { checkOutput, claimWorkFolder } from "../../io/atomic.js";
import { evalCacheFile, isEvalCacheEntry } from "../../recipes/evaluate.js";
import { isClaimEntry } from "../../io/claim.js";
import { number } from "../options.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";

export async function judgeCodeCommand(g: OptionValues, file: string, opts: OptionValues): Promise<void> {
  await runCommand(g, async () => {
    // the file's extension names its language as a Markdown fence tag would (.cc, .hpp and .h are C++)
    const ext = path.extname(file).slice(1);
    const lang = safetyLanguage(opts.lang ?? ext);
    if (!lang)
      throw new InputError(
        opts.lang !== undefined
          ? `--lang ${opts.lang}: the rule judge covers cpp, java, swift and go`
          : `${file}: its extension ${ext ? `.${ext}` : "(none)"} names no language the rule judge covers; give --lang cpp, java, swift or go`,
      );
    let code: string;
    try {
      code = fs.readFileSync(file, "utf8");
    } catch (e) {
      throw new InputError(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
    }
    const rules = judgeCode(code, lang);
    let llm: (JudgeVerdict & { tokenLimit: number }) | null = null;
    if (opts.judge) {
      const judge = await LlmJudge.load(opts.judge);
      llm = { ...judge.judge([{ code, lang }])[0]!, tokenLimit: judge.tokenLimit };
    }
    const lines = [`rules: ${rules.secure ? "secure" : "INSECURE"}`];
    if (rules.truncated)
      lines.push(
        `  (judged the first ${rules.truncated.judgedChars} of ${rules.truncated.totalChars} characters: the rules read at most ${DEFAULT_MAX_JUDGED_CHARS})`,
      );
    for (const f of rules.findings) lines.push(`  ${file}:${f.line} ${f.cwe} [${f.severity}] ${f.message}`);
    if (llm) {
      lines.push(`LLM judge: ${llm.secure ? "secure" : "INSECURE"} (P(unsafe) = ${llm.pUnsafe.toFixed(3)})`);
      if (llm.judgedChars !== undefined)
        lines.push(
          `  (judged the first ${llm.judgedChars} of ${code.length} characters: the judge's prompt holds at most ${llm.tokenLimit} tokens)`,
        );
    }
    output(g, lines.join("\n"), { rules, llm });
  });
}

export async function judgeTrainCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    const settings = resolveJudgeTrainConfig(
      opts.config,
      { method: opts.method, epochs: opts.epochs, lr: opts.lr, seed: opts.seed },
      opts.set,
    );
    const inputs = { "--model": opts.model, "--data": opts.data };
    checkOutput({ flag: "--out", path: opts.out, kind: "folder", inputs, overwrite: opts.overwrite });
    // resumable training state beside the output, as harden keeps its run folder
    const runDir = path.join(path.dirname(path.resolve(opts.out)), `.${path.basename(opts.out)}.run`);
    checkOutput({
      flag: "run folder",
      path: runDir,
      kind: "folder",
      inputs,
      // a claim left by a run that was killed is its own too (taken over by trainJudge)
      ownEntry: (n) => n === "checkpoint" || isClaimEntry(n),
    });
    const pairs = readPairs(opts.data, { languages: opts.languages });
    const { train, dev } = splitPairs(pairs, { devFraction: opts.devFraction, seed: settings.seed });
    // the reliability report needs held-out pairs: refused now, not after the judge is trained and written
    if (dev.length === 0)
      throw new InputError(
        `--dev-fraction ${opts.devFraction} holds out no pair of ${opts.data} (${pairs.length} pairs; the share is ` +
          `rounded per language, and each language keeps one pair to train on): raise --dev-fraction or give more pairs`,
      );
    await trainJudge({
      baseModelDir: opts.model,
      pairs: judgeTrainingPairs({ pairs: () => train, settings }),
      outDir: opts.out,
      runDir,
      overwrite: opts.overwrite,
      ...judgeTrainOptions(settings),
      hooks: {
        signal: interruptSignal(log),
        onOtherBuild: (info) => log.warn(otherBuildWarning(info)),
        onNote: (m) => log.info(`judge ${m}`),
        ...trainProgressHooks(log, "judge", (l) => `loss ${l.loss.toFixed(4)}`),
      },
    });
    const j = await LlmJudge.load(opts.out);
    // the held-out reliability stops on Ctrl-C too (between batches); the judge is written by then
    const { kept, conflicting } = reliabilitySamples(dev);
    let scores: number[];
    try {
      ({ p: scores } = await resumableJudgeScores(j, kept, {
        signal: interruptSignal(log),
        onProgress: (done, total) => log.progress("judge reliability", done, total),
      }));
    } catch (e) {
      if (!(e instanceof InterruptedError)) throw e;
      throw new InterruptedError(
        `judge → ${path.resolve(opts.out)} is written; its held-out reliability was stopped before it was ` +
          `measured (a rerun refuses the written judge): measure it with goodvibe judge check --judge ${opts.out} ` +
          `-d <held-out pairs>`,
        { cause: e },
      );
    }
    const rel = { ...reliabilityOfScores(kept, scores), conflicting };
    log.done();
    output(g, `judge → ${path.resolve(opts.out)}\nheld-out reliability: ${reliabilityText(rel)}`, rel);
  });
}

export async function judgeCheckCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    // the cache folder is an output: never an input or inside one, never a file, a folder of others' files
    // refused (it failed with a stack trace once scoring had begun, or wrote into the judge folder)
    claimWorkFolder({
      flag: "--cache",
      path: opts.cache,
      kind: "folder",
      inputs: { "--judge": opts.judge, "--data": opts.data },
      ownEntry: isEvalCacheEntry,
    });
    const samples = readLabelledSamples(opts.data);
    if (samples.length === 0) throw new InputError(`${opts.data}: no samples to evaluate the judge on`);
    const judge = await LlmJudge.load(opts.judge);
    // the scores batch by batch in the cache folder (a 7B judge takes minutes over hundreds of samples): a check
    // stopped or killed scores only the rest when run again. Named by the judge folder and the data file; the
    // records inside are keyed by the judge's files and the prompts, so a judge retrained there reuses none.
    const scoresFile = evalCacheFile(
      opts.cache,
      "judge-check",
      sha256(JSON.stringify([path.resolve(opts.judge), path.resolve(opts.data)])),
    );
    const madeCache = !fs.existsSync(opts.cache);
    const { p, taken } = await resumableJudgeScores(judge, samples, {
      scoresFile,
      signal: interruptSignal(log),
      onProgress: (done, total) => log.progress("judge check", done, total),
    });
    log.done();
    if (taken > 0)
      log.info(
        `judge check: ${taken} of ${samples.length} samples' scores taken from an earlier run (${scoresFile})`,
      );
    const rel = reliabilityOfScores(samples, p);
    // held-out code the judge was trained on flatters it: counted, and the reliability on the rest beside
    const training = judgeTrainingCode(opts.judge);
    const overlap = training && trainingOverlap(rel, samples, training);
    const text =
      reliabilityText(rel) +
      (overlap
        ? `\n${trainingOverlapText(overlap, rel.n)}`
        : fs.existsSync(path.join(opts.judge, JUDGE_RECORD_FILE))
          ? `\nthe judge's record lists no training code (trained before 2026-12-02): whether this data overlaps its training data is unknown`
          : "");
    output(g, text, overlap ? { ...rel, trainingOverlap: overlap } : rel);
    fs.rmSync(scoresFile, { force: true });
    // a cache folder this check made only for its scores leaves nothing behind (an emptied one the user had stays)
    if (madeCache && fs.existsSync(opts.cache) && fs.readdirSync(opts.cache).length === 0)
      fs.rmdirSync(opts.cache);
  });
}

/** What `judge check` says of held-out code the judge was trained on, and its reliability on the rest. */
export function trainingOverlapText(o: TrainingOverlap, n: number): string {
  const pairs = o.pairs !== undefined ? ` (${o.pairs} of ${o.ofPairs} pairs)` : "";
  const head =
    `held-out vs the judge's training data: ${o.samples} of ${n} samples${pairs} have code the judge was ` +
    "trained on (whitespace and case aside)";
  if (o.samples === 0) return `${head}; the reliability above is on unseen code only`;
  return o.unseen
    ? `${head}; on the other ${o.unseen.n}: ${reliabilityText(o.unseen)}`
    : `${head}: no held-out sample is unseen, so this data cannot show how the judge does on new code`;
}

/**
 * A judge's reliability as a reviewer reads it: each rate with its n (accuracy over every sample, TPR over the
 * insecure ones, FPR over the secure ones) and its 95% Wilson interval, as the report's judge table gives them; a
 * rate over a handful of samples is otherwise read as exact.
 */
export function reliabilityText(
  rel: Pick<JudgeReliability, "n" | "confusion"> & { conflicting?: number },
): string {
  const { tp, fp, tn, fn } = rel.confusion;
  const ci = confusionIntervals(rel.confusion);
  const rate = (r: CountedInterval | null) => (r ? percentWithInterval(r) : "— (none)");
  return (
    `accuracy ${rate(ci.accuracy)} of ${rel.n} samples, TPR ${rate(ci.tpr)} of ${tp + fn} insecure, ` +
    `FPR ${rate(ci.fpr)} of ${fp + tn} secure (positive = insecure; brackets: 95% Wilson intervals)` +
    conflictingNote(rel.conflicting)
  );
}
