import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { parquetWriteBuffer } from "hyparquet-writer";
import { spawnSync } from "node:child_process";
import {
  loadArc,
  loadGsm8k,
  loadHumanEval,
  loadMmlu,
  parquetWorkersStarted,
  subsample,
} from "../../src/eval/utility/datasets.js";
import { InputError } from "../../src/errors.js";

const tmp = scratchDir("gv-datasets-");
process.on("exit", () => fs.rmSync(tmp, { recursive: true, force: true }));

function writeJsonl(name: string, rows: unknown[], gzip = false): string {
  const file = path.join(tmp, name);
  const text = rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
  fs.writeFileSync(file, gzip ? zlib.gzipSync(text) : text);
  return file;
}

const ARC_ROW = {
  id: "Mercury_1",
  question: "Which is a gas?",
  choices: { text: ["ice", "steam", "rock"], label: ["A", "B", "C"] },
  answerKey: "B",
};

test("ARC JSONL: fields parsed, gold is the index of answerKey among the labels", async () => {
  const numeric = {
    ...ARC_ROW,
    id: "n",
    choices: { text: ["a", "b", "c", "d"], label: ["1", "2", "3", "4"] },
    answerKey: "4",
  };
  const items = await loadArc(writeJsonl("arc.jsonl", [ARC_ROW, numeric]));
  assert.equal(items.length, 2);
  assert.equal(items[0]!.gold, 1);
  assert.deepEqual(items[0]!.choices.text, ["ice", "steam", "rock"]);
  assert.equal(items[1]!.gold, 3);
});

test("ARC errors name the file, the row and the field", async () => {
  const file = writeJsonl("arc-bad.jsonl", [ARC_ROW, { ...ARC_ROW, answerKey: "E" }]);
  await assert.rejects(loadArc(file), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /arc-bad\.jsonl row 2 field "answerKey": "E" is not one of the labels/);
    return true;
  });
  const missing = writeJsonl("arc-missing.jsonl", [{ ...ARC_ROW, choices: { text: ["a"], label: [1] } }]);
  await assert.rejects(
    loadArc(missing),
    /arc-missing\.jsonl row 1 field "choices\.label": must be an array of strings/,
  );
  const broken = path.join(tmp, "arc-broken.jsonl");
  fs.writeFileSync(broken, JSON.stringify(ARC_ROW) + "\n{not json\n");
  await assert.rejects(loadArc(broken), /arc-broken\.jsonl row 2: bad JSON/);
});

test("GSM8K JSONL (gzipped too): final answer after the last '#### '", async () => {
  const rows = [
    { question: "q", answer: "2 * 3 = <<2*3=6>>6\n#### 6" },
    { question: "r", answer: "#### 1,200" },
  ];
  for (const gz of [false, true]) {
    const items = await loadGsm8k(writeJsonl(gz ? "gsm.jsonl.gz" : "gsm.jsonl", rows, gz));
    assert.deepEqual(
      items.map((i) => i.finalAnswer),
      ["6", "1,200"],
    );
  }
  await assert.rejects(
    loadGsm8k(writeJsonl("gsm-bad.jsonl", [{ question: "q", answer: "six" }])),
    /row 1 field "answer": no final answer/,
  );
});

test("MMLU from Parquet (HF layout: choices as a list, answer as int64) and from JSONL", async () => {
  const file = path.join(tmp, "mmlu.parquet");
  const buf = parquetWriteBuffer({
    columnData: [
      { name: "question", data: ["What is 2+2?", "Bones in the adult body?"], type: "STRING" },
      { name: "subject", data: ["elementary_mathematics", "anatomy"], type: "STRING" },
      {
        name: "choices",
        data: [
          ["3", "4", "5", "6"],
          ["206", "212", "180", "300"],
        ],
      },
      { name: "answer", data: [1n, 0n], type: "INT64" },
    ],
  });
  fs.writeFileSync(file, new Uint8Array(buf));
  const items = await loadMmlu(file);
  assert.deepEqual(items, [
    { question: "What is 2+2?", subject: "elementary_mathematics", choices: ["3", "4", "5", "6"], answer: 1 },
    {
      question: "Bones in the adult body?",
      subject: "anatomy",
      choices: ["206", "212", "180", "300"],
      answer: 0,
    },
  ]);
  const jsonl = writeJsonl("mmlu.jsonl", [
    { question: "q", subject: "s", choices: ["a", "b", "c"], answer: 0 },
  ]);
  await assert.rejects(loadMmlu(jsonl), /mmlu\.jsonl row 1 field "choices": must hold 4 strings, got 3/);
  const badAnswer = writeJsonl("mmlu2.jsonl", [
    { question: "q", subject: "s", choices: ["a", "b", "c", "d"], answer: 4 },
  ]);
  await assert.rejects(loadMmlu(badAnswer), /row 1 field "answer": must be an integer 0-3, got 4/);
});

test("Parquet errors name the file and row", async () => {
  const file = path.join(tmp, "mmlu-bad.parquet");
  const buf = parquetWriteBuffer({
    columnData: [
      { name: "question", data: ["ok", "ok"], type: "STRING" },
      { name: "subject", data: ["s", "s"], type: "STRING" },
      {
        name: "choices",
        data: [
          ["a", "b", "c", "d"],
          ["a", "b", "c", "d"],
        ],
      },
      { name: "answer", data: [0n, 7n], type: "INT64" },
    ],
  });
  fs.writeFileSync(file, new Uint8Array(buf));
  await assert.rejects(loadMmlu(file), /mmlu-bad\.parquet row 2 field "answer"/);
  const notParquet = path.join(tmp, "junk.parquet");
  fs.writeFileSync(notParquet, "hello");
  await assert.rejects(loadMmlu(notParquet), /junk\.parquet: not a readable Parquet file/);
});

test("Parquet reads reuse one decoder worker while they succeed; a failed read's worker is not reused", async () => {
  // one worker start costs ~150 ms of CPU, more than a small file's decoding (the fuzz tests read ~100 files)
  const questions = (n: number) => Array.from({ length: n }, (_, i) => `question ${n}.${i}`);
  const write = (n: number): string => {
    const file = path.join(tmp, `reuse-${n}.parquet`);
    const buf = parquetWriteBuffer({
      columnData: [
        { name: "question", data: questions(n), type: "STRING" },
        { name: "subject", data: questions(n).map(() => "s"), type: "STRING" },
        { name: "choices", data: questions(n).map(() => ["a", "b", "c", "d"]) },
        { name: "answer", data: questions(n).map((_, i) => BigInt(i % 4)), type: "INT64" },
      ],
    });
    fs.writeFileSync(file, new Uint8Array(buf));
    return file;
  };
  const files = [1, 2, 3].map(write);
  const read = async (file: string, n: number) =>
    assert.deepEqual(
      (await loadMmlu(file)).map((x) => [x.question, x.answer]),
      questions(n).map((q, i) => [q, i % 4]),
    );
  const started = parquetWorkersStarted();
  for (const [i, f] of files.entries()) await read(f, i + 1);
  assert.equal(parquetWorkersStarted() - started, 1, "three clean reads one after another: one worker");
  // at the same time: each read its own rows (a second worker for the overlap)
  await Promise.all(files.map((f, i) => read(f, i + 1)));
  const afterOverlap = parquetWorkersStarted();
  await read(files[0]!, 1);
  assert.equal(parquetWorkersStarted(), afterOverlap, "a worker from the overlap is reused");
  // a read that fails ends its worker: the next read starts a fresh one
  const junk = path.join(tmp, "reuse-junk.parquet");
  fs.writeFileSync(junk, "not parquet at all");
  await assert.rejects(loadMmlu(junk), /reuse-junk\.parquet: not a readable Parquet file/);
  await read(files[1]!, 2);
  assert.equal(parquetWorkersStarted(), afterOverlap + 1, "the failed read's worker was reused");
  // the idle worker never keeps a process alive
  const here = path.dirname(fileURLToPath(import.meta.url));
  const mod = path.resolve(here, "../../src/eval/utility/datasets.js");
  const child = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const { loadMmlu } = await import(${JSON.stringify(mod)}); console.log((await loadMmlu(${JSON.stringify(files[2])})).length);`,
    ],
    { encoding: "utf8", timeout: 60_000 },
  );
  assert.equal(child.signal, null, "a process that read a Parquet file did not exit by itself");
  assert.equal(child.status, 0, child.stderr);
  assert.equal(child.stdout.trim(), "3");
});

test("HumanEval gzipped JSONL with a missing field is rejected by name", async () => {
  const row = {
    task_id: "HumanEval/0",
    prompt: "def f():\n",
    canonical_solution: "    return 1\n",
    test: "def check(c):\n    assert c() == 1\n",
    entry_point: "f",
  };
  const items = await loadHumanEval(writeJsonl("he.jsonl.gz", [row], true));
  assert.equal(items[0]!.entry_point, "f");
  const { test: _t, ...noTest } = row;
  await assert.rejects(
    loadHumanEval(writeJsonl("he-bad.jsonl", [noTest])),
    /he-bad\.jsonl row 1 field "test": must be a string, got nothing \(missing\)/,
  );
});

test("--limit without a seed keeps the first items; with a seed a fixed, order-preserving subsample", async () => {
  const rows = Array.from({ length: 20 }, (_, i) => ({ question: `q${i}`, answer: `#### ${i}` }));
  const file = writeJsonl("gsm-many.jsonl", rows);
  assert.deepEqual(
    (await loadGsm8k(file, { limit: 3 })).map((i) => i.finalAnswer),
    ["0", "1", "2"],
  );
  const a = await loadGsm8k(file, { limit: 5, seed: 7 });
  const b = await loadGsm8k(file, { limit: 5, seed: 7 });
  assert.deepEqual(a, b);
  const idx = a.map((i) => Number(i.finalAnswer));
  assert.deepEqual(
    idx,
    [...idx].sort((x, y) => x - y),
  );
  assert.equal(new Set(idx).size, 5);
});

test("subsample: properties — size, membership, no duplicates, determinism, different seeds differ, roughly uniform", () => {
  const items = Array.from({ length: 50 }, (_, i) => i);
  const s = subsample(items, { limit: 10, seed: 1 });
  assert.equal(s.length, 10);
  assert.equal(new Set(s).size, 10);
  assert.deepEqual(subsample(items, { limit: 10, seed: 1 }), s);
  assert.notDeepEqual(subsample(items, { limit: 10, seed: 2 }), s);
  assert.deepEqual(subsample(items, { limit: 99, seed: 3 }), items);
  // Each item should be picked about 1000 * 10/50 = 200 times over 1000 seeds (binomial sd ~12.6).
  const counts = new Array(50).fill(0);
  for (let seed = 0; seed < 1000; seed++) for (const x of subsample(items, { limit: 10, seed })) counts[x]++;
  for (const c of counts) assert.ok(c > 140 && c < 260, `count ${c} far from 200`);
});

// Real data, read in place from ../shared/data (never copied into the repo); skipped when absent.
const DATA =
  process.env.GOODVIBE_DATA ??
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../shared/data");
const have = (p: string) => fs.existsSync(path.join(DATA, p));

test(
  "real ARC-Challenge test set parses (1,172 rows)",
  { skip: !have("arc/arc_challenge_test.jsonl") },
  async () => {
    const items = await loadArc(path.join(DATA, "arc/arc_challenge_test.jsonl"));
    assert.equal(items.length, 1172);
    for (const it of items) assert.ok(it.gold >= 0 && it.gold < it.choices.text.length);
  },
);

test(
  "real GSM8K test and train parse (1,319 / 7,473 rows)",
  { skip: !have("gsm8k/test.jsonl") },
  async () => {
    assert.equal((await loadGsm8k(path.join(DATA, "gsm8k/test.jsonl"))).length, 1319);
    const train = await loadGsm8k(path.join(DATA, "gsm8k/train.jsonl"));
    assert.equal(train.length, 7473);
    for (const it of train) assert.match(it.finalAnswer, /^-?[0-9][0-9,.]*$/);
  },
);

test("real HumanEval parses (164 problems)", { skip: !have("humaneval/HumanEval.jsonl.gz") }, async () => {
  const items = await loadHumanEval(path.join(DATA, "humaneval/HumanEval.jsonl.gz"));
  assert.equal(items.length, 164);
  assert.equal(items[0]!.task_id, "HumanEval/0");
});
