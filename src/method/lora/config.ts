/**
 * LoRA's configuration, with PEFT's meaning for every field (peft/tuners/lora/config.py): which linear layers
 * get an adapter (target_modules, layers_to_transform, exclude_modules), and each one's rank and scaling
 * (r, lora_alpha, use_rslora, rank_pattern, alpha_pattern). The matching rules are PEFT's own
 * (check_target_module_exists, get_pattern_key), so an adapter means here what it means in PEFT and vLLM.
 */
import { z } from "zod";

export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  /**
   * PEFT's target_modules: a list of module-name suffixes (q_proj, ...) or full names, or one regular
   * expression that must match the whole module name, or "all-linear".
   */
  targetModules: string[] | string;
  /** rsLoRA: scaling alpha/√r instead of alpha/r. */
  useRslora?: boolean;
  /** Per-module rank: the first key that matches the module name by PEFT's rule wins (see patternKey). */
  rankPattern?: Record<string, number>;
  /** Per-module alpha, matched like rankPattern. */
  alphaPattern?: Record<string, number>;
  /** Only modules in these decoder layers (PEFT's layers_to_transform; list targets only). */
  layersToTransform?: number[] | null;
  /** Modules left out even when targeted (a list of suffixes/full names, or a regex). */
  excludeModules?: string[] | string | null;
  /**
   * The name PEFT matched the patterns above against, given this project's module name, when the two differ:
   * an adapter trained on a multimodal Gemma3 names its text modules by their path there
   * (model.language_model.layers.N.…), and its regex target_modules, full names and pattern keys were written
   * for that path. Not a PEFT field: set when such an adapter is read (readPeftAdapter), never written.
   */
  matchAs?: (module: string) => string;
}

export const DEFAULT_LORA = {
  r: 8,
  alpha: 16,
  dropout: 0.05,
  targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
} satisfies LoraConfig;

const loraBounded = (max: number) => z.number().int().positive().max(max, `must be at most ${max}`);

/** The `lora` section of a config file (PEFT's fields that a run sets; the others keep PEFT's defaults). */
export const loraSchema = z
  .object({
    r: loraBounded(4096).default(DEFAULT_LORA.r),
    alpha: z.number().positive().default(DEFAULT_LORA.alpha),
    dropout: z.number().min(0).max(1).default(DEFAULT_LORA.dropout),
    targetModules: z.array(z.string()).min(1).default(DEFAULT_LORA.targetModules),
  })
  .strict();

/** Python's re.fullmatch for a pattern PEFT users write (the common syntax is the same in JS). */
function fullmatch(pattern: string, s: string): boolean {
  return new RegExp(`^(?:${pattern})$`, "u").test(s);
}

/**
 * PEFT's get_pattern_key: the first key of `keys` such that re.match(rf"(.*\.)?({key})$", name), i.e. the
 * key matches a dot-separated suffix of the module name (as a regex), or null.
 */
export function patternKey(keys: Iterable<string>, name: string): string | null {
  for (const key of keys) if (new RegExp(`^(?:.*\\.)?(?:${key})$`, "u").test(name)) return key;
  return null;
}

/**
 * Whether `name` (e.g. "model.layers.3.self_attn.q_proj") gets an adapter: PEFT's check_target_module_exists.
 * A regex must match the whole name; a list entry the whole name or a dot-separated suffix, and then
 * layers_to_transform keeps only the listed layer indices.
 */
export function loraTargets(cfg: LoraConfig, module: string): boolean {
  const name = cfg.matchAs ? cfg.matchAs(module) : module;
  const ex = cfg.excludeModules;
  if (ex && ex.length > 0) {
    if (typeof ex === "string" ? fullmatch(ex, name) : ex.some((e) => name === e || name.endsWith(`.${e}`)))
      return false;
  }
  const t = cfg.targetModules;
  if (typeof t === "string") return t === "all-linear" || fullmatch(t, name);
  if (t.includes(name)) return true;
  if (!t.some((k) => name.endsWith(`.${k}`))) return false;
  const layers = cfg.layersToTransform;
  if (!layers || layers.length === 0) return true;
  const m = /^.*\.[^.]*\.(\d+)\./.exec(name);
  return m !== null && layers.includes(Number(m[1]));
}

/** Rank of the adapter on module `name` (rank_pattern, else r). */
export function loraRank(cfg: LoraConfig, module: string): number {
  const name = cfg.matchAs ? cfg.matchAs(module) : module;
  const key = cfg.rankPattern ? patternKey(Object.keys(cfg.rankPattern), name) : null;
  return key === null ? cfg.r : cfg.rankPattern![key]!;
}

/** Alpha of the adapter on module `name` (alpha_pattern, else alpha). */
export function loraAlpha(cfg: LoraConfig, module: string): number {
  const name = cfg.matchAs ? cfg.matchAs(module) : module;
  const key = cfg.alphaPattern ? patternKey(Object.keys(cfg.alphaPattern), name) : null;
  return key === null ? cfg.alpha : cfg.alphaPattern![key]!;
}

/** PEFT's scaling for module `name`: alpha/r, or alpha/√r with rsLoRA, with the module's own r and alpha. */
export function loraScalingFor(cfg: LoraConfig, name: string): number {
  const r = loraRank(cfg, name);
  const a = loraAlpha(cfg, name);
  return cfg.useRslora ? a / Math.sqrt(r) : a / r;
}

/** The scaling of a module no pattern names. */
export function loraScaling(c: LoraConfig): number {
  return c.useRslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
}
