/**
 * The safety evaluation's generation cache: a JSONL file with one record per finished answer (fsync'd as it is
 * written) under a key of the prompt, the model and the generation options, plus the LLM judge's verdict under
 * the judge's key. A rerun takes those answers from the file and generates only the rest, so a killed run loses
 * at most the batch in flight; a torn last line (a kill mid-write) is dropped.
 */
import { InputError, rowWhere } from "../errors.js";
import { AppendLog, readAppendLog } from "../io/append-log.js";
import { sha256 } from "../io/hash.js";
import type { ChatMessage } from "../io/tokenizer.js";

export interface CacheRecord {
  key: string;
  id: string;
  answer: string;
  /**
   * LLM judge verdict, under the judge's key (a hash of its weights and convention) and its input's (what it was
   * asked of the answer; absent in records written before 2026-12-02); judgedChars when it read only the first
   * lines of a long answer (eval/safety.ts LlmVerdict).
   */
  llm?: { judge: string; input?: string; pUnsafe: number; judgedChars?: number };
}

export function readGenerationCache(file: string): Map<string, CacheRecord> {
  const out = new Map<string, CacheRecord>();
  for (const { row, value } of readAppendLog(file, "delete the cache to start over")) {
    const rec = value as CacheRecord;
    if (typeof rec.key !== "string" || typeof rec.answer !== "string")
      throw new InputError(`${rowWhere(file, row)}: a cache record needs string fields "key" and "answer"`);
    const prev = out.get(rec.key);
    // A later record for the same key only adds an LLM verdict; keep the earlier ones' answers.
    out.set(rec.key, prev ? { ...prev, llm: rec.llm ?? prev.llm } : rec);
  }
  return out;
}

/** Appends answers (and verdicts) to the cache file. */
export class GenerationCacheWriter {
  private readonly log: AppendLog;
  constructor(readonly file: string) {
    this.log = new AppendLog(file);
  }
  append(rec: CacheRecord): void {
    this.log.append(rec);
  }
  close(): void {
    this.log.close();
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
