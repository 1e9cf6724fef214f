/**
 * Inputs and outputs that are not plain files and folders (found by an audit run as root): a named pipe given as
 * data or a model folder's file hung the command (open waits for a writer, and Ctrl-C could not
 * end it); an output under a dangling symlink or a loop was a stack trace at the end of the work; an output on
 * /proc spun in Node's recursive mkdir; `--overwrite` renamed a device out of the way. Each is now an InputError
 * naming the path before any work, and nothing is created or moved.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../src/errors.js";
import { checkOutput } from "../../src/io/atomic.js";
import { readPairs } from "../../src/data/pairs.js";
import { readJsonl } from "../../src/data/jsonl.js";
import { loadConfigFile } from "../../src/config/resolve.js";
import { loadModelConfig } from "../../src/io/config.js";
import { FIXTURES, scratchDir } from "./helpers.js";

const dir = scratchDir("gv-hostile-");
const hasMkfifo = spawnSync("mkfifo", ["--version"]).status === 0;

function fifo(name: string): string {
  const p = path.join(dir, name);
  const r = spawnSync("mkfifo", [p]);
  assert.equal(r.status, 0, String(r.stderr));
  return p;
}

const refused =
  (...parts: string[]) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
    return true;
  };

test(
  "a named pipe as data or a model folder's file is refused at once, not waited on; a config read once may be a pipe",
  { skip: !hasMkfifo && "no mkfifo" },
  async () => {
    // each of these blocked in open() for good before (the test would time out)
    const data = fifo("pairs.jsonl");
    assert.throws(() => readPairs(data), refused(data, "pipe (FIFO)"));
    await assert.rejects(
      readJsonl(data, () => undefined),
      refused(data, "pipe (FIFO)"),
    );
    // a config is read once, at start-up, where Ctrl-C still ends a wait: a pipe with a writer (`-c <(…)`) reads
    const config = fifo("harden.yaml");
    const writer = spawn("sh", ["-c", `printf 'seed: 3\\n' > '${config}'`]);
    try {
      assert.deepEqual(loadConfigFile(config), { seed: 3 });
    } finally {
      // a writer left waiting for a reader (the read refused) would hold the test process open
      if (writer.exitCode === null) writer.kill();
    }
    await new Promise((r) => writer.on("close", r));
    const model = path.join(dir, "model");
    fs.mkdirSync(model);
    fs.copyFileSync(path.join(FIXTURES, "llama", "model.safetensors"), path.join(model, "model.safetensors"));
    spawnSync("mkfifo", [path.join(model, "config.json")]);
    assert.throws(() => loadModelConfig(model), refused(path.join(model, "config.json"), "pipe (FIFO)"));
  },
);

test("an output under a dangling symlink or a loop of links is refused naming the link", () => {
  const dangling = path.join(dir, "dangling");
  fs.symlinkSync("/nonexistent/goodvibe/dir", dangling);
  const loopA = path.join(dir, "loopA");
  const loopB = path.join(dir, "loopB");
  fs.symlinkSync(loopB, loopA);
  fs.symlinkSync(loopA, loopB);
  for (const [link, out] of [
    [dangling, path.join(dangling, "sub", "out.gguf")],
    [loopA, path.join(loopA, "sub")],
  ] as const)
    assert.throws(
      () => checkOutput({ flag: "--out", path: out, kind: "file" }),
      refused(link, "symbolic link to a missing place"),
    );
});

test(
  "an output on the kernel's /proc is refused (root may write there by access(2); Node's mkdir spun)",
  { skip: !fs.existsSync("/proc/self") && "no /proc" },
  () => {
    assert.throws(
      () => checkOutput({ flag: "--out", path: "/proc/goodvibe-out/x.gguf", kind: "file", overwrite: true }),
      refused("/proc", "proc file system"),
    );
  },
);

test(
  "a device or a pipe as the output is refused, with --overwrite too: it is not moved aside",
  { skip: !hasMkfifo && "no mkfifo" },
  () => {
    const before = fs.statSync("/dev/null");
    assert.throws(
      () => checkOutput({ flag: "--out", path: "/dev/null", kind: "file", overwrite: true }),
      refused("/dev/null", "device"),
    );
    assert.equal(fs.statSync("/dev/null").ino, before.ino);
    const p = fifo("out.gguf");
    assert.throws(
      () => checkOutput({ flag: "--out", path: p, kind: "file", overwrite: true }),
      refused(p, "pipe"),
    );
    assert.ok(fs.lstatSync(p).isFIFO(), "the pipe is where it was");
    assert.deepEqual(
      fs.readdirSync(dir).filter((f) => f.includes(".old-")),
      [],
    );
  },
);

test("a file output ending with a slash is refused (export -o newdir/ wrote a file named newdir); a config file of a data file's size is refused by size", () => {
  assert.throws(
    () => checkOutput({ flag: "--out", path: path.join(dir, "newdir") + "/", kind: "file" }),
    refused("ends with a slash"),
  );
  assert.equal(fs.existsSync(path.join(dir, "newdir")), false);
  const big = path.join(dir, "big.yaml");
  fs.writeFileSync(big, "a".repeat(17 * 2 ** 20));
  assert.throws(() => loadConfigFile(big), refused(big, "too large for a config file"));
});

test("a config path that cannot be stat'ed (through a file, a loop of links) is 'cannot read', exit 2, not an internal error", () => {
  // the size check's stat ran outside the read's try: ENOTDIR and ELOOP escaped as internal errors (a review)
  const file = path.join(dir, "plain.txt");
  fs.writeFileSync(file, "x");
  const loop = path.join(dir, "cfg-loop");
  fs.symlinkSync(loop, loop);
  for (const bad of [path.join(file, "harden.yaml"), path.join(loop, "harden.yaml")])
    assert.throws(() => loadConfigFile(bad), refused("cannot read config file", bad));
});
