/**
 * Child process of models.ts: writes one spec's model folder.
 *
 *   node dist/test/scale/make-model.js <spec.json> <out-dir>
 *
 * (node --test also runs every file under a test/ folder: without arguments this does nothing.)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../../src/io/atomic.js";
import { writeModelWeights, type TensorToWrite } from "../../src/io/safetensors.js";
import { Tensor, manualSeed, noGrad, tidy } from "../../src/tensor/index.js";
import { checkpointTensors, tokenizerDir, type ScaleModelSpec } from "./models.js";

function make(spec: ScaleModelSpec, dir: string): void {
  const tokDir = tokenizerDir(spec.tokenizer);
  if (!tokDir) throw new Error(`the tokenizer package(s) of ${spec.tokenizer} are not installed`);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  manualSeed(spec.seed);
  const tensors: TensorToWrite[] = checkpointTensors(spec.config).map(([name, shape, init]) => ({
    name,
    dtype: "BF16",
    shape,
    data: noGrad(() =>
      tidy(() =>
        (init === "ones"
          ? Tensor.ones(shape, "bfloat16")
          : init === "zeros"
            ? Tensor.zeros(shape, "bfloat16")
            : Tensor.randn(shape, "bfloat16").mul(0.02)
        ).toBytes(),
      ),
    ),
  }));
  writeModelWeights(tmp, tensors, { maxShardBytes: spec.shardBytes ?? Number.MAX_SAFE_INTEGER });
  writeFileAtomic(path.join(tmp, "config.json"), JSON.stringify(spec.config, null, 2) + "\n");
  writeFileAtomic(
    path.join(tmp, "generation_config.json"),
    JSON.stringify(spec.generationConfig, null, 2) + "\n",
  );
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(tokDir, f), path.join(tmp, f));
  // another process may have published the same model meanwhile: theirs is identical (same seed)
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(dir, "config.json"))) throw e;
  }
  const bytes = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  process.stderr.write(`made ${dir}: ${tensors.length} tensors, ${(bytes / 1024 ** 3).toFixed(2)} GiB\n`);
}

const [specFile, dir] = process.argv.slice(2);
if (specFile && dir) make(JSON.parse(fs.readFileSync(specFile, "utf8")) as ScaleModelSpec, dir);
