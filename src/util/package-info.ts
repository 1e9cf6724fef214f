/** goodvibe's own package.json (dist/src/util → the package root): its version and pinned optional parts. */
import { createRequire } from "node:module";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export interface PackageInfo {
  name: string;
  version: string;
  peerDependencies?: Record<string, string>;
}

export const PACKAGE: PackageInfo = createRequire(import.meta.url)("../../../package.json") as PackageInfo;

/** The installed package's (or the clone's) root folder. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

let commit: string | null | undefined;

/**
 * The git commit of the clone the tool runs from (HEAD, read from .git without running git), or undefined for an
 * installed package. A clone's version stays the same across commits; its commit says which code ran.
 */
export function packageCommit(): string | undefined {
  if (commit !== undefined) return commit ?? undefined;
  commit = null;
  try {
    let gitDir = path.join(PACKAGE_ROOT, ".git");
    // a worktree's or submodule's .git is a file: "gitdir: <path>"
    if (fs.statSync(gitDir).isFile()) {
      const m = /^gitdir:\s*(.+)$/m.exec(fs.readFileSync(gitDir, "utf8"));
      if (!m) return undefined;
      gitDir = path.resolve(PACKAGE_ROOT, m[1]!.trim());
    }
    const head = fs.readFileSync(path.join(gitDir, "HEAD"), "utf8").trim();
    if (/^[0-9a-f]{40,64}$/.test(head)) return (commit = head);
    const ref = /^ref:\s*(.+)$/.exec(head)?.[1]?.trim();
    if (!ref) return undefined;
    // a worktree keeps its HEAD; its refs live in the common folder
    let common = gitDir;
    try {
      common = path.resolve(gitDir, fs.readFileSync(path.join(gitDir, "commondir"), "utf8").trim());
    } catch {
      // not a worktree
    }
    for (const dir of [gitDir, common]) {
      try {
        const v = fs.readFileSync(path.join(dir, ref), "utf8").trim();
        if (/^[0-9a-f]{40,64}$/.test(v)) return (commit = v);
      } catch {
        // not a loose ref here
      }
    }
    const packed = fs.readFileSync(path.join(common, "packed-refs"), "utf8");
    for (const line of packed.split("\n")) {
      const [sha, name] = line.split(" ");
      if (name?.trim() === ref && sha && /^[0-9a-f]{40,64}$/.test(sha)) return (commit = sha);
    }
  } catch {
    // not a clone, or unreadable: no commit to record
  }
  return undefined;
}

let codeHash: string | null | undefined;

/**
 * sha256 (12 hex digits) of the tool's compiled JavaScript, every .js under dist/src by path and bytes: the code a run
 * executes, which a build record compares instead of the commit (a commit that changes only docs or tests runs the
 * same code). In a clone, only the files whose TypeScript source is there count: tsc leaves a deleted module's .js
 * behind, which would make two clones of one commit differ. Undefined when there is no dist/src (not compiled).
 */
export function packageCodeHash(): string | undefined {
  if (codeHash !== undefined) return codeHash ?? undefined;
  codeHash = null;
  const root = path.join(PACKAGE_ROOT, "dist", "src");
  const sources = path.join(PACKAGE_ROOT, "src");
  const clone = fs.existsSync(sources);
  const files: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (
        e.isFile() &&
        r.endsWith(".js") &&
        (!clone || fs.existsSync(path.join(sources, r.replace(/\.js$/, ".ts"))))
      )
        files.push(r);
    }
  };
  try {
    walk("");
  } catch {
    return undefined;
  }
  if (files.length === 0) return undefined;
  const h = createHash("sha256");
  for (const r of files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const bytes = fs.readFileSync(path.join(root, r));
    h.update(`${r}\0${bytes.length}\0`).update(bytes);
  }
  return (codeHash = h.digest("hex").slice(0, 12));
}
