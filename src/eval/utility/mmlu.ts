/**
 * MMLU as lm-evaluation-harness's default `mmlu_{subject}` tasks: description
 * "The following are multiple choice questions (with answers) about {subject with spaces}.\n\n",
 * the first 5 dev examples of the same subject (first_n sampler) as
 * "{question.strip()}\nA. …\nB. …\nC. …\nD. …\nAnswer: {letter}" joined by "\n\n", then the test question
 * ending in "Answer:", scored by log-likelihood of " A".." D". The overall accuracy is the mean over all
 * items (the harness's mmlu group weights subjects by size).
 */
import { InputError } from "../../errors.js";
import type { MmluItem } from "./datasets.js";
import { argmax } from "./arc.js";
import {
  requestProgress,
  summarise,
  type LoglikelihoodRequest,
  type TaskResult,
  type UtilityModel,
} from "./model.js";

export const MMLU_LETTERS = ["A", "B", "C", "D"] as const;

export function mmluDescription(subject: string): string {
  return `The following are multiple choice questions (with answers) about ${subject.replace(/_/g, " ")}.\n\n`;
}

export function mmluDocText(item: MmluItem): string {
  const lines = [item.question.trim(), ...item.choices.map((c, i) => `${MMLU_LETTERS[i]}. ${c}`), "Answer:"];
  return lines.join("\n");
}

export function mmluPrompt(item: MmluItem, shots: readonly MmluItem[]): string {
  const blocks = shots.map((s) => `${mmluDocText(s)} ${MMLU_LETTERS[s.answer]}`);
  blocks.push(mmluDocText(item));
  return mmluDescription(item.subject) + blocks.join("\n\n");
}

export interface MmluItemResult {
  subject: string;
  gold: number;
  pred: number;
  logprobs: number[];
  acc: number;
}

export interface MmluOptions {
  /** The dev split (few-shot pool); required when nShot > 0. */
  dev?: readonly MmluItem[];
  nShot?: number;
  batchSize?: number;
  /** Progress in requests (four an item): told before the first and after each (ProgressMeter's clock). */
  onProgress?: (done: number, total: number) => void;
}

export async function evaluateMmlu(
  model: UtilityModel,
  items: readonly MmluItem[],
  opts: MmluOptions = {},
): Promise<TaskResult<MmluItemResult>> {
  const nShot = opts.nShot ?? 5;
  const devBySubject = new Map<string, MmluItem[]>();
  for (const d of opts.dev ?? []) {
    const list = devBySubject.get(d.subject) ?? [];
    list.push(d);
    devBySubject.set(d.subject, list);
  }
  const shotsFor = (subject: string): MmluItem[] => {
    if (nShot === 0) return [];
    const pool = devBySubject.get(subject) ?? [];
    if (pool.length < nShot) {
      throw new InputError(
        `MMLU dev split: subject "${subject}" has ${pool.length} examples, ${nShot}-shot needs ${nShot}`,
      );
    }
    return pool.slice(0, nShot);
  };

  const batchSize = opts.batchSize ?? 64;
  const perItem: MmluItemResult[] = [];
  const progress = requestProgress(items.length * MMLU_LETTERS.length, opts.onProgress);
  for (let start = 0; start < items.length; start += batchSize) {
    const batch = items.slice(start, start + batchSize);
    const reqs: LoglikelihoodRequest[] = batch.flatMap((it, b) => {
      const context = mmluPrompt(it, shotsFor(it.subject));
      const item = `MMLU ${it.subject} #${start + b}`;
      return MMLU_LETTERS.map((l) => ({ context, continuation: ` ${l}`, item }));
    });
    const results = await model.loglikelihood(reqs, progress.callOpts);
    progress.called(reqs.length);
    if (results.length !== reqs.length)
      throw new Error(`model returned ${results.length} log-likelihoods for ${reqs.length} requests`);
    batch.forEach((it, b) => {
      const lls = [0, 1, 2, 3].map((i) => results[b * 4 + i]!.logprob);
      const pred = argmax(lls);
      perItem.push({
        subject: it.subject,
        gold: it.answer,
        pred,
        logprobs: lls,
        acc: pred === it.answer ? 1 : 0,
      });
    });
  }

  const groups: NonNullable<TaskResult["groups"]> = {};
  const subjects = [...new Set(perItem.map((r) => r.subject))].sort();
  for (const s of subjects) {
    const scores = perItem.filter((r) => r.subject === s).map((r) => r.acc);
    groups[s] = { ...summarise({ acc: scores }), n: scores.length };
  }
  const { metrics, stderr } = summarise({ acc: perItem.map((r) => r.acc) });
  return { task: `mmlu_${nShot}shot`, metrics, n: perItem.length, stderr, perItem, groups };
}
