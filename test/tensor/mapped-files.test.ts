/**
 * Files mapped by the addon (native/src/addon.cc mmapFile / mmapRanges) over the life of one process: a tensor made
 * from a Buffer over a mapping views the mapping (fromBuffer's zero-copy path: no copy of a model's weights in the
 * heap) and releaseMappedPages can hand its pages back, for every file mapped, also after earlier mappings were
 * freed and the kernel placed a later, larger one over their range (a second model loaded in one process: eval after
 * training, the cells of an experiment). Reference: a view is what writing through the tensor shows in the Buffer.
 * And what another program's write to a mapped file does: one that replaces it (a new file renamed over it) leaves
 * the mapped tensors as they were; one that cuts it short in place (cp over it, `> file`) makes the next read of
 * its lost pages raise SIGBUS, which no process survives: the process must say which file, not just "Bus error".
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { fileURLToPath, pathToFileURL } from "node:url";
import { scratchDir } from "../scratch.js";
import { native } from "../../src/tensor/native.js";
import { MAX_BUFFER_BYTES } from "../../src/io/mapfile.js";

const NATIVE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/tensor/native.js");

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
    native.dispose(t);
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

test("a file replaced while mapped leaves its tensors as they were", () => {
  const dir = scratchDir("gv-mapped-");
  const file = path.join(dir, "w.bin");
  fs.writeFileSync(file, Buffer.alloc(MiB, 7));
  const t = native.fromBuffer(native.mmapFile(file, MAX_BUFFER_BYTES), "uint8", [MiB]);
  fs.writeFileSync(`${file}.new`, Buffer.alloc(16, 9));
  fs.renameSync(`${file}.new`, file); // what every writer of this project does (io/atomic.ts)
  assert.equal(native.item(native.sum(native.to(t, "float64"))), 7 * MiB);
});

test("a file cut short in place while mapped stops the process with a message naming the file", () => {
  const dir = scratchDir("gv-mapped-");
  const file = path.join(dir, "model-00001-of-00002.safetensors");
  fs.writeFileSync(file, Buffer.alloc(MiB, 7));
  const script =
    `const fs = await import("node:fs");` +
    `const { native } = await import(${JSON.stringify(pathToFileURL(NATIVE).href)});` +
    `const file = ${JSON.stringify(file)};` +
    `const [view] = native.mmapRanges(file, [${MiB / 2}, ${MiB / 2}], ${MAX_BUFFER_BYTES});` +
    `const t = native.fromBuffer(view, "uint8", [${MiB / 2}]);` +
    `console.log("before", native.item(native.sum(native.to(t, "float64"))));` +
    `fs.truncateSync(file, 4096);` +
    `console.log("after", native.item(native.sum(native.to(t, "float64"))));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    env: { ...process.env, GOODVIBE_THREADS: "1" },
  });
  assert.match(r.stdout, new RegExp(`before ${(7 * MiB) / 2}`), r.stderr);
  assert.doesNotMatch(r.stdout, /after/, "a read of the lost pages returned");
  assert.equal(r.signal, "SIGBUS", `status ${r.status}, signal ${r.signal}: ${r.stderr}`);
  assert.ok(r.stderr.includes(file), `stderr names the file: ${r.stderr}`);
  assert.match(r.stderr, /can no longer be read \(SIGBUS\)[^]*cut the file short in place/);
});

test("a SIGBUS sent to the process ends it as before, without the message", () => {
  const script =
    `const { native } = await import(${JSON.stringify(pathToFileURL(NATIVE).href)});` +
    `native.version();` + // loads the addon, which installs its handler
    `process.kill(process.pid, "SIGBUS");` +
    `setTimeout(() => console.log("survived"), 500);`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(r.signal, "SIGBUS", `status ${r.status}, signal ${r.signal}: ${r.stdout} ${r.stderr}`);
  assert.doesNotMatch(r.stdout, /survived/);
  assert.doesNotMatch(r.stderr, /goodvibe/);
});
