/**
 * An append-only JSONL log that any number of processes may append to at once (two `eval` runs sharing one
 * `--cache`) and that survives a kill of any of them at any moment: a killed writer loses at most its own
 * unfinished record, and no writer ever cuts, joins or drops another's complete record.
 *
 * Framing: each record is one write() of `\n` + JSON on a descriptor opened with O_APPEND, fsync'd: the newline
 * comes before the record, not after, so that it ends whatever line a killed writer left unfinished and the next
 * record (of any writer) starts on a line of its own. A file holds one record a line as before (a blank first
 * line, and no newline after the last record; `wc -l` counts the records). Nothing is ever truncated or
 * repaired in place: a torn record (a prefix of an object's text, never valid JSON; JSON.stringify writes no raw
 * newline) is a line that reading skips and counts, wherever it lies, and the record is computed again. Files
 * written before 2026-12-02 (`JSON\n` per record, a torn last line at worst) read as before.
 *
 * Assumed: a local file system of Linux or macOS, where an O_APPEND write() of a regular file is placed at the end
 * and its bytes are never interleaved with another write()'s (the inode is locked for the whole write), so
 * records of concurrent writers never mix; a write is cut short only by a kill (at a page boundary) or a full
 * disk, and then leaves a prefix of the record. Not NFS across machines: each client places an O_APPEND write at
 * the end as it last saw it, so runs on two machines can overwrite each other's records; give each machine its own
 * `--cache` on a local disk. Not a writer of a version before 2026-12-02 at the same time (it ends records with
 * the newline instead, so its record can join the end of a new one).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { withPath } from "../errors.js";

/**
 * The parsed records of `file` with their 1-based rows, in order ([] when there is no file), and the rows of the
 * lines skipped as torn (not JSON). Why skipped, never fatal: with writers sharing the file, a line a killed writer
 * left unfinished can lie anywhere, not only last, and cannot be told from damage; refusing the file would make
 * the user delete every complete answer in it, while skipping costs only that record's recomputation.
 */
export function readAppendLogRows(file: string): {
  records: { row: number; value: unknown }[];
  torn: number[];
} {
  const records: { row: number; value: unknown }[] = [];
  const torn: number[] = [];
  if (!fs.existsSync(file)) return { records, torn };
  fs.readFileSync(file, "utf8")
    .split("\n")
    .forEach((line, i) => {
      if (line.trim() === "") return;
      try {
        records.push({ row: i + 1, value: JSON.parse(line) as unknown });
      } catch {
        torn.push(i + 1);
      }
    });
  return { records, torn };
}

/**
 * readAppendLogRows's records; torn lines are told on stderr by count (and the first rows), so that damage is
 * seen, but never stop the run.
 */
export function readAppendLog(file: string): { row: number; value: unknown }[] {
  const { records, torn } = readAppendLogRows(file);
  if (torn.length > 0)
    process.stderr.write(
      `${file}: skipped ${torn.length} unfinished record line(s) (row ${torn.slice(0, 5).join(", ")}${torn.length > 5 ? ", ..." : ""}), as a killed run leaves them; those records are computed again\n`,
    );
  return records;
}

/** Appends records to `file` (made with its folder if missing), each one write() and fsync'd (see the file's comment). */
export class AppendLog {
  private fd: number | null;
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, "a");
  }
  /**
   * One write() of the whole record. A full disk can cut it short without failing it (the call returns the bytes
   * that fitted): the rest is never written after the fact (another writer's records may follow by then) and the
   * part written is never cut (another writer's may follow it already). A newline is written after it, which the
   * full disk refuses with the error (ENOSPC) that is thrown, naming the file (a write to a descriptor carries no
   * path). The torn line is skipped by reading, as a kill's is, and the next record starts a line of its own.
   */
  append(record: unknown): void {
    if (this.fd === null) throw new Error(`${this.file}: append after close`);
    const bytes = Buffer.from("\n" + JSON.stringify(record));
    try {
      const n = fs.writeSync(this.fd, bytes);
      if (n < bytes.length) {
        fs.writeSync(this.fd, "\n");
        throw new Error(`${this.file}: the file system took ${n} of a record's ${bytes.length} bytes`);
      }
      fs.fsyncSync(this.fd);
    } catch (e) {
      throw withPath(e, this.file);
    }
  }
  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
