/**
 * The recipes hold frozenDx's weight copies only while their products run (models/frozen-dx.ts "Lifetime"): harden
 * (GoodVibe and LoRA) releases them after training, before the fold, and a run leaves none behind, stopped or not;
 * an evaluation leaves none behind; the hardened output is the same, byte for byte, with the copies as without.
 * Copies forced on (every frozen bf16 product, float32 copies as on AVX2 CPUs) so that the tiny model makes them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import type { HardenConfig } from "../../src/config/harden.js";
import { RUN_FILES, runHarden } from "../../src/recipes/harden.js";
import { evaluateModel } from "../../src/recipes/evaluate.js";
import { readPairs } from "../../src/data/pairs.js";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { frozenLinearCache, setF32Products, setFusedOp } from "../../src/tensor/index.js";
import type { Logger } from "../../src/util/log.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { tinyHardenConfig } from "./tiny-config.js";

const made = makeTinyChatModel();
const work = scratchDir("gv-copies-");
const data = path.join(work, "pairs.jsonl");
writeCorpusJsonl(data, made.pairs.slice(0, 4));

function config(name: string, method: HardenConfig["method"]): HardenConfig {
  return tinyHardenConfig(made.dir, data, path.join(work, name), {
    method,
    runDir: path.join(work, `${name}.run`),
    dtype: "bfloat16",
  });
}

function lines(): { log: Logger; seen: string[] } {
  const seen: string[] = [];
  return { seen, log: { info: (m) => seen.push(m), warn: (m) => seen.push(m), progress() {} } };
}

/** Runs `fn` with float32 copies of every frozen bf16 weight (`copies`) or with none. */
async function withCopies<T>(copies: boolean, fn: () => Promise<T>): Promise<T> {
  const prev = setF32Products("on");
  setFusedOp("frozenDx", copies);
  frozenLinearCache(true);
  try {
    return await fn();
  } finally {
    setF32Products(prev);
    setFusedOp("frozenDx", null);
    frozenLinearCache(true);
  }
}

const bytesOf = (dir: string, file: string) => fs.readFileSync(path.join(dir, file));

for (const method of ["goodvibe", "lora"] as const) {
  test(`harden (${method}): copies released after training, none left after the run, the same output`, async () => {
    const off = await withCopies(false, async () => {
      const r = await runHarden(config(`${method}-off`, method));
      assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
      return r;
    });
    const { log, seen } = lines();
    const on = await withCopies(true, async () => {
      const r = await runHarden(config(`${method}-on`, method), { log });
      assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 }, "no copy left after the run");
      return r;
    });
    // the copies were there through training and released before the fold: the line of what training held, then
    // the release of as many, then the fold
    // (GoodVibe's identification says what it held too: training's line is the last)
    const held = seen.map((l) => /^frozenDx: \d+ float32 weight copies held/.test(l)).lastIndexOf(true);
    assert.ok(held >= 0, seen.join("\n"));
    const n = Number(/^frozenDx: (\d+)/.exec(seen[held])![1]);
    assert.ok(n > 0, "training made copies");
    assert.match(seen[held + 1], new RegExp(`^frozenDx: ${n} weight copies released \\(`));
    assert.match(seen[held + 2], /^fold: /);
    // the same values with the copies as without: the hardened checkpoint and the method's file, byte for byte
    const artifact =
      method === "goodvibe" ? RUN_FILES.delta : path.join(RUN_FILES.adapter, "adapter_model.safetensors");
    for (const file of ["model.safetensors", artifact])
      assert.ok(bytesOf(on.outDir, file).equals(bytesOf(off.outDir, file)), `${file} differs`);
    assert.deepEqual(
      on.train.log.map((l) => l.loss),
      off.train.log.map((l) => l.loss),
    );
  });
}

test("harden stopped in training: its copies go all the same", async () => {
  const stop = new AbortController();
  const lora = config("stopped", "lora");
  await withCopies(true, async () => {
    await assert.rejects(
      // two steps: stopped after the first
      runHarden(
        { ...lora, train: { ...lora.train, epochs: 2 } },
        {
          signal: stop.signal,
          onStep: () => stop.abort(),
        },
      ),
      /stopped/,
    );
    assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
  });
});

test("an evaluation leaves no copy behind", async () => {
  // the tiny model's checkpoint computed in bfloat16 (its config's torch_dtype), so that its products make copies
  const dir = path.join(work, "bf16-model");
  fs.cpSync(made.dir, dir, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, torch_dtype: "bfloat16" }));
  await withCopies(true, async () => {
    const ev = await evaluateModel(dir, {
      pairs: readPairs(data),
      maxPrompts: 2,
      maxPreferencePairs: 2,
      maxNewTokens: 4,
      batchSize: 2,
      seed: 0,
    });
    assert.equal(ev.preference.n, 2);
    assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
  });
});

test("harden with no copies (float32 compute, or none planned): no 'frozenDx: 0 … copies' lines, the plan's line says why", async () => {
  for (const dtype of ["float32", "bfloat16"] as const) {
    const { log, seen } = lines();
    // without copies forced on, the tiny model's weights are all under the planning threshold: none made
    frozenLinearCache(true);
    await runHarden({ ...config(`none-${dtype}`, "goodvibe"), dtype }, { log });
    assert.deepEqual(frozenLinearCache(), { count: 0, bytes: 0 });
    const frozen = seen.filter((l) => l.startsWith("frozenDx"));
    assert.ok(frozen.length > 0, "the plan is still said");
    for (const l of frozen) assert.doesNotMatch(l, /^frozenDx: 0 /, `${dtype}: ${frozen.join("\n")}`);
    assert.ok(
      frozen.every((l) => !/copies (held|released)/.test(l)),
      `${dtype}: nothing held or released, nothing said of it: ${frozen.join("\n")}`,
    );
    // the plan, and for bf16 how products are computed, said once for the run, not before each stage
    assert.equal(frozen.length, 1, frozen.join("\n"));
    assert.equal(seen.filter((l) => l.startsWith("bf16 products:")).length, dtype === "bfloat16" ? 1 : 0);
  }
});
