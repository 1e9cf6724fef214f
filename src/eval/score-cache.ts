/**
 * Scored batches kept across runs (secure preference's answer losses): a JSONL file with one record per finished
 * batch, `{key, losses}`, fsync'd as it is written, the key a hash of the batch's token ids and labels (the file is
 * per model). A rerun after Ctrl-C or a kill takes those batches from the file and scores only the rest, in the
 * same batches, so the result is the uninterrupted run's bit for bit; a torn last line (a kill mid-write) is
 * dropped, as the generation cache does.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";

export class ScoreCache {
  private readonly done = new Map<string, number[]>();
  private fd: number | null = null;

  constructor(readonly file: string) {
    if (!fs.existsSync(file)) return;
    const lines = fs.readFileSync(file, "utf8").split("\n");
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      let rec: { key?: unknown; losses?: unknown };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch (e) {
        if (i === lines.length - 1) return; // torn by a kill mid-write
        throw new InputError(
          `${file} row ${i + 1}: not valid JSON (${(e as Error).message}); delete the file to score again`,
        );
      }
      if (
        typeof rec.key !== "string" ||
        !Array.isArray(rec.losses) ||
        !rec.losses.every((x) => typeof x === "number" && Number.isFinite(x))
      )
        throw new InputError(`${file} row ${i + 1}: a record needs a string "key" and finite "losses"`);
      this.done.set(rec.key, rec.losses as number[]);
    });
  }

  get(key: string): number[] | undefined {
    return this.done.get(key);
  }

  put(key: string, losses: readonly number[]): void {
    if (this.fd === null) {
      fs.mkdirSync(path.dirname(path.resolve(this.file)), { recursive: true });
      this.fd = fs.openSync(this.file, "a");
      const bytes = fs.readFileSync(this.file);
      // a torn last line: cut, so the next record starts on its own line
      if (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) {
        fs.ftruncateSync(this.fd, bytes.lastIndexOf(0x0a) + 1);
      }
    }
    fs.writeSync(this.fd, JSON.stringify({ key, losses }) + "\n");
    fs.fsyncSync(this.fd);
    this.done.set(key, [...losses]);
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
