/**
 * From harden's and the stages' flags to a HardenConfig: the config-backed flags (which harden.ts registers and
 * shows in --help) and the one merge with the config file and --set. Shared by the registration and the work
 * modules (harden-run.ts, stages-run.ts), so that neither imports the other.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import { resolveHardenConfig, type HardenConfig } from "../../config/harden.js";
import { integer, number } from "../options.js";

/**
 * The config-backed flags: each sets one key of the harden config (applied over the config file, under --set).
 * Their defaults are the schema's, shown in --help but not applied by commander (they would override the file).
 */
export const CONFIG_FLAGS = {
  method: {
    key: "method",
    flags: "--method <name>",
    help: "what to train",
    choices: ["goodvibe", "lora", "full"],
  },
  topK: {
    key: "identify.topK",
    flags: "--top-k <n>",
    help: "security neurons per linear layer",
    parse: integer(1),
  },
  epochs: { key: "train.epochs", flags: "--epochs <n>", help: "training epochs", parse: integer(1) },
  lr: { key: "train.lr", flags: "--lr <x>", help: "learning rate", parse: number({ above: 0 }) },
  seed: {
    key: "seed",
    flags: "--seed <n>",
    help: "the run's seed: subsampling, LoRA's initialisation, and training's data order and dropout (train.seed, unless set)",
    parse: integer(0),
  },
} as const;
export type ConfigFlag = keyof typeof CONFIG_FLAGS;

/** The command's flags as config keys (undefined: not given), for the one merge in src/config/. */
export function configFlags(opts: Record<string, unknown>): Record<string, unknown> {
  const flags: Record<string, unknown> = {
    model: opts.model,
    data: opts.data,
    out: opts.out,
    languages: opts.languages,
    runDir: opts.runDir,
  };
  for (const [name, f] of Object.entries(CONFIG_FLAGS)) flags[f.key] = opts[name];
  return flags;
}

export function hardenConfigFrom(
  opts: Record<string, unknown>,
  runDirFor?: (out: string) => string,
): HardenConfig {
  const cfg = resolveHardenConfig(
    opts.config as string | undefined,
    configFlags(opts),
    opts.set as string[],
    {
      overwrite: opts.overwrite === true,
      runDirFor,
    },
  );
  // otherwise the first complaint is a missing tokenizer.json, which sends the user looking for the wrong thing
  const model = pathOrigin(opts, "model", "--model", cfg.model);
  if (!fs.existsSync(cfg.model)) throw new InputError(`${model}: no such folder`);
  if (!fs.statSync(cfg.model).isDirectory())
    throw new InputError(`${model}: not a folder (give the model's folder)`);
  if (!fs.existsSync(cfg.data))
    throw new InputError(`${pathOrigin(opts, "data", "--data", cfg.data)}: no such file`);
  // the user's --overwrite makes a finished output again, as it replaces any other output
  return cfg.overwrite ? { ...cfg, remake: true } : cfg;
}

/**
 * How the user gave a path, for a message about it: the flag, `--set key`, or the key in the config file; and,
 * for a relative path, the folder it was taken from. Paths in a config file are relative to the current folder
 * (as an experiment file's are), not to the file: a user who wrote them relative to the file learns it here.
 */
function pathOrigin(opts: Record<string, unknown>, key: string, flag: string, value: string): string {
  const notes: string[] = [];
  let label = flag;
  if (opts[key] === undefined) {
    if (((opts.set as string[] | undefined) ?? []).some((s) => s.startsWith(`${key}=`)))
      label = `--set ${key}`;
    else if (typeof opts.config === "string") {
      label = key;
      notes.push(`in ${opts.config}`);
    }
  }
  if (!path.isAbsolute(value)) notes.push(`relative to the current folder ${process.cwd()}`);
  return `${label} ${value}${notes.length ? ` (${notes.join("; ")})` : ""}`;
}
