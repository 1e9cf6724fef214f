/**
 * The shipped organism (assets/organism) and the build's comparison with it: the recorded SHA-256 is the shipped
 * file's, its record names the default settings, and a build is compared with it only under those settings.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileHash } from "../../src/io/hash.js";
import { assetBuildCheck, ORGANISM_ASSET } from "../../src/organism/build.js";
import { DEFAULT_ORGANISM } from "../../src/organism/config.js";
import { REPO_ROOT } from "../evalcore/make-model.js";

const ASSET = path.join(REPO_ROOT, "assets/organism");

test("ORGANISM_ASSET records the shipped organism's weights, built with the default settings", () => {
  assert.equal(fileHash(path.join(ASSET, "model.safetensors")), ORGANISM_ASSET.weightsSha256);
  const record = JSON.parse(fs.readFileSync(path.join(ASSET, "organism.json"), "utf8"));
  assert.deepEqual(record.config, DEFAULT_ORGANISM);
  assert.match(ORGANISM_ASSET.builtAt, /^[0-9a-f]{7,40}$/);
});

test("a build is compared with the shipped organism only under the default settings", () => {
  assert.equal(assetBuildCheck({ ...DEFAULT_ORGANISM }, ORGANISM_ASSET.weightsSha256), "match");
  assert.equal(assetBuildCheck({ ...DEFAULT_ORGANISM }, "0".repeat(64)), "differs");
  assert.equal(
    assetBuildCheck({ ...DEFAULT_ORGANISM, epochs: 1 }, ORGANISM_ASSET.weightsSha256),
    "not-reference",
  );
  assert.equal(assetBuildCheck({ ...DEFAULT_ORGANISM, seed: 7 }, "0".repeat(64)), "not-reference");
});
