/**
 * The report folder: which of its files are the report's, and how a render replaces an earlier one there. A render
 * leaves the folder holding exactly its own files plus whatever is not the report's (a user's notes beside it are
 * never touched): the files of an earlier render that this one does not write (a table its results no longer have,
 * a figure it cannot draw) are removed, so no file shows numbers the current index.html does not.
 *
 * Which files are the report's: those its manifest (MANIFEST, written last) lists. A folder without one (rendered
 * by `experiment run` or the demo before 2026-12-04) is read by the names the renderer used until then
 * (LEGACY_NAMES, a frozen list: folders rendered since carry a manifest), never by a looser pattern.
 *
 * Order, so that no interruption leaves a folder that claims to be whole: every file is first written (fsynced) in
 * a temporary folder inside the report folder, while the earlier render stays as it was; a failure there (a full
 * disk, a throw, a second Ctrl-C, which exits and removes the temporary) changes nothing. Then renames only, in one
 * synchronous run that no signal handler can enter (only a kill or a crash can stop it): a manifest marked
 * incomplete listing the earlier and the new files; the entry points (index.html, tables.md) removed; the new files
 * in; the earlier ones it does not have removed; the entry points in; the complete manifest. A folder stopped in
 * between has no index.html and a manifest that says so, and the next render removes every file either render left.
 *
 * Two renders into one folder at once (a re-render while a CI job renders; shards rendering into a shared folder)
 * never interleave: a render holds the folder's claim (io/claim.ts) from reading the earlier render until its
 * complete manifest is in, so the second reads the first's files as the earlier render and replaces them whole. The
 * second waits for it: a put-in-place takes seconds, so a claim still held after REPORT_WAIT_SECONDS is a stuck or
 * stopped holder, refused then (naming it) rather than waited on for ever. A dead holder's claim is taken over.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fsyncDir, withTempFolder, writeFileAtomic } from "../io/atomic.js";
import { holdClaim } from "../io/claim.js";
import { InputError, ResourceError } from "../errors.js";
import { PACKAGE, packageCommit } from "../util/package-info.js";
import type { Logger } from "../util/log.js";

/** The manifest's name in a report folder (the name `goodvibe report` has given its list of files since 2026-11). */
export const MANIFEST = ".goodvibe-report.json";

/**
 * What opens the report: removed first and put back last, so that a folder without them is plainly not whole;
 * index.html, the page that claims the whole, is the first removed and the last put in.
 */
const ENTRY_POINTS = ["tables.md", "index.html"] as const;

export interface ReportManifest {
  /** false while a render is being put in place (index.html is then absent); `files` then lists both renders' */
  complete: boolean;
  /** the report's files: plain names in the folder, the manifest not among them */
  files: string[];
  /** the tool that rendered it */
  build: { goodvibe: string; commit?: string };
  renderedAt: string;
  /** the results rendered (their name and when they were made) */
  results: { name: string; createdAt: string };
}

/**
 * The names the renderer wrote before the manifest (until 2026-12-04): its fixed table and figure ids, the
 * per-language layout tables (`table-paper-layout-<languages>`), tables.md and index.html. Frozen: a table added
 * since is named by the manifests of the folders that have it.
 */
const LEGACY_TABLE_IDS = [
  "table1-security",
  "table2-cost",
  "table3-utility",
  "table4-ablations",
  "table5-studies",
  "table6-judges",
  "table7-security-by-cwe",
  "table8-clusters",
  "table9-task-split",
  "table10-paired",
  "table11-paired-languages",
  "table12-code-loss-languages",
  "table13-security-unseen",
  "table14-paired-unseen",
  "table-answers",
  "table-judge-reliability",
  "table-training-schedule",
];
const LEGACY_FIGURE_IDS = [
  "figure1-utility-delta",
  "figure2-importance-clusters",
  "figure3-neurons-by-layer",
];
const LEGACY_NAMES = new Set([
  ...ENTRY_POINTS,
  ...LEGACY_TABLE_IDS.flatMap((id) => [`${id}.md`, `${id}.csv`]),
  ...LEGACY_FIGURE_IDS.map((id) => `${id}.svg`),
]);
const LEGACY_LAYOUT = /^table-paper-layout-[a-z0-9+#_-]+\.(md|csv)$/;

/** Whether `name` is one the renderer wrote before the manifest existed. */
export function isLegacyReportName(name: string): boolean {
  return LEGACY_NAMES.has(name) || LEGACY_LAYOUT.test(name);
}

/** A plain name in the folder (no path, not hidden): the only kind a manifest may list, or the renderer write. */
function isPlainName(n: unknown): n is string {
  return typeof n === "string" && n.length > 0 && !n.startsWith(".") && !/[/\\\0]/.test(n);
}

/** What a folder holds of an earlier render. */
export interface EarlierReport {
  /** how its files were known: its manifest, the renderer's names before the manifest, or nothing there */
  from: "manifest" | "legacy-names" | "none";
  /** the earlier render's files (plain names) */
  files: string[];
  /** false when its manifest says a render was stopped while being put in place */
  complete: boolean;
  /** a manifest that could not be read (the folder was then read by the legacy names) */
  problem?: string;
}

/** The report files an earlier render left in `dir` (which may not exist). */
export function earlierReport(dir: string): EarlierReport {
  let raw: string | undefined;
  let problem: string | undefined;
  try {
    raw = fs.readFileSync(path.join(dir, MANIFEST), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") problem = `${MANIFEST}: ${(e as Error).message}`;
  }
  if (raw !== undefined) {
    try {
      const m = JSON.parse(raw) as Partial<ReportManifest> | null;
      if (!m || typeof m !== "object" || !Array.isArray(m.files)) throw new Error("no list of files");
      // a listed name with a path in it (or the manifest) is not one this renderer wrote: never acted on
      const files = m.files.filter(isPlainName);
      // `goodvibe report` before 2026-12-04 wrote {files} last, into a folder renamed in whole: complete
      return { from: "manifest", files, complete: m.complete !== false };
    } catch (e) {
      problem = `${MANIFEST} is not a report manifest (${(e as Error).message})`;
    }
  }
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    // no folder yet
  }
  const files = names.filter(isLegacyReportName);
  return {
    from: files.length ? "legacy-names" : "none",
    files,
    complete: true,
    ...(problem ? { problem } : {}),
  };
}

/** What publishReport did. */
export interface PublishedReport {
  /** the report's files, as paths under the folder (the manifest not among them) */
  files: string[];
  /** the manifest's path */
  manifest: string;
  /** files of an earlier render that this one does not have, removed (paths) */
  removed: string[];
  /** how the earlier render's files were known */
  earlier: EarlierReport;
}

/**
 * How long a render waits for another one putting its report in the same folder, in seconds; the environment's
 * GOODVIBE_REPORT_WAIT_SECONDS overrides it. A put-in-place takes seconds even for a large grid's report.
 */
export const REPORT_WAIT_SECONDS = 120;

function reportWaitSeconds(): number {
  const raw = process.env.GOODVIBE_REPORT_WAIT_SECONDS;
  if (raw === undefined || raw === "") return REPORT_WAIT_SECONDS;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0)
    throw new InputError(
      `GOODVIBE_REPORT_WAIT_SECONDS=${JSON.stringify(raw)}: not a number of seconds (>= 0)`,
    );
  return s;
}

export interface PublishOptions {
  /** told once when another render holds the folder and this one waits for it (the holder: host, pid, since) */
  onWait?: (holder: string) => void;
}

/**
 * Renders of this process into each folder, one after another: the folder's claim is one per process (a nested
 * claim of the same folder is the same claim), so it does not keep two of them apart.
 */
const inProcess = new Map<string, Promise<unknown>>();

/**
 * Put a rendered report (`contents`: plain file name → text, index.html among them) in `outDir` (made if needed),
 * replacing an earlier render there as the module's comment says, under the folder's claim. `onStep` is told each
 * step done (the name staged; "manifest: incomplete", "removed NAME", "in NAME", "manifest: complete"): a test
 * stops it there as a kill would.
 */
export async function publishReport(
  outDir: string,
  contents: ReadonlyMap<string, string>,
  about: ReportManifest["results"],
  onStep?: (step: string) => void,
  opts: PublishOptions = {},
): Promise<PublishedReport> {
  for (const name of contents.keys())
    if (!isPlainName(name)) throw new Error(`report file name ${JSON.stringify(name)} is not a plain name`);
  if (!contents.has("index.html")) throw new Error("a report without index.html");
  const waitSeconds = reportWaitSeconds();
  const key = path.resolve(outDir);
  const mine = (inProcess.get(key) ?? Promise.resolve())
    .catch(() => undefined) // the render before failed: this one goes ahead all the same
    .then(() => publishClaimed(outDir, contents, about, onStep, opts, waitSeconds));
  inProcess.set(key, mine);
  try {
    return await mine;
  } finally {
    if (inProcess.get(key) === mine) inProcess.delete(key);
  }
}

async function publishClaimed(
  outDir: string,
  contents: ReadonlyMap<string, string>,
  about: ReportManifest["results"],
  onStep: ((step: string) => void) | undefined,
  opts: PublishOptions,
  waitSeconds: number,
): Promise<PublishedReport> {
  const made = !fs.existsSync(outDir);
  let touched = false;
  try {
    const release = await holdClaim(outDir, {
      waitMs: waitSeconds * 1000,
      ...(opts.onWait ? { onWait: opts.onWait } : {}),
      onTimeout: (holder) =>
        new ResourceError(
          `${outDir}: another render is putting its report in place there (${holder}) and has not finished after ` +
            `${waitSeconds} s of waiting (GOODVIBE_REPORT_WAIT_SECONDS); render again once it has. A claim of a ` +
            `process that has died is taken over: at once on this host, after GOODVIBE_CLAIM_STALE_SECONDS ` +
            `without its heartbeat for another host's`,
        ),
    });
    try {
      return await putInPlace(outDir, contents, about, onStep, () => {
        touched = true;
      });
    } finally {
      release(); // before the removal below: the claim is a file in the folder
    }
  } catch (e) {
    // a folder this render made and never filled goes too: no empty report folder is left
    if (made && !touched)
      try {
        fs.rmdirSync(outDir); // empty only: never anything someone put there meanwhile
      } catch {
        // not empty, or gone: left as it is
      }
    throw e;
  }
}

/** publishReport's work, the folder's claim held; `touch` is called before the folder's first change. */
async function putInPlace(
  outDir: string,
  contents: ReadonlyMap<string, string>,
  about: ReportManifest["results"],
  onStep: ((step: string) => void) | undefined,
  touch: () => void,
): Promise<PublishedReport> {
  fs.mkdirSync(outDir, { recursive: true });
  const earlier = earlierReport(outDir);
  const names = [...contents.keys()];
  const fresh = new Set(names);
  const manifest = (complete: boolean, files: string[]): string => {
    const commit = packageCommit();
    const m: ReportManifest = {
      complete,
      files,
      build: { goodvibe: PACKAGE.version, ...(commit ? { commit: commit.slice(0, 12) } : {}) },
      renderedAt: new Date().toISOString(),
      results: about,
    };
    return JSON.stringify(m, null, 2) + "\n";
  };
  const removed: string[] = [];
  await withTempFolder(path.join(outDir, "report"), async (stage) => {
    // everything on disk before the folder is touched: a full disk or a throw here leaves the earlier render whole
    for (const [name, data] of contents) {
      writeFileAtomic(path.join(stage, name), data);
      onStep?.(`staged ${name}`);
    }
    const pending = path.join(stage, ".pending");
    writeFileAtomic(pending, manifest(false, [...new Set([...earlier.files, ...names])]));
    const done = path.join(stage, MANIFEST);
    writeFileAtomic(done, manifest(true, names));

    // from here renames and removals only, synchronously
    const at = (name: string) => path.join(outDir, name);
    touch();
    fs.renameSync(pending, at(MANIFEST));
    onStep?.("manifest: incomplete");
    for (const e of [...ENTRY_POINTS].reverse()) {
      fs.rmSync(at(e), { force: true });
      onStep?.(`removed ${e}`);
    }
    for (const name of names) {
      if ((ENTRY_POINTS as readonly string[]).includes(name)) continue;
      fs.renameSync(path.join(stage, name), at(name));
      onStep?.(`in ${name}`);
    }
    for (const name of earlier.files) {
      if (fresh.has(name)) continue;
      // a file only: a folder or link of that name is not one a render wrote
      if (fs.lstatSync(at(name), { throwIfNoEntry: false })?.isFile() !== true) continue;
      fs.rmSync(at(name));
      removed.push(at(name));
      onStep?.(`removed ${name}`);
    }
    for (const e of ENTRY_POINTS) {
      if (!fresh.has(e)) continue;
      fs.renameSync(path.join(stage, e), at(e));
      onStep?.(`in ${e}`);
    }
    fs.renameSync(done, at(MANIFEST));
    onStep?.("manifest: complete");
    fsyncDir(outDir);
  });
  return {
    files: names.map((n) => path.join(outDir, n)),
    manifest: path.join(outDir, MANIFEST),
    removed,
    earlier,
  };
}

/** Names a log line lists (a large grid's report has many tables); the rest are counted. */
const LISTED = 8;

/**
 * What a render did to the earlier one in its folder, for the log: `info` on the files it removed (null when none),
 * `warning` when a manifest there could not be read (the earlier files were then known by their names only).
 */
export function replacedMessages(p: Pick<PublishedReport, "removed" | "earlier">): {
  info: string | null;
  warning: string | null;
} {
  const names = p.removed.map((f) => path.basename(f));
  const shown =
    names.length > LISTED ? [...names.slice(0, LISTED), `and ${names.length - LISTED} more`] : names;
  const how =
    p.earlier.from === "legacy-names"
      ? "; known by the report's own names, as the folder had no manifest"
      : "";
  const stopped = p.earlier.complete ? "" : " (that render had been stopped while it was put in place)";
  const info = names.length
    ? `removed ${names.length} file${names.length === 1 ? "" : "s"} of an earlier render${stopped} that this ` +
      `one does not have: ${shown.join(", ")}${how}`
    : null;
  const warning = p.earlier.problem
    ? `${p.earlier.problem}: the earlier render's files were known by the report's own names only`
    : null;
  return { info, warning };
}

/** What a render says when another render holds its folder: it waits (up to the wait seconds) and says so. */
export function sayWaiting(outDir: string, log: Logger, prefix = ""): PublishOptions {
  return {
    onWait: (holder) =>
      log.info(
        `${prefix}${outDir}: another render is being put in place there (${holder}); waiting up to ` +
          `${reportWaitSeconds()} s`,
      ),
  };
}

/** replacedMessages said in `log`, each line after `prefix` (the one way every renderer's caller says them). */
export function logReplaced(p: Pick<PublishedReport, "removed" | "earlier">, log: Logger, prefix = ""): void {
  const said = replacedMessages(p);
  if (said.warning) log.warn(prefix + said.warning);
  if (said.info) log.info(prefix + said.info);
}
