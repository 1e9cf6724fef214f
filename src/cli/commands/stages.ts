/** The stages one at a time: identify, cluster, train (+fold), fold (from a delta or a PEFT adapter). */
import { Option, type Command } from "commander";
import { parseShard } from "../../util/shard.js";
import { DEFAULT_CLUSTER, DELTA_FILE } from "../../method/goodvibe/config.js";
import { collect, fromLibrary, integer, number, shownDefault } from "../options.js";
import { addHardenOptions } from "./harden.js";

export function registerStages(program: Command): void {
  const identifyCmd = addHardenOptions(
    program
      .command("identify")
      .description("find the security neurons: gradient importance per output row, top-k per layer"),
    {
      out: "neuron map to write (JSON)",
      runDir: ".<out>.run beside --out",
      flags: ["topK", "seed"],
      sections: ["identify"],
    },
  )
    .addHelpText(
      "after",
      "\nExample:\n  goodvibe identify -m ./model -d pairs.jsonl -o neurons.json --top-k 50 --set identify.maxPairs=500" +
        "\n\nOn many machines: run `--shard i/n -o shards/i` for i = 1..n (each a share of the batches; exact partial" +
        "\nsums per neuron), then `goodvibe identify merge -o neurons.json shards/*`: the same map as one run, bit for bit.",
    )
    .addOption(
      new Option(
        "--shard <i/n>",
        "compute only the i-th of n shares of the batches; --out is then a shard folder for `identify merge`",
      ).argParser(fromLibrary(parseShard)),
    )
    .action(async (opts) => (await import("./stages-run.js")).identifyCommand(program.opts(), opts));

  // `identify merge`: identify's own options (-o, --overwrite) are parsed by identify before the subcommand runs,
  // so the action reads them with optsWithGlobals
  identifyCmd
    .command("merge")
    .description("combine identification shards (identify --shard i/n) into the neuron map of one run")
    .argument("<shards...>", "shard folders, every shard of the run, in any order")
    .option("-o, --out <file>", "neuron map to write (JSON) (required)")
    .option("--overwrite", "move an existing output aside (renamed to <out>.old-<time>, never deleted)")
    .addHelpText("after", "\nExample:\n  goodvibe identify merge -o neurons.json shards/*")
    .action(async (shards, _o, cmd) =>
      (await import("./stages-run.js")).identifyMergeCommand(program.opts(), shards, _o, cmd),
    );

  program;
  const cluster = program
    .command("cluster")
    .description("cluster each layer's security neurons (k-means, k by silhouette)")
    .requiredOption("-n, --neurons <file>", "neuron map from `goodvibe identify`")
    .requiredOption("-o, --out <file>", "cluster map to write (must not exist; see --overwrite)")
    .option("--overwrite", "move an existing output file aside (renamed to <out>.old-<time>, never deleted)");
  // each flag sets one key of the config's cluster section (over the file, under --set); defaults from there
  const flag = (o: Option, key: keyof typeof DEFAULT_CLUSTER) =>
    cluster.addOption(shownDefault(o, DEFAULT_CLUSTER[key]));
  flag(new Option("--k-max <n>", "largest k tried; config key cluster.kMax").argParser(integer(2)), "kMax");
  flag(
    new Option(
      "--threshold <x>",
      "silhouette below which a layer is not clustered (it gets the fallback); config key cluster.threshold",
    ).argParser(number({ min: -1, max: 1 })),
    "threshold",
  );
  flag(
    new Option(
      "--features <kind>",
      "what a neuron is to k-means: its importance, its per-sample importance profile, or that profile at unit length; config key cluster.features",
    ).choices(["importance", "profile", "profile-normalized"]),
    "features",
  );
  flag(
    new Option(
      "--fallback <kind>",
      "a layer below the threshold gets one update row for the layer (shared) or one per neuron; config key cluster.fallback",
    ).choices(["shared", "per-neuron"]),
    "fallback",
  );
  cluster.option("--no-cluster", "ablation: every neuron its own update row (config key cluster.disabled)");
  flag(new Option("--seed <n>", "k-means seed; config key cluster.seed").argParser(integer(0)), "seed");
  flag(
    new Option("--n-init <n>", "k-means restarts per k; config key cluster.nInit").argParser(integer(1)),
    "nInit",
  );
  cluster
    .option(
      "-c, --config <file>",
      "YAML config: its cluster section is read (a harden config serves; flags override it, --set overrides both)",
    )
    .option(
      "--set <key=value>",
      "override one config key, e.g. --set cluster.kMax=4 (repeatable)",
      collect,
      [],
    )
    .addHelpText("after", "\nExample:\n  goodvibe cluster -n neurons.json -o clusters.json --threshold 0.1")
    .action(async (opts) => (await import("./stages-run.js")).clusterCommand(program.opts(), opts));

  addHardenOptions(
    program
      .command("train")
      .description("train one method (goodvibe needs --clusters) and fold it into a checkpoint"),
    {
      out: "output model folder (never the input folder)",
      runDir: ".<out>.run beside --out",
      flags: ["method", "epochs", "lr", "seed"],
      sections: ["train", "lora"],
    },
  )
    .option("--clusters <file>", "cluster map from `goodvibe cluster` (method goodvibe)")
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe train -m ./model -d pairs.jsonl --clusters clusters.json -o ./hardened\n  goodvibe train -m ./model -d pairs.jsonl --method lora -o ./lora-out",
    )
    .action(async (opts) => (await import("./stages-run.js")).trainCommand(program.opts(), opts));

  program
    .command("fold")
    .description(
      "apply a GoodVibe delta or a PEFT LoRA adapter to a base model and write a normal checkpoint",
    )
    .requiredOption("-m, --model <dir>", "base model folder")
    .option(
      "--delta <file|dir>",
      `GoodVibe delta (${DELTA_FILE}, or the harden/train output folder holding it)`,
    )
    .option("--adapter <dir>", "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)")
    .requiredOption("-o, --out <dir>", "output folder (must not exist or be empty; see --overwrite)")
    .option(
      "--overwrite",
      "move an existing non-empty output aside (renamed to <out>.old-<time>, never deleted)",
    )
    .addHelpText(
      "after",
      `\nExamples:\n  goodvibe fold -m ./base --delta ./hardened/${DELTA_FILE} -o ./hardened-again\n  goodvibe fold -m ./base --adapter ./lora-out/adapter -o ./merged`,
    )
    .action(async (opts) => (await import("./stages-run.js")).foldCommand(program.opts(), opts));
}
