/**
 * A safetensors file larger than one Node.js Buffer (buffer.constants.MAX_LENGTH, 4 GiB in Node 20). Hugging Face
 * shards checkpoints at 5 GB: Meta-Llama-3-8B-Instruct's and gemma-3-12b-it's shards are 4.98 GB, gemma-3-4b-it's
 * first 4.96 GB, CodeLlama-7b-Instruct-hf's first 9.98 GB, so four of the paper's six models have one. Mapping such a
 * file as one Buffer crashed the process natively ("free(): double free detected in tcache 2", signal 6: Node frees
 * the finalizer's data when the Buffer cannot be made, and node-addon-api frees it again), seen loading a 4.7 GB
 * single-file Gemma-3-12b-it-shaped model. Each tensor is now a view of its own byte range of one mapping.
 *
 * The files are sparse (a header, a few marker bytes, and holes), so the test writes kilobytes, not gigabytes. The
 * reference is the format itself: each tensor's bytes sit at 8 + header length + its data_offsets.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { readSafetensors } from "../../src/io/safetensors.js";
import { MAX_BUFFER_BYTES } from "../../src/io/mapfile.js";
import { recordToTensor } from "../../src/models/load.js";
import { tidy } from "../../src/tensor/index.js";
import { assertInputError, scratchDir, writeSparseSafetensors } from "./helpers.js";

test("a 5 GB safetensors shard loads: every tensor a view of its own bytes, one past 4 GiB included", () => {
  const dir = scratchDir("gv-st-large-");
  try {
    const file = path.join(dir, "model-00001-of-00002.safetensors");
    const big = 1200 * 1024 * 1024 * 2; // a [1200, 1048576] bf16 tensor: 2.34 GiB
    const c = new Float32Array([1.5, -2, 3.25, 4096]);
    const headLen = writeSparseSafetensors(
      file,
      {
        a: { dtype: "BF16", shape: [1200, 1024 * 1024], data_offsets: [0, big] },
        b: { dtype: "BF16", shape: [1200, 1024 * 1024], data_offsets: [big, 2 * big] },
        c: { dtype: "F32", shape: [4], data_offsets: [2 * big, 2 * big + 16] },
      },
      [
        [0, Buffer.from([0xa0, 0xa1])],
        [big - 2, Buffer.from([0xaf, 0xae])],
        [big, Buffer.from([0xb0, 0xb1])],
        [2 * big - 2, Buffer.from([0xbf, 0xbe])],
        [2 * big, new Uint8Array(c.buffer)],
      ],
    );
    assert.ok(fs.statSync(file).size > MAX_BUFFER_BYTES, "larger than one Buffer");
    assert.ok(headLen + 2 * big > 2 ** 32, "c starts past 4 GiB");

    const st = readSafetensors(file);
    assert.deepEqual([...st.tensors.keys()], ["a", "b", "c"]);
    const a = st.tensors.get("a")!;
    const b = st.tensors.get("b")!;
    assert.equal(a.data.byteLength, big);
    assert.equal(b.data.byteLength, big);
    assert.deepEqual([a.data[0], a.data[1], a.data[big - 2], a.data[big - 1]], [0xa0, 0xa1, 0xaf, 0xae]);
    assert.deepEqual([b.data[0], b.data[1], b.data[big - 2], b.data[big - 1]], [0xb0, 0xb1, 0xbf, 0xbe]);
    // c's values, read through a libtorch tensor made from the view
    const cRec = st.tensors.get("c")!;
    assert.deepEqual(
      tidy(() => [...recordToTensor(cRec).toFloat32Array()]),
      [...c],
    );

    // a tensor longer than one Buffer is refused by name, not crashed on
    const huge = path.join(dir, "huge.safetensors");
    writeSparseSafetensors(
      huge,
      { w: { dtype: "U8", shape: [MAX_BUFFER_BYTES + 8], data_offsets: [0, MAX_BUFFER_BYTES + 8] } },
      [],
    );
    assertInputError(
      () => readSafetensors(huge),
      'tensor "w"',
      "more than the",
      "one Node.js buffer can hold",
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("without the addon (the io layer alone, read instead of mapped), a 2-4 GiB shard is read whole: past fs.readFileSync's 2 GiB and readSync's 32-bit length", () => {
  // gemma-3-4b-it's second shard is 3.64 GB; a library user who reads weights without the tensor layer got
  // ERR_FS_FILE_TOO_LARGE, then ERR_OUT_OF_RANGE from one readSync of the whole. A child process that imports
  // only src/io: this one has loaded the addon, whose mapper replaces the reading.
  const dir = scratchDir("gv-st-read-");
  try {
    const file = path.join(dir, "model-00002-of-00002.safetensors");
    const big = 1100 * 1024 * 1024 * 2; // a [1100, 1048576] bf16 tensor: 2.15 GiB
    writeSparseSafetensors(
      file,
      {
        a: { dtype: "BF16", shape: [1100, 1024 * 1024], data_offsets: [0, big] },
        c: { dtype: "U8", shape: [3], data_offsets: [big, big + 3] },
      },
      [
        [0, Buffer.from([0xa0, 0xa1])],
        [2 ** 30 - 1, Buffer.from([0xa2, 0xa3])], // across the first read's end
        [big - 2, Buffer.from([0xaf, 0xae])],
        [big, Buffer.from([7, 8, 9])],
      ],
    );
    const size = fs.statSync(file).size;
    assert.ok(size > 2 ** 31 && size < MAX_BUFFER_BYTES, "between fs.readFileSync's limit and one Buffer's");
    const io = new URL("../../src/io/safetensors.js", import.meta.url).href;
    const script = `
      const { readSafetensors } = await import(${JSON.stringify(io)});
      const st = readSafetensors(${JSON.stringify(file)});
      const a = st.tensors.get("a").data, c = st.tensors.get("c").data;
      const at = (i) => a[i];
      console.log(JSON.stringify({ len: a.byteLength, a: [at(0), at(1), at(2 ** 30 - 1), at(2 ** 30), at(a.byteLength - 2), at(a.byteLength - 1)], c: [...c] }));`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      len: big,
      a: [0xa0, 0xa1, 0xa2, 0xa3, 0xaf, 0xae],
      c: [7, 8, 9],
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
