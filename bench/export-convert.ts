/**
 * GGUF export conversions (f32, f16, bf16, q8_0) on real shapes and vocabularies: the bytes each outtype writes
 * (sha256, to compare two builds), how long each export takes, and how long a stop (SIGINT) inside the largest
 * tensor takes to end the CLI. Run the same command from two builds (e.g. main's dist copied aside and this one),
 * alternating, and compare.
 *
 *   node dist/bench/export-convert.js make <root>              # models: qwen3-0.6B/llama3.2-1B/gemma3-1B shapes
 *   node dist/bench/export-convert.js hash <root> <scratch>    # one line per model × outtype: sha256, seconds
 *   node dist/bench/export-convert.js phases <model>            # seconds to plan, and to convert (no writing)
 *   node dist/bench/export-convert.js values                   # ns per value of f16 / bf16 / q8_0 on 16 Mi values
 *   node dist/bench/export-convert.js stop <model> <scratch> <outtype> [delayMs]
 *       # starts `goodvibe export` of <model>, sends SIGINT once the writer's temporary has its header (the first,
 *       # largest tensor is being converted), prints the seconds from the signal to the exit, and the exit code
 *
 * `make` writes, besides the bf16 checkpoints of test/gguf/real-models.ts (real tokenizers), the qwen3 one in
 * float32 (bf16 values plus N(0, 1e-4²) noise, so that f16/bf16/q8_0 really round) and in float16.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { exportGguf, planGgufExport, type GgufOutType } from "../src/io/export-gguf.js";
import { f32ToBf16Bytes, f32ToF16Bytes, ggufPieces, quantizeQ8_0 } from "../src/io/gguf.js";
import { openModelWeights, writeModelWeights, type TensorToWrite } from "../src/io/safetensors.js";
import { recordToTensor } from "../src/models/load.js";
import { Tensor, manualSeed, noGrad, tidy } from "../src/tensor/index.js";
import { native } from "../src/tensor/native.js";
import { makeRealModel } from "../test/gguf/real-models.js";
import { benchArgs, benchUsageError } from "./args.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, "../src/cli/main.js");
const OUTTYPES: GgufOutType[] = ["f32", "f16", "bf16", "q8_0"];

function sha(file: string): string {
  const h = createHash("sha256");
  const fd = fs.openSync(file, "r");
  const buf = Buffer.alloc(16 << 20);
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  fs.closeSync(fd);
  return h.digest("hex");
}

/** `src` rewritten with every tensor in `dtype` (float32: plus small noise). */
function retype(src: string, dst: string, dtype: "F32" | "F16"): void {
  fs.mkdirSync(dst, { recursive: true });
  const w = openModelWeights(src);
  manualSeed(1);
  const tensors: TensorToWrite[] = [...w.tensors.values()].map((rec) => ({
    name: rec.name,
    dtype,
    shape: rec.shape,
    data: noGrad(() =>
      tidy(() => {
        const f = recordToTensor(rec).float();
        const noisy = rec.shape.length > 1 ? f.add(Tensor.randn(rec.shape, "float32").mul(1e-4)) : f;
        return (dtype === "F32" ? noisy : noisy.to("float16")).contiguous().toBytes();
      }),
    ),
  }));
  writeModelWeights(dst, tensors, { maxShardBytes: Number.MAX_SAFE_INTEGER });
  for (const f of fs.readdirSync(src))
    if (f.endsWith(".json") && f !== "model.safetensors.index.json")
      fs.copyFileSync(path.join(src, f), path.join(dst, f));
  const cfg = JSON.parse(fs.readFileSync(path.join(dst, "config.json"), "utf8"));
  cfg.torch_dtype = dtype === "F32" ? "float32" : "float16";
  fs.writeFileSync(path.join(dst, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
}

function make(root: string): void {
  fs.mkdirSync(root, { recursive: true });
  const models: [string, string][] = [];
  for (const [family, layers] of [
    ["qwen3", 2],
    ["llama3", 1],
    ["gemma3", 1],
  ] as const) {
    const m = makeRealModel(family, { layers, parent: root, seed: 0 });
    const named = path.join(root, `${family}-L${layers}-bf16`);
    fs.renameSync(m.dir, named);
    models.push([named, "bf16"]);
  }
  retype(path.join(root, "qwen3-L2-bf16"), path.join(root, "qwen3-L2-f32"), "F32");
  retype(path.join(root, "qwen3-L2-f32"), path.join(root, "qwen3-L2-f16"), "F16");
  for (const d of fs.readdirSync(root).sort()) console.log(path.join(root, d));
}

function hash(root: string, scratch: string): void {
  fs.mkdirSync(scratch, { recursive: true });
  for (const d of fs.readdirSync(root).sort()) {
    const dir = path.join(root, d);
    if (!fs.existsSync(path.join(dir, "config.json"))) continue;
    for (const outtype of OUTTYPES) {
      const out = path.join(scratch, `${d}.${outtype}.gguf`);
      const t0 = performance.now();
      exportGguf(dir, out, { outtype });
      const s = (performance.now() - t0) / 1000;
      console.log(`${d} ${outtype} ${sha(out)} ${s.toFixed(2)}s`);
      fs.rmSync(out);
    }
  }
}

/** SIGINT to `goodvibe export` once its temporary holds the header; seconds from the signal to the exit. */
async function stop(model: string, scratch: string, outtype: string, delayMs: number): Promise<void> {
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.mkdirSync(scratch, { recursive: true });
  const out = path.join(scratch, "m.gguf");
  const child = spawn(process.execPath, [CLI, "export", "-m", model, "-o", out, "--outtype", outtype], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (b) => (stderr += String(b)));
  const exited = new Promise<[number | null, number]>((resolve) =>
    child.on("exit", (code) => resolve([code, performance.now()])),
  );
  let sentAt = 0;
  for (;;) {
    const tmp = fs.readdirSync(scratch).find((n) => n.startsWith(".m.gguf.tmp-"));
    let size = 0;
    try {
      if (tmp) size = fs.statSync(path.join(scratch, tmp)).size;
    } catch {
      // renamed or removed while we looked
    }
    if (size > 0) {
      await new Promise((r) => setTimeout(r, delayMs));
      sentAt = performance.now();
      child.kill("SIGINT");
      break;
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const [code, at] = await exited;
  const left = fs.readdirSync(scratch);
  console.log(
    JSON.stringify({
      outtype,
      signalToExitS: sentAt ? +((at - sentAt) / 1000).toFixed(3) : null,
      exitCode: code,
      left,
      lastLine: stderr.trim().split("\n").at(-1),
    }),
  );
}

/** planGgufExport's seconds, then those of converting every part (ggufPieces iterated, nothing written). */
function phases(model: string): void {
  for (const outtype of ["f16", "q8_0"] as const) {
    let t0 = performance.now();
    const plan = planGgufExport(model, { outtype });
    const planS = (performance.now() - t0) / 1000;
    t0 = performance.now();
    let n = 0;
    for (const p of ggufPieces(plan.spec)) if (p instanceof Uint8Array) n += p.byteLength;
    const convertS = (performance.now() - t0) / 1000;
    console.log(`${outtype} plan ${planS.toFixed(2)}s convert ${convertS.toFixed(2)}s (${n} bytes)`);
  }
}

/**
 * Nanoseconds per value of each conversion on 16 Mi float32 values: median and range of 5 runs. q8_0 twice: in
 * JavaScript (no addon loaded), then as quantizeQ8_0 is once the addon has loaded (its SIMD op, where it has one).
 */
function values(): void {
  const n = 1 << 24;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.sin(i) * 0.02;
  for (const [name, f] of [
    ["f16", f32ToF16Bytes],
    ["bf16", f32ToBf16Bytes],
    ["q8_0", quantizeQ8_0],
    ["q8_0 (addon loaded)", (x: Float32Array) => (native.version(), quantizeQ8_0(x))],
  ] as const) {
    const ns: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      f(v);
      ns.push(((performance.now() - t0) * 1e6) / n);
    }
    ns.sort((x, y) => x - y);
    console.log(`${name} ${ns[2]!.toFixed(2)} ns/value (${ns[0]!.toFixed(2)}-${ns[4]!.toFixed(2)})`);
  }
}

const { positionals } = benchArgs(import.meta.url, { allowPositionals: true, options: {} });
const [cmd, a, b, c, d] = positionals;
const FORMS: Record<string, string> = {
  make: "make <root>",
  hash: "hash <root> <scratch>",
  phases: "phases <model>",
  values: "values",
  stop: "stop <model> <scratch> <outtype> [delayMs]",
};
if (cmd === "make" && a) make(a);
else if (cmd === "hash" && a && b) hash(a, b);
else if (cmd === "phases" && a) phases(a);
else if (cmd === "values") values();
else if (cmd === "stop" && a && b && c) await stop(a, b, c, Number(d ?? 300));
else
  benchUsageError(
    import.meta.url,
    cmd === undefined || !Object.hasOwn(FORMS, cmd)
      ? `${cmd === undefined ? "no command" : `unknown command ${cmd}`}: one of ${Object.keys(FORMS).join(", ")}`
      : `${cmd}: an argument is missing (${FORMS[cmd]})`,
  );
