import * as fs from "node:fs";
import * as path from "node:path";
import type { Command } from "commander";
import { checkOutput, writeDirAtomic, writeFileAtomic } from "../../io/atomic.js";
import { makeLogger, output, runCommand } from "../common.js";

/** Written into every report folder: the files this command made, so that a re-render replaces only those. */
const MARKER = ".goodvibe-report.json";

function reportFiles(dir: string): Set<string> | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, MARKER), "utf8")) as { files?: unknown };
    return Array.isArray(m.files) ? new Set([MARKER, ...m.files.map(String)]) : null;
  } catch {
    return null;
  }
}

export function registerReport(program: Command): void {
  program
    .command("report")
    .description("render an experiment's results as tables (Markdown, CSV), SVG figures and one HTML page")
    .argument("<results>", "results.json written by `goodvibe experiment run` or `goodvibe demo`")
    .requiredOption("-o, --out <dir>", "report folder (new, or an earlier report's, which is replaced)")
    .option("--overwrite", "move an --out folder holding anything else aside (renamed, never deleted)")
    .addHelpText(
      "after",
      "\nExample:\n  goodvibe report runs/paper/results.json -o runs/paper/report && xdg-open runs/paper/report/index.html",
    )
    .action(async (results, opts) => {
      const g = program.opts();
      const log = makeLogger(g);
      await runCommand(g, async () => {
        // an earlier report (every file listed in its marker) is replaced; anything else is someone's
        const own = reportFiles(opts.out);
        checkOutput({
          flag: "--out",
          path: opts.out,
          kind: "folder",
          inputs: { results },
          overwrite: opts.overwrite,
          ownEntry: own ? (n) => own.has(n) : undefined,
        });
        const { renderReportFromFile } = await import("../../report/index.js"); // vega loads slowly
        let files: string[] = [];
        await writeDirAtomic(
          opts.out,
          async (tmp) => {
            const r = await renderReportFromFile(results, tmp);
            files = r.files.map((f) => path.relative(tmp, f));
            writeFileAtomic(path.join(tmp, MARKER), JSON.stringify({ files }, null, 2));
          },
          {
            replaceOwn: own !== null && fs.readdirSync(opts.out).every((n) => own.has(n)),
            overwrite: opts.overwrite,
            onMovedAside: (a) => log.warn(`the earlier ${opts.out} was moved aside to ${a}`),
          },
        );
        const out = files.map((f) => path.resolve(opts.out, f));
        output(g, `report → ${path.resolve(opts.out, "index.html")} (${out.length} files)`, out);
      });
    });
}
