#!/usr/bin/env node
/**
 * goodvibe: harden code LLMs so they write secure code by default.
 * A thin shell over the library: each command parses, validates, calls the library, prints progress.
 * Only the commands' registrations (commands/<name>.ts: arguments, options, help; program.ts builds the tree) load
 * at start; each imports what it does (commands/<name>-run.ts, and the library behind it) when it runs, so that
 * --help, --version and usage errors do not load models, tensors or recipes (test/cli/lazy-start.test.ts).
 */
import { jsonRequested, parseCli } from "./options.js";
import { buildProgram } from "./program.js";

const json = jsonRequested(process.argv.slice(2));
const program = buildProgram(json);

// `goodvibe --help | head` closes the pipe early: nothing went wrong
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});
// a log reader that went away (`2>&1 | head`, a pager quit) must not end the work the log was about (it crashed a
// harden midway with an unhandled EPIPE): the rest of the log is dropped, the work and its exit code stand
process.stderr.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") throw e;
  process.stderr.write = (() => true) as typeof process.stderr.write;
});
await parseCli(program, process.argv, json);
