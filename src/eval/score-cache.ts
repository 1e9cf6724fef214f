/**
 * Scored batches kept across runs (secure preference's answer losses; a judge's P(unsafe) on held-out samples,
 * LlmJudge.scoreResumable): a JSONL file with one record per finished batch, `{key, losses}` (the batch's numbers,
 * whatever they are), fsync'd as it is written, the key a hash of what was scored (the batch's token ids and labels
 * for a file per model; the judge's identity and the batch's prompts for the judge). A rerun after Ctrl-C or a kill takes those batches from the file and scores only the rest, in the
 * same batches, so the result is the uninterrupted run's bit for bit; a torn line (a kill mid-write) is skipped
 * (io/append-log.ts, as for the generation cache).
 */
import { InputError, rowWhere } from "../errors.js";
import { AppendLog, readAppendLog } from "../io/append-log.js";

export class ScoreCache {
  private readonly done = new Map<string, number[]>();
  // opened at the first batch scored: a run that only reads its cache makes no file
  private log: AppendLog | null = null;
  private closed = false;

  constructor(readonly file: string) {
    for (const { row, value } of readAppendLog(file)) {
      const rec = value as { key?: unknown; losses?: unknown };
      if (
        typeof rec.key !== "string" ||
        !Array.isArray(rec.losses) ||
        !rec.losses.every((x) => typeof x === "number" && Number.isFinite(x))
      )
        throw new InputError(`${rowWhere(file, row)}: a record needs a string "key" and finite "losses"`);
      this.done.set(rec.key, rec.losses as number[]);
    }
  }

  get(key: string): number[] | undefined {
    return this.done.get(key);
  }

  put(key: string, losses: readonly number[]): void {
    if (this.closed) throw new Error(`${this.file}: put after close`);
    this.log ??= new AppendLog(this.file);
    this.log.append({ key, losses });
    this.done.set(key, [...losses]);
  }

  close(): void {
    this.log?.close();
    this.log = null;
    this.closed = true;
  }
}
