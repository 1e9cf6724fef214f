/**
 * A weight file written in place by another program (`cp` over it, a download into it) while an export or a fold
 * reads it. The tensors are views of the mapped file (MAP_PRIVATE shows another writer's bytes on pages this process
 * has not written), so the output would silently mix old and new bytes; before this check it was published as if
 * whole. Now the output is refused before it is published, naming the file. A file replaced by a rename (a new
 * inode: what this tool's own writers do) keeps its old bytes under the views, so the output is the old model's,
 * whole, and is published.
 *
 * The in-place write here happens between the plan (weights opened) and the write, or inside the fold (from the
 * method's rowUpdates, which the fold asks for once the weights are open): the same as a write at any moment during
 * a long command.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { planGgufExport } from "../../src/io/export-gguf.js";
import { writeGguf } from "../../src/io/gguf.js";
import { foldIntoCheckpoint } from "../../src/method/fold.js";
import type { AttachedMethod } from "../../src/method/attached.js";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { assertInputError, copyModelDatedInPast, scratchDir, writeInPlace } from "./helpers.js";
import { showRun, startCli } from "../cli/cli-helpers.js";

const work = scratchDir("gv-in-place-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** A copy of the tiny model in a folder of its own, its weight file dated in the past (as a downloaded one is). */
function freshModel(name: string): { dir: string; weights: string } {
  const dir = path.join(work, name);
  return { dir, weights: copyModelDatedInPast(makeTinyChatModel({ layers: 1 }).dir, dir) };
}

/** Anything in `dir` but `keep`: temporaries, outputs. */
const others = (dir: string, keep: string[]) => fs.readdirSync(dir).filter((e) => !keep.includes(e));

test("GGUF export: a weight file written in place while the export reads it is refused, naming it; nothing published, no temporary", () => {
  const { dir, weights } = freshModel("gguf-in-place");
  const out = path.join(work, "gguf-out");
  fs.mkdirSync(out);
  const file = path.join(out, "model.gguf");
  const plan = planGgufExport(dir, { outtype: "f32" });
  writeInPlace(weights);
  assertInputError(() => writeGguf(file, plan.spec), weights, "written in place", "nothing was published");
  assert.deepEqual(fs.readdirSync(out), [], "no output and no temporary");
});

test("GGUF export: a weight file replaced by a rename while the export reads it gives the old model's file, whole", () => {
  const { dir, weights } = freshModel("gguf-renamed");
  const out = path.join(work, "gguf-renamed-out");
  fs.mkdirSync(out);
  // the reference: the same export with nothing touched
  writeGguf(path.join(out, "reference.gguf"), planGgufExport(dir, { outtype: "f32" }).spec);
  const plan = planGgufExport(dir, { outtype: "f32" });
  const replacement = path.join(dir, "new.safetensors");
  fs.copyFileSync(weights, replacement);
  writeInPlace(replacement);
  fs.renameSync(replacement, weights);
  writeGguf(path.join(out, "model.gguf"), plan.spec);
  assert.ok(
    fs.readFileSync(path.join(out, "model.gguf")).equals(fs.readFileSync(path.join(out, "reference.gguf"))),
    "the export is the untouched model's",
  );
});

/** A method that changes nothing, whose rowUpdates (asked for once the fold has opened the weights) runs `during`. */
function noChange(during: () => void): AttachedMethod {
  return {
    name: "goodvibe",
    settings: {},
    trainable: new Map(),
    foldedWeights: () => new Map(),
    foldedNames: [],
    foldedWeight: () => {
      throw new Error("nothing to fold");
    },
    rowUpdates: () => {
      during();
      return new Map();
    },
    detach: () => {},
    setTraining: () => {},
  };
}

test("fold: a base weight file written in place while the fold reads it is refused, naming it; no output folder, no temporary", async () => {
  const { dir, weights } = freshModel("fold-in-place");
  const parent = path.join(work, "fold-out");
  fs.mkdirSync(parent);
  const out = path.join(parent, "hardened");
  let caught: unknown;
  try {
    await foldIntoCheckpoint(
      dir,
      out,
      noChange(() => writeInPlace(weights)),
    );
  } catch (e) {
    caught = e;
  }
  assertInputError(
    () => {
      throw caught;
    },
    weights,
    "written in place",
  );
  assert.deepEqual(fs.readdirSync(parent), [], "no output folder and no temporary");
  // unchanged during the fold, the same base folds and publishes (the check refuses only a change)
  await foldIntoCheckpoint(
    dir,
    out,
    noChange(() => {}),
  );
  assert.deepEqual(others(out, []).includes("model.safetensors"), true);
  assert.ok(fs.readFileSync(path.join(out, "model.safetensors")).equals(fs.readFileSync(weights)));
});

test("export --format safetensors: a weight file written in place mid-write is refused (exit 2), naming it; nothing published, no temporary", async () => {
  const { dir, weights } = freshModel("cli-in-place");
  const parent = path.join(work, "cli-out");
  fs.mkdirSync(parent);
  const out = path.join(parent, "out");
  // every stop point (one before each tensor written) blocks 100 ms: the write lasts seconds
  const run = startCli(["export", "-m", dir, "-o", out, "--format", "safetensors", "--outtype", "float32"], {
    env: { GOODVIBE_TEST_STOP_POINT_DELAY_MS: "100" },
  });
  let exited = false;
  void run.done.then(() => (exited = true));
  const limit = Date.now() + 120_000;
  const writing = () =>
    fs
      .readdirSync(parent, { recursive: true, encoding: "utf8" })
      .some((rel) => /(^|\/)\.model\.safetensors\.tmp-/.test(rel));
  while (!exited && !writing()) {
    assert.ok(Date.now() < limit, "the write did not start within 120 s");
    await new Promise((r) => setTimeout(r, 5));
  }
  if (exited) assert.fail(`the export ended before its write: ${showRun(await run.done)}`);
  writeInPlace(weights);
  const r = await run.done;
  assert.equal(r.code, 2, showRun(r));
  assert.ok(r.stderr.includes(weights) && r.stderr.includes("written in place"), showRun(r));
  assert.deepEqual(fs.readdirSync(parent), [], "no output folder and no temporary");
});
