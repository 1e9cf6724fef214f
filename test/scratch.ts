/**
 * Scratch folders for tests, removed when the test process exits (each test file runs in its own process), also
 * when a test fails or throws before its own clean-up: a suite run leaves nothing in the temporary folder.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const made = new Set<string>();
let hooked = false;

/** A new empty folder `<tmpdir>/<prefix>XXXXXX`, removed at process exit (or earlier by the test). */
export function scratchDir(prefix = "gv-test-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.add(dir);
  if (!hooked) {
    hooked = true;
    // 'exit' handlers run synchronously: rmSync, not rm
    process.on("exit", () => {
      for (const d of made) fs.rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}
