/**
 * models/logits-row.ts, transformers' processor chain on one row in plain JavaScript, is what the llama.cpp backend
 * applies: it loads no libtorch (a llama.cpp-only run opens no addon), and a decoding loop's seen set is walked as
 * it is. References: hand-computed values, and the module record of a process that imports the backend.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { pathToFileURL } from "node:url";
import { REPO_ROOT, scratchDir } from "./make-model.js";
import { penaliseRow, PROCESSOR_ORDER } from "../../src/models/logits-row.js";

test("penaliseRow takes a Set as it is and any other iterable made distinct: each seen token once", () => {
  const seen = new Set([0, 4]);
  const row = Float64Array.from([2, -1, 0.5, -3, 1]);
  penaliseRow(row, seen, 2);
  assert.deepEqual([...row], [1, -1, 0.5, -3, 0.5]);
  assert.deepEqual([...seen], [0, 4], "the caller's set is left as it was");
  const again = Float64Array.from([2, -1, 0.5, -3, 1]);
  penaliseRow(again, [3, 3, 3, 1], 2);
  assert.deepEqual([...again], [2, -2, 0.5, -6, 1]);
  assert.deepEqual(PROCESSOR_ORDER, ["repetition_penalty", "temperature", "top_k", "top_p"]);
});

test("the llama.cpp backend's module loads no libtorch: no tensor or decoder module, no native addon", () => {
  const record = path.join(scratchDir("gv-logits-row-"), "record.txt");
  const recorder = pathToFileURL(path.join(REPO_ROOT, "dist/test/cli/load-recorder.js")).href;
  const backend = pathToFileURL(path.join(REPO_ROOT, "dist/src/eval/generate/llamacpp.js")).href;
  const r = spawnSync(
    process.execPath,
    [`--import=${recorder}`, "-e", `await import(${JSON.stringify(backend)})`],
    {
      env: { ...process.env, GOODVIBE_LOAD_RECORD: record },
      encoding: "utf8",
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const loaded = fs.readFileSync(record, "utf8").split("\n").filter(Boolean);
  // the control: the record saw the backend and the row chain it imports
  assert.ok(
    loaded.some((l) => l.endsWith("/dist/src/eval/generate/llamacpp.js")),
    loaded.join("\n"),
  );
  assert.ok(
    loaded.some((l) => l.endsWith("/dist/src/models/logits-row.js")),
    loaded.join("\n"),
  );
  const heavy = loaded.filter(
    (l) => l.startsWith("dlopen ") || /\/dist\/src\/(tensor\/|models\/(?!logits-row\.js))/.test(l),
  );
  assert.deepEqual(heavy, []);
});
