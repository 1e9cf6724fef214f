/**
 * A model that cannot fit the memory is refused from config.json and its safetensors headers, before anything is
 * hashed or mapped, with the numbers (exit 3). Found on a 24 GiB machine with a full-depth Qwen3-14B (27.5 GiB of
 * bf16 in one file): `harden` hashed the folder for 48 s, then the file failed to map ("Cannot allocate memory")
 * and the error called it a bad safetensors file (exit 2). The checkpoints here are sparse files: a header
 * describing every tensor of the published shape, zeros after it, no disk taken.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { checkpointTensors } from "../scale/models.js";
import { publishedConfig } from "../paper/published-configs.js";
import { requireModelMemory } from "../../src/models/load.js";
import { readSafetensors } from "../../src/io/safetensors.js";
import { ResourceError } from "../../src/errors.js";
import { availableMemoryBytes, formatBytes } from "../../src/util/memory.js";
import { makeCliFixture, runCli, showRun } from "../cli/cli-helpers.js";
import { writeSparseSafetensors } from "../io/helpers.js";

const fx = makeCliFixture({ perLanguage: 1 });
const work = fx.work;
after(() => fx.cleanup());

/** A safetensors file whose header lists `tensors` (bf16) and whose data are a hole: returns the data's bytes. */
function sparseSafetensors(
  file: string,
  tensors: readonly (readonly [string, number[], ...unknown[]])[],
): number {
  const header: Parameters<typeof writeSparseSafetensors>[1] = {};
  let offset = 0;
  for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: "BF16", shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  writeSparseSafetensors(file, header);
  return offset;
}

/** Qwen3-14B's published config with `layers` layers, its weights a sparse file: 0.69 GiB of bf16 a layer. */
function sparseQwen3(layers: number): { dir: string; bytes: number } {
  const dir = fs.mkdtempSync(path.join(work, "qwen3-14b-"));
  const config = publishedConfig("Qwen3-14B", layers);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  const bytes = sparseSafetensors(path.join(dir, "model.safetensors"), checkpointTensors(config));
  return { dir, bytes };
}

const GiB = 2 ** 30;

test("requireModelMemory: the weights' bytes in the compute dtype against the memory given", () => {
  const { dir, bytes } = sparseQwen3(2);
  // bf16 as stored: the file's bytes; float32: twice
  assert.throws(
    () => requireModelMemory(dir, { available: bytes - 1 }),
    (e: unknown) =>
      e instanceof ResourceError &&
      e.message.includes(`loading ${dir} in bfloat16 needs about`) &&
      /use a machine with more memory/.test(e.message),
  );
  requireModelMemory(dir, { available: bytes });
  assert.throws(() => requireModelMemory(dir, { dtype: "float32", available: 2 * bytes - 1 }), ResourceError);
  requireModelMemory(dir, { dtype: "float32", available: 2 * bytes });
  // a small model fits a small budget
  requireModelMemory(fx.model.dir, { available: 64 * 2 ** 20 });
});

// 400 layers of Qwen3-14B's width: 249 GiB of bf16, more than any machine this runs on has available
const huge = sparseQwen3(400);
const fits = availableMemoryBytes() > huge.bytes;

test(
  "harden refuses a model larger than the memory at once, exit 3, with the numbers; nothing written",
  { skip: fits ? "this machine has the memory for it" : false },
  async () => {
    const out = path.join(work, "out");
    const r = await runCli(["harden", "-m", huge.dir, "-d", fx.pairsFile, "-o", out]);
    assert.equal(r.code, 3, showRun(r));
    assert.match(
      r.stderr,
      new RegExp(`loading ${huge.dir} in bfloat16 needs about ${formatBytes(huge.bytes)} of memory; only`),
    );
    assert.doesNotMatch(r.stderr, /cannot read safetensors|Cannot allocate memory/);
    assert.ok(!fs.existsSync(out), "no output");
    assert.deepEqual(
      fs.readdirSync(work).filter((n) => n.includes("out")),
      [],
      "no run folder",
    );
  },
);

// weights of about a third of the memory available: they fit, full fine-tuning's 16 bytes a parameter do not
const avail = availableMemoryBytes();
const third = sparseQwen3(Math.max(1, Math.round((avail / 3 - 1.56e9 * 2) / (0.33e9 * 2))));

test(
  "full fine-tuning that cannot fit is refused from the headers, before the model is loaded",
  { skip: third.bytes > avail / 2 ? "too little memory here for a model that loads" : false },
  async () => {
    const out = path.join(work, "out-full");
    const r = await runCli(["train", "--method", "full", "-m", third.dir, "-d", fx.pairsFile, "-o", out]);
    assert.equal(r.code, 3, showRun(r));
    // the check before the load counts every weight as held by the load; attachFull's, after it, only the copies
    // the load made (LinearGroup), "already in memory": this is the first
    assert.match(
      r.stderr,
      new RegExp(
        `full fine-tuning of ${(third.bytes / 2).toLocaleString("en-US")} parameters .*less the ` +
          `${formatBytes(third.bytes)} of weights the load will hold\\) needs about`,
      ),
    );
    assert.ok(!fs.existsSync(out));
  },
);

test("a file larger than the memory maps (read as needed, nothing reserved), except under strict overcommit, where it is a resource error naming the file", () => {
  const meminfo = fs.readFileSync("/proc/meminfo", "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(meminfo)?.[1] ?? 0) * 1024;
  const size = 2 * (kb("MemTotal") + kb("SwapTotal")) + GiB;
  const file = path.join(work, "larger-than-memory.safetensors");
  // tensors of 1 GiB (one Node.js Buffer holds at most 4 GiB)
  const parts = Math.ceil(size / GiB);
  sparseSafetensors(
    file,
    Array.from({ length: parts }, (_, i) => [`w${i}`, [GiB / 2]] as const),
  );
  let strict = false;
  try {
    strict = fs.readFileSync("/proc/sys/vm/overcommit_memory", "utf8").trim() === "2";
  } catch {
    // not Linux: the mapping is the platform's
  }
  if (strict) {
    // mode 2 charges every writable private mapping, MAP_NORESERVE or not
    assert.throws(
      () => readSafetensors(file),
      (e: unknown) =>
        e instanceof ResourceError &&
        e.message.startsWith(`${file}: the system refused to map its`) &&
        /Cannot allocate memory/.test(e.message),
    );
    return;
  }
  // before MAP_NORESERVE, modes 0 (heuristic) and 2 refused one copy-on-write mapping larger than RAM + swap; export
  // streams such a file and a float32 one larger than the memory loads in bf16 (BENCHMARKS, 2026-12-06)
  const st = readSafetensors(file);
  assert.equal(st.tensors.size, parts);
  const last = st.tensors.get(`w${parts - 1}`)!;
  assert.equal(last.data.byteLength, GiB);
  assert.ok(last.data.subarray(0, 4096).every((b) => b === 0));
  assert.ok(last.data.subarray(GiB - 4096).every((b) => b === 0));
});
