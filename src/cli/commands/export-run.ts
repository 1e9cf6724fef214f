/**
 * What `goodvibe export` does: loaded by export.ts (which registers the command) only when it runs.
 */
import type { OptionValues } from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import { planGgufExport, planLoraGgufExport } from "../../io/export-gguf.js";
import { ggufPieces } from "../../io/gguf.js";
import {
  F16OverflowCounter,
  f16Bits,
  f16OverflowWarning,
  floatAt,
  type F16Overflow,
} from "../../io/export-overflow.js";
import {
  DTYPE_SIZE,
  FLOAT_ST_DTYPES,
  type FloatDtypeName,
  weightsUnchanged,
  writeModelWeightsAsync,
  type TensorRecord,
} from "../../io/safetensors.js";
import { checkOutput, publishFileAsync, writeDirAtomic, writeFileAtomic } from "../../io/atomic.js";
import { readFilesBelow } from "../../io/mapfile.js";
import {
  checkWeightHeaders,
  inspectModelFolder,
  missingTokenizerFiles,
  missingTokenizerWarning,
  readModelFiles,
  writeModelFiles,
} from "../../io/model-folder.js";
import { loadModelConfig, withDtype } from "../../io/config.js";
import { ST_TO_DTYPE, loadModel } from "../../models/load.js";
import {
  checkDeltaFits,
  checkDeltaHeaderFits,
  findDeltaFile,
  readGoodVibeDelta,
  readGoodVibeDeltaHeader,
  type GoodVibeDeltaHeader,
} from "../../method/goodvibe/delta.js";
import { ModelShape } from "../../models/shapes.js";
import { goodVibeAsLora } from "../../method/lora/from-goodvibe.js";
import { loraGgufModules } from "../../method/lora/gguf.js";
import { attachPeftAdapter, checkPeftAdapterFits } from "../../method/lora/model.js";
import { readPeftAdapter, readPeftAdapterHeader, writePeftAdapter } from "../../method/lora/peft.js";
import type { LoraConfig } from "../../method/lora/config.js";
import { Tensor, noGrad, tidy, type DType } from "../../tensor/index.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";

/** Weight files under this size are read rather than mapped by a GGUF export (io/mapfile.ts readFilesBelow). */
const READ_BELOW_BYTES = 64 << 20;

export async function exportCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  const onMovedAside = (a: string) => log.warn(`the earlier ${opts.out} was moved aside to ${a}`);
  await runCommand(g, async () => {
    // Ctrl-C / SIGTERM while the weights are written stop the write at the next tensor (temporary removed,
    // nothing published, exit 130). Installed only when the writing starts: before it nothing is on disk yet,
    // and the default action ends the reading and checking of a large model at once, not when it is done.
    const stopOnSignal = () => interruptSignal(log);
    if (opts.ggufPre !== undefined && (opts.adapter || opts.format !== "gguf"))
      throw new InputError(
        "--gguf-pre names a GGUF model's pre-tokenizer: it is read only when exporting a model with --format gguf",
      );
    if (opts.adapter)
      return exportAdapter(g, opts as ExportOpts, onMovedAside, stopOnSignal, (m) => log.warn(m));
    // the adapter's flags without --adapter are refused, not dropped: `export -m base --delta ./hardened` would
    // export the base model as if it were the hardened one
    for (const [key, flag] of [
      ["delta", "--delta"],
      ["peft", "--peft"],
      ["baseModelName", "--base-model-name"],
    ] as const)
      if (opts[key] !== undefined)
        throw new InputError(
          `${flag} is read only with --adapter peft|gguf (a LoRA adapter of a GoodVibe delta or a PEFT adapter); ` +
            `without --adapter, export converts the model folder -m${key === "delta" ? " (to export the hardened model itself, give its folder with -m)" : ""}`,
        );
    if (!opts.model) throw new InputError("-m, --model (the model folder to export) is required");
    if (opts.format === "gguf" || opts.format === "safetensors")
      checkOutput({
        flag: "--out",
        path: opts.out,
        kind: opts.format === "gguf" ? "file" : "folder",
        inputs: { "--model": opts.model },
        overwrite: opts.overwrite,
      });
    if (opts.format === "gguf") {
      const outtype = opts.outtype || "f16";
      if (!["f32", "f16", "bf16", "q8_0"].includes(outtype))
        throw new InputError(`--outtype for gguf must be f32, f16, bf16 or q8_0`);
      // GGUF conversion is plain JavaScript over the weights' bytes: a small checkpoint is read, not mapped through
      // the addon, so libtorch is not loaded for it (a large one is still mapped)
      readFilesBelow(READ_BELOW_BYTES);
      const plan = planGgufExport(opts.model, {
        outtype,
        ...(opts.ggufPre !== undefined ? { pre: opts.ggufPre } : {}),
      });
      await publishFileAsync(opts.out, ggufPieces(plan.spec), {
        overwrite: opts.overwrite,
        onMovedAside,
        signal: stopOnSignal(),
      });
      const r = { file: path.resolve(opts.out), ...plan.result };
      for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
      for (const o of r.f16Overflow)
        log.warn(f16OverflowWarning(o, "export with --outtype bf16 or f32 to keep them"));
      output(
        g,
        `GGUF (${r.arch}, ${outtype}, ${r.tensorCount} tensors, vocab from ${r.vocab}) → ${path.resolve(opts.out)}`,
        r,
      );
    } else if (opts.format === "safetensors") {
      const dtype = opts.outtype || "bfloat16";
      if (!Object.hasOwn(FLOAT_ST_DTYPES, dtype))
        throw new InputError(`--outtype for safetensors must be float32, bfloat16 or float16`);
      const st = FLOAT_ST_DTYPES[dtype as FloatDtypeName];
      // the tokenizer and other side files read first (a few small files): one that cannot be read is reported
      // before the weights are opened, not after the long weight write
      const sideFiles = readModelFiles(opts.model, { config: false });
      // config and weights checked against each other before anything is converted or written
      const { config, weights } = inspectModelFolder(opts.model);
      const signal = stopOnSignal();
      const overflow = new F16OverflowCounter();
      await writeDirAtomic(
        opts.out,
        async (tmp) => {
          const cfg = withDtype(config.raw, dtype);
          writeFileAtomic(path.join(tmp, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
          writeModelFiles(tmp, sideFiles);
          // each tensor converted as it is written: the memory of one tensor, not of the whole model
          await writeModelWeightsAsync(
            tmp,
            [...weights.tensors.values()].map((rec) =>
              ["F32", "BF16", "F16", "F64"].includes(rec.dtype)
                ? {
                    name: rec.name,
                    dtype: st,
                    shape: rec.shape,
                    bytes: () => castInParts(rec, dtype, DTYPE_SIZE[st], overflow),
                  }
                : rec,
            ),
            { signal },
          );
          weightsUnchanged(weights, "the safetensors export"); // mapped views: written into meanwhile, mixed
        },
        { overwrite: opts.overwrite, onMovedAside },
      );
      for (const o of overflow.found)
        log.warn(f16OverflowWarning(o, "export with --outtype bfloat16 or float32 to keep them"));
      const missing = missingTokenizerFiles(opts.model);
      if (missing.length > 0) log.warn(missingTokenizerWarning(opts.model, opts.out, missing));
      output(g, `safetensors (${dtype}) → ${path.resolve(opts.out)}`, {
        out: path.resolve(opts.out),
        dtype,
        f16Overflow: overflow.found,
        missingTokenizerFiles: missing,
      });
    } else throw new InputError(`--format must be gguf or safetensors`);
  });
}

interface ExportOpts {
  model?: string;
  out: string;
  format: string;
  /** --format was given, not its default */
  formatGiven: boolean;
  outtype?: string;
  adapter: string;
  delta?: string;
  peft?: string;
  ggufPre?: string;
  baseModelName?: string;
  overwrite?: boolean;
}

/**
 * --adapter: a GoodVibe delta (or, for gguf, a PEFT adapter) as a LoRA adapter beside the untouched base:
 * PEFT (vLLM, transformers) or llama.cpp's LoRA GGUF. Inputs are read and checked before anything is written.
 */
async function exportAdapter(
  g: Record<string, unknown>,
  opts: ExportOpts,
  onMovedAside: (aside: string) => void,
  stopOnSignal: () => AbortSignal,
  warn: (message: string) => void,
): Promise<void> {
  const kind = opts.adapter;
  if (kind !== "peft" && kind !== "gguf")
    throw new InputError(`--adapter must be peft or gguf, got "${kind}"`);
  if (!!opts.delta === !!opts.peft)
    throw new InputError(
      "--adapter needs exactly one source: --delta (a GoodVibe delta or run folder) or --peft",
    );
  if (opts.peft && kind === "peft")
    throw new InputError("--peft is already a PEFT adapter; use --adapter gguf");
  const format = kind === "gguf" ? "gguf" : "safetensors";
  if (opts.formatGiven && opts.format !== format)
    throw new InputError(
      `--format ${opts.format} does not go with --adapter ${kind}, which writes ${kind === "gguf" ? "a LoRA GGUF file" : "a PEFT adapter folder (safetensors)"}: leave --format out`,
    );
  if (kind === "gguf" && opts.baseModelName !== undefined)
    throw new InputError(
      "--base-model-name is adapter_config.json's base_model_name_or_path, for --adapter peft; a LoRA GGUF does not record the base model's name",
    );
  // a PEFT adapter is a safetensors file: torch's dtype names, as for --format safetensors
  const outtype = opts.outtype || (kind === "gguf" ? "f32" : "float32");
  if (kind === "gguf" && !["f32", "f16", "bf16"].includes(outtype))
    throw new InputError("--outtype for a LoRA GGUF must be f32, f16 or bf16");
  if (kind === "peft" && !Object.hasOwn(FLOAT_ST_DTYPES, outtype))
    throw new InputError(
      `--outtype for a PEFT adapter must be float32, bfloat16 or float16 (adapter_model.safetensors' dtype), got "${outtype}"`,
    );
  let base = opts.model;
  let lora: { cfg: LoraConfig; weights: Map<string, Tensor> };
  let source: string;
  // every argument that files and flags alone can check is checked before the delta's tensors are read or the
  // model loads (both load the libtorch addon): the delta's base model is read from its header
  let header: GoodVibeDeltaHeader | null = null;
  if (opts.delta) {
    source = findDeltaFile(opts.delta);
    header = readGoodVibeDeltaHeader(source);
    if (!base) {
      base = header.baseModel ?? undefined;
      if (!base)
        throw new InputError(`${source} does not name its base model: give the base model folder with -m`);
      // harden records the folder it read, which a delta carried to another machine does not find
      if (!fs.existsSync(path.join(base, "config.json")))
        throw new InputError(
          `${source} names its base model ${base} (metadata base_model), which holds no config.json here: give the base model folder with -m`,
        );
    }
  } else {
    if (!base) throw new InputError("-m (the adapter's base model folder) is required with --peft");
    source = opts.peft!;
  }
  checkOutput({
    flag: "--out",
    path: opts.out,
    kind: kind === "gguf" ? "file" : "folder",
    // --delta as given: a harden output folder is an input as a whole, not only the delta file in it
    inputs: { "--model": base, [opts.delta ? "--delta" : "--peft"]: opts.delta ?? source },
    overwrite: opts.overwrite,
  });
  const baseConfig = loadModelConfig(base);
  checkWeightHeaders(baseConfig, base); // a base model unlike its config.json, before any tensor is read
  // the delta against the base's shapes (config.json, which its weights' headers match), from the delta's header
  if (header) checkDeltaHeaderFits(new ModelShape(baseConfig), header, source);
  if (opts.delta) {
    const delta = readGoodVibeDelta(source);
    const model = loadModel(base);
    checkDeltaFits(model, delta, source);
    lora = goodVibeAsLora(delta.selections, delta.U, (m) => model.linear(m).outFeatures);
  } else {
    // the adapter against the base's shapes from its headers, before its tensors are read or the model loads
    checkPeftAdapterFits(new ModelShape(baseConfig), readPeftAdapterHeader(source));
    const adapter = readPeftAdapter(source);
    source = adapter.dir;
    attachPeftAdapter(loadModel(base), adapter); // every check PEFT's loading makes, before writing anything
    lora = { cfg: adapter.cfg, weights: adapter.init };
  }
  const modules = [...new Set([...lora.weights.keys()].map((k) => k.replace(/\.lora_[AB]$/, "")))];
  if (kind === "peft") {
    let f16Overflow: F16Overflow[] = [];
    await writeDirAtomic(
      opts.out,
      (tmp) => {
        f16Overflow = writePeftAdapter(tmp, lora.cfg, lora.weights, base!, {
          baseModelName: opts.baseModelName,
          dtype: outtype as FloatDtypeName,
        });
      },
      { overwrite: opts.overwrite, onMovedAside },
    );
    for (const o of f16Overflow)
      warn(f16OverflowWarning(o, "export with --outtype bfloat16 or float32 to keep them"));
    output(
      g,
      `PEFT LoRA adapter (${modules.length} modules, ${outtype}) of ${source} → ${path.resolve(opts.out)}`,
      {
        out: path.resolve(opts.out),
        kind,
        dtype: outtype,
        modules: modules.length,
        rankPattern: lora.cfg.rankPattern ?? {},
        f16Overflow,
      },
    );
  } else {
    const plan = planLoraGgufExport(base, loraGgufModules(lora.cfg, lora.weights), {
      outtype: outtype as "f32" | "f16" | "bf16",
    });
    await publishFileAsync(opts.out, ggufPieces(plan.spec), {
      overwrite: opts.overwrite,
      onMovedAside,
      signal: stopOnSignal(),
    });
    const r = { file: path.resolve(opts.out), ...plan.result };
    for (const o of r.f16Overflow)
      warn(f16OverflowWarning(o, "export with --outtype bf16 or f32 to keep them"));
    output(
      g,
      `llama.cpp LoRA GGUF (${r.arch}, ${modules.length} modules, ${outtype}) → ${path.resolve(opts.out)}`,
      r,
    );
  }
}

/** Output bytes `export --format safetensors` casts at a time: a stop waits for one part, not a whole embedding. */
const CAST_PART_BYTES = 4 << 20;

/**
 * `rec` cast to `dtype` (`outSize` bytes a value) in parts of whole rows of about CAST_PART_BYTES, each cast when
 * the writer asks for it: the memory of one part, and a stop mark between parts. A float16 part's values beyond
 * float16's range (torch writes them as inf without a word) are counted in `overflow`.
 */
function* castInParts(
  rec: TensorRecord,
  dtype: DType,
  outSize: number,
  overflow: F16OverflowCounter,
): Generator<Uint8Array> {
  const inner = rec.shape.slice(1);
  const perRow = inner.reduce((a, b) => a * b, 1);
  const rows = rec.shape.length > 0 ? rec.shape[0]! : 1;
  const inRow = perRow * DTYPE_SIZE[rec.dtype];
  const step = Math.max(1, Math.floor(CAST_PART_BYTES / Math.max(1, perRow * outSize)));
  for (let r = 0; r < rows; r += step) {
    const n = Math.min(step, rows - r);
    const part = rec.data.subarray(r * inRow, (r + n) * inRow);
    const shape = rec.shape.length > 0 ? [n, ...inner] : [];
    const out = noGrad(() =>
      tidy(() => Tensor.fromBytes(part, ST_TO_DTYPE[rec.dtype]!, shape).to(dtype).contiguous().toBytes()),
    );
    if (dtype === "float16" && rec.dtype !== "F16")
      overflow.count(rec.name, f16Bits(out), (i) => floatAt(part, rec.dtype, i));
    yield out;
  }
}
