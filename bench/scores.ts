/**
 * The per-neuron importances of one identification pass as bench/forward-backward.ts and bench/torch_reference.py
 * fwdbwd write them (--scores), and their comparison, module by module (bench/compare-scores.ts, and
 * test/method/identify-torch-reference.test.ts): the relative L2 difference of the two score vectors (‖a − b‖ / ‖b‖),
 * the largest difference of one neuron relative to the module's mean score, the cosine, and the share of the top-k
 * rows (k = identify()'s default topK) that both select.
 */
import { DEFAULT_IDENTIFY } from "../src/method/goodvibe/config.js";
import { topKIndices } from "../src/method/goodvibe/identify.js";

export interface ScoresFile {
  side: string;
  dtype: string;
  tokens: number;
  passes: number;
  loss: number;
  /** module name (Hugging Face's) → mean |∂L/∂y| over the tokens, per output row */
  modules: Record<string, number[]>;
}

export interface ScoreRow {
  name: string;
  relL2: number;
  maxRel: number;
  cosine: number;
  topK: number;
}

/** a compared with b (the reference), module by module; `missing`: modules on one side only or of other sizes. */
export function compareScores(
  a: Record<string, number[]>,
  b: Record<string, number[]>,
  k = DEFAULT_IDENTIFY.topK,
): { rows: ScoreRow[]; missing: string[] } {
  const rows: ScoreRow[] = [];
  const missing = Object.keys(b).filter((n) => !(n in a));
  for (const [name, x] of Object.entries(a)) {
    const y = b[name];
    if (!y || y.length !== x.length) {
      missing.push(name);
      continue;
    }
    let d2 = 0;
    let x2 = 0;
    let y2 = 0;
    let xy = 0;
    let maxAbs = 0;
    let sum = 0;
    for (let j = 0; j < x.length; j++) {
      const d = x[j]! - y[j]!;
      d2 += d * d;
      x2 += x[j]! * x[j]!;
      y2 += y[j]! * y[j]!;
      xy += x[j]! * y[j]!;
      maxAbs = Math.max(maxAbs, Math.abs(d));
      sum += y[j]!;
    }
    const kk = Math.min(k, x.length);
    const top = new Set(topKIndices(y, kk));
    rows.push({
      name,
      relL2: Math.sqrt(d2 / y2),
      maxRel: maxAbs / (sum / y.length),
      cosine: xy / Math.sqrt(x2 * y2),
      topK: topKIndices(x, kk).filter((i) => top.has(i)).length / kk,
    });
  }
  return { rows, missing };
}
