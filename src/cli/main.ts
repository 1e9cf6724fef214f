#!/usr/bin/env node
/**
 * goodvibe: harden code LLMs so they write secure code by default.
 * A thin shell over the library: each command parses, validates, calls the library, prints progress.
 * Only the commands' registrations (commands/<name>.ts: arguments, options, help) load at start; each imports what
 * it does (commands/<name>-run.ts, and the library behind it) when it runs, so that --help, --version and usage
 * errors do not load models, tensors or recipes (test/cli/lazy-start.test.ts).
 */
import { Command } from "commander";
import { PACKAGE } from "../util/package-info.js";
import { addHelpHints, configureUsage, jsonRequested, parseCli } from "./options.js";
import { registerHarden } from "./commands/harden.js";
import { registerStages } from "./commands/stages.js";
import { registerExport } from "./commands/export.js";
import { registerGenerate } from "./commands/generate.js";
import { registerOrganism } from "./commands/organism.js";
import { registerReport } from "./commands/report.js";
import { registerJudge } from "./commands/judge.js";
import { registerEval } from "./commands/eval.js";
import { registerExperiment } from "./commands/experiment.js";
import { registerDemo } from "./commands/demo.js";
import { registerServe } from "./commands/serve.js";
import { registerSetup } from "./commands/setup.js";

const json = jsonRequested(process.argv.slice(2));
const program = new Command();
configureUsage(program, json);
program
  .name("goodvibe")
  .description(
    "GoodVibe: find a code model's security neurons, fine-tune only them, fold back, and measure it",
  )
  .version(PACKAGE.version)
  .option("--json", "machine-readable output on stdout")
  .option("-q, --quiet", "no progress output")
  .addHelpText(
    "after",
    `
Exit codes: 0 ok, 1 internal error, 2 bad input, 3 not enough memory/disk, 130 interrupted (rerun to resume).
Start with:  goodvibe demo`,
  );

registerDemo(program);
registerHarden(program);
registerStages(program);
registerJudge(program);
registerEval(program);
registerExperiment(program);
registerReport(program);
registerExport(program);
registerGenerate(program);
registerServe(program);
registerOrganism(program);
registerSetup(program);

// `goodvibe --help | head` closes the pipe early: nothing went wrong
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});
addHelpHints(program, json);
await parseCli(program, process.argv, json);
