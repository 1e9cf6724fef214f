#!/usr/bin/env node
// The whole user path of the npm package, slower than the test suite's package test (it compiles the addon and
// installs llama.cpp): pack, install the tarball into a fresh project as a user does (`npm i`, ranges resolved by
// npm; its install script builds the addon, or approve + rebuild where npm skipped it), use the library and the CLI, set up llama.cpp
// (CPU binaries only) and generate through it, and check that an install without libtorch fails with the fix.
//
//   node scripts/test-install.mjs [--fresh-cache] [--keep]
//     --fresh-cache  an empty npm cache: everything from the registry, as on a new machine
//     --keep         leave the scratch folder (printed) for inspection
// Needs: dist/ built (npm run build:ts), libtorch (as for the addon), the npm registry or a warm npm cache.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { makeConsumer, npm, packTarball } from "./consumer-project.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const freshCache = process.argv.includes("--fresh-cache");
const keep = process.argv.includes("--keep");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "gv-install-"));
const env = freshCache ? { npm_config_cache: path.join(work, "npm-cache") } : { npm_config_prefer_offline: "true" };
const results = [];
let failed = false;

function step(name, fn) {
  const t0 = Date.now();
  try {
    const detail = fn();
    results.push(`ok    ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)${detail ? `: ${detail}` : ""}`);
  } catch (e) {
    failed = true;
    results.push(`FAIL  ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${e.message}`);
  }
  console.error(results[results.length - 1]);
}
function must(cond, msg) {
  if (!cond) throw new Error(msg);
}
function sh(cmd, args, cwd, extraEnv = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, ...extraEnv }, maxBuffer: 2 ** 26 });
  return { code: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}`, stdout: r.stdout ?? "" };
}
const npmOk = (r, what) => must(r.status === 0, `${what} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
const mib = (dir) => Number(sh("du", ["-sb", dir], work).stdout.split("\t")[0]) / 2 ** 20;

let tarball;
step("npm pack", () => {
  const info = packTarball(root, work);
  tarball = info.file;
  return `${info.entryCount} files, ${(info.size / 2 ** 20).toFixed(1)} MiB packed, ${(info.unpackedSize / 2 ** 20).toFixed(1)} MiB unpacked`;
});

const proj = path.join(work, "project");
const bin = path.join(proj, "node_modules/.bin/goodvibe");
const addonFile = path.join(proj, "node_modules/goodvibe/native/build/Release/goodvibe_torch.node");
step("npm i <tarball> in a fresh project (npm resolves the ranges; the install script builds the addon)", () => {
  makeConsumer(proj, tarball);
  const r = npm(["i", "--no-audit", "--no-fund"], { cwd: proj, env });
  npmOk(r, "npm i");
  must(!fs.existsSync(path.join(proj, "node_modules/node-llama-cpp")), "node-llama-cpp was installed");
  const warned = /install-scripts/.test(r.stdout + r.stderr) ? "; npm warned that goodvibe's install script is not in allowScripts" : "";
  return `node_modules ${mib(path.join(proj, "node_modules")).toFixed(0)} MiB; addon built at install: ${fs.existsSync(addonFile)}${warned}`;
});

if (!fs.existsSync(addonFile)) {
  step("npm skipped the install script: setup check says so, approve + rebuild builds the addon", () => {
    const c = sh(bin, ["setup", "check"], proj);
    must(c.code === 3 && /npx goodvibe setup addon/.test(c.out), `setup check: exit ${c.code}: ${c.out}`);
    const a = npm(["install-scripts", "approve", "goodvibe"], { cwd: proj, env });
    npmOk(a, "npm install-scripts approve");
    npmOk(npm(["rebuild", "goodvibe"], { cwd: proj, env }), "npm rebuild goodvibe");
    must(fs.existsSync(addonFile), "still no addon");
  });
}

step("the library: loadModel + a forward pass on the shipped organism", () => {
  const r = sh(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `import { loadModel, loadTokenizer, Tensor } from "goodvibe";
       const dir = "node_modules/goodvibe/assets/organism";
       const m = loadModel(dir); const tok = await loadTokenizer(dir);
       const ids = tok.encode("int main() {", { addSpecialTokens: false });
       const logits = m.forward(Tensor.fromArray(ids, [1, ids.length], "int64"));
       console.log(\`\${ids.length} tokens -> logits [\${logits.shape}]\`);`,
    ],
    proj,
  );
  must(r.code === 0, r.out);
  return r.stdout.trim();
});

step("the CLI: --help, setup check, generate (builtin)", () => {
  must(sh(bin, ["--help"], proj).code === 0, "--help failed");
  const c = sh(bin, ["setup", "check"], proj, { GOODVIBE_LLAMA_CPP_DIR: path.join(work, "llama") });
  must(/libtorch addon: ok/.test(c.out), c.out);
  const g = sh(bin, ["generate", "-m", "node_modules/goodvibe/assets/organism", "-p", "copy a string", "--max-new-tokens", "24"], proj);
  must(g.code === 0 && g.stdout.trim().length > 0, g.out);
  return JSON.stringify(g.stdout.trim().slice(0, 60));
});

const llamaDir = path.join(work, "llama");
step("goodvibe setup llamacpp (CPU binaries only)", () => {
  const r = sh(bin, ["--json", "setup", "llamacpp"], proj, {
    GOODVIBE_LLAMA_CPP_DIR: llamaDir,
    ...env,
  });
  must(r.code === 0, r.out);
  const info = JSON.parse(r.stdout);
  must(!info.packages.some((p) => /cuda|vulkan/.test(p)), `GPU builds installed: ${info.packages}`);
  return `${info.packages.join(", ")}: ${(info.bytes / 2 ** 20).toFixed(0)} MiB`;
});

step("export the organism to GGUF and generate through llama.cpp", () => {
  const gguf = path.join(work, "organism.gguf");
  const e = sh(bin, ["export", "-m", "node_modules/goodvibe/assets/organism", "-o", gguf, "--outtype", "f32"], proj);
  must(e.code === 0, e.out);
  const a = ["generate", "-m", "node_modules/goodvibe/assets/organism", "-p", "copy a string", "--max-new-tokens", "24"];
  const builtin = sh(bin, a, proj);
  const llama = sh(bin, [...a, "--backend", "llamacpp", "--gguf", gguf], proj, { GOODVIBE_LLAMA_CPP_DIR: llamaDir });
  must(llama.code === 0 && llama.stdout.trim().length > 0, llama.out);
  return `same text as the builtin engine: ${builtin.stdout === llama.stdout}`;
});

step("npm i without libtorch (LIBTORCH points nowhere, script allowed): the install fails with the fix", () => {
  const p2 = path.join(work, "no-libtorch");
  makeConsumer(p2, tarball, { allowScripts: true });
  const r = npm(["i", "--no-audit", "--no-fund"], { cwd: p2, env: { ...env, LIBTORCH: path.join(work, "nowhere") } });
  must(r.status !== 0, "the install succeeded");
  must(/apt-get install libtorch-dev/.test(r.stdout + r.stderr), "no instructions:\n" + r.stderr);
  must(!fs.existsSync(path.join(p2, "node_modules/goodvibe")), "a half-installed goodvibe was left");
  return `exit ${r.status}, nothing left in node_modules`;
});

console.log(`\ngoodvibe install check (${new Date().toISOString()}, node ${process.version}, npm ${npm(["-v"], { cwd: work }).stdout.trim()}${freshCache ? ", empty npm cache" : ", npm cache preferred"})`);
console.log(results.join("\n"));
if (keep) console.log(`scratch folder kept: ${work}`);
else fs.rmSync(work, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
