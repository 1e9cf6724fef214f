/**
 * The PyTorch reference fixtures' JSON (cases, goodvibe, train_step of each family) is stored gzipped (`gzip -9n`
 * of ../shared/fixtures' files, byte for byte once unpacked): as plain JSON it was 12 MB of the tree, and the GPU
 * run carries the whole tree in 64 MiB (test/package checks the budget).
 */
import * as fs from "node:fs";
import { gunzipSync } from "node:zlib";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function readFixtureJson(file: string): any {
  if (!file.endsWith(".json.gz")) throw new Error(`readFixtureJson: ${file} is not a .json.gz fixture`);
  return JSON.parse(gunzipSync(fs.readFileSync(file)).toString("utf8"));
}
