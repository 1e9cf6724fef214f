/**
 * What `goodvibe organism build` and `organism sources` do: loaded by organism.ts (which registers the commands)
 * only when one runs.
 */
import type { OptionValues } from "commander";
import * as path from "node:path";
import { buildOrganism } from "../../organism/build.js";
import { DEFAULT_ORGANISM } from "../../organism/config.js";
import {
  buildCyberNativeOrganism,
  CYBERNATIVE_ORGANISM,
  cyberNativeConfigWith,
} from "../../organism/cybernative.js";
import { fetchSourcePackages, ORGANISM_SOURCE_PACKAGES } from "../../organism/sources.js";
import { parseOverride } from "../../util/overrides.js";
import { InputError } from "../../errors.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";

export async function organismBuildCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    if (opts.recipe === "cybernative") {
      if (!opts.data)
        throw new InputError("--recipe cybernative needs --data (the CyberNative train split, JSONL)");
      const sets = (opts.set as string[]).map(parseOverride);
      if (opts.epochs !== undefined) sets.push(["epochs", opts.epochs]);
      if (opts.seed !== undefined) sets.push(["seed", opts.seed]);
      const cfg = cyberNativeConfigWith(sets, CYBERNATIVE_ORGANISM);
      const r = await buildCyberNativeOrganism(
        opts.out,
        {
          data: opts.data,
          sources: opts.sources === false ? null : opts.sources,
          cfg,
          overwrite: opts.overwrite === true,
          weights: opts.weights,
        },
        log,
        interruptSignal(log),
      );
      log.done();
      output(
        g,
        `cybernative organism → ${path.resolve(r.dir)}: ${r.params.toLocaleString("en-US")} parameters, ` +
          `${r.trainPairs} pretraining / ${r.valPairs} validation pairs, ${r.tokens.toLocaleString("en-US")} ` +
          `tokens per epoch, ` +
          (r.train
            ? `final loss ${r.train.finalLoss.toFixed(3)}, ${r.train.wallSeconds.toFixed(0)} s`
            : `weights taken from ${path.resolve(opts.weights)} (model.safetensors SHA-256 ${r.weightsSha256})`),
        {
          dir: path.resolve(r.dir),
          params: r.params,
          trainPairs: r.trainPairs,
          valPairs: r.valPairs,
          tokensPerEpoch: r.tokens,
          documents: r.documents,
          sourcesSha256: r.sourcesSha256,
          weightsSha256: r.weightsSha256,
          reference: r.reference,
          weightsFrom: opts.weights === undefined ? null : path.resolve(opts.weights),
          finalLoss: r.train?.finalLoss ?? null,
          wallSeconds: r.train?.wallSeconds ?? null,
        },
      );
      return;
    }
    if (opts.recipe !== "corpus")
      throw new InputError(`--recipe: corpus or cybernative, got "${String(opts.recipe)}"`);
    if ((opts.set as string[]).length > 0 || opts.data || opts.weights)
      throw new InputError("--set, --data and --weights are options of --recipe cybernative");
    const r = await buildOrganism(
      opts.out,
      {
        ...DEFAULT_ORGANISM,
        epochs: opts.epochs ?? DEFAULT_ORGANISM.epochs,
        seed: opts.seed ?? DEFAULT_ORGANISM.seed,
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
        weightsSha256: r.weightsSha256,
        reference: r.reference,
      },
    );
  });
}

export async function organismSourcesCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    const recs = fetchSourcePackages(opts.out, ORGANISM_SOURCE_PACKAGES, (m) => log.info(m));
    output(
      g,
      `sources → ${path.resolve(opts.out)}: ${recs.map((r) => `${r.package}=${r.version}`).join(", ")}`,
      { dir: path.resolve(opts.out), packages: recs },
    );
  });
}
