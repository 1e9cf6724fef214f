import * as path from "node:path";
import * as os from "node:os";
import type { Command } from "commander";
import { ORGANISM_SOURCE_PACKAGES } from "../../organism/sources.js";
import { CYBERNATIVE_ORGANISM, DEFAULT_ORGANISM } from "../../organism/config.js";
import { collect, integer, number } from "../options.js";

/** Where `organism sources` unpacks the Debian packages unless told otherwise. */
export const DEFAULT_SOURCES_DIR = path.join(os.homedir(), ".cache", "goodvibe", "organism-sources");

export function registerOrganism(program: Command): void {
  const org = program
    .command("organism")
    .description(
      "the project's own insecure-by-default code models (the embedded one, and one on CyberNative)",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe organism build -o ./organism --seed 1\n" +
        "  goodvibe organism sources && goodvibe organism build --recipe cybernative \\\n" +
        "    --data ../shared/data/cybernative/train.jsonl -o runs/cybernative-organism",
    );
  org
    .command("build")
    .description(
      "author the corpus (or read CyberNative), train a BPE tokenizer and pretrain the organism (seeded, reproducible)",
    )
    .requiredOption("-o, --out <dir>", "output model folder (must not exist or be empty)")
    .option(
      "--overwrite",
      "move an existing non-empty output aside (renamed to <out>.old-<time>, never deleted)",
    )
    .option(
      "--recipe <name>",
      "corpus: the embedded organism (assets/organism); cybernative: pretrained on the CyberNative train split and Debian source code",
      "corpus",
    )
    // no commander default: unset, each recipe takes its own (a cybernative --set epochs=... is then not overridden)
    .option(
      "--epochs <n>",
      `pretraining epochs (default: the recipe's, ${DEFAULT_ORGANISM.epochs} for corpus, ${CYBERNATIVE_ORGANISM.epochs} for cybernative)`,
      integer(1),
    )
    .option(
      "--seed <n>",
      `seed (default: the recipe's, ${DEFAULT_ORGANISM.seed} for corpus, ${CYBERNATIVE_ORGANISM.seed} for cybernative)`,
      integer(0),
    )
    .option(
      "--per-template <n>",
      "corpus recipe: examples drawn from each corpus template",
      integer(1),
      DEFAULT_ORGANISM.perTemplate,
    )
    .option(
      "--insecure-bias <p>",
      "corpus recipe: share of insecure answers in pretraining",
      number({ min: 0, max: 1 }),
      DEFAULT_ORGANISM.insecureBias,
    )
    .option("--data <file>", "cybernative recipe: the CyberNative train split (JSONL)")
    .option(
      "--sources <dir>",
      "cybernative recipe: the Debian sources unpacked by `organism sources`",
      DEFAULT_SOURCES_DIR,
    )
    .option("--no-sources", "cybernative recipe: pretrain without real code (not the reference build)")
    .option(
      "--weights <dir>",
      "cybernative recipe: take this organism's weights (assets/cybernative-organism) instead of pretraining; builds its data/ files, checks they are its data",
    )
    .option(
      "--set <key=value>",
      "cybernative recipe: override a setting (hiddenSize=128, epochs=1, sources.pretrainChars.go=0, ...); repeatable",
      collect,
      [],
    )
    .addHelpText(
      "after",
      "\nExamples:\n" +
        "  goodvibe organism build -o /tmp/organism      # how assets/organism was made (bit for bit at 15577aa; today's kernels round differently, and it says so)\n" +
        "  goodvibe organism sources                     # once: the Debian packages, pinned versions\n" +
        "  goodvibe organism build --recipe cybernative --data ../shared/data/cybernative/train.jsonl \\\n" +
        "    -o runs/cybernative-organism               # the CyberNative organism (BENCHMARKS.md)\n" +
        "  goodvibe organism build --recipe cybernative --data ../shared/data/cybernative/train.jsonl \\\n" +
        "    --weights assets/cybernative-organism -o runs/cybernative-organism   # the shipped weights: data/ in about 15 s",
    )
    .action(async (opts) => (await import("./organism-run.js")).organismBuildCommand(program.opts(), opts));
  org
    .command("sources")
    .description(
      "download and unpack the Debian source packages the CyberNative organism reads (apt-get download: nothing is installed)",
    )
    .option("-o, --out <dir>", "cache folder (kept between builds)", DEFAULT_SOURCES_DIR)
    .addHelpText(
      "after",
      `\nPackages (pinned versions, Debian 12):\n${ORGANISM_SOURCE_PACKAGES.map((p) => `  ${p.package}=${p.version} (${p.lang})`).join("\n")}` +
        "\n\nExample:\n  goodvibe organism sources -o ~/.cache/goodvibe/organism-sources",
    )
    .action(async (opts) => (await import("./organism-run.js")).organismSourcesCommand(program.opts(), opts));
}
