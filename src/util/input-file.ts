/**
 * Inputs that are not files. Opening a FIFO blocks until something writes to it, on the main thread (or in libuv's
 * pool, which process.exit then waits for), where Ctrl-C cannot end the wait: a named pipe given as data, config or
 * a model folder's file hung the command for good. Checked by stat, which does not open, before the first read.
 */
import * as fs from "node:fs";
import { InputError } from "../errors.js";

/** Throws an InputError when `file` is a pipe (a FIFO, `/dev/stdin` fed by one, `<(…)`) or a socket. */
export function refusePipe(file: string, what = "an input"): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return; // absent or unreadable: the read that follows says so
  }
  if (st.isFIFO() || st.isSocket())
    throw new InputError(
      `${file}: ${what} is a ${st.isFIFO() ? "pipe (FIFO)" : "socket"}, not a file: give a regular file ` +
        `(pipes, /dev/stdin fed by one and process substitution such as <(…) are not read; files are read more than once)`,
    );
}

/** The files of a model folder that goodvibe reads, where present. */
const MODEL_FOLDER_FILES = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "chat_template.json",
  "model.safetensors.index.json",
  "tokenizer.model",
];

/**
 * refusePipe for each file of a model folder that goodvibe reads, and `more` (relative to it: the named chat
 * templates); weights are checked where they are mapped.
 */
export function refusePipesIn(dir: string, more: readonly string[] = []): void {
  for (const f of [...MODEL_FOLDER_FILES, ...more]) refusePipe(`${dir}/${f}`, "a model folder's file");
}
