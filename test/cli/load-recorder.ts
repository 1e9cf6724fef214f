/**
 * Preloaded into a CLI run (NODE_OPTIONS=--import <this file>) when GOODVIBE_LOAD_RECORD names a file: every ES
 * module the process loads (through load-hooks.ts) and every native addon it opens (process.dlopen) is appended to
 * that file, one per line, so a test can say what a command loaded. With GOODVIBE_LOAD_RECORD_ADDONS_ONLY=1 only the
 * addons are recorded: the module hooks run on a thread of their own and about double a start's cost. Without
 * GOODVIBE_LOAD_RECORD it does nothing (the test runner also runs this file as a test file).
 */
import * as fs from "node:fs";
import { register } from "node:module";

const out = process.env.GOODVIBE_LOAD_RECORD;
if (out) {
  if (process.env.GOODVIBE_LOAD_RECORD_ADDONS_ONLY !== "1")
    register(new URL("./load-hooks.js", import.meta.url), { data: { out } });
  const dlopen = process.dlopen.bind(process);
  process.dlopen = ((module: unknown, file: string, ...rest: unknown[]) => {
    fs.appendFileSync(out, `dlopen ${file}\n`);
    return (dlopen as (...a: unknown[]) => void)(module, file, ...rest);
  }) as typeof process.dlopen;
}
