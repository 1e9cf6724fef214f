/**
 * What each cell of an experiment will cost, estimated from shapes before anything runs (`experiment plan`):
 * FLOPs of identification and training (the exact per-step count of method/flops.ts), the trainer-style 6·N·D
 * beside it, peak memory, and time at an assumed throughput (planThroughput: the experiment file's
 * estimate.flopsPerSecond, else a default for the device the run would use). Shapes come from the model folder's
 * config.json when it exists, else from the `config` the experiment file gives; pair counts from the data file
 * when it exists, else from `estimate.pairsPerLanguage`.
 *
 * Token counts: where the data file and the model's tokenizer.json are at hand (cellTokens), the cell's own
 * examples, tokenized as the recipe builds them (recipes/harden.ts identifySamples and trainExamples: the chat
 * template, the subsample, the cut to maxLength, the loss mask), batched as identification and the trainer batch
 * them; otherwise examples of the assumed length (spec.estimate: judge prompts of judgePromptTokens, training
 * examples of exampleTokens with the loss on half), which on real CyberNative pairs (about 203 tokens, 63% of them
 * the answer's, at Qwen3's tokenizer) counts training about 2.5 times what runs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { parseModelConfig } from "../io/config.js";
import { pairsToLabelledSamples, type SecurityPair } from "../data/pairs.js";
import { loadTokenizer, type HfTokenizer } from "../io/tokenizer.js";
import { identifySamples, subsample, trainExamples } from "../recipes/harden.js";
import { IGNORE_INDEX } from "../data/prompts.js";
import { planBatches as identifyBatches } from "../method/goodvibe/identify.js";
import { planBatches as trainBatches, scheduleRecord, type ScheduleRecord } from "../method/train.js";
import { canonicalJson } from "../io/hash.js";
import { ModelShape } from "../models/shapes.js";
import {
  estimateParams,
  goodvibeModules,
  goodvibeParams,
  identifyFlops,
  identifyMemoryEstimate,
  loraParams,
  sftFlops,
  trainMemoryEstimate,
  trainerFlopsEstimate,
  type MethodShapes,
} from "../method/flops.js";
import { DEFAULT_DTYPE, type HardenConfig } from "../config/harden.js";
import type { ExperimentSpec } from "./spec.js";
import { describeCell, modelConfigOf, readPairsOf, type CellSetting } from "./plan.js";
import { SCHEDULE_MARK, listed } from "../report/schedule.js";
import { cudaAvailable, deviceKind } from "../tensor/index.js";
import {
  FROZEN_DX_BUDGET_ENV,
  FROZEN_DX_DEFAULT_SHARE,
  FROZEN_DX_MIN_WEIGHT,
  frozenCopyKind,
  frozenDxMode,
  parseMemoryBudget,
} from "../models/frozen-dx.js";
import { availableMemoryBytes } from "../util/memory.js";

/**
 * Sustained training throughput (FLOP/s, as method/flops.ts counts them) assumed for the time column when the
 * experiment file gives none, by the device the run would use. Each is a planning figure, not a promise:
 * - cpu: 0.3 TFLOP/s, a little under what `goodvibe harden` sustained on one Zen 5 thread at Qwen2.5-0.5B's shape
 *   (BENCHMARKS "Gradient checkpointing "auto" in training", the default "auto" deciding off): its 16 C++ pairs
 *   count, by this plan, 8.96 TFLOP of identification in 25.0–26.0 CPU s (345–358 GFLOP/s) and 15.79 TFLOP of
 *   training in 45.8–50.0 s (316–345 GFLOP/s), 60–68% of that CPU's 528 GFLOP/s bf16 matmul peak. (The 317–334
 *   GFLOP/s quoted before were training with checkpointing always on, 22.2 TFLOP with the recomputation.) A plan's
 *   times there run 5–15% long: one language of the paper's data (424 C++ pairs) plans at 35 min against README's
 *   32 measured and extrapolated. Older or AVX2-only CPUs run bf16 slower (BENCHMARKS "bf16 products on AVX2
 *   CPUs"); more threads, faster: set estimate.flopsPerSecond for the machine.
 * - cuda: 100 TFLOP/s, about an eighth of the 790 TFLOP/s bf16 matrix-product rate measured on an H200 (BENCHMARKS
 *   "CUDA"): fine-tuning at batch 1 with examples of a few hundred tokens keeps a GPU far from its matmul peak, and
 *   this code's training throughput on a GPU is not yet measured. The figure the default was for every device
 *   before 2026-12-01, when a CPU plan's times were about 330 times too short.
 */
export const DEFAULT_FLOPS_PER_SECOND = { cpu: 3e11, cuda: 1e14 } as const;

export interface Throughput {
  flopsPerSecond: number;
  /** the device the default is for (the run's, from GOODVIBE_DEVICE) */
  device: keyof typeof DEFAULT_FLOPS_PER_SECOND;
  /** GOODVIBE_DEVICE as set (null: unset) */
  deviceSetting: string | null;
  /** where the figure came from */
  from: "estimate.flopsPerSecond" | "default";
}

/**
 * The throughput a plan's times assume: the experiment file's estimate.flopsPerSecond, else the default for the
 * device GOODVIBE_DEVICE names (cpu when unset; cuda or cuda:N; auto: cuda when libtorch sees a GPU). A plan may be
 * made on another machine than the run's: a GPU is not required to plan for one.
 */
export function planThroughput(spec: ExperimentSpec, env: NodeJS.ProcessEnv = process.env): Throughput {
  const asked = env.GOODVIBE_DEVICE || undefined;
  // a setting the run would refuse ("CUDA") is refused here, with its message, not planned as the CPU
  const kind = deviceKind(asked);
  const device = kind === "auto" ? (cudaAvailable() ? "cuda" : "cpu") : kind;
  const given = spec.estimate.flopsPerSecond;
  const deviceSetting = asked ?? null;
  return given !== undefined
    ? { flopsPerSecond: given, device, deviceSetting, from: "estimate.flopsPerSecond" }
    : { flopsPerSecond: DEFAULT_FLOPS_PER_SECOND[device], device, deviceSetting, from: "default" };
}

export interface CellEstimate {
  /** where the shapes came from */
  shapes: "config.json" | "experiment file";
  /** training pairs of the cell's languages, and whether they were counted or assumed */
  pairs: number;
  pairsCounted: boolean;
  /** trainable parameters: a range for GoodVibe (goodvibeRowsPerModule's update rows per module), else exact */
  trainable: { low: number; high: number };
  totalParams: number;
  flops: { identify: number; train: number; total: number };
  /** 6 · N · D of training (transformers' Trainer style) */
  trainerEstimate: number;
  peakMemoryBytes: number;
  seconds: number;
  /**
   * what the token counts came from: the cell's own examples ("data": the judge prompts and training examples the
   * run will build, counted), or the assumed example of spec.estimate ("assumed", with why: no data file, no
   * tokenizer.json); tokens of what was counted or assumed (training: input tokens as the micro-batches hold them,
   * padding included, over every epoch; loss: the tokens that take the loss)
   */
  tokens: {
    from: "data" | "assumed";
    why?: string;
    /** counted on a seeded draw of the cell's pairs (CellTokens.sampled) */
    sampled?: { pairs: number; of: number };
    identify: { samples: number; tokens: number };
    train: { examples: number; tokens: number; loss: number };
  };
}

/** A cell's real examples as token counts, in the order the recipe builds them. */
export interface CellTokens {
  /** identification's judge prompts (GoodVibe cells; null for the others): each sample's length */
  identify: number[] | null;
  /** training examples after the cut to train.maxLength: input tokens, and tokens the loss is taken on */
  train: { tokens: number; loss: number }[];
  /**
   * where the pairs were more than the plan tokenizes (PLAN_TOKENIZE_PAIRS): the pairs tokenized, a seeded draw
   * of the cell's; the other pairs' examples are predicted from their characters (a line fitted to the drawn)
   */
  sampled?: { pairs: number; of: number };
}

/** Where a cell's token counts come from: its data, counted, or the assumed example and why. */
export type TokenSource = { from: "data"; counts: CellTokens } | { from: "assumed"; why: string };

/**
 * The most pairs a plan tokenizes, over all its cells' distinct example sets: tokenizing costs about 6 ms of one
 * core per pair (a judge prompt for each answer and the training example, ~600 tokens with @huggingface/tokenizers;
 * Zen 5, 2026-12-02), so the full CyberNative train split (3,724 pairs) would take over 20 s. Past it, each set's
 * share of this budget (at least MIN_SAMPLE_PAIRS) is a seeded draw of its pairs, and the rest are predicted from
 * their characters.
 */
export const PLAN_TOKENIZE_PAIRS = 512;
const MIN_SAMPLE_PAIRS = 32;

/**
 * Token counts of every trained cell's own examples, where the data file and the model's tokenizer.json are at
 * hand: the judge prompts and training examples exactly as the recipe builds them (recipes/harden.ts
 * identifySamples, trainExamples: the model's chat template, the enableThinking switch, the seeded subsample of
 * maxPairs, the cut to maxLength). Each model's tokenizer is loaded once, and cells that build the same examples
 * (every method and seed of a language run, unless a subsample differs) share one count. More pairs than
 * `budget` in all: each example set is counted on a seeded draw (CellTokens.sampled). Base cells and cells
 * without data or tokenizer get the assumed example, with why. Each cell's examples come from its own data file
 * (a planned cell of a task-held-out study: the split's hardening pairs), read from `unwritten` where the plan has
 * not written it (ExperimentPlan.unwritten); a cell of such a study before its plan trains on a split not yet
 * made, and gets the assumed example.
 */
export async function cellTokens(
  spec: ExperimentSpec,
  cells: CellSetting[],
  opts: { budget?: number; unwritten?: ReadonlyMap<string, string> } = {},
): Promise<TokenSource[]> {
  const budget = opts.budget ?? PLAN_TOKENIZE_PAIRS;
  const pairs = new Map<string, SecurityPair[]>();
  // the example sets: the pairs each stage keeps (maxPairs' draw), how they are tokenized, and each example's
  // characters (what a sampled set's other pairs are predicted from)
  interface Count {
    tokens: number;
    loss: number;
  }
  interface ExampleSet {
    model: string;
    chosen: SecurityPair[];
    count: (tok: HfTokenizer, pairs: SecurityPair[]) => Count[];
    chars: (p: SecurityPair) => Count[];
    maxLength: number;
    counts?: Count[];
    sampled?: { pairs: number; of: number };
  }
  const sets = new Map<string, ExampleSet>();
  const setOf = (key: unknown, make: () => ExampleSet): ExampleSet => {
    const k = canonicalJson(key);
    let set = sets.get(k);
    if (!set) sets.set(k, (set = make()));
    return set;
  };
  const out: (TokenSource | { identify: ExampleSet | null; train: ExampleSet })[] = cells.map((c) => {
    const h = c.harden;
    if (h === null) return { from: "assumed", why: "not trained" };
    const file = h.data;
    const text = opts.unwritten?.get(path.resolve(file));
    if (text === undefined && !fs.existsSync(file))
      return { from: "assumed", why: `no data file at ${file}` };
    if (spec.data.taskSplit && path.resolve(file) === path.resolve(spec.data.train))
      return { from: "assumed", why: "data.taskSplit: the cells train on a split made when the run starts" };
    if (!fs.existsSync(path.join(c.model.path, "tokenizer.json")))
      return { from: "assumed", why: `no tokenizer.json in ${c.model.path}` };
    const languages = h.languages;
    const pk = canonicalJson([file, languages ?? null]);
    let ps = pairs.get(pk);
    if (!ps) pairs.set(pk, (ps = readPairsOf(file, text, languages)));
    const all = ps;
    const thinking = h.enableThinking;
    const at = { model: c.model.path, data: path.resolve(file), languages: languages ?? null, thinking };
    // the keys hold what shapes the examples: the seed only where it draws a subsample
    const identify =
      h.method === "goodvibe"
        ? setOf(
            {
              ...at,
              identify: {
                judgeTask: h.identify.judgeTask,
                maxLength: h.identify.maxLength,
                maxPairs: h.identify.maxPairs,
              },
              seed: h.identify.maxPairs > 0 ? h.seed : null,
            },
            () => ({
              model: c.model.path,
              // as identifySamples draws them; it is then given the drawn pairs (maxPairs 0: no second draw)
              chosen: subsample(all, h.identify.maxPairs, h.seed),
              count: (tok, chosen) =>
                identifySamples(tok, chosen, { ...h.identify, maxPairs: 0 }, h.seed, thinking).map((s) => ({
                  tokens: s.inputIds.length,
                  loss: 0,
                })),
              chars: (p) => pairsToLabelledSamples([p]).map((s) => ({ tokens: s.code.length, loss: 0 })),
              maxLength: h.identify.maxLength,
            }),
          )
        : null;
    const train = setOf(
      {
        ...at,
        train: { maxLength: h.train.maxLength, maxPairs: h.train.maxPairs },
        seed: h.train.maxPairs > 0 ? h.seed : null,
      },
      () => ({
        model: c.model.path,
        // as trainExamples draws them (seed + 1); it is then given the drawn pairs
        chosen: subsample(all, h.train.maxPairs, h.seed + 1),
        count: (tok, chosen) =>
          trainExamples(tok, chosen, { ...h, data: file, train: { ...h.train, maxPairs: 0 } }).map((e) => ({
            tokens: e.inputIds.length,
            // the loss positions as the trainer counts them: labels after the first position not ignored
            loss: e.labels.slice(1).filter((l) => l !== IGNORE_INDEX).length,
          })),
        chars: (p) => [{ tokens: p.question.length + p.chosen.length, loss: p.chosen.length }],
        maxLength: h.train.maxLength,
      }),
    );
    return { identify, train };
  });
  // each set's pairs to tokenize: all of them within the budget, else its share of it, a seeded draw; the other
  // pairs' examples are predicted from their characters by a line fitted to the drawn ones (tokens = a + b·chars:
  // the template's and instruction's tokens are the intercept)
  const total = [...sets.values()].reduce((a, s) => a + s.chosen.length, 0);
  const tokenizers = new Map<string, HfTokenizer>();
  for (const set of sets.values()) {
    let tok = tokenizers.get(set.model);
    if (!tok) tokenizers.set(set.model, (tok = await loadTokenizer(set.model)));
    const n = set.chosen.length;
    const take =
      total <= budget ? n : Math.min(n, Math.max(MIN_SAMPLE_PAIRS, Math.round((budget * n) / total)));
    if (take >= n) {
      set.counts = set.count(tok, set.chosen);
      continue;
    }
    const drawn = new Set(subsample([...set.chosen.keys()], take, 0));
    const drawnPairs = set.chosen.filter((_, i) => drawn.has(i));
    const counted = set.count(tok, drawnPairs);
    const perPair = counted.length / drawnPairs.length;
    const chars = drawnPairs.flatMap(set.chars);
    const fit = (f: (c: Count) => number) => fitLine(chars.map(f), counted.map(f));
    const tokens = fit((c) => c.tokens);
    const loss = fit((c) => c.loss);
    let next = 0;
    set.counts = set.chosen.flatMap((p, i) => {
      if (drawn.has(i)) return counted.slice(next * perPair, ++next * perPair);
      return set.chars(p).map((x) => {
        const t = Math.max(1, Math.round(tokens(x.tokens)));
        const l = Math.max(0, Math.round(loss(x.loss)));
        // the cut to maxLength takes the answer's end
        const cut = Math.min(t, set.maxLength);
        return { tokens: cut, loss: Math.max(0, Math.min(cut - 1, l - (t - cut))) };
      });
    });
    set.sampled = { pairs: take, of: n };
  }
  return out.map((o) => {
    if ("from" in o) return o;
    const counts: CellTokens = {
      identify: o.identify ? o.identify.counts!.map((c) => c.tokens) : null,
      train: o.train.counts!,
    };
    const sampled = o.train.sampled ?? o.identify?.sampled;
    return { from: "data", counts: sampled ? { ...counts, sampled } : counts };
  });
}

/** The model's shapes: from its folder when there, else from the experiment file's `config`. */
export function shapeForModel(
  model: ExperimentSpec["models"][number],
  source: string,
  /** the model's place in the file's `models`, for messages */
  index = 0,
): { shape: ModelShape; from: CellEstimate["shapes"] } {
  if (fs.existsSync(path.join(model.path, "config.json")))
    return {
      shape: new ModelShape(modelConfigOf(model, index, source)),
      from: "config.json",
    };
  if (!model.config)
    throw new InputError(
      `${source}: model "${model.name}": no config.json at ${model.path} and no \`config\` in the experiment ` +
        `file to estimate from (give the fields of its published config.json)`,
    );
  return {
    shape: new ModelShape(parseModelConfig(model.config, `${source}: model "${model.name}" config`)),
    from: "experiment file",
  };
}

/** What GoodVibe, LoRA or full fine-tuning trains, as shapes (GoodVibe with `rows` rows per module). */
function methodShapes(shape: ModelShape, cfg: HardenConfig, rows: number): MethodShapes {
  if (cfg.method === "full") return { name: "full", shapes: [] };
  if (cfg.method === "lora")
    return {
      name: "lora",
      shapes: shape
        .linears()
        .filter((l) => cfg.lora.targetModules.includes(l.name.split(".").pop()!))
        .flatMap((l) => [
          [`${l.name}.lora_A`, [cfg.lora.r, l.inFeatures]] as [string, number[]],
          [`${l.name}.lora_B`, [l.outFeatures, cfg.lora.r]] as [string, number[]],
        ]),
    };
  return {
    name: "goodvibe",
    shapes: goodvibeModules(shape, cfg.identify.lmHead).map(
      (l) =>
        [`${l.name}.U`, [Math.min(rows, cfg.identify.topK, l.outFeatures), l.inFeatures]] as [
          string,
          number[],
        ],
    ),
  };
}

/**
 * The update rows a GoodVibe module can get, fewest and most, before identification and clustering have run
 * (method/goodvibe/clustering.ts): a clustered module gets k in [2, cluster.kMax] rows (k-means chooses k by
 * silhouette, and cannot make more clusters than the top-k neurons); one below the silhouette threshold gets the
 * fallback, one shared row (`shared`) or a row per neuron (`per-neuron`); clustering disabled, a row per neuron.
 * The paper's Table 2 figures lie between one and two rows per module, but this clustering may choose up to kMax:
 * the organism's 4-layer runs get about 3 (topK 16: 92 rows over 28 modules).
 */
export function goodvibeRowsPerModule(h: Pick<HardenConfig, "identify" | "cluster">): {
  low: number;
  high: number;
} {
  const k = h.identify.topK;
  if (h.cluster.disabled) return { low: k, high: k };
  const clustered = Math.min(h.cluster.kMax, k);
  // per-neuron: a clustered module has at least 2 rows (fewer neurons than that: one each), one below it k
  return h.cluster.fallback === "per-neuron" ? { low: Math.min(2, k), high: k } : { low: 1, high: clustered };
}

/**
 * Bytes of the weight copies a CPU run's frozen bf16 products make (models/frozen-dx.ts, frozenDx): Wᵀ of each
 * decoder layer's q/k/v, o, gate/up and down weights (q/k/v and gate/up one weight each, as the model holds them)
 * and of lm_head, or, where this CPU computes bf16 products in float32, W in float32 of the decoder's; weights under
 * FROZEN_DX_MIN_WEIGHT elements get none, and the copies stop at the budget (GOODVIBE_FROZEN_DX_BUDGET, else a
 * quarter of the memory available on this machine). Held from the first backward (identification's) to the end of
 * training: on a 0.5B model about as much again as its bf16 weights. None on a GPU, for full fine-tuning (nothing
 * is frozen), or for a float32 model.
 */
export function frozenCopyBytes(
  shape: ModelShape,
  method: HardenConfig["method"],
  dtype: string,
  device: Throughput["device"],
): number {
  if (device !== "cpu" || method === "full" || dtype !== "bfloat16") return 0;
  const mode = frozenDxMode("cpu");
  if (mode === "off") return 0;
  const kind = frozenCopyKind("cpu");
  const groups = new Map<string, number>();
  for (const l of shape.linears()) {
    const leaf = l.name.split(".").pop()!;
    const prefix = l.name.slice(0, l.name.length - leaf.length);
    const key =
      prefix +
      (["q_proj", "k_proj", "v_proj"].includes(leaf)
        ? "qkv"
        : leaf === "gate_proj" || leaf === "up_proj"
          ? "gate_up"
          : leaf);
    groups.set(key, (groups.get(key) ?? 0) + l.inFeatures * l.outFeatures);
  }
  const big = (n: number) => mode === "forced" || n >= FROZEN_DX_MIN_WEIGHT;
  // decoder weights first, largest first; lm_head last and only as a transposed copy (as rankSlots)
  const sizes = [...groups.values()]
    .filter(big)
    .sort((a, b) => b - a)
    .map((n) => n * (kind === "float32" ? 4 : 2));
  const head = shape.cfg.vocabSize * shape.cfg.hiddenSize;
  if (kind === "transposed" && big(head)) sizes.push(head * 2);
  const env = process.env[FROZEN_DX_BUDGET_ENV];
  const given = env ? parseMemoryBudget(env, FROZEN_DX_BUDGET_ENV) : null;
  const budget = given
    ? "bytes" in given
      ? given.bytes
      : given.share * availableMemoryBytes()
    : mode === "forced"
      ? Infinity
      : FROZEN_DX_DEFAULT_SHARE * availableMemoryBytes();
  let held = 0;
  for (const b of sizes) if (held + b <= budget) held += b;
  return held;
}

/** The least-squares line y = a + b·x through the points, as a function (a level line where x does not vary). */
function fitLine(x: number[], y: number[]): (x: number) => number {
  const n = x.length;
  const mx = x.reduce((a, v) => a + v, 0) / n;
  const my = y.reduce((a, v) => a + v, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i]! - mx) * (y[i]! - my);
    sxx += (x[i]! - mx) ** 2;
  }
  const b = sxx > 0 ? sxy / sxx : 0;
  return (v) => my + b * (v - mx);
}

/**
 * The learning-rate schedule each trained cell's run will have, with harden's verdict on it (method/train.ts
 * scheduleRecord: trains nothing, barely, or null), known before anything runs: harden makes one training example
 * per pair it keeps (at most train.maxPairs; a pair too long for train.maxLength is refused, never dropped:
 * recipes/harden.ts trainExamples), so counting the pairs needs no tokenizer. Each data file and language set is
 * read once. A task-held-out study's cells train on the split's training file (the hardening tasks' pairs only):
 * a plan that has not written it passes its text as `unwritten` (ExperimentPlan.unwritten), so the plan counts
 * what the run will train on. null for a base cell and where the cell's data file is neither there nor given.
 */
export function plannedSchedules(
  cells: readonly Pick<CellSetting, "harden">[],
  unwritten?: ReadonlyMap<string, string>,
): (ScheduleRecord | null)[] {
  const counts = new Map<string, number>();
  return cells.map(({ harden: h }) => {
    if (h === null) return null;
    const text = unwritten?.get(path.resolve(h.data));
    if (text === undefined && !fs.existsSync(h.data)) return null;
    const k = canonicalJson([h.data, h.languages ?? null]);
    let n = counts.get(k);
    if (n === undefined) counts.set(k, (n = readPairsOf(h.data, text, h.languages).length));
    // subsample's count: maxPairs of them, or all (0, or no more than that)
    const kept = h.train.maxPairs > 0 ? Math.min(n, h.train.maxPairs) : n;
    return scheduleRecord(kept, h.train, h.train.maxPairs);
  });
}

/**
 * What `experiment plan` and the start of `experiment run` say of the cells whose schedule trains nothing or
 * barely: a headline, then each warning (the run's own words, with the fix) once, after the cells it is about.
 * Empty when none does.
 */
export function shortScheduleWarnings(
  cells: readonly CellSetting[],
  schedules: readonly (ScheduleRecord | null)[],
): string[] {
  const byWarning = new Map<string, string[]>();
  let none = 0;
  let few = 0;
  cells.forEach((c, i) => {
    const s = schedules[i];
    if (!s?.warning) return;
    if (s.level === "none") none++;
    else few++;
    byWarning.set(s.warning, [...(byWarning.get(s.warning) ?? []), describeCell(c)]);
  });
  if (byWarning.size === 0) return [];
  const counts = [
    none ? `${none} will train nothing (every step at learning rate 0: the model stays its base)` : "",
    few ? `${few} will barely train` : "",
  ].filter(Boolean);
  return [
    `of the cells to compute, ${counts.join(" and ")}; their results would not be the method's, and the report ` +
      `will mark them ${SCHEDULE_MARK} (the settings each warning names are harden's: in the experiment file they ` +
      `are under defaults, as --set defaults.train.warmupRatio=0 sets one):`,
    ...[...byWarning].map(([w, names]) => `${listed(names, ", ")}: ${w}`),
  ];
}

/**
 * Every cell's estimate. `tokens` (cellTokens, one per cell): the cells' own examples, counted; absent, or
 * "assumed" for a cell, the examples of spec.estimate's assumed lengths. A trained cell's pairs are counted in
 * its own data file (a task split's hardening pairs for a planned cell of a task-held-out study), read from
 * `unwritten` where the plan has not written it (ExperimentPlan.unwritten, as plannedSchedules).
 */
export function estimateCells(
  spec: ExperimentSpec,
  cells: CellSetting[],
  source = "experiment",
  throughput: Throughput = planThroughput(spec),
  tokens?: TokenSource[],
  unwritten?: ReadonlyMap<string, string>,
): CellEstimate[] {
  const shapes = new Map(spec.models.map((m, i) => [m.name, shapeForModel(m, source, i)]));
  const counts = new Map<string, number | null>();
  const pairsOf = (file: string, languages: string[] | undefined): { n: number; counted: boolean } => {
    const key = [file, ...(languages ?? ["(all)"])].join("\0");
    const text = unwritten?.get(path.resolve(file));
    if (!counts.has(key))
      counts.set(
        key,
        text !== undefined || fs.existsSync(file) ? readPairsOf(file, text, languages).length : null,
      );
    const n = counts.get(key);
    if (n !== null && n !== undefined) return { n, counted: true };
    return { n: spec.estimate.pairsPerLanguage * (languages?.length ?? 1), counted: false };
  };
  const e = spec.estimate;
  return cells.map((c, ci) => {
    const { shape, from } = shapes.get(c.model.name)!;
    const total = shape.params().total;
    const languages = c.run?.languages ?? spec.data.languages;
    const pairs = pairsOf(c.harden?.data ?? spec.data.train, languages);
    const zero = { identify: 0, train: 0, total: 0 };
    const given = tokens?.[ci];
    const assumedWhy = given?.from === "assumed" ? given.why : "no token counts asked for";
    if (c.harden === null)
      return {
        shapes: from,
        pairs: pairs.n,
        pairsCounted: pairs.counted,
        trainable: { low: 0, high: 0 },
        totalParams: total,
        flops: zero,
        trainerEstimate: 0,
        // evaluation only: the bf16 weights (generation's KV cache is not estimated)
        peakMemoryBytes: 2 * total,
        seconds: 0,
        tokens: {
          from: "assumed",
          why: "not trained",
          identify: { samples: 0, tokens: 0 },
          train: { examples: 0, tokens: 0, loss: 0 },
        },
      };
    const h = c.harden;
    const dtype = h.dtype ?? DEFAULT_DTYPE;
    const cap = (n: number, max: number) => (max > 0 ? Math.min(n, max) : n);
    // frozenDx's weight copies on a CPU, held through identification and training alike
    const copies = frozenCopyBytes(shape, h.method, dtype, throughput.device);
    // the examples: counted from the cell's data, else of the assumed lengths (the loss on the answer half)
    const counted = given?.from === "data" ? given.counts : null;
    const judgeLengths: number[] =
      counted?.identify ??
      (h.method === "goodvibe"
        ? new Array<number>(2 * cap(pairs.n, h.identify.maxPairs)).fill(e.judgePromptTokens)
        : []);
    const examples =
      counted?.train ??
      new Array<{ tokens: number; loss: number }>(cap(pairs.n, h.train.maxPairs)).fill({
        tokens: Math.min(e.exampleTokens, h.train.maxLength),
        loss: Math.min(e.exampleTokens, h.train.maxLength) / 2,
      });
    // identification: every pair gives a secure and an insecure judge prompt, each counted at its own length as
    // identify() counts it; the peak is the largest of its batches (batched by length as identify() batches them)
    let identify = 0;
    let identifyPeak = 0;
    let identifyTokens = 0;
    if (h.method === "goodvibe") {
      const perLength = new Map<number, number>();
      for (const T of judgeLengths) {
        identifyTokens += T;
        let f = perLength.get(T);
        if (f === undefined)
          perLength.set(
            T,
            (f = identifyFlops(
              shape,
              [1, T],
              h.identify.mode === "gradient",
              h.identify.lmHead && h.identify.mode === "activation",
              // "auto" as where the activations fit (the peak below likewise): no recomputation
              h.identify.gradientCheckpointing === true,
            ).total),
          );
        identify += f;
      }
      for (const b of identifyBatches(judgeLengths, h.identify.batchSize, h.identify.batchTokens))
        identifyPeak = Math.max(
          identifyPeak,
          identifyMemoryEstimate(shape, {
            totalParams: total,
            dtype,
            // longest first: the batch is padded to its first sample's length
            batch: b.length,
            time: judgeLengths[b[0]!]!,
            // "auto" checkpointing: the estimate without it (the larger)
            checkpointing: h.identify.gradientCheckpointing === true,
          }).total,
        );
    }
    const { low: rowsLow, high: rowsHigh } = goodvibeRowsPerModule(h);
    const trainable =
      h.method === "full"
        ? { low: total, high: total }
        : h.method === "lora"
          ? { low: loraParams(shape, h.lora), high: loraParams(shape, h.lora) }
          : {
              low: goodvibeParams(shape, { rows: rowsLow, topK: h.identify.topK, lmHead: h.identify.lmHead }),
              high: goodvibeParams(shape, {
                rows: rowsHigh,
                topK: h.identify.topK,
                lmHead: h.identify.lmHead,
              }),
            };
    // training: the trainer's micro-batches over every epoch (train.ts planBatches: seeded shuffles, batchSize
    // examples padded to the longest), each counted as the trainer counts it. "auto" checkpointing is estimated as
    // it runs where the activations fit (method/checkpointing.ts): no second forward, the peak without it (the
    // larger); where they do not fit, or on a GPU, the run adds a forward of the layers
    const checkpointing = h.train.gradientCheckpointing === true;
    const ms = methodShapes(shape, h, rowsHigh);
    let train = 0;
    let inputTokens = 0;
    let lossTokens = 0;
    let trainPeak = 0;
    const stepFlops = new Map<string, number>();
    const peaks = new Map<string, number>();
    for (const step of trainBatches(examples.length, h.train))
      for (const micro of step) {
        const B = micro.length;
        let T = 0;
        let loss = 0;
        for (const i of micro) {
          T = Math.max(T, examples[i]!.tokens);
          loss += examples[i]!.loss;
        }
        inputTokens += B * T;
        lossTokens += loss;
        const k = `${B} ${T} ${loss}`;
        let f = stepFlops.get(k);
        if (f === undefined) stepFlops.set(k, (f = sftFlops(shape, ms, [B, T], loss, checkpointing).total));
        train += f;
        if (!peaks.has(k)) {
          const p = trainMemoryEstimate(shape, {
            method: h.method,
            totalParams: total,
            trainableParams: trainable.high,
            dtype,
            batch: B,
            time: T,
            lossTokens: loss,
            checkpointing,
          }).total;
          peaks.set(k, p);
          trainPeak = Math.max(trainPeak, p);
        }
      }
    const n = estimateParams(shape.params(), h.method, trainable.high);
    return {
      shapes: from,
      pairs: pairs.n,
      pairsCounted: pairs.counted,
      trainable,
      totalParams: total,
      flops: { identify, train, total: identify + train },
      trainerEstimate: trainerFlopsEstimate(n, inputTokens),
      peakMemoryBytes: Math.max(identifyPeak, trainPeak) + copies,
      seconds: (identify + train) / throughput.flopsPerSecond,
      tokens: {
        from: counted ? "data" : "assumed",
        ...(counted ? {} : { why: assumedWhy }),
        ...(counted?.sampled ? { sampled: counted.sampled } : {}),
        identify: { samples: judgeLengths.length, tokens: identifyTokens },
        train: { examples: examples.length * h.train.epochs, tokens: inputTokens, loss: lossTokens },
      },
    };
  });
}
