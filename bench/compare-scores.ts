/**
 * Do the addon's identification pass and PyTorch's reduce the output gradients to the same per-neuron importances?
 * Reads two --scores files (bench/forward-backward.ts and bench/torch_reference.py fwdbwd, the same model, tokens and
 * dtype) and compares them module by module (bench/scores.ts compareScores): the relative L2 difference of the score
 * vectors, the largest difference of one neuron relative to the module's mean score, the cosine, and how many of the
 * top-k rows (k = 50, identify()'s default topK) both sides select.
 *
 *   node dist/bench/compare-scores.js ADDON.json TORCH.json [--max-rel-l2 X] [--json f]
 *
 * Exit code 1 when a module's relative L2 difference exceeds --max-rel-l2 (default: 1e-4 for float32 passes, 0.05
 * for bfloat16 ones) or the files do not cover the same modules. What the bounds rest on: both sides compute the same
 * loss of the same weights, so in float32 they differ only by the order of float32 sums (measured ~2e-6 at Qwen2.5-
 * 0.5B's shape, 24 layers); in bfloat16 each side rounds every activation and gradient to 8 bits of mantissa in its
 * own order through the layers (the two losses differ by ~1%), which moves single neurons' scores by up to tens of
 * percent and the vectors by ~1-2.5% (BENCHMARKS "The pass as identify() runs it").
 */
import * as fs from "node:fs";
import { benchArgs } from "./args.js";
import { DEFAULT_IDENTIFY } from "../src/method/goodvibe/config.js";
import { compareScores, type ScoreRow, type ScoresFile } from "./scores.js";
import { table, writeJson } from "./common.js";

const { values: args, positionals } = benchArgs(import.meta.url, {
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
const { rows, missing } = compareScores(a.modules, b.modules, k);

const kinds = [...new Set(rows.map((r) => r.name.split(".").pop()!))];
const worst = (rs: ScoreRow[], f: (r: ScoreRow) => number, max = true) =>
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
