/**
 * Identification on many machines (identify --shard i/n, identify merge): a shard folder holds one share of the
 * batches' exact partial sums, counts and profile rows; a complete set of shards merges into the neuron map one
 * run makes, bit for bit and in any order.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import { writeDirAtomic, writeFileAtomic, writeWhole, type WriteDirOptions } from "../../io/atomic.js";
import { writeSafetensors } from "../../io/safetensors.js";
import { parseJson } from "../../util/keys.js";
import type { ShardSpec } from "../../util/shard.js";
import type { DecoderModel } from "../../models/decoder.js";
import {
  buildDifferences,
  buildKey,
  buildRecord,
  describeBuild,
  type BuildRecord,
} from "../../tensor/index.js";
import { DEFAULT_BATCH_TOKENS, type SelectionMode } from "./config.js";
import { modelShapeRecord, type ModelShapeRecord } from "./model-shape.js";
import type { NeuronMap, NeuronMapSource } from "./neuron-map.js";
import {
  accumulate,
  buildNeuronMap,
  checkpointingRecord,
  type IdentifyOptions,
  type IdentifySample,
} from "./identify.js";
import type { CheckpointingRecord } from "../checkpointing.js";
import {
  accumulatorTensors,
  emptyAccumulators,
  onFile,
  readAccumulatorTensors,
  readProfileRows,
  scalarsOf,
  type Accumulators,
  type ProfileStore,
  type ScalarState,
  type Target,
} from "./identify-state.js";

export const SHARD_FORMAT = "goodvibe-identify-shard";
const SHARD_INFO = "shard.json";
const SHARD_SUMS = "sums.safetensors";
const SHARD_PROFILES = "profiles.f32";

/** shard.json of a shard folder: what the shard covers, its counts, and what must agree to merge. */
export interface IdentifyShardInfo extends Omit<ScalarState, "checkpointing"> {
  format: typeof SHARD_FORMAT;
  version: 1;
  shard: ShardSpec;
  /** the whole run's key (model shape, samples, labels, mode, profile samples, lm_head): equal in every shard */
  run: string;
  /** the batch plan's settings: equal in every shard, so each batch is computed as in one run */
  plan: { batchSize: number; batchTokens: number };
  mode: SelectionMode;
  topK: number;
  lmHead: boolean;
  profileSamples: number;
  samplesInRun: number;
  model: ModelShapeRecord;
  targets: [string, number, number][];
  source: NeuronMapSource;
  /** base64 of one byte per sample of the run, 1 = in this shard's sums */
  processed: string;
  /** the samples whose profile rows profiles.f32 holds, in its order */
  profileRows: number[];
  /**
   * the build of the tool that computed it (tensor/build.ts; absent in shards of versions before the record): shards
   * computed on machines whose addon takes another bf16 route, or by another version, merge with a warning
   */
  build?: BuildRecord;
  /** the shard's gradient checkpointing as asked and used (absent in shards written before 2026-12-01) */
  gradientCheckpointing?: CheckpointingRecord;
}

/**
 * One shard of an identification run (identify --shard i/n): the i-th of every n batches of the whole run's
 * plan, so each batch is computed exactly as in one run. Writes the shard folder `outDir` (identify-shard.ts);
 * mergeIdentifyShards turns a complete set into the neuron map of one run.
 */
export async function identifyShard(
  model: DecoderModel,
  samples: IdentifySample[],
  opts: IdentifyOptions,
  shard: ShardSpec,
  outDir: string,
  write: WriteDirOptions = {},
): Promise<IdentifyShardInfo> {
  if (!(shard.index >= 1 && shard.index <= shard.count))
    throw new InputError(`shard ${shard.index}/${shard.count} does not exist`);
  return accumulate(model, samples, opts, shard, async (acc, targets, store, runKey) => {
    const profileRows: number[] = [];
    if (store) for (let s = 0; s < store.count; s++) if (acc.processed[s]) profileRows.push(s);
    const info: IdentifyShardInfo = {
      format: SHARD_FORMAT,
      version: 1,
      shard,
      run: runKey,
      plan: { batchSize: opts.batchSize, batchTokens: opts.batchTokens ?? DEFAULT_BATCH_TOKENS },
      mode: opts.mode,
      topK: opts.topK,
      lmHead: opts.lmHead === true,
      profileSamples: store?.count ?? 0,
      samplesInRun: samples.length,
      model: modelShapeRecord(model),
      targets: targets.map((t) => [t.name, t.outFeatures, t.inFeatures]),
      source: opts.source,
      ...scalarsWithout(acc),
      processed: Buffer.from(acc.processed).toString("base64"),
      profileRows,
      build: buildRecord(model.device, model.dtype),
      ...checkpointingRecord(opts, acc),
    };
    opts.beforeSave?.();
    await writeIdentifyShard(outDir, info, acc, store, write);
    return info;
  });
}

/**
 * Write a shard folder (atomically): shard.json, sums.safetensors with the exact partial sums per neuron
 * (`partials/<module>`, with their float64 values in `sum/<module>`; every neuron's count is the shard's sample
 * count), and profiles.f32 with the profile rows of the shard's profile samples (info.profileRows, in order).
 */
export async function writeIdentifyShard(
  outDir: string,
  info: IdentifyShardInfo,
  acc: Accumulators,
  store: ProfileStore | null,
  write: WriteDirOptions,
): Promise<void> {
  await writeDirAtomic(
    outDir,
    (tmp) => {
      writeSafetensors(path.join(tmp, SHARD_SUMS), accumulatorTensors(acc, true), {
        format: SHARD_FORMAT,
      });
      if (store) {
        const row = new Float32Array(store.rowFloats);
        const fd = fs.openSync(path.join(tmp, SHARD_PROFILES), "w");
        try {
          const file = path.join(tmp, SHARD_PROFILES);
          info.profileRows.forEach((s, i) => {
            store.readRow(s, row);
            onFile(file, "write", () => writeWhole(fd, row, i * row.byteLength));
          });
          onFile(file, "fsync", () => fs.fsyncSync(fd));
        } finally {
          fs.closeSync(fd);
        }
      }
      writeFileAtomic(path.join(tmp, SHARD_INFO), JSON.stringify(info));
    },
    write,
  );
}

/** shard.json of a shard folder, refused when the folder is no shard of this version. */
export function readIdentifyShard(dir: string): IdentifyShardInfo {
  const file = path.join(dir, SHARD_INFO);
  if (!fs.existsSync(file))
    throw new InputError(
      `${dir}: not an identification shard (no ${SHARD_INFO}; made by identify --shard i/n)`,
    );
  const info = parseJson(fs.readFileSync(file, "utf8"), file) as IdentifyShardInfo;
  if (info.format !== SHARD_FORMAT || info.version !== 1)
    throw new InputError(`${file}: not an identification shard of this version of goodvibe`);
  return info;
}

/**
 * When the shards were computed by more than one build (another version, addon, libtorch, device, or bf16 route: a
 * job spread over machines of different CPUs), the warning that says which shard each made and what differs; null
 * when one build made them all. Such shards still merge: each one's sums are exact for what its build computed.
 */
function shardBuilds(infos: readonly IdentifyShardInfo[]): string | null {
  const groups = new Map<string, { build: BuildRecord | null; shards: number[] }>();
  for (const i of infos) {
    const b = i.build ?? null;
    const key = b ? buildKey(b) : "null";
    const g = groups.get(key) ?? { build: b, shards: [] };
    g.shards.push(i.shard.index);
    groups.set(key, g);
  }
  if (groups.size < 2) return null;
  const list = [...groups.values()].map((g) => ({ ...g, shards: g.shards.sort((a, b) => a - b) }));
  const [a, b] = list;
  // "" only for one commit recorded with and without the code's hash (tensor/build.ts buildKey groups them apart)
  const differs =
    (a!.build && b!.build
      ? buildDifferences(a!.build, b!.build)
      : "an unknown way (a build was not recorded)") ||
    "their records only (one has the code's hash, the other predates it)";
  return (
    `identify merge: the shards were computed by ${list.length} builds of goodvibe: ` +
    list
      .map(
        (g) => `shard${g.shards.length > 1 ? "s" : ""} ${g.shards.join(", ")} by ${describeBuild(g.build)}`,
      )
      .join("; ") +
    ` (they differ in ${differs}). Each shard's sums are its build's, so the neuron map can differ in its last bits ` +
    `from one a single build computes; to have one build, run every shard with the same goodvibe and addon, and ` +
    `for bf16 on CPUs set GOODVIBE_F32_PRODUCTS=1 (or 0) on every machine so that all take the same route`
  );
}

/**
 * Merge identification shards (given in any order) into the neuron map one run over all their samples makes:
 * the exact partial sums add (so the order of the shards does not matter, bit for bit), counts add, profiles
 * come from the shard that did each sample. Refused: shards of different runs, plans or settings, a shard given
 * twice, and a set that misses shards (named).
 */
export function mergeIdentifyShards(
  dirs: readonly string[],
  opts: { warn?: (msg: string) => void } = {},
): NeuronMap {
  if (dirs.length === 0) throw new InputError("identify merge: no shards given");
  const infos = dirs.map((d) => readIdentifyShard(d));
  const first = infos[0]!;
  const agree = (what: string, f: (i: IdentifyShardInfo) => unknown) => {
    infos.forEach((info, k) => {
      if (JSON.stringify(f(info)) !== JSON.stringify(f(first)))
        throw new InputError(
          `identify merge: ${dirs[k]} and ${dirs[0]} are shards of different runs (${what} differs); ` +
            `every shard must come from the same model, data and identify settings`,
        );
    });
  };
  agree("model", (i) => i.model.hash);
  agree("data or settings", (i) => [i.run, i.mode, i.lmHead, i.profileSamples, i.samplesInRun]);
  agree("batch plan (identify.batchSize / identify.batchTokens)", (i) => i.plan);
  agree("top-k", (i) => i.topK);
  agree("shard count", (i) => i.shard.count);
  const seen = new Map<number, string>();
  infos.forEach((info, k) => {
    const other = seen.get(info.shard.index);
    if (other !== undefined)
      throw new InputError(
        `identify merge: shard ${info.shard.index}/${info.shard.count} is given twice (${other} and ${dirs[k]})`,
      );
    seen.set(info.shard.index, dirs[k]!);
  });
  const missing: number[] = [];
  for (let i = 1; i <= first.shard.count; i++) if (!seen.has(i)) missing.push(i);
  const mixed = shardBuilds(infos);
  if (mixed) opts.warn?.(mixed);
  if (missing.length)
    throw new InputError(
      `identify merge: ${missing.length} of ${first.shard.count} shards missing (${missing.slice(0, 20).join(", ")}${missing.length > 20 ? ", ..." : ""}); every shard of the run is needed`,
    );
  const targets: Target[] = first.targets.map(([name, outFeatures, inFeatures]) => ({
    name,
    outFeatures,
    inFeatures,
  }));
  const N = first.samplesInRun;
  const acc = emptyAccumulators(N, targets);
  /** for each profile sample, which shard holds its row and where */
  const rowAt = new Map<number, [number, number]>();
  infos.forEach((info, k) => {
    const where = path.join(dirs[k]!, SHARD_SUMS);
    const part = readAccumulatorTensors(where, targets);
    const processed = Buffer.from(info.processed, "base64");
    if (processed.length !== N) throw new InputError(`${dirs[k]}/${SHARD_INFO}: damaged (sample count)`);
    processed.forEach((p, s) => {
      if (!p) return;
      if (acc.processed[s])
        throw new InputError(`identify merge: sample ${s} is in two shards (${dirs[k]} and another)`);
      acc.processed[s] = 1;
    });
    acc.loss.addAll(part.loss);
    acc.flops.addAll(part.flops);
    for (const [name, s] of part.sums) acc.sums.get(name)!.addAll(s);
    acc.done += info.done;
    acc.secure += info.secure;
    acc.insecure += info.insecure;
    acc.tokens += info.tokens;
    acc.paddedTokens += info.paddedTokens;
    acc.wallSeconds += info.wallSeconds;
    info.profileRows.forEach((s, r) => rowAt.set(s, [k, r]));
  });
  if (acc.done !== N)
    throw new InputError(
      `identify merge: the shards cover ${acc.done} of the run's ${N} samples (a shard was written before it finished?)`,
    );
  const offsets = new Map<string, number>();
  let rowFloats = 0;
  for (const t of targets) {
    offsets.set(t.name, rowFloats);
    rowFloats += t.outFeatures;
  }
  const readProfiles =
    first.profileSamples > 0
      ? (selected: Map<string, number[]>) => {
          const fds = new Map<number, number>();
          try {
            return readProfileRows(first.profileSamples, rowFloats, offsets, selected, (s, row) => {
              const at = rowAt.get(s);
              if (!at) throw new InputError(`identify merge: no shard holds the profile row of sample ${s}`);
              const [k, r] = at;
              let fd = fds.get(k);
              if (fd === undefined) fds.set(k, (fd = fs.openSync(path.join(dirs[k]!, SHARD_PROFILES), "r")));
              if (fs.readSync(fd, row, 0, row.byteLength, r * row.byteLength) !== row.byteLength)
                throw new InputError(`${dirs[k]}/${SHARD_PROFILES}: truncated`);
            });
          } finally {
            for (const fd of fds.values()) fs.closeSync(fd);
          }
        }
      : null;
  return { ...buildNeuronMap(targets, first.model, acc, first, readProfiles), ...shardsCheckpointing(infos) };
}

/** A shard's scalars without its checkpointing choice, which shard.json keeps as asked and used instead. */
function scalarsWithout(acc: Accumulators): Omit<ScalarState, "checkpointing"> {
  const { checkpointing: _c, ...scalars } = scalarsOf(acc);
  return scalars;
}

/**
 * The merged map's checkpointing record: the shards' when every shard that computed samples recorded the same; none
 * otherwise (shards on machines that decided "auto" differently, or written before the record): one record cannot
 * say both
 */
function shardsCheckpointing(infos: readonly IdentifyShardInfo[]): {
  gradientCheckpointing?: CheckpointingRecord;
} {
  // a shard with no samples (more shards than batches) computed nothing, so chose nothing: it does not count
  const records = infos.filter((i) => i.done > 0).map((i) => i.gradientCheckpointing);
  const first = records[0];
  if (!first || !records.every((r) => r && r.requested === first.requested && r.used === first.used))
    return {};
  return { gradientCheckpointing: { requested: first.requested, used: first.used } };
}
