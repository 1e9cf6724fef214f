/**
 * identify()'s per-neuron importances against PyTorch's on the same checkpoint. The addon's side is identify()'s own
 * batch (runBatch: the native hook reducing each linear output's gradient to a mean |g| over the tokens, read back
 * and summed by addImportances; through bench/pass.ts, as the benchmark runs it); PyTorch's is
 * bench/torch_reference.py fwdbwd --grads hook, written independently from the paper (§4.1 Eq. 8): a tensor hook on
 * every nn.Linear output taking g.abs().float().sum(1) / T, added to float64 sums on the CPU, with Hugging Face's
 * numerics for the model. The model: 2 layers at Qwen2.5-0.5B's real widths and vocabulary, random bf16 weights
 * (bench/make-random-model.js), 64 tokens. In float32 (the bf16 weights upcast exactly on both sides) the two compute
 * the same function and differ only by the order of float32 sums: measured here (AMD Zen 5, libtorch 1.13) a relative
 * L2 difference per module of at most ~2e-6 (24 layers, 256 tokens: the same), so 1e-4 leaves room for other CPUs' sum
 * orders and fails any difference in the reduction's definition (a missing abs, a mean over other positions, another
 * scale: all are O(1)). In bf16 each side rounds its activations and gradients in its own order: bound 5e-2
 * (measured 1.3e-2 at 2 layers, 2.4e-2 at 24). Skipped when /usr/bin/python3 cannot import torch; the bf16 half is
 * skipped where libtorch's own CPU bf16 products accumulate in bf16 (AVX2 CPUs on libtorch 1.13): PyTorch's side
 * runs those, ours computes them in float32 there (f32Products), so the reference is the inaccurate one (measured
 * 5-8% apart on a Zen 3, 2026-12-05).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { Tensor, bf16ProductsAccumulateF32 } from "../../src/tensor/index.js";
import { benchIds, emptyPassSums, identificationPass, passScores } from "../../bench/pass.js";
import { compareScores, type ScoresFile } from "../../bench/scores.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const PY = "/usr/bin/python3";
const T = 64;
const hasTorch = spawnSync(PY, ["-c", "import torch"], { encoding: "utf8" }).status === 0;

test(
  "identify()'s per-neuron importances equal PyTorch's hook reduction (Qwen2.5-0.5B widths, 2 layers; float32 and bf16)",
  { skip: hasTorch ? false : `${PY} cannot import torch` },
  (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gv-idtorch-"));
    try {
      const r = spawnSync(process.execPath, [path.join(ROOT, "dist/bench/make-random-model.js"), dir, "2"], {
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stderr);
      for (const [dtype, bound] of [
        ["float32", 1e-4],
        ["bfloat16", 5e-2],
      ] as const) {
        if (dtype === "bfloat16" && !bf16ProductsAccumulateF32()) {
          t.diagnostic("bf16 half skipped: libtorch's own CPU bf16 products accumulate in bf16 here");
          continue;
        }
        const model = loadModel(dir, { dtype });
        const sums = emptyPassSums(model);
        const ours = identificationPass(
          model,
          benchIds(T, model.cfg.vocabSize),
          Tensor.fromArray([42], [1], "int64"),
          "labels",
          "hook",
          sums,
        );
        const file = path.join(dir, `torch-${dtype}.json`);
        const py = spawnSync(
          PY,
          [
            path.join(ROOT, "bench/torch_reference.py"),
            "fwdbwd",
            ...["--model", dir, "--dtype", dtype, "--tokens", String(T), "--passes", "1", "--threads", "1"],
            ...["--scores", file],
          ],
          { encoding: "utf8" },
        );
        assert.equal(py.status, 0, py.stderr);
        const theirs = JSON.parse(fs.readFileSync(file, "utf8")) as ScoresFile;
        const { rows, missing } = compareScores(passScores(sums), theirs.modules);
        assert.deepEqual(missing, []);
        assert.equal(rows.length, model.linears().length);
        const far = rows.filter((x) => !(x.relL2 <= bound)).map((x) => `${x.name} ${x.relL2}`);
        assert.deepEqual(
          far,
          [],
          `${dtype}: modules whose scores differ from PyTorch's by more than ${bound}`,
        );
        if (dtype === "float32") assert.ok(Math.abs(ours.loss - theirs.loss) <= 1e-5 * Math.abs(theirs.loss));
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
