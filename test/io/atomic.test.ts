// Temporaries in a folder that several machines share (an experiment cache on NFS, a Kubernetes volume): only
// this host's dead processes' temporaries may be cleaned; another host's PID means nothing here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import {
  HOST_TAG,
  cleanStaleTemps,
  renameNoReplace,
  staleTempsCleaned,
  writeDirAtomic,
  writeFileAtomic,
} from "../../src/io/atomic.js";

/** A PID that was alive a moment ago and is not now (a child that has exited). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "0"]);
  assert.ok(r.pid && r.pid > 0);
  return r.pid;
}

function folder(): string {
  return scratchDir("gv-atomic-");
}

test("the host tag is 8 hex digits and names every temporary; nothing is left once the write is done", async () => {
  assert.match(HOST_TAG, /^[0-9a-f]{8}$/);
  const dir = folder();
  let tmpName = "";
  await writeDirAtomic(path.join(dir, "out"), (tmp) => {
    tmpName = path.basename(tmp);
    fs.writeFileSync(path.join(tmp, "a.json"), "{}");
  });
  assert.match(tmpName, new RegExp(`^\\.out\\.tmp-${process.pid}-\\d+-${HOST_TAG}$`));
  assert.deepEqual(fs.readdirSync(dir), ["out"], "a temporary was left behind");
  assert.equal(fs.readFileSync(path.join(dir, "out", "a.json"), "utf8"), "{}");
  fs.rmSync(dir, { recursive: true });
});

test("cleanStaleTemps removes this host's dead temporaries and never another host's or a live one's", () => {
  const dir = folder();
  const dead = deadPid();
  const other = HOST_TAG === "00000000" ? "11111111" : "00000000";
  const mine = `.m.json.tmp-${dead}-1-${HOST_TAG}`;
  const legacy = `.m.json.tmp-${dead}-2`; // written before host tags: this host's
  const foreign = `.m.json.tmp-${dead}-3-${other}`; // another machine's writer, maybe still running
  const foreignDir = `.run.tmp-${dead}-4-${other}`;
  // named now by a process running now: its writer (a real temporary's TIME is when its running writer named it)
  const live = `.m.json.tmp-${process.pid}-${Date.now()}-${HOST_TAG}`;
  for (const n of [mine, legacy, foreign, live]) fs.writeFileSync(path.join(dir, n), "partial");
  fs.mkdirSync(path.join(dir, foreignDir));
  const removed = cleanStaleTemps(dir).map((t) => path.basename(t.path));
  assert.deepEqual(removed.sort(), [legacy, mine].sort());
  assert.deepEqual(fs.readdirSync(dir).sort(), [foreign, foreignDir, live].sort());
  fs.rmSync(dir, { recursive: true });
});

test("a folder moved aside by a dead writer of this host is put back; another host's is left alone", () => {
  const dir = folder();
  const dead = deadPid();
  const other = HOST_TAG === "00000000" ? "11111111" : "00000000";
  const mineOld = `.a.tmp-${dead}-1-${HOST_TAG}.old`;
  const foreignOld = `.b.tmp-${dead}-1-${other}.old`;
  fs.mkdirSync(path.join(dir, mineOld));
  fs.writeFileSync(path.join(dir, mineOld, "model.safetensors"), "complete");
  fs.mkdirSync(path.join(dir, foreignOld));
  assert.deepEqual(cleanStaleTemps(dir), [
    { path: path.join(dir, mineOld), bytes: 0, pid: dead, restoredTo: path.join(dir, "a") },
  ]);
  assert.equal(fs.readFileSync(path.join(dir, "a", "model.safetensors"), "utf8"), "complete");
  assert.ok(fs.existsSync(path.join(dir, foreignOld)));
  assert.ok(!fs.existsSync(path.join(dir, "b")));
  fs.rmSync(dir, { recursive: true });
});

const HOUR = 3_600_000;
const onLinux = fs.existsSync("/proc/self/stat");

test(
  "PID reuse: a temporary whose PID is now a process that started after its name was made is a dead writer's and goes; one whose process started before is kept",
  { skip: !onLinux && "reads /proc" },
  async (t) => {
    const dir = folder();
    // a process started now: a temporary named with its PID an hour ago was named by an earlier, dead holder of it
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60_000)"], { stdio: "ignore" });
    t.after(() => child.kill("SIGKILL"));
    await new Promise((r) => child.once("spawn", r));
    const pid = child.pid!;
    const reused = `.r.gguf.tmp-${pid}-${Date.now() - HOUR}-${HOST_TAG}`;
    const running = `.k.gguf.tmp-${pid}-${Date.now() + 1000}-${HOST_TAG}`; // named after it started: maybe its own
    // this very PID, an hour before this process started: a container's rerun gets its killed predecessor's PID
    const predecessor = `.s.gguf.tmp-${process.pid}-${Date.now() - HOUR}-${HOST_TAG}`;
    for (const n of [reused, running, predecessor]) fs.writeFileSync(path.join(dir, n), "partial");
    const removed = cleanStaleTemps(dir).map((x) => path.basename(x.path));
    assert.deepEqual(removed.sort(), [predecessor, reused].sort());
    assert.deepEqual(fs.readdirSync(dir), [running]);
    fs.rmSync(dir, { recursive: true });
  },
);

test("a write into a folder sweeps dead writers' temporaries of every target there, with their sizes, and puts back a folder moved aside; it keeps a live one's, another host's, a name without the host tag, a link, and another user's", async () => {
  const dir = folder();
  const dead = deadPid();
  const other = HOST_TAG === "00000000" ? "11111111" : "00000000";
  const at = (n: string) => path.join(dir, n);
  const gguf = `.a.gguf.tmp-${dead}-${Date.now() - HOUR}-${HOST_TAG}`;
  fs.writeFileSync(at(gguf), Buffer.alloc(12_345));
  const ckpt = `.out.tmp-${dead}-${Date.now() - HOUR}-${HOST_TAG}`; // a folder output's temporary: files at depth
  fs.mkdirSync(at(path.join(ckpt, "sub")), { recursive: true });
  fs.writeFileSync(at(path.join(ckpt, "model.safetensors")), Buffer.alloc(1000));
  fs.writeFileSync(at(path.join(ckpt, "sub", "x")), Buffer.alloc(24));
  const aside = `.cache.tmp-${dead}-${Date.now() - HOUR}-${HOST_TAG}.old`;
  fs.mkdirSync(at(aside));
  fs.writeFileSync(at(path.join(aside, "entry.json")), "complete");
  const kept = [
    `.b.gguf.tmp-${process.pid}-${Date.now()}-${HOST_TAG}`, // live
    `.c.gguf.tmp-${dead}-1-${other}`, // another host's
    `.d.gguf.tmp-${dead}-1`, // no host tag: too plain to sweep (the write of d.gguf itself still removes it)
  ];
  for (const n of kept) fs.writeFileSync(at(n), "partial");
  const link = `.e.gguf.tmp-${dead}-1-${HOST_TAG}`;
  fs.symlinkSync(at(kept[0]!), at(link));
  kept.push(link);
  if (process.getuid?.() === 0) {
    const theirs = `.f.gguf.tmp-${dead}-1-${HOST_TAG}`;
    fs.writeFileSync(at(theirs), "partial");
    fs.chownSync(at(theirs), 65534, 65534);
    kept.push(theirs);
  }

  const before = staleTempsCleaned().length;
  writeFileAtomic(at("x.json"), "{}");
  const cleaned = staleTempsCleaned().slice(before);
  assert.deepEqual(
    cleaned.sort((p, q) => p.path.localeCompare(q.path)),
    [
      { path: at(gguf), bytes: 12_345, pid: dead },
      { path: at(aside), bytes: 0, pid: dead, restoredTo: at("cache") },
      { path: at(ckpt), bytes: 1024, pid: dead },
    ].sort((p, q) => p.path.localeCompare(q.path)),
  );
  assert.deepEqual(fs.readdirSync(dir).sort(), [...kept, "cache", "x.json"].sort());
  assert.equal(fs.readFileSync(at("cache/entry.json"), "utf8"), "complete");
  fs.rmSync(dir, { recursive: true });
});

test("a file that appears between the look and the move is not replaced: renameNoReplace refuses", () => {
  const dir = folder();
  const tmp = path.join(dir, "tmp");
  const target = path.join(dir, "out.gguf");
  fs.writeFileSync(tmp, "mine");
  // someone else's file there (another export finishing at the same moment): a rename would replace it
  fs.writeFileSync(target, "theirs");
  assert.equal(renameNoReplace(tmp, target), false);
  assert.equal(fs.readFileSync(target, "utf8"), "theirs");
  assert.equal(fs.readFileSync(tmp, "utf8"), "mine", "the temporary is left to its caller");
  fs.rmSync(target);
  assert.equal(renameNoReplace(tmp, target), true);
  assert.equal(fs.readFileSync(target, "utf8"), "mine");
  assert.equal(fs.existsSync(tmp), false);
  assert.equal(fs.statSync(target).nlink, 1, "one name left");
  fs.rmSync(dir, { recursive: true });
});

test("two processes publishing one path at once: exactly one succeeds, the other is refused; the file is the winner's whole", async () => {
  const dir = folder();
  const target = path.join(dir, "same.bin");
  const atomic = new URL("../../src/io/atomic.js", import.meta.url).href;
  const script = (tag: string) =>
    `const { publishFile } = await import(${JSON.stringify(atomic)}); const fs = await import("node:fs");` +
    `try { publishFile(${JSON.stringify(target)}, (t) => fs.writeFileSync(t, Buffer.alloc(1 << 20, ${JSON.stringify(tag)}))); console.log("ok"); }` +
    `catch (e) { console.log(/exists; refusing/.test(e.message) ? "refused" : "error " + e.message); }`;
  const run = (tag: string) =>
    new Promise<string>((resolve) => {
      const c = spawn(process.execPath, ["--input-type=module", "-e", script(tag)]);
      let out = "";
      c.stdout.on("data", (d) => (out += d));
      c.on("close", () => resolve(out.trim()));
    });
  for (let round = 0; round < 8; round++) {
    fs.rmSync(target, { force: true });
    const got = await Promise.all([run("a"), run("b")]);
    assert.deepEqual([...got].sort(), ["ok", "refused"], `round ${round}: ${got.join(", ")}`);
    const bytes = fs.readFileSync(target);
    assert.ok(
      bytes.every((b) => b === bytes[0]!),
      "one writer's bytes",
    );
  }
  fs.rmSync(dir, { recursive: true });
});
