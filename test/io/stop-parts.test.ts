/**
 * A lazy safetensors tensor may be made in parts (a conversion a few MiB of rows at a time, as `export --format
 * safetensors` casts): the writer asks for each part only when it has written the one before, with a stop mark
 * between parts, so a stop inside one large tensor ends the write after one part. The parts together are written
 * exactly as the whole tensor is; parts that add up to more or fewer bytes than the shape needs are refused with the
 * tensor named, and leave no file.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { InputError, InterruptedError } from "../../src/errors.js";
import { writeDirAtomic } from "../../src/io/atomic.js";
import {
  writeModelWeights,
  writeModelWeightsAsync,
  type LazyTensorToWrite,
} from "../../src/io/safetensors.js";

const ROWS = 1024;
const COLS = 512;
const PART_ROWS = 256; // 4 parts

function values(): Float32Array {
  const v = new Float32Array(ROWS * COLS);
  for (let i = 0; i < v.length; i++) v[i] = Math.sin(i) * 0.02;
  return v;
}

/** A small tensor, then the big one in parts (`made` counts the parts asked for), then another small one. */
function tensors(
  onPart: (k: number) => void = () => {},
  partRows = PART_ROWS,
): {
  list: LazyTensorToWrite[];
  made: () => number;
} {
  let made = 0;
  const v = values();
  const small = (name: string): LazyTensorToWrite => ({
    name,
    dtype: "F32",
    shape: [4],
    bytes: () => new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer),
  });
  const big: LazyTensorToWrite = {
    name: "b.big",
    dtype: "F32",
    shape: [ROWS, COLS],
    bytes: function* () {
      for (let r = 0; r < ROWS; r += partRows) {
        made++;
        onPart(made);
        yield new Uint8Array(v.buffer, r * COLS * 4, Math.min(partRows, ROWS - r) * COLS * 4);
      }
    },
  };
  return { list: [small("a.small"), big, small("c.small")], made: () => made };
}

const sha = (f: string) => createHash("sha256").update(fs.readFileSync(f)).digest("hex");

test("a stop while part 2 of a tensor is made ends the write before part 3: no more parts made, nothing left behind", async () => {
  const parent = scratchDir("gv-stop-parts-");
  const ac = new AbortController();
  const t = tensors((k) => {
    if (k === 2) ac.abort(new Error("SIGINT"));
  });
  await assert.rejects(
    writeDirAtomic(path.join(parent, "out"), (tmp) =>
      writeModelWeightsAsync(tmp, t.list, { signal: ac.signal }).then(() => {}),
    ),
    (e: unknown) => {
      assert.ok(e instanceof InterruptedError, String(e));
      assert.match(
        e.message,
        new RegExp(`stopped before byte ${2 * PART_ROWS * COLS * 4} of tensor b\\.big \\(2 of 3\\)`),
      );
      return true;
    },
  );
  assert.equal(t.made(), 2);
  assert.deepEqual(fs.readdirSync(parent), []);
  fs.rmSync(parent, { recursive: true });
});

test("unstopped, the parts are written exactly as the whole tensor is", async () => {
  const parent = scratchDir("gv-stop-parts-");
  const out = path.join(parent, "out");
  await writeDirAtomic(out, async (tmp) => {
    await writeModelWeightsAsync(tmp, tensors().list, { signal: new AbortController().signal });
  });
  const whole = tensors().list.map((t) => ({
    ...t,
    bytes: () => {
      const made = t.bytes();
      return made instanceof Uint8Array ? made : Buffer.concat([...made]);
    },
  }));
  writeModelWeights(path.join(parent, "ref"), whole);
  assert.equal(sha(path.join(out, "model.safetensors")), sha(path.join(parent, "ref", "model.safetensors")));
  fs.rmSync(parent, { recursive: true });
});

test("parts that add up to fewer or more bytes than the shape needs are refused, naming the tensor; no file left", async () => {
  const parent = scratchDir("gv-stop-parts-");
  for (const [cut, what] of [
    [-1, /tensor "b\.big" has 1572864 bytes but shape \[1024,512\] of F32 needs 2097152/],
    [1, /tensor "b\.big" has at least \d+ bytes but shape \[1024,512\] of F32 needs 2097152/],
  ] as const) {
    const t = tensors();
    const big = t.list[1]!;
    const parts = big.bytes;
    big.bytes = function* () {
      const all = [...(parts() as Iterable<Uint8Array>)];
      if (cut < 0) all.pop();
      else all.push(new Uint8Array(8));
      yield* all;
    };
    await assert.rejects(
      writeDirAtomic(path.join(parent, "out"), (tmp) => writeModelWeightsAsync(tmp, t.list).then(() => {})),
      (e: unknown) => {
        assert.ok(e instanceof InputError, String(e));
        assert.match(e.message, what);
        return true;
      },
    );
    assert.deepEqual(fs.readdirSync(parent), []);
  }
  fs.rmSync(parent, { recursive: true });
});

test("a write that ends inside a tensor's parts (a stop, too many bytes) closes its generator: its finally runs", async () => {
  // fold's and the checkpoints' parts hold a tensor (the folded weight in its dtype) that their generator's finally
  // disposes; for-of closes an iterator it leaves early (the iterator protocol's return()), and so must the writer
  const parent = scratchDir("gv-stop-parts-");
  for (const how of ["stop", "too many"] as const) {
    const ac = new AbortController();
    const t = tensors();
    let closed = false;
    const big = t.list[1]!;
    const parts = big.bytes;
    big.bytes = function* () {
      try {
        let k = 0;
        for (const p of parts() as Iterable<Uint8Array>) {
          if (++k === 2 && how === "stop") ac.abort(new Error("SIGINT"));
          yield p;
        }
        if (how === "too many") yield new Uint8Array(8);
      } finally {
        closed = true;
      }
    };
    await assert.rejects(
      writeDirAtomic(path.join(parent, "out"), (tmp) =>
        writeModelWeightsAsync(tmp, t.list, { signal: ac.signal }).then(() => {}),
      ),
      how === "stop" ? InterruptedError : InputError,
    );
    assert.equal(closed, true, `${how}: the parts' generator was left open`);
    assert.deepEqual(fs.readdirSync(parent), []);
  }
  fs.rmSync(parent, { recursive: true });
});
