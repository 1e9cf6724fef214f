/**
 * The published config.json files of the paper's six models (test/paper/configs), read as they are: the
 * real-scale tests build their models from them, decoder layers cut, rather than write the values out again.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const CONFIGS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/paper/configs");

/** test/paper/configs/<name>.json with num_hidden_layers set to `layers`. */
export function publishedConfig(name: string, layers: number): Record<string, unknown> {
  const config = JSON.parse(fs.readFileSync(path.join(CONFIGS, `${name}.json`), "utf8")) as Record<
    string,
    unknown
  >;
  return { ...config, num_hidden_layers: layers };
}
