/**
 * Real-world JSON Lines as users bring them (data/jsonl.ts through readPairs, the synchronous reader, and readJsonl,
 * the streaming one): gzip, files in another encoding, a file that is one JSON array, a pretty-printed object.
 * Each is read as its plain UTF-8 JSONL twin would be, or refused with an InputError naming the file (and the row).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import { readJsonl, readJsonlSync, type JsonRow } from "../../src/data/jsonl.js";
import { readPairs } from "../../src/data/pairs.js";

const tmp = scratchDir("goodvibe-jsonl-");
let counter = 0;
function write(bytes: Buffer | string, ext = "jsonl"): string {
  const file = path.join(tmp, `f${counter++}.${ext}`);
  fs.writeFileSync(file, bytes);
  return file;
}
const rows = ["cpp", "java", "go"].map((lang, i) => ({
  id: `p${i}`,
  lang,
  question: `Write a ${lang} function that copies a café's name`,
  chosen: "```" + lang + "\nsafe_call(x);\n```",
  rejected: "```" + lang + "\nunsafe_call(x);\n```",
}));
const text = rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

async function bothReaders(file: string): Promise<JsonRow[][]> {
  const sync: JsonRow[] = [];
  readJsonlSync(file, (r) => sync.push(r));
  const streamed: JsonRow[] = [];
  await readJsonl(file, (r) => streamed.push(r));
  return [sync, streamed];
}
function inputError(...fragments: (string | RegExp)[]) {
  return (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    for (const f of fragments)
      assert.ok(
        typeof f === "string" ? e.message.includes(f) : f.test(e.message),
        `"${e.message}" lacks ${f}`,
      );
    return true;
  };
}

test("a gzipped pairs file reads as its plain twin, in both readers (HumanEval ships as .jsonl.gz)", async () => {
  const plain = write(text);
  const gz = write(zlib.gzipSync(text), "jsonl.gz");
  assert.deepEqual(readPairs(gz), readPairs(plain));
  const expected = rows.map((value, i) => ({ row: i + 1, value }));
  for (const got of await bothReaders(gz)) assert.deepEqual(got, expected);
  // by content, not by name: a gzip file named .jsonl is still gzip
  assert.deepEqual(readPairs(write(zlib.gzipSync(text))), readPairs(plain));
});

test("a corrupt or oversized gzip file is an InputError naming the file, in the synchronous reader too", () => {
  const gz = zlib.gzipSync(text);
  const cut = write(gz.subarray(0, gz.length - 12), "jsonl.gz");
  assert.throws(() => readPairs(cut), inputError(cut, "gzip"));
  const big = write(zlib.gzipSync(text.repeat(50)), "jsonl.gz");
  assert.throws(
    () =>
      readJsonlSync(big, () => undefined, {
        limits: { maxRowBytes: 1 << 20, maxDatasetBytes: text.length * 10 },
      }),
    inputError(big, "after decompression"),
  );
});

test("a row that is not UTF-8 is refused naming the row, not read with U+FFFD in place of its bytes", async () => {
  // "café" in Latin-1 on every row: one byte 0xE9, not a UTF-8 sequence
  const latin1 = write(Buffer.from(text, "latin1"));
  assert.throws(() => readPairs(latin1), inputError(`${latin1} row 1`, "UTF-8"));
  await assert.rejects(
    readJsonl(latin1, () => undefined),
    inputError(`${latin1} row 1`, "UTF-8"),
  );
  // the same text in UTF-8 reads, the é intact
  assert.equal(readPairs(write(text))[0]!.question, rows[0]!.question);
  // a UTF-16 file (as Windows tools save "Unicode") is named as such
  const utf16 = write(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]));
  assert.throws(() => readPairs(utf16), inputError(utf16, "UTF-16"));
  // a UTF-8 byte-order mark is fine
  assert.deepEqual(readPairs(write("\ufeff" + text)), readPairs(write(text)));
  // the hub's Parquet export (magic "PAR1", a binary footer) is named with a way to convert it, whether or not its
  // first bytes happen to be valid UTF-8 (they were "not valid UTF-8 ... Latin-1 or UTF-16?")
  for (const body of [Buffer.from([0x15, 0x04, 0xe9, 0x00, 0x0a]), Buffer.from("abc\n{")]) {
    const parquet = write(Buffer.concat([Buffer.from("PAR1"), body, Buffer.from("PAR1")]));
    assert.throws(() => readPairs(parquet), inputError(parquet, "a Parquet file", "read_parquet"));
  }
});

test("a file that is one JSON array (one line or pretty-printed) is named as such, not as bad JSON on row 1", () => {
  const oneLine = write(JSON.stringify(rows) + "\n", "json");
  const pretty = write("\n" + JSON.stringify(rows, null, 2) + "\n", "json");
  for (const f of [oneLine, pretty])
    assert.throws(() => readPairs(f), inputError(`${f}: the file is a JSON array, not JSON Lines`));
  // a pretty-printed object: bad JSON on its row, with what a row must be
  const spread = write(JSON.stringify(rows[0], null, 2) + "\n");
  assert.throws(
    () => readPairs(spread),
    inputError(`${spread} row 1: bad JSON`, "one whole JSON object on one line"),
  );
  // an array on a later row is a row that is not an object (the file is JSONL)
  const later = write(text + "[1, 2]\n");
  assert.throws(() => readPairs(later), inputError(`${later} row 4: expected a JSON object, got an array`));
});
