import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import type { Command } from "commander";
import { collect, interruptSignal, list, makeLogger, output, resolveConfig, runCommand } from "../common.js";
import { hardenSchema } from "../schema.js";
import { defaultHardenConfig, runHarden, type HardenConfig } from "../../recipes/harden.js";

export function hardenConfigFrom(opts: Record<string, unknown>): HardenConfig {
  const c = resolveConfig(
    hardenSchema,
    opts.config as string | undefined,
    {
      model: opts.model,
      data: opts.data,
      out: opts.out,
      method: opts.method,
      languages: opts.languages,
      runDir: opts.runDir,
      seed: opts.seed,
      "identify.topK": opts.topK,
      "train.epochs": opts.epochs,
      "train.lr": opts.lr,
    },
    opts.set as string[],
  );
  // otherwise the first complaint is a missing tokenizer.json, which sends the user looking for the wrong thing
  if (!fs.existsSync(c.model)) throw new InputError(`--model ${c.model}: no such folder`);
  if (!fs.statSync(c.model).isDirectory())
    throw new InputError(`--model ${c.model}: not a folder (give the model's folder)`);
  const base = defaultHardenConfig({ model: c.model, data: c.data, out: c.out });
  return { ...base, ...c, runDir: c.runDir ?? base.runDir, train: { ...base.train, ...c.train } };
}

export function addHardenOptions(cmd: Command): Command {
  return cmd
    .option("-m, --model <dir>", "Hugging Face model folder (config.json, safetensors, tokenizer)")
    .option("-d, --data <file>", "secure/insecure pairs, JSONL {id, lang, question, chosen, rejected}")
    .option("-o, --out <dir>", "output folder (never the input folder)")
    .option("--method <name>", "goodvibe | lora | full")
    .option("--languages <list>", "comma-separated languages to keep (e.g. c++,java,swift,go)", list)
    .option("--top-k <n>", "security neurons per linear layer", Number)
    .option("--epochs <n>", "training epochs", Number)
    .option("--lr <x>", "learning rate", Number)
    .option("--seed <n>", "seed", Number)
    .option("--run-dir <dir>", "where stages keep resumable state (default: .<out>.run beside --out)")
    .option("-c, --config <file>", "YAML config (same keys as --set)")
    .option(
      "--set <key=value>",
      "override any config key, e.g. --set train.gradAccum=8 (repeatable)",
      collect,
      [],
    );
}

export function registerHarden(program: Command): void {
  addHardenOptions(
    program
      .command("harden")
      .description(
        "identify → cluster → train → fold in one go; resumable (rerun the same command after an interruption)",
      ),
  )
    .addHelpText(
      "after",
      `
Examples:
  goodvibe harden -m ./Qwen2.5-Coder-0.5B-Instruct -d pairs.jsonl -o ./hardened --languages c++,java,swift,go
  goodvibe harden -m ./model -d pairs.jsonl -o ./hardened-lora --method lora --set lora.r=16
  goodvibe harden -c harden.yaml --set train.epochs=1 --json`,
    )
    .action(async (opts) => {
      const g = program.opts();
      const log = makeLogger(g);
      await runCommand(g, async () => {
        const cfg = hardenConfigFrom(opts);
        const r = await runHarden(cfg, { log, signal: interruptSignal(log) });
        log.done();
        const lines = [
          `hardened model: ${path.resolve(r.outDir)}`,
          `method: ${r.method}; trainable parameters ${r.trainableParams.toLocaleString("en-US")} of ${r.totalParams.toLocaleString("en-US")} (${((100 * r.trainableParams) / r.totalParams).toPrecision(3)}%)`,
          `training: ${r.train.steps} steps, final loss ${r.train.finalLoss.toFixed(4)}, ${r.train.wallSeconds.toFixed(1)} s, ${(r.train.flops.total / 1e12).toFixed(3)} TFLOP (${(r.train.flopsPerSecond / 1e9).toFixed(1)} GFLOP/s)`,
          `fold: ${r.fold.rowsChanged} rows changed in ${r.fold.tensorsChanged} tensors (${r.fold.dtype})${r.fold.rowsVanished ? `, ${r.fold.rowsVanished} vanished in rounding` : ""}`,
          r.artifact ? `artifact: ${r.artifact}` : "",
        ].filter(Boolean);
        output(g, lines.join("\n"), {
          outDir: path.resolve(r.outDir),
          method: r.method,
          trainableParams: r.trainableParams,
          totalParams: r.totalParams,
          train: { ...r.train, log: undefined },
          fold: r.fold,
          artifact: r.artifact,
          peakMemoryBytes: r.peakMemoryBytes,
        });
      });
    });
}
