import * as fs from "node:fs";
import { InputError } from "../../errors.js";
import { Option, type Command } from "commander";
import { collect, integer, list, number, shownDefault } from "../options.js";
import { hardenSchema, resolveHardenConfig, type HardenConfig } from "../../config/harden.js";

/**
 * The config-backed flags: each sets one key of the harden config (applied over the config file, under --set).
 * Their defaults are the schema's, shown in --help but not applied by commander (they would override the file).
 */
const CONFIG_FLAGS = {
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
    help: "seed for subsampling and initialisation",
    parse: integer(0),
  },
} as const;
type ConfigFlag = keyof typeof CONFIG_FLAGS;

/** The configuration a run gets when nothing is set: the one source of the defaults shown in --help. */
function schemaDefaults(): Record<string, unknown> {
  return hardenSchema.parse({ model: "-", data: "-", out: "-" }) as Record<string, unknown>;
}

function getPath(obj: Record<string, unknown>, dotted: string): unknown {
  return dotted
    .split(".")
    .reduce<unknown>(
      (o, k) => (o && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined),
      obj,
    );
}

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
  if (!fs.existsSync(cfg.model)) throw new InputError(`--model ${cfg.model}: no such folder`);
  if (!fs.statSync(cfg.model).isDirectory())
    throw new InputError(`--model ${cfg.model}: not a folder (give the model's folder)`);
  return cfg;
}

/** The config keys of `sections` with their defaults, for the end of --help: what `--set` and `-c` change. */
function configKeysHelp(sections: readonly string[]): string {
  const d = schemaDefaults();
  const lines: string[] = [];
  // top-level keys first (model, data, out, runDir, languages, method, dtype, seed), then one block per section
  const top = hardenSchema.keyof().options.filter((k) => typeof d[k] !== "object" || d[k] === null);
  const blocks: [string, Record<string, unknown>][] = [
    // model, data and out have no default (the placeholders above only let the schema fill in the rest)
    ["", Object.fromEntries(top.map((k) => [k, ["model", "data", "out"].includes(k) ? undefined : d[k]]))],
    ...sections.map((sec): [string, Record<string, unknown>] => [
      `${sec}.`,
      d[sec] as Record<string, unknown>,
    ]),
  ];
  for (const [prefix, values] of blocks) {
    let line = " ";
    for (const [k, v] of Object.entries(values)) {
      const shown =
        v === undefined
          ? ""
          : "=" + (typeof v === "string" && v.length > 24 ? `"${v.slice(0, 20)}…"` : JSON.stringify(v));
      const item = ` ${prefix}${k}${shown}`;
      if (line.length + item.length > 100 && line.trim()) {
        lines.push(line);
        line = " ";
      }
      line += item;
    }
    lines.push(line);
  }
  return `\nConfig keys for --set and -c, with their defaults (model, data and out are required; runDir follows out, dtype the checkpoint, languages: all):\n${lines.join("\n")}`;
}

/**
 * The options of harden, identify and train. `out` says what --out is for this command; `flags` are the
 * config-backed flags that matter to it (identify trains nothing: no --method, --epochs, --lr).
 */
export function addHardenOptions(
  cmd: Command,
  spec: { out: string; runDir: string; flags: readonly ConfigFlag[]; sections: readonly string[] },
): Command {
  const defaults = schemaDefaults();
  cmd
    .option("-m, --model <dir>", "Hugging Face model folder (config.json, safetensors, tokenizer) (required)")
    .option(
      "-d, --data <file>",
      "secure/insecure pairs, JSONL {id, lang, question, chosen, rejected} (required)",
    )
    .option("-o, --out <path>", `${spec.out} (required)`)
    .option(
      "--languages <list>",
      "comma-separated languages to keep, e.g. c++,java,swift,go (default: all)",
      list,
    );
  for (const name of spec.flags) {
    const f: {
      key: string;
      flags: string;
      help: string;
      choices?: readonly string[];
      parse?: (v: string) => unknown;
    } = CONFIG_FLAGS[name];
    const o = new Option(f.flags, `${f.help}; config key ${f.key}`);
    if (f.choices) o.choices(f.choices);
    if (f.parse) o.argParser(f.parse);
    cmd.addOption(shownDefault(o, getPath(defaults, f.key)));
  }
  return cmd
    .option(
      "--overwrite",
      "move an existing non-empty output aside (renamed to <out>.old-<time>, never deleted)",
    )
    .option("--run-dir <dir>", `where stages keep resumable state (default: ${spec.runDir})`)
    .option(
      "-c, --config <file>",
      "YAML config with the keys below (flags override it; --set overrides both)",
    )
    .option(
      "--set <key=value>",
      "override one config key, e.g. --set train.gradAccum=8 (repeatable)",
      collect,
      [],
    )
    .addHelpText("after", configKeysHelp(spec.sections));
}

export function registerHarden(program: Command): void {
  addHardenOptions(
    program
      .command("harden")
      .description(
        "identify → cluster → train → fold in one go; resumable (rerun the same command after an interruption)",
      ),
    {
      out: "output model folder (never the input folder)",
      runDir: ".<out>.run beside --out",
      flags: ["method", "topK", "epochs", "lr", "seed"],
      sections: ["identify", "cluster", "train", "lora"],
    },
  )
    .addHelpText(
      "after",
      `
Examples:
  goodvibe harden -m ./Qwen2.5-Coder-0.5B-Instruct -d pairs.jsonl -o ./hardened --languages c++,java,swift,go
  goodvibe harden -m ./model -d pairs.jsonl -o ./hardened-lora --method lora --set lora.r=16
  goodvibe harden -c harden.yaml --set train.epochs=1 --json`,
    )
    .action(async (opts) => (await import("./harden-run.js")).hardenCommand(program.opts(), opts));
}
