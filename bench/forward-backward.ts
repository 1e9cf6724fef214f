/**
 * The identification pass at Qwen2.5-0.5B's shape: frozen bf16 weights, one sequence of 256 tokens, forward +
 * backward of identify()'s judge loss at the last position (cross-entropy over two label tokens' logits), each
 * linear output's gradient reduced to a per-neuron mean |g| by identify()'s own batch (--grads hook, the default;
 * bench/pass.ts PassGrads) or kept whole (--grads retain: tap → retainGrad, .grad read after backward; with --head
 * full, the full-vocabulary logits: the pass of figures before 2026-12-01 06:00).
 * bench/torch_reference.py fwdbwd runs the identical pass in PyTorch on the same checkpoint file (same --head and
 * --grads). --scores FILE writes the per-neuron mean importances of the hook pass (JSON, module → rows), which
 * bench/compare-scores.ts compares with the reference's (--scores there too); --dtype float32 computes the same
 * model with its bf16 weights upcast (exactly), as torch_reference.py --dtype float32 does.
 *
 *   node dist/bench/forward-backward.js [--tokens 256] [--layers 24] [--passes 3] [--threads N] [--profile]
 *                                       [--fused | --unfused] [--tidy-layers] [--device cpu|cuda]
 *                                       [--head labels|full] [--grads hook|retain] [--dtype bfloat16|float32]
 *                                       [--scores f] [--json f] [--op-profile f]
 *
 * --op-profile f: as many passes again with every op libtorch runs recorded (common.ts writeOpProfile), for
 * bench/op-profile.ts to set beside torch_reference.py fwdbwd --op-profile's.
 * Decoder path: the per-op default (src/tensor/tensor.ts fusedOps), --fused every fused op (GOODVIBE_FUSED=1),
 * --unfused transformers' eager code op by op (GOODVIBE_FUSED=0).
 */
import { benchArgs } from "./args.js";
import { loadModel, Linear, type DecoderModel } from "../src/models/index.js";
import {
  Tensor,
  frozenLinearCache,
  fusedOps,
  noGrad,
  resolveDevice,
  synchronize,
  tidy,
} from "../src/tensor/index.js";
import { peakRssBytes } from "../src/util/memory.js";
import {
  activationBytesEstimate,
  benchIds,
  emptyPassSums,
  identificationPass,
  parsePassGrads,
  parsePassHead,
  passFlops,
  passScores,
  type PassGrads,
  type PassHead,
} from "./pass.js";
import {
  GiB,
  MiB,
  applyDecoderPath,
  applyThreads,
  frozenDxSummary,
  machineInfo,
  abSettings,
  median,
  randomModelDir,
  seconds,
  table,
  writeJson,
  writeOpProfile,
} from "./common.js";

const { values: args } = benchArgs(import.meta.url, {
  options: {
    tokens: { type: "string", default: "256" },
    layers: { type: "string", default: "24" },
    // a model folder to load instead of the random Qwen2.5-0.5B-shaped one (e.g. make-random-model.js's 7b shape)
    model: { type: "string" },
    passes: { type: "string", default: "3" },
    threads: { type: "string" },
    // every fused op of the addon / none (transformers' eager code line by line); default: the per-op defaults
    fused: { type: "boolean", default: false },
    unfused: { type: "boolean", default: false },
    // one q/k/v and one gate/up product (on) or a product per linear (off); default: the per-op default
    concat: { type: "string" },
    // a frozen bf16 weight's dX from its transposed copy: on (every frozen product), off (libtorch's linear backward),
    // auto (the default: within the memory budget, GOODVIBE_FROZEN_DX_BUDGET; models/frozen-dx.ts)
    "frozen-dx": { type: "string" },
    device: { type: "string", default: "cpu" },
    // the loss: identify()'s two label tokens (labels, the default) or the full vocabulary (full; bench/pass.ts)
    head: { type: "string", default: "labels" },
    // identify()'s reduction of each output gradient in a hook (hook, the default) or every gradient kept (retain)
    grads: { type: "string", default: "hook" },
    dtype: { type: "string", default: "bfloat16" },
    scores: { type: "string" },
    profile: { type: "boolean", default: false },
    "tidy-layers": { type: "boolean", default: false },
    // rotate passes through settings of per-op switches in this process (A/B): --ab frozenDx (off, on), or a list,
    // --ab attention,rmsNorm (all off, then each on alone)
    ab: { type: "string" },
    json: { type: "string" },
    "op-profile": { type: "string" },
  },
});

/** Forward-only wall time per piece of a layer (linears by kind, the rest of attention, norms + MLP glue). */
function profileForward(model: DecoderModel, ids: Tensor): Map<string, number> {
  const times = new Map<string, number>();
  const add = (k: string, s: number) => times.set(k, (times.get(k) ?? 0) + s);
  const linearForward = Linear.prototype.forward;
  Linear.prototype.forward = function (this: Linear, x: Tensor): Tensor {
    let y!: Tensor;
    add(
      `linear ${this.name.split(".").pop()}`,
      seconds(() => (y = linearForward.call(this, x))),
    );
    return y;
  };
  try {
    noGrad(() =>
      tidy(() => {
        const prep = model.prepare(ids, {});
        let x = model.embedTokens(ids);
        for (const layer of model.layers) {
          const attnNorm = layer.norms[0];
          const mlpNorm = layer.norms[1];
          let h!: Tensor;
          add(
            "rmsnorm",
            seconds(() => (h = attnNorm.forward(x))),
          );
          let a!: Tensor;
          const attnTotal = seconds(() => (a = layer.attn.forward(h, prep.full)));
          add("attention (all)", attnTotal);
          x = x.add(a);
          add(
            "rmsnorm",
            seconds(() => (h = mlpNorm.forward(x))),
          );
          let m!: Tensor;
          add(
            "mlp (all)",
            seconds(() => (m = layer.mlp.forward(h))),
          );
          x = x.add(m);
        }
        add(
          "lm_head (last position)",
          seconds(() => void model.logitsFrom(model.norm.forward(x).select(1, ids.size(1) - 1))),
        );
      }),
    );
  } finally {
    Linear.prototype.forward = linearForward;
  }
  return times;
}

/**
 * Experiment for the memory gap to PyTorch: free each layer's forward intermediates when the layer returns
 * (autograd keeps what backward needs through its own references), as Python's refcounting does.
 */
function tidyEachLayer(model: DecoderModel): void {
  for (const layer of model.layers) {
    const forward = layer.forward.bind(layer);
    layer.forward = (x, inp) => tidy(() => forward(x, inp));
  }
}

/**
 * --ab OP[,OP…]: passes rotate through the settings (abSettings: every listed op off, then each one on alone; one op:
 * off, on) in this one process, one warm-up pass each first, so every setting meets the same load; prints each
 * setting's passes, medians and minima against the first's, and peak RSS.
 */
function abPasses(
  model: DecoderModel,
  ids: Tensor,
  target: Tensor,
  ab: string,
  passes: number,
  head: PassHead,
  grads: PassGrads,
): void {
  const settings = abSettings(ab);
  const times: number[][] = settings.map(() => []);
  const losses: number[] = [];
  for (const [i, setting] of settings.entries()) {
    setting.apply();
    losses[i] = identificationPass(model, ids, target, head, grads).loss;
  }
  const rssWarm = peakRssBytes();
  for (let p = 0; p < passes; p++)
    for (const [i, setting] of settings.entries()) {
      setting.apply();
      times[i].push(seconds(() => identificationPass(model, ids, target, head, grads)));
    }
  const cache = frozenLinearCache();
  console.log(
    `A/B of ${ab} in one process, ${model.device}, ${passes} passes each, rotated (load ${machineInfo().loadAverage})`,
  );
  if (ab.includes("frozenDx")) console.log(model.frozenDx.describe());
  const base = median(times[0]);
  for (const [i, setting] of settings.entries())
    console.log(
      `${setting.label}: median ${median(times[i]).toFixed(4)} s, min ${Math.min(...times[i]).toFixed(4)} s, / ` +
        `${settings[0].label} ${(median(times[i]) / base).toFixed(3)} (${times[i].map((t) => t.toFixed(4)).join(" / ")}), ` +
        `loss ${losses[i]}`,
    );
  console.log(
    `peak RSS after the warm-ups ${(rssWarm / GiB).toFixed(2)} GiB, at the end ${(peakRssBytes() / GiB).toFixed(2)} ` +
      `GiB; transposed weight copies held: ${cache.count}, ${(cache.bytes / GiB).toFixed(2)} GiB`,
  );
}

function main(): void {
  const threads = applyThreads(args.threads ? Number(args.threads) : undefined);
  applyDecoderPath(args);
  const path = args.fused ? "fused ops" : args.unfused ? "op-by-op" : "per-op defaults";
  const T = Number(args.tokens);
  const passes = Number(args.passes);
  const head = parsePassHead(args.head);
  const grads = parsePassGrads(args.grads, head);
  if (args.dtype !== "bfloat16" && args.dtype !== "float32")
    throw new Error(`--dtype must be bfloat16 or float32, got ${args.dtype}`);
  const dir = args.model ?? randomModelDir(Number(args.layers));
  const rssBeforeLoad = peakRssBytes();
  const model = loadModel(dir, {
    dtype: args.dtype as "bfloat16" | "float32",
    device: resolveDevice(args.device),
  });
  if (args["tidy-layers"]) tidyEachLayer(model);
  const weightBytes = [...model.parameters().values()].reduce((a, t) => a + t.nbytes, 0);
  const ids = benchIds(T, model.cfg.vocabSize);
  const target = Tensor.fromArray([42], [1], "int64");

  if (args.ab) return abPasses(model, ids, target, args.ab, passes, head, grads);
  // the run's per-neuron sums, as identify() keeps them over its samples (grads hook)
  const sums = emptyPassSums(model);
  const warm = identificationPass(model, ids, target, head, grads, sums); // first pass: oneDNN primitive creation, page-in of the mapped weights
  const times: number[] = [];
  let last = warm;
  for (let i = 0; i < passes; i++)
    times.push(seconds(() => (last = identificationPass(model, ids, target, head, grads, sums))));
  const s = median(times);
  const flops = passFlops(model, T, head);
  const gflops = (flops.forward + flops.backward) / s / 1e9;
  const peak = peakRssBytes();
  const act = activationBytesEstimate(model, T, grads);

  console.log(
    `${model.device}, threads ${threads}, OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? "(auto)"}, ${model.cfg.numLayers} layers, ${T} tokens, ${path}, head ${head}, grads ${grads}, ${model.dtype}`,
  );
  console.log(
    `loss ${last.loss.toFixed(4)}, linear outputs with a gradient${grads === "hook" ? " reduced" : ""}: ${last.grads}/${model.linears().length}`,
  );
  const dx = frozenDxSummary(model);
  console.log(`${dx.plan}; copies held: ${dx.copies}, ${(dx.copyBytes / GiB).toFixed(2)} GiB`);
  console.log(
    table(
      [
        "median s/pass",
        "passes (s)",
        "tokens/s",
        "GFLOP/pass",
        "GFLOP/s",
        "peak RSS",
        "weights",
        "activations (est.)",
        "RSS before load",
      ],
      [
        [
          s.toFixed(3),
          times.map((x) => x.toFixed(3)).join(" / "),
          (T / s).toFixed(1),
          ((flops.forward + flops.backward) / 1e9).toFixed(1),
          gflops.toFixed(1),
          `${(peak / GiB).toFixed(2)} GiB`,
          `${(weightBytes / GiB).toFixed(2)} GiB`,
          `${(act / GiB).toFixed(2)} GiB`,
          `${(rssBeforeLoad / MiB).toFixed(0)} MiB`,
        ],
      ],
    ),
  );
  let profile: Record<string, number> | undefined;
  if (args.profile) {
    profileForward(model, ids); // warm
    const runs = Array.from({ length: passes }, () => profileForward(model, ids));
    profile = Object.fromEntries([...runs[0].keys()].map((k) => [k, median(runs.map((r) => r.get(k) ?? 0))]));
    const fwd = Object.entries(profile);
    console.log(
      "forward-only profile (median seconds over passes; linears are also inside attention/mlp totals):",
    );
    console.log(
      table(
        ["piece", "s"],
        fwd.map(([k, v]) => [k, v.toFixed(4)]),
      ),
    );
  }
  writeJson(args.json, {
    bench: "forward-backward",
    machine: machineInfo(),
    threads,
    fused: args.fused,
    unfused: args.unfused,
    concat: fusedOps("concatLinear", model.device), // where the model ran (off by default off the CPU)
    frozenDx: dx,
    tokens: T,
    head,
    grads,
    dtype: model.dtype,
    tidyLayers: args["tidy-layers"],
    layers: model.cfg.numLayers,
    loss: last.loss,
    gradsKept: last.grads,
    secondsPerPass: times,
    medianSeconds: s,
    tokensPerSecond: T / s,
    flops,
    gflopsPerSecond: gflops,
    peakRssBytes: peak,
    rssBeforeLoadBytes: rssBeforeLoad,
    weightBytes,
    activationBytesEstimate: act,
    profile,
  });
  if (args.scores) {
    if (grads !== "hook") throw new Error("--scores needs --grads hook (the per-neuron importances)");
    writeJson(args.scores, {
      what: "per-neuron mean |dL/dy| over the tokens (identify()'s importance), mean over the passes",
      side: "addon",
      dtype: model.dtype,
      tokens: T,
      passes: sums.passes,
      loss: last.loss,
      modules: passScores(sums),
    });
  }
  if (args["op-profile"])
    writeOpProfile(
      args["op-profile"],
      "identification pass",
      passes,
      { device: model.device, path, head, grads, dtype: model.dtype, layers: model.cfg.numLayers, tokens: T },
      () => {
        identificationPass(model, ids, target, head, grads, sums);
        synchronize(model.device);
      },
    );
}

main();
