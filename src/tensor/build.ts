/**
 * Which build of the tool computes here: what a cached stage records as having made it (recipes/harden.ts), so that a
 * rerun after an upgrade, or on a machine whose addon takes another bf16 route, says that a stage it reuses or
 * resumes was computed by another build. The parts are those that can change a result's last bits: the tool's
 * version and its compiled JavaScript (a hash of it), the addon's sources, libtorch, the device, and for a CPU bf16
 * model how its products are computed (tensor.ts f32Products: libtorch's own, or float32 products rounded once).
 * Run from a clone, the commit is recorded too, as information: it is compared only with a record made before the
 * code hash was (then it stood for the code). A commit that changes only docs or tests computes alike, and a
 * rerun after one says nothing of builds.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { canonicalJson } from "../io/hash.js";
import { PACKAGE, packageCodeHash, packageCommit } from "../util/package-info.js";
import { addonFile } from "./native.js";
import { f32Products, torchVersion, type DType } from "./tensor.js";

export interface BuildRecord {
  /** goodvibe's package version */
  goodvibe: string;
  /**
   * the clone's git commit (12 hex digits), when the tool runs from a git checkout: information where both records
   * have `code`, compared only against a record without it
   */
  commit?: string;
  /** the compiled JavaScript the run executes (util/package-info.ts packageCodeHash; absent in earlier records) */
  code?: string;
  /** the addon's sources (sha256 of them, 12 hex digits, from its build stamp), else "file <sha256 of the .node>" */
  addon: string;
  libtorch: string;
  /** "cpu", "cuda" */
  device: string;
  /** CPU bf16 models only: "libtorch's own" or "float32, rounded once" (tensor.ts f32Products) */
  bf16Products?: string;
}

let addonId: string | null = null;

/** The addon build's identity: its build stamp's sources hash (native/build/goodvibe-build.json), else its bytes'. */
function addonIdentity(): string {
  if (addonId) return addonId;
  const file = addonFile();
  try {
    const stamp = JSON.parse(
      fs.readFileSync(path.join(path.dirname(file), "..", "goodvibe-build.json"), "utf8"),
    );
    if (typeof stamp?.sources === "string" && stamp.sources.length >= 12)
      return (addonId = `sources ${stamp.sources.slice(0, 12)}`);
  } catch {
    // no stamp (GOODVIBE_ADDON elsewhere, or an addon from before stamps): its bytes stand for it
  }
  return (addonId = `file ${createHash("sha256").update(fs.readFileSync(file)).digest("hex").slice(0, 12)}`);
}

/** The build that computes on a model on `device` in `dtype` in this process. */
export function buildRecord(device: string, dtype: DType): BuildRecord {
  const commit = packageCommit();
  const code = packageCodeHash();
  const cpuBf16 = device === "cpu" && dtype === "bfloat16";
  return {
    goodvibe: PACKAGE.version,
    ...(commit ? { commit: commit.slice(0, 12) } : {}),
    ...(code ? { code } : {}),
    addon: addonIdentity(),
    libtorch: torchVersion(),
    device: device.replace(/:\d+$/, ""),
    ...(cpuBf16 ? { bf16Products: f32Products() ? "float32, rounded once" : "libtorch's own" } : {}),
  };
}

/** "goodvibe 0.1.0 (commit 1a2b…, code 9f8e…, addon sources 5278…, libtorch 1.13.0, cpu, bf16 products: …)" */
export function describeBuild(b: BuildRecord | null): string {
  if (!b) return "an earlier goodvibe that did not record its build";
  const parts = [
    ...(b.commit ? [`commit ${b.commit}`] : []),
    ...(b.code ? [`code ${b.code}`] : []),
    `addon ${b.addon}`,
    `libtorch ${b.libtorch}`,
    b.device,
    ...(b.bf16Products ? [`bf16 products: ${b.bf16Products}`] : []),
  ];
  return `goodvibe ${b.goodvibe} (${parts.join(", ")})`;
}

const PART_NAMES: Record<keyof BuildRecord, string> = {
  goodvibe: "version",
  commit: "commit",
  code: "code",
  addon: "addon",
  libtorch: "libtorch",
  device: "device",
  bf16Products: "bf16 products",
};

/**
 * `b` as it is compared with `other`: where both record the code's hash, by it, without the commit (information
 * only); where neither does (records made before the hash), by commit as they were. Where only one does, by
 * commit when both have one (a clone), else the code is unknown on one side, and they differ in it: an installed
 * package's version stays the same across releases, so the version alone would call another release's code the same.
 */
function compared(b: Partial<BuildRecord>, other: Partial<BuildRecord>): Partial<BuildRecord> {
  const { commit, code, ...rest } = b;
  if (code !== undefined && other.code !== undefined) return { ...rest, code };
  if (code === undefined && other.code === undefined)
    return commit !== undefined ? { ...rest, commit } : rest;
  if (commit !== undefined && other.commit !== undefined) return { ...rest, commit };
  return { ...rest, code: code ?? "not recorded" };
}

/** The parts in which two builds differ, in words ("version, bf16 products"); "" when they are the same. */
export function buildDifferences(was: Partial<BuildRecord> | null, now: Partial<BuildRecord>): string {
  if (!was) return "an unknown way (its build was not recorded)";
  const a = compared(was, now);
  const b = compared(now, was);
  return (Object.keys(PART_NAMES) as (keyof BuildRecord)[])
    .filter((k) => a[k] !== b[k])
    .map((k) => PART_NAMES[k])
    .join(", ");
}

/**
 * A key under which records of one build group together (identify merge's shards, an experiment's cells): the
 * record less its commit where it has the code's hash.
 */
export function buildKey(b: Partial<BuildRecord>): string {
  return canonicalJson(b.code !== undefined ? compared(b, b) : b);
}

/** The parts of a build that can change a result: all of them, or those named (clustering: version and code). */
export type BuildParts = readonly (keyof BuildRecord)[] | "all";

/** A build's record reduced to `parts`. */
export function buildParts(b: BuildRecord, parts: BuildParts): Partial<BuildRecord> {
  return parts === "all" ? b : Object.fromEntries(parts.filter((k) => k in b).map((k) => [k, b[k]]));
}

/** Whether `a` (null: a build before the record) is the build `b`, in `parts` (the commit as `compared` says). */
export function sameBuild(a: BuildRecord | null, b: BuildRecord, parts: BuildParts = "all"): boolean {
  if (a === null) return false;
  const pa = buildParts(a, parts);
  const pb = buildParts(b, parts);
  return canonicalJson(compared(pa, pb)) === canonicalJson(compared(pb, pa));
}
