#!/usr/bin/env node
// Builds the libtorch addon (native/build/Release/goodvibe_torch.node). Runs as the package's install script,
// so `npm i goodvibe` gives a working library, and from scripts/install.sh and `npm run build:native` in a clone.
//
// When libtorch or a C++ toolchain is missing the install FAILS, saying how to get them: a package that
// installs "fine" and breaks at its first tensor would hide the problem until much later. To install without
// the addon anyway (e.g. to add libtorch later, then `npm rebuild goodvibe`), set GOODVIBE_SKIP_NATIVE=1; the
// library then refuses at its first tensor operation with the same instructions.
//
//   node scripts/build-native.mjs            build unless an addon for the same sources, libtorch and Node exists
//   node scripts/build-native.mjs --force    always rebuild
//   node scripts/build-native.mjs --dry-run  say what would be run (node-gyp and its arguments), build nothing
//
// The sources compile side by side (make's --jobs): one compiler per usable core, as many as memory allows
// (each of them, with libtorch's headers, peaks at about 1.4 GB), at most one per source file.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { HOW_TO_GET_LIBTORCH, cxxFlags, locateLibtorch } from "../native/find-libtorch.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const nativeDir = path.join(root, "native");
const addon = path.join(nativeDir, "build", "Release", "goodvibe_torch.node");
const stampFile = path.join(nativeDir, "build", "goodvibe-build.json");
const SOURCES = [
  "binding.gyp",
  "find-libtorch.mjs",
  ...fs
    .readdirSync(path.join(nativeDir, "src"))
    .sort()
    .map((f) => `src/${f}`),
];

function fail(lines) {
  console.error(["", "goodvibe: cannot build the libtorch addon.", ...lines, ""].join("\n"));
  process.exit(1);
}

if (process.env.GOODVIBE_SKIP_NATIVE === "1") {
  console.error(
    "goodvibe: GOODVIBE_SKIP_NATIVE=1, so the libtorch addon is not built; " +
      "tensor operations will refuse until it is (npx goodvibe setup addon).",
  );
  process.exit(0);
}

// ---------------------------------------------------------------- what to build against
const { found: libtorch, error } = locateLibtorch();
if (!libtorch) {
  fail([
    error,
    "Then install again, or run `npx goodvibe setup addon`. (To install without the addon, which every tensor",
    "operation needs: GOODVIBE_SKIP_NATIVE=1 npm i goodvibe.)",
  ]);
}

const stamp = {
  libtorch: libtorch.libDir,
  nodeModules: process.versions.modules,
  platform: `${process.platform}-${process.arch}`,
  sources: createHash("sha256")
    .update(SOURCES.map((f) => fs.readFileSync(path.join(nativeDir, f))).join("\0"))
    .digest("hex"),
};

function upToDate() {
  if (!fs.existsSync(addon)) return false;
  if (fs.existsSync(stampFile)) {
    try {
      return JSON.stringify(JSON.parse(fs.readFileSync(stampFile, "utf8"))) === JSON.stringify(stamp);
    } catch {
      return false;
    }
  }
  // an addon from before stamps (or copied in from another checkout): trust it if newer than its source
  return SOURCES.every((f) => fs.statSync(addon).mtimeMs >= fs.statSync(path.join(nativeDir, f)).mtimeMs);
}

if (!process.argv.includes("--force") && upToDate()) {
  console.error(`goodvibe: the libtorch addon is up to date (${libtorch.source}).`);
  process.exit(0);
}

// ---------------------------------------------------------------- toolchain
const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
const missing = [];
if (!has(process.env.CXX || "g++") && !has("c++")) missing.push("a C++17 compiler (g++)");
if (!has("make")) missing.push("make");
if (!has(process.env.PYTHON || "python3")) missing.push("python3 (node-gyp runs on it)");
if (missing.length) {
  fail([
    `Missing: ${missing.join(", ")}.`,
    "Debian 12 / Ubuntu:  sudo apt-get install build-essential python3",
    "Then install again, or run `npx goodvibe setup addon`.",
  ]);
}

// ---------------------------------------------------------------- build
const require = createRequire(import.meta.url);
let nodeGyp;
try {
  nodeGyp = require.resolve("node-gyp/bin/node-gyp.js");
} catch {
  fail(["node-gyp is not installed next to goodvibe (it is a dependency): reinstall the package."]);
}
const compileUnits = SOURCES.filter((f) => f.endsWith(".cc")).length;
const jobs = Math.max(
  1,
  Math.min(os.availableParallelism(), Math.floor(os.totalmem() / 2 ** 31), compileUnits),
);
const args = [nodeGyp, "rebuild", "--directory", nativeDir, "--jobs", String(jobs)];
// the headers of the Node that runs us, when they are installed beside it: no download from nodejs.org
const prefix = path.resolve(path.dirname(process.execPath), "..");
if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, "include/node/common.gypi")))
  args.push(`--nodedir=${prefix}`);
if (process.argv.includes("--dry-run")) {
  console.log(JSON.stringify({ command: process.execPath, args, jobs, compileUnits }));
  process.exit(0);
}
console.error(
  `goodvibe: building the libtorch addon against ${libtorch.source} (${cxxFlags(libtorch).join(" ")}; ${jobs} compiler${jobs > 1 ? "s" : ""} at a time; a few minutes)`,
);
fs.rmSync(stampFile, { force: true });
const build = spawnSync(process.execPath, args, { cwd: nativeDir, stdio: ["ignore", "inherit", "inherit"] });
if (build.status !== 0) {
  fail([
    `node-gyp failed (exit ${build.status ?? build.signal}); its output is above.`,
    `libtorch: ${libtorch.source}. If this libtorch is incomplete or for another compiler ABI:`,
    HOW_TO_GET_LIBTORCH,
  ]);
}

// ---------------------------------------------------------------- check that it loads (libtorch found at run time)
try {
  const version = execFileSync(
    process.execPath,
    ["-e", `process.stdout.write(require(${JSON.stringify(addon)}).version())`],
    { stdio: ["ignore", "pipe", "pipe"] },
  ).toString();
  fs.writeFileSync(stampFile, JSON.stringify(stamp, null, 2) + "\n");
  console.error(`goodvibe: libtorch addon built (libtorch ${version}, ${libtorch.source}).`);
} catch (e) {
  const stderr = e.stderr?.toString().trim().split("\n").slice(0, 5).join("\n") ?? e.message;
  fs.rmSync(addon, { force: true });
  fail([`The addon was built but does not load:\n${stderr}`, HOW_TO_GET_LIBTORCH]);
}
