/**
 * What `goodvibe identify` (and `identify merge`), `cluster`, `train` and `fold` do: loaded by stages.ts (which
 * registers the commands) only when one runs.
 */
import type { Command, OptionValues } from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../errors.js";
import { loadTokenizer } from "../../io/tokenizer.js";
import { loadModel, loadModelWithWeights } from "../../models/load.js";
import { guardSaves } from "../../method/train.js";
import { bf16ProductsOf } from "../../tensor/index.js";
import {
  clusterWithStops,
  identifyOptions,
  isRunEntry,
  readRunPairs,
  runTrain,
  stageIdentify,
  identifyInputs,
  RUN_FILES,
  type RunHooks,
} from "../../recipes/harden.js";
import { checkTopKOfFolder } from "../../method/goodvibe/identify.js";
import { clearIdentifyState } from "../../method/goodvibe/identify-state.js";
import { identifyShard, mergeIdentifyShards } from "../../method/goodvibe/identify-shard.js";
import { readNeuronMap, summarizeNeuronMap, writeNeuronMap } from "../../method/goodvibe/neuron-map.js";
import { type ShardSpec } from "../../util/shard.js";
import { clusterSummary, writeClusterMap } from "../../method/goodvibe/clustering.js";
import { attachGoodVibe } from "../../method/goodvibe/model.js";
import { ADAPTER_WEIGHTS_FILE, readPeftAdapter, readPeftAdapterHeader } from "../../method/lora/peft.js";
import { foldIntoCheckpoint } from "../../method/fold.js";
import {
  checkDeltaFits,
  checkDeltaHeaderFits,
  findDeltaFile,
  readGoodVibeDelta,
  readGoodVibeDeltaHeader,
} from "../../method/goodvibe/delta.js";
import { loadModelConfig } from "../../io/config.js";
import {
  checkWeightHeaders,
  missingTokenizerFiles,
  missingTokenizerWarning,
  readModelFiles,
} from "../../io/model-folder.js";
import { ModelShape } from "../../models/shapes.js";
import { checkOutput, publishFile } from "../../io/atomic.js";
import { whileClaimed } from "../../io/claim.js";
import { number } from "../options.js";
import { resolveConfig } from "../../config/resolve.js";
import { defaultRunDir, stageFileSchema } from "../../config/harden.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";
import { attachPeftAdapter, checkPeftAdapterFits } from "../../method/lora/model.js";
import { hardenConfigFrom } from "./harden-config.js";
import { scheduleLine } from "./harden-run.js";
import { describeCheckpointing, type CheckpointingRecord } from "../../method/checkpointing.js";

/** The line identify's text output gives its checkpointing record ("auto → off"); "" without one. */
function checkpointingLine(c: CheckpointingRecord | undefined): string {
  return c ? `\ngradient checkpointing (identification): ${describeCheckpointing(c)}` : "";
}

export async function identifyCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    // identify keeps its state in `.<out>.run` beside the neuron map it writes, unless --run-dir (or the config)
    // says where: hidden, as harden's and train's, so that the shards' run folders are not caught by the glob of
    // `identify merge shards/*`. `<out>.run`, where earlier versions kept it, is resumed when it is there.
    const cfg = hardenConfigFrom(opts, (out) =>
      fs.existsSync(`${out}.run`) ? `${out}.run` : defaultRunDir(out),
    );
    const inputs = { "--model": cfg.model, "--data": cfg.data };
    checkOutput({ flag: "--out", path: cfg.out, kind: "file", inputs, overwrite: cfg.overwrite });
    checkOutput({ flag: "--run-dir", path: cfg.runDir, kind: "folder", inputs, ownEntry: isRunEntry });
    checkTopKOfFolder(cfg.model, cfg.identify.topK); // before the model loads (identify() checks it again)
    const { model, weights } = loadModelWithWeights(cfg.model, { dtype: cfg.dtype });
    // no state, map or shard computed after a weight file was written in place is saved; Ctrl-C's handler is set
    // when identification starts, as before
    const hooks = () =>
      guardSaves<RunHooks>(
        { log, signal: interruptSignal(log) },
        weights,
        "identification (its result is not saved)",
      );
    const tok = await loadTokenizer(cfg.model);
    const pairs = readRunPairs(cfg, log);
    // the judge prompts too (a tokenizer without a chat template is refused here): made before the run folder, so
    // that bad input leaves nothing behind (it left the folder with the model's hash and the stage's inputs)
    const judged = identifyInputs(tok, pairs, cfg);
    fs.mkdirSync(cfg.runDir, { recursive: true });
    if (opts.shard) {
      const shard = opts.shard as ShardSpec;
      // its resumable state: a folder of the run folder per shard (several shards may share one run folder), held
      // by a claim of its own: shards of one job run at once, a second process on the same shard is refused
      const runDir = path.join(cfg.runDir, `identify-shard-${shard.index}-of-${shard.count}`);
      return whileClaimed(
        runDir,
        (h) =>
          `identify --shard ${shard.index}/${shard.count}: ${runDir} is in use by another goodvibe run (${h}) ` +
          `computing the same shard: wait for it to end, or run another shard`,
        () => identifyOneShard(shard, runDir),
      );
    }
    // the run folder is this run's: a second identify into the same --out would identify again beside it
    await whileClaimed(
      cfg.runDir,
      (h) =>
        `--run-dir ${cfg.runDir} is in use by another goodvibe run (${h}) for --out ${cfg.out}: ` +
        `wait for it to end, or choose another --out (or --run-dir)`,
      identifyWhole,
    );

    async function identifyOneShard(shard: ShardSpec, runDir: string): Promise<void> {
      const samples = judged.samples;
      log.info(
        `identification shard ${shard.index}/${shard.count}: a share of ${samples.length} samples (${cfg.identify.mode})`,
      );
      const products = bf16ProductsOf(model.device, model.dtype);
      if (products) log.info(products);
      log.info(model.frozenDx.describe());
      const info = await identifyShard(
        model,
        samples,
        identifyOptions(tok, cfg, runDir, hooks()),
        shard,
        cfg.out,
        {
          overwrite: cfg.overwrite,
          onMovedAside: (a) => log.warn(`the earlier ${cfg.out} was moved aside to ${a}`),
        },
      );
      clearIdentifyState(runDir);
      fs.rmSync(runDir, { recursive: true, force: true });
      log.done();
      output(
        g,
        `identification shard ${shard.index}/${shard.count}: ${path.resolve(cfg.out)} (${info.done} of ${info.samplesInRun} samples); ` +
          `merge every shard with \`goodvibe identify merge -o neurons.json <shard folders>\`` +
          checkpointingLine(info.gradientCheckpointing),
        {
          shard: path.resolve(cfg.out),
          index: shard.index,
          count: shard.count,
          samples: info.done,
          ...(info.gradientCheckpointing ? { gradientCheckpointing: info.gradientCheckpointing } : {}),
        },
      );
    }

    async function identifyWhole(): Promise<void> {
      const map = await stageIdentify(model, () => judged, cfg, hooks());
      publishFile(cfg.out, (tmp) => writeNeuronMap(tmp, map), {
        overwrite: cfg.overwrite,
        onMovedAside: (a) => log.warn(`the earlier ${cfg.out} was moved aside to ${a}`),
      });
      log.done();
      const summary = summarizeNeuronMap(map);
      const byType = new Map<string, number[]>();
      for (const s of summary) byType.set(s.module, [...(byType.get(s.module) ?? []), s.meanImportance]);
      const lines = [
        `neuron map: ${path.resolve(cfg.out)} (${map.source.samples} samples, mean loss ${map.lossMean.toFixed(4)})`,
        "mean importance of the selected neurons by module type:",
        ...[...byType].map(
          ([t, v]) => `  ${t.padEnd(10)} ${(v.reduce((a, b) => a + b, 0) / v.length).toExponential(3)}`,
        ),
      ];
      output(g, lines.join("\n") + checkpointingLine(map.gradientCheckpointing), {
        file: path.resolve(cfg.out),
        lossMean: map.lossMean,
        summary,
        ...(map.gradientCheckpointing ? { gradientCheckpointing: map.gradientCheckpointing } : {}),
      });
    }
  });
}

export async function identifyMergeCommand(
  g: OptionValues,
  shards: string[],
  _o: OptionValues,
  cmd: Command,
): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    const opts = cmd.optsWithGlobals() as { out?: string; overwrite?: boolean };
    if (!opts.out) throw new InputError("identify merge: -o, --out (the neuron map to write) is required");
    const inputs = Object.fromEntries(shards.map((s, i) => [`shard ${i + 1}`, s]));
    checkOutput({ flag: "--out", path: opts.out, kind: "file", inputs, overwrite: opts.overwrite });
    const map = mergeIdentifyShards(shards, { warn: (m) => log.warn(m) });
    publishFile(opts.out, (tmp) => writeNeuronMap(tmp, map), {
      overwrite: opts.overwrite,
      onMovedAside: (a) => log.warn(`the earlier ${opts.out} was moved aside to ${a}`),
    });
    log.done();
    output(
      g,
      `neuron map: ${path.resolve(opts.out)} (${shards.length} shards, ${map.source.samples} samples, mean loss ${map.lossMean.toFixed(4)})` +
        (map.gradientCheckpointing
          ? checkpointingLine(map.gradientCheckpointing)
          : "\ngradient checkpointing (identification): not recorded (the shards did not all record the same choice)"),
      {
        file: path.resolve(opts.out),
        shards: shards.length,
        samples: map.source.samples,
        lossMean: map.lossMean,
        ...(map.gradientCheckpointing ? { gradientCheckpointing: map.gradientCheckpointing } : {}),
      },
    );
  });
}

export async function clusterCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    const { cluster: options } = resolveConfig(
      stageFileSchema,
      opts.config,
      {
        "cluster.kMax": opts.kMax,
        "cluster.threshold": opts.threshold,
        "cluster.features": opts.features,
        "cluster.fallback": opts.fallback,
        "cluster.disabled": opts.cluster === false ? true : undefined,
        "cluster.seed": opts.seed,
        "cluster.nInit": opts.nInit,
      },
      opts.set,
    );
    checkOutput({
      flag: "--out",
      path: opts.out,
      kind: "file",
      inputs: { "--neurons": opts.neurons, "--config": opts.config },
      overwrite: opts.overwrite,
    });
    const map = readNeuronMap(opts.neurons);
    const c = await clusterWithStops(map, options, interruptSignal(log));
    publishFile(opts.out, (tmp) => writeClusterMap(tmp, c), {
      overwrite: opts.overwrite,
      onMovedAside: (a) => log.warn(`the earlier ${opts.out} was moved aside to ${a}`),
    });
    output(g, `cluster map: ${path.resolve(opts.out)}; ${clusterSummary(c).text}`, c);
  });
}

export async function trainCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    const cfg = hardenConfigFrom(opts);
    const r = await runTrain(cfg, opts.clusters, { log, signal: interruptSignal(log) });
    log.done();
    output(
      g,
      `trained ${cfg.method} (${r.trainableParams} trainable parameters) → ${path.resolve(cfg.out)}` +
        (r.gradientCheckpointing
          ? `; gradient checkpointing ${describeCheckpointing(r.gradientCheckpointing)}`
          : "") +
        `\n${scheduleLine(r.schedule)}`,
      {
        train: { ...r.train, log: undefined },
        schedule: r.schedule,
        fold: r.fold,
        ...(r.gradientCheckpointing ? { gradientCheckpointing: r.gradientCheckpointing } : {}),
      },
    );
  });
}

/**
 * A harden/train output keeps the update it folded in (goodvibe-delta.safetensors, or adapter/ for LoRA): folding
 * that same file into it again applies the update twice, which went through without a word ("700 rows changed").
 * Compared by content, so a copy of the file is caught too; another update folded on top is the user's choice.
 */
function refuseFoldedAlready(modelDir: string, update: string): void {
  const kept = [
    path.join(modelDir, RUN_FILES.delta),
    path.join(modelDir, RUN_FILES.adapter, ADAPTER_WEIGHTS_FILE),
  ];
  const same = (a: string, b: string) => {
    const sa = fs.statSync(a, { throwIfNoEntry: false });
    const sb = fs.statSync(b, { throwIfNoEntry: false });
    if (!sa?.isFile() || !sb?.isFile() || sa.size !== sb.size) return false;
    return fs.readFileSync(a).equals(fs.readFileSync(b));
  };
  const found = kept.find((k) => same(k, update));
  if (found)
    throw new InputError(
      `--model ${modelDir} already has this update folded in (${found} is the same file as ${update}): it is the ` +
        `output of the run that made it; fold it into the base model it was trained on`,
    );
}

export async function foldCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    if (!!opts.delta === !!opts.adapter) throw new InputError("give exactly one of --delta or --adapter");
    checkOutput({
      flag: "--out",
      path: opts.out,
      kind: "folder",
      inputs: { "--model": opts.model, "--delta": opts.delta, "--adapter": opts.adapter },
      overwrite: opts.overwrite,
    });
    // the delta or adapter against the base's shapes (config.json, which its weights' headers match), from the
    // headers alone, before the model loads (a minute and many GB for a 7B model) or a tensor is read
    const baseConfig = loadModelConfig(opts.model);
    checkWeightHeaders(baseConfig, opts.model);
    readModelFiles(opts.model); // a tokenizer file that cannot be read, before the load (fold reads them again)
    const shape = new ModelShape(baseConfig);
    // a harden/train output folder names its delta, as export --delta takes it
    const source = opts.delta ? findDeltaFile(opts.delta) : "";
    refuseFoldedAlready(opts.model, opts.delta ? source : path.join(opts.adapter, ADAPTER_WEIGHTS_FILE));
    if (opts.delta) checkDeltaHeaderFits(shape, readGoodVibeDeltaHeader(source), source);
    else checkPeftAdapterFits(shape, readPeftAdapterHeader(opts.adapter));
    const model = loadModel(opts.model);
    let method;
    if (opts.delta) {
      const delta = readGoodVibeDelta(source);
      checkDeltaFits(model, delta, source);
      method = attachGoodVibe(model, delta.selections, delta.U);
    } else {
      method = attachPeftAdapter(model, readPeftAdapter(opts.adapter));
    }
    const stats = await foldIntoCheckpoint(opts.model, opts.out, method, {
      overwrite: opts.overwrite,
      signal: interruptSignal(log),
      onMovedAside: (a) => log.warn(`the earlier ${opts.out} was moved aside to ${a}`),
    });
    for (const w of stats.warnings) log.warn(w);
    const missing = missingTokenizerFiles(opts.model);
    if (missing.length > 0) log.warn(missingTokenizerWarning(opts.model, opts.out, missing));
    output(
      g,
      `folded → ${path.resolve(opts.out)}: ${stats.rowsChanged} rows changed (${stats.dtype})` +
        (stats.visionTensors
          ? `; the vision tower and projector (${stats.visionTensors} tensors) are the base's, unchanged`
          : ""),
      { ...stats, missingTokenizerFiles: missing },
    );
  });
}
