/**
 * Preloaded into a CLI run (NODE_OPTIONS=--import <this file>) when GOODVIBE_LOAD_RECORD names a file: every module
 * the process loaded and every native addon it opens (process.dlopen) is appended to that file, one per line
 * ("load <url>", "dlopen <file>"), so a test can say what a command loaded.
 *
 * The modules are what V8 reports compiling (the inspector's Debugger.scriptParsed, on an in-process session
 * opened here: each script with its URL, ES modules and CommonJS alike), written at exit; 0.1-0.2 s of CPU per
 * start. GOODVIBE_LOAD_RECORD_HOOKS=1 records them instead as the module loader loads them (load-hooks.ts), the
 * reference that list is checked against (test/cli/lazy-start): Node 20 runs such hooks on a thread of their own,
 * which adds 0.4-0.6 s of CPU to each start. With GOODVIBE_LOAD_RECORD_ADDONS_ONLY=1 only the addons are
 * recorded. Without GOODVIBE_LOAD_RECORD it does nothing (the test runner also runs this file as a test file).
 */
import * as fs from "node:fs";
import { Session } from "node:inspector";
import { register } from "node:module";

const out = process.env.GOODVIBE_LOAD_RECORD;
if (out) {
  if (process.env.GOODVIBE_LOAD_RECORD_ADDONS_ONLY === "1") {
    // addons only
  } else if (process.env.GOODVIBE_LOAD_RECORD_HOOKS === "1")
    register(new URL("./load-hooks.js", import.meta.url), { data: { out } });
  else {
    // from the start: a CommonJS entry file that only re-exports (yaml's, cli-progress's) leaves no function
    // alive once it has run, and V8 forgets its script, so a list read at exit would miss it. An in-process
    // session is told of each script as V8 compiles it, on this thread.
    const session = new Session();
    session.connect();
    const urls = new Set<string>();
    session.on("Debugger.scriptParsed", (m) => {
      if (m.params.url.startsWith("file:")) urls.add(m.params.url);
    });
    session.post("Debugger.enable");
    process.on("exit", () => fs.appendFileSync(out, [...urls].map((u) => `load ${u}\n`).join("")));
  }
  const dlopen = process.dlopen.bind(process);
  process.dlopen = ((module: unknown, file: string, ...rest: unknown[]) => {
    fs.appendFileSync(out, `dlopen ${file}\n`);
    return (dlopen as (...a: unknown[]) => void)(module, file, ...rest);
  }) as typeof process.dlopen;
}
