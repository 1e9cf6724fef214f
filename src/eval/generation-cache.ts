/**
 * The safety evaluation's generation cache: a JSONL file with one record per finished answer (fsync'd as it is
 * written) under a key of the prompt, the model and the generation options, plus the LLM judge's verdict under
 * the judge's key. A rerun takes those answers from the file and generates only the rest, so a killed run loses
 * at most the batch in flight; a torn last line (a kill mid-write) is dropped.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { sha256 } from "../io/hash.js";
import type { ChatMessage } from "../io/tokenizer.js";

export interface CacheRecord {
  key: string;
  id: string;
  answer: string;
  /** LLM judge verdict, under the judge's key (a hash of its weights and convention). */
  llm?: { judge: string; pUnsafe: number };
}

export function readGenerationCache(file: string): Map<string, CacheRecord> {
  const out = new Map<string, CacheRecord>();
  if (!fs.existsSync(file)) return out;
  const lines = fs.readFileSync(file, "utf8").split("\n");
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let rec: CacheRecord;
    try {
      rec = JSON.parse(line) as CacheRecord;
    } catch (e) {
      // A run killed mid-write leaves a torn last line; anything else is damage the user should see.
      if (i === lines.length - 1) return;
      throw new InputError(
        `${file} row ${i + 1}: not valid JSON (${(e as Error).message}); delete the cache to start over`,
      );
    }
    if (typeof rec.key !== "string" || typeof rec.answer !== "string")
      throw new InputError(`${file} row ${i + 1}: a cache record needs string fields "key" and "answer"`);
    const prev = out.get(rec.key);
    // A later record for the same key only adds an LLM verdict; keep the earlier ones' answers.
    out.set(rec.key, prev ? { ...prev, llm: rec.llm ?? prev.llm } : rec);
  });
  return out;
}

export class GenerationCacheWriter {
  private fd: number;
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, "a");
    const bytes = fs.readFileSync(file);
    // drop a torn last line (a run killed mid-write) so the next record starts on its own line
    if (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) {
      fs.ftruncateSync(this.fd, bytes.lastIndexOf(0x0a) + 1);
      fs.fsyncSync(this.fd);
    }
  }
  append(rec: CacheRecord): void {
    fs.writeSync(this.fd, JSON.stringify(rec) + "\n");
    fs.fsyncSync(this.fd);
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}

/**
 * The key of one answer: the prompt (id and messages), what answers it (`model`: the evaluated model's identity,
 * its backend) and the generation options that change the text.
 */
export function generationKey(
  id: string,
  messages: readonly ChatMessage[],
  model: string,
  backend: string,
  gen: object,
): string {
  return sha256(JSON.stringify({ id, messages, model, backend, gen })).slice(0, 32);
}
