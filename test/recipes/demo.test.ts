/**
 * The demo says where its settings depart from the paper's (§4.2, §4.3, §5.1): learning rate, top-k, batch,
 * identification samples, precision/memory, judge and evaluation prompts, each with the paper's value.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { demoDepartures, demoHardenConfig } from "../../src/recipes/demo.js";
import { DEFAULT_DEMO } from "../../src/recipes/config.js";

test("the demo's departures from the paper are listed with the paper's values", () => {
  const cfg = demoHardenConfig(DEFAULT_DEMO, "/tmp/demo-out");
  const d = demoDepartures(DEFAULT_DEMO, cfg, 144, 624);
  const by = new Map(d.map((x) => [x.setting, x]));
  assert.deepEqual(
    [...by.keys()],
    [
      "learning rate",
      "top-k security neurons per layer",
      "batch",
      "identification samples",
      "precision and memory",
      "judge",
      "evaluation prompts",
      "lm_head's rows as neurons (identify.lmHead)",
      "a layer below the silhouette threshold (cluster.fallback)",
    ],
  );
  // the paper's numbers (§4.2: lr 1e-4, batch 1 with accumulation; §5.1: top-k 50, all 424 pairs; §4.3: Qwen3-0.6B)
  assert.match(by.get("learning rate")!.paper, /^0\.0001 /);
  assert.equal(by.get("learning rate")!.here, "0.002");
  assert.equal(by.get("top-k security neurons per layer")!.paper, "50");
  assert.equal(by.get("top-k security neurons per layer")!.here, "16");
  assert.match(by.get("batch")!.here, /4 × 2/);
  assert.match(by.get("identification samples")!.paper, /424/);
  assert.match(by.get("identification samples")!.here, /^128 of 624 pairs \(256 samples\)/);
  assert.match(by.get("judge")!.paper, /Qwen3-0\.6B/);
  assert.match(by.get("judge")!.here, /base organism .* 128 labelled training pairs/);
  assert.match(by.get("evaluation prompts")!.here, /^48 of 144/);
  // every held-out prompt: no departure there
  const all = demoDepartures({ ...DEFAULT_DEMO, prompts: 0 }, cfg, 144, 624);
  assert.ok(!all.some((x) => x.setting === "evaluation prompts"));
  // the paper's learning rate: no departure there either
  const paperLr = demoHardenConfig({ ...DEFAULT_DEMO, lr: 1e-4 }, "/tmp/demo-out");
  assert.ok(!demoDepartures(DEFAULT_DEMO, paperLr, 144, 624).some((x) => x.setting === "learning rate"));
});
