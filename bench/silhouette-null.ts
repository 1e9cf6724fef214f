/**
 * How high does a layer's best silhouette go when its neurons share no pattern? The threshold of §6.2 (Table 7:
 * 0.01, 0.05, 0.1) decides whether a layer is clustered; it only separates structure from none if patternless
 * neurons score below it. For each module of a neuron map (`goodvibe identify`, with per-sample profiles) this
 * prints the best silhouette over k = 2..kMax of the features clustering uses, and of the same profiles with each
 * neuron's values shuffled across the profiled samples (same values, no pattern shared between neurons), with the
 * clustering's defaults (DEFAULT_CLUSTER: features, kMax, restarts, seed).
 *
 *   node dist/bench/silhouette-null.js NEURONS.json [--features profile-normalized] [--seed 7]
 */
import { benchArgs } from "./args.js";
import { readNeuronMap } from "../src/method/goodvibe/neuron-map.js";
import { clusterFeatures } from "../src/method/goodvibe/clustering.js";
import { chooseClusters } from "../src/method/goodvibe/kmeans.js";
import { DEFAULT_CLUSTER, type ClusterFeatures } from "../src/method/goodvibe/config.js";
import { createRng } from "../src/util/random.js";

const { values: args, positionals } = benchArgs(import.meta.url, {
  allowPositionals: true,
  options: { features: { type: "string" }, seed: { type: "string" } },
});
if (positionals.length !== 1) {
  console.error("usage: silhouette-null.js NEURONS.json [--features KIND] [--seed N]");
  process.exit(2);
}
const features = (args.features ?? DEFAULT_CLUSTER.features) as ClusterFeatures;
const rng = createRng(Number(args.seed ?? 7));
const map = readNeuronMap(positionals[0]!);

const shuffled = (xs: readonly number[]): number[] => rng.shuffle(xs.slice());

const opts = { kMax: DEFAULT_CLUSTER.kMax, nInit: DEFAULT_CLUSTER.nInit, seed: DEFAULT_CLUSTER.seed };
const real: number[] = [];
const none: number[] = [];
let samples = 0;
for (const [name, m] of Object.entries(map.modules)) {
  if (!m.profiles) throw new Error(`${positionals[0]}: module ${name} has no profiles (identify keeps them)`);
  samples = m.profiles[0]?.length ?? 0;
  real.push(chooseClusters(clusterFeatures(name, m, features), opts).silhouette);
  const noPattern = { ...m, profiles: m.profiles.map(shuffled) };
  none.push(chooseClusters(clusterFeatures(name, noPattern, features), opts).silhouette);
}
const summary = (xs: number[]) => {
  const s = xs.slice().sort((a, b) => a - b);
  return `min ${s[0]!.toFixed(3)}  median ${s[s.length >> 1]!.toFixed(3)}  max ${s[s.length - 1]!.toFixed(3)}`;
};
const below = (xs: number[], t: number) => xs.filter((x) => x < t).length;
console.log(`${real.length} modules, ${samples} profiled samples, features ${features}, k = 2..${opts.kMax}`);
console.log(`best silhouette, the map's profiles:     ${summary(real)}`);
console.log(`best silhouette, profiles shuffled:      ${summary(none)}`);
for (const t of [0.01, 0.05, 0.1])
  console.log(
    `threshold ${t}: modules below it ${below(real, t)} of ${real.length} (shuffled: ${below(none, t)})`,
  );
