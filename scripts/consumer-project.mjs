// A user's project that installs goodvibe from a packed tarball: shared by the package test
// (test/package/package.test.ts) and the full install check (scripts/test-install.mjs).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/**
 * npm as a user runs it in `cwd`: the user's npm settings (~/.npmrc), but none of the npm_* variables of an
 * npm that runs us (`npm test` sets npm_config_local_prefix, which would point the child at this repository).
 */
export function npm(args, { cwd, env = {}, timeoutMs = 600_000 } = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  const r = spawnSync("npm", args, {
    cwd,
    env: { ...clean, npm_config_update_notifier: "false", ...env },
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 64 * 2 ** 20,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? "", stderr: r.stderr ?? "", error: r.error };
}

/** `npm pack` of the repository into destDir, without its lifecycle scripts (dist/ must be built). */
export function packTarball(repoRoot, destDir, { dryRun = false } = {}) {
  const r = npm(["pack", "--json", "--ignore-scripts", ...(dryRun ? ["--dry-run"] : ["--pack-destination", destDir])], {
    cwd: repoRoot,
  });
  if (r.status !== 0) throw new Error(`npm pack failed (${r.status}):\n${r.stderr}`);
  const [info] = JSON.parse(r.stdout);
  return { ...info, file: dryRun ? undefined : path.join(destDir, info.filename) };
}

/**
 * A project depending on the tarball. With `lockFrom` (the repository root) it also gets a lockfile holding
 * goodvibe's production dependencies at the versions of the repository's own lockfile, so `npm ci --offline`
 * installs it from the npm cache alone (what the repository's `npm ci` put there): no registry, no timing.
 * Without it, npm resolves the ranges as for any user (`npm i`).
 */
export function makeConsumer(dir, tarball, { lockFrom, allowScripts = false } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const spec = `file:${path.relative(dir, tarball)}`;
  const pkg = { name: "goodvibe-consumer", private: true, type: "module", dependencies: { goodvibe: spec } };
  // npm 11 runs a dependency's install script only when the project allows it
  // (npm matches a file: dependency by its resolved path, a registry one by its name)
  if (allowScripts) pkg.allowScripts = { goodvibe: true, [`file:${path.resolve(tarball)}`]: true };
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
  if (!lockFrom) return;
  const repoPkg = JSON.parse(fs.readFileSync(path.join(lockFrom, "package.json"), "utf8"));
  const repoLock = JSON.parse(fs.readFileSync(path.join(lockFrom, "package-lock.json"), "utf8"));
  const packages = {
    "": { name: pkg.name, dependencies: pkg.dependencies },
    "node_modules/goodvibe": {
      version: repoPkg.version,
      resolved: spec,
      hasInstallScript: true,
      license: repoPkg.license,
      dependencies: repoPkg.dependencies,
      peerDependencies: repoPkg.peerDependencies,
      peerDependenciesMeta: repoPkg.peerDependenciesMeta,
      bin: repoPkg.bin,
      engines: repoPkg.engines,
    },
  };
  // the repository's tree minus what only its development needs; optional packages are left to npm, as the
  // repository's .npmrc leaves them out (and so they are not in the cache)
  for (const [key, entry] of Object.entries(repoLock.packages)) {
    if (key === "" || entry.dev || entry.optional || entry.devOptional) continue;
    packages[key] = entry;
  }
  fs.writeFileSync(
    path.join(dir, "package-lock.json"),
    JSON.stringify({ name: pkg.name, lockfileVersion: 3, requires: true, packages }, null, 2) + "\n",
  );
}
