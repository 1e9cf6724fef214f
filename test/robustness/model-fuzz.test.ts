/**
 * Bounded seeded fuzz of model folders as a careless or hostile user makes them: config.json edits (sizes,
 * layer counts, flags, prototype names and keys) and weight edits (dropped, renamed, reshaped, retyped,
 * non-finite or extra tensors), alone and together, on every family's PyTorch fixture. Contract: the config
 * and the weights are refused with an InputError naming the folder or file, or they are accepted and then the
 * model builds and a forward pass gives finite logits of shape [1, T, vocab]; Object.prototype is never touched.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../src/errors.js";
import { parseModelConfig } from "../../src/io/config.js";
import { checkWeights } from "../../src/io/model-folder.js";
import { openModelWeights, type StDtype, type TensorRecord } from "../../src/io/safetensors.js";
import { buildModel } from "../../src/models/load.js";
import { Tensor, noGrad, tidy } from "../../src/tensor/index.js";
import { createRng, type Rng } from "../../src/util/random.js";
import { FAMILIES, FIXTURES } from "../io/helpers.js";

const CASES_PER_FAMILY = 120;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)]!;

const SIZE_KEYS = [
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
];
const PROTO = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf"];

/** A config edit: a size off by a little or a lot, a flag flipped, a prototype name or key. */
function mutateConfig(rng: Rng, cfg: Record<string, unknown>): string {
  switch (rng.int(7)) {
    case 0:
    case 1: {
      const k = pick(rng, SIZE_KEYS);
      const v = typeof cfg[k] === "number" ? (cfg[k] as number) : 8;
      cfg[k] = pick(rng, [v + 1, v - 1, v * 2, Math.floor(v / 2), 0, 1, 1e9, 2 ** 53, -v, 2.5, `${v}`, null]);
      return `${k}=${JSON.stringify(cfg[k])}`;
    }
    case 2:
      cfg.tie_word_embeddings = !(cfg.tie_word_embeddings ?? false);
      return "tie flipped";
    case 3:
      cfg[pick(rng, ["attention_bias", "mlp_bias"])] = true;
      return "bias on";
    case 4:
      cfg[pick(rng, ["model_type", "torch_dtype", "hidden_act", "hidden_activation"])] = pick(rng, PROTO);
      return "prototype name as a value";
    case 5: {
      // a prototype key at the top or one level down (own property, as JSON.parse makes it)
      const holder =
        rng.next() < 0.5 ? cfg : ((cfg.rope_scaling = { rope_type: "default" }) as Record<string, unknown>);
      Object.defineProperty(holder, pick(rng, PROTO.slice(0, 3)), {
        value: { polluted: true },
        enumerable: true,
        writable: true,
        configurable: true,
      });
      return "prototype key";
    }
    default:
      cfg.rms_norm_eps = pick(rng, [1e-5, 1e-6, 0.1]);
      return "harmless edit";
  }
}

/** A weights edit: one tensor dropped, renamed, reshaped, retyped, poisoned, or one tensor too many. */
function mutateWeights(rng: Rng, tensors: Map<string, TensorRecord>): string {
  const names = [...tensors.keys()];
  const name = pick(rng, names);
  const rec = tensors.get(name)!;
  const copy = (r: Partial<TensorRecord>): TensorRecord => ({ ...rec, data: Buffer.from(rec.data), ...r });
  switch (rng.int(7)) {
    case 0:
      tensors.delete(name);
      return `drop ${name}`;
    case 1:
      tensors.delete(name);
      tensors.set(`${name}.x`, copy({ name: `${name}.x` }));
      return `rename ${name}`;
    case 2:
      if (rec.shape.length === 2) tensors.set(name, copy({ shape: [rec.shape[1]!, rec.shape[0]!] }));
      else tensors.set(name, copy({ shape: [1, ...rec.shape] }));
      return `reshape ${name}`;
    case 3: {
      // same bytes, another dtype of the same width (I32/U8 views, or a 1-D flattening for 2-byte types)
      const dtype = pick(rng, ["I32", "U8", "I16"] as StDtype[]);
      const width = { I32: 4, U8: 1, I16: 2 }[dtype as "I32" | "U8" | "I16"];
      const n = rec.data.byteLength / width;
      tensors.set(name, copy({ dtype, shape: dtype === "I32" ? rec.shape : [n] }));
      return `retype ${name} ${dtype}`;
    }
    case 4: {
      const r = copy({});
      r.data.writeFloatLE(pick(rng, [NaN, Infinity, -Infinity]), 4 * rng.int(r.data.byteLength / 4));
      tensors.set(name, r);
      return `poison ${name}`;
    }
    case 5:
      tensors.set(`model.layers.${pick(rng, [0, 9, 99])}.extra.weight`, copy({ name: "extra" }));
      return "extra tensor";
    default:
      return "weights unchanged";
  }
}

function forwardIsFinite(cfg: ReturnType<typeof parseModelConfig>, tensors: Map<string, TensorRecord>): void {
  const model = buildModel(cfg, tensors, "fuzz", { dtype: "float32" });
  const ids = [1, 2, 3, 4, 5].map((i) => i % cfg.vocabSize);
  const ok = noGrad(() =>
    tidy(() => {
      const logits = model.forward(Tensor.fromArray(ids, [1, ids.length], "int64"));
      assert.deepEqual(logits.shape, [1, ids.length, cfg.vocabSize]);
      return logits.isfinite().logicalNot().sum().item() === 0;
    }),
  );
  assert.ok(ok, "an accepted model gave non-finite logits");
}

for (const family of FAMILIES) {
  test(
    `fuzz ${family}: ${CASES_PER_FAMILY} malformed model folders are refused or load and run`,
    { timeout: 300_000 },
    () => {
      const dir = path.join(FIXTURES, family);
      const rawText = fs.readFileSync(path.join(dir, "config.json"), "utf8");
      const stored = openModelWeights(dir).tensors;
      const kinds = new Map<string, number>();
      const failures: string[] = [];
      for (let i = 0; i < CASES_PER_FAMILY; i++) {
        const rng = createRng(7_000_003 * (FAMILIES.indexOf(family) + 1) + i);
        const cfgJson = JSON.parse(rawText) as Record<string, unknown>;
        const tensors = new Map(stored);
        const edits: string[] = [];
        const what = rng.int(3); // 0: config only, 1: weights only, 2: both
        if (what !== 1) edits.push(mutateConfig(rng, cfgJson));
        if (what !== 0) edits.push(mutateWeights(rng, tensors));
        const label = `${family} #${i} (${edits.join("; ")})`;
        try {
          const cfg = parseModelConfig(cfgJson, `${family}/config.json`);
          checkWeights(cfg, tensors, `${family}-folder`);
          forwardIsFinite(cfg, tensors);
          kinds.set("accepted", (kinds.get("accepted") ?? 0) + 1);
        } catch (e) {
          if (e instanceof InputError) {
            if (!/config\.json|-folder|fixtures/.test(e.message))
              failures.push(`${label}: the error names no file: ${e.message.slice(0, 160)}`);
            kinds.set("refused", (kinds.get("refused") ?? 0) + 1);
          } else failures.push(`${label}: threw ${e instanceof Error ? e.stack : String(e)}`);
        }
        if (
          Object.keys(Object.prototype).length > 0 ||
          ({} as Record<string, unknown>).polluted !== undefined
        )
          failures.push(`${label}: Object.prototype was polluted`);
      }
      assert.deepEqual(failures.slice(0, 5), [], `${failures.length} cases broke the contract`);
      // both outcomes must occur, or the fuzz tests nothing
      assert.ok((kinds.get("refused") ?? 0) > CASES_PER_FAMILY / 3, JSON.stringify([...kinds]));
      assert.ok((kinds.get("accepted") ?? 0) > 0, JSON.stringify([...kinds]));
    },
  );
}
