/**
 * transformers' logits-processor chain on one row of scores, in plain JavaScript (no libtorch): the description both
 * engines follow. models/generate.ts applies it to a batch on tensors (the built-in engine); the llama.cpp backend
 * (eval/generate/llamacpp.ts) applies these functions to the logits llama.cpp returns, so that a llama.cpp-only run
 * loads no libtorch.
 *
 * The order is generation/utils.py `_get_logits_processor`'s: the processors first, whatever do_sample says
 * (RepetitionPenaltyLogitsProcessor), then only when sampling the warpers TemperatureLogitsWarper,
 * TopKLogitsWarper, TopPLogitsWarper, and a draw from the softmax of what is left; greedy is the argmax of the
 * processed scores (torch.argmax: the first index on ties).
 */

/** The steps, in transformers' order; the last three only when sampling. */
export const PROCESSOR_ORDER = ["repetition_penalty", "temperature", "top_k", "top_p"] as const;

/**
 * RepetitionPenaltyLogitsProcessor on one row, in place (generation/logits_process.py `__call__`: `score =
 * torch.gather(scores, 1, input_ids); score = torch.where(score < 0, score * self.penalty, score / self.penalty)`):
 * each token seen has its score multiplied by `penalty` when negative, divided when not, once however often it was
 * seen. A Set is walked as it is (a decoding loop keeps one and passes it every token, without a copy); any other
 * iterable is made distinct first.
 */
export function penaliseRow(
  row: Float64Array,
  seen: ReadonlySet<number> | Iterable<number>,
  penalty: number,
): void {
  const distinct: Iterable<number> = seen instanceof Set ? seen : new Set(seen);
  for (const t of distinct) {
    const v = row[t]!;
    row[t] = v < 0 ? v * penalty : v / penalty;
  }
}

/** The first index of the largest value (torch.argmax's choice on ties). */
export function argmaxRow(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * vLLM's _SAMPLING_EPS (sampling_params.py): a temperature below it is greedy. Dividing float32 logits by 1e-40
 * overflows them to infinities, whose softmax is NaN (transformers fails there); below 1e-5 a draw can differ from
 * the argmax only among logits within about 1e-4 of the largest (a weight of e^-10 at 1e-4).
 */
export const SAMPLING_EPS = 1e-5;

/** The temperature a generation runs at: 0 (greedy) for none or one below SAMPLING_EPS. */
export function samplingTemperature(t: number | undefined): number {
  return t !== undefined && t >= SAMPLING_EPS ? t : 0;
}

/**
 * One token drawn from `logits` as transformers samples it: TemperatureLogitsWarper (logits / t), then
 * TopKLogitsWarper (`topK` > 0: the tokens below the k-th largest removed, ties kept), then TopPLogitsWarper
 * (sorted ascending, the tokens whose cumulative probability is <= 1 - topP are removed, the most likely always
 * kept), then a draw from the softmax of what is left with `u` uniform in [0, 1).
 */
export function sampleToken(
  logits: ArrayLike<number>,
  temperature: number,
  topP: number,
  u: number,
  topK = 0,
): number {
  const n = logits.length;
  const scaled = Float64Array.from(logits, (v) => v / temperature);
  if (topK > 0 && topK < n) {
    const kth = Float64Array.from(scaled).sort()[n - topK]!;
    for (let i = 0; i < n; i++) if (scaled[i]! < kth) scaled[i] = -Infinity;
  }
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (scaled[i]! > max) max = scaled[i]!;
  const w = scaled.map((v) => Math.exp(v - max));
  if (topP < 1) {
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scaled[a]! - scaled[b]! || a - b);
    const total = w.reduce((a, b) => a + b, 0);
    let cum = 0;
    for (let k = 0; k < n - 1; k++) {
      const i = order[k]!;
      cum += w[i]! / total;
      if (cum > 1 - topP) break;
      w[i] = 0;
    }
  }
  const total = w.reduce((a, b) => a + b, 0);
  let r = u * total;
  let last = 0;
  for (let i = 0; i < n; i++) {
    if (w[i]! === 0) continue;
    last = i;
    r -= w[i]!;
    if (r < 0) return i;
  }
  return last;
}
