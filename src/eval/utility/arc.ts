/**
 * ARC (Challenge or Easy), scored as lm-evaluation-harness's `arc_challenge` / `arc_easy` tasks:
 * context "Question: {question}\nAnswer:", one continuation " {choice}" per choice (target_delimiter " "),
 * acc = argmax of the summed log-likelihoods, acc_norm = argmax of log-likelihood / length(choice).
 *
 * Length for acc_norm: the harness computes `len(choice)` on the Python str, i.e. Unicode code points of
 * the choice without its leading space (its docs call this "byte-length" normalisation; the two agree on
 * ASCII). `normLength: "bytes"` switches to UTF-8 bytes for those who want the documented variant.
 */
import type { ArcItem } from "./datasets.js";
import {
  requestProgress,
  summarise,
  type LoglikelihoodRequest,
  type TaskResult,
  type UtilityModel,
} from "./model.js";

export interface ArcOptions {
  task?: string;
  normLength?: "chars" | "bytes";
  /** Items per loglikelihood call (each item is one request per choice). */
  batchSize?: number;
  /** Progress in requests (one per choice): told before the first and after each (ProgressMeter's clock). */
  onProgress?: (done: number, total: number) => void;
}

export interface ArcItemResult {
  id: string;
  gold: number;
  pred: number;
  predNorm: number;
  logprobs: number[];
  acc: number;
  acc_norm: number;
}

export function arcContext(question: string): string {
  return `Question: ${question}\nAnswer:`;
}

export function arcRequests(item: ArcItem): LoglikelihoodRequest[] {
  const context = arcContext(item.question);
  return item.choices.text.map((choice) => ({ context, continuation: ` ${choice}`, item: `ARC ${item.id}` }));
}

/** Index of the largest value; ties go to the first, as numpy.argmax. */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

export function choiceLength(choice: string, mode: "chars" | "bytes"): number {
  return mode === "bytes" ? Buffer.byteLength(choice, "utf8") : [...choice].length;
}

export async function evaluateArc(
  model: UtilityModel,
  items: readonly ArcItem[],
  opts: ArcOptions = {},
): Promise<TaskResult<ArcItemResult>> {
  const normLength = opts.normLength ?? "chars";
  const batchSize = opts.batchSize ?? 64;
  const perItem: ArcItemResult[] = [];
  const progress = requestProgress(
    items.reduce((n, it) => n + it.choices.text.length, 0),
    opts.onProgress,
  );
  for (let start = 0; start < items.length; start += batchSize) {
    const batch = items.slice(start, start + batchSize);
    const reqs = batch.flatMap(arcRequests);
    const results = await model.loglikelihood(reqs, progress.callOpts);
    progress.called(reqs.length);
    if (results.length !== reqs.length)
      throw new Error(`model returned ${results.length} log-likelihoods for ${reqs.length} requests`);
    let k = 0;
    for (const item of batch) {
      const lls = item.choices.text.map(() => results[k++]!.logprob);
      const normed = lls.map((ll, i) => ll / choiceLength(item.choices.text[i]!, normLength));
      const pred = argmax(lls);
      const predNorm = argmax(normed);
      perItem.push({
        id: item.id,
        gold: item.gold,
        pred,
        predNorm,
        logprobs: lls,
        acc: pred === item.gold ? 1 : 0,
        acc_norm: predNorm === item.gold ? 1 : 0,
      });
    }
  }
  const { metrics, stderr } = summarise({
    acc: perItem.map((r) => r.acc),
    acc_norm: perItem.map((r) => r.acc_norm),
  });
  return { task: opts.task ?? "arc_challenge", metrics, n: perItem.length, stderr, perItem };
}
