// Temporaries in a folder that several machines share (an experiment cache on NFS, a Kubernetes volume): only
// this host's dead processes' temporaries may be cleaned; another host's PID means nothing here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { HOST_TAG, cleanStaleTemps, writeDirAtomic } from "../../src/io/atomic.js";

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
  const live = `.m.json.tmp-${process.pid}-5-${HOST_TAG}`;
  for (const n of [mine, legacy, foreign, live]) fs.writeFileSync(path.join(dir, n), "partial");
  fs.mkdirSync(path.join(dir, foreignDir));
  const removed = cleanStaleTemps(dir).map((p) => path.basename(p));
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
  assert.deepEqual(cleanStaleTemps(dir), []);
  assert.equal(fs.readFileSync(path.join(dir, "a", "model.safetensors"), "utf8"), "complete");
  assert.ok(fs.existsSync(path.join(dir, foreignOld)));
  assert.ok(!fs.existsSync(path.join(dir, "b")));
  fs.rmSync(dir, { recursive: true });
});
