import * as path from "node:path";
import type { Command } from "commander";
import { buildOrganism, DEFAULT_ORGANISM } from "../../organism/build.js";
import { integer, number } from "../options.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";

export function registerOrganism(program: Command): void {
  const org = program
    .command("organism")
    .description("the project's own tiny insecure-by-default code model")
    .addHelpText("after", "\nExample:\n  goodvibe organism build -o ./organism --seed 1");
  org
    .command("build")
    .description("author the corpus, train a BPE tokenizer and pretrain the organism (seeded, reproducible)")
    .requiredOption("-o, --out <dir>", "output model folder (must not exist or be empty)")
    .option(
      "--overwrite",
      "move an existing non-empty output aside (renamed to <out>.old-<time>, never deleted)",
    )
    .option("--epochs <n>", "pretraining epochs", integer(1), DEFAULT_ORGANISM.epochs)
    .option("--seed <n>", "seed", integer(0), DEFAULT_ORGANISM.seed)
    .option(
      "--per-template <n>",
      "corpus size: examples drawn from each corpus template",
      integer(1),
      DEFAULT_ORGANISM.perTemplate,
    )
    .option(
      "--insecure-bias <p>",
      "share of insecure answers in pretraining",
      number({ min: 0, max: 1 }),
      DEFAULT_ORGANISM.insecureBias,
    )
    .addHelpText(
      "after",
      "\nExample (this is how assets/organism was made; it rebuilds it bit for bit):\n  goodvibe organism build -o /tmp/organism",
    )
    .action(async (opts) => {
      const g = program.opts();
      const log = makeLogger(g);
      await runCommand(g, async () => {
        const r = await buildOrganism(
          opts.out,
          {
            ...DEFAULT_ORGANISM,
            epochs: opts.epochs,
            seed: opts.seed,
            insecureBias: opts.insecureBias,
            perTemplate: opts.perTemplate,
          },
          log,
          interruptSignal(log),
          { overwrite: opts.overwrite === true },
        );
        log.done();
        output(
          g,
          `organism → ${path.resolve(r.dir)}: ${r.params.toLocaleString("en-US")} parameters, ${r.trainPairs} train / ${r.devPairs} dev pairs, final loss ${r.train.finalLoss.toFixed(3)}, ${r.train.wallSeconds.toFixed(0)} s`,
          {
            dir: path.resolve(r.dir),
            params: r.params,
            trainPairs: r.trainPairs,
            devPairs: r.devPairs,
            finalLoss: r.train.finalLoss,
            wallSeconds: r.train.wallSeconds,
          },
        );
      });
    });
}
