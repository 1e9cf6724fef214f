/**
 * goodvibe as an npm package: what `npm pack` ships, and what a user's project gets from the tarball. The
 * install runs from the npm cache (`npm ci --offline` over goodvibe's own locked versions) and without building
 * the addon (about a minute of compiling: scripts/test-install.mjs does the whole install, addon and llama.cpp
 * included); the install script still runs once here, to show how it fails when libtorch is missing.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT, scratchDir } from "../evalcore/make-model.js";

interface PackInfo {
  file?: string;
  files: { path: string; size: number }[];
  unpackedSize: number;
  entryCount: number;
}
interface NpmRun {
  status: number | null;
  stdout: string;
  stderr: string;
}
interface Consumer {
  npm(args: string[], opts?: { cwd?: string; env?: Record<string, string> }): NpmRun;
  packTarball(root: string, dest: string, opts?: { dryRun?: boolean }): PackInfo;
  makeConsumer(dir: string, tarball: string, opts?: { lockFrom?: string; allowScripts?: boolean }): void;
}
const helpers = (await import(
  pathToFileURL(path.join(REPO_ROOT, "scripts/consumer-project.mjs")).href
)) as Consumer;

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as {
  version: string;
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
  overrides?: unknown;
};

test("npm pack ships the library, its types, the CLI, the addon sources and the organism, and no tests", () => {
  const info = helpers.packTarball(REPO_ROOT, "", { dryRun: true });
  const files = new Set(info.files.map((f) => f.path));
  for (const f of [
    "package.json",
    "README.md",
    "dist/src/index.js",
    "dist/src/index.d.ts",
    "dist/src/cli/main.js",
    "dist/data/corpus/cpp.js", // the organism's corpus (organism build)
    "native/binding.gyp",
    "native/find-libtorch.mjs",
    "native/src/addon.cc",
    "scripts/build-native.mjs",
    "assets/organism/model.safetensors", // `goodvibe demo` works from the package
    "assets/organism/tokenizer.json",
  ])
    assert.ok(files.has(f), `${f} is not in the package`);
  const unwanted =
    /^(test|bench|src|dist\/test|dist\/bench|native\/build|\.ci|node_modules)\/|fixtures|\.map$|\.ts$(?<!\.d\.ts$)/;
  const leaked = [...files].filter((f) => unwanted.test(f));
  assert.deepEqual(
    leaked,
    [],
    "tests, benchmarks, fixtures, TypeScript sources, maps or build output packed",
  );
  // every file the manifest points at is in the package
  const pointed = [
    pkg.main,
    pkg.types,
    ...Object.values(pkg.bin),
    ...Object.values(pkg.exports).flatMap((e) => (typeof e === "string" ? [e] : Object.values(e))),
  ].map((p) => p.replace(/^\.\//, ""));
  for (const p of pointed) assert.ok(files.has(p), `package.json points at ${p}, which is not packed`);
  assert.match(pkg.scripts.install!, /scripts\/build-native\.mjs/);
  // 737 files and 24 MB before. The compiled code packs a .js and a .d.ts per module of src/ and data/, nothing
  // else (a fixed count, 400, failed as modules were added: 397 of 400 on 2026-12-01); the rest stays small
  const modules = (dir: string): number =>
    fs
      .readdirSync(path.join(REPO_ROOT, dir), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")).length;
  const compiled = [...files].filter((f) => /^dist\/(src|data)\//.test(f));
  assert.equal(compiled.length, 2 * (modules("src") + modules("data")), "packed compiled files per module");
  assert.ok(
    info.entryCount - compiled.length < 60,
    `${info.entryCount - compiled.length} other files packed`,
  );
  assert.ok(info.unpackedSize < 8e6, `${(info.unpackedSize / 1e6).toFixed(1)} MB unpacked`);
});

test("every package the shipped code imports is a dependency; llama.cpp is an optional peer", () => {
  const dist = path.join(REPO_ROOT, "dist/src");
  const imported = new Set<string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".js")) {
        const code = fs.readFileSync(p, "utf8");
        const specs = [
          ...code.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*["']([^"'./][^"']*)["']/gm),
          ...code.matchAll(/^import\s*["']([^"'./][^"']*)["']/gm),
          ...code.matchAll(/\bimport\(\s*["']([^"'./][^"']*)["']\s*\)/g),
        ];
        for (const m of specs) {
          const spec = m[1]!;
          if (spec.startsWith("node:")) continue;
          imported.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
        }
      }
    }
  };
  walk(dist);
  assert.ok(imported.has("commander") && imported.has("node-llama-cpp"), "the import scan found nothing");
  for (const name of imported) {
    const ok =
      name in pkg.dependencies || (name in pkg.peerDependencies && pkg.peerDependenciesMeta[name]?.optional);
    assert.ok(ok, `dist/src imports ${name}, which is not a dependency (a user's install would lack it)`);
  }
  // the native build's tools are dependencies: a user's install builds the addon
  assert.ok("node-gyp" in pkg.dependencies && "node-addon-api" in pkg.dependencies);
  // node-llama-cpp (and its ~670 MB of GPU builds) is not installed with goodvibe
  for (const name of Object.keys(pkg.dependencies)) assert.doesNotMatch(name, /llama/);
  assert.equal(pkg.peerDependenciesMeta["node-llama-cpp"]?.optional, true);
  // the version the tests run against is the one `goodvibe setup llamacpp` installs
  assert.equal(
    pkg.devDependencies["node-llama-cpp"],
    pkg.peerDependencies["node-llama-cpp"]!.replace(/^\^/, ""),
  );
  assert.equal(pkg.overrides, undefined, "overrides pinning other versions of llama.cpp's binaries");
});

const work = scratchDir("gv-package-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, all: `${r.stdout}\n${r.stderr}` };
}

test("the tarball installs into a user's project: the library imports, the CLI runs, missing parts are named with the fix", async () => {
  const { file } = helpers.packTarball(REPO_ROOT, work);
  const proj = path.join(work, "project");
  helpers.makeConsumer(proj, file!, { lockFrom: REPO_ROOT, allowScripts: true });
  // the install script runs (allowed) but builds nothing here: GOODVIBE_SKIP_NATIVE
  const install = helpers.npm(["ci", "--offline", "--no-audit", "--no-fund"], {
    cwd: proj,
    env: { GOODVIBE_SKIP_NATIVE: "1" },
  });
  assert.equal(install.status, 0, `npm ci --offline failed:\n${install.stdout}\n${install.stderr}`);
  const installed = path.join(proj, "node_modules/goodvibe");
  assert.ok(fs.existsSync(path.join(installed, "dist/src/index.js")));
  assert.ok(!fs.existsSync(path.join(installed, "test")), "tests were installed");
  assert.ok(!fs.existsSync(path.join(proj, "node_modules/node-llama-cpp")), "node-llama-cpp was installed");
  assert.ok(
    !fs.existsSync(path.join(proj, "node_modules/@node-llama-cpp")),
    "llama.cpp binaries were installed",
  );

  // the library, through its exports map only
  const lib = run(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `import { loadModel, identify, renderReport, openLlamaCppBackend } from "goodvibe";
       console.log([loadModel, identify, renderReport, openLlamaCppBackend].map((f) => typeof f).join(","));
       await import("goodvibe/dist/src/io/config.js").then(() => console.log("deep import allowed"), (e) => console.log(e.code));`,
    ],
    proj,
  );
  assert.equal(lib.code, 0, lib.all);
  assert.deepEqual(lib.stdout.trim().split("\n"), [
    "function,function,function,function",
    "ERR_PACKAGE_PATH_NOT_EXPORTED",
  ]);

  // the CLI, from the bin link npm made
  const bin = path.join(proj, "node_modules/.bin/goodvibe");
  const help = run(bin, ["--help"], proj);
  assert.equal(help.code, 0, help.all);
  assert.match(help.stdout, /^Usage: goodvibe/m);
  assert.equal(run(bin, ["--version"], proj).stdout.trim(), pkg.version);

  // without the addon: a tensor operation refuses with how to build it (exit 3: the machine lacks it)
  const gen = run(bin, ["generate", "-m", path.join(installed, "assets/organism"), "-p", "hi"], proj);
  assert.equal(gen.code, 3, gen.all);
  assert.match(gen.stderr, /libtorch addon is not built/);
  assert.match(gen.stderr, /npx goodvibe setup addon/);
  assert.match(gen.stderr, /apt-get install libtorch-dev/);
  assert.doesNotMatch(gen.stderr, /\n\s+at /, "a stack trace reached the user");
  // without llama.cpp: the backend says how to enable it (exit 2: an option that cannot be served as given)
  fs.writeFileSync(path.join(proj, "model.gguf"), "");
  const llama = run(
    bin,
    ["generate", "--backend", "llamacpp", "--gguf", "model.gguf", "--raw", "-p", "hi"],
    proj,
    {
      GOODVIBE_LLAMA_CPP_DIR: path.join(work, "no-llama"),
    },
  );
  assert.equal(llama.code, 2, llama.all);
  assert.match(llama.stderr, /goodvibe setup llamacpp/);
  const check = run(bin, ["--json", "setup", "check"], proj, {
    GOODVIBE_LLAMA_CPP_DIR: path.join(work, "no-llama"),
  });
  assert.equal(check.code, 3, check.all);
  const status = JSON.parse(check.stdout) as { addon: { ok: boolean }; llamacpp: { ok: boolean } };
  assert.equal(status.addon.ok, false);
  assert.equal(status.llamacpp.ok, false);

  // the install script itself, where libtorch cannot be found: it fails, saying how to get libtorch
  const rebuild = helpers.npm(["rebuild", "goodvibe"], {
    cwd: proj,
    env: { LIBTORCH: path.join(work, "nowhere") },
  });
  assert.notEqual(rebuild.status, 0, "the install script succeeded without libtorch");
  const out = rebuild.stdout + rebuild.stderr;
  assert.match(out, /cannot build the libtorch addon/);
  assert.match(out, /is not a libtorch folder/);
  assert.match(out, /apt-get install libtorch-dev/);
  assert.ok(!fs.existsSync(path.join(installed, "native/build/Release/goodvibe_torch.node")));
});
