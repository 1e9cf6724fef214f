/**
 * A multimodal Gemma3 checkpoint (Gemma3ForConditionalGeneration: the text model under a prefix, a vision tower
 * and a projector beside it) hardened and adapted as a user ships it: the fold writes the input's own tensor
 * names, layout and vision tensors, with the text model's tensors exactly what the same training folds into the
 * text-only model (the reference: the gemma3 fixture, whose weights the multimodal folders here hold under
 * both prefixes); the processor files travel with it; the PEFT adapter names the modules by their path in the
 * model transformers builds from the folder, and leaves the vision tower out.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { loadModel } from "../../src/models/index.js";
import { loadedParamCount } from "../../src/models/load.js";
import { AdamW, Tensor, noGrad } from "../../src/tensor/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { attachLora } from "../../src/method/lora/model.js";
import { attachPeftAdapter } from "../../src/method/lora/model.js";
import { attachFull } from "../../src/method/full.js";
import { sftLossHead } from "../../src/method/losses.js";
import { readPeftAdapter, writePeftAdapter } from "../../src/method/lora/peft.js";
import { foldIntoCheckpoint } from "../../src/method/fold.js";
import {
  openModelWeights,
  readSafetensors,
  writeModelWeights,
  writeSafetensors,
} from "../../src/io/safetensors.js";
import { countParams, type AttachedMethod } from "../../src/method/attached.js";
import { fixtureSelections } from "./goodvibe-fixture.js";
import { maxAbsDiff } from "../numeric.js";

const TEXT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures/gemma3");
const ts = readFixtureJson(path.join(TEXT, "train_step.json.gz")) as {
  sft_batch: { input_ids: number[][]; labels: number[][] };
  cluster: { selection: Record<string, { rows: number[]; clusters: number[]; n_clusters: number }> };
  lora: { r: number; lora_alpha: number; A_init: Record<string, number[][]> };
};
const work = scratchDir("gv-gemma3-mm-");

type Layout = "language_model.model." | "model.language_model.";
/** The vision side by transformers' names (SigLIP tower, projector), small; its prefix follows the layout. */
const VISION = [
  ["vision_tower.vision_model.embeddings.patch_embedding.weight", [8, 3, 2, 2]],
  ["vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight", [8, 8]],
  ["vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.bias", [8]],
  ["vision_tower.vision_model.post_layernorm.weight", [8]],
  ["multi_modal_projector.mm_input_projection_weight", [8, 64]],
  ["multi_modal_projector.mm_soft_emb_norm.weight", [8]],
] as const;
const PROCESSOR_FILES = {
  "preprocessor_config.json": '{"image_processor_type": "Gemma3ImageProcessor", "image_seq_length": 4}\n',
  "processor_config.json": '{"image_seq_length": 4, "processor_class": "Gemma3Processor"}\n',
  "chat_template.json": '{"chat_template": "{{ bos_token }}"}\n',
};

/** The gemma3 fixture as a Gemma3ForConditionalGeneration folder in `layout`. */
function multimodalFolder(layout: Layout): string {
  const dir = path.join(work, layout.replace(/\./g, "_"));
  if (fs.existsSync(dir)) return dir;
  fs.mkdirSync(dir);
  const text = JSON.parse(fs.readFileSync(path.join(TEXT, "config.json"), "utf8")) as Record<string, unknown>;
  const config = {
    architectures: ["Gemma3ForConditionalGeneration"],
    model_type: "gemma3",
    text_config: text,
    vision_config: { model_type: "siglip_vision_model", hidden_size: 8, num_hidden_layers: 1 },
    torch_dtype: "float32",
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  for (const [name, body] of Object.entries(PROCESSOR_FILES)) fs.writeFileSync(path.join(dir, name), body);
  const visionPrefix = layout === "model.language_model." ? "model." : "";
  let k = 0;
  writeModelWeights(dir, [
    ...VISION.map(([name, shape]) => {
      const v = Float32Array.from(
        { length: shape.reduce((a: number, b: number) => a * b, 1) },
        () => ++k / 1000,
      );
      return {
        name: visionPrefix + name,
        dtype: "F32" as const,
        shape: [...shape],
        data: new Uint8Array(v.buffer),
      };
    }),
    ...[...openModelWeights(TEXT).tensors.values()].map((r) => ({
      ...r,
      name: layout + r.name.slice("model.".length),
    })),
  ]);
  return dir;
}

const batch = () => ({
  ids: Tensor.fromArray(ts.sft_batch.input_ids.flat(), [2, 16], "int64"),
  labels: Tensor.fromArray(ts.sft_batch.labels.flat(), [2, 16], "int64"),
});

/** Attach `method` to the model of `dir`, train it three steps on the fixture's batch (deterministic). */
function trained(dir: string, method: "goodvibe" | "lora" | "full"): AttachedMethod {
  const model = loadModel(dir);
  let m: AttachedMethod;
  if (method === "goodvibe") {
    m = attachGoodVibe(model, fixtureSelections(ts.cluster.selection));
  } else if (method === "lora") m = attachLora(model, loraCfg(), loraInit());
  else m = attachFull(model);
  const b = batch();
  const opt = new AdamW([...m.trainable.values()], { lr: 1e-2, weightDecay: 0 });
  for (let s = 0; s < 3; s++) {
    model.forwardBackward(b.ids, {}, sftLossHead(model, b.labels));
    opt.step();
    opt.zeroGrad();
  }
  return m;
}
const loraCfg = () => ({
  r: ts.lora.r,
  alpha: ts.lora.lora_alpha,
  dropout: 0,
  targetModules: ["q_proj", "v_proj"],
});
function loraInit(): Map<string, Tensor> {
  const init = new Map<string, Tensor>();
  for (const [mod, a] of Object.entries(ts.lora.A_init))
    init.set(`${mod}.lora_A`, Tensor.fromArray(a.flat(), [a.length, a[0]!.length]));
  return init;
}

for (const layout of ["language_model.model.", "model.language_model."] as const) {
  for (const method of ["goodvibe", "lora", "full"] as const) {
    test(`${layout}* ${method}: the fold keeps the input's names and vision tower, and changes the text model as the text-only fold does`, async () => {
      const mm = multimodalFolder(layout);
      const outMm = path.join(work, `out-${method}-${layout}`);
      const outText = path.join(work, `out-${method}-${layout}-text`);
      const stats = await foldIntoCheckpoint(mm, outMm, trained(mm, method));
      const ref = await foldIntoCheckpoint(TEXT, outText, trained(TEXT, method));
      assert.ok(stats.tensorsChanged > 0, "nothing was folded into the multimodal checkpoint");
      assert.equal(stats.tensorsChanged, ref.tensorsChanged);
      assert.equal(stats.visionTensors, VISION.length, "the vision side is counted as carried");
      assert.equal(ref.visionTensors, undefined);
      assert.equal(stats.rowsChanged, ref.rowsChanged);
      const input = openModelWeights(mm).tensors;
      const got = openModelWeights(outMm).tensors;
      const want = openModelWeights(outText).tensors;
      assert.deepEqual([...got.keys()], [...input.keys()], "the input's tensor names, in its order");
      let changed = 0;
      for (const [name, rec] of got) {
        assert.equal(rec.dtype, input.get(name)!.dtype, name);
        assert.deepEqual(rec.shape, input.get(name)!.shape, name);
        if (!name.startsWith(layout)) {
          assert.ok(rec.data.equals(input.get(name)!.data), `${name}: the vision side is carried unchanged`);
          continue;
        }
        const text = want.get(`model.${name.slice(layout.length)}`)!;
        assert.ok(rec.data.equals(text.data), `${name}: as the text-only fold writes it`);
        if (!rec.data.equals(input.get(name)!.data)) changed++;
      }
      assert.equal(changed, ref.tensorsChanged);
      for (const f of ["config.json", ...Object.keys(PROCESSOR_FILES)])
        assert.ok(
          fs.readFileSync(path.join(outMm, f)).equals(fs.readFileSync(path.join(mm, f))),
          `${f} is carried unchanged`,
        );
    });
  }

  test(`${layout}* the loaded parameters are the text model's (an experiment's base and method cells count these)`, () => {
    const mm = multimodalFolder(layout);
    const loaded = countParams(loadModel(mm).parameters().values());
    assert.equal(loaded, countParams(loadModel(TEXT).parameters().values()));
    assert.equal(loadedParamCount(mm), loaded);
  });

  test(`${layout}* PEFT adapter: keys by the module path transformers >= 4.52 builds from either layout, target and rank patterns both layouts match, the vision tower excluded; it reads back onto the model`, () => {
    const mm = multimodalFolder(layout);
    const m = trained(mm, "lora");
    const cfg = { ...loraCfg(), rankPattern: { "model.layers.1.self_attn.q_proj": ts.lora.r } };
    const out = path.join(work, `peft-${layout}`);
    writePeftAdapter(out, cfg, m, mm);
    const keys = [...readSafetensors(path.join(out, "adapter_model.safetensors")).tensors.keys()];
    const modules = [...m.trainable.keys()].map((k) => k.replace(/\.lora_[AB]$/, ""));
    assert.deepEqual(
      keys.sort(),
      [...m.trainable.keys()]
        .map(
          // model.language_model.… for google's layout too: PEFT 0.21 on transformers 5.17 loaded none of the
          // tensors keyed by the folder's language_model.model.… (the GPU machine's round trip, BENCHMARKS "CUDA")
          (k) =>
            `base_model.model.model.language_model.${k.slice("model.".length).replace(/(lora_[AB])$/, "$1.weight")}`,
        )
        .sort(),
    );
    const c = JSON.parse(fs.readFileSync(path.join(out, "adapter_config.json"), "utf8")) as Record<
      string,
      unknown
    >;
    assert.deepEqual(c.target_modules, ["q_proj", "v_proj"]);
    assert.deepEqual(c.rank_pattern, { "layers.1.self_attn.q_proj": ts.lora.r });
    const exclude = new RegExp(`^(?:${c.exclude_modules as string})$`);
    // PEFT's matching (check_target_module_exists, get_pattern_key) on the module paths of both transformers
    // generations: every adapted text module is targeted, none of the vision tower is
    for (const prefix of ["language_model.model.", "model.language_model."]) {
      for (const mod of modules) {
        const p = prefix + mod.slice("model.".length);
        assert.ok(!exclude.test(p), p);
        assert.ok(
          (c.target_modules as string[]).some((t) => p.endsWith(`.${t}`)),
          p,
        );
      }
      assert.ok(
        new RegExp(`^(.*\\.)?(layers.1.self_attn.q_proj)$`).test(`${prefix}layers.1.self_attn.q_proj`),
      );
    }
    for (const vision of [
      "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj",
      "model.vision_tower.vision_model.encoder.layers.0.self_attn.v_proj",
    ])
      assert.ok(exclude.test(vision), vision);
    // read back: the project's names, the same update as the trained adapter on the text-only model
    const back = readPeftAdapter(out);
    assert.deepEqual([...back.init.keys()].sort(), [...m.trainable.keys()].sort());
    const ids = batch().ids;
    const adapted = noGrad(() => {
      const model = loadModel(mm);
      attachPeftAdapter(model, back);
      return model.forward(ids).toFloat32Array();
    });
    const reference = noGrad(() => {
      const model = loadModel(TEXT);
      attachLora(model, loraCfg(), new Map([...m.trainable].map(([k, v]) => [k, v.detach()])));
      return model.forward(ids).toFloat32Array();
    });
    assert.ok(maxAbsDiff(adapted, reference) < 1e-6);
    // an adapter PEFT put on the vision tower too (suffix targets without exclude_modules) is refused, said why
    const withVision = path.join(work, `peft-vision-${layout}`);
    fs.cpSync(out, withVision, { recursive: true });
    const file = path.join(withVision, "adapter_model.safetensors");
    const vision = `${layout === "model.language_model." ? "model." : ""}vision_tower.vision_model.encoder.layers.0.self_attn.q_proj`;
    writeSafetensors(file, [
      ...readSafetensors(file).tensors.values(),
      {
        name: `base_model.model.${vision}.lora_A.weight`,
        dtype: "F32",
        shape: [2, 8],
        data: new Uint8Array(64),
      },
    ]);
    assert.throws(
      () => readPeftAdapter(withVision),
      (e: Error) => {
        assert.match(e.message, /adapts the image side of a multimodal model.*merge_and_unload/);
        assert.ok(e.message.includes(vision));
        return true;
      },
    );
  });
}
