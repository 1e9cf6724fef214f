/**
 * A stop request (Ctrl-C in the CLI, any aborted AbortSignal for a library user) in the middle of writing a
 * model's weights: the writer stops before the next tensor (or within 64 MiB of a large one), makes no further
 * tensor, removes its temporary, publishes nothing and leaves an existing output as it was. Without a stop the
 * stoppable writers write exactly the bytes of the plain ones (which the fixture tests pin to PyTorch's).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { InterruptedError } from "../../src/errors.js";
import { HOST_TAG, publishFileAsync, writeDirAtomic, writeFileAtomicAsync } from "../../src/io/atomic.js";
import { ggufPieces, gguf, writeGguf, type GgufTensorSpec, type GgufValue } from "../../src/io/gguf.js";
import {
  readSafetensors,
  writeModelWeights,
  writeModelWeightsAsync,
  type LazyTensorToWrite,
} from "../../src/io/safetensors.js";

const N = 40;
const ROWS = 64;
const COLS = 256;

/** Tensor i's float32 values: i + j/1000 (so every tensor's bytes differ and can be checked). */
function values(i: number): Float32Array {
  const v = new Float32Array(ROWS * COLS);
  for (let j = 0; j < v.length; j++) v[j] = i + j / 1000;
  return v;
}

const nameOf = (i: number) => `model.layers.${String(i).padStart(2, "0")}.weight`;

/**
 * N lazy tensors; `made` lists the ones whose bytes were asked for, and `onMake(i)` runs as tensor i is made (the
 * moment a signal arrives, in these tests).
 */
function lazyTensors(onMake: (i: number) => void = () => {}): {
  tensors: LazyTensorToWrite[];
  made: number[];
} {
  const made: number[] = [];
  const tensors = Array.from({ length: N }, (_, i) => ({
    name: nameOf(i),
    dtype: "F32" as const,
    shape: [ROWS, COLS],
    bytes: () => {
      made.push(i);
      onMake(i);
      const v = values(i);
      return new Uint8Array(v.buffer);
    },
  }));
  return { tensors, made };
}

const sha = (f: string) => createHash("sha256").update(fs.readFileSync(f)).digest("hex");

function hashes(dir: string): Record<string, string> {
  return Object.fromEntries(
    fs
      .readdirSync(dir)
      .sort()
      .map((n) => [n, sha(path.join(dir, n))]),
  );
}

async function rejectsInterrupted(p: Promise<unknown>, where: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InterruptedError, `not an InterruptedError: ${String(e)}`);
    assert.equal(e.exitCode, 130);
    assert.match(e.message, where);
    return true;
  });
}

for (const sharded of [false, true]) {
  const layout = sharded ? "sharded into 5 files" : "one file";
  test(`writeModelWeightsAsync (${layout}): a stop while tensor 22 is made ends before tensor 23; no temporary, no output; the rerun writes the plain writer's bytes`, async () => {
    const parent = scratchDir("gv-stopwrite-");
    const out = path.join(parent, "out");
    // 8 tensors of 64 KiB per shard: 5 shards, the stop lands in the third
    const maxShardBytes = sharded ? 8 * ROWS * COLS * 4 : undefined;
    const ac = new AbortController();
    const { tensors, made } = lazyTensors((i) => {
      if (i === 22) ac.abort(new Error("SIGINT"));
    });
    await rejectsInterrupted(
      writeDirAtomic(out, (tmp) =>
        writeModelWeightsAsync(tmp, tensors, { maxShardBytes, signal: ac.signal }).then(() => {}),
      ),
      new RegExp(`stopped before tensor ${nameOf(23).replace(/\./g, "\\.")} \\(${sharded ? 8 : 24} of`),
    );
    assert.deepEqual(
      made,
      Array.from({ length: 23 }, (_, i) => i),
      "tensors after the stop were made",
    );
    assert.deepEqual(fs.readdirSync(parent), [], "a temporary or an output was left behind");

    // uninterrupted: the same bytes as the synchronous writer, index included
    const ref = path.join(parent, "ref");
    writeModelWeights(ref, lazyTensors().tensors, { maxShardBytes });
    const again = lazyTensors();
    await writeDirAtomic(out, async (tmp) => {
      await writeModelWeightsAsync(tmp, again.tensors, {
        maxShardBytes,
        signal: new AbortController().signal,
      });
    });
    assert.deepEqual(again.made.length, N, "a tensor was made twice or not at all");
    assert.deepEqual(hashes(out), hashes(ref));
    assert.equal(Object.keys(hashes(out)).length, sharded ? 6 : 1);
    // and the values are the ones given (the file is a readable safetensors file)
    const first = sharded ? "model-00001-of-00005.safetensors" : "model.safetensors";
    const st = readSafetensors(path.join(out, first));
    const t0 = st.tensors.get(nameOf(0))!;
    assert.deepEqual(new Float32Array(Uint8Array.from(t0.data).buffer), values(0));
    fs.rmSync(parent, { recursive: true });
  });
}

/** N float32 GGUF tensors made on demand; `onMake(i)` as tensor i is made. */
function ggufSpec(onMake: (i: number) => void = () => {}) {
  const tensors: GgufTensorSpec[] = Array.from({ length: N }, (_, i) => ({
    name: `blk.${i}.ffn_up.weight`,
    type: "F32",
    shape: [ROWS, COLS],
    data: () => {
      onMake(i);
      return new Uint8Array(values(i).buffer);
    },
  }));
  const metadata: [string, GgufValue][] = [["general.architecture", gguf.str("llama")]];
  return { metadata, tensors };
}

test("publishFileAsync of a GGUF over an existing file (--overwrite): a stop leaves that file byte for byte, nothing moved aside, no temporary; unstopped it writes writeGguf's bytes", async () => {
  const parent = scratchDir("gv-stopwrite-");
  const out = path.join(parent, "model.gguf");
  fs.writeFileSync(out, "an earlier export\n");
  const before = sha(out);
  const ac = new AbortController();
  await rejectsInterrupted(
    publishFileAsync(
      out,
      ggufPieces(
        ggufSpec((i) => {
          if (i === 10) ac.abort(new Error("SIGTERM"));
        }),
      ),
      { overwrite: true, signal: ac.signal, onMovedAside: () => assert.fail("moved aside on a stop") },
    ),
    /writing model\.gguf stopped before tensor blk\.11\.ffn_up\.weight \(12 of 40\)/,
  );
  assert.deepEqual(fs.readdirSync(parent), ["model.gguf"], "a temporary was left or the output moved aside");
  assert.equal(sha(out), before, "the existing output changed");

  const ref = path.join(parent, "ref.gguf");
  writeGguf(ref, ggufSpec());
  let aside = "";
  await publishFileAsync(out, ggufPieces(ggufSpec()), {
    overwrite: true,
    signal: new AbortController().signal,
    onMovedAside: (a) => (aside = a),
  });
  assert.equal(sha(out), sha(ref));
  assert.equal(fs.readFileSync(aside, "utf8"), "an earlier export\n", "the earlier file was not kept aside");
  fs.rmSync(parent, { recursive: true });
});

test("a failing tensor (not a stop) also leaves no temporary and an existing output untouched", async () => {
  const parent = scratchDir("gv-stopwrite-");
  const out = path.join(parent, "model.gguf");
  fs.writeFileSync(out, "kept\n");
  const spec = ggufSpec((i) => {
    if (i === 5) throw new Error("tensor 5 cannot be converted");
  });
  await assert.rejects(
    publishFileAsync(out, ggufPieces(spec), { overwrite: true }),
    /tensor 5 cannot be converted/,
  );
  assert.deepEqual(fs.readdirSync(parent), ["model.gguf"]);
  assert.equal(fs.readFileSync(out, "utf8"), "kept\n");
  fs.rmSync(parent, { recursive: true });
});

test("a stop inside one large tensor lands within 64 MiB of it, not at its end", async () => {
  const parent = scratchDir("gv-stopwrite-");
  const file = path.join(parent, "big.bin");
  const ac = new AbortController();
  ac.abort(new Error("SIGINT"));
  // no stop mark before it: only the checks between its parts can stop it
  const pieces = [new Uint8Array(3 * (64 << 20))];
  await rejectsInterrupted(
    writeFileAtomicAsync(file, pieces, { signal: ac.signal }),
    /stopped inside the start/,
  );
  assert.deepEqual(fs.readdirSync(parent), []);
  fs.rmSync(parent, { recursive: true });
});

test("the next write into a folder removes a dead export's temporary, also the nested one that GGUF exports wrote before (`..NAME.tmp-….tmp-…`), whatever its target", async () => {
  const parent = scratchDir("gv-stopwrite-");
  const r = spawnSync(process.execPath, ["-e", "0"]);
  const dead = r.pid!;
  const flat = `.m.gguf.tmp-${dead}-1-${HOST_TAG}`;
  const nested = `..m.gguf.tmp-${dead}-1-${HOST_TAG}.tmp-${dead}-2-${HOST_TAG}`;
  // named now by this running process: a live writer's
  const now = Date.now();
  const live = `..m.gguf.tmp-${process.pid}-${now}-${HOST_TAG}.tmp-${process.pid}-${now + 1}-${HOST_TAG}`;
  // another target's: a killed export under another name is swept as well (it was left for good before)
  const other = `..n.gguf.tmp-${dead}-1-${HOST_TAG}.tmp-${dead}-2-${HOST_TAG}`;
  for (const n of [flat, nested, live, other]) fs.writeFileSync(path.join(parent, n), "partial");
  await publishFileAsync(path.join(parent, "m.gguf"), ggufPieces(ggufSpec()));
  assert.deepEqual(fs.readdirSync(parent).sort(), [live, "m.gguf"].sort());
  fs.rmSync(parent, { recursive: true });
});
