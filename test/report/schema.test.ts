import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import { parseExperimentResults, readExperimentResults } from "../../src/report/schema.js";
import { handMadeResults } from "./fixture.js";

/** The fixture as it would come back from disk. */
const fromDisk = () => JSON.parse(JSON.stringify(handMadeResults()));

function rejects(json: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseExperimentResults(json, "runs/results.json"),
    (e: unknown) => {
      assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
      assert.match(e.message, /^runs\/results\.json: /);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test("the hand-made results validate and survive a JSON round trip unchanged", () => {
  const json = fromDisk();
  assert.deepEqual(parseExperimentResults(json, "x.json"), json);
});

test("a missing interval bound is named by its field path and cell id", () => {
  const json = fromDisk();
  delete json.cells[2].security.safeRate.rule.overall.low;
  rejects(json, /field "cells\[2\]\.security\.safeRate\.rule\.overall\.low \(cell id goodvibe-main-1\)"/);
});

test("an unknown method, a misspelt key and an inverted interval are rejected", () => {
  const badMethod = fromDisk();
  badMethod.cells[0].method = "qlora";
  rejects(badMethod, /field "cells\[0\]\.method/);

  const misspelt = fromDisk();
  misspelt.cells[1].security.safeRates = misspelt.cells[1].security.safeRate;
  rejects(misspelt, /cells\[1\]\.security.*safeRates/);

  const inverted = fromDisk();
  inverted.cells[3].security.securePreference.rate = { value: 0.5, low: 0.6, high: 0.7 };
  rejects(inverted, /cells\[3\]\.security\.securePreference\.rate.*low <= value <= high/);

  const outOfRange = fromDisk();
  outOfRange.cells[3].security.safeRate.llm.overall = { value: 1.2, low: 1.1, high: 1.3, n: 40 };
  rejects(outOfRange, /cells\[3\]\.security\.safeRate\.llm\.overall.*\[0, 1\]/);

  const notNumber = fromDisk();
  notNumber.cells[4].params.trainable = "10k";
  rejects(notNumber, /field "cells\[4\]\.params\.trainable/);
});

test("two cells of the same setting and seed are rejected, as are repeated ids", () => {
  const dupSetting = fromDisk();
  dupSetting.cells.push({ ...dupSetting.cells[0], id: "other" });
  rejects(dupSetting, /cells\[10\]": same model, method, ablation and seed as cells\[0\]/);

  const dupId = fromDisk();
  dupId.cells[1].id = dupId.cells[0].id;
  rejects(dupId, /cells\[1\]\.id": id base-main-1 repeats cells\[0\]\.id/);
});

test("readExperimentResults names the file when it is missing or not JSON", () => {
  const dir = scratchDir("gv-report-schema-");
  try {
    const bad = path.join(dir, "bad.json");
    fs.writeFileSync(bad, "{ not json");
    assert.throws(
      () => readExperimentResults(bad),
      (e: unknown) => e instanceof InputError && e.message.startsWith(`${bad}: not valid JSON`),
    );
    assert.throws(
      () => readExperimentResults(path.join(dir, "absent.json")),
      (e: unknown) => e instanceof InputError && /absent\.json: cannot read/.test(e.message),
    );
    const good = path.join(dir, "good.json");
    fs.writeFileSync(good, JSON.stringify(handMadeResults()));
    assert.equal(readExperimentResults(good).cells.length, 10);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a utility figure's per-item scores: read back as written, refused when they do not give its value", () => {
  // ten ARC items 1111110000: 0.6, bits 0–5 of byte 0 = 0x3f -> base64 "PwA="
  const json = fromDisk();
  json.cells[0].utility.arc_challenge = {
    metric: "acc_norm",
    value: 0.6,
    stderr: 0.16,
    n: 10,
    perItem: { items: "h1", bits: "PwA=" },
  };
  assert.deepEqual(parseExperimentResults(json, "x.json"), json);
  json.cells[0].utility.arc_challenge.value = 0.5;
  rejects(json, /cells\[0\]\.utility\.arc_challenge\.perItem.*perItem's mean 0\.6 is not the value 0\.5/);
  json.cells[0].utility.arc_challenge = {
    metric: "acc",
    value: 0.6,
    stderr: 0.16,
    n: 17,
    perItem: { items: "h1", bits: "PwA=" },
  };
  rejects(json, /perItem has 2 bytes of bits for n = 17 items/);
});
