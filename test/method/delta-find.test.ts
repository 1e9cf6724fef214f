/**
 * findDeltaFile on the folders a user passes as --delta: a GoodVibe output's delta is found; a LoRA run's output
 * (no delta, a PEFT adapter in adapter/) is refused with where its adapter is; any other folder plainly.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { findDeltaFile } from "../../src/method/goodvibe/delta.js";
import { DELTA_FILE } from "../../src/method/goodvibe/config.js";
import { InputError } from "../../src/errors.js";

test("findDeltaFile: the delta of a GoodVibe output; a LoRA output is refused naming its adapter folder", () => {
  const dir = scratchDir("gv-delta-find-");
  const gv = path.join(dir, "gv");
  fs.mkdirSync(gv);
  fs.writeFileSync(path.join(gv, DELTA_FILE), "x");
  assert.equal(findDeltaFile(gv), path.join(gv, DELTA_FILE));

  const lora = path.join(dir, "lora");
  fs.mkdirSync(path.join(lora, "adapter"), { recursive: true });
  fs.writeFileSync(path.join(lora, "adapter", "adapter_config.json"), "{}");
  assert.throws(
    () => findDeltaFile(lora),
    (e: unknown) =>
      e instanceof InputError &&
      e.message.includes(`no ${DELTA_FILE}`) &&
      e.message.includes(`PEFT LoRA adapter is ${path.join(lora, "adapter")}`),
  );

  const other = path.join(dir, "other");
  fs.mkdirSync(other);
  assert.throws(
    () => findDeltaFile(other),
    (e: unknown) =>
      e instanceof InputError && !/LoRA/.test(e.message) && /not a GoodVibe run output/.test(e.message),
  );
  fs.rmSync(dir, { recursive: true });
});
