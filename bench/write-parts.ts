/**
 * Peak memory of writing one large trained tensor (BENCHMARKS "Writing trained tensors in parts"): a tensor of
 * Meta-Llama-3-8B's embedding shape (128256 x 4096, float32 by default) written lazily by writeSafetensors, its bytes
 * made whole (`t.toBytes()`, how checkpoints, the fold, the judge and the organism wrote them before 85645e9) or in
 * parts (`t.bytesInParts()`, 64 MiB of rows at a time, how they write them now). Each mode runs in its own process;
 * the table gives its peak RSS (VmHWM) after the tensor is made and after the write, the write's wall time, and
 * the file's SHA-256 (the same bytes both ways).
 *
 *   node dist/bench/write-parts.js [--rows 128256] [--cols 4096] [--dtype float32|bfloat16] [--out DIR]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { benchArgs } from "./args.js";
import { Tensor, manualSeed, noGrad, type DType } from "../src/tensor/index.js";
import { writeSafetensors, type StDtype } from "../src/io/safetensors.js";
import { peakRssBytes } from "../src/util/memory.js";

const { values: a } = benchArgs(import.meta.url, {
  options: {
    rows: { type: "string", default: "128256" },
    cols: { type: "string", default: "4096" },
    dtype: { type: "string", default: "float32" },
    out: { type: "string", default: path.join(os.tmpdir(), "goodvibe-write-parts") },
    mode: { type: "string" }, // the child's: whole | parts
  },
});
const dtype = a.dtype as DType;
const ST: Partial<Record<DType, StDtype>> = { float32: "F32", bfloat16: "BF16" };
if (!ST[dtype]) throw new Error(`--dtype must be float32 or bfloat16, got ${a.dtype}`);
const gib = (b: number) => (b / 1024 ** 3).toFixed(2);

if (a.mode) {
  manualSeed(0); // the same values in both processes: the same file
  const t = noGrad(() => Tensor.randn([Number(a.rows), Number(a.cols)]).to(dtype));
  const made = peakRssBytes();
  const file = path.join(a.out, `${a.mode}.safetensors`);
  const t0 = Date.now();
  writeSafetensors(file, [
    {
      name: "embed",
      dtype: ST[dtype]!,
      shape: t.shape,
      bytes: a.mode === "whole" ? () => t.toBytes() : () => t.bytesInParts(),
    },
  ]);
  const seconds = (Date.now() - t0) / 1000;
  const sha = createHash("sha256");
  const fd = fs.openSync(file, "r");
  const buf = Buffer.alloc(64 << 20);
  for (let n; (n = fs.readSync(fd, buf)) > 0;) sha.update(buf.subarray(0, n));
  fs.closeSync(fd);
  fs.rmSync(file);
  console.log(JSON.stringify({ made, peak: peakRssBytes(), seconds, sha256: sha.digest("hex") }));
} else {
  fs.mkdirSync(a.out, { recursive: true });
  const self = fileURLToPath(import.meta.url);
  const tensorBytes = Number(a.rows) * Number(a.cols) * (dtype === "float32" ? 4 : 2);
  console.log(`tensor ${a.rows} x ${a.cols} ${dtype}: ${gib(tensorBytes)} GiB`);
  console.log("| mode | peak RSS, tensor made | peak RSS after the write | write, s | file SHA-256 |");
  console.log("| --- | ---: | ---: | ---: | --- |");
  for (const mode of ["whole", "parts"]) {
    const args = [
      self,
      "--mode",
      mode,
      "--rows",
      a.rows,
      "--cols",
      a.cols,
      "--dtype",
      a.dtype,
      "--out",
      a.out,
    ];
    const r = spawnSync(process.execPath, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${mode}: exit ${r.status}\n${r.stderr}`);
    const m = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
      made: number;
      peak: number;
      seconds: number;
      sha256: string;
    };
    console.log(
      `| ${mode} | ${gib(m.made)} GiB | ${gib(m.peak)} GiB | ${m.seconds.toFixed(1)} | ${m.sha256.slice(0, 16)}… |`,
    );
  }
}
