/**
 * The safety evaluation's generation cache: a JSONL file with one record per finished answer (fsync'd as it is
 * written) under a key of the prompt, the model and the generation options, plus LLM judges' verdicts as later
 * records of the same key, each under its judge's key and input's. A rerun takes those answers from the file and
 * generates only the rest, so a killed run loses at most the batch in flight; a torn line (a kill mid-write, of
 * this run or of another sharing the file) is skipped (io/append-log.ts). Every judge's verdicts are kept: evaluating with judge A, then B, then A again asks A nothing the
 * third time (before 2026-12-02 the read kept only the last verdict of an answer, B's, and A judged all again).
 */
import { InputError, rowWhere } from "../errors.js";
import { AppendLog, readAppendLog } from "../io/append-log.js";
import { sha256 } from "../io/hash.js";
import type { ChatMessage } from "../io/tokenizer.js";

/**
 * An LLM judge's verdict on an answer, under the judge's key (a hash of its weights and convention) and its input's
 * (what it was asked of the answer; absent in records written before 2026-12-02); judgedChars when it read only
 * the first lines of a long answer (eval/safety.ts LlmVerdict).
 */
export interface CachedVerdict {
  judge: string;
  input?: string;
  pUnsafe: number;
  judgedChars?: number;
}

/** One line of the file: an answer, with at most one verdict (the format of every version). */
export interface CacheRecord {
  key: string;
  id: string;
  answer: string;
  llm?: CachedVerdict;
}

/** An answer as read: its first record's answer and the verdicts of all its records, one per judge and input. */
export interface CachedAnswer {
  key: string;
  id: string;
  answer: string;
  verdicts: CachedVerdict[];
}

export function readGenerationCache(file: string): Map<string, CachedAnswer> {
  const out = new Map<string, CachedAnswer>();
  for (const { row, value } of readAppendLog(file)) {
    const rec = value as CacheRecord;
    if (typeof rec.key !== "string" || typeof rec.answer !== "string")
      throw new InputError(`${rowWhere(file, row)}: a cache record needs string fields "key" and "answer"`);
    addRecord(out, rec);
  }
  return out;
}

/**
 * Adds a record to the answers read: a new key's answer, or a later record's verdict to its key's answer (in place of
 * an earlier one of the same judge and input). A later record never replaces the earlier one's answer.
 */
export function addRecord(answers: Map<string, CachedAnswer>, rec: CacheRecord): void {
  let entry = answers.get(rec.key);
  if (!entry) answers.set(rec.key, (entry = { key: rec.key, id: rec.id, answer: rec.answer, verdicts: [] }));
  const verdict = rec.llm;
  if (!verdict) return;
  const i = entry.verdicts.findIndex((v) => v.judge === verdict.judge && v.input === verdict.input);
  if (i >= 0) entry.verdicts[i] = verdict;
  else entry.verdicts.push(verdict);
}

/** The verdict of judge `judge` on input `input` cached for an answer, if any. */
export function cachedVerdict(
  entry: CachedAnswer | undefined,
  judge: string,
  input: string,
): CachedVerdict | undefined {
  return entry?.verdicts.find((v) => v.judge === judge && v.input === input && typeof v.pUnsafe === "number");
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
