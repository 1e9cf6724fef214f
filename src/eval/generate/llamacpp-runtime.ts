/**
 * node-llama-cpp is optional: `npm i goodvibe` does not install it (an optional peer dependency), and nothing
 * but the llama.cpp backend needs it. On first use it is loaded from the user's own install (`npm i
 * node-llama-cpp`, which brings every GPU build npm finds for the platform, ~670 MB on Linux x64) or else from
 * goodvibe's runtime folder, which `goodvibe setup llamacpp` fills with node-llama-cpp and only this platform's
 * CPU binaries (~75 MB with node-llama-cpp itself); GPU builds (CUDA, Vulkan) are added on request.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { InputError, ResourceError } from "../../errors.js";
import { PACKAGE } from "../../util/package-info.js";

export type NodeLlamaCpp = typeof import("node-llama-cpp");
export type LlamaGpu = "cuda" | "vulkan";

/** The node-llama-cpp version goodvibe is tested with: the one in its peerDependencies. */
export function llamaCppVersion(): string {
  const range = PACKAGE.peerDependencies?.["node-llama-cpp"];
  if (!range) throw new Error("package.json has no node-llama-cpp peer dependency");
  return range.replace(/^[\^~=]/, "");
}

/** Where `goodvibe setup llamacpp` installs: $GOODVIBE_LLAMA_CPP_DIR, else the user's data folder. */
export function llamaCppRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.GOODVIBE_LLAMA_CPP_DIR) return path.resolve(env.GOODVIBE_LLAMA_CPP_DIR);
  const data = env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share");
  return path.join(data, "goodvibe", `node-llama-cpp-${llamaCppVersion()}`);
}

/**
 * node-llama-cpp's prebuilt-binary packages for this platform: the CPU one (Metal on Apple silicon, which has
 * no other), plus the GPU build asked for. Names as node-llama-cpp's own optionalDependencies.
 */
export function llamaCppBinaryPackages(
  gpu: LlamaGpu | undefined,
  platform: string = process.platform,
  arch: string = process.arch,
): string[] {
  const os_ = { linux: "linux", darwin: "mac", win32: "win" }[platform];
  const arch_ = { x64: "x64", arm64: "arm64", arm: "armv7l", riscv64: "riscv64" }[arch];
  if (!os_ || !arch_) throw new InputError(`llama.cpp has no prebuilt binaries for ${platform}-${arch}`);
  const base = `@node-llama-cpp/${os_}-${arch_}`;
  const cpu = os_ === "mac" && arch_ === "arm64" ? `${base}-metal` : base;
  if (!gpu) return [cpu];
  const gpuBuilds: Record<LlamaGpu, string[]> = {
    // node-llama-cpp loads the -ext package (more CUDA libraries) beside the CUDA build when it is there
    cuda: [`${base}-cuda`, `${base}-cuda-ext`],
    vulkan: [`${base}-vulkan`],
  };
  if (!["linux-x64", "win-x64"].includes(`${os_}-${arch_}`))
    throw new InputError(`llama.cpp has no prebuilt ${gpu} build for ${platform}-${arch} (CPU only)`);
  return [cpu, ...gpuBuilds[gpu]];
}

/** What to tell a user whose machine has no node-llama-cpp. */
export function howToEnableLlamaCpp(): string {
  const v = llamaCppVersion();
  return (
    "the llama.cpp backend needs node-llama-cpp, which goodvibe does not install by default. Either:\n" +
    `  goodvibe setup llamacpp            # node-llama-cpp ${v} with this platform's CPU binaries only (~75 MB)\n` +
    "  goodvibe setup llamacpp --gpu cuda # ... plus the CUDA build (--gpu vulkan: the Vulkan build)\n" +
    `or in your own project: npm i node-llama-cpp@${v} (with every GPU build npm finds: ~670 MB on Linux x64).\n` +
    "The builtin backend (--backend builtin) and the http backend need none of this."
  );
}

function isMissing(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException;
  return (
    (err?.code === "ERR_MODULE_NOT_FOUND" || err?.code === "MODULE_NOT_FOUND") &&
    /['"]node-llama-cpp['"]/.test(err.message)
  );
}

/** node-llama-cpp from the runtime folder `dir`, or null when it is not installed there. */
async function fromRuntimeDir(dir: string): Promise<NodeLlamaCpp | null> {
  if (!fs.existsSync(path.join(dir, "package.json"))) return null;
  let entry: string;
  try {
    entry = createRequire(path.join(dir, "package.json")).resolve("node-llama-cpp");
  } catch {
    return null;
  }
  return (await import(pathToFileURL(entry).href)) as NodeLlamaCpp;
}

let loading: Promise<NodeLlamaCpp> | null = null;

/** node-llama-cpp, from the user's install or goodvibe's runtime folder; an InputError saying how to get it. */
export function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  loading ??= (async () => {
    try {
      return await import("node-llama-cpp");
    } catch (e) {
      if (!isMissing(e)) throw e;
    }
    const mod = await fromRuntimeDir(llamaCppRuntimeDir());
    if (mod) return mod;
    throw new InputError(howToEnableLlamaCpp());
  })();
  // a failed load is not remembered: `goodvibe setup llamacpp` may run in between
  loading.catch(() => (loading = null));
  return loading;
}

export interface InstallRuntimeOptions {
  gpu?: LlamaGpu;
  /** Default: llamaCppRuntimeDir(). */
  dir?: string;
  /** Extra npm arguments, e.g. ["--prefer-offline"]. */
  npmArgs?: string[];
  log?: (line: string) => void;
}

/**
 * Install node-llama-cpp and this platform's binaries (CPU, plus `gpu`) into the runtime folder with npm,
 * leaving out every other optional build; load it once to prove it works, then swap it in whole (an
 * interrupted install leaves the previous folder, or none, never half of one).
 */
export async function installLlamaCppRuntime(
  opts: InstallRuntimeOptions = {},
): Promise<{ dir: string; packages: string[]; bytes: number }> {
  const dir = opts.dir ? path.resolve(opts.dir) : llamaCppRuntimeDir();
  const version = llamaCppVersion();
  const packages = ["node-llama-cpp", ...llamaCppBinaryPackages(opts.gpu)];
  const log = opts.log ?? (() => {});
  const tmp = `${dir}.installing-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    fs.writeFileSync(
      path.join(tmp, "package.json"),
      JSON.stringify(
        {
          name: "goodvibe-llama-cpp-runtime",
          private: true,
          description:
            "node-llama-cpp for goodvibe's llama.cpp backend (written by `goodvibe setup llamacpp`)",
          dependencies: Object.fromEntries(packages.map((p) => [p, version])),
        },
        null,
        2,
      ) + "\n",
    );
    // npm itself when we run under it (npx), else the npm beside this node, else the one on PATH
    const npmCli = process.env.npm_execpath?.endsWith(".js")
      ? process.env.npm_execpath
      : [path.join(path.dirname(process.execPath), "../lib/node_modules/npm/bin/npm-cli.js")].find((f) =>
          fs.existsSync(f),
        );
    const args = ["install", "--omit=optional", "--no-audit", "--no-fund", ...(opts.npmArgs ?? [])];
    log(`installing ${packages.map((p) => `${p}@${version}`).join(", ")} into ${dir}`);
    // npm's report goes to our stderr: stdout is for the command's result (--json)
    const stdio: ["ignore", number, number] = ["ignore", 2, 2];
    const r = npmCli
      ? spawnSync(process.execPath, [npmCli, ...args], { cwd: tmp, stdio, env: npmEnv() })
      : spawnSync("npm", args, { cwd: tmp, stdio, env: npmEnv() });
    if (r.error) throw new ResourceError(`cannot run npm to install node-llama-cpp: ${r.error.message}`);
    if (r.status !== 0)
      throw new ResourceError(
        `npm could not install node-llama-cpp ${version} (exit ${r.status}); see above`,
      );
    const mod = await fromRuntimeDir(tmp);
    if (!mod) throw new ResourceError(`npm ran, but node-llama-cpp is not loadable from ${tmp}`);
    const llama = await mod.getLlama({
      gpu: false,
      build: "never",
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      logLevel: mod.LlamaLogLevel.error,
    });
    await llama.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.renameSync(tmp, dir);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { dir, packages, bytes: folderBytes(dir) };
}

/** node-llama-cpp's own install step must not download or build llama.cpp: the prebuilt binaries are there. */
function npmEnv(): NodeJS.ProcessEnv {
  return { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" };
}

function folderBytes(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += folderBytes(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }
  return total;
}
