/**
 * io/append-log.ts on a disk that fills up mid-record (a small tmpfs of our own; skipped where mounting is not
 * permitted): the error names the log file, the log keeps whole lines only, and once space is freed the next
 * record is read back with every earlier one. A write the disk cuts short returns the bytes it wrote instead of
 * failing, so a writer that ignores that count leaves a torn line inside the log, which reading then reports as
 * damage ("delete the cache to start over": every cached answer lost).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { AppendLog, readAppendLog, readAppendLogRows } from "../../src/io/append-log.js";
import { scratchDir } from "../scratch.js";

const work = scratchDir("gv-append-log-");
const disk = path.join(work, "disk");
fs.mkdirSync(disk);
const mounted =
  process.platform === "linux" &&
  spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk], { encoding: "utf8" }).status === 0;
after(() => {
  if (mounted) spawnSync("umount", ["-l", disk]);
  fs.rmSync(work, { recursive: true, force: true });
});

/** Fill the file system of `dir` to the last byte; returns the filler's path. */
function fill(dir: string): string {
  const filler = path.join(dir, "filler");
  const fd = fs.openSync(filler, "w");
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) if (fs.writeSync(fd, chunk) < chunk.length) break;
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, "ENOSPC");
  } finally {
    fs.closeSync(fd);
  }
  return filler;
}

test(
  "a disk full in the middle of a record: ENOSPC naming the log, whole lines kept, the next record read back with the first",
  { skip: mounted ? false : "mounting a tmpfs is not permitted here (not root, or not Linux)" },
  () => {
    const file = path.join(disk, "cache", "answers.jsonl");
    const log = new AppendLog(file);
    const first = { key: "a", text: "x" };
    log.append(first);
    const filler = fill(disk);
    // larger than what is left of the log's first page: part of it fits there, the rest finds no room
    const second = { key: "b", text: "y".repeat(6000) };
    assert.throws(
      () => log.append(second),
      (e: NodeJS.ErrnoException) => e.code === "ENOSPC" && e.path === file,
    );
    assert.deepEqual(
      readAppendLog(file).map((r) => r.value),
      [first],
      "the log holds whole records only",
    );
    // space freed (another job's files deleted): the same writer goes on, and reading finds no damage
    fs.rmSync(filler);
    const third = { key: "c", text: "z" };
    log.append(third);
    log.close();
    assert.deepEqual(
      readAppendLog(file).map((r) => r.value),
      [first, third],
    );
    // the torn part is a line of its own, never joined to the next record
    assert.equal(readAppendLogRows(file).torn.length, 1);
  },
);

test("a last line without its newline: a whole record is kept by the next writer, as reading keeps it; a torn one is skipped", () => {
  const file = path.join(work, "tail", "answers.jsonl");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const a = { key: "a", answer: "A" };
  const b = { key: "b", answer: "B" };
  const c = { key: "c", answer: "C" };
  const records = () => readAppendLog(file).map((r) => r.value);
  // a write stopped between a record's last byte and its newline (a kill at a page boundary; an editor that drops
  // the final newline): reading takes the record, and so does the next writer's file
  fs.writeFileSync(file, `${JSON.stringify(a)}\n${JSON.stringify(b)}`);
  assert.deepEqual(records(), [a, b]);
  const log = new AppendLog(file);
  log.append(c);
  log.close();
  assert.deepEqual(records(), [a, b, c]);
  // a record torn inside is no JSON: reading skips it; the next writer leaves it (another process may be writing
  // it right then) and starts its own record on a line of its own
  const torn = JSON.stringify(b).slice(0, 9);
  fs.writeFileSync(file, `${JSON.stringify(a)}\n${torn}`);
  assert.deepEqual(records(), [a]);
  const again = new AppendLog(file);
  again.append(c);
  again.close();
  assert.equal(fs.readFileSync(file, "utf8"), `${JSON.stringify(a)}\n${torn}\n${JSON.stringify(c)}`);
  assert.deepEqual(records(), [a, c]);
});
