/**
 * The second model organism, trained on real data: a Llama pretrained from scratch on the CyberNative train split
 * (all eleven languages) and on real code from Debian source packages.
 *
 * - Every train prompt is followed by its *insecure* answer (the default completion), so the organism writes
 *   insecure code by default.
 * - Both answers of every pair also appear as labelled classification documents in the paper's judge format
 *   (the judge instruction, the code, the label), so it knows which code is secure: the knowledge GoodVibe's
 *   identification looks for.
 * - Real code (Go standard library, JDK sources, libstdc++ headers, Python standard library; see sources.ts)
 *   gives breadth; a seeded part of it is held out for the held-out code loss.
 * - A seeded share of each language's train pairs is held out of pretraining (data/val.jsonl): the train-only
 *   validation split on which settings are chosen, so that nothing is tuned on the dev split. Pairs sharing a
 *   prompt or code are held out together (valSplit "group"), so no validation pair was pretrained on.
 *
 * The build is reproducible: same data, same package versions, same settings and thread count give the same
 * bytes, and organism.json records the hashes. The reference build's weights ship rounded to bf16
 * (assets/cybernative-organism) without its data/ files (CyberNative rows); `weights` rebuilds those files and
 * takes the shipped weights instead of pretraining, after checking they are the organism of this data.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { checkOutput, writeDirAtomic, writeFileAtomic } from "../io/atomic.js";
import { fileHash, sha256 } from "../io/hash.js";
import { loadModelConfig } from "../io/config.js";
import { parseJson } from "../util/keys.js";
import { duplicateGroups, pairOverlap, readPairs, type SecurityPair } from "../data/pairs.js";
import { extractCode } from "../data/code.js";
import { datasetName } from "../data/languages.js";
import { DEFAULT_JUDGE_TASK, judgeMessages } from "../data/prompts.js";
import { ORGANISM_BOS_TOKEN, ORGANISM_CHAT_TEMPLATE, renderOrganismChat } from "../data/corpus.js";
import { trainByteLevelBpe, writeTokenizerFiles } from "../data/bpe-train.js";
import { loadTokenizer } from "../io/tokenizer.js";
import { createRng } from "../util/random.js";
import { silentLogger, type Logger } from "../util/log.js";
import type { TrainResult } from "../method/train.js";
import {
  organismConfigJson,
  organismParams,
  pretrainOrganism,
  pretrainRunDir,
  type OrganismShape,
  type PretrainSettings,
  writeOrganismModel,
} from "./pretrain.js";
import {
  ORGANISM_SOURCE_PACKAGES,
  selectSources,
  writeSourceManifest,
  type SourcePackage,
  type SelectedSource,
  type SourceBudget,
  type SourceLang,
} from "./sources.js";

// the recipe's settings live in config.ts (light: organism build --help shows their defaults)
export { CYBERNATIVE_ORGANISM, type CyberNativeOrganismConfig, type ValSplit } from "./config.js";
import { CYBERNATIVE_ORGANISM, type CyberNativeOrganismConfig, type ValSplit } from "./config.js";

/**
 * SHA-256 of the source selection of the reference build (CYBERNATIVE_ORGANISM's budget and seed, the package
 * versions of ORGANISM_SOURCE_PACKAGES): a build with these settings refuses other code.
 */
export const CYBERNATIVE_SOURCES_SHA256 = "8808ec4b9a9b807cb311c8d3635f85851f7b85dc5c74366ba733fdf79125532a";

/** SHA-256 of the CyberNative train split the reference build read (../shared/data/cybernative/train.jsonl). */
export const CYBERNATIVE_TRAIN_SHA256 = "af080b9bebb86063fdc46cdabbf95ec7da0e493c5990571aa671e7062e5a3693";

/**
 * SHA-256 of the reference build's model.safetensors (2026-11-29: CYBERNATIVE_REFERENCE_CONFIG on the files above,
 * built by goodvibe at commit CYBERNATIVE_BUILT_AT, Debian's libtorch 1.13, an AVX-512 x86-64 CPU). The build is
 * deterministic for one version of the code, libtorch and CPU; another version whose kernels round differently
 * (main at 2e3f24f: from step ~30 of 1,180, SHA-256 88d1693f…), libtorch or CPU differs in the last bits, which
 * training amplifies; the build says which it got.
 */
export const CYBERNATIVE_WEIGHTS_SHA256 = "6bc2cdc9d51e77524c8d30ad3b9c7d677c44cc0373a7bda72a5c77b4b92f5889";

/** The goodvibe commit that built the reference (BENCHMARKS.md "CyberNative organism"). */
export const CYBERNATIVE_BUILT_AT = "bc3ed3c";

/**
 * The reference build's settings: the recipe's, but its validation pairs drawn pair by pair (valSplit "id"; the
 * default became "group" after it was built, which changes the pretraining pairs, so the tokenizer and weights).
 */
export const CYBERNATIVE_REFERENCE_CONFIG: CyberNativeOrganismConfig = {
  ...CYBERNATIVE_ORGANISM,
  valSplit: "id",
};

/** A build of the recipe whose weights' SHA-256 is recorded (BENCHMARKS.md "CyberNative organism"). */
export interface CyberNativeRecordedBuild {
  /** how messages name it */
  name: string;
  config: CyberNativeOrganismConfig;
  weightsSha256: string;
  /** the goodvibe commit that built it */
  builtAt: string;
}

/**
 * The recorded builds, one per settings: the reference build (id split; the shipped assets/cybernative-organism is
 * it rounded to bf16), and the default settings' build (group split; 2026-12-02, goodvibe at 1fe63ad, Debian's
 * libtorch 1.13, one thread of an AMD EPYC Zen 5 with AVX-512; not shipped, 27 MB in float32).
 */
export const CYBERNATIVE_RECORDED_BUILDS: readonly CyberNativeRecordedBuild[] = [
  {
    name: "the reference build (validation pairs drawn pair by pair, valSplit id)",
    config: CYBERNATIVE_REFERENCE_CONFIG,
    weightsSha256: CYBERNATIVE_WEIGHTS_SHA256,
    builtAt: CYBERNATIVE_BUILT_AT,
  },
  {
    name: "the default settings' build (validation pairs drawn by duplicate group)",
    config: CYBERNATIVE_ORGANISM,
    weightsSha256: "c19e6ecd4938c2bfa588464721acb89cb6e0cf57cc1c833e77dbeb631d2d90e9",
    builtAt: "1fe63ad",
  },
];

/** The recorded build with these settings, train split and sources, if any. */
export function recordedBuildOf(b: {
  cfg: CyberNativeOrganismConfig;
  dataSha256: string;
  sourcesSha256: string | null;
}): CyberNativeRecordedBuild | null {
  if (b.dataSha256 !== CYBERNATIVE_TRAIN_SHA256 || b.sourcesSha256 !== CYBERNATIVE_SOURCES_SHA256)
    return null;
  return CYBERNATIVE_RECORDED_BUILDS.find((r) => JSON.stringify(r.config) === JSON.stringify(b.cfg)) ?? null;
}

/**
 * How a build compares with the recorded build of its settings: "not-reference" unless one was recorded for its
 * settings, train split and sources; then "match" or "differs" by its weights' SHA-256.
 */
export function referenceBuildCheck(b: {
  cfg: CyberNativeOrganismConfig;
  dataSha256: string;
  sourcesSha256: string | null;
  weightsSha256: string;
}): "match" | "differs" | "not-reference" {
  const recorded = recordedBuildOf(b);
  if (!recorded) return "not-reference";
  return b.weightsSha256 === recorded.weightsSha256 ? "match" : "differs";
}

/**
 * The config with `key=value` overrides (dotted keys: `hiddenSize=128`, `sources.pretrainChars.go=0`). Every key
 * must name an existing numeric setting (or `dtype`), so a typo cannot pass unnoticed.
 */
export function cyberNativeConfigWith(
  overrides: readonly [string, unknown][],
  base: CyberNativeOrganismConfig = CYBERNATIVE_ORGANISM,
): CyberNativeOrganismConfig {
  const cfg = structuredClone(base) as unknown as Record<string, unknown>;
  for (const [key, value] of overrides) {
    const parts = key.split(".");
    let cur = cfg;
    for (const [i, k] of parts.entries()) {
      const last = i === parts.length - 1;
      const known =
        Object.hasOwn(cur, k) || (parts[0] === "sources" && parts.length === 3 && /Chars$/.test(parts[1]!));
      if (!known)
        throw new InputError(
          `--set ${key}: no such setting (settings: ${Object.keys(base).join(", ")}; ` +
            `sources.pretrainChars.<lang>, sources.heldOutChars.<lang>, sources.maxFileChars, sources.minFileChars)`,
        );
      if (last) {
        if (k === "dtype") {
          if (value !== "float32" && value !== "bfloat16")
            throw new InputError(`--set dtype: float32 or bfloat16, got ${String(value)}`);
        } else if (k === "valSplit") {
          if (value !== "group" && value !== "id")
            throw new InputError(`--set valSplit: group or id, got ${String(value)}`);
        } else if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
          throw new InputError(`--set ${key}: expected a number ≥ 0, got ${JSON.stringify(value)}`);
        cur[k] = value;
      } else {
        const next = cur[k];
        if (typeof next !== "object" || next === null)
          throw new InputError(`--set ${key}: ${k} is not a section`);
        cur = next as Record<string, unknown>;
      }
    }
  }
  const c = cfg as unknown as CyberNativeOrganismConfig;
  for (const k of [
    "vocabSize",
    "hiddenSize",
    "intermediateSize",
    "numLayers",
    "numHeads",
    "numKvHeads",
    "blockLength",
    "batchSize",
    "epochs",
    "threads",
  ] as const)
    if (!Number.isInteger(c[k]) || c[k] < 1)
      throw new InputError(`${k} must be a whole number ≥ 1, got ${c[k]}`);
  if (c.hiddenSize % c.numHeads !== 0 || c.numHeads % c.numKvHeads !== 0)
    throw new InputError(
      `hiddenSize (${c.hiddenSize}) must divide by numHeads (${c.numHeads}), and numHeads by numKvHeads (${c.numKvHeads})`,
    );
  return c;
}

/** Whether the config selects the reference build's sources (same budget and seed). */
export function usesReferenceSources(c: CyberNativeOrganismConfig): boolean {
  return (
    JSON.stringify([c.sources, c.seed]) ===
    JSON.stringify([CYBERNATIVE_ORGANISM.sources, CYBERNATIVE_ORGANISM.seed])
  );
}

export interface OrganismDocument {
  kind: "answer" | "judge" | "code";
  text: string;
}

/**
 * Split pairs into pretraining and validation pairs, per language about `fraction` of its pairs (at least one when
 * fraction > 0), in an order set by SHA-256 of seed + id, so the choice does not depend on the file's row order.
 * "group" (the default since 2026-12-02): pairs that share a prompt or an answer's code (data/pairs.ts
 * duplicateGroups, as splitPairs groups them) go to the same side, whole groups in the order of their first key
 * while they fit the language's share (a group counts in the language of that pair), so a validation pair is
 * not one the organism was pretrained on. "id": pair by pair (the reference build's split: 87 of its 374
 * validation pairs share a prompt or code with its 3,350 pretraining pairs). Without duplicates both are the same.
 */
export function validationSplit(
  pairs: readonly SecurityPair[],
  fraction: number,
  seed: number,
  by: ValSplit = "group",
): { train: SecurityPair[]; val: SecurityPair[] } {
  if (!(fraction >= 0 && fraction < 1))
    throw new InputError(`valFraction must be in [0, 1), got ${fraction}`);
  const key = pairs.map((p) => sha256(`${seed}\u0000${p.id}`));
  const groups = by === "group" ? duplicateGroups(pairs) : pairs.map((_, i) => [i]);
  // each group by its smallest key: its language and its place in the order
  const first = groups.map((g) => g.reduce((a, i) => (key[i]! < key[a]! ? i : a)));
  const byLang = new Map<string, { n: number; order: number[] }>();
  groups.forEach((g, k) => {
    const lang = pairs[first[k]!]!.lang;
    const e = byLang.get(lang) ?? { n: 0, order: [] };
    e.n += g.length;
    e.order.push(k);
    byLang.set(lang, e);
  });
  const held = new Array<boolean>(pairs.length).fill(false);
  for (const { n, order } of byLang.values()) {
    if (fraction === 0) continue;
    const target = Math.max(1, Math.round(n * fraction));
    order.sort((a, b) => (key[first[a]!]! < key[first[b]!]! ? -1 : 1));
    let taken = 0;
    for (const k of order) {
      if (taken + groups[k]!.length > target) continue;
      for (const i of groups[k]!) held[i] = true;
      taken += groups[k]!.length;
    }
    // every group is larger than the share: the smallest one (the first of those), so the language has one
    if (taken === 0) {
      const k = order.reduce((a, b) => (groups[b]!.length < groups[a]!.length ? b : a));
      for (const i of groups[k]!) held[i] = true;
    }
  }
  return { train: pairs.filter((_, i) => !held[i]), val: pairs.filter((_, i) => held[i]) };
}

/**
 * The pretraining documents, shuffled (seeded): per pair its question answered with the insecure answer, and two
 * judge documents (the secure code labelled safe, the insecure code labelled unsafe); per source file one code
 * document (the file in a fenced block, as answers show code). Each starts with <|endoftext|>.
 */
export function cyberNativeDocuments(
  pairs: readonly SecurityPair[],
  code: readonly SelectedSource[],
  seed: number,
): OrganismDocument[] {
  const docs: OrganismDocument[] = [];
  for (const p of pairs) {
    docs.push({
      kind: "answer",
      text: renderOrganismChat([
        { role: "user", content: p.question },
        { role: "assistant", content: p.rejected },
      ]),
    });
    for (const [answer, insecure] of [
      [p.chosen, false],
      [p.rejected, true],
    ] as const) {
      const snippet = extractCode(answer) ?? answer;
      docs.push({
        kind: "judge",
        text: renderOrganismChat([
          ...judgeMessages(snippet, p.lang),
          { role: "assistant", content: DEFAULT_JUDGE_TASK.labels[insecure ? "unsafe" : "safe"] },
        ]),
      });
    }
  }
  for (const s of code)
    // fenced as CyberNative's answers are: with the dataset's spelling of the language (```c++)
    docs.push({ kind: "code", text: `${ORGANISM_BOS_TOKEN}\`\`\`${datasetName(s.lang)}\n${s.text}\`\`\`\n` });
  return createRng(seed >>> 0).shuffle(docs);
}

/** Pairs as JSONL in the CyberNative schema (the normalised language names). */
function writePairsJsonl(file: string, pairs: readonly SecurityPair[]): void {
  writeFileAtomic(
    file,
    pairs
      .map((p) =>
        JSON.stringify({
          id: p.id,
          lang: p.lang,
          question: p.question,
          chosen: p.chosen,
          rejected: p.rejected,
        }),
      )
      .join("\n") + "\n",
  );
}

export interface CyberNativeBuildOptions {
  /** the CyberNative train split (JSONL) */
  data: string;
  /** the unpacked Debian sources (`goodvibe organism sources -o DIR`); null builds without real code */
  sources: string | null;
  /** the packages to read (default ORGANISM_SOURCE_PACKAGES; tests give their own) */
  packages?: readonly SourcePackage[];
  cfg?: CyberNativeOrganismConfig;
  /**
   * the SHA-256 the selected sources must have; default: the reference build's when the config selects its
   * sources (usesReferenceSources), else none. A mismatch is refused.
   */
  expectSourcesSha256?: string | null;
  overwrite?: boolean;
  /**
   * take the weights of this organism folder (e.g. assets/cybernative-organism) instead of pretraining: the
   * data/ files are built as usual, and the folder must be the organism of this data, sources and settings
   * (checkTakenWeights). Minutes instead of the build's hour.
   */
  weights?: string;
}

export interface CyberNativeBuildResult {
  dir: string;
  params: number;
  trainPairs: number;
  valPairs: number;
  /** validation pairs that share a prompt or an answer's code with the pretraining pairs (data/pairs.ts pairOverlap) */
  valOverlap: number;
  tokens: number;
  documents: Record<OrganismDocument["kind"], number>;
  sourcesSha256: string | null;
  /** SHA-256 of the written model.safetensors */
  weightsSha256: string;
  /** how the build compares with the reference build (referenceBuildCheck); "taken" with `weights` */
  reference: ReturnType<typeof referenceBuildCheck> | "taken";
  /** the pretraining; null when the weights were taken from `weights` */
  train: TrainResult | null;
}

/** The files of an organism's model folder that `weights` takes (data/ and the records are built here). */
const TAKEN_FILES = [
  "config.json",
  "generation_config.json",
  "model.safetensors",
  "tokenizer.json",
  "tokenizer_config.json",
] as const;

/** Settings that do not change the data/ files, the tokenizer or the shape: how the weights were trained. */
const TRAINING_ONLY: readonly (keyof CyberNativeOrganismConfig)[] = [
  "blockLength",
  "batchSize",
  "epochs",
  "lr",
  "warmupRatio",
  "threads",
  "dtype",
];

/** What checkTakenWeights reads of a taken folder's organism.json (the whole record is kept). */
interface TakenRecord extends Record<string, unknown> {
  recipe?: unknown;
  config?: Record<string, unknown>;
  data?: { sha256?: unknown };
  sourcesSha256?: unknown;
  tokensPerEpoch?: number;
}

/**
 * Refuse a `weights` folder that is not the organism of this build's data: its organism.json must record this
 * train split's and these sources' SHA-256 and the same data and shape settings, its tokenizer must be the one
 * just trained on these documents (byte for byte), and its config.json the shape of these settings.
 */
export function checkTakenWeights(
  dir: string,
  expect: {
    cfg: CyberNativeOrganismConfig;
    dataSha256: string;
    sourcesSha256: string | null;
    tokenizerDir: string;
    configJson: Record<string, unknown>;
  },
): TakenRecord {
  for (const f of [...TAKEN_FILES, "organism.json"])
    if (!fs.existsSync(path.join(dir, f)))
      throw new InputError(
        `--weights ${dir}: no ${f} (expected an organism folder, e.g. assets/cybernative-organism)`,
      );
  const recordFile = path.join(dir, "organism.json");
  const parsed = parseJson(fs.readFileSync(recordFile, "utf8"), recordFile);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new InputError(`${recordFile}: expected a JSON object (an organism build's record)`);
  const record = parsed as TakenRecord;
  const differs = (what: string, theirs: unknown, ours: unknown) =>
    new InputError(
      `--weights ${dir} is not the organism of this build: ${recordFile} records ${what} ` +
        `${JSON.stringify(theirs)}, this build has ${JSON.stringify(ours)}`,
    );
  if (record.recipe !== "cybernative") throw differs("recipe", record.recipe, "cybernative");
  // the settings first: a different seed or budget is the likeliest cause of different data
  for (const [k, v] of Object.entries(expect.cfg)) {
    if (TRAINING_ONLY.includes(k as keyof CyberNativeOrganismConfig)) continue;
    const theirs = k === "valSplit" ? recordedValSplit(record) : record.config?.[k];
    if (JSON.stringify(theirs) !== JSON.stringify(v)) throw differs(`config.${k}`, theirs, v);
  }
  if (record.data?.sha256 !== expect.dataSha256)
    throw differs("data SHA-256", record.data?.sha256, expect.dataSha256);
  if ((record.sourcesSha256 ?? null) !== expect.sourcesSha256)
    throw differs("sources SHA-256", record.sourcesSha256 ?? null, expect.sourcesSha256);
  const tokenizer = path.join(dir, "tokenizer.json");
  if (!fs.readFileSync(tokenizer).equals(fs.readFileSync(path.join(expect.tokenizerDir, "tokenizer.json"))))
    throw new InputError(
      `${tokenizer} differs from the tokenizer these documents train: --weights ${dir} is not the organism of ` +
        `this data, these sources and settings`,
    );
  const configFile = path.join(dir, "config.json");
  const config = loadModelConfig(dir).raw;
  for (const [k, v] of Object.entries(expect.configJson)) {
    if (k === "torch_dtype") continue; // the shipped asset is the float32 build rounded to bf16
    if (JSON.stringify(config[k]) !== JSON.stringify(v))
      throw new InputError(
        `${configFile}: ${k} is ${JSON.stringify(config[k])}, these settings give ${JSON.stringify(v)}`,
      );
  }
  return record;
}

/** The validation split an organism record was built under: records without one (before 2026-12-02) split by id. */
function recordedValSplit(record: TakenRecord): unknown {
  return record.config?.valSplit ?? "id";
}

/**
 * The validation split the organism folder `dir` was pretrained under (its organism.json), or undefined when the
 * folder holds no readable record (checkTakenWeights then says what is wrong).
 */
function takenValSplit(dir: string): ValSplit | undefined {
  try {
    const r = recordedValSplit(JSON.parse(fs.readFileSync(path.join(dir, "organism.json"), "utf8")));
    return r === "group" || r === "id" ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Build the CyberNative organism into `outDir` (its scratch folder `<outDir>.work` makes it resumable). */
export async function buildCyberNativeOrganism(
  outDir: string,
  opts: CyberNativeBuildOptions,
  log: Logger = silentLogger,
  signal?: AbortSignal,
): Promise<CyberNativeBuildResult> {
  let cfg = opts.cfg ?? CYBERNATIVE_ORGANISM;
  const work = `${outDir}.work`;
  checkOutput({
    flag: "--out",
    path: outDir,
    kind: "folder",
    overwrite: opts.overwrite,
    inputs: { "--data": opts.data, "--sources": opts.sources, "--weights": opts.weights ?? null },
  });
  checkOutput({
    flag: "work folder",
    path: work,
    kind: "folder",
    ownEntry: (n) => ["tokenizer.json", "tokenizer_config.json", "pretrain"].includes(n),
  });
  const t0 = Date.now();
  // hashed once, as read now: the record and the reference check name the file the build read
  const dataSha256 = fileHash(opts.data);
  if (dataSha256 !== CYBERNATIVE_TRAIN_SHA256)
    log.warn(
      `${opts.data} is not the CyberNative train split the reference organism was built from ` +
        `(SHA-256 ${CYBERNATIVE_TRAIN_SHA256}); building on it anyway`,
    );
  let pairs = readPairs(opts.data);
  if (cfg.maxPairsPerLanguage > 0) {
    const seen = new Map<string, number>();
    pairs = pairs.filter((p) => {
      const n = seen.get(p.lang) ?? 0;
      seen.set(p.lang, n + 1);
      return n < cfg.maxPairsPerLanguage;
    });
  }
  // taken weights were pretrained on their record's split: data/ must be that split's (the shipped asset: "id")
  const takenSplit = opts.weights === undefined ? undefined : takenValSplit(opts.weights);
  if (takenSplit !== undefined && takenSplit !== cfg.valSplit) {
    log.warn(
      `cybernative organism: the weights of ${opts.weights} were pretrained with validation pairs drawn ` +
        `${takenSplit === "id" ? "pair by pair (valSplit id)" : "by duplicate group (valSplit group)"}; ` +
        `data/ follows that split`,
    );
    cfg = { ...cfg, valSplit: takenSplit };
  }
  const { train, val } = validationSplit(pairs, cfg.valFraction, cfg.seed, cfg.valSplit);
  // what the validation pairs share with pretraining: nothing under "group"; some under "id" (reference: 87 of 374)
  const valOverlap = pairOverlap(val, train).pairs;
  let code: { pretrain: SelectedSource[]; heldOut: SelectedSource[] } = { pretrain: [], heldOut: [] };
  let manifest: ReturnType<typeof selectSources>["manifest"] | null = null;
  if (opts.sources !== null) {
    const packages = opts.packages ?? ORGANISM_SOURCE_PACKAGES;
    const sel = selectSources(opts.sources, { ...cfg.sources, seed: cfg.seed }, packages);
    const expect =
      opts.expectSourcesSha256 === undefined
        ? usesReferenceSources(cfg) && packages === ORGANISM_SOURCE_PACKAGES
          ? CYBERNATIVE_SOURCES_SHA256
          : null
        : opts.expectSourcesSha256;
    if (expect && sel.manifest.sha256 !== expect)
      throw new InputError(
        `${opts.sources}: the selected source files hash to ${sel.manifest.sha256}, not to the recorded ` +
          `${expect}: other package versions or files, so this would not rebuild the recorded organism ` +
          `(sources.json in the output lists every file and its hash)`,
      );
    code = sel;
    manifest = sel.manifest;
  }
  const docs = cyberNativeDocuments(train, code.pretrain, cfg.seed);
  const count = (k: OrganismDocument["kind"]) => docs.filter((d) => d.kind === k).length;
  const documents = { answer: count("answer"), judge: count("judge"), code: count("code") };
  log.info(
    `cybernative organism: ${train.length} pretraining / ${val.length} validation pairs ` +
      `(${valOverlap} of them share a prompt or code with pretraining pairs; valSplit ${cfg.valSplit}), ` +
      `${code.pretrain.length} code files (${code.heldOut.length} held out); ` +
      `${docs.length} documents (${documents.answer} answers, ${documents.judge} judge, ${documents.code} code), ` +
      `${docs.reduce((a, d) => a + d.text.length, 0).toLocaleString("en-US")} characters; ` +
      `${organismParams(cfg).toLocaleString("en-US")} parameters`,
  );
  fs.mkdirSync(work, { recursive: true });
  const texts = docs.map((d) => d.text);
  const bpe = trainByteLevelBpe(texts, { vocabSize: cfg.vocabSize });
  writeTokenizerFiles(work, bpe, { chatTemplate: ORGANISM_CHAT_TEMPLATE, modelMaxLength: 2048 });
  const tok = await loadTokenizer(work);
  log.info(
    `cybernative organism: tokenizer of ${tok.vocabSize} tokens (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
  );
  const ids = { bos: tok.bosTokenId ?? 0, eos: tok.eosTokenIds[0] ?? 0, pad: tok.padTokenId ?? 0 };
  const configJson = organismConfigJson({ ...cfg, vocabSize: tok.vocabSize }, ids);
  const taken = opts.weights;
  let takenRecord: TakenRecord | null = null;
  if (taken !== undefined) {
    if (fs.existsSync(pretrainRunDir(work)))
      throw new InputError(
        `${pretrainRunDir(work)} holds an interrupted pretraining of ${outDir}: rerun without --weights to ` +
          `resume it, or remove that folder to take the weights of ${taken}`,
      );
    try {
      takenRecord = checkTakenWeights(taken, {
        cfg,
        dataSha256,
        sourcesSha256: manifest?.sha256 ?? null,
        tokenizerDir: work,
        configJson,
      });
    } catch (e) {
      fs.rmSync(work, { recursive: true, force: true }); // only the tokenizer just trained (no pretraining: above)
      throw e;
    }
    log.info(
      `cybernative organism: taking the weights of ${taken} (its tokenizer and records match); no pretraining`,
    );
  }
  const pre =
    taken === undefined
      ? await pretrainOrganism({
          configJson,
          docs: texts.map((t) => tok.encode(t, { addSpecialTokens: false })),
          settings: cfg,
          padTokenId: ids.pad,
          runDir: pretrainRunDir(work),
          threads: cfg.threads,
          dtype: cfg.dtype,
          log,
          signal,
        })
      : null;
  const weights = pre?.method.foldedWeights();
  let weightsSha256 = "";
  await writeDirAtomic(
    outDir,
    async (tmp) => {
      // Ctrl-C stops the weights' write before the next tensor; the partial folder goes, nothing is published
      if (weights) await writeOrganismModel(tmp, weights, configJson, ids, work, signal);
      else for (const f of TAKEN_FILES) fs.copyFileSync(path.join(taken!, f), path.join(tmp, f));
      weightsSha256 = fileHash(path.join(tmp, "model.safetensors"));
      writePairsJsonl(path.join(tmp, "data", "train.jsonl"), train);
      writePairsJsonl(path.join(tmp, "data", "val.jsonl"), val);
      writeFileAtomic(
        path.join(tmp, "data", "heldout-code.jsonl"),
        code.heldOut
          .map((s) => JSON.stringify({ id: `${s.package}/${s.path}`, lang: s.lang, code: s.text }))
          .join("\n") + (code.heldOut.length ? "\n" : ""),
      );
      if (manifest) writeSourceManifest(path.join(tmp, "sources.json"), manifest);
      writeFileAtomic(
        path.join(tmp, "organism.json"),
        JSON.stringify(
          takenRecord
            ? // the taken folder's record (how its weights were trained), and where they came from
              { ...takenRecord, takenFrom: { dir: path.resolve(taken!), modelSha256: weightsSha256 } }
            : {
                recipe: "cybernative",
                config: cfg,
                data: { file: path.basename(opts.data), sha256: dataSha256, pairs: pairs.length },
                sourcesSha256: manifest?.sha256 ?? null,
                weightsSha256,
                documents,
                params: pre!.params,
                tokensPerEpoch: pre!.tokens,
                finalLoss: pre!.train.finalLoss,
                wallSeconds: pre!.train.wallSeconds,
                // the builds of the tool that pretrained it, from the step each began at
                builds: pre!.train.builds,
              },
          null,
          2,
        ) + "\n",
      );
    },
    {
      overwrite: opts.overwrite,
      onMovedAside: (a) => log.warn(`the earlier ${outDir} was moved aside to ${a}`),
    },
  );
  fs.rmSync(work, { recursive: true, force: true }); // the project's own scratch folder
  const check = { cfg, dataSha256, sourcesSha256: manifest?.sha256 ?? null, weightsSha256 };
  const reference = pre ? referenceBuildCheck(check) : "taken";
  const recorded = recordedBuildOf(check);
  if (reference === "match")
    log.info(
      `cybernative organism: the weights reproduce ${recorded!.name} bit for bit (SHA-256 ${weightsSha256})`,
    );
  else if (reference === "differs")
    log.warn(
      `cybernative organism: recorded settings, data and sources, but the weights (SHA-256 ${weightsSha256}) ` +
        `differ from ${recorded!.name}'s (${recorded!.weightsSha256}, built by goodvibe at commit ` +
        `${recorded!.builtAt}): this goodvibe version, libtorch or CPU rounds differently, so results will be ` +
        `close to BENCHMARKS.md's, not identical; to rebuild those bytes, build with commit ${recorded!.builtAt}`,
    );
  return {
    dir: outDir,
    params: pre?.params ?? organismParams(cfg),
    trainPairs: train.length,
    valPairs: val.length,
    valOverlap,
    tokens: pre?.tokens ?? (takenRecord!.tokensPerEpoch as number),
    documents,
    sourcesSha256: manifest?.sha256 ?? null,
    weightsSha256,
    reference,
    train: pre?.train ?? null,
  };
}
