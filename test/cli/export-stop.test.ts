/**
 * Ctrl-C and SIGTERM during the CLI's long weight writes (`export` to safetensors or GGUF, `fold`), sent as a user
 * sends them: the command stops at the next tensor with exit 130, removes its temporaries, publishes nothing and
 * leaves an existing output as it was; the rerun writes what an uninterrupted run writes. A run killed with
 * SIGKILL (which nothing can handle) leaves its temporary, and the next write into the same folder removes it.
 *
 * A tiny model writes in milliseconds, so the interrupted runs set GOODVIBE_TEST_STOP_POINT_DELAY_MS: every stop
 * point (one before each tensor written) first blocks the thread as converting a large tensor would, and a
 * signal is seen only if the writer yields between tensors. The signal is sent once the writer's temporary
 * file exists, so it lands in the middle of the write.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { exportGguf } from "../../src/io/export-gguf.js";
import { readGguf } from "../../src/io/gguf.js";
import { foldIntoCheckpoint } from "../../src/method/fold.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { writeGoodVibeDelta } from "../../src/method/goodvibe/delta.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import { loadModel } from "../../src/models/index.js";
import { Tensor, manualSeed } from "../../src/tensor/index.js";
import { formatBytes } from "../../src/util/memory.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { hashTree, runCli, sha256File, showRun, startCli, type CliResult } from "./cli-helpers.js";

const work = scratchDir("gv-export-stop-");
after(() => fs.rmSync(work, { recursive: true, force: true }));
const made = makeTinyChatModel({ layers: 2 }); // 21 tensors
const MODEL = made.dir;

/** Every stop point blocks this long: a write of 21 tensors lasts at least 21 × this (a fold: 42 × this, it prepares each tensor first). */
const SLOW = { GOODVIBE_TEST_STOP_POINT_DELAY_MS: "100" };
/** Exit within this long of the signal (one tensor here takes ~100 ms; the bound is for a loaded machine). */
const PROMPT_MS = 10_000;

/** Entries of `dir` that are temporaries (`.NAME.tmp-…`), at any depth. */
function temporaries(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((rel) => /(^|\/)\.[^/]+\.tmp-[^/]*$/.test(rel));
}

/**
 * True once the weight writer's own temporary file under `dir` holds its first tensor whole: the file reaches
 * `firstTensorEnd(tmp, size)`, where the first tensor's bytes end in it (null while that cannot be told yet). The
 * next stop point is then before a later tensor. (Seeing the file grow is not enough: a loaded machine can show the
 * header half written, and the stop then comes before the first tensor.) Temporaries there when this is made (a
 * killed run's) are not the new run's.
 */
function writing(
  dir: string,
  file: RegExp,
  firstTensorEnd: (tmp: string, size: number) => number | null,
): () => boolean {
  const stale = new Set(temporaries(dir));
  return () => {
    try {
      const rel = temporaries(dir).find((r) => file.test(path.basename(r)) && !stale.has(r));
      if (!rel) return false;
      const tmp = path.join(dir, rel);
      const size = fs.statSync(tmp).size;
      const end = firstTensorEnd(tmp, size);
      return end !== null && size >= end;
    } catch {
      return false; // renamed or removed while we looked, or its header not yet readable
    }
  };
}

/**
 * The end of a safetensors file's first tensor, from the format (an 8-byte little-endian header length, the JSON
 * header, then the data, each tensor at its data_offsets), or null while the header is not all there.
 */
function safetensorsFirstTensorEnd(tmp: string, size: number): number | null {
  if (size < 8) return null;
  const fd = fs.openSync(tmp, "r");
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    if (size < 8 + n) return null;
    const json = Buffer.alloc(n);
    fs.readSync(fd, json, 0, n, 8);
    const header = JSON.parse(json.toString("utf8")) as Record<string, { data_offsets?: [number, number] }>;
    const ends = Object.entries(header)
      .filter(([k]) => k !== "__metadata__")
      .map(([, v]) => v.data_offsets![1]);
    return 8 + n + Math.min(...ends);
  } finally {
    fs.closeSync(fd);
  }
}

/** The end of the first tensor of `model`'s GGUF export in `outtype`, from an uninterrupted export read back. */
function ggufFirstTensorEnd(outtype: "q8_0" | "f32"): () => number {
  const ref = path.join(work, `first-tensor-${outtype}.gguf`);
  exportGguf(MODEL, ref, { outtype });
  const first = readGguf(ref).tensors.reduce((a, t) => (t.offset < a.offset ? t : a));
  const end = first.offset + first.nbytes;
  fs.rmSync(ref);
  return () => end;
}

/**
 * Start the command, send `sig` as soon as `ready()` (its temporary is being written), and wait for the exit.
 * Fails when the process ends first: then nothing was interrupted.
 */
async function signalWhenWriting(
  args: string[],
  ready: () => boolean,
  sig: NodeJS.Signals,
  times = 1,
): Promise<CliResult & { exitMs: number }> {
  const run = startCli(args, { env: SLOW });
  let exited = false;
  void run.done.then(() => (exited = true));
  const limit = Date.now() + 120_000;
  while (!exited && !ready()) {
    if (Date.now() > limit) {
      run.child.kill("SIGKILL");
      throw new Error("the write did not start within 120 s");
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  if (exited)
    throw new Error(`the run ended before its write could be interrupted:\n${showRun(await run.done)}`);
  const sentAt = Date.now();
  for (let i = 0; i < times; i++) {
    // apart, or the kernel merges them into one
    if (i > 0) await new Promise((r) => setTimeout(r, 20));
    run.child.kill(sig);
  }
  const r = await run.done;
  return { ...r, exitMs: Date.now() - sentAt };
}

function assertStopped(r: CliResult & { exitMs: number }, file: string): void {
  assert.equal(r.code, 130, showRun(r));
  assert.ok(r.exitMs < PROMPT_MS, `exit ${r.exitMs} ms after the signal`);
  assert.match(
    r.stderr,
    new RegExp(
      `interrupted: writing ${file.replace(/\./g, "\\.")} stopped before tensor \\S+ \\((\\d+) of (\\d+)\\)`,
    ),
  );
  const [, at, of] = / \((\d+) of (\d+)\) on request/.exec(r.stderr)!;
  assert.ok(Number(at) > 1 && Number(at) <= Number(of), `stopped at tensor ${at} of ${of}: not mid-write`);
}

test("export --format safetensors: a kill -9 mid-write leaves a temporary that the next export removes; SIGINT mid-write exits 130 and leaves nothing; the rerun writes the input's weights", async () => {
  const parent = path.join(work, "st");
  fs.mkdirSync(parent);
  const out = path.join(parent, "out");
  const args = ["export", "-m", MODEL, "-o", out, "--format", "safetensors", "--outtype", "float32"];
  const ready = () => writing(parent, /^\.model\.safetensors\.tmp-/, safetensorsFirstTensorEnd);

  const killed = await signalWhenWriting(args, ready(), "SIGKILL");
  assert.equal(killed.signal, "SIGKILL", showRun(killed));
  assert.ok(temporaries(parent).length > 0, "the kill did not land mid-write: nothing to clean");
  const r = await signalWhenWriting(args, ready(), "SIGINT");
  assertStopped(r, "model.safetensors");
  assert.deepEqual(
    fs.readdirSync(parent),
    [],
    "a temporary (the killed run's or its own) or an output was left",
  );

  const rerun = await runCli(args);
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.deepEqual(fs.readdirSync(parent), ["out"]);
  // the model is float32 already: its weights come out byte for byte, with its tokenizer files
  const want = hashTree(MODEL, (rel) => rel === "config.json");
  assert.deepEqual(
    hashTree(out, (rel) => rel === "config.json"),
    want,
  );
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8")).torch_dtype, "float32");
});

test("export --format gguf --outtype q8_0 --overwrite: a kill -9 mid-write leaves a temporary that the next export removes; SIGTERM mid-write exits 130 and leaves the existing file as it was; the rerun writes exportGguf's bytes", async () => {
  const parent = path.join(work, "gguf");
  fs.mkdirSync(parent);
  const out = path.join(parent, "model.gguf");
  fs.writeFileSync(out, "the export a user already has\n");
  const args = ["export", "-m", MODEL, "-o", out, "--outtype", "q8_0", "--overwrite"];
  const firstTensorEnd = ggufFirstTensorEnd("q8_0");
  const ready = () => writing(parent, /^\.model\.gguf\.tmp-/, firstTensorEnd);

  const killed = await signalWhenWriting(args, ready(), "SIGKILL");
  assert.equal(killed.signal, "SIGKILL", showRun(killed));
  assert.ok(temporaries(parent).length > 0, "the kill did not land mid-write: nothing to clean");
  const r = await signalWhenWriting(args, ready(), "SIGTERM");
  assertStopped(r, "model.gguf");
  assert.deepEqual(
    fs.readdirSync(parent),
    ["model.gguf"],
    "a temporary was left or the old file moved aside",
  );
  assert.equal(fs.readFileSync(out, "utf8"), "the export a user already has\n");

  const rerun = await runCli(args);
  assert.equal(rerun.code, 0, showRun(rerun));
  const ref = path.join(work, "ref.gguf");
  exportGguf(MODEL, ref, { outtype: "q8_0" });
  assert.equal(sha256File(out), sha256File(ref));
  assert.equal(fs.readdirSync(parent).filter((n) => n.startsWith(".")).length, 0);
});

test("fold --delta: SIGINT while the folded weights are written exits 130 and leaves nothing; the rerun writes the uninterrupted fold", async () => {
  // a GoodVibe delta on three rows of one projection
  const model = loadModel(MODEL);
  const name = "model.layers.1.mlp.down_proj";
  const sel = new Map<string, RowSelection>([[name, { rows: [0, 5, 9], clusters: [0, 1, 0], nClusters: 2 }]]);
  manualSeed(3);
  const U = new Map([[`${name}.U`, Tensor.randn([2, model.linear(name).inFeatures]).mul(0.3)]]);
  const method = attachGoodVibe(model, sel, U);
  const delta = path.join(work, "goodvibe-delta.safetensors");
  writeGoodVibeDelta(delta, model, sel, method, { base_model: MODEL });
  const ref = path.join(work, "fold-ref");
  await foldIntoCheckpoint(MODEL, ref, method);

  const parent = path.join(work, "fold");
  fs.mkdirSync(parent);
  const out = path.join(parent, "out");
  const args = ["fold", "-m", MODEL, "--delta", delta, "-o", out];
  const r = await signalWhenWriting(
    args,
    writing(parent, /^\.model\.safetensors\.tmp-/, safetensorsFirstTensorEnd),
    "SIGINT",
  );
  assertStopped(r, "model.safetensors");
  assert.deepEqual(fs.readdirSync(parent), [], "a temporary or a partial output was left");

  const rerun = await runCli(args);
  assert.equal(rerun.code, 0, showRun(rerun));
  assert.deepEqual(hashTree(out), hashTree(ref));
});

test("export: a second Ctrl-C while the first is stopping the write exits at once (130) and still leaves no temporary", async () => {
  const parent = path.join(work, "twice");
  fs.mkdirSync(parent);
  const args = ["export", "-m", MODEL, "-o", path.join(parent, "m.gguf"), "--outtype", "f32"];
  // both arrive while the thread is busy (a stop point's delay): the first asks to stop, the second exits
  const r = await signalWhenWriting(
    args,
    writing(parent, /^\.m\.gguf\.tmp-/, ggufFirstTensorEnd("f32")),
    "SIGINT",
    2,
  );
  assert.equal(r.code, 130, showRun(r));
  assert.match(r.stderr, /SIGINT again: exiting now/, showRun(r));
  assert.deepEqual(fs.readdirSync(parent), [], "the temporary of a run that exited at once was left");
});

test("kill -9 of an export leaves a temporary as large as the written part; the next export into the folder under another name removes it (and one whose PID was reused since), says so with the bytes freed (--json too), and keeps a live writer's and another host's", async (t) => {
  const parent = path.join(work, "sweep");
  fs.mkdirSync(parent);
  const ggufArgs = (dir: string, name: string) => [
    "export",
    "-m",
    MODEL,
    "-o",
    path.join(dir, name),
    "--outtype",
    "f32",
  ];
  // each killed in a folder of its own (a kill's temporary would be swept by the next export into its folder),
  // then moved in: a GGUF export's file temporary ...
  const k1dir = path.join(work, "sweep-k1");
  fs.mkdirSync(k1dir);
  const k1 = await signalWhenWriting(
    ggufArgs(k1dir, "a.gguf"),
    writing(k1dir, /^\.a\.gguf\.tmp-/, ggufFirstTensorEnd("f32")),
    "SIGKILL",
  );
  assert.equal(k1.signal, "SIGKILL", showRun(k1));
  // ... and a safetensors export's folder temporary
  const k2dir = path.join(work, "sweep-k2");
  fs.mkdirSync(k2dir);
  const k2 = await signalWhenWriting(
    ["export", "-m", MODEL, "-o", path.join(k2dir, "st"), "--format", "safetensors", "--outtype", "float32"],
    writing(k2dir, /^\.model\.safetensors\.tmp-/, safetensorsFirstTensorEnd),
    "SIGKILL",
  );
  assert.equal(k2.signal, "SIGKILL", showRun(k2));
  for (const d of [k1dir, k2dir]) {
    const [only, ...more] = fs.readdirSync(d);
    assert.ok(only && more.length === 0, `the kill in ${d} left ${JSON.stringify(fs.readdirSync(d))}`);
    fs.renameSync(path.join(d, only), path.join(parent, only));
  }
  const left = fs.readdirSync(parent).sort();
  const [aTemp, stTemp] = left as [string, string];
  assert.match(aTemp, /^\.a\.gguf\.tmp-\d+-\d+-[0-9a-f]{8}$/);
  const [, , time, host] = /^\.st\.tmp-(\d+)-(\d+)-([0-9a-f]{8})$/.exec(stTemp)!;
  // the folder temporary's PID now held by a process started after the kill (PID reuse): a sleeping child. The
  // name is dated an hour back, as a run killed an hour ago left it: a PID taken within a minute of the name counts
  // as its writer's (io/atomic.ts PID_REUSE_SLACK_MS)
  const sleeper = spawn(process.execPath, ["-e", "setTimeout(() => {}, 120_000)"], { stdio: "ignore" });
  t.after(() => sleeper.kill("SIGKILL"));
  await new Promise((r) => sleeper.once("spawn", r));
  const reused = `.st.tmp-${sleeper.pid}-${Number(time) - 3_600_000}-${host}`;
  fs.renameSync(path.join(parent, stTemp), path.join(parent, reused));
  const size = (rel: string) =>
    fs
      .readdirSync(path.join(parent, rel), { recursive: true, encoding: "utf8" })
      .map((e) => fs.statSync(path.join(parent, rel, e)))
      .filter((s) => s.isFile())
      .reduce((n, s) => n + s.size, 0);
  const aBytes = fs.statSync(path.join(parent, aTemp)).size;
  const stBytes = size(reused);
  assert.ok(aBytes > 0 && stBytes > 0);
  // not to be touched: a running writer's (this test process, named now) and another host's
  const live = `.c.gguf.tmp-${process.pid}-${Date.now()}-${host}`;
  const foreign = `.d.gguf.tmp-${sleeper.pid}-1-${host === "00000000" ? "11111111" : "00000000"}`;
  for (const n of [live, foreign]) fs.writeFileSync(path.join(parent, n), "partial");

  const r = await runCli([...ggufArgs(parent, "b.gguf"), "--json"]);
  assert.equal(r.code, 0, showRun(r));
  const stale = JSON.parse(r.stdout).staleTemporaries;
  assert.deepEqual(
    stale,
    {
      removed: [
        { path: path.join(parent, aTemp), bytes: aBytes, pid: Number(/tmp-(\d+)/.exec(aTemp)![1]) },
        { path: path.join(parent, reused), bytes: stBytes, pid: sleeper.pid },
      ],
      restored: [],
      bytesFreed: aBytes + stBytes,
    },
    showRun(r),
  );
  assert.deepEqual(fs.readdirSync(parent).sort(), [live, foreign, "b.gguf"].sort());

  // the human output names it, with the size freed
  const k3 = await signalWhenWriting(
    ggufArgs(parent, "e.gguf"),
    writing(parent, /^\.e\.gguf\.tmp-/, ggufFirstTensorEnd("f32")),
    "SIGKILL",
  );
  assert.equal(k3.signal, "SIGKILL", showRun(k3));
  const eTemp = fs.readdirSync(parent).find((n) => n.startsWith(".e.gguf.tmp-"))!;
  const eBytes = fs.statSync(path.join(parent, eTemp)).size;
  const h = await runCli(ggufArgs(parent, "f.gguf"));
  assert.equal(h.code, 0, showRun(h));
  assert.ok(
    h.stdout.includes(
      `removed 1 temporary of killed goodvibe runs (${formatBytes(eBytes)} freed):\n  ${path.join(parent, eTemp)} (${formatBytes(eBytes)}, process `,
    ),
    showRun(h),
  );
  assert.ok(!fs.existsSync(path.join(parent, eTemp)));
});
