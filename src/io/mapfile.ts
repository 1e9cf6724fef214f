import * as fs from "node:fs";

/**
 * The bytes of a file. Large weight files are memory-mapped through the native addon when it is built
 * (see src/tensor/native.ts); otherwise they are read. Either way the result is a read-only view.
 */
export type FileMapper = (file: string) => Buffer;

let mapper: FileMapper = (file) => fs.readFileSync(file);
let readBelow = 0;

export function mapFile(file: string): Buffer {
  if (readBelow > 0 && fs.statSync(file).size < readBelow) return fs.readFileSync(file);
  return mapper(file);
}

/**
 * Files under `bytes` are read rather than mapped, for a command that only reads weights (a GGUF export): mapping
 * goes through the native addon, and loading it loads libtorch (about 0.3 s here), more than reading a small
 * checkpoint takes. Larger files are still mapped, so that a model of many GB is never held in the heap. The bytes
 * are the same either way.
 */
export function readFilesBelow(bytes: number): void {
  readBelow = bytes;
}

/** Installed by the tensor layer once the native addon has loaded. */
export function setFileMapper(m: FileMapper): void {
  mapper = m;
}
