/**
 * An append-only JSONL log that survives kills: one record per line, fsync'd as it is written. A kill mid-write
 * leaves a torn last line, which reading drops and the next writer cuts off (so its first record starts on its own
 * line); a bad line anywhere else is damage the user should see. The evaluation's caches (generated answers,
 * scored batches) are such logs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError, rowWhere, withPath } from "../errors.js";
import { writeWhole } from "./atomic.js";

/** A line reading takes as a record: JSON (a torn record, a prefix of an object's text, never is). */
function isRecord(line: string): boolean {
  if (line.trim() === "") return false;
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}

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

/**
 * Appends records to `file` (made with its folder if missing), each fsync'd. A last line without its newline is
 * first mended as reading takes it: a torn record (not JSON) is cut; a whole record whose newline a kill cut off (a
 * write stopped at a page boundary) gets its newline, where before 2026-12-02 it was cut too, and an answer the
 * run had read from the file was gone from it for the next.
 */
export class AppendLog {
  private fd: number;
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, "a");
    const bytes = fs.readFileSync(file);
    if (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) {
      const from = bytes.lastIndexOf(0x0a) + 1;
      if (isRecord(bytes.subarray(from).toString("utf8"))) writeWhole(this.fd, Buffer.from("\n"));
      else fs.ftruncateSync(this.fd, from);
      fs.fsyncSync(this.fd);
    }
  }
  /**
   * A full disk can cut a write short without failing it (the call returns the bytes that fitted): the rest is
   * written until the disk refuses, and then the part written is cut off again, so that the log holds whole lines
   * only, for this writer's next record and for the next run. The error names the file (a write to a
   * descriptor carries no path).
   */
  append(record: unknown): void {
    const bytes = Buffer.from(JSON.stringify(record) + "\n");
    const start = fs.fstatSync(this.fd).size;
    try {
      writeWhole(this.fd, bytes);
      fs.fsyncSync(this.fd);
    } catch (e) {
      try {
        fs.ftruncateSync(this.fd, start);
      } catch {
        // left torn: the next AppendLog on the file cuts a torn last line
      }
      throw withPath(e, this.file);
    }
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}
