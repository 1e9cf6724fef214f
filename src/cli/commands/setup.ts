/** goodvibe's optional parts: check what this machine has, and install llama.cpp (CPU by default). */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { Option, type Command } from "commander";
import { ResourceError } from "../../errors.js";
import {
  installLlamaCppRuntime,
  llamaCppRuntimeDir,
  llamaCppVersion,
  loadNodeLlamaCpp,
  type LlamaGpu,
} from "../../eval/generate/llamacpp-runtime.js";
import { PACKAGE, PACKAGE_ROOT } from "../../util/package-info.js";
import { output, runCommand } from "../common.js";

export function registerSetup(program: Command): void {
  const setup = program
    .command("setup")
    .description(
      "check goodvibe's native parts (libtorch addon, llama.cpp) and install the optional llama.cpp",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe setup check\n  goodvibe setup addon\n  goodvibe setup llamacpp --gpu cuda",
    );

  setup
    .command("check")
    .description("what this installation can run: the libtorch addon (required) and llama.cpp (optional)")
    .addHelpText("after", "\nExample:\n  goodvibe setup check --json")
    .action(async () => {
      const g = program.opts();
      await runCommand(g, async () => {
        const torch = await probe(async () => {
          const { native } = await import("../../tensor/native.js");
          const { bf16ProductsDecision, describeBf16Products } = await import("../../tensor/tensor.js");
          const d = bf16ProductsDecision();
          return {
            libtorch: native.version(),
            cuda: native.cudaAvailable(),
            // measured by the addon (probe, then timed products): how CPU bf16 products are computed here and which
            // reason decided (tensor.ts f32Products, bf16ProductsDecision)
            bf16Products: {
              libtorchAccumulatesF32: d.accurate,
              computedInF32: native.f32Products(),
              reason: d.reason,
              libtorchSeconds: d.ownSeconds,
              f32Seconds: d.f32Seconds,
              nativeBf16: d.nativeBf16,
              text: describeBf16Products(),
            },
          };
        });
        const llama = await probe(async () => {
          const m = await loadNodeLlamaCpp();
          const llama = await m.getLlama({
            gpu: false,
            build: "never",
            skipDownload: true,
            progressLogs: false,
          });
          const info = { buildType: llama.buildType, gpu: llama.gpu };
          await llama.dispose();
          return info;
        });
        const lines = [
          `goodvibe ${PACKAGE.version}`,
          torch.ok
            ? `libtorch addon: ok (libtorch ${torch.value.libtorch}, CUDA ${torch.value.cuda ? "available" : "not available"})`
            : `libtorch addon: MISSING — ${torch.error}`,
          ...(torch.ok ? [torch.value.bf16Products.text] : []),
          llama.ok
            ? `llama.cpp (optional): ok (node-llama-cpp, ${llama.value.buildType} binaries)`
            : `llama.cpp (optional): not installed — ${llama.error}`,
        ];
        output(g, lines.join("\n"), {
          version: PACKAGE.version,
          addon: torch.ok ? { ok: true, ...torch.value } : { ok: false, error: torch.error },
          llamacpp: llama.ok ? { ok: true, ...llama.value } : { ok: false, error: llama.error },
        });
        // the addon is what every command needs: its absence is the machine lacking something
        if (!torch.ok) process.exitCode = 3;
      });
    });

  setup
    .command("addon")
    .description(
      "build the libtorch addon every tensor operation needs (what goodvibe's install script does)",
    )
    .option("--force", "rebuild even when an addon for the same sources, libtorch and Node is there")
    .addHelpText(
      "after",
      `
It finds libtorch as the install does: LIBTORCH, else a Python torch, else Debian's libtorch-dev; it needs a
C++ toolchain (build-essential, python3). Use it when npm skipped goodvibe's install script (--ignore-scripts,
an allowScripts policy, GOODVIBE_SKIP_NATIVE=1) or after installing or moving libtorch.

Examples:
  goodvibe setup addon
  goodvibe setup addon --force     # with LIBTORCH=/path/to/libtorch in the environment: build against that one`,
    )
    .action(async (opts: { force?: boolean }) => {
      const g = program.opts();
      await runCommand(g, async () => {
        const script = path.join(PACKAGE_ROOT, "scripts", "build-native.mjs");
        const r = spawnSync(process.execPath, [script, ...(opts.force ? ["--force"] : [])], {
          stdio: ["ignore", "inherit", "inherit"],
          env: { ...process.env, GOODVIBE_SKIP_NATIVE: "" },
        });
        if (r.status !== 0) throw new ResourceError("the libtorch addon was not built (the reason is above)");
        output(g, "libtorch addon: ready", { ok: true });
      });
    });

  setup
    .command("llamacpp")
    .description(
      `install node-llama-cpp ${llamaCppVersion()} for the llama.cpp backend: this platform's CPU binaries, plus a GPU build with --gpu`,
    )
    .addOption(
      new Option("--gpu <kind>", "also install this GPU build (Linux and Windows x64)").choices([
        "cuda",
        "vulkan",
      ]),
    )
    .addHelpText(
      "after",
      `
It installs into ${llamaCppRuntimeDir()}
(GOODVIBE_LLAMA_CPP_DIR sets another folder, for this command and for the backend that loads it).
A node-llama-cpp installed in your own project (npm i node-llama-cpp@${llamaCppVersion()}) is used first; it
brings every GPU build npm finds for the platform (about 670 MB on Linux x64), this command only the ones asked for.
npm reads its usual settings (registry, proxy, cache; npm_config_prefer_offline=true to use the cache).

Examples:
  goodvibe setup llamacpp
  goodvibe setup llamacpp --gpu cuda && goodvibe generate --backend llamacpp --llama-gpu cuda --gguf m.gguf -m ./m -p "..."`,
    )
    .action(async (opts: { gpu?: LlamaGpu }) => {
      const g = program.opts();
      await runCommand(g, async () => {
        const r = await installLlamaCppRuntime({
          gpu: opts.gpu,
          log: (l) => process.stderr.write(`${l}\n`),
        });
        output(
          g,
          `llama.cpp ready: ${r.packages.join(", ")} in ${r.dir} (${(r.bytes / 2 ** 20).toFixed(0)} MiB)`,
          r,
        );
      });
    });
}

async function probe<T>(
  fn: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}
