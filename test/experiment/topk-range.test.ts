/**
 * identify.topK past the smallest module of a model stops `experiment run` and `experiment plan` before
 * any cell, naming the cell: the range is
 * the model's config.json's (the organism's k_proj: num_key_value_heads 2 × head_dim 32 = 64 rows), read before any
 * cell runs, not found when that cell's model loads after the cells before it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT } from "../evalcore/make-model.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { checkCellsTopK, planExperiment } from "../../src/experiment/plan.js";
import { InputError } from "../../src/errors.js";

const ORGANISM = path.join(REPO_ROOT, "assets/organism");
const cfg = JSON.parse(fs.readFileSync(path.join(ORGANISM, "config.json"), "utf8"));
const SMALLEST = cfg.num_key_value_heads * cfg.head_dim; // k_proj's rows, below q (4 × 32), hidden 128, mlp 384

const spec = (values: number[]) =>
  parseExperimentSpec(
    {
      name: "topk",
      models: [{ name: "organism", path: ORGANISM }],
      data: { train: path.join(ORGANISM, "data/dev.jsonl"), dev: path.join(ORGANISM, "data/dev.jsonl") },
      methods: ["goodvibe"],
      grids: [{ name: "topk", key: "identify.topK", values }],
    },
    "grid.yaml",
  );

test("a grid cell's identify.topK past the smallest module: the plan stops, naming the file, the cell and the range", () => {
  assert.equal(SMALLEST, 64);
  assert.throws(
    () => checkCellsTopK(spec([16, SMALLEST + 1]), "grid.yaml"),
    (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, /^grid\.yaml: cell organism goodvibe \[topk=65\] seed 0: /);
      assert.match(
        e.message,
        /identify\.topK \(--top-k\) = 65 is out of range: it must be a whole number from 1 to 64, the output rows of the smallest module \(model\.layers\.0\.self_attn\.k_proj, 64 of them\)/,
      );
      return true;
    },
  );
  // the smallest module's rows is the top of the range: accepted, and planned
  checkCellsTopK(spec([1, SMALLEST]), "grid.yaml");
  const plan = planExperiment(spec([SMALLEST]), { source: "grid.yaml", write: false });
  assert.ok(plan.cells.some((c) => c.harden?.identify.topK === SMALLEST));
});
