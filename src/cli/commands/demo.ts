import type { Command } from "commander";
import { DEFAULT_DEMO } from "../../recipes/config.js";
import { integer } from "../options.js";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "harden the embedded model organism with GoodVibe and show before/after evidence (offline, ~minutes)",
    )
    .option(
      "-o, --out <dir>",
      "where the hardened model, results and report go (a new folder, or an earlier demo's to resume it)",
      DEFAULT_DEMO.out,
    )
    .option("--overwrite", "move an --out folder holding anything else aside (renamed, never deleted)")
    .option("--organism <dir>", "the model organism folder", DEFAULT_DEMO.organism)
    .option(
      "--prompts <n>",
      "held-out prompts answered per model, round-robin over languages and their tasks (0 = all, the paper's protocol)",
      integer(0),
      DEFAULT_DEMO.prompts,
    )
    .option("--epochs <n>", "training epochs", integer(1), DEFAULT_DEMO.epochs)
    .option("--seed <n>", "seed", integer(0), DEFAULT_DEMO.seed)
    .addHelpText("after", "\nExample:\n  goodvibe demo -o /tmp/demo && xdg-open /tmp/demo/report/index.html")
    .action(async (opts) => (await import("./demo-run.js")).demoCommand(program.opts(), opts));
}
