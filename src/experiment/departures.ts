/**
 * Where an experiment's settings depart from the paper's (results.json `departures`, the report's notes): each
 * setting the paper states (../shared/paper §4.2, §5.1; README "Defaults follow the paper") that the experiment
 * file's `defaults` set otherwise. The defaults of src/config are the paper's for these keys but one: gradient
 * checkpointing, which the paper enables and the default turns on only where memory is short (its paper value is
 * written below, and its departure, the default's too, says why that changes no weight); the others
 * (identification batch, maximum lengths, clustering's features) are this project's choices, said in the README,
 * and are not listed. Where the paper is ambiguous or inconsistent and GoodVibe's cells decide it (lm_head hooked or
 * not, what a layer below the silhouette threshold gets), the reading taken is listed after those
 * (goodvibeReadings: lm_head, the fallback, the clustering features), and so are the evaluation's where the paper is
 * silent (Qwen3's thinking mode, the decoding, which code of an answer is judged, the utility benchmarks' protocol).
 * Ablations and grids are studies, named in their own tables, not departures. LoRA's settings and the optimiser's
 * beyond AdamW and lr are not given by the paper: they are stated, LoRA's as it asks, the optimiser's in one entry
 * (not as departures one key each).
 */
import { defaultHardenConfig, DEFAULT_DTYPE, type HardenConfig } from "../config/harden.js";
import * as fs from "node:fs";
import * as path from "node:path";
import { goodvibeReadings } from "../method/goodvibe/config.js";
import { thinkingSwitchReaches } from "../io/chat-template.js";
import { folderDefaultSampling } from "../eval/generate/generation-config.js";
import { DEFAULT_APPLY_GENERATION_CONFIG } from "../eval/config.js";
import { DEFAULT_CODE_BLOCKS } from "../data/code.js";
import { codeBlocksReading } from "../eval/safety.js";
import { judgeVerdictReading } from "../eval/judge/llm.js";
import { GSM8K_ZERO_SHOT_WARNING, HARNESS_FEWSHOT_SEED } from "../eval/utility/gsm8k.js";
import type { ExperimentResults } from "../report/schema.js";
import { hardenConfigFor } from "./plan.js";
import type { ExperimentSpec } from "./spec.js";

type Departure = NonNullable<ExperimentResults["departures"]>[number];

/**
 * The settings the paper states, by config key, in words; `goodvibe`: only GoodVibe runs them; `paper`: the paper's
 * value where it is not the default's; `why`: why the value here may differ, where that is not the file's choice.
 */
const PAPER_SETTINGS: readonly {
  key: string;
  name: string;
  goodvibe?: boolean;
  paper?: unknown;
  why?: string;
}[] = [
  { key: "train.lr", name: "learning rate (AdamW)" },
  { key: "train.schedule", name: "learning-rate schedule" },
  { key: "train.warmupRatio", name: "warm-up ratio" },
  { key: "train.epochs", name: "epochs" },
  { key: "train.batchSize", name: "per-device batch (with gradient accumulation)" },
  {
    key: "train.gradientCheckpointing",
    name: "gradient checkpointing",
    // §4.2: "To reduce memory usage, mixed-precision training (BF16) and gradient checkpointing are enabled"
    paper: true,
    why:
      "a memory setting: the paper enables it to reduce memory usage, and the trained weights are the same " +
      "bits with it or without (it only recomputes each layer in the backward), so only time and memory " +
      "differ; auto turns it on where the longest batch's activations would not fit",
  },
  { key: "dtype", name: "precision (bf16 mixed precision)" },
  { key: "train.maxPairs", name: "fine-tuning pairs (0: all pairs of a language)" },
  { key: "identify.topK", name: "top-k security neurons per layer", goodvibe: true },
  { key: "identify.mode", name: "neuron importance (Eq. 8: gradient)", goodvibe: true },
  { key: "identify.maxPairs", name: "identification pairs (0: all pairs of a language)", goodvibe: true },
  { key: "cluster.threshold", name: "silhouette threshold", goodvibe: true },
  { key: "cluster.disabled", name: "clustering", goodvibe: true },
];

function valueAt(cfg: HardenConfig, key: string): unknown {
  if (key === "dtype") return cfg.dtype ?? DEFAULT_DTYPE;
  return key.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], cfg);
}

const show = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

/**
 * Whether a model of the experiment has Qwen3's thinking switch: its folder's chat template names enable_thinking
 * (io/chat-template.ts); a folder not there yet (`experiment plan` before the download): its published config's
 * model_type is Qwen3's.
 */
function hasThinkingModel(spec: ExperimentSpec): boolean {
  // the model_type reading is apart on purpose: before the download there is no template to read (and an
  // experiment's answers come from no server)
  return spec.models.some((m) =>
    fs.existsSync(path.join(m.path, "config.json"))
      ? thinkingSwitchReaches(m.path)
      : String(m.config?.model_type ?? "").startsWith("qwen3"),
  );
}

/**
 * The thinking mode the experiment's prompts are rendered in, where a model has the switch: the paper evaluates
 * Qwen3-8B and Qwen3-14B (§5.1) and does not say which mode it used.
 */
function thinkingReading(spec: ExperimentSpec): Departure[] {
  if (!hasThinkingModel(spec)) return [];
  return [
    {
      setting: "Qwen3's thinking mode (enableThinking)",
      paper: "not given: Qwen3-8B and Qwen3-14B are evaluated, the mode is not stated",
      here:
        (spec.enableThinking ? "on" : "off") +
        ": enable_thinking " +
        String(spec.enableThinking) +
        " in every prompt (judge prompts, fine-tuning examples, generated answers; a server is sent chat_template_kwargs)",
      why: spec.enableThinking
        ? "set in the experiment file: answers may spend eval.maxNewTokens on reasoning, which is dropped before judging"
        : "a reading (the default): each answer's token budget goes to the answer; enableThinking: true renders them in thinking mode",
    },
  ];
}

/**
 * How the answers are decoded, where a model's folder would have transformers' generate() sample: the paper does
 * not say how it decoded, and a generation_config.json with do_sample true (Qwen2.5-Instruct's: temperature 0.7,
 * top_p 0.8, top_k 20) makes generate() sample unless told otherwise. The experiment's answers are greedy; said,
 * with what the folder asks, so that a reader comparing with a transformers run knows why its answers differ.
 */
function decodingReading(spec: ExperimentSpec): Departure[] {
  const sampled = spec.models.flatMap((m) => {
    const s = fs.existsSync(m.path) ? folderDefaultSampling(m.path) : null;
    return s
      ? [
          `${path.basename(path.resolve(m.path))} (temperature ${s.temperature}, top_p ${s.topP}, top_k ${s.topK})`,
        ]
      : [];
  });
  if (sampled.length === 0) return [];
  const applied = spec.eval.generationConfig ?? DEFAULT_APPLY_GENERATION_CONFIG;
  return [
    {
      setting: "decoding of the evaluated answers",
      paper: "not given",
      here: applied
        ? "greedy (argmax), with the folder's repetition_penalty where it sets one, as transformers applies it greedy too"
        : "greedy (argmax) on the raw logits (eval.generationConfig: false)",
      why:
        `the generation_config.json of ${sampled.join(", ")} sets do_sample true, with which transformers' ` +
        `generate() samples by default: one sampled answer per prompt changes with the seed, so each condition is ` +
        `measured on its greedy answer, reproducible and decoded alike (\`generate --sample\` samples as ` +
        `transformers does)`,
    },
  ];
}

/**
 * How the paper's utility benchmarks are asked and scored, where the experiment runs any: the paper reports
 * "accuracy on ARC Challenge, GSM8K and MMLU" (§4.3, Figure 3) and says no more (shots, the accuracy's variant, the
 * harness). Here they are lm-evaluation-harness's tasks (eval/utility/*.ts), each figure under its metric's name;
 * said so that a reader comparing Figure 3's deltas or absolute figures with the paper's or a harness run's knows
 * which ones these are.
 */
function utilityReading(spec: ExperimentSpec): Departure[] {
  const u = spec.eval.utility;
  if (!u || (u.arc === undefined && u.arcEasy === undefined && u.gsm8k === undefined && u.mmlu === undefined))
    return [
      {
        setting: "utility benchmarks (eval.utility)",
        paper: "accuracy on ARC Challenge, GSM8K and MMLU against the base model (§4.3, §5.4, Figure 3)",
        here: "not evaluated",
        why: "the experiment file names no benchmark file: eval.utility {arc, gsm8k, gsm8kTrain, mmlu, mmluDev} runs them",
      },
    ];
  const asked: string[] = [];
  if (u.arc !== undefined)
    asked.push("ARC-Challenge 0-shot, acc_norm (log-likelihood per character of each choice)");
  // the file under `arcEasy` is taken to be ARC-Easy, which the paper does not report: said, not passed off as Challenge
  if (u.arcEasy !== undefined)
    asked.push(
      "ARC-Easy 0-shot (arcEasy, beside the paper's ARC Challenge), acc_norm (log-likelihood per character of each choice)",
    );
  if (u.gsm8k !== undefined)
    asked.push(
      u.gsm8kTrain !== undefined
        ? `GSM8K 5-shot, exact match of the strict-match answer ("#### N"), each question's shots drawn as the harness draws them (seed ${HARNESS_FEWSHOT_SEED})`
        : `GSM8K 0-shot (no gsm8kTrain), exact match of the strict-match answer ("#### N"): ${GSM8K_ZERO_SHOT_WARNING}`,
    );
  if (u.mmlu !== undefined)
    asked.push(
      u.mmluDev !== undefined
        ? "MMLU 5-shot (the first 5 dev questions of the subject), acc over all questions"
        : "MMLU 0-shot (no mmluDev), acc over all questions",
    );
  return [
    {
      setting: "utility benchmarks' prompts and scoring",
      paper:
        "accuracy on ARC Challenge, GSM8K and MMLU (§4.3); shots, the accuracy's variant and the harness not given",
      here:
        asked.join("; ") +
        "; prompts, few-shot examples and answer filters as lm-evaluation-harness's tasks, raw prompts (no chat template)" +
        (u.limit !== undefined
          ? `, a seeded subsample of at most ${u.limit} questions each (eval.seed)`
          : ""),
      why: "a reading: lm-evaluation-harness's task definitions are the common reference for these figures",
    },
  ];
}

/**
 * Full fine-tuning of a multimodal checkpoint (Gemma 3 4B/12B-it): the project trains and counts its language model;
 * Table 2's full fine-tuning figures include the vision tower (Gemma-3-4B: 4,300.1 M there, 3.88 B here).
 */
function multimodalFullReading(spec: ExperimentSpec, trained: readonly string[]): Departure[] {
  if (!trained.includes("full")) return [];
  const multimodal = spec.models.filter((m) => {
    let raw: unknown = m.config;
    try {
      raw = JSON.parse(fs.readFileSync(path.join(m.path, "config.json"), "utf8"));
    } catch {
      // not there yet (`experiment plan` before the download): the published config the file gives
    }
    const c = (raw ?? {}) as Record<string, unknown>;
    return c.vision_config !== undefined || c.text_config !== undefined;
  });
  if (multimodal.length === 0) return [];
  return [
    {
      setting: "full fine-tuning of a multimodal checkpoint",
      paper:
        "every parameter: Table 2's full fine-tuning counts include the vision tower (Gemma-3-4B 4,300.1 M)",
      here: `${multimodal.map((m) => m.name).join(", ")}: the language model's parameters; the vision tower is kept as it is and not counted`,
      why: "the judge, the prompts and the answers are text: no method here reads an image",
    },
  ];
}

/** The experiment's departures from the paper's settings, in the order of PAPER_SETTINGS; LoRA's settings last. */
export function experimentDepartures(spec: ExperimentSpec, source = "experiment"): Departure[] {
  const trained = spec.methods.filter((m) => m !== "base");
  if (spec.models.length === 0) return [];
  if (trained.length === 0)
    return [
      ...thinkingReading(spec),
      ...decodingReading(spec),
      codeBlocksReading(
        spec.eval.codeBlocks ?? DEFAULT_CODE_BLOCKS,
        "eval.codeBlocks",
        "eval.codeBlocks: all",
      ),
      ...utilityReading(spec),
      ...(spec.judge ? [judgeVerdictReading()] : []),
    ];
  const model = spec.models[0]!;
  const paper = defaultHardenConfig({ model: model.path, data: spec.data.train, out: "(paper)" });
  const out: Departure[] = [];
  const method = trained.includes("goodvibe") ? "goodvibe" : trained[0]!;
  const here = hardenConfigFor(spec, source, model, method, spec.seeds[0] ?? 0, {}, "defaults");
  for (const s of PAPER_SETTINGS) {
    if (s.goodvibe && !trained.includes("goodvibe")) continue;
    const [d, h] = [valueAt(paper, s.key), valueAt(here, s.key)];
    const p = "paper" in s ? s.paper : d;
    if (JSON.stringify(p) === JSON.stringify(h)) continue;
    const set = JSON.stringify(d) === JSON.stringify(h) ? "the default" : "set in the experiment file";
    out.push({
      setting: `${s.name} (${s.key})`,
      paper: show(p),
      here: show(h),
      why: s.why ? `${set}; ${s.why}` : set,
    });
  }
  // the points the paper leaves open, as GoodVibe's cells decide them (the method's own readings, not the file's)
  if (trained.includes("goodvibe")) out.push(...goodvibeReadings(here.identify, here.cluster));
  out.push(...thinkingReading(spec));
  out.push(...decodingReading(spec));
  out.push(
    codeBlocksReading(spec.eval.codeBlocks ?? DEFAULT_CODE_BLOCKS, "eval.codeBlocks", "eval.codeBlocks: all"),
  );
  out.push(...utilityReading(spec));
  if (spec.judge) out.push(judgeVerdictReading());
  out.push(...multimodalFullReading(spec, trained));
  // every trained method runs the same loop: the optimiser settings the paper leaves out, stated as LoRA's are
  const t = here.train;
  out.push({
    setting: "training settings the paper does not give",
    paper: "not given: AdamW with lr 1e-4, and gradient accumulation without its count",
    here:
      `AdamW betas (${t.betas.join(", ")}), eps ${t.eps}, weight decay ${t.weightDecay}, ` +
      (t.maxGradNorm === null ? "no gradient clipping" : `gradient norm clipped at ${t.maxGradNorm}`) +
      `, gradient accumulation over ${t.gradAccum} micro-batches of ${t.batchSize} (a step's loss: the mean per answer token over all of them)`,
    why: "stated so that a run can be repeated: transformers' Trainer's defaults, the accumulation count this project's",
  });
  if (trained.includes("lora")) {
    const l = hardenConfigFor(spec, source, model, "lora", spec.seeds[0] ?? 0, {}, "defaults").lora;
    out.push({
      setting: "LoRA settings",
      paper: "not given",
      here: `r ${l.r}, alpha ${l.alpha}, dropout ${l.dropout}, on ${[l.targetModules].flat().join(", ")}`,
      why: "the paper asks that they be stated",
    });
  }
  return out;
}
