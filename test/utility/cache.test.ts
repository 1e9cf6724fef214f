/**
 * The utility cache (eval/utility/cache.ts): a benchmark's figure is read back as written, a damaged record is an
 * error naming the file and row, and a figure JSON cannot hold (a NaN standard error) is not kept.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { UtilityCache, utilityKey } from "../../src/eval/utility/cache.js";
import { scratchDir } from "../evalcore/make-model.js";

test("utility cache: kept across instances, keyed by everything that shapes the figure", () => {
  const file = path.join(scratchDir("gv-utility-cache-"), "utility-0123456789abcdef.jsonl");
  const parts = {
    name: "arc_challenge",
    model: { weights: "w" },
    build: { device: "cpu" },
    settings: { limit: 5 },
  };
  const key = utilityKey(parts);
  assert.notEqual(utilityKey({ ...parts, settings: { limit: 6 } }), key);
  assert.notEqual(utilityKey({ ...parts, build: { device: "cuda" } }), key);
  assert.equal(utilityKey({ ...parts, settings: { limit: 5 } }), key, "the same parts, the same key");
  const c = new UtilityCache(file);
  c.put(key, "arc_challenge", { metric: "acc_norm", value: 0.5, stderr: 0.25, n: 4 });
  c.put("k2", "mmlu", { metric: "acc", value: 1, stderr: NaN, n: 1 });
  c.close();
  const again = new UtilityCache(file);
  assert.deepEqual(again.get(key), { metric: "acc_norm", value: 0.5, stderr: 0.25, n: 4 });
  assert.equal(again.get("k2"), undefined, "a NaN standard error is not kept");
  // appended as the log appends (io/append-log.ts: the newline first); row 1 is the first record's newline
  fs.appendFileSync(file, "\n" + JSON.stringify({ key: "k3", result: { metric: "acc", value: "x" } }));
  assert.throws(() => new UtilityCache(file), /utility-0123456789abcdef\.jsonl row 3: a record needs/);
});

test("utility cache: a figure's per-item scores are kept; a record from before them reads without (unpaired)", () => {
  const file = path.join(scratchDir("gv-utility-cache-"), "utility-fedcba9876543210.jsonl");
  const c = new UtilityCache(file);
  // 1111110000: 0.6 (bits 0–5: 0x3f 0x00, "PwA=")
  const perItem = { items: "h1", bits: "PwA=" };
  c.put("k1", "arc_challenge", { metric: "acc_norm", value: 0.6, stderr: 0.16, n: 10, perItem });
  c.close();
  // an older record: no perItem
  fs.appendFileSync(
    file,
    "\n" +
      JSON.stringify({ key: "k0", name: "mmlu", result: { metric: "acc", value: 0.5, stderr: 0.1, n: 10 } }),
  );
  const again = new UtilityCache(file);
  assert.deepEqual(again.get("k1")?.perItem, perItem);
  assert.deepEqual(again.get("k0"), { metric: "acc", value: 0.5, stderr: 0.1, n: 10 });
  // scores that do not give the value: refused, naming the row
  fs.appendFileSync(
    file,
    "\n" +
      JSON.stringify({
        key: "k2",
        name: "arc_challenge",
        result: { metric: "a", value: 0.5, stderr: 0.1, n: 10, perItem },
      }),
  );
  assert.throws(() => new UtilityCache(file), /row 4: a record needs/);
});
