/**
 * Files mapped by the addon (native/src/addon.cc mmapFile / mmapRanges) over the life of one process: a tensor made
 * from a Buffer over a mapping views the mapping (fromBuffer's zero-copy path: no copy of a model's weights in the
 * heap) and releaseMappedPages can hand its pages back, for every file mapped, also after earlier mappings were
 * freed and the kernel placed a later, larger one over their range (a second model loaded in one process: eval after
 * training, the cells of an experiment). Reference: a view is what writing through the tensor shows in the Buffer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { scratchDir } from "../scratch.js";
import { native } from "../../src/tensor/native.js";
import { MAX_BUFFER_BYTES } from "../../src/io/mapfile.js";

const MiB = 1 << 20;
const VIEW = 64 * 1024; // whole pages, so releaseMappedPages has some to release

/** Whether a tensor made from `buf` views it: a write through the tensor shows in the Buffer. */
function views(buf: Buffer): boolean {
  const t = native.fromBuffer(buf, "uint8", [buf.length]);
  try {
    const before = buf[0];
    native.copyInPlace(t, native.full([buf.length], (before + 1) % 256, "uint8"));
    const seen = buf[0] === (before + 1) % 256;
    return seen && native.releaseMappedPages(t) > 0;
  } finally {
    t.dispose();
  }
}

test("every file mapped in a process is viewed, not copied, also after earlier mappings were freed", async () => {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const dir = scratchDir("gv-mapped-");
  const copied: string[] = [];
  // growing sizes: each file's mapping fits the hole its freed predecessors left only by reaching below it
  for (let i = 0; i < 10; i++) {
    const size = (2 + 2 * i) * MiB;
    const file = path.join(dir, `w${i}.bin`);
    fs.writeFileSync(file, Buffer.alloc(size, 7));
    const check = (how: string, bufs: Buffer[]) =>
      bufs.forEach((b, k) => {
        if (!views(b)) copied.push(`${how} ${i} (${size / MiB} MiB), view ${k}`);
      });
    const at = [0, 0.25, 0.5, 0.75, 1].map((f) => Math.floor(((size - VIEW) * f) / 4096) * 4096);
    {
      const whole = native.mmapFile(file, MAX_BUFFER_BYTES);
      check(
        "mmapFile",
        at.map((o) => whole.subarray(o, o + VIEW)),
      );
    }
    check(
      "mmapRanges",
      native.mmapRanges(
        file,
        at.flatMap((o) => [o, VIEW]),
        MAX_BUFFER_BYTES,
      ),
    );
    // the Buffers are garbage now: collect them, so that their mappings are unmapped before the next file's
    for (let k = 0; k < 3; k++) {
      gc();
      await new Promise((r) => setImmediate(r)); // external Buffers' finalizers run after the collection
    }
  }
  assert.deepEqual(copied, [], "these views of a live mapping were copied");
});
