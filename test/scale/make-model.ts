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
import { writeModelWeights, type LazyTensorToWrite } from "../../src/io/safetensors.js";
import { checkpointTensors, tokenizerDir, type ScaleModelSpec } from "./models.js";
import { constantBf16, randomNormalBf16 } from "./random-bf16.js";

function make(spec: ScaleModelSpec, dir: string): void {
  const tokDir = tokenizerDir(spec.tokenizer);
  if (!tokDir) throw new Error(`the tokenizer package(s) of ${spec.tokenizer} are not installed`);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  // each tensor drawn from its own stream (its index) and written a few MiB at a time, so the child holds one part
  const tensors: LazyTensorToWrite[] = checkpointTensors(spec.config, spec.multimodal).map(
    ([name, shape, init], stream) => {
      const count = shape.reduce((a, b) => a * b, 1);
      return {
        name,
        dtype: "BF16",
        shape,
        bytes: () =>
          init === "randn"
            ? randomNormalBf16(count, 0.02, spec.seed, stream)
            : constantBf16(count, init === "ones" ? 1 : 0),
      };
    },
  );
  writeModelWeights(tmp, tensors, { maxShardBytes: spec.shardBytes ?? Number.MAX_SAFE_INTEGER });
  writeFileAtomic(path.join(tmp, "config.json"), JSON.stringify(spec.config, null, 2) + "\n");
  writeFileAtomic(
    path.join(tmp, "generation_config.json"),
    JSON.stringify(spec.generationConfig, null, 2) + "\n",
  );
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(tokDir, f), path.join(tmp, f));
  if (spec.multimodal) writeProcessorFiles(spec, tokDir, tmp);
  // another process may have published the same model meanwhile: theirs is identical (same seed)
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(dir, "config.json"))) throw e;
  }
  const bytes = tensors.reduce((a, t) => a + 2 * t.shape.reduce((x, y) => x * y, 1), 0);
  process.stderr.write(`made ${dir}: ${tensors.length} tensors, ${(bytes / 1024 ** 3).toFixed(2)} GiB\n`);
}

/**
 * The image side of a multimodal Gemma3 folder as google/gemma-3-4b-it publishes it (sized to the spec's vision
 * tower): the image processor's settings, the processor's, and the processor's chat template (chat_template.json
 * as published; transformers >= 4.52 saves it as chat_template.jinja).
 */
function writeProcessorFiles(spec: ScaleModelSpec, tokDir: string, dir: string): void {
  const v = spec.config.vision_config as Record<string, number>;
  const tokens = spec.config.mm_tokens_per_image as number;
  const json = (name: string, value: unknown) =>
    writeFileAtomic(path.join(dir, name), JSON.stringify(value, null, 2) + "\n");
  json("preprocessor_config.json", {
    do_convert_rgb: null,
    do_normalize: true,
    do_pan_and_scan: null,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_processor_type: "Gemma3ImageProcessor",
    image_seq_length: tokens,
    image_std: [0.5, 0.5, 0.5],
    pan_and_scan_max_num_crops: null,
    pan_and_scan_min_crop_size: null,
    pan_and_scan_min_ratio_to_activate: null,
    processor_class: "Gemma3Processor",
    resample: 2,
    rescale_factor: 0.00392156862745098,
    size: { height: v.image_size, width: v.image_size },
  });
  json("processor_config.json", { image_seq_length: tokens, processor_class: "Gemma3Processor" });
  const template = (
    JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer_config.json"), "utf8")) as {
      chat_template: string;
    }
  ).chat_template;
  if (spec.multimodal === "language_model") json("chat_template.json", { chat_template: template });
  else writeFileAtomic(path.join(dir, "chat_template.jinja"), template);
}

const [specFile, dir] = process.argv.slice(2);
if (specFile && dir) make(JSON.parse(fs.readFileSync(specFile, "utf8")) as ScaleModelSpec, dir);
