import * as path from "node:path";
import type { Command } from "commander";
import { checkOutput, writeDirAtomic } from "../../io/atomic.js";
import { isClaimEntry } from "../../io/claim.js";
import { makeLogger, output, runCommand } from "../common.js";

export function registerReport(program: Command): void {
  program
    .command("report")
    .description("render an experiment's results as tables (Markdown, CSV), SVG figures and one HTML page")
    .argument("<results>", "results.json written by `goodvibe experiment run` or `goodvibe demo`")
    .requiredOption(
      "-o, --out <dir>",
      "report folder (new, or an earlier report's: its files are replaced, anything else there is kept)",
    )
    .option("--overwrite", "move an --out folder holding anything else aside (renamed, never deleted)")
    .addHelpText(
      "after",
      "\nExample:\n  goodvibe report runs/paper/results.json -o runs/paper/report && xdg-open runs/paper/report/index.html",
    )
    .action(async (results, opts) => {
      const g = program.opts();
      const log = makeLogger(g);
      await runCommand(g, async () => {
        const { MANIFEST, earlierReport, isLegacyReportName } = await import("../../report/folder.js");
        // an earlier report (its manifest says which files are its own) is re-rendered in place and whatever else
        // is there (a user's notes) kept; a folder rendered before manifests only when it holds nothing but the
        // report's names; any other folder is someone's
        const earlier = earlierReport(opts.out);
        const state = checkOutput({
          flag: "--out",
          path: opts.out,
          kind: "folder",
          inputs: { results },
          overwrite: opts.overwrite,
          // the claim of a render being put in place there (its first, before any manifest) is the report's too
          ownEntry:
            earlier.from === "manifest"
              ? () => true
              : (n) => n === MANIFEST || isClaimEntry(n) || isLegacyReportName(n),
        });
        const { readExperimentResults, renderReportFromFile, renderReportLogged } =
          await import("../../report/index.js"); // vega loads slowly
        let files: string[];
        if (state === "occupied") {
          // --overwrite: a new folder, the other one moved aside once the new one is complete
          let names: string[] = [];
          await writeDirAtomic(
            opts.out,
            async (tmp) => {
              names = (await renderReportFromFile(results, tmp)).files.map((f) => path.relative(tmp, f));
            },
            {
              overwrite: true,
              onMovedAside: (a) => log.warn(`the earlier ${opts.out} was moved aside to ${a}`),
            },
          );
          files = names.map((f) => path.resolve(opts.out, f));
        } else {
          const r = await renderReportLogged(readExperimentResults(results), opts.out, log);
          files = r.files.map((f) => path.resolve(f));
        }
        output(g, `report → ${path.resolve(opts.out, "index.html")} (${files.length} files)`, files);
      });
    });
}
