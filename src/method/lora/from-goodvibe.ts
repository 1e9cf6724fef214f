/**
 * A GoodVibe update as a LoRA adapter. GoodVibe changes the selected rows S of a linear layer, row i by the
 * shared row U[c(i)] of its cluster: ΔW = B·U, where B ∈ {0,1}^{out × C} is the one-hot assignment of each
 * selected row to its cluster (B[i, c(i)] = 1, every other entry 0). That is exactly a rank-C LoRA with
 * lora_A = U and lora_B = B at scaling 1, so the hardened behaviour can be served as a hot-swappable adapter
 * beside the untouched base (PEFT / vLLM, or llama.cpp after export-gguf's LoRA export).
 *
 * Each module keeps its own rank C (its number of clusters) through rank_pattern, and alpha_pattern = C makes
 * every scaling alpha/r = 1 (plain LoRA scaling, not rsLoRA).
 */
import { Tensor } from "../../tensor/index.js";
import type { RowSelection } from "../goodvibe/adapter.js";
import type { LoraConfig } from "./config.js";

export interface LoraWeightsOf {
  cfg: LoraConfig;
  /** "<module>.lora_A" ([C, in] = U) and "<module>.lora_B" ([out, C], one-hot rows). */
  weights: Map<string, Tensor>;
}

/**
 * The LoRA form of a GoodVibe delta: `selections` and `U` as the delta file holds them (U keyed
 * "<module>.U"), `outFeatures(module)` the layer's output size (rows of its weight).
 */
export function goodVibeAsLora(
  selections: Map<string, RowSelection>,
  U: Map<string, Tensor>,
  outFeatures: (module: string) => number,
): LoraWeightsOf {
  const weights = new Map<string, Tensor>();
  const rankPattern: Record<string, number> = {};
  const modules = [...selections.keys()].sort();
  for (const mod of modules) {
    const sel = selections.get(mod)!;
    const u = U.get(`${mod}.U`);
    if (!u) throw new Error(`GoodVibe delta: no U for ${mod}`);
    const C = sel.nClusters;
    if (u.rank !== 2 || u.size(0) !== C)
      throw new Error(
        `GoodVibe delta: ${mod}.U has shape [${u.shape}], expected ${C} rows (one per cluster)`,
      );
    const out = outFeatures(mod);
    const b = new Float32Array(out * C);
    sel.rows.forEach((row, i) => {
      if (!Number.isInteger(row) || row < 0 || row >= out)
        throw new Error(`GoodVibe delta: ${mod} row ${row} is outside the layer's ${out} rows`);
      b[row * C + sel.clusters[i]!] = 1;
    });
    weights.set(`${mod}.lora_A`, u.float());
    weights.set(`${mod}.lora_B`, Tensor.fromArray(b, [out, C]));
    rankPattern[mod] = C;
  }
  if (modules.length === 0) throw new Error("GoodVibe delta: no modules");
  // PEFT takes every module's rank and alpha from the patterns (each module is listed by its full name), so r
  // and lora_alpha matter only to servers that ignore them. vLLM does (vllm/lora/peft_helper.py PEFTHelper: one
  // scaling lora_alpha / r for all modules; validate_legal checks only r against --max-lora-rank): lora_alpha = r
  // keeps its scaling 1, and r = the largest rank makes its check refuse, by name, an adapter whose largest rank
  // exceeds --max-lora-rank (default 16), which otherwise failed later copying that module's tensors.
  const r = Math.max(...Object.values(rankPattern));
  return {
    cfg: {
      r,
      alpha: r,
      dropout: 0,
      targetModules: modules,
      useRslora: false,
      rankPattern,
      alphaPattern: { ...rankPattern },
    },
    weights,
  };
}
