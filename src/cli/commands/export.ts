import * as fs from "node:fs";
import * as path from "node:path";
import { Option, type Command } from "commander";
import { InputError } from "../../errors.js";
import { exportGguf } from "../../io/export-gguf.js";
import { writeModelWeights } from "../../io/safetensors.js";
import { checkOutput, publishFile, writeDirAtomic, writeFileAtomic } from "../../io/atomic.js";
import { copyTokenizerFiles, inspectModelFolder } from "../../io/model-folder.js";
import { recordToTensor } from "../../models/load.js";
import { makeLogger, output, runCommand } from "../common.js";

export function registerExport(program: Command): void {
  program
    .command("export")
    .description("export a model folder as GGUF (llama.cpp, Ollama) or as safetensors in another dtype")
    .requiredOption("-m, --model <dir>", "Hugging Face model folder")
    .requiredOption(
      "-o, --out <path>",
      "output .gguf file, or folder for safetensors (must not exist; never inside -m)",
    )
    .option("--overwrite", "move an existing output aside (renamed to <out>.old-<time>, never deleted)")
    .addOption(new Option("--format <fmt>", "output format").choices(["gguf", "safetensors"]).default("gguf"))
    .option(
      "--outtype <t>",
      "tensor type: f32, f16, bf16 or q8_0 for gguf; float32, bfloat16 or float16 for safetensors " +
        "(default: f16 for gguf, bfloat16 for safetensors)",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe export -m ./hardened -o hardened-q8.gguf --outtype q8_0\n  ollama create hardened -f Modelfile   # with FROM ./hardened-q8.gguf\n  goodvibe export -m ./hardened -o ./hardened-bf16 --format safetensors --outtype bfloat16",
    )
    .action(async (opts) => {
      const g = program.opts();
      const log = makeLogger(g);
      const onMovedAside = (a: string) => log.warn(`the earlier ${opts.out} was moved aside to ${a}`);
      await runCommand(g, async () => {
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
          let r!: ReturnType<typeof exportGguf>;
          publishFile(opts.out, (tmp) => (r = exportGguf(opts.model, tmp, { outtype })), {
            overwrite: opts.overwrite,
            onMovedAside,
          });
          for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
          output(
            g,
            `GGUF (${r.arch}, ${outtype}, ${r.tensorCount} tensors, vocab from ${r.vocab}) → ${path.resolve(opts.out)}`,
            r,
          );
        } else if (opts.format === "safetensors") {
          const dtype = opts.outtype || "bfloat16";
          const st = new Map([
            ["float32", "F32"],
            ["bfloat16", "BF16"],
            ["float16", "F16"],
          ] as const).get(dtype);
          if (!st) throw new InputError(`--outtype for safetensors must be float32, bfloat16 or float16`);
          // config and weights checked against each other before anything is converted or written
          const { config, weights } = inspectModelFolder(opts.model);
          await writeDirAtomic(
            opts.out,
            (tmp) => {
              writeModelWeights(
                tmp,
                [...weights.tensors.values()].map((rec) => {
                  const t = recordToTensor(rec);
                  const isFloat = ["F32", "BF16", "F16", "F64"].includes(rec.dtype);
                  return isFloat
                    ? {
                        name: rec.name,
                        dtype: st,
                        shape: rec.shape,
                        data: t.to(dtype).contiguous().toBytes(),
                      }
                    : rec;
                }),
              );
              const cfg = { ...config.raw, torch_dtype: dtype };
              writeFileAtomic(path.join(tmp, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
              if (fs.existsSync(path.join(opts.model, "tokenizer.json"))) copyTokenizerFiles(opts.model, tmp);
            },
            { overwrite: opts.overwrite, onMovedAside },
          );
          output(g, `safetensors (${dtype}) → ${path.resolve(opts.out)}`, {
            out: path.resolve(opts.out),
            dtype,
          });
        } else throw new InputError(`--format must be gguf or safetensors`);
      });
    });
}
