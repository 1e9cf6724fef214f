/**
 * The CLI's command tree (every command's registration: arguments, options, help), built without parsing, so that
 * main.ts runs it and tests read its option definitions (test/cli/readme-commands: every command and flag the README
 * shows exists here). Only the registrations load (commands/<name>.ts), not what the commands compute with.
 */
import { Command } from "commander";
import { PACKAGE } from "../util/package-info.js";
import { addHelpHints, configureUsage } from "./options.js";
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

/** The goodvibe program with every command registered; `json`: errors and usage as JSON (--json given). */
export function buildProgram(json: boolean): Command {
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
Exit codes: 0 ok, 1 internal error, 2 bad input, 3 a resource lacking (memory, disk, CUDA, sandbox, server), 130 interrupted (rerun to resume).
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
  addHelpHints(program, json);
  return program;
}
