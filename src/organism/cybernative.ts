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
 *   validation split on which settings are chosen, so that nothing is tuned on the dev split.
 *
 * The weights are not shipped (too large for the repository); the build is reproducible: same data, same
 * package versions, same settings and thread count give the same bytes, and organism.json records the hashes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { checkOutput, writeDirAtomic, writeFileAtomic } from "../io/atomic.js";
import { fileHash, sha256 } from "../io/hash.js";
import { readPairs, type SecurityPair } from "../data/pairs.js";
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

export interface CyberNativeOrganismConfig extends OrganismShape, PretrainSettings {
  /** share of each language's train pairs held out of pretraining (the train-only validation split) */
  valFraction: number;
  /** use at most this many pairs per language (0: all); for quick builds and tests, not the reference */
  maxPairsPerLanguage: number;
  /** real code from Debian packages (characters per language after cleaning) */
  sources: Omit<SourceBudget, "seed">;
  /** libtorch threads: the build is bit-identical only at the same count */
  threads: number;
  dtype: "float32" | "bfloat16";
}

export const CYBERNATIVE_ORGANISM: CyberNativeOrganismConfig = {
  seed: 1234,
  valFraction: 0.1,
  maxPairsPerLanguage: 0,
  vocabSize: 8192,
  hiddenSize: 256,
  intermediateSize: 768,
  numLayers: 6,
  numHeads: 4,
  numKvHeads: 2,
  blockLength: 512,
  batchSize: 8,
  epochs: 2,
  lr: 2e-3,
  warmupRatio: 0.02,
  // the reference build ran on one core of a 2-core machine in 48 min (BENCHMARKS.md "CyberNative organism");
  // bfloat16 mixed precision trained 2.2× faster than float32 there, 2 threads only 1.3× faster than 1
  threads: 1,
  dtype: "bfloat16",
  sources: {
    pretrainChars: { go: 600_000, java: 600_000, cpp: 400_000, python: 300_000 },
    heldOutChars: { go: 60_000, java: 60_000, cpp: 60_000, python: 30_000 },
    maxFileChars: 16_000,
    minFileChars: 400,
  },
};

/**
 * SHA-256 of the source selection of the reference build (CYBERNATIVE_ORGANISM's budget and seed, the package
 * versions of ORGANISM_SOURCE_PACKAGES): a build with these settings refuses other code.
 */
export const CYBERNATIVE_SOURCES_SHA256 = "8808ec4b9a9b807cb311c8d3635f85851f7b85dc5c74366ba733fdf79125532a";

/** SHA-256 of the CyberNative train split the reference build read (../shared/data/cybernative/train.jsonl). */
export const CYBERNATIVE_TRAIN_SHA256 = "af080b9bebb86063fdc46cdabbf95ec7da0e493c5990571aa671e7062e5a3693";

/**
 * SHA-256 of the reference build's model.safetensors (2026-11-29: CYBERNATIVE_ORGANISM on the files above, built by
 * goodvibe at commit CYBERNATIVE_BUILT_AT, Debian's libtorch 1.13, an AVX-512 x86-64 CPU). The build is
 * deterministic for one version of the code, libtorch and CPU; another version whose kernels round differently
 * (main at 2e3f24f: from step ~30 of 1,180, SHA-256 88d1693f…), libtorch or CPU differs in the last bits, which
 * training amplifies; the build says which it got.
 */
export const CYBERNATIVE_WEIGHTS_SHA256 = "6bc2cdc9d51e77524c8d30ad3b9c7d677c44cc0373a7bda72a5c77b4b92f5889";

/** The goodvibe commit that built the reference (BENCHMARKS.md "CyberNative organism"). */
export const CYBERNATIVE_BUILT_AT = "bc3ed3c";

/**
 * How a build compares with the reference: "not-reference" unless it used the reference settings, train split and
 * sources; then "match" or "differs" by its weights' SHA-256.
 */
export function referenceBuildCheck(b: {
  cfg: CyberNativeOrganismConfig;
  dataSha256: string;
  sourcesSha256: string | null;
  weightsSha256: string;
}): "match" | "differs" | "not-reference" {
  const reference =
    JSON.stringify(b.cfg) === JSON.stringify(CYBERNATIVE_ORGANISM) &&
    b.dataSha256 === CYBERNATIVE_TRAIN_SHA256 &&
    b.sourcesSha256 === CYBERNATIVE_SOURCES_SHA256;
  if (!reference) return "not-reference";
  return b.weightsSha256 === CYBERNATIVE_WEIGHTS_SHA256 ? "match" : "differs";
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
 * Split pairs into pretraining and validation pairs: per language, `fraction` of its pairs (at least one when
 * fraction > 0), chosen by SHA-256 of seed + id, so the choice does not depend on the file's row order.
 */
export function validationSplit(
  pairs: readonly SecurityPair[],
  fraction: number,
  seed: number,
): { train: SecurityPair[]; val: SecurityPair[] } {
  if (!(fraction >= 0 && fraction < 1))
    throw new InputError(`valFraction must be in [0, 1), got ${fraction}`);
  const byLang = new Map<string, SecurityPair[]>();
  for (const p of pairs) byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), p]);
  const held = new Set<string>();
  for (const ps of byLang.values()) {
    const n = fraction === 0 ? 0 : Math.max(1, Math.round(ps.length * fraction));
    const order = [...ps].sort((a, b) => {
      const ka = sha256(`${seed}\u0000${a.id}`);
      const kb = sha256(`${seed}\u0000${b.id}`);
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
    for (const p of order.slice(0, n)) held.add(p.id);
  }
  return { train: pairs.filter((p) => !held.has(p.id)), val: pairs.filter((p) => held.has(p.id)) };
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
}

export interface CyberNativeBuildResult {
  dir: string;
  params: number;
  trainPairs: number;
  valPairs: number;
  tokens: number;
  documents: Record<OrganismDocument["kind"], number>;
  sourcesSha256: string | null;
  /** SHA-256 of the written model.safetensors */
  weightsSha256: string;
  /** how the build compares with the reference build (referenceBuildCheck) */
  reference: ReturnType<typeof referenceBuildCheck>;
  train: TrainResult;
}

/** Build the CyberNative organism into `outDir` (its scratch folder `<outDir>.work` makes it resumable). */
export async function buildCyberNativeOrganism(
  outDir: string,
  opts: CyberNativeBuildOptions,
  log: Logger = silentLogger,
  signal?: AbortSignal,
): Promise<CyberNativeBuildResult> {
  const cfg = opts.cfg ?? CYBERNATIVE_ORGANISM;
  const work = `${outDir}.work`;
  checkOutput({
    flag: "--out",
    path: outDir,
    kind: "folder",
    overwrite: opts.overwrite,
    inputs: { "--data": opts.data, "--sources": opts.sources },
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
  const { train, val } = validationSplit(pairs, cfg.valFraction, cfg.seed);
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
    `cybernative organism: ${train.length} pretraining / ${val.length} validation pairs, ` +
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
  const tokenized = texts.map((t) => tok.encode(t, { addSpecialTokens: false }));
  const pre = await pretrainOrganism({
    configJson,
    docs: tokenized,
    settings: cfg,
    padTokenId: ids.pad,
    runDir: pretrainRunDir(work),
    threads: cfg.threads,
    dtype: cfg.dtype,
    log,
    signal,
  });
  const weights = pre.method.foldedWeights();
  let weightsSha256 = "";
  await writeDirAtomic(
    outDir,
    (tmp) => {
      writeOrganismModel(tmp, weights, configJson, ids, work);
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
          {
            recipe: "cybernative",
            config: cfg,
            data: { file: path.basename(opts.data), sha256: dataSha256, pairs: pairs.length },
            sourcesSha256: manifest?.sha256 ?? null,
            weightsSha256,
            documents,
            params: pre.params,
            tokensPerEpoch: pre.tokens,
            finalLoss: pre.train.finalLoss,
            wallSeconds: pre.train.wallSeconds,
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
  const reference = referenceBuildCheck({
    cfg,
    dataSha256,
    sourcesSha256: manifest?.sha256 ?? null,
    weightsSha256,
  });
  if (reference === "match")
    log.info(
      `cybernative organism: the weights reproduce the reference build's bit for bit (SHA-256 ${weightsSha256})`,
    );
  else if (reference === "differs")
    log.warn(
      `cybernative organism: reference settings, data and sources, but the weights (SHA-256 ${weightsSha256}) differ ` +
        `from the reference build's (${CYBERNATIVE_WEIGHTS_SHA256}, built by goodvibe at commit ` +
        `${CYBERNATIVE_BUILT_AT}): this goodvibe version, libtorch or CPU rounds differently, so results will be ` +
        `close to BENCHMARKS.md's, not identical; to rebuild those bytes, build with commit ${CYBERNATIVE_BUILT_AT}`,
    );
  return {
    dir: outDir,
    params: pre.params,
    trainPairs: train.length,
    valPairs: val.length,
    tokens: pre.tokens,
    documents,
    sourcesSha256: manifest?.sha256 ?? null,
    weightsSha256,
    reference,
    train: pre.train,
  };
}
