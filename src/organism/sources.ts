/**
 * Real code for the CyberNative organism's breadth: source files of Debian packages, fetched with apt (never
 * committed, never shipped), selected deterministically and recorded by hash.
 *
 * `fetchSourcePackages` downloads each pinned package version with `apt-get download` (no installation: nothing
 * on the system changes) and unpacks it with `dpkg-deb -x` (and `unzip` for the JDK's src.zip) into a cache
 * folder. `selectSources` then picks files by a seeded hash of their path — one part held out of pretraining
 * (the held-out code loss), the rest pretraining text up to a character budget per language — and returns a
 * manifest with every selected file's SHA-256, so a rebuild can prove it read the same code.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError, ResourceError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { canonicalJson, sha256 } from "../io/hash.js";
import type { Language } from "../data/languages.js";

export type SourceLang = Extract<Language, "go" | "java" | "cpp" | "python">;

export interface SourcePackage {
  package: string;
  /** the exact Debian version: a rebuild reads the same files */
  version: string;
  lang: SourceLang;
  /** where the sources lie inside the unpacked package (for `zip`: inside the unpacked archive) */
  root: string;
  /** a zip inside the package that holds the sources, and the top-level folders of it to unpack */
  zip?: { file: string; include: string[] };
  /** file name endings kept ("" keeps files without a dot, e.g. C++'s <vector>) */
  extensions: string[];
  /** relative paths (from root) left out: tests, vendored and generated code */
  exclude: RegExp;
}

/**
 * Debian 12 (bookworm, main) packages: Go's standard library, the JDK's own sources, libstdc++'s headers, and
 * Python's standard library. Debian has no Swift (or Kotlin, C#, ...) sources, so those languages get only the
 * CyberNative pairs.
 */
export const ORGANISM_SOURCE_PACKAGES: readonly SourcePackage[] = [
  {
    package: "golang-1.19-src",
    version: "1.19.8-2",
    lang: "go",
    root: "usr/share/go-1.19/src",
    extensions: [".go"],
    exclude: /(^|\/)(testdata|vendor|cmd)\/|_test\.go$/,
  },
  {
    package: "openjdk-17-source",
    version: "17.0.19+10-1~deb12u2",
    lang: "java",
    root: "src",
    zip: {
      file: "usr/lib/jvm/openjdk-17/lib/src.zip",
      include: ["java.base", "java.net.http", "java.sql", "java.logging", "jdk.httpserver", "java.naming"],
    },
    extensions: [".java"],
    exclude: /(^|\/)(internal|sun)\//,
  },
  {
    package: "libstdc++-12-dev",
    version: "12.2.0-14+deb12u1",
    lang: "cpp",
    root: "usr/include/c++/12",
    extensions: ["", ".h", ".tcc"],
    exclude: /^(pstl|parallel|tr1|tr2|decimal|backward|debug|profile)\//,
  },
  {
    package: "libpython3.11-stdlib",
    version: "3.11.2-6+deb12u8",
    lang: "python",
    root: "usr/lib/python3.11",
    extensions: [".py"],
    exclude: /(^|\/)(test|tests|idlelib|lib2to3|turtledemo|ensurepip|pydoc_data|config-[^/]*)\//,
  },
];

/** The folder a package version is unpacked into, inside the sources cache. */
export function packageDir(cache: string, p: SourcePackage): string {
  return path.join(cache, `${p.package}_${p.version.replace(/[^A-Za-z0-9.+~-]/g, "_")}`);
}

const COMPLETE = ".goodvibe-source.json";

interface FetchRecord {
  package: string;
  version: string;
  debSha256: string;
}

function run(cmd: string, args: string[], cwd: string, what: string): void {
  try {
    execFileSync(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === "ENOENT")
      throw new ResourceError(
        `${what}: \`${cmd}\` is not installed; the organism's real-code sources come from Debian packages ` +
          `(apt-get, dpkg-deb and unzip are needed: sudo apt-get install apt dpkg unzip)`,
      );
    const msg = (err.stderr?.toString() ?? err.message).trim().split("\n").slice(-3).join(" ");
    throw new ResourceError(`${what}: ${cmd} ${args.join(" ")} failed: ${msg}`);
  }
}

/** Whether every package is unpacked in `cache` (a complete earlier fetch). */
export function sourcesPresent(cache: string, packages = ORGANISM_SOURCE_PACKAGES): boolean {
  return packages.every((p) => fs.existsSync(path.join(packageDir(cache, p), COMPLETE)));
}

/**
 * Download and unpack every package into `cache` (kept between builds). Packages already unpacked are skipped;
 * a half-done fetch (killed) is redone, since a package only counts once its record is written.
 */
export function fetchSourcePackages(
  cache: string,
  packages = ORGANISM_SOURCE_PACKAGES,
  log: (msg: string) => void = () => {},
): FetchRecord[] {
  fs.mkdirSync(cache, { recursive: true });
  const out: FetchRecord[] = [];
  for (const p of packages) {
    const dir = packageDir(cache, p);
    const record = path.join(dir, COMPLETE);
    if (fs.existsSync(record)) {
      out.push(JSON.parse(fs.readFileSync(record, "utf8")) as FetchRecord);
      continue;
    }
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true }); // an unfinished earlier fetch (no record)
    fs.mkdirSync(tmp, { recursive: true });
    const what = `fetching ${p.package}=${p.version}`;
    log(`${what} (apt-get download; nothing is installed)`);
    try {
      run("apt-get", ["download", "-q", `${p.package}=${p.version}`], tmp, what);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw new ResourceError(
        `${(e as Error).message}. The build pins this version so that it reads the same code every time; ` +
          `\`apt-cache madison ${p.package}\` lists the versions your apt sources offer`,
      );
    }
    const deb = fs.readdirSync(tmp).find((f) => f.endsWith(".deb"));
    if (!deb) throw new ResourceError(`${what}: apt-get download left no .deb in ${tmp}`);
    const debSha256 = sha256(fs.readFileSync(path.join(tmp, deb)));
    const unpacked = path.join(tmp, "pkg");
    run("dpkg-deb", ["-x", deb, unpacked], tmp, what);
    fs.rmSync(path.join(tmp, deb));
    if (p.zip) {
      const zip = path.join(unpacked, p.zip.file);
      if (!fs.existsSync(zip)) throw new ResourceError(`${what}: the package has no ${p.zip.file}`);
      const into = path.join(unpacked, p.root);
      fs.mkdirSync(into, { recursive: true });
      run("unzip", ["-q", "-o", zip, ...p.zip.include.map((d) => `${d}/*`), "-d", into], tmp, what);
      fs.rmSync(zip);
    }
    const rec: FetchRecord = { package: p.package, version: p.version, debSha256 };
    fs.writeFileSync(path.join(unpacked, COMPLETE), JSON.stringify(rec, null, 2) + "\n");
    fs.renameSync(unpacked, dir);
    fs.rmSync(tmp, { recursive: true, force: true });
    out.push(rec);
  }
  return out;
}

export interface SelectedSource {
  package: string;
  lang: SourceLang;
  /** path relative to the package's source root */
  path: string;
  /** SHA-256 of the file's bytes as unpacked */
  sha256: string;
  /** the text used: the file with its leading licence comment removed */
  text: string;
}

export interface SourceBudget {
  /** characters of pretraining code per language (after cleaning); a language not named gets none */
  pretrainChars: Partial<Record<SourceLang, number>>;
  /** characters of held-out code per language: never pretrained on, for the held-out code loss */
  heldOutChars: Partial<Record<SourceLang, number>>;
  /** files longer than this (after cleaning) are skipped: mostly tables and generated code */
  maxFileChars: number;
  /** files shorter than this are skipped */
  minFileChars: number;
  seed: number;
}

export interface SourceManifest {
  packages: { package: string; version: string; debSha256: string }[];
  budget: Omit<SourceBudget, "seed"> & { seed: number };
  files: { package: string; path: string; sha256: string; role: "pretrain" | "heldout"; chars: number }[];
  /** SHA-256 of the canonical JSON of `packages` (without debSha256) and `files`: what a rebuild must match */
  sha256: string;
}

export interface SourceSelectionResult {
  pretrain: SelectedSource[];
  heldOut: SelectedSource[];
  manifest: SourceManifest;
}

function walk(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

function hasExtension(file: string, exts: readonly string[]): boolean {
  const base = file.slice(file.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  return exts.includes(dot <= 0 ? "" : base.slice(dot));
}

const GENERATED = /DO NOT EDIT|Code generated|generated by|automatically generated/i;
const LICENCE = /copyright|licen[cs]e|SPDX/i;

/**
 * The file as pretraining text: CRLF normalised, its leading comment removed when it is a licence header (the
 * same 20 lines atop every JDK file would otherwise be a good share of the code budget). Null for files that
 * are not UTF-8 text or say they are generated.
 */
export function cleanSource(raw: Buffer, lang: SourceLang): string | null {
  let text = raw.toString("utf8");
  if (text.includes("\uFFFD") || text.includes("\u0000")) return null;
  text = text.replace(/\r\n?/g, "\n");
  if (GENERATED.test(text.slice(0, 600))) return null;
  const lead =
    lang === "python"
      ? /^(?:#![^\n]*\n)?(?:[ \t]*#[^\n]*\n|[ \t]*\n)+/
      : /^\s*(?:\/\*[\s\S]*?\*\/\s*|(?:[ \t]*\/\/[^\n]*\n)+\s*)/;
  const m = lead.exec(text);
  if (m && LICENCE.test(m[0])) text = text.slice(m[0].length);
  return text.trimEnd() + "\n";
}

/**
 * Pick the files: every candidate (extension, exclusions, length, not generated) of every package, ordered by
 * SHA-256 of seed + package + path; per language the first files fill the held-out budget, the next ones the
 * pretraining budget. Adding or removing unrelated files never moves a chosen file between the two sides.
 */
export function selectSources(
  cache: string,
  budget: SourceBudget,
  packages = ORGANISM_SOURCE_PACKAGES,
): SourceSelectionResult {
  const records: SourceManifest["packages"] = [];
  const pretrain: SelectedSource[] = [];
  const heldOut: SelectedSource[] = [];
  const files: SourceManifest["files"] = [];
  for (const p of packages) {
    const want = (budget.pretrainChars[p.lang] ?? 0) + (budget.heldOutChars[p.lang] ?? 0);
    if (want === 0) continue;
    const dir = packageDir(cache, p);
    const recFile = path.join(dir, COMPLETE);
    if (!fs.existsSync(recFile))
      throw new InputError(
        `the sources of ${p.package}=${p.version} are not in ${cache}; fetch them first ` +
          `(\`goodvibe organism sources -o ${cache}\`)`,
      );
    records.push(JSON.parse(fs.readFileSync(recFile, "utf8")) as FetchRecord);
    const root = path.join(dir, p.root);
    const candidates = walk(root)
      .filter((f) => hasExtension(f, p.extensions) && !p.exclude.test(f))
      .map((f) => ({ f, key: sha256(`${budget.seed}\u0000${p.package}\u0000${f}`) }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let held = 0;
    let pre = 0;
    const heldBudget = budget.heldOutChars[p.lang] ?? 0;
    const preBudget = budget.pretrainChars[p.lang] ?? 0;
    for (const { f } of candidates) {
      if (held >= heldBudget && pre >= preBudget) break;
      const raw = fs.readFileSync(path.join(root, f));
      const text = cleanSource(raw, p.lang);
      if (text === null || text.length < budget.minFileChars || text.length > budget.maxFileChars) continue;
      const s: SelectedSource = { package: p.package, lang: p.lang, path: f, sha256: sha256(raw), text };
      const role = held < heldBudget ? "heldout" : "pretrain";
      if (role === "heldout") {
        heldOut.push(s);
        held += text.length;
      } else {
        pretrain.push(s);
        pre += text.length;
      }
      files.push({ package: p.package, path: f, sha256: s.sha256, role, chars: text.length });
    }
  }
  const { seed, ...rest } = budget;
  const hashed = { packages: records.map(({ package: pk, version }) => ({ package: pk, version })), files };
  return {
    pretrain,
    heldOut,
    manifest: { packages: records, budget: { ...rest, seed }, files, sha256: sha256(canonicalJson(hashed)) },
  };
}

/** Write the selection's manifest (file list and hashes; never the code itself). */
export function writeSourceManifest(file: string, m: SourceManifest): void {
  writeFileAtomic(file, JSON.stringify(m, null, 1) + "\n");
}
