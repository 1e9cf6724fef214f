/**
 * Content hashes that key caches (run-folder stages, experiment cells, generation caches): a stage is reused only
 * when every byte and setting that shapes it is the same. Hashing a large checkpoint takes seconds, so hashes are
 * memoised per path and file identity (size, mtime, ctime, inode) within the process.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { InputError } from "../errors.js";
import { writeFileAtomic } from "./atomic.js";
import { fileIdentity } from "../util/file-identity.js";

/** JSON with object keys sorted at every level: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === "number" && !Number.isFinite(v)) return String(v);
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      );
    }
    return v;
  });
}

export function sha256(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

const fileHashes = new Map<string, string>();
/** sha256 of a file's bytes (memoised per path and file identity within the process). */
export function fileHash(file: string): string {
  let id: string;
  try {
    id = fileIdentity(file);
  } catch (e) {
    throw new InputError(`${file}: cannot read (${(e as Error).message})`, { cause: e });
  }
  const memo = `${path.resolve(file)}\0${id}`;
  let h = fileHashes.get(memo);
  if (!h) {
    h = sha256(fs.readFileSync(file));
    fileHashes.set(memo, h);
  }
  return h;
}

/** sha256 (32 hex) of a model folder's config.json, weights and shard index, by streaming every byte. */
export function modelWeightsHash(dir: string): string {
  const h = createHash("sha256");
  const names = fs
    .readdirSync(dir)
    .filter((f) => f === "config.json" || f.endsWith(".safetensors") || f === "model.safetensors.index.json")
    .sort();
  if (!names.includes("config.json")) throw new InputError(`${dir}: no config.json, not a model folder`);
  const buf = Buffer.alloc(8 << 20);
  for (const name of names) {
    const file = path.join(dir, name);
    h.update(`${name}\0${fs.statSync(file).size}\0`);
    const fd = fs.openSync(file, "r");
    try {
      let n: number;
      while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
  }
  return h.digest("hex").slice(0, 32);
}

const folderHashes = new Map<string, string>();
/**
 * Weights and config (modelWeightsHash) plus the tokenizer files, which change prompts and so results. Memoised
 * per folder and its files' identities within the process: hashing a large checkpoint takes a while.
 */
export function modelFolderHash(dir: string): string {
  const config = path.join(dir, "config.json");
  if (!fs.existsSync(config)) throw new InputError(`${dir}: no config.json, not a model folder`);
  // every file that enters the hash, by its identity (size, mtime, ctime, inode): a changed folder is hashed again
  const memo = `${path.resolve(dir)}|${modelFolderIdentity(dir)}`;
  let h = folderHashes.get(memo);
  if (!h) {
    h = sha256(canonicalJson({ weights: modelWeightsHash(dir), tokenizer: tokenizerFilesHashes(dir) }));
    folderHashes.set(memo, h);
  }
  return h;
}

/** The tokenizer and chat-template files of a model folder: what renders and encodes its prompts. */
const TOKENIZER_HASHED = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
] as const;

/** Those of `names` that exist in `dir`, each with its sha256: [[name, hash], ...]. */
function filesHashes(dir: string, names: readonly string[]): [string, string][] {
  return names.filter((f) => fs.existsSync(path.join(dir, f))).map((f) => [f, fileHash(path.join(dir, f))]);
}

/** The tokenizer and chat-template files of a model folder that exist, each with its sha256: [[name, hash], ...]. */
export function tokenizerFilesHashes(dir: string): [string, string][] {
  return filesHashes(dir, TOKENIZER_HASHED);
}

/**
 * The files besides the weights and config.json that shape a model's generated answers: the tokenizer and chat
 * template (the prompt's text and tokens, the end of turn) and generation_config.json (its eos_token_id ends
 * answers; a server such as vLLM also takes its sampling settings as defaults). The same files a checkpoint
 * carries over from its base (io/model-folder.ts TOKENIZER_FILES; test/io/hash checks they agree).
 */
export const ANSWER_FILES = [...TOKENIZER_HASHED, "generation_config.json"] as const;

/**
 * What keys a model folder's generated answers (eval's answer cache): its weights and config (modelWeightsHash,
 * given where the caller has it) and the content of ANSWER_FILES that exist, so that a changed template,
 * tokenizer or generation config is answered again, and nothing else in the folder (a README) moves the key.
 * 32 hex, as modelWeightsHash.
 */
export function answersFingerprint(dir: string, weights: string = modelWeightsHash(dir)): string {
  return sha256(canonicalJson({ weights, files: filesHashes(dir, ANSWER_FILES) })).slice(0, 32);
}

/** The identities of a model folder's files that its hash reads (what keys a memo of what the folder holds). */
export function modelFolderIdentity(dir: string): string {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".json") || f.endsWith(".safetensors") || f.endsWith(".jinja"))
    .sort()
    .map((f) => `${f}:${fileIdentity(path.join(dir, f))}`)
    .join("|");
}

/**
 * modelFolderHash, remembered in `cacheFile` (a run folder's) under the folder's file identities, so that a
 * resumed run does not read the weights again (1.2 s per GB here). Trade-off: a file's contents are trusted to be
 * unchanged while its size, mtime, ctime, inode and device are (the fields git's index trusts): any write through
 * the file system moves mtime and ctime (ctime cannot be set back by users), a replaced or re-linked file has
 * another inode; only a change that bypasses the file system (writing the block device) would go unseen. A cache
 * that does not match, or cannot be read, is ignored and rewritten. Without the cache file's folder nothing is
 * written (the run folder does not exist yet).
 */
export function modelFolderHashCached(dir: string, cacheFile: string): string {
  const identity = `${path.resolve(dir)}|${modelFolderIdentity(dir)}`;
  try {
    const c = JSON.parse(fs.readFileSync(cacheFile, "utf8")) as { identity?: unknown; hash?: unknown };
    if (c.identity === identity && typeof c.hash === "string" && /^[0-9a-f]{64}$/.test(c.hash)) return c.hash;
  } catch {
    // absent or unreadable: hash the folder
  }
  const hash = modelFolderHash(dir);
  if (fs.existsSync(path.dirname(cacheFile)))
    writeFileAtomic(cacheFile, JSON.stringify({ identity, hash }, null, 2));
  return hash;
}
