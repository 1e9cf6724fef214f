/**
 * io/append-log.ts shared by several processes (two `eval` runs with one `--cache`): a kill of any writer at any
 * moment loses at most that writer's unfinished record; no writer cuts, joins or drops another's complete record;
 * every reader succeeds, skipping (and counting) torn lines wherever they lie. The three unit tests put in one
 * process what another writer does at the worst moment, each a case the log before 2026-12-02 got wrong; the last
 * test runs real writers and readers as child processes and SIGKILLs some at seeded random moments.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { AppendLog, readAppendLogRows } from "../../src/io/append-log.js";
import { UtilityAnswerCache } from "../../src/eval/utility/answers.js";
import { ScoreCache } from "../../src/eval/score-cache.js";
import { UtilityCache } from "../../src/eval/utility/cache.js";
import { scratchDir } from "../scratch.js";

const work = scratchDir("gv-append-shared-");
const values = (file: string) => readAppendLogRows(file).records.map((r) => r.value);

test("(a) a writer killed mid-record while another writes: the other's next record is not joined to the torn line", () => {
  const file = path.join(work, "a", "answers.jsonl");
  const b = new AppendLog(file);
  b.append({ key: "b1" });
  // another process, killed part way through its record's one write: the newline a record starts with, then a
  // prefix of its text
  fs.appendFileSync(file, "\n" + JSON.stringify({ key: "a1", answer: "x".repeat(100) }).slice(0, 40));
  b.append({ key: "b2" });
  b.append({ key: "b3" });
  b.close();
  assert.deepEqual(values(file), [{ key: "b1" }, { key: "b2" }, { key: "b3" }]);
  assert.equal(readAppendLogRows(file).torn.length, 1, "the torn prefix is one skipped line");
});

test("(b) a write that fails part way never cuts a record another process wrote meanwhile", () => {
  const file = path.join(work, "b", "answers.jsonl");
  const a = new AppendLog(file);
  a.append({ key: "a1" });
  const other = new AppendLog(file);
  // the disk takes half of a's next record and then is full, and the other process's record lands just before it
  const fsMod = createRequire(import.meta.url)("node:fs") as typeof fs;
  const real = fsMod.writeSync;
  let stage = 0;
  fsMod.writeSync = function (this: unknown, ...args: unknown[]) {
    const [fd, buf] = args as [number, Uint8Array];
    if (stage === 0 && buf instanceof Uint8Array && buf.length > 20) {
      stage = -1; // the other's write goes through as it is
      other.append({ key: "o1" });
      stage = 1;
      return (real as (...a: unknown[]) => number).call(fsMod, fd, buf, 0, buf.length >> 1, null);
    }
    if (stage === 1) {
      stage = 2;
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    }
    return (real as (...a: unknown[]) => number).apply(this, args);
  } as typeof fs.writeSync;
  syncBuiltinESMExports();
  try {
    assert.throws(
      () => a.append({ key: "a2", answer: "y".repeat(100) }),
      (e: NodeJS.ErrnoException) => e.code === "ENOSPC" && e.path === file,
    );
  } finally {
    fsMod.writeSync = real;
    syncBuiltinESMExports();
  }
  a.append({ key: "a3" });
  a.close();
  other.close();
  assert.deepEqual(values(file), [{ key: "a1" }, { key: "o1" }, { key: "a3" }]);
});

test("(c) opening the log never cuts a record another process is writing right then", () => {
  const file = path.join(work, "c", "answers.jsonl");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const rec = JSON.stringify({ key: "b", answer: "z".repeat(10000) });
  // another process's write of `rec`, seen half done (a reader or an opener can see a write in progress)
  fs.writeFileSync(file, JSON.stringify({ key: "a" }) + "\n" + rec.slice(0, 4096));
  const c = new AppendLog(file);
  fs.appendFileSync(file, rec.slice(4096) + "\n"); // the other write completes
  c.append({ key: "c" });
  c.close();
  assert.deepEqual(
    values(file).map((v) => (v as { key: string }).key),
    ["a", "b", "c"],
  );
  assert.deepEqual(readAppendLogRows(file).torn, []);
});

test("files written before 2026-12-02 read as before: records one a line, a torn last line skipped", () => {
  const file = path.join(work, "old", "answers.jsonl");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '{"key":"a","answer":"A"}\n{"key":"b","answer":"B"}\n{"key":"c","ans');
  assert.deepEqual(values(file), [
    { key: "a", answer: "A" },
    { key: "b", answer: "B" },
  ]);
  // and a new writer goes on from it without touching what is there
  const w = new AppendLog(file);
  w.append({ key: "d" });
  w.close();
  assert.ok(
    fs
      .readFileSync(file, "utf8")
      .startsWith('{"key":"a","answer":"A"}\n{"key":"b","answer":"B"}\n{"key":"c","ans'),
  );
  assert.deepEqual(
    values(file).map((v) => (v as { key: string }).key),
    ["a", "b", "d"],
  );
});

test("a put after close is an error, never a file opened again and left open", () => {
  const dir = path.join(work, "close");
  const answers = new UtilityAnswerCache(path.join(dir, "ua.jsonl"), "m");
  answers.put("k1", "1", "x");
  answers.close();
  assert.throws(() => answers.put("k2", "2", "y"), /put after close/);
  assert.throws(() => answers.withIdentity("n").put("k3", "3", "z"), /put after close/);
  const scores = new ScoreCache(path.join(dir, "s.jsonl"));
  scores.close();
  assert.throws(() => scores.put("k", [1]), /put after close/);
  const util = new UtilityCache(path.join(dir, "u.jsonl"));
  util.close();
  assert.throws(
    () => util.put("k", "arc", { metric: "acc", value: 0.5, stderr: 0.1, n: 4 }),
    /put after close/,
  );
  assert.deepEqual(fs.readdirSync(dir), ["ua.jsonl"]);
});

/** mulberry32: a small seeded generator, so that a failing schedule can be run again */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("writers and readers in child processes, some writers SIGKILLed at seeded random moments", async (t) => {
  const seed = Number(process.env.GV_SHARED_SEED ?? 20261202);
  const rand = prng(seed);
  const dir = path.join(work, "procs");
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "answers.jsonl");
  const stop = path.join(dir, "stop");
  const logJs = fileURLToPath(new URL("../../src/io/append-log.js", import.meta.url));
  const cacheJs = fileURLToPath(new URL("../../src/eval/generation-cache.js", import.meta.url));
  // a writer: records of a generation cache, `<w:i>` repeated (a mix of two writers' bytes would show), sizes from
  // a few bytes to hundreds of kilobytes (many pages, so that a kill can land inside a write); reports each
  // record on stdout once append returned
  const writerJs = path.join(dir, "writer.mjs");
  fs.writeFileSync(
    writerJs,
    `import * as fs from "node:fs";
import { AppendLog } from ${JSON.stringify(logJs)};
const [file, w, count, seed] = process.argv.slice(2).map((x, i) => (i === 0 ? x : Number(x)));
let s = seed >>> 0;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
const log = new AppendLog(file);
for (let i = 0; i < count; i++) {
  const tok = "<" + w + ":" + i + ">";
  const n = 1 + Math.floor(rand() ** 3 * 40000);
  log.append({ key: w + ":" + i, id: String(i), answer: tok.repeat(n) });
  fs.writeSync(1, i + "\\n");
}
log.close();
`,
  );
  // a reader: reads the file as the evaluation does until told to stop; any throw fails it
  const readerJs = path.join(dir, "reader.mjs");
  fs.writeFileSync(
    readerJs,
    `import * as fs from "node:fs";
import { readGenerationCache } from ${JSON.stringify(cacheJs)};
const [file, stop] = process.argv.slice(2);
let reads = 0;
while (!fs.existsSync(stop)) {
  for (const a of readGenerationCache(file).values()) {
    const tok = "<" + a.key + ">";
    if (a.answer.length % tok.length !== 0 || a.answer !== tok.repeat(a.answer.length / tok.length))
      throw new Error("a record mixed with another: " + a.key);
  }
  reads++;
}
fs.writeSync(1, String(reads));
`,
  );
  const run = (script: string, args: string[], onOut?: (out: string) => void) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      onOut?.(out);
    });
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const done = new Promise<{ code: number | null; signal: string | null; out: string; err: string }>(
      (res) => child.on("close", (code, signal) => res({ code, signal, out, err })),
    );
    return { child, done };
  };
  const writers = 6;
  const count = 12;
  const readers = [0, 1].map(() => run(readerJs, [file, stop]));
  // half the writers killed, each at its own moment within its run: once it has told a seeded number of records,
  // after a seeded delay (so within a write, between write and fsync, between records...)
  const killAt = new Map<number, { after: number; delayMs: number }>();
  while (killAt.size < writers / 2)
    killAt.set(Math.floor(rand() * writers), { after: Math.floor(rand() * count), delayMs: rand() * 30 });
  const timers: NodeJS.Timeout[] = [];
  const ws = Array.from({ length: writers }, (_, w) => {
    const seedW = String(Math.floor(rand() * 2 ** 32));
    const at = killAt.get(w);
    let armed = at !== undefined;
    const x = run(writerJs, [file, String(w), String(count), seedW], (out) => {
      if (!armed || out.split("\n").length - 1 < at!.after) return;
      armed = false;
      timers.push(setTimeout(() => x.child.kill("SIGKILL"), at!.delayMs));
    });
    if (at?.after === 0) {
      armed = false;
      timers.push(setTimeout(() => x.child.kill("SIGKILL"), 100 + at.delayMs * 10));
    }
    return x;
  });
  const results = await Promise.all(ws.map((x) => x.done));
  timers.forEach(clearTimeout);
  fs.writeFileSync(stop, "");
  const readResults = await Promise.all(readers.map((r) => r.done));
  for (const r of readResults) assert.equal(r.code, 0, `a reader failed: ${r.err}`);

  const { records, torn } = readAppendLogRows(file);
  const keys = records.map((r) => (r.value as { key: string }).key);
  assert.equal(new Set(keys).size, keys.length, "every record once");
  for (const r of records) {
    const { key, answer } = r.value as { key: string; answer: string };
    const tok = `<${key}>`;
    assert.equal(answer, tok.repeat(answer.length / tok.length), `record ${key} whole and unmixed`);
  }
  let killedForReal = 0;
  for (let w = 0; w < writers; w++) {
    const present = keys.filter((k) => k.startsWith(`${w}:`)).map((k) => Number(k.split(":")[1]));
    const told = results[w].out.split("\n").filter((x) => x !== "").length;
    if (results[w].signal === "SIGKILL") {
      killedForReal++;
      // what append returned is there, in order; at most the record in flight besides
      assert.ok(
        present.length === told || present.length === told + 1,
        `writer ${w}: ${present.length} vs ${told}`,
      );
    } else {
      assert.equal(results[w].code, 0, `writer ${w}: ${results[w].err}`);
      assert.equal(told, count);
    }
    assert.deepEqual(
      present,
      [...Array(present.length).keys()],
      `writer ${w}'s records, each once, in order`,
    );
  }
  t.diagnostic(
    `seed ${seed}: ${killedForReal} writers killed, ${records.length} records, ${torn.length} torn lines, reads ${readResults.map((r) => r.out).join("+")}`,
  );
  assert.ok(torn.length <= killedForReal, `torn lines ${torn.length} <= writers killed ${killedForReal}`);
});
