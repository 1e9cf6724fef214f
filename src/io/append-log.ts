/**
 * An append-only JSONL log that survives kills: one record per line, fsync'd as it is written. A kill mid-write
 * leaves a torn last line, which reading drops and the next writer cuts off (so its first record starts on its own
 * line); a bad line anywhere else is damage the user should see. The evaluation's caches (generated answers,
 * scored batches) are such logs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError, rowWhere } from "../errors.js";

/**
 * The parsed records of `file` with their 1-based rows, in order ([] when there is no file). A line that is not
 * JSON throws an InputError naming the file and row and ending with `remedy` ("delete the cache to start over"),
 * unless it is the torn last line.
 */
export function readAppendLog(file: string, remedy: string): { row: number; value: unknown }[] {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const out: { row: number; value: unknown }[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      out.push({ row: i + 1, value: JSON.parse(line) as unknown });
    } catch (e) {
      if (i === lines.length - 1) return; // torn by a kill mid-write
      throw new InputError(`${rowWhere(file, i + 1)}: not valid JSON (${(e as Error).message}); ${remedy}`);
    }
  });
  return out;
}

/** Appends records to `file` (made with its folder if missing), each fsync'd; a torn last line is cut first. */
export class AppendLog {
  private fd: number;
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, "a");
    const bytes = fs.readFileSync(file);
    if (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) {
      fs.ftruncateSync(this.fd, bytes.lastIndexOf(0x0a) + 1);
      fs.fsyncSync(this.fd);
    }
  }
  append(record: unknown): void {
    fs.writeSync(this.fd, JSON.stringify(record) + "\n");
    fs.fsyncSync(this.fd);
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}
