/**
 * Writes a random-weight checkpoint in Qwen2.5-0.5B's shape: config.json + model.safetensors, bf16, N(0, 0.02²)
 * for matrices and ones for norms (as HF initialises them). Run by common.ts's randomModelDir in a child process.
 *
 *   node dist/bench/make-random-model.js <out-dir> [numLayers=24] [shape=0.5b|7b|host] [device=cpu|cuda]
 *
 * 7b: Qwen2.5-7B's widths (hidden 3584, MLP 18944, 28 heads of 128, 4 KV heads, vocabulary 152064) with the
 * embeddings tied (Qwen2.5-7B unties them; bench/torch_reference.py's model ties them), for the GPU benchmarks.
 * host: tiny widths (hidden 128, MLP 512, 4 heads of 32, 2 KV heads, vocabulary 2048) with the same ops per layer, so a
 * step's time is what each op costs the host (binding, dispatch, autograd) rather than its arithmetic: the regime
 * the H200 showed at 7B widths, where a GPU layer takes less time than the host needs to issue it.
 * device: where the random numbers are drawn (cuda: seconds instead of a minute for the 7B widths; other values
 * than the CPU's draw, which does not matter to a benchmark that reads the same file on both sides).
 */
import * as path from "node:path";
import { writeFileAtomic } from "../src/io/atomic.js";
import { writeModelWeights, type TensorToWrite } from "../src/io/safetensors.js";
import { Tensor, manualSeed, noGrad, resolveDevice, tidy } from "../src/tensor/index.js";
import { qwen25HalfBConfig } from "./common.js";
import { benchArgs, benchUsageError } from "./args.js";

function main(): void {
  const { positionals } = benchArgs(import.meta.url, { allowPositionals: true, options: {} });
  const [dir, layersArg, shape = "0.5b", deviceArg = "cpu"] = positionals;
  if (!dir) benchUsageError(import.meta.url, "no <out-dir> given");
  if (positionals.length > 4)
    benchUsageError(
      import.meta.url,
      `at most four arguments (out-dir, numLayers, shape, device), got ${positionals.length}`,
    );
  if (shape !== "0.5b" && shape !== "7b" && shape !== "host")
    benchUsageError(import.meta.url, `shape must be 0.5b, 7b or host, got ${shape}`);
  const device = resolveDevice(deviceArg);
  const numLayers = Number(layersArg ?? 24);
  if (!Number.isInteger(numLayers) || numLayers < 0)
    benchUsageError(import.meta.url, `numLayers must be a whole number, got ${layersArg}`);
  const cfg = qwen25HalfBConfig(numLayers);
  if (shape === "7b")
    Object.assign(cfg, {
      hidden_size: 3584,
      intermediate_size: 18944,
      num_attention_heads: 28,
      num_key_value_heads: 4,
      vocab_size: 152064,
      max_window_layers: numLayers,
    });
  if (shape === "host")
    Object.assign(cfg, {
      hidden_size: 128,
      intermediate_size: 512,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 2048,
      max_window_layers: numLayers,
    });
  const H = cfg.hidden_size as number;
  const I = cfg.intermediate_size as number;
  const V = cfg.vocab_size as number;
  const heads = cfg.num_attention_heads as number;
  const kvHeads = cfg.num_key_value_heads as number;
  const D = H / heads;
  const shapes: [string, number[], "randn" | "ones"][] = [["model.embed_tokens.weight", [V, H], "randn"]];
  for (let i = 0; i < numLayers; i++) {
    const p = `model.layers.${i}`;
    shapes.push(
      [`${p}.input_layernorm.weight`, [H], "ones"],
      [`${p}.post_attention_layernorm.weight`, [H], "ones"],
      [`${p}.self_attn.q_proj.weight`, [heads * D, H], "randn"],
      [`${p}.self_attn.q_proj.bias`, [heads * D], "randn"],
      [`${p}.self_attn.k_proj.weight`, [kvHeads * D, H], "randn"],
      [`${p}.self_attn.k_proj.bias`, [kvHeads * D], "randn"],
      [`${p}.self_attn.v_proj.weight`, [kvHeads * D, H], "randn"],
      [`${p}.self_attn.v_proj.bias`, [kvHeads * D], "randn"],
      [`${p}.self_attn.o_proj.weight`, [H, heads * D], "randn"],
      [`${p}.mlp.gate_proj.weight`, [I, H], "randn"],
      [`${p}.mlp.up_proj.weight`, [I, H], "randn"],
      [`${p}.mlp.down_proj.weight`, [H, I], "randn"],
    );
  }
  shapes.push(["model.norm.weight", [H], "ones"]);
  manualSeed(0);
  const tensors: TensorToWrite[] = shapes.map(([name, shape, init]) => ({
    name,
    dtype: "BF16",
    shape,
    data: noGrad(() =>
      tidy(() =>
        (init === "ones"
          ? Tensor.ones(shape, "bfloat16")
          : Tensor.randn(shape, "bfloat16", device).mul(0.02)
        ).toBytes(),
      ),
    ),
  }));
  writeModelWeights(dir, tensors, { maxShardBytes: Number.MAX_SAFE_INTEGER });
  writeFileAtomic(path.join(dir, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
  const bytes = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  console.error(`wrote ${dir}: ${tensors.length} tensors, ${(bytes / 1024 ** 3).toFixed(2)} GiB`);
}

main();
