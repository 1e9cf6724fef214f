/**
 * The last two weight writers that ignored a stop: a trained judge's checkpoint (trainJudge, `judge train`) and an
 * organism's model folder (writeOrganismModel, `organism build`). A stop request that arrives once training is over
 * stops the write before the next tensor: InterruptedError (exit 130), no temporary, nothing published, an existing
 * output left byte for byte; no tensor after the stop is converted. (Before, both wrote every tensor whatever the
 * signal said, and published the folder.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { InterruptedError } from "../../src/errors.js";
import { writeDirAtomic } from "../../src/io/atomic.js";
import { openModelWeights } from "../../src/io/safetensors.js";
import { recordToTensor } from "../../src/models/load.js";
import { organismConfigJson, writeOrganismModel } from "../../src/organism/pretrain.js";
import { trainJudge } from "../../src/recipes/train-judge.js";
import type { Tensor } from "../../src/tensor/index.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ layers: 2 });

function treeHash(dir: string): string {
  const h = createHash("sha256");
  for (const rel of (fs.readdirSync(dir, { recursive: true, encoding: "utf8" }) as string[]).sort()) {
    const p = path.join(dir, rel);
    h.update(rel);
    if (fs.statSync(p).isFile()) h.update(fs.readFileSync(p));
  }
  return h.digest("hex");
}

function existingOutput(parent: string): { out: string; hash: string } {
  const out = path.join(parent, "out");
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "model.safetensors"), "an earlier checkpoint\n");
  fs.writeFileSync(path.join(out, "config.json"), "{}\n");
  return { out, hash: treeHash(out) };
}

function isInterrupted(where: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof InterruptedError, `not an InterruptedError: ${String(e)}`);
    assert.equal(e.exitCode, 130);
    assert.match(e.message, where);
    return true;
  };
}

test("trainJudge: a stop once training is over stops the checkpoint's write; the earlier outDir stays as it was, no temporary", async () => {
  const parent = scratchDir("gv-stop-judge-");
  const { out, hash } = existingOutput(parent);
  const ac = new AbortController();
  let steps = 0;
  await assert.rejects(
    trainJudge({
      baseModelDir: made.dir,
      pairs: made.pairs.filter((_, i) => i % 24 === 0),
      outDir: out,
      overwrite: true,
      method: "full",
      cfg: { epochs: 1, batchSize: 4, gradAccum: 1, warmupRatio: 0, gradientCheckpointing: false },
      hooks: {
        signal: ac.signal,
        // the stop arrives with the last step: training finishes, the write is what it lands in
        onStep: (_l, total) => {
          if (++steps === total) ac.abort(new Error("SIGINT"));
        },
      },
    }),
    isInterrupted(/writing model\.safetensors stopped before tensor \S+ \(1 of \d+\).*nothing was published/),
  );
  assert.ok(steps > 0);
  assert.deepEqual(fs.readdirSync(parent), ["out"], "a temporary was left or the output moved aside");
  assert.equal(treeHash(out), hash, "the existing output changed");
  fs.rmSync(parent, { recursive: true });
});

test("writeOrganismModel: a stop while tensor 3 is copied out ends before tensor 4; no later tensor is copied, nothing published", async () => {
  const parent = scratchDir("gv-stop-organism-");
  const { out, hash } = existingOutput(parent);
  const records = openModelWeights(made.dir).tensors;
  const ac = new AbortController();
  const copied: string[] = [];
  // each tensor's bytesInParts() is its copy out (when the writer reaches it); the signal arrives during the third
  const weights = new Map<string, Tensor>();
  for (const [name, rec] of records) {
    const t = recordToTensor(rec);
    weights.set(
      name,
      new Proxy(t, {
        get(target, prop) {
          if (prop === "bytesInParts") {
            copied.push(name);
            if (copied.length === 3) ac.abort(new Error("SIGTERM"));
          }
          const v = Reflect.get(target, prop, target) as unknown;
          return typeof v === "function" ? v.bind(target) : v;
        },
      }),
    );
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(made.dir, "config.json"), "utf8"));
  const ids = { bos: cfg.bos_token_id, eos: cfg.eos_token_id, pad: cfg.pad_token_id };
  const configJson = organismConfigJson(
    {
      vocabSize: cfg.vocab_size,
      hiddenSize: cfg.hidden_size,
      intermediateSize: cfg.intermediate_size,
      numLayers: cfg.num_hidden_layers,
      numHeads: cfg.num_attention_heads,
      numKvHeads: cfg.num_key_value_heads,
    },
    ids,
  );
  await assert.rejects(
    writeDirAtomic(out, (tmp) => writeOrganismModel(tmp, weights, configJson, ids, made.dir, ac.signal), {
      overwrite: true,
    }),
    isInterrupted(/writing model\.safetensors stopped before tensor \S+ \(4 of \d+\)/),
  );
  assert.equal(copied.length, 3, `tensors copied out: ${copied.join(", ")}`);
  assert.deepEqual(fs.readdirSync(parent), ["out"]);
  assert.equal(treeHash(out), hash);

  // unstopped, the same call writes every tensor as it is
  const fresh = path.join(parent, "fresh");
  await writeDirAtomic(fresh, (tmp) => writeOrganismModel(tmp, weights, configJson, ids, made.dir));
  const written = openModelWeights(fresh).tensors;
  assert.equal(written.size, records.size);
  for (const [name, rec] of records)
    assert.ok(Buffer.from(written.get(name)!.data).equals(Buffer.from(rec.data)), name);
  fs.rmSync(parent, { recursive: true });
});
