/**
 * Do the addon's identification pass and PyTorch's reduce the output gradients to the same per-neuron importances?
 * Reads two --scores files (bench/forward-backward.ts and bench/torch_reference.py fwdbwd, the same model, tokens and
 * dtype) and compares them module by module: the relative L2 difference of the score vectors
 * (‖a − b‖ / ‖b‖), the largest difference of one neuron relative to the module's mean score, and how many of the
 * top-k rows (k = 50, identify()'s default topK) both sides select.
 *
 *   node dist/bench/compare-scores.js ADDON.json TORCH.json [--max-rel-l2 X] [--json f]
 *
 * Exit code 1 when a module's relative L2 difference exceeds --max-rel-l2 (default: 0.05 for bfloat16 passes,
 * 1e-4 for float32 passes) or the files do not cover the same modules. What the bounds rest on: both sides compute
 * the same loss of the same weights, so in float32 they differ only by the order of float32 sums (relative ~1e-6);
 * in bfloat16 each side rounds every activation and gradient to 8 bits of mantissa in its own order through 24 layers
 * (the two losses differ by ~1%), which moves single neurons' scores by a few percent, the vectors by less.
 */
import * as fs from "node:fs";
import { parseArgs } from "node:util";
import { DEFAULT_IDENTIFY } from "../src/method/goodvibe/config.js";
import { topKIndices } from "../src/method/goodvibe/identify.js";
import { table, writeJson } from "./common.js";

interface ScoresFile {
  side: string;
  dtype: string;
  tokens: number;
  passes: number;
  loss: number;
  modules: Record<string, number[]>;
}

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { "max-rel-l2": { type: "string" }, json: { type: "string" } },
});
if (positionals.length !== 2) {
  console.error("usage: compare-scores.js ADDON.json TORCH.json [--max-rel-l2 X] [--json f]");
  process.exit(2);
}
const [a, b] = positionals.map((f) => JSON.parse(fs.readFileSync(f, "utf8")) as ScoresFile);
if (a.dtype !== b.dtype || a.tokens !== b.tokens)
  throw new Error(
    `the two files are of different passes: ${a.dtype}/${a.tokens} vs ${b.dtype}/${b.tokens} tokens`,
  );
const bound = args["max-rel-l2"] ? Number(args["max-rel-l2"]) : a.dtype === "float32" ? 1e-4 : 0.05;
const k = DEFAULT_IDENTIFY.topK;

const names = Object.keys(a.modules);
const missing = names
  .filter((n) => !(n in b.modules))
  .concat(Object.keys(b.modules).filter((n) => !(n in a.modules)));
const rows: { name: string; relL2: number; maxRel: number; topK: number; cosine: number }[] = [];
for (const name of names) {
  const x = a.modules[name]!;
  const y = b.modules[name];
  if (!y || y.length !== x.length) continue;
  let d2 = 0;
  let y2 = 0;
  let x2 = 0;
  let xy = 0;
  let maxAbs = 0;
  let sum = 0;
  for (let j = 0; j < x.length; j++) {
    const d = x[j]! - y[j]!;
    d2 += d * d;
    y2 += y[j]! * y[j]!;
    x2 += x[j]! * x[j]!;
    xy += x[j]! * y[j]!;
    maxAbs = Math.max(maxAbs, Math.abs(d));
    sum += y[j]!;
  }
  const kk = Math.min(k, x.length);
  const top = new Set(topKIndices(y, kk));
  const both = topKIndices(x, kk).filter((i) => top.has(i)).length;
  rows.push({
    name,
    relL2: Math.sqrt(d2 / y2),
    maxRel: maxAbs / (sum / y.length),
    topK: both / kk,
    cosine: xy / Math.sqrt(x2 * y2),
  });
}

const kinds = [...new Set(rows.map((r) => r.name.split(".").pop()!))];
const worst = (rs: typeof rows, f: (r: (typeof rows)[0]) => number, max = true) =>
  rs.map(f).reduce((p, v) => (max ? Math.max(p, v) : Math.min(p, v)), max ? -Infinity : Infinity);
console.log(
  `${a.side} vs ${b.side}: ${a.dtype}, ${a.tokens} tokens, ${rows.length} modules; losses ${a.loss.toFixed(6)} / ${b.loss.toFixed(6)}`,
);
console.log(
  table(
    ["module", "worst rel. L2", "worst max |Δ| / mean", "lowest cosine", `lowest top-${k} overlap`],
    kinds.map((kind) => {
      const rs = rows.filter((r) => r.name.endsWith(`.${kind}`));
      return [
        `${kind} (${rs.length})`,
        worst(rs, (r) => r.relL2).toExponential(2),
        worst(rs, (r) => r.maxRel).toExponential(2),
        worst(rs, (r) => r.cosine, false).toFixed(6),
        `${(100 * worst(rs, (r) => r.topK, false)).toFixed(0)}%`,
      ];
    }),
  ),
);
const over = rows.filter((r) => !(r.relL2 <= bound));
const ok = missing.length === 0 && over.length === 0 && rows.length > 0;
console.log(
  ok
    ? `agree: every module's relative L2 difference is within ${bound}`
    : `DISAGREE: ${missing.length ? `modules on one side only: ${missing.slice(0, 5).join(", ")}; ` : ""}` +
        `${over.length} modules beyond ${bound} (${over
          .slice(0, 5)
          .map((r) => `${r.name} ${r.relL2.toExponential(2)}`)
          .join(", ")})`,
);
writeJson(args.json, { bench: "compare-scores", sides: [a.side, b.side], dtype: a.dtype, bound, ok, rows });
process.exit(ok ? 0 : 1);
