/** goodvibe's own package.json (dist/src/util → the package root): its version and pinned optional parts. */
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export interface PackageInfo {
  name: string;
  version: string;
  peerDependencies?: Record<string, string>;
}

export const PACKAGE: PackageInfo = createRequire(import.meta.url)("../../../package.json") as PackageInfo;

/** The installed package's (or the clone's) root folder. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
