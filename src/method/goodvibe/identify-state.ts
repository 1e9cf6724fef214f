/**
 * Identification's resumable state: the exact sums it accumulates (ExactSums, so a resumed run or merged shards
 * equal one uninterrupted run bit for bit), saved to and loaded from the run folder (identify-state/), and the
 * per-sample profile rows of the first samples, kept in a file instead of memory (identify-profiles.f32).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import { writeDirAtomic, writeFileAtomic, writeWhole } from "../../io/atomic.js";
import {
  readSafetensors,
  writeSafetensors,
  type SafetensorsFile,
  type TensorToWrite,
} from "../../io/safetensors.js";
import { parseJson } from "../../util/keys.js";
import { ExactSums } from "../../util/exact-sum.js";
import type { FlopCount } from "../flops.js";
import { checkpointingUsedOf, type CheckpointingUsed } from "../checkpointing.js";

// ---------------------------------------------------------------- per-sample profiles on disk

export const PROFILES = "identify-profiles.f32";

/** Run a write on an open file, naming the file in its error (a write to a descriptor has no path: ENOSPC would not say where). */
export function onFile<T>(file: string, op: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err && typeof err.code === "string" && !err.path) {
      err.path = file;
      err.syscall ??= op;
    }
    throw e;
  }
}

/**
 * Per-sample importances of the first `count` samples (the clustering features): one float32 row per sample
 * holding every module's outputs (model.linears() order), written at its sample's slot of a file. Nothing of it
 * stays in memory, and a resumed run finds the rows of the samples it already did.
 */
export class ProfileStore {
  readonly rowFloats: number;
  readonly offsets = new Map<string, number>();
  private readonly fd: number;

  constructor(
    readonly file: string,
    readonly count: number,
    linears: readonly Target[],
    fresh: boolean,
  ) {
    let n = 0;
    for (const l of linears) {
      this.offsets.set(l.name, n);
      n += l.outFeatures;
    }
    this.rowFloats = n;
    const bytes = count * n * 4;
    if (!fresh && (!fs.existsSync(file) || fs.statSync(file).size !== bytes))
      throw new InputError(
        `${file}: the per-sample profiles of the saved identification state are missing or truncated; delete ${path.dirname(file)}/${IDENTIFY_STATE} to start over`,
      );
    this.fd = fs.openSync(file, fresh ? "w+" : "r+");
    if (fresh) onFile(file, "ftruncate", () => fs.ftruncateSync(this.fd, bytes));
  }

  write(sample: number, row: Float32Array): void {
    onFile(this.file, "write", () => writeWhole(this.fd, row, sample * this.rowFloats * 4));
  }

  sync(): void {
    onFile(this.file, "fsync", () => fs.fsyncSync(this.fd));
  }

  readRow(sample: number, row: Float32Array): void {
    fs.readSync(this.fd, row, 0, row.byteLength, sample * this.rowFloats * 4);
  }

  /** [k][count] profiles of the selected rows of each module, read one sample row at a time. */
  read(selected: Map<string, number[]>): Map<string, number[][]> {
    return readProfileRows(this.count, this.rowFloats, this.offsets, selected, (s, row) =>
      this.readRow(s, row),
    );
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** [k][count] profiles of the selected rows of each module from `count` rows of all modules' outputs. */
export function readProfileRows(
  count: number,
  rowFloats: number,
  offsets: Map<string, number>,
  selected: Map<string, number[]>,
  readRow: (sample: number, row: Float32Array) => void,
): Map<string, number[][]> {
  const out = new Map<string, number[][]>();
  for (const [name, idx] of selected)
    out.set(
      name,
      idx.map(() => new Array<number>(count)),
    );
  const row = new Float32Array(rowFloats);
  for (let s = 0; s < count; s++) {
    readRow(s, row);
    for (const [name, idx] of selected) {
      const off = offsets.get(name)!;
      const prof = out.get(name)!;
      idx.forEach((i, k) => (prof[k]![s] = row[off + i]!));
    }
  }
  return out;
}

// ---------------------------------------------------------------- the sums and their state on disk

/** What identification has summed so far: exact per-row sums, counts, cost. */
export interface Accumulators {
  /** 1 where the sample is in the sums */
  processed: Uint8Array;
  done: number;
  /** Σ of the batches' summed losses, exact until read (ExactSums: order-free) */
  loss: ExactSums;
  secure: number;
  insecure: number;
  /** real tokens, and tokens computed (padding included) */
  tokens: number;
  paddedTokens: number;
  /** per module, Σ over samples of each row's per-sample importance, exact until read */
  sums: Map<string, ExactSums>;
  /** forward, backward, total */
  flops: ExactSums;
  wallSeconds: number;
  /**
   * whether the samples computed so far were checkpointed (identify.gradientCheckpointing, "auto" decided; "mixed"
   * where a call resumed the state under the other choice: combineCheckpointing); absent before any was computed,
   * or in state saved before 2026-12-01. A resumed run decides again: the importances are the same either way
   * (method/checkpointing.ts), only time and memory differ
   */
  checkpointing?: CheckpointingUsed;
}

export function emptyAccumulators(n: number, targets: readonly Target[]): Accumulators {
  return {
    processed: new Uint8Array(n),
    done: 0,
    loss: new ExactSums(1),
    secure: 0,
    insecure: 0,
    tokens: 0,
    paddedTokens: 0,
    sums: new Map(targets.map((l) => [l.name, new ExactSums(l.outFeatures)])),
    flops: new ExactSums(3),
    wallSeconds: 0,
  };
}

export function flopsOf(acc: Pick<Accumulators, "flops">): FlopCount {
  return { forward: acc.flops.value(0), backward: acc.flops.value(1), total: acc.flops.value(2) };
}

/** What has an importance per output row: a linear module, or lm_head. */
export interface Target {
  name: string;
  outFeatures: number;
  inFeatures: number;
}

/** The resumable state's folder in a run folder (RUN_FILES.identifyState). */
export const IDENTIFY_STATE = "identify-state";
/** 3: exact sums (partials), batches planned over every sample */
const STATE_VERSION = 3;

function sumsTensors(prefix: string, s: ExactSums): TensorToWrite {
  const { width, data } = s.partials();
  return {
    name: prefix,
    dtype: "F64",
    shape: [s.n, width],
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

function readSums(file: SafetensorsFile, name: string, n: number, where: string): ExactSums {
  const rec = file.tensors.get(name);
  if (!rec || rec.dtype !== "F64" || rec.shape.length !== 2 || rec.shape[0] !== n)
    throw new InputError(`${where}: ${name} is missing or has the wrong shape`);
  const data = new Float64Array(
    rec.data.buffer.slice(rec.data.byteOffset, rec.data.byteOffset + rec.data.byteLength),
  );
  try {
    return ExactSums.fromPartials(n, rec.shape[1]!, data);
  } catch (e) {
    throw new InputError(`${where}: ${name} is damaged (${(e as Error).message})`);
  }
}

/** The accumulators as safetensors: `partials/<module>` [rows, width], `loss` [1, w], `flops` [3, w]. */
export function accumulatorTensors(acc: Accumulators, rounded: boolean): TensorToWrite[] {
  const out: TensorToWrite[] = [sumsTensors("loss", acc.loss), sumsTensors("flops", acc.flops)];
  for (const [name, s] of acc.sums) {
    out.push(sumsTensors(`partials/${name}`, s));
    if (rounded) {
      const v = s.values();
      out.push({
        name: `sum/${name}`,
        dtype: "F64",
        shape: [s.n],
        data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
      });
    }
  }
  return out;
}

export function readAccumulatorTensors(
  file: string,
  targets: readonly Target[],
): Pick<Accumulators, "loss" | "flops" | "sums"> {
  const st = readSafetensors(file);
  return {
    loss: readSums(st, "loss", 1, file),
    flops: readSums(st, "flops", 3, file),
    sums: new Map(targets.map((t) => [t.name, readSums(st, `partials/${t.name}`, t.outFeatures, file)])),
  };
}

/** The accumulators' counts (what shard.json and state.json hold beside the tensors). */
export type ScalarState = Omit<Accumulators, "sums" | "loss" | "flops" | "processed">;

export function scalarsOf(acc: Accumulators): ScalarState {
  const { sums: _s, loss: _l, flops: _f, processed: _p, ...scalars } = acc;
  return scalars;
}

/**
 * Save the accumulators in `<runDir>/identify-state/` (atomically), under the run's key: state.json keeps it
 * under its old name "fingerprint", so state saved by earlier versions of this file stays readable.
 */
export async function saveState(runDir: string, acc: Accumulators, runKey: string): Promise<void> {
  await writeDirAtomic(
    path.join(runDir, IDENTIFY_STATE),
    (tmp) => {
      writeSafetensors(path.join(tmp, "accumulators.safetensors"), accumulatorTensors(acc, false));
      writeFileAtomic(
        path.join(tmp, "state.json"),
        JSON.stringify({
          version: STATE_VERSION,
          fingerprint: runKey,
          ...scalarsOf(acc),
          processed: Buffer.from(acc.processed).toString("base64"),
        }),
      );
    },
    { replaceOwn: true },
  );
}

/** The saved accumulators of this run (same key), null when there are none; another run's are refused. */
export function loadState(
  runDir: string,
  runKey: string,
  n: number,
  targets: readonly Target[],
): Accumulators | null {
  const dir = path.join(runDir, IDENTIFY_STATE);
  if (!fs.existsSync(path.join(dir, "state.json"))) return null;
  const st = parseJson(
    fs.readFileSync(path.join(dir, "state.json"), "utf8"),
    path.join(dir, "state.json"),
  ) as Record<string, any>;
  if (st.version !== STATE_VERSION)
    throw new InputError(
      `${dir}: saved identification state from an older version of goodvibe; delete it to start over`,
    );
  if (st.fingerprint !== runKey)
    throw new InputError(
      `${dir}: saved identification state belongs to other data, model, settings or shard; delete it to start over`,
    );
  const processed = new Uint8Array(Buffer.from(st.processed, "base64"));
  if (processed.length !== n) throw new InputError(`${dir}/state.json: damaged (sample count)`);
  return {
    processed,
    done: st.done,
    secure: st.secure,
    insecure: st.insecure,
    tokens: st.tokens,
    paddedTokens: st.paddedTokens,
    wallSeconds: st.wallSeconds,
    ...(checkpointingUsedOf(st.checkpointing) !== undefined
      ? { checkpointing: checkpointingUsedOf(st.checkpointing) }
      : {}),
    ...readAccumulatorTensors(path.join(dir, "accumulators.safetensors"), targets),
  };
}

/** Remove what a finished run no longer needs (the accumulators and the per-sample profiles file). */
export function clearIdentifyState(runDir: string): void {
  fs.rmSync(path.join(runDir, IDENTIFY_STATE), { recursive: true, force: true });
  fs.rmSync(path.join(runDir, PROFILES), { force: true });
}
