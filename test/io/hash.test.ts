/**
 * The model folder hash remembered in a run folder (modelFolderHashCached): a rerun reuses it, and any change to
 * the folder's files through the file system is seen, even one that keeps the size and sets the mtime back.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  ANSWER_FILES,
  answersFingerprint,
  modelFolderHash,
  modelFolderHashCached,
  modelWeightsHash,
} from "../../src/io/hash.js";
import { TOKENIZER_FILES } from "../../src/io/model-folder.js";
import { FIXTURES, scratchDir } from "./helpers.js";

test("the cached model folder hash is the folder's hash, and a change in place is seen (same size, mtime set back)", () => {
  const work = scratchDir("gv-hash-");
  const dir = path.join(work, "model");
  fs.cpSync(path.join(FIXTURES, "llama"), dir, {
    recursive: true,
    filter: (s) => !s.includes("model-bf16") && !s.includes("sharded") && !s.includes("lora-adapter"),
  });
  const runDir = path.join(work, "run");
  const cache = path.join(runDir, "model-hash.json");
  const want = modelFolderHash(dir);
  // without the run folder nothing is written
  assert.equal(modelFolderHashCached(dir, cache), want);
  assert.ok(!fs.existsSync(runDir));
  fs.mkdirSync(runDir);
  assert.equal(modelFolderHashCached(dir, cache), want);
  assert.ok(fs.existsSync(cache));
  // a forged cache under the same identities is what a rerun reads: proof that it is read, not recomputed
  const c = JSON.parse(fs.readFileSync(cache, "utf8")) as { identity: string; hash: string };
  fs.writeFileSync(cache, JSON.stringify({ ...c, hash: "f".repeat(64) }));
  assert.equal(modelFolderHashCached(dir, cache), "f".repeat(64));
  fs.writeFileSync(cache, JSON.stringify(c));

  // one byte of the weights changed in place, size kept, mtime set back to the old one
  const st = path.join(dir, "model.safetensors");
  const before = fs.statSync(st);
  const bytes = fs.readFileSync(st);
  bytes[bytes.length - 1] ^= 0x01;
  fs.writeFileSync(st, bytes);
  fs.utimesSync(st, before.atime, before.mtime);
  assert.equal(fs.statSync(st).size, before.size);
  const now = modelFolderHashCached(dir, cache);
  assert.notEqual(now, want, "the changed weights were not seen");
  // the hash is the changed folder's own (the process's memo keys on size and mtime only: a fresh folder copy)
  const copy = path.join(work, "copy");
  fs.cpSync(dir, copy, { recursive: true });
  assert.equal(now, modelFolderHash(copy));

  // a file replaced by one with the same contents (a new inode) is hashed again, to the same hash
  const was = (JSON.parse(fs.readFileSync(cache, "utf8")) as { identity: string }).identity;
  const cfgFile = path.join(dir, "config.json");
  const text = fs.readFileSync(cfgFile);
  fs.rmSync(cfgFile);
  fs.writeFileSync(cfgFile, text);
  assert.equal(modelFolderHashCached(dir, cache), now);
  assert.notEqual((JSON.parse(fs.readFileSync(cache, "utf8")) as { identity: string }).identity, was);
  // an unreadable cache is ignored and rewritten
  fs.writeFileSync(cache, "{not json");
  assert.match(modelFolderHashCached(dir, cache), /^[0-9a-f]{64}$/);
  assert.doesNotThrow(() => JSON.parse(fs.readFileSync(cache, "utf8")));
});

test("the answers' key changes with each file that shapes prompts or ends answers, and with nothing else", () => {
  // the files a checkpoint carries over from its base are the ones that key its answers (one list, not two drifting)
  assert.deepEqual([...ANSWER_FILES].sort(), [...TOKENIZER_FILES].sort());
  const work = scratchDir("gv-hash-answers-");
  const dir = path.join(work, "model");
  fs.cpSync(path.join(FIXTURES, "llama"), dir, {
    recursive: true,
    filter: (s) => !s.includes("model-bf16") && !s.includes("sharded") && !s.includes("lora-adapter"),
  });
  const weights = modelWeightsHash(dir);
  const seen = new Set<string>();
  const key = (): string => {
    const k = answersFingerprint(dir);
    // the weights are the same throughout: given or read, the key is one
    assert.equal(answersFingerprint(dir, weights), k);
    assert.equal(modelWeightsHash(dir), weights);
    return k;
  };
  let last = key();
  seen.add(last);
  const moved = (why: string): void => {
    const k = key();
    assert.ok(!seen.has(k), `${why}: the answers' key did not move`);
    seen.add(k);
    last = k;
  };
  // the fixture has none of them: each one added, then changed, moves the key to one never seen before
  for (const name of ANSWER_FILES) {
    const file = path.join(dir, name);
    assert.ok(!fs.existsSync(file));
    const text = (v: string) =>
      name.endsWith(".json") ? JSON.stringify({ eos_token_id: v }) : `{{ '${v}' }}`;
    fs.writeFileSync(file, text("a"));
    moved(`${name} added`);
    fs.writeFileSync(file, text("b"));
    moved(`${name} changed`);
  }
  // what does not shape answers leaves the key alone
  fs.writeFileSync(path.join(dir, "README.md"), "# a model card\n");
  fs.writeFileSync(path.join(dir, "LICENSE"), "text\n");
  assert.equal(key(), last);
  // the weights still key answers
  fs.writeFileSync(
    path.join(dir, "config.json"),
    JSON.stringify({
      ...(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as object),
      x: 1,
    }),
  );
  assert.notEqual(answersFingerprint(dir), last);
  fs.rmSync(work, { recursive: true, force: true });
});
