/**
 * The hardening recipe: identify → cluster → train → fold on a model folder and a pairs dataset, each stage
 * cached in a run folder so that an interrupted run resumes where it stopped (torchtune-style recipe).
 * GoodVibe is the default method; LoRA and full fine-tuning run through the same data, loop and schedule.
 *
 * The run folder holds one slot per stage and setting: `identify-<key>/`, `cluster-<key>/`, `train-<method>-<key>/`,
 * each key a hash of every input that shapes the stage (model and tokenizer bytes, data bytes, languages, dtype,
 * seed and the stage's settings, and the key of the stage it builds on). A rerun with other settings reuses what
 * still applies and computes the rest in new slots (old ones stay, so switching back costs nothing).
 * The output folder is built beside its final path and published in one rename with everything in it (model,
 * config, tokenizer, delta or adapter, neuron and cluster maps, stats): complete or absent.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import {
  checkOutput,
  cleanStaleTemps,
  writeDirAtomic,
  writeFileAtomic,
  type StaleTemp,
} from "../io/atomic.js";
import { claimOrRefuse, isClaimEntry } from "../io/claim.js";
import { canonicalJson, fileHash, modelFolderHashCached, sha256 } from "../io/hash.js";
import { loadTokenizer, type HfTokenizer } from "../io/tokenizer.js";
import { answerTokensKey, promptsKey } from "../io/tokenizer-json.js";
import { DEFAULT_ENABLE_THINKING, thinkingKey } from "../io/chat-template.js";
import {
  describePairs,
  labelConflictWarning,
  readPairs,
  pairsToLabelledSamples,
  type SecurityPair,
} from "../data/pairs.js";
import { languageFilterKey } from "../data/languages.js";
import {
  buildSftExample,
  checkJudgeConvention,
  describeJudgeConvention,
  judgeConvention,
  judgeMessages,
  judgeAnswerStart,
  sftMessages,
  PromptTooLong,
  type JudgeConvention,
} from "../data/prompts.js";
import { loadModelWithWeights, recordToTensor, requireModelMemory } from "../models/load.js";
import { openModelWeights, weightsUnchanged, type ModelWeights } from "../io/safetensors.js";
import type { DecoderModel } from "../models/decoder.js";
import {
  bf16ProductsOf,
  buildDifferences,
  buildParts,
  buildRecord,
  describeBuild,
  resolveDevice,
  sameBuild,
  type BuildParts,
  type BuildRecord,
  type DType,
} from "../tensor/index.js";
import { createRng } from "../util/random.js";
import {
  checkTopK,
  checkTopKOfFolder,
  identify,
  type IdentifyOptions,
  type IdentifySample,
} from "../method/goodvibe/identify.js";
import { IDENTIFY_STATE, clearIdentifyState } from "../method/goodvibe/identify-state.js";
import { readNeuronMap, writeNeuronMap, type NeuronMap } from "../method/goodvibe/neuron-map.js";
import { checkModelShape } from "../method/goodvibe/model-shape.js";
import {
  checkClusterSettings,
  clusterNeurons,
  clusterSummary,
  readClusterMap,
  selectionsOf,
  writeClusterMap,
  type ClusterMap,
  type ModuleClusters,
} from "../method/goodvibe/clustering.js";
import { DELTA_FILE, type ClusterOptions, type IdentifyConfig } from "../method/goodvibe/config.js";
import { DEFAULT_DTYPE, defaultRunDir, type HardenConfig } from "../config/harden.js";
import { attachGoodVibe } from "../method/goodvibe/model.js";
import { attachFull, requireFullTrainingMemoryOf } from "../method/full.js";
import { countParams, type AttachedMethod, type MethodName } from "../method/attached.js";
import { attachLora } from "../method/lora/model.js";
import {
  guardSaves,
  scheduleRecord,
  trainProgressHooks,
  trainSft,
  type ScheduleRecord,
  type SftExample,
  type TrainHooks,
  type TrainResult,
} from "../method/train.js";
import {
  keyedTraining,
  checkpointingUsedOf,
  type CheckpointingRecord,
  type CheckpointingUsed,
  type CheckpointingSetting,
} from "../method/checkpointing.js";
import { checkpointingSettingSchema } from "../method/train-config.js";
import { isPlainObject } from "../util/keys.js";
import { writePeftAdapter } from "../method/lora/peft.js";
import { writeFoldedCheckpoint, type FoldStats } from "../method/fold.js";
import { checkWeights, folderStamps, folderUnchanged } from "../io/model-folder.js";
import type { FileStamp } from "../io/mapfile.js";
import { writeGoodVibeDelta } from "../method/goodvibe/delta.js";
import { peakRssBytes, resetPeakRss } from "../util/memory.js";
import { interrupted, stopPoint } from "../util/stop.js";
import { silentLogger, type Logger } from "../util/log.js";
import { flattenSettings, settingsDifferences } from "../util/differences.js";

/**
 * A run's pairs (harden, identify): `cfg.languages` of `cfg.data`, said per language, with a warning for pairs that
 * label one code both secure and insecure (used as given).
 */
export function readRunPairs(cfg: Pick<HardenConfig, "data" | "languages">, log: Logger): SecurityPair[] {
  const pairs = readPairs(cfg.data, { languages: cfg.languages });
  log.info(`data: ${describePairs(pairs)} from ${cfg.data}`);
  const conflicting = labelConflictWarning(pairs, cfg.data);
  if (conflicting) log.warn(conflicting);
  return pairs;
}

/** At most n of the items (0: all), a seeded draw: the pairs a stage's maxPairs keeps. */
export function subsample<T>(items: T[], n: number, seed: number): T[] {
  if (!n || n >= items.length) return items;
  return createRng(seed)
    .shuffle([...items])
    .slice(0, n);
}

/** Judge-prompt token ids of one code sample, with the code shortened (from the end) to fit maxLength. */
export function judgePromptIds(
  tok: HfTokenizer,
  code: string,
  lang: string | undefined,
  maxLength: number,
  convention: JudgeConvention,
  enableThinking = DEFAULT_ENABLE_THINKING,
): number[] {
  let text = code;
  // the tokens before the label, the same for every prompt ("▁" for CodeLlama): see judgeAnswerStart
  const { prefixIds } = judgeAnswerStart(tok, convention, enableThinking);
  for (let tries = 0; tries < 20; tries++) {
    const ids = tok.encode(
      // the run's thinking setting, as its SFT examples and judgeAnswerStart render them: Qwen3's empty think
      // block ends the prompt either way (judgeAnswerStart's prefix holds it when thinking is on)
      tok.applyChatTemplate(judgeMessages(text, lang, convention), {
        addGenerationPrompt: true,
        enableThinking,
      }),
      {
        addSpecialTokens: false,
      },
    );
    ids.push(...prefixIds);
    if (ids.length <= maxLength) return ids;
    text = text.slice(0, Math.floor((text.length * maxLength) / ids.length) - 16);
  }
  throw new InputError(
    `a judge prompt cannot be made to fit ${maxLength} tokens (the instruction alone is too long?)`,
  );
}

/**
 * Token ids of the labels in identification's class order: [safe (class 0), unsafe (class 1)], each the one token
 * the label is where the chat template puts the answer (judgeAnswerStart; "1" itself, or for CodeLlama the digit
 * after the "▁" its template and tokenizer put first).
 */
export function labelTokenIds(
  tok: HfTokenizer,
  convention: JudgeConvention,
  enableThinking = DEFAULT_ENABLE_THINKING,
): [number, number] {
  return judgeAnswerStart(tok, convention, enableThinking).labelIds;
}

export function identifySamples(
  tok: HfTokenizer,
  pairs: SecurityPair[],
  cfg: IdentifyConfig,
  seed: number,
  enableThinking = DEFAULT_ENABLE_THINKING,
): IdentifySample[] {
  const chosen = subsample(pairs, cfg.maxPairs, seed);
  const convention = judgeConvention(cfg.judgeTask, "identify.judgeTask");
  // the paper's y: 1 = unsafe, the class of the unsafe label
  return pairsToLabelledSamples(chosen).map((s) => ({
    id: s.id,
    lang: s.lang,
    label: s.secure ? 0 : 1,
    inputIds: judgePromptIds(tok, s.code, s.lang, cfg.maxLength, convention, enableThinking),
  }));
}

/**
 * The SFT examples of pairs. A pair whose prompt alone fills maxLength is refused naming the pair, the file
 * (`from`) and the setting (`key`): the user needs to know which row and which number to change.
 */
export function sftExamples(
  tok: HfTokenizer,
  pairs: SecurityPair[],
  maxLength: number,
  where: { from?: string; key?: string } = {},
  enableThinking = DEFAULT_ENABLE_THINKING,
): SftExample[] {
  return pairs.map((p) => {
    try {
      return buildSftExample(tok, sftMessages(p), { maxLength, enableThinking });
    } catch (e) {
      // the model's own refusals (no chat template, no end token) are no pair's and no setting's: said as they are
      if (!(e instanceof PromptTooLong)) throw e;
      const key = where.key ? ` (${where.key}; raise it or leave the pair out)` : "";
      throw new InputError(`${where.from ? `${where.from}: ` : ""}pair ${p.id}: ${e.message}${key}`, {
        cause: e,
      });
    }
  });
}

/** A run's training examples: at most train.maxPairs pairs (a seeded subsample), each cut to train.maxLength. */
export function trainExamples(tok: HfTokenizer, pairs: SecurityPair[], cfg: HardenConfig): SftExample[] {
  return sftExamples(
    tok,
    subsample(pairs, cfg.train.maxPairs, cfg.seed + 1),
    cfg.train.maxLength,
    { from: cfg.data, key: "train.maxLength" },
    cfg.enableThinking,
  );
}

export interface HardenResult {
  outDir: string;
  method: MethodName;
  neurons?: NeuronMap;
  clusters?: ClusterMap;
  train: TrainResult;
  fold: FoldStats;
  trainableParams: number;
  totalParams: number;
  artifact: string;
  /** the process's peak resident host memory (VmHWM) over the run; on a GPU the device's memory is not in it */
  peakMemoryBytes: number;
  /** true when the output folder was already complete with these exact inputs and nothing was computed */
  reused?: boolean;
  /**
   * training's gradient checkpointing as the config asked it and as the run used it ("auto" decided: on or off);
   * absent for an output made before the record. The train slot's key holds "auto" as true (keyedTraining), so
   * its inputs.json and the stats' `stages` say true for "auto": this says what happened
   */
  gradientCheckpointing?: CheckpointingRecord;
  /**
   * the learning-rate schedule over the run's steps (method/train.ts planSchedule), with the warning given (before
   * any work, and here) when its steps at the full learning rate add up to few, or to none (`level`: no weight
   * changed)
   */
  schedule: ScheduleRecord;
}

export interface RunHooks extends TrainHooks {
  log?: Logger;
}

/** The judge convention a neuron map was made under; null for a map older than the record. */
export function neuronMapConvention(map: NeuronMap): JudgeConvention | null {
  const l = map.source.labels;
  return l ? { instruction: map.source.prompt, labels: { unsafe: l.unsafe, safe: l.safe } } : null;
}

// ---------------------------------------------------------------- stage keys and the run folder
/** Bump when a change in the stages' code changes what they compute: cached stages are then recomputed. */
export const RUN_FORMAT = "goodvibe-run/2";
/** Every name the recipe writes: in the run folder, in a stage's slot, and in the published output folder. */
export const RUN_FILES = {
  /** run folder: the run's description (its config and the slot of each stage) */
  run: "run.json",
  /** each slot: the inputs that key it */
  slotInputs: "inputs.json",
  /** each slot: the builds that computed its stage, in order (tensor/build.ts BuildRecord; not part of the key) */
  madeBy: "made-by.json",
  /**
   * train slot: training's checkpointing as the last run asked it and, once trained, as it used it
   * ({"train.gradientCheckpointing": CheckpointingRecord}; not part of the key, which holds "auto" as true), so that
   * a later run with other settings says what was asked rather than the keyed form
   */
  slotRequested: "requested.json",
  /** identify slot: identification's resumable state while it runs */
  identifyState: IDENTIFY_STATE,
  /** identify slot and output folder: the neuron map */
  neurons: "neurons.json",
  /** cluster slot and output folder: the cluster map */
  clusters: "clusters.json",
  /** output folder: what made it and how it went (its run key decides reuse) */
  stats: "goodvibe-stats.json",
  /** output folder: GoodVibe's delta, LoRA's PEFT adapter folder */
  delta: DELTA_FILE,
  adapter: "adapter",
  /** run folder: the input model folder's hash under its files' identities (hash.ts modelFolderHashCached) */
  modelHash: "model-hash.json",
  /** run folders of earlier versions kept their config here */
  legacyConfig: "config.json",
} as const;
export const NEURONS_FILE = RUN_FILES.neurons;
export const CLUSTERS_FILE = RUN_FILES.clusters;
export const STATS_FILE = RUN_FILES.stats;

export interface StageSlot {
  /** the slot's folder in the run folder */
  dir: string;
  /** sha256 of the canonical JSON of `inputs` */
  key: string;
  /** every input that shapes the stage (hashes stand for file contents) */
  inputs: Record<string, unknown>;
  /**
   * settings the key holds in another form than they were asked, by their flattened key in `inputs`: training's
   * checkpointing ("auto" keyed as true), for what the run says and records (requested.json), never for the key
   */
  requested?: Record<string, CheckpointingSetting>;
}

export interface StagePlan {
  identify: StageSlot;
  cluster: StageSlot;
  train: StageSlot;
  /** the key of the whole run (= the training stage's): an output folder made with it is this run's result */
  runKey: string;
}

/** What each stage's result depends on; `clustersFile`: training on a given cluster map instead of stage 2. */
export function planStages(cfg: HardenConfig, opts: { clustersFile?: string } = {}): StagePlan {
  const common = {
    format: RUN_FORMAT,
    model: modelFolderHashCached(cfg.model, path.join(cfg.runDir, RUN_FILES.modelHash)),
    data: fileHash(cfg.data),
    languages: cfg.languages ? languageFilterKey(cfg.languages) : null,
    // a tokenizer with a prefix space read answers and judge prompts otherwise before 6038b4c (answerTokensKey)
    ...promptsKey(cfg.model),
    // judge prompts and fine-tuning examples rendered with thinking on: only where the template has the switch
    ...thinkingKey(cfg.model, cfg.enableThinking ?? DEFAULT_ENABLE_THINKING),
  };
  const slot = (name: string, inputs: Record<string, unknown>): StageSlot => {
    const key = sha256(canonicalJson(inputs));
    return { dir: path.join(cfg.runDir, `${name}-${key.slice(0, 12)}`), key, inputs };
  };
  const identify = slot("identify", {
    ...common,
    dtype: cfg.dtype ?? DEFAULT_DTYPE,
    identify: cfg.identify,
    // the seed only picks the identification pairs when they are subsampled
    seed: cfg.identify.maxPairs > 0 ? cfg.seed : null,
  });
  const cluster = slot("cluster", { identify: identify.key, cluster: cfg.cluster });
  const { checkpointEvery: _every, stopAfterSteps: _stop, ...train } = cfg.train;
  const trainInputs: Record<string, unknown> = {
    ...common,
    // training answers end at the template's end of turn since c7c72aa (answerTokensKey's answerEnd)
    ...answerTokensKey(cfg.model),
    method: cfg.method,
    dtype: cfg.dtype ?? DEFAULT_DTYPE,
    seed: cfg.seed,
    // "auto" keyed as the default it replaced (slots finished under it are found); LoRA's dropout mark
    ...keyedTraining(train, cfg.method === "lora" ? cfg.lora : null, cfg.method),
  };
  if (cfg.method === "lora") trainInputs.lora = cfg.lora;
  if (cfg.method === "goodvibe")
    trainInputs.clusters = opts.clustersFile ? { file: fileHash(opts.clustersFile) } : cluster.key;
  const trainSlot: StageSlot = {
    ...slot(`train-${cfg.method}`, trainInputs),
    requested: { "train.gradientCheckpointing": cfg.train.gradientCheckpointing },
  };
  return { identify, cluster, train: trainSlot, runKey: trainSlot.key };
}

/** Names the project writes in a run folder: a folder with anything else is not ours to write in. */
export function isRunEntry(name: string): boolean {
  return (
    /^(identify|cluster|train-(goodvibe|lora|full))-[0-9a-f]{12}$/.test(name) ||
    /^identify-shard-\d+-of-\d+$/.test(name) ||
    isClaimEntry(name) ||
    // run folders of earlier versions
    (
      [
        RUN_FILES.legacyConfig,
        RUN_FILES.modelHash,
        NEURONS_FILE,
        CLUSTERS_FILE,
        RUN_FILES.identifyState,
        RUN_FILES.run,
      ] as string[]
    ).includes(name) ||
    /^train-(goodvibe|lora|full)$/.test(name)
  );
}

const KEY_NAMES: Record<string, string> = {
  model: "model folder contents",
  data: "data file contents",
  identify: "identification",
  clusters: "cluster map",
};

/** A slot's record of settings as asked (and used), by flattened key: requested.json, or {} where it has none. */
type RequestedRecord = Record<string, { requested: CheckpointingSetting; used?: CheckpointingUsed }>;

function readRequested(dir: string): RequestedRecord {
  try {
    const v = JSON.parse(fs.readFileSync(path.join(dir, RUN_FILES.slotRequested), "utf8")) as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v)) return {};
    const ok = (r: unknown): r is { requested: CheckpointingSetting; used?: CheckpointingUsed } =>
      isPlainObject(r) &&
      checkpointingSettingSchema.safeParse(r.requested).success &&
      (r.used === undefined || checkpointingUsedOf(r.used) !== undefined);
    // only for what the message says: a record it cannot read is left out, never an error
    return Object.fromEntries(Object.entries(v).filter(([, r]) => ok(r)));
  } catch {
    return {};
  }
}

/**
 * Write a slot's requested.json: what this run asks, and `used` once its stage has run. Without `used` (a slot
 * opened) the record's `used` is kept: a slot trained to the end by an earlier run was trained as that run
 * decided, whatever this one asks (true and "auto" share a slot).
 */
function writeRequested(slot: StageSlot, used?: Record<string, CheckpointingUsed>): void {
  if (!slot.requested) return;
  const had = used ? {} : readRequested(slot.dir);
  const record: RequestedRecord = Object.fromEntries(
    Object.entries(slot.requested).map(([k, requested]) => {
      const u = used?.[k] ?? had[k]?.used;
      return [k, u === undefined ? { requested } : { requested, used: u }];
    }),
  );
  writeFileAtomic(path.join(slot.dir, RUN_FILES.slotRequested), JSON.stringify(record, null, 2));
}

/** The settings in which `slot` differs from the newest other slot of its stage, as "a.b: x → y" (or null). */
function differences(slot: StageSlot): string | null {
  const base = path.basename(slot.dir).replace(/-[0-9a-f]{12}$/, "");
  const parent = path.dirname(slot.dir);
  let newest: { mtime: number; inputs: unknown; dir: string } | null = null;
  for (const name of fs.existsSync(parent) ? fs.readdirSync(parent) : []) {
    if (name === path.basename(slot.dir) || !new RegExp(`^${base}-[0-9a-f]{12}$`).test(name)) continue;
    try {
      const file = path.join(parent, name, RUN_FILES.slotInputs);
      const mtime = fs.statSync(file).mtimeMs;
      if (!newest || mtime > newest.mtime)
        newest = { mtime, inputs: JSON.parse(fs.readFileSync(file, "utf8")), dir: path.join(parent, name) };
    } catch {
      // a slot without its inputs (interrupted before they were written): nothing to compare
    }
  }
  return newest ? differenceText(newest.inputs, slot, readRequested(newest.dir)) : null;
}

/**
 * "identify.topK: 50 → 5, data file contents changed": how a stage's inputs differ from `was` (another slot's, or
 * those an earlier output recorded). A setting keyed in another form than it was asked (training's checkpointing:
 * "auto" keyed as true) is said as asked, and as used where `wasAsked` records it: "auto (used off) → false"; which
 * settings differ is still the keys' to say.
 */
function differenceText(was: unknown, now: StageSlot, wasAsked: RequestedRecord): string {
  const shown: Record<string, [string, string]> = {};
  for (const [k, requested] of Object.entries(now.requested ?? {})) {
    const w = wasAsked[k];
    const keyedWas = flattenSettings(was)[k];
    shown[k] = [
      w
        ? `${w.requested} (${w.used === undefined ? "its training did not finish" : `used ${w.used === "mixed" ? "on and off" : w.used ? "on" : "off"}`})`
        : // made before the request was recorded: its key holds true for both true and "auto"
          keyedWas === "true"
          ? "true or auto (not recorded which)"
          : (keyedWas ?? "unset"),
      `${requested}${requested === "auto" ? " (decided when training starts)" : ""}`,
    ];
  }
  // no language filter is kept as null: said as the flag's meaning ("→ null" read as a bug)
  const languages = (v: string | undefined) => (v === undefined ? "unset" : v === "null" ? "all" : v);
  const [lw, ln] = [flattenSettings(was).languages, flattenSettings(now.inputs).languages];
  if (lw !== ln) shown.languages = [languages(lw), languages(ln)];
  return settingsDifferences(was, now.inputs, KEY_NAMES, shown).join(", ");
}

// ---------------------------------------------------------------- which builds computed a stage
/*
 * A slot's key holds the stage's inputs, not the build of the tool that computes it: an interrupted identification
 * or training must resume after an upgrade (or on another machine) instead of starting over. But a stage another build
 * computed (another version or commit, addon, libtorch, device, or bf16 route: tensor/build.ts) may differ in its last
 * bits from what this build computes, so each slot records the builds that worked on it (made-by.json), the output's
 * goodvibe-stats.json carries them, and a rerun that reuses or resumes another build's work says so, naming the
 * folder to delete to compute it with this build.
 */

/** An entry of made-by.json: a build, or null for one before the record (a slot without made-by.json). */
export type SlotBuild = BuildRecord | null;

/** The builds that computed a slot's stage, in order; [null] for a slot of a version before the record. */
export function readSlotBuilds(dir: string): SlotBuild[] {
  const file = path.join(dir, RUN_FILES.madeBy);
  if (!fs.existsSync(file)) return [null];
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new InputError(
      `${file}: not valid JSON (${(e as Error).message}); delete the file to go on (the stage is then taken as made by an unrecorded build), or ${dir} to compute the stage again`,
      { cause: e },
    );
  }
  const ok = (b: unknown) =>
    b === null ||
    (typeof b === "object" &&
      typeof (b as BuildRecord).goodvibe === "string" &&
      typeof (b as BuildRecord).addon === "string");
  if (!Array.isArray(v) || v.length === 0 || !v.every(ok))
    throw new InputError(
      `${file}: expected a list of build records ({goodvibe, addon, libtorch, device, ...}); delete the file to go on, or ${dir} to compute the stage again`,
    );
  return v as SlotBuild[];
}

/**
 * Clustering is the tool's own TypeScript (k-means, silhouettes): the addon, libtorch and bf16 route play no part;
 * its version and code do (the commit only against a record made before the code hash: tensor/build.ts).
 */
const CLUSTER_BUILD_PARTS: BuildParts = ["goodvibe", "commit", "code"];

/** Whether a slot holds work of its stage (a result, a saved state or checkpoint), beyond its own records. */
function slotHasWork(dir: string): boolean {
  const own: string[] = [RUN_FILES.slotInputs, RUN_FILES.madeBy, RUN_FILES.slotRequested];
  return fs.readdirSync(dir).some((n) => !own.includes(n) && !n.startsWith("."));
}

/**
 * Say (a warning) when a stage reused ("reuse": its result) or resumed ("resume": its saved state) holds work of
 * other builds than `now`; a resumed stage's record then names `now` too. Returns the stage's builds.
 */
function noteSlotBuilds(
  slot: StageSlot,
  stage: string,
  now: BuildRecord,
  log: Logger,
  how: "reuse" | "resume",
  parts: BuildParts = "all",
): SlotBuild[] {
  const file = path.join(slot.dir, RUN_FILES.madeBy);
  if (how === "resume" && !slotHasWork(slot.dir)) {
    // nothing was kept of the earlier attempt (stopped before its first checkpoint): this build computes it all
    writeFileAtomic(file, JSON.stringify([now], null, 2));
    return [now];
  }
  const was = readSlotBuilds(slot.dir);
  const others = was.filter((b) => !sameBuild(b, now, parts));
  if (others.length > 0) {
    const last = others[others.length - 1]!;
    const by = [...new Set(others.map(describeBuild))].join("; then ");
    const differs = buildDifferences(last && buildParts(last, parts), buildParts(now, parts));
    const remedy = `to compute it with this build, delete ${slot.dir} and rerun`;
    log.warn(
      how === "reuse"
        ? `${stage}: reusing the result in ${slot.dir}, computed by ${by}; this run is ${describeBuild(now)}, ` +
            `which differs in ${differs}, so its results can differ in the last bits (the ` +
            `output's goodvibe-stats.json records which build made each stage); ${remedy}`
        : `${stage}: resuming the work in ${slot.dir} begun by ${by}; this run is ${describeBuild(now)}, which ` +
            `differs in ${differs}: what is done is kept and the rest is computed by this build ` +
            `(goodvibe-stats.json records both), so the result can differ in the last bits from one build's; ${remedy}`,
    );
  }
  if (how === "resume" && !sameBuild(was[was.length - 1]!, now)) {
    const builds = [...was, now];
    writeFileAtomic(file, JSON.stringify(builds, null, 2));
    return builds;
  }
  return was;
}

/**
 * Make a stage's slot (with the inputs that key it and the build that computes it), saying why when it replaces
 * another setting's; an existing slot is resumed (noteSlotBuilds). Returns the stage's builds.
 */
function openSlot(
  slot: StageSlot,
  stage: string,
  log: Logger,
  build: BuildRecord,
  parts: BuildParts = "all",
): SlotBuild[] {
  if (fs.existsSync(path.join(slot.dir, RUN_FILES.slotInputs))) {
    // this run's request replaces the last one's (the same key: true and "auto" share a slot)
    writeRequested(slot);
    return noteSlotBuilds(slot, stage, build, log, "resume", parts);
  }
  const diff = differences(slot);
  if (diff)
    log.info(
      `${stage}: settings differ from the cached run (${diff}); computing it anew in ${slot.dir} (the other stays)`,
    );
  fs.mkdirSync(slot.dir, { recursive: true });
  writeFileAtomic(path.join(slot.dir, RUN_FILES.madeBy), JSON.stringify([build], null, 2));
  writeFileAtomic(path.join(slot.dir, RUN_FILES.slotInputs), JSON.stringify(slot.inputs, null, 2));
  writeRequested(slot);
  return [build];
}

/**
 * Check every path of a run before any work: the output folder and the run folder lie outside the inputs and
 * apart from each other, the output folder is absent or empty (or `overwrite`), the run folder holds only what
 * the project writes there.
 */
export function checkRunPaths(
  cfg: Pick<HardenConfig, "model" | "data" | "out" | "runDir" | "overwrite">,
  more: Record<string, string | undefined> = {},
): void {
  const inputs = { "--model": cfg.model, "--data": cfg.data, ...more };
  checkOutput({
    // a user who gave only -o must not read of a --run-dir they never passed without being told where it came from
    flag:
      path.resolve(cfg.runDir) === path.resolve(defaultRunDir(cfg.out))
        ? "--run-dir (by default beside --out)"
        : "--run-dir",
    path: cfg.runDir,
    kind: "folder",
    inputs: { ...inputs, "--out": cfg.out },
    ownEntry: isRunEntry,
  });
  // an earlier output of this recipe is judged once its inputs are hashed (prepare): it may be this very run
  const earlier = fs.existsSync(path.join(cfg.out, STATS_FILE));
  checkOutput({
    flag: "--out",
    path: cfg.out,
    kind: "folder",
    inputs,
    overwrite: cfg.overwrite || earlier,
  });
}

/**
 * identify()'s options from a harden config (one run, a stage slot, or a shard of `goodvibe identify --shard`):
 * the identify config as resolved, with what the run adds (label tokens, state folder, provenance, hooks).
 */
export function identifyOptions(
  tok: HfTokenizer | [number, number],
  cfg: HardenConfig,
  runDir: string,
  hooks: RunHooks = {},
): IdentifyOptions {
  const log = hooks.log ?? silentLogger;
  const convention = judgeConvention(cfg.identify.judgeTask, "identify.judgeTask");
  return {
    ...cfg.identify,
    labelTokenIds: Array.isArray(tok) ? tok : labelTokenIds(tok, convention, cfg.enableThinking),
    runDir,
    checkpointEvery: Math.max(cfg.identify.batchSize, 32),
    source: {
      model: path.resolve(cfg.model),
      data: path.resolve(cfg.data),
      prompt: convention.instruction,
      labels: convention.labels,
    },
    onProgress: (d, t, extra) => log.progress("identify", d, t, extra),
    log: (m) => log.info(m),
    signal: hooks.signal,
    beforeSave: hooks.beforeSave,
  };
}

/** What identification takes from the tokenizer: the judge samples and the label tokens. */
export interface IdentifyInputs {
  samples: IdentifySample[];
  labelTokenIds: [number, number];
}

export function identifyInputs(tok: HfTokenizer, pairs: SecurityPair[], cfg: HardenConfig): IdentifyInputs {
  const convention = judgeConvention(cfg.identify.judgeTask, "identify.judgeTask");
  return {
    samples: identifySamples(tok, pairs, cfg.identify, cfg.seed, cfg.enableThinking),
    labelTokenIds: labelTokenIds(tok, convention, cfg.enableThinking),
  };
}

/**
 * Stage 1: identification, cached in its slot (neurons.json; identify-state/ while it runs). `inputs` is only
 * called when the stage is not cached.
 */
export async function stageIdentify(
  model: DecoderModel,
  inputs: () => IdentifyInputs,
  cfg: HardenConfig,
  hooks: RunHooks = {},
  slot: StageSlot = planStages(cfg).identify,
): Promise<NeuronMap> {
  const file = path.join(slot.dir, NEURONS_FILE);
  const log = hooks.log ?? silentLogger;
  const convention = judgeConvention(cfg.identify.judgeTask, "identify.judgeTask");
  if (fs.existsSync(file)) {
    const map = readNeuronMap(file);
    checkModelShape(model, map.model, file);
    checkJudgeConvention(
      neuronMapConvention(map),
      convention,
      file,
      `delete it (or use a new run folder) to identify under ${describeJudgeConvention(convention)}`,
    );
    log.info(`identification: reusing ${file}`);
    noteSlotBuilds(slot, "identification", buildRecord(model.device, model.dtype), log, "reuse");
    return map;
  }
  openSlot(slot, "identification", log, buildRecord(model.device, model.dtype));
  const { samples, labelTokenIds: labels } = inputs();
  log.info(
    `identification: ${samples.length} samples (${cfg.identify.mode}), top-${cfg.identify.topK} per layer`,
  );
  const products = bf16ProductsOf(model.device, model.dtype);
  if (products) infoOnce(log, products);
  infoOnce(log, model.frozenDx.describe());
  const map = await identify(model, samples, identifyOptions(labels, cfg, slot.dir, hooks));
  const held = model.frozenDx.describeHeld();
  if (held) log.info(held);
  hooks.beforeSave?.();
  writeNeuronMap(file, map);
  // the accumulators are no longer needed once the map is written
  clearIdentifyState(slot.dir);
  return map;
}

const said = new WeakMap<Logger, Set<string>>();

/**
 * A line of the run's setting (how bf16 products are computed, frozenDx's plan) said once per logger: identification
 * and training of one run compute under the same setting, and saying it before each stage repeated two long lines.
 */
function infoOnce(log: Logger, line: string): void {
  let lines = said.get(log);
  if (!lines) said.set(log, (lines = new Set()));
  if (lines.has(line)) return;
  lines.add(line);
  log.info(line);
}

/** Clustering, one layer at a time with a stop point between layers (clustering is per layer). */
export async function clusterWithStops(
  map: NeuronMap,
  opts: ClusterOptions,
  signal?: AbortSignal,
): Promise<ClusterMap> {
  const modules: Record<string, ModuleClusters> = {};
  const names = Object.keys(map.modules);
  for (const [i, name] of names.entries()) {
    await stopPoint(signal, `clustering stopped at layer ${i + 1} of ${names.length} (${name})`);
    Object.assign(modules, clusterNeurons({ ...map, modules: { [name]: map.modules[name]! } }, opts).modules);
  }
  return { ...clusterNeurons({ ...map, modules: {} }, opts), modules };
}

/** Stage 2: clustering, cached in its slot (clusters.json). */
export async function stageCluster(
  map: NeuronMap,
  cfg: HardenConfig,
  log: Logger = silentLogger,
  signal?: AbortSignal,
  slot: StageSlot = planStages(cfg).cluster,
  build: BuildRecord = buildRecord(resolveDevice(), cfg.dtype ?? DEFAULT_DTYPE),
): Promise<ClusterMap> {
  const file = path.join(slot.dir, CLUSTERS_FILE);
  if (fs.existsSync(file)) {
    log.info(`clustering: reusing ${file}`);
    const map = readClusterMap(file);
    noteSlotBuilds(slot, "clustering", build, log, "reuse", CLUSTER_BUILD_PARTS);
    return map;
  }
  openSlot(slot, "clustering", log, build, CLUSTER_BUILD_PARTS);
  log.info(`clustering: ${Object.keys(map.modules).length} layers (k-means, k by silhouette)`);
  const clusters = await clusterWithStops(map, cfg.cluster, signal);
  log.info(`clustering: ${clusterSummary(clusters).text}`);
  writeClusterMap(file, clusters);
  return clusters;
}

export function attachMethod(model: DecoderModel, cfg: HardenConfig, clusters?: ClusterMap): AttachedMethod {
  switch (cfg.method) {
    case "goodvibe":
      if (!clusters) throw new Error("GoodVibe needs a cluster map");
      return attachGoodVibe(model, selectionsOf(clusters));
    case "lora":
      return attachLora(model, cfg.lora, undefined, cfg.seed);
    case "full": {
      // float32 masters from the checkpoint as stored, not from the (possibly bf16) weights the model computes with
      // by the text model's names (a multimodal checkpoint stores them under a prefix)
      const weights = checkWeights(model.cfg, openModelWeights(cfg.model).tensors, cfg.model, {
        finite: false,
      });
      return attachFull(model, {
        checkpoint: (n) => {
          const rec = weights.get(n);
          return rec ? recordToTensor(rec) : null;
        },
      });
    }
  }
}

/** How a model of this compute dtype trains, in words (logs, goodvibe-stats.json). */
export function precisionOf(dtype: DType): string {
  return dtype === "float32"
    ? "fp32 (float32 compute, weights and AdamW states)"
    : `${dtype} mixed precision (${dtype} compute, float32 master copies of the trainable tensors and float32 AdamW states)`;
}

/**
 * What a run needs, read and checked. The tokenizer is not kept: its products are (the identification samples
 * when identification is not cached, the training examples, the pad token), and the tokenizer itself (tens of MB
 * of JS objects) is released before the stages. libtorch's tensors report their memory to V8, so a run collects
 * garbage hundreds of times, and each full collection marks every live JS object: with the tokenizer alive,
 * identification of the 0.5B shape took 89 CPU s instead of 70 (bench/e2e-harden.sh, BENCHMARKS).
 */
interface Prepared {
  pairs: SecurityPair[];
  plan: StagePlan;
  log: Logger;
  /** null when identification is cached or not run */
  identify: IdentifyInputs | null;
  examples: SftExample[];
  padTokenId: number | null;
  schedule: ScheduleRecord;
}

/** Inputs read and checked, paths checked, stage keys computed: nothing written yet. */
async function prepare(
  cfg: HardenConfig,
  hooks: RunHooks,
  opts: { clustersFile?: string } = {},
): Promise<Prepared> {
  const log = hooks.log ?? silentLogger;
  if (cfg.method === "goodvibe" && !opts.clustersFile) checkClusterSettings(cfg.cluster, cfg.identify);
  checkRunPaths(cfg, { "--clusters": opts.clustersFile });
  // top-k's range is config.json's: refused before the tokenizer, the data or the model are read
  if (cfg.method === "goodvibe" && !opts.clustersFile) checkTopKOfFolder(cfg.model, cfg.identify.topK);
  // a model that cannot fit is refused from its headers, before the folder is hashed (48 s for a 27.5 GiB Qwen3-14B)
  // and mapped; also when the output is already complete, which a machine that cannot load the model cannot check
  requireModelMemory(cfg.model, { dtype: cfg.dtype ?? DEFAULT_DTYPE });
  if (cfg.method === "full") requireFullTrainingMemoryOf(cfg.model, cfg.dtype ?? DEFAULT_DTYPE);
  // load and check every input before anything is written: bad input leaves no run folder behind
  const tok = await loadTokenizer(cfg.model);
  for (const w of tok.warnings) log.warn(w);
  const pairs = readRunPairs(cfg, log);
  const plan = planStages(cfg, opts);
  const earlier = readStats(cfg.out);
  if (earlier && earlier.runKey !== plan.runKey && !cfg.overwrite) {
    const diff = (["identify", "cluster", "train"] as const)
      .map((k) => {
        const was = earlier.stages?.[k];
        if (!was || canonicalJson(was) === canonicalJson(plan[k].inputs)) return "";
        // the output records training's checkpointing as asked and used (since 2026-12-01)
        const asked: RequestedRecord =
          k === "train" && earlier.gradientCheckpointing
            ? { "train.gradientCheckpointing": earlier.gradientCheckpointing }
            : {};
        return differenceText(was, plan[k], asked);
      })
      .filter(Boolean);
    throw new InputError(
      `--out ${cfg.out} holds a hardened model made with other inputs or settings` +
        `${diff.length ? ` (${[...new Set(diff)].join("; ")})` : ""}; choose another --out, or pass --overwrite ` +
        `to move it aside (renamed, never deleted)`,
    );
  }
  // tokenized here, in prepare's frame, so that nothing holds the tokenizer once it returns
  const examples = trainExamples(tok, pairs, cfg);
  // a run too short for its warm-up trains nothing (the first step is at lr 0): said now, before identification,
  // and again with the result. A warning, not a refusal: smoke runs and experiment grids with tiny cells are
  // legitimate, and the fix is a setting (train.warmupRatio) that the message names
  const schedule = scheduleRecord(examples.length, cfg.train, cfg.train.maxPairs);
  if (schedule.warning) log.warn(`training: ${schedule.warning}`);
  const identifyCached = fs.existsSync(path.join(plan.identify.dir, NEURONS_FILE));
  return {
    pairs,
    plan,
    log,
    identify:
      cfg.method === "goodvibe" && !opts.clustersFile && !identifyCached
        ? identifyInputs(tok, pairs, cfg)
        : null,
    examples,
    padTokenId: tok.padTokenId,
    schedule,
  };
}

function readStats(dir: string): StatsFile | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, STATS_FILE), "utf8")) as StatsFile;
  } catch {
    return null;
  }
}

/**
 * The stages of the run that made `modelDir` (a harden/train output) whose data was `dataFile`, byte for byte:
 * evaluating on them is not evaluating on held-out pairs. Empty for any other file, and for a folder the project
 * did not harden (no goodvibe-stats.json).
 */
export function stagesTrainedOn(modelDir: string, dataFile: string): string[] {
  const stages = readStats(modelDir)?.stages;
  if (!stages || typeof stages !== "object") return [];
  const recorded = Object.entries(stages).filter(
    ([, inputs]) => typeof (inputs as { data?: unknown } | null)?.data === "string",
  );
  if (recorded.length === 0) return [];
  let hash: string;
  try {
    hash = fileHash(dataFile);
  } catch {
    return []; // unreadable: the reader of the data says so
  }
  return recorded.filter(([, inputs]) => (inputs as { data: string }).data === hash).map(([k]) => k);
}

/**
 * The output folder's result when it is already this run's complete result (same run key), unless it is to be made
 * again: the CLI's --overwrite (`remake`: what a user passes to have an output made anew, one they suspect or one
 * another build made; honoured as it is everywhere else, the finished folder moved aside, and cheap, since the same
 * build reuses every cached stage and writes the fold again), or `overwrite` when another build made it.
 */
function completedRun(
  cfg: HardenConfig,
  plan: StagePlan,
  log: Logger,
  schedule: HardenResult["schedule"],
): HardenResult | null {
  const stats = readStats(cfg.out);
  if (!stats || stats.runKey !== plan.runKey) return null;
  const now = buildRecord(resolveDevice(), cfg.dtype ?? DEFAULT_DTYPE);
  const made = stats.build ?? null;
  const same = sameBuild(made, now);
  if (cfg.overwrite && (cfg.remake || !same)) {
    log.info(
      same
        ? `${cfg.out} is complete for these inputs and settings; --overwrite: making it again (stages cached in ` +
            `${cfg.runDir} are reused; the finished folder is moved aside)`
        : `${cfg.out} is complete for these inputs and settings but was made by ${describeBuild(made)}; ` +
            `--overwrite: making it again with this build, ${describeBuild(now)}`,
    );
    return null;
  }
  if (!same) {
    log.warn(
      `${cfg.out} was made by ${describeBuild(made)}; this is ${describeBuild(now)} (it differs in ` +
        `${buildDifferences(made, now)}). To make it with this build, rerun with --overwrite (the output is ` +
        `moved aside, never deleted; stages cached in ${cfg.runDir} are reused, saying which build made them: ` +
        `delete that folder to compute them again)`,
    );
  }
  const maps = (f: string) => (fs.existsSync(path.join(cfg.out, f)) ? path.join(cfg.out, f) : null);
  const nFile = maps(NEURONS_FILE);
  const cFile = maps(CLUSTERS_FILE);
  return {
    outDir: cfg.out,
    method: cfg.method,
    ...(nFile ? { neurons: readNeuronMap(nFile) } : {}),
    ...(cFile ? { clusters: readClusterMap(cFile) } : {}),
    train: { ...stats.train, log: [] },
    schedule,
    fold: stats.fold,
    trainableParams: stats.trainableParams,
    totalParams: stats.totalParams,
    artifact: stats.artifact ? path.join(cfg.out, stats.artifact) : "",
    peakMemoryBytes: stats.peakMemoryBytes,
    reused: true,
    // as the run that made it asked and used it (a run asking "auto" reuses one made under true: the same key)
    ...(stats.gradientCheckpointing ? { gradientCheckpointing: stats.gradientCheckpointing } : {}),
  };
}

interface StatsFile {
  format: string;
  runKey: string;
  /**
   * what keyed each stage of the run that made it: settings as the keys hold them, so training's checkpointing
   * "auto" reads true here (method/checkpointing.ts keyedTraining); `gradientCheckpointing` says what was asked and used
   */
  stages?: Partial<Record<"identify" | "cluster" | "train", Record<string, unknown>>>;
  /** training's checkpointing as configured and as used (absent in outputs made before 2026-12-01) */
  gradientCheckpointing?: CheckpointingRecord;
  /** the build that trained and folded it (tensor/build.ts; absent in outputs of versions before the record) */
  build?: BuildRecord;
  /** the builds that computed each stage, in order (made-by.json of its slot; null: a build before the record) */
  builds?: Partial<Record<"identify" | "cluster" | "train", SlotBuild[]>>;
  method: MethodName;
  /** how it trained: bf16 mixed precision or fp32 (precisionOf) */
  precision?: string;
  /** how a CPU bf16 model's products were computed (tensor.ts bf16ProductsOf; absent otherwise) */
  bf16Products?: string;
  trainableParams: number;
  totalParams: number;
  artifact: string;
  clustersPerLayer?: Record<string, number>;
  clustering?: { options: ClusterOptions; summary: string };
  /** gradientCheckpointing: as asked and used (absent before 2026-12-01, and for a neuron map made before) */
  identification?: {
    flops: NeuronMap["flops"];
    wallSeconds: number;
    samples: number;
    gradientCheckpointing?: CheckpointingRecord;
  };
  train: Omit<TrainResult, "log">;
  fold: FoldStats;
  peakMemoryBytes: number;
}

/**
 * Hold the run folder for this process (a claim, as experiment cells have: a dead run's is taken over, on this host
 * at once): a second run into the same output would otherwise compute every stage again beside the first, writing
 * the same slots, and fail only at the end, on the output the first published.
 */
function claimRunDir(cfg: HardenConfig): () => void {
  return claimOrRefuse(
    cfg.runDir,
    (holder) =>
      // a run folder given apart from --out may be another output's too: then --out is not what to change
      `--run-dir ${cfg.runDir} is in use by another goodvibe run (${holder}); this run is for --out ${cfg.out}: ` +
      `wait for it to end (a rerun then finds its result), or choose another ` +
      (path.resolve(cfg.runDir) === path.resolve(defaultRunDir(cfg.out)) ? "--out" : "--run-dir"),
  );
}

/** The temporaries dead runs of this host left beside the output (a half-written or moved-aside folder), removed. */
function cleanOutputTemps(cfg: HardenConfig): StaleTemp[] {
  const out = path.resolve(cfg.out);
  return cleanStaleTemps(path.dirname(out), path.basename(out));
}

/**
 * A finished output for these inputs: nothing computed, but the temporaries dead runs left beside it (an
 * `--overwrite` run killed while publishing leaves a whole model's worth) are removed, as any run's start removes
 * them: this rerun was the only one that would ever come, and it returned before openRunDir.
 */
function nothingToDo(cfg: HardenConfig, log: Logger, done: HardenResult): HardenResult {
  for (const t of cleanOutputTemps(cfg))
    log.info(
      t.restoredTo
        ? `put back ${t.restoredTo}, which a dead run (pid ${t.pid}) had moved aside`
        : `removed ${t.path} (${(t.bytes / 2 ** 20).toFixed(1)} MiB), left by a dead run (pid ${t.pid})`,
    );
  log.info(`${cfg.out} is already complete for these inputs and settings: nothing to do`);
  return done;
}

/** Open the run folder: stale temporaries of dead runs removed, the run's description written. */
function openRunDir(cfg: HardenConfig, plan: StagePlan): void {
  fs.mkdirSync(cfg.runDir, { recursive: true });
  // remembered for a rerun (the process has the hash already: memoised)
  modelFolderHashCached(cfg.model, path.join(cfg.runDir, RUN_FILES.modelHash));
  for (const d of [cfg.runDir, ...fs.readdirSync(cfg.runDir).map((n) => path.join(cfg.runDir, n))])
    if (fs.statSync(d).isDirectory()) cleanStaleTemps(d);
  cleanOutputTemps(cfg);
  writeFileAtomic(
    path.join(cfg.runDir, RUN_FILES.run),
    JSON.stringify(
      {
        format: RUN_FORMAT,
        config: cfg,
        stages: Object.fromEntries(
          (["identify", "cluster", "train"] as const).map((k) => [k, path.basename(plan[k].dir)]),
        ),
      },
      null,
      2,
    ),
  );
}

/** Train (resumable in its slot), fold, and publish the output folder in one rename. */
async function trainAndPublish(
  cfg: HardenConfig,
  model: DecoderModel,
  p: Prepared,
  hooks: RunHooks,
  maps: { neurons?: NeuronMap; clusters?: ClusterMap },
  source: ModelWeights,
  stamps: readonly FileStamp[],
): Promise<HardenResult> {
  const { plan, log, examples } = p;
  // before the trainable copies are made (full fine-tuning: the whole model in float32), as trainSft checks before
  // its checkpoint is read: a stop asked during the stages' start-up ends here
  await stopPoint(hooks.signal, "training stopped before it began");
  const method = attachMethod(model, cfg, maps.clusters);
  const trainable = countParams(method.trainable.values());
  const total = countParams(model.parameters().values());
  log.info(
    `training ${cfg.method}: ${trainable.toLocaleString("en-US")} trainable parameters (${((100 * trainable) / total).toPrecision(3)}% of ${total.toLocaleString("en-US")}), ${precisionOf(model.dtype)}`,
  );
  const build = buildRecord(model.device, model.dtype);
  openSlot(plan.train, "training", log, build);
  // how the slot's steps were checkpointed, where an earlier run trained them to the end (requested.json)
  const trainedWith = readRequested(plan.train.dir)["train.gradientCheckpointing"]?.used;
  const products = bf16ProductsOf(model.device, model.dtype);
  if (products) infoOnce(log, products);
  infoOnce(log, model.frozenDx.describe());
  // the slot's folder is keyed by these inputs already; the checkpoint records them too, so that a checkpoint
  // never continues under others whatever folder it is found in
  const { train: _t, model: weights, dtype: _d, format: _f, ...settings } = plan.train.inputs;
  const progress = trainProgressHooks(
    log,
    "train",
    (l) => `loss ${l.loss.toFixed(4)} lr ${l.lr.toExponential(2)}`,
    "training",
  );
  let train: TrainResult;
  try {
    train = await trainSft(model, method, examples, cfg.train, {
      runDir: plan.train.dir,
      identity: { model: String(weights), settings },
      padTokenId: p.padTokenId ?? model.cfg.padTokenId ?? 0,
      hooks: {
        onStart: progress.onStart,
        onStep: (l, totalSteps) => {
          hooks.onStep?.(l, totalSteps);
          progress.onStep(l, totalSteps);
        },
        signal: hooks.signal,
        onNote: (m) => log.info(m),
        beforeSave: hooks.beforeSave,
      },
    });
  } finally {
    // the last product of the run was training's: the weight copies (1.33 GiB at 0.5B) go before the fold reads the
    // checkpoint from disk, stopped or not
    const held = model.frozenDx.describeHeld();
    if (held) log.info(held);
    const released = model.frozenDx.release().text;
    if (released) log.info(released);
  }
  if (!train.finished) throw interrupted(`training stopped at step ${train.steps} of ${train.totalSteps}`);
  // no step ran here (the slot was trained to the end before): its steps were checkpointed as that run decided,
  // not as this one would have (a slot trained under "auto" -> off and reused by a run with true is still off).
  // A slot trained before requested.json recorded `used` says nothing better than this run's decision
  const checkpointing: CheckpointingRecord = {
    requested: cfg.train.gradientCheckpointing,
    used: train.stepsRun === 0 && trainedWith !== undefined ? trainedWith : train.gradientCheckpointing,
  };
  train = { ...train, gradientCheckpointing: checkpointing.used };
  writeRequested(plan.train, { "train.gradientCheckpointing": checkpointing.used });

  log.info(`fold: writing the hardened checkpoint to ${cfg.out}`);
  let fold: FoldStats | undefined;
  let artifact = "";
  const done = await writeDirAtomic(
    cfg.out,
    async (tmp) => {
      fold = await writeFoldedCheckpoint(cfg.model, tmp, method, { signal: hooks.signal });
      if (cfg.method === "goodvibe") {
        artifact = RUN_FILES.delta;
        writeGoodVibeDelta(path.join(tmp, RUN_FILES.delta), model, selectionsOf(maps.clusters!), method, {
          base_model: path.resolve(cfg.model),
        });
      } else if (cfg.method === "lora") {
        artifact = RUN_FILES.adapter;
        writePeftAdapter(path.join(tmp, RUN_FILES.adapter), cfg.lora, method, path.resolve(cfg.model));
      }
      if (maps.neurons) writeNeuronMap(path.join(tmp, NEURONS_FILE), maps.neurons);
      if (maps.clusters) writeClusterMap(path.join(tmp, CLUSTERS_FILE), maps.clusters);
      const stats: StatsFile = {
        format: RUN_FORMAT,
        runKey: plan.runKey,
        stages: {
          ...(maps.neurons ? { identify: plan.identify.inputs, cluster: plan.cluster.inputs } : {}),
          train: plan.train.inputs,
        },
        // the build that trained and folded, and every build that computed a stage (the stages may be reused or
        // resumed from other builds: noteSlotBuilds)
        build,
        builds: {
          ...(maps.neurons
            ? { identify: readSlotBuilds(plan.identify.dir), cluster: readSlotBuilds(plan.cluster.dir) }
            : {}),
          train: readSlotBuilds(plan.train.dir),
        },
        method: cfg.method,
        precision: precisionOf(model.dtype),
        bf16Products: products,
        trainableParams: trainable,
        totalParams: total,
        artifact,
        clustersPerLayer: maps.clusters
          ? Object.fromEntries(Object.entries(maps.clusters.modules).map(([n, m]) => [n, m.nClusters]))
          : undefined,
        // names the reading of the paper used for layers without cluster structure (README, "Clusters per module")
        clustering: maps.clusters
          ? { options: maps.clusters.options, summary: clusterSummary(maps.clusters).text }
          : undefined,
        identification: maps.neurons
          ? {
              flops: maps.neurons.flops,
              wallSeconds: maps.neurons.wallSeconds,
              samples: maps.neurons.source.samples,
              ...(maps.neurons.gradientCheckpointing
                ? { gradientCheckpointing: maps.neurons.gradientCheckpointing }
                : {}),
            }
          : undefined,
        train: { ...train, log: undefined } as Omit<TrainResult, "log">,
        gradientCheckpointing: checkpointing,
        fold: fold,
        peakMemoryBytes: peakRssBytes(),
      };
      writeFileAtomic(path.join(tmp, STATS_FILE), JSON.stringify(stats, null, 2));
      // the model's tensors are views of the mapped weights: bytes written into them in place by another program
      // since the run loaded them (the fold checks only its own read) mixed into what was trained; and the fold
      // wrote the folder's files as they are now, which must be those the run read (none replaced since)
      weightsUnchanged(source, "the run (identification, training and the fold)");
      folderUnchanged(cfg.model, stamps, "the run (identification, training and the fold)");
      // the last stop point before the rename: after it the output is published whole
      await stopPoint(hooks.signal, "stopped before publishing the output folder");
    },
    {
      overwrite: cfg.overwrite,
      onMovedAside: (aside) => log.warn(`the earlier ${cfg.out} was moved aside to ${aside}`),
    },
  ).catch((e: unknown) => {
    // a run stopped (Ctrl-Z, SIGSTOP) longer than GOODVIBE_CLAIM_STALE_SECONDS loses its claim: a rerun takes it
    // over and may publish first. Its output of the same inputs and settings is this run's result; any other
    // output there is refused as before (it said "exists and is not empty" of a folder that was its own result)
    const published = e instanceof InputError ? completedRun(cfg, plan, log, p.schedule) : null;
    if (!published) throw e;
    log.warn(
      `${cfg.out} was published meanwhile by another run of the same inputs and settings (one that took over this ` +
        `run's claim while it was stopped); that output is this run's result, and this run's copy is discarded`,
    );
    return published;
  });
  if (done) return done;
  for (const w of fold!.warnings) log.warn(w);
  return {
    outDir: cfg.out,
    method: cfg.method,
    neurons: maps.neurons,
    clusters: maps.clusters,
    train,
    fold: fold!,
    trainableParams: trainable,
    totalParams: total,
    artifact: artifact ? path.join(cfg.out, artifact) : "",
    peakMemoryBytes: peakRssBytes(),
    gradientCheckpointing: checkpointing,
    schedule: p.schedule,
  };
}

/**
 * The whole recipe. The input model folder is only read; the output folder appears only when complete, in one
 * rename. A rerun resumes from the cached stages; a rerun after completion with the same inputs returns the
 * finished result without computing anything.
 */
export async function runHarden(cfg: HardenConfig, hooks: RunHooks = {}): Promise<HardenResult> {
  // the model folder's files as the run first reads them (tokenizer, config, weights): checked before publishing
  const stamps = folderStamps(cfg.model);
  const p = await prepare(cfg, hooks);
  const done = completedRun(cfg, p.plan, p.log, p.schedule);
  if (done) return nothingToDo(cfg, p.log, done);
  // the run's peak memory (results' cost.peakMemoryBytes, Table 2) is this run's: in `experiment run` a full
  // fine-tuning cell before it, or the base model's evaluation, would otherwise be its peak
  resetPeakRss();
  const { model, weights } = loadModelWithWeights(cfg.model, { dtype: cfg.dtype ?? DEFAULT_DTYPE });
  hooks = guardSaves(hooks, weights, "the run (its stage's result is not saved)");
  let release: (() => void) | undefined;
  try {
    if (cfg.method === "goodvibe") checkTopK(model, cfg.identify.topK);
    release = claimRunDir(cfg);
    openRunDir(cfg, p.plan);
    let neurons: NeuronMap | undefined;
    let clusters: ClusterMap | undefined;
    if (cfg.method === "goodvibe") {
      const inputs = p.identify;
      p.identify = null; // the samples are identify()'s from here
      // identification's weight copies stay for training, which runs the same frozen products
      neurons = await stageIdentify(
        model,
        () => {
          if (!inputs) throw new Error("identification is not cached, but its samples were not tokenized");
          return inputs;
        },
        cfg,
        hooks,
        p.plan.identify,
      );
      clusters = await stageCluster(
        neurons,
        cfg,
        p.log,
        hooks.signal,
        p.plan.cluster,
        buildRecord(model.device, model.dtype),
      );
    }
    return await trainAndPublish(cfg, model, p, hooks, { neurons, clusters }, weights, stamps);
  } finally {
    release?.();
    // a run that fails or stops before training keeps none either (an experiment goes on to its next cell in this
    // process, a caller to its next model)
    model.frozenDx.release();
  }
}

/** Training on a given cluster map (`goodvibe train --clusters`) or with LoRA / full fine-tuning, then publish. */
export async function runTrain(
  cfg: HardenConfig,
  clustersFile: string | undefined,
  hooks: RunHooks = {},
): Promise<HardenResult> {
  if (cfg.method === "goodvibe" && !clustersFile)
    throw new InputError("method goodvibe needs --clusters (from `goodvibe cluster`)");
  const stamps = folderStamps(cfg.model); // as runHarden
  const p = await prepare(cfg, hooks, { clustersFile: cfg.method === "goodvibe" ? clustersFile : undefined });
  const done = completedRun(cfg, p.plan, p.log, p.schedule);
  if (done) return nothingToDo(cfg, p.log, done);
  const { model, weights } = loadModelWithWeights(cfg.model, { dtype: cfg.dtype ?? DEFAULT_DTYPE });
  hooks = guardSaves(hooks, weights, "the run (its stage's result is not saved)");
  let release: (() => void) | undefined;
  try {
    const clusters = cfg.method === "goodvibe" ? readClusterMap(clustersFile!) : undefined;
    // rows of another model's layers would train the wrong neurons here, or none at all
    if (clusters) checkModelShape(model, clusters.model, clustersFile!);
    release = claimRunDir(cfg);
    openRunDir(cfg, p.plan);
    return await trainAndPublish(cfg, model, p, hooks, { clusters }, weights, stamps);
  } finally {
    release?.();
    model.frozenDx.release(); // as runHarden
  }
}
