import * as fs from "node:fs";
import * as path from "node:path";
import { withPath } from "../errors.js";

/**
 * Write a file atomically: write to a temp file in the same folder, fsync, rename.
 * A crash leaves either the old file or the new one, never a partial one.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${Date.now()}`);
  const fd = fs.openSync(tmp, "w");
  try {
    const parts = typeof data === "string" ? [Buffer.from(data)] : data instanceof Uint8Array ? [data] : data;
    for (const p of parts) {
      let off = 0;
      while (off < p.length) off += fs.writeSync(fd, p, off, p.length - off);
    }
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw withPath(e, file);
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/**
 * Build a folder atomically: `fill` writes into a temp sibling folder, which is renamed into place
 * only when `fill` returns. Refuses to replace an existing non-empty folder unless `overwrite`.
 */
export async function writeDirAtomic(
  dir: string,
  fill: (tmpDir: string) => void | Promise<void>,
  opts: { overwrite?: boolean } = {},
): Promise<void> {
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = path.join(parent, `.${path.basename(dir)}.tmp-${process.pid}-${Date.now()}`);
  fs.mkdirSync(tmp);
  try {
    await fill(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (fs.existsSync(dir)) {
    if (!opts.overwrite && fs.readdirSync(dir).length > 0) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw new Error(`refusing to overwrite non-empty folder ${dir}`);
    }
    const old = `${tmp}.old`;
    fs.renameSync(dir, old);
    fs.renameSync(tmp, dir);
    fs.rmSync(old, { recursive: true, force: true });
  } else {
    fs.renameSync(tmp, dir);
  }
}
