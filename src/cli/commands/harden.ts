import { Option, type Command } from "commander";
import { collect, list, shownDefault } from "../options.js";
import { hardenSchema } from "../../config/harden.js";
import type { z } from "zod";
import { CONFIG_FLAGS, type ConfigFlag } from "./harden-config.js";

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

/** The config keys of `sections` with their defaults, for the end of --help: what `--set` and `-c` change. */
function configKeysHelp(sections: readonly string[]): string {
  const d = schemaDefaults();
  const lines: string[] = [];
  // top-level keys first (model, data, out, runDir, languages, method, dtype, seed), then one block per section
  const top = hardenSchema.keyof().options.filter((k) => typeof d[k] !== "object" || d[k] === null);
  const blocks: [string, Record<string, unknown>][] = [
    // model, data and out have no default (the placeholders above only let the schema fill in the rest)
    ["", Object.fromEntries(top.map((k) => [k, ["model", "data", "out"].includes(k) ? undefined : d[k]]))],
    // every key of the section's schema, a key without a default (train.seed: the run's seed) listed bare
    ...sections.map((sec): [string, Record<string, unknown>] => {
      const keys = Object.keys(
        (hardenSchema.shape[sec as "train"] as { unwrap(): z.ZodObject }).unwrap().shape,
      );
      return [`${sec}.`, Object.fromEntries(keys.map((k) => [k, (d[sec] as Record<string, unknown>)[k]]))];
    }),
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
  return `\nConfig keys for --set and -c, with their defaults (model, data and out are required; runDir follows out, dtype the checkpoint, train.seed the run's seed, languages: all):\n${lines.join("\n")}`;
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
  return (
    cmd
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
        `override one config key, e.g. --set ${SET_EXAMPLE[spec.sections[0]!] ?? "seed=1"} (repeatable)`,
        collect,
        [],
      )
      .addHelpText("after", configKeysHelp(spec.sections))
      // a --set key of a section this command does not read changes nothing: said, not taken silently (identify
      // --set train.gradAccum=8, which identify's own help suggested, was)
      .hook("preAction", async (self) => {
        const all = Object.entries(defaults)
          .filter(([, v]) => v !== null && typeof v === "object")
          .map(([k]) => k);
        const unread = ((self.opts().set as string[] | undefined) ?? [])
          .map((s) => s.split("=")[0]!.trim())
          .filter((k) => {
            const sec = k.split(".")[0]!;
            return k.includes(".") && all.includes(sec) && !spec.sections.includes(sec);
          });
        if (unread.length === 0) return;
        const { makeLogger } = await import("../common.js");
        makeLogger(self.optsWithGlobals()).warn(
          `--set ${unread.join(", ")}: \`${self.name()}\` reads only ${spec.sections.map((x) => `${x}.*`).join(", ")} ` +
            `and the top-level keys, so ${unread.length === 1 ? "this key is" : "these keys are"} ignored`,
        );
      })
  );
}

/** The --set example in each command's help: a key of the first section it reads. */
const SET_EXAMPLE: Record<string, string> = {
  identify: "identify.batchSize=8",
  train: "train.gradAccum=8",
  cluster: "cluster.kMax=4",
  lora: "lora.r=16",
};

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
