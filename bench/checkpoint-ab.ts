/**
 * The checkpointed training step before and after 2026-12-04 in one process, steps alternated so that both meet the
 * same load: "before" recomputes every layer whole from its input (forwardBackward's checkpoint branch until then,
 * written out here), "after" is DecoderModel.forwardBackward(…, true) (the last layer keeps its graph; a pre-norm
 * layer is recomputed as its two residual blocks, o_proj's and down_proj's frozen products skipped). Each pair's
 * losses and every trainable tensor's gradient are compared bit for bit. GoodVibe on Qwen2.5-0.5B's shape, batch 1,
 * 256 tokens, the loss on the last 128 (train-step.ts's step without the optimiser, which neither side changes).
 *
 *   node dist/bench/checkpoint-ab.js [--layers 24] [--tokens 256] [--pairs 5] [--threads 1] [--selection f]
 *     [--json f]
 *
 * --selection f: the rows and clusters train-step.ts --selection f drew (the same file), else 50 random rows per
 * linear (seed 0).
 */
import { benchArgs } from "./args.js";
import { loadModel, type DecoderModel } from "../src/models/index.js";
import { attachGoodVibe } from "../src/method/goodvibe/model.js";
import { IGNORE_INDEX, sftLossHead } from "../src/method/losses.js";
import { Tensor, backward, noGrad, rngState, setRngState, tidy, withGrad } from "../src/tensor/index.js";
import {
  applyThreads,
  machineInfo,
  median,
  randomModelDir,
  randomSelections,
  sharedSelections,
  writeJson,
} from "./common.js";
import { benchIds } from "./pass.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    layers: { type: "string", default: "24" },
    tokens: { type: "string", default: "256" },
    pairs: { type: "string", default: "5" },
    threads: { type: "string" },
    selection: { type: "string" },
    json: { type: "string" },
  },
});

/** forwardBackward's checkpoint branch before 2026-12-04 (no tied weight trains here: GoodVibe trains only U). */
function checkpointedBefore(model: DecoderModel, ids: Tensor, head: (h: Tensor) => Tensor): number {
  return tidy(() => {
    const prep = model.prepare(ids, {});
    const inp = (i: number) => (model.cfg.layerTypes[i] === "sliding_attention" ? prep.sliding! : prep.full);
    const inputs: Tensor[] = [];
    const rng: Tensor[] = [];
    const x = noGrad(() => {
      let h = model.embedTokens(ids);
      for (const layer of model.layers) {
        inputs.push(h);
        rng.push(rngState(model.device));
        const input = h;
        h = tidy(() => layer.forward(input, inp(layer.index)));
      }
      return h;
    });
    const afterForward = rngState(model.device);
    let upstream: Tensor | null = null;
    const value = withGrad(() => {
      const top = x.detach().requiresGrad_();
      const loss = head(model.norm.forward(top));
      const v = loss.item();
      loss.backward();
      upstream = top.grad;
      return v;
    });
    for (let i = model.layers.length - 1; i >= 0; i--) {
      const g = upstream as Tensor | null;
      if (!g) break;
      upstream = tidy(() =>
        withGrad(() => {
          setRngState(rng[i]!, model.device);
          const xin = inputs[i]!.detach().requiresGrad_();
          backward([model.layers[i]!.forward(xin, inp(i))], [g]);
          return xin.grad;
        }),
      );
      g.dispose();
      inputs[i]!.dispose();
    }
    setRngState(afterForward, model.device);
    return value;
  });
}

function main(): void {
  const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
  const T = Number(args.tokens);
  const pairs = Number(args.pairs);
  const model = loadModel(randomModelDir(Number(args.layers)), { dtype: "bfloat16" });
  const sel = args.selection ? sharedSelections(model, 50, args.selection) : randomSelections(model, 50);
  const attached = attachGoodVibe(model, sel);
  attached.setTraining(true);
  const ids = benchIds(T, model.cfg.vocabSize);
  const labelValues = ids.toIntArray().map((id, t) => (t < T / 2 ? IGNORE_INDEX : id));
  const head = sftLossHead(model, Tensor.fromArray(labelValues, [1, T], "int64"));
  const params = [...attached.trainable.values()];
  const sides = {
    before: () => checkpointedBefore(model, ids, head),
    after: () => model.forwardBackward(ids, {}, head, true),
  };
  // wall seconds, and the process's CPU seconds (user + system: the figure to read on a core others share)
  const times: Record<keyof typeof sides, number[]> = { before: [], after: [] };
  const cpu: Record<keyof typeof sides, number[]> = { before: [], after: [] };
  let identical = 0;
  // pair 0 warms both up (oneDNN primitives, the frozenDx copies); the order alternates from pair to pair
  for (let p = 0; p <= pairs; p++) {
    const got = new Map<string, { loss: number; grads: Buffer[] }>();
    for (const side of p % 2 ? (["after", "before"] as const) : (["before", "after"] as const)) {
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      const loss = sides[side]();
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      const c = process.cpuUsage(c0);
      got.set(side, { loss, grads: params.map((u) => Buffer.from(noGrad(() => u.grad!.toBytes()))) });
      for (const u of params) u.clearGrad();
      if (p > 0) {
        times[side].push(dt);
        cpu[side].push((c.user + c.system) / 1e6);
      }
    }
    const [b, a] = [got.get("before")!, got.get("after")!];
    if (a.loss === b.loss && a.grads.every((g, i) => g.equals(b.grads[i]!))) identical++;
    else console.log(`pair ${p}: differs (loss ${b.loss} before, ${a.loss} after)`);
  }
  const fmt = (xs: number[]) => xs.map((t) => t.toFixed(3)).join(" / ");
  const ratio = median(times.after) / median(times.before);
  const cpuRatio = median(cpu.after) / median(cpu.before);
  console.log(
    `${model.cfg.numLayers} layers, ${T} tokens, threads ${threads}, load ${machineInfo().loadAverage}: ` +
      `before ${fmt(times.before)} s (median ${median(times.before).toFixed(3)}); ` +
      `after ${fmt(times.after)} s (median ${median(times.after).toFixed(3)}); after / before ${ratio.toFixed(3)}; ` +
      `CPU s: before ${fmt(cpu.before)}, after ${fmt(cpu.after)}, after / before ${cpuRatio.toFixed(3)} (medians); ` +
      `loss and all ${params.length} gradients bit-identical in ${identical} of ${pairs + 1} pairs`,
  );
  writeJson(args.json, {
    bench: "checkpoint-ab",
    machine: machineInfo(),
    layers: model.cfg.numLayers,
    tokens: T,
    threads,
    times,
    cpu,
    ratio,
    cpuRatio,
    identicalPairs: identical,
    pairs: pairs + 1,
  });
}

main();
