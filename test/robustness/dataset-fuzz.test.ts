/**
 * Bounded seeded fuzz of the dataset readers: readPairs, readLabelledCode and the utility loaders (ARC, GSM8K,
 * MMLU incl. Parquet, HumanEval). Contract: valid items or an InputError naming the file; nothing else, and
 * nothing hangs (each test carries a timeout far above its normal run). bench/fuzz-long.ts runs the same
 * generators for minutes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import { readLabelledCode, readPairs } from "../../src/data/pairs.js";
import { loadGsm8k, loadMmlu, readRows } from "../../src/eval/utility/datasets.js";
import { DEFAULT_MAX_ROW_BYTES } from "../../src/data/jsonl.js";
import { readCodeRows } from "../../src/eval/utility/code-loss.js";
import { TARGETS, makeCase, runCase } from "./fuzz-generators.js";

const tmp = scratchDir("gv-fuzz-");
process.on("exit", () => fs.rmSync(tmp, { recursive: true, force: true }));

const ITERATIONS = 400;
const SEED = 20240611;
/** A small row limit during the fuzz, so that the rows past it stay small files. */
const FUZZ_ROW_LIMIT = 200_000;

/** Run `fn` with environment variables set, restoring them after. */
async function withEnv<T>(vars: Record<string, string>, fn: () => T | Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test("the fuzz seeds are valid and the schema checks can fail", async () => {
  for (const target of TARGETS) {
    const file = path.join(tmp, `seed-${target.name}.jsonl`);
    fs.writeFileSync(file, target.seedRows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const items = await target.read(file);
    assert.equal(items.length, target.seedRows.length, target.name);
    for (const item of items) target.checkItem(item);
    // A check that accepted anything would make the fuzz below vacuous.
    assert.throws(() =>
      target.checkItem({ ...(items[0] as object), id: 7, question: 7, task_id: 7, lang: "klingon" }),
    );
  }
});

/**
 * The fuzz's small row limit, set while any fuzz loop runs. A loop past its test's timeout goes on in the background
 * (until it sees the test's signal) while the next test starts: a plain withEnv there captured the small limit as
 * the value to restore, and every test after it ran with it (failing on their own rows).
 */
let fuzzLoops = 0;
const ROW_LIMIT_BEFORE = process.env.GOODVIBE_MAX_ROW_BYTES;
async function withFuzzRowLimit(fn: () => Promise<void>): Promise<void> {
  if (fuzzLoops++ === 0) process.env.GOODVIBE_MAX_ROW_BYTES = String(FUZZ_ROW_LIMIT);
  try {
    await fn();
  } finally {
    if (--fuzzLoops === 0) {
      if (ROW_LIMIT_BEFORE === undefined) delete process.env.GOODVIBE_MAX_ROW_BYTES;
      else process.env.GOODVIBE_MAX_ROW_BYTES = ROW_LIMIT_BEFORE;
    }
  }
}

for (const target of TARGETS) {
  test(
    `fuzz ${target.name}: ${ITERATIONS} seeded cases give items or InputError`,
    { timeout: 60_000 },
    async (t) => {
      const failures: string[] = [];
      const kinds = new Map<string, number>();
      const mutations = new Set<string>();
      await withFuzzRowLimit(async () => {
        // past its timeout the test has failed already: stop, so that the small row limit ends soon after it
        for (let i = 0; i < ITERATIONS && !t.signal.aborted; i++) {
          const c = makeCase(SEED, i, target);
          mutations.add(c.mutation);
          try {
            const outcome = await runCase(tmp, target, c, `${target.name}-${i}`);
            kinds.set(outcome.kind, (kinds.get(outcome.kind) ?? 0) + 1);
          } catch (e) {
            failures.push((e as Error).message);
          } finally {
            fs.rmSync(path.join(tmp, `${target.name}-${i}${c.suffix}`), { force: true });
          }
        }
      });
      for (const m of ["prototype key", "row near the size limit"])
        assert.ok(mutations.has(m), `the fuzz stream never made a "${m}" case`);
      assert.deepEqual(
        failures.slice(0, 5),
        [],
        `${failures.length} of ${ITERATIONS} cases broke the contract`,
      );
      // The generators must reach the error paths; most mutations produce an InputError.
      assert.ok((kinds.get("input-error") ?? 0) > ITERATIONS / 4, `outcomes: ${JSON.stringify([...kinds])}`);
    },
  );
}

function writeRows(name: string, lines: string[]): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, lines.join("\n") + "\n");
  return file;
}

test("readPairs rejects language names that are Object.prototype properties", () => {
  // LANGUAGE_ALIASES is a plain object: "constructor" used to map to the Object function.
  for (const lang of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
    const row = { id: "x", lang, question: "q", chosen: "x = 1;", rejected: "y = 2;" };
    const file = writeRows(`proto-${lang}.jsonl`, [JSON.stringify(row)]);
    assert.throws(
      () => readPairs(file),
      (e: unknown) => e instanceof InputError && /unknown language/.test(e.message),
      lang,
    );
    const labelled = writeRows(`proto-code-${lang}.jsonl`, [
      JSON.stringify({ code: "x = 1;", label: 1, lang }),
    ]);
    assert.throws(() => readLabelledCode(labelled), InputError, lang);
    const good = writeRows(`proto-ok-${lang}.jsonl`, [JSON.stringify({ ...row, lang: "python" })]);
    assert.equal(readPairs(good, { languages: ["python"] }).length, 1);
    assert.throws(() => readPairs(good, { languages: [lang] }), InputError, `filter ${lang}`);
  }
});

test("a folder or unreadable path given as a dataset file is an InputError", async () => {
  const folder = fs.mkdtempSync(path.join(tmp, "folder-"));
  await assert.rejects(readRows(folder), InputError);
  await assert.rejects(readRows(path.join(folder, "missing.jsonl")), InputError);
  assert.throws(() => readPairs(folder), InputError);
  assert.throws(() => readLabelledCode(folder), InputError);
});

test("deeply nested wrong-typed values give an InputError, not a stack overflow in the message", async () => {
  const depth = 20_000;
  const deep = "[".repeat(depth) + "]".repeat(depth);
  const labelled = writeRows("deep-label.jsonl", [`{"code":"x = 1;","label":${deep}}`]);
  assert.throws(() => readLabelledCode(labelled), InputError);
  const mmlu = writeRows("deep-answer.jsonl", [
    `{"question":"q","subject":"s","choices":["a","b","c","d"],"answer":${deep}}`,
  ]);
  await assert.rejects(loadMmlu(mmlu), InputError);
});

test("a row with one very long line finishes (the code-line check is not quadratic)", () => {
  // Runs in a child with a generous limit: a linear scan of 300 kB takes milliseconds, the quadratic regex
  // /[A-Za-z_]\w*\(.*\)\s*$/ about a minute. The limit only separates "finished" from "hung".
  const here = path.dirname(fileURLToPath(import.meta.url));
  const pairsModule = path.resolve(here, "../../src/data/pairs.js");
  const file = writeRows("long-line.jsonl", [JSON.stringify({ code: "x".repeat(300_000), label: 1 })]);
  const script = `
    const { readLabelledCode } = await import(${JSON.stringify(pairsModule)});
    try { readLabelledCode(${JSON.stringify(file)}); console.log("returned"); }
    catch (e) { console.log(e.name); }
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(child.signal, null, "the reader did not finish within 20 s on a 300 kB line");
  // The line is one identifier: no code by the rule in src/data/code.ts.
  assert.equal(child.stdout.trim(), "InputError", child.stderr);
});

test("a corrupt Parquet file gives an InputError and leaves no unhandled rejection behind", async () => {
  // hyparquet decodes a row group's columns concurrently; when one column fails, the loader rejects and
  // the sibling columns' promises are never awaited, so their later rejections are unhandled (which
  // terminates a CLI run). These two cases of the fuzz stream (seed 7) corrupt a page header.
  const mmlu = TARGETS.find((t) => t.name === "loadMmlu")!;
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  try {
    for (const index of [1465, 2194]) {
      const c = makeCase(7, index, mmlu);
      assert.equal(c.suffix, ".parquet", "the generators changed: pick new corrupt-Parquet cases");
      const file = path.join(tmp, `corrupt-${index}.parquet`);
      fs.writeFileSync(file, c.bytes);
      await assert.rejects(loadMmlu(file), InputError);
    }
    // Let the abandoned column reads finish their file I/O and settle.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
  assert.deepEqual(
    unhandled.map((e) => (e as Error).message),
    [],
  );
});

test("a Parquet file with a corrupt page does not hang the MMLU loader", () => {
  // Case 735 of the seed-3 fuzz stream flips bytes in a page; the metadata still parses, and the page
  // decoding (inside hyparquet) spins synchronously, until the decoder's time limit (15 s) ends its worker. A child
  // with a generous limit separates "finished" (an InputError) from "hung".
  const mmlu = TARGETS.find((t) => t.name === "loadMmlu")!;
  const c = makeCase(3, 735, mmlu);
  assert.equal(c.mutation, "parquet byte flips", "the generators changed: pick a new hanging case");
  const file = path.join(tmp, "hang-735.parquet");
  fs.writeFileSync(file, c.bytes);
  const here = path.dirname(fileURLToPath(import.meta.url));
  const datasetsModule = path.resolve(here, "../../src/eval/utility/datasets.js");
  const script = `
    const { loadMmlu } = await import(${JSON.stringify(datasetsModule)});
    try { await loadMmlu(${JSON.stringify(file)}); console.log("returned"); } catch (e) { console.log(e.name); }
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(child.signal, null, "loadMmlu did not finish within 60 s on a 1 kB Parquet file");
  assert.match(child.stdout.trim(), /^(InputError|returned)$/, child.stderr);
});

// ---------------------------------------------------------------- sizes bounded before allocating

const PAIR = {
  id: "p",
  lang: "cpp",
  question: "q",
  chosen: "```cpp\nint x = 1;\n```",
  rejected: "```cpp\nint y;\n```",
};

test("a row past the row limit is refused naming the file, the row and the limit, before it is read whole", async () => {
  // 3 MiB in the fourth row: past the default 1 MiB, far below what would strain the heap
  const big = { ...PAIR, id: "big", chosen: "```cpp\n" + "int x = 1;\n".repeat(300_000) + "```" };
  const rows = [PAIR, { ...PAIR, id: "b" }, { ...PAIR, id: "c" }, big, { ...PAIR, id: "d" }];
  const file = writeRows(
    "big-row.jsonl",
    rows.map((r) => JSON.stringify(r)),
  );
  const check = (e: unknown) =>
    e instanceof InputError &&
    e.message.includes(`${file} row 4`) &&
    /1\.00 MiB/.test(e.message) &&
    e.message.includes("GOODVIBE_MAX_ROW_BYTES");
  assert.throws(() => readPairs(file), check);
  assert.throws(() => readLabelledCode(file), check);
  await assert.rejects(
    readRows(file),
    (e: unknown) => e instanceof InputError && /big-row\.jsonl row 4: the row is larger/.test(e.message),
  );
  const gz = path.join(tmp, "big-row.jsonl.gz");
  fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(file)));
  await assert.rejects(
    readRows(gz),
    (e: unknown) => e instanceof InputError && /row 4: the row is larger/.test(e.message),
  );
  // the limit is a setting: raised, the same file reads
  await withEnv({ GOODVIBE_MAX_ROW_BYTES: String(4 * DEFAULT_MAX_ROW_BYTES) }, () => {
    assert.equal(readPairs(file).length, 5);
  });
  await withEnv({ GOODVIBE_MAX_ROW_BYTES: "lots" }, () => {
    assert.throws(
      () => readPairs(file),
      (e: unknown) => e instanceof InputError && /GOODVIBE_MAX_ROW_BYTES="lots"/.test(e.message),
    );
  });
});

test("the row limit is exact: a row of exactly the limit reads, one byte more does not", async () => {
  const row = (n: number) => {
    const base = JSON.stringify({ ...PAIR, question: "" }).length;
    return JSON.stringify({ ...PAIR, question: "q".repeat(n - base) });
  };
  const limit = 1000;
  await withEnv({ GOODVIBE_MAX_ROW_BYTES: String(limit) }, () => {
    assert.equal(row(limit).length, limit);
    assert.equal(readPairs(writeRows("exact.jsonl", [row(limit)])).length, 1);
    // a CRLF file: the \r belongs to the row
    assert.throws(
      () => readPairs(writeRows("crlf.jsonl", [row(limit) + "\r"])),
      /row 1: the row is larger than 1000 bytes/,
    );
    assert.throws(
      () => readPairs(writeRows("over.jsonl", [row(limit + 1)])),
      /over\.jsonl row 1: the row is larger than 1000 bytes/,
    );
    // the limit holds across read chunks (1 MiB): a row split between two chunks is measured whole
    const pad = "\n".repeat((1 << 20) - 500);
    assert.throws(
      () => readPairs(writeRows("split.jsonl", [pad + row(limit + 1)])),
      /row 1048077: the row is larger/,
    );
  });
});

test("a dataset past the dataset limit is refused before reading; a gzip bomb stops at the limit", async () => {
  const file = writeRows(
    "many.jsonl",
    Array.from({ length: 2000 }, (_, i) => JSON.stringify({ ...PAIR, id: `p${i}` })),
  );
  await withEnv({ GOODVIBE_MAX_DATASET_BYTES: "100000" }, async () => {
    assert.throws(
      () => readPairs(file),
      /many\.jsonl: the dataset is larger than 97\.7 KiB.*GOODVIBE_MAX_DATASET_BYTES/,
    );
    await assert.rejects(readRows(file), /many\.jsonl: the dataset is larger/);
    // 200 MB of blank lines gzip to about 200 kB: refused once 100 kB have come out, not after inflating it all
    const bomb = path.join(tmp, "bomb.jsonl.gz");
    fs.writeFileSync(bomb, zlib.gzipSync(Buffer.alloc(200_000_000, 0x0a), { level: 9 }));
    assert.ok(fs.statSync(bomb).size < 1_000_000);
    const before = process.memoryUsage().rss;
    await assert.rejects(
      loadGsm8k(bomb),
      /bomb\.jsonl\.gz: the dataset is larger than 97\.7 KiB after decompression/,
    );
    assert.ok(process.memoryUsage().rss - before < 100_000_000, "the bomb was inflated in memory");
  });
});

test("dataset rows with keys that reach a prototype are refused naming the row; a CWE label cannot be one either", async () => {
  const ok = JSON.stringify(PAIR);
  for (const bad of [
    '{"__proto__": {"polluted": true}, ',
    '{"x": {"constructor": {"prototype": {"polluted": 1}}}, ',
  ]) {
    const file = writeRows("proto-row.jsonl", [ok.replace('"p"', '"p0"'), bad + ok.slice(1)]);
    assert.throws(
      () => readPairs(file),
      (e: unknown) => e instanceof InputError && e.message.includes(`${file} row 2`),
    );
    await assert.rejects(readRows(file), /proto-row\.jsonl row 2: key/);
  }
  for (const cwe of ["__proto__", "constructor", "prototype"]) {
    const file = writeRows("proto-cwe.jsonl", [JSON.stringify({ ...PAIR, cwe })]);
    assert.throws(() => readPairs(file), /row 1 field "cwe"/);
  }
  assert.deepEqual(Object.keys(Object.prototype), []);
});

test('every row reader names a bad row one way: `file row N field "x": …`, N the 1-based line, blank lines counted', async () => {
  // Line 1 a good row, line 2 blank, line 3 the same row without one required field: every reader must say
  // "row 3" (an editor's line number) and name the field in the same words, so one grep finds them all.
  const missing: Record<string, string> = {
    readPairs: "question",
    readLabelledCode: "label",
    loadArc: "answerKey",
    loadGsm8k: "answer",
    loadMmlu: "answer",
    loadHumanEval: "test",
  };
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const expectAt = (file: string, field: string) => (e: unknown) =>
    e instanceof InputError && new RegExp(`^${escape(file)} row 3 field "${field}": `).test(e.message);
  for (const target of TARGETS) {
    const field = missing[target.name];
    assert.ok(field !== undefined, `a field to drop for ${target.name}`);
    const good = target.seedRows[0]!;
    assert.ok(field in good, `${target.name}'s seed row has "${field}"`);
    // a fresh id too, so that readPairs' duplicate-id check does not speak first
    const bad = { ...Object.fromEntries(Object.entries(good).filter(([k]) => k !== field)), id: "other" };
    const file = writeRows(`one-format-${target.name}.jsonl`, [
      JSON.stringify(good),
      "",
      JSON.stringify(bad),
    ]);
    await assert.rejects(async () => target.read(file), expectAt(file, field), target.name);
  }
  const code = writeRows("one-format-code.jsonl", ['{"code":"int x;"}', "", '{"lang":"c"}']);
  assert.throws(() => readCodeRows(code), expectAt(code, "code"));
});
