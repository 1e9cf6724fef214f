/**
 * The recipes' options and defaults that the CLI shows in --help (demo, eval), in a module that loads no model
 * code: `goodvibe --help` reads them without paying for the recipes (cli/commands/*.ts load those on use).
 */
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export const ORGANISM_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../assets/organism",
);

export interface DemoOptions {
  organism: string;
  out: string;
  seed: number;
  /** training pairs used (0 = all) */
  trainPairs: number;
  identifyPairs: number;
  /** held-out prompts answered per model (0 = all, the paper's protocol) */
  prompts: number;
  maxNewTokens: number;
  epochs: number;
  lr: number;
  /** move an `out` folder holding something else aside (renamed, never deleted) instead of refusing it */
  overwrite?: boolean;
  /** labelled training pairs the judge is fine-tuned on (0 = all) */
  judgePairs: number;
}

export const DEFAULT_DEMO: DemoOptions = {
  organism: ORGANISM_DIR,
  out: "goodvibe-demo",
  seed: 0,
  trainPairs: 0,
  identifyPairs: 128,
  prompts: 48,
  maxNewTokens: 160,
  epochs: 2,
  lr: 2e-3,
  judgePairs: 128,
};

/**
 * Held-out pairs scored for secure preference when no number is given (eval --preference-pairs, 0 = all): the
 * interval at 1,000 pairs is already about ±3 points; beyond it a large dev file only costs time. Taken
 * round-robin over languages, like the prompt budget, so every language stays in the sample.
 */
export const DEFAULT_PREFERENCE_PAIRS = 1000;
